//! Build provenance: what a node image was built from, in `/usr/lib/nodestamp/`, as three
//! small layers on top of the node, each depending only on what it describes:
//!
//! ```text
//!  OS layer ─► tools image: nodestamp provenance-packages ─► packages.json    (OS facts)
//!  local components ─► tools image: sha256sum ─────────────► components.json  (their sha256)
//!  scratch ─► mkfile build.json (spec digest, base digest, Kubernetes version and
//!             components, nodestamp version, build args) + in-VM checks  (file actions)
//!  merge(node, packages, components, build)
//! ```
//! No step mounts the merged node: a Kubernetes-only change re-uses the packages layer and
//! re-writes one small file, an OS-only change re-reads the package database and nothing of
//! Kubernetes. [`assemble`] joins the three files into one document (`nodestamp inspect`).

use std::collections::BTreeMap;

use llb_graph::{ChownOpt, CopyOpts, Exec, FileActions, Mount, NetMode, State};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use nodestamp_contract::paths::{BUILD_JSON, COMPONENTS_JSON, PACKAGES_JSON, in_node};

use super::Ctx;
use super::script::quote;
use nodestamp_spec::{ComponentSource, Spec};

/// The schema name in `build.json`.
pub const SCHEMA: &str = "nodestamp.build/v1";

/// sha256 of the spec's bytes, as `sha256:<hex>`.
pub fn spec_digest(source: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(source)))
}

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
        .filter(|(k, _)| !crate::PROXY_ARGS.contains(&k.as_str()) && !k.starts_with("BUILDKIT_"))
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

/// The contents of `build.json`: what the frontend knows.
pub fn build_json(spec: &Spec, source: &[u8], info: &BuildInfo) -> Value {
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
        let mut v = json!({
            "version": k.version.as_ref().map(|v| v.value.clone()),
            "components": components,
        });
        if !k.images.is_empty() {
            // What the spec says; the digests the build found are in each `record`.
            let images: Vec<Value> = k
                .images
                .iter()
                .map(|i| {
                    let stem = nodestamp_contract::images::file_stem(&i.reference);
                    let dir = nodestamp_contract::images::NODE_DIR;
                    json!({
                        "ref": i.reference, "archive": i.archive, "sha256": i.sha256,
                        "record": format!("{dir}/{stem}.json"),
                    })
                })
                .collect();
            v["images"] = Value::Array(images);
        }
        v
    });
    json!({
        "schema": SCHEMA,
        "name": spec.name,
        "nodestamp": { "version": crate::VERSION },
        "spec": {
            "file": spec.file_name,
            "digest": spec_digest(source),
        },
        "base": {
            "name": spec.os.from.value,
            "digest": info.base_digest,
        },
        "kubernetes": kubernetes,
        "build_args": recorded_build_args(&info.build_args),
    })
}

/// One document from the three files: `packages` from `packages.json`, and each local
/// component's `sha256` from `components.json`.
pub fn assemble(mut build: Value, packages: Option<Value>, components: Option<Value>) -> Value {
    if let Some(p) = packages {
        build["packages"] = p;
    }
    if let (Some(sums), Some(list)) = (
        components.as_ref().and_then(Value::as_object),
        build
            .pointer_mut("/kubernetes/components")
            .and_then(Value::as_array_mut),
    ) {
        for c in list {
            if c.get("local").is_none() {
                continue;
            }
            if let Some(sum) = c["name"].as_str().and_then(|n| sums.get(n)) {
                c["sha256"] = sum.clone();
            }
        }
    }
    build
}

/// `packages.json`: the tools image reads the package database of the OS layer, mounted
/// read-only (nothing runs in it).
fn packages_layer(ctx: &Ctx, os: &State) -> State {
    let mut exec = Exec::new(
        [
            "nodestamp",
            "provenance-packages",
            "--rootfs",
            "/rootfs",
            "--output",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("/out/{PACKAGES_JSON}")])
        .collect::<Vec<_>>(),
    )
    .network(NetMode::None)
    .readonly_root()
    .mount(Mount::readonly(os, "/rootfs"))
    .mount(Mount::scratch("/out"));
    if let Some(epoch) = ctx.opts.source_date_epoch {
        exec = exec.env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    ctx.tools_image("provenance")
        .run(
            exec,
            ctx.meta(
                format!("[provenance] installed packages → /{PACKAGES_JSON}"),
                None,
            ),
        )
        .output("/out")
        .unwrap_or_else(State::scratch)
}

/// `components.json`: the tools image runs `sha256sum` with only the local components'
/// sources mounted, so the step is re-used until a component changes. `None` without local
/// components (downloaded ones carry their sha256 in the spec).
fn components_layer(ctx: &Ctx, spec: &Spec) -> Option<State> {
    let k = spec.kubernetes.as_ref()?;
    let locals: Vec<(&str, &str, _, _)> = k
        .components
        .iter()
        .filter_map(|c| match &c.source {
            ComponentSource::Local(rel) => {
                Some((c.name.as_str(), rel.as_str(), c.span, c.context.as_ref()))
            }
            ComponentSource::Http { .. } => None,
        })
        .collect();
    if locals.is_empty() {
        return None;
    }
    let file = format!("/out/{COMPONENTS_JSON}");
    let dir = file.rsplit_once('/').map(|(d, _)| d).unwrap_or("/out");
    // Component names are [a-z0-9._-] and sums hex: nothing to escape in the JSON. A source
    // that is missing or not a regular file fails its install step, which says why.
    let mut script = format!("set -eu\nmkdir -p {dir}\nf={file}\nsep=\nprintf '{{' >\"$f\"\n");
    for (i, (name, rel, _, _)) in locals.iter().enumerate() {
        let path = quote(&format!("/in/{i}/{rel}"));
        script += &format!(
            "if [ -f {path} ]; then set -- $(sha256sum <{path}); printf '%s\\n  \"%s\": \"%s\"' \"$sep\" {name} \"$1\" >>\"$f\"; sep=,; fi\n",
            name = quote(name)
        );
    }
    script += "printf '\\n}\\n' >>\"$f\"\n";
    if let Some(epoch) = ctx.opts.source_date_epoch {
        script += &format!("find /out -exec touch -h -d @{epoch} -- {{}} +\n");
    }
    let names: Vec<&str> = locals.iter().map(|(n, _, _, _)| *n).collect();
    let meta = ctx.meta(
        format!(
            "[provenance] sha256 of local components: {} → /{COMPONENTS_JSON}",
            names.join(" ")
        ),
        None,
    );
    let mut exec = super::script::shell(ctx, &meta, script)
        .network(NetMode::None)
        .readonly_root()
        .mount(Mount::scratch("/out"));
    for (i, (_, rel, span, context)) in locals.iter().enumerate() {
        exec = exec.mount(Mount::readonly(
            &super::os::local(ctx, *context, rel, *span),
            format!("/in/{i}"),
        ));
    }
    ctx.tools_image("provenance").run(exec, meta).output("/out")
}

/// `build.json` and, for specs with `tests:`, the in-VM checks, written by file actions.
fn build_layer(ctx: &Ctx, spec: &Spec, info: &BuildInfo) -> State {
    let mut text =
        serde_json::to_vec_pretty(&build_json(spec, &ctx.source.data, info)).unwrap_or_default();
    text.push(b'\n');
    let epoch = ctx.opts.source_date_epoch;
    let checks = super::checks::vm_files(spec);
    let what = if checks.is_empty() {
        format!("[provenance] build facts → /{BUILD_JSON}")
    } else {
        format!("[provenance] build facts and in-VM checks → /{BUILD_JSON}")
    };
    let mut files = vec![(in_node(BUILD_JSON), 0o644, text)];
    files.extend(checks.into_iter().map(|(p, m, d)| (p.to_string(), m, d)));
    let dirs: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|(p, _, _)| p.rsplit_once('/').map(|(d, _)| d.to_string()))
        .collect();
    let mut fa = FileActions::new().timestamp(epoch);
    for d in dirs {
        fa = fa.mkdir(d, 0o755, true, ChownOpt::ids(0, 0));
    }
    for (path, mode, data) in files {
        fa = fa.mkfile(path, mode, data, ChownOpt::ids(0, 0));
    }
    let layer = State::scratch().file(fa, ctx.meta(what, None));
    match epoch {
        None => layer,
        // Writing a file touches its directory; copied with a timestamp, every entry (the
        // directories too) carries the epoch and the layer has the same bytes on every build.
        Some(epoch) => State::scratch().file(
            FileActions::new().timestamp(Some(epoch)).copy(
                &layer,
                "/",
                "/",
                CopyOpts {
                    dir_contents_only: true,
                    create_dest_path: true,
                    owner: ChownOpt::ids(0, 0),
                    timestamp: Some(epoch),
                    ..Default::default()
                },
            ),
            ctx.meta("[provenance] SOURCE_DATE_EPOCH: build facts".into(), None),
        ),
    }
}

/// `node` with the provenance layers on top.
pub(crate) fn compile(ctx: &Ctx, spec: &Spec, os: &State, node: &State, info: &BuildInfo) -> State {
    let mut layers = vec![node.clone(), packages_layer(ctx, os)];
    layers.extend(components_layer(ctx, spec));
    layers.push(build_layer(ctx, spec, info));
    State::merge(&layers, ctx.meta("[node] merge provenance".into(), None))
}

/// The SBOM of a result ([`crate::sbom::SBOM_PATH`] in a state of its own, never part of the
/// image): the tools image turns the provenance layers into SPDX (`nodestamp provenance-sbom`).
/// They are the very layers the node carries (same digests, built once); `os` is the OS layer
/// when the result has one, and `scope` says what the result holds.
pub(crate) fn sbom(
    ctx: &Ctx,
    spec: &Spec,
    os: Option<&State>,
    info: &BuildInfo,
    scope: crate::sbom::Scope,
) -> State {
    let file = |dir: &str, path: &str| format!("/facts/{dir}/{path}");
    let mut args: Vec<String> = vec![
        "nodestamp".into(),
        "provenance-sbom".into(),
        "--build".into(),
        file("build", BUILD_JSON),
    ];
    let mut mounts = vec![
        Mount::readonly(&build_layer(ctx, spec, info), "/facts/build"),
        Mount::scratch("/out"),
    ];
    match os.filter(|_| scope.os) {
        Some(os) => {
            mounts.push(Mount::readonly(&packages_layer(ctx, os), "/facts/packages"));
            args.extend(["--packages".into(), file("packages", PACKAGES_JSON)]);
        }
        None => args.push("--without-os".into()),
    }
    if scope.kubernetes {
        if let Some(layer) = components_layer(ctx, spec) {
            mounts.push(Mount::readonly(&layer, "/facts/components"));
            args.extend(["--components".into(), file("components", COMPONENTS_JSON)]);
        }
    } else {
        args.push("--without-kubernetes".into());
    }
    args.extend(["--output".into(), format!("/out{}", crate::sbom::SBOM_PATH)]);
    let mut exec = Exec::new(args).network(NetMode::None).readonly_root();
    for m in mounts {
        exec = exec.mount(m);
    }
    if let Some(epoch) = ctx.opts.source_date_epoch {
        exec = exec.env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    ctx.tools_image("sbom")
        .run(
            exec,
            ctx.meta(
                format!(
                    "[sbom] SPDX document of {} → {}",
                    spec.name,
                    crate::sbom::SBOM_PATH
                ),
                None,
            ),
        )
        .output("/out")
        .unwrap_or_else(State::scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> (Spec, Vec<u8>) {
        let text = b"version: 1\nname: p\nos:\n  from: debian:bookworm\nkubernetes:\n  version: \"1.32.3\"\n  components:\n    - { name: kubelet, url: \"https://example.invalid/kubelet\", sha256: \"0000000000000000000000000000000000000000000000000000000000000000\" }\n    - { name: kubectl, local: components/kubectl }\n";
        let s = nodestamp_spec::load("node.yaml", text, &BTreeMap::new())
            .unwrap()
            .spec;
        (s, text.to_vec())
    }

    #[test]
    fn build_json_records_spec_base_kubernetes_and_args() {
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
        let v = build_json(&s, &src, &info);
        assert!(v.get("packages").is_none(), "packages.json holds them");
        assert!(v["kubernetes"]["components"][1].get("sha256").is_none());
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["name"], "p");
        assert_eq!(v["nodestamp"]["version"], crate::VERSION);
        assert_eq!(v["spec"]["digest"], spec_digest(&src));
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
    fn assemble_adds_packages_and_local_sums_only() {
        let (s, src) = spec();
        let build = build_json(&s, &src, &BuildInfo::default());
        let v = assemble(
            build.clone(),
            Some(json!({"manager": "dpkg", "installed": [{"name": "jq"}]})),
            Some(json!({"kubectl": "ab".repeat(32), "kubelet": "ff".repeat(32)})),
        );
        assert_eq!(v["packages"]["installed"][0]["name"], "jq");
        assert_eq!(v["kubernetes"]["components"][1]["sha256"], "ab".repeat(32));
        assert_eq!(
            v["kubernetes"]["components"][0]["sha256"],
            "0".repeat(64),
            "a download keeps the spec's sha256"
        );
        assert_eq!(assemble(build.clone(), None, None), build);
    }

    /// The exec of `state`'s graph whose args or generated script contain `arg`: its script
    /// (the mounted file of a shell step, else its last arg) and the digests of its inputs.
    fn exec_with(state: &State, arg: &str) -> (String, Vec<String>) {
        let ops = llb_graph::decode_ops(&state.marshal().unwrap())
            .unwrap()
            .ops;
        ops.values()
            .find_map(|op| match &op.op {
                Some(llb_graph::pb::op::Op::Exec(e)) => {
                    let args = &e.meta.as_ref()?.args;
                    let script = crate::script::command_files(&ops, op)
                        .into_iter()
                        .find(|(name, _)| name == "step")
                        .map(|(_, text)| text)
                        .or_else(|| args.last().cloned())
                        .unwrap_or_default();
                    (args.iter().any(|a| a.contains(arg)) || script.contains(arg)).then(|| {
                        let inputs = op.inputs.iter().map(|i| i.digest.clone()).collect();
                        (script, inputs)
                    })
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no exec with {arg:?}"))
    }

    #[test]
    fn the_fact_steps_see_their_own_inputs_and_never_the_merged_node() {
        let (s, src) = spec();
        let opts = super::super::CompileOptions {
            provenance: Some(BuildInfo::default()),
            ..Default::default()
        };
        let c = super::super::compile(&s, &src, &opts);
        let d = |st: &State| st.digest().unwrap().unwrap().to_string();
        let (_, packages) = exec_with(&c.node, "provenance-packages");
        assert!(packages.contains(&d(&c.os)), "{packages:?}");
        assert_eq!(
            packages.len(),
            2,
            "tools image and the OS layer: {packages:?}"
        );
        let (script, sums) = exec_with(&c.node, "sha256sum");
        assert_eq!(
            sums.len(),
            3,
            "tools image, kubectl's source and the script: {sums:?}"
        );
        assert!(!sums.contains(&d(&c.os)) && !sums.contains(&d(&c.kubernetes)));
        assert!(script.contains("/in/0/components/kubectl"), "{script}");
        assert!(
            !script.contains("kubelet"),
            "downloads carry their sha256: {script}"
        );
    }

    #[test]
    fn the_checksum_script_writes_json_naming_each_local_component() {
        let (s, src) = spec();
        let opts = super::super::CompileOptions::default();
        let ctx = super::super::Ctx {
            opts: &opts,
            source: llb_graph::SourceMap::new("node.yaml", src.clone(), "YAML"),
        };
        let layer = components_layer(&ctx, &s).unwrap();
        let (script, _) = exec_with(&layer, "sha256sum");
        // Run it with /in and /out moved under a temporary directory.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("in/0/components")).unwrap();
        std::fs::write(dir.path().join("in/0/components/kubectl"), b"abc").unwrap();
        let script = script
            .replace("/in/", &format!("{root}/in/"))
            .replace("/out", &format!("{root}/out"));
        crate::script::run_ok(&script);
        let text = std::fs::read_to_string(format!("{root}/out/{COMPONENTS_JSON}")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({"kubectl": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"})
        );
    }

    #[test]
    fn the_sbom_step_reads_the_node_s_own_provenance_layers() {
        let (s, src) = spec();
        let info = BuildInfo::default();
        let opts = super::super::CompileOptions {
            provenance: Some(info.clone()),
            ..Default::default()
        };
        let c = super::super::compile(&s, &src, &opts);
        let sbom = super::super::sbom(&s, &src, &opts, &super::super::Target::Node, &info);
        let (_, inputs) = exec_with(&sbom, "provenance-sbom");
        let node_ops: Vec<String> = llb_graph::decode_ops(&c.node.marshal().unwrap())
            .unwrap()
            .ops
            .keys()
            .map(|d| d.to_string())
            .collect();
        // Tools image, build.json, packages.json, components.json: all in the node too.
        assert_eq!(inputs.len(), 4, "{inputs:?}");
        for i in &inputs {
            assert!(node_ops.contains(i), "{i} is not a layer of the node");
        }
        let ops = llb_graph::decode_ops(&sbom.marshal().unwrap()).unwrap().ops;
        let args = ops
            .values()
            .find_map(|op| match &op.op {
                Some(llb_graph::pb::op::Op::Exec(e)) => e
                    .meta
                    .as_ref()
                    .filter(|m| m.args.iter().any(|a| a == "provenance-sbom"))
                    .map(|m| m.args.clone()),
                _ => None,
            })
            .unwrap();
        assert!(args.contains(&"/facts/packages/usr/lib/nodestamp/packages.json".to_string()));
        assert!(
            args.contains(&"/out/sbom.spdx.json".to_string()),
            "{args:?}"
        );

        // The OS target: no components; the Kubernetes target: no OS layer at all.
        let os = super::super::sbom(&s, &src, &opts, &super::super::Target::Os, &info);
        let (_, inputs) = exec_with(&os, "provenance-sbom");
        assert_eq!(
            inputs.len(),
            3,
            "tools image, build.json, packages.json: {inputs:?}"
        );
        let k = super::super::sbom(&s, &src, &opts, &super::super::Target::Kubernetes, &info);
        let (_, inputs) = exec_with(&k, "provenance-sbom");
        assert!(!inputs.contains(&c.os.digest().unwrap().unwrap().to_string()));
        assert_eq!(
            inputs.len(),
            3,
            "tools image, build.json, components.json: {inputs:?}"
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
