//! The nodestamp BuildKit frontend: reads the request BuildKit's gateway gives it, has the
//! compiler turn the spec into a graph, resolves what only the engine can (base image config,
//! named contexts), and answers subrequests (`--call`). The spec lives in `nodestamp_spec`, the
//! compiler in `nodestamp_compile`.
pub mod build;
pub mod contexts;
pub mod gateway;
pub mod proto;
pub mod request;
pub mod subrequests;
