//! The server's side of the mapping service: how agents learn where every ENI lives.
//!
//! [`project`] turns the resource model into mapping records and derives each committed
//! mutation's changes (the difference of the records before and after it); the control plane
//! commits them to its `softvpc_mapping::MappingLog`, and [`service`] serves each host's
//! `softvpc_mapping::Feed` over gRPC (`RegisterHost`, `Watch`). The protocol's state machine
//! (log, per-host projection, resume, resync) is the `softvpc-mapping` crate's.

pub mod project;
pub mod service;
