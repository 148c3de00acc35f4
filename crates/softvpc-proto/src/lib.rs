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

/// The largest mapping message either end sends or accepts, set deliberately on both (gRPC's
/// default is 4 MiB). A watch Snapshot carries whole VPCs: a VPC of 100,000 ENIs makes one of
/// about 14 MB (`softvpc-server`'s `tests/large_snapshot.rs`), and one of 25,000 already passed
/// the default, after which an agent could never sync. 1 GiB is a few million ENIs, beyond what
/// one server holds; the peers are authenticated (mutual TLS), so the bound only guards against
/// a broken peer.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// A mapping-service client on `channel` that accepts messages up to [`MAX_MESSAGE_BYTES`].
pub fn client(
    channel: tonic::transport::Channel,
) -> pb::mapping_client::MappingClient<tonic::transport::Channel> {
    pb::mapping_client::MappingClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}
