//! Instance plumbing: the network namespace of a local instance, and one interface in it per
//! local ENI (`eth<device index>`).
//!
//! A namespace (`PREFIX<instance-id>`, see [`Plumber::create_namespace`]) starts with IPv6
//! disabled (so the instance never emits router solicitations or MLD reports) and `lo` up. Each
//! interface ([`Plumber::add_interface`]) is a TAP created in the agent's own namespace (the agent
//! keeps the fd), moved into the instance namespace and renamed `eth<N>`, with the ENI's MAC, MTU
//! 9001 (AWS's jumbo frames within a VPC; the underlay carries 9001 + 50 bytes of VXLAN) and its
//! addresses with the subnet prefix.
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
//! **DHCP addressing** (`--instance-addressing dhcp`, what the lab uses): `eth0` comes up with
//! its MAC, MTU 1500 and no primary address or route; a DHCP client in the namespace
//! (`guest.rs`) gets them, MTU 9001 and the resolver from the host's virtual router, as an EC2
//! instance does. Its secondary addresses are still the agent's (on EC2 too they come from the
//! instance's own scripts, not DHCP); `promote_secondaries` is on, as systemd sets it, so
//! removing one never takes the others with it.
//!
//! All of it goes through netlink (`softvpc-netlink`): one rtnetlink socket in the agent's own
//! namespace (where TAPs are created, and moved out of) and one per instance namespace, opened
//! when the namespace is made. No `ip` process is forked.
//!
//! Namespaces are deleted only if this agent created them ([`Plumber::created`]): the ones this
//! process made, and those an earlier run of it made, listed in `<state-dir>/instances.json`
//! ([`OWNED_FILE`], rewritten whenever the list changes). Two agents may share a prefix on one
//! machine; they never touch each other's instances because instance ids are unique.
//!
//! **Agent restarts.** Instances outlive the agent: their TAPs are persistent (`tap.rs`), and the
//! agent deletes no namespace when it exits (also not on SIGTERM). A new agent takes them over
//! at its first reconcile ([`Plumber::adopt`]): each wanted interface whose device is still there
//! (a TAP with the ENI's MAC and primary address) is attached again, as it is (same namespace,
//! same interface index, addresses and routes untouched); other devices in the namespace belong
//! to no port and are deleted; owned namespaces of instances no longer placed here are deleted
//! by the ordinary plan. So no instance is re-created by a restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use std::net::Ipv4Addr;

use softvpc_netlink::{netns, LinkChange, Netlink, Route};
use tracing::warn;

use crate::guest::{self, DhcpClients};
use crate::reconcile::{EniSpec, MAX_DEVICE_INDEX};
use crate::tap::{tap_name_for_eni, Tap};

/// Instance MTU: AWS's 9001 within a VPC. The underlay must carry it plus outer IPv4 (20) +
/// UDP (8) + VXLAN (8) + inner Ethernet (14): 9051 bytes (the lab's underlay is 9100).
pub const INSTANCE_MTU: u32 = 9001;

/// `eth0`'s MTU until DHCP gives it 9001 (option 26), as an instance's interface comes up.
const DHCP_INITIAL_MTU: u32 = 1500;

/// How long [`Plumber::remove_interface`] waits for the data path to close a TAP before deleting
/// the device itself.
const REMOVE_GRACE: Duration = Duration::from_millis(500);

/// The file in the agent's state dir that lists the instance namespaces it created.
pub const OWNED_FILE: &str = "instances.json";

/// The namespace name of an instance.
pub fn netns_name(prefix: &str, instance_id: &str) -> String {
    format!("{prefix}{instance_id}")
}

/// Creates and deletes instance namespaces and their interfaces, remembering which namespaces
/// it created.
#[derive(Debug)]
pub struct Plumber {
    prefix: String,
    created: BTreeSet<String>,
    /// The agent's own namespace.
    host: Netlink,
    /// A socket per instance namespace we plumb, by namespace name.
    sockets: HashMap<String, Netlink>,
    /// Give each interface a `clsact` qdisc before it comes up (the kernel fast path's hook).
    clsact: bool,
    /// Where `created` is kept across restarts (none: not kept).
    record: Option<PathBuf>,
    /// DHCP addressing: the clients that configure `eth0` (none: static addressing).
    dhcp: Option<DhcpClients>,
}

impl Plumber {
    /// A plumber for instance namespaces named `prefix` + instance id. Needs a tokio runtime
    /// (its netlink sockets run on it); TAPs are created in the caller's namespace.
    pub fn new(prefix: &str) -> anyhow::Result<Plumber> {
        Ok(Plumber {
            prefix: prefix.to_string(),
            created: BTreeSet::new(),
            host: Netlink::connect()?,
            sockets: HashMap::new(),
            clsact: false,
            record: None,
            dhcp: None,
        })
    }

    /// DHCP addressing: `eth0` is configured by a DHCP client from `clients`, not by the agent.
    pub fn with_dhcp(mut self, clients: DhcpClients) -> Plumber {
        self.dhcp = Some(clients);
        self
    }

    /// Starts the DHCP client of `ns` (DHCP addressing only).
    fn start_client(&self, ns: &str) -> anyhow::Result<()> {
        if let Some(clients) = &self.dhcp {
            guest::prepare_etc(ns)?;
            clients.start(ns)?;
        }
        Ok(())
    }

    /// With the kernel fast path on: each interface gets its `clsact` qdisc while still down.
    /// Adding one to a device that is up deactivates the device's transmit queues for an RCU
    /// grace period, and what the instance sends meanwhile is dropped (the first ping across a
    /// new port's first installed flow was lost that way).
    pub fn with_clsact(mut self, on: bool) -> Plumber {
        self.clsact = on;
        self
    }

    async fn add_clsact(&self, nl: &Netlink, dev: &str) -> anyhow::Result<()> {
        if !self.clsact {
            return Ok(());
        }
        match nl.add_clsact(dev).await {
            Err(e) if e.errno() != Some(libc::EEXIST) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// The same plumber keeping the list of namespaces it created in `path` (across restarts):
    /// those an earlier run listed that still exist are its own from the start.
    pub fn with_record(mut self, path: PathBuf) -> Plumber {
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Vec<String>>(&bytes) {
                Ok(list) => {
                    self.created.extend(
                        list.into_iter()
                            .filter(|ns| ns.starts_with(&self.prefix) && netns::exists(ns)),
                    );
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "ignoring an unreadable list of instance namespaces")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot read the list of instance namespaces")
            }
        }
        self.record = Some(path);
        self.save_record();
        self
    }

    /// Writes `created` to the record (atomically: a temporary file renamed over it).
    fn save_record(&self) {
        let Some(path) = &self.record else {
            return;
        };
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec(&self.created).unwrap_or_default();
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            warn!(path = %path.display(), error = %e, "cannot write the list of instance namespaces");
        }
    }

    /// Deletes the instance TAPs left in the agent's own namespace (`t` + 14 hex digits: an
    /// interface whose setup an earlier run did not finish); they belong to no port. Returns
    /// their names.
    pub async fn remove_stray_taps(&self) -> anyhow::Result<Vec<String>> {
        let mut removed = Vec::new();
        for name in self.host.link_names().await? {
            let agent_made = name.len() == 15
                && name.starts_with('t')
                && name[1..].bytes().all(|b| b.is_ascii_hexdigit());
            if agent_made {
                self.host.del_link(&name).await?;
                removed.push(name);
            }
        }
        Ok(removed)
    }

    /// Takes over what an earlier run of the agent left for `instance_id` (whose interfaces
    /// should be `wanted`): if its namespace exists, it becomes this agent's, and each wanted
    /// interface found there as a TAP with the ENI's MAC and primary address is attached again
    /// and returned as it is (its secondary addresses as found, so the plan brings them in line).
    /// Every other interface in the namespace is deleted with its policy routes. Nothing found:
    /// an empty list (the plan creates what is missing).
    pub async fn adopt(
        &mut self,
        instance_id: &str,
        wanted: &BTreeMap<u32, EniSpec>,
    ) -> anyhow::Result<Vec<(EniSpec, Tap)>> {
        let ns = self.netns_of(instance_id);
        if !netns::exists(&ns) {
            return Ok(Vec::new());
        }
        if self.created.insert(ns.clone()) {
            self.save_record();
        }
        let nl = self.socket(&ns)?;
        let mut adopted = Vec::new();
        for name in nl.link_names().await? {
            if name == "lo" {
                continue;
            }
            let index = name.strip_prefix("eth").and_then(|n| n.parse::<u32>().ok());
            let spec = index.and_then(|i| wanted.get(&i));
            if let Some(spec) = spec {
                match self.take_over(spec, &ns, &nl).await {
                    Ok(Some(found)) => {
                        adopted.push(found);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(netns = %ns, dev = %name, error = %format!("{e:#}"), "cannot take over an interface; replacing it")
                    }
                }
            }
            // Belongs to no port: deleted (with its policy routes, for eth<N>).
            warn!(netns = %ns, dev = %name, "removing an interface that belongs to no port");
            if let Err(e) = nl.del_link(&name).await {
                if !e.is_not_found() {
                    return Err(e.into());
                }
            }
            if let Some(i) = index.filter(|i| *i > 0 && *i <= MAX_DEVICE_INDEX) {
                let table = crate::reconcile::ROUTE_TABLE_BASE + i;
                nl.del_rules_of_table(table).await?;
                nl.flush_table(table).await?;
            }
        }
        Ok(adopted)
    }

    /// The interface of `spec` as found in `ns`, attached again, if it is the ENI's (a TAP with
    /// its MAC and primary address).
    async fn take_over(
        &self,
        spec: &EniSpec,
        ns: &str,
        nl: &Netlink,
    ) -> anyhow::Result<Option<(EniSpec, Tap)>> {
        let dev = spec.ifname();
        let len = spec.subnet.prefix_len();
        if nl.link_mac(&dev).await? != Some(spec.mac) {
            return Ok(None);
        }
        let addrs = nl.addresses(&dev).await?;
        // Under DHCP, eth0's primary address is the client's to set (it may not have its lease
        // yet); its client goes on, or a new one starts.
        let by_dhcp = self.dhcp.is_some() && spec.device_index == 0;
        if !by_dhcp && !addrs.contains(&(spec.ip, len)) {
            return Ok(None);
        }
        let found_secondary: BTreeSet<Ipv4Addr> = addrs
            .iter()
            .filter(|(a, l)| *l == len && *a != spec.ip)
            .map(|(a, _)| *a)
            .collect();
        let want: BTreeSet<Ipv4Addr> = spec.secondary_ips.iter().copied().collect();
        let mut found = spec.clone();
        if found_secondary != want {
            found.secondary_ips = found_secondary.into_iter().collect();
        }
        // An earlier run's kernel fast path left its flow filters on the interface, redirecting
        // to devices that go below (they belong to no port): the filters go now, so nothing is
        // sent to a device that is gone or was decided by the old engine. The clsact itself
        // stays when the fast path is on (adding one to a device that is up drops what is sent
        // meanwhile), and goes when it is off.
        let cleared = if self.clsact {
            nl.del_filters(&dev, softvpc_netlink::Hook::Egress, 0).await
        } else {
            nl.del_clsact(&dev).await
        };
        // (EINVAL: no clsact there, so no filter either.)
        if let Err(e) = cleared.or_else(|e| {
            if e.errno() == Some(libc::EINVAL) {
                Ok(())
            } else {
                Err(e)
            }
        }) {
            warn!(netns = %ns, dev = %dev, error = %e, "cannot remove an earlier run's fast path filters");
        }
        let name = dev.clone();
        // TUNSETIFF looks the name up in the namespace /dev/net/tun was opened in.
        let tap = netns::run_in(ns, move || {
            Tap::attach(&name).map_err(|e| anyhow::anyhow!(e))
        })?;
        if by_dhcp {
            match self.dhcp.as_ref().and_then(|c| c.running(ns)) {
                Some(pid) => tracing::info!(netns = %ns, pid, "DHCP client still running"),
                None => self.start_client(ns)?,
            }
        }
        Ok(Some((found, tap)))
    }

    /// The namespaces this process created and has not deleted yet.
    pub fn created(&self) -> &BTreeSet<String> {
        &self.created
    }

    /// The namespace name of `instance_id`.
    pub fn netns_of(&self, instance_id: &str) -> String {
        netns_name(&self.prefix, instance_id)
    }

    /// The socket in namespace `ns` (opened on first use, e.g. after an agent restart).
    fn socket(&mut self, ns: &str) -> anyhow::Result<Netlink> {
        if let Some(nl) = self.sockets.get(ns) {
            return Ok(nl.clone());
        }
        let nl = Netlink::connect_in(ns)?;
        self.sockets.insert(ns.to_string(), nl.clone());
        Ok(nl)
    }

    /// Creates the instance's namespace (IPv6 off, `lo` up, no other interface) and returns its
    /// name. On failure nothing is left behind.
    pub async fn create_namespace(&mut self, instance_id: &str) -> anyhow::Result<String> {
        let ns = self.netns_of(instance_id);
        if netns::exists(&ns) {
            // Left by an earlier run (our fds died with it): this instance is in our view, so
            // the stale namespace is ours to replace.
            warn!(netns = %ns, "replacing a stale instance namespace");
            self.sockets.remove(&ns);
            netns::delete(&ns)?;
        }
        netns::create(&ns)?;
        self.created.insert(ns.clone());
        self.save_record();
        let setup = async {
            // Before any interface arrives, so none gets an IPv6 link-local address or sends
            // MLD/RS (moved-in devices take the namespace's defaults).
            netns::set_sysctl(&ns, "net.ipv6.conf.all.disable_ipv6", "1")?;
            netns::set_sysctl(&ns, "net.ipv6.conf.default.disable_ipv6", "1")?;
            // Removing the first address of a subnet keeps the others (systemd's default).
            netns::set_sysctl(&ns, "net.ipv4.conf.all.promote_secondaries", "1")?;
            netns::set_sysctl(&ns, "net.ipv4.conf.default.promote_secondaries", "1")?;
            if self.dhcp.is_some() {
                guest::prepare_etc(&ns)?;
            }
            self.socket(&ns)?.set_up("lo").await?;
            anyhow::Ok(())
        };
        if let Err(e) = setup.await {
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
    pub async fn add_interface(&mut self, spec: &EniSpec) -> anyhow::Result<Tap> {
        let ns = self.netns_of(&spec.instance_id);
        if spec.device_index > MAX_DEVICE_INDEX {
            bail!("device index {} out of range", spec.device_index);
        }
        if !netns::exists(&ns) {
            bail!("namespace {ns} does not exist");
        }
        let nl = self.socket(&ns)?;
        let tap = Tap::create_persistent(&tap_name_for_eni(&spec.eni_id))?;
        match self.plumb(spec, &ns, &nl, &tap).await {
            Ok(()) => Ok(tap),
            Err(e) => {
                // Closing deletes it again.
                let _ = tap.set_persistent(false);
                drop(tap);
                if let Err(e2) = clear_policy_routes(spec, &ns, &nl).await {
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

    async fn plumb(&self, spec: &EniSpec, ns: &str, nl: &Netlink, tap: &Tap) -> anyhow::Result<()> {
        let dev = spec.ifname();
        let len = spec.subnet.prefix_len();
        if nl.link_exists(&dev).await? {
            // Left by a removal that failed half-way: the device index is this ENI's now.
            warn!(netns = %ns, dev = %dev, "replacing a stale interface");
            nl.del_link(&dev).await?;
        }
        self.host.move_to_netns(tap.name(), ns).await?;
        let change = LinkChange {
            name: Some(dev.clone()),
            mac: Some(spec.mac),
            mtu: Some(if self.dhcp.is_some() && spec.device_index == 0 {
                DHCP_INITIAL_MTU
            } else {
                INSTANCE_MTU
            }),
            up: None,
        };
        nl.set_link(tap.name(), &change).await?;
        let Some(table) = spec.route_table() else {
            if self.dhcp.is_some() {
                // eth0 by DHCP: the client sets the address, MTU and routes; the secondary
                // addresses are ours.
                for a in &spec.secondary_ips {
                    nl.add_address(&dev, *a, len, false).await?;
                }
                self.add_clsact(nl, &dev).await?;
                nl.set_up(&dev).await?;
                return self.start_client(ns);
            }
            // eth0: the kernel's connected route and the default route, both in main.
            for a in spec.addresses() {
                nl.add_address(&dev, a, len, false).await?;
            }
            self.add_clsact(nl, &dev).await?;
            nl.set_up(&dev).await?;
            nl.add_route(&Route::default_via(spec.gateway, &dev))
                .await?;
            return Ok(());
        };
        // Leftovers of an earlier eth<N> whose removal failed half-way.
        clear_policy_routes(spec, ns, nl).await?;
        for a in spec.addresses() {
            nl.add_address(&dev, a, len, true).await?;
        }
        self.add_clsact(nl, &dev).await?;
        nl.set_up(&dev).await?;
        let subnet = spec.subnet.trunc();
        nl.add_route(&Route::connected(subnet.network(), len, &dev, spec.ip).in_table(table))
            .await?;
        nl.add_route(&Route::default_via(spec.gateway, &dev).in_table(table))
            .await?;
        for a in spec.addresses() {
            // One rule per address at priority `table`, as ec2-net-utils.
            nl.add_rule(a, table, table).await?;
        }
        Ok(())
    }

    /// Removes the ENI's interface from its instance's namespace (and, for `eth<N>`, its policy
    /// rules and table). The caller has taken the TAP from the data path already; closing it
    /// deletes the device too, but the data path may not have done so yet, and the index may be
    /// reused right away.
    pub async fn remove_interface(&mut self, spec: &EniSpec) -> anyhow::Result<()> {
        let ns = self.netns_of(&spec.instance_id);
        if !netns::exists(&ns) {
            return Ok(());
        }
        let nl = self.socket(&ns)?;
        let dev = spec.ifname();
        if spec.device_index == 0 {
            if let Some(clients) = &self.dhcp {
                clients.stop(&ns);
            }
        }
        // Give the data path a moment to close the TAP itself (deleting the device under an open
        // fd makes its next read fail, which it counts and logs as an I/O error).
        let deadline = Instant::now() + REMOVE_GRACE;
        while nl.link_exists(&dev).await? && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Err(e) = nl.del_link(&dev).await {
            // Gone meanwhile is what we want.
            if !e.is_not_found() {
                return Err(e.into());
            }
        }
        clear_policy_routes(spec, &ns, &nl).await
    }

    /// Brings the secondary addresses on the ENI's interface from `old` to `new` (its primary
    /// address, MAC and routes stay); on `eth<N>` their policy rules follow.
    pub async fn update_secondary(&mut self, old: &EniSpec, new: &EniSpec) -> anyhow::Result<()> {
        let ns = self.netns_of(&new.instance_id);
        let nl = self.socket(&ns)?;
        let dev = new.ifname();
        let len = new.subnet.prefix_len();
        let table = new.route_table();
        for a in old
            .secondary_ips
            .iter()
            .filter(|a| !new.secondary_ips.contains(a))
        {
            if let Some(table) = table {
                nl.del_rule(*a, table, table).await?;
            }
            nl.del_address(&dev, *a, len).await?;
        }
        for a in new
            .secondary_ips
            .iter()
            .filter(|a| !old.secondary_ips.contains(a))
        {
            nl.add_address(&dev, *a, len, table.is_some()).await?;
            if let Some(table) = table {
                nl.add_rule(*a, table, table).await?;
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
        self.sockets.remove(ns);
        // Its DHCP client first: a process in the namespace would keep it (and its TAPs) alive.
        if let Some(clients) = &self.dhcp {
            clients.stop(ns);
        }
        if netns::exists(ns) {
            netns::delete(ns)?;
        }
        guest::remove_etc(ns);
        self.created.remove(ns);
        self.save_record();
        Ok(())
    }

    /// Deletes every namespace this agent created. Errors are logged. (The agent itself never
    /// does at exit: instances outlive it.)
    pub fn destroy_all(&mut self) {
        let all: Vec<String> = self.created.iter().cloned().collect();
        for ns in all {
            if let Err(e) = self.destroy(&ns) {
                warn!(netns = %ns, error = %e, "deleting instance namespace");
            }
        }
    }
}

/// Deletes every rule pointing at the interface's table and flushes the table (nothing to do
/// for `eth0`).
async fn clear_policy_routes(spec: &EniSpec, ns: &str, nl: &Netlink) -> anyhow::Result<()> {
    let Some(table) = spec.route_table() else {
        return Ok(());
    };
    nl.del_rules_of_table(table).await?;
    nl.flush_table(table).await?;
    let left = nl.rules_of_table(table).await?;
    if !left.is_empty() {
        bail!("rules of table {table} left in {ns}: {left:?}");
    }
    Ok(())
}
