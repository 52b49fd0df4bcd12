//! Generated protobuf types. Module nesting follows the protobuf package names, because the
//! generated code refers to other packages through relative `super::` paths.
#![allow(clippy::all, missing_docs)]

/// LLB: `solver/pb/ops.proto` subset (package `pb`).
pub mod pb {
    tonic::include_proto!("pb");
}
