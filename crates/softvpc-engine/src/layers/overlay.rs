//! The overlay: VXLAN (RFC 7348) between hosts, and the delivery checks on the way in.
//!
//! Out: a frame for an ENI on another host becomes one UDP datagram to that host's underlay
//! address, port 4789, whose payload is the VXLAN header (I flag, the VPC's VNI) and the inner
//! frame; the UDP source port is a hash of the inner flow (49152..=65535) so the underlay can
//! spread flows while keeping each in order. A frame for a local ENI goes straight to its port.
//!
//! In: the VNI must be a VPC this host knows, the outer source a registered host, and the
//! inner frame an IPv4 unicast for an ENI of that VNI placed on this host, with that ENI's MAC
//! and one of its addresses. ARP, broadcast and multicast never cross the underlay, so they
//! are refused here too. Security groups (ingress rules) will slot in after these checks.

use std::net::Ipv4Addr;

use softvpc_wire::{
    flow_hash, vxlan_source_port, EthernetFrame, EthernetProtocol, VxlanError, VxlanPacket,
    VxlanRepr, VXLAN_HEADER_LEN,
};

use crate::counters::Path;
use crate::layers::{checked_ipv4, Verdict};
use crate::mapping::{EniEntry, Location, MappingTable, Vni};
use crate::{DropReason, Transmit};

/// Sends `frame` (after `edit` rewrote it in place) to `target`: to its port when it is local,
/// VXLAN-encapsulated to its host otherwise. The frame is copied once, into a buffer with room
/// for the VXLAN header when it leaves the host.
#[inline]
pub(crate) fn deliver(
    vxlan_port: u16,
    vni: Vni,
    target: &EniEntry,
    frame: &[u8],
    edit: impl FnOnce(&mut [u8]),
) -> Verdict {
    match target.location {
        Location::Local(port) => {
            let mut out = frame.to_vec();
            edit(&mut out);
            Verdict::ToPort {
                port,
                frame: out,
                path: Path::ToPortLocal,
            }
        }
        Location::Remote(host) => {
            let mut payload = Vec::with_capacity(VXLAN_HEADER_LEN + frame.len());
            payload.resize(VXLAN_HEADER_LEN, 0);
            VxlanRepr { vni: vni.0 }.emit(&mut VxlanPacket::new_unchecked(&mut payload[..]));
            payload.extend_from_slice(frame);
            edit(&mut payload[VXLAN_HEADER_LEN..]);
            let src_port = vxlan_source_port(flow_hash(&payload[VXLAN_HEADER_LEN..]));
            Verdict::ToUnderlay(Transmit {
                dst_ip: host,
                dst_port: vxlan_port,
                src_port,
                payload,
            })
        }
    }
}

/// Decapsulates one VXLAN datagram (UDP payload) from underlay address `src` and decides
/// whether its inner frame may be delivered to a local port.
pub(crate) fn decap(table: &MappingTable, src: Ipv4Addr, datagram: &[u8]) -> Verdict {
    let packet = match VxlanPacket::new_checked(datagram) {
        Ok(p) => p,
        Err(_) => return DropReason::Malformed.into(),
    };
    let repr = match VxlanRepr::parse(&packet) {
        Ok(r) => r,
        Err(VxlanError::BadFlags) => return DropReason::VxlanBadFlags.into(),
        Err(VxlanError::Truncated) => return DropReason::Malformed.into(),
    };
    let vni = Vni(repr.vni);
    if table.vpc(vni).is_none() {
        return DropReason::VxlanUnknownVni.into();
    }
    if !table.is_registered_host(src) {
        return DropReason::VxlanUnknownSource.into();
    }
    let inner = packet.payload();
    let Ok(eth) = EthernetFrame::new_checked(inner) else {
        return DropReason::Malformed.into();
    };
    let dst_mac = eth.dst_addr();
    if !dst_mac.is_unicast() {
        return DropReason::VxlanNotLocal.into();
    }
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {}
        EthernetProtocol::Arp => return DropReason::VxlanNotLocal.into(),
        _ => return DropReason::UnsupportedEthertype.into(),
    }
    let ip = match checked_ipv4(eth.payload()) {
        Ok(ip) => ip,
        Err(reason) => return reason.into(),
    };
    let Some(target) = table.eni_by_ip(vni, ip.dst_addr()) else {
        return DropReason::VxlanNotLocal.into();
    };
    match target.location {
        Location::Local(port) if target.mac == dst_mac.0 => Verdict::ToPort {
            port,
            frame: inner.to_vec(),
            path: Path::ToPortDecap,
        },
        _ => DropReason::VxlanNotLocal.into(),
    }
}
