//! Property tests: emit -> parse round trips, and no parser panics on arbitrary bytes.

use proptest::collection::vec;
use proptest::prelude::*;
use softvpc_wire::{
    dissect, flow_hash, fuzzing, virtio_net, vxlan, vxlan_source_port, ChecksumCapabilities,
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
    VirtioNetHdrChecksum, VirtioNetHdrError, VirtioNetHdrGso, VirtioNetHdrGsoKind,
    VirtioNetHdrRepr, VxlanPacket, VxlanRepr, VXLAN_SOURCE_PORT_MIN,
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

/// An Ethernet + IPv4 + TCP (ACK, with an MSS option when given) or UDP frame with every
/// checksum right, as smoltcp emits it.
fn checksummed_frame(
    tcp: bool,
    src: Ipv4Address,
    dst: Ipv4Address,
    ports: (u16, u16),
    mss: Option<u16>,
    payload: &[u8],
) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let mut l4;
    if tcp {
        let repr = TcpRepr {
            src_port: ports.0,
            dst_port: ports.1,
            control: TcpControl::None,
            seq_number: TcpSeqNumber(1),
            ack_number: Some(TcpSeqNumber(7)),
            window_len: 1024,
            window_scale: None,
            max_seg_size: mss,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        l4 = vec![0u8; repr.buffer_len()];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut l4[..]),
            &src.into(),
            &dst.into(),
            &caps,
        );
    } else {
        let repr = UdpRepr {
            src_port: ports.0,
            dst_port: ports.1,
        };
        l4 = vec![0u8; repr.header_len() + payload.len()];
        repr.emit(
            &mut UdpPacket::new_unchecked(&mut l4[..]),
            &src.into(),
            &dst.into(),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &caps,
        );
    }
    let proto = if tcp {
        IpProtocol::Tcp
    } else {
        IpProtocol::Udp
    };
    ipv4_frame(proto, src, dst, &l4)
}

/// The header Linux writes to a TAP for a TSO/USO super-frame of `frame` (IPv4, no options):
/// NEEDS_CSUM at the transport's checksum field, the GSO kind and size, hdr_len through the
/// transport header.
fn gso_header(frame: &[u8], tcp: bool, size: u16) -> VirtioNetHdrRepr {
    let l4_len = if tcp {
        usize::from(frame[34 + 12] >> 4) * 4
    } else {
        8
    };
    VirtioNetHdrRepr {
        checksum: VirtioNetHdrChecksum::Partial {
            start: 34,
            offset: if tcp { 16 } else { 6 },
        },
        gso: Some(VirtioNetHdrGso {
            kind: if tcp {
                VirtioNetHdrGsoKind::TcpV4
            } else {
                VirtioNetHdrGsoKind::UdpL4
            },
            size,
            ecn: false,
        }),
        hdr_len: (34 + l4_len) as u16,
    }
}

/// What Linux puts in the transport checksum field of a CHECKSUM_PARTIAL packet: the
/// pseudo-header's folded sum (not complemented).
fn pseudo_header_sum(frame: &[u8]) -> u16 {
    let l4_len = (frame.len() - 34) as u16;
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&frame[26..34]); // source and destination addresses
    pseudo.extend_from_slice(&[0, frame[23]]);
    pseudo.extend_from_slice(&l4_len.to_be_bytes());
    virtio_net::ones_complement_sum(&pseudo)
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

    /// A TCP or UDP super-frame as an instance's kernel hands it to its TAP (NEEDS_CSUM, the
    /// checksum field holding only the pseudo-header sum): `check_frame` accepts its GSO
    /// header, and `finish_checksum` writes the checksum smoltcp computes in full (TCP: the same
    /// bytes; UDP: a checksum that verifies, 0 and 0xffff being the same sum).
    #[test]
    fn virtio_net_partial_checksum_finishes_to_the_full_one(
        tcp in any::<bool>(), src in ipv4(), dst in ipv4(),
        ports in (1u16.., 1u16..), mss in proptest::option::of(any::<u16>()),
        payload in vec(any::<u8>(), 0..300), size in 1u16..,
    ) {
        let full = checksummed_frame(tcp, src, dst, ports, mss, &payload);
        let repr = gso_header(&full, tcp, size);
        prop_assert_eq!(repr.check_frame(&full), Ok(()));
        let at = 34 + if tcp { 16 } else { 6 };
        let mut partial = full.clone();
        partial[at..at + 2].copy_from_slice(&pseudo_header_sum(&full).to_be_bytes());
        repr.finish_checksum(&mut partial).unwrap();
        if tcp {
            prop_assert_eq!(&partial, &full);
        } else {
            prop_assert_eq!(&partial[..at], &full[..at]);
            prop_assert_eq!(&partial[at + 2..], &full[at + 2..]);
            let udp = UdpPacket::new_checked(&partial[34..]).unwrap();
            prop_assert!(udp.verify_checksum(&src.into(), &dst.into()));
        }
        // The same, header and frame as the TAP hands them over, through the fuzz body.
        let mut buf = vec![0u8; virtio_net::HEADER_LEN];
        repr.emit(&mut virtio_net::Packet::new_unchecked(&mut buf[..]));
        buf.extend_from_slice(&partial);
        fuzzing::virtio_net(&buf);
    }

    /// GSO metadata that does not fit its frame is refused with the reason: a GSO kind for
    /// another transport or IP version, a checksum elsewhere than the transport's field, a
    /// hdr_len past the end, an IPv4 fragment, a transport header cut short.
    #[test]
    fn virtio_net_check_frame_refuses_what_does_not_fit(
        tcp in any::<bool>(), src in ipv4(), dst in ipv4(), ports in (1u16.., 1u16..),
        payload in vec(any::<u8>(), 0..100), size in 1u16.., bad_offset in 0u16..40,
    ) {
        let frame = checksummed_frame(tcp, src, dst, ports, None, &payload);
        let good = gso_header(&frame, tcp, size);
        prop_assert_eq!(good.check_frame(&frame), Ok(()));

        let mut other = good;
        other.gso = Some(VirtioNetHdrGso {
            kind: if tcp { VirtioNetHdrGsoKind::UdpL4 } else { VirtioNetHdrGsoKind::TcpV4 },
            size,
            ecn: false,
        });
        prop_assert_eq!(other.check_frame(&frame), Err(VirtioNetHdrError::GsoMismatch));
        let mut v6 = good;
        v6.gso = Some(VirtioNetHdrGso { kind: VirtioNetHdrGsoKind::TcpV6, size, ecn: false });
        prop_assert_eq!(v6.check_frame(&frame), Err(VirtioNetHdrError::GsoMismatch));

        let right = if tcp { 16 } else { 6 };
        if bad_offset != right {
            let mut moved = good;
            moved.checksum = VirtioNetHdrChecksum::Partial { start: 34, offset: bad_offset };
            let want = if 34 + usize::from(bad_offset) + 2 > frame.len() {
                VirtioNetHdrError::ChecksumOutOfBounds
            } else {
                VirtioNetHdrError::ChecksumMisplaced
            };
            prop_assert_eq!(moved.check_frame(&frame), Err(want));
        }
        let mut long = good;
        long.hdr_len = frame.len() as u16 + 1;
        prop_assert_eq!(long.check_frame(&frame), Err(VirtioNetHdrError::HeaderLenOutOfBounds));

        let mut fragment = frame.clone();
        fragment[20] |= 0x20; // more fragments
        prop_assert_eq!(good.check_frame(&fragment), Err(VirtioNetHdrError::GsoMismatch));
        let hdr_end = usize::from(good.hdr_len);
        prop_assert_eq!(
            good.check_frame(&frame[..hdr_end - 1]),
            Err(VirtioNetHdrError::HeaderLenOutOfBounds)
        );
        let mut short = good;
        short.hdr_len = 0;
        let cut = &frame[..hdr_end - 1];
        let got = short.check_frame(cut);
        prop_assert!(
            got == Err(VirtioNetHdrError::GsoMismatch)
                || got == Err(VirtioNetHdrError::ChecksumOutOfBounds),
            "{:?}", got
        );
    }

    /// Any header in front of a real TCP or UDP frame (the fuzz target's input with the frame
    /// well formed, so check_frame's deeper branches are reached).
    #[test]
    fn virtio_net_any_header_on_real_frames(
        hdr in any::<[u8; 10]>(), tcp in any::<bool>(), src in ipv4(), dst in ipv4(),
        payload in vec(any::<u8>(), 0..100),
    ) {
        let mut buf = hdr.to_vec();
        buf.extend_from_slice(&checksummed_frame(tcp, src, dst, (1, 2), Some(1400), &payload));
        fuzzing::virtio_net(&buf);
    }
}
