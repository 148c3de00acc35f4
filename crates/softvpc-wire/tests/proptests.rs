//! Property tests: emit -> parse round trips, and no parser panics on arbitrary bytes.

use proptest::collection::vec;
use proptest::prelude::*;
use softvpc_wire::{
    dissect, flow_hash, fuzzing, virtio_net, vxlan, vxlan_source_port, ChecksumCapabilities,
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
    VirtioNetHdrChecksum, VirtioNetHdrGso, VirtioNetHdrGsoKind, VirtioNetHdrRepr, VxlanPacket,
    VxlanRepr, VXLAN_SOURCE_PORT_MIN,
};

fn mac() -> impl Strategy<Value = EthernetAddress> {
    any::<[u8; 6]>().prop_map(EthernetAddress)
}

fn ipv4() -> impl Strategy<Value = Ipv4Address> {
    any::<[u8; 4]>().prop_map(Ipv4Address::from)
}

/// Ethernet + IPv4 + `proto` + `l4` bytes, with valid Ethernet and IPv4 headers (so the walk
/// reaches the transport parser with arbitrary bytes) and an IPv4 checksum that is right.
fn ipv4_frame(proto: IpProtocol, src: Ipv4Address, dst: Ipv4Address, l4: &[u8]) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype: EthernetProtocol::Ipv4,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: l4.len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + l4.len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p, &ChecksumCapabilities::default());
    p.payload_mut().copy_from_slice(l4);
    buf
}

fn virtio_repr() -> impl Strategy<Value = VirtioNetHdrRepr> {
    let checksum = prop_oneof![
        Just(VirtioNetHdrChecksum::None),
        Just(VirtioNetHdrChecksum::DataValid),
        (0u16..200, 0u16..200)
            .prop_map(|(start, offset)| VirtioNetHdrChecksum::Partial { start, offset }),
    ];
    let kind = prop_oneof![
        Just(VirtioNetHdrGsoKind::TcpV4),
        Just(VirtioNetHdrGsoKind::TcpV6),
        Just(VirtioNetHdrGsoKind::Udp),
        Just(VirtioNetHdrGsoKind::UdpL4),
    ];
    let gso = proptest::option::of(
        (kind, 1u16.., any::<bool>()).prop_map(|(kind, size, ecn)| VirtioNetHdrGso {
            kind,
            size,
            ecn,
        }),
    );
    (checksum, gso, any::<u16>())
        .prop_filter("GSO requires NEEDS_CSUM", |(c, g, _)| {
            g.is_none() || matches!(c, VirtioNetHdrChecksum::Partial { .. })
        })
        .prop_map(|(checksum, gso, hdr_len)| VirtioNetHdrRepr {
            checksum,
            gso,
            hdr_len,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn vxlan_round_trip(vni in 0..=vxlan::VNI_MAX, inner in vec(any::<u8>(), 0..128)) {
        let mut buf = vec![0xa5u8; vxlan::HEADER_LEN];
        buf.extend_from_slice(&inner);
        VxlanRepr { vni }.emit(&mut VxlanPacket::new_unchecked(&mut buf[..]));
        let p = VxlanPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(VxlanRepr::parse(&p), Ok(VxlanRepr { vni }));
        prop_assert!(p.reserved_bits_clear());
        prop_assert_eq!(p.payload(), &inner[..]);
    }

    #[test]
    fn vxlan_parse_agrees_with_the_bytes(data in vec(any::<u8>(), 0..32)) {
        fuzzing::vxlan(&data);
        let parsed = VxlanPacket::new_checked(&data[..]).and_then(|p| VxlanRepr::parse(&p));
        let expected = if data.len() < 8 {
            Err(vxlan::Error::Truncated)
        } else if data[0] & 0x08 == 0 {
            Err(vxlan::Error::BadFlags)
        } else {
            Ok(VxlanRepr { vni: u32::from_be_bytes([0, data[4], data[5], data[6]]) })
        };
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn virtio_net_round_trip(repr in virtio_repr(), frame in vec(any::<u8>(), 402..600)) {
        // Frames of at least 402 bytes hold any checksum location the strategy makes.
        let mut buf = vec![0x5au8; virtio_net::HEADER_LEN];
        buf.extend_from_slice(&frame);
        repr.emit(&mut virtio_net::Packet::new_unchecked(&mut buf[..]));
        let p = virtio_net::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(VirtioNetHdrRepr::parse(&p), Ok(repr));
        prop_assert_eq!(p.payload(), &frame[..]);
    }

    #[test]
    fn virtio_net_arbitrary_bytes(data in vec(any::<u8>(), 0..64)) {
        fuzzing::virtio_net(&data);
    }

    #[test]
    fn arbitrary_frames_never_panic(data in vec(any::<u8>(), 0..256)) {
        fuzzing::frame(&data);
    }

    /// The parse chain with valid lower layers and arbitrary bytes at the transport layer, so
    /// the UDP, TCP and ICMP parsers (and VXLAN behind UDP 4789) see random input.
    #[test]
    fn parse_chain_reaches_every_layer(
        proto in prop_oneof![
            Just(IpProtocol::Udp), Just(IpProtocol::Tcp), Just(IpProtocol::Icmp),
            any::<u8>().prop_map(IpProtocol::from),
        ],
        src in ipv4(), dst in ipv4(),
        mut l4 in vec(any::<u8>(), 0..200),
        vxlan_port in any::<bool>(),
    ) {
        if vxlan_port && proto == IpProtocol::Udp && l4.len() >= 4 {
            l4[2..4].copy_from_slice(&vxlan::UDP_PORT.to_be_bytes());
        }
        let frame = ipv4_frame(proto, src, dst, &l4);
        fuzzing::frame(&frame);
        // The lower layers are valid, so the walk gets at least to IPv4, whatever the rest.
        let d = dissect(&frame, &ChecksumCapabilities::ignored());
        prop_assert!(d.ipv4.is_some(), "{}", d);
        prop_assert_eq!(d.ipv4.unwrap().next_header, proto);
    }

    /// Arbitrary ARP bodies behind a valid Ethernet header.
    #[test]
    fn parse_chain_arp(dst in mac(), src in mac(), body in vec(any::<u8>(), 0..64)) {
        let mut frame = vec![0u8; 14];
        frame[0..6].copy_from_slice(&dst.0);
        frame[6..12].copy_from_slice(&src.0);
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        frame.extend_from_slice(&body);
        fuzzing::frame(&frame);
        let d = dissect(&frame, &ChecksumCapabilities::default());
        prop_assert_eq!(d.ethernet.map(|e| e.ethertype), Some(EthernetProtocol::Arp));
        prop_assert!(d.arp.is_some() || d.error.is_some());
    }

    /// A UDP datagram built by the emitters parses back to the same ports and payload, with
    /// checksums verified.
    #[test]
    fn udp_chain_round_trip(
        src in ipv4(), dst in ipv4(), sport in any::<u16>(), dport in 1u16..,
        payload in vec(any::<u8>(), 0..100),
    ) {
        let udp = UdpRepr { src_port: sport, dst_port: dport };
        let mut l4 = vec![0u8; udp.header_len() + payload.len()];
        udp.emit(
            &mut UdpPacket::new_unchecked(&mut l4[..]),
            &src.into(), &dst.into(), payload.len(),
            |b| b.copy_from_slice(&payload),
            &ChecksumCapabilities::default(),
        );
        let frame = ipv4_frame(IpProtocol::Udp, src, dst, &l4);
        let d = dissect(&frame, &ChecksumCapabilities::default());
        if dport == vxlan::UDP_PORT {
            prop_assert_eq!(d.udp, Some(udp));
        } else {
            prop_assert_eq!(d.error, None, "{}", d);
            prop_assert_eq!(d.udp, Some(udp));
        }
    }

    /// Same for TCP (SYN with MSS), including the options parser.
    #[test]
    fn tcp_chain_round_trip(
        src in ipv4(), dst in ipv4(), sport in 1u16.., dport in 1u16..,
        seq in any::<i32>(), mss in proptest::option::of(any::<u16>()),
        payload in vec(any::<u8>(), 0..100),
    ) {
        let tcp = TcpRepr {
            src_port: sport,
            dst_port: dport,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(seq),
            ack_number: None,
            window_len: 1024,
            window_scale: None,
            max_seg_size: mss,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &payload,
        };
        let mut l4 = vec![0u8; tcp.buffer_len()];
        tcp.emit(
            &mut TcpPacket::new_unchecked(&mut l4[..]),
            &src.into(), &dst.into(),
            &ChecksumCapabilities::default(),
        );
        let frame = ipv4_frame(IpProtocol::Tcp, src, dst, &l4);
        let d = dissect(&frame, &ChecksumCapabilities::default());
        prop_assert_eq!(d.error, None, "{}", d);
        prop_assert_eq!(d.tcp, Some(tcp));
    }

    /// The same flow always hashes the same: per-packet fields and payload do not matter, and
    /// the source port is always in the RFC 7348 range.
    #[test]
    fn flow_hash_is_stable_per_flow(
        src in ipv4(), dst in ipv4(), sport in any::<u16>(), dport in any::<u16>(),
        p1 in vec(any::<u8>(), 0..64), p2 in vec(any::<u8>(), 0..64),
        ttl in any::<u8>(), ident in any::<u16>(),
    ) {
        let l4 = |payload: &[u8]| {
            let mut v = Vec::new();
            v.extend_from_slice(&sport.to_be_bytes());
            v.extend_from_slice(&dport.to_be_bytes());
            v.extend_from_slice(&[0, 8, 0, 0]);
            v.extend_from_slice(payload);
            v
        };
        let a = ipv4_frame(IpProtocol::Udp, src, dst, &l4(&p1));
        let mut b = ipv4_frame(IpProtocol::Udp, src, dst, &l4(&p2));
        let mut ip = Ipv4Packet::new_unchecked(&mut b[14..]);
        ip.set_hop_limit(ttl);
        ip.set_ident(ident);
        ip.fill_checksum();
        prop_assert_eq!(flow_hash(&a), flow_hash(&b));
        let port = vxlan_source_port(flow_hash(&a));
        prop_assert!(port >= VXLAN_SOURCE_PORT_MIN);
    }
}
