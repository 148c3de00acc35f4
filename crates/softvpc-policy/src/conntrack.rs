//! Connection tracking with AWS's semantics, per ENI, bounded, driven by the caller's `now`.
//!
//! One [`ConnTrack`] per ENI. A connection is keyed by its 5-tuple as seen from the ENI (local
//! address and port, remote address and port, protocol), so a packet and its reply find the
//! same entry whichever way they cross. What is tracked (AWS, "Security group connection
//! tracking"): TCP and UDP with ports, ICMP echo by identifier, other protocols by addresses and
//! protocol number only.
//!
//! Idle timeouts ([`Timeouts`]): TCP established 432,000 s, UDP 30 s until the flow has seen
//! more than one request-response transaction and then 180 s (a "stream"), ICMP and other
//! protocols 600 s. The first three are settable per ENI within AWS's bounds
//! ([`ConnectionTrackingSpec`]). AWS publishes no timeout for TCP's other states; these use
//! Linux nf_conntrack's (handshake and closing 120 s, closed by RST 10 s).
//!
//! Bounded: at most `limit` entries. Past it a new connection is refused and counted
//! ([`Stats::allowance_exceeded`], ENA's `conntrack_allowance_exceeded`); memory never grows
//! beyond the limit. Expired entries are dropped when a packet meets them, by [`ConnTrack::expire`]
//! (the engine's timer entry point calls it), and by one sweep when a full table is asked for a
//! new entry (at most one sweep per second of `now`, so a flood at a full table costs no scans).
//!
//! There is no clock: every call takes `now`. Time is kept as milliseconds since the `now` the
//! table was made with; an earlier `now` counts as that instant.
//!
//! Each entry carries a value of the caller's (the decision it cached: the rule that allowed
//! it, the composed flow result) and the [`Generation`] that value was decided under. Per AWS, a
//! rule change does not cut a tracked connection, so entries are not dropped when the
//! generation moves; the caller recomputes the cached value ([`Entry::redecide`]).

use core::net::Ipv4Addr;
use std::collections::HashMap;
use std::time::Instant;

use crate::packet::{Direction, Packet, L4, TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, UDP};
use crate::Generation;

/// Per-ENI idle timeouts in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP established (AWS `TcpEstablishedTimeout`, default 432,000).
    pub tcp_established: u32,
    /// TCP during the handshake (SYN sent or received).
    pub tcp_handshake: u32,
    /// TCP after the first FIN, and after both (time-wait).
    pub tcp_closing: u32,
    /// TCP after a RST.
    pub tcp_closed: u32,
    /// UDP until it is a stream (AWS `UdpTimeout`, default 30).
    pub udp: u32,
    /// UDP with more than one request-response transaction (AWS `UdpStreamTimeout`, default 180).
    pub udp_stream: u32,
    /// ICMP and every other protocol (600).
    pub other: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: 432_000,
            tcp_handshake: 120,
            tcp_closing: 120,
            tcp_closed: 10,
            udp: 30,
            udp_stream: 180,
            other: 600,
        }
    }
}

/// AWS's `ConnectionTrackingSpecificationRequest`: the three idle timeouts an ENI may set, in
/// seconds; `None` keeps the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionTrackingSpec {
    /// `TcpEstablishedTimeout`, 60..=432000.
    pub tcp_established_timeout: Option<u32>,
    /// `UdpStreamTimeout`, 60..=180.
    pub udp_stream_timeout: Option<u32>,
    /// `UdpTimeout`, 30..=60.
    pub udp_timeout: Option<u32>,
}

/// A timeout outside AWS's bounds: the parameter's name and its allowed range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// AWS's parameter name (`TcpEstablishedTimeout`, ...).
    pub parameter: &'static str,
    /// The value given.
    pub value: u32,
    /// Smallest allowed.
    pub min: u32,
    /// Largest allowed.
    pub max: u32,
}

impl core::fmt::Display for SpecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} must be between {} and {} seconds, got {}",
            self.parameter, self.min, self.max, self.value
        )
    }
}

impl std::error::Error for SpecError {}

impl Timeouts {
    /// The defaults with `spec` applied, or the first value outside AWS's bounds.
    pub fn from_spec(spec: &ConnectionTrackingSpec) -> Result<Timeouts, SpecError> {
        fn check(
            v: Option<u32>,
            p: &'static str,
            min: u32,
            max: u32,
            d: u32,
        ) -> Result<u32, SpecError> {
            match v {
                None => Ok(d),
                Some(value) if (min..=max).contains(&value) => Ok(value),
                Some(value) => Err(SpecError {
                    parameter: p,
                    value,
                    min,
                    max,
                }),
            }
        }
        let d = Timeouts::default();
        Ok(Timeouts {
            tcp_established: check(
                spec.tcp_established_timeout,
                "TcpEstablishedTimeout",
                60,
                432_000,
                d.tcp_established,
            )?,
            udp_stream: check(
                spec.udp_stream_timeout,
                "UdpStreamTimeout",
                60,
                180,
                d.udp_stream,
            )?,
            udp: check(spec.udp_timeout, "UdpTimeout", 30, 60, d.udp)?,
            ..d
        })
    }
}

/// A TCP connection's state, as far as the idle timeout needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// The opener's SYN seen.
    SynSent,
    /// The answer's SYN+ACK seen.
    SynReceived,
    /// Handshake complete (or picked up mid-stream).
    Established,
    /// One side sent FIN.
    Closing,
    /// Both sides sent FIN.
    TimeWait,
    /// A RST was seen.
    Closed,
}

/// What an entry knows about its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoState {
    /// TCP.
    Tcp(TcpState),
    /// UDP: request-response transactions completed so far (saturating), and whether the last
    /// packet came from the opener (a reply then completes a transaction).
    Udp {
        /// Completed transactions (a reply after a request), up to 255.
        transactions: u8,
        /// The last packet was the opener's.
        awaiting_reply: bool,
    },
    /// ICMP and other protocols.
    Other,
}

/// A connection as seen from the ENI. Both directions of a flow map to the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    /// The ENI's side (source of egress, destination of ingress).
    pub local: Ipv4Addr,
    /// The far side.
    pub remote: Ipv4Addr,
    /// Local port (the echo identifier for ICMP echo; 0 without ports).
    pub local_port: u16,
    /// Remote port (the echo identifier for ICMP echo; 0 without ports).
    pub remote_port: u16,
    /// IP protocol.
    pub proto: u8,
}

impl ConnKey {
    /// The key of `pkt` crossing the ENI in direction `dir`.
    pub fn new(pkt: &Packet, dir: Direction) -> ConnKey {
        let (local, remote) = match dir {
            Direction::Egress => (pkt.src, pkt.dst),
            Direction::Ingress => (pkt.dst, pkt.src),
        };
        let (local_port, remote_port) = match (pkt.l4, dir) {
            (L4::Ports { src, dst }, Direction::Egress) => (src, dst),
            (L4::Ports { src, dst }, Direction::Ingress) => (dst, src),
            // Echo request and reply share the identifier; other ICMP has no identity of its
            // own beyond the addresses (errors are matched through their quote).
            (L4::Icmp { ident, .. }, _) if pkt.is_echo() => (ident, ident),
            _ => (0, 0),
        };
        ConnKey {
            local,
            remote,
            local_port,
            remote_port,
            proto: pkt.proto,
        }
    }
}

/// One tracked connection.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    value: T,
    generation: Generation,
    origin: Direction,
    state: ProtoState,
    last_seen_ms: u64,
}

impl<T> Entry<T> {
    /// The caller's cached decision.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The generation the value was decided under.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Replaces the cached decision (after a policy change), keeping the connection's state.
    pub fn redecide(&mut self, generation: Generation, value: T) {
        self.generation = generation;
        self.value = value;
    }

    /// The direction of the packet that opened the connection.
    pub fn origin(&self) -> Direction {
        self.origin
    }

    /// Protocol state.
    pub fn state(&self) -> ProtoState {
        self.state
    }

    fn timeout_ms(&self, t: &Timeouts) -> u64 {
        let s = match self.state {
            ProtoState::Tcp(TcpState::Established) => t.tcp_established,
            ProtoState::Tcp(TcpState::SynSent | TcpState::SynReceived) => t.tcp_handshake,
            ProtoState::Tcp(TcpState::Closing | TcpState::TimeWait) => t.tcp_closing,
            ProtoState::Tcp(TcpState::Closed) => t.tcp_closed,
            ProtoState::Udp { transactions, .. } if transactions > 1 => t.udp_stream,
            ProtoState::Udp { .. } => t.udp,
            ProtoState::Other => t.other,
        };
        u64::from(s) * 1000
    }

    fn expired(&self, now_ms: u64, t: &Timeouts) -> bool {
        now_ms >= self.last_seen_ms.saturating_add(self.timeout_ms(t))
    }

    /// Follows one packet: `reply` when it goes against the opener's direction.
    fn advance(&mut self, flags: u8, reply: bool) {
        self.state = match self.state {
            ProtoState::Tcp(s) => ProtoState::Tcp(tcp_next(s, flags, reply)),
            ProtoState::Udp {
                transactions,
                awaiting_reply,
            } => ProtoState::Udp {
                transactions: if reply && awaiting_reply {
                    transactions.saturating_add(1)
                } else {
                    transactions
                },
                awaiting_reply: !reply,
            },
            ProtoState::Other => ProtoState::Other,
        };
    }
}

fn tcp_first(flags: u8) -> TcpState {
    if flags & TCP_RST != 0 {
        TcpState::Closed
    } else if flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        TcpState::SynSent
    } else {
        // Picked up mid-stream (after a restart, or an expired entry of a live connection):
        // AWS's security groups do not require a SYN.
        TcpState::Established
    }
}

fn tcp_next(s: TcpState, flags: u8, reply: bool) -> TcpState {
    use TcpState::*;
    if flags & TCP_RST != 0 {
        return Closed;
    }
    let syn = flags & TCP_SYN != 0;
    let ack = flags & TCP_ACK != 0;
    let fin = flags & TCP_FIN != 0;
    match s {
        // A new SYN from the opener reuses a finished connection's 5-tuple.
        TimeWait | Closed if syn && !ack && !reply => SynSent,
        SynSent if syn && ack && reply => SynReceived,
        SynReceived if ack && !syn && !reply => Established,
        SynSent | SynReceived if fin => Closing,
        Established if fin => Closing,
        Closing if fin => TimeWait,
        other => other,
    }
}

/// What a lookup found.
#[derive(Debug)]
pub struct Hit<'a, T> {
    /// The entry (already advanced by the packet).
    pub entry: &'a mut Entry<T>,
    /// The packet goes against the opener's direction.
    pub reply: bool,
}

/// The table is at its limit: the new connection is refused (and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Counters of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Entries now.
    pub tracked: usize,
    /// Entries that may still be added (ENA's `conntrack_allowance_available`).
    pub allowance_available: usize,
    /// New connections refused at the limit (ENA's `conntrack_allowance_exceeded`).
    pub allowance_exceeded: u64,
    /// Connections added (a replaced entry is not counted again).
    pub inserted: u64,
    /// Entries removed after their idle timeout.
    pub expired: u64,
}

type Map<T> = HashMap<ConnKey, Entry<T>, foldhash::fast::FixedState>;

/// One ENI's connection-tracking table. See the [module docs](self).
#[derive(Debug)]
pub struct ConnTrack<T> {
    map: Map<T>,
    limit: usize,
    timeouts: Timeouts,
    epoch: Instant,
    last_full_sweep_ms: Option<u64>,
    stats: Stats,
}

/// Default per-ENI limit: 65,536 connections (a few MB per busy ENI; a 2-core host sets up far
/// fewer new connections per idle timeout than that per ENI).
pub const DEFAULT_LIMIT: usize = 65_536;

impl<T> ConnTrack<T> {
    /// An empty table of at most `limit` connections; `now` is its time origin.
    pub fn new(limit: usize, timeouts: Timeouts, now: Instant) -> ConnTrack<T> {
        ConnTrack {
            map: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x5eed_c0de)),
            limit,
            timeouts,
            epoch: now,
            last_full_sweep_ms: None,
            stats: Stats::default(),
        }
    }

    /// Sets the ENI's timeouts; they apply to every entry from the next packet or sweep on.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// The ENI's timeouts.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Sets the limit. Entries above a lowered limit stay until they expire; no new ones are
    /// added until the table is below it.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Finds the connection `pkt` belongs to, advances its state and idle timer. An expired
    /// entry is removed and not found.
    pub fn lookup(&mut self, pkt: &Packet, dir: Direction, now: Instant) -> Option<Hit<'_, T>> {
        let key = ConnKey::new(pkt, dir);
        let now_ms = self.ms(now);
        let t = self.timeouts;
        let expired = self.map.get(&key)?.expired(now_ms, &t);
        if expired {
            self.map.remove(&key);
            self.stats.expired += 1;
            return None;
        }
        let entry = self.map.get_mut(&key)?;
        let reply = dir != entry.origin;
        entry.advance(pkt.tcp_flags, reply);
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        Some(Hit { entry, reply })
    }

    /// Finds the connection an ICMP error belongs to. `quoted` is the packet the error quotes
    /// ([`crate::packet::parse_icmp_quote`]); the error travels in `dir`, so the quoted packet
    /// went the other way. The entry's state and timer are left alone (an error proves nothing
    /// about the connection being alive).
    pub fn lookup_icmp_error(
        &self,
        quoted: &Packet,
        dir: Direction,
        now: Instant,
    ) -> Option<&Entry<T>> {
        let key = ConnKey::new(quoted, dir.reverse());
        let entry = self.map.get(&key)?;
        (!entry.expired(self.ms(now), &self.timeouts)).then_some(entry)
    }

    /// Looks a connection up without touching it.
    pub fn peek(&self, pkt: &Packet, dir: Direction, now: Instant) -> Option<&Entry<T>> {
        let entry = self.map.get(&ConnKey::new(pkt, dir))?;
        (!entry.expired(self.ms(now), &self.timeouts)).then_some(entry)
    }

    /// Tracks a new connection opened by `pkt` in direction `dir`, with the caller's decision
    /// `value` made under `generation`. An existing entry for the key is replaced. At the limit
    /// (after sweeping expired entries, at most once a second) the connection is refused and
    /// counted.
    pub fn insert(
        &mut self,
        pkt: &Packet,
        dir: Direction,
        now: Instant,
        generation: Generation,
        value: T,
    ) -> Result<&mut Entry<T>, Full> {
        let key = ConnKey::new(pkt, dir);
        let now_ms = self.ms(now);
        if self.map.len() >= self.limit && !self.map.contains_key(&key) {
            let may_sweep = self
                .last_full_sweep_ms
                .is_none_or(|last| now_ms >= last.saturating_add(1000));
            if may_sweep {
                self.last_full_sweep_ms = Some(now_ms);
                self.sweep(now_ms);
            }
            if self.map.len() >= self.limit {
                self.stats.allowance_exceeded += 1;
                return Err(Full);
            }
        }
        let state = match pkt.proto {
            TCP => ProtoState::Tcp(tcp_first(pkt.tcp_flags)),
            UDP if matches!(pkt.l4, L4::Ports { .. }) => ProtoState::Udp {
                transactions: 0,
                awaiting_reply: true,
            },
            _ => ProtoState::Other,
        };
        let entry = Entry {
            value,
            generation,
            origin: dir,
            state,
            last_seen_ms: now_ms,
        };
        Ok(match self.map.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let slot = o.into_mut();
                *slot = entry;
                slot
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                self.stats.inserted += 1;
                v.insert(entry)
            }
        })
    }

    /// Removes every connection idle past its timeout; returns how many. The engine's timer entry
    /// point calls this (a full pass over the table).
    pub fn expire(&mut self, now: Instant) -> usize {
        let now_ms = self.ms(now);
        self.sweep(now_ms)
    }

    fn sweep(&mut self, now_ms: u64) -> usize {
        let t = self.timeouts;
        let before = self.map.len();
        self.map.retain(|_, e| !e.expired(now_ms, &t));
        let n = before - self.map.len();
        self.stats.expired += n as u64;
        n
    }

    /// Removes every connection (e.g. the ENI left the host).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// The table's counters.
    pub fn stats(&self) -> Stats {
        Stats {
            tracked: self.map.len(),
            allowance_available: self.limit.saturating_sub(self.map.len()),
            ..self.stats
        }
    }

    /// Number of entries (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no connection is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry with its key (for flow logs and `softvpc trace`).
    pub fn iter(&self) -> impl Iterator<Item = (&ConnKey, &Entry<T>)> {
        self.map.iter()
    }
}

/// Bytes one tracked connection costs in the table, key and entry together, for a cached value
/// of type `T` (the hash table adds one control byte per slot and keeps up to 1/8 free).
pub fn bytes_per_entry<T>() -> usize {
    core::mem::size_of::<(ConnKey, Entry<T>)>()
}

#[cfg(test)]
mod tests;
