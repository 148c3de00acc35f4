//! The kernel fast path (issue 14, `docs/fast-path.md`): the engine's cached flow decisions
//! executed by the kernel, while the engine stays the only place where policy is decided.
//!
//! The data-path thread owns a [`FastPath`]. Every [`SYNC_INTERVAL`] it folds what the kernel
//! carried back into the engine ([`Engine::fold_kernel_use`]), asks the engine what changed in
//! its offer ([`Engine::poll_offers`]: the flows that changed since the last sync, plus
//! [`OFFER_SWEEP`] of the offered ones in turn, never the whole flow table) and hands the
//! installs and removals to the installer thread (its own current-thread runtime and netlink
//! sockets). Between those, a changed flow is looked at within [`EARLY_SYNC`]: a new flow's
//! first packets take the engine's path, and at full speed they fill the TAP's queue (dropped,
//! retransmitted) until its entry is in the kernel. Before the engine gets a new table (a new generation: any mapping or policy
//! change) the data path waits until the installer has removed every installed flow
//! ([`FastPath::flush`]), so no packet uses a stale decision. An install that fails is tried
//! again up to [`INSTALL_TRIES`] times with a doubling backoff (the flow stays on the engine's
//! path meanwhile), unless the flow was withdrawn first.
//!
//! **One program per hook, one map entry per flow** ([`table`]): every installed flow is an
//! entry of one BPF hash map of the host (its match fields as the key; where it goes, a routed
//! flow's new MACs and its counters as the value), and each hook has one direct-action
//! `cls_bpf` filter whose generated program parses the frame, looks it up and acts. A frame's
//! cost does not grow with the installed flows (with a filter per flow, every frame walked the
//! filters installed before its own).
//!
//! Per local ENI (port), made on its first installed flow:
//!
//! ```text
//!  instance netns: eth<N> (TAP)  -- clsact egress: the port's egress program: an entry of the
//!                          port -> count, a routed flow's rewrite, bpf_redirect to fpe<P> (or
//!                          fpe<P>v<n> for a peered VPC's VNI); otherwise on to the TAP (engine)
//!                  fpe<P> (VXLAN, VNI of the VPC, socket in the host netns on port 47000+P%2000,
//!                          FDB: destination MAC -> host:4789; anything it receives -> sink)
//!                  fpi<P> (VXLAN, socket in the port's own netns fp<P> on 4789, no FDB)
//!                          clsact ingress: everything -> mirred ingress eth<N>
//!                  fpdi<P> (veth end, the instance's MAC) clsact ingress: IPv4 -> mirred
//!                          ingress eth<N>
//!  host netns:     underlay device -- clsact ingress: the host's ingress program: a VXLAN
//!                          datagram to us whose outer source, VNI and inner frame are an
//!                          entry -> count, then pop the outer headers (GSO super-frames
//!                          too, gso_size kept), write the inner MACs, bpf_redirect_peer to
//!                          fpd<P>: straight onto fpdi<P>'s ingress; with decapsulation off
//!                          (or a GSO packet the helper refuses) whole to fpv<P> (veth) ->
//!                          fp<P> netns (the host's underlay address and MAC on its end) ->
//!                          UDP 4789 -> fpi<P> decapsulates (and segments if it must)
//! ```
//!
//! The decapsulating path takes a received datagram's IPv4 and UDP receive in `fp<P>`, the
//! VXLAN device, its GRO cell and a veth backlog queue off the way of every datagram of a
//! flow, small packets (ping, 64-byte UDP) and a TCP stream's super-frames alike
//! (BENCHMARKS.md); `SOFTVPC_FAST_PATH_DECAP=off` sends every datagram the `fpv<P>` way.
//!
//! So VXLAN keeps going to port 4789 on every host (kernel VTEPs and hosts without the fast
//! path interoperate), the receiving port problem does not arise (the receiver picks the flows
//! it takes out of the agent's way, by the outer source too, so forged VXLAN reaches the engine
//! and is dropped and counted there), and nothing listens on the host for the fast path except
//! `fpe<P>`'s socket, whose every frame is redirected to `fpi<P>`'s transmit side, which has
//! no FDB entry and drops it (counted by that filter: `forged` in the metrics).
//!
//! What the kernel carried is read from the map entries every [`STATS_INTERVAL`] (and from an
//! entry once more as it is removed) and folded into the engine's counters, flow entries,
//! conntrack idle timers and flow logs.

pub mod table;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
#[cfg(test)]
use softvpc_engine::offload::U32Key;
use softvpc_engine::offload::{KernelAction, KernelFlow, KernelHook, OfferChange};
use softvpc_engine::{Engine, PortId};
use softvpc_netlink::bpf::{self, BpfHash};
use softvpc_netlink::{netns, Hook, LinkChange, Netlink, Redirect, U32Match};
use tracing::{debug, error, info, warn};

/// How often the data path installs and removes flows.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(10);
/// The shortest gap between two syncs for changed flows alone (no fold, no sweep), so a new
/// flow is installed within about this long instead of [`SYNC_INTERVAL`], at a bounded cost.
pub const EARLY_SYNC: Duration = Duration::from_millis(1);
/// How many offered or waiting flows each sync looks at again besides the changed ones
/// ([`Engine::poll_offers`]): 10,000 flows are all looked at in 40 syncs (0.4 s while the data
/// path wakes every 10 ms), at a bounded cost per sync.
pub const OFFER_SWEEP: usize = 256;
/// How many times a flow's install is tried before it stays on the engine's path.
pub const INSTALL_TRIES: u32 = 5;
/// The wait before the second try; doubled for each later one (50, 100, 200, 400 ms).
const RETRY_BACKOFF: Duration = Duration::from_millis(50);
/// How long the data path waits for a flush before it goes on without it (its table reported
/// in use only once the flush is done).
pub const FLUSH_WAIT: Duration = Duration::from_secs(5);
/// A sync at least this long is counted as slow.
const SLOW_SYNC: Duration = Duration::from_millis(1);
/// How often the installer reads the filters' statistics.
pub const STATS_INTERVAL: Duration = Duration::from_millis(500);
/// The VXLAN port.
const VXLAN_PORT: u16 = 4789;
/// The MTU of the veth into a port's fast-path namespace: a veth's largest.
const VETH_MTU: u32 = 65535;
/// The filter priority of the per-device catch-all redirects.
const CATCH_ALL_PRIO: u16 = 1;
/// The priority of a hook's flow program ([`table`]).
const FLOW_PRIO: u16 = 10;

/// `--fast-path`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FastPathMode {
    /// Install the engine's cacheable flows in the kernel (the default: the kernel's VXLAN
    /// speed, BENCHMARKS.md).
    #[default]
    On,
    /// Forward every packet through the engine.
    Off,
}

/// Where a local port's interface is.
#[derive(Debug, Clone)]
pub struct PortInfo {
    /// The data path's port.
    pub port: PortId,
    /// The instance's namespace.
    pub netns: String,
    /// The interface in it (`eth<N>`).
    pub ifname: String,
    /// Its MAC.
    pub mac: [u8; 6],
}

/// The fast path's counters, for the metrics.
#[derive(Debug, Default)]
pub struct FastPathCounters {
    /// Flows in the kernel now.
    pub installed: AtomicU64,
    /// Flows installed, ever.
    pub installs: AtomicU64,
    /// Flows removed (no longer offered, or flushed).
    pub removals: AtomicU64,
    /// Flushes on a new table generation.
    pub flushes: AtomicU64,
    /// Flushes the data path stopped waiting for after [`FLUSH_WAIT`].
    pub flush_timeouts: AtomicU64,
    /// Netlink operations that failed.
    pub errors: AtomicU64,
    /// Packets that arrived on a port's egress device socket and were dropped.
    pub forged: AtomicU64,
    /// Packets the kernel carried (folded into the engine's counters).
    pub packets: AtomicU64,
    /// Routed flows (a MAC rewrite and TTL decrement: across subnets, through a middlebox,
    /// over a peering connection) installed, ever.
    pub routed_installs: AtomicU64,
    /// Packets of routed flows the kernel carried (also in `packets`).
    pub routed_packets: AtomicU64,
    /// Kernel objects an earlier run of the agent left (its flow filters on the underlay
    /// device, its per-port namespaces) removed at start; see [`remove_leftovers`].
    pub leftovers: AtomicU64,
    /// Installs tried again after a failure.
    pub install_retries: AtomicU64,
    /// Flows whose every try failed (they stay on the engine's path).
    pub install_failures: AtomicU64,
    /// Installs given up because the port's interface had gone (its ENI moved away or its
    /// instance went; the port's removal follows): nothing left to carry, not an error.
    pub install_port_gone: AtomicU64,
    /// Syncs with the engine's offer ([`FastPath::tick`]).
    pub syncs: AtomicU64,
    /// Their total time, microseconds.
    pub sync_micros: AtomicU64,
    /// The longest one, microseconds.
    pub sync_max_micros: AtomicU64,
    /// Syncs that took [`SLOW_SYNC`] or more.
    pub slow_syncs: AtomicU64,
}

/// What the kernel carried for one flow since the last read.
#[derive(Debug, Clone, Copy)]
struct Use {
    flow: KernelFlow,
    packets: u64,
    bytes: u64,
    last_used: Instant,
}

enum Op {
    Port(PortInfo),
    RemovePort(PortId),
    /// A flow, with its port's own VNI (the engine's; `None` if it has none now).
    Install(KernelFlow, Option<u32>),
    Remove(KernelFlow),
    Flush(mpsc::Sender<()>),
    Shutdown,
}

/// The data path's side of the fast path. See the [module docs](self).
pub struct FastPath {
    ops: mpsc::Sender<Op>,
    thread: Option<JoinHandle<()>>,
    /// What the installer was told to hold (offers minus withdrawals it was told of).
    installed: HashSet<KernelFlow>,
    /// The engine's changes, buffer kept between syncs.
    changes: Vec<OfferChange>,
    uses: Arc<Mutex<Vec<Use>>>,
    last_sync: Option<Instant>,
    /// The last sync of either kind ([`EARLY_SYNC`]).
    last_early: Option<Instant>,
    /// A flush that did not finish in [`FLUSH_WAIT`]: the installer answers on it when it has.
    pending_flush: Option<mpsc::Receiver<()>>,
    /// How long [`FastPath::flush`] waits ([`FLUSH_WAIT`]; shorter in tests).
    flush_wait: Duration,
    /// What it did, for the metrics.
    pub counters: Arc<FastPathCounters>,
}

impl FastPath {
    /// Starts the installer for the host whose underlay address is `underlay_ip`; `prefix` names
    /// the per-port namespaces (`<prefix>fp<underlay address>-<P>`).
    pub fn start(underlay_ip: Ipv4Addr, prefix: &str) -> anyhow::Result<FastPath> {
        let (tx, rx) = mpsc::channel();
        let uses = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(FastPathCounters::default());
        let (u, c, prefix) = (Arc::clone(&uses), Arc::clone(&counters), prefix.to_string());
        let thread = std::thread::Builder::new()
            .name("softvpc-fastpath".into())
            .spawn(move || installer_main(underlay_ip, prefix, u, c, rx))
            .context("spawning the fast path's installer")?;
        Ok(FastPath {
            ops: tx,
            thread: Some(thread),
            installed: HashSet::new(),
            changes: Vec::new(),
            uses,
            last_sync: None,
            last_early: None,
            pending_flush: None,
            flush_wait: FLUSH_WAIT,
            counters,
        })
    }

    /// A local port came up.
    pub fn add_port(&mut self, info: PortInfo) {
        let _ = self.ops.send(Op::Port(info));
    }

    /// A local port went away: its flows and devices go (and the engine forgets having
    /// offered them, so they are offered again if the port comes back).
    pub fn remove_port(&mut self, engine: &mut Engine, port: PortId) {
        self.installed.retain(|k| k.port() != port);
        engine.forget_offers(port);
        let _ = self.ops.send(Op::RemovePort(port));
    }

    /// Removes every installed flow and waits until the kernel no longer has them (before the
    /// engine gets a new table): whether that finished. The installer works through its ops in
    /// order, so a flush it has not reached in [`FLUSH_WAIT`] still runs before any later
    /// install; meanwhile the old flows may still be executed, so the caller does not report
    /// the new table as in use until [`FastPath::flushed`] says so (counted, logged).
    pub fn flush(&mut self, engine: &mut Engine) -> bool {
        self.fold(engine);
        if self.installed.is_empty() && self.pending_flush.is_none() {
            return true;
        }
        let (tx, rx) = mpsc::channel();
        self.installed.clear();
        if self.ops.send(Op::Flush(tx)).is_err() {
            // No installer: nothing of it is in the kernel to flush.
            self.pending_flush = None;
            return true;
        }
        match rx.recv_timeout(self.flush_wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.counters.flush_timeouts.fetch_add(1, Ordering::Relaxed);
                error!(
                    wait_ms = self.flush_wait.as_millis() as u64,
                    "the fast path's flush did not finish: the kernel may still run the old \
                     table's flows until the installer gets to it"
                );
                // A later flush's answer implies the earlier one's: keep only the newest.
                self.pending_flush = Some(rx);
                false
            }
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.pending_flush = None;
                true
            }
        }
    }

    /// Whether a flush that [`FastPath::flush`] gave up waiting for has finished since.
    pub fn flushed(&mut self) -> bool {
        match self.pending_flush.as_ref().map(mpsc::Receiver::try_recv) {
            None => true,
            Some(Err(mpsc::TryRecvError::Empty)) => false,
            Some(Ok(()) | Err(mpsc::TryRecvError::Disconnected)) => {
                self.pending_flush = None;
                true
            }
        }
    }

    /// Folds what the kernel carried into the engine.
    fn fold(&mut self, engine: &mut Engine) {
        let uses = match self.uses.lock() {
            Ok(mut u) => std::mem::take(&mut *u),
            Err(_) => return,
        };
        for u in uses {
            engine.fold_kernel_use(&u.flow, u.packets, u.bytes, u.last_used);
        }
    }

    /// Every [`SYNC_INTERVAL`]: folds, then installs what the engine newly offers and removes
    /// what it withdrew ([`Engine::poll_offers`]); in between, at most every [`EARLY_SYNC`],
    /// the same for the flows that changed (no fold, no sweep).
    pub fn tick(&mut self, engine: &mut Engine, now: Instant) {
        let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
        let full = since(self.last_sync).is_none_or(|d| d >= SYNC_INTERVAL);
        if !full
            && (!engine.offers_changed() || since(self.last_early).is_some_and(|d| d < EARLY_SYNC))
        {
            return;
        }
        self.last_early = Some(now);
        let started = Instant::now();
        if full {
            self.last_sync = Some(now);
            self.fold(engine);
        }
        self.changes.clear();
        engine.poll_offers(if full { OFFER_SWEEP } else { 0 }, &mut self.changes);
        for c in self.changes.drain(..) {
            match c {
                OfferChange::Withdraw(k) => {
                    // Flows flushed with an older table are gone already.
                    if self.installed.remove(&k) {
                        let _ = self.ops.send(Op::Remove(k));
                    }
                }
                OfferChange::Offer(k) => {
                    if self.installed.insert(k) {
                        let own = engine.port_vni(k.port()).map(|v| v.0);
                        let _ = self.ops.send(Op::Install(k, own));
                    }
                }
            }
        }
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let c = &self.counters;
        c.syncs.fetch_add(1, Ordering::Relaxed);
        c.sync_micros.fetch_add(took, Ordering::Relaxed);
        c.sync_max_micros.fetch_max(took, Ordering::Relaxed);
        if took >= SLOW_SYNC.as_micros() as u64 {
            c.slow_syncs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for FastPath {
    /// Removes everything the fast path made.
    fn drop(&mut self) {
        let _ = self.ops.send(Op::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One port's kernel side.
struct PortDevs {
    info: PortInfo,
    /// The port's own namespace (holding `fpi<P>`'s socket).
    fp_ns: String,
    /// The veth end in the host namespace leading to it.
    veth: String,
    /// The port's own VNI (its VPC's).
    vni: u32,
    /// The egress VXLAN device (in the instance's namespace), for the port's own VNI, and its
    /// interface index there.
    vx_out: String,
    vx_out_index: u32,
    /// Egress VXLAN devices for other VNIs (peered VPCs), made on their first flow, with their
    /// interface indexes.
    vx_peers: HashMap<u32, (String, u32)>,
    /// The interface indexes (host namespace) of `veth` and of `deliver` (0: none).
    veth_index: u32,
    deliver_index: u32,
    /// The ingress VXLAN device (in the instance's namespace).
    vx_in: String,
    /// The host end of the veth whose other end (`fpdi<P>`, the instance's MAC) is in the
    /// instance's namespace: decapsulated frames go in here (`None`: decapsulation is off).
    deliver: Option<String>,
    /// The instance namespace's netlink socket.
    nl: Netlink,
    /// FDB entries made on the egress devices: (VNI, MAC) -> host.
    fdb: HashMap<(u32, [u8; 6]), Ipv4Addr>,
    /// The egress device's catch-all drop counter, last read.
    forged_seen: u64,
    /// The same for the peered VNIs' egress devices.
    forged_peers: HashMap<u32, u64>,
}

/// An installed flow, by its map key ([`table::key`] of the flow): the flow and the last read
/// of its counters.
#[derive(Debug, Clone, Copy)]
struct Installed {
    flow: KernelFlow,
    packets: u64,
    bytes: u64,
}

/// The installed flows by map key. A counters pass looks up every entry of the map here, so
/// one probe with a fast hasher (not a B-tree walk comparing whole flows: with 10,000 flows
/// that walk was a third of the agent's CPU, `perf`, session 13).
type ByKey = HashMap<[u8; table::KEY_LEN], Installed, foldhash::fast::RandomState>;

struct Installer {
    underlay_ip: Ipv4Addr,
    prefix: String,
    host: Netlink,
    /// The underlay device, with its MAC, once found.
    underlay: Option<(String, [u8; 6])>,
    ports: HashMap<PortId, PortInfo>,
    devs: HashMap<PortId, PortDevs>,
    /// The installed flows by map key, with their counters (two flows with one key cannot both
    /// be installed).
    keys: ByKey,
    /// The host's flow map ([`table`]), made with the underlay's program.
    map: Option<BpfHash>,
    uses: Arc<Mutex<Vec<Use>>>,
    counters: Arc<FastPathCounters>,
    last_stats: Instant,
    /// A pass over the flows' counters in progress: where its next slice starts (`Some(None)`:
    /// the map's start).
    stats: Option<Option<bpf::BatchPosition>>,
    /// Failed installs to try again.
    retries: Retries,
}

/// A failed install waiting for its next try.
#[derive(Debug, Clone, Copy)]
struct Retry {
    flow: KernelFlow,
    own: Option<u32>,
    /// Tries so far.
    tries: u32,
    due: Instant,
}

/// The wait after `tries` failed tries: [`RETRY_BACKOFF`] doubled for each try after the first.
fn retry_backoff(tries: u32) -> Duration {
    RETRY_BACKOFF.saturating_mul(1 << tries.saturating_sub(1).min(16))
}

/// Failed installs waiting for their next try (a handful at most): the schedule alone, apart
/// from the kernel, so it is tested without one.
#[derive(Debug, Default)]
struct Retries {
    waiting: Vec<Retry>,
}

impl Retries {
    /// Flow `flow` failed its `tries`-th try at `now`: true if it waits for another (after
    /// [`retry_backoff`]), false if that was the last of [`INSTALL_TRIES`].
    fn failed(&mut self, flow: KernelFlow, own: Option<u32>, tries: u32, now: Instant) -> bool {
        if tries >= INSTALL_TRIES {
            return false;
        }
        self.waiting.push(Retry {
            flow,
            own,
            tries,
            due: now + retry_backoff(tries),
        });
        true
    }

    /// The tries due at `now`, taken out.
    fn take_due(&mut self, now: Instant) -> Vec<Retry> {
        if !self.waiting.iter().any(|r| r.due <= now) {
            return Vec::new();
        }
        let (due, later) = self.waiting.drain(..).partition(|r| r.due <= now);
        self.waiting = later;
        due
    }

    /// When the next try is due.
    fn next_due(&self) -> Option<Instant> {
        self.waiting.iter().map(|r| r.due).min()
    }

    /// Forgets the tries of the flows `drop` says.
    fn cancel(&mut self, drop: impl Fn(&KernelFlow) -> bool) {
        self.waiting.retain(|r| !drop(&r.flow));
    }
}

/// Whether ingress flows are decapsulated by a `cls_bpf` program on the underlay device (the
/// default) rather than by a VXLAN device in the port's own namespace:
/// `SOFTVPC_FAST_PATH_DECAP=off` keeps the latter, for comparing the two (BENCHMARKS.md).
fn decap_enabled() -> bool {
    std::env::var("SOFTVPC_FAST_PATH_DECAP").map_or(true, |v| v != "off")
}

#[cfg(test)]
fn to_match(k: &U32Key, shift: i32) -> U32Match {
    U32Match {
        offset: k.offset + shift,
        mask: k.mask,
        value: k.value,
    }
}

/// The u32 keys of an ingress flow on the underlay device: the outer IPv4 header (no
/// options, not a fragment, UDP, from the flow's host to us), UDP port 4789, the VXLAN header
/// (I flag, the VNI, reserved bits clear), then the inner frame's keys 50 bytes further. The
/// model [`table::ingress_program`] is tested against (a u32 filter per flow, before).
#[cfg(test)]
pub(crate) fn ingress_keys(k: &KernelFlow, us: Ipv4Addr) -> Vec<U32Match> {
    let KernelHook::UnderlayIngress { vni, host, .. } = k.hook else {
        return Vec::new();
    };
    let mut keys = vec![
        U32Match {
            offset: 0,
            mask: 0xff00_0000,
            value: 0x4500_0000,
        },
        U32Match {
            offset: 4,
            mask: 0x0000_3fff,
            value: 0,
        },
        U32Match {
            offset: 8,
            mask: 0x00ff_0000,
            value: 17 << 16,
        },
        U32Match::ipv4_src(host),
        U32Match::ipv4_dst(us),
        U32Match {
            offset: 20,
            mask: 0x0000_ffff,
            value: u32::from(VXLAN_PORT),
        },
        U32Match {
            offset: 28,
            mask: u32::MAX,
            value: 0x0800_0000,
        },
        U32Match {
            offset: 32,
            mask: u32::MAX,
            value: vni.0 << 8,
        },
    ];
    let (inner, n) = k.u32_keys();
    keys.extend(inner[..n].iter().map(|x| to_match(x, 50)));
    aligned(&keys)
}

/// The same condition as `keys`, as keys on 4-byte aligned offsets (iproute2 only makes those,
/// and the inner frame sits 50 bytes into the datagram): each masked byte goes into the aligned
/// word holding it; keys on the same word merge.
#[cfg(test)]
fn aligned(keys: &[U32Match]) -> Vec<U32Match> {
    let mut words: std::collections::BTreeMap<i32, (u32, u32)> = Default::default();
    for k in keys {
        for i in 0..4 {
            let shift = 24 - 8 * i;
            let m = (k.mask >> shift) & 0xff;
            if m == 0 {
                continue;
            }
            let v = (k.value >> shift) & m;
            let at = k.offset + i;
            let base = at.div_euclid(4) * 4;
            let to = 24 - 8 * (at - base) as u32;
            let w = words.entry(base).or_insert((0, 0));
            w.0 |= m << to;
            w.1 |= v << to;
        }
    }
    words
        .into_iter()
        .map(|(offset, (mask, value))| U32Match {
            offset,
            mask,
            value,
        })
        .collect()
}

/// The installer thread: its own runtime, whose netlink sockets it makes (in the agent's host
/// namespace, which every thread of the agent is in).
fn installer_main(
    underlay_ip: Ipv4Addr,
    prefix: String,
    uses: Arc<Mutex<Vec<Use>>>,
    counters: Arc<FastPathCounters>,
    ops: mpsc::Receiver<Op>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!(error = %e, "the fast path's runtime did not start");
            return;
        }
    };
    rt.block_on(async move {
        match Installer::new(underlay_ip, prefix, uses, counters) {
            Ok(mut i) => i.run(ops).await,
            Err(e) => warn!(error = %format!("{e:#}"), "the fast path did not start"),
        }
    });
}

/// The name prefix of this host's per-port fast-path namespaces (`<prefix>fp<a-b-c-d>-<P>`).
fn port_netns_prefix(prefix: &str, underlay_ip: Ipv4Addr) -> String {
    let [a, b, c, d] = underlay_ip.octets();
    format!("{prefix}fp{a}-{b}-{c}-{d}-")
}

/// Removes what an earlier run of the fast path on this host left when it did not exit
/// cleanly (`kill -9`, a crash): every flow filter on the underlay device's ingress (the whole
/// `clsact` when `keep_clsact` is false, i.e. the fast path is now off) and this host's
/// per-port namespaces (with them their veths, whose host ends go too). The instances' side,
/// their `eth<N>` egress filters and the `fpe`/`fpi` devices in their namespaces, is removed
/// when the new agent takes each instance over (`Plumber::adopt`). Returns how many objects
/// went (filter priorities and namespaces). Called at start, before any flow is installed: a
/// flow the old engine decided may be stale, and the old devices' names and ports are the
/// new agent's to reuse.
pub async fn remove_leftovers(
    host: &Netlink,
    underlay_ip: Ipv4Addr,
    prefix: &str,
    keep_clsact: bool,
) -> u64 {
    let mut gone = 0u64;
    if let Ok(links) = host.link_names().await {
        for dev in links {
            let addrs = host.addresses(&dev).await.unwrap_or_default();
            if !addrs.iter().any(|(a, _)| *a == underlay_ip) {
                continue;
            }
            let Ok(filters) = host.filter_stats(&dev, Hook::Ingress).await else {
                break; // no clsact there: nothing left
            };
            let removed = if keep_clsact {
                // Priority 0: every filter of the hook; the clsact stays (adding it again to a
                // device that is up would drop what the host sends meanwhile).
                host.del_filters(&dev, Hook::Ingress, 0).await
            } else {
                host.del_clsact(&dev).await
            };
            match removed {
                Ok(()) if !filters.is_empty() => {
                    info!(dev = %dev, filters = filters.len(), "fast path: removed an earlier run's flow filters");
                    gone += filters.len() as u64;
                }
                Ok(()) => {}
                Err(e) => {
                    warn!(dev = %dev, error = %e, "fast path: an earlier run's filters not removed")
                }
            }
            break;
        }
    }
    let mine = port_netns_prefix(prefix, underlay_ip);
    for ns in netns::list() {
        if ns
            .strip_prefix(&mine)
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            match netns::delete(&ns) {
                Ok(()) => {
                    info!(netns = %ns, "fast path: removed an earlier run's port namespace");
                    gone += 1;
                }
                Err(e) => warn!(netns = %ns, error = %e, "fast path: namespace not deleted"),
            }
        }
    }
    gone
}

impl Installer {
    fn new(
        underlay_ip: Ipv4Addr,
        prefix: String,
        uses: Arc<Mutex<Vec<Use>>>,
        counters: Arc<FastPathCounters>,
    ) -> anyhow::Result<Installer> {
        Ok(Installer {
            underlay_ip,
            prefix,
            host: Netlink::connect().context("netlink in the host namespace")?,
            underlay: None,
            ports: HashMap::new(),
            devs: HashMap::new(),
            keys: ByKey::default(),
            map: None,
            uses,
            counters,
            last_stats: Instant::now(),
            stats: None,
            retries: Retries::default(),
        })
    }

    /// Installs `k`; a failure is counted and tried again later ([`INSTALL_TRIES`] in all).
    async fn try_install(&mut self, k: KernelFlow, own: Option<u32>, tries: u32) {
        if tries > 0 {
            self.counters
                .install_retries
                .fetch_add(1, Ordering::Relaxed);
        }
        let Err(e) = self.install(k, own).await else {
            return;
        };
        if device_gone(&e) {
            self.counters
                .install_port_gone
                .fetch_add(1, Ordering::Relaxed);
            debug!(error = %format!("{e:#}"), flow = ?k, "fast path: the port's interface went away; flow not installed");
            return;
        }
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let tries = tries + 1;
        if !self.retries.failed(k, own, tries, Instant::now()) {
            self.counters
                .install_failures
                .fetch_add(1, Ordering::Relaxed);
            warn!(error = %format!("{e:#}"), flow = ?k, tries, "fast path: install failed; the flow stays on the engine's path");
        } else if tries == 1 {
            warn!(error = %format!("{e:#}"), flow = ?k, "fast path: install failed; trying again");
        } else {
            debug!(error = %format!("{e:#}"), flow = ?k, tries, "fast path: install failed again");
        }
    }

    /// Tries the installs that are due again.
    async fn run_retries(&mut self) {
        for r in self.retries.take_due(Instant::now()) {
            self.try_install(r.flow, r.own, r.tries).await;
        }
    }

    /// How long the loop may wait for an op: until the next statistics read or retry.
    fn wait(&self) -> Duration {
        if self.stats.is_some() {
            // A pass of the counters goes on as soon as no op waits.
            return Duration::ZERO;
        }
        let now = Instant::now();
        let stats = self.last_stats + STATS_INTERVAL;
        let next = self.retries.next_due().map_or(stats, |r| r.min(stats));
        next.saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    async fn run(&mut self, ops: mpsc::Receiver<Op>) {
        // What an earlier run left (killed, or crashed) goes before anything new is made: its
        // flows were decided by an engine that is gone, and its port numbers are not ours.
        let gone = remove_leftovers(&self.host, self.underlay_ip, &self.prefix, true).await;
        self.counters.leftovers.fetch_add(gone, Ordering::Relaxed);
        // The underlay device's clsact now, before any flow: adding it later deactivates the
        // device's transmit queues for an RCU grace period and drops what the host sends
        // meanwhile (a reply the engine had just forwarded). Retried on the first flow.
        if let Err(e) = self.underlay().await {
            debug!(error = %format!("{e:#}"), "fast path: the underlay device is not there yet");
        }
        {
            loop {
                let op = match ops.recv_timeout(self.wait()) {
                    Ok(op) => Some(op),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => Some(Op::Shutdown),
                };
                match op {
                    Some(Op::Port(info)) => {
                        self.ports.insert(info.port, info);
                    }
                    Some(Op::RemovePort(port)) => {
                        self.retries.cancel(|k| k.port() == port);
                        self.remove_port(port).await
                    }
                    Some(Op::Install(k, own)) => self.try_install(k, own, 0).await,
                    Some(Op::Remove(k)) => {
                        // Withdrawn before a retry got it in: no more tries.
                        self.retries.cancel(|f| *f == k);
                        self.remove(&k).await
                    }
                    Some(Op::Flush(done)) => {
                        self.retries.cancel(|_| true);
                        self.read_stats().await;
                        let all: Vec<KernelFlow> = self.keys.values().map(|i| i.flow).collect();
                        for k in &all {
                            self.remove(k).await;
                        }
                        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
                        let _ = done.send(());
                    }
                    Some(Op::Shutdown) => {
                        let ports: Vec<PortId> = self.devs.keys().copied().collect();
                        for p in ports {
                            self.remove_port(p).await;
                        }
                        if let Some((dev, _)) = &self.underlay {
                            let _ = self.host.del_clsact(dev).await;
                        }
                        info!("fast path removed");
                        return;
                    }
                    None => {}
                }
                self.run_retries().await;
                // A slice of the counters per turn at most: an op that arrives meanwhile waits
                // for one batched read, not for the whole map.
                if self.stats.is_some() {
                    self.stats_step();
                } else if self.last_stats.elapsed() >= STATS_INTERVAL {
                    self.start_stats().await;
                }
            }
        }
    }

    /// The underlay device: the host namespace's link holding the underlay address.
    async fn underlay(&mut self) -> anyhow::Result<(String, [u8; 6])> {
        if let Some(u) = &self.underlay {
            return Ok(u.clone());
        }
        for dev in self.host.link_names().await? {
            let addrs = self.host.addresses(&dev).await.unwrap_or_default();
            if addrs.iter().any(|(a, _)| *a == self.underlay_ip) {
                let mac = self
                    .host
                    .link_mac(&dev)
                    .await?
                    .context("the underlay device has no MAC")?;
                if let Err(e) = self.host.add_clsact(&dev).await {
                    if e.errno() != Some(libc::EEXIST) {
                        return Err(e.into());
                    }
                }
                // The host's flow map and the underlay's program looking datagrams up in it.
                let map = table::create_map().context("creating the fast path's flow map")?;
                let name = "svfp_in";
                let fd = softvpc_netlink::bpf::load_sched_cls(
                    &table::ingress_program(&map, self.underlay_ip),
                    name,
                )
                .context("loading the underlay's flow program")?;
                self.host
                    .add_bpf_direct(&dev, Hook::Ingress, FLOW_PRIO, &fd, name)
                    .await?;
                self.map = Some(map);
                self.underlay = Some((dev.clone(), mac));
                return Ok((dev, mac));
            }
        }
        anyhow::bail!("no link holds the underlay address {}", self.underlay_ip)
    }

    /// Makes the port's devices (see the module docs) on its first flow.
    async fn port_devs(&mut self, port: PortId, vni: u32) -> anyhow::Result<()> {
        if self.devs.contains_key(&port) {
            return Ok(());
        }
        let info = self
            .ports
            .get(&port)
            .cloned()
            .context("a flow of a port not announced")?;
        let (_, umac) = self.underlay().await?;
        // Named per host too: the hosts of a lab share one /run/netns.
        let fp_ns = format!(
            "{}{}",
            port_netns_prefix(&self.prefix, self.underlay_ip),
            port.0
        );
        let veth = format!("fpv{}", port.0);
        let vx_out = format!("fpe{}", port.0);
        let vx_in = format!("fpi{}", port.0);
        let deliver = format!("fpd{}", port.0);
        let deliver_in = format!("fpdi{}", port.0);
        let decap = decap_enabled();
        // Leftovers of an agent that did not exit cleanly.
        let _ = netns::delete(&fp_ns);
        let _ = self.host.del_link(&veth).await;
        let _ = self.host.del_link(&deliver).await;
        let _ = self.host.del_link(&vx_out).await;
        netns::create(&fp_ns)?;
        // Datagrams come from other hosts, to which this namespace has no route: no reverse
        // path filter (a namespace inherits the host's settings); no IPv6 chatter.
        for (key, value) in [
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv6.conf.all.disable_ipv6", "1"),
            ("net.ipv6.conf.default.disable_ipv6", "1"),
        ] {
            netns::set_sysctl(&fp_ns, key, value)?;
        }
        let nl = Netlink::connect_in(&info.netns)?;
        let made = async {
            let _ = nl.del_link(&vx_out).await;
            let _ = nl.del_link(&vx_in).await;
            let _ = nl.del_link(&deliver_in).await;
            self.host.add_veth(&veth, "fpr", Some(&fp_ns)).await?;
            // The veth carries whole datagrams the underlay device received (9001-byte
            // instance frames plus VXLAN): a veth drops what exceeds its MTU, so it takes any.
            self.host
                .set_link(
                    &veth,
                    &LinkChange {
                        mtu: Some(VETH_MTU),
                        ..Default::default()
                    },
                )
                .await?;
            let nf = Netlink::connect_in(&fp_ns)?;
            nf.set_link(
                "fpr",
                &LinkChange {
                    mac: Some(umac),
                    mtu: Some(VETH_MTU),
                    up: Some(true),
                    ..Default::default()
                },
            )
            .await?;
            nf.set_up("lo").await?;
            nf.add_address("fpr", self.underlay_ip, 32, false).await?;
            self.host.set_up(&veth).await?;
            nf.add_vxlan(&vx_in, vni, self.underlay_ip, VXLAN_PORT)
                .await?;
            nf.move_to_netns(&vx_in, &info.netns).await?;
            let out_port = 47000 + (port.0 % 2000) as u16;
            self.host
                .add_vxlan(&vx_out, vni, self.underlay_ip, out_port)
                .await?;
            self.host.move_to_netns(&vx_out, &info.netns).await?;
            for dev in [&vx_in, &vx_out] {
                nl.set_link(
                    dev,
                    &LinkChange {
                        mac: Some(info.mac),
                        mtu: Some(crate::instance::INSTANCE_MTU),
                        up: Some(true),
                        ..Default::default()
                    },
                )
                .await?;
                nl.add_clsact(dev).await?;
            }
            nl.add_redirect(
                &vx_in,
                Hook::Ingress,
                CATCH_ALL_PRIO,
                &[],
                &info.ifname,
                Redirect::Ingress,
            )
            .await?;
            // Nothing may arrive on the egress device's socket: to the ingress device's
            // transmit side, which has no FDB entry and drops it.
            nl.add_redirect(
                &vx_out,
                Hook::Ingress,
                CATCH_ALL_PRIO,
                &[],
                &vx_in,
                Redirect::Egress,
            )
            .await?;
            if let Err(e) = nl.add_clsact(&info.ifname).await {
                if e.errno() != Some(libc::EEXIST) {
                    return Err(anyhow::Error::from(e));
                }
            }
            if decap {
                self.deliver_veth(&nl, &info, &deliver, &deliver_in).await?;
            }
            // The port's egress program, looking frames up in the host's flow map.
            let map = self.map.as_ref().context("no flow map")?;
            let name = format!("svfp_eg{}", port.0);
            let fd =
                softvpc_netlink::bpf::load_sched_cls(&table::egress_program(map, port.0), &name)
                    .context("loading a port's flow program")?;
            nl.add_bpf_direct(&info.ifname, Hook::Egress, FLOW_PRIO, &fd, &name)
                .await?;
            let vx_out_index = link_index(&nl, &vx_out).await?;
            let veth_index = link_index(&self.host, &veth).await?;
            let deliver_index = if decap {
                link_index(&self.host, &deliver).await?
            } else {
                0
            };
            anyhow::Ok((vx_out_index, veth_index, deliver_index))
        }
        .await;
        let (vx_out_index, veth_index, deliver_index) = match made {
            Ok(x) => x,
            Err(e) => {
                let _ = netns::delete(&fp_ns);
                let _ = self.host.del_link(&deliver).await;
                let _ = self.host.del_link(&vx_out).await;
                let _ = nl.del_link(&vx_out).await;
                let _ = nl.del_link(&vx_in).await;
                let _ = nl.del_filters(&info.ifname, Hook::Egress, FLOW_PRIO).await;
                return Err(e.context(format!("fast path devices of {}", info.ifname)));
            }
        };
        debug!(port = port.0, netns = %info.netns, "fast path devices made");
        self.devs.insert(
            port,
            PortDevs {
                info,
                fp_ns,
                veth,
                vni,
                vx_out,
                vx_out_index,
                vx_peers: HashMap::new(),
                veth_index,
                deliver_index,
                vx_in,
                deliver: decap.then_some(deliver),
                nl,
                fdb: HashMap::new(),
                forged_seen: 0,
                forged_peers: HashMap::new(),
            },
        );
        Ok(())
    }

    /// The veth a port's decapsulated frames take (see the module docs): `deliver` in the host
    /// namespace, `deliver_in` in the instance's with the instance's MAC (so the frames it
    /// receives are PACKET_HOST, which `mirred ingress` keeps), and a catch-all on its ingress
    /// handing every IPv4 frame to the instance's interface. Neither end has an address, and
    /// IPv6 is off on both, so nothing but the decapsulated frames crosses it.
    async fn deliver_veth(
        &self,
        nl: &Netlink,
        info: &PortInfo,
        deliver: &str,
        deliver_in: &str,
    ) -> anyhow::Result<()> {
        self.host
            .add_veth(deliver, deliver_in, Some(&info.netns))
            .await?;
        netns::write_sysctl(&format!("net.ipv6.conf.{deliver}.disable_ipv6"), "1")?;
        netns::set_sysctl(
            &info.netns,
            &format!("net.ipv6.conf.{deliver_in}.disable_ipv6"),
            "1",
        )?;
        nl.set_link(
            deliver_in,
            &LinkChange {
                mac: Some(info.mac),
                mtu: Some(VETH_MTU),
                ..Default::default()
            },
        )
        .await?;
        nl.add_clsact(deliver_in).await?;
        // The EtherType (the two bytes before the IPv4 header): IPv4 only.
        nl.add_redirect(
            deliver_in,
            Hook::Ingress,
            CATCH_ALL_PRIO,
            &[U32Match {
                offset: -4,
                mask: 0xffff,
                value: 0x0800,
            }],
            &info.ifname,
            Redirect::Ingress,
        )
        .await?;
        nl.set_up(deliver_in).await?;
        self.host
            .set_link(
                deliver,
                &LinkChange {
                    mtu: Some(VETH_MTU),
                    up: Some(true),
                    ..Default::default()
                },
            )
            .await?;
        Ok(())
    }

    /// The port's egress VXLAN device for `vni` and its interface index: `fpe<P>` for its own
    /// VPC's, else one made on the first flow into that (peered) VPC, `fpe<P>v<n>`, whose
    /// socket is `fpe<P>`'s (same port, another VNI) and whose received frames go to the sink
    /// as `fpe<P>`'s do.
    async fn egress_dev(&mut self, port: PortId, vni: u32) -> anyhow::Result<(String, u32)> {
        let d = self.devs.get(&port).context("devices")?;
        if vni == d.vni {
            return Ok((d.vx_out.clone(), d.vx_out_index));
        }
        if let Some(dev) = d.vx_peers.get(&vni) {
            return Ok(dev.clone());
        }
        let dev = format!("fpe{}v{}", port.0, d.vx_peers.len());
        let out_port = 47000 + (port.0 % 2000) as u16;
        let _ = self.host.del_link(&dev).await;
        let _ = d.nl.del_link(&dev).await;
        let made = async {
            self.host
                .add_vxlan(&dev, vni, self.underlay_ip, out_port)
                .await?;
            self.host.move_to_netns(&dev, &d.info.netns).await?;
            d.nl.set_link(
                &dev,
                &LinkChange {
                    mac: Some(d.info.mac),
                    mtu: Some(crate::instance::INSTANCE_MTU),
                    up: Some(true),
                    ..Default::default()
                },
            )
            .await?;
            d.nl.add_clsact(&dev).await?;
            d.nl.add_redirect(
                &dev,
                Hook::Ingress,
                CATCH_ALL_PRIO,
                &[],
                &d.vx_in,
                Redirect::Egress,
            )
            .await?;
            link_index(&d.nl, &dev).await
        }
        .await;
        let index = match made {
            Ok(i) => i,
            Err(e) => {
                let _ = self.host.del_link(&dev).await;
                let _ = d.nl.del_link(&dev).await;
                return Err(e.context(format!("fast path device {dev} for VNI {vni}")));
            }
        };
        if let Some(d) = self.devs.get_mut(&port) {
            d.vx_peers.insert(vni, (dev.clone(), index));
        }
        Ok((dev, index))
    }

    async fn install(&mut self, k: KernelFlow, own: Option<u32>) -> anyhow::Result<()> {
        let key = table::key(&k);
        match self.keys.get(&key) {
            Some(i) if i.flow == k => return Ok(()),
            Some(_) => anyhow::bail!("another installed flow has the same match"),
            None => {}
        }
        let port = k.port();
        let vni = match (k.hook, k.action) {
            (_, KernelAction::Encap { vni, .. }) => vni.0,
            (KernelHook::UnderlayIngress { vni, .. }, _) => vni.0,
            _ => anyhow::bail!("an egress flow that does not encapsulate"),
        };
        // The port's devices carry its own VPC's VNI (a peered flow's is the peer's).
        self.port_devs(port, own.unwrap_or(vni)).await?;
        let value = match (k.hook, k.action) {
            (
                KernelHook::PortEgress(_),
                KernelAction::Encap {
                    host, port: dport, ..
                },
            ) => {
                let (dev, index) = self.egress_dev(port, vni).await?;
                let d = self.devs.get_mut(&port).context("devices")?;
                // The frame leaves with the rewritten destination MAC for a routed flow.
                let mac = k.rewrite.map_or(k.dst_mac, |r| r.target_mac);
                if d.fdb.get(&(vni, mac)) != Some(&host) {
                    d.nl.fdb_replace(&dev, &mac, host, dport).await?;
                    d.fdb.insert((vni, mac), host);
                }
                table::value(&k, index, 0)
            }
            (KernelHook::UnderlayIngress { .. }, KernelAction::Deliver(_)) => {
                let d = self.devs.get(&port).context("devices")?;
                table::value(&k, d.deliver_index, d.veth_index)
            }
            _ => anyhow::bail!("a flow the fast path cannot hold"),
        };
        let map = self.map.as_ref().context("no flow map")?;
        map.insert(&key, &value)
            .context("adding a flow to the fast path's map")?;
        self.keys.insert(
            key,
            Installed {
                flow: k,
                packets: 0,
                bytes: 0,
            },
        );
        self.counters.installs.fetch_add(1, Ordering::Relaxed);
        if k.rewrite.is_some() {
            self.counters
                .routed_installs
                .fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .installed
            .store(self.keys.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Removes flow `k`'s entry; what it counted since the last read goes to the data path.
    async fn remove(&mut self, k: &KernelFlow) {
        let key = table::key(k);
        if self.keys.get(&key).is_none_or(|i| i.flow != *k) {
            return;
        }
        let inst = self.keys.remove(&key);
        if let (Some(map), Some(mut inst)) = (&self.map, inst) {
            let last = map.get(&key).ok().flatten();
            if let Err(e) = map.remove(&key) {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "fast path: removing a flow failed");
            }
            if let Some(u) =
                last.and_then(|v| take_use(&self.counters, &mut inst, &v, monotonic_ns()))
            {
                if let Ok(mut uses) = self.uses.lock() {
                    uses.push(u);
                }
            }
        }
        self.counters.removals.fetch_add(1, Ordering::Relaxed);
        self.counters
            .installed
            .store(self.keys.len() as u64, Ordering::Relaxed);
    }

    async fn remove_port(&mut self, port: PortId) {
        let mine: Vec<KernelFlow> = self
            .keys
            .values()
            .map(|i| i.flow)
            .filter(|k| k.port() == port)
            .collect();
        for k in &mine {
            self.remove(k).await;
        }
        self.ports.remove(&port);
        if let Some(d) = self.devs.remove(&port) {
            let _ = d.nl.del_clsact(&d.info.ifname).await;
            let _ = d.nl.del_link(&d.vx_out).await;
            for (dev, _) in d.vx_peers.values() {
                let _ = d.nl.del_link(dev).await;
            }
            let _ = d.nl.del_link(&d.vx_in).await;
            let _ = self.host.del_link(&d.veth).await;
            if let Some(dev) = &d.deliver {
                let _ = self.host.del_link(dev).await;
            }
            if let Err(e) = netns::delete(&d.fp_ns) {
                warn!(netns = %d.fp_ns, error = %e, "fast path: namespace not deleted");
            }
        }
    }

    /// Starts a pass over every flow's counters, read [`bpf::BATCH`] entries per loop turn
    /// ([`Installer::stats_step`]) so that an install never waits behind a whole map's read
    /// (at 20,000 flows the whole read took about 14 ms of this thread, while a new flow's
    /// first packets crowded the engine's path and overflowed the TAP's queue). The filters'
    /// counts of forged datagrams are read now.
    async fn start_stats(&mut self) {
        self.last_stats = Instant::now();
        for d in self.devs.values_mut() {
            if let Ok(s) = d.nl.filter_stats(&d.vx_out, Hook::Ingress).await {
                let seen: u64 = s.iter().map(|f| f.packets).sum();
                let new = seen.wrapping_sub(d.forged_seen) & 0xffff_ffff;
                if new > 0 {
                    self.counters.forged.fetch_add(new, Ordering::Relaxed);
                }
                d.forged_seen = seen;
            }
            for (vni, (dev, _)) in &d.vx_peers {
                if let Ok(s) = d.nl.filter_stats(dev, Hook::Ingress).await {
                    let seen: u64 = s.iter().map(|f| f.packets).sum();
                    let last = d.forged_peers.entry(*vni).or_insert(0);
                    let new = seen.wrapping_sub(*last) & 0xffff_ffff;
                    if new > 0 {
                        self.counters.forged.fetch_add(new, Ordering::Relaxed);
                    }
                    *last = seen;
                }
            }
        }
        self.stats = self.map.as_ref().map(|_| None);
    }

    /// One slice of the pass [`Installer::start_stats`] began: up to [`bpf::BATCH`] entries
    /// in one batched read (a read per flow cost 10,000 system calls every 500 ms at 10,000
    /// flows), the differences handed to the data path. If the kernel refuses batches, every
    /// flow is read one by one and the pass ends.
    fn stats_step(&mut self) {
        let (Some(at), Some(map)) = (self.stats, &self.map) else {
            self.stats = None;
            return;
        };
        let now_ns = monotonic_ns();
        let mut uses = Vec::new();
        let (keys, counters) = (&mut self.keys, &*self.counters);
        let read = map.read_batch(at, |key, value| {
            let Ok(key) = <[u8; table::KEY_LEN]>::try_from(key) else {
                return;
            };
            if let Some(inst) = keys.get_mut(&key) {
                if let Some(u) = take_use(counters, inst, value, now_ns) {
                    uses.push(u);
                }
            }
        });
        let next = match read {
            Ok(next) => next,
            Err(e) => {
                debug!(error = %e, "fast path: batched map read refused; reading flow by flow");
                for (key, inst) in keys.iter_mut() {
                    if let Ok(Some(v)) = map.get(key) {
                        if let Some(u) = take_use(counters, inst, &v, now_ns) {
                            uses.push(u);
                        }
                    }
                }
                None
            }
        };
        self.stats = next.map(Some);
        if !uses.is_empty() {
            if let Ok(mut u) = self.uses.lock() {
                u.extend(uses);
            }
        }
    }

    /// Every flow's counters at once (before a flush removes them all).
    async fn read_stats(&mut self) {
        self.start_stats().await;
        while self.stats.is_some() {
            self.stats_step();
        }
    }
}

/// What an installed flow's entry (`value`, read at `now_ns`) counted since `inst`'s last read,
/// which it updates; none if nothing (or if `value` is not a whole entry).
fn take_use(
    counters: &FastPathCounters,
    inst: &mut Installed,
    value: &[u8],
    now_ns: u64,
) -> Option<Use> {
    if value.len() != table::VALUE_LEN {
        return None;
    }
    let (seen_packets, seen_bytes, last_ns) = table::counters(value);
    let packets = seen_packets.saturating_sub(inst.packets);
    let bytes = seen_bytes.saturating_sub(inst.bytes);
    inst.packets = seen_packets;
    inst.bytes = seen_bytes;
    if packets == 0 {
        return None;
    }
    counters.packets.fetch_add(packets, Ordering::Relaxed);
    if inst.flow.rewrite.is_some() {
        counters
            .routed_packets
            .fetch_add(packets, Ordering::Relaxed);
    }
    let now = Instant::now();
    let idle = Duration::from_nanos(now_ns.saturating_sub(last_ns));
    Some(Use {
        flow: inst.flow,
        packets,
        bytes,
        last_used: now.checked_sub(idle).unwrap_or(now),
    })
}

/// `dev`'s interface index in `nl`'s namespace.
async fn link_index(nl: &Netlink, dev: &str) -> anyhow::Result<u32> {
    nl.link_index(dev)
        .await?
        .with_context(|| format!("no interface {dev}"))
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns` (and of [`Instant`]).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Whether an install failed because a device it names is gone (ENODEV anywhere in the
/// chain): a port's interface removed while its flow was on the way.
fn device_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(nix::libc::ENODEV)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use softvpc_engine::policy::Generation;
    use softvpc_engine::Vni;
    use softvpc_wire::L4Key;

    /// A UDP flow leaving port `port` for another host.
    fn egress_flow(port: u32) -> KernelFlow {
        KernelFlow {
            generation: Generation(1),
            hook: KernelHook::PortEgress(PortId(port)),
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            proto: 17,
            l4: L4Key::Ports { src: 1, dst: 2 },
            action: KernelAction::Encap {
                host: Ipv4Addr::new(198, 18, 0, 12),
                vni: Vni(0x101),
                port: 4789,
            },
            rewrite: None,
        }
    }

    /// A flush the installer has not reached in the wait is counted and reported unfinished
    /// (so the data path does not report its new table in use), and [`FastPath::flushed`]
    /// says so until the installer answers it.
    #[test]
    fn a_flush_not_answered_in_time_stays_pending_until_the_installer_answers() {
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(FastPathCounters::default());
        let mut fp = FastPath {
            ops: tx,
            thread: None,
            installed: HashSet::from([egress_flow(1)]),
            changes: Vec::new(),
            uses: Arc::default(),
            last_sync: None,
            last_early: None,
            pending_flush: None,
            flush_wait: Duration::from_millis(20),
            counters: Arc::clone(&counters),
        };
        let mut engine = Engine::new(softvpc_engine::EngineConfig::new(Ipv4Addr::new(
            198, 18, 0, 11,
        )));
        assert!(!fp.flush(&mut engine), "nobody answered the flush");
        assert_eq!(counters.flush_timeouts.load(Ordering::Relaxed), 1);
        assert!(!fp.flushed());
        // Nothing is installed any more, but the pending flush still counts.
        assert!(
            !fp.flush(&mut engine),
            "the second flush is not answered either"
        );
        assert_eq!(counters.flush_timeouts.load(Ordering::Relaxed), 2);
        // The installer gets to them in order; the newest answer is the one awaited (the
        // installer ignores a dropped receiver, as the first one's is now).
        let flushes: Vec<_> = rx
            .try_iter()
            .filter_map(|op| match op {
                Op::Flush(done) => Some(done),
                _ => None,
            })
            .collect();
        assert_eq!(flushes.len(), 2);
        let _ = flushes[0].send(());
        assert!(!fp.flushed(), "the newer flush is still queued");
        flushes[1].send(()).unwrap();
        assert!(fp.flushed());
        assert!(fp.flushed(), "stays finished");
        assert!(
            fp.flush(&mut engine),
            "nothing installed, nothing pending: done at once"
        );
    }

    /// A failing install is tried again after 50, 100, 200 and 400 ms, then given up (five
    /// tries in all); a withdrawn flow's tries are cancelled.
    #[test]
    fn failed_installs_are_tried_again_with_a_backoff_then_given_up() {
        let flow = egress_flow;
        let mut r = Retries::default();
        let t0 = Instant::now();
        let mut now = t0;
        let mut tries = 1;
        let mut waits = Vec::new();
        while r.failed(flow(1), Some(0x101), tries, now) {
            let due = r.next_due().unwrap();
            waits.push(due - now);
            assert!(
                r.take_due(due - Duration::from_millis(1)).is_empty(),
                "early"
            );
            let got = r.take_due(due);
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].flow, got[0].tries), (flow(1), tries));
            now = due;
            tries += 1;
        }
        assert_eq!(
            waits,
            [50, 100, 200, 400].map(Duration::from_millis).to_vec()
        );
        assert_eq!(tries, INSTALL_TRIES);
        assert_eq!(r.next_due(), None);
        // Withdrawn (or its port gone, or flushed) before its next try: none.
        assert!(r.failed(flow(1), None, 1, t0));
        assert!(r.failed(flow(2), None, 1, t0));
        r.cancel(|k| k.port() == PortId(1));
        let left = r.take_due(t0 + Duration::from_secs(1));
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].flow, flow(2));
    }

    #[test]
    fn ingress_keys_match_the_outer_headers_then_the_inner_frame() {
        let k = KernelFlow {
            generation: Generation(1),
            hook: KernelHook::UnderlayIngress {
                port: PortId(1),
                vni: Vni(0x101),
                host: Ipv4Addr::new(198, 18, 0, 12),
            },
            src_mac: [2, 0, 0, 0, 1, 2],
            dst_mac: [2, 0, 0, 0, 1, 1],
            src: Ipv4Addr::new(10, 0, 0, 185),
            dst: Ipv4Addr::new(10, 0, 0, 148),
            proto: 17,
            l4: L4Key::Ports { src: 53, dst: 4000 },
            action: KernelAction::Deliver(PortId(1)),
            rewrite: None,
        };
        let keys = ingress_keys(&k, Ipv4Addr::new(198, 18, 0, 11));
        assert!(keys.contains(&U32Match::ipv4_src(Ipv4Addr::new(198, 18, 0, 12))));
        assert!(keys.contains(&U32Match {
            offset: 32,
            mask: u32::MAX,
            value: 0x0001_0100
        }));
        assert!(keys.iter().all(|k| k.offset % 4 == 0), "{keys:?}");
        // The inner frame 36 bytes into the datagram (20 IPv4 + 8 UDP + 8 VXLAN), its IPv4
        // header at 50: source 10.0.0.185 at 62..66, destination at 66..70, ports at 70..74.
        let mut d = [0u8; 80];
        d[0] = 0x45;
        d[9] = 17;
        d[12..16].copy_from_slice(&[198, 18, 0, 12]);
        d[16..20].copy_from_slice(&[198, 18, 0, 11]);
        d[22..24].copy_from_slice(&4789u16.to_be_bytes());
        d[28] = 0x08;
        d[32..35].copy_from_slice(&[0, 1, 1]);
        d[36..42].copy_from_slice(&k.dst_mac);
        d[42..48].copy_from_slice(&k.src_mac);
        d[48..50].copy_from_slice(&[8, 0]);
        d[50] = 0x45;
        d[59] = 17;
        d[62..66].copy_from_slice(&[10, 0, 0, 185]);
        d[66..70].copy_from_slice(&[10, 0, 0, 148]);
        d[70..74].copy_from_slice(&[0, 53, 0x0f, 0xa0]);
        let word =
            |at: i32| u32::from_be_bytes(d[at as usize..at as usize + 4].try_into().unwrap());
        assert!(
            keys.iter().all(|k| word(k.offset) & k.mask == k.value),
            "{keys:?}"
        );
        // Any byte of the inner flow changed: no match.
        for at in [37, 43, 59, 63, 69, 71, 73] {
            let mut e = d;
            e[at] ^= 1;
            let word =
                |o: i32| u32::from_be_bytes(e[o as usize..o as usize + 4].try_into().unwrap());
            assert!(
                !keys.iter().all(|k| word(k.offset) & k.mask == k.value),
                "byte {at}"
            );
        }
    }

    #[test]
    fn an_install_whose_device_went_away_is_told_from_a_failure() {
        let gone = anyhow::Error::new(softvpc_netlink::Error::new(
            "tc filter add dev fpi8 ingress ... redirect dev eth1",
            std::io::Error::from_raw_os_error(nix::libc::ENODEV),
        ))
        .context("fast path devices of eth1");
        assert!(device_gone(&gone));
        let other = anyhow::Error::new(softvpc_netlink::Error::new(
            "bpf map update",
            std::io::Error::from_raw_os_error(nix::libc::E2BIG),
        ))
        .context("installing a flow");
        assert!(!device_gone(&other));
        assert!(!device_gone(&anyhow::anyhow!("No such device")));
    }
}
