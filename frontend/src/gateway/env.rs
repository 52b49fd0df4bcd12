//! The frontend's inputs from BuildKit's environment variables.

use std::collections::BTreeMap;
use std::fmt;

use llb_graph::pb;

use super::GatewayError;

/// Local source (sent by the client session) holding the spec, as for the Dockerfile frontend.
pub const DEFAULT_DOCKERFILE_LOCAL_NAME: &str = "dockerfile";
/// Local source holding the build context.
pub const DEFAULT_CONTEXT_LOCAL_NAME: &str = "context";
/// Spec file name used when the client sends no `filename` option. (The Dockerfile frontend's
/// default is `Dockerfile`; `docker buildx build -f x` always sends `filename=<base name of x>`.)
pub const DEFAULT_SPEC_FILENAME: &str = "node.yaml";

const OPT_PREFIX: &str = "BUILDKIT_FRONTEND_OPT_";
const BUILD_ARG_PREFIX: &str = "build-arg:";

/// Everything BuildKit passes to a gateway frontend through its environment.
///
/// Options arrive as `BUILDKIT_FRONTEND_OPT_<n>=<key>=<value>` (e.g. `target=node`,
/// `build-arg:FOO=bar`, `filename=node.yaml`, `platform=linux/amd64`, `source=<our image>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrontendEnv {
    opts: BTreeMap<String, String>,
    session_id: String,
    exported_product: String,
    workers_json: String,
}

impl FrontendEnv {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// Builds the view from `(name, value)` pairs, as [`from_env`](Self::from_env) does from the
    /// process environment. Options without `=` get an empty value, as BuildKit's Go client does.
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut env = FrontendEnv::default();
        for (k, v) in vars {
            let (k, v) = (k.as_ref(), v.as_ref());
            match k {
                "BUILDKIT_SESSION_ID" => env.session_id = v.to_owned(),
                "BUILDKIT_EXPORTEDPRODUCT" => env.exported_product = v.to_owned(),
                "BUILDKIT_WORKERS" => env.workers_json = v.to_owned(),
                _ if k.starts_with(OPT_PREFIX) => {
                    let (key, value) = v.split_once('=').unwrap_or((v, ""));
                    env.opts.insert(key.to_owned(), value.to_owned());
                }
                _ => {}
            }
        }
        env
    }

    /// All frontend options, keyed by option name.
    pub fn opts(&self) -> &BTreeMap<String, String> {
        &self.opts
    }

    /// One option; `None` when absent.
    pub fn opt(&self, key: &str) -> Option<&str> {
        self.opts.get(key).map(String::as_str)
    }

    /// The requested target (`--target`); `None` when absent or empty.
    pub fn target(&self) -> Option<&str> {
        self.opt("target").filter(|t| !t.is_empty())
    }

    /// The `--build-arg` values, with the `build-arg:` prefix removed from the keys.
    pub fn build_args(&self) -> BTreeMap<String, String> {
        self.opts
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(BUILD_ARG_PREFIX)?.to_owned(), v.clone())))
            .collect()
    }

    /// The spec's file name inside the `dockerfile` local source.
    pub fn filename(&self) -> &str {
        self.opt("filename")
            .filter(|f| !f.is_empty())
            .unwrap_or(DEFAULT_SPEC_FILENAME)
    }

    /// The raw `platform` option (`--platform`), possibly a comma-separated list.
    pub fn platform(&self) -> Option<&str> {
        self.opt("platform").filter(|p| !p.is_empty())
    }

    /// The requested target platforms, parsed; empty when none was requested.
    pub fn platforms(&self) -> Result<Vec<pb::Platform>, GatewayError> {
        self.platform()
            .map(|list| list.split(',').map(parse_platform).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// The image reference this frontend was started from (`source` option): the natural
    /// default for the frontend's own tools image.
    pub fn source_image(&self) -> Option<&str> {
        self.opt("source").filter(|s| !s.is_empty())
    }

    /// The client session that serves the local sources (`BUILDKIT_SESSION_ID`).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// `BUILDKIT_EXPORTEDPRODUCT`, e.g. `docker`.
    pub fn exported_product(&self) -> &str {
        &self.exported_product
    }

    /// `BUILDKIT_WORKERS`: the workers as JSON (Ping reports them too, typed).
    pub fn workers_json(&self) -> &str {
        &self.workers_json
    }

    /// How base images are resolved (`image-resolve-mode` option; Docker sends `local`).
    pub fn image_resolve_mode(&self) -> Result<ImageResolveMode, GatewayError> {
        match self.opt("image-resolve-mode") {
            None | Some("") => Ok(ImageResolveMode::Default),
            Some(v) => v.parse(),
        }
    }

    /// Name of the local source holding the spec: `dockerfile`, unless the `dockerfilekey`
    /// option renames it (the Dockerfile frontend then also ignores frontend inputs).
    pub fn dockerfile_local_name(&self) -> &str {
        self.opt("dockerfilekey")
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_DOCKERFILE_LOCAL_NAME)
    }

    /// Whether `dockerfilekey` forces reading the spec from a local source.
    pub fn force_local_spec(&self) -> bool {
        self.opt("dockerfilekey").is_some_and(|v| !v.is_empty())
    }

    /// What `--sbom` asked for (`attest:sbom` option), `None` when no SBOM was requested.
    pub fn sbom(&self) -> Option<SbomRequest> {
        let v = self.opt("attest:sbom")?;
        // CSV of key=value fields (`type=sbom`, `generator=<image>`, `disabled=true`).
        let field = |key: &str| {
            v.split(',').find_map(|f| {
                let (k, val) = f.split_once('=').unwrap_or((f, ""));
                (k.trim() == key).then(|| val.trim().trim_matches('"').to_string())
            })
        };
        if field("disabled").is_some_and(|d| d == "true") {
            return None;
        }
        Some(match field("generator").filter(|g| !g.is_empty()) {
            Some(image) => SbomRequest::Generator(image),
            None => SbomRequest::Nodestamp,
        })
    }

    /// Name of the local source holding the build context. Always `context`: in the Dockerfile
    /// frontend the `contextkey` option only names the option that may carry a remote (git or
    /// http) context URL; it does not rename the local source.
    pub fn context_local_name(&self) -> &str {
        DEFAULT_CONTEXT_LOCAL_NAME
    }
}

/// An SBOM request (`--sbom`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SbomRequest {
    /// No generator named: nodestamp writes the SBOM from what it knows of the node.
    Nodestamp,
    /// `--sbom=generator=<image>`: that scanner image, which BuildKit runs on the result.
    Generator(String),
}

/// The `image.resolvemode` of image sources and `ResolveImageConfig` calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageResolveMode {
    /// Use the registry, falling back to the cache.
    #[default]
    Default,
    /// Always ask the registry.
    Pull,
    /// Prefer an image already present in the engine's image store.
    Local,
}

impl ImageResolveMode {
    /// The value BuildKit expects in LLB attrs and gateway requests.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageResolveMode::Default => "default",
            ImageResolveMode::Pull => "pull",
            ImageResolveMode::Local => "local",
        }
    }
}

impl fmt::Display for ImageResolveMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ImageResolveMode {
    type Err = GatewayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(ImageResolveMode::Default),
            "pull" => Ok(ImageResolveMode::Pull),
            "local" => Ok(ImageResolveMode::Local),
            other => Err(GatewayError::InvalidOption {
                key: "image-resolve-mode",
                value: other.to_owned(),
                expected: "one of default, pull, local",
            }),
        }
    }
}

/// Parses `os/arch[/variant]` (the form buildx sends after normalising `--platform`).
pub fn parse_platform(s: &str) -> Result<pb::Platform, GatewayError> {
    let invalid = || GatewayError::InvalidOption {
        key: "platform",
        value: s.to_owned(),
        expected: "os/arch[/variant], e.g. linux/amd64",
    };
    let parts: Vec<&str> = s.trim().split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(invalid());
    }
    match parts.as_slice() {
        [os, arch] => Ok(platform(os, arch, "")),
        [os, arch, variant] => Ok(platform(os, arch, variant)),
        _ => Err(invalid()),
    }
}

fn platform(os: &str, arch: &str, variant: &str) -> pb::Platform {
    pb::Platform {
        os: os.to_owned(),
        architecture: arch.to_owned(),
        variant: variant.to_owned(),
    }
}

/// The variables BuildKit sets for frontend options `opts`, in order (for unit tests that make
/// a [`FrontendEnv`]).
#[cfg(test)]
pub(crate) fn option_vars(opts: &[&str]) -> Vec<(String, String)> {
    opts.iter()
        .enumerate()
        .map(|(i, o)| (format!("BUILDKIT_FRONTEND_OPT_{i}"), o.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(opts: &[&str]) -> FrontendEnv {
        let mut vars = option_vars(opts);
        vars.push(("BUILDKIT_SESSION_ID".into(), "sess1".into()));
        vars.push(("PATH".into(), "/bin".into()));
        FrontendEnv::from_vars(vars)
    }

    #[test]
    fn reads_options_as_buildx_sends_them() {
        let e = env(&[
            "attest:provenance=mode=min,inline-only=true",
            "build-arg:FOO=bar=baz",
            "build-arg:EMPTY=",
            "target=node",
            "filename=spec.yaml",
            "source=nodestamp/frontend:dev",
            "image-resolve-mode=local",
            "platform=linux/arm64/v8",
            "no-value",
        ]);
        assert_eq!(
            e.opt("attest:provenance"),
            Some("mode=min,inline-only=true")
        );
        assert_eq!(e.opt("no-value"), Some(""));
        assert_eq!(e.target(), Some("node"));
        assert_eq!(e.filename(), "spec.yaml");
        assert_eq!(e.source_image(), Some("nodestamp/frontend:dev"));
        assert_eq!(e.session_id(), "sess1");
        assert_eq!(e.image_resolve_mode().unwrap(), ImageResolveMode::Local);
        let args = e.build_args();
        assert_eq!(args.get("FOO").map(String::as_str), Some("bar=baz"));
        assert_eq!(args.get("EMPTY").map(String::as_str), Some(""));
        assert_eq!(args.len(), 2);
        assert_eq!(
            e.platforms().unwrap(),
            vec![platform("linux", "arm64", "v8")]
        );
        assert_eq!(e.dockerfile_local_name(), "dockerfile");
        assert!(!e.force_local_spec());
        assert_eq!(e.context_local_name(), "context");
    }

    #[test]
    fn sbom_requests_as_buildx_sends_them() {
        assert_eq!(env(&[]).sbom(), None);
        assert_eq!(env(&["attest:sbom="]).sbom(), Some(SbomRequest::Nodestamp));
        assert_eq!(
            env(&["attest:sbom=type=sbom"]).sbom(),
            Some(SbomRequest::Nodestamp)
        );
        assert_eq!(
            env(&["attest:sbom=type=sbom,generator=my/scanner:1"]).sbom(),
            Some(SbomRequest::Generator("my/scanner:1".into()))
        );
        assert_eq!(env(&["attest:sbom=type=sbom,disabled=true"]).sbom(), None);
    }

    #[test]
    fn defaults_when_options_are_absent() {
        let e = env(&[]);
        assert_eq!(e.target(), None);
        assert_eq!(e.filename(), "node.yaml");
        assert_eq!(e.platform(), None);
        assert!(e.platforms().unwrap().is_empty());
        assert_eq!(e.image_resolve_mode().unwrap(), ImageResolveMode::Default);
    }

    #[test]
    fn dockerfilekey_renames_and_forces_the_local_source() {
        let e = env(&["dockerfilekey=spec"]);
        assert_eq!(e.dockerfile_local_name(), "spec");
        assert!(e.force_local_spec());
    }

    #[test]
    fn rejects_bad_platforms_and_resolve_modes() {
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(parse_platform(bad).is_err(), "{bad:?} should be rejected");
        }
        let err = env(&["image-resolve-mode=sometimes"])
            .image_resolve_mode()
            .unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
        assert_eq!(
            env(&["platform=linux/amd64,linux/arm64"])
                .platforms()
                .unwrap()
                .len(),
            2
        );
    }
}
