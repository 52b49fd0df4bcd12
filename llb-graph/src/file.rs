use crate::state::{Output, State};

/// A user or group: by name (resolved in the base state's `/etc/passwd`/`/etc/group`) or id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Name(String),
    Id(u32),
}

/// Ownership for created or copied files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChownOpt {
    pub user: Option<Owner>,
    pub group: Option<Owner>,
}

impl ChownOpt {
    pub fn ids(uid: u32, gid: u32) -> Self {
        ChownOpt {
            user: Some(Owner::Id(uid)),
            group: Some(Owner::Id(gid)),
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        self.user.is_some() || self.group.is_some()
    }
}

/// Options of a copy.
#[derive(Clone, Debug, Default)]
pub struct CopyOpts {
    pub owner: ChownOpt,
    /// Permission bits of the copied files; `None` keeps them.
    pub mode: Option<u32>,
    pub follow_symlinks: bool,
    pub dir_contents_only: bool,
    /// Unpack tar archives (optionally compressed) instead of copying them.
    pub unpack: bool,
    pub create_dest_path: bool,
    pub allow_wildcard: bool,
    pub include_patterns: Vec<String>,
    pub exclude_patterns: Vec<String>,
    /// Modification time (Unix seconds) for copied files; `None` keeps it.
    pub timestamp: Option<i64>,
    pub replace_existing: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum Action {
    Mkdir {
        path: String,
        mode: u32,
        parents: bool,
        owner: ChownOpt,
        timestamp: Option<i64>,
    },
    Mkfile {
        path: String,
        mode: u32,
        data: Vec<u8>,
        owner: ChownOpt,
        timestamp: Option<i64>,
    },
    Rm {
        path: String,
        allow_not_found: bool,
        allow_wildcard: bool,
    },
    Copy {
        source: Option<Output>,
        src: String,
        dest: String,
        opts: Box<CopyOpts>,
    },
    Symlink {
        target: String,
        path: String,
        owner: ChownOpt,
        timestamp: Option<i64>,
    },
}

/// A chain of file actions, each applied on the result of the previous one. Timestamps are
/// Unix seconds (`SOURCE_DATE_EPOCH`); `None` lets the engine use the current time.
#[derive(Clone, Debug, Default)]
pub struct FileActions {
    actions: Vec<Action>,
    timestamp: Option<i64>,
}

impl FileActions {
    pub fn new() -> Self {
        FileActions::default()
    }

    /// Sets the timestamp of everything created by the actions added after this call.
    pub fn timestamp(mut self, unix_seconds: Option<i64>) -> Self {
        self.timestamp = unix_seconds;
        self
    }

    pub fn mkdir(
        mut self,
        path: impl Into<String>,
        mode: u32,
        parents: bool,
        owner: ChownOpt,
    ) -> Self {
        let timestamp = self.timestamp;
        self.actions.push(Action::Mkdir {
            path: path.into(),
            mode,
            parents,
            owner,
            timestamp,
        });
        self
    }

    pub fn mkfile(
        mut self,
        path: impl Into<String>,
        mode: u32,
        data: Vec<u8>,
        owner: ChownOpt,
    ) -> Self {
        let timestamp = self.timestamp;
        self.actions.push(Action::Mkfile {
            path: path.into(),
            mode,
            data,
            owner,
            timestamp,
        });
        self
    }

    pub fn rm(mut self, path: impl Into<String>, allow_not_found: bool) -> Self {
        self.actions.push(Action::Rm {
            path: path.into(),
            allow_not_found,
            allow_wildcard: false,
        });
        self
    }

    /// Copies `src` of `from` to `dest` (paths absolute).
    pub fn copy(
        mut self,
        from: &State,
        src: impl Into<String>,
        dest: impl Into<String>,
        mut opts: CopyOpts,
    ) -> Self {
        if opts.timestamp.is_none() {
            opts.timestamp = self.timestamp;
        }
        self.actions.push(Action::Copy {
            source: from.output.clone(),
            src: src.into(),
            dest: dest.into(),
            opts: Box::new(opts),
        });
        self
    }

    /// Creates a symbolic link at `path` pointing to `target`. Needs the engine capability
    /// `file.symlink.create` (BuildKit ≥ 0.19).
    pub fn symlink(
        mut self,
        target: impl Into<String>,
        path: impl Into<String>,
        owner: ChownOpt,
    ) -> Self {
        let timestamp = self.timestamp;
        self.actions.push(Action::Symlink {
            target: target.into(),
            path: path.into(),
            owner,
            timestamp,
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub(crate) fn into_actions(self) -> Vec<Action> {
        self.actions
    }
}

pub(crate) struct FileSpec {
    pub(crate) base: Option<Output>,
    pub(crate) actions: Vec<Action>,
}

/// Unix seconds to the nanoseconds BuildKit expects; -1 means "not set".
pub(crate) fn nanos(ts: Option<i64>) -> i64 {
    ts.map_or(-1, |s| s.saturating_mul(1_000_000_000))
}
