//! Generated protobuf types of the gateway. Module nesting follows the protobuf package names,
//! because the generated code refers to other packages through relative `super::` paths; LLB
//! messages are `llb_graph::pb`.
#![allow(clippy::all, missing_docs)]

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
