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

mod kubernetes;
mod os;
mod script;
mod units;

use std::collections::BTreeMap;
use std::sync::Arc;

use llb_graph::{Meta, Platform, ResolveMode, SourceMap, SourceRange, State};

use crate::spec::{Span, Spec};

pub use units::install_targets;

/// What a build produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Os,
    Kubernetes,
    Node,
}

impl Target {
    /// The accepted target names, for messages and documentation.
    pub const NAMES: &'static [&'static str] = &["node", "os", "kubernetes"];

    pub fn parse(s: &str) -> Option<Target> {
        match s {
            "" | "node" => Some(Target::Node),
            "os" => Some(Target::Os),
            "kubernetes" => Some(Target::Kubernetes),
            _ => None,
        }
    }
}

/// Engine facts and build settings the graph depends on.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    pub platform: Platform,
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
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            platform: Platform::linux_amd64(),
            image_resolve_mode: ResolveMode::Default,
            session_id: None,
            context_name: "context".into(),
            tools_image: "nodestamp/frontend:dev".into(),
            symlink_file_action: false,
            source_date_epoch: None,
            base_env: Vec::new(),
            proxy: BTreeMap::new(),
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
    pub fn target(&self, t: Target) -> &State {
        match t {
            Target::Os => &self.os,
            Target::Kubernetes => &self.kubernetes,
            Target::Node => &self.node,
        }
    }
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
    pub(crate) fn meta(&self, name: String, span: Option<Span>) -> Meta {
        let mut m = Meta::named(name);
        if let Some(s) = span {
            m = m.at(&self.source, range(s));
        }
        m
    }
}

pub(crate) fn range(s: Span) -> SourceRange {
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
        Some(script) => merged
            .run(
                llb_graph::Exec::shell(script.clone()).network(llb_graph::NetMode::None),
                ctx.meta(
                    "[node] finalize: enable kubernetes units".into(),
                    k8s.finalize_span,
                ),
            )
            .root(),
    };
    Compiled {
        os,
        kubernetes: k8s.state,
        node,
    }
}
