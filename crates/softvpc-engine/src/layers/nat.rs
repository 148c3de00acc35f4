//! Address translation at the internet gateway: the 1:1 NAT of Elastic and automatic public
//! IPs, done by the host of the ENI that holds the address (see ARCHITECTURE.md, "The edge").
//!
//! Egress: a packet the route layer sent to an attached internet gateway (`pkt.igw`) leaves
//! with the public address of its source as source. An address without one passes nothing
//! (`no_public_ip`, AWS's behaviour). The internet gateway carries 1500 bytes
//! ([`EDGE_MTU`]): a larger packet with DF set is answered by the subnet router with ICMP
//! "fragmentation needed" (type 3 code 4, next-hop MTU 1500); one without DF is fragmented when
//! it is written out. The rewrite itself happens when the frame is copied out
//! ([`set_src`]); the layer only decides.
//!
//! Ingress from the internet is the edge's (`crate::edge`): it translates the destination back
//! ([`set_dst`], [`translate_icmp_quote`]) before the receiver's ACL and groups see the packet,
//! so policy and connection tracking only ever see private addresses, as the instance does.
//!
//! The helpers here rewrite IPv4 packets in place and keep every checksum right: the header's
//! and TCP/UDP's (pseudo-header) incrementally per RFC 1624, an ICMP error's in full.

use std::net::Ipv4Addr;

use super::{Ctx, Direction, LayerResult, Packet, Reply, Step};
use crate::mapping::router_mac;
use crate::DropReason;

/// The MTU across an internet gateway (AWS: 1500).
pub const EDGE_MTU: u16 = 1500;

/// Egress: for a packet routed to an internet gateway, the public address of its source, and
/// the edge's MTU.
#[inline]
pub(crate) fn egress<'a>(cx: Ctx<'_>, pkt: &mut Packet<'a, '_>) -> LayerResult {
    if pkt.igw.is_none() && !pkt.natgw {
        return Ok(Step::Next);
    }
    let (Some((port, eni)), Some(ip)) = (pkt.sender, pkt.meta.ipv4()) else {
        return Err(DropReason::NoRoute);
    };
    // Through a NAT gateway: only the MTU here (the gateway translates on its host), so a
    // packet too big for the internet gateway never crosses the underlay.
    let public = match pkt.igw {
        Some(_) => Some(
            cx.table
                .public_ip_of(pkt.vni, ip.src)
                .ok_or(DropReason::NoPublicIp)?,
        ),
        None => None,
    };
    let l3 = pkt.meta.l3_bytes();
    let total = total_len(l3);
    if total > EDGE_MTU && dont_fragment(l3) {
        let subnet = eni
            .subnet
            .and_then(|s| cx.table.subnet(s))
            .ok_or(DropReason::NoRoute)?;
        // RFC 1812 4.3.2.3: as much of the packet as fits in 576 bytes.
        let quote = &l3[..usize::from(total).min(576 - 28).min(l3.len())];
        pkt.reply = Some((
            port,
            Reply::FragNeeded {
                router_mac: router_mac(pkt.vni),
                router_ip: subnet.router_ip,
                dst_mac: eni.mac,
                dst_ip: ip.src,
                mtu: EDGE_MTU,
                quote,
            },
        ));
        return Ok(Step::Reply);
    }
    pkt.snat = public;
    Ok(Step::Next)
}

/// Ingress (from the underlay): nothing to translate; the edge translates what comes from the
/// internet before its packets reach the layers.
#[inline]
pub(crate) fn ingress<'a>(_cx: Ctx<'_>, pkt: &mut Packet<'a, '_>) -> LayerResult {
    debug_assert_eq!(pkt.direction, Direction::Ingress);
    Ok(Step::Next)
}

/// The IPv4 total length of a header (0 when too short to say).
#[inline]
pub(crate) fn total_len(l3: &[u8]) -> u16 {
    match l3 {
        [_, _, a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// Whether the header has DF set.
#[inline]
pub(crate) fn dont_fragment(l3: &[u8]) -> bool {
    l3.get(6).is_some_and(|b| b & 0x40 != 0)
}

/// RFC 1624 eqn. 3 for a 32-bit field: `HC' = ~(~HC + ~m + m')`.
#[inline]
fn update32(hc: u16, old: u32, new: u32) -> u16 {
    let mut sum = u32::from(!hc)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// RFC 1624 eqn. 3 for a 16-bit field.
#[inline]
fn update16(hc: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn read16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn write16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Where the transport checksum of a packet is, if it carries one this helper keeps: the
/// offset of TCP's or UDP's checksum (a first or only fragment whose bytes are there).
fn l4_checksum_at(l3: &[u8]) -> Option<(usize, bool)> {
    let ihl = usize::from(l3.first()? & 0x0f) * 4;
    let frag_offset = read16(l3, 6) & 0x1fff;
    if frag_offset != 0 {
        return None;
    }
    let (at, udp) = match l3.get(9)? {
        6 => (ihl + 16, false),
        17 => (ihl + 6, true),
        _ => return None,
    };
    (at + 2 <= l3.len()).then_some((at, udp))
}

/// Rewrites a 32-bit address field at `at` (12: source, 16: destination) of the IPv4 packet
/// `l3`, fixing the header checksum and the TCP/UDP checksum (the pseudo-header holds it). A
/// UDP checksum of 0 (none) stays 0. `l3` holds a valid header (the caller checked it).
fn set_addr(l3: &mut [u8], at: usize, new: Ipv4Addr) {
    if l3.len() < 20 {
        return;
    }
    let old = u32::from_be_bytes([l3[at], l3[at + 1], l3[at + 2], l3[at + 3]]);
    let new = u32::from(new);
    l3[at..at + 4].copy_from_slice(&new.to_be_bytes());
    let hc = update32(read16(l3, 10), old, new);
    write16(l3, 10, hc);
    if let Some((c, udp)) = l4_checksum_at(l3) {
        let sum = read16(l3, c);
        if udp && sum == 0 {
            return;
        }
        let mut sum = update32(sum, old, new);
        if udp && sum == 0 {
            sum = 0xffff;
        }
        write16(l3, c, sum);
    }
}

/// Rewrites the identification field of IPv4 packet `l3` (header checksum kept right).
pub(crate) fn set_ip_id(l3: &mut [u8], new: u16) {
    if l3.len() < 20 {
        return;
    }
    let old = read16(l3, 4);
    write16(l3, 4, new);
    let hc = update16(read16(l3, 10), old, new);
    write16(l3, 10, hc);
}

/// Rewrites the source address of IPv4 packet `l3` (checksums kept right).
pub(crate) fn set_src(l3: &mut [u8], new: Ipv4Addr) {
    set_addr(l3, 12, new);
}

/// Rewrites the destination address of IPv4 packet `l3` (checksums kept right).
pub(crate) fn set_dst(l3: &mut [u8], new: Ipv4Addr) {
    set_addr(l3, 16, new);
}

// Not called by the 1:1 NAT; the NAT gateway's port translation is its user.
#[allow(dead_code)]
/// Rewrites a 16-bit transport field (a TCP/UDP port, or an ICMP query's identifier) at `at`
/// bytes into the transport header of `l3`, fixing its checksum (TCP/UDP at their offsets,
/// ICMP at 2). Nothing for a non-first fragment or a header cut short.
pub(crate) fn set_l4_u16(l3: &mut [u8], at: usize, new: u16) {
    let Some(&first) = l3.first() else { return };
    let ihl = usize::from(first & 0x0f) * 4;
    if l3.len() < 20 || read16(l3, 6) & 0x1fff != 0 || l3.len() < ihl + at + 2 {
        return;
    }
    let old = read16(l3, ihl + at);
    write16(l3, ihl + at, new);
    let (c, udp) = match l3[9] {
        6 => (ihl + 16, false),
        17 => (ihl + 6, true),
        1 => (ihl + 2, false),
        _ => return,
    };
    if c + 2 > l3.len() {
        return;
    }
    let sum = read16(l3, c);
    if udp && sum == 0 {
        return;
    }
    let mut sum = update16(sum, old, new);
    if udp && sum == 0 {
        sum = 0xffff;
    }
    write16(l3, c, sum);
}

/// The ones' complement sum of `data` (RFC 1071), folded and complemented.
pub(crate) fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether `l3` (a valid IPv4 header) carries an ICMP error (destination unreachable, source
/// quench, redirect, time exceeded, parameter problem), whose payload quotes a packet.
pub(crate) fn is_icmp_error(l3: &[u8]) -> bool {
    let ihl = usize::from(l3.first().copied().unwrap_or(0) & 0x0f) * 4;
    l3.get(9) == Some(&1)
        && read16(l3, 6) & 0x1fff == 0
        && matches!(l3.get(ihl), Some(3 | 4 | 5 | 11 | 12))
}

/// In an ICMP error `l3` arriving for a translated flow, rewrites the quoted packet's source
/// (`addr`, the address the far end saw, back to the private one) and, when given, its
/// source port or ICMP identifier (`port`); then recomputes the ICMP checksum over the whole
/// message. The quoted header's checksum is updated too. Anything cut short is left alone.
pub(crate) fn translate_icmp_quote(l3: &mut [u8], addr: Ipv4Addr, port: Option<u16>) {
    let Some(&first) = l3.first() else { return };
    let ihl = usize::from(first & 0x0f) * 4;
    let total = usize::from(total_len(l3)).min(l3.len());
    if total < ihl + 8 + 20 {
        return;
    }
    let icmp = &mut l3[ihl..total];
    let inner = &mut icmp[8..];
    let inner_ihl = usize::from(inner[0] & 0x0f) * 4;
    if inner_ihl < 20 || inner.len() < inner_ihl {
        return;
    }
    // The quoted header: its source, its checksum (incrementally, it may be cut short after).
    let old = u32::from_be_bytes([inner[12], inner[13], inner[14], inner[15]]);
    let new = u32::from(addr);
    inner[12..16].copy_from_slice(&new.to_be_bytes());
    let hc = update32(read16(inner, 10), old, new);
    write16(inner, 10, hc);
    let proto = inner[9];
    let l4 = inner_ihl;
    if let Some(p) = port {
        match proto {
            // The quoted source port (the quoted TCP checksum is past the 8 bytes quoted; a
            // quoted UDP checksum is kept right).
            6 | 17 if inner.len() >= l4 + 2 => {
                let old_port = read16(inner, l4);
                write16(inner, l4, p);
                if proto == 17 && inner.len() >= l4 + 8 {
                    let sum = read16(inner, l4 + 6);
                    if sum != 0 {
                        let s = update16(update32(sum, old, new), old_port, p);
                        write16(inner, l4 + 6, if s == 0 { 0xffff } else { s });
                    }
                }
            }
            // A quoted echo request: its identifier.
            1 if inner.len() >= l4 + 6 => write16(inner, l4 + 4, p),
            _ => {}
        }
    } else if proto == 17 && inner.len() >= l4 + 8 {
        let sum = read16(inner, l4 + 6);
        if sum != 0 {
            let s = update32(sum, old, new);
            write16(inner, l4 + 6, if s == 0 { 0xffff } else { s });
        }
    }
    icmp[2] = 0;
    icmp[3] = 0;
    let sum = checksum(icmp);
    write16(icmp, 2, sum);
}

/// Length of the ICMP "fragmentation needed" frame quoting `quote`.
pub(crate) fn frag_needed_len(quote: &[u8]) -> usize {
    14 + 20 + 8 + quote.len()
}

/// Writes an Ethernet + IPv4 + ICMP destination unreachable, fragmentation needed (type 3
/// code 4, RFC 1191's next-hop MTU) from the router to the sender of `quote`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_frag_needed(
    buf: &mut [u8],
    router_mac: [u8; 6],
    dst_mac: [u8; 6],
    router_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    mtu: u16,
    quote: &[u8],
) {
    buf[0..6].copy_from_slice(&dst_mac);
    buf[6..12].copy_from_slice(&router_mac);
    buf[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut buf[14..];
    let total = (20 + 8 + quote.len()) as u16;
    ip[..20].copy_from_slice(&[
        0x45, 0xc0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    write16(ip, 2, total);
    ip[12..16].copy_from_slice(&router_ip.octets());
    ip[16..20].copy_from_slice(&dst_ip.octets());
    let hc = checksum(&ip[..20]);
    write16(ip, 10, hc);
    let icmp = &mut ip[20..];
    icmp[..8].copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
    write16(icmp, 6, mtu);
    icmp[8..8 + quote.len()].copy_from_slice(quote);
    let sum = checksum(&icmp[..8 + quote.len()]);
    write16(icmp, 2, sum);
}

/// Splits the IPv4 packet `l3` (no DF, longer than `mtu`) into fragments of at most `mtu`
/// bytes (RFC 791: payload cut at multiples of 8, options not copied past the first is not
/// needed since only the fixed header is kept), calling `emit` with each fragment's header and
/// payload slice. Returns false (nothing emitted) when the header is unusable.
pub(crate) fn fragment(l3: &[u8], mtu: u16, mut emit: impl FnMut(&[u8; 20], &[u8])) -> bool {
    let Some(&first) = l3.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    let total = usize::from(total_len(l3)).min(l3.len());
    if ihl < 20 || total <= ihl || usize::from(mtu) < ihl + 8 {
        return false;
    }
    let payload = &l3[ihl..total];
    let step = (usize::from(mtu) - 20) & !7;
    let base_offset = usize::from(read16(l3, 6) & 0x1fff) * 8;
    let base_more = read16(l3, 6) & 0x2000 != 0;
    let mut at = 0;
    while at < payload.len() {
        let end = (at + step).min(payload.len());
        let more = end < payload.len() || base_more;
        let mut h = [0u8; 20];
        h.copy_from_slice(&l3[..20]);
        h[0] = 0x45;
        write16(&mut h, 2, (20 + end - at) as u16);
        let off = ((base_offset + at) / 8) as u16 | if more { 0x2000 } else { 0 };
        write16(&mut h, 6, off);
        h[10] = 0;
        h[11] = 0;
        let hc = checksum(&h);
        write16(&mut h, 10, hc);
        emit(&h, &payload[at..end]);
        at = end;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A TCP or UDP packet with correct checksums.
    fn packet(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let l4_len = if proto == 6 { 20 } else { 8 } + payload.len();
        let mut p = vec![0u8; 20 + l4_len];
        p[0] = 0x45;
        write16(&mut p, 2, (20 + l4_len) as u16);
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        let hc = checksum(&p[..20]);
        write16(&mut p, 10, hc);
        write16(&mut p, 20, 40000);
        write16(&mut p, 22, 80);
        if proto == 6 {
            p[32] = 0x50;
        } else {
            write16(&mut p, 24, l4_len as u16);
        }
        p[20 + l4_len - payload.len()..].copy_from_slice(payload);
        let c = l4_checksum(&p);
        let at = if proto == 6 { 36 } else { 26 };
        write16(&mut p, at, c);
        p
    }

    /// The transport checksum computed in full (pseudo-header + segment, checksum field 0).
    fn l4_checksum(p: &[u8]) -> u16 {
        let mut buf = Vec::new();
        buf.extend_from_slice(&p[12..20]);
        buf.push(0);
        buf.push(p[9]);
        buf.extend_from_slice(&((p.len() - 20) as u16).to_be_bytes());
        let mut seg = p[20..].to_vec();
        let at = if p[9] == 6 { 16 } else { 6 };
        seg[at] = 0;
        seg[at + 1] = 0;
        buf.extend_from_slice(&seg);
        let c = checksum(&buf);
        if p[9] == 17 && c == 0 {
            0xffff
        } else {
            c
        }
    }

    proptest! {
        /// Incremental updates of addresses and ports equal a full recomputation.
        #[test]
        fn translation_keeps_checksums(
            tcp in any::<bool>(),
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            new_src in any::<[u8; 4]>(), new_dst in any::<[u8; 4]>(),
            port in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let proto = if tcp { 6 } else { 17 };
            let mut p = packet(proto, src, dst, &payload);
            set_src(&mut p, Ipv4Addr::from(new_src));
            set_dst(&mut p, Ipv4Addr::from(new_dst));
            set_l4_u16(&mut p, 0, port);
            prop_assert_eq!(checksum(&p[..20]), 0, "header checksum");
            let at = if tcp { 36 } else { 26 };
            prop_assert_eq!(read16(&p, at), l4_checksum(&p));
            prop_assert_eq!(&p[12..16], &new_src[..]);
            prop_assert_eq!(read16(&p, 20), port);
        }

        /// Fragments cover the payload exactly, each within the MTU, offsets in units of 8.
        #[test]
        fn fragments_cover_the_packet(len in 1usize..4000, mtu in 68u16..1600) {
            let p = packet(17, [10, 0, 0, 1], [203, 0, 113, 10], &vec![7u8; len]);
            let mut got = Vec::new();
            let mut last_more = true;
            let ok = fragment(&p, mtu, |h, data| {
                assert!(20 + data.len() <= usize::from(mtu));
                assert_eq!(checksum(h), 0);
                let off = usize::from(read16(h, 6) & 0x1fff) * 8;
                assert_eq!(off, got.len());
                last_more = read16(h, 6) & 0x2000 != 0;
                got.extend_from_slice(data);
            });
            prop_assert!(ok);
            prop_assert!(!last_more);
            prop_assert_eq!(&got[..], &p[20..]);
        }
    }

    #[test]
    fn frag_needed_is_well_formed() {
        let p = packet(6, [10, 0, 0, 5], [203, 0, 113, 10], &[1; 40]);
        let mut buf = vec![0u8; frag_needed_len(&p)];
        emit_frag_needed(
            &mut buf,
            [0x0a, 0x56, 0x50, 0, 1, 1],
            [2, 0, 0, 0, 0, 5],
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 5),
            1500,
            &p,
        );
        let ip = &buf[14..];
        assert_eq!(checksum(&ip[..20]), 0);
        assert_eq!(checksum(&ip[20..]), 0);
        assert_eq!((ip[20], ip[21]), (3, 4));
        assert_eq!(read16(ip, 26), 1500);
        assert_eq!(&ip[28..], &p[..]);
    }

    #[test]
    fn icmp_quote_is_translated_back() {
        // A port unreachable from 203.0.113.10 about a UDP datagram from public .20:1024.
        let quoted = packet(17, [203, 0, 113, 20], [203, 0, 113, 10], b"hello!!!");
        let mut p = vec![0u8; 20 + 8 + quoted.len()];
        p[0] = 0x45;
        let len = p.len() as u16;
        write16(&mut p, 2, len);
        p[8] = 64;
        p[9] = 1;
        p[12..16].copy_from_slice(&[203, 0, 113, 10]);
        p[16..20].copy_from_slice(&[203, 0, 113, 20]);
        p[20] = 3;
        p[21] = 3;
        p[28..].copy_from_slice(&quoted);
        let hc = checksum(&p[..20]);
        write16(&mut p, 10, hc);
        assert!(is_icmp_error(&p));
        set_dst(&mut p, Ipv4Addr::new(10, 0, 0, 5));
        translate_icmp_quote(&mut p, Ipv4Addr::new(10, 0, 0, 5), Some(40000));
        assert_eq!(checksum(&p[..20]), 0);
        assert_eq!(checksum(&p[20..]), 0, "ICMP checksum");
        assert_eq!(&p[28 + 12..28 + 16], &[10, 0, 0, 5]);
        assert_eq!(checksum(&p[28..48]), 0, "quoted header checksum");
        assert_eq!(read16(&p, 48), 40000);
        assert_eq!(read16(&p, 54), l4_checksum(&p[28..]), "quoted UDP checksum");
    }
}
