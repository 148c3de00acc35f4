//! Managed prefix lists in the data plane, simulated on the seed topology in virtual time: a
//! security group rule whose peer is a prefix list admits exactly the list's entries, and a
//! route to a prefix list sends exactly its entries to the route's target; a change of the
//! list's entries (a new table, as the agent builds one when the list's record changes) applies
//! to the next packet, with no change of the group or the route table.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use softvpc_engine::policy::Direction as Dir;
use softvpc_engine::{DropReason, Engine, Output, PortId};
use softvpc_wire::IpProtocol;

/// Both hosts' engines joined by an in-memory underlay.
struct Net {
    records: SeedRecords,
    hosts: Vec<(Ipv4Addr, Engine)>,
    now: std::time::Instant,
    out: Output,
}

impl Net {
    fn new(records: SeedRecords) -> Net {
        let hosts = seed_hosts(&records, |c| c);
        Net {
            records,
            hosts,
            now: t0(),
            out: Output::default(),
        }
    }

    /// A change of the records: every host gets a new table.
    fn update(&mut self, f: impl FnOnce(&mut SeedRecords)) {
        f(&mut self.records);
        retable(&mut self.hosts, &self.records);
    }

    fn engine(&mut self, host: Ipv4Addr) -> &mut Engine {
        &mut self.hosts.iter_mut().find(|(h, _)| *h == host).unwrap().1
    }

    /// `vm` sends `frame`; the (host, port) of every instance that received something.
    fn send(&mut self, vm: &Vm, frame: &[u8]) -> Vec<(Ipv4Addr, PortId)> {
        self.now += Duration::from_micros(10);
        let now = self.now;
        let mut delivered = Vec::new();
        self.out.clear();
        let host = vm.host;
        let out = &mut self.out;
        let e = &mut self.hosts.iter_mut().find(|(h, _)| *h == host).unwrap().1;
        e.handle_port_frames(now, vm.port, [frame], out);
        let sent = Sent::from(&*out);
        delivered.extend(sent.to_ports.iter().map(|(p, _)| (host, *p)));
        for t in sent.to_underlay {
            out.clear();
            let e = &mut self
                .hosts
                .iter_mut()
                .find(|(h, _)| *h == t.dst_ip)
                .unwrap()
                .1;
            e.handle_underlay_datagrams(now, [(host, &t.payload[..])], out);
            delivered.extend(
                Sent::from(&*out)
                    .to_ports
                    .iter()
                    .map(|(p, _)| (t.dst_ip, *p)),
            );
        }
        delivered
    }

    fn reaches(&mut self, from: &Vm, to: &Vm, frame: &[u8]) -> bool {
        self.send(from, frame).contains(&(to.host, to.port))
    }

    fn drops_at(&mut self, vm: &Vm, reason: DropReason) -> u64 {
        self.engine(vm.host)
            .counters()
            .eni(vm.eni)
            .map_or(0, |c| c.drops(reason))
    }
}

/// A TCP SYN (a bare 20-byte header; the engine does not check TCP checksums).
fn syn(from: &Vm, dst_mac: Mac, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 0x50;
    h[13] = 0x02;
    ipv4(from.mac, dst_mac, from.ip, dst, 64, IpProtocol::Tcp, &h)
}

use softvpc_engine::Mac;

fn net(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}

#[test]
fn security_group_rule_admits_the_lists_current_entries() {
    let mut r = seed_records();
    // zigi-vm2 (host-2) admits TCP 22 from the prefix list pl-admin, which holds zigi-vm1.
    r.prefix_lists
        .insert("pl-admin".into(), vec![net("10.0.0.148/32")]);
    r.groups.insert(
        "sg-ssh".into(),
        (
            "vpc-1".into(),
            vec![SgRule::from_aws(
                "sgr-ssh",
                "sg-ssh",
                Dir::Ingress,
                "tcp",
                Some(22),
                Some(22),
                Peer::PrefixList("pl-admin".into()),
            )
            .unwrap()],
        ),
    );
    r.enis.get_mut(VM2.eni).unwrap().security_group_ids = vec!["sg-ssh".into()];
    let mut n = Net::new(r);
    assert!(n.reaches(&VM1, &VM2, &syn(&VM1, VM2.mac, VM2.ip, 40000, 22)));
    assert!(!n.reaches(&VM4, &VM2, &syn(&VM4, VM2.mac, VM2.ip, 40000, 22)));
    assert!(!n.reaches(&VM1, &VM2, &syn(&VM1, VM2.mac, VM2.ip, 40001, 23)));
    assert_eq!(n.drops_at(&VM2, DropReason::SgDenied), 2);

    // The list now holds zigi-vm4 instead: the next packet follows it (the group is unchanged).
    n.update(|r| {
        r.prefix_lists
            .insert("pl-admin".into(), vec![net("10.0.0.16/28")]);
    });
    assert!(n.reaches(&VM4, &VM2, &syn(&VM4, VM2.mac, VM2.ip, 40002, 22)));
    assert!(!n.reaches(&VM1, &VM2, &syn(&VM1, VM2.mac, VM2.ip, 40003, 22)));
    assert_eq!(n.drops_at(&VM2, DropReason::SgDenied), 3);

    // A list the host does not hold admits nothing.
    n.update(|r| {
        r.prefix_lists.clear();
    });
    assert!(!n.reaches(&VM4, &VM2, &syn(&VM4, VM2.mac, VM2.ip, 40004, 22)));
    assert_eq!(n.drops_at(&VM2, DropReason::SgDenied), 4);
}

#[test]
fn route_to_a_list_sends_its_current_entries_to_the_target() {
    let mut r = seed_records();
    // The main table of VPC 1 routes the list pl-mb through the middlebox zigi-vm4 (its
    // check off); the list holds zigi-vm3's address, so zigi-vm3's traffic goes to zigi-vm4.
    r.route_tables
        .insert("rtb-main".into(), ("vpc-1".into(), true, vec![], vec![]));
    r.prefix_lists.insert(
        "pl-mb".into(),
        vec![net("10.0.1.20/32"), net("172.16.0.0/12")],
    );
    r.list_routes.push((
        "rtb-main".into(),
        "pl-mb".into(),
        Target::NetworkInterface(VM4.eni.into()),
        RouteState::Active,
    ));
    r.enis.get_mut(VM4.eni).unwrap().source_dest_check = false;
    let mut n = Net::new(r);
    let to = |dst: Ipv4Addr| udp(VM1.mac, ROUTER1, VM1.ip, dst, 1, 2, b"x");
    assert_eq!(n.send(&VM1, &to(VM3.ip)), vec![(HOST1, VM4.port)]);
    assert_eq!(
        n.send(&VM1, &to(Ipv4Addr::new(172, 16, 9, 9))),
        vec![(HOST1, VM4.port)]
    );
    // Outside the VPC and the list: no route.
    assert!(n.send(&VM1, &to(Ipv4Addr::new(8, 8, 8, 8))).is_empty());
    assert_eq!(n.drops_at(&VM1, DropReason::NoRoute), 1);

    // zigi-vm3 leaves the list and 8.8.8.0/24 joins it: the next packets follow.
    n.update(|r| {
        r.prefix_lists.insert(
            "pl-mb".into(),
            vec![net("8.8.8.0/24"), net("172.16.0.0/12")],
        );
    });
    assert_eq!(n.send(&VM1, &to(VM3.ip)), vec![(HOST2, VM3.port)]);
    assert_eq!(
        n.send(&VM1, &to(Ipv4Addr::new(8, 8, 8, 8))),
        vec![(HOST1, VM4.port)]
    );

    // A CIDR route for the same destination wins over the list's entry.
    n.update(|r| {
        r.route_tables.get_mut("rtb-main").unwrap().2.push(Route {
            destination: net("8.8.8.0/24"),
            target: Target::NetworkInterface("eni-gone".into()),
            state: RouteState::Blackhole,
        });
    });
    assert!(n.send(&VM1, &to(Ipv4Addr::new(8, 8, 8, 8))).is_empty());
    assert_eq!(n.drops_at(&VM1, DropReason::Blackhole), 1);
    // The route's state applies to every entry.
    n.update(|r| r.list_routes[0].3 = RouteState::Blackhole);
    assert!(n.send(&VM1, &to(Ipv4Addr::new(172, 16, 0, 1))).is_empty());
    assert_eq!(n.drops_at(&VM1, DropReason::Blackhole), 2);
}
