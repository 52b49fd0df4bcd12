//! Generated protobuf types.
#![allow(clippy::all, missing_docs)]

/// LLB: `solver/pb/ops.proto` subset (package `pb`).
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/pb.rs"));
}
