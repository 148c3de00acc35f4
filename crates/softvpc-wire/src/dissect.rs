//! A checked walk of one Ethernet frame through every layer this crate knows:
//! Ethernet -> ARP | IPv4 -> UDP (-> VXLAN) | TCP | ICMPv4.
//!
//! It is for logs (a one-line `Display` of a frame that was dropped) and for tests and fuzz
//! targets, which push arbitrary bytes through every parser via this one function. It only
//! reads: each layer goes through its `new_checked` constructor and `Repr::parse`, and the walk
//! stops at the first layer that does not parse, recording which one. A VXLAN payload is not
//! walked; it is returned in [`Dissection::vxlan_inner`] for the caller to dissect in turn (so
//! nesting depth is the caller's choice, and there is no recursion here).

use core::fmt;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpRepr, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

use crate::meta::{FrameMeta, L3Meta};
use crate::vxlan;

/// A layer of the walk, to say where it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The Ethernet header.
    Ethernet,
    /// An ARP packet.
    Arp,
    /// An IPv4 header.
    Ipv4,
    /// A UDP header.
    Udp,
    /// A TCP header and its options.
    Tcp,
    /// An ICMPv4 message.
    Icmpv4,
    /// A VXLAN header (carried in UDP to port 4789).
    Vxlan,
}

/// What one frame holds, as far as it parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dissection<'a> {
    /// The Ethernet header.
    pub ethernet: Option<EthernetRepr>,
    /// The ARP packet, for ethertype ARP.
    pub arp: Option<ArpRepr>,
    /// The IPv4 header, for ethertype IPv4.
    pub ipv4: Option<Ipv4Repr>,
    /// The UDP header, for IP protocol UDP.
    pub udp: Option<UdpRepr>,
    /// The TCP header, for IP protocol TCP.
    pub tcp: Option<TcpRepr<'a>>,
    /// The ICMPv4 message, for IP protocol ICMP.
    pub icmpv4: Option<Icmpv4Repr<'a>>,
    /// The VXLAN header, for UDP to port 4789.
    pub vxlan: Option<vxlan::Repr>,
    /// The frame a VXLAN header carries.
    pub vxlan_inner: Option<&'a [u8]>,
    /// The layer that failed to parse, if any; the fields above it are set, those below are not.
    pub error: Option<Layer>,
}

impl<'a> Dissection<'a> {
    fn fail(mut self, layer: Layer) -> Self {
        self.error = Some(layer);
        self
    }
}

/// Walks `frame` through every layer it parses as. `checksums` says which checksums to verify
/// (`ChecksumCapabilities::ignored()` to look past bad ones). Never panics.
pub fn dissect<'a>(frame: &'a [u8], checksums: &ChecksumCapabilities) -> Dissection<'a> {
    match FrameMeta::parse(frame) {
        Ok(meta) => dissect_meta(&meta, checksums),
        Err(_) => Dissection::default().fail(Layer::Ethernet),
    }
}

/// [`dissect`] for a frame already parsed into its [`FrameMeta`] (the engine logs a dropped
/// frame this way, from the parse it decided on): the Ethernet header and the layer-3 kind and
/// offset come from that parse; each layer from there is validated with smoltcp's `Repr::parse`
/// for display. A frame with an 802.1Q tag is shown as Ethernet only.
pub fn dissect_meta<'a>(meta: &FrameMeta<'a>, checksums: &ChecksumCapabilities) -> Dissection<'a> {
    let mut d = Dissection {
        ethernet: Some(EthernetRepr {
            src_addr: meta.src_mac,
            dst_addr: meta.dst_mac,
            ethertype: match meta.vlan {
                Some(_) => EthernetProtocol::Unknown(0x8100),
                None => meta.ethertype.unwrap_or(EthernetProtocol::Unknown(0x8100)),
            },
        }),
        ..Dissection::default()
    };
    if meta.vlan.is_some() {
        return d;
    }
    match meta.l3 {
        L3Meta::Arp(Some(arp)) => {
            d.arp = Some(ArpRepr::EthernetIpv4 {
                operation: arp.operation,
                source_hardware_addr: arp.sender_mac,
                source_protocol_addr: arp.sender_ip,
                target_hardware_addr: arp.target_mac,
                target_protocol_addr: arp.target_ip,
            });
            d
        }
        L3Meta::Arp(None) => d.fail(Layer::Arp),
        L3Meta::Ipv4(_) | L3Meta::Ipv4Unreadable => dissect_ipv4(d, meta.l3_bytes(), checksums),
        L3Meta::Other => d,
    }
}

fn dissect_ipv4<'a>(
    mut d: Dissection<'a>,
    bytes: &'a [u8],
    checksums: &ChecksumCapabilities,
) -> Dissection<'a> {
    let Ok(ip) = Ipv4Packet::new_checked(bytes) else {
        return d.fail(Layer::Ipv4);
    };
    let Ok(ip_repr) = Ipv4Repr::parse(&ip, checksums) else {
        return d.fail(Layer::Ipv4);
    };
    d.ipv4 = Some(ip_repr);
    let (src, dst) = (
        IpAddress::Ipv4(ip_repr.src_addr),
        IpAddress::Ipv4(ip_repr.dst_addr),
    );
    let payload = ip.payload();
    match ip_repr.next_header {
        IpProtocol::Udp => {
            let Ok(udp) = UdpPacket::new_checked(payload) else {
                return d.fail(Layer::Udp);
            };
            let Ok(udp_repr) = UdpRepr::parse(&udp, &src, &dst, checksums) else {
                return d.fail(Layer::Udp);
            };
            d.udp = Some(udp_repr);
            if udp_repr.dst_port == vxlan::UDP_PORT {
                let Ok(vx) = vxlan::Packet::new_checked(udp.payload()) else {
                    return d.fail(Layer::Vxlan);
                };
                let Ok(vx_repr) = vxlan::Repr::parse(&vx) else {
                    return d.fail(Layer::Vxlan);
                };
                d.vxlan = Some(vx_repr);
                d.vxlan_inner = Some(vx.payload());
            }
            d
        }
        IpProtocol::Tcp => {
            match TcpPacket::new_checked(payload)
                .and_then(|p| TcpRepr::parse(&p, &src, &dst, checksums))
            {
                Ok(tcp) => d.tcp = Some(tcp),
                Err(_) => return d.fail(Layer::Tcp),
            }
            d
        }
        IpProtocol::Icmp => {
            match Icmpv4Packet::new_checked(payload).and_then(|p| Icmpv4Repr::parse(&p, checksums))
            {
                Ok(icmp) => d.icmpv4 = Some(icmp),
                Err(_) => return d.fail(Layer::Icmpv4),
            }
            d
        }
        _ => d,
    }
}

impl fmt::Display for Dissection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(e) = &self.ethernet {
            write!(f, "ETH {} > {} {}", e.src_addr, e.dst_addr, e.ethertype)?;
            sep = " | ";
        }
        if let Some(a) = &self.arp {
            write!(f, "{sep}{a}")?;
        }
        if let Some(i) = &self.ipv4 {
            write!(f, "{sep}{i}")?;
        }
        if let Some(u) = &self.udp {
            write!(f, "{sep}{u}")?;
        }
        if let Some(t) = &self.tcp {
            write!(f, "{sep}{t}")?;
        }
        if let Some(i) = &self.icmpv4 {
            write!(f, "{sep}{i}")?;
        }
        if let Some(v) = &self.vxlan {
            write!(f, "{sep}{v}")?;
            if let Some(inner) = self.vxlan_inner {
                write!(f, " ({} bytes)", inner.len())?;
            }
        }
        if let Some(l) = self.error {
            write!(f, "{sep}malformed {l:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{EthernetAddress, EthernetFrame, Ipv4Address};

    const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0a]);
    const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0b]);

    /// Builds Ethernet + IPv4 + UDP with correct checksums, via the emitters.
    fn udp_frame(dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let caps = ChecksumCapabilities::default();
        let (src, dst) = (
            Ipv4Address::new(198, 18, 0, 11),
            Ipv4Address::new(198, 18, 0, 12),
        );
        let udp = UdpRepr {
            src_port: 50000,
            dst_port,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: MAC_A,
            dst_addr: MAC_B,
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + ip.payload_len];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &caps);
        let mut u = UdpPacket::new_unchecked(p.payload_mut());
        udp.emit(
            &mut u,
            &src.into(),
            &dst.into(),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &caps,
        );
        buf
    }

    #[test]
    fn walks_vxlan_in_udp() {
        let inner = [0xeeu8; 20];
        let mut vx = vec![0u8; vxlan::HEADER_LEN];
        vxlan::Repr { vni: 0x000101 }.emit(&mut vxlan::Packet::new_unchecked(&mut vx[..]));
        vx.extend_from_slice(&inner);
        let frame = udp_frame(vxlan::UDP_PORT, &vx);
        let d = dissect(&frame, &ChecksumCapabilities::default());
        assert_eq!(d.error, None, "{d}");
        assert_eq!(d.ethernet.unwrap().dst_addr, MAC_B);
        assert_eq!(d.udp.unwrap().dst_port, 4789);
        assert_eq!(d.vxlan, Some(vxlan::Repr { vni: 0x000101 }));
        assert_eq!(d.vxlan_inner, Some(&inner[..]));
        assert!(d.to_string().contains("VXLAN vni=0x000101"), "{d}");
    }

    #[test]
    fn stops_at_the_broken_layer() {
        // VXLAN without the I flag.
        let frame = udp_frame(vxlan::UDP_PORT, &[0u8; 8]);
        let d = dissect(&frame, &ChecksumCapabilities::default());
        assert!(d.udp.is_some());
        assert_eq!((d.vxlan, d.error), (None, Some(Layer::Vxlan)));

        // A corrupted IPv4 checksum fails only when checksums are verified.
        let mut frame = udp_frame(53, b"x");
        frame[14 + 10] ^= 0xff;
        let d = dissect(&frame, &ChecksumCapabilities::default());
        assert_eq!((d.ipv4, d.error), (None, Some(Layer::Ipv4)));
        let d = dissect(&frame, &ChecksumCapabilities::ignored());
        assert_eq!(d.error, None);
        assert_eq!(d.udp.unwrap().dst_port, 53);

        // Too short for Ethernet.
        let d = dissect(&frame[..13], &ChecksumCapabilities::default());
        assert_eq!(d, Dissection::default().fail(Layer::Ethernet));
    }
}
