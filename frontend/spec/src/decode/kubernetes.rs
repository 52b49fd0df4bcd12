//! The `kubernetes:` section: components (downloads and local files), storage, systemd,
//! preloaded container images, sysctl and kernel modules, all built on scratch, independent of the OS.

use serde::Serialize;

use super::*;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Kubernetes {
    /// The `kubernetes:` mapping.
    pub span: Span,
    pub version: Option<Spanned<String>>,
    pub components: Vec<Component>,
    /// Container images the node has when it boots (`kubernetes.images`).
    pub images: Vec<ImageEntry>,
    pub storage: Storage,
    pub systemd: Systemd,
    /// In file order.
    pub sysctl: Vec<(Spanned<String>, Spanned<String>)>,
    pub modules: Vec<Spanned<String>>,
}

/// `kubernetes.images[]`: an image archive from the build context, imported into containerd's
/// `k8s.io` namespace at first boot under `reference`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageEntry {
    pub span: Span,
    /// Normalised (`pause:3.10` → `docker.io/library/pause:3.10`), unique among the images.
    pub reference: String,
    /// A path in the build context.
    pub archive: String,
    /// The archive's sha256 (hex) when the spec pins it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Component {
    pub span: Span,
    /// `[a-z0-9][a-z0-9._-]*`, unique among components.
    pub name: String,
    pub source: ComponentSource,
    /// The named build context a `local` source is read from (`--build-context NAME=…`);
    /// `None` reads the main build context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Spanned<String>>,
    /// Absolute and normalized when given.
    pub dest: Option<String>,
    pub mode: Option<u32>,
    pub extract: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentSource {
    Http {
        url: String,
        sha256: String,
    },
    /// Relative to the build context, without `..`.
    Local(String),
}

const KUBERNETES: &[&str] = &[
    "version",
    "components",
    "images",
    "storage",
    "systemd",
    "sysctl",
    "modules",
];
const IMAGE: &[&str] = &["ref", "archive", "sha256"];
/// The architectures a per-architecture `sha256` may name (as `--platform linux/<arch>` does).
pub const SHA256_ARCHITECTURES: &[&str] = &["amd64", "arm64"];

const COMPONENT: &[&str] = &[
    "name", "url", "sha256", "local", "context", "dest", "mode", "extract",
];

impl Cx<'_> {
    pub(super) fn kubernetes(&mut self, node: &Node) -> Kubernetes {
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
        let ipath = f.path("images");
        let mut refs = HashMap::new();
        for (i, n) in self.list(&f, "images").iter().enumerate() {
            if let Some(img) = self.image(n, &index(&ipath, i), &mut refs) {
                k.images.push(img);
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

    /// `kubernetes.images[i]`: `ref` (a reference, unique once normalised), `archive` (a path in
    /// the build context), `sha256` (optional).
    pub(super) fn image(
        &mut self,
        node: &Node,
        path: &str,
        refs: &mut HashMap<String, u32>,
    ) -> Option<ImageEntry> {
        let f = self.map(node, path, IMAGE)?;
        let reference = self.required(
            &f,
            "ref",
            "an image reference like registry.k8s.io/pause:3.10",
            check::image_reference,
        );
        let archive = self.required(
            &f,
            "archive",
            "a path in the build context to an OCI or docker save archive",
            check::archive_path,
        );
        let sha256 = self.field(&f, "sha256", "a sha256 digest", check::sha256);
        let reference = reference.map(|r| {
            let normalized = nodestamp_contract::images::normalize_ref(&r.value)
                .unwrap_or_else(|_| r.value.clone());
            Spanned::new(normalized, r.span)
        })?;
        self.unique(refs, &reference, &f.path("ref"), "image");
        Some(ImageEntry {
            span: node.span,
            reference: reference.value,
            archive: archive?.value,
            sha256: sha256.map(|s| s.value),
        })
    }

    /// A component's `sha256`: one digest, or one per architecture (`{ amd64: <hex>, arm64:
    /// <hex> }`) of which the build's (the `TARGETARCH` build arg) is taken. Without a target
    /// architecture (an offline check) every entry is checked and the first one taken.
    fn component_sha256(&mut self, f: &Fields) -> Option<Spanned<String>> {
        let node = f.get("sha256")?;
        let path = f.path("sha256");
        let Kind::Map(entries) = &node.kind else {
            return self.checked(node, &path, "a sha256 digest", check::sha256);
        };
        let target = self.vars.get("TARGETARCH").cloned();
        let (mut first, mut chosen, mut archs) = (None, None, Vec::new());
        for (key, value) in entries {
            let arch = key_text(key).unwrap_or("");
            let epath = format!("{path}.{arch}");
            if !SHA256_ARCHITECTURES.contains(&arch) {
                self.error_help(
                    &epath,
                    key.span,
                    format!("unknown architecture `{arch}` for a per-architecture sha256"),
                    format!("accepted: {}", SHA256_ARCHITECTURES.join(", ")),
                );
                continue;
            }
            archs.push(arch.to_owned());
            if let Some(v) = self.checked(value, &epath, "a sha256 digest", check::sha256) {
                if target.as_deref() == Some(arch) {
                    chosen = Some(v.clone());
                }
                first.get_or_insert(v);
            }
        }
        match target {
            None => first,
            Some(t) if archs.contains(&t) => chosen,
            Some(t) => {
                let has = if archs.is_empty() {
                    "none".to_owned()
                } else {
                    format!("one for {}", archs.join(", "))
                };
                self.error_help(
                    &path,
                    f.key_span("sha256").unwrap_or(node.span),
                    format!(
                        "no sha256 for {t}, the architecture this build is for (linux/{t}); this component has {has}"
                    ),
                    format!(
                        "add `{t}: <64 hex digits>` under `sha256` (compute it with `curl -sL <url> | sha256sum`)"
                    ),
                );
                None
            }
        }
    }

    pub(super) fn component(
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
        let sha256 = self.component_sha256(&f);
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
}
