//! The mapping service: how agents learn where every ENI lives.
//!
//! Every committed mutation appends its changes ([`project::derive`]: the difference of the
//! wire records before and after it) to a revisioned [`log::MappingLog`]; [`view`]
//! computes what one host needs (all hosts, plus every VPC with an ENI on that host) as a
//! Snapshot or as Deltas; [`service`] serves it over gRPC (`RegisterHost`, `Watch`).

pub mod log;
pub mod project;
pub mod service;
pub mod view;
