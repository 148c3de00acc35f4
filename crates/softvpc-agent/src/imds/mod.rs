//! The instance metadata service at 169.254.169.254 (issue 11), served by the host's router.
//!
//! The engine takes TCP to 169.254.169.254:80 off each port (`gateway::imds`) and the data-path
//! thread hands those IPv4 packets here with the port they came from. [`Server`] keeps one
//! small TCP/IP stack per port (smoltcp, medium IP, the address 169.254.169.254), so
//! connections of different instances never share state even when their addresses are equal
//! (two VPCs) and the instance a request comes from is the port's ENI's, never something the
//! packet says. Each request is answered by [`http::answer`] from the instance's
//! [`content::InstanceView`] (built from the mapping records the agent holds); the stack's
//! packets go back through `Engine::handle_imds_reply`, which frames them to that port only.
//! A token's PUT response leaves with the IP TTL set to the instance's
//! `HttpPutResponseHopLimit`, so a token cannot be fetched from further away (a container
//! behind the instance) than the hop limit allows.

pub mod content;
pub mod http;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use softvpc_engine::PortId;

pub use content::{view_of, ImdsView, InstanceView};
pub use http::TokenKey;

/// Ports with a stack at most (a packet for one more is dropped, counted).
const MAX_STACKS: usize = 4096;
/// Connections per port at most.
const MAX_SOCKETS: usize = 32;
/// Listening sockets kept ready per port.
const SPARE_LISTENERS: usize = 2;
/// Packets queued for one stack between polls at most.
const MAX_QUEUED: usize = 256;
/// Requests on one connection before it is closed.
const MAX_REQUESTS_PER_CONNECTION: u32 = 100;
/// A connection idle this long is closed.
const IDLE_CONNECTION: Duration = Duration::from_secs(60);
/// A stack without connections idle this long is removed.
const IDLE_STACK: Duration = Duration::from_secs(120);
/// The instances' MTU (AWS's jumbo frames; the client's MSS bounds what is sent).
const MTU: usize = 9001;
const RX_BUFFER: usize = 16 * 1024;
const TX_BUFFER: usize = 64 * 1024;
/// The largest answer: 16 KiB of user data and the head (every other item is smaller).
const MAX_ANSWER: usize = 20 * 1024;

/// The service's counters (`softvpc_imds_*` in `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImdsCounters {
    /// Answers by status code.
    pub responses: std::collections::BTreeMap<u16, u64>,
    /// Packets dropped: no room for another stack or the port's queue full.
    pub packets_dropped: u64,
    /// Stacks (ports with metadata connections) now.
    pub stacks: u64,
}

/// The packets a stack reads and writes.
#[derive(Default)]
struct Queue {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Queue {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(
        &mut self,
        _: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let p = self.rx.pop_front()?;
        Some((Rx(p), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = MTU;
        c
    }
}

/// One connection's unread bytes.
#[derive(Default)]
struct Conn {
    buf: Vec<u8>,
    /// Body bytes still to skip.
    skip: usize,
    served: u32,
    last: Option<Instant>,
}

/// One port's stack.
struct Stack {
    iface: Interface,
    dev: Queue,
    sockets: SocketSet<'static>,
    conns: Vec<(SocketHandle, Conn)>,
    last_used: Instant,
}

fn stamp(epoch: Instant, now: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(now.saturating_duration_since(epoch).as_micros() as i64)
}

impl Stack {
    fn new(epoch: Instant, now: Instant) -> Stack {
        let mut dev = Queue::default();
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ip),
            &mut dev,
            stamp(epoch, now),
        );
        let [a, b, c, d] = softvpc_engine::layers::gateway::imds::ADDR.octets();
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::v4(a, b, c, d), 32));
        });
        // Every instance address is reached "via" a gateway that medium IP never resolves.
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(169, 254, 169, 253));
        let mut s = Stack {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            conns: Vec::new(),
            last_used: now,
        };
        s.refill();
        s
    }

    fn listener() -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
        );
        let _ = s.listen(softvpc_engine::layers::gateway::imds::PORT);
        s.set_timeout(Some(smoltcp::time::Duration::from_secs(30)));
        s
    }

    /// Keeps [`SPARE_LISTENERS`] sockets listening; closed sockets listen again or go.
    fn refill(&mut self) {
        let mut listening = 0;
        let mut keep = Vec::with_capacity(self.conns.len());
        for (h, mut conn) in std::mem::take(&mut self.conns) {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            match s.state() {
                tcp::State::Listen => listening += 1,
                tcp::State::Closed if listening < SPARE_LISTENERS => {
                    let _ = s.listen(softvpc_engine::layers::gateway::imds::PORT);
                    s.set_hop_limit(None);
                    conn = Conn::default();
                    listening += 1;
                }
                tcp::State::Closed => {
                    self.sockets.remove(h);
                    continue;
                }
                _ => {}
            }
            keep.push((h, conn));
        }
        self.conns = keep;
        while listening < SPARE_LISTENERS && self.conns.len() < MAX_SOCKETS {
            let h = self.sockets.add(Self::listener());
            self.conns.push((h, Conn::default()));
            listening += 1;
        }
    }

    fn busy(&self) -> bool {
        self.conns.iter().any(|(h, _)| {
            !matches!(
                self.sockets.get::<tcp::Socket>(*h).state(),
                tcp::State::Listen | tcp::State::Closed
            )
        })
    }
}

/// The per-port stacks and the token key. Owned by the data-path thread; sans-clock (every
/// call gets `now`).
pub struct Server {
    key: TokenKey,
    epoch: Instant,
    stacks: HashMap<PortId, Stack>,
    counters: ImdsCounters,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("stacks", &self.stacks.len())
            .field("counters", &self.counters)
            .finish()
    }
}

/// What [`Server::poll`] needs from the outside world for one port.
pub trait Context {
    /// The instance behind `port` (None: none with metadata, answered 404).
    fn instance(&self, port: PortId) -> Option<Arc<InstanceView>>;
    /// Seconds since the Unix epoch (token expiry).
    fn wall_secs(&self) -> u64;
}

impl Server {
    /// A server signing tokens with `key`.
    pub fn new(key: TokenKey, now: Instant) -> Server {
        Server {
            key,
            epoch: now,
            stacks: HashMap::new(),
            counters: ImdsCounters::default(),
        }
    }

    /// Its counters.
    pub fn counters(&self) -> ImdsCounters {
        let mut c = self.counters.clone();
        c.stacks = self.stacks.len() as u64;
        c
    }

    /// Queues `packet` (IPv4, from the engine) from `port`.
    pub fn receive(&mut self, now: Instant, port: PortId, packet: &[u8]) {
        if !self.stacks.contains_key(&port) && self.stacks.len() >= MAX_STACKS {
            self.counters.packets_dropped += 1;
            return;
        }
        let epoch = self.epoch;
        let stack = self
            .stacks
            .entry(port)
            .or_insert_with(|| Stack::new(epoch, now));
        if stack.dev.rx.len() >= MAX_QUEUED {
            self.counters.packets_dropped += 1;
            return;
        }
        stack.dev.rx.push_back(packet.to_vec());
        stack.last_used = now;
    }

    /// Forgets `port`'s stack (the port is gone).
    pub fn remove_port(&mut self, port: PortId) {
        self.stacks.remove(&port);
    }

    /// When [`poll`](Self::poll) wants to run next (retransmissions, delayed ACKs, timeouts).
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let t = stamp(self.epoch, now);
        self.stacks
            .values_mut()
            .filter_map(|s| s.iface.poll_delay(t, &s.sockets))
            .min()
            .map(|d| now + Duration::from_micros(d.total_micros()))
            .or_else(|| (!self.stacks.is_empty()).then(|| now + Duration::from_secs(1)))
    }

    /// Runs every stack: reads requests, answers them, and hands each packet to send to
    /// `emit(port, packet)`.
    pub fn poll(&mut self, now: Instant, cx: &impl Context, mut emit: impl FnMut(PortId, &[u8])) {
        let t = stamp(self.epoch, now);
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let key = &self.key;
        let counters = &mut self.counters;
        for (port, stack) in self.stacks.iter_mut() {
            stack.iface.poll(t, &mut stack.dev, &mut stack.sockets);
            let mut instance: Option<Option<Arc<InstanceView>>> = None;
            for (h, conn) in stack.conns.iter_mut() {
                let s = stack.sockets.get_mut::<tcp::Socket>(*h);
                serve(s, conn, now, &date, key, counters, || {
                    instance
                        .get_or_insert_with(|| cx.instance(*port))
                        .clone()
                        .map(|v| (v, cx.wall_secs()))
                });
            }
            stack.refill();
            stack.iface.poll(t, &mut stack.dev, &mut stack.sockets);
            for p in stack.dev.tx.drain(..) {
                emit(*port, &p);
            }
        }
        self.stacks
            .retain(|_, s| s.busy() || now.duration_since(s.last_used) < IDLE_STACK);
    }
}

/// Reads and answers what one connection sent.
fn serve(
    s: &mut tcp::Socket<'_>,
    conn: &mut Conn,
    now: Instant,
    date: &str,
    key: &TokenKey,
    counters: &mut ImdsCounters,
    mut instance: impl FnMut() -> Option<(Arc<InstanceView>, u64)>,
) {
    while s.can_recv() && conn.buf.len() < http::MAX_HEAD + http::MAX_BODY {
        let room = http::MAX_HEAD + http::MAX_BODY - conn.buf.len();
        let mut chunk = vec![0u8; room.min(4096)];
        match s.recv_slice(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                conn.buf.extend_from_slice(&chunk[..n]);
                conn.last = Some(now);
            }
        }
    }
    loop {
        if conn.skip > 0 {
            let n = conn.skip.min(conn.buf.len());
            conn.buf.drain(..n);
            conn.skip -= n;
            if conn.skip > 0 {
                break;
            }
        }
        if conn.buf.is_empty() || !s.may_send() {
            break;
        }
        // The next answer waits until any answer fits the send buffer: a client that pipelines
        // requests without reading the answers is slowed down, not cut off.
        if s.send_capacity() - s.send_queue() < MAX_ANSWER {
            break;
        }
        let (response, close) = match http::read_request(&conn.buf) {
            Ok(None) => break,
            Err(http::BadRequest) => {
                conn.buf.clear();
                (http::error(400), true)
            }
            Ok(Some((req, n))) => {
                conn.buf.drain(..n);
                conn.skip = req.body_len;
                conn.served += 1;
                let r = match instance() {
                    Some((v, wall)) => {
                        let r = http::answer(&req, &v, key, wall);
                        if r.hop_limited {
                            s.set_hop_limit(Some(v.meta.hop_limit));
                        }
                        r
                    }
                    None => http::error(404),
                };
                (
                    r,
                    !req.keep_alive || conn.served >= MAX_REQUESTS_PER_CONNECTION,
                )
            }
        };
        *counters.responses.entry(response.status).or_default() += 1;
        let bytes = response.to_bytes(close, date);
        if s.send_slice(&bytes).map_or(true, |n| n < bytes.len()) {
            // The answer does not fit the send buffer: the connection cannot go on.
            s.abort();
            return;
        }
        if close {
            s.close();
            conn.buf.clear();
            return;
        }
    }
    match s.state() {
        // The client is done: close our side (no TIME_WAIT here, the client has it).
        tcp::State::CloseWait => s.close(),
        tcp::State::Established
            if conn
                .last
                .is_some_and(|l| now.duration_since(l) >= IDLE_CONNECTION) =>
        {
            s.close()
        }
        tcp::State::Established if conn.last.is_none() => conn.last = Some(now),
        _ => {}
    }
}
