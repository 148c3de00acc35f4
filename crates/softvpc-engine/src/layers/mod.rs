//! The layers a packet walks through, one module each, in the spirit of OPTE's per-port layers.
//!
//! Every ENI has the same pipeline. Egress (a frame the instance sent on its port) walks
//! [`EGRESS`] in order; ingress (a VXLAN datagram from the underlay) walks [`INGRESS`], the same
//! layers reversed:
//!
//! | layer | egress | ingress |
//! | --- | --- | --- |
//! | [`gateway`] | anti-spoofing (the source address unless the source/destination check is off), proxy ARP, DHCP, ICMP echo for the router address, no other broadcast | nothing to answer (ARP and broadcast never cross the underlay) |
//! | [`security_group`] | the sender ENI's groups (outbound rules, conntrack) | the receiver ENI's groups (inbound rules, conntrack) |
//! | [`nacl`] | the sender's subnet's ACL, when the destination is outside the subnet | the receiver's subnet's ACL, when the source is outside it |
//! | [`route`] | the subnet's route table: bridged or routed (MAC rewrite, TTL), local, middlebox ENI, peering, blackhole, internet gateway (on to the edge), NAT gateway | the inner destination must be a local ENI of the VNI (its check, if the address is not its own); the inner source must be placed on the sending host |
//! | [`nat`] | to an internet gateway: the source's public address (1:1), the edge's MTU (ICMP frag-needed for DF) | (passes: the edge translates what comes from the internet) |
//! | [`overlay`] | VXLAN encapsulation to the target's host, local delivery, or the edge for the internet | decapsulation: VXLAN header, known VNI, registered source host |
//!
//! A frame delivered to another ENI on the same host also meets the receiver's side (its
//! subnet's ACL, its groups) in the same pass. Each layer reads the one parse of the frame
//! ([`softvpc_wire::FrameMeta`], in `Packet::meta`; the policy layers its
//! `softvpc_policy::Packet`, built from the same parse), may record a decision in the `Packet`
//! (the target, a rewrite, the encapsulation, the conntrack tables that hold the flow, and
//! notes for traces), and then either passes it on (`Step::Next`), answers it (`Step::Reply`,
//! `Step::Absorb`) or drops it (`Err(DropReason)`). The composed result of a forwarded packet
//! is cached in the flow table ([`crate::flow`]).
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
use std::time::Instant;

use softvpc_policy::firewall::Firewall;
use softvpc_policy::nacl::{AclRule, Action};
use softvpc_policy::route::Route;
use softvpc_policy::secgroup::RuleIdx;
use softvpc_policy::Direction as PolicyDirection;
use softvpc_wire::FrameMeta;

use crate::counters::Path;
use crate::mapping::{EniEntry, FastState, Mac, MappingTable, Vni};
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

/// The egress order: what an instance sends walks these, first to last. The security group sits
/// at the ENI and the network ACL at the subnet's edge, so on the way out the group comes first
/// and on the way in the ACL (as AWS evaluates them).
pub const EGRESS: [LayerId; 6] = [
    LayerId::Gateway,
    LayerId::SecurityGroup,
    LayerId::Nacl,
    LayerId::Route,
    LayerId::Nat,
    LayerId::Overlay,
];

/// The ingress order: [`EGRESS`] reversed.
pub const INGRESS: [LayerId; 6] = [
    LayerId::Overlay,
    LayerId::Nat,
    LayerId::Route,
    LayerId::Nacl,
    LayerId::SecurityGroup,
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
    /// The host's link to the internet, if it has one.
    pub edge: Option<&'t crate::edge::Edge>,
}

/// A routed frame's MAC rewrite (the TTL is decremented with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rewrite {
    /// The new source MAC: the router's of the receiving VPC.
    pub router_mac: Mac,
    /// The new destination MAC: the target ENI's.
    pub target_mac: Mac,
}

/// Where an encapsulated frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Encap {
    /// The target host's underlay address.
    pub dst_ip: Ipv4Addr,
    /// The outer UDP source port (from the inner flow's hash).
    pub src_port: u16,
}

/// The state of one local ENI the layers keep between packets: its security groups' connection
/// tracking.
#[derive(Debug)]
pub(crate) struct EniState {
    /// The ENI it belongs to (a port that gets another ENI gets a fresh state).
    pub eni_id: Box<str>,
    /// Its groups and connection tracking; `None` while it has no group.
    pub fw: Option<Firewall>,
    /// Its index in the engine's per-ENI counters.
    pub counters: usize,
}

/// The local ENIs' state, by port.
pub(crate) type PortMap = std::collections::HashMap<PortId, EniState, FastState>;

/// The layers' access to the ENIs' state: the data path changes it, a trace only reads it.
#[derive(Debug)]
pub(crate) enum Ports<'s> {
    Live(&'s mut PortMap),
    Trace(&'s PortMap),
}

/// What the stateful layers need besides the packet: the ENIs' state and the time (`None`
/// only for a trace before the engine saw any time: nothing is tracked then).
#[derive(Debug)]
pub(crate) struct St<'s> {
    pub ports: Ports<'s>,
    pub now: Option<Instant>,
    /// The per-ENI connection limit.
    #[allow(dead_code)] // Read when a table is made lazily.
    pub limit: usize,
}

/// Which security-group decision let a packet through, or refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SgWhy {
    /// The ENI has no group: nothing filtered.
    NoGroups,
    /// DNS at the VPC's +2 address or DHCP: never filtered.
    AlwaysAllowed,
    /// A rule allows a new flow.
    Rule { rule: RuleIdx, tracked: bool },
    /// A tracked connection (the rule that opened it, if one still does).
    Tracked { reply: bool, rule: Option<RuleIdx> },
    /// An ICMP error about a tracked connection.
    Related,
    /// No rule allows it.
    Denied,
    /// Allowed but the tracking table is full.
    Full,
}

/// What decided at the network ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NaclWhy<'t> {
    /// The packet stays inside the subnet: no ACL applies.
    InsideSubnet,
    /// The subnet has no ACL.
    NoAcl,
    /// The ACL's entry (or `*`).
    Entry {
        acl: &'t str,
        rule: AclRule,
        action: Action,
    },
}

/// What decided at the route layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteWhy<'t> {
    /// Same subnet, to the target's MAC: switched, no route table.
    Bridged,
    /// The VPC has no route table: its local routes.
    LocalOnly,
    /// A route of a table (`None`: no route matched).
    Route {
        table: &'t str,
        route: Option<&'t Route>,
    },
    /// Received: the inner source is an ENI on the sending host.
    SourcePlaced,
    /// Received over a peering connection the receiver's routes point back to.
    SourcePeered { pcx: &'t str },
    /// Received from a host that forwards for the VPC (an ENI with its check off).
    SourceForwarded,
}

/// What each policy layer decided, for traces (the data path writes these few words and never
/// reads them). Index 0: the sender's side (egress), 1: the receiver's (ingress).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Notes<'t> {
    pub sg: [Option<(&'t EniEntry, SgWhy)>; 2],
    pub nacl: [Option<(&'t str, NaclWhy<'t>)>; 2],
    pub route: Option<RouteWhy<'t>>,
    pub source: Option<RouteWhy<'t>>,
    pub pcx: Option<&'t str>,
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
    pub underlay_src: Option<Ipv4Addr>,
    /// Where the packet goes (set by [`route`]).
    pub target: Option<&'t EniEntry>,
    /// A routed frame's rewrite (set by [`route`]).
    pub rewrite: Option<Rewrite>,
    /// Egress to another host: the encapsulation (set by [`overlay`]).
    pub encap: Option<Encap>,
    /// The answer of a layer that returned [`Step::Reply`], for this port.
    pub reply: Option<(PortId, Reply<'a>)>,
    /// The fields policy decides on (a valid IPv4 header), from the one parse.
    pub pol: Option<softvpc_policy::Packet>,
    /// The conntrack tables a later packet of the flow must find its connection in (the
    /// sender's and the receiver's side), for the flow table.
    pub tracked: [Option<(PortId, PolicyDirection)>; 2],
    /// False when the decision holds for this packet only (an ICMP error let through for the
    /// connection it quotes): not cached.
    pub cacheable: bool,
    /// The local ENI a drop is counted at (the sender's on egress, the target's once known).
    pub attrib: Option<PortId>,
    /// Why the policy layers decided as they did.
    pub notes: Notes<'t>,
    /// Egress to the internet: the internet gateway the route sends it to (set by [`route`];
    /// no target ENI then).
    pub igw: Option<&'t str>,
    /// Egress to the internet: the public source address it leaves with (set by [`nat`]).
    pub snat: Option<Ipv4Addr>,
    /// Egress to a NAT gateway (set by [`route`]): on to the internet gateway's 1500 bytes.
    pub natgw: bool,
}

impl<'a, 't> Packet<'a, 't> {
    /// A packet at the start of a pipeline.
    #[inline]
    pub fn new(
        direction: Direction,
        meta: FrameMeta<'a>,
        vni: Vni,
        sender: Option<(PortId, &'t EniEntry)>,
        underlay_src: Option<Ipv4Addr>,
    ) -> Packet<'a, 't> {
        let pol = match meta.ipv4() {
            Some(ip) if ip.valid => Some(softvpc_policy::Packet::from_ipv4(ip)),
            _ => None,
        };
        Packet {
            direction,
            meta,
            vni,
            attrib: sender.map(|(port, _)| port),
            sender,
            underlay_src,
            target: None,
            rewrite: None,
            encap: None,
            reply: None,
            pol,
            tracked: [None; 2],
            cacheable: true,
            notes: Notes::default(),
            igw: None,
            snat: None,
            natgw: false,
        }
    }

    /// The sending ENI of an egress packet.
    #[inline]
    pub fn sender_eni(&self) -> Option<&'t EniEntry> {
        self.sender.map(|(_, eni)| eni)
    }
}

/// A frame the gateway answers with, written to the asking port.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// A DHCP answer from the router (boxed: rare, and larger than the others).
    Dhcp(Box<gateway::DhcpReply>),
    /// ICMP "fragmentation needed" from the router (a DF packet too big for the edge).
    FragNeeded {
        router_mac: Mac,
        router_ip: Ipv4Addr,
        dst_mac: Mac,
        dst_ip: Ipv4Addr,
        mtu: u16,
        quote: &'a [u8],
    },
    /// A DNS answer from the router's resolver.
    Dns(Box<gateway::dns::DnsReply>),
    /// A DNS query for the shell to forward upstream.
    DnsForward(Box<gateway::dns::Asker>, &'a [u8]),
    /// An IPv4 packet for the shell's instance metadata server.
    Imds(&'a [u8]),
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
pub(crate) fn egress<'a, 't>(
    id: LayerId,
    cx: Ctx<'t>,
    st: &mut St<'_>,
    pkt: &mut Packet<'a, 't>,
) -> LayerResult {
    match id {
        LayerId::Gateway => gateway::egress(cx, pkt),
        LayerId::Nacl => nacl::egress(cx, pkt),
        LayerId::SecurityGroup => security_group::egress(cx, st, pkt),
        LayerId::Route => route::egress(cx, pkt),
        LayerId::Nat => nat::egress(cx, pkt),
        LayerId::Overlay => overlay::egress(cx, pkt),
    }
}

/// Runs layer `id` on an ingress packet (after [`overlay::decapsulate`] made it).
#[inline(always)]
pub(crate) fn ingress<'a, 't>(
    id: LayerId,
    cx: Ctx<'t>,
    st: &mut St<'_>,
    pkt: &mut Packet<'a, 't>,
) -> LayerResult {
    match id {
        LayerId::Gateway => gateway::ingress(cx, pkt),
        LayerId::Nacl => nacl::ingress(cx, pkt),
        LayerId::SecurityGroup => security_group::ingress(cx, st, pkt),
        LayerId::Route => route::ingress(cx, pkt),
        LayerId::Nat => nat::ingress(cx, pkt),
        LayerId::Overlay => overlay::ingress(cx, pkt),
    }
}
