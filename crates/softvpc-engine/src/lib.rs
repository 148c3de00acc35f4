//! The softvpc virtual router as a sans-IO engine.
//!
//! Frames and time go in, frames and actions come out: no sockets, no threads, no clock of its
//! own (the caller passes `now`). The I/O shell (`softvpc-agent`) reads frames from TAP devices
//! and datagrams from the underlay UDP socket, hands them to [`Engine`] in batches, and performs
//! the [`Output`] it gets back. Every behaviour is therefore unit-testable without root.
//!
//! Per ENI, a frame walks an ordered pipeline of layers ([`layers`], see `ARCHITECTURE.md`):
//! anti-spoofing -> gateway services (ARP proxy, ICMP for the router address) -> route ->
//! overlay (local delivery or VXLAN encapsulation) on the way out, and decapsulation ->
//! delivery checks on the way in. Network ACLs, security groups and NAT will slot in between,
//! each as its own module.
//!
//! The mapping state the engine consults is a [`MappingTable`]: an immutable snapshot that the
//! shell rebuilds and swaps in whole whenever the mapping service reports a change.

pub mod counters;
pub mod engine;
pub mod layers;
pub mod mapping;

pub use counters::{Counters, DropReason, Path};
pub use engine::{Engine, EngineConfig, Output, PortId, Transmit};
pub use mapping::{
    router_mac, EniEntry, EniInfo, HostInfo, Location, Mac, MappingRecords, MappingTable,
    SubnetEntry, SubnetIdx, SubnetInfo, Vni, VpcEntry, VpcInfo,
};
