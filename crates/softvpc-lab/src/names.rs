//! Every name and address the lab derives from its prefix and the topology.
//!
//! These are contracts with the agent and the end-to-end tests (see the lab section of
//! ARCHITECTURE.md): fabric netns `${P}fabric` with bridge `br0` at 198.18.0.1/16, host netns
//! `${P}<host>` with underlay `u0` at 198.18.0.(10+i)/16, instance netns `${P}<instance-id>`.

use std::net::Ipv4Addr;

/// The fabric bridge's address, where the mapping service listens.
pub const FABRIC_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Prefix length of the underlay network.
pub const UNDERLAY_PREFIX_LEN: u8 = 16;
/// The bridge inside the fabric netns.
pub const FABRIC_BRIDGE: &str = "br0";
/// A host's underlay interface, inside its netns.
pub const HOST_UNDERLAY_IF: &str = "u0";
/// The underlay's MTU: instances' 9001 plus 50 bytes of VXLAN encapsulation fit.
pub const UNDERLAY_MTU: u32 = 9100;
/// The bridge inside the internet netns that its hosts' addresses live on (and where gateways
/// will attach).
pub const INTERNET_BRIDGE: &str = "inet0";
/// The internet bridge's MAC, set by `lab up`: a Linux bridge otherwise takes its lowest
/// port's address, so an agent restart (its edge TAP leaves and comes back) would change the
/// MAC the edges send to, which a real next-hop router does not do.
pub const INTERNET_MAC: [u8; 6] = [0x02, 0x49, 0x4e, 0x45, 0x54, 0x01];
/// The lab subcommand that serves the internet's HTTP and UDP echo (hidden; the lab runs it).
pub const INTERNET_SERVE: &str = "internet-serve";
/// Port of the mapping service (gRPC), on [`FABRIC_IP`].
pub const MAPPING_PORT: u16 = 8788;
/// Longest prefix accepted: instance netns names are prefix + 19 characters, and leftover links
/// in the root netns are recognised by the prefix, so it must leave room in a 15-byte ifname.
pub const MAX_PREFIX_LEN: usize = 12;

/// Checks a lab prefix: 1..=12 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err(format!(
            "lab prefix {prefix:?} must have 1..={MAX_PREFIX_LEN} characters"
        ));
    }
    if !prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        || prefix.starts_with(['.', '-'])
    {
        return Err(format!(
            "lab prefix {prefix:?} may only hold letters, digits, '_', '.', '-' and must start with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a host name: it becomes part of a netns name and must not collide with the fabric's
/// or an instance's netns.
pub fn check_host_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 40 {
        return Err("a host name must have 1..=40 characters".to_string());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err("a host name may only hold letters, digits, '_', '.', '-' and must start with a letter or digit".to_string());
    }
    if name == "fabric"
        || name == "internet"
        || name.starts_with("i-")
        || name.starts_with("replica-")
        || name.starts_with("etcd-")
    {
        return Err(
            "\"fabric\", \"internet\" and names starting with \"i-\", \"replica-\" or \"etcd-\" are reserved for the lab's own namespaces"
                .to_string(),
        );
    }
    Ok(())
}

/// The fabric's netns.
pub fn fabric_netns(prefix: &str) -> String {
    format!("{prefix}fabric")
}

/// The internet's netns.
pub fn internet_netns(prefix: &str) -> String {
    format!("{prefix}internet")
}

/// A host's netns.
pub fn host_netns(prefix: &str, host: &str) -> String {
    format!("{prefix}{host}")
}

/// An instance's netns (created by the agent).
pub fn instance_netns(prefix: &str, instance_id: &str) -> String {
    format!("{prefix}{instance_id}")
}

/// The fabric-side end of host number `index`'s veth (1-based). It only exists inside the
/// fabric netns, so it needs no prefix.
pub fn fabric_port(index: usize) -> String {
    format!("vh{index}")
}

/// Underlay address of host number `index` (1-based): 198.18.0.(10+index).
pub fn underlay_ip(index: usize) -> Ipv4Addr {
    let last = u8::try_from(10 + index).expect("host index checked against MAX_HOSTS");
    Ipv4Addr::new(198, 18, 0, last)
}

/// URL of the mapping service as agents see it.
pub fn mapping_url() -> String {
    format!("https://{FABRIC_IP}:{MAPPING_PORT}")
}

/// Server replicas and etcd members of `lab up --ha`.
pub const HA_MEMBERS: usize = 3;
/// Client port of the lab's etcd members.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// Peer port of the lab's etcd members.
pub const ETCD_PEER_PORT: u16 = 2380;

/// The netns of server replica `i` (1-based) of `lab up --ha`.
pub fn replica_netns(prefix: &str, i: usize) -> String {
    format!("{prefix}replica-{i}")
}

/// The netns of etcd member `i` (1-based) of `lab up --ha`.
pub fn etcd_netns(prefix: &str, i: usize) -> String {
    format!("{prefix}etcd-{i}")
}

/// Underlay address of server replica `i` (1-based): 198.18.1.i, where its mapping service
/// listens.
pub fn replica_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, u8::try_from(i).expect("replica index is small"))
}

/// Underlay address of etcd member `i` (1-based): 198.18.2.i.
pub fn etcd_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 2, u8::try_from(i).expect("member index is small"))
}

/// Loopback address of replica `i`'s EC2 API (1-based): 127.0.0.i, so the replicas share the
/// lab's API port.
pub fn replica_api_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, u8::try_from(i).expect("replica index is small"))
}

/// The fabric-side end of replica `i`'s veth.
pub fn replica_port(i: usize) -> String {
    format!("vr{i}")
}

/// The fabric-side end of etcd member `i`'s veth.
pub fn etcd_port(i: usize) -> String {
    format!("ve{i}")
}

/// The mapping service URLs agents are given: the one server's, or every replica's.
pub fn mapping_urls(ha: bool) -> String {
    if !ha {
        return mapping_url();
    }
    (1..=HA_MEMBERS)
        .map(|i| format!("https://{}:{MAPPING_PORT}", replica_ip(i)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a process command line belongs to this prefix's lab: a softvpc server whose mapping
/// listener lives in `${P}fabric`, a softvpc agent whose instance netns prefix is `P`, or the
/// internet's servers in `${P}internet`.
/// Used by `lab down` to find processes when the state file is gone.
pub fn cmdline_belongs_to_lab(argv: &[String], prefix: &str) -> bool {
    let Some(arg0) = argv.first() else {
        return false;
    };
    let exe = arg0.rsplit('/').next().unwrap_or(arg0);
    let sub = argv.get(1).map(String::as_str);
    let internet = sub == Some("lab") && argv.get(2).map(String::as_str) == Some(INTERNET_SERVE);
    exe.starts_with("softvpc")
        && (matches!(sub, Some("server" | "agent")) || internet)
        && cmdline_has_lab_flags(argv, prefix)
}

/// Whether a command line carries this lab's server or agent flags, whatever runs it (a
/// recorded pid may be a `--bin` wrapper script that has not exec'd softvpc yet).
pub fn cmdline_has_lab_flags(argv: &[String], prefix: &str) -> bool {
    let value = |flag: &str| -> Option<&str> {
        let eq = format!("{flag}=");
        argv.iter().enumerate().find_map(|(i, a)| {
            if a == flag {
                argv.get(i + 1).map(String::as_str)
            } else {
                a.strip_prefix(&eq)
            }
        })
    };
    let replica = |ns: &str| {
        ns.strip_prefix(prefix)
            .and_then(|n| n.strip_prefix("replica-"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let server = value("--mapping-netns") == Some(fabric_netns(prefix).as_str())
        || (argv.iter().any(|a| a == "server") && value("--netns").is_some_and(replica));
    let agent = value("--instance-netns-prefix") == Some(prefix)
        && value("--netns").is_some_and(|ns| ns.starts_with(prefix));
    let internet = argv.iter().any(|a| a == INTERNET_SERVE)
        && value("--netns") == Some(internet_netns(prefix).as_str());
    server || agent || internet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(fabric_netns("svpc-"), "svpc-fabric");
        assert_eq!(host_netns("svpc-", "host-1"), "svpc-host-1");
        assert_eq!(
            instance_netns("svpc-", "i-0123456789abcdef0"),
            "svpc-i-0123456789abcdef0"
        );
        assert_eq!(underlay_ip(1), Ipv4Addr::new(198, 18, 0, 11));
        assert_eq!(underlay_ip(2), Ipv4Addr::new(198, 18, 0, 12));
        assert_eq!(
            underlay_ip(crate::topology::MAX_HOSTS),
            Ipv4Addr::new(198, 18, 0, 250)
        );
        assert_eq!(mapping_url(), "https://198.18.0.1:8788");
        assert!(fabric_port(crate::topology::MAX_HOSTS).len() <= 15);
        assert_eq!(replica_netns("svpc-", 2), "svpc-replica-2");
        assert_eq!(etcd_netns("svpc-", 3), "svpc-etcd-3");
        assert_eq!(replica_ip(1), Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(etcd_ip(3), Ipv4Addr::new(198, 18, 2, 3));
        assert_eq!(replica_api_ip(2), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(mapping_urls(false), mapping_url());
        assert_eq!(
            mapping_urls(true),
            "https://198.18.1.1:8788,https://198.18.1.2:8788,https://198.18.1.3:8788"
        );
    }

    #[test]
    fn prefixes_are_checked() {
        for ok in ["svpc-", "lbt-", "a", "t_1.x-"] {
            assert_eq!(check_prefix(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-x", "a/b", "a b", "waytoolongprefix-"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names_are_checked() {
        assert!(check_host_name("host-1").is_ok());
        for bad in [
            "",
            "fabric",
            "internet",
            "i-123",
            "replica-1",
            "etcd-2",
            "-x",
            "a/b",
            &"x".repeat(41),
        ] {
            assert!(check_host_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lab_processes_are_recognised_by_their_command_line() {
        let p = "lbt-";
        assert!(cmdline_belongs_to_lab(
            &argv("/work/target/release/softvpc server --data-dir /x --mapping-netns lbt-fabric --mapping-listen 198.18.0.1:8788"),
            p
        ));
        assert!(cmdline_belongs_to_lab(
            &argv("softvpc server --mapping-netns=lbt-fabric"),
            p
        ));
        assert!(cmdline_belongs_to_lab(
            &argv("softvpc agent --netns lbt-host-1 --server http://198.18.0.1:8788 --instance-netns-prefix lbt-"),
            p
        ));
        // Another lab whose prefix merely starts with ours is left alone.
        assert!(!cmdline_belongs_to_lab(
            &argv("softvpc server --mapping-netns lbt-x-fabric"),
            p
        ));
        assert!(!cmdline_belongs_to_lab(
            &argv("softvpc agent --netns lbt-x-host-1 --instance-netns-prefix lbt-x-"),
            p
        ));
        // Not softvpc, or no lab flags.
        assert!(!cmdline_belongs_to_lab(
            &argv("sleep --mapping-netns lbt-fabric"),
            p
        ));
        assert!(!cmdline_belongs_to_lab(
            &argv("softvpc server --data-dir /x"),
            p
        ));
        assert!(!cmdline_belongs_to_lab(&[], p));
        // The replicas of `lab up --ha`, each in its own netns.
        assert!(cmdline_belongs_to_lab(
            &argv("softvpc server --netns lbt-replica-2 --store etcd"),
            p
        ));
        assert!(!cmdline_belongs_to_lab(
            &argv("softvpc server --netns lbt-x-replica-2"),
            p
        ));
        assert!(!cmdline_belongs_to_lab(
            &argv("softvpc server --netns lbt-replica-"),
            p
        ));
        // A --bin wrapper still running as a shell script: its flags say whose it is.
        let wrapper =
            argv("/bin/sh /tmp/wrap.sh agent --netns lbt-host-1 --instance-netns-prefix lbt-");
        assert!(!cmdline_belongs_to_lab(&wrapper, p));
        assert!(cmdline_has_lab_flags(&wrapper, p));
        assert!(!cmdline_has_lab_flags(&wrapper, "lbt-x-"));
        assert!(!cmdline_has_lab_flags(&argv("sleep 10"), p));
        // The internet's servers.
        assert!(cmdline_belongs_to_lab(
            &argv("/x/softvpc lab internet-serve --netns lbt-internet --http 203.0.113.10:80"),
            p
        ));
        assert!(!cmdline_belongs_to_lab(
            &argv("/x/softvpc lab internet-serve --netns lbt-x-internet"),
            p
        ));
        assert!(!cmdline_belongs_to_lab(
            &argv("/x/softvpc lab exec --netns lbt-internet"),
            p
        ));
    }
}
