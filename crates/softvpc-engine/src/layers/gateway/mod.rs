//! Gateway services: what the VPC's virtual router does itself, on the host, so that no ARP,
//! broadcast or multicast frame ever crosses the underlay, and nothing leaves an instance under
//! another's name.
//!
//! Egress, in order:
//! - [`antispoof`]: the source MAC must be the ENI's (then, per protocol, the ARP sender or the
//!   IPv4 source);
//! - [`arp`]: proxy ARP for every ENI address of the VPC and for the subnet router (.1): every
//!   ARP frame ends here;
//! - IPv4: the header must be valid; broadcast and multicast are refused (DHCP will be answered
//!   here, before that refusal); [`icmp`] answers echo requests to the subnet router address.
//!
//! Ingress: nothing to answer (ARP and broadcasts never cross the underlay; the overlay refuses
//! them), so the layer passes.

pub mod antispoof;
pub mod arp;
pub mod icmp;

use softvpc_wire::{EthernetProtocol, L3Meta};

use super::{Ctx, LayerResult, Packet, Step};
use crate::mapping::router_mac;
use crate::DropReason;

/// Egress: anti-spoofing, ARP, the router address, no broadcast.
#[inline]
pub(crate) fn egress<'a>(cx: Ctx<'_>, pkt: &mut Packet<'a, '_>) -> LayerResult {
    let Some((port, eni)) = pkt.sender else {
        return Err(DropReason::UnknownPort);
    };
    let meta = &pkt.meta;
    antispoof::check_src_mac(eni, meta.src_mac.0)?;
    if meta.vlan.is_some() {
        return Err(DropReason::UnsupportedEthertype);
    }
    let ip = match meta.l3 {
        L3Meta::Arp(Some(arp)) => {
            return match arp::handle(cx.table, eni, &arp)? {
                arp::Answer::Reply(reply) => {
                    pkt.reply = Some((port, reply));
                    Ok(Step::Reply)
                }
                arp::Answer::Absorb(path) => Ok(Step::Absorb(path)),
            };
        }
        L3Meta::Arp(None) | L3Meta::Ipv4Unreadable => return Err(DropReason::Malformed),
        L3Meta::Other => return Err(DropReason::UnsupportedEthertype),
        L3Meta::Ipv4(ip) if ip.valid => ip,
        L3Meta::Ipv4(_) => return Err(DropReason::Malformed),
    };
    debug_assert_eq!(meta.ethertype, Some(EthernetProtocol::Ipv4));
    let (src, dst) = (ip.src, ip.dst);
    antispoof::check_ipv4_src(eni, src, dst)?;

    let dst_mac = meta.dst_mac;
    let subnet = eni.subnet.and_then(|s| cx.table.subnet(s));
    let directed_broadcast = subnet.is_some_and(|s| s.cidr.broadcast() == dst);
    if !dst_mac.is_unicast() || dst.is_broadcast() || dst.is_multicast() || directed_broadcast {
        // Insertion point: the DHCP server (gateway::dhcp) answers here, before this refusal.
        return Err(DropReason::BroadcastNotForwarded);
    }

    if let Some(router_subnet) = cx.table.router_subnet(pkt.vni, dst) {
        // The router address of the sender's own subnet answers pings; nothing else is served.
        let rmac = router_mac(pkt.vni);
        return match subnet {
            Some(own) if own.subnet_id == router_subnet.subnet_id && dst_mac.0 == rmac => {
                let reply = icmp::to_router(eni, rmac, router_subnet.router_ip, &pkt.meta)?;
                pkt.reply = Some((port, reply));
                Ok(Step::Reply)
            }
            _ => Err(DropReason::NoRoute),
        };
    }
    Ok(Step::Next)
}

/// Ingress: nothing to answer; passes.
#[inline]
pub(crate) fn ingress<'a>(_cx: Ctx<'_>, _pkt: &mut Packet<'a, '_>) -> LayerResult {
    Ok(Step::Next)
}
