//! The OCI image config of a result: the base image's config (environment, entrypoint, …)
//! with nodestamp's labels. BuildKit's exporter fills in `rootfs` and `history`.

use std::collections::HashMap;

use oci_spec::image::{Arch, Config, ImageConfiguration, Os};
use sha2::{Digest as _, Sha256};

use crate::compile::{DEFAULT_PATH, provenance};
use crate::spec::Spec;

/// Why the image config could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ImageConfigError {
    #[error("the base image's config is not valid OCI image config JSON: {0}")]
    BadBase(String),
    #[error("could not serialize the image config: {0}")]
    Serialize(String),
}

/// Label keys nodestamp sets.
pub mod labels {
    pub const TITLE: &str = "org.opencontainers.image.title";
    pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
    pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
    pub const CREATED: &str = "org.opencontainers.image.created";
    pub const KUBERNETES_VERSION: &str = "io.nodestamp.kubernetes.version";
    pub const SPEC_DIGEST: &str = "io.nodestamp.spec.digest";
    pub const TARGET: &str = "io.nodestamp.target";
    pub const VERSION: &str = "io.nodestamp.version";
    /// JSON object of the build args (proxy settings left out).
    pub const BUILD_ARGS: &str = "io.nodestamp.build-args";
    /// `name@sha256:<hex>` or `name@local:<path>` per component, comma-separated.
    pub const KUBERNETES_COMPONENTS: &str = "io.nodestamp.kubernetes.components";
    /// Where the full provenance (with the package list) is in the rootfs.
    pub const PROVENANCE: &str = "io.nodestamp.provenance";
}

/// sha256 of the spec's bytes, as `sha256:<hex>`.
pub fn spec_digest(source: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(source)))
}

/// Inputs of the image config besides the spec.
pub struct ImageConfigInput<'a> {
    /// The base image's config JSON (from the engine), if resolved.
    pub base: Option<&'a [u8]>,
    pub base_digest: Option<&'a str>,
    pub architecture: &'a str,
    pub target: &'a str,
    pub source: &'a [u8],
    /// RFC 3339 creation time (from `SOURCE_DATE_EPOCH`), if fixed.
    pub created: Option<String>,
    pub build_args: &'a std::collections::BTreeMap<String, String>,
    /// The result carries `/usr/lib/nodestamp/build.json`.
    pub provenance: bool,
}

/// The environment of the base image's config, as `(key, value)` pairs.
pub fn base_env(base: &[u8]) -> Result<Vec<(String, String)>, ImageConfigError> {
    let cfg = ImageConfiguration::from_reader(base)
        .map_err(|e| ImageConfigError::BadBase(e.to_string()))?;
    let env = cfg
        .config()
        .as_ref()
        .and_then(|c| c.env().clone())
        .unwrap_or_default();
    Ok(env
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The image config JSON for a result of `spec`.
pub fn image_config(spec: &Spec, input: &ImageConfigInput) -> Result<Vec<u8>, ImageConfigError> {
    let mut cfg = match input.base {
        Some(b) => ImageConfiguration::from_reader(b)
            .map_err(|e| ImageConfigError::BadBase(e.to_string()))?,
        None => ImageConfiguration::default(),
    };
    let only_kubernetes = input.target == "kubernetes";
    cfg.set_architecture(Arch::from(input.architecture));
    cfg.set_os(Os::Linux);
    cfg.set_created(input.created.clone());
    let mut config: Config = if only_kubernetes {
        Config::default()
    } else {
        cfg.config().clone().unwrap_or_default()
    };
    let mut env = config.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    config.set_env(Some(env));
    let mut l: HashMap<String, String> = config.labels().clone().unwrap_or_default();
    l.insert(labels::TITLE.into(), spec.name.clone());
    l.insert(labels::SPEC_DIGEST.into(), spec_digest(input.source));
    l.insert(labels::TARGET.into(), input.target.into());
    if !only_kubernetes {
        l.insert(labels::BASE_NAME.into(), spec.os.from.value.clone());
        if let Some(d) = input.base_digest {
            l.insert(labels::BASE_DIGEST.into(), d.into());
        }
    }
    if let Some(v) = spec.kubernetes.as_ref().and_then(|k| k.version.as_ref()) {
        l.insert(labels::KUBERNETES_VERSION.into(), v.value.clone());
    }
    if let Some(c) = &input.created {
        l.insert(labels::CREATED.into(), c.clone());
    }
    l.insert(labels::VERSION.into(), provenance::VERSION.into());
    let args = provenance::recorded_build_args(input.build_args);
    l.insert(
        labels::BUILD_ARGS.into(),
        serde_json::to_string(&args).unwrap_or_default(),
    );
    if let Some(c) = provenance::components_summary(spec) {
        l.insert(labels::KUBERNETES_COMPONENTS.into(), c);
    }
    if input.provenance {
        l.insert(labels::PROVENANCE.into(), provenance::BUILD_JSON.into());
    }
    config.set_labels(Some(l));
    cfg.set_config(Some(config));
    // The exporter computes these from the layers it writes.
    cfg.set_history(None);
    cfg.rootfs_mut().set_diff_ids(Vec::new());
    cfg.to_string()
        .map(String::into_bytes)
        .map_err(|e| ImageConfigError::Serialize(e.to_string()))
}

/// `SOURCE_DATE_EPOCH` seconds as RFC 3339 UTC.
pub fn rfc3339(secs: i64) -> String {
    crate::time::Utc::from_unix(secs).rfc3339()
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn epoch_seconds_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
