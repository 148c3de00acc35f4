//! Root-only tests of the agent's I/O shell against the real kernel: TAP devices moved into
//! instance namespaces, the raw-socket underlay, and the data-path thread with the real engine.
//!
//! Each test prints "SKIPPED (needs root)" and returns when not root. Everything runs in scratch
//! namespaces named `avt-<pid>-<test>-...` (unique per run, so parallel runs and other engineers'
//! tests never collide); guards delete them even when an assertion fails. Test bodies run on
//! their own thread, which enters a scratch "host" namespace first, so nothing is created in the
//! root namespace.

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use softvpc_agent::batch::Batch;
use softvpc_agent::datapath::{self, DataPath, Shared};
use softvpc_agent::instance::Plumber;
use softvpc_agent::netns;
use softvpc_agent::reconcile::{gateway_of, EniSpec};
use softvpc_agent::tap::Tap;
use softvpc_agent::underlay::{UnderlayRx, UnderlayTx};
use softvpc_engine::{Engine, EngineConfig, PortId};
use softvpc_mapping::{EniRecord, HostRecord, Records, SubnetRecord, VpcRecord};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Says loudly that `test` is skipped when not root; returns whether to skip.
fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    println!("SKIPPED (needs root): {test}");
    eprintln!("!! SKIPPED (needs root): {test}");
    true
}

/// Runs `ip ARGS...` (iproute2, the real client), failing with its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Deletes a namespace (if it exists) when dropped.
struct NetnsGuard(String);

impl NetnsGuard {
    /// Creates a scratch namespace with `lo` up.
    fn add(name: String) -> NetnsGuard {
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name]).expect("ip netns add");
        let g = NetnsGuard(name);
        ip(&["-n", &g.0, "link", "set", "lo", "up"]).expect("lo up");
        g
    }

    /// Only cleans up `name` (for namespaces the code under test creates).
    fn watch(name: String) -> NetnsGuard {
        NetnsGuard(name)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if netns::exists(&self.0) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
}

fn prefix(test: &str) -> String {
    format!("avt-{}-{test}-", std::process::id())
}

/// Runs `f` on a fresh thread inside namespace `ns`, propagating panics.
fn in_netns(ns: &str, f: impl FnOnce() + Send + 'static) {
    let ns = ns.to_string();
    let r = std::thread::spawn(move || {
        netns::enter(&ns).expect("enter scratch namespace");
        f();
    })
    .join();
    if let Err(panic) = r {
        std::panic::resume_unwind(panic);
    }
}

/// Runs the future `f` makes on a fresh thread inside namespace `ns`, on a single-threaded
/// runtime of its own (the plumber's netlink sockets run on it), propagating panics.
fn in_netns_rt<F, Fut>(ns: &str, f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let ns = ns.to_string();
    let r = std::thread::spawn(move || {
        netns::enter(&ns).expect("enter scratch namespace");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f());
    })
    .join();
    if let Err(panic) = r {
        std::panic::resume_unwind(panic);
    }
}

fn ip_output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spec(n: u8, instance: &str) -> EniSpec {
    let subnet = "10.9.0.0/24".parse().expect("net");
    EniSpec {
        eni_id: format!("eni-00000000000000{n:03}"),
        instance_id: instance.to_string(),
        device_index: 0,
        mac: [0x02, 0, 0, 0, 0x09, n],
        ip: Ipv4Addr::new(10, 9, 0, n),
        subnet,
        gateway: gateway_of(subnet),
        secondary_ips: Vec::new(),
    }
}

/// An ARP request "who has `target`? tell `sender`" from `src_mac`, broadcast.
fn arp_request(src_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet/IPv4, request
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// Reads frames from `tap` until `want` accepts one or `timeout` passes.
fn read_until(tap: &Tap, timeout: Duration, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        match tap.read_frame(&mut buf) {
            Ok(n) if want(&buf[..n]) => return Some(buf[..n].to_vec()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("TAP read: {e}"),
        }
    }
    None
}

#[test]
fn tap_moves_into_an_instance_namespace_and_carries_frames() {
    if skip_unless_root("tap_moves_into_an_instance_namespace_and_carries_frames") {
        return;
    }
    let p = prefix("tap");
    let host = NetnsGuard::add(format!("{p}host"));
    let instance_id = "i-00000000000000005";
    let _inst = NetnsGuard::watch(format!("{p}{instance_id}"));
    let foreign = NetnsGuard::add(format!("{p}foreign"));
    let (p2, foreign_name) = (p.clone(), foreign.0.clone());
    in_netns_rt(&host.0, move || async move {
        let mut plumber = Plumber::new(&p2).expect("plumber");
        let s = spec(5, instance_id);
        let ns = plumber
            .create_namespace(instance_id)
            .await
            .expect("create namespace");
        let tap = plumber.add_interface(&s).await.expect("add eth0");
        assert_eq!(ns, format!("{p2}{instance_id}"));
        assert!(netns::exists(&ns));
        assert!(plumber.created().contains(&ns));

        // The contract: eth0 with the ENI's MAC, MTU 9001, address/prefix, up; lo up; default
        // route via the router; IPv6 off.
        let link = ip_output(&["-n", &ns, "-o", "link", "show", "dev", "eth0"]);
        assert!(link.contains("02:00:00:00:09:05"), "{link}");
        assert!(link.contains("mtu 9001"), "{link}");
        assert!(link.contains("UP"), "{link}");
        let addr = ip_output(&["-n", &ns, "-o", "-4", "addr", "show", "dev", "eth0"]);
        assert!(addr.contains("10.9.0.5/24"), "{addr}");
        let lo = ip_output(&["-n", &ns, "-o", "link", "show", "dev", "lo"]);
        assert!(lo.contains("UP"), "{lo}");
        let route = ip_output(&["-n", &ns, "route", "show", "default"]);
        assert!(route.contains("via 10.9.0.1 dev eth0"), "{route}");
        let v6 = netns::run_in(&ns, || {
            Ok::<_, anyhow::Error>(std::fs::read_to_string(
                "/proc/sys/net/ipv6/conf/eth0/disable_ipv6",
            )?)
        })
        .expect("read sysctl");
        assert_eq!(v6.trim(), "1");
        // The TAP left the host namespace.
        let here = Command::new("ip")
            .args(["link", "show", "dev", tap.name()])
            .output()
            .expect("ip");
        assert!(!here.status.success(), "TAP still in the host namespace");

        // A frame written to the fd reaches the instance, whose answer comes back on the fd.
        let router_mac = [0x0a, 0x56, 0x50, 0, 0x01, 0x01];
        let req = arp_request(router_mac, s.gateway, s.ip);
        assert_eq!(tap.write_frame(&req).expect("write"), req.len());
        let reply = read_until(&tap, Duration::from_secs(3), |f| {
            f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0x00, 0x02]
        })
        .expect("no ARP reply from the instance");
        assert_eq!(&reply[0..6], &router_mac, "reply to the asker");
        assert_eq!(&reply[22..28], &s.mac, "sender MAC is the ENI's");
        assert_eq!(&reply[28..32], &s.ip.octets(), "sender IP is the ENI's");
        assert_eq!(&reply[38..42], &s.gateway.octets());

        // Secondary addresses are added and removed in place on eth0.
        let mut s2 = s.clone();
        s2.secondary_ips = vec![Ipv4Addr::new(10, 9, 0, 77), Ipv4Addr::new(10, 9, 0, 78)];
        plumber
            .update_secondary(&s, &s2)
            .await
            .expect("add secondary");
        let addr = ip_output(&["-n", &ns, "-o", "-4", "addr", "show", "dev", "eth0"]);
        assert!(
            addr.contains("10.9.0.77/24") && addr.contains("10.9.0.78/24"),
            "{addr}"
        );
        let mut s3 = s.clone();
        s3.secondary_ips = vec![Ipv4Addr::new(10, 9, 0, 78)];
        plumber
            .update_secondary(&s2, &s3)
            .await
            .expect("remove one");
        let addr = ip_output(&["-n", &ns, "-o", "-4", "addr", "show", "dev", "eth0"]);
        assert!(
            !addr.contains("10.9.0.77/") && addr.contains("10.9.0.78/24"),
            "{addr}"
        );
        assert!(addr.contains("10.9.0.5/24"), "primary kept: {addr}");
        plumber.update_secondary(&s3, &s).await.expect("remove all");

        // Never deletes a namespace it did not create.
        plumber.destroy(&foreign_name).expect("destroy foreign");
        assert!(netns::exists(&foreign_name));

        // Re-creating an instance whose namespace is stale replaces it.
        let mut second = Plumber::new(&p2).expect("plumber");
        drop(tap);
        second
            .create_namespace(instance_id)
            .await
            .expect("re-create over a stale namespace");
        let tap2 = second.add_interface(&s).await.expect("eth0 again");
        assert!(second.created().contains(&ns));
        drop(tap2);

        second.destroy(&ns).expect("destroy");
        assert!(!netns::exists(&ns));
        assert!(second.created().is_empty());
        plumber.destroy_all();
    });
}

#[test]
fn raw_underlay_sends_udp_with_our_ports() {
    if skip_unless_root("raw_underlay_sends_udp_with_our_ports") {
        return;
    }
    let host = NetnsGuard::add(format!("{}host", prefix("raw")));
    in_netns(&host.0, || {
        let lo = Ipv4Addr::LOCALHOST;
        let rx = UnderlayRx::bind(lo, 4789).expect("bind 4789");
        let plain = UdpSocket::bind((lo, 4790)).expect("bind 4790");
        plain
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let tx = UnderlayTx::open(lo).expect("raw socket");

        tx.send(lo, 50001, 4790, b"port check").expect("send");
        let mut buf = [0u8; 64];
        let (n, from) = plain.recv_from(&mut buf).expect("datagram");
        assert_eq!(&buf[..n], b"port check");
        assert_eq!(from.port(), 50001, "source port is the one we wrote");
        assert_eq!(from.ip(), lo);

        let payload: Vec<u8> = (0..200u8).collect();
        tx.send(lo, 60000, 4789, &payload).expect("send");
        let mut batch = Batch::new(8, 2048);
        let deadline = Instant::now() + Duration::from_secs(2);
        while batch.is_empty() && Instant::now() < deadline {
            rx.recv_batch(&mut batch);
            std::thread::sleep(Duration::from_millis(5));
        }
        let got: Vec<_> = batch.iter().map(|(s, d)| (s, d.to_vec())).collect();
        assert_eq!(got, vec![(lo, payload)]);
    });
}

fn records(enis: &[&EniSpec], underlay: Ipv4Addr) -> Records {
    let mut r = Records::default();
    r.hosts.insert(
        "h-1".into(),
        Arc::new(HostRecord {
            host_id: "h-1".into(),
            name: "host-1".into(),
            underlay_ip: underlay,
        }),
    );
    r.vpcs.insert(
        "vpc-1".into(),
        Arc::new(VpcRecord {
            vpc_id: "vpc-1".into(),
            vni: 0x101,
            cidrs: vec!["10.9.0.0/16".parse().expect("net")],

            services: Default::default(),
        }),
    );
    r.subnets.insert(
        "subnet-1".into(),
        Arc::new(SubnetRecord {
            subnet_id: "subnet-1".into(),
            vpc_id: "vpc-1".into(),
            cidr: "10.9.0.0/24".parse().expect("net"),
        }),
    );
    for s in enis {
        r.enis.insert(
            s.eni_id.clone(),
            Arc::new(EniRecord {
                eni_id: s.eni_id.clone(),
                vpc_id: "vpc-1".into(),
                vni: 0x101,
                subnet_id: "subnet-1".into(),
                ip: s.ip,
                secondary_ips: vec![],
                mac: s.mac,
                host_id: "h-1".into(),
                host_underlay_ip: Some(underlay),
                instance_id: s.instance_id.clone(),
                instance_name: String::new(),
                device_index: 0,
                security_group_ids: vec![],
                public_addresses: vec![],
                source_dest_check: true,
                connection_tracking: Default::default(),
                flow_logs: vec![],
                nat_gateway_id: String::new(),
                instance_metadata: None,
            }),
        );
    }
    r
}

fn ping(ns: &str, dst: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", dst,
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn data_path_serves_the_router_and_forwards_between_local_ports() {
    if skip_unless_root("data_path_serves_the_router_and_forwards_between_local_ports") {
        return;
    }
    let p = prefix("dp");
    let host = NetnsGuard::add(format!("{p}host"));
    let (i1, i2) = ("i-00000000000000011", "i-00000000000000012");
    let _g1 = NetnsGuard::watch(format!("{p}{i1}"));
    let _g2 = NetnsGuard::watch(format!("{p}{i2}"));
    let p2 = p.clone();
    in_netns_rt(&host.0, move || async move {
        let underlay = Ipv4Addr::LOCALHOST;
        let mut plumber = Plumber::new(&p2).expect("plumber");
        let (s1, s2) = (spec(11, i1), spec(12, i2));
        plumber.create_namespace(i1).await.expect("namespace 1");
        plumber.create_namespace(i2).await.expect("namespace 2");
        let tap1 = plumber.add_interface(&s1).await.expect("instance 1");
        let tap2 = plumber.add_interface(&s2).await.expect("instance 2");

        let shared = Arc::new(Shared::default());
        let dp = DataPath::spawn(
            Engine::new(EngineConfig::new(underlay)),
            UnderlayRx::bind(underlay, 4789).expect("rx"),
            UnderlayTx::open(underlay).expect("tx"),
            Arc::clone(&shared),
        )
        .expect("spawn data path");
        let ports: HashMap<String, PortId> = [
            (s1.eni_id.clone(), PortId(1)),
            (s2.eni_id.clone(), PortId(2)),
        ]
        .into();
        dp.send(datapath::Command::AddPort {
            port: PortId(1),
            tap: tap1,
        })
        .expect("add 1");
        dp.send(datapath::Command::AddPort {
            port: PortId(2),
            tap: tap2,
        })
        .expect("add 2");
        let table = softvpc_agent::table::build(&records(&[&s1, &s2], underlay), underlay, &ports);
        shared.table.store(Arc::new(table));

        let ns1 = format!("{p2}{i1}");
        assert!(ping(&ns1, "10.9.0.1"), "instance 1 cannot ping its router");
        assert!(
            ping(&ns1, "10.9.0.12"),
            "instance 1 cannot ping instance 2 on the same host"
        );
        // An address nobody holds gets no ARP answer.
        assert!(
            !ping(&ns1, "10.9.0.99"),
            "ping to an unassigned address succeeded"
        );

        let (tx, rx) = tokio::sync::oneshot::channel();
        dp.send(datapath::Command::Stats(tx)).expect("stats");
        let stats = rx.await.expect("stats reply");
        use softvpc_engine::counters::Path;
        assert!(stats.engine.frames(Path::ArpReplies) >= 2, "{stats:?}");
        assert!(stats.engine.frames(Path::IcmpReplies) >= 2, "{stats:?}");
        assert!(stats.engine.frames(Path::ToPortLocal) >= 4, "{stats:?}");
        assert!(
            stats
                .engine
                .drops(softvpc_engine::DropReason::ArpUnanswered)
                >= 1,
            "{stats:?}"
        );
        assert_eq!(stats.ports, 2);

        // Removing a port closes its TAP: the instance's eth0 disappears.
        dp.send(datapath::Command::RemovePort { port: PortId(2) })
            .expect("remove");
        let ns2 = format!("{p2}{i2}");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let o = Command::new("ip")
                .args(["-n", &ns2, "link", "show", "dev", "eth0"])
                .output();
            if o.map(|o| !o.status.success()).unwrap_or(false) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let gone = Command::new("ip")
            .args(["-n", &ns2, "link", "show", "dev", "eth0"])
            .output();
        assert!(!gone.expect("ip").status.success(), "eth0 survived its TAP");

        dp.shutdown().expect("data path shutdown");
        plumber.destroy_all();
        assert!(!netns::exists(&ns1) && !netns::exists(&ns2));
    });
}

/// The inode of a named namespace (it changes only if the namespace is re-created).
fn netns_inode(ns: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(netns::path(ns)).expect("netns").ino()
}

#[test]
fn secondary_interfaces_come_and_go_with_policy_routing() {
    if skip_unless_root("secondary_interfaces_come_and_go_with_policy_routing") {
        return;
    }
    let p = prefix("ethn");
    let host = NetnsGuard::add(format!("{p}host"));
    let instance_id = "i-00000000000000021";
    let _inst = NetnsGuard::watch(format!("{p}{instance_id}"));
    let p2 = p.clone();
    in_netns_rt(&host.0, move || async move {
        let mut plumber = Plumber::new(&p2).expect("plumber");
        // eth1 arrives first (in another subnet), then eth0: the namespace is made once.
        let mut eth1 = spec(6, instance_id);
        eth1.device_index = 1;
        eth1.subnet = "10.9.1.0/24".parse().expect("net");
        eth1.gateway = gateway_of(eth1.subnet);
        eth1.ip = Ipv4Addr::new(10, 9, 1, 6);
        let ns = plumber
            .create_namespace(instance_id)
            .await
            .expect("namespace");
        let inode = netns_inode(&ns);
        let tap1 = plumber.add_interface(&eth1).await.expect("add eth1");
        let eth0 = spec(5, instance_id);
        let tap0 = plumber.add_interface(&eth0).await.expect("add eth0");

        let link = ip_output(&["-n", &ns, "-o", "link", "show", "dev", "eth1"]);
        assert!(
            link.contains("02:00:00:00:09:06") && link.contains("mtu 9001"),
            "{link}"
        );
        let addr = ip_output(&["-n", &ns, "-o", "-4", "addr", "show", "dev", "eth1"]);
        assert!(addr.contains("10.9.1.6/24"), "{addr}");
        // eth0 owns the main table; eth1's routes are in its own table only.
        let main = ip_output(&["-n", &ns, "route", "show", "table", "main"]);
        assert!(main.contains("default via 10.9.0.1 dev eth0"), "{main}");
        assert!(!main.contains("eth1"), "{main}");
        let t = ip_output(&["-n", &ns, "route", "show", "table", "10001"]);
        assert!(t.contains("default via 10.9.1.1 dev eth1"), "{t}");
        assert!(t.contains("10.9.1.0/24 dev eth1"), "{t}");
        let rules = ip_output(&["-n", &ns, "rule", "show"]);
        assert!(rules.contains("from 10.9.1.6 lookup 10001"), "{rules}");
        // Replies from eth1's address leave by eth1 via its router, others by eth0.
        let via1 = ip_output(&["-n", &ns, "route", "get", "10.9.0.99", "from", "10.9.1.6"]);
        assert!(via1.contains("via 10.9.1.1 dev eth1"), "{via1}");
        let via0 = ip_output(&["-n", &ns, "route", "get", "10.8.0.1"]);
        assert!(via0.contains("via 10.9.0.1 dev eth0"), "{via0}");
        // Even to eth1's subnet: eth0's address must never leave by eth1.
        let to1 = ip_output(&["-n", &ns, "route", "get", "10.9.1.20", "from", "10.9.0.5"]);
        assert!(to1.contains("via 10.9.0.1 dev eth0"), "{to1}");

        // A secondary address on eth1 gets its own rule, and loses it again.
        let mut eth1b = eth1.clone();
        eth1b.secondary_ips = vec![Ipv4Addr::new(10, 9, 1, 66)];
        plumber
            .update_secondary(&eth1, &eth1b)
            .await
            .expect("add secondary");
        let addr = ip_output(&["-n", &ns, "-o", "-4", "addr", "show", "dev", "eth1"]);
        assert!(addr.contains("10.9.1.66/24"), "{addr}");
        let via = ip_output(&["-n", &ns, "route", "get", "10.8.0.1", "from", "10.9.1.66"]);
        assert!(via.contains("via 10.9.1.1 dev eth1"), "{via}");
        plumber
            .update_secondary(&eth1b, &eth1)
            .await
            .expect("remove secondary");
        let rules = ip_output(&["-n", &ns, "rule", "show"]);
        assert!(!rules.contains("10.9.1.66"), "{rules}");

        // Removing eth1 (its TAP still open, as when the data path has not closed it yet)
        // leaves the namespace and eth0 alone and takes its rules and table.
        let mut eth1c = eth1.clone();
        eth1c.secondary_ips = vec![Ipv4Addr::new(10, 9, 1, 67)];
        plumber
            .update_secondary(&eth1, &eth1c)
            .await
            .expect("secondary again");
        plumber.remove_interface(&eth1c).await.expect("remove eth1");
        drop(tap1);
        let links = ip_output(&["-n", &ns, "-o", "link", "show"]);
        assert!(!links.contains("eth1"), "{links}");
        assert!(links.contains("eth0"), "{links}");
        let rules = ip_output(&["-n", &ns, "rule", "show"]);
        assert!(!rules.contains("10001"), "{rules}");
        assert!(ip_output(&["-n", &ns, "route", "show", "table", "10001"])
            .trim()
            .is_empty());
        let main = ip_output(&["-n", &ns, "route", "show", "table", "main"]);
        assert!(main.contains("default via 10.9.0.1 dev eth0"), "{main}");
        assert_eq!(netns_inode(&ns), inode, "the namespace was re-created");

        // The same index comes back for another ENI (in eth0's subnet this time): eth0's
        // connected route still wins for unbound traffic.
        let mut eth1d = spec(7, instance_id);
        eth1d.device_index = 1;
        let tap1d = plumber.add_interface(&eth1d).await.expect("add eth1 again");
        let to_subnet = ip_output(&["-n", &ns, "route", "get", "10.9.0.99"]);
        assert!(to_subnet.contains("dev eth0"), "{to_subnet}");
        let from1 = ip_output(&["-n", &ns, "route", "get", "10.9.0.99", "from", "10.9.0.7"]);
        assert!(from1.contains("dev eth1"), "{from1}");
        // A TAP closed by the data path takes the device with it; removal still tidies up.
        drop(tap1d);
        plumber
            .remove_interface(&eth1d)
            .await
            .expect("remove closed eth1");
        assert!(!ip_output(&["-n", &ns, "rule", "show"]).contains("10001"));
        assert_eq!(netns_inode(&ns), inode);

        drop(tap0);
        plumber.delete_namespace(instance_id).expect("delete");
        assert!(!netns::exists(&ns));
    });
}
