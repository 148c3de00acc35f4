//! Anti-spoofing: an instance may only send as itself.
//!
//! The source MAC of every frame must be the ENI's MAC; the source IPv4 of every packet must be
//! the ENI's primary or one of its secondary addresses (any address when the ENI's
//! source/destination check is off); an ARP packet's sender MAC and IP
//! likewise, where the sender IP may also be 0.0.0.0 (an RFC 5227 probe). One exception for
//! DHCP: a packet from 0.0.0.0 to 255.255.255.255 (a DHCP discover) passes here; the gateway
//! answers it if it is DHCP and refuses it as a broadcast otherwise.

use std::net::Ipv4Addr;

use crate::mapping::EniEntry;
use crate::DropReason;

/// The frame's source MAC must be the ENI's.
#[inline]
pub(crate) fn check_src_mac(eni: &EniEntry, src: [u8; 6]) -> Result<(), DropReason> {
    if src == eni.mac {
        Ok(())
    } else {
        Err(DropReason::SpoofedSource)
    }
}

/// The packet's source IPv4 must be one of the ENI's addresses (or 0.0.0.0 to the limited
/// broadcast address, as DHCP sends before it has an address), unless the ENI's
/// source/destination check is off (a NAT instance or firewall forwards others' packets): the
/// sending half of AWS's check, counted as `spoofed_source`.
#[inline]
pub(crate) fn check_ipv4_src(
    eni: &EniEntry,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> Result<(), DropReason> {
    if eni.owns_ip(src) || (src.is_unspecified() && dst.is_broadcast()) || !eni.source_dest_check {
        Ok(())
    } else {
        Err(DropReason::SpoofedSource)
    }
}

/// The ARP sender must be the ENI: its MAC, and one of its addresses or 0.0.0.0 (a probe).
#[inline]
pub(crate) fn check_arp_sender(
    eni: &EniEntry,
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
) -> Result<(), DropReason> {
    if sender_mac == eni.mac && (sender_ip.is_unspecified() || eni.owns_ip(sender_ip)) {
        Ok(())
    } else {
        Err(DropReason::SpoofedSource)
    }
}
