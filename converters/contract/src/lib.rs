//! What crosses the boundary between the frontend (which writes it into the build graph) and
//! the `nodestamp` CLI (which reads it inside BuildKit or on the host). Writer and reader share
//! these types, so a field cannot be spelled differently on the two sides.
//!
//! - [`units`]: disk sizes, one parser for `disk.size` in the spec and `nodestamp convert --size`.
//! - [`convert`]: the converter step's command line, as the frontend asks for it.
//! - [`checks`]: `checks.json`, the spec's `tests:` as `nodestamp verify` runs them.
//! - [`paths`]: where the provenance files live in a node's root filesystem.
//! - [`time`]: UTC timestamps from `SOURCE_DATE_EPOCH`, as both sides print them.
//! - [`images`]: preloaded container images: references, where the node keeps them, the import.

pub mod checks;
pub mod convert;
pub mod images;
pub mod paths;
pub mod time;
pub mod units;
