//! Named build contexts as the compiler takes them: where each one's content comes from, and
//! the name it is known by. Reading them from the frontend options is the frontend's job.

use llb_graph::{ImageOpts, LocalOpts, Meta, Platform, ResolveMode, State, normalize_image_ref};

/// Where a named context's content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextSource {
    /// `docker-image://<ref>`, the reference normalized.
    Image { reference: String },
    /// `oci-layout://…`: `reference` is `<context name, normalized>@<digest>` (the name the
    /// engine shows), served from `store` in the client's `session`.
    OciLayout {
        reference: String,
        session: String,
        store: String,
    },
    /// `local:<name>`: the client's local source `<name>`.
    Local {
        local_name: String,
        session: String,
        /// `sharedkey:localdir:NAME`: the directory's base name, a cache hint.
        shared_key: Option<String>,
    },
}

impl ContextSource {
    /// Whether the context is an image (it has a config and layers).
    pub fn is_image(&self) -> bool {
        !matches!(self, ContextSource::Local { .. })
    }

    /// The whole context as a state: an image's root filesystem, or the directory restricted
    /// to `include` (all of it when empty) when it is one.
    pub fn state(
        &self,
        name: &str,
        include: &[String],
        platform: &Platform,
        resolve_mode: ResolveMode,
        meta: Meta,
    ) -> State {
        match self {
            ContextSource::Image { reference } => State::image_with(
                reference,
                ImageOpts {
                    resolve_mode,
                    platform: Some(platform.clone()),
                },
                meta,
            ),
            ContextSource::OciLayout {
                reference,
                session,
                store,
            } => State::oci_layout(reference, session, store, Some(platform.clone()), meta),
            ContextSource::Local {
                local_name,
                session,
                shared_key,
            } => State::local(
                local_name,
                LocalOpts {
                    session_id: Some(session.clone()).filter(|s| !s.is_empty()),
                    include_patterns: include.to_vec(),
                    follow_paths: include.to_vec(),
                    shared_key_hint: Some(format!(
                        "context:{name}-{}",
                        shared_key.as_deref().unwrap_or(local_name)
                    )),
                    ..Default::default()
                },
                meta,
            ),
        }
    }
}

/// The name a context is known by: docker's short form of a reference (`debian:bookworm`,
/// `debian` for `debian:latest`, `my/ctx`), as buildx keys `--build-context` and the
/// Dockerfile frontend looks names up.
pub fn familiar_name(name: &str) -> String {
    let full = normalize_image_ref(name);
    let short = full
        .strip_prefix("docker.io/library/")
        .or_else(|| full.strip_prefix("docker.io/"))
        .unwrap_or(&full);
    short.strip_suffix(":latest").unwrap_or(short).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_as_docker_shortens_them() {
        assert_eq!(familiar_name("debian:bookworm"), "debian:bookworm");
        assert_eq!(familiar_name("docker.io/library/debian:latest"), "debian");
        assert_eq!(familiar_name("debian"), "debian");
        assert_eq!(familiar_name("my/ctx"), "my/ctx");
        assert_eq!(
            familiar_name("registry.example:5000/a:1"),
            "registry.example:5000/a:1"
        );
    }
}
