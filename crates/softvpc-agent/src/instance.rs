//! Instance plumbing: the network namespace of a local instance, with its ENI's TAP as `eth0`.
//!
//! For each [`InstanceSpec`]: create netns `PREFIX<instance-id>`, disable IPv6 in it (so the
//! instance never emits router solicitations or MLD reports), create the TAP in the agent's own
//! namespace (the agent keeps the fd), move it into the instance namespace, rename it `eth0`, set
//! the ENI's MAC, MTU 1450 (1500-byte underlay minus 50 bytes of VXLAN), the address with the
//! subnet prefix (and the ENI's secondary addresses, so the instance answers on them), bring it
//! and `lo` up and add the default route via the subnet router.
//!
//! This uses the `ip` command from iproute2 rather than netlink from Rust: it is one-off setup
//! per instance, not the data path, it reads exactly like the contract, and errors come with the
//! kernel's message. `rtnetlink` can replace it later behind the same two functions.
//!
//! Namespaces are deleted only if this process created them ([`Plumber::created`]), with one
//! exception: a stale namespace with the exact name of an instance this agent is creating (left by
//! a previous run of this agent) is replaced. Two agents may share a prefix on one machine; they
//! never touch each other's instances because instance ids are unique.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{bail, Context as _};
use tracing::{debug, warn};

use crate::netns;
use crate::reconcile::InstanceSpec;
use crate::records::format_mac;
use crate::tap::{tap_name_for_eni, Tap};

/// Instance MTU: a 1500-byte underlay minus outer IPv4 (20) + UDP (8) + VXLAN (8) + inner
/// Ethernet (14).
pub const INSTANCE_MTU: u32 = 1450;

/// The namespace name of an instance.
pub fn netns_name(prefix: &str, instance_id: &str) -> String {
    format!("{prefix}{instance_id}")
}

/// A secondary address as `ip addr` takes it: with the subnet's prefix length.
fn secondary(spec: &InstanceSpec, a: std::net::Ipv4Addr) -> String {
    format!("{a}/{}", spec.subnet.prefix_len())
}

/// Runs `ip ARGS...`, failing with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    debug!(?args, "ip");
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Creates and deletes instance namespaces, remembering which ones it created.
#[derive(Debug)]
pub struct Plumber {
    prefix: String,
    created: BTreeSet<String>,
}

impl Plumber {
    pub fn new(prefix: &str) -> Plumber {
        Plumber {
            prefix: prefix.to_string(),
            created: BTreeSet::new(),
        }
    }

    /// The namespaces this process created and has not deleted yet.
    pub fn created(&self) -> &BTreeSet<String> {
        &self.created
    }

    pub fn netns_of(&self, spec: &InstanceSpec) -> String {
        netns_name(&self.prefix, &spec.instance_id)
    }

    /// Creates the instance's namespace and TAP; returns the TAP (its fd is the agent's side of
    /// the instance's `eth0`). On failure nothing is left behind.
    pub fn create(&mut self, spec: &InstanceSpec) -> anyhow::Result<Tap> {
        let ns = self.netns_of(spec);
        if netns::exists(&ns) {
            // Left by an earlier run (our fds died with it): this instance is in our view, so
            // the stale namespace is ours to replace.
            warn!(netns = %ns, "replacing a stale instance namespace");
            ip(&["netns", "del", &ns])?;
        }
        ip(&["netns", "add", &ns])?;
        self.created.insert(ns.clone());
        match self.plumb(spec, &ns) {
            Ok(tap) => Ok(tap),
            Err(e) => {
                if let Err(e2) = self.destroy(&ns) {
                    warn!(netns = %ns, error = %e2, "cleanup after a failed create");
                }
                Err(e.context(format!("setting up instance {} in {ns}", spec.instance_id)))
            }
        }
    }

    fn plumb(&self, spec: &InstanceSpec, ns: &str) -> anyhow::Result<Tap> {
        // Before eth0 arrives, so it never gets an IPv6 link-local address or sends MLD/RS.
        netns::run_in(ns, || {
            netns::write_sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
            netns::write_sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        })?;
        let tap = Tap::open(&tap_name_for_eni(&spec.eni_id))?;
        let mac = format_mac(&spec.mac);
        let mtu = INSTANCE_MTU.to_string();
        let addr = format!("{}/{}", spec.ip, spec.subnet.prefix_len());
        let gw = spec.gateway.to_string();
        ip(&["link", "set", "dev", tap.name(), "netns", ns])?;
        ip(&["-n", ns, "link", "set", "dev", tap.name(), "name", "eth0"])?;
        ip(&[
            "-n", ns, "link", "set", "dev", "eth0", "address", &mac, "mtu", &mtu,
        ])?;
        ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
        for a in &spec.secondary_ips {
            ip(&["-n", ns, "addr", "add", &secondary(spec, *a), "dev", "eth0"])?;
        }
        ip(&["-n", ns, "link", "set", "dev", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "dev", "lo", "up"])?;
        ip(&[
            "-n", ns, "route", "add", "default", "via", &gw, "dev", "eth0",
        ])?;
        Ok(tap)
    }

    /// Brings the secondary addresses on the instance's `eth0` from `old` to `new` (its
    /// primary address, MAC and routes stay).
    pub fn update_secondary(&self, old: &InstanceSpec, new: &InstanceSpec) -> anyhow::Result<()> {
        let ns = self.netns_of(new);
        for a in old
            .secondary_ips
            .iter()
            .filter(|a| !new.secondary_ips.contains(a))
        {
            ip(&["-n", &ns, "addr", "del", &secondary(new, *a), "dev", "eth0"])?;
        }
        for a in new
            .secondary_ips
            .iter()
            .filter(|a| !old.secondary_ips.contains(a))
        {
            ip(&["-n", &ns, "addr", "add", &secondary(new, *a), "dev", "eth0"])?;
        }
        Ok(())
    }

    /// Deletes a namespace this process created (others are left alone, with a warning).
    pub fn destroy(&mut self, ns: &str) -> anyhow::Result<()> {
        if !self.created.contains(ns) {
            warn!(netns = %ns, "not deleting a namespace this agent did not create");
            return Ok(());
        }
        if netns::exists(ns) {
            ip(&["netns", "del", ns])?;
        }
        self.created.remove(ns);
        Ok(())
    }

    /// Deletes every namespace this process created (at shutdown). Errors are logged.
    pub fn destroy_all(&mut self) {
        let all: Vec<String> = self.created.iter().cloned().collect();
        for ns in all {
            if let Err(e) = self.destroy(&ns) {
                warn!(netns = %ns, error = %e, "deleting instance namespace");
            }
        }
    }
}
