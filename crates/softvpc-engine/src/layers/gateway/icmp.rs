//! ICMP for the subnet router address: the router (network + 1) answers echo requests, so an
//! instance can ping its gateway. Nothing else is served at that address (`no_route`).

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use softvpc_wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Packet, Ipv4Repr,
};

use crate::counters::Path;
use crate::layers::Verdict;
use crate::mapping::EniEntry;
use crate::{DropReason, PortId};

/// TTL of the packets the router originates.
const TTL: u8 = 64;

/// Handles an IPv4 packet from `eni` to its subnet's `router_ip`, sent to the router MAC.
pub(crate) fn to_router(
    port: PortId,
    eni: &EniEntry,
    router_mac: [u8; 6],
    router_ip: Ipv4Addr,
    ip: &Ipv4Packet<&[u8]>,
) -> Verdict {
    if ip.next_header() != IpProtocol::Icmp || ip.more_frags() || ip.frag_offset() != 0 {
        // Fragments are not reassembled: a router only answers whole echo requests.
        return Verdict::Drop(DropReason::NoRoute);
    }
    let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    let Ok(repr) = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    let Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    } = repr
    else {
        return Verdict::Drop(DropReason::NoRoute);
    };
    let reply = Icmpv4Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    Verdict::ToPort {
        port,
        frame: emit_ipv4_icmp(router_mac, eni.mac, router_ip, ip.src_addr(), &reply),
        path: Path::IcmpReplies,
    }
}

/// An Ethernet + IPv4 + ICMP frame from the router to an instance.
fn emit_ipv4_icmp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    icmp: &Icmpv4Repr<'_>,
) -> Vec<u8> {
    let ip_repr = Ipv4Repr {
        src_addr: src_ip,
        dst_addr: dst_ip,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: TTL,
    };
    let caps = ChecksumCapabilities::default();
    let mut buf = vec![0u8; 14 + ip_repr.buffer_len() + icmp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut frame);
    let mut ip = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip_repr.emit(&mut ip, &caps);
    let mut icmp_packet = Icmpv4Packet::new_unchecked(ip.payload_mut());
    icmp.emit(&mut icmp_packet, &caps);
    buf
}
