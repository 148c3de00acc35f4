//! The VPC router: which ENI a packet is for, and how it gets there.
//!
//! The destination IPv4 must be an address (primary or secondary) of an ENI of the sender's
//! VPC; lookups are keyed by VNI, so VPCs with the same addresses never mix. Then:
//! - **bridged**: the destination MAC is the target ENI's own and both are in the same subnet:
//!   the frame goes as it is (the instance resolved its neighbour through proxy ARP);
//! - **routed**: the destination MAC is the router's (`0a:56:50:<vni>`): the source MAC becomes
//!   the router's, the destination the target's, the TTL is decremented and the IPv4 header
//!   checksum fixed incrementally (RFC 1624). A TTL that would reach zero is `ttl_exceeded`.
//! - anything else (unknown address, MAC mismatch, a packet to oneself): `no_route`.
//!
//! Ingress: the inner destination must be an address of an ENI of the datagram's VNI that is
//! placed on this host, and the inner destination MAC that ENI's; anything else is
//! `vxlan_not_local`.

use std::net::Ipv4Addr;

use super::{Ctx, LayerResult, Packet, Rewrite, Step};
use crate::mapping::{router_mac, EniEntry, Location, MappingTable};
use crate::DropReason;

/// Egress: finds the target and, for a routed packet, the rewrite.
#[inline(always)]
pub(crate) fn egress<'a, 't>(cx: Ctx<'t>, pkt: &mut Packet<'a, 't>) -> LayerResult {
    let (Some(src), Some(ip)) = (pkt.sender_eni(), pkt.meta.ipv4()) else {
        return Err(DropReason::NoRoute);
    };
    let decision = resolve(cx.table, src, pkt.meta.dst_mac.0, ip.dst, ip.ttl)?;
    pkt.target = Some(decision.target);
    pkt.rewrite = match decision.hop {
        Hop::Bridged => None,
        Hop::Routed => Some(Rewrite {
            router_mac: router_mac(src.vni),
            target_mac: decision.target.mac,
        }),
    };
    Ok(Step::Next)
}

/// Ingress: the inner frame must be for a local ENI of the VNI, by address and MAC.
#[inline]
pub(crate) fn ingress<'a, 't>(cx: Ctx<'t>, pkt: &mut Packet<'a, 't>) -> LayerResult {
    let ip = pkt.meta.ipv4().ok_or(DropReason::VxlanNotLocal)?;
    let target = cx
        .table
        .eni_by_ip(pkt.vni, ip.dst)
        .ok_or(DropReason::VxlanNotLocal)?;
    match target.location {
        Location::Local(_) if target.mac == pkt.meta.dst_mac.0 => {
            pkt.target = Some(target);
            Ok(Step::Next)
        }
        _ => Err(DropReason::VxlanNotLocal),
    }
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
}

/// Finds the target of a packet `src` sent to `dst_mac` / `dst_ip` with TTL `ttl`.
#[inline]
pub(crate) fn resolve<'t>(
    table: &'t MappingTable,
    src: &EniEntry,
    dst_mac: [u8; 6],
    dst_ip: Ipv4Addr,
    ttl: u8,
) -> Result<Decision<'t>, DropReason> {
    let target = table
        .eni_by_ip(src.vni, dst_ip)
        .ok_or(DropReason::NoRoute)?;
    if target.eni_id == src.eni_id {
        // An instance does not send its own traffic through the router.
        return Err(DropReason::NoRoute);
    }
    if dst_mac == target.mac && target.subnet.is_some() && target.subnet == src.subnet {
        return Ok(Decision {
            target,
            hop: Hop::Bridged,
        });
    }
    if dst_mac == router_mac(src.vni) {
        if ttl <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        return Ok(Decision {
            target,
            hop: Hop::Routed,
        });
    }
    Err(DropReason::NoRoute)
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
