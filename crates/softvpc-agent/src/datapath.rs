//! The data-path thread: owns the [`Engine`], the TAP devices and the underlay sockets.
//!
//! One thread, one `epoll` over the TAP fds, the VXLAN socket and an eventfd that wakes it for
//! control [`Command`]s (ports added or removed, statistics wanted, shutdown) arriving on a
//! channel. Each wake-up reads up to [`BATCH_SIZE`] frames from each ready source (level
//! triggered, so a busy source is served again on the next wait, after the others), hands them to
//! the engine in one call, and performs the [`Output`]: frames written to TAPs, datagrams sent on
//! the underlay. The `Output` is the thread's own and reused: the engine writes every frame into
//! its arena, so the packet path allocates nothing once it has grown. Before each batch, if the
//! control plane published a new mapping table (an `ArcSwap` pointer change), the engine gets it
//! (`set_table`): one atomic load per batch.
//!
//! Time: the thread reads the clock once per wake-up and hands that `now` to every engine call.
//! The `epoll_wait` timeout is the engine's [`Engine::poll_timeout`] (capped at
//! [`MAX_WAIT`]); when it is due the thread calls [`Engine::handle_timeout`] and logs the
//! engine's events (drop reports).
//!
//! The engine is sans-IO; this module is the only place that does packet I/O, and all of it goes
//! through [`Tap`], [`UnderlayRx`] and [`UnderlayTx`], so io_uring, AF_XDP or UDP GSO/GRO can
//! replace them without touching the engine or the control plane.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use softvpc_engine::{
    Counters, Engine, Event, FlowLogStats, FlowWindow, MappingTable, Output, PortId,
};
use tracing::{debug, error, info, warn};

use crate::batch::{Batch, BATCH_SIZE, SLOT_SIZE};
use crate::fastpath::FastPath;
use crate::flowlog::FlowLogView;
use crate::tap::Tap;
use crate::underlay::{UnderlayRx, UnderlayTx};

/// How often at most the thread publishes its counters after batches.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// The longest `epoll_wait`, so counters are published even when the engine has no timer.
const MAX_WAIT: Duration = Duration::from_millis(100);

// epoll tokens: ports use their PortId (u32), the two fixed sources sit above that range.
const TOKEN_WAKE: u64 = 1 << 40;
const TOKEN_UNDERLAY: u64 = (1 << 40) + 1;
const TOKEN_DNS: u64 = (1 << 40) + 2;

/// The upstream resolver the VPC router forwards DNS queries to: one connected UDP socket, and
/// the engine's [`Forwarder`](softvpc_engine::layers::gateway::dns::Forwarder) matching
/// answers back to askers.
#[derive(Debug)]
pub struct DnsUpstream {
    socket: std::net::UdpSocket,
    fwd: softvpc_engine::layers::gateway::dns::Forwarder,
}

impl DnsUpstream {
    /// A non-blocking socket connected to `addr`.
    pub fn connect(addr: std::net::SocketAddr) -> anyhow::Result<DnsUpstream> {
        let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).context("binding")?;
        socket.connect(addr).context("connecting")?;
        socket.set_nonblocking(true)?;
        Ok(DnsUpstream {
            socket,
            fwd: Default::default(),
        })
    }
}

/// What the control plane asks of the data path.
#[derive(Debug)]
pub enum Command {
    /// Start serving a TAP as `port` (the table naming it may come right after).
    AddPort {
        /// The engine's port id.
        port: PortId,
        /// The open TAP device.
        tap: Tap,
    },
    /// Stop serving `port` and close its TAP (no longer persistent: closing deletes the device).
    RemovePort {
        /// The engine's port id.
        port: PortId,
    },
    /// Publish the counters now and send a copy back.
    Stats(tokio::sync::oneshot::Sender<Stats>),
    /// Run a packet through the engine's trace (`softvpc trace`) and send what it found back.
    Trace(
        Box<crate::trace::TraceInput>,
        tokio::sync::oneshot::Sender<crate::trace::TraceOutput>,
    ),
    /// Where a port's interface is, for the kernel fast path (ignored when it is off).
    FastPathPort(crate::fastpath::PortInfo),
    /// Close everything and exit the thread.
    Shutdown,
}

/// Errors of the I/O shell itself (not the engine's drops), counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Failed reads from TAPs (other than would-block).
    pub tap_read_errors: u64,
    /// Failed writes to TAPs (the frame is lost).
    pub tap_write_errors: u64,
    /// Failed receives on the underlay socket.
    pub underlay_recv_errors: u64,
    /// Failed sends on the underlay socket (the datagram is lost).
    pub underlay_send_errors: u64,
    /// Engine output for a port the data path does not serve (removed in between).
    pub output_unknown_port: u64,
    /// Wake-ups that read at least one frame or datagram.
    pub batches: u64,
}

impl IoCounters {
    /// `(label, value)` pairs for `softvpc_io_errors_total{op="..."}`.
    pub fn errors(&self) -> [(&'static str, u64); 5] {
        [
            ("tap_read", self.tap_read_errors),
            ("tap_write", self.tap_write_errors),
            ("underlay_recv", self.underlay_recv_errors),
            ("underlay_send", self.underlay_send_errors),
            ("output_unknown_port", self.output_unknown_port),
        ]
    }
}

/// A copy of the data path's counters, published for the metrics endpoint.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// The engine's counters.
    pub engine: Counters,
    /// The I/O shell's counters.
    pub io: IoCounters,
    /// Ports (TAPs) being served.
    pub ports: usize,
    /// The engine's flow log capture.
    pub flow_logs: FlowLogStats,
    /// The instance metadata service.
    pub imds: crate::imds::ImdsCounters,
}

/// State shared between the data path and the control plane.
#[derive(Debug)]
pub struct Shared {
    /// The current mapping table; the control plane stores, the data path loads.
    pub table: ArcSwap<MappingTable>,
    /// The last published counters.
    pub stats: Mutex<Stats>,
    /// True while the data-path thread runs (cleared even if it panics).
    pub running: AtomicBool,
    /// The kernel fast path's counters, when it is on.
    pub fast_path: std::sync::OnceLock<Arc<crate::fastpath::FastPathCounters>>,
    /// The flow-logged local ENIs; the control plane stores, the data path loads.
    pub flow_logs: Arc<ArcSwap<FlowLogView>>,
    /// Where closed flow log windows go (the shipper); unset: nowhere (they are dropped).
    pub flow_windows: std::sync::OnceLock<tokio::sync::mpsc::Sender<FlowWindow>>,
    /// Flow log records lost because the shipper's queue was full.
    pub flow_records_lost: std::sync::atomic::AtomicU64,
    /// The local instances' metadata (ENI id -> instance); the control plane stores, the
    /// data path's metadata server reads.
    pub imds: ArcSwap<crate::imds::ImdsView>,
    /// The latest tables that changed which ENIs are local (at most
    /// [`crate::status::LOCAL_CHANGES_KEPT`], oldest first): the control plane records each
    /// before handing its table over, the data path stamps when it began using it.
    pub local_changes: Mutex<VecDeque<crate::status::LocalChange>>,
    /// The revision behind each table handed over, and the table in use; the control plane
    /// records a table before storing it, the data path when it takes it in.
    pub tables: Mutex<crate::status::TableLog>,
}

impl Shared {
    /// The data path now uses the table of generation `generation`: every recorded change of
    /// that generation or an earlier one (the data path may skip a table stored just before a
    /// newer one) is stamped with the time, if it was not yet.
    fn table_in_use(&self, generation: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        if let Ok(mut tables) = self.tables.lock() {
            tables.in_use(generation, now);
        }
        let Ok(mut changes) = self.local_changes.lock() else {
            return;
        };
        for c in changes
            .iter_mut()
            .filter(|c| c.at_unix_ns == 0 && c.generation <= generation)
        {
            c.at_unix_ns = now;
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            table: ArcSwap::from_pointee(MappingTable::default()),
            stats: Mutex::new(Stats::default()),
            running: AtomicBool::new(false),
            fast_path: std::sync::OnceLock::new(),
            flow_logs: Arc::default(),
            flow_windows: std::sync::OnceLock::new(),
            flow_records_lost: Default::default(),
            imds: ArcSwap::from_pointee(Default::default()),
            local_changes: Mutex::new(VecDeque::new()),
            tables: Mutex::default(),
        }
    }
}

/// Clears [`Shared::running`] when the thread ends, however it ends.
struct RunningGuard(Arc<Shared>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// Sends [`Command`]s to the data-path thread (cheap to clone: the metrics endpoint has one).
#[derive(Debug, Clone)]
pub struct Commander {
    tx: mpsc::Sender<Command>,
    wake: Arc<EventFd>,
}

impl Commander {
    /// Wakes the thread without a command: it looks at the shared table (and everything
    /// else it polls) now.
    pub fn wake(&self) {
        let _ = self.wake.write(1);
    }

    /// Sends a command and wakes the thread. Fails only if the thread is gone.
    pub fn send(&self, cmd: Command) -> anyhow::Result<()> {
        self.tx
            .send(cmd)
            .map_err(|_| anyhow::anyhow!("the data-path thread has stopped"))?;
        self.wake.write(1).context("waking the data-path thread")?;
        Ok(())
    }
}

/// The control plane's handle on the data-path thread.
#[derive(Debug)]
pub struct DataPath {
    commander: Commander,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl DataPath {
    /// Starts the thread.
    pub fn spawn(
        engine: Engine,
        rx: UnderlayRx,
        tx: UnderlayTx,
        shared: Arc<Shared>,
    ) -> anyhow::Result<DataPath> {
        DataPath::spawn_with(engine, rx, tx, shared, None)
    }

    /// Starts the thread, with the kernel fast path when given.
    pub fn spawn_with(
        engine: Engine,
        rx: UnderlayRx,
        tx: UnderlayTx,
        shared: Arc<Shared>,
        fast: Option<FastPath>,
    ) -> anyhow::Result<DataPath> {
        DataPath::spawn_full(engine, rx, tx, shared, fast, None)
    }

    /// Starts the thread, with the kernel fast path and forwarding DNS queries to `dns` when
    /// given.
    pub fn spawn_full(
        engine: Engine,
        rx: UnderlayRx,
        tx: UnderlayTx,
        shared: Arc<Shared>,
        fast: Option<FastPath>,
        dns: Option<DnsUpstream>,
    ) -> anyhow::Result<DataPath> {
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let mut worker = Worker::new(
            engine,
            rx,
            tx,
            Arc::clone(&shared),
            Arc::clone(&wake),
            cmd_rx,
        )?;
        if let Some(d) = dns {
            worker.epoll.add(
                d.socket.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_DNS),
            )?;
            worker.dns = Some(d);
        }
        if let Some(f) = fast {
            let _ = shared.fast_path.set(Arc::clone(&f.counters));
            worker.fast = Some(f);
        }
        shared.running.store(true, Ordering::Release);
        let guard = RunningGuard(shared);
        let thread = std::thread::Builder::new()
            .name("softvpc-datapath".into())
            .spawn(move || {
                let _guard = guard;
                let r = worker.run();
                if let Err(e) = &r {
                    error!(error = %format!("{e:#}"), "data path stopped");
                }
                r
            })
            .context("spawning the data-path thread")?;
        Ok(DataPath {
            commander: Commander { tx: cmd_tx, wake },
            thread: Some(thread),
        })
    }

    /// The channel that sends commands to this data path.
    pub fn commander(&self) -> &Commander {
        &self.commander
    }

    /// Sends a command and wakes the thread. Fails only if the thread is gone.
    pub fn send(&self, cmd: Command) -> anyhow::Result<()> {
        self.commander.send(cmd)
    }

    /// Asks the thread to stop (closing every TAP) and waits for it.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.send(Command::Shutdown);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the data-path thread panicked"),
            None => Ok(()),
        }
    }
}

/// Milliseconds until `deadline` (the engine's next timer), at most [`MAX_WAIT`], rounded up so
/// that a timer due in 0.3 ms is not polled in a busy loop of 0 ms waits; 0 when it is due.
fn wait_ms(deadline: Option<Instant>, now: Instant) -> u16 {
    let wait = match deadline {
        Some(t) => t.saturating_duration_since(now).min(MAX_WAIT),
        None => MAX_WAIT,
    };
    // At most MAX_WAIT (100 ms), so it fits.
    wait.as_micros().div_ceil(1000) as u16
}

struct Worker {
    engine: Engine,
    rx: UnderlayRx,
    tx: UnderlayTx,
    shared: Arc<Shared>,
    wake: Arc<EventFd>,
    commands: mpsc::Receiver<Command>,
    epoll: Epoll,
    ports: HashMap<PortId, Tap>,
    out: Output,
    tap_batch: Batch,
    udp_batch: Batch,
    io: IoCounters,
    last_publish: Instant,
    dirty: bool,
    /// The kernel fast path, when on.
    fast: Option<FastPath>,
    /// The engine's table was taken in while the fast path's flush had not finished: it is
    /// reported in use once the flush is done.
    table_unreported: bool,
    /// The flow log view the engine was last told about.
    flow_view: Arc<FlowLogView>,
    /// Flow log windows the shipping queue had no room for, to be shipped as SKIPDATA.
    lost_windows: crate::flowlog::LostWindows,
    /// The upstream resolver, when set.
    dns: Option<DnsUpstream>,
    /// The instance metadata service's stacks.
    imds: crate::imds::Server,
    /// When its stacks want to be polled next.
    imds_due: Option<Instant>,
}

impl Worker {
    fn new(
        engine: Engine,
        rx: UnderlayRx,
        tx: UnderlayTx,
        shared: Arc<Shared>,
        wake: Arc<EventFd>,
        commands: mpsc::Receiver<Command>,
    ) -> anyhow::Result<Worker> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create")?;
        epoll.add(
            wake.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_WAKE),
        )?;
        epoll.add(
            rx.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_UNDERLAY),
        )?;
        Ok(Worker {
            engine,
            rx,
            tx,
            shared,
            wake,
            commands,
            epoll,
            ports: HashMap::new(),
            out: Output::with_capacity(BATCH_SIZE * 2048),
            tap_batch: Batch::new(BATCH_SIZE, SLOT_SIZE),
            udp_batch: Batch::new(BATCH_SIZE, SLOT_SIZE),
            io: IoCounters::default(),
            last_publish: Instant::now(),
            dirty: false,
            fast: None,
            table_unreported: false,
            flow_view: Arc::default(),
            lost_windows: Default::default(),
            dns: None,
            imds: crate::imds::Server::new(crate::imds::TokenKey::random(), Instant::now()),
            imds_due: None,
        })
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let mut events = vec![EpollEvent::empty(); 256];
        info!("data path running");
        loop {
            let n = match self
                .epoll
                .wait(&mut events, self.wait_timeout(Instant::now()))
            {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("epoll_wait"),
            };
            let now = Instant::now();
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_WAKE => {
                        if !self.handle_commands() {
                            self.publish();
                            info!(ports = self.ports.len(), "data path stopping");
                            return Ok(());
                        }
                    }
                    TOKEN_UNDERLAY => self.underlay_ready(now),
                    TOKEN_DNS => self.dns_ready(now),
                    token => self.port_ready(now, PortId(token as u32)),
                }
            }
            // A flow log change applies without waiting for traffic.
            self.refresh_table();
            self.dns_expire(now);
            if self.engine.poll_timeout().is_some_and(|t| t <= now) {
                self.engine.handle_timeout(now);
                self.log_events();
            }
            if self.ports.contains_key(&PortId::EDGE) {
                // The edge asks for its next hop while it is unknown or unproven and in use
                // (the engine decides and rate-limits; cheap when there is nothing to say).
                self.refresh_table();
                self.engine.announce(now, &mut self.out);
                if !self.out.is_empty() {
                    self.flush();
                }
            }
            if self.fast.is_some() {
                // A new table applies (and flushes) before anything more is installed.
                self.refresh_table();
                if let Some(f) = &mut self.fast {
                    f.tick(&mut self.engine, now);
                    if self.table_unreported && f.flushed() {
                        self.table_unreported = false;
                        self.shared.table_in_use(self.engine.table().generation().0);
                    }
                }
            }
            if self.imds_due.is_some_and(|t| t <= now) {
                self.imds_poll(now);
            }
            self.ship_flow_windows();
            if self.dirty && self.last_publish.elapsed() >= PUBLISH_INTERVAL {
                self.publish();
            }
        }
    }

    /// How long `epoll_wait` may sleep: until the engine's next timer, at most [`MAX_WAIT`].
    fn wait_timeout(&self, now: Instant) -> EpollTimeout {
        let deadline = match (self.engine.poll_timeout(), self.imds_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        EpollTimeout::from(wait_ms(deadline, now))
    }

    /// Runs the metadata service's stacks and frames what they send through the engine.
    fn imds_poll(&mut self, now: Instant) {
        struct Cx<'a> {
            table: &'a MappingTable,
            view: &'a crate::imds::ImdsView,
        }
        impl crate::imds::Context for Cx<'_> {
            fn instance(&self, port: PortId) -> Option<Arc<crate::imds::InstanceView>> {
                let eni = self.table.eni_on_port(port)?;
                self.view.get(&*eni.eni_id).cloned()
            }
            fn wall_secs(&self) -> u64 {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            }
        }
        self.refresh_table();
        let view = self.shared.imds.load();
        let table = Arc::clone(self.engine.table());
        let mut replies: Vec<(PortId, Vec<u8>)> = Vec::new();
        self.imds.poll(
            now,
            &Cx {
                table: &table,
                view: &view,
            },
            |port, packet| replies.push((port, packet.to_vec())),
        );
        for (port, packet) in &replies {
            self.engine
                .handle_imds_reply(now, *port, packet, &mut self.out);
        }
        self.imds_due = self.imds.poll_at(now);
        if !self.out.is_empty() {
            self.flush();
        }
    }

    /// Logs what the engine reported.
    fn log_events(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            match event {
                Event::Drops(r) => {
                    let drops: Vec<String> = r
                        .drops
                        .iter()
                        .map(|(reason, n)| format!("{reason}={n}"))
                        .collect();
                    warn!(
                        seconds = format!("{:.1}", r.until.duration_since(r.since).as_secs_f64()),
                        drops = drops.join(" "),
                        first = %r.sample.reason,
                        port = r.sample.port.map(|p| p.0),
                        len = r.sample.len,
                        packet = %r.sample.packet,
                        "the data path dropped packets"
                    );
                }
            }
        }
    }

    /// Drains the command channel. Returns false on shutdown.
    fn handle_commands(&mut self) -> bool {
        let _ = self.wake.read();
        loop {
            match self.commands.try_recv() {
                Ok(Command::AddPort { port, tap }) => {
                    let ev = EpollEvent::new(EpollFlags::EPOLLIN, u64::from(port.0));
                    if let Err(e) = self.epoll.add(tap.as_fd(), ev) {
                        warn!(port = port.0, tap = tap.name(), error = %e, "cannot poll TAP");
                        continue;
                    }
                    debug!(port = port.0, tap = tap.name(), "port added");
                    if let Some(old) = self.ports.insert(port, tap) {
                        let _ = self.epoll.delete(old.as_fd());
                    }
                    self.dirty = true;
                }
                Ok(Command::FastPathPort(info)) => {
                    if let Some(f) = &mut self.fast {
                        f.add_port(info);
                    }
                }
                Ok(Command::RemovePort { port }) => {
                    if let Some(f) = &mut self.fast {
                        f.remove_port(&mut self.engine, port);
                    }
                    self.imds.remove_port(port);
                    if let Some(tap) = self.ports.remove(&port) {
                        let _ = self.epoll.delete(tap.as_fd());
                        // The interface goes with the port: closing the fd deletes it.
                        if let Err(e) = tap.set_persistent(false) {
                            warn!(port = port.0, error = %e, "TAP stays until the plumber deletes it");
                        }
                        debug!(port = port.0, tap = tap.name(), "port removed");
                    }
                    self.dirty = true;
                }
                Ok(Command::Stats(reply)) => {
                    self.publish();
                    let _ = reply.send(self.stats());
                }
                Ok(Command::Trace(input, reply)) => {
                    // The table the next batch would use.
                    self.refresh_table();
                    let _ = reply.send(crate::trace::run(&self.engine, &input));
                }
                Ok(Command::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => return false,
                Err(mpsc::TryRecvError::Empty) => return true,
            }
        }
    }

    fn refresh_table(&mut self) {
        let current = self.shared.table.load();
        if !Arc::ptr_eq(&current, self.engine.table()) {
            // The kernel must forget the old generation's flows before a packet could use them.
            let flushed = self.fast.as_mut().is_none_or(|f| f.flush(&mut self.engine));
            self.engine.set_table(arc_swap::Guard::into_inner(current));
            // Otherwise in use once the kernel has let go of the old flows (checked every tick).
            self.table_unreported = !flushed;
            if flushed {
                self.shared.table_in_use(self.engine.table().generation().0);
            }
            // Public addresses that arrived are announced on the edge (written by the
            // caller's flush, or the next one).
            self.engine.announce(Instant::now(), &mut self.out);
        }
        let flow = self.shared.flow_logs.load();
        if !Arc::ptr_eq(&flow, &self.flow_view) {
            self.flow_view = arc_swap::Guard::into_inner(flow);
            // The engine may not have a time yet (no packet so far): windows start now.
            self.engine.handle_timeout(Instant::now());
            self.engine
                .set_flow_logs(crate::flowlog::intervals(&self.flow_view));
        }
    }

    /// Hands the engine's closed flow log windows to the shipper; a full queue loses them
    /// (counted), and their spans go later, as SKIPDATA windows, once the queue has room.
    fn ship_flow_windows(&mut self) {
        let tx = self.shared.flow_windows.get();
        if let Some(tx) = tx.filter(|_| !self.lost_windows.is_empty()) {
            for w in self.lost_windows.take() {
                if let Err(e) = tx.try_send(w) {
                    self.lost_windows.add(&e.into_inner());
                }
            }
        }
        while let Some(w) = self.engine.poll_flow_window() {
            let n = w.records.len().max(1) as u64;
            let refused = match tx {
                Some(tx) => tx.try_send(w).err().map(|e| e.into_inner()),
                None => Some(w),
            };
            if let Some(w) = refused {
                self.lost_windows.add(&w);
                self.shared
                    .flow_records_lost
                    .fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    fn underlay_ready(&mut self, now: Instant) {
        self.io.underlay_recv_errors += self.rx.recv_batch(&mut self.udp_batch);
        if self.udp_batch.is_empty() {
            return;
        }
        self.refresh_table();
        self.engine
            .handle_underlay_datagrams(now, self.udp_batch.iter(), &mut self.out);
        self.io.batches += 1;
        self.flush();
    }

    /// Answers from the upstream resolver: matched to their askers and framed by the engine.
    fn dns_ready(&mut self, now: Instant) {
        let Some(dns) = self.dns.as_mut() else {
            return;
        };
        let mut buf = [0u8; 9001];
        let mut any = false;
        for _ in 0..BATCH_SIZE {
            match dns.socket.recv(&mut buf) {
                Ok(n) => {
                    if let Some((asker, answer)) = dns.fwd.receive(now, &buf[..n]) {
                        self.engine
                            .handle_dns_answer(now, asker, &answer, &mut self.out);
                        any = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock, or an ICMP error of an earlier send (ECONNREFUSED).
                Err(_) => break,
            }
        }
        if any {
            self.flush();
        }
    }

    /// Forwarded queries the upstream did not answer in time get SERVFAIL.
    fn dns_expire(&mut self, now: Instant) {
        let Some(dns) = self.dns.as_mut() else {
            return;
        };
        if dns.fwd.is_empty() {
            return;
        }
        let expired = dns.fwd.expired(now);
        if expired.is_empty() {
            return;
        }
        for (asker, query) in expired {
            self.engine
                .handle_dns_timeout(now, asker, &query, &mut self.out);
        }
        self.flush();
    }

    fn port_ready(&mut self, now: Instant, port: PortId) {
        let Some(tap) = self.ports.get(&port) else {
            // Removed earlier in this same wake-up.
            return;
        };
        self.tap_batch.clear();
        let mut dead = false;
        while let Some(slot) = self.tap_batch.next_slot() {
            match tap.read_frame(slot) {
                Ok(n) => self.tap_batch.commit(n, std::net::Ipv4Addr::UNSPECIFIED),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EIO/EBADFD: the device went away under us; stop polling it rather than
                    // spinning on a level-triggered error.
                    self.io.tap_read_errors += 1;
                    warn!(port = port.0, tap = tap.name(), error = %e, "TAP read failed; port dropped");
                    let _ = self.epoll.delete(tap.as_fd());
                    dead = true;
                    break;
                }
            }
        }
        if dead {
            self.ports.remove(&port);
        }
        if self.tap_batch.is_empty() {
            return;
        }
        self.refresh_table();
        if port == PortId::EDGE {
            self.engine
                .handle_edge_frames(now, self.tap_batch.frames(), &mut self.out);
        } else {
            self.engine
                .handle_port_frames(now, port, self.tap_batch.frames(), &mut self.out);
        }
        self.io.batches += 1;
        self.flush();
    }

    /// Performs the engine's output, then clears it for the next batch (keeping its buffers).
    fn flush(&mut self) {
        let mut imds_in = false;
        for (port, packet) in self.out.imds() {
            self.imds.receive(Instant::now(), port, packet);
            imds_in = true;
        }
        for (port, frame) in self.out.to_ports() {
            match self.ports.get(&port) {
                Some(tap) => {
                    if tap.write_frame(frame).is_err() {
                        self.io.tap_write_errors += 1;
                    }
                }
                None => self.io.output_unknown_port += 1,
            }
        }
        if let Some(dns) = self.dns.as_mut() {
            let now = Instant::now();
            for (asker, query) in self.out.dns_forwards() {
                match dns.fwd.send(now, asker, query) {
                    Some(q) => {
                        if dns.socket.send(&q).is_err() {
                            self.io.underlay_send_errors += 1;
                        }
                    }
                    None => self.io.underlay_send_errors += 1,
                }
            }
        }
        for t in self.out.transmits() {
            if self
                .tx
                .send(t.dst_ip, t.src_port, t.dst_port, t.payload)
                .is_err()
            {
                self.io.underlay_send_errors += 1;
            }
        }
        self.out.clear();
        self.dirty = true;
        if imds_in {
            // Answers now, not at the next wake-up (this flushes once more, without requests).
            self.imds_poll(Instant::now());
        }
    }

    fn stats(&self) -> Stats {
        Stats {
            engine: self.engine.counters().clone(),
            io: self.io.clone(),
            ports: self.ports.len(),
            flow_logs: self.engine.flow_log_stats(),
            imds: self.imds.counters(),
        }
    }

    fn publish(&mut self) {
        let stats = self.stats();
        if let Ok(mut s) = self.shared.stats.lock() {
            *s = stats;
        }
        self.last_publish = Instant::now();
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_waits_until_the_engines_timer_at_most_max_wait() {
        let now = Instant::now();
        assert_eq!(wait_ms(None, now), 100);
        assert_eq!(wait_ms(Some(now + Duration::from_secs(5)), now), 100);
        assert_eq!(wait_ms(Some(now + Duration::from_millis(42)), now), 42);
        assert_eq!(wait_ms(Some(now + Duration::from_micros(300)), now), 1);
        // Due or overdue: do not sleep.
        assert_eq!(wait_ms(Some(now), now), 0);
        assert_eq!(wait_ms(Some(now), now + Duration::from_secs(1)), 0);
    }
}
