//! Typed, immutable builder for BuildKit LLB graphs.
//!
//! A [`State`] is a cheap-to-clone value naming one output of an op (or scratch) together with
//! the defaults later `run` steps inherit (environment, working directory, user, platform).
//! Composition reads like the build:
//!
//! ```
//! use llb_graph::{ChownOpt, Exec, FileActions, Meta, State};
//! let os = State::image("docker.io/library/debian:bookworm")
//!     .run(Exec::shell("apt-get update"), Meta::named("[os 1/2] update"))
//!     .root();
//! let k8s = State::scratch().file(
//!     FileActions::new().mkfile("/etc/k8s.conf", 0o644, b"x".to_vec(), ChownOpt::default()),
//!     Meta::named("[kubernetes 1/1] config"),
//! );
//! let node = State::merge(&[os, k8s], Meta::named("[node] merge"));
//! let def = node.marshal().unwrap();
//! assert_eq!(def.def.len(), 5); // image, exec, file, merge, and the result selector
//! ```
//!
//! [`State::marshal`] walks inputs first, skips digests already emitted and encodes
//! deterministically (maps are `BTreeMap`s), so equal graphs give byte-identical definitions.

mod digest;
mod exec;
mod file;
pub mod json;
mod layers;
mod marshal;
mod meta;
pub mod proto;
mod source;
mod state;

pub use digest::Digest;
pub use exec::{CacheSharing, Exec, ExecState, Mount, NetMode};
pub use file::{ChownOpt, CopyOpts, FileActions, Owner};
pub use layers::Layer;
pub use marshal::{DecodedOps, MarshalError, decode_ops};
pub use meta::{Meta, SourceMap, SourceRange, trim_source};
pub use proto::pb;
pub use source::{HttpOpts, ImageOpts, LocalOpts, ResolveMode, normalize_image_ref};
pub use state::{Platform, State};
