//! The OCI image config of a result: the base image's config (environment, entrypoint, …)
//! with nodestamp's labels, and a `history` naming every layer by its step (`docker history`
//! then reads like the progress output). BuildKit's exporter fills in `rootfs`.

use std::collections::HashMap;

use llb_graph::Layer;
use oci_spec::image::{Arch, Config, History, HistoryBuilder, ImageConfiguration, Os};

use crate::{DEFAULT_PATH, provenance};
use nodestamp_spec::Spec;

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
    /// The result's layers, bottom first (`State::layers`), for the history.
    pub layers: &'a [Layer],
}

/// `comment` of the history entries of nodestamp's own layers.
pub const HISTORY_COMMENT: &str = "nodestamp";

/// The image history for `layers`: the base image's own entries for its layers, then one entry
/// per layer made by a step, `created_by` its progress name. BuildKit's exporter matches the
/// entries that are not `empty_layer` to the layers in order and describes any layer left over
/// itself, so the list stops at a layer whose origin it cannot name (an image other than the
/// base, or the base when its config is unknown) rather than shift the names of the rest.
pub fn history(
    layers: &[Layer],
    base: Option<(&str, &ImageConfiguration)>,
    created: Option<&str>,
) -> Vec<History> {
    let mut out = Vec::new();
    for layer in layers {
        match layer {
            Layer::Op { name } => out.push(entry(name, created, HISTORY_COMMENT)),
            Layer::Image { identifier } => {
                let Some((base_id, cfg)) = base.filter(|(id, _)| id == identifier) else {
                    break;
                };
                out.extend(base_history(base_id, cfg));
            }
        }
    }
    out
}

fn entry(created_by: &str, created: Option<&str>, comment: &str) -> History {
    let mut b = HistoryBuilder::default()
        .created_by(created_by.to_string())
        .comment(comment.to_string());
    if let Some(c) = created {
        b = b.created(c.to_string());
    }
    b.build().unwrap_or_default()
}

/// The base image's history with exactly one non-empty entry per layer of its `rootfs`: extra
/// entries are marked empty from the top, missing ones are added naming the image.
fn base_history(identifier: &str, cfg: &ImageConfiguration) -> Vec<History> {
    let layers = cfg.rootfs().diff_ids().len();
    let mut hist = cfg.history().clone().unwrap_or_default();
    let mut seen = 0;
    for h in hist.iter_mut() {
        if h.empty_layer() == Some(true) {
            continue;
        }
        if seen >= layers {
            h.set_empty_layer(Some(true));
        } else {
            seen += 1;
        }
    }
    let name = identifier
        .split_once("://")
        .map_or(identifier, |(_, r)| r)
        .to_string();
    for _ in seen..layers {
        hist.push(entry(&format!("from {name}"), None, HISTORY_COMMENT));
    }
    hist
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
    l.insert(
        labels::SPEC_DIGEST.into(),
        provenance::spec_digest(input.source),
    );
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
    l.insert(labels::VERSION.into(), crate::VERSION.into());
    let args = provenance::recorded_build_args(input.build_args);
    l.insert(
        labels::BUILD_ARGS.into(),
        serde_json::to_string(&args).unwrap_or_default(),
    );
    if let Some(c) = provenance::components_summary(spec) {
        l.insert(labels::KUBERNETES_COMPONENTS.into(), c);
    }
    if input.provenance {
        l.insert(
            labels::PROVENANCE.into(),
            nodestamp_contract::paths::in_node(nodestamp_contract::paths::BUILD_JSON),
        );
    }
    config.set_labels(Some(l));
    cfg.set_config(Some(config));
    let base = match input.base {
        Some(b) if !only_kubernetes => Some(
            ImageConfiguration::from_reader(b)
                .map_err(|e| ImageConfigError::BadBase(e.to_string()))?,
        ),
        _ => None,
    };
    let base_id = input
        .layers
        .iter()
        .find_map(|l| match l {
            Layer::Image { identifier } => Some(identifier.as_str()),
            Layer::Op { .. } => None,
        })
        .unwrap_or_default();
    let hist = history(
        input.layers,
        base.as_ref().map(|c| (base_id, c)),
        input.created.as_deref(),
    );
    cfg.set_history((!hist.is_empty()).then_some(hist));
    // The exporter computes these from the layers it writes.
    cfg.rootfs_mut().set_diff_ids(Vec::new());
    cfg.to_string()
        .map(String::into_bytes)
        .map_err(|e| ImageConfigError::Serialize(e.to_string()))
}

/// `SOURCE_DATE_EPOCH` seconds as RFC 3339 UTC.
pub fn rfc3339(secs: i64) -> String {
    nodestamp_contract::time::Utc::from_unix(secs).rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(diff_ids: usize, history: &str) -> ImageConfiguration {
        let ids: Vec<String> = (0..diff_ids)
            .map(|i| format!("\"sha256:{}\"", format!("{i:x}").repeat(64)))
            .collect();
        let text = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}},"history":{history}}}"#,
            ids.join(",")
        );
        ImageConfiguration::from_reader(text.as_bytes()).unwrap()
    }

    fn created_by(h: &[History]) -> Vec<(String, bool)> {
        h.iter()
            .map(|h| {
                (
                    h.created_by().clone().unwrap_or_default(),
                    h.empty_layer() == Some(true),
                )
            })
            .collect()
    }

    const IMG: &str = "docker-image://docker.io/library/debian:bookworm";

    fn layers(names: &[&str]) -> Vec<Layer> {
        std::iter::once(Layer::Image {
            identifier: IMG.into(),
        })
        .chain(names.iter().map(|n| Layer::Op {
            name: n.to_string(),
        }))
        .collect()
    }

    #[test]
    fn history_names_each_layer_by_its_step_after_the_base_history() {
        let b = base(
            1,
            r#"[{"created_by":"ADD rootfs"},{"created_by":"CMD bash","empty_layer":true}]"#,
        );
        let h = history(
            &layers(&["[os 1/2] install packages: jq", "[os 2/2] files"]),
            Some((IMG, &b)),
            Some("2023-11-14T22:13:20Z"),
        );
        assert_eq!(
            created_by(&h),
            [
                ("ADD rootfs".to_string(), false),
                ("CMD bash".to_string(), true),
                ("[os 1/2] install packages: jq".to_string(), false),
                ("[os 2/2] files".to_string(), false),
            ]
        );
        assert_eq!(h[2].comment().as_deref(), Some(HISTORY_COMMENT));
        assert_eq!(h[3].created().as_deref(), Some("2023-11-14T22:13:20Z"));
    }

    #[test]
    fn base_history_gets_one_entry_per_base_layer() {
        // `docker import` images may have fewer entries than layers, or more.
        let short = base(2, r#"[{"created_by":"imported"}]"#);
        let h = history(&layers(&["s"]), Some((IMG, &short)), None);
        assert_eq!(
            created_by(&h),
            [
                ("imported".to_string(), false),
                ("from docker.io/library/debian:bookworm".to_string(), false),
                ("s".to_string(), false),
            ]
        );
        let long = base(1, r#"[{"created_by":"a"},{"created_by":"b"}]"#);
        let h = history(&layers(&["s"]), Some((IMG, &long)), None);
        assert_eq!(
            created_by(&h),
            [
                ("a".to_string(), false),
                ("b".to_string(), true),
                ("s".to_string(), false)
            ]
        );
    }

    #[test]
    fn history_stops_at_a_layer_it_cannot_name() {
        // Without the base config the count of its layers is unknown: BuildKit names them all.
        assert!(history(&layers(&["s"]), None, None).is_empty());
        let mut ls = vec![Layer::Op { name: "k".into() }];
        ls.extend(layers(&["s"]));
        let b = base(1, "[]");
        let h = history(&ls, Some(("docker-image://other", &b)), None);
        assert_eq!(created_by(&h), [("k".to_string(), false)]);
    }

    #[test]
    fn epoch_seconds_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
