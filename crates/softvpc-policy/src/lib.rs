//! The VPC policy decisions of softvpc, sans-IO: connection tracking, security groups, network
//! ACLs and route lookup.
//!
//! This crate decides; it never touches a packet buffer, a socket or a clock. It is the
//! `oxide-vpc` to the engine's `opte`: `softvpc-engine` parses each frame once into a flow key,
//! walks its layers, and asks this crate what the VPC's rules say. Each decision names what
//! decided it (the `sgr-` rule, the ACL rule number, the route and its table) so flow logs and
//! `softvpc trace` can show it, and each compiled input carries the [`Generation`] it was built
//! under so a cached decision can be recomputed when the policy moves on.
//!
//! | module | decides | the engine's layer |
//! | --- | --- | --- |
//! | [`packet`] | the fields a decision needs ([`Packet`]), and the ICMP error quote parser | every layer |
//! | [`conntrack`] | is this packet part of a tracked connection (AWS's idle timeouts, a per-ENI bound) | security group |
//! | [`secgroup`] | which `sgr-` rule of the ENI's groups allows a new flow, and whether it is tracked | security group |
//! | [`firewall`] | the security-group layer's verdict: conntrack first, then the rules | security group |
//! | [`nacl`] | the subnet's network ACL: allow or deny and the rule number (or `*`) | network ACL |
//! | [`route`] | the route and table for a destination: local, ENI, peering, blackhole, gateway | route |
//!
//! How the engine's layers use it: per ENI the engine holds a [`firewall::Firewall`] (the ENI's
//! compiled groups, shared through an `Arc`, plus its [`conntrack::ConnTrack`]) and calls
//! [`firewall::Firewall::check`] in the security-group layer of both pipelines, with the member
//! addresses of referenced groups ([`secgroup::Members`]) from its mapping table, and
//! [`conntrack::ConnTrack::expire`] from its timer entry point. The rule inputs are plain types
//! ([`secgroup::SgRule`]) that the mapping service can carry to the host; the engine compiles
//! them ([`secgroup::CompiledGroups::compile`]) when a mapping change arrives and bumps the
//! [`Generation`]. Per subnet it holds a compiled [`nacl::NetworkAcl`], asked only when a packet
//! leaves or enters the subnet, and per VPC the [`route::VpcRoutes`] (the subnet's table, else
//! the main one), asked for packets sent to the subnet router. Egress: network ACL (leaving the
//! subnet) -> security group -> route; ingress the reverse. The NACL and route decisions are
//! cheap and stateless, so a flow-table entry caching them is simply recomputed when the
//! generation moves; a conntrack entry keeps its connection across generations (AWS semantics)
//! and only re-looks-up the rule it names.
//!
//! IPv4 only, as the rest of softvpc.
//!
//! # Panics
//!
//! Nothing in this crate panics on any input: not on packet fields, not on rules (any protocol
//! number, port range or CIDR, in any order), not on time going backwards (an earlier `now` is
//! treated as no time passing). The only exception is a bug, which the tests hunt with
//! proptests and the fuzz target `policy_icmp_quote`.

#![warn(missing_docs)]

pub mod conntrack;
pub mod firewall;
pub mod nacl;
pub mod packet;
pub mod route;
pub mod secgroup;

pub use packet::{Direction, Packet, L4};

/// The version of the policy inputs (groups, members, ACLs, routes) a decision was made under.
/// The engine bumps it whenever an input changes; a cached decision with an older generation is
/// recomputed before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Generation(pub u64);
