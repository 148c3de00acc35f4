//! DNS answered by the router (gateway::dns): private IP names and their reverse, the public
//! split horizon, enableDnsSupport/enableDnsHostnames, forwarding through the shell and back,
//! SERVFAIL without an upstream, malformed queries (FORMERR or dropped and counted), ARP for the
//! resolver address, and that nothing of it reaches the underlay. Queries and answers are built
//! and read with hickory-proto, frames with smoltcp.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;

use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use proptest::prelude::*;
use softvpc_engine::layers::gateway::dhcp::OptionSet;
use softvpc_engine::layers::gateway::dns::{self, Forwarder, Zone};
use softvpc_engine::{DropReason, Engine, EngineConfig, Output, Path, VpcServices};
use softvpc_wire::{ArpOperation, EthernetFrame, IpProtocol, Ipv4Packet, UdpPacket};

const RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn query(id: u16, name: &str, ty: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    m.to_vec().unwrap()
}

fn ask(e: &mut Engine, vm: &Vm, server: Ipv4Addr, payload: &[u8]) -> (Sent, Output) {
    let f = udp(vm.mac, ROUTER1, vm.ip, server, 40000, 53, payload);
    let mut out = Output::default();
    e.handle_port_frames(t0(), vm.port, [&f[..]], &mut out);
    (Sent::from(&out), out)
}

/// The one answer frame on the VM's port: from `server:53` to the VM's port 40000.
fn answer(sent: &Sent, vm: &Vm, server: Ipv4Addr) -> Message {
    assert!(sent.to_underlay.is_empty(), "DNS crossed the underlay");
    assert_eq!(sent.to_ports.len(), 1, "{sent:?}");
    let (port, bytes) = &sent.to_ports[0];
    assert_eq!(*port, vm.port);
    let eth = EthernetFrame::new_checked(&bytes[..]).unwrap();
    assert_eq!((eth.src_addr().0, eth.dst_addr().0), (ROUTER1, vm.mac));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.next_header(), IpProtocol::Udp);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (server, vm.ip));
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
    assert_eq!((udp.src_port(), udp.dst_port()), (53, 40000));
    let m = Message::from_vec(udp.payload()).unwrap();
    assert_eq!(m.metadata.message_type, MessageType::Response);
    m
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn services(support: bool, hostnames: bool) -> VpcServices {
    VpcServices {
        dns_support: support,
        dns_hostnames: hostnames,
        private_domain: "ec2.internal".into(),
        region: "us-east-1".into(),
        dhcp: OptionSet::amazon_default(RESOLVER, "ec2.internal"),
    }
}

fn engine(support: bool, hostnames: bool, upstream: bool) -> Engine {
    let mut r = seed_records();
    r.services
        .insert("vpc-1".into(), services(support, hostnames));
    let mut e = Engine::new(EngineConfig {
        dns_upstream: upstream,
        ..EngineConfig::new(HOST1)
    });
    e.set_table(Arc::new(table(&r, HOST1, &ports_of(HOST1))));
    e
}

#[test]
fn private_ip_names_resolve_at_base_plus_2_and_the_link_local_address() {
    let mut e = engine(true, false, false);
    for server in [RESOLVER, dns::LINK_LOCAL] {
        let (sent, _) = ask(
            &mut e,
            &VM1,
            server,
            &query(7, "ip-10-0-0-185.ec2.internal.", RecordType::A),
        );
        let m = answer(&sent, &VM1, server);
        assert_eq!(m.metadata.id, 7);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.recursion_available && m.metadata.authoritative);
        assert_eq!(a_records(&m), [VM2.ip]);
        assert_eq!(m.answers[0].ttl, dns::TTL);
    }
    // Case does not matter; AAAA of an IP name: no records, no error.
    let (sent, _) = ask(
        &mut e,
        &VM1,
        RESOLVER,
        &query(8, "IP-10-0-1-20.EC2.Internal.", RecordType::A),
    );
    assert_eq!(a_records(&answer(&sent, &VM1, RESOLVER)), [VM3.ip]);
    let (sent, _) = ask(
        &mut e,
        &VM1,
        RESOLVER,
        &query(9, "ip-10-0-1-20.ec2.internal.", RecordType::AAAA),
    );
    let m = answer(&sent, &VM1, RESOLVER);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    // Not an IP name, or not a private address, under the private domain: NXDOMAIN.
    for name in [
        "www.ec2.internal.",
        "ip-8-8-8-8.ec2.internal.",
        "ip-10-0-0-300.ec2.internal.",
    ] {
        let (sent, _) = ask(&mut e, &VM1, RESOLVER, &query(10, name, RecordType::A));
        assert_eq!(
            answer(&sent, &VM1, RESOLVER).metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    assert_eq!(e.counters().frames(Path::DnsReplies), 7);
    assert_eq!(e.counters().total_drops(), 0);
}

#[test]
fn the_resolver_address_answers_arp_with_the_router_mac() {
    let mut e = engine(true, false, false);
    let sent = egress(&mut e, VM1.port, &arp_request(&VM1, RESOLVER));
    assert_eq!(sent.to_ports.len(), 1);
    let (op, mac, ip, _, _) = parse_arp(&sent.to_ports[0].1);
    assert_eq!((op, mac, ip), (ArpOperation::Reply, ROUTER1, RESOLVER));
}

#[test]
fn reverse_and_public_names_follow_enable_dns_hostnames() {
    let ptr = query(11, "185.0.0.10.in-addr.arpa.", RecordType::PTR);
    // Hostnames off, no upstream: the router does not know it.
    let mut e = engine(true, false, false);
    let (sent, _) = ask(&mut e, &VM1, RESOLVER, &ptr);
    assert_eq!(
        answer(&sent, &VM1, RESOLVER).metadata.response_code,
        ResponseCode::ServFail
    );
    // Hostnames on: the IP name.
    let mut e = engine(true, true, false);
    let (sent, _) = ask(&mut e, &VM1, RESOLVER, &ptr);
    let m = answer(&sent, &VM1, RESOLVER);
    match &m.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0.to_ascii(), "ip-10-0-0-185.ec2.internal."),
        other => panic!("{other:?}"),
    }
    // Split horizon: the public name of an ENI of the VPC is its private address inside.
    let mut r = seed_records();
    r.services.insert("vpc-1".into(), services(true, true));
    r.public = vec![(VM2.eni.into(), Ipv4Addr::new(203, 0, 113, 25), VM2.ip)];
    e.set_table(Arc::new(table(&r, HOST1, &ports_of(HOST1))));
    let (sent, _) = ask(
        &mut e,
        &VM1,
        RESOLVER,
        &query(
            12,
            "ec2-203-0-113-25.compute-1.amazonaws.com.",
            RecordType::A,
        ),
    );
    assert_eq!(a_records(&answer(&sent, &VM1, RESOLVER)), [VM2.ip]);
}

#[test]
fn dns_support_off_answers_nothing() {
    let mut e = engine(false, false, false);
    let (sent, _) = ask(
        &mut e,
        &VM1,
        RESOLVER,
        &query(1, "ip-10-0-0-185.ec2.internal.", RecordType::A),
    );
    assert!(sent.is_empty());
    assert_eq!(e.counters().drops(DropReason::DnsDisabled), 1);
}

#[test]
fn unknown_names_are_forwarded_and_the_answer_comes_back_or_servfail_without_upstream() {
    let q = query(0x4242, "www.example.com.", RecordType::A);
    let mut e = engine(true, false, false);
    let (sent, _) = ask(&mut e, &VM1, RESOLVER, &q);
    let m = answer(&sent, &VM1, RESOLVER);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(m.metadata.id, 0x4242);

    let mut e = engine(true, false, true);
    let (sent, out) = ask(&mut e, &VM1, dns::LINK_LOCAL, &q);
    assert!(sent.is_empty());
    let forwards: Vec<_> = out.dns_forwards().map(|(a, p)| (a, p.to_vec())).collect();
    assert_eq!(forwards.len(), 1);
    let (asker, payload) = &forwards[0];
    assert_eq!(payload, &q);
    assert_eq!(
        (asker.ip, asker.src_port, asker.server),
        (VM1.ip, 40000, dns::LINK_LOCAL)
    );
    assert_eq!(e.counters().frames(Path::DnsForwarded), 1);

    // The shell multiplexes it upstream under its own id and matches the answer back.
    let mut fwd = Forwarder::default();
    let upstream_q = fwd.send(t0(), *asker, payload).unwrap();
    let mut upstream_answer = Message::from_vec(&upstream_q).unwrap();
    upstream_answer.metadata.message_type = MessageType::Response;
    upstream_answer.add_answer(hickory_proto::rr::Record::from_rdata(
        Name::from_ascii("www.example.com.").unwrap(),
        300,
        RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(203, 0, 113, 80))),
    ));
    let bytes = upstream_answer.to_vec().unwrap();
    // A forged answer to another question is not taken.
    let mut forged = Message::from_vec(&bytes).unwrap();
    forged.queries[0] = Query::query(Name::from_ascii("evil.example.").unwrap(), RecordType::A);
    assert!(fwd.receive(t0(), &forged.to_vec().unwrap()).is_none());
    let (back_to, answer_bytes) = fwd.receive(t0(), &bytes).unwrap();
    assert_eq!(back_to, *asker);
    assert!(fwd.is_empty());
    let mut out = Output::default();
    e.handle_dns_answer(t0(), back_to, &answer_bytes, &mut out);
    let m = answer(&Sent::from(&out), &VM1, dns::LINK_LOCAL);
    assert_eq!(m.metadata.id, 0x4242);
    assert_eq!(a_records(&m), [Ipv4Addr::new(203, 0, 113, 80)]);
    // Unanswered upstream: SERVFAIL after the timeout.
    let mut fwd = Forwarder::default();
    fwd.send(t0(), *asker, payload).unwrap();
    assert!(fwd.expired(at_ms(1000)).is_empty());
    let expired = fwd.expired(at_ms(2500));
    assert_eq!(expired.len(), 1);
    let mut out = Output::default();
    e.handle_dns_timeout(at_ms(2500), expired[0].0, &expired[0].1, &mut out);
    let m = answer(&Sent::from(&out), &VM1, dns::LINK_LOCAL);
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (0x4242, ResponseCode::ServFail)
    );
    // An answer for an asker that is no longer on its port is dropped.
    let mut gone = back_to;
    gone.mac = VM2.mac;
    let mut out = Output::default();
    e.handle_dns_answer(t0(), gone, &answer_bytes, &mut out);
    assert!(out.is_empty());
    assert_eq!(e.counters().drops(DropReason::DnsInvalid), 1);
}

#[test]
fn malformed_queries_get_formerr_or_are_dropped_and_counted() {
    let mut e = engine(true, false, false);
    // A header with garbage after it: FORMERR with the query's id.
    let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(&[0x3f; 20]);
    let (sent, _) = ask(&mut e, &VM1, RESOLVER, &garbage);
    let m = answer(&sent, &VM1, RESOLVER);
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (0x1234, ResponseCode::FormErr)
    );
    // Two questions: FORMERR. Another opcode: NOTIMP.
    let mut two = Message::new(5, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
    two.add_query(Query::query(Name::from_ascii("b.").unwrap(), RecordType::A));
    let (sent, _) = ask(&mut e, &VM1, RESOLVER, &two.to_vec().unwrap());
    assert_eq!(
        answer(&sent, &VM1, RESOLVER).metadata.response_code,
        ResponseCode::FormErr
    );
    let mut status = Message::new(6, MessageType::Query, OpCode::Status);
    status.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
    let (sent, _) = ask(&mut e, &VM1, RESOLVER, &status.to_vec().unwrap());
    assert_eq!(
        answer(&sent, &VM1, RESOLVER).metadata.response_code,
        ResponseCode::NotImp
    );
    // Another class: REFUSED.
    let mut chaos = Message::new(7, MessageType::Query, OpCode::Query);
    let mut q = Query::query(Name::from_ascii("version.bind.").unwrap(), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    chaos.add_query(q);
    let (sent, _) = ask(&mut e, &VM1, RESOLVER, &chaos.to_vec().unwrap());
    assert_eq!(
        answer(&sent, &VM1, RESOLVER).metadata.response_code,
        ResponseCode::Refused
    );
    // Shorter than a header, or a response: dropped and counted.
    let (sent, _) = ask(&mut e, &VM1, RESOLVER, &[1, 2, 3]);
    assert!(sent.is_empty());
    let mut resp = query(9, "a.", RecordType::A);
    resp[2] |= 0x80;
    let (sent, _) = ask(&mut e, &VM1, RESOLVER, &resp);
    assert!(sent.is_empty());
    assert_eq!(e.counters().drops(DropReason::DnsInvalid), 2);
}

fn zone() -> Zone<'static> {
    static CIDRS: std::sync::OnceLock<Vec<ipnet::Ipv4Net>> = std::sync::OnceLock::new();
    Zone {
        private_domain: "ec2.internal",
        region: "us-east-1",
        cidrs: CIDRS.get_or_init(|| vec!["10.0.0.0/16".parse().unwrap()]),
        hostnames: true,
        upstream: false,
    }
}

proptest! {
    /// Any bytes: an answer that decodes as a response with the query's id, or a refusal;
    /// never a panic.
    #[test]
    fn any_payload_is_answered_well_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(dns::Resolution::Answer(a)) = dns::resolve(&bytes, &zone(), &|_| None) {
            let m = Message::from_vec(&a).unwrap();
            prop_assert_eq!(m.metadata.message_type, MessageType::Response);
            prop_assert_eq!(&a[..2], &bytes[..2]);
        }
    }

    /// Valid queries with bytes changed: the same.
    #[test]
    fn mutated_queries_are_answered_well_or_refused(
        name in "[a-z0-9]{1,20}(\\.[a-z0-9]{1,10}){0,3}\\.",
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let mut bytes = query(1, &name, RecordType::A);
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if let Ok(dns::Resolution::Answer(a)) = dns::resolve(&bytes, &zone(), &|_| None) {
            prop_assert!(Message::from_vec(&a).is_ok());
        }
        // And the forwarder never panics on them as answers.
        let _ = Forwarder::default().receive(t0(), &bytes);
    }
}
