//! Inline contents that travel in the spec file rather than in the build definition.
//!
//! BuildKit takes the definition in one gRPC message of at most 4 MiB, so contents written
//! into it (`mkfile`) put a ceiling on a spec: about 1,900 files of 1 KB, or one 4 MB file. The
//! engine already holds the spec file (the frontend reads it from the `dockerfile` local
//! source). When a layer's inline file contents add up to more than [`THRESHOLD`], two steps of
//! the tools image replace the `rm` + `mkfile` pairs:
//!
//! ```text
//!  local://dockerfile (the spec) ─► nodestamp inline-contents --layer os ─► /out: f0 f1 … plan.json
//!  os … ─► files (the other entries) ─► nodestamp inline-apply (/out read-only, the layer mounted)
//! ```
//!
//! The first reads the spec with the same loader and the build args it refers to, and writes
//! each content and a plan (path, mode, owner); it refuses to write anything but the contents
//! the frontend compiled ([`digest`]). The second writes them into the layer as the file
//! actions did. The definition grows by nothing per file, and BuildKit pays no per-action cost
//! (a copy action per file took 150 s for 5,000 files; one step takes a second).
//!
//! The OS and the Kubernetes layer each get their own steps, so a Kubernetes layer never depends
//! on OS contents. The first step runs again whenever the spec file changes, but the second is
//! keyed by what the first wrote (a read-only mount's cache key is its contents), so a layer
//! whose contents did not change is re-used and keeps its digest.

use std::collections::BTreeMap;

use llb_graph::{Exec, LocalOpts, Meta, Mount, NetMode, State};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Ctx;
use nodestamp_spec::{Contents, Owner, Spec, Storage};

/// Above this many bytes of inline contents in a layer, the layer reads them from the spec
/// file in the engine. Below it they stay in the definition: no extra step for small specs.
pub const THRESHOLD: usize = 64 * 1024;

/// The layer whose contents a step writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Os,
    Kubernetes,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Os => "os",
            Layer::Kubernetes => "kubernetes",
        }
    }

    pub fn parse(s: &str) -> Option<Layer> {
        match s {
            "os" => Some(Layer::Os),
            "kubernetes" => Some(Layer::Kubernetes),
            _ => None,
        }
    }
}

/// Where the engine finds the spec file: a local source (its name and attributes, as the
/// frontend read it) and the file's name in it, plus the build args its `${VAR}` references
/// need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecSource {
    pub local_name: String,
    pub attrs: BTreeMap<String, String>,
    pub filename: String,
    pub build_args: BTreeMap<String, String>,
}

/// One inline content of a layer: `f<i>` for `storage.files[i]`, its text, and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob<'a> {
    pub name: String,
    pub contents: &'a str,
    pub entry: PlanEntry,
}

/// Who owns a written file: a name (resolved in the layer's `/etc/passwd` or `/etc/group`)
/// or a numeric id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanOwner {
    Name(String),
    Id(u32),
}

/// One file the apply step writes: `src` (a file of the extracted contents) to `path` with
/// `mode` (all 12 bits) and owner, replacing whatever the layer has at `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    pub src: String,
    pub path: String,
    pub mode: u32,
    pub user: Option<PlanOwner>,
    pub group: Option<PlanOwner>,
}

/// `plan.json` of the extracted contents: the entries in spec order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub files: Vec<PlanEntry>,
}

/// The name of the plan among the extracted contents.
pub const PLAN_FILE: &str = "plan.json";

fn storage(spec: &Spec, layer: Layer) -> Option<&Storage> {
    match layer {
        Layer::Os => Some(&spec.os.storage),
        Layer::Kubernetes => spec.kubernetes.as_ref().map(|k| &k.storage),
    }
}

fn plan_owner(o: &Option<Owner>) -> Option<PlanOwner> {
    o.as_ref().map(|o| match o {
        Owner::Name(n) => PlanOwner::Name(n.clone()),
        Owner::Id(id) => PlanOwner::Id(*id),
    })
}

/// The inline contents of `layer`'s files, in spec order.
pub fn blobs(spec: &Spec, layer: Layer) -> Vec<Blob<'_>> {
    let Some(storage) = storage(spec, layer) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, f) in storage.files.iter().enumerate() {
        if let Contents::Inline(text) = &f.contents {
            let name = format!("f{i}");
            out.push(Blob {
                entry: PlanEntry {
                    src: name.clone(),
                    path: f.path.clone(),
                    mode: f.mode.unwrap_or(0o644),
                    user: plan_owner(&f.user),
                    group: plan_owner(&f.group),
                },
                name,
                contents: text,
            });
        }
    }
    out
}

/// The bytes of every blob together.
pub fn total(blobs: &[Blob]) -> usize {
    blobs.iter().map(|b| b.contents.len()).sum()
}

/// sha256 of the blobs (entries, lengths and contents): the frontend puts it on the step's
/// command line and the step refuses to write anything else, so a tools image whose
/// `nodestamp` reads the spec differently fails instead of building other contents.
pub fn digest(blobs: &[Blob]) -> String {
    let mut h = Sha256::new();
    for b in blobs {
        let entry = serde_json::to_string(&b.entry).unwrap_or_default();
        h.update(format!("{entry}\0{}\0", b.contents.len()).as_bytes());
        h.update(b.contents.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Whether `layer` reads its inline contents from the spec file: when they are more than
/// [`THRESHOLD`] and the engine holds the spec file (`has_source`).
pub fn extracted(spec: &Spec, layer: Layer, has_source: bool) -> bool {
    has_source && total(&blobs(spec, layer)) > THRESHOLD
}

/// The step's output for `layer`, when its contents go through the spec file: `None` when
/// they are small enough for the definition or the engine has no local spec file.
pub(crate) fn extract(ctx: &Ctx, spec: &Spec, layer: Layer) -> Option<State> {
    let src = ctx.opts.spec_source.as_ref()?;
    if !extracted(spec, layer, true) {
        return None;
    }
    let blobs = blobs(spec, layer);
    let spec_file = State::local(
        &src.local_name,
        LocalOpts {
            extra: src.attrs.clone(),
            ..LocalOpts::default()
        },
        ctx.meta(format!("[internal] spec file {}", src.filename), None),
    );
    let mut args = vec![
        "nodestamp".to_string(),
        "inline-contents".into(),
        "--spec".into(),
        format!("/spec/{}", src.filename),
        "--name".into(),
        spec.file_name.clone(),
        "--layer".into(),
        layer.as_str().into(),
        "--sha256".into(),
        digest(&blobs),
        "--output".into(),
        "/out".into(),
    ];
    for (k, v) in &src.build_args {
        args.push("--build-arg".into());
        args.push(format!("{k}={v}"));
    }
    let exec = Exec::new(args)
        .mount(Mount::readonly(&spec_file, "/spec"))
        .mount(Mount::scratch("/out"))
        .network(NetMode::None)
        .readonly_root();
    let name = format!(
        "[{l}] inline contents: {n} from {file}",
        l = layer.as_str(),
        n = plural(blobs.len(), "file"),
        file = spec.file_name
    );
    ctx.tools_image(layer.as_str())
        .run(exec, ctx.meta(name, None))
        .output("/out")
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `layer` with the extracted contents written into it by the tools image (`nodestamp
/// inline-apply`): each file replaces what is at its path, parents are made 0755 as file
/// actions make them, owners by name resolve in the layer, and with `SOURCE_DATE_EPOCH` the
/// files and the directories they change get that time. One step for any number of files: a
/// copy action per file costs BuildKit a mount of both sides each (150 s for 5,000 files).
/// Its cache key is the extracted contents (mounted read-only), so a spec change that leaves
/// them alone re-uses it.
pub(crate) fn apply(
    ctx: &Ctx,
    layer: &State,
    extracted: &State,
    meta: Meta,
    which: Layer,
) -> State {
    let mut args = vec![
        "nodestamp".to_string(),
        "inline-apply".into(),
        "--from".into(),
        "/in".into(),
        "--root".into(),
        "/layer".into(),
    ];
    if let Some(epoch) = ctx.opts.source_date_epoch {
        args.push("--epoch".into());
        args.push(epoch.to_string());
    }
    let exec = Exec::new(args)
        .mount(Mount::readonly(extracted, "/in"))
        .mount(Mount::layer(layer, "/layer"))
        .network(NetMode::None)
        .readonly_root();
    ctx.tools_image(which.as_str())
        .run(exec, meta)
        .output("/layer")
        .unwrap_or_else(|| layer.clone())
}
