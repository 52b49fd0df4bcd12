//! Hand-written decoding of the YAML tree into the spec types, collecting every problem.
//!
//! This module holds the machinery (`Cx`: typed reads of scalars, lists and mappings with
//! their spans, "did you mean" for unknown keys, `${VAR}` substitution) and the rules that
//! look across sections. Each section is a child module holding its types, its accepted keys
//! and its decoding together: [`os`], [`storage`], [`systemd`], [`passwd`], [`kubernetes`],
//! [`disk`] and [`node_tests`] (`tests:`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use saphyr_parser::ScalarStyle;

use super::check::{self, Check, Problem, Shown};
use super::vars;
use super::yaml::{self, Kind, Node, Scalar, key_text};
use super::{Diagnostic, Diagnostics, Loaded, Pos, Span, Spanned, Spec, Survey, VarUse};

mod disk;
mod kubernetes;
mod node_tests;
mod os;
mod passwd;
mod storage;
mod systemd;

pub use disk::{Bootloader, Disk, Filesystem, Firmware, Format};
pub use kubernetes::{Component, ComponentSource, ImageEntry, Kubernetes};
pub use os::{Build, Os, Run, Secret, SecretTarget};
pub use passwd::{Group, Passwd, User};
pub use storage::{Contents, Directory, File, Link, Owner, Storage};
pub use systemd::{Dropin, Systemd, Unit};

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

impl Cx<'_> {
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
