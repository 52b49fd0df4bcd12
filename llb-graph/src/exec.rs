use std::collections::BTreeMap;
use std::sync::Arc;

use crate::meta::Meta;
use crate::pb;
use crate::state::{OpKind, Output, State};

/// Network access of a `run` step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetMode {
    /// The engine's default sandboxed network.
    #[default]
    Sandbox,
    Host,
    None,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

#[derive(Clone, Debug)]
pub(crate) enum MountKind {
    /// A state (or scratch, `None`) bind-mounted; writable ones become op outputs.
    Bind {
        source: Option<Output>,
        readonly: bool,
        output: bool,
    },
    Cache {
        id: String,
        sharing: CacheSharing,
    },
    Secret {
        id: String,
        uid: u32,
        gid: u32,
        mode: u32,
        optional: bool,
    },
    Tmpfs {
        size: i64,
    },
}

/// A mount of a `run` step besides its root filesystem.
#[derive(Clone, Debug)]
pub struct Mount {
    pub(crate) dest: String,
    pub(crate) selector: String,
    pub(crate) kind: MountKind,
}

impl Mount {
    /// `state` mounted read-only at `dest`.
    pub fn readonly(state: &State, dest: impl Into<String>) -> Self {
        Mount::bind_kind(state, dest, true, false)
    }

    /// `state` mounted writable at `dest`; what the command leaves there is an output
    /// (`ExecState::output(dest)`).
    pub fn layer(state: &State, dest: impl Into<String>) -> Self {
        Mount::bind_kind(state, dest, false, true)
    }

    /// An empty writable directory at `dest` whose final content is an output.
    pub fn scratch(dest: impl Into<String>) -> Self {
        Mount::bind_kind(&State::scratch(), dest, false, true)
    }

    fn bind_kind(state: &State, dest: impl Into<String>, readonly: bool, output: bool) -> Self {
        Mount {
            dest: dest.into(),
            selector: String::new(),
            kind: MountKind::Bind {
                source: state.output.clone(),
                readonly,
                output,
            },
        }
    }

    /// A persistent cache directory shared between builds, never part of any layer.
    pub fn cache(dest: impl Into<String>, id: impl Into<String>, sharing: CacheSharing) -> Self {
        Mount {
            dest: dest.into(),
            selector: String::new(),
            kind: MountKind::Cache {
                id: id.into(),
                sharing,
            },
        }
    }

    /// A secret given to the build (`--secret id=…`), as a file readable by root only.
    pub fn secret(dest: impl Into<String>, id: impl Into<String>, optional: bool) -> Self {
        Mount {
            dest: dest.into(),
            selector: String::new(),
            kind: MountKind::Secret {
                id: id.into(),
                uid: 0,
                gid: 0,
                mode: 0o400,
                optional,
            },
        }
    }

    /// An in-memory directory (0 = the engine's default size).
    pub fn tmpfs(dest: impl Into<String>, size: i64) -> Self {
        Mount {
            dest: dest.into(),
            selector: String::new(),
            kind: MountKind::Tmpfs { size },
        }
    }

    /// Mounts only this path of the source state.
    pub fn selector(mut self, path: impl Into<String>) -> Self {
        self.selector = path.into();
        self
    }
}

/// A command to run.
#[derive(Clone, Debug, Default)]
pub struct Exec {
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    user: Option<String>,
    network: NetMode,
    mounts: Vec<Mount>,
    secret_env: Vec<(String, String)>,
    proxy: Option<pb::ProxyEnv>,
    readonly_root: bool,
}

impl Exec {
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Exec {
            args: args.into_iter().map(Into::into).collect(),
            ..Exec::default()
        }
    }

    /// `/bin/sh -c <script>`.
    pub fn shell(script: impl Into<String>) -> Self {
        Exec::new(["/bin/sh".to_string(), "-c".to_string(), script.into()])
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn network(mut self, mode: NetMode) -> Self {
        self.network = mode;
        self
    }

    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Mounts the root filesystem read-only: the step's outputs are then only its writable
    /// mounts (a tools image writing into a mounted layer).
    pub fn readonly_root(mut self) -> Self {
        self.readonly_root = true;
        self
    }

    /// An environment variable whose value is the secret `id`.
    pub fn secret_env(mut self, name: impl Into<String>, id: impl Into<String>) -> Self {
        self.secret_env.push((name.into(), id.into()));
        self
    }

    /// Proxy settings; BuildKit passes them to the process without making them part of the
    /// cache key.
    pub fn proxy(mut self, http: &str, https: &str, no_proxy: &str) -> Self {
        self.proxy = Some(pb::ProxyEnv {
            http_proxy: http.into(),
            https_proxy: https.into(),
            no_proxy: no_proxy.into(),
            ..Default::default()
        });
        self
    }
}

/// The marshal-ready form of an exec: root mount first, mounts sorted by destination as
/// BuildKit's own client does, output indices assigned in that order.
pub(crate) struct ExecSpec {
    pub(crate) meta: pb::Meta,
    pub(crate) network: NetMode,
    pub(crate) mounts: Vec<Mount>,
    pub(crate) secret_env: Vec<(String, String)>,
}

/// The result of `State::run`: the root filesystem and the writable mounts as outputs.
#[derive(Clone)]
pub struct ExecState {
    node: Output,
    base: State,
    outputs: Arc<BTreeMap<String, i64>>,
}

impl ExecState {
    pub(crate) fn new(base: &State, exec: Exec, meta: Meta) -> Self {
        let mut env: BTreeMap<String, String> = (*base.env).clone();
        env.extend(exec.env);
        let root = Mount {
            dest: "/".into(),
            selector: String::new(),
            kind: MountKind::Bind {
                source: base.output.clone(),
                readonly: false,
                output: true,
            },
        };
        let mut mounts = vec![root];
        mounts.extend(exec.mounts.into_iter().filter(|m| m.dest != "/"));
        mounts.sort_by(|a, b| a.dest.cmp(&b.dest));
        let mut outputs = BTreeMap::new();
        let mut next = 0;
        for m in &mounts {
            if let MountKind::Bind {
                output: true,
                readonly: false,
                ..
            } = m.kind
            {
                outputs.insert(m.dest.clone(), next);
                next += 1;
            }
        }
        let spec = ExecSpec {
            meta: pb::Meta {
                args: exec.args,
                env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                cwd: exec.cwd.unwrap_or_else(|| base.cwd.clone()),
                user: exec.user.unwrap_or_else(|| base.user.clone()),
                proxy_env: exec.proxy,
                hostname: String::new(),
            },
            network: exec.network,
            mounts,
            secret_env: exec.secret_env,
        };
        let node = Output::new(OpKind::Exec(Box::new(spec)), meta, base.platform.clone());
        ExecState {
            node,
            base: base.clone(),
            outputs: Arc::new(outputs),
        }
    }

    /// The root filesystem after the command.
    pub fn root(&self) -> State {
        self.output("/").unwrap_or_else(|| self.base.clone())
    }

    /// The content of the writable mount at `dest` after the command; `None` when `dest` is
    /// not a writable mount of this step.
    pub fn output(&self, dest: &str) -> Option<State> {
        let index = *self.outputs.get(dest)?;
        let out = Output {
            node: Arc::clone(&self.node.node),
            index,
        };
        Some(State::from_output(out, &self.base))
    }
}
