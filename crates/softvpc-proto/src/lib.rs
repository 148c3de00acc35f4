//! The mapping-service protocol (gRPC, generated from `proto/mapping.proto`).
//!
//! Shared by the server (which serves it) and the agent (which watches it).

#![allow(clippy::all, missing_docs)]

/// Generated messages and the `Mapping` service client and server.
pub mod mapping {
    pub mod v1 {
        tonic::include_proto!("softvpc.mapping.v1");
    }
}

pub use mapping::v1 as pb;
