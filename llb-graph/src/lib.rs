//! Typed, immutable builder for BuildKit LLB graphs.

pub mod proto;

pub use proto::pb;
