//! The engine: per-batch entry points, the pipeline that walks each frame through the layers
//! (see [`crate::layers`]), and the output the shell performs.
//!
//! Every input ends in exactly one `Verdict`: one output, one drop (counted by reason) or
//! one absorption (counted by path). The engine keeps no per-packet state yet; `now` is taken
//! so that flow tables (security groups, NAT) can expire entries without a clock of their own.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use softvpc_wire::{EthernetFrame, EthernetProtocol};

use crate::counters::Path;
use crate::layers::gateway::{arp, icmp};
use crate::layers::route::{self, Hop};
use crate::layers::{antispoof, checked_ipv4, overlay, Verdict};
use crate::mapping::{router_mac, EniEntry};
use crate::{Counters, DropReason, MappingTable};

/// A local port: one TAP device, carrying one ENI. Assigned by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

/// Static configuration of the engine on one host.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This host's underlay address (the outer source of what it sends).
    pub underlay_ip: Ipv4Addr,
    /// UDP destination port for VXLAN (4789, RFC 7348).
    pub vxlan_port: u16,
}

impl EngineConfig {
    /// The configuration for a host with underlay address `underlay_ip`, VXLAN on 4789.
    pub fn new(underlay_ip: Ipv4Addr) -> Self {
        EngineConfig {
            underlay_ip,
            vxlan_port: softvpc_wire::VXLAN_UDP_PORT,
        }
    }
}

/// One UDP datagram to send on the underlay. `payload` starts with the VXLAN header.
///
/// Checksum: the outer UDP checksum is 0 (RFC 7348 allows it over IPv4); the shell sends it
/// with a raw socket from `EngineConfig::underlay_ip`. For GSO super-frames a `segment_size`
/// field will be added (as in quinn's `Transmit`): the payload is then several datagrams'
/// worth sent in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dst_ip: Ipv4Addr,
    pub dst_port: u16,
    /// Outer UDP source port: a hash of the inner flow (RFC 7348 5.), in 49152..=65535.
    pub src_port: u16,
    pub payload: Vec<u8>,
}

/// What the engine wants done after a batch: frames to write to local ports, datagrams to send.
/// The shell drains both vectors and reuses the `Output` for the next batch (the vectors keep
/// their capacity).
#[derive(Debug, Default)]
pub struct Output {
    pub to_ports: Vec<(PortId, Vec<u8>)>,
    pub to_underlay: Vec<Transmit>,
}

impl Output {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.to_ports.is_empty() && self.to_underlay.is_empty()
    }

    /// Forgets everything (keeping the capacity).
    pub fn clear(&mut self) {
        self.to_ports.clear();
        self.to_underlay.clear();
    }
}

/// The virtual router of one host.
pub struct Engine {
    config: EngineConfig,
    table: Arc<MappingTable>,
    counters: Counters,
}

impl Engine {
    /// An engine with an empty mapping table (every frame is `unknown_port` until
    /// [`set_table`](Self::set_table)).
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            config,
            table: Arc::new(MappingTable::default()),
            counters: Counters::default(),
        }
    }

    /// Swaps in a new mapping snapshot (the shell calls this when the mapping view changed).
    pub fn set_table(&mut self, table: Arc<MappingTable>) {
        self.table = table;
    }

    pub fn table(&self) -> &Arc<MappingTable> {
        &self.table
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Frames read from a local port (an instance sent them), in order.
    pub fn handle_port_frames<'a>(
        &mut self,
        now: Instant,
        port: PortId,
        frames: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Output,
    ) {
        let _ = now;
        let table = &*self.table;
        for frame in frames {
            self.counters.count(Path::PortRx, frame.len());
            let verdict = egress(table, &self.config, port, frame).unwrap_or_else(Verdict::Drop);
            apply(&mut self.counters, out, verdict, frame.len());
        }
    }

    /// UDP payloads received on the VXLAN port, each with its outer IPv4 source address.
    pub fn handle_underlay_datagrams<'a>(
        &mut self,
        now: Instant,
        datagrams: impl IntoIterator<Item = (Ipv4Addr, &'a [u8])>,
        out: &mut Output,
    ) {
        let _ = now;
        let table = &*self.table;
        for (src, datagram) in datagrams {
            self.counters.count(Path::UnderlayRx, datagram.len());
            let verdict = overlay::decap(table, src, datagram);
            apply(&mut self.counters, out, verdict, datagram.len());
        }
    }
}

/// Counts a verdict and queues its output.
#[inline]
fn apply(counters: &mut Counters, out: &mut Output, verdict: Verdict, input_len: usize) {
    match verdict {
        Verdict::ToPort { port, frame, path } => {
            counters.count(path, frame.len());
            out.to_ports.push((port, frame));
        }
        Verdict::ToUnderlay(transmit) => {
            counters.count(Path::ToUnderlay, transmit.payload.len());
            out.to_underlay.push(transmit);
        }
        Verdict::Absorb(path) => counters.count(path, input_len),
        Verdict::Drop(reason) => {
            tracing::trace!(reason = reason.as_str(), len = input_len, "dropped");
            counters.drop(reason);
        }
    }
}

/// The egress pipeline for one frame an instance sent on `port`.
fn egress(
    table: &MappingTable,
    config: &EngineConfig,
    port: PortId,
    frame: &[u8],
) -> Result<Verdict, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Malformed)?;
    let eni = table.eni_on_port(port).ok_or(DropReason::UnknownPort)?;
    antispoof::check_src_mac(eni, eth.src_addr().0)?;
    match eth.ethertype() {
        EthernetProtocol::Arp => Ok(arp::handle(table, port, eni, eth.payload())),
        EthernetProtocol::Ipv4 => egress_ipv4(table, config, port, eni, frame, &eth),
        _ => Err(DropReason::UnsupportedEthertype),
    }
}

/// The IPv4 part of the egress pipeline.
fn egress_ipv4(
    table: &MappingTable,
    config: &EngineConfig,
    port: PortId,
    eni: &EniEntry,
    frame: &[u8],
    eth: &EthernetFrame<&[u8]>,
) -> Result<Verdict, DropReason> {
    let ip = checked_ipv4(eth.payload())?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    antispoof::check_ipv4_src(eni, src, dst)?;

    let dst_mac = eth.dst_addr();
    let subnet = eni.subnet.and_then(|s| table.subnet(s));
    let directed_broadcast = subnet.is_some_and(|s| s.cidr.broadcast() == dst);
    if !dst_mac.is_unicast() || dst.is_broadcast() || dst.is_multicast() || directed_broadcast {
        // Insertion point: the DHCP server (gateway::dhcp) answers here, before this refusal.
        return Err(DropReason::BroadcastNotForwarded);
    }

    let vni = eni.vni;
    let rmac = router_mac(vni);
    if let Some(router_subnet) = table.router_subnet(vni, dst) {
        // The router address of the sender's own subnet answers pings; nothing else is served.
        return match subnet {
            Some(own) if own.subnet_id == router_subnet.subnet_id && dst_mac.0 == rmac => Ok(
                icmp::to_router(port, eni, rmac, router_subnet.router_ip, &ip),
            ),
            _ => Err(DropReason::NoRoute),
        };
    }

    // Insertion point: network ACL (egress, the sender's subnet), then security group (egress,
    // stateful, the sender's ENI), then NAT, each `?`-ing its own DropReason here.

    let decision = route::resolve(table, eni, dst_mac.0, dst, ip.hop_limit())?;
    let target = decision.target;
    Ok(match decision.hop {
        Hop::Bridged => overlay::deliver(config.vxlan_port, vni, target, frame, |_| {}),
        Hop::Routed => overlay::deliver(config.vxlan_port, vni, target, frame, |f| {
            route::rewrite_routed(f, rmac, target.mac)
        }),
    })
}
