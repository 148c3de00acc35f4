//! Policy micro-benchmarks: connection-tracking hits and new connections at a table of 50,000
//! entries; prints the bytes one tracked connection costs.
//!
//! `cargo bench -p softvpc-policy --bench policy`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use softvpc_policy::conntrack::{bytes_per_entry, ConnTrack, Timeouts};
use softvpc_policy::packet::{TCP_ACK, TCP_SYN};
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

criterion_group!(benches, conntrack);
criterion_main!(benches);
