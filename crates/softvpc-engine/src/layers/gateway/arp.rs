//! Proxy ARP: ARP requests are answered on the host, from the mapping, and never forwarded.
//!
//! A request from an ENI is answered to its own port only:
//! - for an address of an ENI of the same VPC (primary or secondary, on any host), with that
//!   ENI's MAC;
//! - for the router address of the asker's subnet (network + 1), and for the VPC's resolver
//!   (base + 2) when it is in the asker's subnet, with the router MAC `0a:56:50:<vni>`;
//! - for anything else (an unassigned address): no answer, counted `arp_unanswered`.
//!
//! RFC 5227: a probe (sender IP 0.0.0.0) for the asker's own address gets no answer (no false
//! conflict); a probe for an address another ENI holds is answered, so conflict detection works.
//! Gratuitous ARP (sender IP == target IP) and every ARP reply (nobody asked: the proxy never
//! sends requests) are absorbed.

use std::net::Ipv4Addr;

use softvpc_wire::{
    ArpMeta, ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};

use super::antispoof;
use crate::counters::Path;
use crate::layers::Reply;
use crate::mapping::{EniEntry, MappingTable};
use crate::DropReason;

/// What the proxy does with a valid ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Answers with this reply.
    Reply(Reply<'static>),
    /// Consumes it (counted under the path).
    Absorb(Path),
}

/// Handles an Ethernet/IPv4 ARP packet sent by `eni`. The Ethernet source MAC is already
/// checked.
pub(crate) fn handle(
    table: &MappingTable,
    eni: &EniEntry,
    arp: &ArpMeta,
) -> Result<Answer, DropReason> {
    let (spa, tpa) = (arp.sender_ip, arp.target_ip);
    antispoof::check_arp_sender(eni, arp.sender_mac.0, spa)?;
    match arp.operation {
        ArpOperation::Request => {}
        // Unsolicited (gratuitous) replies: the proxy never asks, so nothing is waiting.
        ArpOperation::Reply => return Ok(Answer::Absorb(Path::ArpAbsorbed)),
        ArpOperation::Unknown(_) => return Err(DropReason::Malformed),
    }
    if spa == tpa {
        // Gratuitous announcement of the sender's own address.
        return Ok(Answer::Absorb(Path::ArpAbsorbed));
    }
    if spa.is_unspecified() && eni.owns_ip(tpa) {
        // RFC 5227 probe for the asker's own address: silence means "no conflict".
        return Ok(Answer::Absorb(Path::ArpAbsorbed));
    }
    let owner_mac = resolve(table, eni, tpa).ok_or(DropReason::ArpUnanswered)?;
    Ok(Answer::Reply(Reply::Arp {
        owner_mac,
        owner_ip: tpa,
        asker_mac: eni.mac,
        asker_ip: spa,
    }))
}

/// The MAC that answers for `ip` in the asker's VPC: the router's for the asker's subnet
/// router address, else the owning ENI's.
fn resolve(table: &MappingTable, asker: &EniEntry, ip: Ipv4Addr) -> Option<[u8; 6]> {
    if let Some(subnet) = asker.subnet.and_then(|s| table.subnet(s)) {
        // The subnet router (.1), and the VPC's resolver (base + 2) when on the asker's link.
        if subnet.router_ip == ip || (subnet.cidr.contains(&ip) && is_resolver(table, asker, ip)) {
            return Some(crate::mapping::router_mac(asker.vni));
        }
    }
    table.eni_by_ip(asker.vni, ip).map(|owner| owner.mac)
}

/// Whether `ip` is the resolver address (base + 2) of the asker's VPC.
fn is_resolver(table: &MappingTable, asker: &EniEntry, ip: Ipv4Addr) -> bool {
    table
        .vpc(asker.vni)
        .and_then(|v| v.cidrs.first())
        .is_some_and(|c| u32::from(c.network()).wrapping_add(2) == u32::from(ip))
}

/// Length of an Ethernet + ARP (Ethernet/IPv4) reply frame.
pub(crate) const REPLY_LEN: usize = 14 + 28;

/// Writes an ARP reply "`owner_ip` is at `owner_mac`", unicast to the asker, into `buf`
/// ([`REPLY_LEN`] bytes). For a probe the asker's address is 0.0.0.0 and stays so in the
/// reply's target (as Linux answers probes).
pub(crate) fn emit_reply(
    buf: &mut [u8],
    owner_mac: [u8; 6],
    owner_ip: Ipv4Addr,
    asker_mac: [u8; 6],
    asker_ip: Ipv4Addr,
) {
    let mut frame = EthernetFrame::new_unchecked(buf);
    EthernetRepr {
        src_addr: EthernetAddress(owner_mac),
        dst_addr: EthernetAddress(asker_mac),
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut frame);
    let mut arp = ArpPacket::new_unchecked(frame.payload_mut());
    ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(owner_mac),
        source_protocol_addr: owner_ip,
        target_hardware_addr: EthernetAddress(asker_mac),
        target_protocol_addr: asker_ip,
    }
    .emit(&mut arp);
}
