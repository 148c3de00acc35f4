//! The control loop: register the host, watch the mapping service, keep local instances and the
//! data path's mapping table in step with what it says.
//!
//! RegisterHost is retried with exponential backoff until the server answers. The watch resumes
//! from the view's epoch and revision (and held VPCs) after any disconnect; the server answers
//! with the missing Deltas or a full Snapshot. After each message that changed the records, the
//! loop first builds a new `MappingTable` from them with the current ports and publishes it (the
//! data path picks it up before its next batch), so a change elsewhere (a remote ENI's move) is
//! live without waiting for local plumbing; then it reconciles local instances (`reconcile.rs`
//! plans the steps, `instance.rs` carries them out: namespaces, and one interface and data-path
//! port per local ENI) and, if that changed the ports, publishes again. A stream that breaks the
//! protocol makes the agent drop its resume point and resync.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use softvpc_engine::PortId;
use softvpc_mapping::{Applied, Records, Replica};
use softvpc_proto::pb;
use softvpc_proto::pb::mapping_client::MappingClient;
use tonic::transport::Channel;
use tracing::{debug, error, info, warn};

use crate::checkpoint::{self, Saved, Saver};
use crate::datapath::{Command, DataPath};
use crate::instance::Plumber;
use crate::reconcile::{self, Skip, Step};
use crate::status::{AgentState, AgentStatus, LocalChange, LocalPort, LOCAL_CHANGES_KEPT};
use crate::trust::Connector;

/// Retry delays: start, cap.
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How soon to retry instances that failed to come up.
const RECONCILE_RETRY: Duration = Duration::from_secs(5);
/// At most this many queued watch messages are applied before one reconcile and table rebuild.
const MAX_COALESCED: usize = 256;
/// RegisterHost deadline.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the ports of NAT gateways start (TAP ports count up from 1).
const NAT_PORT_BASE: u32 = 0x4000_0000;

/// Exponential backoff with jitter (so many agents do not reconnect in lock-step).
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    /// The next delay: the current one, +-25% jitter; doubles up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        base.mul_f64(jitter)
    }

    /// Back to the shortest delay, after a success.
    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

/// The control loop's state. [`Control::run`] runs until cancelled; [`Control::shutdown`] then
/// closes the data path (the instances stay, for the next agent).
pub struct Control {
    /// Makes a mutual-TLS client with the host's current certificate (renewed meanwhile).
    connector: Arc<Connector>,
    client: MappingClient<Channel>,
    state: Arc<AgentState>,
    datapath: DataPath,
    plumber: Plumber,
    host_id: String,
    /// The agent's copy of its host's mapping view, and where the watch resumes.
    replica: Replica,
    /// The records as last published (shared with the replica, `/mappings` and the checkpoint;
    /// replaced on each refresh).
    published: Arc<Records>,
    /// Local ports (interfaces) by ENI id.
    local: BTreeMap<String, LocalPort>,
    /// Instance namespaces we hold: instance id -> namespace name.
    namespaces: BTreeMap<String, String>,
    /// The last reconcile's skipped ENIs (logged when they change).
    skipped: Vec<Skip>,
    next_port: u32,
    /// The ports of the NAT gateways placed on this host (no device: the engine translates
    /// what reaches them), by ENI id.
    nat_ports: BTreeMap<String, PortId>,
    /// Some instance failed to come up (or go down): try again soon.
    needs_retry: bool,
    /// Whether the first reconcile took over what an earlier run left ([`Plumber::adopt`]).
    adopted: bool,
    /// Where the last applied view is kept on disk, and the task writing it.
    checkpoint: Option<(std::path::PathBuf, Saver)>,
    /// The ENIs the published table delivers to locally.
    local_in_table: std::collections::BTreeSet<String>,
}

impl Control {
    /// The control loop of one agent, before it runs.
    pub fn new(
        connector: Arc<Connector>,
        state: Arc<AgentState>,
        datapath: DataPath,
        plumber: Plumber,
    ) -> anyhow::Result<Control> {
        Ok(Control {
            client: connector.client()?,
            connector,
            state,
            datapath,
            plumber,
            host_id: String::new(),
            replica: Replica::default(),
            published: Arc::default(),
            local: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            skipped: Vec::new(),
            next_port: 1,
            nat_ports: BTreeMap::new(),
            needs_retry: false,
            adopted: false,
            checkpoint: None,
            local_in_table: Default::default(),
        })
    }

    /// Keeps the last applied view in `path` (see `checkpoint`), and starts from the view saved
    /// there by an earlier run. Call on the runtime.
    pub fn with_checkpoint(mut self, path: std::path::PathBuf) -> Control {
        let saver = Saver::start(path.clone());
        self.checkpoint = Some((path, saver));
        self
    }

    /// Starts from the view an earlier run saved, if any: its instances are taken over and its
    /// table published before any server answers, marked stale until one does.
    async fn load_checkpoint(&mut self) {
        let Some((path, _)) = &self.checkpoint else {
            return;
        };
        let Some((host_id, msg)) = checkpoint::load(path) else {
            return;
        };
        if let Err(e) = self.replica.apply(&msg) {
            warn!(error = %e, "saved mapping view not applicable; waiting for a server");
            self.replica = Replica::default();
            return;
        }
        self.host_id = host_id;
        self.state.stale.store(true, Ordering::Relaxed);
        info!(
            host_id = %self.host_id,
            epoch = %self.replica.epoch,
            revision = self.replica.revision,
            enis = self.replica.records.enis.len(),
            "forwarding from the mapping view saved by the last run (stale until a server answers)"
        );
        self.refresh(None).await;
    }

    /// Queues the current view (the published records at the replica's revision) for disk.
    fn save_checkpoint(&self) {
        let Some((_, saver)) = &self.checkpoint else {
            return;
        };
        if self.replica.epoch.is_empty() || self.host_id.is_empty() {
            return;
        }
        saver.save(Saved {
            host_id: self.host_id.clone(),
            epoch: self.replica.epoch.clone(),
            revision: self.replica.revision,
            records: Arc::clone(&self.published),
        });
    }

    /// Registers and watches forever, reconnecting with backoff.
    pub async fn run(&mut self) {
        self.load_checkpoint().await;
        let mut backoff = Backoff::default();
        let mut first = true;
        loop {
            // A new connection for every attempt after the first, with the current (possibly
            // renewed) certificate.
            if !first {
                match self.connector.client() {
                    Ok(c) => self.client = c,
                    Err(e) => error!(error = %format!("{e:#}"), "mapping client"),
                }
            }
            first = false;
            if let Err(e) = self.register(&mut backoff).await {
                // Only a non-retryable failure gets here (none today); keep trying regardless.
                error!(error = %format!("{e:#}"), "registration failed");
            }
            match self.watch().await {
                Ok(got_messages) => {
                    if got_messages {
                        backoff.reset();
                    }
                    info!("watch stream ended; reconnecting");
                }
                Err(e) => warn!(error = %format!("{e:#}"), "watch failed; reconnecting"),
            }
            // Its server may be gone: the next replica (the same one if there is only one).
            self.connector.fail_over();
            self.state.watching.store(false, Ordering::Relaxed);
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// RegisterHost until the server answers (idempotent: same name, same id). Done on every
    /// reconnect, since a server that lost its store would otherwise not know this host.
    async fn register(&mut self, backoff: &mut Backoff) -> anyhow::Result<()> {
        let req = pb::RegisterHostRequest {
            name: self.state.host_name.clone(),
            underlay_ip: self.state.underlay_ip.to_string(),
            availability_zone: self.state.availability_zone.clone(),
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let call = self.client.register_host(req.clone());
            match tokio::time::timeout(RPC_TIMEOUT, call).await {
                Ok(Ok(resp)) => {
                    let host_id = resp.into_inner().host_id;
                    if host_id.is_empty() {
                        warn!(attempt, "RegisterHost returned an empty host id; retrying");
                    } else {
                        if host_id != self.host_id {
                            if !self.host_id.is_empty() {
                                // A different id: the server's state is not the one our view
                                // came from. Start over from a snapshot.
                                warn!(old = %self.host_id, new = %host_id, "host id changed; resyncing");
                                self.replica.reset_resume_point();
                            }
                            info!(host_id = %host_id, name = %req.name, underlay_ip = %req.underlay_ip, "registered");
                            self.host_id = host_id;
                        } else {
                            debug!(host_id = %self.host_id, "re-registered");
                        }
                        return Ok(());
                    }
                }
                Ok(Err(status)) => {
                    warn!(attempt, code = ?status.code(), message = status.message(), "RegisterHost failed; retrying")
                }
                Err(_) => warn!(attempt, "RegisterHost timed out; retrying"),
            }
            self.connector.fail_over();
            match self.connector.client() {
                Ok(c) => self.client = c,
                Err(e) => error!(error = %format!("{e:#}"), "mapping client"),
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// One watch stream, until it ends or fails. Returns whether any message arrived.
    async fn watch(&mut self) -> anyhow::Result<bool> {
        let req = self.replica.watch_request(&self.host_id);
        info!(
            server = %self.connector.url(),
            epoch = %req.epoch,
            revision = req.revision,
            held_vpcs = req.held_vpc_ids.len(),
            "opening watch"
        );
        // Reopened from a resume point: the first answer says whether the server resumed it.
        let mut resuming = !req.epoch.is_empty();
        let mut stream = self
            .client
            .watch(req)
            .await
            .context("Watch request")?
            .into_inner();
        self.state.watching.store(true, Ordering::Relaxed);
        let mut got = false;
        loop {
            let msg = if self.needs_retry {
                tokio::select! {
                    msg = stream.message() => msg,
                    _ = tokio::time::sleep(RECONCILE_RETRY) => {
                        info!("retrying instances that failed");
                        self.refresh(None).await;
                        continue;
                    }
                }
            } else {
                stream.message().await
            };
            let Some(msg) = msg.context("watch stream")? else {
                return Ok(got);
            };
            let received = Instant::now();
            got = true;

            // Apply this message and whatever is already queued behind it, then reconcile and
            // rebuild the table once: a burst of changes costs one rebuild, not one each.
            let mut next = Some(msg);
            let mut changed = false;
            let mut applied_count = 0;
            let mut end: Option<anyhow::Result<bool>> = None;
            while let Some(msg) = next.take() {
                match self.replica.apply(&msg) {
                    Ok(applied) => {
                        if self.state.stale.swap(false, Ordering::Relaxed) {
                            info!(
                                revision = self.replica.revision,
                                "a server answered: the view is current again"
                            );
                        }
                        // (A resumed watch with nothing to replay opens with a Heartbeat at
                        // our revision: Stale, and still a resume.)
                        if resuming {
                            resuming = false;
                            if let Applied::Snapshot { .. } = applied {
                                info!("watch not resumable (the server's log no longer holds our revision): full resync");
                            } else {
                                self.state.resumes.fetch_add(1, Ordering::Relaxed);
                                info!(
                                    revision = self.replica.revision,
                                    "watch resumed from our revision"
                                );
                            }
                        }
                        self.log_applied(&applied);
                        if let Applied::Snapshot { resync: true, .. } = applied {
                            self.state.resyncs.fetch_add(1, Ordering::Relaxed);
                        }
                        changed |= applied.changed();
                    }
                    Err(e) => {
                        warn!(error = %e, "watch protocol error; resyncing from a snapshot");
                        self.replica.reset_resume_point();
                        end = Some(Ok(got));
                        break;
                    }
                }
                applied_count += 1;
                if applied_count >= MAX_COALESCED {
                    break;
                }
                // A zero timeout polls the stream once: only messages already received.
                match tokio::time::timeout(Duration::ZERO, stream.message()).await {
                    Ok(Ok(Some(m))) => next = Some(m),
                    Ok(Ok(None)) => end = Some(Ok(got)),
                    Ok(Err(status)) => {
                        end = Some(Err(anyhow::Error::new(status).context("watch stream")))
                    }
                    Err(_) => {}
                }
            }
            if changed {
                self.refresh(Some(received)).await;
            } else {
                self.publish_view();
            }
            self.save_checkpoint();
            if let Some(end) = end {
                return end;
            }
        }
    }

    fn log_applied(&self, applied: &Applied) {
        let r = &self.replica.records;
        let skipped = match applied {
            Applied::Snapshot { resync, skipped } => {
                info!(
                    revision = self.replica.revision,
                    epoch = %self.replica.epoch,
                    resync,
                    hosts = r.hosts.len(),
                    vpcs = r.vpcs.len(),
                    subnets = r.subnets.len(),
                    enis = r.enis.len(),
                    "snapshot applied"
                );
                skipped.as_slice()
            }
            Applied::Delta { changes, skipped } => {
                info!(
                    revision = self.replica.revision,
                    changes,
                    vpcs = r.vpcs.len(),
                    enis = r.enis.len(),
                    "delta applied"
                );
                skipped.as_slice()
            }
            Applied::Heartbeat => {
                debug!(revision = self.replica.revision, "heartbeat");
                &[]
            }
            Applied::Stale => {
                debug!(revision = self.replica.revision, "stale message ignored");
                &[]
            }
        };
        for e in skipped {
            warn!(error = %e, "bad mapping record skipped");
        }
    }

    /// Publishes a table of the new records (with the ports as they are), then reconciles
    /// instances, then publishes again if that changed the ports. `received`: when the message
    /// that brought the change arrived (for `softvpc_table_publish_seconds`).
    async fn refresh(&mut self, received: Option<Instant>) {
        self.sync_nat_ports();
        let ports = self.ports();
        self.publish_table(&ports);
        if let Some(t) = received {
            self.state.table_lag.record(t.elapsed());
        }
        let started = Instant::now();
        if self.reconcile().await > 0 {
            self.state.plumbing.record(started.elapsed());
        }
        let after = self.ports();
        if after != ports {
            self.publish_table(&after);
        }
        self.publish_view();
    }

    /// The data-path port of every local ENI (NAT gateways' included).
    fn ports(&self) -> HashMap<String, PortId> {
        self.local
            .iter()
            .map(|(eni, l)| (eni.clone(), l.port))
            .chain(self.nat_ports.iter().map(|(e, p)| (e.clone(), *p)))
            .collect()
    }

    /// Gives each NAT gateway ENI placed on this host a port (kept while it stays), in a
    /// range of its own (no TAP, no epoll token).
    fn sync_nat_ports(&mut self) {
        let here: Vec<&String> = self
            .replica
            .records
            .enis
            .values()
            .filter(|e| !e.nat_gateway_id.is_empty() && e.host_id == self.host_id)
            .map(|e| &e.eni_id)
            .collect();
        self.nat_ports.retain(|eni, _| here.contains(&eni));
        for eni in here {
            if !self.nat_ports.contains_key(eni) {
                let port = PortId(NAT_PORT_BASE + self.next_port);
                self.next_port += 1;
                info!(eni = %eni, port = port.0, "NAT gateway placed here");
                self.nat_ports.insert(eni.clone(), port);
            }
        }
    }

    /// Builds the table of the current records and `ports` and swaps it in.
    fn publish_table(&mut self, ports: &HashMap<String, PortId>) {
        let table = crate::table::build(&self.replica.records, self.state.underlay_ip, ports);
        let local: std::collections::BTreeSet<String> = table
            .local_enis()
            .map(|(_, e)| e.eni_id.to_string())
            .collect();
        if local != self.local_in_table {
            // Recorded before the table is handed over, so the data path finds it when it
            // swaps the table in and stamps the time it did.
            let change = LocalChange {
                revision: self.replica.revision,
                generation: table.generation().0,
                at_unix_ns: 0,
                added: local.difference(&self.local_in_table).cloned().collect(),
                removed: self.local_in_table.difference(&local).cloned().collect(),
            };
            if let Ok(mut changes) = self.state.datapath.local_changes.lock() {
                if changes.len() >= LOCAL_CHANGES_KEPT {
                    changes.pop_front();
                }
                changes.push_back(change);
            }
            self.local_in_table = local;
        }
        // Recorded before the table is handed over, as above.
        if let Ok(mut tables) = self.state.datapath.tables.lock() {
            tables.published(table.generation().0, self.replica.revision);
        }
        self.state.datapath.table.store(Arc::new(table));
        // The data path swaps it in now rather than at its next timer: with the kernel fast
        // path carrying the traffic it may have nothing else to wake it for up to 100 ms.
        self.state.commander.wake();
        let imds = crate::imds::view_of(&self.replica.records, &self.host_id);
        if **self.state.datapath.imds.load() != imds {
            self.state.datapath.imds.store(Arc::new(imds));
        }
        let flow = crate::flowlog::view_of(&self.replica.records, &self.host_id);
        if **self.state.datapath.flow_logs.load() != flow {
            self.state.datapath.flow_logs.store(Arc::new(flow));
        }
        // Shared with the replica, not copied: the next Delta copies the records only if this
        // view is still held then (by `/mappings` or the checkpoint writer).
        self.published = Arc::clone(&self.replica.records);
    }

    fn publish_view(&self) {
        let status = AgentStatus {
            host_id: self.host_id.clone(),
            epoch: self.replica.epoch.clone(),
            revision: self.replica.revision,
            records: Arc::clone(&self.published),
            ports: self
                .local
                .iter()
                .map(|(eni, l)| (eni.clone(), l.clone()))
                .collect(),
            instances: self.namespaces.clone(),
            skipped: self.skipped.clone(),
        };
        self.state.status.store(Arc::new(status));
    }

    /// Brings local instances in line with the view: carries out [`reconcile::plan`]'s steps.
    /// A step that fails is counted and retried on the next reconcile (soon); the ones after it
    /// still run. Returns how many steps there were.
    async fn reconcile(&mut self) -> usize {
        let (desired, skips) = reconcile::desired(&self.replica.records, &self.host_id);
        if skips != self.skipped {
            for skip in &skips {
                log_skip(skip);
            }
        }
        self.skipped = skips;
        if !self.adopted {
            self.adopted = true;
            self.adopt(&desired).await;
        }
        let plan = reconcile::plan(&desired, &self.current());
        self.needs_retry = false;
        let steps = plan.len();
        for step in plan {
            if let Err(e) = self.carry_out(&step).await {
                self.state.instance_errors.fetch_add(1, Ordering::Relaxed);
                self.needs_retry = true;
                error!(step = ?step, error = %format!("{e:#}"), "instance step failed; will retry");
            }
        }
        steps
    }

    /// At the first reconcile: takes over the instances an earlier run of this agent left (their
    /// namespaces and persistent TAPs, see `instance.rs`), so the plan starts from what exists
    /// and re-creates nothing; the namespaces it made for instances no longer placed here are
    /// then deleted by the plan. Failures leave the plan to replace what could not be adopted.
    async fn adopt(&mut self, desired: &reconcile::Instances) {
        match self.plumber.remove_stray_taps().await {
            Ok(gone) if !gone.is_empty() => {
                info!(taps = ?gone, "removed TAPs an earlier run left half set up")
            }
            Ok(_) => {}
            Err(e) => warn!(error = %format!("{e:#}"), "cannot list or remove stray TAPs"),
        }
        for (instance_id, wanted) in desired {
            let adopted = match self.plumber.adopt(instance_id, wanted).await {
                Ok(a) => a,
                Err(e) => {
                    warn!(instance = %instance_id, error = %format!("{e:#}"), "cannot take over the instance's namespace");
                    continue;
                }
            };
            let netns = self.plumber.netns_of(instance_id);
            if !self.plumber.created().contains(&netns) {
                continue; // nothing there: the plan creates it
            }
            self.namespaces.insert(instance_id.clone(), netns.clone());
            let devs: Vec<String> = adopted.iter().map(|(s, _)| s.ifname()).collect();
            for (spec, tap) in adopted {
                if let Err(e) = self.add_port(&spec, tap, &netns) {
                    warn!(instance = %instance_id, error = %format!("{e:#}"), "cannot hand an adopted TAP to the data path");
                    continue;
                }
                self.state.adopted.fetch_add(1, Ordering::Relaxed);
            }
            info!(instance = %instance_id, netns = %netns, devs = ?devs, "instance taken over from an earlier run");
        }
        // Namespaces this agent made earlier for instances no longer placed here: the plan
        // deletes them.
        let prefix_len = self.plumber.netns_of("").len();
        for ns in self.plumber.created().clone() {
            let instance_id = ns[prefix_len..].to_string();
            if !self.namespaces.contains_key(&instance_id) && !desired.contains_key(&instance_id) {
                self.namespaces.insert(instance_id, ns);
            }
        }
    }

    /// Hands an interface's TAP to the data path as a new port (and to the fast path), and
    /// records it.
    fn add_port(
        &mut self,
        spec: &reconcile::EniSpec,
        tap: crate::tap::Tap,
        netns: &str,
    ) -> anyhow::Result<PortId> {
        let port = PortId(self.next_port);
        self.next_port += 1;
        let tap_name = tap.name().to_string();
        self.datapath
            .send(Command::AddPort { port, tap })
            .context("handing the TAP to the data path")?;
        let _ = self
            .datapath
            .send(Command::FastPathPort(crate::fastpath::PortInfo {
                port,
                netns: netns.to_string(),
                ifname: spec.ifname(),
                mac: spec.mac,
            }));
        self.local.insert(
            spec.eni_id.clone(),
            LocalPort {
                port,
                tap: tap_name,
                netns: netns.to_string(),
                spec: spec.clone(),
            },
        );
        Ok(port)
    }

    /// What exists now, in the shape [`reconcile::plan`] compares: every namespace we hold, with
    /// the interfaces in it.
    fn current(&self) -> reconcile::Instances {
        let mut current: reconcile::Instances = self
            .namespaces
            .keys()
            .map(|iid| (iid.clone(), BTreeMap::new()))
            .collect();
        for l in self.local.values() {
            current
                .entry(l.spec.instance_id.clone())
                .or_default()
                .insert(l.spec.device_index, l.spec.clone());
        }
        current
    }

    /// Takes an ENI's port out of the data path (closing its TAP there).
    fn remove_port(&mut self, eni_id: &str) -> Option<LocalPort> {
        let local = self.local.remove(eni_id)?;
        let _ = self.datapath.send(Command::RemovePort { port: local.port });
        Some(local)
    }

    async fn carry_out(&mut self, step: &Step) -> anyhow::Result<()> {
        match step {
            Step::DeleteNamespace { instance_id } => {
                let enis: Vec<String> = self
                    .local
                    .values()
                    .filter(|l| &l.spec.instance_id == instance_id)
                    .map(|l| l.spec.eni_id.clone())
                    .collect();
                for eni in &enis {
                    self.remove_port(eni);
                }
                let netns = self.plumber.netns_of(instance_id);
                self.plumber
                    .delete_namespace(instance_id)
                    .with_context(|| format!("deleting namespace {netns}"))?;
                self.namespaces.remove(instance_id);
                info!(instance = %instance_id, netns = %netns, enis = ?enis, "instance down");
            }
            Step::RemoveInterface(spec) => {
                self.remove_port(&spec.eni_id);
                self.plumber.remove_interface(spec).await?;
                info!(
                    instance = %spec.instance_id,
                    eni = %spec.eni_id,
                    dev = %spec.ifname(),
                    "interface removed"
                );
            }
            Step::CreateNamespace { instance_id } => {
                let netns = self.plumber.create_namespace(instance_id).await?;
                info!(instance = %instance_id, netns = %netns, "instance namespace created");
                self.namespaces.insert(instance_id.clone(), netns);
            }
            Step::AddInterface(spec) => {
                let Some(netns) = self.namespaces.get(&spec.instance_id).cloned() else {
                    // Its namespace failed to come up (already counted): next time.
                    self.needs_retry = true;
                    return Ok(());
                };
                let tap = self.plumber.add_interface(spec).await?;
                let port = match self.add_port(spec, tap, &netns) {
                    Ok(port) => port,
                    Err(e) => {
                        // The TAP went with the failed send (still persistent): delete it and
                        // tidy its routes.
                        let _ = self.plumber.remove_interface(spec).await;
                        return Err(e);
                    }
                };
                info!(
                    instance = %spec.instance_id,
                    eni = %spec.eni_id,
                    dev = %spec.ifname(),
                    ip = %spec.ip,
                    netns = %netns,
                    port = port.0,
                    "interface up"
                );
            }
            Step::UpdateSecondary { old, new } => {
                // On failure the spec stays old, so the next reconcile tries again.
                self.plumber.update_secondary(old, new).await?;
                if let Some(local) = self.local.get_mut(&new.eni_id) {
                    local.spec = new.clone();
                }
                info!(
                    instance = %new.instance_id,
                    eni = %new.eni_id,
                    dev = %new.ifname(),
                    secondary_ips = ?new.secondary_ips,
                    "interface addresses updated"
                );
            }
        }
        Ok(())
    }

    /// Stops the data path (closing every TAP). The instances stay: their namespaces and
    /// persistent TAPs wait for the next agent, which takes them over.
    pub fn shutdown(self) -> anyhow::Result<()> {
        let (instances, ports) = (self.namespaces.len(), self.local.len());
        let r = self.datapath.shutdown();
        info!(
            instances,
            ports, "data path stopped; instances left for the next agent"
        );
        r
    }
}

fn log_skip(skip: &Skip) {
    match skip {
        Skip::UnknownSubnet { eni_id, subnet_id } => {
            warn!(eni = %eni_id, subnet = %subnet_id, "ENI placed here but its subnet is unknown; not plumbed")
        }
        Skip::SameDeviceIndex {
            eni_id,
            instance_id,
            device_index,
            kept,
        } => {
            warn!(eni = %eni_id, instance = %instance_id, device_index, kept = %kept, "another ENI (lower id) holds this device index; not plumbed")
        }
        Skip::DeviceIndexOutOfRange {
            eni_id,
            instance_id,
            device_index,
        } => {
            warn!(eni = %eni_id, instance = %instance_id, device_index, "device index out of range; not plumbed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first >= BACKOFF_START.mul_f64(0.75) && first <= BACKOFF_START.mul_f64(1.25));
        let mut last = first;
        for _ in 0..20 {
            last = b.next_delay();
        }
        assert!(last <= BACKOFF_MAX.mul_f64(1.25));
        assert!(last >= BACKOFF_MAX.mul_f64(0.75));
        b.reset();
        assert!(b.next_delay() <= BACKOFF_START.mul_f64(1.25));
    }
}
