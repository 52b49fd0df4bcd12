use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use prost::Message;

use crate::digest::Digest;
use crate::exec::{CacheSharing, MountKind, NetMode};
use crate::file::{Action, ChownOpt, Owner, nanos};
use crate::meta::SourceMap;
use crate::pb;
use crate::state::{Node, OpKind, Output, State};

/// Why a graph could not be marshaled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MarshalError {
    #[error("exec step {name:?} has no command to run")]
    EmptyCommand { name: Option<String> },
    #[error("path {path:?} in step {name:?} must be absolute")]
    RelativePath { path: String, name: Option<String> },
}

/// An op's marshaled bytes and digest, computed once per node.
pub(crate) struct Encoded {
    pub(crate) digest: Digest,
    pub(crate) bytes: Vec<u8>,
    /// The distinct inputs, in the order of `Op.inputs`.
    pub(crate) inputs: Vec<Output>,
}

/// Collects distinct inputs of one op, keyed by (digest, output index).
struct Inputs {
    list: Vec<pb::Input>,
    outputs: Vec<Output>,
}

impl Inputs {
    fn new() -> Self {
        Inputs {
            list: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Index of `out` among the inputs, adding it if new; -1 for scratch.
    fn add(&mut self, out: &Option<Output>) -> Result<i64, MarshalError> {
        let Some(out) = out else { return Ok(-1) };
        let digest = encode(&out.node)?.digest.to_string();
        let input = pb::Input {
            digest,
            index: out.index,
        };
        if let Some(i) = self.list.iter().position(|x| *x == input) {
            return Ok(i as i64);
        }
        self.list.push(input);
        self.outputs.push(out.clone());
        Ok(self.list.len() as i64 - 1)
    }

    /// Like `add`, but keeps duplicates (merge inputs are positional).
    fn push(&mut self, out: &Output) -> Result<i64, MarshalError> {
        let digest = encode(&out.node)?.digest.to_string();
        self.list.push(pb::Input {
            digest,
            index: out.index,
        });
        self.outputs.push(out.clone());
        Ok(self.list.len() as i64 - 1)
    }
}

fn check_abs(path: &str, node: &Node) -> Result<(), MarshalError> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(MarshalError::RelativePath {
            path: path.into(),
            name: node.meta.name.clone(),
        })
    }
}

fn user_opt(owner: &Option<Owner>, base: i64) -> Option<pb::UserOpt> {
    let user = match owner.as_ref()? {
        Owner::Name(name) => pb::user_opt::User::ByName(pb::NamedUserOpt {
            name: name.clone(),
            input: base,
        }),
        Owner::Id(id) => pb::user_opt::User::ById(*id),
    };
    Some(pb::UserOpt { user: Some(user) })
}

fn chown(opt: &ChownOpt, base: i64) -> Option<pb::ChownOpt> {
    opt.is_set().then(|| pb::ChownOpt {
        user: user_opt(&opt.user, base),
        group: user_opt(&opt.group, base),
    })
}

fn to_op(node: &Node) -> Result<(pb::Op, Vec<Output>), MarshalError> {
    let mut inputs = Inputs::new();
    let op = match &node.kind {
        OpKind::Source(s) => pb::op::Op::Source(s.clone()),
        OpKind::Exec(e) => {
            let e = &**e;
            if e.meta.args.is_empty() {
                return Err(MarshalError::EmptyCommand {
                    name: node.meta.name.clone(),
                });
            }
            let mut mounts = Vec::with_capacity(e.mounts.len());
            let mut next_output = 0;
            for m in &e.mounts {
                check_abs(&m.dest, node)?;
                let mut pm = pb::Mount {
                    dest: m.dest.clone(),
                    selector: m.selector.clone(),
                    input: -1,
                    output: -1,
                    ..Default::default()
                };
                match &m.kind {
                    MountKind::Bind {
                        source,
                        readonly,
                        output,
                    } => {
                        pm.input = inputs.add(source)?;
                        pm.readonly = *readonly;
                        if *output && !*readonly {
                            pm.output = next_output;
                            next_output += 1;
                        }
                    }
                    MountKind::Cache { id, sharing } => {
                        pm.mount_type = pb::MountType::Cache as i32;
                        let sharing = match sharing {
                            CacheSharing::Shared => pb::CacheSharingOpt::Shared,
                            CacheSharing::Private => pb::CacheSharingOpt::Private,
                            CacheSharing::Locked => pb::CacheSharingOpt::Locked,
                        };
                        pm.cache_opt = Some(pb::CacheOpt {
                            id: id.clone(),
                            sharing: sharing as i32,
                        });
                    }
                    MountKind::Secret {
                        id,
                        uid,
                        gid,
                        mode,
                        optional,
                    } => {
                        pm.mount_type = pb::MountType::Secret as i32;
                        pm.secret_opt = Some(pb::SecretOpt {
                            id: id.clone(),
                            uid: *uid,
                            gid: *gid,
                            mode: *mode,
                            optional: *optional,
                        });
                    }
                    MountKind::Tmpfs { size } => {
                        pm.mount_type = pb::MountType::Tmpfs as i32;
                        pm.tmpfs_opt = Some(pb::TmpfsOpt { size: *size });
                    }
                }
                mounts.push(pm);
            }
            let network = match e.network {
                NetMode::Sandbox => pb::NetMode::Unset,
                NetMode::Host => pb::NetMode::Host,
                NetMode::None => pb::NetMode::None,
            };
            let secretenv = e
                .secret_env
                .iter()
                .map(|(name, id)| pb::SecretEnv {
                    id: id.clone(),
                    name: name.clone(),
                    optional: false,
                })
                .collect();
            pb::op::Op::Exec(pb::ExecOp {
                meta: Some(e.meta.clone()),
                mounts,
                network: network as i32,
                security: 0,
                secretenv,
            })
        }
        OpKind::File(f) => {
            let base = inputs.add(&f.base)?;
            let mut actions = Vec::with_capacity(f.actions.len());
            for (i, a) in f.actions.iter().enumerate() {
                // The first action works on the base input; later ones on the previous action's
                // result, addressed as (number of inputs + action index) once inputs are known.
                let mut secondary = -1;
                let action = match a {
                    Action::Mkdir {
                        path,
                        mode,
                        parents,
                        owner,
                        timestamp,
                    } => {
                        check_abs(path, node)?;
                        pb::file_action::Action::Mkdir(pb::FileActionMkDir {
                            path: path.clone(),
                            mode: *mode as i32,
                            make_parents: *parents,
                            owner: chown(owner, base),
                            timestamp: nanos(*timestamp),
                        })
                    }
                    Action::Mkfile {
                        path,
                        mode,
                        data,
                        owner,
                        timestamp,
                    } => {
                        check_abs(path, node)?;
                        pb::file_action::Action::Mkfile(pb::FileActionMkFile {
                            path: path.clone(),
                            mode: *mode as i32,
                            data: data.clone(),
                            owner: chown(owner, base),
                            timestamp: nanos(*timestamp),
                        })
                    }
                    Action::Rm {
                        path,
                        allow_not_found,
                        allow_wildcard,
                    } => {
                        check_abs(path, node)?;
                        pb::file_action::Action::Rm(pb::FileActionRm {
                            path: path.clone(),
                            allow_not_found: *allow_not_found,
                            allow_wildcard: *allow_wildcard,
                        })
                    }
                    Action::Copy {
                        source,
                        src,
                        dest,
                        opts,
                    } => {
                        check_abs(src, node)?;
                        check_abs(dest, node)?;
                        secondary = inputs.add(source)?;
                        pb::file_action::Action::Copy(pb::FileActionCopy {
                            src: src.clone(),
                            dest: dest.clone(),
                            owner: chown(&opts.owner, base),
                            mode: opts.mode.map_or(-1, |m| m as i32),
                            follow_symlink: opts.follow_symlinks,
                            dir_copy_contents: opts.dir_contents_only,
                            attempt_unpack_docker_compatibility: opts.unpack,
                            create_dest_path: opts.create_dest_path,
                            allow_wildcard: opts.allow_wildcard,
                            allow_empty_wildcard: false,
                            timestamp: nanos(opts.timestamp),
                            include_patterns: opts.include_patterns.clone(),
                            exclude_patterns: opts.exclude_patterns.clone(),
                            always_replace_existing_dest_paths: opts.replace_existing,
                        })
                    }
                    Action::Symlink {
                        target,
                        path,
                        owner,
                        timestamp,
                    } => {
                        check_abs(path, node)?;
                        pb::file_action::Action::Symlink(pb::FileActionSymlink {
                            oldpath: target.clone(),
                            newpath: path.clone(),
                            owner: chown(owner, base),
                            timestamp: nanos(*timestamp),
                        })
                    }
                };
                let last = i + 1 == f.actions.len();
                actions.push((i, secondary, last, action));
            }
            let n = inputs.list.len() as i64;
            let actions = actions
                .into_iter()
                .map(|(i, secondary, last, action)| pb::FileAction {
                    input: if i == 0 { base } else { n + i as i64 - 1 },
                    secondary_input: secondary,
                    output: if last { 0 } else { -1 },
                    action: Some(action),
                })
                .collect();
            pb::op::Op::File(pb::FileOp { actions })
        }
        OpKind::Merge(outs) => {
            let mut merge = Vec::with_capacity(outs.len());
            for o in outs {
                merge.push(pb::MergeInput {
                    input: inputs.push(o)?,
                });
            }
            pb::op::Op::Merge(pb::MergeOp { inputs: merge })
        }
        OpKind::Diff(lower, upper) => {
            let lower = inputs.add(lower)?;
            let upper = inputs.add(upper)?;
            pb::op::Op::Diff(pb::DiffOp {
                lower: Some(pb::LowerDiffInput { input: lower }),
                upper: Some(pb::UpperDiffInput { input: upper }),
            })
        }
    };
    let op = pb::Op {
        inputs: inputs.list,
        op: Some(op),
        platform: node.platform.as_ref().map(|p| p.to_pb()),
    };
    Ok((op, inputs.outputs))
}

/// Marshals `node` once; later calls return the stored bytes.
pub(crate) fn encode(node: &Arc<Node>) -> Result<&Encoded, MarshalError> {
    if let Some(e) = node.encoded.get() {
        return Ok(e);
    }
    let (op, inputs) = to_op(node)?;
    let bytes = op.encode_to_vec();
    let encoded = Encoded {
        digest: Digest::of(&bytes),
        bytes,
        inputs,
    };
    Ok(node.encoded.get_or_init(|| encoded))
}

struct Walk {
    seen: HashSet<Digest>,
    /// Ops marked to run again without the cache, by digest.
    uncached: HashSet<Digest>,
    def: pb::Definition,
    sources: Vec<Arc<SourceMap>>,
}

impl Walk {
    fn visit(&mut self, node: &Arc<Node>) -> Result<(), MarshalError> {
        let enc = encode(node)?;
        if self.seen.contains(&enc.digest) {
            return Ok(());
        }
        for input in &enc.inputs {
            self.visit(&input.node)?;
        }
        self.seen.insert(enc.digest.clone());
        self.def.def.push(enc.bytes.clone());
        let meta = &node.meta;
        // A step that runs again hands a new result to the steps using it: they run again
        // too (older BuildKit would otherwise match their cached results by the unchanged
        // cache keys). Sources are named by what they fetch and are never marked.
        let mut ignore_cache = meta.ignore_cache;
        for input in &enc.inputs {
            ignore_cache |= self.uncached.contains(&encode(&input.node)?.digest);
        }
        let ignore_cache = ignore_cache && !matches!(node.kind, OpKind::Source(_));
        let mut md = pb::OpMetadata {
            ignore_cache,
            ..Default::default()
        };
        if ignore_cache {
            self.uncached.insert(enc.digest.clone());
            md.caps.insert("meta.ignorecache".into(), true);
        }
        if let Some(name) = &meta.name {
            md.description.insert("llb.customname".into(), name.clone());
        }
        if let Some((id, name)) = &meta.progress_group {
            md.progress_group = Some(pb::ProgressGroup {
                id: id.clone(),
                name: name.clone(),
                weak: false,
            });
        }
        if md != pb::OpMetadata::default() {
            self.def.metadata.insert(enc.digest.to_string(), md);
        }
        if !meta.locations.is_empty() {
            let mut locations = Vec::new();
            for (map, r) in &meta.locations {
                let index = match self
                    .sources
                    .iter()
                    .position(|s| Arc::ptr_eq(s, map) || **s == **map)
                {
                    Some(i) => i,
                    None => {
                        self.sources.push(Arc::clone(map));
                        self.sources.len() - 1
                    }
                };
                locations.push(pb::Location {
                    source_index: index as i32,
                    ranges: vec![pb::Range {
                        start: Some(pb::Position {
                            line: r.start_line as i32,
                            character: r.start_char as i32,
                        }),
                        end: Some(pb::Position {
                            line: r.end_line as i32,
                            character: r.end_char as i32,
                        }),
                    }],
                });
            }
            let source = self.def.source.get_or_insert_with(Default::default);
            source
                .locations
                .insert(enc.digest.to_string(), pb::Locations { locations });
        }
        Ok(())
    }
}

impl State {
    /// Marshals the graph that produces this state into a `pb.Definition`: ops in dependency
    /// order (inputs first, each digest once), then a bare op selecting the result. Scratch
    /// gives an empty definition.
    pub fn marshal(&self) -> Result<pb::Definition, MarshalError> {
        let mut walk = Walk {
            seen: HashSet::new(),
            uncached: HashSet::new(),
            def: pb::Definition::default(),
            sources: Vec::new(),
        };
        let Some(out) = &self.output else {
            return Ok(walk.def);
        };
        walk.visit(&out.node)?;
        let digest = encode(&out.node)?.digest.to_string();
        let result = pb::Op {
            inputs: vec![pb::Input {
                digest,
                index: out.index,
            }],
            ..Default::default()
        };
        walk.def.def.push(result.encode_to_vec());
        if let Some(source) = walk.def.source.as_mut() {
            let mut lines: Vec<Vec<(u32, u32)>> = vec![Vec::new(); walk.sources.len()];
            for locs in source.locations.values() {
                for l in &locs.locations {
                    if let Some(v) = lines.get_mut(l.source_index as usize) {
                        v.extend(l.ranges.iter().map(|r| {
                            let line = |p: Option<pb::Position>| p.map_or(0, |p| p.line as u32);
                            (line(r.start), line(r.end))
                        }));
                    }
                }
            }
            source.infos = walk
                .sources
                .iter()
                .zip(&lines)
                .map(|(s, lines)| pb::SourceInfo {
                    filename: s.filename.clone(),
                    data: crate::meta::trim_source(&s.data, lines),
                    definition: None,
                    language: s.language.clone(),
                })
                .collect();
        }
        Ok(walk.def)
    }
}

/// The ops of a definition keyed by digest, and the result they select.
#[derive(Debug, Default)]
pub struct DecodedOps {
    pub ops: BTreeMap<Digest, pb::Op>,
    /// The digest and output index of the result; `None` for an empty definition.
    pub result: Option<(Digest, i64)>,
}

/// Decodes the ops of a definition.
pub fn decode_ops(def: &pb::Definition) -> Result<DecodedOps, prost::DecodeError> {
    let mut ops = BTreeMap::new();
    let mut result = None;
    for (i, bytes) in def.def.iter().enumerate() {
        let op = pb::Op::decode(bytes.as_slice())?;
        if i + 1 == def.def.len() && op.op.is_none() {
            result = op
                .inputs
                .first()
                .map(|inp| (Digest::from_raw(&inp.digest), inp.index));
        } else {
            ops.insert(Digest::of(bytes), op);
        }
    }
    Ok(DecodedOps { ops, result })
}
