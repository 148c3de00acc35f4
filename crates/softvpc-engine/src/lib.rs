//! The softvpc virtual router as a sans-IO engine.
//!
//! Frames and time go in, frames and events come out: no sockets, no threads, no clock of its
//! own. The I/O shell (`softvpc-agent`) reads frames from TAP devices and datagrams from the
//! underlay UDP socket, hands them to [`Engine`] in batches with the current time, and performs
//! the [`Output`] it gets back; it calls [`Engine::handle_timeout`] when
//! [`Engine::poll_timeout`] says, and logs what [`Engine::poll_event`] hands out. Every
//! behaviour is therefore testable without root, in virtual time.
//!
//! Each frame is parsed once ([`softvpc_wire::FrameMeta`]: the flow key and every field a layer
//! decides on) and walks the ENI's pipeline of [`layers`]: gateway services -> network ACL ->
//! security group -> route -> NAT -> overlay on the way out, the reverse on the way in
//! ([`layers::EGRESS`], [`layers::INGRESS`]). [`Engine::trace_port_frame`] runs the same code
//! and reports each layer's decision.
//!
//! The mapping state the engine consults is a [`MappingTable`]: an immutable snapshot that the
//! shell rebuilds and swaps in whole whenever the mapping service reports a change.
//!
//! # Panics
//!
//! Like smoltcp's interfaces, the engine treats every packet as untrusted and never panics on
//! one: a frame or datagram of any length and content ends as an output, an absorption or a
//! counted drop (the fuzz targets `engine_port_frames` and `engine_underlay` and the property
//! tests hold it to that). The engine does not panic on a mapping table either: inconsistent
//! records are left out when the table is built. Time may be passed in any order: a `now` older
//! than one seen before is taken as the latest seen, never as time going back. What the engine
//! does not promise: its behaviour when the shell itself breaks Rust's rules, and its
//! allocations past the steady state (an [`Output`] grows to the largest batch it was given,
//! and a drop report formats one string per interval).

#![warn(missing_docs)]

pub mod counters;
pub mod edge;
pub mod engine;
pub mod flow;
pub mod flowlog;
pub mod layers;
pub mod mapping;
pub mod natgw;
pub mod offload;
pub mod output;
pub mod pipeline;
pub mod report;

pub use counters::{Counters, DropReason, EniCounters, Path};
pub use edge::EdgeConfig;
pub use engine::{Engine, EngineConfig, PortId};
pub use flow::{Destination, FlowEntry, FlowId, FlowSide, FlowTable};
pub use flowlog::{
    FlowAction, FlowCounts, FlowDirection, FlowLogConfig, FlowLogStats, FlowRecord, FlowWindow,
    RecordKey,
};
pub use layers::{Direction, LayerId};
pub use mapping::{
    router_mac, EniEntry, GroupMembers, Location, Mac, MappingTable, PeeringEntry, PlacedEni,
    SubnetEntry, SubnetIdx, TableBuilder, Vni, VpcEntry, VpcServices,
};
pub use natgw::{NatConfig, NatStats, NatTable};
pub use offload::{KernelAction, KernelFlow, KernelHook, OfferChange, Slow};
pub use output::{Output, Transmit};
pub use pipeline::{LayerDecision, SgHow, Trace, TraceVerdict, Why};
pub use report::{DropReport, DropSample, Event};
/// The policy crate whose input types the [`TableBuilder`] takes.
pub use softvpc_policy as policy;
