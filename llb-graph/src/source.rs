use std::collections::BTreeMap;

use crate::meta::Meta;
use crate::pb;
use crate::state::{OpKind, Output, Platform, State};

/// How an image reference is resolved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResolveMode {
    /// Whatever the engine does by default.
    #[default]
    Default,
    /// Always pull.
    Pull,
    /// Prefer the engine's local image store (`image.resolvemode=local`).
    Local,
}

#[derive(Clone, Debug, Default)]
pub struct ImageOpts {
    pub resolve_mode: ResolveMode,
    pub platform: Option<Platform>,
}

/// A directory the client sends (`local://<name>`), filtered by patterns.
#[derive(Clone, Debug, Default)]
pub struct LocalOpts {
    pub session_id: Option<String>,
    pub include_patterns: Vec<String>,
    pub exclude_patterns: Vec<String>,
    /// Paths whose symbolic links the client resolves and sends the targets of too
    /// (`local.followpaths`), so that a link to another file of the directory can be read.
    pub follow_paths: Vec<String>,
    pub shared_key_hint: Option<String>,
    /// Extra attributes (`local.differ`, …) passed through as given.
    pub extra: BTreeMap<String, String>,
}

/// A file fetched over http(s), verified against its checksum.
#[derive(Clone, Debug, Default)]
pub struct HttpOpts {
    /// `sha256:<hex>`.
    pub checksum: Option<String>,
    pub filename: Option<String>,
    pub perm: Option<u32>,
}

fn source(
    identifier: String,
    attrs: BTreeMap<String, String>,
    meta: Meta,
    platform: Option<Platform>,
) -> State {
    let op = pb::SourceOp { identifier, attrs };
    let mut st = State::scratch();
    st.platform = platform.clone();
    State::from_output(Output::new(OpKind::Source(op), meta, platform), &st)
}

/// Normalises a short image reference the way Docker does (`debian:bookworm` →
/// `docker.io/library/debian:bookworm`, a missing tag → `latest`).
pub fn normalize_image_ref(r: &str) -> String {
    let (name, rest) = match r.find(['@']) {
        Some(i) => (&r[..i], &r[i..]),
        None => (r, ""),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let (name, tag) = match last.rfind(':') {
        Some(i) => (&name[..name.len() - (last.len() - i)], &last[i..]),
        None if rest.is_empty() => (name, ":latest"),
        None => (name, ""),
    };
    let first = name.split('/').next().unwrap_or(name);
    let has_host =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_host {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    format!("{full}{tag}{rest}")
}

impl State {
    /// A container image (`docker-image://`).
    pub fn image(reference: &str) -> State {
        State::image_with(reference, ImageOpts::default(), Meta::default())
    }

    pub fn image_with(reference: &str, opts: ImageOpts, meta: Meta) -> State {
        let mut attrs = BTreeMap::new();
        match opts.resolve_mode {
            ResolveMode::Default => {}
            ResolveMode::Pull => {
                attrs.insert("image.resolvemode".into(), "pull".into());
            }
            ResolveMode::Local => {
                attrs.insert("image.resolvemode".into(), "local".into());
            }
        }
        let id = format!("docker-image://{}", normalize_image_ref(reference));
        source(id, attrs, meta, opts.platform)
    }

    /// An image from an OCI layout the client serves from its session (`oci-layout://`, as
    /// `--build-context NAME=oci-layout://<dir>` gives it): `reference` is
    /// `<name>@sha256:<digest>`, `session` the client's session and `store` the id under which
    /// the client serves the layout's content store.
    pub fn oci_layout(
        reference: &str,
        session: &str,
        store: &str,
        platform: Option<Platform>,
        meta: Meta,
    ) -> State {
        let attrs = BTreeMap::from([
            ("oci.session".to_string(), session.to_string()),
            ("oci.store".to_string(), store.to_string()),
        ]);
        source(format!("oci-layout://{reference}"), attrs, meta, platform)
    }

    /// A directory sent by the client (`local://<name>`).
    pub fn local(name: &str, opts: LocalOpts, meta: Meta) -> State {
        let mut attrs = opts.extra.clone();
        if let Some(s) = opts.session_id {
            attrs.insert("local.session".into(), s);
        }
        if !opts.include_patterns.is_empty() {
            attrs.insert(
                "local.includepattern".into(),
                json_list(&opts.include_patterns),
            );
        }
        if !opts.exclude_patterns.is_empty() {
            attrs.insert(
                "local.excludepatterns".into(),
                json_list(&opts.exclude_patterns),
            );
        }
        if !opts.follow_paths.is_empty() {
            attrs.insert("local.followpaths".into(), json_list(&opts.follow_paths));
        }
        if let Some(h) = opts.shared_key_hint {
            attrs.insert("local.sharedkeyhint".into(), h);
        }
        source(format!("local://{name}"), attrs, meta, None)
    }

    /// A file downloaded over http(s); with a checksum the engine verifies it.
    pub fn http(url: &str, opts: HttpOpts, meta: Meta) -> State {
        let mut attrs = BTreeMap::new();
        if let Some(c) = opts.checksum {
            attrs.insert("http.checksum".into(), c);
        }
        if let Some(f) = opts.filename {
            attrs.insert("http.filename".into(), f);
        }
        if let Some(p) = opts.perm {
            attrs.insert("http.perm".into(), format!("0{p:o}"));
        }
        source(url.to_string(), attrs, meta, None)
    }

    /// A git repository at a ref (`git://host/path#ref`), keeping the `.git` directory if asked.
    pub fn git(remote: &str, reference: &str, keep_git_dir: bool, meta: Meta) -> State {
        let remote = remote
            .trim_start_matches("https://")
            .trim_start_matches("git://");
        let mut attrs = BTreeMap::new();
        attrs.insert("git.fullurl".into(), format!("https://{remote}"));
        if keep_git_dir {
            attrs.insert("git.keepgitdir".into(), "true".into());
        }
        let id = if reference.is_empty() {
            format!("git://{remote}")
        } else {
            format!("git://{remote}#{reference}")
        };
        source(id, attrs, meta, None)
    }
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::normalize_image_ref as n;
    use crate::{Meta, State, pb};

    #[test]
    fn oci_layout_sources_name_the_session_and_store() {
        let st = State::oci_layout(
            "docker.io/library/debian:bookworm@sha256:00",
            "sess",
            "store1",
            None,
            Meta::default(),
        );
        let def = st.marshal().unwrap();
        let ops = crate::decode_ops(&def).unwrap().ops;
        let src = ops
            .values()
            .find_map(|op| match &op.op {
                Some(pb::op::Op::Source(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            src.identifier,
            "oci-layout://docker.io/library/debian:bookworm@sha256:00"
        );
        assert_eq!(src.attrs["oci.session"], "sess");
        assert_eq!(src.attrs["oci.store"], "store1");
    }

    #[test]
    fn image_refs_are_normalised_like_docker() {
        assert_eq!(n("debian:bookworm"), "docker.io/library/debian:bookworm");
        assert_eq!(n("debian"), "docker.io/library/debian:latest");
        assert_eq!(
            n("nodestamp/frontend:dev"),
            "docker.io/nodestamp/frontend:dev"
        );
        assert_eq!(
            n("registry.example:5000/a/b:1"),
            "registry.example:5000/a/b:1"
        );
        assert_eq!(n("localhost/x"), "localhost/x:latest");
        assert_eq!(
            n("debian@sha256:0000000000000000000000000000000000000000000000000000000000000000"),
            "docker.io/library/debian@sha256:0000000000000000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(
            n("docker.io/library/debian:12"),
            "docker.io/library/debian:12"
        );
    }
}
