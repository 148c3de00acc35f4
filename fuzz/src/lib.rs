//! The engine fuzz targets' bodies ([`port_frames`], [`underlay`]) and what they share: the
//! fixed topology they run against, how an input is cut into a batch, the output invariants.
//! The bodies live here so `cargo test` (in `fuzz/`) can check the seeds in `seeds/` really
//! reach the engine's delivery paths.
//!
//! Topology (host-1's view, as in the seed): VPC 1 (VNI 0x000101, 10.0.0.0/16, subnets
//! 10.0.0.0/24 and 10.0.1.0/24) and VPC 2 (VNI 0x000102, 10.0.0.0/16 again: overlapping), one
//! remote host (host-2, 198.18.0.12). Local ENIs: vm1 (VPC 1, port 1) and other1 (VPC 2, same
//! IP as vm1, port 11). Remote ENIs: vm2 (VPC 1, with a secondary IP), vm3 (VPC 1, other
//! subnet), other2 (VPC 2).

use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// The engines' time: one instant, read once per process (the targets need no clock).
fn now() -> Instant {
    static NOW: OnceLock<Instant> = OnceLock::new();
    *NOW.get_or_init(Instant::now)
}

/// The frames of an output, owned.
pub fn port_frames_of(out: &Output) -> Vec<(PortId, Vec<u8>)> {
    out.to_ports().map(|(p, f)| (p, f.to_vec())).collect()
}

/// The datagrams of an output, owned: (destination, source port, payload).
pub fn transmits_of(out: &Output) -> Vec<(Ipv4Addr, u16, Vec<u8>)> {
    out.transmits()
        .map(|t| (t.dst_ip, t.src_port, t.payload.to_vec()))
        .collect()
}

use softvpc_engine::{
    router_mac, Engine, EngineConfig, Location, Mac, MappingTable, Output, PlacedEni, PortId, Vni,
};
use softvpc_wire::{VxlanPacket, VxlanRepr, VXLAN_HEADER_LEN};

pub const HOST1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
pub const HOST2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
/// An underlay address no host has.
pub const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 99);
pub const VNI1: Vni = Vni(0x000101);
pub const VNI2: Vni = Vni(0x000102);
/// A VNI no VPC has.
pub const VNI_UNKNOWN: Vni = Vni(0x00beef);
/// A port the engine was never told about.
pub const PORT_UNKNOWN: PortId = PortId(999);

/// One ENI of the fixed topology.
#[derive(Debug, Clone, Copy)]
pub struct Eni {
    pub id: &'static str,
    pub vni: Vni,
    pub subnet: &'static str,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub host: Ipv4Addr,
    pub secondary: Option<Ipv4Addr>,
    /// The ENI's port on its own host.
    pub port: PortId,
}

pub const ENIS: [Eni; 5] = [
    Eni {
        id: "eni-00000000000000001",
        vni: VNI1,
        subnet: "subnet-0000000000000000a",
        ip: Ipv4Addr::new(10, 0, 0, 148),
        mac: [0x02, 0, 0, 0, 0x01, 0x01],
        host: HOST1,
        secondary: None,
        port: PortId(1),
    },
    Eni {
        id: "eni-00000000000000002",
        vni: VNI1,
        subnet: "subnet-0000000000000000a",
        ip: Ipv4Addr::new(10, 0, 0, 185),
        mac: [0x02, 0, 0, 0, 0x01, 0x02],
        host: HOST2,
        secondary: Some(Ipv4Addr::new(10, 0, 0, 200)),
        port: PortId(2),
    },
    Eni {
        id: "eni-00000000000000003",
        vni: VNI1,
        subnet: "subnet-0000000000000000b",
        ip: Ipv4Addr::new(10, 0, 1, 20),
        mac: [0x02, 0, 0, 0, 0x01, 0x03],
        host: HOST2,
        secondary: None,
        port: PortId(3),
    },
    Eni {
        id: "eni-00000000000000011",
        vni: VNI2,
        subnet: "subnet-0000000000000000c",
        ip: Ipv4Addr::new(10, 0, 0, 148),
        mac: [0x02, 0, 0, 0, 0x02, 0x01],
        host: HOST1,
        secondary: None,
        port: PortId(11),
    },
    Eni {
        id: "eni-00000000000000012",
        vni: VNI2,
        subnet: "subnet-0000000000000000c",
        ip: Ipv4Addr::new(10, 0, 0, 185),
        mac: [0x02, 0, 0, 0, 0x02, 0x02],
        host: HOST2,
        secondary: None,
        port: PortId(12),
    },
];

/// The ENIs on `host`.
pub fn enis_on(host: Ipv4Addr) -> impl Iterator<Item = &'static Eni> {
    ENIS.iter().filter(move |e| e.host == host)
}

/// The local ENIs (those on host-1, where the targets run).
pub fn local_enis() -> impl Iterator<Item = &'static Eni> {
    enis_on(HOST1)
}

/// The mapping table of the fixed topology as `host` sees it (its ENIs local on their ports,
/// the others remote).
pub fn table(host: Ipv4Addr) -> MappingTable {
    let mut b = MappingTable::builder(host);
    b.host(HOST1).host(HOST2);
    let vpc16 = ipnet::Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 16).expect("valid prefix");
    for (id, vni) in [("vpc-1", VNI1), ("vpc-2", VNI2)] {
        b.vpc(id, vni, &[vpc16]);
    }
    for (id, vpc, net) in [
        (
            "subnet-0000000000000000a",
            "vpc-1",
            Ipv4Addr::new(10, 0, 0, 0),
        ),
        (
            "subnet-0000000000000000b",
            "vpc-1",
            Ipv4Addr::new(10, 0, 1, 0),
        ),
        (
            "subnet-0000000000000000c",
            "vpc-2",
            Ipv4Addr::new(10, 0, 0, 0),
        ),
    ] {
        b.subnet(id, vpc, ipnet::Ipv4Net::new(net, 24).expect("valid prefix"));
    }
    for e in ENIS {
        b.eni(
            e.id,
            PlacedEni {
                vpc_id: if e.vni == VNI1 { "vpc-1" } else { "vpc-2" }.into(),
                vni: e.vni,
                subnet_id: e.subnet.into(),
                ip: e.ip,
                secondary_ips: e.secondary.into_iter().collect(),
                mac: e.mac,
                location: if e.host == host {
                    Location::Local(e.port)
                } else {
                    Location::Remote(e.host)
                },
                security_group_ids: Vec::new(),
                source_dest_check: true,
                conntrack: Default::default(),
            },
        );
    }
    b.build()
}

/// A fresh engine for host-1 with the fixed topology.
pub fn engine() -> Engine {
    engine_for(HOST1)
}

/// A fresh engine for `host` (host-1 or host-2) with the fixed topology. Tables are built once
/// per process (they are immutable), so each fuzz input pays only for the engine itself.
pub fn engine_for(host: Ipv4Addr) -> Engine {
    static TABLES: OnceLock<[Arc<MappingTable>; 2]> = OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        [HOST1, HOST2].map(|h| {
            Arc::new(table(h))
        })
    });
    let table = if host == HOST1 {
        &tables[0]
    } else {
        &tables[1]
    };
    let mut engine = Engine::new(EngineConfig::new(host));
    engine.set_table(Arc::clone(table));
    engine
}

/// Cuts `data` into at most `max` frames, each prefixed by a big-endian u16 length (a length
/// past the end takes what is left). Frames are bounded by the input, so is the batch.
pub fn split_frames(mut data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while frames.len() < max && data.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]])).min(data.len() - 2);
        frames.push(&data[2..2 + len]);
        data = &data[2 + len..];
    }
    frames
}

/// Recomputes the IPv4 header checksum of an Ethernet frame in place, if it holds a whole IPv4
/// header, so that fuzzed frames get past the engine's checksum check.
pub fn fix_ipv4_checksum(frame: &mut [u8]) {
    if frame.len() < 14 || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ip = &mut frame[14..];
    let Some(&ver_ihl) = ip.first() else { return };
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ihl < 20 || ip.len() < ihl {
        return;
    }
    ip[10] = 0;
    ip[11] = 0;
    let mut sum: u32 = ip[..ihl]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Checks what any batch may produce, whatever went in: at most one output per input (every
/// input ends in exactly one verdict), frames only to known local ports and well-formed
/// Ethernet, datagrams only to a registered host, never to ourselves, with a valid VXLAN
/// header of a known VNI and a source port in the RFC 7348 range.
pub fn check_output(inputs: usize, out: &Output) {
    assert!(
        out.to_ports().len() + out.transmits().len() <= inputs,
        "{} inputs gave {} + {} outputs",
        inputs,
        out.to_ports().len(),
        out.transmits().len()
    );
    for (port, frame) in out.to_ports() {
        assert!(
            local_enis().any(|e| e.port == port),
            "frame to unknown port {port:?}"
        );
        assert!(
            softvpc_wire::EthernetFrame::new_checked(&frame[..]).is_ok(),
            "short frame to {port:?}"
        );
    }
    for t in out.transmits() {
        assert_eq!(t.dst_ip, HOST2, "transmit to a host that has no remote ENI");
        assert_eq!(t.dst_port, softvpc_wire::VXLAN_UDP_PORT);
        assert!(t.src_port >= softvpc_wire::VXLAN_SOURCE_PORT_MIN);
        let vx = softvpc_wire::VxlanPacket::new_checked(&t.payload[..]).expect("VXLAN header");
        let repr = softvpc_wire::VxlanRepr::parse(&vx).expect("I flag set");
        assert!(
            repr.vni == VNI1.0 || repr.vni == VNI2.0,
            "unknown VNI {:#x}",
            repr.vni
        );
        assert!(vx.reserved_bits_clear());
        assert!(softvpc_wire::EthernetFrame::new_checked(vx.payload()).is_ok());
    }
}

/// Checks isolation: everything a batch from VPC `vni` produced stays in VPC `vni` (frames only
/// to ports of that VPC's ENIs, datagrams only with that VNI).
pub fn check_isolation(vni: Vni, out: &Output) {
    for (port, _) in out.to_ports() {
        let eni = local_enis().find(|e| e.port == port);
        assert_eq!(
            eni.map(|e| e.vni),
            Some(vni),
            "a frame from VNI {vni:?} reached port {port:?} of another VPC"
        );
    }
    for t in out.transmits() {
        let vx = softvpc_wire::VxlanPacket::new_checked(t.payload).expect("VXLAN header");
        assert_eq!(
            vx.vni(),
            vni.0,
            "a frame from VNI {vni:?} left with another VNI"
        );
    }
}

/// Checks the two ends agree: every datagram host-1 sends, host-2's engine delivers, to the
/// port of the ENI whose MAC the inner frame is addressed to, byte for byte. (A datagram the
/// receiver refuses is bandwidth spent on a packet that was always going to be dropped, or a
/// frame mangled on the way: either is a bug of the sender or the receiver.)
pub fn check_remote_accepts(out: &Output) {
    let mut host2 = engine_for(HOST2);
    for t in out.transmits() {
        let mut got = Output::default();
        host2.handle_underlay_datagrams(now(), [(HOST1, &t.payload[..])], &mut got);
        let inner = &t.payload[VXLAN_HEADER_LEN..];
        let dst_mac = &inner[..6];
        let target = enis_on(HOST2).find(|e| e.mac == dst_mac);
        let expected = target.map(|e| (e.port, inner.to_vec()));
        assert_eq!(
            port_frames_of(&got).first().cloned(),
            expected,
            "host-2 did not deliver what host-1 sent: {:?} (counters {:?})",
            softvpc_wire::dissect(inner, &softvpc_wire::ChecksumCapabilities::default()),
            host2.counters()
        );
        assert_eq!(got.transmits().len(), 0);
    }
}

/// The `engine_port_frames` target: a batch of arbitrary frames from one local port of host-1,
/// then the output invariants, VPC isolation, and batch == one frame at a time. Returns the
/// batch's output.
///
/// Input: byte 0 picks the port (vm1, other1, or an unknown port); byte 1 holds fix-ups that
/// help the fuzzer past the checks it cannot guess (bit 0: source MAC := the ENI's, bit 1:
/// IPv4 source := the ENI's, bit 2: destination MAC := the VPC router's, bit 3: recompute the
/// IPv4 header checksum); the rest is frames, each behind a big-endian u16 length.
pub fn port_frames(data: &[u8]) -> Output {
    let [selector, fixups, rest @ ..] = data else {
        return Output::default();
    };
    let locals: Vec<_> = local_enis().collect();
    let eni = locals
        .get(usize::from(*selector) % (locals.len() + 1))
        .copied();
    let port = eni.map(|e| e.port).unwrap_or(PORT_UNKNOWN);

    let frames: Vec<Vec<u8>> = split_frames(rest, 64)
        .into_iter()
        .map(|f| {
            let mut f = f.to_vec();
            if let Some(e) = eni {
                if fixups & 1 != 0 && f.len() >= 12 {
                    f[6..12].copy_from_slice(&e.mac);
                }
                if fixups & 2 != 0 && f.len() >= 30 {
                    f[26..30].copy_from_slice(&e.ip.octets());
                }
                if fixups & 4 != 0 && f.len() >= 6 {
                    f[0..6].copy_from_slice(&router_mac(e.vni));
                }
            }
            if fixups & 8 != 0 {
                fix_ipv4_checksum(&mut f);
            }
            f
        })
        .collect();

    let mut engine = self::engine();
    let mut out = Output::default();
    engine.handle_port_frames(
        now(),
        port,
        frames.iter().map(|f| &f[..]),
        &mut out,
    );
    check_output(frames.len(), &out);
    match eni {
        Some(e) => check_isolation(e.vni, &out),
        None => assert!(out.is_empty(), "frames from an unknown port were forwarded"),
    }
    // A batch is only a sequence: one frame at a time gives the same outputs.
    let mut engine = self::engine();
    let mut single = Output::default();
    for f in &frames {
        engine.handle_port_frames(now(), port, [&f[..]], &mut single);
    }
    assert_eq!(
        port_frames_of(&single),
        port_frames_of(&out),
        "batch and one-by-one differ"
    );
    assert_eq!(
        transmits_of(&single),
        transmits_of(&out),
        "batch and one-by-one differ"
    );
    // A trace runs the data path's code: one frame at a time, it writes the same outputs.
    let engine = self::engine();
    let mut traced = Output::default();
    for f in &frames {
        let _ = engine.trace_port_frame(port, f, &mut traced);
    }
    assert_eq!(traced, single, "trace and data path differ");
    check_remote_accepts(&out);
    out
}

/// The `engine_underlay` target: a batch of arbitrary UDP payloads arriving on host-1's VXLAN
/// port, then the output invariants, batch == one at a time, and that a frame is only
/// delivered to an ENI of the VPC its VNI names. Returns the batch's output.
///
/// Input: byte 0 picks the outer source (host-2, host-1 itself, or an unregistered address);
/// byte 1 holds fix-ups that help the fuzzer past the checks it cannot guess (bit 0: prepend a
/// valid VXLAN header with the VNI byte 2 picks: VPC 1, VPC 2 or unknown; bit 1: inner
/// destination MAC := a local ENI's (byte 2 picks which); bit 2: inner IPv4 destination := that
/// ENI's; bit 3: recompute the inner IPv4 header checksum); the rest is datagrams, each behind
/// a big-endian u16 length.
pub fn underlay(data: &[u8]) -> Output {
    let [src_sel, fixups, target_sel, rest @ ..] = data else {
        return Output::default();
    };
    let src = [HOST2, HOST1, STRANGER][usize::from(*src_sel) % 3];
    let prepend_vni = [VNI1, VNI2, VNI_UNKNOWN][usize::from(*target_sel) % 3];
    let locals: Vec<_> = local_enis().collect();
    let target = locals[usize::from(*target_sel) % locals.len()];

    let datagrams: Vec<Vec<u8>> = split_frames(rest, 64)
        .into_iter()
        .map(|d| {
            let mut v = Vec::with_capacity(VXLAN_HEADER_LEN + d.len());
            if fixups & 1 != 0 {
                v.resize(VXLAN_HEADER_LEN, 0);
                VxlanRepr { vni: prepend_vni.0 }.emit(&mut VxlanPacket::new_unchecked(&mut v[..]));
            }
            v.extend_from_slice(d);
            // Offsets of the inner frame, whether or not a header was prepended.
            let at = VXLAN_HEADER_LEN.min(v.len());
            let inner = &mut v[at..];
            if fixups & 2 != 0 && inner.len() >= 6 {
                inner[0..6].copy_from_slice(&target.mac);
            }
            if fixups & 4 != 0 && inner.len() >= 34 {
                inner[30..34].copy_from_slice(&target.ip.octets());
            }
            if fixups & 8 != 0 {
                fix_ipv4_checksum(inner);
            }
            v
        })
        .collect();

    let mut engine = self::engine();
    let mut out = Output::default();
    engine.handle_underlay_datagrams(
        now(),
        datagrams.iter().map(|d| (src, &d[..])),
        &mut out,
    );
    check_output(datagrams.len(), &out);
    assert_eq!(
        out.transmits().len(),
        0,
        "decapsulated traffic was sent back out"
    );
    if src == STRANGER {
        assert!(out.is_empty(), "accepted VXLAN from an unregistered host");
    }
    // One at a time on a fresh engine: the same outputs as the batch (a batch is only a
    // sequence), and each output can be traced to its datagram to check isolation: a frame is
    // delivered only to an ENI of the VPC its VNI names.
    let mut engine = self::engine();
    let mut to_ports = Vec::new();
    for d in &datagrams {
        let mut single = Output::default();
        engine.handle_underlay_datagrams(now(), [(src, &d[..])], &mut single);
        if !single.is_empty() {
            let vx = VxlanPacket::new_checked(&d[..]).expect("only VXLAN is delivered");
            check_isolation(softvpc_engine::Vni(vx.vni()), &single);
        }
        to_ports.append(&mut port_frames_of(&single));
    }
    assert_eq!(to_ports, port_frames_of(&out), "batch and one-by-one differ");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("seeds")
            .join(target);
        let mut v: Vec<_> = std::fs::read_dir(&dir)
            .expect("seeds dir")
            .map(|e| std::fs::read(e.expect("entry").path()).expect("seed"))
            .collect();
        v.sort();
        assert!(!v.is_empty(), "no seeds for {target}");
        v
    }

    /// The seeds are what the fuzzer starts from: each must get frames through the engine
    /// (not just dropped), or the invariants would only ever be checked on empty outputs.
    #[test]
    fn port_frame_seeds_reach_both_outputs() {
        let (mut local, mut remote) = (0, 0);
        for seed in seeds("engine_port_frames") {
            let out = port_frames(&seed);
            assert!(!out.is_empty(), "seed produced nothing");
            local += out.to_ports().len();
            remote += out.transmits().len();
        }
        assert!(local > 0 && remote > 0, "local {local}, remote {remote}");
    }

    #[test]
    fn underlay_seeds_are_delivered() {
        for seed in seeds("engine_underlay") {
            assert_eq!(underlay(&seed).to_ports().len(), 1);
        }
    }

    #[test]
    fn split_frames_is_bounded() {
        assert_eq!(
            split_frames(&[0, 2, 7, 8, 0, 9, 1], 8),
            [&[7, 8][..], &[1][..]]
        );
        assert_eq!(split_frames(&[0, 0, 0, 0, 0, 0], 2).len(), 2);
        assert!(split_frames(&[5], 8).is_empty());
    }
}
