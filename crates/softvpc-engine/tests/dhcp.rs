//! DHCP answered by the router (gateway::dhcp): what a client sees for each message, what is
//! absorbed, what is dropped and counted, and that nothing of it reaches the underlay. The
//! requests and answers are built and read with `dhcproto`, the frames with smoltcp.

mod common;

use std::net::Ipv4Addr;

use common::*;
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use proptest::prelude::*;
use softvpc_engine::layers::gateway::dhcp::{self, DhcpConfig, Lease};
use softvpc_engine::{DropReason, Path};
use softvpc_wire::{EthernetFrame, IpProtocol, Ipv4Packet, UdpPacket};

const R1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn request(ty: MessageType, mac: [u8; 6], ciaddr: Ipv4Addr, opts: &[DhcpOption]) -> Vec<u8> {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_xid(0x1234_5678)
        .set_ciaddr(ciaddr)
        .set_chaddr(&mac);
    m.opts_mut().insert(DhcpOption::MessageType(ty));
    for o in opts {
        m.opts_mut().insert(o.clone());
    }
    m.to_vec().unwrap()
}

/// A client frame: from 0.0.0.0 to the broadcast, or from `src` to `dst` (the renewal).
fn frame(vm: &Vm, src: Ipv4Addr, dst: Ipv4Addr, dhcp: &[u8]) -> Vec<u8> {
    let dst_mac = if dst.is_broadcast() {
        BROADCAST
    } else {
        ROUTER1
    };
    udp(vm.mac, dst_mac, src, dst, 68, 67, dhcp)
}

/// The one frame the router wrote to the VM's port: (Ethernet dst, IP src, IP dst, message).
fn answer(sent: &Sent, vm: &Vm) -> ([u8; 6], Ipv4Addr, Ipv4Addr, Message) {
    assert!(sent.to_underlay.is_empty(), "DHCP crossed the underlay");
    assert_eq!(sent.to_ports.len(), 1, "{sent:?}");
    let (port, bytes) = &sent.to_ports[0];
    assert_eq!(*port, vm.port);
    let eth = EthernetFrame::new_checked(&bytes[..]).unwrap();
    assert_eq!(eth.src_addr().0, ROUTER1);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.next_header(), IpProtocol::Udp);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
    assert_eq!((udp.src_port(), udp.dst_port()), (67, 68));
    let msg = Message::decode(&mut Decoder::new(udp.payload())).unwrap();
    assert_eq!(msg.opcode(), Opcode::BootReply);
    assert_eq!(msg.xid(), 0x1234_5678);
    assert_eq!(&msg.chaddr()[..6], &vm.mac);
    (eth.dst_addr().0, ip.src_addr(), ip.dst_addr(), msg)
}

fn opt(m: &Message, code: OptionCode) -> Option<DhcpOption> {
    m.opts().get(code).cloned()
}

fn assert_options(m: &Message, vm: &Vm, lease: bool) {
    assert_eq!(
        opt(m, OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier(R1))
    );
    assert_eq!(
        opt(m, OptionCode::SubnetMask),
        Some(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        opt(m, OptionCode::Router),
        Some(DhcpOption::Router(vec![R1]))
    );
    assert_eq!(
        opt(m, OptionCode::DomainNameServer),
        Some(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            10, 0, 0, 2
        )]))
    );
    assert_eq!(
        opt(m, OptionCode::DomainName),
        Some(DhcpOption::DomainName("ec2.internal".into()))
    );
    let [a, b, c, d] = vm.ip.octets();
    assert_eq!(
        opt(m, OptionCode::Hostname),
        Some(DhcpOption::Hostname(format!("ip-{a}-{b}-{c}-{d}")))
    );
    assert_eq!(
        opt(m, OptionCode::InterfaceMtu),
        Some(DhcpOption::InterfaceMtu(9001))
    );
    assert_eq!(
        opt(m, OptionCode::BroadcastAddr),
        Some(DhcpOption::BroadcastAddr(Ipv4Addr::new(10, 0, 0, 255)))
    );
    if lease {
        assert_eq!(
            opt(m, OptionCode::AddressLeaseTime),
            Some(DhcpOption::AddressLeaseTime(3600))
        );
        assert_eq!(opt(m, OptionCode::Renewal), Some(DhcpOption::Renewal(1800)));
        assert_eq!(
            opt(m, OptionCode::Rebinding),
            Some(DhcpOption::Rebinding(3150))
        );
    } else {
        assert_eq!(opt(m, OptionCode::AddressLeaseTime), None);
    }
}

#[test]
fn discover_is_offered_the_enis_address_and_options() {
    let mut e = seed_engine(HOST1);
    let d = request(MessageType::Discover, VM1.mac, Ipv4Addr::UNSPECIFIED, &[]);
    let sent = egress(
        &mut e,
        VM1.port,
        &frame(&VM1, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &d),
    );
    let (dst_mac, src, dst, m) = answer(&sent, &VM1);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(m.yiaddr(), VM1.ip);
    // No broadcast bit: unicast to the offered address and the client's MAC (RFC 2131 4.1).
    assert_eq!((dst_mac, src, dst), (VM1.mac, R1, VM1.ip));
    assert_options(&m, &VM1, true);
    assert_eq!(e.counters().frames(Path::DhcpReplies), 1);
    assert_eq!(e.counters().total_drops(), 0);

    // Another VPC, another subnet: each ENI gets its own.
    let d = request(
        MessageType::Discover,
        OTHER1.mac,
        Ipv4Addr::UNSPECIFIED,
        &[],
    );
    let sent = egress(
        &mut e,
        OTHER1.port,
        &frame(&OTHER1, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &d),
    );
    assert_eq!(sent.to_ports[0].0, OTHER1.port);
    let eth = EthernetFrame::new_checked(&sent.to_ports[0].1[..]).unwrap();
    assert_eq!(eth.src_addr().0, ROUTER2);
}

#[test]
fn broadcast_bit_gets_a_broadcast_answer() {
    let mut e = seed_engine(HOST1);
    let mut m = Message::decode(&mut Decoder::new(&request(
        MessageType::Discover,
        VM1.mac,
        Ipv4Addr::UNSPECIFIED,
        &[],
    )))
    .unwrap();
    m.set_flags(Flags::default().set_broadcast());
    let f = frame(
        &VM1,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &m.to_vec().unwrap(),
    );
    let (dst_mac, _, dst, _) = answer(&egress(&mut e, VM1.port, &f), &VM1);
    assert_eq!((dst_mac, dst), (BROADCAST, Ipv4Addr::BROADCAST));
}

#[test]
fn request_for_the_enis_address_is_acked_any_other_nakked() {
    let mut e = seed_engine(HOST1);
    let ask = |ip: Ipv4Addr| {
        request(
            MessageType::Request,
            VM1.mac,
            Ipv4Addr::UNSPECIFIED,
            &[
                DhcpOption::RequestedIpAddress(ip),
                DhcpOption::ServerIdentifier(R1),
            ],
        )
    };
    let f = frame(
        &VM1,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &ask(VM1.ip),
    );
    let (_, _, _, m) = answer(&egress(&mut e, VM1.port, &f), &VM1);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(m.yiaddr(), VM1.ip);
    assert_options(&m, &VM1, true);

    let f = frame(
        &VM1,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &ask(VM4.ip),
    );
    let (dst_mac, _, dst, m) = answer(&egress(&mut e, VM1.port, &f), &VM1);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!((dst_mac, dst), (BROADCAST, Ipv4Addr::BROADCAST));
    assert_eq!(opt(&m, OptionCode::AddressLeaseTime), None);
}

#[test]
fn renewal_to_the_router_is_acked_to_the_client_address() {
    let mut e = seed_engine(HOST1);
    let d = request(MessageType::Request, VM1.mac, VM1.ip, &[]);
    let (dst_mac, src, dst, m) = answer(
        &egress(&mut e, VM1.port, &frame(&VM1, VM1.ip, R1, &d)),
        &VM1,
    );
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!((dst_mac, src, dst), (VM1.mac, R1, VM1.ip));
    assert_eq!(m.ciaddr(), VM1.ip);
}

#[test]
fn inform_is_acked_without_a_lease() {
    let mut e = seed_engine(HOST1);
    let d = request(MessageType::Inform, VM1.mac, VM1.ip, &[]);
    let (_, _, dst, m) = answer(
        &egress(
            &mut e,
            VM1.port,
            &frame(&VM1, VM1.ip, Ipv4Addr::BROADCAST, &d),
        ),
        &VM1,
    );
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(dst, VM1.ip);
    assert_options(&m, &VM1, false);
}

#[test]
fn release_decline_and_other_servers_are_absorbed() {
    let mut e = seed_engine(HOST1);
    for d in [
        request(
            MessageType::Release,
            VM1.mac,
            VM1.ip,
            &[DhcpOption::ServerIdentifier(R1)],
        ),
        request(MessageType::Decline, VM1.mac, Ipv4Addr::UNSPECIFIED, &[]),
        request(
            MessageType::Request,
            VM1.mac,
            Ipv4Addr::UNSPECIFIED,
            &[
                DhcpOption::RequestedIpAddress(VM1.ip),
                DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 99)),
            ],
        ),
    ] {
        let src = Message::decode(&mut Decoder::new(&d)).unwrap().ciaddr();
        let dst = if src.is_unspecified() {
            Ipv4Addr::BROADCAST
        } else {
            R1
        };
        assert!(egress(&mut e, VM1.port, &frame(&VM1, src, dst, &d)).is_empty());
    }
    assert_eq!(e.counters().frames(Path::DhcpAbsorbed), 3);
    assert_eq!(e.counters().total_drops(), 0);
}

#[test]
fn invalid_dhcp_is_dropped_and_counted() {
    let mut e = seed_engine(HOST1);
    let bcast = |d: &[u8]| frame(&VM1, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, d);
    let mut offer = Message::decode(&mut Decoder::new(&request(
        MessageType::Offer,
        VM1.mac,
        Ipv4Addr::UNSPECIFIED,
        &[],
    )))
    .unwrap();
    let cases: Vec<Vec<u8>> = vec![
        bcast(b"not dhcp"),
        bcast(&[]),
        // Another MAC than the ENI's in chaddr.
        bcast(&request(
            MessageType::Discover,
            VM4.mac,
            Ipv4Addr::UNSPECIFIED,
            &[],
        )),
        // A server's message from an instance (a rogue DHCP server).
        bcast(&request(
            MessageType::Offer,
            VM1.mac,
            Ipv4Addr::UNSPECIFIED,
            &[],
        )),
        bcast(&offer.set_opcode(Opcode::BootReply).to_vec().unwrap()),
        // INFORM from an address that is not the ENI's.
        frame(
            &VM1,
            VM1.ip,
            Ipv4Addr::BROADCAST,
            &request(MessageType::Inform, VM1.mac, VM4.ip, &[]),
        ),
    ];
    for f in &cases {
        assert!(egress(&mut e, VM1.port, f).is_empty());
    }
    // A bad UDP checksum.
    let mut f = bcast(&request(
        MessageType::Discover,
        VM1.mac,
        Ipv4Addr::UNSPECIFIED,
        &[],
    ));
    let n = f.len();
    f[n - 1] ^= 0xff;
    assert!(egress(&mut e, VM1.port, &f).is_empty());
    assert_eq!(
        e.counters().drops(DropReason::DhcpInvalid),
        cases.len() as u64 + 1
    );
    assert_eq!(e.counters().frames(Path::DhcpReplies), 0);
    // DHCP from a spoofed source is refused before DHCP looks at it.
    let d = request(MessageType::Discover, VM1.mac, Ipv4Addr::UNSPECIFIED, &[]);
    assert!(egress(
        &mut e,
        VM1.port,
        &frame(&VM1, VM4.ip, Ipv4Addr::BROADCAST, &d)
    )
    .is_empty());
    assert_eq!(e.counters().drops(DropReason::SpoofedSource), 1);
}

#[test]
fn domain_names_follow_aws() {
    assert_eq!(dhcp::default_domain_name("us-east-1"), "ec2.internal");
    assert_eq!(
        dhcp::default_domain_name("eu-west-1"),
        "eu-west-1.compute.internal"
    );
    assert_eq!(DhcpConfig::for_region("us-west-2", 9001).mtu, 9001);
    assert_eq!(
        dhcp::host_label(Ipv4Addr::new(10, 0, 0, 148)),
        "ip-10-0-0-148"
    );
}

/// A VPC's option set (AssociateDhcpOptions) is what the router hands out, and a changed set is
/// seen at the next renewal (a REQUEST from the leased address to the router).
#[test]
fn the_vpcs_option_set_is_handed_out_and_a_change_is_seen_at_renewal() {
    let mut records = seed_records();
    let services = |set: dhcp::OptionSet| softvpc_engine::VpcServices {
        dns_support: true,
        dns_hostnames: false,
        private_domain: "ec2.internal".into(),
        region: "us-east-1".into(),
        dhcp: set,
    };
    let custom = dhcp::OptionSet {
        domain_name: Some("corp.example".into()),
        name_servers: vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 53)],
        ntp_servers: vec![Ipv4Addr::new(169, 254, 169, 123)],
        netbios_name_servers: vec![Ipv4Addr::new(10, 0, 0, 54)],
        netbios_node_type: Some(2),
    };
    records
        .services
        .insert("vpc-1".into(), services(custom.clone()));
    let mut e = engine_with(HOST1, &records);
    let d = request(MessageType::Discover, VM1.mac, Ipv4Addr::UNSPECIFIED, &[]);
    let sent = egress(
        &mut e,
        VM1.port,
        &frame(&VM1, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &d),
    );
    let (_, _, _, m) = answer(&sent, &VM1);
    assert_eq!(
        opt(&m, OptionCode::DomainNameServer),
        Some(DhcpOption::DomainNameServer(custom.name_servers.clone()))
    );
    assert_eq!(
        opt(&m, OptionCode::DomainName),
        Some(DhcpOption::DomainName("corp.example".into()))
    );
    assert_eq!(
        opt(&m, OptionCode::NtpServers),
        Some(DhcpOption::NtpServers(custom.ntp_servers.clone()))
    );
    assert_eq!(
        opt(&m, OptionCode::NetBiosNameServers),
        Some(DhcpOption::NetBiosNameServers(vec![Ipv4Addr::new(
            10, 0, 0, 54
        )]))
    );
    assert!(opt(&m, OptionCode::NetBiosNodeType).is_some());

    // A set without domain name and servers: those options are left out; seen at renewal.
    records
        .services
        .insert("vpc-1".into(), services(dhcp::OptionSet::default()));
    e.set_table(std::sync::Arc::new(table(
        &records,
        HOST1,
        &ports_of(HOST1),
    )));
    let renew = request(MessageType::Request, VM1.mac, VM1.ip, &[]);
    let sent = egress(&mut e, VM1.port, &frame(&VM1, VM1.ip, R1, &renew));
    let (_, _, dst, m) = answer(&sent, &VM1);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(dst, VM1.ip);
    assert_eq!(opt(&m, OptionCode::DomainNameServer), None);
    assert_eq!(opt(&m, OptionCode::DomainName), None);
    assert_eq!(opt(&m, OptionCode::NtpServers), None);
    // The other VPC has no services: AWS's default set.
    let d = request(
        MessageType::Discover,
        OTHER1.mac,
        Ipv4Addr::UNSPECIFIED,
        &[],
    );
    let sent = egress(
        &mut e,
        OTHER1.port,
        &frame(&OTHER1, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &d),
    );
    let m = Message::decode(&mut Decoder::new(
        UdpPacket::new_checked(
            Ipv4Packet::new_checked(
                EthernetFrame::new_checked(&sent.to_ports[0].1[..])
                    .unwrap()
                    .payload(),
            )
            .unwrap()
            .payload(),
        )
        .unwrap()
        .payload(),
    ))
    .unwrap();
    assert_eq!(
        opt(&m, OptionCode::DomainName),
        Some(DhcpOption::DomainName("ec2.internal".into()))
    );
}

fn lease() -> Lease {
    Lease {
        mac: VM1.mac,
        ip: VM1.ip,
        prefix_len: 24,
        router: R1,
        dns: Ipv4Addr::new(10, 0, 0, 2),
    }
}

proptest! {
    /// Any bytes: an answer that decodes and is for the ENI, or a refusal; never a panic.
    #[test]
    fn any_payload_is_answered_well_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let cfg = DhcpConfig::for_region("us-east-1", 1450);
        if let Ok(a) = dhcp::answer(&bytes, &lease(), &cfg) {
            let m = Message::decode(&mut Decoder::new(&a.payload)).unwrap();
            prop_assert_eq!(&m.chaddr()[..6], &VM1.mac[..]);
            prop_assert!(m.yiaddr() == VM1.ip || m.yiaddr().is_unspecified());
        }
    }

    /// Valid requests with bytes changed: the same, and a yiaddr is only ever the ENI's.
    #[test]
    fn mutated_requests_are_answered_well_or_refused(
        ty in prop::sample::select(vec![MessageType::Discover, MessageType::Request, MessageType::Inform, MessageType::Release]),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let mut bytes = request(ty, VM1.mac, Ipv4Addr::UNSPECIFIED, &[DhcpOption::RequestedIpAddress(VM1.ip)]);
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let cfg = DhcpConfig::for_region("eu-west-1", 9001);
        if let Ok(a) = dhcp::answer(&bytes, &lease(), &cfg) {
            let m = Message::decode(&mut Decoder::new(&a.payload)).unwrap();
            prop_assert!(m.yiaddr() == VM1.ip || m.yiaddr().is_unspecified());
            prop_assert!(a.dst_ip == VM1.ip || a.dst_ip.is_broadcast() || a.dst_ip == m.ciaddr());
        }
    }
}
