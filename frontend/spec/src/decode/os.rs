//! The `os:` section: the base image, packages, kernel arguments, `run` steps and `os.build`
//! (secrets and files the steps see and the image never holds). Storage, systemd and passwd,
//! which the OS layer shares with the Kubernetes one, have sections of their own.

use serde::Serialize;

use super::*;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Os {
    /// The `os:` mapping.
    pub span: Span,
    pub from: Spanned<String>,
    pub packages: Vec<Spanned<String>>,
    pub kernel_arguments: Vec<Spanned<String>>,
    pub storage: Storage,
    pub systemd: Systemd,
    pub passwd: Passwd,
    pub run: Vec<Run>,
    /// `os.build`: secrets and files for the package and `run` steps, never in the image.
    pub build: Build,
}

/// One `os.run` entry: a plain string, or `{command, secrets}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The shell command.
    pub value: String,
    /// The command's text (or the whole entry when written as a mapping).
    pub span: Span,
    /// Secrets for this step only, on top of `os.build.secrets`.
    pub secrets: Vec<Secret>,
}

/// `os.build`: what the package and `run` steps see while they run and the image never holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Build {
    pub secrets: Vec<Secret>,
    /// Bind-mounted read-only at their paths during the package and `run` steps.
    pub files: Vec<File>,
}

/// A build secret (`--secret id=…`): a file (default `/run/secrets/<id>`) or an environment
/// variable of the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Secret {
    pub span: Span,
    /// `[A-Za-z0-9._-]+`, as given to `--secret id=…`.
    pub id: String,
    pub target: SecretTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretTarget {
    /// An absolute path; the file is readable by root only (0400).
    File(String),
    /// An environment variable name.
    Env(String),
}

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

impl Cx<'_> {
    pub(super) fn os(&mut self, node: &Node) -> Os {
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
    pub(super) fn run(&mut self, node: &Node, path: &str) -> Option<Run> {
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

    pub(super) fn secrets(&mut self, f: &Fields) -> Vec<Secret> {
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
    pub(super) fn build(&mut self, node: &Node, path: &str) -> Build {
        let mut b = Build::default();
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
    pub(super) fn map_quiet<'n>(&self, node: &'n Node) -> Option<Fields<'n>> {
        match &node.kind {
            Kind::Map(entries) => Some(Fields {
                entries,
                span: node.span,
                path: String::new(),
            }),
            _ => None,
        }
    }
}
