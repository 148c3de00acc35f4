//! Engine micro-benchmarks: mapping lookups, egress with VXLAN encapsulation (64 B and
//! 1400 B frames), ingress decapsulation, and building a 10k-ENI table.
//!
//! `cargo bench -p softvpc-engine --bench engine`. The table is 100 VPCs x 100 ENIs that all
//! reuse the same addresses (10.0.0.10..), half on this host, half on another.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smoltcp::phy::ChecksumCapabilities;
use softvpc_engine::{
    Engine, EngineConfig, Location, MappingTable, Output, PlacedEni, PortId, Vni,
};
use softvpc_wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr, VxlanPacket, VxlanRepr,
};

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
const VPCS: u32 = 100;

fn ip_of(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 10)) + i)
}

fn mac_of(vpc: u32, i: u32) -> [u8; 6] {
    let [a, b] = (vpc as u16).to_be_bytes();
    let [c, d] = (i as u16).to_be_bytes();
    [2, 0, a, b, c, d]
}

/// What the agent feeds the table builder.
struct Input {
    vpcs: Vec<(String, Vni)>,
    subnets: Vec<(String, String)>,
    enis: Vec<(String, PlacedEni)>,
}

/// `n` ENIs over 100 VPCs; even-numbered ENIs of each VPC are local (port = ENI number).
fn records(n: u32) -> Input {
    let mut r = Input {
        vpcs: Vec::new(),
        subnets: Vec::new(),
        enis: Vec::new(),
    };
    for v in 0..VPCS {
        let vpc_id = format!("vpc-{v:017x}");
        r.vpcs.push((vpc_id.clone(), Vni(0x101 + v)));
        r.subnets.push((format!("subnet-{v:017x}"), vpc_id));
    }
    for k in 0..n {
        let (v, i) = (k % VPCS, k / VPCS);
        let local = i % 2 == 0;
        r.enis.push((
            format!("eni-{k:017x}"),
            PlacedEni {
                vpc_id: format!("vpc-{v:017x}"),
                vni: Vni(0x101 + v),
                subnet_id: format!("subnet-{v:017x}"),
                ip: ip_of(i),
                secondary_ips: vec![],
                mac: mac_of(v, i),
                location: if local {
                    Location::Local(PortId(k))
                } else {
                    Location::Remote(REMOTE)
                },
                security_group_ids: Vec::new(),
                source_dest_check: true,
                conntrack: Default::default(),
            },
        ));
    }
    r
}

/// Builds the table as the agent does: every record through the builder.
fn build(r: &Input) -> MappingTable {
    let cidr: ipnet::Ipv4Net = "10.0.0.0/16".parse().unwrap();
    let mut b = MappingTable::builder(LOCAL);
    b.host(LOCAL).host(REMOTE);
    for (id, vni) in &r.vpcs {
        b.vpc(id, *vni, &[cidr]);
    }
    for (id, vpc) in &r.subnets {
        b.subnet(id, vpc, cidr);
    }
    for (id, e) in &r.enis {
        b.eni(id, e.clone());
    }
    b.build()
}

/// A UDP frame of `len` bytes in total from ENI (vpc, i) to ENI (vpc, j), bridged.
fn frame(len: usize, vpc: u32, i: u32, j: u32) -> Vec<u8> {
    let payload_len = len - 14 - 20 - 8;
    let ip = Ipv4Repr {
        src_addr: ip_of(i),
        dst_addr: ip_of(j),
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload_len,
        hop_limit: 64,
    };
    let mut buf = vec![0u8; len];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: EthernetAddress(mac_of(vpc, i)),
        dst_addr: EthernetAddress(mac_of(vpc, j)),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let caps = ChecksumCapabilities::default();
    let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut packet, &caps);
    UdpRepr {
        src_port: 40000,
        dst_port: 5201,
    }
    .emit(
        &mut UdpPacket::new_unchecked(packet.payload_mut()),
        &IpAddress::Ipv4(ip.src_addr),
        &IpAddress::Ipv4(ip.dst_addr),
        payload_len,
        |p| p.fill(0xab),
        &caps,
    );
    buf
}

fn benches(c: &mut Criterion) {
    let recs = records(10_000);
    let table = Arc::new(build(&recs));

    let mut g = c.benchmark_group("table");
    g.bench_function("build_10k_enis", |b| b.iter(|| build(black_box(&recs))));
    let keys: Vec<(Vni, Ipv4Addr)> = (0..1024u32)
        .map(|k| (Vni(0x101 + k % VPCS), ip_of(k % 100)))
        .collect();
    let mut n = 0usize;
    g.bench_function("eni_by_ip", |b| {
        b.iter(|| {
            n = (n + 1) & 1023;
            let (vni, ip) = keys[n];
            black_box(table.eni_by_ip(black_box(vni), black_box(ip)).is_some())
        })
    });
    g.bench_function("eni_on_port", |b| {
        b.iter(|| {
            n = (n + 1) & 1023;
            black_box(table.eni_on_port(black_box(PortId((n as u32 * 200) % 10_000))))
        })
    });
    g.finish();

    let mut engine = Engine::new(EngineConfig::new(LOCAL));
    engine.set_table(table.clone());
    let now = Instant::now();
    let mut out = Output::default();

    let mut g = c.benchmark_group("egress_encap");
    for len in [64usize, 1400] {
        // VPC 7: ENI 0 (local, port 7) -> ENI 1 (remote).
        let f = frame(len, 7, 0, 1);
        let port = PortId(7);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("{len}B"), |b| {
            b.iter(|| {
                engine.handle_port_frames(now, port, [black_box(&f[..])], &mut out);
                assert_eq!(out.transmits().len(), 1);
                out.clear();
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("ingress_decap");
    for len in [64usize, 1400] {
        // From the remote ENI 1 to the local ENI 0 of VPC 7.
        let inner = frame(len, 7, 1, 0);
        let mut dgram = vec![0u8; 8 + len];
        VxlanRepr { vni: 0x101 + 7 }.emit(&mut VxlanPacket::new_unchecked(&mut dgram[..]));
        dgram[8..].copy_from_slice(&inner);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("{len}B"), |b| {
            b.iter(|| {
                engine.handle_underlay_datagrams(now, [(REMOTE, black_box(&dgram[..]))], &mut out);
                assert_eq!(out.to_ports().len(), 1);
                out.clear();
            })
        });
    }
    g.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
