//! What a policy decision reads of a packet, and the one parser of untrusted bytes in this
//! crate: the IPv4 header an ICMP error quotes ([`parse_icmp_quote`]).
//!
//! The engine fills a [`Packet`] from its own one-pass parse of the frame
//! ([`Packet::from_ipv4`]): its flow key (addresses, protocol, and the transport part [`L4`],
//! which is the flow key's own type) plus the TCP flags that connection tracking follows.

use core::net::Ipv4Addr;

/// IP protocol number of ICMP.
pub const ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const TCP: u8 = 6;
/// IP protocol number of UDP.
pub const UDP: u8 = 17;

/// TCP FIN flag.
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST flag.
pub const TCP_RST: u8 = 0x04;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// Which way a packet crosses the ENI: `Egress` was sent by the instance, `Ingress` is on its way
/// to it. Security-group rules, conntrack keys and ACL entries are all relative to this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// From the instance.
    Egress,
    /// To the instance.
    Ingress,
}

impl Direction {
    /// The other direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::Egress => Direction::Ingress,
            Direction::Ingress => Direction::Egress,
        }
    }
}

/// The transport part of a packet: the engine's flow-key type itself (`softvpc_wire::L4Key`),
/// so a packet is parsed once, by `softvpc_wire::FrameMeta`, and never converted field by field.
/// Fragments carry no transport part (`L4::None`) except a first ICMP fragment.
pub use softvpc_wire::L4Key as L4;

/// The fields of an IPv4 packet that policy decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet {
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub proto: u8,
    /// Ports or ICMP fields.
    pub l4: L4,
    /// TCP flags (FIN, SYN, RST, ACK, ...); 0 for anything else.
    pub tcp_flags: u8,
}

impl Packet {
    /// The packet of an IPv4 header from the one parse of a frame (its flow key and TCP
    /// flags).
    #[inline]
    pub fn from_ipv4(ip: &softvpc_wire::Ipv4Meta) -> Packet {
        Packet {
            src: ip.src,
            dst: ip.dst,
            proto: u8::from(ip.proto),
            l4: ip.l4,
            tcp_flags: ip.tcp_flags,
        }
    }

    /// The packet's flow key (what flow tables key on).
    #[inline]
    pub fn flow_key(&self) -> softvpc_wire::FlowKey {
        softvpc_wire::FlowKey {
            src: self.src,
            dst: self.dst,
            proto: self.proto,
            l4: self.l4,
        }
    }

    /// A TCP packet.
    pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Packet {
        Packet {
            src,
            dst,
            proto: TCP,
            l4: L4::Ports {
                src: sport,
                dst: dport,
            },
            tcp_flags: flags,
        }
    }

    /// A UDP datagram.
    pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Packet {
        Packet {
            src,
            dst,
            proto: UDP,
            l4: L4::Ports {
                src: sport,
                dst: dport,
            },
            tcp_flags: 0,
        }
    }

    /// An ICMP message.
    pub fn icmp(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, code: u8, ident: u16) -> Packet {
        Packet {
            src,
            dst,
            proto: ICMP,
            l4: L4::Icmp { ty, code, ident },
            tcp_flags: 0,
        }
    }

    /// A packet of another protocol (no ports).
    pub fn other(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Packet {
        Packet {
            src,
            dst,
            proto,
            l4: L4::None,
            tcp_flags: 0,
        }
    }

    /// The value security-group and ACL port ranges are matched against: the destination port
    /// for TCP and UDP, `type << 8 | code` for ICMP (so a type is the range `type<<8 ..=
    /// type<<8|255`), 0 otherwise. `None` when the packet has no readable ports or ICMP fields.
    pub fn match_port(&self) -> Option<u16> {
        match self.l4 {
            L4::Ports { dst, .. } => Some(dst),
            L4::Icmp { ty, code, .. } => Some(u16::from(ty) << 8 | u16::from(code)),
            L4::None => None,
        }
    }

    /// The address on the far side of the ENI: the destination of egress, the source of ingress.
    pub fn remote(&self, dir: Direction) -> Ipv4Addr {
        match dir {
            Direction::Egress => self.dst,
            Direction::Ingress => self.src,
        }
    }

    /// True for an ICMP error (destination unreachable, source quench, redirect, time exceeded,
    /// parameter problem): it quotes the packet that caused it.
    pub fn is_icmp_error(&self) -> bool {
        matches!(
            self.l4,
            L4::Icmp {
                ty: 3 | 4 | 5 | 11 | 12,
                ..
            }
        ) && self.proto == ICMP
    }

    /// True for an ICMP echo request or reply.
    pub(crate) fn is_echo(&self) -> bool {
        self.proto == ICMP
            && matches!(
                self.l4,
                L4::Icmp {
                    ty: ICMP_ECHO_REPLY | ICMP_ECHO_REQUEST,
                    ..
                }
            )
    }
}

/// Why an ICMP error's quote was not readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteError {
    /// Fewer than 20 bytes, or fewer than the header length the quote claims.
    Truncated,
    /// Not IPv4 (version field) or a header length below 20 bytes.
    NotIpv4,
}

impl core::fmt::Display for QuoteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            QuoteError::Truncated => "ICMP error quote truncated",
            QuoteError::NotIpv4 => "ICMP error quote is not an IPv4 header",
        })
    }
}

impl std::error::Error for QuoteError {}

/// Parses what an ICMP error quotes: `payload` is the ICMP message after its 8-byte header, the
/// IPv4 header of the offending packet followed by (RFC 792) at least 8 bytes of its payload.
///
/// The quote is untrusted (anyone on the path can send an ICMP error) and routinely cut short:
/// the total-length field is not checked against it, and the transport part is
/// [`L4::None`] when fewer bytes than its ports (4 bytes for TCP/UDP, 8 for ICMP) are quoted or
/// the quoted packet is a non-first fragment. Never panics.
pub fn parse_icmp_quote(payload: &[u8]) -> Result<Packet, QuoteError> {
    let head = payload.get(..20).ok_or(QuoteError::Truncated)?;
    if head[0] >> 4 != 4 {
        return Err(QuoteError::NotIpv4);
    }
    let ihl = usize::from(head[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(QuoteError::NotIpv4);
    }
    let rest = payload.get(ihl..).ok_or(QuoteError::Truncated)?;
    let frag_offset = u16::from_be_bytes([head[6], head[7]]) & 0x1fff;
    let proto = head[9];
    let src = Ipv4Addr::new(head[12], head[13], head[14], head[15]);
    let dst = Ipv4Addr::new(head[16], head[17], head[18], head[19]);
    let be16 = |at: usize| u16::from_be_bytes([rest[at], rest[at + 1]]);
    let (l4, tcp_flags) = match proto {
        _ if frag_offset != 0 => (L4::None, 0),
        TCP | UDP if rest.len() >= 4 => {
            let flags = if proto == TCP {
                rest.get(13).copied().unwrap_or(0)
            } else {
                0
            };
            (
                L4::Ports {
                    src: be16(0),
                    dst: be16(2),
                },
                flags,
            )
        }
        ICMP if rest.len() >= 8 => {
            let (ty, code) = (rest[0], rest[1]);
            let ident = if matches!(ty, ICMP_ECHO_REPLY | ICMP_ECHO_REQUEST) {
                be16(4)
            } else {
                0
            };
            (L4::Icmp { ty, code, ident }, 0)
        }
        _ => (L4::None, 0),
    };
    Ok(Packet {
        src,
        dst,
        proto,
        l4,
        tcp_flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn quote(proto: u8, ihl_words: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; (usize::from(ihl_words) * 4).max(20)];
        v[0] = 0x40 | ihl_words;
        v[6..8].copy_from_slice(&frag.to_be_bytes());
        v[9] = proto;
        v[12..16].copy_from_slice(&[10, 0, 0, 5]);
        v[16..20].copy_from_slice(&[10, 0, 1, 9]);
        v.extend_from_slice(l4);
        v
    }

    #[test]
    fn quote_of_tcp_udp_icmp() {
        let tcp = quote(
            TCP,
            5,
            0,
            &[0x9c, 0x40, 0, 22, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02],
        );
        let p = parse_icmp_quote(&tcp).unwrap();
        assert_eq!(p.src, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(p.dst, Ipv4Addr::new(10, 0, 1, 9));
        assert_eq!(
            p.l4,
            L4::Ports {
                src: 40000,
                dst: 22
            }
        );
        assert_eq!(p.tcp_flags, TCP_SYN);

        // Options in the quoted header are skipped; only 8 bytes of UDP quoted.
        let udp = quote(UDP, 6, 0, &[0, 53, 0x30, 0x39, 0, 8, 0, 0]);
        let p = parse_icmp_quote(&udp).unwrap();
        assert_eq!(
            p.l4,
            L4::Ports {
                src: 53,
                dst: 12345
            }
        );

        let echo = quote(ICMP, 5, 0, &[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        assert_eq!(
            parse_icmp_quote(&echo).unwrap().l4,
            L4::Icmp {
                ty: 8,
                code: 0,
                ident: 0x1234
            }
        );
    }

    #[test]
    fn short_or_odd_quotes() {
        assert_eq!(parse_icmp_quote(&[0x45; 19]), Err(QuoteError::Truncated));
        assert_eq!(
            parse_icmp_quote(&quote(TCP, 4, 0, &[0; 8])),
            Err(QuoteError::NotIpv4)
        );
        let mut v6 = quote(TCP, 5, 0, &[0; 8]);
        v6[0] = 0x65;
        assert_eq!(parse_icmp_quote(&v6), Err(QuoteError::NotIpv4));
        // Header length beyond the quote.
        let mut long = quote(TCP, 5, 0, &[]);
        long[0] = 0x4f;
        assert_eq!(parse_icmp_quote(&long), Err(QuoteError::Truncated));
        // Ports cut short, or a non-first fragment: no transport part.
        assert_eq!(
            parse_icmp_quote(&quote(UDP, 5, 0, &[0, 53, 0])).unwrap().l4,
            L4::None
        );
        assert_eq!(
            parse_icmp_quote(&quote(UDP, 5, 8, &[0; 8])).unwrap().l4,
            L4::None
        );
        assert_eq!(
            parse_icmp_quote(&quote(47, 5, 0, &[0; 8])).unwrap().l4,
            L4::None
        );
    }

    proptest! {
        #[test]
        fn quote_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = parse_icmp_quote(&bytes);
        }

        #[test]
        fn quote_reads_what_was_written(
            proto in prop_oneof![Just(TCP), Just(UDP), any::<u8>()],
            ihl in 5u8..=15, sport: u16, dport: u16, extra in 0usize..12,
        ) {
            let mut l4 = vec![0u8; extra];
            l4.splice(0..0, sport.to_be_bytes().into_iter().chain(dport.to_be_bytes()));
            let q = quote(proto, ihl, 0, &l4);
            let p = parse_icmp_quote(&q).unwrap();
            prop_assert_eq!(p.proto, proto);
            match proto {
                TCP | UDP => prop_assert_eq!(p.l4, L4::Ports { src: sport, dst: dport }),
                ICMP if l4.len() >= 8 => { let is_icmp = matches!(p.l4, L4::Icmp { .. }); prop_assert!(is_icmp) }
                _ => prop_assert_eq!(p.l4, L4::None),
            }
        }
    }
}
