//! Root-only tests of the plumbing crate against the real kernel, checked with iproute2 and
//! ping (real clients) in private namespaces named `nlt-<pid>-...`. Guards delete them even when
//! an assertion fails; nothing is created in the root namespace, and the only traffic is between
//! these namespaces (198.19.250.0/24, inside the underlay range).
//!
//! Each test prints "SKIPPED (needs root)" and returns when not root (as the agent's root tests).

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use softvpc_netlink::{netns, LinkChange, Netlink, Route, Rule};

fn skip_unless_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    println!("SKIPPED (needs root): {test}");
    eprintln!("!! SKIPPED (needs root): {test}");
    true
}

/// Deletes a namespace (if it exists) when dropped.
struct NsGuard(String);

impl NsGuard {
    fn create(test: &str, what: &str) -> NsGuard {
        let g = NsGuard(format!("nlt-{}-{test}-{what}", std::process::id()));
        let _ = netns::delete(&g.0);
        netns::create(&g.0).expect("create namespace");
        g
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        if netns::exists(&self.0) {
            let _ = netns::delete(&self.0);
        }
    }
}

/// `ip ARGS...`, asserting success; its stdout.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ping(ns: &str, dst: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "2", "-q", dst])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn own_netns_inode() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net")
        .expect("own netns")
        .ino()
}

#[tokio::test]
async fn namespaces_are_shared_with_iproute2() {
    if skip_unless_root("namespaces_are_shared_with_iproute2") {
        return;
    }
    let before = own_netns_inode();
    let ours = NsGuard::create("ns", "ours");
    assert!(netns::exists(&ours.0));
    assert!(netns::list().contains(&ours.0));
    assert!(ip(&["netns", "list"]).contains(&ours.0), "ip netns list");
    // A fresh namespace: only lo, down; `ip netns exec` enters the same namespace.
    let links = ip(&["-n", &ours.0, "-o", "link", "show"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && !links.contains("UP"), "{links}");
    let inode = std::fs::metadata(netns::path(&ours.0)).expect("file").ino();
    let inside = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ours.0,
            "stat",
            "-L",
            "-c",
            "%i",
            "/proc/self/ns/net",
        ])
        .output()
        .expect("ip netns exec");
    assert_eq!(
        String::from_utf8_lossy(&inside.stdout).trim(),
        inode.to_string()
    );
    // run_in runs there, and leaves the caller where it was.
    let seen = netns::run_in(&ours.0, || {
        Ok::<_, softvpc_netlink::Error>(own_netns_inode())
    })
    .expect("run_in");
    assert_eq!(seen, inode);
    assert_eq!(own_netns_inode(), before);
    // A taken name is refused, and the namespace survives the attempt.
    let e = netns::create(&ours.0).expect_err("created twice");
    assert!(e.is_exists(), "{e}");
    assert!(e.to_string().contains("ip netns add"), "{e}");
    assert_eq!(
        std::fs::metadata(netns::path(&ours.0)).unwrap().ino(),
        inode
    );
    // Sysctls are per namespace.
    netns::set_sysctl(&ours.0, "net.ipv6.conf.all.disable_ipv6", "1").expect("sysctl");
    let v = ip(&[
        "netns",
        "exec",
        &ours.0,
        "cat",
        "/proc/sys/net/ipv6/conf/all/disable_ipv6",
    ]);
    assert_eq!(v.trim(), "1");

    // One made by iproute2 is ours to use and delete.
    let theirs = format!("nlt-{}-ns-theirs", std::process::id());
    let _g = NsGuard(theirs.clone());
    ip(&["netns", "add", &theirs]);
    assert!(netns::exists(&theirs));
    let nl = Netlink::connect_in(&theirs).expect("connect");
    nl.set_up("lo").await.expect("lo up");
    assert!(ip(&["-n", &theirs, "-o", "link", "show", "lo"]).contains("UP"));
    netns::delete(&theirs).expect("delete");
    netns::delete(&ours.0).expect("delete");
    let list = ip(&["netns", "list"]);
    assert!(!list.contains(&theirs) && !list.contains(&ours.0), "{list}");
    assert!(netns::delete(&ours.0)
        .expect_err("deleted twice")
        .is_not_found());
    assert_eq!(own_netns_inode(), before);
}

#[tokio::test]
async fn links_addresses_routes_and_rules() {
    if skip_unless_root("links_addresses_routes_and_rules") {
        return;
    }
    let before = own_netns_inode();
    let (fabric, b, c) = (
        NsGuard::create("plumb", "fab"),
        NsGuard::create("plumb", "b"),
        NsGuard::create("plumb", "c"),
    );
    let nf = Netlink::connect_in(&fabric.0).expect("fabric");
    let nb = Netlink::connect_in(&b.0).expect("b");
    let nc = Netlink::connect_in(&c.0).expect("c");

    // A bridge with two veths whose far ends are created straight inside b and c.
    nf.add_bridge("br0").await.expect("bridge");
    nf.set_up("br0").await.expect("bridge up");
    for (port, ns, n) in [("p1", &b.0, &nb), ("p2", &c.0, &nc)] {
        nf.add_veth(port, "under0", Some(ns)).await.expect("veth");
        nf.set_master(port, "br0").await.expect("master");
        nf.set_up(port).await.expect("port up");
        assert!(
            !nf.link_exists("under0").await.unwrap(),
            "peer left in the fabric"
        );
        n.set_up("lo").await.expect("lo");
    }
    let br = ip(&["-n", &fabric.0, "-o", "link", "show", "master", "br0"]);
    assert!(br.contains("p1@") && br.contains("p2@"), "{br}");

    // Rename, MAC, MTU and up in one request.
    let change = LinkChange {
        name: Some("eth0".into()),
        mac: Some([0x02, 0, 0, 0, 0x0b, 0x01]),
        mtu: Some(1450),
        up: Some(true),
    };
    nb.set_link("under0", &change).await.expect("set link");
    let link = ip(&["-n", &b.0, "-o", "link", "show", "dev", "eth0"]);
    assert!(
        link.contains("02:00:00:00:0b:01") && link.contains("mtu 1450") && link.contains("UP"),
        "{link}"
    );
    nc.set_up("under0").await.expect("c up");
    nb.add_address("eth0", Ipv4Addr::new(198, 19, 250, 11), 24, false)
        .await
        .expect("addr b");
    nc.add_address("under0", Ipv4Addr::new(198, 19, 250, 12), 24, false)
        .await
        .expect("addr c");
    let e = nc
        .add_address("under0", Ipv4Addr::new(198, 19, 250, 12), 24, false)
        .await
        .expect_err("added twice");
    assert!(
        e.is_exists() && e.to_string().contains("ip addr add 198.19.250.12/24"),
        "{e}"
    );
    assert_eq!(
        nb.addresses("eth0").await.unwrap(),
        [(Ipv4Addr::new(198, 19, 250, 11), 24)]
    );
    assert!(
        ping(&b.0, "198.19.250.12"),
        "b cannot ping c across the bridge"
    );

    // noprefixroute: no connected route in main; policy routing in table 10001 instead.
    nb.add_address("eth0", Ipv4Addr::new(198, 19, 251, 5), 24, true)
        .await
        .expect("noprefixroute");
    let main = ip(&["-n", &b.0, "route", "show", "table", "main"]);
    assert!(!main.contains("198.19.251.0/24"), "{main}");
    let table = 10001;
    nb.add_route(
        &Route::connected(
            Ipv4Addr::new(198, 19, 251, 0),
            24,
            "eth0",
            Ipv4Addr::new(198, 19, 251, 5),
        )
        .in_table(table),
    )
    .await
    .expect("connected route");
    nb.add_route(&Route::default_via(Ipv4Addr::new(198, 19, 251, 1), "eth0").in_table(table))
        .await
        .expect("default route");
    nb.add_route(&Route::default_via(Ipv4Addr::new(198, 19, 250, 12), "eth0"))
        .await
        .expect("main default");
    let t = ip(&["-n", &b.0, "route", "show", "table", "10001"]);
    assert!(t.contains("default via 198.19.251.1 dev eth0"), "{t}");
    assert!(
        t.contains("198.19.251.0/24 dev eth0 proto kernel scope link src 198.19.251.5"),
        "{t}"
    );
    let main = ip(&["-n", &b.0, "route", "show", "default"]);
    assert!(
        main.contains("default via 198.19.250.12 dev eth0"),
        "{main}"
    );
    for (a, prio) in [
        (Ipv4Addr::new(198, 19, 251, 5), table),
        (Ipv4Addr::new(198, 19, 251, 6), table),
    ] {
        nb.add_rule(a, table, prio).await.expect("rule");
    }
    let rules = ip(&["-n", &b.0, "rule", "show"]);
    assert!(
        rules.contains("10001:\tfrom 198.19.251.5 lookup 10001"),
        "{rules}"
    );
    let via = ip(&[
        "-n",
        &b.0,
        "route",
        "get",
        "203.0.113.9",
        "from",
        "198.19.251.5",
    ]);
    assert!(
        via.contains("via 198.19.251.1 dev eth0 table 10001"),
        "{via}"
    );
    assert_eq!(
        nb.rules_of_table(table).await.unwrap(),
        [
            Rule {
                from: Some(Ipv4Addr::new(198, 19, 251, 5)),
                table,
                priority: Some(table)
            },
            Rule {
                from: Some(Ipv4Addr::new(198, 19, 251, 6)),
                table,
                priority: Some(table)
            },
        ]
    );
    nb.del_rule(Ipv4Addr::new(198, 19, 251, 6), table, table)
        .await
        .expect("del rule");
    assert!(!ip(&["-n", &b.0, "rule", "show"]).contains("198.19.251.6"));
    assert_eq!(nb.del_rules_of_table(table).await.unwrap(), 1);
    assert!(!ip(&["-n", &b.0, "rule", "show"]).contains("10001"));
    assert_eq!(nb.flush_table(table).await.unwrap(), 2);
    assert!(ip(&["-n", &b.0, "route", "show", "table", "10001"])
        .trim()
        .is_empty());
    assert!(
        ip(&["-n", &b.0, "route", "show", "default"]).contains("198.19.250.12"),
        "main kept"
    );
    nb.del_address("eth0", Ipv4Addr::new(198, 19, 251, 5), 24)
        .await
        .expect("del addr");
    assert_eq!(
        nb.addresses("eth0").await.unwrap(),
        [(Ipv4Addr::new(198, 19, 250, 11), 24)]
    );

    // A link moves between namespaces and keeps working there.
    nb.add_veth("m1", "m2", None).await.expect("local veth");
    nb.move_to_netns("m2", &c.0).await.expect("move");
    assert!(!nb.link_exists("m2").await.unwrap());
    assert!(nc.link_exists("m2").await.unwrap());
    assert!(ip(&["-n", &c.0, "-o", "link", "show"]).contains("m2@"));
    nc.del_link("m2").await.expect("del veth");
    assert!(
        !nb.link_exists("m1").await.unwrap(),
        "the peer went with it"
    );
    let e = nb.del_link("m1").await.expect_err("deleted twice");
    assert!(
        e.is_not_found() && e.to_string().contains("ip link del dev m1"),
        "{e}"
    );
    let names = nf.link_names().await.unwrap();
    assert!(
        names.contains(&"br0".to_string()) && names.contains(&"p1".to_string()),
        "{names:?}"
    );
    // The caller never left its own namespace.
    assert_eq!(own_netns_inode(), before);
}

#[test]
fn block_on_runs_operations_for_synchronous_callers() {
    if skip_unless_root("block_on_runs_operations_for_synchronous_callers") {
        return;
    }
    let ns = NsGuard::create("sync", "a");
    softvpc_netlink::block_on(async {
        let nl = Netlink::connect_in(&ns.0)?;
        nl.add_bridge("br9").await?;
        nl.set_up("br9").await
    })
    .expect("plumbing");
    assert!(ip(&["-n", &ns.0, "-o", "link", "show", "br9"]).contains("UP"));
    // Outside a runtime there is no connection to run: a clear error, not a panic.
    let e = Netlink::connect_in(&ns.0).expect_err("no runtime");
    assert!(e.to_string().contains("opening an rtnetlink socket"), "{e}");
}

/// The fast path's kernel primitives (docs/fast-path.md), end to end between two scratch hosts:
/// each "instance" namespace's eth0 (a veth here; a TAP in the agent) sends through a VXLAN
/// device created in its host's namespace and moved in (its socket stays with the host, on its
/// own UDP port), by a u32 filter on eth0's egress with a mirred redirect; frames decapsulated
/// on that device go to eth0's ingress by a second redirect. Removing the egress filter stops the
/// traffic (the frames then go to eth0's peer, as they would go to the agent).
#[tokio::test]
async fn vxlan_moved_into_the_instance_with_mirred_redirects() {
    use softvpc_netlink::{Hook, Redirect, U32Match};
    if skip_unless_root("vxlan_moved_into_the_instance_with_mirred_redirects") {
        return;
    }
    let t = "fast";
    let (h1, h2, i1, i2) = (
        NsGuard::create(t, "h1"),
        NsGuard::create(t, "h2"),
        NsGuard::create(t, "i1"),
        NsGuard::create(t, "i2"),
    );
    let nh1 = Netlink::connect_in(&h1.0).expect("h1");
    let nh2 = Netlink::connect_in(&h2.0).expect("h2");
    let ni1 = Netlink::connect_in(&i1.0).expect("i1");
    let ni2 = Netlink::connect_in(&i2.0).expect("i2");
    nh1.add_veth("u0", "u0", Some(&h2.0))
        .await
        .expect("underlay");
    let under = [
        Ipv4Addr::new(198, 19, 251, 1),
        Ipv4Addr::new(198, 19, 251, 2),
    ];
    let macs = [[2, 0, 0, 0, 0x51, 1], [2, 0, 0, 0, 0x51, 2]];
    let ips = [Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2)];
    let ports = [20001u16, 20002];
    let hosts = [(&h1, &nh1), (&h2, &nh2)];
    let insts = [(&i1, &ni1), (&i2, &ni2)];
    for k in 0..2 {
        let (_, nh) = hosts[k];
        let (inst, ni) = insts[k];
        nh.add_address("u0", under[k], 24, false)
            .await
            .expect("underlay address");
        nh.set_up("u0").await.expect("u0 up");
        ni.set_up("lo").await.expect("lo");
        // eth0: a veth whose peer stays in the host (where the agent's TAP reader would be).
        nh.add_veth("s0", "eth0", Some(&inst.0))
            .await
            .expect("eth0");
        nh.set_up("s0").await.expect("s0 up");
        let change = LinkChange {
            mac: Some(macs[k]),
            mtu: Some(1450),
            up: Some(true),
            ..Default::default()
        };
        ni.set_link("eth0", &change).await.expect("eth0 set");
        ni.add_address("eth0", ips[k], 24, false)
            .await
            .expect("eth0 address");
        ip(&[
            "-n",
            &inst.0,
            "neigh",
            "add",
            &ips[1 - k].to_string(),
            "lladdr",
            &softvpc_netlink::format_mac(&macs[1 - k]),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
        // The VXLAN device: made by the host, moved into the instance, with eth0's MAC (a
        // mirred ingress redirect keeps the packet type computed on it).
        nh.add_vxlan("vx0", 257, under[k], ports[k])
            .await
            .expect("vxlan");
        nh.move_to_netns("vx0", &inst.0).await.expect("move vxlan");
        let vx = LinkChange {
            mac: Some(macs[k]),
            up: Some(true),
            ..Default::default()
        };
        ni.set_link("vx0", &vx).await.expect("vx0 set");
        ni.fdb_add("vx0", &macs[1 - k], under[1 - k], ports[1 - k])
            .await
            .expect("fdb");
        ni.add_clsact("eth0").await.expect("clsact eth0");
        ni.add_clsact("vx0").await.expect("clsact vx0");
        let [d0, d1] = U32Match::ether_dst(&macs[1 - k]);
        let keys = [
            d0,
            d1,
            U32Match::ipv4_src(ips[k]),
            U32Match::ipv4_dst(ips[1 - k]),
        ];
        ni.add_redirect("eth0", Hook::Egress, 10, &keys, "vx0", Redirect::Egress)
            .await
            .expect("egress filter");
        ni.add_redirect("vx0", Hook::Ingress, 10, &[], "eth0", Redirect::Ingress)
            .await
            .expect("ingress filter");
        // The device's socket is the host's: bound there to its own port.
        let sockets = ip(&["netns", "exec", &hosts[k].0 .0, "ss", "-uln"]);
        assert!(
            sockets.contains(&format!("0.0.0.0:{}", ports[k])),
            "{sockets}"
        );
    }
    assert!(ping(&i1.0, "10.77.0.2"), "no reply through the redirects");
    assert!(ping(&i2.0, "10.77.0.1"), "no reply the other way");
    let stats = ip(&[
        "netns", "exec", &i1.0, "tc", "-s", "filter", "show", "dev", "eth0", "egress",
    ]);
    assert!(stats.contains("Egress Redirect to device vx0"), "{stats}");

    // Without the egress filter, i1's frames go to eth0's peer (the slow path): no more replies.
    ni1.del_filters("eth0", Hook::Egress, 10)
        .await
        .expect("del");
    ni1.del_filters("eth0", Hook::Egress, 10)
        .await
        .expect("del again: nothing to do");
    assert!(
        !ping(&i1.0, "10.77.0.2"),
        "reply without the fast path's filter"
    );
}

/// A hash map read whole with `BPF_MAP_LOOKUP_BATCH` gives every entry once, with its value,
/// across several batches; an empty map gives nothing.
#[test]
fn a_bpf_hash_map_is_read_whole_in_batches() {
    if skip_unless_root("a_bpf_hash_map_is_read_whole_in_batches") {
        return;
    }
    use softvpc_netlink::bpf::BpfHash;
    let map = BpfHash::create("svtest_batch", 8, 16, 4096).expect("map");
    let mut n = 0;
    map.for_each(|_, _| n += 1).expect("empty read");
    assert_eq!(n, 0);
    for i in 0u64..1500 {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&(i * 3).to_ne_bytes());
        map.insert(&i.to_ne_bytes(), &v).expect("insert");
    }
    let mut seen = std::collections::BTreeMap::new();
    map.for_each(|k, v| {
        let k = u64::from_ne_bytes(k.try_into().unwrap());
        let v = u64::from_ne_bytes(v[..8].try_into().unwrap());
        assert!(seen.insert(k, v).is_none(), "key {k} twice");
    })
    .expect("read");
    assert_eq!(seen.len(), 1500);
    assert!(seen.iter().all(|(k, v)| *v == k * 3));
}
