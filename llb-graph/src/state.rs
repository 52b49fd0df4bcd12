use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::exec::{Exec, ExecSpec, ExecState};
use crate::file::{FileActions, FileSpec};
use crate::marshal::Encoded;
use crate::meta::Meta;
use crate::pb;

/// A target platform (`linux/amd64`, `linux/arm64/v8`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn linux_amd64() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`; `None` when it has another shape.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Some(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Some(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => None,
        }
    }

    pub(crate) fn to_pb(&self) -> pb::Platform {
        pb::Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            variant: self.variant.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What an op does; inputs are held as [`Output`]s so the graph is a tree of `Arc`s.
pub(crate) enum OpKind {
    Source(pb::SourceOp),
    Exec(Box<ExecSpec>),
    File(FileSpec),
    Merge(Vec<Output>),
    Diff(Option<Output>, Option<Output>),
}

pub(crate) struct Node {
    pub(crate) kind: OpKind,
    pub(crate) meta: Meta,
    pub(crate) platform: Option<Platform>,
    pub(crate) encoded: OnceLock<Encoded>,
}

/// One output of an op.
#[derive(Clone)]
pub(crate) struct Output {
    pub(crate) node: Arc<Node>,
    pub(crate) index: i64,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Output({:?}#{})", self.node.meta.name, self.index)
    }
}

impl Output {
    pub(crate) fn new(kind: OpKind, meta: Meta, platform: Option<Platform>) -> Self {
        let node = Node {
            kind,
            meta,
            platform,
            encoded: OnceLock::new(),
        };
        Output {
            node: Arc::new(node),
            index: 0,
        }
    }
}

/// An immutable build state: one op output (or scratch) plus the defaults that `run` steps
/// started from it inherit. Cloning is cheap.
#[derive(Clone)]
pub struct State {
    pub(crate) output: Option<Output>,
    pub(crate) env: Arc<BTreeMap<String, String>>,
    pub(crate) cwd: String,
    pub(crate) user: String,
    pub(crate) platform: Option<Platform>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.output {
            None => f.write_str("State(scratch)"),
            Some(o) => write!(f, "State({:?}#{})", o.node.meta.name, o.index),
        }
    }
}

impl State {
    /// The empty filesystem.
    pub fn scratch() -> Self {
        State {
            output: None,
            env: Arc::new(BTreeMap::new()),
            cwd: "/".into(),
            user: String::new(),
            platform: None,
        }
    }

    pub(crate) fn from_output(output: Output, like: &State) -> Self {
        State {
            output: Some(output),
            ..like.clone()
        }
    }

    /// True for the empty filesystem.
    pub fn is_scratch(&self) -> bool {
        self.output.is_none()
    }

    /// Sets an environment variable inherited by later `run` steps.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.env).insert(key.into(), value.into());
        self
    }

    /// Environment inherited by later `run` steps, sorted by key.
    pub fn env_vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Working directory for later `run` steps.
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = dir.into();
        self
    }

    /// User for later `run` steps (empty: the image default, root).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Platform of ops created from this state.
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }

    pub fn get_platform(&self) -> Option<&Platform> {
        self.platform.as_ref()
    }

    /// Runs a command with this state as its root filesystem.
    pub fn run(&self, exec: Exec, meta: Meta) -> ExecState {
        ExecState::new(self, exec, meta)
    }

    /// Applies a chain of file actions to this state.
    pub fn file(&self, actions: FileActions, meta: Meta) -> State {
        if actions.is_empty() {
            return self.clone();
        }
        let spec = FileSpec {
            base: self.output.clone(),
            actions: actions.into_actions(),
        };
        // File ops are not platform specific, as in BuildKit's own client.
        State::from_output(Output::new(OpKind::File(spec), meta, None), self)
    }

    /// Layers `states` on top of each other, later ones winning. Scratch inputs drop out; none
    /// gives scratch and one gives itself. Defaults are taken from the first state.
    pub fn merge(states: &[State], meta: Meta) -> State {
        let inputs: Vec<&State> = states.iter().filter(|s| !s.is_scratch()).collect();
        match inputs.as_slice() {
            [] => states.first().cloned().unwrap_or_else(State::scratch),
            [one] => (*one).clone(),
            many => {
                let outs = many.iter().filter_map(|s| s.output.clone()).collect();
                State::from_output(Output::new(OpKind::Merge(outs), meta, None), &states[0])
            }
        }
    }

    /// The changes that turn `lower` into `upper`, as a state of their own.
    pub fn diff(lower: &State, upper: &State, meta: Meta) -> State {
        let kind = OpKind::Diff(lower.output.clone(), upper.output.clone());
        State::from_output(Output::new(kind, meta, None), upper)
    }

    /// The digest of the op output this state names; `None` for scratch.
    pub fn digest(&self) -> Result<Option<crate::Digest>, crate::MarshalError> {
        match &self.output {
            None => Ok(None),
            Some(o) => Ok(Some(crate::marshal::encode(&o.node)?.digest.clone())),
        }
    }
}
