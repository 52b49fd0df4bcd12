//! Spec → LLB. A pure function: no I/O, no daemon; the same spec and options always give the
//! same graph (and so byte-identical definitions).
//!
//! ```text
//!  os.from ──► packages (boot tier) ──► packages ──► users ──► files ──► units ──► run…   (os)
//!  scratch ──► component 1 │ scratch ──► component 2 │ … │ scratch ──► config, units, sysctl
//!              └───────────── merge ─────────────────────────────┘                (kubernetes)
//!  merge(os, kubernetes) ──► finalize (only when needed)                            (node)
//! ```
//! The Kubernetes layer never runs anything against the OS: it is made of sources and file
//! actions on scratch (plus, on engines without symlink file actions, a step of the frontend's
//! own tools image writing links into it), so its digests do not depend on the OS layer.

pub mod checks;
pub mod contexts;
pub mod disk;
pub mod image;
pub mod inline;
mod kubernetes;
mod os;
pub mod packages;
pub mod provenance;
pub mod reproducible;
pub mod sbom;
pub mod script;
pub mod size;
pub mod sysext;
mod units;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use llb_graph::{Meta, Platform, ResolveMode, SourceMap, SourceRange, State};

use nodestamp_spec::{Format, Span, Spec};

pub use units::install_targets;

/// The version of nodestamp that compiled the graph.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Build args that set proxies for package installs and downloads.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// Build arg overriding the image whose tools run nodestamp's own steps.
pub const TOOLS_IMAGE_ARG: &str = "NODESTAMP_TOOLS_IMAGE";

/// What a build produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Os,
    Kubernetes,
    Node,
    /// Disk images in these formats (`raw`, `qcow2`, `vmdk`, `vhd`, `ova`, `gce`, or `disk` for
    /// the spec's `disk.formats`).
    Disk(Vec<Format>),
    /// The Kubernetes layer as a systemd system extension image, `<name>.raw` (erofs).
    Sysext,
    /// KubeVirt's containerDisk: an image holding the qcow2 at `/disk/<name>.qcow2`, owned by
    /// uid/gid 107.
    ContainerDisk,
    /// The spec's `tests:` run against the node; the result is the report.
    Test,
}

impl Target {
    /// The accepted target names, for messages and documentation.
    pub const NAMES: &'static [&'static str] = &[
        "node",
        "os",
        "kubernetes",
        "raw",
        "qcow2",
        "vmdk",
        "vhd",
        "ova",
        "gce",
        "disk",
        "containerdisk",
        "sysext",
        "test",
    ];

    /// Parses a target name; `disk` takes its formats from `spec`.
    pub fn parse(s: &str, spec: &Spec) -> Result<Target, String> {
        Ok(match s {
            "" | "node" => Target::Node,
            "os" => Target::Os,
            "kubernetes" => Target::Kubernetes,
            "sysext" => Target::Sysext,
            "containerdisk" => Target::ContainerDisk,
            "test" => Target::Test,
            "disk" => {
                let formats = spec
                    .disk
                    .as_ref()
                    .map(|d| d.formats.clone())
                    .unwrap_or_default();
                if formats.is_empty() {
                    return Err(format!(
                        "target \"disk\" builds the formats listed in disk.formats, and {} lists none; \
                         add disk.formats or use --target raw, qcow2, vmdk, vhd, ova or gce",
                        spec.file_name
                    ));
                }
                Target::Disk(formats)
            }
            other => match Format::ALL.iter().find(|(name, _)| *name == other) {
                Some((_, f)) => Target::Disk(vec![*f]),
                None => {
                    return Err(format!(
                        "unknown target {other:?}: accepted targets are {}",
                        Target::NAMES.join(", ")
                    ));
                }
            },
        })
    }

    /// Whether the result carries build provenance (`/usr/lib/nodestamp/build.json`): the
    /// node image and everything made from it.
    pub fn has_provenance(&self) -> bool {
        matches!(
            self,
            Target::Node | Target::Disk(_) | Target::ContainerDisk | Target::Test
        )
    }

    /// The name of the target's kind, for labels: `node`, `os`, `kubernetes` or `disk`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Node => "node",
            Target::Os => "os",
            Target::Kubernetes => "kubernetes",
            Target::Disk(_) => "disk",
            Target::Sysext => "sysext",
            Target::ContainerDisk => "containerdisk",
            Target::Test => "test",
        }
    }
}

/// Engine facts and build settings the graph depends on.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// The platform of the node (`--platform`): its base image, packages and components.
    pub platform: Platform,
    /// The engine's own platform: nodestamp's steps (the tools image) run there, natively.
    pub build_platform: Platform,
    pub image_resolve_mode: ResolveMode,
    /// The client session that serves the build context (`local://context`).
    pub session_id: Option<String>,
    /// Name of the local build context (`context` unless the client renames it).
    pub context_name: String,
    /// The image whose tools run steps that must not touch the OS (the frontend's own image).
    pub tools_image: String,
    /// The engine supports symlink file actions (`file.symlink.create`).
    pub symlink_file_action: bool,
    /// Fixed timestamps for files nodestamp creates (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
    /// Environment from the base image's config (`PATH` at least).
    pub base_env: Vec<(String, String)>,
    /// Proxy settings for package installs and downloads (`HTTP_PROXY`, …).
    pub proxy: BTreeMap<String, String>,
    /// Steps to run again instead of taking them from the cache (`--no-cache`,
    /// `--no-cache-filter`).
    pub no_cache: NoCache,
    /// Record build provenance (`/usr/lib/nodestamp/build.json`, a layer on top of the node).
    /// `None` leaves it out (golden tests of the layer graph).
    pub provenance: Option<provenance::BuildInfo>,
    /// `os.from` replaced by the named build context of that name (`--build-context`).
    pub base_context: Option<crate::contexts::ContextSource>,
    /// The named build contexts that `context:` fields of the spec name, by that name.
    pub contexts: BTreeMap<String, crate::contexts::ContextSource>,
    /// Where the engine holds the spec file; large inline contents are read from it there
    /// ([`inline`]). `None` keeps every content in the definition.
    pub spec_source: Option<inline::SpecSource>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            platform: Platform::linux_amd64(),
            build_platform: Platform::linux_amd64(),
            image_resolve_mode: ResolveMode::Default,
            session_id: None,
            context_name: "context".into(),
            tools_image: "nodestamp/frontend:dev".into(),
            symlink_file_action: false,
            source_date_epoch: None,
            base_env: Vec::new(),
            proxy: BTreeMap::new(),
            no_cache: NoCache::None,
            provenance: None,
            base_context: None,
            contexts: BTreeMap::new(),
            spec_source: None,
        }
    }
}

/// The compiled graph: each target's state.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub os: State,
    pub kubernetes: State,
    pub node: State,
}

impl Compiled {
    /// The state of an image target; `None` for disk targets (see [`compile_target`]).
    pub fn target(&self, t: &Target) -> Option<&State> {
        match t {
            Target::Os => Some(&self.os),
            Target::Kubernetes => Some(&self.kubernetes),
            Target::Node => Some(&self.node),
            Target::Disk(_) | Target::ContainerDisk | Target::Sysext | Target::Test => None,
        }
    }
}

/// Compiles `spec` and returns the state of `target`.
pub fn compile_target(spec: &Spec, source: &[u8], opts: &CompileOptions, target: &Target) -> State {
    let compiled = compile(spec, source, opts);
    match target {
        Target::Disk(formats) => {
            let ctx = Ctx {
                opts,
                source: SourceMap::new(spec.file_name.clone(), source.to_vec(), "YAML"),
            };
            disk::compile(&ctx, spec, &compiled.node, formats)
        }
        Target::ContainerDisk => {
            let ctx = Ctx {
                opts,
                source: SourceMap::new(spec.file_name.clone(), source.to_vec(), "YAML"),
            };
            disk::container_disk(&ctx, spec, &compiled.node)
        }
        Target::Sysext => {
            let ctx = Ctx {
                opts,
                source: SourceMap::new(spec.file_name.clone(), source.to_vec(), "YAML"),
            };
            sysext::compile(&ctx, spec, &compiled.kubernetes)
        }
        Target::Test => {
            let ctx = Ctx {
                opts,
                source: SourceMap::new(spec.file_name.clone(), source.to_vec(), "YAML"),
            };
            checks::compile(&ctx, spec, &compiled.node)
        }
        t => compiled.target(t).cloned().unwrap_or_else(State::scratch),
    }
}

/// The step groups: the word in brackets that starts every step's progress name
/// (`[os 2/5] install packages: …`), and what each holds. `--no-cache-filter` takes these.
pub const STEP_GROUPS: &[(&str, &str)] = &[
    (
        "os",
        "the OS layer: packages, users, files, units, run steps",
    ),
    (
        "kubernetes",
        "the Kubernetes layer: components, configuration, units",
    ),
    ("node", "joining the two layers, and the finalize step"),
    (
        "provenance",
        "the provenance layers under /usr/lib/nodestamp",
    ),
    ("disk", "the disk conversion of the disk targets"),
    ("sysext", "the system extension of --target sysext"),
    ("test", "the checks of --target test"),
];

/// Which steps run again instead of coming from the cache. A step's users run again too
/// (see [`llb_graph::Meta::ignore_cache`]), so `--no-cache-filter os` also re-runs the node's
/// merge and provenance but not one Kubernetes step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NoCache {
    /// Use the cache (the default).
    #[default]
    None,
    /// `--no-cache`: every step.
    All,
    /// `--no-cache-filter`: the steps of these groups (names from [`STEP_GROUPS`]).
    Groups(BTreeSet<&'static str>),
}

impl NoCache {
    /// The groups named by `--no-cache-filter`, matched without regard to case (as the
    /// Dockerfile frontend matches stage names). An unknown name is an error listing the
    /// groups, where the Dockerfile frontend would silently re-use the cache.
    pub fn groups<S: AsRef<str>>(names: &[S]) -> Result<NoCache, String> {
        let mut set = BTreeSet::new();
        let mut unknown = Vec::new();
        for n in names {
            let n = n.as_ref().trim();
            match STEP_GROUPS.iter().find(|(g, _)| g.eq_ignore_ascii_case(n)) {
                Some((g, _)) => {
                    set.insert(*g);
                }
                None => unknown.push(format!("{n:?}")),
            }
        }
        if unknown.is_empty() {
            return Ok(NoCache::Groups(set));
        }
        let accepted: Vec<String> = STEP_GROUPS
            .iter()
            .map(|(g, what)| format!("{g} ({what})"))
            .collect();
        Err(format!(
            "--no-cache-filter: unknown step group{} {}; the groups are the first word in brackets of the progress output: {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", "),
            accepted.join(", ")
        ))
    }

    /// Whether the step with progress name `name` runs again.
    pub fn covers(&self, name: &str) -> bool {
        match self {
            NoCache::None => false,
            NoCache::All => true,
            NoCache::Groups(set) => step_group(name).is_some_and(|g| set.contains(g)),
        }
    }
}

/// The group of a progress name: `os` for `[os 2/5] …` and `[os] from …`.
pub fn step_group(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('[')?;
    let end = rest.find([' ', ']'])?;
    Some(&rest[..end])
}

/// The SBOM of `target`'s result (see [`provenance::sbom`]): for the node and everything made
/// from it the whole node, for `os` the OS layer, for `kubernetes` and `sysext` the components.
pub fn sbom(
    spec: &Spec,
    source: &[u8],
    opts: &CompileOptions,
    target: &Target,
    info: &provenance::BuildInfo,
) -> State {
    let ctx = Ctx {
        opts,
        source: SourceMap::new(spec.file_name.clone(), source.to_vec(), "YAML"),
    };
    let scope = match target {
        Target::Os => crate::sbom::Scope {
            os: true,
            kubernetes: false,
        },
        Target::Kubernetes | Target::Sysext => crate::sbom::Scope {
            os: false,
            kubernetes: true,
        },
        Target::Node | Target::Disk(_) | Target::ContainerDisk | Target::Test => {
            crate::sbom::Scope::NODE
        }
    };
    let os = scope.os.then(|| os::compile(&ctx, spec));
    provenance::sbom(&ctx, spec, os.as_ref(), info, scope)
}

/// `PATH` when the base image's config does not say.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Shared context of one compilation: options, the spec as a source map, step numbering.
pub(crate) struct Ctx<'a> {
    pub(crate) opts: &'a CompileOptions,
    pub(crate) source: Arc<SourceMap>,
}

impl Ctx<'_> {
    /// Metadata for a step: `[layer i/n] what`, located at `span` in the spec.
    /// The tools image (nodestamp's own steps run in it), named `[<layer>] tools image`. It
    /// runs on the build platform, as a Dockerfile's `FROM --platform=$BUILDPLATFORM`: its
    /// steps read and write files of the node and never run the node's binaries.
    pub(crate) fn tools_image(&self, layer: &str) -> State {
        State::image_with(
            &self.opts.tools_image,
            llb_graph::ImageOpts {
                resolve_mode: self.opts.image_resolve_mode,
                platform: Some(self.opts.build_platform.clone()),
            },
            self.meta(format!("[{layer}] tools image"), None),
        )
    }

    pub(crate) fn meta(&self, name: String, span: Option<Span>) -> Meta {
        let mut m = Meta::named(name);
        m.ignore_cache = self.opts.no_cache.covers(m.name.as_deref().unwrap_or(""));
        if let Some(s) = span {
            m = m.at(&self.source, range(s));
        }
        m
    }
}

/// Progress names of the steps that make a layer, numbered the same way in every layer:
/// `[os 2/5] install packages: less`, `[kubernetes 1/4] fetch kubelet → /usr/bin/kubelet`.
/// Steps that make no layer of their own (the base image, merges) are named `[os] …` without a
/// number ([`Steps::unnumbered`]).
pub(crate) struct Steps {
    layer: &'static str,
    total: usize,
    done: usize,
}

impl Steps {
    pub(crate) fn new(layer: &'static str, total: usize) -> Self {
        Steps {
            layer,
            total,
            done: 0,
        }
    }

    /// The next step's name.
    pub(crate) fn next(&mut self, what: &str) -> String {
        self.done += 1;
        debug_assert!(
            self.done <= self.total,
            "{} has more steps than counted",
            self.layer
        );
        format!("[{} {}/{}] {what}", self.layer, self.done, self.total)
    }

    /// A step of `layer` outside the numbering.
    pub(crate) fn unnumbered(layer: &str, what: &str) -> String {
        format!("[{layer}] {what}")
    }
}

pub fn range(s: Span) -> SourceRange {
    SourceRange {
        start_line: s.start.line,
        start_char: s.start.col.saturating_sub(1),
        end_line: s.end.line,
        end_char: s.end.col.saturating_sub(1),
    }
}

/// Compiles `spec` (whose text is `source`) into the graphs of every target.
pub fn compile(spec: &Spec, source: &[u8], opts: &CompileOptions) -> Compiled {
    let ctx = Ctx {
        opts,
        source: SourceMap::new(spec.file_name.clone(), source.to_vec(), "YAML"),
    };
    let os = os::compile(&ctx, spec);
    let k8s = kubernetes::compile(&ctx, spec);
    let merged = State::merge(
        &[os.clone(), k8s.state.clone()],
        ctx.meta("[node] merge os and kubernetes".into(), None),
    );
    let node = match &k8s.finalize {
        None => merged,
        Some(script) => {
            let meta = ctx.meta(
                "[node] finalize: enable kubernetes units".into(),
                k8s.finalize_span,
            );
            let exec = script::shell(&ctx, &meta, script.clone());
            merged
                .run(exec.network(llb_graph::NetMode::None), meta)
                .root()
        }
    };
    let node = match &opts.provenance {
        None => node,
        Some(info) => provenance::compile(&ctx, spec, &os, &node, info),
    };
    Compiled {
        os,
        kubernetes: k8s.state,
        node,
    }
}

#[cfg(test)]
mod no_cache_tests {
    use super::*;

    #[test]
    fn step_groups_come_from_the_progress_names() {
        assert_eq!(step_group("[os 2/5] install packages: less"), Some("os"));
        assert_eq!(step_group("[os] from debian:bookworm"), Some("os"));
        assert_eq!(
            step_group("[kubernetes 1/4] fetch kubelet"),
            Some("kubernetes")
        );
        assert_eq!(step_group("context: components/kubectl"), None);
        assert_eq!(step_group("[unterminated"), None);
    }

    #[test]
    fn filter_names_are_matched_without_case_and_unknown_ones_listed() {
        let nc = NoCache::groups(&["OS", " kubernetes "]).unwrap();
        assert!(nc.covers("[os 1/2] install packages: less"));
        assert!(nc.covers("[kubernetes 3/3] links"));
        assert!(!nc.covers("[node] merge os and kubernetes"));
        assert!(!nc.covers("context: x"));
        assert!(NoCache::All.covers("context: x"));
        assert!(!NoCache::None.covers("[os 1/2] x"));

        let err = NoCache::groups(&["os", "packages", "k8s"]).unwrap_err();
        assert!(
            err.starts_with(r#"--no-cache-filter: unknown step groups "packages", "k8s";"#),
            "{err}"
        );
        for (g, _) in STEP_GROUPS {
            assert!(err.contains(&format!("{g} (")), "{g} missing from: {err}");
        }
    }

    #[test]
    fn every_step_name_of_a_full_spec_has_a_known_group() {
        for file in ["examples/node.yaml", "inspect/pass.yaml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../testdata")
                .join(file);
            let spec_text = std::fs::read(&path).unwrap();
            let spec = nodestamp_spec::load(file, &spec_text, &BTreeMap::new())
                .unwrap()
                .spec;
            let opts = CompileOptions {
                provenance: Some(provenance::BuildInfo::default()),
                ..CompileOptions::default()
            };
            let mut targets = vec![Target::Node, Target::Disk(vec![Format::Qcow2])];
            if spec.kubernetes.is_some() {
                targets.push(Target::Sysext);
            }
            if spec.tests.is_some() {
                targets.push(Target::Test);
            }
            for t in &targets {
                let def = compile_target(&spec, &spec_text, &opts, t)
                    .marshal()
                    .unwrap();
                for md in def.metadata.values() {
                    let Some(name) = md.description.get("llb.customname") else {
                        continue;
                    };
                    if let Some(g) = step_group(name) {
                        assert!(
                            STEP_GROUPS.iter().any(|(k, _)| *k == g),
                            "{file}: step {name:?} has group {g:?}, unknown to --no-cache-filter"
                        );
                    }
                }
            }
        }
    }
}
