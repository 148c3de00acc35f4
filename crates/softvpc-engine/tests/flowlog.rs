//! Flow log capture on the seed topology in virtual time: both hosts' engines joined by an
//! in-memory underlay, the instances' frames sent as they would send them, and the windows the
//! engines hand out checked record by record: per-interval aggregation, packets and bytes,
//! first/last times, TCP flags, ACCEPT and REJECT (security group, network ACL), NODATA windows,
//! SKIPDATA past the bound, both intervals at once, what AWS does not log, local delivery.

mod common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::*;
use softvpc_engine::policy::Direction as Dir;
use softvpc_engine::{
    Engine, FlowAction, FlowDirection, FlowLogConfig, FlowRecord, FlowWindow, Mac, Output,
};
use softvpc_wire::IpProtocol;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYNACK: u8 = 0x12;
const FINACK: u8 = 0x11;
const MINUTE: Duration = Duration::from_secs(60);

fn tcp(from: &Vm, dst_mac: Mac, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 0x50;
    h[13] = flags;
    ipv4(from.mac, dst_mac, from.ip, dst, 64, IpProtocol::Tcp, &h)
}

fn ping(from: &Vm, dst_mac: Mac, dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    echo_request(from.mac, dst_mac, from.ip, dst, 64, 7, seq, &[0u8; 56])
}

struct Net {
    records: SeedRecords,
    hosts: Vec<(Ipv4Addr, Engine)>,
    now: Instant,
    out: Output,
    /// What each host logs.
    wanted: HashMap<Ipv4Addr, HashMap<Box<str>, Vec<Duration>>>,
}

impl Net {
    fn new(records: SeedRecords) -> Net {
        let hosts = seed_hosts(&records, |c| c);
        Net {
            records,
            hosts,
            now: t0(),
            out: Output::default(),
            wanted: HashMap::new(),
        }
    }

    fn engine(&mut self, host: Ipv4Addr) -> &mut Engine {
        &mut self.hosts.iter_mut().find(|(h, _)| *h == host).unwrap().1
    }

    /// Logs `vm`'s ENI with `intervals` (on its host's engine).
    fn log(&mut self, vm: &Vm, intervals: &[u64]) {
        let all = self.wanted.entry(vm.host).or_default();
        all.insert(
            Box::<str>::from(vm.eni),
            intervals.iter().map(|s| Duration::from_secs(*s)).collect(),
        );
        let all = all.clone();
        let now = self.now;
        let e = self.engine(vm.host);
        // The engine's time (a window starts at the engine's latest `now`).
        e.handle_timeout(now);
        e.set_flow_logs(all);
    }

    fn update(&mut self, f: impl FnOnce(&mut SeedRecords)) {
        f(&mut self.records);
        retable(&mut self.hosts, &self.records);
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        // Fire every timer on the way, in order, as the data-path thread would.
        loop {
            let next = self
                .hosts
                .iter()
                .filter_map(|(_, e)| e.poll_timeout())
                .filter(|t| *t <= end)
                .min();
            match next {
                Some(t) => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for (_, e) in &mut self.hosts {
                        if e.poll_timeout().is_some_and(|t| t <= now) {
                            e.handle_timeout(now);
                        }
                    }
                }
                None => break,
            }
        }
        self.now = end;
    }

    /// `vm` sends `frame`; what crosses the underlay is delivered; returns how many frames
    /// reached an instance.
    fn send(&mut self, vm: &Vm, frame: &[u8]) -> usize {
        self.now += Duration::from_millis(1);
        let now = self.now;
        self.out.clear();
        let host = vm.host;
        let e = &mut self.hosts.iter_mut().find(|(h, _)| *h == host).unwrap().1;
        e.handle_port_frames(now, vm.port, [frame], &mut self.out);
        let sent = Sent::from(&self.out);
        let mut n = sent.to_ports.len();
        for t in sent.to_underlay {
            self.out.clear();
            let e = &mut self
                .hosts
                .iter_mut()
                .find(|(h, _)| *h == t.dst_ip)
                .unwrap()
                .1;
            e.handle_underlay_datagrams(now, [(host, &t.payload[..])], &mut self.out);
            n += Sent::from(&self.out).to_ports.len();
        }
        n
    }

    /// Every window `vm`'s host has closed for `vm`.
    fn windows(&mut self, vm: &Vm) -> Vec<FlowWindow> {
        let e = self.engine(vm.host);
        let mut got = Vec::new();
        while let Some(w) = e.poll_flow_window() {
            if &*w.eni_id == vm.eni {
                got.push(w);
            }
        }
        got
    }
}

fn find(w: &FlowWindow, dir: FlowDirection, action: FlowAction, proto: u8) -> Vec<&FlowRecord> {
    w.records
        .iter()
        .filter(|r| r.key.direction == dir && r.key.action == action && r.key.proto == proto)
        .collect()
}

#[test]
fn pings_aggregate_into_one_record_per_direction_per_window() {
    let mut net = Net::new(seed_records());
    net.log(&VM1, &[60]);
    let start = net.now;
    for seq in 0..5 {
        assert_eq!(net.send(&VM1, &ping(&VM1, VM2.mac, VM2.ip, seq)), 1);
        net.advance(Duration::from_secs(1));
    }
    // The replies, as zigi-vm2 sends them.
    for seq in 0..5 {
        let reply = {
            let icmp = icmp_bytes(&softvpc_wire::Icmpv4Repr::EchoReply {
                ident: 7,
                seq_no: seq,
                data: &[0u8; 56],
            });
            ipv4(
                VM2.mac,
                VM1.mac,
                VM2.ip,
                VM1.ip,
                64,
                IpProtocol::Icmp,
                &icmp,
            )
        };
        assert_eq!(net.send(&VM2, &reply), 1);
    }
    // Nothing before the interval ends.
    assert!(net.windows(&VM1).is_empty());
    net.advance(MINUTE);
    let w = net.windows(&VM1);
    assert_eq!(w.len(), 1, "{w:?}");
    let w = &w[0];
    assert_eq!(w.interval, MINUTE);
    assert_eq!(w.start, start);
    assert_eq!(w.end, start + MINUTE);
    assert_eq!(w.skipped, 0);
    assert_eq!(w.records.len(), 2, "{:?}", w.records);
    let out = find(w, FlowDirection::Egress, FlowAction::Accept, 1);
    assert_eq!(out.len(), 1);
    let r = out[0];
    assert_eq!((r.key.src, r.key.dst), (VM1.ip, VM2.ip));
    assert_eq!((r.key.src_port, r.key.dst_port), (0, 0));
    assert_eq!(r.counts.packets, 5);
    assert_eq!(r.counts.bytes, 5 * 84);
    assert_eq!(r.counts.first, start + Duration::from_millis(1));
    assert_eq!(
        r.counts.last,
        start + Duration::from_secs(4) + Duration::from_millis(5)
    );
    assert_eq!(r.counts.tcp_flags, 0);
    assert!(!r.counts.peered);
    let back = find(w, FlowDirection::Ingress, FlowAction::Accept, 1);
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].key.src, back[0].key.dst), (VM2.ip, VM1.ip));
    assert_eq!(back[0].counts.packets, 5);
    // zigi-vm2 is not logged: its host hands out nothing.
    net.advance(MINUTE);
    assert!(net.windows(&VM2).is_empty());
    // The next window of zigi-vm1 saw nothing: handed out empty (NODATA).
    let w = net.windows(&VM1);
    assert_eq!(w.len(), 1);
    assert!(w[0].records.is_empty());
    assert_eq!(w[0].start, start + MINUTE);
    let stats = net.engine(HOST1).flow_log_stats();
    assert_eq!(stats.records, 2);
    assert_eq!(stats.windows, 2);
    assert_eq!(stats.lost_packets, 0);
    assert_eq!(stats.held, 0);
}

/// zigi-vm2 in `sg-web`: inbound TCP 22 from the VPC only.
fn web_on_vm2(r: &mut SeedRecords) {
    let rule = SgRule::from_aws(
        "sgr-ssh",
        "sg-web",
        Dir::Ingress,
        "tcp",
        Some(22),
        Some(22),
        Peer::Cidr("10.0.0.0/16".parse().unwrap()),
    )
    .unwrap();
    r.groups
        .insert("sg-web".into(), ("vpc-1".into(), vec![rule]));
    r.enis.get_mut(VM2.eni).unwrap().security_group_ids = vec!["sg-web".into()];
}

#[test]
fn security_group_refusals_are_reject_records_and_tcp_flags_are_ored() {
    let mut r = seed_records();
    web_on_vm2(&mut r);
    let mut net = Net::new(r);
    net.log(&VM2, &[60]);
    net.log(&VM1, &[60]);
    // An allowed connection: SYN, SYN-ACK, ACK, FIN-ACK both ways.
    assert_eq!(
        net.send(&VM1, &tcp(&VM1, VM2.mac, VM2.ip, 40000, 22, SYN)),
        1
    );
    assert_eq!(
        net.send(&VM2, &tcp(&VM2, VM1.mac, VM1.ip, 22, 40000, SYNACK)),
        1
    );
    assert_eq!(
        net.send(&VM1, &tcp(&VM1, VM2.mac, VM2.ip, 40000, 22, ACK)),
        1
    );
    assert_eq!(
        net.send(&VM1, &tcp(&VM1, VM2.mac, VM2.ip, 40000, 22, FINACK)),
        1
    );
    assert_eq!(
        net.send(&VM2, &tcp(&VM2, VM1.mac, VM1.ip, 22, 40000, FINACK)),
        1
    );
    // Refused: port 23, three tries.
    for _ in 0..3 {
        assert_eq!(
            net.send(&VM1, &tcp(&VM1, VM2.mac, VM2.ip, 40001, 23, SYN)),
            0
        );
    }
    net.advance(MINUTE);
    let w = net.windows(&VM2);
    assert_eq!(w.len(), 1);
    let w = &w[0];
    let rejected = find(w, FlowDirection::Ingress, FlowAction::Reject, 6);
    assert_eq!(rejected.len(), 1, "{:?}", w.records);
    let r = rejected[0];
    assert_eq!((r.key.src, r.key.dst), (VM1.ip, VM2.ip));
    assert_eq!((r.key.src_port, r.key.dst_port), (40001, 23));
    assert_eq!(r.counts.packets, 3);
    assert_eq!(r.counts.bytes, 3 * 40);
    assert_eq!(r.counts.tcp_flags, 2);
    let inbound = find(w, FlowDirection::Ingress, FlowAction::Accept, 6);
    assert_eq!(inbound.len(), 1);
    assert_eq!(inbound[0].counts.packets, 3);
    assert_eq!(inbound[0].counts.tcp_flags, 3, "SYN | FIN");
    let outbound = find(w, FlowDirection::Egress, FlowAction::Accept, 6);
    assert_eq!(outbound.len(), 1);
    assert_eq!(outbound[0].counts.packets, 2);
    assert_eq!(outbound[0].counts.tcp_flags, 19, "SYN-ACK | FIN");
    assert_eq!(w.records.len(), 3);
    // The sender's side: the refused packets left zigi-vm1 (its group let them out).
    let w1 = net.windows(&VM1);
    assert_eq!(w1.len(), 1);
    let out = find(&w1[0], FlowDirection::Egress, FlowAction::Accept, 6);
    assert_eq!(out.len(), 2, "{:?}", w1[0].records);
    assert!(out
        .iter()
        .any(|r| r.key.dst_port == 23 && r.counts.packets == 3));
}

#[test]
fn an_egress_refusal_is_a_reject_record_on_the_sender() {
    let mut r = seed_records();
    // zigi-vm1 in a group with no outbound rule.
    r.groups
        .insert("sg-closed".into(), ("vpc-1".into(), vec![]));
    r.enis.get_mut(VM1.eni).unwrap().security_group_ids = vec!["sg-closed".into()];
    let mut net = Net::new(r);
    net.log(&VM1, &[60]);
    for seq in 0..4 {
        assert_eq!(net.send(&VM1, &ping(&VM1, VM2.mac, VM2.ip, seq)), 0);
    }
    net.advance(MINUTE);
    let w = net.windows(&VM1);
    let rej = find(&w[0], FlowDirection::Egress, FlowAction::Reject, 1);
    assert_eq!(rej.len(), 1, "{:?}", w[0].records);
    assert_eq!(rej[0].counts.packets, 4);
    assert_eq!(w[0].records.len(), 1);
}

#[test]
fn network_acl_refusals_are_reject_records() {
    let mut r = seed_records();
    // subnet b (zigi-vm3) refuses everything inbound.
    r.acls.insert(
        "acl-deny".into(),
        (
            "vpc-1".into(),
            vec![],
            vec!["subnet-0000000000000000b".into()],
        ),
    );
    let mut net = Net::new(r);
    net.log(&VM3, &[60]);
    let router = softvpc_engine::router_mac(VNI1);
    assert_eq!(net.send(&VM1, &tcp(&VM1, router, VM3.ip, 1234, 80, SYN)), 0);
    net.advance(MINUTE);
    let w = net.windows(&VM3);
    let rej = find(&w[0], FlowDirection::Ingress, FlowAction::Reject, 6);
    assert_eq!(rej.len(), 1, "{:?}", w[0].records);
    assert_eq!(rej[0].key.dst_port, 80);
}

#[test]
fn windows_follow_the_interval_and_both_intervals_run_side_by_side() {
    let mut net = Net::new(seed_records());
    net.log(&VM1, &[60, 600]);
    let start = net.now;
    // One packet at ~10 s, two at ~70 s, one at ~130 s.
    net.advance(Duration::from_secs(10));
    net.send(&VM1, &udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 5000, 53, b"x"));
    net.advance(Duration::from_secs(60));
    net.send(
        &VM1,
        &udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 5000, 53, b"yy"),
    );
    net.send(
        &VM1,
        &udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 5000, 53, b"zzz"),
    );
    net.advance(Duration::from_secs(60));
    net.send(
        &VM1,
        &udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 5000, 53, b"zzz"),
    );
    net.advance(Duration::from_secs(600));
    let w = net.windows(&VM1);
    let minute: Vec<&FlowWindow> = w.iter().filter(|w| w.interval == MINUTE).collect();
    let ten: Vec<&FlowWindow> = w.iter().filter(|w| w.interval != MINUTE).collect();
    // 730 s: 12 one-minute windows, one ten-minute window (the second still open).
    assert_eq!(minute.len(), 12);
    assert_eq!(ten.len(), 1);
    let counts: Vec<u64> = minute
        .iter()
        .map(|w| w.records.iter().map(|r| r.counts.packets).sum())
        .collect();
    assert_eq!(counts[..4], [1, 2, 1, 0]);
    assert!(counts[4..].iter().all(|c| *c == 0));
    for (i, w) in minute.iter().enumerate() {
        assert_eq!(w.start, start + MINUTE * i as u32);
        assert_eq!(w.end, w.start + MINUTE);
    }
    assert_eq!(minute[1].records[0].counts.bytes, 2 * (20 + 8) + 5);
    assert_eq!(ten[0].start, start);
    assert_eq!(ten[0].end, start + Duration::from_secs(600));
    assert_eq!(ten[0].records.len(), 1);
    assert_eq!(ten[0].records[0].counts.packets, 4);
    assert_eq!(
        ten[0].records[0].counts.first,
        start + Duration::from_secs(10) + Duration::from_millis(1)
    );
}

#[test]
fn past_the_bound_records_are_lost_counted_and_the_window_says_skipdata() {
    let mut net = Net::new(seed_records());
    net.engine(HOST1).set_flow_log_config(FlowLogConfig {
        record_limit: 2,
        max_window: None,
    });
    net.log(&VM1, &[60]);
    for port in 0..5u16 {
        net.send(
            &VM1,
            &udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 6000 + port, 9, b"a"),
        );
    }
    // A known flow still counts.
    net.send(&VM1, &udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 6000, 9, b"a"));
    net.advance(MINUTE);
    let w = net.windows(&VM1);
    assert_eq!(w[0].records.len(), 2);
    assert_eq!(w[0].skipped, 3);
    assert_eq!(w[0].records[0].counts.packets, 2);
    assert_eq!(net.engine(HOST1).flow_log_stats().lost_packets, 3);
    // The next window starts with room again.
    net.send(&VM1, &udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 7000, 9, b"a"));
    net.advance(MINUTE);
    let w = net.windows(&VM1);
    assert_eq!((w[0].records.len(), w[0].skipped), (1, 0));
}

#[test]
fn what_aws_does_not_log_is_not_counted() {
    let mut net = Net::new(seed_records());
    net.log(&VM1, &[60]);
    let router = softvpc_engine::router_mac(VNI1);
    // Ping the subnet router, DHCP, ARP: answered by the gateway, never logged.
    net.send(&VM1, &ping(&VM1, router, Ipv4Addr::new(10, 0, 0, 1), 1));
    net.send(&VM1, &arp_request(&VM1, VM2.ip));
    net.send(
        &VM1,
        &udp(
            VM1.mac,
            BROADCAST,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            68,
            67,
            &[0u8; 240],
        ),
    );
    net.advance(MINUTE);
    let w = net.windows(&VM1);
    assert_eq!(w.len(), 1);
    assert!(w[0].records.is_empty(), "{:?}", w[0].records);
}

#[test]
fn local_delivery_counts_on_both_enis_and_test_windows_can_be_shorter() {
    let mut net = Net::new(seed_records());
    net.engine(HOST1).set_flow_log_config(FlowLogConfig {
        max_window: Some(Duration::from_secs(5)),
        ..FlowLogConfig::default()
    });
    let mut wanted = HashMap::new();
    wanted.insert(Box::<str>::from(VM1.eni), vec![MINUTE]);
    wanted.insert(Box::<str>::from(VM4.eni), vec![MINUTE]);
    net.engine(HOST1).set_flow_logs(wanted);
    assert_eq!(net.send(&VM1, &ping(&VM1, VM4.mac, VM4.ip, 1)), 1);
    net.advance(Duration::from_secs(5));
    let mut all = Vec::new();
    while let Some(w) = net.engine(HOST1).poll_flow_window() {
        all.push(w);
    }
    assert_eq!(all.len(), 2, "{all:?}");
    for w in &all {
        assert_eq!(w.interval, MINUTE, "the flow logs' interval is kept");
        assert_eq!(w.end - w.start, Duration::from_secs(5));
        assert_eq!(w.records.len(), 1);
        let r = w.records[0];
        let want = if &*w.eni_id == VM1.eni {
            FlowDirection::Egress
        } else {
            FlowDirection::Ingress
        };
        assert_eq!(r.key.direction, want);
        assert_eq!((r.key.src, r.key.dst), (VM1.ip, VM4.ip));
    }
}

#[test]
fn an_eni_no_longer_logged_hands_out_its_open_window_at_once() {
    let mut net = Net::new(seed_records());
    net.log(&VM1, &[60]);
    net.send(&VM1, &ping(&VM1, VM2.mac, VM2.ip, 1));
    net.advance(Duration::from_secs(20));
    net.wanted.clear();
    net.engine(HOST1).set_flow_logs(HashMap::new());
    let w = net.windows(&VM1);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].records.len(), 1);
    assert_eq!(w[0].end - w[0].start, Duration::from_secs(20));
    // And the ENI leaving the host does too.
    net.log(&VM1, &[60]);
    net.send(&VM1, &ping(&VM1, VM2.mac, VM2.ip, 2));
    net.update(|r| r.enis.get_mut(VM1.eni).unwrap().host_underlay_ip = None);
    let w = net.windows(&VM1);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].records.len(), 1);
    // Nothing more comes for it.
    net.advance(MINUTE * 2);
    assert!(net.windows(&VM1).is_empty());
}
