//! One parse of an Ethernet frame into the metadata every consumer needs: the flow key, the
//! fields the engine's layers decide on, the flow hash, and the offsets the dissector walks.
//!
//! [`FrameMeta::parse`] reads each header once and never panics, whatever the bytes. It is
//! lenient where the flow hash must be (a frame too short for a layer keeps the layers it has)
//! and records, separately, whether the IPv4 header passes the strict checks the router applies
//! ([`Ipv4Meta::valid`]: whole, version 4, header of at least 20 bytes, header checksum right).
//! The views it hands out ([`FrameMeta::ipv4_packet`], [`FrameMeta::l3`]) borrow the frame:
//! nothing is copied.
//!
//! Consumers: the engine parses every frame once into a `FrameMeta` and every layer reads it;
//! [`flow_hash`](crate::flow_hash) is [`FrameMeta::flow_hash`]; [`dissect`](crate::dissect())
//! walks the layers this parse found.

use core::net::Ipv4Addr;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetProtocol, IpProtocol, Ipv4Packet,
};

use crate::flow::Mixer;

/// Length of an Ethernet header without a VLAN tag.
pub const ETHERNET_HEADER_LEN: usize = 14;
const ETHERTYPE_VLAN: u16 = 0x8100;
/// Length of one 802.1Q tag.
const VLAN_TAG_LEN: usize = 4;

/// An Ethernet/IPv4 ARP packet's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpMeta {
    /// Request, reply, or another operation code.
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub sender_mac: EthernetAddress,
    /// Sender protocol address (0.0.0.0 in an RFC 5227 probe).
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: EthernetAddress,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

/// The transport part of a flow, as far as the packet carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4Key {
    /// TCP or UDP with both ports readable (and not a non-first fragment).
    Ports {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMP: type and code, and the identifier of an echo request or reply (0 otherwise).
    Icmp {
        /// ICMP type.
        ty: u8,
        /// ICMP code.
        code: u8,
        /// Echo identifier (types 0 and 8), else 0.
        ident: u16,
    },
    /// Any other protocol, a fragment, or a transport header cut short.
    None,
}

/// The key of an IPv4 flow: addresses, protocol, and its transport part. What flow tables,
/// connection tracking and flow logs key on; [`FlowKey::reversed`] is the key of the replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub proto: u8,
    /// Ports or ICMP fields.
    pub l4: L4Key,
}

impl FlowKey {
    /// The key of the flow's replies: addresses and ports swapped, an echo request becomes a
    /// reply (and the other way round).
    pub fn reversed(&self) -> FlowKey {
        let l4 = match self.l4 {
            L4Key::Ports { src, dst } => L4Key::Ports { src: dst, dst: src },
            L4Key::Icmp { ty, code, ident } => L4Key::Icmp {
                ty: match ty {
                    ICMP_ECHO_REQUEST => ICMP_ECHO_REPLY,
                    ICMP_ECHO_REPLY => ICMP_ECHO_REQUEST,
                    other => other,
                },
                code,
                ident,
            },
            L4Key::None => L4Key::None,
        };
        FlowKey {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            l4,
        }
    }
}

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// An IPv4 header's fields (read leniently: see [`Ipv4Meta::valid`] for the strict verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Meta {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol.
    pub proto: IpProtocol,
    /// Time to live.
    pub ttl: u8,
    /// Header length in bytes (IHL * 4, at least 20).
    pub header_len: u8,
    /// More-fragments set or a non-zero fragment offset.
    pub fragment: bool,
    /// The strict check: smoltcp's length checks pass (the buffer holds the header and the total
    /// length, the total length covers the header), version 4, IHL >= 5, and the header checksum
    /// is right. Only a valid header may be forwarded or answered.
    pub valid: bool,
    /// The transport fields.
    pub l4: L4Key,
    /// TCP flags (FIN, SYN, RST, ACK, ...) of an unfragmented TCP segment whose flags byte is
    /// present; 0 otherwise. What connection tracking follows.
    pub tcp_flags: u8,
}

/// What follows the Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3Meta {
    /// ARP: its fields when it is an Ethernet/IPv4 ARP packet that parses, else `None`.
    Arp(Option<ArpMeta>),
    /// An IPv4 header with version 4, IHL >= 5 and its first 20 bytes present.
    Ipv4(Ipv4Meta),
    /// Ethertype IPv4, but not even the fixed header is readable.
    Ipv4Unreadable,
    /// Any other ethertype (or an 802.1Q tag cut short).
    Other,
}

/// One frame, parsed once. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta<'a> {
    frame: &'a [u8],
    /// Destination MAC.
    pub dst_mac: EthernetAddress,
    /// Source MAC.
    pub src_mac: EthernetAddress,
    /// The 802.1Q tag control field, if the frame carries one tag (it is skipped).
    pub vlan: Option<u16>,
    /// The ethertype after the VLAN tag, if any; `None` when a VLAN tag is cut short.
    pub ethertype: Option<EthernetProtocol>,
    /// Offset of the layer-3 header in the frame (14, or 18 behind a VLAN tag).
    pub l3_offset: usize,
    /// The layer-3 fields.
    pub l3: L3Meta,
}

/// A frame shorter than an Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl core::fmt::Display for Truncated {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("frame shorter than an Ethernet header")
    }
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[inline]
fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

#[inline]
fn mac_at(b: &[u8], at: usize) -> EthernetAddress {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    EthernetAddress(m)
}

impl<'a> FrameMeta<'a> {
    /// Parses `frame` (an Ethernet frame). Fails only when it is shorter than 14 bytes; never
    /// panics.
    #[inline(always)]
    pub fn parse(frame: &'a [u8]) -> Result<FrameMeta<'a>, Truncated> {
        if frame.len() < ETHERNET_HEADER_LEN {
            return Err(Truncated);
        }
        let dst_mac = mac_at(frame, 0);
        let src_mac = mac_at(frame, 6);
        let mut ethertype = be16(frame, 12);
        let mut l3_offset = ETHERNET_HEADER_LEN;
        let mut vlan = None;
        if ethertype == Some(ETHERTYPE_VLAN) {
            // One tag is skipped, so tagged frames hash on their IP flow as well.
            vlan = be16(frame, 14);
            ethertype = be16(frame, 16);
            l3_offset += VLAN_TAG_LEN;
        }
        let ethertype = ethertype.map(EthernetProtocol::from);
        let l3_bytes = frame.get(l3_offset..).unwrap_or(&[]);
        let l3 = match ethertype {
            Some(EthernetProtocol::Arp) => L3Meta::Arp(parse_arp(l3_bytes)),
            Some(EthernetProtocol::Ipv4) => parse_ipv4(l3_bytes),
            _ => L3Meta::Other,
        };
        Ok(FrameMeta {
            frame,
            dst_mac,
            src_mac,
            vlan,
            ethertype,
            l3_offset,
            l3,
        })
    }

    /// The whole frame.
    #[inline]
    pub fn frame(&self) -> &'a [u8] {
        self.frame
    }

    /// The bytes after the Ethernet header (and VLAN tag).
    #[inline]
    pub fn l3_bytes(&self) -> &'a [u8] {
        self.frame.get(self.l3_offset..).unwrap_or(&[])
    }

    /// The IPv4 fields, for an IPv4 frame whose fixed header is readable.
    #[inline]
    pub fn ipv4(&self) -> Option<&Ipv4Meta> {
        match &self.l3 {
            L3Meta::Ipv4(ip) => Some(ip),
            _ => None,
        }
    }

    /// A zero-copy view of the IPv4 packet, only when its header is [valid](Ipv4Meta::valid)
    /// (so every accessor of the view is safe to call).
    #[inline]
    pub fn ipv4_packet(&self) -> Option<Ipv4Packet<&'a [u8]>> {
        match self.l3 {
            L3Meta::Ipv4(Ipv4Meta { valid: true, .. }) => {
                Some(Ipv4Packet::new_unchecked(self.l3_bytes()))
            }
            _ => None,
        }
    }

    /// The flow key of an IPv4 frame.
    #[inline]
    pub fn flow_key(&self) -> Option<FlowKey> {
        self.ipv4().map(|ip| FlowKey {
            src: ip.src,
            dst: ip.dst,
            proto: u8::from(ip.proto),
            l4: ip.l4,
        })
    }

    /// The flow hash of the frame (RFC 7348 section 5; see [`crate::flow`]).
    #[inline]
    pub fn flow_hash(&self) -> u32 {
        self.flow_hash_with_macs(self.dst_mac, self.src_mac)
    }

    /// The flow hash the frame will have once its MACs are rewritten to `dst` and `src` (a
    /// routed frame is hashed as it leaves, without parsing it again).
    #[inline(always)]
    pub fn flow_hash_with_macs(&self, dst: EthernetAddress, src: EthernetAddress) -> u32 {
        let mut m = Mixer::new();
        m.add_macs(dst, src);
        let Some(ethertype) = self.ethertype else {
            return m.finish();
        };
        m.add(u64::from(u16::from(ethertype)) << 8 | 2);
        let L3Meta::Ipv4(ip) = &self.l3 else {
            return m.finish();
        };
        m.add(u64::from(u32::from(ip.src)) << 32 | u64::from(u32::from(ip.dst)));
        m.add(u64::from(u8::from(ip.proto)) << 8 | 3);
        if let L4Key::Ports { src, dst } = ip.l4 {
            m.add(u64::from(src) << 16 | u64::from(dst));
        }
        m.finish()
    }
}

// Out of line: ARP is rare next to data, and the data path inlines the rest of the parse.
#[inline(never)]
fn parse_arp(bytes: &[u8]) -> Option<ArpMeta> {
    let packet = ArpPacket::new_checked(bytes).ok()?;
    // Anything but Ethernet/IPv4 ARP fails to parse.
    match ArpRepr::parse(&packet).ok()? {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        } => Some(ArpMeta {
            operation,
            sender_mac: source_hardware_addr,
            sender_ip: source_protocol_addr,
            target_mac: target_hardware_addr,
            target_ip: target_protocol_addr,
        }),
        _ => None,
    }
}

#[inline(always)]
fn parse_ipv4(ip: &[u8]) -> L3Meta {
    const IPPROTO_ICMP: u8 = 1;
    const IPPROTO_TCP: u8 = 6;
    const IPPROTO_UDP: u8 = 17;
    if ip.len() < 20 {
        return L3Meta::Ipv4Unreadable;
    }
    let ver_ihl = ip[0];
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || header_len < 20 {
        return L3Meta::Ipv4Unreadable;
    }
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let flags_frag = u16::from_be_bytes([ip[6], ip[7]]);
    let fragment = flags_frag & 0x3fff != 0;
    let first_fragment = flags_frag & 0x1fff == 0;
    let proto = ip[9];
    // smoltcp's `Ipv4Packet::check_len`, then the checksum over the header.
    let valid = ip.len() >= header_len
        && header_len <= total_len
        && ip.len() >= total_len
        && Ipv4Packet::new_unchecked(ip).verify_checksum();
    // Transport fields are read from the bytes after the header, like the flow hash always
    // did (not bounded by the total length), and never from a fragment: a fragment carries no
    // ports, and using them on the first fragment only would split one datagram's flow.
    let l4 = match proto {
        IPPROTO_TCP | IPPROTO_UDP if !fragment => {
            match (be16(ip, header_len), be16(ip, header_len + 2)) {
                (Some(src), Some(dst)) => L4Key::Ports { src, dst },
                _ => L4Key::None,
            }
        }
        IPPROTO_ICMP if first_fragment => match (ip.get(header_len), ip.get(header_len + 1)) {
            (Some(&ty), Some(&code)) => {
                let ident = match ty {
                    ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => be16(ip, header_len + 4).unwrap_or(0),
                    _ => 0,
                };
                L4Key::Icmp { ty, code, ident }
            }
            _ => L4Key::None,
        },
        _ => L4Key::None,
    };
    let tcp_flags = match proto {
        IPPROTO_TCP if !fragment => ip.get(header_len + 13).copied().unwrap_or(0),
        _ => 0,
    };
    L3Meta::Ipv4(Ipv4Meta {
        src: ip_at(ip, 12),
        dst: ip_at(ip, 16),
        proto: IpProtocol::from(proto),
        ttl: ip[8],
        header_len: header_len as u8,
        fragment,
        valid,
        l4,
        tcp_flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + UDP 10.0.1.5:40000 -> 10.0.2.7:53 with a valid header checksum.
    fn udp_frame() -> Vec<u8> {
        let mut f = vec![
            0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
            0x45, 0, 0, 36, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 0, 1, 5, 10, 0, 2,
            7, // IPv4
            0x9c, 0x40, 0, 53, 0, 16, 0, 0, // UDP
        ];
        f.extend_from_slice(b"payload!");
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        f
    }

    #[test]
    fn udp_key_and_fields() {
        let f = udp_frame();
        let m = FrameMeta::parse(&f).unwrap();
        assert_eq!(m.ethertype, Some(EthernetProtocol::Ipv4));
        let ip = m.ipv4().unwrap();
        assert!(ip.valid);
        assert_eq!((ip.ttl, ip.header_len, ip.fragment), (64, 20, false));
        let key = m.flow_key().unwrap();
        assert_eq!(
            key,
            FlowKey {
                src: Ipv4Addr::new(10, 0, 1, 5),
                dst: Ipv4Addr::new(10, 0, 2, 7),
                proto: 17,
                l4: L4Key::Ports {
                    src: 40000,
                    dst: 53
                },
            }
        );
        assert_eq!(key.reversed().reversed(), key);
        assert_eq!(
            key.reversed().l4,
            L4Key::Ports {
                src: 53,
                dst: 40000
            }
        );
        assert!(m.ipv4_packet().is_some());
    }

    #[test]
    fn invalid_headers_are_flagged_not_refused() {
        let mut f = udp_frame();
        f[14 + 10] ^= 1; // checksum
        let m = FrameMeta::parse(&f).unwrap();
        assert!(!m.ipv4().unwrap().valid);
        assert!(m.ipv4_packet().is_none());
        // Still keyed (the hash needs it).
        assert!(m.flow_key().is_some());
        // Cut short: the total length is no longer in the buffer.
        let f = udp_frame();
        let m = FrameMeta::parse(&f[..40]).unwrap();
        assert!(!m.ipv4().unwrap().valid);
        assert!(FrameMeta::parse(&f[..13]).is_err());
        assert_eq!(
            FrameMeta::parse(&f[..20]).unwrap().l3,
            L3Meta::Ipv4Unreadable
        );
    }

    #[test]
    fn icmp_echo_key_reverses_to_the_reply() {
        let mut f = udp_frame();
        f[14 + 9] = 1; // ICMP
        f[34..42].copy_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        let key = FrameMeta::parse(&f).unwrap().flow_key().unwrap();
        assert_eq!(
            key.l4,
            L4Key::Icmp {
                ty: 8,
                code: 0,
                ident: 0x1234
            }
        );
        assert_eq!(
            key.reversed().l4,
            L4Key::Icmp {
                ty: 0,
                code: 0,
                ident: 0x1234
            }
        );
    }

    #[test]
    fn tcp_flags_are_read() {
        let mut f = udp_frame();
        f[14 + 9] = 6; // TCP
        f.resize(14 + 20 + 20, 0);
        f[14 + 20 + 13] = 0x12; // SYN + ACK
        let m = FrameMeta::parse(&f).unwrap();
        assert_eq!(m.ipv4().unwrap().tcp_flags, 0x12);
        // Cut before the flags byte: none.
        assert_eq!(
            FrameMeta::parse(&f[..14 + 20 + 13])
                .unwrap()
                .ipv4()
                .unwrap()
                .tcp_flags,
            0
        );
    }

    #[test]
    fn fragments_have_no_ports() {
        let mut f = udp_frame();
        f[14 + 6] = 0x20; // MF
        let m = FrameMeta::parse(&f).unwrap();
        assert!(m.ipv4().unwrap().fragment);
        assert_eq!(m.flow_key().unwrap().l4, L4Key::None);
    }

    #[test]
    fn arp_fields() {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
        let m = FrameMeta::parse(&f).unwrap();
        let L3Meta::Arp(Some(arp)) = m.l3 else {
            panic!("{m:?}")
        };
        assert_eq!(arp.operation, ArpOperation::Request);
        assert_eq!(arp.sender_ip, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(arp.target_ip, Ipv4Addr::new(10, 0, 0, 1));
        // Not Ethernet/IPv4 ARP (hardware type 6).
        f[15] = 6;
        assert_eq!(FrameMeta::parse(&f).unwrap().l3, L3Meta::Arp(None));
    }
}
