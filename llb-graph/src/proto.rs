//! Generated protobuf types. Module nesting follows the protobuf package names, because the
//! generated code refers to other packages through relative `super::` paths.
#![allow(clippy::all, missing_docs)]

/// LLB: `solver/pb/ops.proto` subset (package `pb`).
pub mod pb {
    tonic::include_proto!("pb");
}

/// The standard gRPC error model (package `google.rpc`), used to return errors to BuildKit.
pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

/// BuildKit's own API packages (`moby.buildkit.v1.*`).
pub mod moby {
    pub mod buildkit {
        pub mod v1 {
            /// The frontend gateway: the `LLBBridge` service a frontend calls over stdio.
            pub mod frontend {
                tonic::include_proto!("moby.buildkit.v1.frontend");
            }
            /// API capabilities announced by `Ping`.
            pub mod apicaps {
                tonic::include_proto!("moby.buildkit.v1.apicaps");
            }
            /// Worker records announced by `Ping`.
            pub mod types {
                tonic::include_proto!("moby.buildkit.v1.types");
            }
        }
    }
}
