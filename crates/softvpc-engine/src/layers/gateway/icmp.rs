//! ICMP for the subnet router address: the router (network + 1) answers echo requests, so an
//! instance can ping its gateway. Nothing else is served at that address (`no_route`).

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use softvpc_wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, FrameMeta, Icmpv4Packet,
    Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
};

use crate::layers::Reply;
use crate::mapping::EniEntry;
use crate::DropReason;

/// TTL of the packets the router originates.
const TTL: u8 = 64;

/// Handles an IPv4 packet from `eni` to its subnet's `router_ip`, sent to the router MAC. The
/// IPv4 header is valid (the gateway checked it).
pub(crate) fn to_router<'a>(
    eni: &EniEntry,
    router_mac: [u8; 6],
    router_ip: Ipv4Addr,
    meta: &FrameMeta<'a>,
) -> Result<Reply<'a>, DropReason> {
    let (Some(ip), Some(packet)) = (meta.ipv4(), meta.ipv4_packet()) else {
        return Err(DropReason::Malformed);
    };
    if ip.proto != IpProtocol::Icmp || ip.fragment {
        // Fragments are not reassembled: a router only answers whole echo requests.
        return Err(DropReason::NoRoute);
    }
    let payload: &'a [u8] = packet.into_inner();
    let payload = payload
        .get(usize::from(ip.header_len)..usize::from(packet_total_len(payload)))
        .ok_or(DropReason::Malformed)?;
    let icmp = Icmpv4Packet::new_checked(payload).map_err(|_| DropReason::Malformed)?;
    let repr = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default())
        .map_err(|_| DropReason::Malformed)?;
    let Icmpv4Repr::EchoRequest { ident, seq_no, .. } = repr else {
        return Err(DropReason::NoRoute);
    };
    // The echo data, borrowed from the frame for the reply (the ICMP header is 8 bytes).
    let data = payload.get(8..).ok_or(DropReason::Malformed)?;
    Ok(Reply::IcmpEcho {
        router_mac,
        router_ip,
        dst_mac: eni.mac,
        dst_ip: ip.src,
        ident,
        seq_no,
        data,
    })
}

/// The IPv4 total length of a valid header.
#[inline]
fn packet_total_len(ip: &[u8]) -> u16 {
    Ipv4Packet::new_unchecked(ip).total_len()
}

/// The length of the echo reply frame carrying `data`.
pub(crate) fn echo_reply_len(data: &[u8]) -> usize {
    14 + 20 + echo_reply(0, 0, data).buffer_len()
}

fn echo_reply(ident: u16, seq_no: u16, data: &[u8]) -> Icmpv4Repr<'_> {
    Icmpv4Repr::EchoReply {
        ident,
        seq_no,
        data,
    }
}

/// Writes an Ethernet + IPv4 + ICMP echo reply from the router into `buf`
/// ([`echo_reply_len`] bytes).
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_echo_reply(
    buf: &mut [u8],
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    ident: u16,
    seq_no: u16,
    data: &[u8],
) {
    let icmp = echo_reply(ident, seq_no, data);
    let ip_repr = Ipv4Repr {
        src_addr: src_ip,
        dst_addr: dst_ip,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: TTL,
    };
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(buf);
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
}
