//! Build provenance: what a node image was built from, as `/usr/lib/nodestamp/build.json` in a
//! layer of its own on top of the node.
//!
//! ```text
//!  scratch ──► mkfile /static.json (spec digest, base digest, Kubernetes version and
//!              components, nodestamp version, build args)            ── what the frontend knows
//!  tools image: nodestamp provenance, node rootfs mounted read-only  ── adds the installed
//!              packages (package database) and local components' sha256
//!  merge(node, provenance)
//! ```
//! The OS and Kubernetes layers stay independent of each other; only this top layer (like
//! `finalize`) depends on both.

use std::collections::BTreeMap;

use llb_graph::{ChownOpt, Exec, FileActions, ImageOpts, Mount, NetMode, State};
use serde_json::{Value, json};

use super::Ctx;
use crate::spec::{ComponentSource, Spec};

/// Where the provenance file lives in the rootfs.
pub const BUILD_JSON: &str = "/usr/lib/nodestamp/build.json";
/// The schema name in `build.json`.
pub const SCHEMA: &str = "nodestamp.build/v1";
/// The version of nodestamp that compiled the graph.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the frontend knows about a build besides the spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// The resolved digest of `os.from`.
    pub base_digest: Option<String>,
    /// Build args as given (proxy settings are left out by [`recorded_build_args`]).
    pub build_args: BTreeMap<String, String>,
}

/// Build args worth recording: everything except proxy settings, which may carry credentials
/// and never change the result, and BuildKit's own (`BUILDKIT_SYNTAX`, …), which select the
/// frontend (its version is recorded) rather than the content.
pub fn recorded_build_args(args: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    args.iter()
        .filter(|(k, _)| {
            !crate::build::PROXY_ARGS.contains(&k.as_str()) && !k.starts_with("BUILDKIT_")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `name@sha256:<hex>` (or `name@local:<path>`) per component, for a label.
pub fn components_summary(spec: &Spec) -> Option<String> {
    let k = spec.kubernetes.as_ref()?;
    if k.components.is_empty() {
        return None;
    }
    Some(
        k.components
            .iter()
            .map(|c| match &c.source {
                ComponentSource::Http { sha256, .. } => format!("{}@sha256:{sha256}", c.name),
                ComponentSource::Local(p) => format!("{}@local:{p}", c.name),
            })
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The part of `build.json` the frontend knows: everything but the installed packages.
pub fn static_json(spec: &Spec, source: &[u8], info: &BuildInfo) -> Value {
    let kubernetes = spec.kubernetes.as_ref().map(|k| {
        let components: Vec<Value> = k
            .components
            .iter()
            .map(|c| {
                let dest = super::kubernetes::component_dest(&c.name, c.dest.as_deref(), c.extract);
                match &c.source {
                    ComponentSource::Http { url, sha256 } => json!({
                        "name": c.name, "url": url, "sha256": sha256,
                        "dest": dest, "extract": c.extract,
                    }),
                    ComponentSource::Local(p) => json!({
                        "name": c.name, "local": p, "dest": dest, "extract": c.extract,
                    }),
                }
            })
            .collect();
        json!({
            "version": k.version.as_ref().map(|v| v.value.clone()),
            "components": components,
        })
    });
    json!({
        "schema": SCHEMA,
        "name": spec.name,
        "nodestamp": { "version": VERSION },
        "spec": {
            "file": spec.file_name,
            "digest": crate::image::spec_digest(source),
        },
        "base": {
            "name": spec.os.from.value,
            "digest": info.base_digest,
        },
        "kubernetes": kubernetes,
        "build_args": recorded_build_args(&info.build_args),
    })
}

/// The command line of the tools step; `extra` copies `/static/extra` into the layer.
pub fn provenance_args(extra: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "nodestamp",
        "provenance",
        "--static",
        "/static/static.json",
        "--rootfs",
        "/rootfs",
        "--output",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("/out{BUILD_JSON}")])
    .collect();
    if extra {
        args.extend([
            "--extra".into(),
            "/static/extra".into(),
            "--extra-to".into(),
            "/out".into(),
        ]);
    }
    args
}

/// `node` with the provenance layer on top.
pub(crate) fn compile(ctx: &Ctx, spec: &Spec, node: &State, info: &BuildInfo) -> State {
    let text =
        serde_json::to_vec_pretty(&static_json(spec, &ctx.source.data, info)).unwrap_or_default();
    // The in-VM checks (specs with tests:) travel with the facts and are laid out, with the
    // same timestamps, by the provenance step: one normalized layer.
    let extra = super::checks::vm_files(spec);
    let mut fa = FileActions::new()
        .timestamp(ctx.opts.source_date_epoch)
        .mkfile("/static.json", 0o644, text, ChownOpt::ids(0, 0));
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _, _) in &extra {
        if let Some((dir, _)) = path.rsplit_once('/') {
            dirs.insert(format!("/extra{dir}"));
        }
    }
    for d in dirs {
        fa = fa.mkdir(d, 0o755, true, ChownOpt::ids(0, 0));
    }
    for (path, mode, data) in &extra {
        fa = fa.mkfile(
            format!("/extra{path}"),
            *mode,
            data.clone(),
            ChownOpt::ids(0, 0),
        );
    }
    let statics = State::scratch().file(
        fa,
        ctx.meta(
            if extra.is_empty() {
                "[provenance 1/2] build facts".into()
            } else {
                "[provenance 1/2] build facts and in-VM checks".into()
            },
            None,
        ),
    );
    let tools = State::image_with(
        &ctx.opts.tools_image,
        ImageOpts {
            resolve_mode: ctx.opts.image_resolve_mode,
            platform: Some(ctx.opts.platform.clone()),
        },
        ctx.meta("[provenance] tools image".into(), None),
    );
    let mut exec = Exec::new(provenance_args(!extra.is_empty()))
        .network(NetMode::None)
        .readonly_root()
        .mount(Mount::readonly(node, "/rootfs"))
        .mount(Mount::readonly(&statics, "/static"))
        .mount(Mount::scratch("/out"));
    if let Some(epoch) = ctx.opts.source_date_epoch {
        exec = exec.env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    let layer = tools
        .run(
            exec,
            ctx.meta(
                format!("[provenance 2/2] nodestamp provenance → {BUILD_JSON}"),
                None,
            ),
        )
        .output("/out")
        .unwrap_or_else(State::scratch);
    State::merge(
        &[node.clone(), layer],
        ctx.meta("[node] merge provenance".into(), None),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> (Spec, Vec<u8>) {
        let text = b"version: 1\nname: p\nos:\n  from: debian:bookworm\nkubernetes:\n  version: \"1.32.3\"\n  components:\n    - { name: kubelet, url: \"https://example.invalid/kubelet\", sha256: \"0000000000000000000000000000000000000000000000000000000000000000\" }\n    - { name: kubectl, local: components/kubectl }\n";
        let s = crate::spec::load("node.yaml", text, &BTreeMap::new())
            .unwrap()
            .spec;
        (s, text.to_vec())
    }

    #[test]
    fn static_json_records_spec_base_kubernetes_and_args() {
        let (s, src) = spec();
        let info = BuildInfo {
            base_digest: Some("sha256:abc".into()),
            build_args: BTreeMap::from([
                ("KUBERNETES_VERSION".to_string(), "1.32.3".to_string()),
                (
                    "HTTPS_PROXY".to_string(),
                    "http://user:pw@proxy:3128".to_string(),
                ),
            ]),
        };
        let v = static_json(&s, &src, &info);
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["name"], "p");
        assert_eq!(v["nodestamp"]["version"], VERSION);
        assert_eq!(v["spec"]["digest"], crate::image::spec_digest(&src));
        assert_eq!(v["base"]["name"], "debian:bookworm");
        assert_eq!(v["base"]["digest"], "sha256:abc");
        assert_eq!(v["kubernetes"]["version"], "1.32.3");
        assert_eq!(v["kubernetes"]["components"][0]["sha256"], "0".repeat(64));
        assert_eq!(
            v["kubernetes"]["components"][0]["dest"],
            "/usr/local/bin/kubelet"
        );
        assert_eq!(
            v["kubernetes"]["components"][1]["local"],
            "components/kubectl"
        );
        assert_eq!(v["build_args"]["KUBERNETES_VERSION"], "1.32.3");
        assert!(v["build_args"].get("BUILDKIT_SYNTAX").is_none());
        assert!(
            v["build_args"].get("HTTPS_PROXY").is_none(),
            "proxies may hold credentials and are not recorded"
        );
    }

    #[test]
    fn components_summary_names_every_checksum() {
        let (s, _) = spec();
        assert_eq!(
            components_summary(&s).unwrap(),
            format!(
                "kubelet@sha256:{},kubectl@local:components/kubectl",
                "0".repeat(64)
            )
        );
    }

    #[test]
    fn provenance_is_a_layer_on_top_and_leaves_os_and_kubernetes_alone() {
        let (s, src) = spec();
        let plain = super::super::compile(&s, &src, &Default::default());
        let opts = super::super::CompileOptions {
            provenance: Some(BuildInfo::default()),
            ..Default::default()
        };
        let with = super::super::compile(&s, &src, &opts);
        let d = |st: &State| st.digest().unwrap().unwrap();
        assert_eq!(d(&plain.os), d(&with.os));
        assert_eq!(d(&plain.kubernetes), d(&with.kubernetes));
        assert_ne!(d(&plain.node), d(&with.node));
        let json = with.node.marshal().map(|_| ()).is_ok();
        assert!(json);
    }
}
