//! Named build contexts (`docker buildx build --build-context NAME=…`), as the Dockerfile
//! frontend takes them for `FROM` and `COPY --from`: buildx sends each as the frontend option
//! `context:NAME` (or `context:NAME::<platform>`) whose value is
//!
//! - `docker-image://<ref>`: an image;
//! - `oci-layout://<store id>[:tag]@<digest>`: an image in an OCI layout directory on the
//!   client, whose content store the client serves in its session under that store id;
//! - `local:<name>`: a directory on the client, sent as the local source `<name>`.
//!
//! `os.from: debian:bookworm` is replaced by a context named `debian:bookworm` (names compare
//! as docker normalizes them: `docker.io/library/debian:latest` is `debian`); a `local:` path
//! of a component or a file's contents is read from the context named by `context:` beside it.

use std::collections::BTreeMap;

use llb_graph::{normalize_image_ref, pb};

use nodestamp_compile::contexts::{ContextSource, familiar_name};

use crate::gateway::{FrontendEnv, FrontendError};
use crate::request::Request;
use nodestamp_spec::{Span, Spanned};

const PREFIX: &str = "context:";

/// The named contexts the client gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamedContexts {
    /// Option key without the prefix (`NAME` or `NAME::<platform>`) → value.
    given: BTreeMap<String, String>,
    shared_keys: BTreeMap<String, String>,
    session: String,
}

impl NamedContexts {
    pub fn from_env(env: &FrontendEnv) -> Self {
        let given = env
            .opts()
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.to_string(), v.clone())))
            .collect();
        let shared_keys = env
            .opts()
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.strip_prefix("sharedkey:localdir:")?.to_string(),
                    v.clone(),
                ))
            })
            .collect();
        NamedContexts {
            given,
            shared_keys,
            session: env.session_id().to_string(),
        }
    }

    /// The names given, for messages: `debian:bookworm, kube` or `none`.
    pub fn names(&self) -> String {
        let mut names: Vec<&str> = self
            .given
            .keys()
            .map(|k| k.split_once("::").map_or(k.as_str(), |(n, _)| n))
            .collect();
        names.dedup();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }

    /// The context named `name` (compared in docker's short form) for `platform`: the one
    /// given for that platform first, then the one for all. `None` when none was given; an
    /// error (what is wrong with its value) when it cannot be used.
    pub fn lookup(
        &self,
        name: &str,
        platform: &pb::Platform,
    ) -> Option<Result<ContextSource, String>> {
        let short = familiar_name(name);
        let mut p = format!("{}/{}", platform.os, platform.architecture);
        if !platform.variant.is_empty() {
            p = format!("{p}/{}", platform.variant);
        }
        let value = self
            .given
            .get(&format!("{short}::{p}"))
            .or_else(|| self.given.get(&short))?;
        Some(self.parse(&short, value))
    }

    fn parse(&self, name: &str, value: &str) -> Result<ContextSource, String> {
        if let Some(r) = value.strip_prefix("docker-image://") {
            return Ok(ContextSource::Image {
                reference: normalize_image_ref(r),
            });
        }
        if let Some(rest) = value.strip_prefix("oci-layout://") {
            let (store_tag, digest) = rest.split_once('@').ok_or_else(|| {
                format!(
                    "the OCI layout {value:?} has no digest (buildx adds it; is buildx too old?)"
                )
            })?;
            let store = store_tag.split_once(':').map_or(store_tag, |(s, _)| s);
            let (name_part, _) = name.split_once('@').unwrap_or((name, ""));
            return Ok(ContextSource::OciLayout {
                reference: normalize_image_ref(&format!("{name_part}@{digest}")),
                session: self.session.clone(),
                store: store.to_string(),
            });
        }
        if let Some(local) = value.strip_prefix("local:") {
            return Ok(ContextSource::Local {
                local_name: local.to_string(),
                session: self.session.clone(),
                shared_key: self.shared_keys.get(name).cloned(),
            });
        }
        let kind = value.split_once(':').map_or(value, |(k, _)| k);
        Err(match kind {
            "input" => format!(
                "it is another build's result ({value}), which nodestamp does not take as a context; \
                 accepted: docker-image://<ref>, oci-layout://<dir>[:tag] or a directory"
            ),
            _ => format!(
                "{value:?} is not a context nodestamp can use; accepted: docker-image://<ref>, \
                 oci-layout://<dir>[:tag] or a directory"
            ),
        })
    }
}

/// The named contexts a request uses: the one replacing `os.from` (when the target has the OS
/// and one of that name was given), and one for every `context:` of the spec, by name. Every
/// `context:` naming a context that was not given, and every context whose value cannot be
/// used, is an error at its spec line, all at once.
#[allow(clippy::type_complexity)]
pub fn for_request(
    req: &Request,
    env: &FrontendEnv,
    platform: &pb::Platform,
) -> Result<(Option<ContextSource>, BTreeMap<String, ContextSource>), FrontendError> {
    let given = NamedContexts::from_env(env);
    let mut errors: Vec<(String, Span)> = Vec::new();
    let from = &req.spec.os.from;
    let base = match req
        .base_image()
        .and_then(|_| given.lookup(&from.value, platform))
    {
        None => None,
        Some(Ok(src)) => Some(src),
        Some(Err(e)) => {
            errors.push((
                format!(
                    "os.from: the build context {:?} cannot be the base: {e}",
                    from.value
                ),
                from.span,
            ));
            None
        }
    };
    let mut uses: Vec<(String, &Spanned<String>)> = Vec::new();
    let os_files = req.spec.os.storage.files.iter();
    let k = req.spec.kubernetes.as_ref();
    let k_files = k.into_iter().flat_map(|k| k.storage.files.iter());
    for f in os_files.chain(k_files) {
        if let Some(c) = &f.context {
            uses.push((format!("file {}: contents.context", f.path), c));
        }
    }
    for c in k.into_iter().flat_map(|k| k.components.iter()) {
        if let Some(ctx) = &c.context {
            uses.push((format!("component {}: context", c.name), ctx));
        }
    }
    let mut contexts = BTreeMap::new();
    for (what, name) in uses {
        match given.lookup(&name.value, platform) {
            Some(Ok(src)) => {
                contexts.insert(name.value.clone(), src);
            }
            Some(Err(e)) => errors.push((format!("{what}: {e}"), name.span)),
            None => errors.push((
                format!(
                    "{what}: no build context named {:?} was given (given: {}); pass it with \
                     `docker buildx build --build-context {}=<dir>|docker-image://<ref>|oci-layout://<dir>`",
                    name.value,
                    given.names(),
                    name.value
                ),
                name.span,
            )),
        }
    }
    if errors.is_empty() {
        return Ok((base, contexts));
    }
    let file = &req.filename;
    let message = errors
        .iter()
        .map(|(m, s)| format!("{file}:{}:{}: {m}", s.start.line, s.start.col))
        .collect::<Vec<_>>()
        .join("\n");
    let ranges = errors
        .iter()
        .map(|(_, s)| nodestamp_compile::range(*s))
        .collect();
    Err(FrontendError::at(
        message,
        file.as_str(),
        req.source.as_slice(),
        ranges,
    ))
}

/// Resolves the base image of a request that has the OS: the digest and config of `os.from`,
/// or of the named context replacing it (`None` for a directory, which has no config). A
/// failure is an error at `os.from`.
pub async fn resolve_base(
    bridge: &crate::gateway::Bridge,
    env: &FrontendEnv,
    req: &Request,
    platform: &pb::Platform,
) -> Result<Option<(String, Vec<u8>)>, FrontendError> {
    let Some(image) = req.base_image() else {
        return Ok(None);
    };
    let (base, _) = for_request(req, env, platform)?;
    let from = &req.spec.os.from;
    let mode = env.image_resolve_mode()?;
    let name = familiar_name(&from.value);
    let resolved = match &base {
        None => {
            bridge
                .resolve_image_config(&image, Some(platform), mode)
                .await
        }
        Some(ContextSource::Image { reference }) => {
            bridge
                .resolve_image_config(reference, Some(platform), mode)
                .await
        }
        Some(ContextSource::OciLayout {
            reference,
            session,
            store,
        }) => {
            bridge
                .resolve_oci_layout_config(
                    reference,
                    Some(platform),
                    session,
                    store,
                    format!("[context {name}] load metadata for {reference}"),
                )
                .await
        }
        Some(ContextSource::Local { .. }) => return Ok(None),
    };
    resolved.map(Some).map_err(|e| {
        let what = match &base {
            None => format!("cannot resolve image {:?}", from.value),
            Some(_) => format!("cannot resolve the build context {name:?}"),
        };
        let range = nodestamp_compile::range(from.span);
        FrontendError::at(
            format!(
                "{}:{}:{}: os.from: {what}: {e}",
                req.filename, from.span.start.line, from.span.start.col
            ),
            req.filename.as_str(),
            req.source.as_slice(),
            vec![range],
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment BuildKit gives a frontend with these options and session `sess`.
    fn env(opts: &[&str]) -> FrontendEnv {
        let mut vars = crate::gateway::option_vars(opts);
        vars.push(("BUILDKIT_SESSION_ID".into(), "sess".into()));
        FrontendEnv::from_vars(vars)
    }

    fn contexts(opts: &[&str]) -> NamedContexts {
        NamedContexts::from_env(&env(opts))
    }

    fn amd64() -> pb::Platform {
        pb::Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: String::new(),
        }
    }

    #[test]
    fn each_kind_of_value_as_buildx_sends_it() {
        let c = contexts(&[
            "context:debian:bookworm=oci-layout://abc123:bookworm@sha256:00ff",
            "context:kube=local:kube",
            "sharedkey:localdir:kube=components",
            "context:alpine=docker-image://alpine:3.20",
            "context:tools::linux/amd64=docker-image://tools:amd64",
            "context:tools=docker-image://tools:any",
            "context:bake=input:bake",
        ]);
        assert_eq!(
            c.lookup("docker.io/library/debian:bookworm", &amd64()),
            Some(Ok(ContextSource::OciLayout {
                reference: "docker.io/library/debian:bookworm@sha256:00ff".into(),
                session: "sess".into(),
                store: "abc123".into(),
            }))
        );
        assert_eq!(
            c.lookup("kube", &amd64()),
            Some(Ok(ContextSource::Local {
                local_name: "kube".into(),
                session: "sess".into(),
                shared_key: Some("components".into()),
            }))
        );
        assert_eq!(
            c.lookup("alpine:latest", &amd64()),
            Some(Ok(ContextSource::Image {
                reference: "docker.io/library/alpine:3.20".into()
            }))
        );
        // The platform's own context first.
        assert_eq!(
            c.lookup("tools", &amd64()),
            Some(Ok(ContextSource::Image {
                reference: "docker.io/library/tools:amd64".into()
            }))
        );
        assert!(
            c.lookup("bake", &amd64())
                .unwrap()
                .unwrap_err()
                .contains("input:bake")
        );
        assert_eq!(c.lookup("debian:trixie", &amd64()), None);
        assert_eq!(c.names(), "alpine, bake, debian:bookworm, kube, tools");
        assert_eq!(contexts(&[]).names(), "none");
    }

    fn request(
        opts: &[&str],
        spec: &str,
    ) -> Result<(Option<ContextSource>, BTreeMap<String, ContextSource>), FrontendError> {
        let env = env(opts);
        let req =
            crate::build::parse(&env, "node.yaml", spec.as_bytes(), &amd64(), &amd64()).unwrap();
        for_request(&req, &env, &amd64())
    }

    const SPEC: &str = "version: 1\nos:\n  from: debian:bookworm\n  storage:\n    files:\n      - { path: /etc/motd, contents: { local: motd, context: files } }\nkubernetes:\n  components:\n    - { name: kubectl, local: kubectl, context: kube }\n";

    #[test]
    fn the_spec_s_contexts_are_looked_up_by_their_names() {
        let (base, ctxs) = request(
            &[
                "context:debian:bookworm=docker-image://mirror/debian:12",
                "context:kube=local:kube",
                "context:files=local:files",
            ],
            SPEC,
        )
        .unwrap();
        assert_eq!(
            base,
            Some(ContextSource::Image {
                reference: "docker.io/mirror/debian:12".into()
            })
        );
        assert_eq!(ctxs.len(), 2);
        assert!(
            matches!(&ctxs["kube"], ContextSource::Local { local_name, .. } if local_name == "kube")
        );
        // Without a context of its name, os.from is the image itself.
        let (base, _) = request(
            &["context:kube=local:kube", "context:files=local:files"],
            SPEC,
        )
        .unwrap();
        assert_eq!(base, None);
    }

    #[test]
    fn a_context_not_given_is_an_error_at_its_line_naming_those_given() {
        let err = request(
            &["context:kub=local:kub", "context:debian:bookworm=input:x"],
            SPEC,
        )
        .unwrap_err();
        let m = err.to_string();
        assert!(
            m.contains("node.yaml:3:9: os.from: the build context \"debian:bookworm\""),
            "{m}"
        );
        assert!(m.contains("node.yaml:6:62: file /etc/motd: contents.context: no build context named \"files\" was given (given: debian:bookworm, kub)"), "{m}");
        assert!(
            m.contains(
                "node.yaml:9:49: component kubectl: context: no build context named \"kube\""
            ),
            "{m}"
        );
        assert!(m.contains("--build-context kube=<dir>"), "{m}");
    }

    #[test]
    fn an_oci_layout_without_digest_is_an_error() {
        let c = contexts(&["context:x=oci-layout://abc:latest"]);
        assert!(
            c.lookup("x", &amd64())
                .unwrap()
                .unwrap_err()
                .contains("no digest")
        );
    }
}
