//! Hand-written decoding of the YAML tree into the spec types, collecting every problem.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use saphyr_parser::ScalarStyle;

use super::check::{self, Check, Problem, Shown};
use super::vars;
use super::yaml::{self, Kind, Node, Scalar, key_text};
use super::{
    Bootloader, Component, ComponentSource, Contents, Diagnostic, Diagnostics, Directory, Disk,
    Dropin, File, Filesystem, Firmware, Format, Group, Kubernetes, Link, Loaded, Os, Owner, Passwd,
    Pos, Run, Secret, SecretTarget, Span, Spanned, Spec, Storage, Survey, Systemd, Unit, User,
    VarUse,
};

mod node_tests;

pub(super) fn load(
    file: &str,
    bytes: &[u8],
    vars: &BTreeMap<String, String>,
) -> Result<Loaded, Diagnostics> {
    let survey = survey(file, bytes, vars)?;
    if survey.diagnostics.has_errors() {
        Err(survey.diagnostics)
    } else {
        Ok(Loaded {
            spec: survey.spec,
            warnings: survey.diagnostics.0,
        })
    }
}

/// Decodes as far as the YAML allows: fails only when the text is not a YAML document.
pub(super) fn survey(
    file: &str,
    bytes: &[u8],
    vars: &BTreeMap<String, String>,
) -> Result<Survey, Diagnostics> {
    let text = yaml::decode_utf8(file, bytes).map_err(|d| Diagnostics(vec![d]))?;
    let mut diags = Vec::new();
    let root = match yaml::parse(file, text, &mut diags) {
        Ok(root) => root,
        Err(d) => {
            diags.push(d);
            return Err(sorted(diags));
        }
    };
    let mut cx = Cx {
        file,
        src: text,
        vars,
        diags,
        uses: Vec::new(),
        paths: Vec::new(),
        symlinks: Vec::new(),
        units: Vec::new(),
    };
    let spec = cx.spec(root.as_ref());
    cx.cross_checks(&spec);
    Ok(Survey {
        spec,
        uses: cx.uses,
        diagnostics: sorted(cx.diags),
    })
}

fn sorted(mut diags: Vec<Diagnostic>) -> Diagnostics {
    diags.sort_by_key(|d| d.span.map(|s| s.start.offset));
    Diagnostics(diags)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Os,
    Kubernetes,
}

impl Layer {
    fn name(self) -> &'static str {
        match self {
            Layer::Os => "the OS layer",
            Layer::Kubernetes => "the Kubernetes layer",
        }
    }
}

/// A path some entry puts into the image.
struct PathEntry {
    path: String,
    span: Span,
    key_path: String,
    overwrite: bool,
    /// Directories and components have no `overwrite` key.
    can_overwrite: bool,
    layer: Layer,
}

struct SymlinkEntry {
    path: String,
    target: String,
    span: Span,
    key_path: String,
}

struct UnitEntry {
    name: String,
    span: Span,
    key_path: String,
    has_contents: bool,
    enabled: bool,
    layer: Layer,
}

/// The keys of one mapping.
struct Fields<'n> {
    entries: &'n [(Node, Node)],
    span: Span,
    path: String,
}

impl<'n> Fields<'n> {
    /// The value under `key`, even if null.
    fn raw(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| key_text(k) == Some(key))
            .map(|(_, v)| v)
    }

    /// The value under `key`; an explicit null counts as absent.
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.raw(key).filter(|v| !v.is_null())
    }

    fn key_span(&self, key: &str) -> Option<Span> {
        self.entries
            .iter()
            .find(|(k, _)| key_text(k) == Some(key))
            .map(|(k, _)| k.span)
    }

    fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

struct Cx<'a> {
    file: &'a str,
    src: &'a str,
    vars: &'a BTreeMap<String, String>,
    diags: Vec<Diagnostic>,
    /// Every `${NAME}` met, in the order met.
    uses: Vec<VarUse>,
    paths: Vec<PathEntry>,
    symlinks: Vec<SymlinkEntry>,
    units: Vec<UnitEntry>,
}

const TOP: &[&str] = &["version", "name", "os", "kubernetes", "disk", "tests"];
const OS: &[&str] = &[
    "from",
    "packages",
    "kernel_arguments",
    "storage",
    "systemd",
    "passwd",
    "run",
    "build",
];
const BUILD: &[&str] = &["secrets", "files"];
const SECRET: &[&str] = &["id", "target", "env"];
const RUN: &[&str] = &["command", "secrets"];
const STORAGE: &[&str] = &["files", "directories", "links"];
const FILE: &[&str] = &["path", "mode", "user", "group", "overwrite", "contents"];
const CONTENTS: &[&str] = &["inline", "local", "context", "source", "verification"];
const DIRECTORY: &[&str] = &["path", "mode", "user", "group"];
const LINK: &[&str] = &["path", "target", "hard", "overwrite"];
const SYSTEMD: &[&str] = &["units"];
const UNIT: &[&str] = &["name", "enabled", "mask", "contents", "dropins"];
const DROPIN: &[&str] = &["name", "contents"];
const PASSWD: &[&str] = &["users", "groups"];
const USER: &[&str] = &[
    "name",
    "uid",
    "groups",
    "shell",
    "password_hash",
    "ssh_authorized_keys",
    "password",
];
const GROUP: &[&str] = &["name", "gid"];
const KUBERNETES: &[&str] = &[
    "version",
    "components",
    "storage",
    "systemd",
    "sysctl",
    "modules",
];
const COMPONENT: &[&str] = &[
    "name", "url", "sha256", "local", "context", "dest", "mode", "extract",
];
const DISK: &[&str] = &["size", "firmware", "bootloader", "filesystem", "formats"];

impl Cx<'_> {
    // ---- reporting -------------------------------------------------------------------------

    fn error(&mut self, path: &str, span: Span, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(self.file, path, Some(span), message));
    }

    fn error_help(
        &mut self,
        path: &str,
        span: Span,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::error(self.file, path, Some(span), message).with_help(help));
    }

    fn problem(&mut self, path: &str, span: Span, p: Problem) {
        let mut d = Diagnostic::error(self.file, path, Some(span), p.message);
        d.help = p.help;
        self.diags.push(d);
    }

    fn warn(&mut self, rule: &'static str, path: &str, span: Span, p: Problem) {
        let mut d = Diagnostic::warning(self.file, path, Some(span), p.message).with_rule(rule);
        d.help = p.help;
        self.diags.push(d);
    }

    // ---- generic readers -------------------------------------------------------------------

    /// `node` as a mapping whose keys are all in `keys`; unknown keys are reported.
    fn map<'n>(&mut self, node: &'n Node, path: &str, keys: &[&str]) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.error(
                path,
                node.span,
                format!(
                    "expected a mapping with the keys {}, got {}",
                    keys.join(", "),
                    node.describe()
                ),
            );
            return None;
        };
        for (k, _) in entries {
            let name = key_text(k).unwrap_or("");
            if keys.contains(&name) {
                continue;
            }
            let message = format!("unknown key `{name}`; expected one of {}", keys.join(", "));
            let kpath = join(path, name);
            if name == "<<" {
                self.error_help(
                    &kpath,
                    k.span,
                    message,
                    "YAML merge keys (`<<`) are not supported; write the keys out, or use an alias for the whole mapping",
                );
            } else if let Some(s) = check::suggest(name, keys) {
                self.error_help(&kpath, k.span, message, format!("did you mean `{s}`?"));
            } else {
                self.error(&kpath, k.span, message);
            }
        }
        Some(Fields {
            entries,
            span: node.span,
            path: path.to_owned(),
        })
    }

    fn scalar<'n>(&mut self, node: &'n Node, path: &str, expected: &str) -> Option<&'n Scalar> {
        match &node.kind {
            Kind::Scalar(s) if !s.is_null() => Some(s),
            _ => {
                self.error(
                    path,
                    node.span,
                    format!("expected {expected}, got {}", node.describe()),
                );
                None
            }
        }
    }

    /// A scalar's text with `${VAR}` substituted.
    fn text(&mut self, node: &Node, path: &str, expected: &str) -> Option<Spanned<String>> {
        let s = self.scalar(node, path, expected)?;
        for r in vars::references(&s.text) {
            let span = self.sub_span(node, s, r.range);
            self.uses.push(VarUse {
                name: r.name.to_owned(),
                default: r.default.map(str::to_owned),
                path: path.to_owned(),
                span,
            });
        }
        match vars::substitute(&s.text, self.vars) {
            Ok(v) => Some(Spanned::new(v, node.span)),
            Err(errors) => {
                for e in errors {
                    let span = self.sub_span(node, s, e.range);
                    self.problem(
                        path,
                        span,
                        Problem {
                            message: e.message,
                            help: e.help,
                        },
                    );
                }
                None
            }
        }
    }

    /// The span of `range` (bytes of the scalar's text) in the source, when the scalar is
    /// written on one line without escapes; otherwise the whole scalar's span.
    fn sub_span(&self, node: &Node, s: &Scalar, range: Range<usize>) -> Span {
        let whole = node.span;
        let Some(raw) = self.src.get(whole.start.offset..whole.end.offset) else {
            return whole;
        };
        let (inner, lead) = match s.style {
            ScalarStyle::Plain => (Some(raw), 0),
            ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                (raw.get(1..raw.len().saturating_sub(1)), 1)
            }
            _ => (None, 0),
        };
        let (Some(before), Some(within)) = (s.text.get(..range.start), s.text.get(range)) else {
            return whole;
        };
        if inner != Some(s.text.as_str()) || s.text.contains('\n') {
            return whole;
        }
        let col = whole.start.col + lead + before.chars().count() as u32;
        let offset = whole.start.offset + lead as usize + before.len();
        Span {
            start: Pos {
                line: whole.start.line,
                col,
                offset,
            },
            end: Pos {
                line: whole.start.line,
                col: col + within.chars().count() as u32,
                offset: offset + within.len(),
            },
        }
    }

    fn checked(
        &mut self,
        node: &Node,
        path: &str,
        expected: &str,
        rule: fn(&str) -> Check,
    ) -> Option<Spanned<String>> {
        let t = self.text(node, path, expected)?;
        match rule(&t.value) {
            Ok(()) => Some(t),
            Err(p) => {
                self.problem(path, t.span, p);
                None
            }
        }
    }

    fn field(
        &mut self,
        f: &Fields,
        key: &str,
        expected: &str,
        rule: fn(&str) -> Check,
    ) -> Option<Spanned<String>> {
        let node = f.get(key)?;
        self.checked(node, &f.path(key), expected, rule)
    }

    fn missing(&mut self, f: &Fields, key: &str, expected: &str) {
        let path = f.path(key);
        match f.raw(key) {
            Some(v) => self.error(
                &path,
                v.span,
                format!("`{key}` has no value; expected {expected}"),
            ),
            None => self.error(
                &path,
                Span::at(f.span.start),
                format!("missing required key `{key}` ({expected})"),
            ),
        }
    }

    fn required(
        &mut self,
        f: &Fields,
        key: &str,
        expected: &str,
        rule: fn(&str) -> Check,
    ) -> Option<Spanned<String>> {
        if f.get(key).is_none() {
            self.missing(f, key, expected);
            return None;
        }
        self.field(f, key, expected, rule)
    }

    fn list<'n>(&mut self, f: &Fields<'n>, key: &str) -> &'n [Node] {
        let Some(node) = f.get(key) else {
            return &[];
        };
        match &node.kind {
            Kind::Seq(items) => items,
            Kind::Scalar(_) => {
                self.error_help(
                    &f.path(key),
                    node.span,
                    format!("expected a list, got {}", node.describe()),
                    format!("write `{key}: [item, …]` or one `- item` per line"),
                );
                &[]
            }
            Kind::Map(_) => {
                self.error(&f.path(key), node.span, "expected a list, got a mapping");
                &[]
            }
        }
    }

    fn strings(
        &mut self,
        f: &Fields,
        key: &str,
        expected: &str,
        rule: fn(&str) -> Check,
    ) -> Vec<Spanned<String>> {
        let path = f.path(key);
        self.list(f, key)
            .iter()
            .enumerate()
            .filter_map(|(i, n)| self.checked(n, &index(&path, i), expected, rule))
            .collect()
    }

    fn bool(&mut self, f: &Fields, key: &str) -> Option<bool> {
        let node = f.get(key)?;
        let path = f.path(key);
        let t = self.text(node, &path, "true or false")?;
        match t.value.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            other => {
                let p = Problem::new(format!("expected true or false, got {}", Shown(other)));
                let yaml11 = ["yes", "no", "on", "off", "y", "n"];
                let p = if yaml11.contains(&other.to_ascii_lowercase().as_str()) {
                    p.help("YAML 1.2 has no yes/no/on/off booleans; write true or false")
                } else {
                    p
                };
                self.problem(&path, t.span, p);
                None
            }
        }
    }

    fn uint(&mut self, node: &Node, path: &str, what: &str) -> Option<u32> {
        let t = self.text(node, path, what)?;
        match t.value.parse::<u32>() {
            Ok(v) if t.value.bytes().all(|b| b.is_ascii_digit()) => Some(v),
            _ => {
                self.error(
                    path,
                    t.span,
                    format!(
                        "expected {what} (a whole number from 0 to {}), got {}",
                        u32::MAX,
                        Shown(&t.value)
                    ),
                );
                None
            }
        }
    }

    fn mode(&mut self, f: &Fields, key: &str) -> Option<u32> {
        let node = f.get(key)?;
        let path = f.path(key);
        let t = self.text(node, &path, "an octal mode like 0644")?;
        match check::mode(&t.value) {
            Ok((v, warning)) => {
                if let Some(w) = warning {
                    self.warn("DecimalMode", &path, t.span, w);
                }
                Some(v)
            }
            Err(p) => {
                self.problem(&path, t.span, p);
                None
            }
        }
    }

    /// `user:`/`group:` as a name, a numeric id, or Butane's `{id: …}` / `{name: …}`.
    fn owner(&mut self, f: &Fields, key: &str) -> Option<Owner> {
        let node = f.get(key)?;
        let path = f.path(key);
        if let Kind::Map(_) = node.kind {
            let m = self.map(node, &path, &["id", "name"])?;
            return match (m.get("id"), m.get("name")) {
                (Some(id), None) => self.uint(id, &m.path("id"), "a numeric id").map(Owner::Id),
                (None, Some(name)) => self
                    .checked(name, &m.path("name"), "a name", check::account_name)
                    .map(|n| Owner::Name(n.value)),
                _ => {
                    self.error(&path, node.span, "expected exactly one of `id` or `name`");
                    None
                }
            };
        }
        let t = self.text(node, &path, "a name or a numeric id")?;
        if !t.value.is_empty() && t.value.bytes().all(|b| b.is_ascii_digit()) {
            return match t.value.parse::<u32>() {
                Ok(id) => Some(Owner::Id(id)),
                Err(_) => {
                    self.error(&path, t.span, format!("id {} is too large", t.value));
                    None
                }
            };
        }
        match check::account_name(&t.value) {
            Ok(()) => Some(Owner::Name(t.value)),
            Err(p) => {
                self.problem(&path, t.span, p);
                None
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        node: &Node,
        path: &str,
        what: &str,
        all: &[(&str, T)],
    ) -> Option<T> {
        let names: Vec<&str> = all.iter().map(|(s, _)| *s).collect();
        let t = self.text(node, path, &format!("one of {}", names.join(", ")))?;
        if let Some(&(_, v)) = all.iter().find(|(s, _)| *s == t.value) {
            return Some(v);
        }
        let message = if let [only] = names.as_slice() {
            format!(
                "unsupported {what} {}; only `{only}` is supported",
                Shown(&t.value)
            )
        } else {
            format!(
                "unknown {what} {}; expected one of {}",
                Shown(&t.value),
                names.join(", ")
            )
        };
        match check::suggest(&t.value, &names) {
            Some(s) => self.error_help(path, t.span, message, format!("did you mean `{s}`?")),
            None => self.error(path, t.span, message),
        }
        None
    }

    // ---- the spec ----------------------------------------------------------------------------

    fn spec(&mut self, root: Option<&Node>) -> Spec {
        let mut spec = Spec {
            version: 1,
            name: "node".into(),
            os: Os::default(),
            kubernetes: None,
            disk: None,
            tests: None,
            file_name: self.file.to_owned(),
        };
        let root = match root {
            Some(r) if !r.is_null() => r,
            other => {
                let start = Pos {
                    line: 1,
                    col: 1,
                    offset: 0,
                };
                self.error_help(
                    "",
                    other.map_or(Span::at(start), |r| r.span),
                    "the spec is empty; expected a mapping with at least `version: 1` and `os:`",
                    "start from `version: 1` and `os: { from: debian:bookworm }`",
                );
                return spec;
            }
        };
        let Some(f) = self.map(root, "", TOP) else {
            return spec;
        };
        match f.get("version") {
            None => self.missing(&f, "version", "1"),
            Some(n) => {
                if let Some(t) = self.text(n, "version", "1")
                    && t.value != "1"
                {
                    self.error(
                        "version",
                        t.span,
                        format!(
                            "unsupported spec version {}; this nodestamp reads version 1",
                            Shown(&t.value)
                        ),
                    );
                }
            }
        }
        if let Some(name) = self.field(&f, "name", "a name", check::simple_name) {
            spec.name = name.value;
        }
        match f.get("os") {
            None => self.missing(&f, "os", "a mapping with at least `from`"),
            Some(n) => spec.os = self.os(n),
        }
        spec.kubernetes = f.get("kubernetes").map(|n| self.kubernetes(n));
        spec.disk = f.get("disk").map(|n| self.disk(n));
        spec.tests = f.get("tests").map(|n| self.tests(n));
        spec
    }

    fn os(&mut self, node: &Node) -> Os {
        let mut os = Os {
            span: node.span,
            ..Os::default()
        };
        let Some(f) = self.map(node, "os", OS) else {
            return os;
        };
        if let Some(from) = self.required(&f, "from", "an image reference", check::image_ref) {
            os.from = from;
        }
        os.packages = self.strings(&f, "packages", "a package name", check::package);
        let mut seen = HashSet::new();
        for (i, p) in os.packages.iter().enumerate() {
            if !seen.insert(p.value.as_str()) {
                self.diags.push(
                    Diagnostic::warning(
                        self.file,
                        &index(&f.path("packages"), i),
                        Some(p.span),
                        format!("package `{}` is listed more than once", p.value),
                    )
                    .with_rule("DuplicatePackage"),
                );
            }
        }
        os.kernel_arguments = self.strings(
            &f,
            "kernel_arguments",
            "a kernel argument",
            check::kernel_arg,
        );
        if let Some(n) = f.get("storage") {
            os.storage = self.storage(n, "os.storage", Layer::Os);
        }
        if let Some(n) = f.get("systemd") {
            os.systemd = self.systemd(n, "os.systemd", Layer::Os);
        }
        if let Some(n) = f.get("passwd") {
            os.passwd = self.passwd(n, "os.passwd");
        }
        if let Some(n) = f.get("build") {
            os.build = self.build(n, "os.build");
        }
        let rpath = f.path("run");
        for (i, n) in self.list(&f, "run").iter().enumerate() {
            if let Some(r) = self.run(n, &index(&rpath, i)) {
                os.run.push(r);
            }
        }
        os
    }

    /// An `os.run` entry: a command, or `{command, secrets}`.
    fn run(&mut self, node: &Node, path: &str) -> Option<Run> {
        if !matches!(node.kind, Kind::Map(_)) {
            let c = self.checked(node, path, "a shell command", check::non_empty)?;
            return Some(Run {
                value: c.value,
                span: c.span,
                secrets: Vec::new(),
            });
        }
        let f = self.map(node, path, RUN)?;
        let command = self.required(&f, "command", "a shell command", check::non_empty);
        let secrets = self.secrets(&f);
        Some(Run {
            value: command?.value,
            span: node.span,
            secrets,
        })
    }

    fn secrets(&mut self, f: &Fields) -> Vec<Secret> {
        let spath = f.path("secrets");
        let mut out: Vec<Secret> = Vec::new();
        for (i, n) in self.list(f, "secrets").iter().enumerate() {
            let ipath = index(&spath, i);
            let Some(sf) = self.map(n, &ipath, SECRET) else {
                continue;
            };
            let id = self.required(&sf, "id", "a secret id", check::secret_id);
            let target = self.field(&sf, "target", "an absolute path", check::abs_path);
            let env = self.field(&sf, "env", "an environment variable name", check::env_name);
            if sf.get("target").is_some() && sf.get("env").is_some() {
                self.error_help(
                    &ipath,
                    sf.key_span("env").unwrap_or(n.span),
                    "a secret is either a file (`target`) or an environment variable (`env`), not both",
                    "list the secret twice to get both",
                );
                continue;
            }
            let Some(id) = id else { continue };
            let target = match (target, env) {
                (Some(t), None) => SecretTarget::File(t.value),
                (None, Some(e)) => SecretTarget::Env(e.value),
                (None, None) if sf.get("target").is_none() && sf.get("env").is_none() => {
                    SecretTarget::File(format!("/run/secrets/{}", id.value))
                }
                _ => continue,
            };
            if let Some(prev) = out.iter().find(|s| s.target == target) {
                let what = match &target {
                    SecretTarget::File(p) => format!("file {p}"),
                    SecretTarget::Env(e) => format!("variable {e}"),
                };
                let message = format!(
                    "secret {what} is already given by secret `{}` (line {})",
                    prev.id, prev.span.start.line
                );
                self.error(&ipath, n.span, message);
                continue;
            }
            out.push(Secret {
                span: n.span,
                id: id.value,
                target,
            });
        }
        out
    }

    /// `os.build`: secrets and files for the package and `run` steps only.
    fn build(&mut self, node: &Node, path: &str) -> super::Build {
        let mut b = super::Build::default();
        let Some(f) = self.map(node, path, BUILD) else {
            return b;
        };
        b.secrets = self.secrets(&f);
        let fpath = f.path("files");
        let mut seen: HashMap<String, u32> = HashMap::new();
        for (i, n) in self.list(&f, "files").iter().enumerate() {
            let ipath = index(&fpath, i);
            // Build files are not in the image: they take no part in the image's path checks.
            let before = self.paths.len();
            let file = self.file(n, &ipath, Layer::Os);
            self.paths.truncate(before);
            if let Some(k) = self.map_quiet(n).and_then(|m| m.key_span("overwrite")) {
                self.error(
                    &join(&ipath, "overwrite"),
                    k,
                    "build-time files are never in the image, so `overwrite` does not apply",
                );
            }
            for (key, owner) in [("user", &file.user), ("group", &file.group)] {
                if let Some(super::Owner::Name(name)) = owner {
                    let span = self.map_quiet(n).and_then(|m| m.get(key).map(|v| v.span));
                    self.error_help(
                        &join(&ipath, key),
                        span.unwrap_or(n.span),
                        format!("build-time files take numeric owners only, got the name `{name}`"),
                        "they are made apart from the OS, where no /etc/passwd resolves names; write the id",
                    );
                }
            }
            if file.path.is_empty() {
                continue;
            }
            let name = Spanned::new(file.path.clone(), file.span);
            self.unique(&mut seen, &name, &join(&ipath, "path"), "build-time file");
            b.files.push(file);
        }
        b
    }

    /// `node`'s entries as [`Fields`], without reporting anything.
    fn map_quiet<'n>(&self, node: &'n Node) -> Option<Fields<'n>> {
        match &node.kind {
            Kind::Map(entries) => Some(Fields {
                entries,
                span: node.span,
                path: String::new(),
            }),
            _ => None,
        }
    }

    // ---- storage -----------------------------------------------------------------------------

    fn storage(&mut self, node: &Node, path: &str, layer: Layer) -> Storage {
        let mut st = Storage::default();
        let Some(f) = self.map(node, path, STORAGE) else {
            return st;
        };
        for (i, n) in self.list(&f, "files").iter().enumerate() {
            st.files
                .push(self.file(n, &index(&f.path("files"), i), layer));
        }
        for (i, n) in self.list(&f, "directories").iter().enumerate() {
            st.directories
                .push(self.directory(n, &index(&f.path("directories"), i), layer));
        }
        for (i, n) in self.list(&f, "links").iter().enumerate() {
            st.links
                .push(self.link(n, &index(&f.path("links"), i), layer));
        }
        st
    }

    fn entry_path(
        &mut self,
        f: &Fields,
        layer: Layer,
        overwrite: Option<bool>,
    ) -> Option<Spanned<String>> {
        let p = self.required(f, "path", "an absolute path", check::abs_path)?;
        self.paths.push(PathEntry {
            path: p.value.clone(),
            span: p.span,
            key_path: f.path.clone(),
            overwrite: overwrite.unwrap_or(false),
            can_overwrite: overwrite.is_some(),
            layer,
        });
        Some(p)
    }

    fn file(&mut self, node: &Node, path: &str, layer: Layer) -> File {
        let mut file = File {
            span: node.span,
            ..File::default()
        };
        let Some(f) = self.map(node, path, FILE) else {
            return file;
        };
        file.overwrite = self.bool(&f, "overwrite").unwrap_or(false);
        file.path = self
            .entry_path(&f, layer, Some(file.overwrite))
            .map(|p| p.value)
            .unwrap_or_default();
        file.mode = self.mode(&f, "mode");
        file.user = self.owner(&f, "user");
        file.group = self.owner(&f, "group");
        if let Some(n) = f.get("contents") {
            (file.contents, file.context) = self.contents(n, &f.path("contents"));
        }
        file
    }

    /// `context: NAME` beside `local:` (a component or contents): the named build context the
    /// path is read from.
    fn context(&mut self, f: &Fields) -> Option<Spanned<String>> {
        f.get("context")?;
        let name = self.field(
            f,
            "context",
            "the name of a build context (--build-context NAME=…)",
            check::context_name,
        );
        if f.get("local").is_none() {
            self.error(
                &f.path("context"),
                f.key_span("context").unwrap_or(f.span),
                "`context` names the build context a `local` path is read from, and there is no `local` here",
            );
            return None;
        }
        name
    }

    /// The contents and, with `context:`, the named build context of its `local` path.
    fn contents(&mut self, node: &Node, path: &str) -> (Contents, Option<Spanned<String>>) {
        let Some(f) = self.map(node, path, CONTENTS) else {
            return (Contents::default(), None);
        };
        let context = self.context(&f);
        (self.contents_of(&f, path), context)
    }

    fn contents_of(&mut self, f: &Fields, path: &str) -> Contents {
        let given: Vec<&str> = ["inline", "local", "source"]
            .into_iter()
            .filter(|k| f.get(k).is_some())
            .collect();
        if given.len() > 1 {
            let list = given
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(" and ");
            self.error(
                path,
                f.span,
                format!("contents take exactly one of `inline`, `local` or `source`, got {list}"),
            );
            return Contents::default();
        }
        if f.get("source").is_none()
            && let Some(v) = f.key_span("verification")
        {
            self.error(
                &f.path("verification"),
                v,
                "`verification` only applies to `source`; inline and local contents need none",
            );
        }
        if let Some(n) = f.get("inline") {
            return self
                .text(n, &f.path("inline"), "a string")
                .map(|t| Contents::Inline(t.value))
                .unwrap_or_default();
        }
        if let Some(n) = f.get("local") {
            return self
                .checked(
                    n,
                    &f.path("local"),
                    "a path in the build context",
                    check::local_path,
                )
                .map(|t| Contents::Local(t.value))
                .unwrap_or_default();
        }
        let Some(n) = f.get("source") else {
            return Contents::default();
        };
        let url = self.checked(n, &f.path("source"), "an http(s) URL", check::http_url);
        let sha256 = match f.get("verification") {
            None => {
                if url.is_some() {
                    self.error_help(
                        &f.path("verification"),
                        n.span,
                        "a `source` URL needs `verification: { hash: sha256-<hex> }` so the download is pinned",
                        "compute the hash with `curl -sL <url> | sha256sum`",
                    );
                }
                None
            }
            Some(v) => {
                let vpath = f.path("verification");
                self.map(v, &vpath, &["hash"]).and_then(|vf| {
                    let hash =
                        self.required(&vf, "hash", "sha256-<64 hex digits>", check::no_check)?;
                    match check::file_hash(&hash.value) {
                        Ok(hex) => Some(hex),
                        Err(p) => {
                            self.problem(&vf.path("hash"), hash.span, p);
                            None
                        }
                    }
                })
            }
        };
        match (url, sha256) {
            (Some(url), Some(sha256)) => Contents::Source {
                url: url.value,
                sha256,
            },
            _ => Contents::default(),
        }
    }

    fn directory(&mut self, node: &Node, path: &str, layer: Layer) -> Directory {
        let mut dir = Directory {
            span: node.span,
            ..Directory::default()
        };
        let Some(f) = self.map(node, path, DIRECTORY) else {
            return dir;
        };
        dir.path = self
            .entry_path(&f, layer, None)
            .map(|p| p.value)
            .unwrap_or_default();
        dir.mode = self.mode(&f, "mode");
        dir.user = self.owner(&f, "user");
        dir.group = self.owner(&f, "group");
        dir
    }

    fn link(&mut self, node: &Node, path: &str, layer: Layer) -> Link {
        let mut link = Link {
            span: node.span,
            ..Link::default()
        };
        let Some(f) = self.map(node, path, LINK) else {
            return link;
        };
        link.hard = self.bool(&f, "hard").unwrap_or(false);
        link.overwrite = self.bool(&f, "overwrite").unwrap_or(false);
        let p = self.entry_path(&f, layer, Some(link.overwrite));
        link.path = p.as_ref().map(|p| p.value.clone()).unwrap_or_default();
        let target = if link.hard {
            self.required(&f, "target", "an absolute path", check::abs_path)
        } else {
            self.required(&f, "target", "a path", check::non_empty)
        };
        if let Some(t) = target {
            if !link.hard && t.value.contains(|c: char| c == '\0' || c.is_control()) {
                self.error(
                    &f.path("target"),
                    t.span,
                    "link targets must not contain control characters",
                );
            } else if let (Some(p), false) = (&p, link.hard) {
                self.symlinks.push(SymlinkEntry {
                    path: p.value.clone(),
                    target: t.value.clone(),
                    span: p.span,
                    key_path: path.to_owned(),
                });
            }
            link.target = t.value;
        }
        link
    }

    // ---- systemd -----------------------------------------------------------------------------

    fn systemd(&mut self, node: &Node, path: &str, layer: Layer) -> Systemd {
        let mut sd = Systemd::default();
        let Some(f) = self.map(node, path, SYSTEMD) else {
            return sd;
        };
        for (i, n) in self.list(&f, "units").iter().enumerate() {
            sd.units
                .push(self.unit(n, &index(&f.path("units"), i), layer));
        }
        sd
    }

    fn unit(&mut self, node: &Node, path: &str, layer: Layer) -> Unit {
        let mut unit = Unit {
            span: node.span,
            ..Unit::default()
        };
        let Some(f) = self.map(node, path, UNIT) else {
            return unit;
        };
        let name = self.required(
            &f,
            "name",
            "a unit name like kubelet.service",
            check::unit_name,
        );
        unit.enabled = self.bool(&f, "enabled");
        unit.mask = self.bool(&f, "mask").unwrap_or(false);
        unit.contents = f
            .get("contents")
            .and_then(|n| self.text(n, &f.path("contents"), "the unit file's text"))
            .map(|t| t.value);
        let dpath = f.path("dropins");
        let mut seen: HashMap<String, u32> = HashMap::new();
        for (i, n) in self.list(&f, "dropins").iter().enumerate() {
            let ipath = index(&dpath, i);
            let Some(df) = self.map(n, &ipath, DROPIN) else {
                continue;
            };
            let dname = self.required(
                &df,
                "name",
                "a file name like 10-override.conf",
                check::dropin_name,
            );
            let contents = df
                .get("contents")
                .and_then(|c| self.text(c, &df.path("contents"), "the drop-in's text"))
                .map(|t| t.value)
                .unwrap_or_default();
            if let Some(d) = &dname {
                if let Some(line) = seen.get(&d.value) {
                    self.error(
                        &df.path("name"),
                        d.span,
                        format!("drop-in `{}` is already defined on line {line}", d.value),
                    );
                } else {
                    seen.insert(d.value.clone(), d.span.start.line);
                }
            }
            unit.dropins.push(Dropin {
                span: n.span,
                name: dname.map(|d| d.value).unwrap_or_default(),
                contents,
            });
        }
        if unit.mask && unit.enabled == Some(true) {
            self.error_help(
                path,
                f.key_span("mask").unwrap_or(node.span),
                "a unit cannot be both masked and enabled",
                "remove `enabled: true` or `mask: true`",
            );
        }
        if unit.mask && unit.contents.is_some() {
            self.error_help(
                path,
                f.key_span("mask").unwrap_or(node.span),
                "a masked unit cannot have contents: masking replaces the unit file with a link to /dev/null",
                "remove `contents` or `mask: true`",
            );
        }
        if let Some(name) = name {
            if unit.contents.is_none()
                && unit.enabled.is_none()
                && !unit.mask
                && unit.dropins.is_empty()
            {
                self.warn(
                    "UnitWithoutEffect",
                    path,
                    name.span,
                    Problem::new(format!(
                        "unit `{}` has no contents, drop-ins, `enabled` or `mask`, so this entry does nothing",
                        name.value
                    )),
                );
            }
            self.units.push(UnitEntry {
                name: name.value.clone(),
                span: name.span,
                key_path: path.to_owned(),
                has_contents: unit.contents.is_some(),
                enabled: unit.enabled == Some(true),
                layer,
            });
            unit.name = name.value;
        }
        unit
    }

    // ---- passwd ------------------------------------------------------------------------------

    fn passwd(&mut self, node: &Node, path: &str) -> Passwd {
        let mut pw = Passwd::default();
        let Some(f) = self.map(node, path, PASSWD) else {
            return pw;
        };
        let mut names: HashMap<String, u32> = HashMap::new();
        for (i, n) in self.list(&f, "users").iter().enumerate() {
            let ipath = index(&f.path("users"), i);
            let Some(uf) = self.map(n, &ipath, USER) else {
                continue;
            };
            let mut user = User {
                span: n.span,
                ..User::default()
            };
            if let Some(name) = self.required(&uf, "name", "a user name", check::account_name) {
                self.unique(&mut names, &name, &uf.path("name"), "user");
                user.name = name.value;
            }
            user.uid = uf
                .get("uid")
                .and_then(|u| self.uint(u, &uf.path("uid"), "a numeric uid"));
            user.groups = self
                .strings(&uf, "groups", "a group name", check::account_name)
                .into_iter()
                .map(|g| g.value)
                .collect();
            user.shell = self
                .field(
                    &uf,
                    "shell",
                    "an absolute path like /bin/bash",
                    check::abs_path,
                )
                .map(|s| s.value);
            if let Some(span) = uf.key_span("password") {
                self.error_help(
                    &uf.path("password"),
                    span,
                    "plaintext passwords are not accepted; set `password_hash` instead",
                    "hash the password with `mkpasswd --method=yescrypt` or `openssl passwd -6` and put the result in `password_hash`",
                );
            }
            if let Some(h) = self.field(&uf, "password_hash", "a crypt(3) hash", check::non_empty) {
                let looks_hashed = h.value.starts_with('$') || h.value == "!" || h.value == "*";
                if !looks_hashed {
                    self.warn(
                        "PasswordNotHashed",
                        &uf.path("password_hash"),
                        h.span,
                        Problem::new("`password_hash` does not look like a crypt(3) hash such as $y$… or $6$…")
                            .help("hash the password with `mkpasswd --method=yescrypt` or `openssl passwd -6`"),
                    );
                }
                user.password_hash = Some(h.value);
            }
            user.ssh_authorized_keys = self
                .strings(
                    &uf,
                    "ssh_authorized_keys",
                    "an SSH public key",
                    check::one_line,
                )
                .into_iter()
                .map(|k| k.value)
                .collect();
            pw.users.push(user);
        }
        let mut names: HashMap<String, u32> = HashMap::new();
        for (i, n) in self.list(&f, "groups").iter().enumerate() {
            let ipath = index(&f.path("groups"), i);
            let Some(gf) = self.map(n, &ipath, GROUP) else {
                continue;
            };
            let mut group = Group {
                span: n.span,
                ..Group::default()
            };
            if let Some(name) = self.required(&gf, "name", "a group name", check::account_name) {
                self.unique(&mut names, &name, &gf.path("name"), "group");
                group.name = name.value;
            }
            group.gid = gf
                .get("gid")
                .and_then(|g| self.uint(g, &gf.path("gid"), "a numeric gid"));
            pw.groups.push(group);
        }
        pw
    }

    /// Reports `name` if it was seen before (by line), else records it.
    fn unique(
        &mut self,
        seen: &mut HashMap<String, u32>,
        name: &Spanned<String>,
        path: &str,
        what: &str,
    ) {
        if let Some(line) = seen.get(&name.value) {
            self.error(
                path,
                name.span,
                format!("{what} `{}` is already defined on line {line}", name.value),
            );
        } else {
            seen.insert(name.value.clone(), name.span.start.line);
        }
    }

    // ---- kubernetes --------------------------------------------------------------------------

    fn kubernetes(&mut self, node: &Node) -> Kubernetes {
        let mut k = Kubernetes {
            span: node.span,
            ..Kubernetes::default()
        };
        let Some(f) = self.map(node, "kubernetes", KUBERNETES) else {
            return k;
        };
        k.version = self.field(&f, "version", "a version like 1.31.3", check::one_line);
        let cpath = f.path("components");
        let mut names = HashMap::new();
        for (i, n) in self.list(&f, "components").iter().enumerate() {
            if let Some(c) = self.component(n, &index(&cpath, i), &mut names) {
                k.components.push(c);
            }
        }
        if let Some(n) = f.get("storage") {
            k.storage = self.storage(n, "kubernetes.storage", Layer::Kubernetes);
        }
        if let Some(n) = f.get("systemd") {
            k.systemd = self.systemd(n, "kubernetes.systemd", Layer::Kubernetes);
        }
        if let Some(n) = f.get("sysctl") {
            let spath = f.path("sysctl");
            match &n.kind {
                Kind::Map(entries) => {
                    for (key, value) in entries {
                        let name = key_text(key).unwrap_or("");
                        let epath = format!("{spath}[{name:?}]");
                        if let Err(p) = check::sysctl_key(name) {
                            self.problem(&epath, key.span, p);
                            continue;
                        }
                        if let Some(v) =
                            self.checked(value, &epath, "a sysctl value", check::sysctl_value)
                        {
                            k.sysctl.push((Spanned::new(name.to_owned(), key.span), v));
                        }
                    }
                }
                _ => self.error_help(
                    &spath,
                    n.span,
                    format!(
                        "expected a mapping of sysctl keys to values, got {}",
                        n.describe()
                    ),
                    "write e.g. `sysctl: { net.ipv4.ip_forward: 1 }`",
                ),
            }
        }
        k.modules = self.strings(&f, "modules", "a kernel module name", check::module);
        k
    }

    fn component(
        &mut self,
        node: &Node,
        path: &str,
        names: &mut HashMap<String, u32>,
    ) -> Option<Component> {
        let f = self.map(node, path, COMPONENT)?;
        let name = self.required(
            &f,
            "name",
            "a component name like kubelet",
            check::simple_name,
        );
        if let Some(n) = &name {
            self.unique(names, n, &f.path("name"), "component");
        }
        let url = self.field(&f, "url", "an http(s) URL", check::http_url);
        let sha256 = self.field(&f, "sha256", "a sha256 digest", check::sha256);
        let local = self.field(
            &f,
            "local",
            "a path in the build context",
            check::local_path,
        );
        let context = self.context(&f);
        let extract = self.bool(&f, "extract").unwrap_or(false);
        let mode = self.mode(&f, "mode");
        let dest = self.field(&f, "dest", "an absolute path", check::abs_path);
        let (has_url, has_local, has_sha) = (
            f.get("url").is_some(),
            f.get("local").is_some(),
            f.get("sha256").is_some(),
        );
        let anchor = f.key_span("name").unwrap_or(Span::at(f.span.start));
        if has_url && has_local {
            self.error_help(
                path,
                f.key_span("local").unwrap_or(anchor),
                "a component takes either `url` + `sha256` or `local`, not both",
                "remove one of them",
            );
        } else if !has_url && !has_local {
            self.error(
                path,
                anchor,
                "a component needs `url` + `sha256` (a download) or `local` (a path in the build context)",
            );
        } else if has_url && !has_sha {
            self.error_help(
                &f.path("sha256"),
                f.key_span("url").unwrap_or(anchor),
                "a `url` needs `sha256` (64 lowercase hex digits) so the download is pinned",
                "compute it with `curl -sL <url> | sha256sum`",
            );
        } else if has_local && has_sha {
            self.error(
                &f.path("sha256"),
                f.key_span("sha256").unwrap_or(anchor),
                "`sha256` only applies to `url`; files from the build context need none",
            );
        }
        if let Some(d) = &dest
            && !extract
        {
            self.paths.push(PathEntry {
                path: d.value.clone(),
                span: d.span,
                key_path: path.to_owned(),
                overwrite: false,
                can_overwrite: false,
                layer: Layer::Kubernetes,
            });
        }
        let source = match (url, sha256, local) {
            (Some(url), Some(sha256), None) => ComponentSource::Http {
                url: url.value,
                sha256: sha256.value,
            },
            (None, None, Some(local)) => ComponentSource::Local(local.value),
            _ => return None,
        };
        Some(Component {
            span: node.span,
            name: name?.value,
            source,
            context,
            dest: dest.map(|d| d.value),
            mode,
            extract,
        })
    }

    // ---- disk --------------------------------------------------------------------------------

    fn disk(&mut self, node: &Node) -> Disk {
        let mut disk = Disk {
            span: node.span,
            ..Disk::default()
        };
        let Some(f) = self.map(node, "disk", DISK) else {
            return disk;
        };
        if let Some(n) = f.get("size")
            && let Some(t) = self.text(n, &f.path("size"), "a size like 8GiB")
        {
            match check::size(&t.value) {
                Ok(v) => disk.size = Some(v),
                Err(p) => self.problem(&f.path("size"), t.span, p),
            }
        }
        if let Some(n) = f.get("firmware") {
            disk.firmware = self
                .choice(n, &f.path("firmware"), "firmware", Firmware::ALL)
                .unwrap_or_default();
        }
        if let Some(n) = f.get("bootloader") {
            disk.bootloader = self
                .choice(n, &f.path("bootloader"), "bootloader", Bootloader::ALL)
                .unwrap_or_default();
        }
        if let Some(n) = f.get("filesystem") {
            disk.filesystem = self
                .choice(n, &f.path("filesystem"), "filesystem", Filesystem::ALL)
                .unwrap_or_default();
        }
        let fpath = f.path("formats");
        for (i, n) in self.list(&f, "formats").iter().enumerate() {
            let ipath = index(&fpath, i);
            if let Some(fmt) = self.choice(n, &ipath, "disk format", Format::ALL) {
                if disk.formats.contains(&fmt) {
                    self.warn(
                        "DuplicateDiskFormat",
                        &ipath,
                        n.span,
                        Problem::new(format!("format `{fmt}` is listed more than once")),
                    );
                } else {
                    disk.formats.push(fmt);
                }
            }
        }
        disk
    }

    // ---- rules across entries ----------------------------------------------------------------

    fn cross_checks(&mut self, spec: &Spec) {
        self.duplicate_paths();
        self.symlink_loops();
        self.duplicate_units();
        self.undefined_units(spec);
        self.runtime_warning(spec);
    }

    /// A Kubernetes-layer unit that is enabled but that nothing in the spec can ship: no
    /// `contents`, no file at a systemd unit path in either layer, no OS unit with contents, no
    /// extracted component (an archive may carry unit files) and no OS package named like the
    /// unit. The finalize step's `systemctl enable` would then fail unless the base image has
    /// it. OS-layer units are not checked: packages and the base image ship most of them.
    fn undefined_units(&mut self, spec: &Spec) {
        const UNIT_DIRS: &[&str] = &[
            "/etc/systemd/system",
            "/usr/lib/systemd/system",
            "/lib/systemd/system",
            "/usr/local/lib/systemd/system",
        ];
        let Some(k) = &spec.kubernetes else {
            return;
        };
        if k.components.iter().any(|c| c.extract) {
            return;
        }
        let mut found = Vec::new();
        for u in &self.units {
            if u.layer != Layer::Kubernetes || !u.enabled || u.has_contents {
                continue;
            }
            let defined_by_unit = self
                .units
                .iter()
                .any(|o| o.name == u.name && o.has_contents);
            let defined_by_file = self.paths.iter().any(|p| {
                UNIT_DIRS
                    .iter()
                    .any(|d| p.path.strip_prefix(d) == Some(&format!("/{}", u.name)))
            });
            let stem = u.name.rsplit_once('.').map_or("", |(s, _)| s);
            let stem = stem.split('@').next().unwrap_or(stem);
            let by_package = spec
                .os
                .packages
                .iter()
                .any(|p| p.value.split(['=', ':', '/']).next() == Some(stem));
            if !defined_by_unit && !defined_by_file && !by_package {
                found.push((u.key_path.clone(), u.span, u.name.clone()));
            }
        }
        for (key_path, span, name) in found {
            self.warn(
                "UndefinedUnit",
                &join(&key_path, "name"),
                span,
                Problem::new(format!(
                    "unit `{name}` is enabled but nothing in the spec defines it: no `contents`, no file at /etc/systemd/system/{name}, no extracted component and no OS package named `{}`",
                    name.rsplit_once('.').map_or("", |(s, _)| s).split('@').next().unwrap_or("")
                ))
                .help("add `contents`, or ignore this if the base image or an OS package ships the unit; otherwise the finalize step's `systemctl enable` fails"),
            );
        }
    }

    fn duplicate_paths(&mut self) {
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut found = Vec::new();
        for (i, e) in self.paths.iter().enumerate() {
            match first.get(e.path.as_str()) {
                Some(&j) if !e.overwrite => found.push((j, i)),
                _ => {
                    first.insert(&e.path, i);
                }
            }
        }
        for (j, i) in found {
            let (a, b) = (&self.paths[j], &self.paths[i]);
            let where_ = if a.layer == b.layer {
                String::new()
            } else {
                format!(" in {}", a.layer.name())
            };
            let message = format!(
                "`{}` is already defined by {} (line {}){where_}",
                b.path, a.key_path, a.span.start.line
            );
            let help = if b.can_overwrite {
                "set `overwrite: true` on this entry if it is meant to replace the other, or remove one of them"
            } else {
                "remove one of the two entries"
            };
            let d = Diagnostic::error(self.file, &join(&b.key_path, "path"), Some(b.span), message)
                .with_help(help);
            self.diags.push(d);
        }
    }

    fn symlink_loops(&mut self) {
        // Where each symlink points, as an absolute normalized path.
        let resolved: Vec<Option<String>> = self
            .symlinks
            .iter()
            .map(|l| {
                if l.target.starts_with('/') {
                    check::normalize_abs(&l.target)
                } else {
                    let dir = l.path.rsplit_once('/').map_or("", |(d, _)| d);
                    check::normalize_abs(&format!("{dir}/{}", l.target))
                }
            })
            .collect();
        let by_path: HashMap<&str, usize> = self
            .symlinks
            .iter()
            .enumerate()
            .map(|(i, l)| (l.path.as_str(), i))
            .collect();
        let mut reports = Vec::new();
        for start in 0..self.symlinks.len() {
            let mut chain = vec![start];
            let mut cur = start;
            while let Some(next) = resolved[cur]
                .as_deref()
                .and_then(|t| by_path.get(t))
                .copied()
            {
                if next == start {
                    // A loop through `start`; report it once, at its first entry.
                    if chain.iter().all(|&c| c >= start) {
                        reports.push(chain.clone());
                    }
                    break;
                }
                if chain.contains(&next) || chain.len() > self.symlinks.len() {
                    break;
                }
                chain.push(next);
                cur = next;
            }
        }
        for chain in reports {
            let first = &self.symlinks[chain[0]];
            let message = if chain.len() == 1 {
                format!("symlink `{}` points at itself", first.path)
            } else {
                let mut names: Vec<&str> = chain
                    .iter()
                    .map(|&i| self.symlinks[i].path.as_str())
                    .collect();
                names.push(&first.path);
                format!("symlinks form a loop: {}", names.join(" → "))
            };
            let d = Diagnostic::error(
                self.file,
                &join(&first.key_path, "target"),
                Some(first.span),
                message,
            )
            .with_help("point one of the links at a real file or directory");
            self.diags.push(d);
        }
    }

    fn duplicate_units(&mut self) {
        let mut first: HashMap<(&str, bool), usize> = HashMap::new();
        let mut found = Vec::new();
        for (i, u) in self.units.iter().enumerate() {
            // Within a layer any repetition is a conflict; across layers only two definitions.
            let same_layer_key = (u.name.as_str(), u.layer == Layer::Os);
            if let Some(&j) = first.get(&same_layer_key) {
                found.push((j, i));
                continue;
            }
            first.insert(same_layer_key, i);
            if u.layer == Layer::Kubernetes
                && u.has_contents
                && let Some(&j) = first.get(&(u.name.as_str(), true))
                && self.units[j].has_contents
            {
                found.push((j, i));
            }
        }
        for (j, i) in found {
            let (a, b) = (&self.units[j], &self.units[i]);
            let message = if a.layer == b.layer {
                format!(
                    "unit `{}` is already listed at {} (line {})",
                    b.name, a.key_path, a.span.start.line
                )
            } else {
                format!(
                    "unit `{}` has contents in both the OS layer ({}, line {}) and the Kubernetes layer",
                    b.name, a.key_path, a.span.start.line
                )
            };
            let d = Diagnostic::error(self.file, &join(&b.key_path, "name"), Some(b.span), message)
                .with_help("merge the two entries into one, or use a drop-in to change a unit");
            self.diags.push(d);
        }
    }

    fn runtime_warning(&mut self, spec: &Spec) {
        let Some(k) = &spec.kubernetes else {
            return;
        };
        let Some(kubelet) = k.components.iter().find(|c| c.name == "kubelet") else {
            return;
        };
        let runtimes = [
            "containerd",
            "cri-o",
            "crio",
            "containerd.io",
            "docker-ce",
            "cri-dockerd",
        ];
        let has_runtime = k
            .components
            .iter()
            .any(|c| runtimes.contains(&c.name.as_str()))
            || spec.os.packages.iter().any(|p| {
                runtimes
                    .iter()
                    .any(|r| p.value.split(['=', ':', '/']).next() == Some(r))
            });
        if !has_runtime {
            let d = Diagnostic::warning(
                self.file,
                "kubernetes.components",
                Some(kubelet.span),
                "a kubelet component is defined but no container runtime (containerd or cri-o) is, as a component or an OS package",
            )
            .with_help("add a `containerd` component or package, or ignore this if the base image ships one")
            .with_rule("NoContainerRuntime");
            self.diags.push(d);
        }
    }
}
