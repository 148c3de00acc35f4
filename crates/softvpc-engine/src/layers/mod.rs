//! The layers a packet walks through, one module each, in the spirit of OPTE's per-port layers.
//!
//! Every ENI has the same pipeline. Egress (a frame the instance sent on its port) walks
//! [`EGRESS`] in order; ingress (a VXLAN datagram from the underlay) walks [`INGRESS`], the same
//! layers reversed:
//!
//! | layer | egress | ingress |
//! | --- | --- | --- |
//! | [`gateway`] | anti-spoofing, proxy ARP, ICMP echo for the router address, no broadcast | nothing to answer (ARP and broadcast never cross the underlay) |
//! | [`nacl`] | network ACL of the sender's subnet (no rules enforced yet: passes) | of the receiver's subnet (passes) |
//! | [`security_group`] | the sender ENI's groups (no rules enforced yet: passes) | the receiver ENI's groups (passes) |
//! | [`route`] | which ENI the destination is, bridged or routed (MAC rewrite, TTL) | the inner destination must be an ENI of the VNI on this host |
//! | [`nat`] | address translation (none yet: passes) | (passes) |
//! | [`overlay`] | VXLAN encapsulation to the target's host, or local delivery | decapsulation: VXLAN header, known VNI, registered source host |
//!
//! Each layer reads the one parse of the frame ([`softvpc_wire::FrameMeta`], in
//! `Packet::meta`), may record a decision in the `Packet` (the target, a rewrite, the
//! encapsulation), and then either passes it on (`Step::Next`), answers it (`Step::Reply`,
//! `Step::Absorb`) or drops it (`Err(DropReason)`). The network ACL, security group and NAT
//! layers are in place so that their rules (issue 10) slot into both directions without
//! reshaping the pipeline; today they pass every packet, and the pipeline-order tests check
//! that each is visited where it belongs.
//!
//! On ingress the overlay is where a packet comes from: `overlay::decapsulate` checks the
//! outer datagram, parses the inner frame once, and builds the `Packet` the other layers see.

pub mod gateway;
pub mod nacl;
pub mod nat;
pub mod overlay;
pub mod route;
pub mod security_group;

use std::net::Ipv4Addr;

use softvpc_wire::FrameMeta;

use crate::counters::Path;
use crate::mapping::{EniEntry, Mac, MappingTable, Vni};
use crate::{DropReason, EngineConfig, PortId};

/// A layer of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerId {
    /// [`gateway`]: services of the VPC router on the host.
    Gateway,
    /// [`nacl`]: the subnet's network ACL.
    Nacl,
    /// [`security_group`]: the ENI's security groups.
    SecurityGroup,
    /// [`route`]: where the packet goes.
    Route,
    /// [`nat`]: address translation.
    Nat,
    /// [`overlay`]: VXLAN between hosts.
    Overlay,
}

impl LayerId {
    /// The layer's name (for traces and logs).
    pub const fn as_str(self) -> &'static str {
        match self {
            LayerId::Gateway => "gateway",
            LayerId::Nacl => "nacl",
            LayerId::SecurityGroup => "security_group",
            LayerId::Route => "route",
            LayerId::Nat => "nat",
            LayerId::Overlay => "overlay",
        }
    }
}

/// The egress order: what an instance sends walks these, first to last.
pub const EGRESS: [LayerId; 6] = [
    LayerId::Gateway,
    LayerId::Nacl,
    LayerId::SecurityGroup,
    LayerId::Route,
    LayerId::Nat,
    LayerId::Overlay,
];

/// The ingress order: [`EGRESS`] reversed.
pub const INGRESS: [LayerId; 6] = [
    LayerId::Overlay,
    LayerId::Nat,
    LayerId::Route,
    LayerId::SecurityGroup,
    LayerId::Nacl,
    LayerId::Gateway,
];

/// Which way a packet goes through the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a local instance (its port).
    Egress,
    /// From the underlay (a VXLAN datagram).
    Ingress,
}

/// What the layers read besides the packet: the mapping table and the host's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'t> {
    pub table: &'t MappingTable,
    pub config: &'t EngineConfig,
}

/// A routed frame's MAC rewrite (the TTL is decremented with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rewrite {
    pub router_mac: Mac,
    pub target_mac: Mac,
}

/// Where an encapsulated frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encap {
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
}

/// One packet on its way through the pipeline: the one parse of its (inner) frame, and what the
/// layers decided so far.
#[derive(Debug)]
pub(crate) struct Packet<'a, 't> {
    pub direction: Direction,
    /// The frame (on ingress, the inner frame), parsed once.
    pub meta: FrameMeta<'a>,
    /// The VPC the packet is in.
    pub vni: Vni,
    /// Egress: the port the frame came from and its ENI.
    pub sender: Option<(PortId, &'t EniEntry)>,
    /// Ingress: the outer source (a registered host).
    #[allow(dead_code)] // Read by the receive-side source check of issue 10.
    pub underlay_src: Option<Ipv4Addr>,
    /// Where the packet goes (set by [`route`]).
    pub target: Option<&'t EniEntry>,
    /// A routed frame's rewrite (set by [`route`]).
    pub rewrite: Option<Rewrite>,
    /// Egress to another host: the encapsulation (set by [`overlay`]).
    pub encap: Option<Encap>,
    /// The answer of a layer that returned [`Step::Reply`], for this port.
    pub reply: Option<(PortId, Reply<'a>)>,
}

impl<'a, 't> Packet<'a, 't> {
    /// The sending ENI of an egress packet.
    #[inline]
    pub fn sender_eni(&self) -> Option<&'t EniEntry> {
        self.sender.map(|(_, eni)| eni)
    }
}

/// A frame the gateway answers with, written to the asking port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    /// "`owner_ip` is at `owner_mac`", to the asker.
    Arp {
        owner_mac: Mac,
        owner_ip: Ipv4Addr,
        asker_mac: Mac,
        asker_ip: Ipv4Addr,
    },
    /// An echo reply from the router address.
    IcmpEcho {
        router_mac: Mac,
        router_ip: Ipv4Addr,
        dst_mac: Mac,
        dst_ip: Ipv4Addr,
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
}

/// What a layer did with a packet (a drop is the `Err` beside it). Two bytes, so that each
/// layer's answer travels in a register; a reply itself is left in [`Packet::reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// On to the next layer.
    Next,
    /// Answered ([`Packet::reply`] holds the answer): the packet goes no further.
    Reply,
    /// Consumed on purpose (not an error): counted under the path.
    Absorb(Path),
}

/// A layer's result.
pub(crate) type LayerResult = Result<Step, DropReason>;

/// Runs layer `id` on an egress packet.
#[inline(always)]
pub(crate) fn egress<'a, 't>(id: LayerId, cx: Ctx<'t>, pkt: &mut Packet<'a, 't>) -> LayerResult {
    match id {
        LayerId::Gateway => gateway::egress(cx, pkt),
        LayerId::Nacl => nacl::egress(cx, pkt),
        LayerId::SecurityGroup => security_group::egress(cx, pkt),
        LayerId::Route => route::egress(cx, pkt),
        LayerId::Nat => nat::egress(cx, pkt),
        LayerId::Overlay => overlay::egress(cx, pkt),
    }
}

/// Runs layer `id` on an ingress packet (after [`overlay::decapsulate`] made it).
#[inline(always)]
pub(crate) fn ingress<'a, 't>(id: LayerId, cx: Ctx<'t>, pkt: &mut Packet<'a, 't>) -> LayerResult {
    match id {
        LayerId::Gateway => gateway::ingress(cx, pkt),
        LayerId::Nacl => nacl::ingress(cx, pkt),
        LayerId::SecurityGroup => security_group::ingress(cx, pkt),
        LayerId::Route => route::ingress(cx, pkt),
        LayerId::Nat => nat::ingress(cx, pkt),
        LayerId::Overlay => overlay::ingress(cx, pkt),
    }
}
