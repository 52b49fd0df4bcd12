//! Small named rules for single values. Each returns what was wrong (lowercase, saying what is
//! accepted) and, when there is one, a help line; the decoder attaches the span and key path.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub help: Option<String>,
}

impl Problem {
    pub fn new(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            help: None,
        }
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

pub(crate) type Check = Result<(), Problem>;

/// A user value quoted for a message, shortened when long.
pub(crate) struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 60;
        if self.0.chars().count() > MAX {
            let cut: String = self.0.chars().take(MAX).collect();
            write!(f, "{:?}…", cut)
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

/// The candidate closest to `input`, if it is close enough to be a plausible typo.
pub(crate) fn suggest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let input_n = norm(input);
    let mut best: Option<(&'a str, usize, f64)> = None;
    for &c in candidates {
        let c_n = norm(c);
        if c_n == input_n {
            return Some(c);
        }
        let dist = strsim::damerau_levenshtein(&input_n, &c_n);
        let jw = strsim::jaro_winkler(&input_n, &c_n);
        let close = dist <= (c_n.len() / 3).max(1) || jw >= 0.88;
        if close && best.is_none_or(|(_, d, j)| dist < d || (dist == d && jw > j)) {
            best = Some((c, dist, jw));
        }
    }
    best.map(|(c, _, _)| c)
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// `[a-z0-9][a-z0-9._-]*`: the spec name and component names.
pub(crate) fn simple_name(s: &str) -> Check {
    let mut chars = s.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        return Ok(());
    }
    let p = Problem::new(format!(
        "expected a name of lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit, got {}",
        Shown(s)
    ));
    let fixed: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let fixed = fixed.trim_start_matches(['.', '_', '-']);
    if fixed.is_empty() {
        Err(p)
    } else {
        Err(p.help(format!("for example `{fixed}`")))
    }
}

/// The name of a build context (`--build-context NAME=…`), as buildx accepts it: lowercase
/// letters, digits, `.`, `_`, `-` and `/`, an optional `:tag`.
pub(crate) fn context_name(s: &str) -> Check {
    let (name, tag) = s.split_once(':').unwrap_or((s, ""));
    let part_ok = |p: &str, extra: &[char]| {
        p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && p.chars().all(|c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || "._-".contains(c)
                    || extra.contains(&c)
            })
    };
    let tag_ok = tag.is_empty()
        || tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if part_ok(name, &['/']) && tag_ok && !s.ends_with(':') {
        return Ok(());
    }
    Err(Problem::new(format!(
        "expected the name of a build context (lowercase letters, digits, `.`, `_`, `-`, `/`, an optional `:tag`), got {}",
        Shown(s)
    ))
    .help("name it as given to `docker buildx build --build-context NAME=…`"))
}

/// Lexically normalized absolute form of `s`, if it has one (`..` resolved, `.`, `//` and
/// trailing `/` removed).
pub(crate) fn normalize_abs(s: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(format!("/{}", parts.join("/")))
    }
}

/// An absolute, normalized path other than `/`: no `..`, `.`, empty components or trailing `/`.
pub(crate) fn abs_path(s: &str) -> Check {
    if s.contains('\0') || has_control(s) {
        return Err(Problem::new(format!(
            "paths must not contain control characters, got {}",
            Shown(s)
        )));
    }
    if !s.starts_with('/') {
        return Err(Problem::new(format!(
            "expected an absolute path like /etc/hostname, got {}",
            Shown(s)
        ))
        .help(format!("paths in the image are absolute: write `/{s}`")));
    }
    if s == "/" {
        return Err(Problem::new(
            "the root directory `/` cannot be a file, directory or link entry",
        ));
    }
    let bad = s[1..]
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..");
    if !bad {
        return Ok(());
    }
    let p = Problem::new(format!(
        "expected a normalized absolute path (no `..`, `.`, `//` or trailing `/`), got {}",
        Shown(s)
    ));
    Err(match normalize_abs(s) {
        Some(n) => p.help(format!("write `{n}`")),
        None => p,
    })
}

/// A path relative to the build context that cannot leave it.
pub(crate) fn local_path(s: &str) -> Check {
    if s.is_empty() {
        return Err(Problem::new(
            "expected a path relative to the build context, got an empty string",
        ));
    }
    if s.contains('\0') || has_control(s) {
        return Err(Problem::new(format!(
            "paths must not contain control characters, got {}",
            Shown(s)
        )));
    }
    if s.starts_with('/') {
        return Err(Problem::new(format!(
            "`local` paths are relative to the build context, got the absolute path {}",
            Shown(s)
        ))
        .help(format!(
            "copy the file into the build context and write it relative to it, e.g. `{}`",
            s.trim_start_matches('/')
        )));
    }
    if s.split('/').any(|c| c == "..") {
        return Err(Problem::new(format!(
            "`local` paths must stay inside the build context; `..` is not accepted, got {}",
            Shown(s)
        ))
        .help("pass a larger build context, or move the file into it"));
    }
    Ok(())
}

pub(crate) const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "slice",
    "scope",
];

/// A systemd unit name: `name.type`, with `name@instance.type` templates.
pub(crate) fn unit_name(s: &str) -> Check {
    let types = UNIT_TYPES.join(", .");
    let valid_chars = |x: &str| {
        !x.is_empty()
            && x.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@')
            })
    };
    match s.rsplit_once('.') {
        Some((stem, ty)) if UNIT_TYPES.contains(&ty) => {
            let at = stem.matches('@').count();
            if s.len() <= 255 && valid_chars(stem) && at <= 1 && !stem.starts_with('@') {
                return Ok(());
            }
            Err(Problem::new(format!(
                "expected a systemd unit name like kubelet.service, got {}",
                Shown(s)
            ))
            .help(
                "unit names use letters, digits and `:-_.\\`, with at most one `@` for templates",
            ))
        }
        Some((_, ty)) if valid_chars(s) => {
            let p = Problem::new(format!(
                "unknown systemd unit type `.{ty}` in {}; expected one of .{types}",
                Shown(s)
            ));
            Err(match suggest(ty, UNIT_TYPES) {
                Some(t) => p.help(format!("did you mean `.{t}`?")),
                None => p,
            })
        }
        _ => {
            let p = Problem::new(format!(
                "expected a systemd unit name like kubelet.service, got {}",
                Shown(s)
            ));
            Err(if valid_chars(s) {
                p.help(format!(
                    "unit names end in their type: did you mean `{s}.service`?"
                ))
            } else {
                p.help(format!("unit names end in their type, one of .{types}"))
            })
        }
    }
}

/// A secret id as `--secret id=…` takes: letters, digits, `.`, `_`, `-`.
pub(crate) fn secret_id(s: &str) -> Check {
    if !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Ok(());
    }
    Err(Problem::new(format!(
        "expected a secret id like apt-auth (letters, digits, `.`, `_`, `-`), got {}",
        Shown(s)
    )))
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn env_name(s: &str) -> Check {
    let mut chars = s.chars();
    if matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Ok(());
    }
    Err(Problem::new(format!(
        "expected an environment variable name like API_TOKEN, got {}",
        Shown(s)
    )))
}

/// A drop-in file name: `something.conf`, no `/`.
pub(crate) fn dropin_name(s: &str) -> Check {
    match s.strip_suffix(".conf") {
        Some(stem) if !stem.is_empty() && !s.contains('/') && !has_control(s) => Ok(()),
        _ => Err(Problem::new(format!(
            "expected a drop-in file name like 10-override.conf, got {}",
            Shown(s)
        ))
        .help("drop-in names end in `.conf` and contain no `/`")),
    }
}

/// 64 lowercase hexadecimal digits.
pub(crate) fn sha256(s: &str) -> Check {
    let hex = |x: &str| x.len() == 64 && x.bytes().all(|b| b.is_ascii_hexdigit());
    if hex(s) && !s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Ok(());
    }
    let p = Problem::new(format!(
        "expected a sha256 digest of 64 lowercase hex digits, got {}",
        Shown(s)
    ));
    Err(
        if let Some(rest) = s.strip_prefix("sha256:").or(s.strip_prefix("sha256-")) {
            p.help(format!("drop the prefix: `{}`", rest))
        } else if hex(s) {
            p.help("write the digest in lowercase")
        } else if s.bytes().all(|b| b.is_ascii_hexdigit()) {
            p.help(format!(
                "a sha256 digest has 64 hex digits, this one has {}",
                s.len()
            ))
        } else {
            p
        },
    )
}

/// Butane's `verification.hash`: `sha256-<64 hex>`. Returns the hex digest.
pub(crate) fn file_hash(s: &str) -> Result<String, Problem> {
    match s.split_once('-') {
        Some(("sha256", hex)) => sha256(hex).map(|()| hex.to_owned()).map_err(|p| {
            Problem::new(format!(
                "expected `sha256-` followed by 64 lowercase hex digits, got {}",
                Shown(s)
            ))
            .help(
                p.help
                    .unwrap_or_else(|| "compute it with `sha256sum <file>`".into()),
            )
        }),
        Some((alg, _)) if alg.bytes().all(|b| b.is_ascii_alphanumeric()) => Err(Problem::new(
            format!("unsupported hash function `{alg}`; only `sha256-<hex>` is accepted"),
        )),
        _ => {
            let p = Problem::new(format!(
                "expected `sha256-<64 hex digits>`, got {}",
                Shown(s)
            ));
            let hex = s.strip_prefix("sha256:").unwrap_or(s);
            Err(if sha256(hex).is_ok() {
                p.help(format!("write `sha256-{hex}`"))
            } else {
                p
            })
        }
    }
}

/// An `http://` or `https://` URL with a host.
pub(crate) fn http_url(s: &str) -> Check {
    let rest = s.strip_prefix("https://").or(s.strip_prefix("http://"));
    match rest {
        Some(r)
            if !r.is_empty()
                && !r.starts_with('/')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        Some(_) => Err(Problem::new(format!(
            "expected an http(s) URL with a host and no spaces, got {}",
            Shown(s)
        ))),
        None => {
            let scheme = s.split_once("://").map(|(sch, _)| sch);
            let p = Problem::new(format!(
                "expected an http:// or https:// URL, got {}",
                Shown(s)
            ));
            Err(match scheme {
                Some(sch) => p.help(format!("the `{sch}` scheme is not supported")),
                None if s.starts_with("data:") => {
                    p.help("for literal contents use `inline:` instead of a data URL")
                }
                None => p,
            })
        }
    }
}

/// A user or group name as `useradd`/`groupadd` accept by default.
pub(crate) fn account_name(s: &str) -> Check {
    let body = s.strip_suffix('$').unwrap_or(s);
    let mut chars = body.chars();
    let ok = s.len() <= 32
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Problem::new(format!(
            "expected a user or group name (lowercase letters, digits, `_`, `-`, starting with a letter or `_`, at most 32 characters), got {}",
            Shown(s)
        )))
    }
}

/// An image archive's path in the build context (the rules of `local` paths).
pub(crate) fn archive_path(s: &str) -> Check {
    local_path(s).map_err(|mut p| {
        p.message = p.message.replace("`local` paths are", "archive paths are");
        p
    })
}

/// A reference for `kubernetes.images` (normalised as containerd and the kubelet spell it).
pub(crate) fn image_reference(s: &str) -> Check {
    nodestamp_contract::images::normalize_ref(s)
        .map(|_| ())
        .map_err(|e| Problem::new(e.to_string()))
}

/// An image reference like `debian:bookworm`, `registry:5000/a/b:tag` or `…@sha256:<hex>`.
pub(crate) fn image_ref(s: &str) -> Check {
    let p = || {
        Problem::new(format!(
            "expected an image reference like debian:bookworm or registry.example/os/base:1@sha256:<hex>, got {}",
            Shown(s)
        ))
    };
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        match d.strip_prefix("sha256:") {
            Some(hex) if sha256(hex).is_ok() => {}
            _ => return Err(p().help("a digest is `sha256:` followed by 64 lowercase hex digits")),
        }
    }
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(p().help("a tag is letters, digits, `_`, `.` and `-`"));
        }
    }
    let mut comps = name.split('/');
    let first = comps.next().unwrap_or("");
    let is_host = name.contains('/') && (first.contains(['.', ':']) || first == "localhost");
    let comp_ok = |c: &str| {
        !c.is_empty()
            && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
    };
    let host_ok = |c: &str| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | ':'))
    };
    let first_ok = if is_host {
        host_ok(first)
    } else {
        comp_ok(first)
    };
    if first_ok && comps.all(comp_ok) {
        Ok(())
    } else if s.chars().any(|c| c.is_ascii_uppercase()) && !is_host {
        Err(p().help("repository names are lowercase"))
    } else {
        Err(p())
    }
}

/// A package name for the image's package manager, with optional `=version`, `:arch` or
/// `/release`. Never starts with `-` (it would be read as an option).
pub(crate) fn package(s: &str) -> Check {
    let ok = !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_' | ':' | '=' | '~' | '/')
        });
    if ok {
        return Ok(());
    }
    let p = Problem::new(format!(
        "expected a package name like openssh-server (optionally with =version), got {}",
        Shown(s)
    ));
    Err(if s.contains(char::is_whitespace) {
        p.help("list each package as its own item")
    } else if s.starts_with('-') {
        p.help("package names cannot start with `-`; options for the package manager are not accepted here")
    } else {
        p
    })
}

/// One kernel command-line argument.
pub(crate) fn kernel_arg(s: &str) -> Check {
    if !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Ok(());
    }
    Err(Problem::new(format!(
        "expected one kernel argument like console=ttyS0 (no spaces), got {}",
        Shown(s)
    ))
    .help("list each argument as its own item"))
}

/// A kernel module name for modules-load.d.
pub(crate) fn module(s: &str) -> Check {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        return Ok(());
    }
    let p = Problem::new(format!(
        "expected a kernel module name like br_netfilter, got {}",
        Shown(s)
    ));
    Err(if s.contains(char::is_whitespace) {
        p.help("list module names only; options belong in a modprobe.d file under storage.files")
    } else {
        p
    })
}

/// A sysctl key like `net.ipv4.ip_forward`.
pub(crate) fn sysctl_key(s: &str) -> Check {
    if !s.is_empty()
        && !s.starts_with(['.', '/'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '*'))
    {
        return Ok(());
    }
    Err(Problem::new(format!(
        "expected a sysctl key like net.ipv4.ip_forward, got {}",
        Shown(s)
    )))
}

/// A sysctl value: one line.
pub(crate) fn sysctl_value(s: &str) -> Check {
    if s.contains(['\n', '\r']) {
        return Err(Problem::new("sysctl values must be a single line"));
    }
    Ok(())
}

/// A value that must be a single non-empty line (ssh keys, command names).
pub(crate) fn one_line(s: &str) -> Check {
    if s.trim().is_empty() {
        return Err(Problem::new("expected a non-empty value"));
    }
    if s.trim_end_matches('\n').contains(['\n', '\r']) {
        return Err(Problem::new("expected a single line"));
    }
    Ok(())
}

pub(crate) fn non_empty(s: &str) -> Check {
    if s.trim().is_empty() {
        Err(Problem::new("expected a non-empty value"))
    } else {
        Ok(())
    }
}

pub(crate) fn no_check(_: &str) -> Check {
    Ok(())
}

/// The outcome of reading a mode: the value and maybe a warning.
pub(crate) type ModeRead = Result<(u32, Option<Problem>), Problem>;

/// Butane semantics: a leading `0` or `0o` marks octal; otherwise the number is decimal (with a
/// warning when it looks like octal written without the leading 0).
pub(crate) fn mode(s: &str) -> ModeRead {
    const MAX: u32 = 0o7777;
    let generic = || {
        Problem::new(format!(
            "expected an octal mode like 0644, got {}",
            Shown(s)
        ))
    };
    let t = s.trim();
    if let Some(rest) = t.strip_prefix('-') {
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Problem::new(format!(
                "modes cannot be negative, got {t}; expected 0 to 07777, like 0644"
            )));
        }
        return Err(generic());
    }
    let octal = |digits: &str| -> ModeRead {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(generic());
        }
        if digits.bytes().any(|b| b > b'7') {
            return Err(Problem::new(format!(
                "{t} starts with 0, so it is octal, but 8 and 9 are not octal digits"
            ))
            .help("write a mode like 0644"));
        }
        match u32::from_str_radix(digits, 8) {
            Ok(v) if v <= MAX => Ok((v, None)),
            _ => Err(Problem::new(format!(
                "mode {t} is above the largest mode 07777"
            ))),
        }
    };
    if let Some(d) = t.strip_prefix("0o").or(t.strip_prefix("0O")) {
        return octal(d);
    }
    if t.len() > 1 && t.starts_with('0') && t.bytes().all(|b| b.is_ascii_digit()) {
        return octal(&t[1..]);
    }
    if t.starts_with("0x") || t.starts_with("0X") {
        return Err(generic().help("hexadecimal modes are not accepted; write the mode in octal"));
    }
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(generic());
    }
    let Ok(v) = t.parse::<u64>() else {
        return Err(Problem::new(format!(
            "mode {t} is above the largest mode 07777"
        )));
    };
    let looks_octal = t.bytes().all(|b| b <= b'7');
    if v > u64::from(MAX) {
        let p = Problem::new(format!(
            "mode {t} has no leading 0, so it is decimal {v}, above the largest mode 07777 (4095)"
        ));
        return Err(if looks_octal && octal(t).is_ok() {
            p.help(format!("write 0{t} for octal"))
        } else {
            p
        });
    }
    let v = v as u32;
    let warning = (looks_octal && v >= 8).then(|| {
        Problem::new(format!(
            "mode {t} has no leading 0, so it is decimal {t} (octal 0{v:o}), not octal 0{t}"
        ))
        .help(format!(
            "write 0{t} if you meant octal; a leading 0 (or 0o) marks an octal mode, as in Butane"
        ))
    });
    Ok((v, warning))
}

/// A disk size in bytes: plain bytes or a whole number with `KiB`, `MiB`, `GiB` or `TiB`
/// (the parser `nodestamp convert --size` uses too).
pub(crate) fn size(s: &str) -> Result<u64, Problem> {
    nodestamp_contract::units::parse_size(s).map_err(|e| {
        let p = Problem::new(e.message);
        match e.help {
            Some(h) => p.help(h),
            None => p,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = [
            "from",
            "packages",
            "kernel_arguments",
            "storage",
            "systemd",
            "passwd",
            "run",
        ];
        assert_eq!(suggest("pakages", &keys), Some("packages"));
        assert_eq!(suggest("kernel-arguments", &keys), Some("kernel_arguments"));
        assert_eq!(suggest("kernel_args", &keys), Some("kernel_arguments"));
        assert_eq!(suggest("sytemd", &keys), Some("systemd"));
        assert_eq!(suggest("Packages", &keys), Some("packages"));
        assert_eq!(suggest("zzzzzz", &keys), None);
        assert_eq!(
            suggest("qcow", &["raw", "qcow2", "vmdk", "vhd"]),
            Some("qcow2")
        );
    }

    #[test]
    fn names() {
        assert!(simple_name("node-1.a_b").is_ok());
        for good in ["kube", "debian:bookworm", "my/ctx", "a.b-c_d:v1.2"] {
            assert!(context_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Kube", "a b", ":x", "x:", "-a", "a:b:c"] {
            assert!(context_name(bad).is_err(), "{bad}");
        }
        assert!(simple_name("9").is_ok());
        for bad in ["", "-x", "Node", "a b", ".x", "é"] {
            assert!(simple_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            simple_name("My Node").unwrap_err().help.as_deref(),
            Some("for example `my-node`")
        );
        assert!(account_name("core").is_ok());
        assert!(account_name("_apt").is_ok());
        assert!(account_name("machine$").is_ok());
        for bad in ["Core", "1abc", "", "a b", &"a".repeat(33)] {
            assert!(account_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        for ok in ["/etc/hostname", "/a", "/usr/local/bin/kubelet", "/a b/c"] {
            assert!(abs_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/",
            "etc/x",
            "/etc/../x",
            "/etc//x",
            "/etc/x/",
            "/./x",
            "/a\0b",
        ] {
            assert!(abs_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            abs_path("/etc/../x").unwrap_err().help.as_deref(),
            Some("write `/x`")
        );
        assert_eq!(
            abs_path("etc/x").unwrap_err().help.as_deref(),
            Some("paths in the image are absolute: write `/etc/x`")
        );
        for ok in ["a", "components/kubectl", "./x", "a/b..c"] {
            assert!(local_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/.."] {
            assert!(local_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn units() {
        for ok in [
            "kubelet.service",
            "getty@.service",
            "getty@tty1.service",
            "a-b_c:d.timer",
            "x.y.socket",
            "-.mount",
        ] {
            assert!(unit_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "kubelet",
            "kubelet.servce",
            ".service",
            "a b.service",
            "a@b@c.service",
            "@x.service",
            "x/y.service",
        ] {
            assert!(unit_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            unit_name("kubelet.servce").unwrap_err().help.as_deref(),
            Some("did you mean `.service`?")
        );
        assert_eq!(
            unit_name("kubelet").unwrap_err().help.as_deref(),
            Some("unit names end in their type: did you mean `kubelet.service`?")
        );
        assert!(dropin_name("10-x.conf").is_ok());
        for bad in ["x", ".conf", "a/b.conf", "x.cnf"] {
            assert!(dropin_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests_and_urls() {
        let hex = "a".repeat(64);
        assert!(sha256(&hex).is_ok());
        assert!(
            sha256(&"A".repeat(64))
                .unwrap_err()
                .help
                .unwrap()
                .contains("lowercase")
        );
        assert!(
            sha256(&format!("sha256:{hex}"))
                .unwrap_err()
                .help
                .unwrap()
                .contains("drop the prefix")
        );
        assert!(
            sha256("abc")
                .unwrap_err()
                .help
                .unwrap()
                .contains("this one has 3")
        );
        assert!(sha256(&"g".repeat(64)).is_err());
        assert_eq!(file_hash(&format!("sha256-{hex}")).unwrap(), hex);
        assert!(
            file_hash(&format!("sha512-{hex}"))
                .unwrap_err()
                .message
                .contains("sha512")
        );
        assert!(
            file_hash(&hex)
                .unwrap_err()
                .help
                .unwrap()
                .contains("sha256-")
        );
        assert!(file_hash("sha256-abc").is_err());
        assert!(http_url("https://dl.k8s.io/x").is_ok());
        assert!(http_url("http://h:8080/x").is_ok());
        for bad in [
            "ftp://x/y",
            "https://",
            "https:///x",
            "https://a b",
            "x",
            "data:,hi",
        ] {
            assert!(http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_refs() {
        for ok in [
            "debian:bookworm",
            "debian",
            "library/debian:12.5-slim",
            "localhost:5000/os/base:1",
            "registry.example.com/a/b",
            &format!("debian@sha256:{}", "0".repeat(64)),
            &format!("debian:12@sha256:{}", "0".repeat(64)),
        ] {
            assert!(image_ref(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Debian:12",
            "debian:",
            "debian:bad tag",
            "debian@sha256:xyz",
            "-x",
            "a//b",
            "debian:-x",
        ] {
            assert!(image_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn packages_args_modules_sysctl() {
        for ok in [
            "openssh-server",
            "libc6=2.36-9",
            "g++",
            "foo:amd64",
            "linux-image-amd64/bookworm-backports",
            "NetworkManager",
        ] {
            assert!(package(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-y", "a b", "a;b", "$(x)"] {
            assert!(package(bad).is_err(), "{bad}");
        }
        assert!(kernel_arg("console=ttyS0,115200n8").is_ok());
        assert!(kernel_arg("a b").is_err());
        assert!(kernel_arg("").is_err());
        assert!(module("br_netfilter").is_ok());
        assert!(module("overlay opt=1").unwrap_err().help.is_some());
        assert!(sysctl_key("net.ipv4.ip_forward").is_ok());
        assert!(sysctl_key("net.ipv4.conf.eth0/1.rp_filter").is_ok());
        assert!(sysctl_key("a=b").is_err());
        assert!(sysctl_key("").is_err());
        assert!(sysctl_value("1").is_ok());
        assert!(sysctl_value("1\n2").is_err());
        assert!(one_line("ssh-ed25519 AAAA x@y\n").is_ok());
        assert!(one_line("a\nb").is_err());
        assert!(one_line(" ").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(mode("0644"), Ok((0o644, None)));
        assert_eq!(mode("0o755"), Ok((0o755, None)));
        assert_eq!(mode("00"), Ok((0, None)));
        assert_eq!(mode("0"), Ok((0, None)));
        assert_eq!(mode("07777"), Ok((0o7777, None)));
        assert_eq!(mode("7"), Ok((7, None)));
        assert_eq!(mode("420"), Ok((420, mode("420").unwrap().1)));
        let (v, w) = mode("644").unwrap();
        assert_eq!(v, 644);
        let w = w.unwrap();
        assert_eq!(
            w.message,
            "mode 644 has no leading 0, so it is decimal 644 (octal 01204), not octal 0644"
        );
        assert!(w.help.unwrap().starts_with("write 0644"));
        assert_eq!(
            mode("493").unwrap().1,
            None,
            "9 is not octal, so no warning"
        );
        assert!(mode("010000").unwrap_err().message.contains("above"));
        assert!(mode("4096").unwrap_err().message.contains("above"));
        assert!(mode("7777").unwrap_err().help.unwrap().contains("07777"));
        assert!(mode("-1").unwrap_err().message.contains("negative"));
        assert!(mode("-0644").unwrap_err().message.contains("negative"));
        assert!(
            mode("0689")
                .unwrap_err()
                .message
                .contains("not octal digits")
        );
        assert_eq!(
            mode("rwx").unwrap_err().message,
            "expected an octal mode like 0644, got \"rwx\""
        );
        assert!(
            mode("0x1a4")
                .unwrap_err()
                .help
                .unwrap()
                .contains("hexadecimal")
        );
        assert!(mode("").is_err());
        assert!(mode("0o").is_err());
        assert!(mode("99999999999999999999999").is_err());
    }

    #[test]
    fn sizes_are_the_contract_parser_with_its_help() {
        // The rules are tested with the parser (nodestamp_contract::units); here, that a
        // refusal keeps its message and help as a diagnostic.
        assert_eq!(size("8GiB"), Ok(8 << 30));
        let p = size("8GB").unwrap_err();
        assert!(p.message.contains("KiB, MiB, GiB, TiB"));
        assert!(p.help.unwrap().starts_with("write 8GiB"));
        assert_eq!(size("0").unwrap_err().help, None);
    }
}
