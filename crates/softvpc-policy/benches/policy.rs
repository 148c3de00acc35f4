//! Policy micro-benchmarks: connection-tracking hits and new connections at a table of 50,000
//! entries (and the bytes one tracked connection costs); security-group evaluation with 10, 100
//! and 1,000 rules, compiled vs checking every rule in turn.
//!
//! `cargo bench -p softvpc-policy --bench policy`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use softvpc_policy::conntrack::{bytes_per_entry, ConnTrack, Timeouts};
use softvpc_policy::packet::{TCP_ACK, TCP_SYN};
use softvpc_policy::secgroup::{CompiledGroups, GroupMembers, Peer, SgRule};
use softvpc_policy::{Direction, Generation, Packet};

const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

fn peer(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + i)
}

fn conntrack(c: &mut Criterion) {
    println!(
        "conntrack: {} bytes per tracked connection (key + entry with a u32 decision), plus the hash table's slack",
        bytes_per_entry::<u32>()
    );
    let t0 = Instant::now();
    let n = 50_000u32;
    let mut ct: ConnTrack<u32> = ConnTrack::new(n as usize, Timeouts::default(), t0);
    for i in 0..n {
        let p = Packet::tcp(VM, 40000 + (i % 20000) as u16, peer(i), 443, TCP_SYN);
        ct.insert(&p, Direction::Egress, t0, Generation(0), i)
            .unwrap();
    }
    let mut g = c.benchmark_group("conntrack");
    let mut i = 0u32;
    g.bench_function("hit_reply_of_50k", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            let reply = Packet::tcp(peer(i), 443, VM, 40000 + (i % 20000) as u16, TCP_ACK);
            black_box(ct.lookup(&reply, Direction::Ingress, t0).map(|h| h.reply))
        })
    });
    g.bench_function("miss_of_50k", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            let p = Packet::tcp(peer(i), 443, VM, 1, TCP_ACK);
            black_box(ct.lookup(&p, Direction::Ingress, t0).is_some())
        })
    });
    // New connections (the table is cleared whenever it reaches 50,000, so every insert adds).
    let mut fresh: ConnTrack<u32> = ConnTrack::new(n as usize, Timeouts::default(), t0);
    let mut k = 0u32;
    g.bench_function("insert_new_connection", |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            if fresh.len() >= n as usize {
                fresh.clear();
            }
            let p = Packet::udp(
                VM,
                (k % 60000) as u16,
                peer(k % n),
                u16::from(k.is_multiple_of(3)),
            );
            black_box(
                fresh
                    .insert(&p, Direction::Egress, t0, Generation(0), k)
                    .is_ok(),
            )
        })
    });
    g.finish();
}

/// `n` ingress rules in two shapes: one /32 source each (port 22), or one port each from
/// 10.0.0.0/8 (ports 1000..), plus an egress all-traffic rule.
fn rules(n: u32, by_port: bool) -> Vec<SgRule> {
    let mut v: Vec<SgRule> = (0..n)
        .map(|i| {
            let (port, cidr) = if by_port {
                (1000 + i as i32, "10.0.0.0/8".parse().unwrap())
            } else {
                (22, format!("{}/32", peer(i)).parse().unwrap())
            };
            SgRule::from_aws(
                &format!("sgr-{i}"),
                "sg-1",
                Direction::Ingress,
                "tcp",
                Some(port),
                Some(port),
                Peer::Cidr(cidr),
            )
            .unwrap()
        })
        .collect();
    v.push(
        SgRule::from_aws(
            "sgr-out",
            "sg-1",
            Direction::Egress,
            "-1",
            None,
            None,
            Peer::Cidr("0.0.0.0/0".parse().unwrap()),
        )
        .unwrap(),
    );
    v
}

fn secgroups(c: &mut Criterion) {
    let m = GroupMembers::default();
    let mut g = c.benchmark_group("secgroup");
    for n in [10u32, 100, 1000] {
        for (shape, by_port) in [("cidrs", false), ("ports", true)] {
            let rules = rules(n, by_port);
            let compiled = CompiledGroups::compile(rules.clone(), Generation(1));
            // Allowed by the last rule, and denied (no rule): the worst cases of a scan.
            let last = n - 1;
            let allowed = if by_port {
                Packet::tcp(peer(5), 40000, VM, 1000 + last as u16, TCP_SYN)
            } else {
                Packet::tcp(peer(last), 40000, VM, 22, TCP_SYN)
            };
            let denied = Packet::tcp(Ipv4Addr::new(192, 168, 1, 1), 40000, VM, 23, TCP_SYN);
            g.bench_function(format!("compiled_{shape}_{n}_allow"), |b| {
                b.iter(|| black_box(compiled.evaluate(black_box(&allowed), Direction::Ingress, &m)))
            });
            g.bench_function(format!("compiled_{shape}_{n}_deny"), |b| {
                b.iter(|| black_box(compiled.evaluate(black_box(&denied), Direction::Ingress, &m)))
            });
            g.bench_function(format!("scan_{shape}_{n}_deny"), |b| {
                b.iter(|| {
                    black_box(
                        rules
                            .iter()
                            .any(|r| r.matches(black_box(&denied), Direction::Ingress, &m)),
                    )
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, conntrack, secgroups);
criterion_main!(benches);
