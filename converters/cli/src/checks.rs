//! `nodestamp verify`: runs a spec's `tests:` against a node rootfs mounted read-only — files,
//! packages (package database), services (unit files and enablement links) and kernel
//! arguments (`/etc/kernel/cmdline`) are read from the filesystem, nothing in the image is
//! executed — and judges the results of the `commands` (run beforehand in an exec of the node
//! image, one `<i>.rc`/`<i>.out`/`<i>.err` per command).
//!
//! The checks come as `checks.json`, written by the frontend with the same types
//! ([`nodestamp_contract::checks`]): each has a `key` (`tests.files[2]`), an `at`
//! (`node.yaml:40:7`) and its kind with the kind's own fields.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nodestamp_contract::checks::{Check, CheckKind, ChecksFile};
use serde_json::{Value, json};

use crate::provenance::read_packages;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub key: String,
    pub at: String,
    /// `None` when the check passed, else why it failed.
    pub failure: Option<String>,
}

impl Outcome {
    /// `node.yaml:40:7: tests.files[2]: /etc/x has mode 0600, want 0644`.
    pub fn line(&self) -> String {
        match &self.failure {
            None => format!("{}: {}: ok", self.at, self.key),
            Some(f) => format!("{}: {}: {f}", self.at, self.key),
        }
    }
}

/// Resolves `path` inside `root`, following symlinks (absolute targets stay inside `root`).
/// Returns the resolved path; `follow_last` decides whether a final symlink is followed.
pub fn resolve(root: &Path, path: &str, follow_last: bool) -> PathBuf {
    let mut parts: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    parts.reverse();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(p) = parts.pop() {
        match p.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let candidate = root.join(cur.join("/")).join(&p);
        let is_last = parts.is_empty();
        match fs::read_link(&candidate) {
            Ok(target) if (follow_last || !is_last) && hops < 40 => {
                hops += 1;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    cur.clear();
                }
                for q in t.split('/').filter(|q| !q.is_empty()).rev() {
                    parts.push(q.to_string());
                }
            }
            _ => cur.push(p),
        }
    }
    root.join(cur.join("/"))
}

fn names(root: &Path, file: &str) -> Vec<(String, u32)> {
    fs::read_to_string(resolve(root, file, true))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?.to_string();
            let id = f.nth(1)?.parse().ok()?;
            Some((name, id))
        })
        .collect()
}

fn id_matches(want: &str, id: u32, table: &[(String, u32)]) -> bool {
    if let Ok(n) = want.parse::<u32>() {
        return n == id;
    }
    table.iter().any(|(name, i)| name == want && *i == id)
}

fn id_name(id: u32, table: &[(String, u32)]) -> String {
    table
        .iter()
        .find(|(_, i)| *i == id)
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| id.to_string())
}

fn file_check(
    root: &Path,
    path: &str,
    exists: bool,
    mode: Option<u32>,
    owner: Option<&str>,
    contains: Option<&str>,
) -> Option<String> {
    let real = resolve(root, path, true);
    let meta = fs::metadata(&real).ok();
    let meta = match (meta, exists) {
        (None, true) => return Some(format!("{path} does not exist")),
        (None, false) => return None,
        (Some(_), false) => return Some(format!("{path} exists, want it absent")),
        (Some(m), true) => m,
    };
    if let Some(want) = mode {
        let have = meta.mode() & 0o7777;
        if have != want {
            return Some(format!("{path} has mode {have:04o}, want {want:04o}"));
        }
    }
    if let Some(want) = owner {
        let users = names(root, "/etc/passwd");
        let groups = names(root, "/etc/group");
        let (wu, wg) = match want.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (want, None),
        };
        let ok = id_matches(wu, meta.uid(), &users)
            && wg.is_none_or(|g| id_matches(g, meta.gid(), &groups));
        if !ok {
            return Some(format!(
                "{path} is owned by {}:{}, want {want}",
                id_name(meta.uid(), &users),
                id_name(meta.gid(), &groups)
            ));
        }
    }
    if let Some(want) = contains {
        if meta.is_dir() {
            return Some(format!(
                "{path} is a directory, want a file containing {want:?}"
            ));
        }
        let text = fs::read(&real).unwrap_or_default();
        if !String::from_utf8_lossy(&text).contains(want) {
            return Some(format!("{path} does not contain {want:?}"));
        }
    }
    None
}

fn package_check(
    name: &str,
    installed: bool,
    version: Option<&str>,
    packages: &Option<(String, Option<Vec<crate::provenance::Package>>)>,
) -> Option<String> {
    let Some((manager, list)) = packages else {
        return Some("the package database could not be read".into());
    };
    let Some(list) = list else {
        return Some(format!(
            "cannot read a {manager} package database without running the image; check packages with a command instead"
        ));
    };
    let found = list.iter().find(|p| p.name == name);
    match (found, installed) {
        (None, true) => Some(format!("package {name} is not installed")),
        (None, false) => None,
        (Some(p), false) => Some(format!(
            "package {name} is installed ({}), want it absent",
            p.version
        )),
        (Some(p), true) => {
            let want = version?;
            let ok = match want.strip_suffix('*') {
                Some(prefix) => p.version.starts_with(prefix),
                None => p.version == want,
            };
            (!ok).then(|| format!("package {name} is {}, want {want}", p.version))
        }
    }
}

const UNIT_DIRS: &[&str] = &[
    "etc/systemd/system",
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];

/// Whether a `.wants`/`.requires` link for `name` exists in a unit directory.
fn enabled_link(root: &Path, name: &str) -> Option<String> {
    for dir in ["etc/systemd/system", "usr/lib/systemd/system"] {
        let d = resolve(root, dir, true);
        let Ok(rd) = fs::read_dir(&d) else { continue };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let n = e.file_name().to_string_lossy().into_owned();
            if (n.ends_with(".wants") || n.ends_with(".requires"))
                && fs::symlink_metadata(e.path().join(name)).is_ok()
            {
                return Some(format!("/{dir}/{n}/{name}"));
            }
        }
    }
    None
}

fn masked(root: &Path, name: &str) -> bool {
    ["etc/systemd/system", "run/systemd/system"]
        .iter()
        .any(|d| {
            fs::read_link(resolve(root, d, true).join(name))
                .map(|t| t == Path::new("/dev/null"))
                .unwrap_or(false)
        })
}

fn service_check(
    root: &Path,
    name: &str,
    enabled: Option<bool>,
    masked_want: Option<bool>,
) -> Option<String> {
    let is_masked = masked(root, name);
    if let Some(want) = masked_want
        && want != is_masked
    {
        return Some(if want {
            format!("{name} is not masked")
        } else {
            format!("{name} is masked (linked to /dev/null)")
        });
    }
    if let Some(want) = enabled {
        let exists = UNIT_DIRS
            .iter()
            .any(|d| fs::symlink_metadata(resolve(root, d, true).join(name)).is_ok());
        let link = enabled_link(root, name);
        match (want, link) {
            (true, _) if !exists => return Some(format!("{name}: no such unit")),
            (true, _) if is_masked => return Some(format!("{name} is masked, want enabled")),
            (true, None) => {
                return Some(format!(
                    "{name} is not enabled (no .wants/ or .requires/ link)"
                ));
            }
            (false, Some(l)) => return Some(format!("{name} is enabled ({l}), want disabled")),
            _ => {}
        }
    }
    None
}

fn kernel_arg_check(cmdline: &str, source: &str, want: &str) -> Option<String> {
    let words = format!(
        " {} ",
        cmdline.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    (!words.contains(&format!(" {want} "))).then(|| {
        format!(
            "the kernel command line ({source}: {:?}) has no {want}",
            words.trim()
        )
    })
}

fn command_check(
    results: Option<&Path>,
    i: usize,
    run: &str,
    want: i32,
    stdout_contains: Option<&str>,
    stderr_contains: Option<&str>,
) -> Option<String> {
    let Some(dir) = results else {
        return Some(format!("command `{run}` did not run"));
    };
    let read = |ext: &str| fs::read_to_string(dir.join(format!("{i}.{ext}"))).ok();
    let Some(rc) = read("rc") else {
        return Some(format!("command `{run}` did not run"));
    };
    let rc: i64 = rc.trim().parse().unwrap_or(-1);
    let out = read("out").unwrap_or_default();
    let err = read("err").unwrap_or_default();
    let tail = |s: &str| {
        let s = s.trim();
        let t: String = s
            .chars()
            .rev()
            .take(200)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if t.is_empty() {
            String::new()
        } else {
            format!(" (stderr: {t:?})")
        }
    };
    if rc != i64::from(want) {
        return Some(format!(
            "command `{run}` exited {rc}, want {want}{}",
            tail(&err)
        ));
    }
    if let Some(w) = stdout_contains
        && !out.contains(w)
    {
        return Some(format!("stdout of `{run}` does not contain {w:?}"));
    }
    if let Some(w) = stderr_contains
        && !err.contains(w)
    {
        return Some(format!("stderr of `{run}` does not contain {w:?}"));
    }
    None
}

/// Runs every check in `checks` (the `checks` of checks.json) against `root`.
pub fn run(checks: &[Check], root: &Path, results: Option<&Path>) -> Vec<Outcome> {
    let packages = if checks
        .iter()
        .any(|c| matches!(c.kind, CheckKind::Package { .. }))
    {
        read_packages(root).ok()
    } else {
        None
    };
    let cmdline_file = resolve(root, "/etc/kernel/cmdline", true);
    let cmdline = fs::read_to_string(&cmdline_file).unwrap_or_default();
    checks
        .iter()
        .map(|c| {
            let failure = match &c.kind {
                CheckKind::File {
                    path,
                    exists,
                    mode,
                    owner,
                    contains,
                } => file_check(
                    root,
                    path,
                    *exists,
                    *mode,
                    owner.as_deref(),
                    contains.as_deref(),
                ),
                CheckKind::Package {
                    name,
                    installed,
                    version,
                } => package_check(name, *installed, version.as_deref(), &packages),
                CheckKind::Service {
                    name,
                    enabled,
                    masked,
                } => service_check(root, name, *enabled, *masked),
                CheckKind::KernelArgument { contains } => {
                    kernel_arg_check(&cmdline, "/etc/kernel/cmdline", contains)
                }
                CheckKind::Command {
                    index,
                    run,
                    exit_status,
                    stdout_contains,
                    stderr_contains,
                } => command_check(
                    results,
                    *index,
                    run,
                    *exit_status,
                    stdout_contains.as_deref(),
                    stderr_contains.as_deref(),
                ),
                CheckKind::Image { reference, digest } => {
                    nodestamp_converters::images::check(root, reference, digest.as_deref()).err()
                }
            };
            Outcome {
                key: c.key.clone(),
                at: c.at.clone(),
                failure,
            }
        })
        .collect()
}

/// The report: summary line, then one line per failed check.
pub fn report_text(outcomes: &[Outcome]) -> String {
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    let mut s = String::new();
    for o in &failed {
        s += &o.line();
        s.push('\n');
    }
    if failed.is_empty() {
        s += &format!("nodestamp test: all {} checks passed\n", outcomes.len());
    } else {
        s += &format!(
            "nodestamp test: {} of {} checks failed\n",
            failed.len(),
            outcomes.len()
        );
    }
    s
}

pub fn report_json(outcomes: &[Outcome]) -> Value {
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    json!({
        "passed": outcomes.len() - failed,
        "failed": failed,
        "checks": outcomes.iter().map(|o| json!({
            "key": o.key, "at": o.at, "ok": o.failure.is_none(), "failure": o.failure,
        })).collect::<Vec<_>>(),
    })
}

/// Reads checks.json; a field missing or misspelled is an error, never a default.
pub fn load(path: &Path) -> Result<Vec<Check>> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file: ChecksFile = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a checks file", path.display()))?;
    Ok(file.checks)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn root() -> PathBuf {
        let d = std::env::temp_dir().join(format!("nodestamp-checks-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let w = |p: &str, data: &str| {
            let p = d.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        };
        w("etc/hostname", "node\n");
        w("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        w("etc/group", "root:x:0:\n");
        w("etc/kernel/cmdline", "console=ttyS0 quiet\n");
        w(
            "var/lib/dpkg/status",
            "Package: jq\nStatus: install ok installed\nVersion: 1.6-2.1\nArchitecture: amd64\n",
        );
        w("usr/lib/systemd/system/ssh.service", "[Service]\n");
        w("usr/lib/systemd/system/cron.service", "[Service]\n");
        fs::create_dir_all(d.join("etc/systemd/system/multi-user.target.wants")).unwrap();
        symlink(
            "/usr/lib/systemd/system/ssh.service",
            d.join("etc/systemd/system/multi-user.target.wants/ssh.service"),
        )
        .unwrap();
        symlink("/dev/null", d.join("etc/systemd/system/apt-daily.service")).unwrap();
        symlink("/etc/hostname", d.join("etc/hn")).unwrap();
        fs::set_permissions(d.join("etc/hostname"), fs::Permissions::from_mode(0o600)).unwrap();
        d
    }

    /// A check of `kind` from `fields`, with the defaults the spec decoder gives
    /// (`exists`/`installed` true, `exit_status` 0, the rest absent).
    fn check(kind: &str, fields: Value) -> Check {
        let mut v = json!({"exists": true, "installed": true, "exit_status": 0, "index": 0});
        let keep: &[&str] = match kind {
            "file" => &["exists"],
            "package" => &["installed"],
            "command" => &["exit_status", "index"],
            _ => &[],
        };
        v.as_object_mut()
            .unwrap()
            .retain(|k, _| keep.contains(&k.as_str()));
        for (k, f) in fields.as_object().unwrap() {
            v[k] = f.clone();
        }
        v["kind"] = json!(kind);
        v["key"] = json!(format!("tests.{kind}"));
        v["at"] = json!("node.yaml:1:1");
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn each_kind_of_check_passes_and_fails() {
        let r = root();
        let cases = vec![
            (
                check("file", json!({"path": "/etc/hn", "contains": "node"})),
                None,
            ),
            (
                check("file", json!({"path": "/etc/hostname", "mode": 0o644})),
                Some("/etc/hostname has mode 0600, want 0644"),
            ),
            (
                check(
                    "file",
                    json!({"path": "/etc/hostname", "owner": "root:root"}),
                ),
                None,
            ),
            (
                check("file", json!({"path": "/etc/hostname", "owner": "1000"})),
                Some("/etc/hostname is owned by root:root, want 1000"),
            ),
            (
                check("file", json!({"path": "/etc/nope"})),
                Some("/etc/nope does not exist"),
            ),
            (
                check("file", json!({"path": "/etc/hostname", "exists": false})),
                Some("/etc/hostname exists, want it absent"),
            ),
            (
                check("package", json!({"name": "jq", "version": "1.6*"})),
                None,
            ),
            (
                check("package", json!({"name": "jq", "version": "1.7"})),
                Some("package jq is 1.6-2.1, want 1.7"),
            ),
            (
                check("package", json!({"name": "tree"})),
                Some("package tree is not installed"),
            ),
            (
                check("package", json!({"name": "jq", "installed": false})),
                Some("package jq is installed (1.6-2.1), want it absent"),
            ),
            (
                check("service", json!({"name": "ssh.service", "enabled": true})),
                None,
            ),
            (
                check("service", json!({"name": "cron.service", "enabled": true})),
                Some("cron.service is not enabled (no .wants/ or .requires/ link)"),
            ),
            (
                check(
                    "service",
                    json!({"name": "apt-daily.service", "masked": true}),
                ),
                None,
            ),
            (
                check("service", json!({"name": "ssh.service", "masked": true})),
                Some("ssh.service is not masked"),
            ),
            (
                check("kernel_argument", json!({"contains": "console=ttyS0"})),
                None,
            ),
            (
                check("kernel_argument", json!({"contains": "console=tty"})),
                Some("has no console=tty"),
            ),
        ];
        let checks: Vec<Check> = cases.iter().map(|(c, _)| c.clone()).collect();
        let out = run(&checks, &r, None);
        for ((c, want), o) in cases.iter().zip(&out) {
            match want {
                None => assert_eq!(o.failure, None, "{c:?}"),
                Some(w) => assert!(
                    o.failure.as_deref().is_some_and(|f| f.contains(w)),
                    "{c:?}: {:?}, want {w:?}",
                    o.failure
                ),
            }
        }
        let text = report_text(&out);
        assert!(text.contains("node.yaml:1:1: tests.file: /etc/hostname has mode 0600, want 0644"));
        assert!(text.ends_with("checks failed\n"), "{text}");
        let _ = fs::remove_dir_all(&r);
    }

    #[test]
    fn commands_are_judged_from_their_results() {
        let d = std::env::temp_dir().join(format!("nodestamp-results-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("0.rc"), "0\n").unwrap();
        fs::write(d.join("0.out"), "jq-1.6\n").unwrap();
        fs::write(d.join("0.err"), "").unwrap();
        fs::write(d.join("1.rc"), "2\n").unwrap();
        fs::write(d.join("1.out"), "").unwrap();
        fs::write(d.join("1.err"), "boom\n").unwrap();
        let c0 = check(
            "command",
            json!({"index": 0, "run": "jq --version", "exit_status": 0, "stdout_contains": "jq-1.6"}),
        );
        let c1 = check("command", json!({"index": 1, "run": "x", "exit_status": 0}));
        let c2 = check(
            "command",
            json!({"index": 0, "run": "jq --version", "exit_status": 0, "stdout_contains": "jq-1.7"}),
        );
        let out = run(&[c0, c1, c2], Path::new("/nonexistent"), Some(&d));
        assert_eq!(out[0].failure, None);
        assert_eq!(
            out[1].failure.as_deref(),
            Some("command `x` exited 2, want 0 (stderr: \"boom\")")
        );
        assert!(
            out[2]
                .failure
                .as_deref()
                .unwrap()
                .contains("does not contain \"jq-1.7\"")
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn resolve_keeps_links_inside_the_root() {
        let r = Path::new("/r");
        assert_eq!(resolve(r, "/etc/../etc/x", true), Path::new("/r/etc/x"));
        assert_eq!(resolve(r, "/../../x", true), Path::new("/r/x"));
    }
}
