use super::*;
use crate::packet::ICMP;
use proptest::prelude::*;
use std::time::Duration;

const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 9);

fn secs(base: Instant, s: u64) -> Instant {
    base + Duration::from_secs(s)
}

fn table(limit: usize) -> (ConnTrack<u32>, Instant) {
    let t0 = Instant::now();
    (ConnTrack::new(limit, Timeouts::default(), t0), t0)
}

#[test]
fn both_directions_find_one_entry() {
    let (mut ct, t0) = table(8);
    let syn = Packet::tcp(VM, 40000, PEER, 22, TCP_SYN);
    ct.insert(&syn, Direction::Egress, t0, Generation(3), 7)
        .unwrap();
    let synack = Packet::tcp(PEER, 22, VM, 40000, TCP_SYN | TCP_ACK);
    let hit = ct.lookup(&synack, Direction::Ingress, t0).unwrap();
    assert!(hit.reply);
    assert_eq!(*hit.entry.value(), 7);
    assert_eq!(hit.entry.generation(), Generation(3));
    assert_eq!(hit.entry.state(), ProtoState::Tcp(TcpState::SynReceived));
    // Another port is another connection; so is the same packet seen the other way.
    assert!(ct
        .lookup(
            &Packet::tcp(PEER, 23, VM, 40000, TCP_ACK),
            Direction::Ingress,
            t0
        )
        .is_none());
    assert!(ct.lookup(&syn, Direction::Ingress, t0).is_none());
    assert_eq!(ct.len(), 1);
}

#[test]
fn tcp_states_and_their_timeouts() {
    let (mut ct, t0) = table(8);
    let out = |f| Packet::tcp(VM, 40000, PEER, 22, f);
    let back = |f| Packet::tcp(PEER, 22, VM, 40000, f);
    ct.insert(&out(TCP_SYN), Direction::Egress, t0, Generation(0), 0)
        .unwrap();
    // Handshake: 120 s idle is too long.
    assert!(ct
        .peek(&out(TCP_ACK), Direction::Egress, secs(t0, 119))
        .is_some());
    assert!(ct
        .peek(&out(TCP_ACK), Direction::Egress, secs(t0, 120))
        .is_none());
    ct.lookup(&back(TCP_SYN | TCP_ACK), Direction::Ingress, secs(t0, 1))
        .unwrap();
    let hit = ct
        .lookup(&out(TCP_ACK), Direction::Egress, secs(t0, 2))
        .unwrap();
    assert!(!hit.reply);
    assert_eq!(hit.entry.state(), ProtoState::Tcp(TcpState::Established));
    // Established: five days.
    assert!(ct
        .peek(&out(TCP_ACK), Direction::Egress, secs(t0, 2 + 431_999))
        .is_some());
    assert!(ct
        .lookup(&back(TCP_ACK), Direction::Ingress, secs(t0, 2 + 432_000))
        .is_none());
    assert_eq!(ct.stats().expired, 1);

    // FIN both ways: time-wait, 120 s; RST: 10 s.
    ct.insert(&out(TCP_ACK), Direction::Egress, t0, Generation(0), 0)
        .unwrap();
    ct.lookup(&out(TCP_FIN | TCP_ACK), Direction::Egress, t0)
        .unwrap();
    let h = ct
        .lookup(&back(TCP_FIN | TCP_ACK), Direction::Ingress, t0)
        .unwrap();
    assert_eq!(h.entry.state(), ProtoState::Tcp(TcpState::TimeWait));
    assert!(ct
        .peek(&out(TCP_ACK), Direction::Egress, secs(t0, 120))
        .is_none());
    // The opener's new SYN reuses the 5-tuple.
    let h = ct
        .lookup(&out(TCP_SYN), Direction::Egress, secs(t0, 5))
        .unwrap();
    assert_eq!(h.entry.state(), ProtoState::Tcp(TcpState::SynSent));
    let h = ct
        .lookup(&back(TCP_RST), Direction::Ingress, secs(t0, 5))
        .unwrap();
    assert_eq!(h.entry.state(), ProtoState::Tcp(TcpState::Closed));
    assert!(ct
        .peek(&out(TCP_ACK), Direction::Egress, secs(t0, 15))
        .is_none());
}

#[test]
fn udp_becomes_a_stream_after_two_transactions() {
    let (mut ct, t0) = table(8);
    let q = Packet::udp(VM, 5353, PEER, 53);
    let a = Packet::udp(PEER, 53, VM, 5353);
    ct.insert(&q, Direction::Egress, t0, Generation(0), 0)
        .unwrap();
    assert!(
        ct.peek(&q, Direction::Egress, secs(t0, 30)).is_none(),
        "30 s for one datagram"
    );
    ct.lookup(&a, Direction::Ingress, secs(t0, 1)).unwrap();
    // One request-response: still 30 s.
    assert!(ct.peek(&q, Direction::Egress, secs(t0, 31)).is_none());
    ct.lookup(&q, Direction::Egress, secs(t0, 2)).unwrap();
    // Two replies in a row are one transaction.
    ct.lookup(&a, Direction::Ingress, secs(t0, 3)).unwrap();
    let h = ct.lookup(&a, Direction::Ingress, secs(t0, 3)).unwrap();
    assert_eq!(
        h.entry.state(),
        ProtoState::Udp {
            transactions: 2,
            awaiting_reply: false
        }
    );
    assert!(ct.peek(&q, Direction::Egress, secs(t0, 3 + 179)).is_some());
    assert!(ct.peek(&q, Direction::Egress, secs(t0, 3 + 180)).is_none());
}

#[test]
fn icmp_and_other_protocols_600s() {
    let (mut ct, t0) = table(8);
    let echo = Packet::icmp(VM, PEER, 8, 0, 77);
    ct.insert(&echo, Direction::Egress, t0, Generation(0), 0)
        .unwrap();
    let reply = Packet::icmp(PEER, VM, 0, 0, 77);
    assert!(
        ct.lookup(&reply, Direction::Ingress, secs(t0, 599))
            .unwrap()
            .reply
    );
    assert!(ct
        .peek(&Packet::icmp(PEER, VM, 0, 0, 78), Direction::Ingress, t0)
        .is_none());
    assert!(ct
        .peek(&reply, Direction::Ingress, secs(t0, 599 + 600))
        .is_none());

    let gre = Packet::other(PEER, VM, 47);
    ct.insert(&gre, Direction::Ingress, t0, Generation(0), 0)
        .unwrap();
    let h = ct
        .lookup(&Packet::other(VM, PEER, 47), Direction::Egress, t0)
        .unwrap();
    assert!(h.reply);
    assert!(ct.peek(&gre, Direction::Ingress, secs(t0, 600)).is_none());
}

#[test]
fn per_eni_timeouts_from_the_spec() {
    let spec = ConnectionTrackingSpec {
        tcp_established_timeout: Some(60),
        udp_stream_timeout: Some(60),
        udp_timeout: Some(60),
    };
    let t = Timeouts::from_spec(&spec).unwrap();
    assert_eq!(
        (t.tcp_established, t.udp_stream, t.udp, t.other),
        (60, 60, 60, 600)
    );
    let (mut ct, t0) = table(8);
    let p = Packet::tcp(VM, 1, PEER, 2, TCP_ACK);
    ct.insert(&p, Direction::Egress, t0, Generation(0), 0)
        .unwrap();
    ct.set_timeouts(t);
    assert!(ct.peek(&p, Direction::Egress, secs(t0, 60)).is_none());

    for (spec, param) in [
        (
            ConnectionTrackingSpec {
                tcp_established_timeout: Some(59),
                ..Default::default()
            },
            "TcpEstablishedTimeout",
        ),
        (
            ConnectionTrackingSpec {
                tcp_established_timeout: Some(432_001),
                ..Default::default()
            },
            "TcpEstablishedTimeout",
        ),
        (
            ConnectionTrackingSpec {
                udp_stream_timeout: Some(181),
                ..Default::default()
            },
            "UdpStreamTimeout",
        ),
        (
            ConnectionTrackingSpec {
                udp_timeout: Some(29),
                ..Default::default()
            },
            "UdpTimeout",
        ),
    ] {
        assert_eq!(Timeouts::from_spec(&spec).unwrap_err().parameter, param);
    }
    assert_eq!(
        Timeouts::from_spec(&Default::default()).unwrap(),
        Timeouts::default()
    );
}

#[test]
fn limit_refuses_and_counts_then_expiry_makes_room() {
    let (mut ct, t0) = table(2);
    let p = |port| Packet::udp(VM, port, PEER, 53);
    ct.insert(&p(1), Direction::Egress, t0, Generation(0), 0)
        .unwrap();
    ct.insert(&p(2), Direction::Egress, secs(t0, 10), Generation(0), 0)
        .unwrap();
    assert_eq!(
        ct.insert(&p(3), Direction::Egress, secs(t0, 10), Generation(0), 0)
            .unwrap_err(),
        Full
    );
    // Re-inserting a tracked key is not a new connection.
    ct.insert(&p(2), Direction::Egress, secs(t0, 10), Generation(1), 1)
        .unwrap();
    let s = ct.stats();
    assert_eq!(
        (s.tracked, s.allowance_available, s.allowance_exceeded),
        (2, 0, 1)
    );
    // At 30 s the first has expired: the sweep on a full table makes room.
    ct.insert(&p(3), Direction::Egress, secs(t0, 30), Generation(0), 0)
        .unwrap();
    assert!(ct.peek(&p(1), Direction::Egress, secs(t0, 30)).is_none());
    // A second sweep within the same second is skipped: refused although p(2) expires at 40.
    assert!(ct
        .insert(&p(4), Direction::Egress, secs(t0, 30), Generation(0), 0)
        .is_err());
    assert_eq!(ct.expire(secs(t0, 40)), 1);
    assert_eq!(ct.stats().expired, 2);
    assert_eq!(ct.stats().allowance_exceeded, 2);
}

#[test]
fn icmp_errors_match_the_flow_they_quote() {
    let (mut ct, t0) = table(8);
    let out = Packet::udp(VM, 40000, PEER, 9999);
    ct.insert(&out, Direction::Egress, t0, Generation(0), 5)
        .unwrap();
    // The quote is the packet the instance sent; the error comes in.
    assert_eq!(
        ct.lookup_icmp_error(&out, Direction::Ingress, t0)
            .map(|e| *e.value()),
        Some(5)
    );
    // A quote of a packet the instance never sent does not match.
    let other = Packet::udp(VM, 40001, PEER, 9999);
    assert!(ct
        .lookup_icmp_error(&other, Direction::Ingress, t0)
        .is_none());
    // An ICMP error the instance sends about a packet it received.
    let inbound = Packet::tcp(PEER, 5555, VM, 80, TCP_SYN);
    ct.insert(&inbound, Direction::Ingress, t0, Generation(0), 6)
        .unwrap();
    assert!(ct
        .lookup_icmp_error(&inbound, Direction::Egress, t0)
        .is_some());
    assert!(ct
        .lookup_icmp_error(&inbound, Direction::Egress, secs(t0, 120))
        .is_none());
}

#[test]
fn time_going_backwards_is_no_time() {
    let t0 = Instant::now() + Duration::from_secs(100);
    let mut ct: ConnTrack<()> = ConnTrack::new(4, Timeouts::default(), t0);
    let p = Packet::udp(VM, 1, PEER, 2);
    ct.insert(
        &p,
        Direction::Egress,
        t0 - Duration::from_secs(50),
        Generation(0),
        (),
    )
    .unwrap();
    assert!(ct
        .peek(&p, Direction::Egress, t0 + Duration::from_secs(29))
        .is_some());
    assert!(ct
        .lookup(&p, Direction::Egress, t0 - Duration::from_secs(99))
        .is_some());
}

#[test]
fn entry_size_is_small() {
    // Key 16 bytes, entry with a u32 value: what the benchmark reports as memory per flow.
    assert!(
        bytes_per_entry::<u32>() <= 48,
        "{}",
        bytes_per_entry::<u32>()
    );
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    let addr = prop_oneof![Just(VM), Just(PEER), any::<u32>().prop_map(Ipv4Addr::from)];
    (
        addr.clone(),
        addr,
        0u16..4,
        0u16..4,
        prop_oneof![Just(TCP), Just(UDP), Just(ICMP), Just(47)],
        any::<u8>(),
    )
        .prop_map(|(s, d, sp, dp, proto, flags)| match proto {
            TCP => Packet::tcp(s, sp, d, dp, flags),
            UDP => Packet::udp(s, sp, d, dp),
            ICMP => Packet::icmp(s, d, if flags & 1 == 0 { 8 } else { 0 }, 0, sp),
            p => Packet::other(s, d, p),
        })
}

proptest! {
    /// The table never exceeds its limit, a lookup finds exactly what was inserted (in either
    /// direction) and not expired, and the counters add up.
    #[test]
    fn bounded_and_consistent(
        limit in 0usize..6,
        ops in proptest::collection::vec((arb_packet(), any::<bool>(), any::<bool>(), 0u64..200), 1..60),
    ) {
        let t0 = Instant::now();
        let mut ct: ConnTrack<u32> = ConnTrack::new(limit, Timeouts::default(), t0);
        let mut now = t0;
        let mut refused = 0u64;
        for (i, (pkt, ingress, insert, step)) in ops.into_iter().enumerate() {
            now += Duration::from_secs(step);
            let dir = if ingress { Direction::Ingress } else { Direction::Egress };
            if insert {
                match ct.insert(&pkt, dir, now, Generation(i as u64), i as u32) {
                    Ok(e) => prop_assert_eq!(*e.value(), i as u32),
                    Err(Full) => refused += 1,
                }
                if ct.peek(&pkt, dir, now).is_some() {
                    // The reply direction finds the same entry.
                    let rev = match pkt.l4 {
                        L4::Ports { src, dst } => Packet { src: pkt.dst, dst: pkt.src, l4: L4::Ports { src: dst, dst: src }, ..pkt },
                        _ => Packet { src: pkt.dst, dst: pkt.src, ..pkt },
                    };
                    let hit = ct.lookup(&rev, dir.reverse(), now);
                    prop_assert!(hit.is_some());
                    prop_assert!(hit.unwrap().reply);
                }
            } else {
                let _ = ct.lookup(&pkt, dir, now);
            }
            prop_assert!(ct.len() <= limit);
            let s = ct.stats();
            prop_assert_eq!(s.allowance_exceeded, refused);
            prop_assert_eq!(s.tracked + s.allowance_available, limit.max(s.tracked));
        }
        ct.expire(now + Duration::from_secs(432_000));
        prop_assert!(ct.is_empty());
        let s = ct.stats();
        prop_assert_eq!(s.inserted, s.expired);
    }
}
