//! The policy pipeline's costs, printed as figures (BENCHMARKS.md):
//!
//! - packets of established flows (flow-table hits) with 0, 100 and 1,000 security-group rules
//!   on the sending ENI: the flow table should make them equal;
//! - the first packet of a flow (the layers walked, a conntrack entry and a flow entry made),
//!   with 0, 100 and 1,000 rules, and so new flows per second on one core;
//! - memory per tracked flow (conntrack entry + flow-table entry).
//!
//! `cargo bench -p softvpc-engine --bench policy_flows`. One core, no I/O: the engine alone.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use softvpc_engine::policy::conntrack::bytes_per_entry;
use softvpc_engine::policy::firewall::Opened;
use softvpc_engine::policy::secgroup::{Peer, SgRule};
use softvpc_engine::policy::Direction;
use softvpc_engine::{
    Engine, EngineConfig, Location, MappingTable, Output, PlacedEni, PortId, Vni,
};

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 10];
const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 11];

/// `n` outbound rules (TCP port ranges to /24s of 172.16.0.0/12, none matching) plus the one
/// that allows the benchmark's flows (TCP 5201 to the VPC), and one inbound rule.
fn rules(n: usize) -> Vec<SgRule> {
    let mut v: Vec<SgRule> = (0..n)
        .map(|i| {
            let net = Ipv4Addr::new(172, 16 + (i / 256 % 16) as u8, (i % 256) as u8, 0);
            SgRule::from_aws(
                &format!("sgr-{i:05}"),
                "sg-bench",
                Direction::Egress,
                "tcp",
                Some(1000 + (i % 50) as i32),
                Some(2000 + (i % 50) as i32),
                Peer::Cidr(ipnet::Ipv4Net::new(net, 24).unwrap()),
            )
            .unwrap()
        })
        .collect();
    v.push(
        SgRule::from_aws(
            "sgr-iperf",
            "sg-bench",
            Direction::Egress,
            "tcp",
            Some(5201),
            Some(5201),
            Peer::Cidr("10.0.0.0/16".parse().unwrap()),
        )
        .unwrap(),
    );
    v
}

fn engine(rules: Option<Vec<SgRule>>) -> Engine {
    let cidr: ipnet::Ipv4Net = "10.0.0.0/16".parse().unwrap();
    let mut b = MappingTable::builder(LOCAL);
    b.host(LOCAL).host(REMOTE);
    b.vpc("vpc-1", Vni(0x101), &[cidr]);
    b.subnet("subnet-1", "vpc-1", cidr);
    let groups = if rules.is_some() {
        vec!["sg-bench".to_string()]
    } else {
        vec![]
    };
    for (id, ip, mac, location) in [
        ("eni-src", SRC, SRC_MAC, Location::Local(PortId(1))),
        ("eni-dst", DST, DST_MAC, Location::Remote(REMOTE)),
    ] {
        b.eni(
            id,
            PlacedEni {
                vpc_id: "vpc-1".into(),
                vni: Vni(0x101),
                subnet_id: "subnet-1".into(),
                ip,
                secondary_ips: vec![],
                mac,
                location,
                security_group_ids: if id == "eni-src" {
                    groups.clone()
                } else {
                    vec![]
                },
                source_dest_check: true,
                conntrack: Default::default(),
            },
        );
    }
    if let Some(rules) = rules {
        b.security_group("sg-bench", "vpc-1", rules);
    }
    let mut e = Engine::new(EngineConfig {
        conntrack_limit: 4_000_000,
        flow_table_limit: 4_000_000,
        ..EngineConfig::new(LOCAL)
    });
    e.set_table(Arc::new(b.build()));
    e
}

/// A TCP segment of `len` bytes from SRC:`sport` to DST:5201 (valid IPv4 header checksum).
fn segment(len: usize, sport: u16, flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&DST_MAC);
    f[6..12].copy_from_slice(&SRC_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&SRC.octets());
    ip[16..20].copy_from_slice(&DST.octets());
    set_checksum(&mut f[14..34]);
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = flags;
    f
}

fn set_checksum(h: &mut [u8]) {
    h[10..12].copy_from_slice(&[0, 0]);
    let mut sum = 0u32;
    for w in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Median of 5 runs of `f`, which handles `n` packets: nanoseconds per packet.
fn ns_per_packet(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let mut runs: Vec<f64> = (0..5)
        .map(|r| {
            let t = Instant::now();
            f(r);
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    runs[2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it once quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (hits_n, flows_n) = if quick {
        (10_000, 2_000)
    } else {
        (2_000_000, 200_000)
    };
    println!("policy_flows: one core, engine only (egress, VXLAN to the remote ENI)");
    for n in [None, Some(0usize), Some(100), Some(1000)] {
        let label = match n {
            None => "no groups".to_string(),
            Some(n) => format!("{n:>4} SG rules"),
        };
        // Established flow: after its first packet every packet is a flow-table hit.
        let mut e = engine(n.map(rules));
        let mut out = Output::default();
        let f = segment(1400, 40000, 0x10);
        let now = Instant::now();
        e.handle_port_frames(now, PortId(1), [&f[..]], &mut out);
        out.clear();
        let hit = ns_per_packet(hits_n, |_| {
            for _ in 0..hits_n {
                e.handle_port_frames(now, PortId(1), [black_box(&f[..])], &mut out);
                out.clear();
            }
        });
        assert!(e.counters().flow_hits() >= hits_n);
        let gbps = 1400.0 * 8.0 / hit;
        // First packets: a new flow (source port) each, with a fresh engine per run.
        let mut frames: Vec<Vec<u8>> = Vec::with_capacity(flows_n as usize);
        for i in 0..flows_n {
            let sport = 1024 + (i % 60_000) as u16;
            let mut f = segment(64, sport, 0x02);
            // Another source address per 60,000 ports (still the ENI's: a secondary would be
            // needed; vary the destination port's high bits instead by the TCP sequence).
            f[14 + 20 + 4..14 + 20 + 8].copy_from_slice(&(i as u32).to_be_bytes());
            frames.push(f);
        }
        let flows_n = flows_n.min(60_000);
        let first = ns_per_packet(flows_n, |_| {
            let mut e = engine(n.map(rules));
            let t = now + Duration::from_secs(1);
            for f in frames.iter().take(flows_n as usize) {
                e.handle_port_frames(t, PortId(1), [black_box(&f[..])], &mut out);
                out.clear();
            }
        });
        println!(
            "  {label}: established {hit:>6.1} ns/packet ({gbps:>5.1} Gbit/s of 1400 B frames), first packet {first:>6.1} ns ({:>4.2} M new flows/s)",
            1000.0 / first
        );
    }
    println!(
        "  memory per tracked flow: conntrack entry {} B + flow-table entry {} B (+ hash-table slack)",
        bytes_per_entry::<Opened>(),
        softvpc_engine::flow::bytes_per_entry()
    );
}
