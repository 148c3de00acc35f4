//! The instance metadata service's place in the router (gateway::imds): TCP to
//! 169.254.169.254:80 is handed to the shell with its port, before any policy and never to the
//! underlay; the shell's answers are framed only to their own port's ENI addresses, with the
//! TTL the server chose; anything else is dropped and counted (`imds_invalid`).

mod common;

use std::net::Ipv4Addr;

use common::*;
use softvpc_engine::layers::gateway::imds;
use softvpc_engine::{DropReason, Output, Path, PortId};
use softvpc_wire::{
    EthernetFrame, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber,
};

/// A TCP segment (valid checksums) in an IPv4 packet, without the Ethernet header.
fn tcp_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    ttl: u8,
    data: &[u8],
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: sport,
        dst_port: dport,
        control: if data.is_empty() {
            TcpControl::Syn
        } else {
            TcpControl::Psh
        },
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 64000,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: data,
    };
    let mut seg = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut seg[..]),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(dst),
        &Default::default(),
    );
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Tcp,
        payload_len: seg.len(),
        hop_limit: ttl,
    };
    let mut packet = vec![0u8; ip.buffer_len() + seg.len()];
    ip.emit(
        &mut Ipv4Packet::new_unchecked(&mut packet[..]),
        &Default::default(),
    );
    packet[ip.buffer_len()..].copy_from_slice(&seg);
    packet
}

fn frame(vm: &Vm, packet: &[u8]) -> Vec<u8> {
    ethernet(
        vm.mac,
        ROUTER1,
        softvpc_wire::EthernetProtocol::Ipv4,
        packet,
    )
}

fn send(e: &mut softvpc_engine::Engine, vm: &Vm, packet: &[u8]) -> (Sent, Vec<(PortId, Vec<u8>)>) {
    let mut out = Output::default();
    e.handle_port_frames(t0(), vm.port, [&frame(vm, packet)[..]], &mut out);
    let handed = out.imds().map(|(p, b)| (p, b.to_vec())).collect();
    (Sent::from(&out), handed)
}

#[test]
fn tcp_to_the_metadata_address_is_handed_over_with_its_port() {
    let mut e = seed_engine(HOST1);
    for vm in [VM1, OTHER1] {
        let syn = tcp_packet(vm.ip, imds::ADDR, 40000, 80, 64, &[]);
        let (sent, handed) = send(&mut e, &vm, &syn);
        assert!(sent.is_empty(), "{sent:?}");
        assert_eq!(handed, vec![(vm.port, syn)]);
    }
    assert_eq!(e.counters().frames(Path::ImdsRequests), 2);
    // Another port of the address, or another protocol: not the service's.
    let (_, handed) = send(
        &mut e,
        &VM1,
        &tcp_packet(VM1.ip, imds::ADDR, 40000, 81, 64, &[]),
    );
    assert!(handed.is_empty());
    let udp = udp(VM1.mac, ROUTER1, VM1.ip, imds::ADDR, 40000, 80, b"x");
    let mut out = Output::default();
    e.handle_port_frames(t0(), VM1.port, [&udp[..]], &mut out);
    assert_eq!(out.imds().len(), 0);
    // A spoofed source never reaches the service.
    let spoofed = tcp_packet(VM4.ip, imds::ADDR, 40000, 80, 64, &[]);
    let (_, handed) = send(&mut e, &VM1, &spoofed);
    assert!(handed.is_empty());
    assert_eq!(e.counters().drops(DropReason::SpoofedSource), 1);
}

#[test]
fn answers_are_framed_to_their_own_port_only_with_the_servers_ttl() {
    let mut e = seed_engine(HOST1);
    let answer = tcp_packet(imds::ADDR, VM1.ip, 80, 40000, 1, b"HTTP/1.1 200 OK\r\n\r\n");
    let mut out = Output::default();
    e.handle_imds_reply(t0(), VM1.port, &answer, &mut out);
    let sent = Sent::from(&out);
    assert_eq!(sent.to_ports.len(), 1);
    let (port, f) = &sent.to_ports[0];
    assert_eq!(*port, VM1.port);
    let eth = EthernetFrame::new_checked(&f[..]).unwrap();
    assert_eq!((eth.src_addr().0, eth.dst_addr().0), (ROUTER1, VM1.mac));
    assert_eq!(eth.payload(), &answer[..]);
    assert_eq!(
        Ipv4Packet::new_checked(eth.payload()).unwrap().hop_limit(),
        1
    );
    assert_eq!(e.counters().frames(Path::ImdsReplies), 1);

    // To an address the port's ENI does not own (the same address in the other VPC is another
    // port's), from another source or port, truncated, or for a port without an ENI: dropped.
    let bad = [
        (
            VM1.port,
            tcp_packet(imds::ADDR, VM4.ip, 80, 40000, 64, b"x"),
        ),
        (
            VM1.port,
            tcp_packet(Ipv4Addr::new(10, 0, 0, 1), VM1.ip, 80, 40000, 64, b"x"),
        ),
        (
            VM1.port,
            tcp_packet(imds::ADDR, VM1.ip, 8080, 40000, 64, b"x"),
        ),
        (VM1.port, answer[..answer.len() - 3].to_vec()),
        (PortId(999), answer.clone()),
    ];
    for (port, packet) in &bad {
        let mut out = Output::default();
        e.handle_imds_reply(t0(), *port, packet, &mut out);
        assert!(out.is_empty(), "{port:?} {packet:?}");
    }
    assert_eq!(
        e.counters().drops(DropReason::ImdsInvalid),
        bad.len() as u64
    );
    // OTHER1 has VM1's address in another VPC: its answer goes to its own port and MAC.
    let mut out = Output::default();
    let other = tcp_packet(imds::ADDR, OTHER1.ip, 80, 40000, 64, b"y");
    e.handle_imds_reply(t0(), OTHER1.port, &other, &mut out);
    let sent = Sent::from(&out);
    assert_eq!(sent.to_ports.len(), 1);
    assert_eq!(sent.to_ports[0].0, OTHER1.port);
    assert_eq!(parse_eth(&sent.to_ports[0].1).dst_addr.0, OTHER1.mac);
}
