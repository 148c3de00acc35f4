//! The host's edge: its own link to the internet, where the internet gateway's 1:1 NAT runs
//! for the ENIs of this host (distributed, as AWS's and Oxide's gateways are: no gateway host
//! on the path, an instance's internet traffic never crosses the underlay).
//!
//! The edge is an Ethernet link (a TAP the shell plugs into the internet's network) with its
//! own MAC ([`EdgeConfig::mac`]) and one next hop on the internet side
//! ([`EdgeConfig::gateway_ip`]), whose MAC the edge learns by ARP (asked when unknown,
//! learned from any ARP that next hop sends). A learned MAC is not trusted forever: a router
//! replaced, or a Linux bridge whose address follows its lowest port (the lab's internet
//! before it set one), answers at another MAC and says nothing. So the MAC counts as proven
//! while frames come from it; once it has gone [`REVALIDATE`] without proof and the edge
//! still sends to it, the edge asks again (as Linux's neighbour table probes a stale entry
//! in use), keeping the old MAC until an answer replaces it. On it the engine:
//! - answers ARP for the public addresses of its local ENIs, and announces them (gratuitous
//!   ARP) when they arrive on the host, so an Elastic IP that moves is reached at its new host
//!   at once;
//! - takes IPv4 to a public address held here: the destination is translated back to the
//!   private address (an ICMP error's quoted packet too), then the receiving subnet's route
//!   table must send the source back to an internet gateway (`no_igw_route` otherwise), the
//!   subnet's ACL and the ENI's groups decide as for any inbound packet (they see the private
//!   address, as the instance does), and the frame is delivered routed (router MAC, TTL - 1);
//! - sends what the NAT layer translated (the public address as source) to the next hop.
//!
//! Anything else arriving on the edge is dropped and counted (`edge_not_held`): the internet
//! never reaches an instance it was not addressed to.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use softvpc_wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, FrameMeta, L3Meta,
};

use crate::layers::{nacl, nat, route, security_group, Ctx, Direction, Packet, St};
use crate::mapping::{router_mac, Location, Mac};
use crate::{DropReason, PortId};
use softvpc_policy::Generation;

/// How the host reaches the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeConfig {
    /// The edge's own MAC (what ARP for a held public address answers).
    pub mac: Mac,
    /// The next hop on the internet side: every packet to the internet goes to its MAC.
    pub gateway_ip: Ipv4Addr,
}

/// How often the edge asks for its next hop's MAC while it needs it (at most).
const ASK_INTERVAL: Duration = Duration::from_secs(1);

/// How long the next hop's MAC counts as proven after an ARP from it or a frame from it;
/// sending to it after that makes the edge ask again.
pub const REVALIDATE: Duration = Duration::from_secs(5);

/// The edge's state: its configuration, its next hop's MAC and when it was last proven, what
/// it sent and announced.
#[derive(Debug)]
pub(crate) struct Edge {
    pub config: EdgeConfig,
    pub gateway_mac: Option<Mac>,
    /// When the next hop last proved its MAC: an ARP from it, or any frame from that MAC.
    confirmed: Option<Instant>,
    last_ask: Option<Instant>,
    /// Frames sent on the edge at the last look ([`Self::should_ask`]), and when that count
    /// last moved: sending is what makes an unproven MAC worth asking about.
    sent_seen: u64,
    last_sent: Option<Instant>,
    announced: HashSet<Ipv4Addr>,
    /// The table generation the announcements were computed for.
    announced_for: Option<Generation>,
}

impl Edge {
    pub fn new(config: EdgeConfig) -> Edge {
        Edge {
            config,
            gateway_mac: None,
            confirmed: None,
            last_ask: None,
            sent_seen: 0,
            last_sent: None,
            announced: HashSet::new(),
            announced_for: None,
        }
    }

    /// Whether to ask for the next hop's MAC now, given the frames sent on the edge so far:
    /// while it is unknown, or when it went unproven for [`REVALIDATE`] and something was
    /// sent to it since; never twice within [`ASK_INTERVAL`].
    pub fn should_ask(&mut self, now: Instant, sent: u64) -> bool {
        if sent != self.sent_seen {
            self.sent_seen = sent;
            self.last_sent = Some(now);
        }
        // `confirmed` is set exactly when the MAC is learned: none yet means unknown.
        let due = self
            .confirmed
            .is_none_or(|proven| self.last_sent.is_some_and(|t| t >= proven + REVALIDATE));
        if !due || self.last_ask.is_some_and(|t| now < t + ASK_INTERVAL) {
            return false;
        }
        self.last_ask = Some(now);
        true
    }

    /// Whether the announcements must be computed again (a new table since the last time).
    pub fn table_changed(&mut self, generation: Generation) -> bool {
        self.announced_for.replace(generation) != Some(generation)
    }

    /// The public addresses of `held` not announced yet (remembered as announced); the ones
    /// that left are forgotten, so a returning address is announced again.
    pub fn newly_held(&mut self, held: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
        self.announced.retain(|ip| held.contains(ip));
        held.iter()
            .copied()
            .filter(|ip| self.announced.insert(*ip))
            .collect()
    }

    /// A public address held here (the lowest), if any: the sender of the edge's requests.
    pub fn an_address(&self) -> Option<Ipv4Addr> {
        self.announced.iter().min().copied()
    }

    /// Learns the next hop's MAC from an ARP packet it sent (which also proves it).
    pub fn learn(&mut self, now: Instant, sender_ip: Ipv4Addr, sender_mac: Mac) {
        if sender_ip == self.config.gateway_ip && EthernetAddress(sender_mac).is_unicast() {
            self.gateway_mac = Some(sender_mac);
            self.confirmed = Some(now);
        }
    }

    /// A frame arrived from `src_mac`: if that is the next hop's MAC, it is proven now.
    pub fn seen_from(&mut self, now: Instant, src_mac: &[u8]) {
        if self.gateway_mac.is_some_and(|m| m[..] == *src_mac) {
            self.confirmed = Some(now);
        }
    }
}

/// Length of an Ethernet + ARP frame.
pub(crate) const ARP_LEN: usize = 14 + 28;

/// Writes an ARP frame into `buf` ([`ARP_LEN`] bytes).
pub(crate) fn emit_arp(
    buf: &mut [u8],
    eth_dst: Mac,
    operation: ArpOperation,
    sender: (Mac, Ipv4Addr),
    target: (Mac, Ipv4Addr),
) {
    let mut frame = EthernetFrame::new_unchecked(buf);
    EthernetRepr {
        src_addr: EthernetAddress(sender.0),
        dst_addr: EthernetAddress(eth_dst),
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut frame);
    let mut arp = ArpPacket::new_unchecked(frame.payload_mut());
    ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: EthernetAddress(sender.0),
        source_protocol_addr: sender.1,
        target_hardware_addr: EthernetAddress(target.0),
        target_protocol_addr: target.1,
    }
    .emit(&mut arp);
}

/// What the edge does with an ARP packet: learn, and answer a request for a public address
/// of a local ENI (`Some(asker)`).
pub(crate) fn arp(
    cx: Ctx<'_>,
    edge: &mut Edge,
    now: Instant,
    meta: &FrameMeta<'_>,
) -> Result<Option<(Mac, Ipv4Addr, Ipv4Addr)>, DropReason> {
    let L3Meta::Arp(Some(a)) = meta.l3 else {
        return Err(DropReason::Malformed);
    };
    edge.learn(now, a.sender_ip, a.sender_mac.0);
    if a.operation != ArpOperation::Request {
        return Ok(None);
    }
    let held = cx
        .table
        .by_public_ip(a.target_ip)
        .is_some_and(|(e, _)| matches!(e.location, Location::Local(_)));
    Ok(held.then_some((a.sender_mac.0, a.sender_ip, a.target_ip)))
}

/// An IPv4 frame from the internet: translated into `scratch` and checked by the receiving
/// ENI's subnet and groups. Returns the port to deliver `scratch` to; a drop names the local
/// ENI it is counted at, if any.
pub(crate) fn inbound(
    cx: Ctx<'_>,
    st: &mut St<'_>,
    mac: Mac,
    frame: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<PortId, (DropReason, Option<PortId>)> {
    let meta = FrameMeta::parse(frame).map_err(|_| (DropReason::Malformed, None))?;
    let ip = match meta.l3 {
        L3Meta::Ipv4(ip) if ip.valid => ip,
        L3Meta::Ipv4(_) | L3Meta::Ipv4Unreadable => return Err((DropReason::Malformed, None)),
        _ => return Err((DropReason::EdgeNotHeld, None)),
    };
    if meta.dst_mac.0 != mac || meta.vlan.is_some() {
        return Err((DropReason::EdgeNotHeld, None));
    }
    let (eni, private) = cx
        .table
        .by_public_ip(ip.dst)
        .ok_or((DropReason::EdgeNotHeld, None))?;
    let Location::Local(port) = eni.location else {
        return Err((DropReason::EdgeNotHeld, None));
    };
    let at = Some(port);
    if !route::routes_to_internet(cx.table, eni, ip.src) {
        return Err((DropReason::NoIgwRoute, at));
    }
    if ip.ttl <= 1 {
        return Err((DropReason::TtlExceeded, at));
    }
    scratch.clear();
    scratch.extend_from_slice(frame);
    route::rewrite_routed(scratch, router_mac(eni.vni), eni.mac);
    let l3 = &mut scratch[14..];
    nat::set_dst(l3, private);
    if nat::is_icmp_error(l3) {
        nat::translate_icmp_quote(l3, private, None);
    }
    let meta = FrameMeta::parse(scratch).map_err(|_| (DropReason::Malformed, at))?;
    let mut pkt = Packet::new(Direction::Ingress, meta, eni.vni, None, None);
    pkt.target = Some(eni);
    pkt.attrib = at;
    let p = pkt.pol.ok_or((DropReason::Malformed, at))?;
    nacl::check(
        cx,
        &mut pkt,
        eni,
        p.src,
        softvpc_policy::Direction::Ingress,
        1,
    )
    .map_err(|r| (r, at))?;
    security_group::check(
        cx,
        st,
        &mut pkt,
        port,
        eni,
        softvpc_policy::Direction::Ingress,
        1,
    )
    .map_err(|r| (r, at))?;
    Ok(port)
}
