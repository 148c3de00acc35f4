//! The overlay: VXLAN (RFC 7348) between hosts.
//!
//! Egress: a frame for an ENI on another host is encapsulated: one UDP datagram to that host's
//! underlay address, port 4789, whose payload is the VXLAN header (I flag, the VPC's VNI) and the
//! inner frame; the UDP source port is a hash of the inner flow (49152..=65535), taken from the
//! frame's one parse (with the routed MACs, as the frame leaves), so the underlay can spread
//! flows while keeping each in order. A frame for a local ENI is delivered to its port as it is.
//!
//! Ingress: `decapsulate` makes the packet: the VXLAN header must be valid, the VNI a VPC this
//! host knows, the outer source a registered host; the inner frame is parsed once. Then
//! `ingress` checks that the inner frame is something the overlay carries: an IPv4 unicast
//! with a valid header (ARP, broadcast and multicast never cross the underlay).

use std::net::Ipv4Addr;

use softvpc_wire::{
    vxlan_source_port, EthernetAddress, EthernetProtocol, FrameMeta, L3Meta, VxlanError,
    VxlanPacket, VxlanRepr,
};

use super::{Ctx, Direction, Encap, LayerResult, Packet, Step};
use crate::mapping::{Location, MappingTable, Vni};
use crate::DropReason;

/// Egress: decides the encapsulation of a frame for a remote target.
#[inline(always)]
pub(crate) fn egress<'a>(_cx: Ctx<'_>, pkt: &mut Packet<'a, '_>) -> LayerResult {
    if pkt.snat.is_some() {
        // For the internet: the host's edge, not the underlay.
        return Ok(Step::Next);
    }
    let target = pkt.target.ok_or(DropReason::NoRoute)?;
    pkt.encap = match target.location {
        Location::Local(_) => None,
        Location::Remote(host) => {
            let hash = match pkt.rewrite {
                Some(r) => pkt.meta.flow_hash_with_macs(
                    EthernetAddress(r.target_mac),
                    EthernetAddress(r.router_mac),
                ),
                None => pkt.meta.flow_hash(),
            };
            Some(Encap {
                dst_ip: host,
                src_port: vxlan_source_port(hash),
            })
        }
    };
    Ok(Step::Next)
}

/// Decapsulates one VXLAN datagram (UDP payload) from underlay address `src`: checks the
/// outer header, the VNI and the source, and parses the inner frame into the packet the
/// ingress layers see.
#[inline]
pub(crate) fn decapsulate<'a, 't>(
    table: &'t MappingTable,
    src: Ipv4Addr,
    datagram: &'a [u8],
) -> Result<Packet<'a, 't>, DropReason> {
    let packet = VxlanPacket::new_checked(datagram).map_err(|_| DropReason::Malformed)?;
    let repr = VxlanRepr::parse(&packet).map_err(|e| match e {
        VxlanError::BadFlags => DropReason::VxlanBadFlags,
        VxlanError::Truncated => DropReason::Malformed,
    })?;
    let vni = Vni(repr.vni);
    if table.vpc(vni).is_none() {
        return Err(DropReason::VxlanUnknownVni);
    }
    if !table.is_registered_host(src) {
        return Err(DropReason::VxlanUnknownSource);
    }
    let inner: &'a [u8] = packet.payload();
    let meta = FrameMeta::parse(inner).map_err(|_| DropReason::Malformed)?;
    Ok(Packet::new(Direction::Ingress, meta, vni, None, Some(src)))
}

/// Ingress: the inner frame must be an IPv4 unicast with a valid header.
#[inline]
pub(crate) fn ingress<'a>(_cx: Ctx<'_>, pkt: &mut Packet<'a, '_>) -> LayerResult {
    let meta = &pkt.meta;
    if !meta.dst_mac.is_unicast() {
        return Err(DropReason::VxlanNotLocal);
    }
    if meta.vlan.is_some() {
        return Err(DropReason::UnsupportedEthertype);
    }
    match meta.l3 {
        L3Meta::Ipv4(ip) if ip.valid => Ok(Step::Next),
        L3Meta::Ipv4(_) | L3Meta::Ipv4Unreadable => Err(DropReason::Malformed),
        L3Meta::Arp(_) => Err(DropReason::VxlanNotLocal),
        L3Meta::Other => {
            debug_assert_ne!(meta.ethertype, Some(EthernetProtocol::Ipv4));
            Err(DropReason::UnsupportedEthertype)
        }
    }
}
