//! The VPC router: which ENI a packet is for, and how it gets there.
//!
//! Lookups are keyed by VNI, so VPCs with the same addresses never mix. Egress:
//! - **bridged**: the destination is an address of an ENI of the same subnet and the
//!   destination MAC its own: the frame goes as it is (the instance resolved its neighbour
//!   through proxy ARP); no route table applies inside a subnet (AWS);
//! - **routed**: the destination MAC is the router's (`0a:56:50:<vni>`): the sender's subnet's
//!   route table decides (its explicit association, else the VPC's main table; a VPC without
//!   tables has its local routes only): local (the ENI holding the address), a network
//!   interface (a middlebox: the frame goes to that ENI whatever the destination address), a
//!   peering connection (active, and the address an ENI of the peer VPC: the frame enters the
//!   peer's VNI), blackhole (`blackhole`, also a peering or ENI target that is gone), an
//!   internet gateway (the packet goes on without a target ENI: the NAT layer translates it
//!   and the host's edge sends it), a NAT gateway (routed to the gateway's ENI, whose host
//!   translates: `crate::natgw`; `gateway_not_on_wire` while it is placed nowhere), nothing
//!   (`no_route`). The
//!   source MAC becomes the receiving VPC's router's, the destination the target's, the TTL is
//!   decremented and the IPv4 header checksum fixed incrementally (RFC 1624); a TTL that would
//!   reach zero is `ttl_exceeded`.
//! - anything else (unknown address, MAC mismatch, a packet to oneself): `no_route`.
//!
//! Ingress: the inner destination must be an ENI of the datagram's VNI placed on this host,
//! named by its address and MAC, or by its MAC alone when a middlebox route sent it a packet
//! for another address (refused as `src_dst_check` unless the ENI's check is off); anything
//! else is `vxlan_not_local`. Then the inner source must be placed on the sending host
//! ([`source_placed`]), else `forged_source`.

use std::net::Ipv4Addr;

use softvpc_policy::route::{Gateway, Route, RouteState, RouteVerdict, Target};

use super::{Ctx, LayerResult, Packet, Rewrite, RouteWhy, Step};
use crate::mapping::{router_mac, EniEntry, Location, MappingTable, Vni};
use crate::DropReason;

/// Egress: finds the target and, for a routed packet, the rewrite.
#[inline(always)]
pub(crate) fn egress<'a, 't>(cx: Ctx<'t>, pkt: &mut Packet<'a, 't>) -> LayerResult {
    let (Some(src), Some(ip)) = (pkt.sender_eni(), pkt.meta.ipv4()) else {
        return Err(DropReason::NoRoute);
    };
    let mut why = None;
    let result = resolve(cx.table, src, pkt.meta.dst_mac.0, ip.dst, ip.ttl, &mut why);
    pkt.notes.route = why;
    if let (Err(DropReason::GatewayNotOnWire), Some(igw)) = (&result, internet_gateway(why)) {
        // To the internet: the NAT layer translates, the edge sends it (no target ENI).
        if ip.ttl <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        pkt.igw = Some(igw);
        return Ok(Step::Next);
    }
    let decision = result?;
    pkt.notes.pcx = decision.pcx;
    pkt.natgw = matches!(
        why,
        Some(RouteWhy::Route {
            route: Some(Route {
                target: Target::NatGateway(_),
                ..
            }),
            ..
        })
    );
    // Delivered on this host: the receiver's source/destination check here (a remote receiver
    // checks on its host).
    if let Location::Local(port) = decision.target.location {
        if !decision.target.owns_ip(ip.dst) && decision.target.source_dest_check {
            pkt.attrib = Some(port);
            return Err(DropReason::SrcDstCheck);
        }
    }
    pkt.target = Some(decision.target);
    // Over a peering connection the packet enters the peer VPC: its VNI from here on.
    pkt.vni = decision.target.vni;
    pkt.rewrite = match decision.hop {
        Hop::Bridged => None,
        Hop::Routed => Some(Rewrite {
            router_mac: router_mac(decision.target.vni),
            target_mac: decision.target.mac,
        }),
    };
    Ok(Step::Next)
}

/// The internet gateway of the route that decided, if that is what it targets.
#[inline]
pub(crate) fn internet_gateway(why: Option<RouteWhy<'_>>) -> Option<&str> {
    match why? {
        RouteWhy::Route { route: Some(r), .. } => match (&r.state, &r.target) {
            (RouteState::Active, Target::InternetGateway(id)) => Some(id.as_str()),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the route table of `eni`'s subnet sends `addr` to an internet gateway (the way back
/// for traffic from the internet: without it, AWS passes nothing).
pub(crate) fn routes_to_internet(table: &MappingTable, eni: &EniEntry, addr: Ipv4Addr) -> bool {
    let (Some(routes), Some(subnet)) = (
        table.vpc(eni.vni).and_then(|v| v.routes.as_deref()),
        eni.subnet.and_then(|s| table.subnet(s)),
    ) else {
        return false;
    };
    routes.lookup(&subnet.subnet_id, addr).is_some_and(|d| {
        matches!(
            d.verdict,
            RouteVerdict::NotYetOnWire(softvpc_policy::route::Gateway::Internet, _)
        )
    })
}

/// Ingress: the inner frame must be for a local ENI of the VNI (by address and MAC, or by MAC
/// for an ENI with its source/destination check off), and its source placed where it came
/// from.
#[inline]
pub(crate) fn ingress<'a, 't>(cx: Ctx<'t>, pkt: &mut Packet<'a, 't>) -> LayerResult {
    let ip = pkt.meta.ipv4().ok_or(DropReason::VxlanNotLocal)?;
    let dst_mac = pkt.meta.dst_mac.0;
    let target = match cx.table.eni_by_ip(pkt.vni, ip.dst) {
        Some(t) if t.mac == dst_mac => t,
        // Routed to an ENI for an address it does not hold (a middlebox route).
        _ => cx
            .table
            .eni_by_mac(pkt.vni, dst_mac)
            .ok_or(DropReason::VxlanNotLocal)?,
    };
    let Location::Local(port) = target.location else {
        return Err(DropReason::VxlanNotLocal);
    };
    pkt.attrib = Some(port);
    if !target.owns_ip(ip.dst) && target.source_dest_check {
        return Err(DropReason::SrcDstCheck);
    }
    let src_host = pkt.underlay_src.ok_or(DropReason::ForgedSource)?;
    let why = source_placed(cx.table, pkt.vni, target, ip.src, src_host)?;
    pkt.notes.source = Some(why);
    if let RouteWhy::SourcePeered { pcx } = why {
        pkt.notes.pcx = Some(pcx);
    }
    pkt.target = Some(target);
    Ok(Step::Next)
}

/// The receive side's source check: the mapping must place the inner source `src` of VPC
/// `vni` on `host`, the underlay address the datagram came from, or that host must
/// legitimately carry it: the source is in a VPC peered with `vni` over an active connection
/// that the receiver's subnet routes `src` back to, or `host` forwards for the VPC (it holds an
/// ENI of it with the check off: a NAT instance, a firewall).
pub(crate) fn source_placed<'t>(
    table: &'t MappingTable,
    vni: Vni,
    receiver: &'t EniEntry,
    src: Ipv4Addr,
    host: Ipv4Addr,
) -> Result<RouteWhy<'t>, DropReason> {
    match table.eni_by_ip(vni, src) {
        Some(e) if e.location == Location::Remote(host) => return Ok(RouteWhy::SourcePlaced),
        Some(_) => {}
        None => {
            for (p, peer) in table.peerings_of(vni) {
                let placed = table
                    .eni_by_ip(peer, src)
                    .is_some_and(|e| e.location == Location::Remote(host));
                if placed && routes_back_over(table, receiver, src, &p.pcx_id) {
                    return Ok(RouteWhy::SourcePeered { pcx: &p.pcx_id });
                }
            }
        }
    }
    if table.forwards_for(vni, host) {
        return Ok(RouteWhy::SourceForwarded);
    }
    Err(DropReason::ForgedSource)
}

/// Whether the route table of `eni`'s subnet sends `addr` over peering connection `pcx`.
fn routes_back_over(table: &MappingTable, eni: &EniEntry, addr: Ipv4Addr, pcx: &str) -> bool {
    let (Some(routes), Some(subnet)) = (
        table.vpc(eni.vni).and_then(|v| v.routes.as_deref()),
        eni.subnet.and_then(|s| table.subnet(s)),
    ) else {
        return false;
    };
    routes
        .lookup(&subnet.subnet_id, addr)
        .is_some_and(|d| d.verdict == RouteVerdict::Peering(pcx))
}

/// How a packet crosses the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hop {
    /// Same subnet, MACs kept.
    Bridged,
    /// Through the router: MACs rewritten, TTL decremented.
    Routed,
}

/// Where a packet goes and how.
#[derive(Debug)]
pub(crate) struct Decision<'t> {
    pub target: &'t EniEntry,
    pub hop: Hop,
    /// The peering connection it crosses.
    pub pcx: Option<&'t str>,
}

/// Finds the target of a packet `src` sent to `dst_mac` / `dst_ip` with TTL `ttl`: switched
/// within the subnet to the target's own MAC, or routed (sent to the router MAC) by the
/// subnet's route table (local, a network interface, a peering connection; blackhole, no route
/// and gateways drop). `why` says which route decided.
#[inline]
pub(crate) fn resolve<'t>(
    table: &'t MappingTable,
    src: &'t EniEntry,
    dst_mac: [u8; 6],
    dst_ip: Ipv4Addr,
    ttl: u8,
    why: &mut Option<RouteWhy<'t>>,
) -> Result<Decision<'t>, DropReason> {
    let same_vpc = table.eni_by_ip(src.vni, dst_ip);
    if let Some(target) = same_vpc {
        if dst_mac == target.mac && target.subnet.is_some() && target.subnet == src.subnet {
            if target.eni_id == src.eni_id {
                return Err(DropReason::NoRoute);
            }
            *why = Some(RouteWhy::Bridged);
            return Ok(Decision {
                target,
                hop: Hop::Bridged,
                pcx: None,
            });
        }
    }
    if dst_mac != router_mac(src.vni) {
        return Err(DropReason::NoRoute);
    }
    let routes = table.vpc(src.vni).and_then(|v| v.routes.as_deref());
    let subnet = src.subnet.and_then(|s| table.subnet(s));
    let decision = match (routes, subnet) {
        (Some(routes), Some(subnet)) => routes.lookup(&subnet.subnet_id, dst_ip),
        _ => None,
    };
    let (target, pcx) = match decision {
        None => {
            // No route table for the VPC: its local routes only.
            *why = Some(RouteWhy::LocalOnly);
            (same_vpc.ok_or(DropReason::NoRoute)?, None)
        }
        Some(d) => {
            *why = Some(RouteWhy::Route {
                table: d.table,
                route: d.route,
            });
            match d.verdict {
                RouteVerdict::Local => (same_vpc.ok_or(DropReason::NoRoute)?, None),
                RouteVerdict::NetworkInterface(id) => {
                    // A middlebox: its own VPC only; a target that is gone is a blackhole.
                    let eni = table
                        .eni_by_id(id)
                        .filter(|e| e.vni == src.vni)
                        .ok_or(DropReason::Blackhole)?;
                    (eni, None)
                }
                RouteVerdict::Peering(pcx) => {
                    let p = table.peering(pcx).ok_or(DropReason::Blackhole)?;
                    let peer = p.peer_of(src.vni).ok_or(DropReason::Blackhole)?;
                    let eni = table.eni_by_ip(peer, dst_ip).ok_or(DropReason::NoRoute)?;
                    (eni, Some(&*p.pcx_id))
                }
                RouteVerdict::Blackhole => return Err(DropReason::Blackhole),
                RouteVerdict::NotYetOnWire(Gateway::Nat, id) => {
                    // A NAT gateway: its ENI, wherever it is placed, translates (`natgw`).
                    let eni = table
                        .nat_gateway_eni(id)
                        .filter(|e| e.vni == src.vni)
                        .ok_or(DropReason::GatewayNotOnWire)?;
                    (eni, None)
                }
                RouteVerdict::NotYetOnWire(..) => return Err(DropReason::GatewayNotOnWire),
                RouteVerdict::NoRoute => return Err(DropReason::NoRoute),
            }
        }
    };
    if target.eni_id == src.eni_id {
        // An instance does not send its own traffic through the router.
        return Err(DropReason::NoRoute);
    }
    if ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    Ok(Decision {
        target,
        hop: Hop::Routed,
        pcx,
    })
}

/// Rewrites a routed Ethernet + IPv4 frame in place: router MAC as source, the target's MAC as
/// destination, TTL - 1 with the header checksum updated incrementally. The caller has checked
/// the frame (14-byte Ethernet header, then an IPv4 header of at least 20 bytes, TTL > 1).
pub(crate) fn rewrite_routed(frame: &mut [u8], router_mac: [u8; 6], target_mac: [u8; 6]) {
    frame[0..6].copy_from_slice(&target_mac);
    frame[6..12].copy_from_slice(&router_mac);
    decrement_ttl(&mut frame[14..34]);
}

/// Decrements the TTL of an IPv4 header and updates its checksum per RFC 1624 (eqn. 3:
/// `HC' = ~(~HC + ~m + m')`, with `m` the 16-bit word holding TTL and protocol).
pub(crate) fn decrement_ttl(header: &mut [u8]) {
    const TTL: usize = 8;
    const CHECKSUM: usize = 10;
    let old_word = u16::from_be_bytes([header[TTL], header[TTL + 1]]);
    let new_word = old_word.wrapping_sub(0x0100);
    header[TTL] = header[TTL].wrapping_sub(1);
    let hc = u16::from_be_bytes([header[CHECKSUM], header[CHECKSUM + 1]]);
    let mut sum = u32::from(!hc) + u32::from(!old_word) + u32::from(new_word);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let new_hc = !(sum as u16);
    header[CHECKSUM..CHECKSUM + 2].copy_from_slice(&new_hc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use softvpc_wire::Ipv4Packet;

    proptest! {
        /// The incremental update equals a full recomputation, for any header with TTL > 0.
        #[test]
        fn incremental_checksum_matches_full(mut header in proptest::array::uniform20(any::<u8>()), ttl in 1u8..=255) {
            header[0] = 0x45;
            header[8] = ttl;
            let mut packet = Ipv4Packet::new_unchecked(&mut header[..]);
            packet.fill_checksum();
            decrement_ttl(&mut header);
            let packet = Ipv4Packet::new_unchecked(&header[..]);
            prop_assert_eq!(packet.hop_limit(), ttl - 1);
            prop_assert!(packet.verify_checksum());
        }
    }
}
