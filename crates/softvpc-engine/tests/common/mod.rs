//! Shared test fixtures: the seed topology as mapping records, and frame builders/parsers
//! written with smoltcp's `Repr::emit` / `parse` (never with the engine's own code).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use smoltcp::phy::ChecksumCapabilities;
#[allow(unused_imports)]
pub use softvpc_engine::policy::conntrack::ConnectionTrackingSpec;
#[allow(unused_imports)]
pub use softvpc_engine::policy::nacl::AclEntry;
#[allow(unused_imports)]
pub use softvpc_engine::policy::route::{Route, RouteState, Target};
#[allow(unused_imports)]
pub use softvpc_engine::policy::secgroup::{Peer, SgRule};
use softvpc_engine::{
    Engine, EngineConfig, Location, Mac, MappingTable, Output, PlacedEni, PortId, Transmit, Vni,
};
use softvpc_wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr,
    TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr, VxlanPacket, VxlanRepr,
};

pub const HOST1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
pub const HOST2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
pub const VNI1: Vni = Vni(0x000101);
pub const VNI2: Vni = Vni(0x000102);
pub const ROUTER1: Mac = [0x0a, 0x56, 0x50, 0x00, 0x01, 0x01];
pub const ROUTER2: Mac = [0x0a, 0x56, 0x50, 0x00, 0x01, 0x02];
pub const BROADCAST: Mac = [0xff; 6];

/// One ENI of the seed topology.
#[derive(Debug, Clone, Copy)]
pub struct Vm {
    pub name: &'static str,
    pub eni: &'static str,
    pub vni: Vni,
    pub subnet: &'static str,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub host: Ipv4Addr,
    pub port: PortId,
}

pub const VM1: Vm = Vm {
    name: "zigi-vm1",
    eni: "eni-00000000000000001",
    vni: VNI1,
    subnet: "subnet-0000000000000000a",
    ip: Ipv4Addr::new(10, 0, 0, 148),
    mac: [0x02, 0, 0, 0, 0x01, 0x01],
    host: HOST1,
    port: PortId(1),
};
pub const VM2: Vm = Vm {
    name: "zigi-vm2",
    eni: "eni-00000000000000002",
    vni: VNI1,
    subnet: "subnet-0000000000000000a",
    ip: Ipv4Addr::new(10, 0, 0, 185),
    mac: [0x02, 0, 0, 0, 0x01, 0x02],
    host: HOST2,
    port: PortId(2),
};
pub const VM3: Vm = Vm {
    name: "zigi-vm3",
    eni: "eni-00000000000000003",
    vni: VNI1,
    subnet: "subnet-0000000000000000b",
    ip: Ipv4Addr::new(10, 0, 1, 20),
    mac: [0x02, 0, 0, 0, 0x01, 0x03],
    host: HOST2,
    port: PortId(3),
};
pub const VM4: Vm = Vm {
    name: "zigi-vm4",
    eni: "eni-00000000000000004",
    vni: VNI1,
    subnet: "subnet-0000000000000000a",
    ip: Ipv4Addr::new(10, 0, 0, 30),
    mac: [0x02, 0, 0, 0, 0x01, 0x04],
    host: HOST1,
    port: PortId(4),
};
pub const OTHER1: Vm = Vm {
    name: "other-vm1",
    eni: "eni-00000000000000011",
    vni: VNI2,
    subnet: "subnet-0000000000000000c",
    ip: Ipv4Addr::new(10, 0, 0, 148),
    mac: [0x02, 0, 0, 0, 0x02, 0x01],
    host: HOST1,
    port: PortId(11),
};
pub const OTHER2: Vm = Vm {
    name: "other-vm2",
    eni: "eni-00000000000000012",
    vni: VNI2,
    subnet: "subnet-0000000000000000c",
    ip: Ipv4Addr::new(10, 0, 0, 185),
    mac: [0x02, 0, 0, 0, 0x02, 0x02],
    host: HOST2,
    port: PortId(12),
};
pub const ALL_VMS: [Vm; 6] = [VM1, VM2, VM3, VM4, OTHER1, OTHER2];

/// A secondary address of zigi-vm2.
pub const VM2_SECONDARY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);

/// What the agent hands the table builder, as a plain set the tests can edit.
#[derive(Debug, Clone, Default)]
pub struct SeedRecords {
    pub hosts: Vec<Ipv4Addr>,
    pub vpcs: BTreeMap<String, (Vni, Ipv4Net)>,
    pub subnets: BTreeMap<String, (String, Ipv4Net)>,
    pub enis: BTreeMap<String, SeedEni>,
    /// Security groups: id -> (VPC, rules).
    pub groups: BTreeMap<String, (String, Vec<SgRule>)>,
    /// Extra group members (group, address).
    pub members: Vec<(String, Ipv4Addr)>,
    /// Network ACLs: id -> (VPC, entries, subnets).
    pub acls: BTreeMap<String, (String, Vec<AclEntry>, Vec<String>)>,
    /// Route tables: id -> (VPC, main, routes, subnets).
    pub route_tables: BTreeMap<String, (String, bool, Vec<Route>, Vec<String>)>,
    /// Peering connections: id -> (requester VPC, accepter VPC, active).
    pub peerings: BTreeMap<String, (String, String, bool)>,
    /// Managed prefix lists: id -> entries.
    pub prefix_lists: BTreeMap<String, Vec<Ipv4Net>>,
    /// Prefix list routes: (route table, list, target, state).
    pub list_routes: Vec<(String, String, Target, RouteState)>,
    /// Public addresses: (ENI, public, private).
    pub public: Vec<(String, Ipv4Addr, Ipv4Addr)>,
    /// NAT gateways: (gateway, its ENI).
    pub nat_gateways: Vec<(String, String)>,
    /// VPC services (DNS attributes, DHCP option set): id -> services.
    pub services: BTreeMap<String, softvpc_engine::VpcServices>,
}

/// One ENI of [`SeedRecords`]: `host_underlay_ip` None means placed nowhere.
#[derive(Debug, Clone)]
pub struct SeedEni {
    pub eni_id: String,
    pub vpc_id: String,
    pub vni: Vni,
    pub subnet_id: String,
    pub ip: Ipv4Addr,
    pub secondary_ips: Vec<Ipv4Addr>,
    pub mac: Mac,
    pub host_underlay_ip: Option<Ipv4Addr>,
    pub security_group_ids: Vec<String>,
    pub source_dest_check: bool,
    pub conntrack: ConnectionTrackingSpec,
}

/// The seed topology of issue 2 (plus one secondary address on zigi-vm2).
pub fn seed_records() -> SeedRecords {
    let mut r = SeedRecords {
        hosts: vec![HOST1, HOST2],
        ..Default::default()
    };
    for (id, vni) in [("vpc-1", VNI1), ("vpc-2", VNI2)] {
        r.vpcs
            .insert(id.into(), (vni, "10.0.0.0/16".parse().unwrap()));
    }
    for (id, vpc, cidr) in [
        ("subnet-0000000000000000a", "vpc-1", "10.0.0.0/24"),
        ("subnet-0000000000000000b", "vpc-1", "10.0.1.0/24"),
        ("subnet-0000000000000000c", "vpc-2", "10.0.0.0/24"),
    ] {
        r.subnets
            .insert(id.into(), (vpc.into(), cidr.parse().unwrap()));
    }
    for vm in ALL_VMS {
        r.enis.insert(vm.eni.into(), eni_info(&vm));
    }
    r.enis
        .get_mut(VM2.eni)
        .unwrap()
        .secondary_ips
        .push(VM2_SECONDARY);
    r
}

pub fn eni_info(vm: &Vm) -> SeedEni {
    SeedEni {
        eni_id: vm.eni.into(),
        vpc_id: if vm.vni == VNI1 { "vpc-1" } else { "vpc-2" }.into(),
        vni: vm.vni,
        subnet_id: vm.subnet.into(),
        ip: vm.ip,
        secondary_ips: vec![],
        mac: vm.mac,
        host_underlay_ip: Some(vm.host),
        security_group_ids: vec![],
        source_dest_check: true,
        conntrack: Default::default(),
    }
}

/// The table of `host` (as the agent builds it): an ENI is local behind its port, remote on
/// its host, or absent (placed nowhere, or local without a port yet).
pub fn table(r: &SeedRecords, host: Ipv4Addr, ports: &HashMap<String, PortId>) -> MappingTable {
    let mut b = MappingTable::builder(host);
    for h in &r.hosts {
        b.host(*h);
    }
    for (id, (vni, cidr)) in &r.vpcs {
        b.vpc(id, *vni, &[*cidr]);
    }
    for (id, (vpc, cidr)) in &r.subnets {
        b.subnet(id, vpc, *cidr);
    }
    for e in r.enis.values() {
        let location = match e.host_underlay_ip {
            None => continue,
            Some(ip) if ip == host => match ports.get(&e.eni_id) {
                Some(&p) => Location::Local(p),
                None => continue,
            },
            Some(ip) => Location::Remote(ip),
        };
        b.eni(
            &e.eni_id,
            PlacedEni {
                vpc_id: e.vpc_id.clone(),
                vni: e.vni,
                subnet_id: e.subnet_id.clone(),
                ip: e.ip,
                secondary_ips: e.secondary_ips.clone(),
                mac: e.mac,
                location,
                security_group_ids: e.security_group_ids.clone(),
                source_dest_check: e.source_dest_check,
                conntrack: e.conntrack,
            },
        );
    }
    for (id, (vpc, rules)) in &r.groups {
        b.security_group(id, vpc, rules.clone());
    }
    for (g, ip) in &r.members {
        b.group_member(g, *ip);
    }
    for (id, (vpc, entries, subnets)) in &r.acls {
        let subnets: Vec<&str> = subnets.iter().map(String::as_str).collect();
        b.network_acl(id, vpc, entries.clone(), &subnets);
    }
    for (id, (vpc, main, routes, subnets)) in &r.route_tables {
        let subnets: Vec<&str> = subnets.iter().map(String::as_str).collect();
        b.route_table(id, vpc, *main, routes.clone(), &subnets);
    }
    for (id, (req, acc, active)) in &r.peerings {
        b.peering(id, req, acc, *active);
    }
    for (table, list, target, state) in &r.list_routes {
        b.prefix_list_route(table, list, target.clone(), *state);
    }
    for (id, cidrs) in &r.prefix_lists {
        b.prefix_list(id, cidrs);
    }
    for (eni, public, private) in &r.public {
        b.public_address(eni, *public, *private);
    }
    for (nat, eni) in &r.nat_gateways {
        b.nat_gateway(nat, eni);
    }
    for (id, services) in &r.services {
        b.vpc_services(id, services.clone());
    }
    b.build()
}

/// The ports map of a host: every seed ENI placed there, on its port.
pub fn ports_of(host: Ipv4Addr) -> HashMap<String, PortId> {
    ALL_VMS
        .iter()
        .filter(|vm| vm.host == host)
        .map(|vm| (vm.eni.to_string(), vm.port))
        .collect()
}

/// The seed's two hosts, each an engine made from `config` and holding its table of `records`:
/// the start of every two-host simulation.
pub fn seed_hosts(
    records: &SeedRecords,
    config: impl Fn(EngineConfig) -> EngineConfig,
) -> Vec<(Ipv4Addr, Engine)> {
    [HOST1, HOST2]
        .into_iter()
        .map(|h| {
            let mut e = Engine::new(config(EngineConfig::new(h)));
            e.set_table(Arc::new(table(records, h, &ports_of(h))));
            (h, e)
        })
        .collect()
}

/// A policy or mapping change: every host gets the table of the new `records`.
pub fn retable(hosts: &mut [(Ipv4Addr, Engine)], records: &SeedRecords) {
    for (h, e) in hosts {
        e.set_table(Arc::new(table(records, *h, &ports_of(*h))));
    }
}

/// An engine for `host` with the seed table.
pub fn seed_engine(host: Ipv4Addr) -> Engine {
    engine_with(host, &seed_records())
}

pub fn engine_with(host: Ipv4Addr, records: &SeedRecords) -> Engine {
    let mut engine = Engine::new(EngineConfig::new(host));
    engine.set_table(Arc::new(table(records, host, &ports_of(host))));
    engine
}

// ---- virtual time ------------------------------------------------------------------------

/// The origin of virtual time: the one wall-clock reading of a test process (an `Instant` can
/// only be had from the clock). Tests then move time themselves, as quinn-proto's `Pair` does:
/// the engine never sees the wall clock.
pub fn t0() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `t0() + ms` milliseconds.
pub fn at_ms(ms: u64) -> Instant {
    t0() + Duration::from_millis(ms)
}

// ---- what an engine sent -----------------------------------------------------------------

/// An owned copy of one datagram of an [`Output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentTransmit {
    pub dst_ip: Ipv4Addr,
    pub dst_port: u16,
    pub src_port: u16,
    pub payload: Vec<u8>,
}

impl From<Transmit<'_>> for SentTransmit {
    fn from(t: Transmit<'_>) -> Self {
        SentTransmit {
            dst_ip: t.dst_ip,
            dst_port: t.dst_port,
            src_port: t.src_port,
            payload: t.payload.to_vec(),
        }
    }
}

/// An owned copy of an [`Output`] (tests keep outputs around; the engine writes into the
/// shell's buffers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    pub to_ports: Vec<(PortId, Vec<u8>)>,
    pub to_underlay: Vec<SentTransmit>,
}

impl Sent {
    pub fn is_empty(&self) -> bool {
        self.to_ports.is_empty() && self.to_underlay.is_empty()
    }
}

impl From<&Output> for Sent {
    fn from(out: &Output) -> Self {
        Sent {
            to_ports: out.to_ports().map(|(p, f)| (p, f.to_vec())).collect(),
            to_underlay: out.transmits().map(SentTransmit::from).collect(),
        }
    }
}

/// Runs one frame from `port` through the engine, at virtual time [`t0`].
pub fn egress(engine: &mut Engine, port: PortId, frame: &[u8]) -> Sent {
    let mut out = Output::default();
    engine.handle_port_frames(t0(), port, [frame], &mut out);
    Sent::from(&out)
}

/// Runs one datagram from `src` through the engine, at virtual time [`t0`].
pub fn ingress(engine: &mut Engine, src: Ipv4Addr, datagram: &[u8]) -> Sent {
    let mut out = Output::default();
    engine.handle_underlay_datagrams(t0(), [(src, datagram)], &mut out);
    Sent::from(&out)
}

// ---- frame builders ----------------------------------------------------------------------

pub fn ethernet(src: Mac, dst: Mac, ethertype: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + payload.len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype,
    }
    .emit(&mut frame);
    frame.payload_mut().copy_from_slice(payload);
    buf
}

pub fn arp(
    eth_src: Mac,
    eth_dst: Mac,
    operation: ArpOperation,
    sha: Mac,
    spa: Ipv4Addr,
    tha: Mac,
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: EthernetAddress(sha),
        source_protocol_addr: spa,
        target_hardware_addr: EthernetAddress(tha),
        target_protocol_addr: tpa,
    };
    let mut payload = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut payload[..]));
    ethernet(eth_src, eth_dst, EthernetProtocol::Arp, &payload)
}

/// A broadcast ARP request from `vm` ("who has `target`? tell `vm.ip`").
pub fn arp_request(vm: &Vm, target: Ipv4Addr) -> Vec<u8> {
    arp(
        vm.mac,
        BROADCAST,
        ArpOperation::Request,
        vm.mac,
        vm.ip,
        [0; 6],
        target,
    )
}

/// An IPv4 packet (header + `payload`, protocol `proto`) in an Ethernet frame.
pub fn ipv4(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    proto: IpProtocol,
    payload: &[u8],
) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: payload.len(),
        hop_limit: ttl,
    };
    let mut packet = vec![0u8; repr.buffer_len() + payload.len()];
    let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
    repr.emit(&mut ip, &ChecksumCapabilities::default());
    ip.payload_mut().copy_from_slice(payload);
    ethernet(src_mac, dst_mac, EthernetProtocol::Ipv4, &packet)
}

pub fn icmp_bytes(repr: &Icmpv4Repr<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut buf[..]),
        &ChecksumCapabilities::default(),
    );
    buf
}

/// An ICMP echo request frame.
#[allow(clippy::too_many_arguments)]
pub fn echo_request(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    ident: u16,
    seq_no: u16,
    data: &[u8],
) -> Vec<u8> {
    let icmp = icmp_bytes(&Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    });
    ipv4(src_mac, dst_mac, src, dst, ttl, IpProtocol::Icmp, &icmp)
}

/// A UDP datagram frame with valid checksums.
#[allow(clippy::too_many_arguments)]
pub fn udp(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    data: &[u8],
) -> Vec<u8> {
    let repr = UdpRepr { src_port, dst_port };
    let mut buf = vec![0u8; repr.header_len() + data.len()];
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut buf[..]),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(dst),
        data.len(),
        |p| p.copy_from_slice(data),
        &ChecksumCapabilities::default(),
    );
    ipv4(src_mac, dst_mac, src, dst, 64, IpProtocol::Udp, &buf)
}

/// A TCP segment without payload (seq 1000, ack 2000 when `ack`) in an IPv4 frame.
pub fn tcp(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    control: TcpControl,
    ack: bool,
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: ports.0,
        dst_port: ports.1,
        control,
        seq_number: TcpSeqNumber(1000),
        ack_number: ack.then_some(TcpSeqNumber(2000)),
        window_len: 1000,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: b"",
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut buf[..]),
        &src.into(),
        &dst.into(),
        &ChecksumCapabilities::default(),
    );
    ipv4(src_mac, dst_mac, src, dst, 64, IpProtocol::Tcp, &buf)
}

/// A VXLAN datagram payload (header + inner frame).
pub fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let repr = VxlanRepr { vni };
    let mut buf = vec![0u8; repr.buffer_len() + inner.len()];
    repr.emit(&mut VxlanPacket::new_unchecked(&mut buf[..]));
    buf[repr.buffer_len()..].copy_from_slice(inner);
    buf
}

// ---- parsers -----------------------------------------------------------------------------

pub fn parse_eth(frame: &[u8]) -> EthernetRepr {
    EthernetRepr::parse(&EthernetFrame::new_checked(frame).expect("ethernet")).expect("ethernet")
}

/// The ARP packet of a frame: (operation, sha, spa, tha, tpa).
pub fn parse_arp(frame: &[u8]) -> (ArpOperation, Mac, Ipv4Addr, Mac, Ipv4Addr) {
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
    let packet = ArpPacket::new_checked(eth.payload()).expect("arp");
    match ArpRepr::parse(&packet).expect("arp") {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        } => (
            operation,
            source_hardware_addr.0,
            source_protocol_addr,
            target_hardware_addr.0,
            target_protocol_addr,
        ),
        other => panic!("unexpected ARP {other:?}"),
    }
}

/// The IPv4 header of a frame, parsed with checksum verification.
pub fn parse_ipv4(frame: &[u8]) -> Ipv4Repr {
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
    Ipv4Repr::parse(&ip, &ChecksumCapabilities::default()).expect("valid ipv4 header")
}

/// An ICMP message of a frame: (type, ident, seq, data), checksums verified.
pub fn parse_icmp_echo(frame: &[u8]) -> (&'static str, u16, u16, Vec<u8>) {
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
    let icmp = Icmpv4Packet::new_checked(ip.payload()).expect("icmp");
    match Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).expect("valid icmp") {
        Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        } => ("request", ident, seq_no, data.to_vec()),
        Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        } => ("reply", ident, seq_no, data.to_vec()),
        other => panic!("unexpected ICMP {other:?}"),
    }
}

/// The VXLAN header of a transmit payload: (flags, vni) read straight from the bytes.
pub fn vxlan_header(payload: &[u8]) -> (u8, u32) {
    let p = VxlanPacket::new_checked(payload).expect("vxlan");
    (p.flags(), p.vni())
}
