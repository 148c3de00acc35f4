//! Instance plumbing: the network namespace of a local instance, and one interface in it per
//! local ENI (`eth<device index>`).
//!
//! A namespace (`PREFIX<instance-id>`, see [`Plumber::create_namespace`]) starts with IPv6
//! disabled (so the instance never emits router solicitations or MLD reports) and `lo` up. Each
//! interface ([`Plumber::add_interface`]) is a TAP created in the agent's own namespace (the agent
//! keeps the fd), moved into the instance namespace and renamed `eth<N>`, with the ENI's MAC, MTU
//! 1450 (1500-byte underlay minus 50 bytes of VXLAN) and its addresses with the subnet prefix.
//!
//! Routing inside the instance follows Amazon Linux's ec2-net-utils:
//! - `eth0` owns the main table: its connected route and the default route via its subnet
//!   router.
//! - `eth<N>` (N > 0) gets policy-routing table `10000 + N` holding its connected route and a
//!   default route via its own subnet router, plus one rule `from <address> lookup 10000+N` per
//!   address (primary and secondary). Replies from an `eth<N>` address so leave by `eth<N>`,
//!   where the virtual router's anti-spoofing accepts them (it would drop them on `eth0`). Its
//!   addresses carry `noprefixroute`: its connected route is in its table only. Were it in main,
//!   traffic from `eth0`'s addresses to `eth<N>`'s subnet (replies included) would leave by
//!   `eth<N>` with `eth0`'s source, and be dropped; this way it goes by `eth0` via the router.
//!
//! Adding or removing an interface leaves the namespace and every other interface alone.
//!
//! This uses the `ip` command from iproute2 rather than netlink from Rust: it is one-off setup
//! per interface, not the data path, it reads exactly like the contract, and errors come with the
//! kernel's message. `rtnetlink` can replace it later behind the same functions.
//!
//! Namespaces are deleted only if this process created them ([`Plumber::created`]), with one
//! exception: a stale namespace with the exact name of an instance this agent is creating (left by
//! a previous run of this agent) is replaced. Two agents may share a prefix on one machine; they
//! never touch each other's instances because instance ids are unique.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tracing::{debug, warn};

use crate::netns;
use crate::reconcile::{EniSpec, MAX_DEVICE_INDEX};
use crate::records::format_mac;
use crate::tap::{tap_name_for_eni, Tap};

/// Instance MTU: a 1500-byte underlay minus outer IPv4 (20) + UDP (8) + VXLAN (8) + inner
/// Ethernet (14).
pub const INSTANCE_MTU: u32 = 1450;

/// How long [`Plumber::remove_interface`] waits for the data path to close a TAP before deleting
/// the device itself.
const REMOVE_GRACE: Duration = Duration::from_millis(500);

/// The namespace name of an instance.
pub fn netns_name(prefix: &str, instance_id: &str) -> String {
    format!("{prefix}{instance_id}")
}

/// An address as `ip addr` takes it: with the subnet's prefix length.
fn with_prefix(spec: &EniSpec, a: Ipv4Addr) -> String {
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

/// Whether `dev` exists in namespace `ns`.
fn link_exists(ns: &str, dev: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", "dev", dev])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Creates and deletes instance namespaces and their interfaces, remembering which namespaces
/// it created.
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

    /// The namespace name of `instance_id`.
    pub fn netns_of(&self, instance_id: &str) -> String {
        netns_name(&self.prefix, instance_id)
    }

    /// Creates the instance's namespace (IPv6 off, `lo` up, no other interface) and returns its
    /// name. On failure nothing is left behind.
    pub fn create_namespace(&mut self, instance_id: &str) -> anyhow::Result<String> {
        let ns = self.netns_of(instance_id);
        if netns::exists(&ns) {
            // Left by an earlier run (our fds died with it): this instance is in our view, so
            // the stale namespace is ours to replace.
            warn!(netns = %ns, "replacing a stale instance namespace");
            ip(&["netns", "del", &ns])?;
        }
        ip(&["netns", "add", &ns])?;
        self.created.insert(ns.clone());
        let setup = || -> anyhow::Result<()> {
            // Before any interface arrives, so none gets an IPv6 link-local address or sends
            // MLD/RS (moved-in devices take the namespace's defaults).
            netns::run_in(&ns, || {
                netns::write_sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
                netns::write_sysctl("net.ipv6.conf.default.disable_ipv6", "1")
            })?;
            ip(&["-n", &ns, "link", "set", "dev", "lo", "up"])
        };
        if let Err(e) = setup() {
            if let Err(e2) = self.destroy(&ns) {
                warn!(netns = %ns, error = %e2, "cleanup after a failed namespace setup");
            }
            return Err(e.context(format!("setting up namespace {ns}")));
        }
        Ok(ns)
    }

    /// Adds the ENI's interface `eth<N>` to its instance's (existing) namespace; returns the TAP
    /// (its fd is the agent's side of the interface). On failure the interface is gone again
    /// (the TAP closes) and its policy routes are removed.
    pub fn add_interface(&self, spec: &EniSpec) -> anyhow::Result<Tap> {
        let ns = self.netns_of(&spec.instance_id);
        if spec.device_index > MAX_DEVICE_INDEX {
            bail!("device index {} out of range", spec.device_index);
        }
        if !netns::exists(&ns) {
            bail!("namespace {ns} does not exist");
        }
        let tap = Tap::open(&tap_name_for_eni(&spec.eni_id))?;
        match self.plumb(spec, &ns, &tap) {
            Ok(()) => Ok(tap),
            Err(e) => {
                drop(tap);
                if let Err(e2) = self.clear_policy_routes(spec, &ns) {
                    warn!(netns = %ns, error = %format!("{e2:#}"), "cleanup after a failed interface setup");
                }
                Err(e.context(format!(
                    "setting up {} of instance {} in {ns}",
                    spec.ifname(),
                    spec.instance_id
                )))
            }
        }
    }

    fn plumb(&self, spec: &EniSpec, ns: &str, tap: &Tap) -> anyhow::Result<()> {
        let dev = spec.ifname();
        let mac = format_mac(&spec.mac);
        let mtu = INSTANCE_MTU.to_string();
        let gw = spec.gateway.to_string();
        let subnet = spec.subnet.to_string();
        let src = spec.ip.to_string();
        if link_exists(ns, &dev) {
            // Left by a removal that failed half-way: the device index is this ENI's now.
            warn!(netns = %ns, dev = %dev, "replacing a stale interface");
            ip(&["-n", ns, "link", "del", "dev", &dev])?;
        }
        ip(&["link", "set", "dev", tap.name(), "netns", ns])?;
        ip(&["-n", ns, "link", "set", "dev", tap.name(), "name", &dev])?;
        ip(&[
            "-n", ns, "link", "set", "dev", &dev, "address", &mac, "mtu", &mtu,
        ])?;
        let Some(table) = spec.route_table() else {
            // eth0: the kernel's connected route and the default route, both in main.
            for a in spec.addresses() {
                ip(&["-n", ns, "addr", "add", &with_prefix(spec, a), "dev", &dev])?;
            }
            ip(&["-n", ns, "link", "set", "dev", &dev, "up"])?;
            return ip(&["-n", ns, "route", "add", "default", "via", &gw, "dev", &dev]);
        };
        let table = table.to_string();
        // Leftovers of an earlier eth<N> whose removal failed half-way.
        self.clear_policy_routes(spec, ns)?;
        for a in spec.addresses() {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &with_prefix(spec, a),
                "dev",
                &dev,
                "noprefixroute",
            ])?;
        }
        ip(&["-n", ns, "link", "set", "dev", &dev, "up"])?;
        ip(&[
            "-n", ns, "route", "add", &subnet, "dev", &dev, "proto", "kernel", "scope", "link",
            "src", &src, "table", &table,
        ])?;
        ip(&[
            "-n", ns, "route", "add", "default", "via", &gw, "dev", &dev, "table", &table,
        ])?;
        for a in spec.addresses() {
            add_rule(ns, a, &table)?;
        }
        Ok(())
    }

    /// Removes the ENI's interface from its instance's namespace (and, for `eth<N>`, its policy
    /// rules and table). The caller has taken the TAP from the data path already; closing it
    /// deletes the device too, but the data path may not have done so yet, and the index may be
    /// reused right away.
    pub fn remove_interface(&self, spec: &EniSpec) -> anyhow::Result<()> {
        let ns = self.netns_of(&spec.instance_id);
        if !netns::exists(&ns) {
            return Ok(());
        }
        let dev = spec.ifname();
        // Give the data path a moment to close the TAP itself (deleting the device under an open
        // fd makes its next read fail, which it counts and logs as an I/O error).
        let deadline = Instant::now() + REMOVE_GRACE;
        while link_exists(&ns, &dev) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if link_exists(&ns, &dev) {
            if let Err(e) = ip(&["-n", &ns, "link", "del", "dev", &dev]) {
                // Gone meanwhile is what we want.
                if link_exists(&ns, &dev) {
                    return Err(e);
                }
            }
        }
        self.clear_policy_routes(spec, &ns)
    }

    /// Deletes every rule pointing at the interface's table and flushes the table (nothing to do
    /// for `eth0`).
    fn clear_policy_routes(&self, spec: &EniSpec, ns: &str) -> anyhow::Result<()> {
        let Some(table) = spec.route_table() else {
            return Ok(());
        };
        let table = table.to_string();
        // `ip rule del table T` removes one matching rule per call; an instance has at most one
        // per address of the ENI, which the server caps far below this bound.
        for _ in 0..1024 {
            if ip(&["-n", ns, "rule", "del", "table", &table]).is_err() {
                break;
            }
        }
        // Fails only when the table is empty already (or the namespace is gone).
        let _ = ip(&["-n", ns, "route", "flush", "table", &table]);
        let leftover = Command::new("ip")
            .args(["-n", ns, "rule", "show", "table", &table])
            .output()
            .context("running `ip rule show`")?;
        if !leftover.stdout.is_empty() {
            bail!(
                "rules of table {table} left in {ns}: {}",
                String::from_utf8_lossy(&leftover.stdout).trim()
            );
        }
        Ok(())
    }

    /// Brings the secondary addresses on the ENI's interface from `old` to `new` (its primary
    /// address, MAC and routes stay); on `eth<N>` their policy rules follow.
    pub fn update_secondary(&self, old: &EniSpec, new: &EniSpec) -> anyhow::Result<()> {
        let ns = self.netns_of(&new.instance_id);
        let dev = new.ifname();
        let table = new.route_table().map(|t| t.to_string());
        for a in old
            .secondary_ips
            .iter()
            .filter(|a| !new.secondary_ips.contains(a))
        {
            if let Some(table) = &table {
                del_rule(&ns, *a, table)?;
            }
            ip(&["-n", &ns, "addr", "del", &with_prefix(new, *a), "dev", &dev])?;
        }
        for a in new
            .secondary_ips
            .iter()
            .filter(|a| !old.secondary_ips.contains(a))
        {
            let addr = with_prefix(new, *a);
            match &table {
                None => ip(&["-n", &ns, "addr", "add", &addr, "dev", &dev])?,
                Some(table) => {
                    ip(&[
                        "-n",
                        &ns,
                        "addr",
                        "add",
                        &addr,
                        "dev",
                        &dev,
                        "noprefixroute",
                    ])?;
                    add_rule(&ns, *a, table)?;
                }
            }
        }
        Ok(())
    }

    /// Deletes the namespace of `instance_id` if this process created it.
    pub fn delete_namespace(&mut self, instance_id: &str) -> anyhow::Result<()> {
        let ns = self.netns_of(instance_id);
        self.destroy(&ns)
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

/// `from <a> lookup <table>`, at priority `<table>` (one rule per address, as ec2-net-utils).
fn add_rule(ns: &str, a: Ipv4Addr, table: &str) -> anyhow::Result<()> {
    let from = a.to_string();
    ip(&[
        "-n", ns, "rule", "add", "from", &from, "lookup", table, "priority", table,
    ])
}

fn del_rule(ns: &str, a: Ipv4Addr, table: &str) -> anyhow::Result<()> {
    let from = a.to_string();
    ip(&[
        "-n", ns, "rule", "del", "from", &from, "lookup", table, "priority", table,
    ])
}
