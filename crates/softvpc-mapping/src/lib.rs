//! The mapping protocol between the softvpc server and its agents, as a sans-IO state machine
//! for both ends: no sockets, threads or clocks, so both ends are tested together in memory
//! (`tests/pair.rs`), the way quinn-proto tests its connections.
//!
//! - [`record`]: what the protocol carries (hosts, VPCs, subnets, ENIs as typed records), the
//!   [`Change`]s between two sets of them, and the checked conversion from and to protobuf.
//! - [`policy`]: the policy records (security groups, network ACLs, route tables, peering
//!   connections) in `softvpc-policy`'s input types, and their protobuf form.
//! - [`log`]: the server end's store: every record ([`Catalog`], indexed by VPC and by host) and
//!   a revisioned ring of recent changes, under a per-start epoch.
//! - [`feed`]: one watch on the server: what its host needs (every host; each VPC with an ENI
//!   placed on it and each VPC actively peered with one of those; the security groups of its
//!   ENIs) as a Snapshot, then Deltas; never silently stale.
//! - [`replica`]: the agent end: the agent's copy of its host's view and its resume point.
//!
//! The gRPC transport (tonic) and the server's resource model stay outside: the server turns
//! its model into records and commits their changes to the [`MappingLog`]; the agent feeds each
//! received message to its [`Replica`].

#![warn(missing_docs)]

pub mod feed;
pub mod flowlog;
pub mod log;
pub mod metadata;
pub mod policy;
pub mod record;
pub mod replica;
pub mod services;

pub use feed::{Feed, SharedMessages};
pub use flowlog::{Field, FlowLogSpec, TrafficType};
pub use log::{Catalog, Concerned, LogEntry, LogRead, MappingLog, Needed, NeededInputs};
pub use policy::{
    NetworkAclRecord, PeeringRecord, PrefixListRecord, PrefixListRoute, RouteTableRecord,
    SecurityGroupRecord,
};
pub use record::{
    Change, EniRecord, HostRecord, Mac, PublicAddress, RecordError, Records, Scope, SubnetRecord,
    VpcRecord,
};
pub use replica::{Applied, ProtocolError, Replica};
pub use services::{DhcpOptionSet, NameServer, VpcServices};
