//! NAT gateways: port address translation for instances of private subnets, run on the host
//! where the gateway's ENI is placed (see ARCHITECTURE.md, "NAT gateways").
//!
//! A NAT gateway is an ENI of its public subnet (its private address, source/destination check
//! off, no security group) with an Elastic IP. A private subnet's route to `nat-...` sends the
//! packet to that ENI like any routed packet (over VXLAN when the gateway is on another host);
//! the engine of the gateway's host takes what is delivered to the gateway's port and:
//!
//! - **out**: translates the source to the gateway's private address and a port of its own
//!   ([`NatTable`]: ports 1024-65535, chosen per destination, so one port serves many
//!   destinations; at most [`DESTINATION_LIMIT`] translations to one destination address, port
//!   and protocol, past it `ErrorPortAllocation` and the packet is dropped), then sends it on
//!   as the gateway's ENI sends it: its subnet's ACL and route table (to the internet gateway,
//!   whose 1:1 NAT gives the Elastic IP at the host's edge);
//! - **in**: what the edge delivers to the gateway (the Elastic IP already translated to the
//!   private address, the gateway subnet's ACL passed) must match a translation
//!   (`nat_no_translation` otherwise: nothing unsolicited gets in); its destination goes back to
//!   the instance's address and port (an ICMP error's quoted packet too), and the gateway's ENI
//!   sends it into the VPC (its subnet's ACL and routes; the instance's subnet ACL and groups on
//!   the instance's host, where the instance's tracked connection lets the reply in).
//!
//! TCP, UDP and ICMP echo (the identifier is translated as a port); an ICMP error from the
//! internet about a translated flow is translated back. A packet larger than the internet
//! gateway's 1500 bytes with DF set is answered by the gateway with ICMP "fragmentation
//! needed" (next-hop MTU 1500), so path MTU discovery works through it. Translations idle for
//! [`IDLE_TIMEOUT`] (AWS: 350 s) expire; a TCP segment of a connection the gateway holds no
//! translation for (it expired idle) is answered with an RST to the instance, never a FIN
//! (AWS: "returns an RST packet to any resources behind the NAT gateway that attempt to
//! continue the connection"); only a SYN opens a TCP translation. A TCP connection that ends
//! frees its port sooner, as Linux's conntrack does: [`RESET_TIMEOUT`] after an RST passed
//! either way, [`CLOSED_TIMEOUT`] after a FIN passed each way (the limit is on *simultaneous*
//! connections: without this a client opening and closing 160 connections a second to one
//! destination would hold 55,000 ports within six minutes and be refused, though it never
//! had more than a few open). A SYN on a closing translation (the same ports reused) makes it
//! a live connection again.
//!
//! Fragmented UDP is forwarded, TCP and ICMP fragments are dropped (AWS's NAT gateway does the
//! same). Only the first fragment carries the ports: it is translated like a whole datagram
//! and remembered by its IP identification; the later fragments of that datagram (same
//! protocol, addresses and identification) get the same addresses, out with the gateway's own
//! identification (two instances may use one identification towards one destination). No
//! fragment is held back or reassembled: the state per datagram is a few bytes, at most
//! [`FRAGMENT_LIMIT`] datagrams each way, forgotten once every byte passed or after
//! [`FRAGMENT_TIMEOUT`]. A later fragment whose first was not seen (reordered, or its datagram
//! forgotten), and any fragment past the limit, is dropped as `nat_fragment`.
//!
//! The table is sans-IO: every call takes `now`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::layers::nat;
use crate::DropReason;

/// The first source port a NAT gateway uses (AWS: 1024-65535).
pub const PORT_FIRST: u16 = 1024;
/// The last source port.
pub const PORT_LAST: u16 = 65535;
/// Simultaneous translations to one destination (address, port, protocol) per public address
/// (AWS: 55,000).
pub const DESTINATION_LIMIT: u32 = 55_000;
/// A translation idle this long expires (AWS: 350 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(350);
/// A TCP translation lives this long after an RST passed either way (Linux conntrack's
/// `tcp_timeout_close`): stray segments still find it, then its port is free.
pub const RESET_TIMEOUT: Duration = Duration::from_secs(10);
/// A TCP translation lives this long after a FIN passed each way (conntrack's
/// `tcp_timeout_time_wait`): the last ACK and retransmitted FINs still find it.
pub const CLOSED_TIMEOUT: Duration = Duration::from_secs(120);
/// Fragmented datagrams followed at once, each way (the first fragment seen, the rest not yet).
pub const FRAGMENT_LIMIT: usize = 1024;
/// A fragmented datagram not complete after this long is forgotten (Linux's `ipfrag_time`).
pub const FRAGMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the inside of a translation is: the instance's flow as it sent it. For ICMP echo the
/// identifier stands in the source port and the destination port is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Inside {
    /// IP protocol (6, 17, 1).
    pub proto: u8,
    /// The instance's address.
    pub src: Ipv4Addr,
    /// Its source port (or ICMP echo identifier).
    pub src_port: u16,
    /// The destination on the internet.
    pub dst: Ipv4Addr,
    /// The destination port (0 for ICMP).
    pub dst_port: u16,
}

/// The outside key of a translation: protocol, remote address and port, the gateway's port.
type Outside = (u8, u32, u16, u16);
/// One destination: protocol, address, port.
type Dest = (u8, u32, u16);
/// A fragmented datagram as its fragments arrive: protocol, source, destination, IP
/// identification.
type FragKey = (u8, u32, u32, u16);

/// What the later fragments of a datagram get, and how much of it passed.
#[derive(Debug, Clone, Copy)]
struct Frag {
    /// Out: the source address; in: the instance's address (the destination).
    addr: Ipv4Addr,
    /// The identification the fragments leave with.
    id: u16,
    /// The instance's flow the datagram belongs to.
    inside: Inside,
    /// Payload bytes passed, and the datagram's payload length once its last fragment passed.
    seen: u32,
    total: Option<u32>,
    first_seen: Instant,
}

/// The datagrams fragmented one way, bounded by [`FRAGMENT_LIMIT`].
#[derive(Debug, Default)]
struct Frags(HashMap<FragKey, Frag>);

impl Frags {
    /// Starts following a datagram whose first fragment (`h`) passes now: its later
    /// fragments get `addr` and identification `id`.
    fn first(
        &mut self,
        now: Instant,
        h: &Header,
        (addr, id): (Ipv4Addr, u16),
        inside: Inside,
    ) -> Result<(), DropReason> {
        let key = h.frag_key();
        if self.0.len() >= FRAGMENT_LIMIT && !self.0.contains_key(&key) {
            self.expire(now);
            if self.0.len() >= FRAGMENT_LIMIT {
                return Err(DropReason::NatFragment);
            }
        }
        let frag = Frag {
            addr,
            id,
            inside,
            seen: 0,
            total: None,
            first_seen: now,
        };
        self.0.insert(key, frag);
        self.passed(key, 0, h.payload_len, true);
        Ok(())
    }

    /// Counts a fragment of `len` payload bytes at `offset` bytes into its datagram, `more`
    /// when not its last; the datagram is forgotten once every byte passed.
    fn passed(&mut self, key: FragKey, offset: u32, len: u32, more: bool) {
        let Some(f) = self.0.get_mut(&key) else {
            return;
        };
        f.seen = f.seen.saturating_add(len);
        if !more {
            f.total = Some(offset + len);
        }
        if f.total.is_some_and(|t| f.seen >= t) {
            self.0.remove(&key);
        }
    }

    /// The header of the packet `l3` to translate and, for a later fragment, its datagram
    /// (counted as passed: the caller rewrites it and is done). Fragments other than UDP's,
    /// and a later fragment whose first did not pass or is forgotten: `nat_fragment`.
    fn read(&mut self, now: Instant, l3: &[u8]) -> Result<(Header, Option<Frag>), DropReason> {
        let h = Header::read(l3).ok_or(DropReason::Malformed)?;
        if h.fragment() && h.proto != 17 {
            return Err(DropReason::NatFragment);
        }
        if h.offset == 0 {
            return Ok((h, None));
        }
        let key = h.frag_key();
        let f = *self.0.get(&key).ok_or(DropReason::NatFragment)?;
        if now.saturating_duration_since(f.first_seen) >= FRAGMENT_TIMEOUT {
            return Err(DropReason::NatFragment);
        }
        self.passed(key, h.offset, h.payload_len, h.more);
        Ok((h, Some(f)))
    }

    fn expire(&mut self, now: Instant) {
        self.0
            .retain(|_, f| now.saturating_duration_since(f.first_seen) < FRAGMENT_TIMEOUT);
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    inside: Inside,
    last_used: Instant,
    /// How long it may stay unused: the table's idle timeout, shorter once its TCP connection
    /// ended.
    timeout: Duration,
    /// TCP: a FIN passed out (`FIN_OUT`), in (`FIN_IN`), an RST either way (`RESET`).
    ends: u8,
}

const FIN_OUT: u8 = 1;
const FIN_IN: u8 = 2;
const RESET: u8 = 4;

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_used) >= self.timeout
    }

    /// Whether its TCP connection ended (reset, or closed each way).
    fn ended(&self) -> bool {
        self.ends & RESET != 0 || self.ends & (FIN_OUT | FIN_IN) == FIN_OUT | FIN_IN
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct DestState {
    count: u32,
    next: u16,
}

/// What a NAT gateway did, named after AWS's CloudWatch metrics (`AWS/NATGateway`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatStats {
    /// `ActiveConnectionCount`: translations held now (TCP, UDP and ICMP).
    pub active_connections: u64,
    /// `ConnectionAttemptCount`: new translations asked for.
    pub connection_attempts: u64,
    /// `ErrorPortAllocation`: no source port was free for the destination.
    pub error_port_allocation: u64,
    /// `IdleTimeoutCount`: translations that expired idle.
    pub idle_timeouts: u64,
    /// `PacketsDropCount`: packets the gateway dropped (no port, no translation, untranslatable).
    pub packets_drop: u64,
    /// TCP segments of a connection without a translation (expired idle) answered with an RST.
    pub idle_resets: u64,
    /// `PacketsOutToDestination`.
    pub packets_out_to_destination: u64,
    /// `BytesOutToDestination`.
    pub bytes_out_to_destination: u64,
    /// `PacketsInFromDestination`.
    pub packets_in_from_destination: u64,
    /// `BytesInFromDestination`.
    pub bytes_in_from_destination: u64,
}

/// The limits of a table (AWS's unless a test says otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    /// Translations per destination.
    pub destination_limit: u32,
    /// Idle time after which a translation expires.
    pub idle_timeout: Duration,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            destination_limit: DESTINATION_LIMIT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// One NAT gateway's translation table (for one public address).
#[derive(Debug, Default)]
pub struct NatTable {
    config: NatConfig,
    by_inside: HashMap<Inside, u16>,
    by_outside: HashMap<Outside, Entry>,
    dests: HashMap<Dest, DestState>,
    frags_out: Frags,
    frags_in: Frags,
    next_ip_id: u16,
    stats: NatStats,
}

fn dest_of(i: &Inside) -> Dest {
    (i.proto, u32::from(i.dst), i.dst_port)
}

fn outside_of(i: &Inside, port: u16) -> Outside {
    (i.proto, u32::from(i.dst), i.dst_port, port)
}

impl NatTable {
    /// An empty table with `config`'s limits.
    pub fn new(config: NatConfig) -> NatTable {
        NatTable {
            config,
            ..NatTable::default()
        }
    }

    /// What the gateway did so far.
    pub fn stats(&self) -> NatStats {
        NatStats {
            active_connections: self.by_outside.len() as u64,
            ..self.stats
        }
    }

    /// Translations held now.
    pub fn len(&self) -> usize {
        self.by_outside.len()
    }

    /// Whether it holds no translation.
    pub fn is_empty(&self) -> bool {
        self.by_outside.is_empty()
    }

    /// The gateway's port for the instance's flow `inside`: its translation, refreshed, or a
    /// new one (the lowest free port after the last one given for that destination). `None`
    /// when the destination has [`NatConfig::destination_limit`] translations already
    /// (`ErrorPortAllocation`).
    pub fn outbound(&mut self, now: Instant, inside: Inside) -> Option<u16> {
        self.live(now, inside)
            .or_else(|| self.allocate(now, inside))
    }

    /// The gateway's port of `inside`'s live translation, refreshed (an idle one expires).
    fn live(&mut self, now: Instant, inside: Inside) -> Option<u16> {
        let &port = self.by_inside.get(&inside)?;
        let key = outside_of(&inside, port);
        match self.by_outside.get_mut(&key) {
            Some(e) if !e.expired(now) => {
                e.last_used = now;
                Some(port)
            }
            _ => {
                self.remove(key);
                None
            }
        }
    }

    /// A new translation for `inside`.
    fn allocate(&mut self, now: Instant, inside: Inside) -> Option<u16> {
        self.stats.connection_attempts += 1;
        let dest = dest_of(&inside);
        let d = self.dests.entry(dest).or_default();
        if d.count >= self.config.destination_limit {
            // Idle translations to this destination make room before refusing.
            self.expire_dest(now, dest);
        }
        let d = self.dests.entry(dest).or_default();
        if d.count >= self.config.destination_limit {
            self.stats.error_port_allocation += 1;
            return None;
        }
        let span = u32::from(PORT_LAST - PORT_FIRST) + 1;
        let start = d.next.max(PORT_FIRST);
        let mut port = None;
        for i in 0..span {
            let p = PORT_FIRST + ((u32::from(start - PORT_FIRST) + i) % span) as u16;
            if !self.by_outside.contains_key(&outside_of(&inside, p)) {
                port = Some(p);
                break;
            }
        }
        let Some(port) = port else {
            self.stats.error_port_allocation += 1;
            return None;
        };
        d.count += 1;
        d.next = if port == PORT_LAST {
            PORT_FIRST
        } else {
            port + 1
        };
        self.by_inside.insert(inside, port);
        self.by_outside.insert(
            outside_of(&inside, port),
            Entry {
                inside,
                last_used: now,
                timeout: self.config.idle_timeout,
                ends: 0,
            },
        );
        Some(port)
    }

    /// The instance's flow a packet from `remote`:`remote_port` to the gateway's port `port`
    /// belongs to (refreshed), if a live translation has it.
    pub fn inbound(
        &mut self,
        now: Instant,
        proto: u8,
        remote: Ipv4Addr,
        remote_port: u16,
        port: u16,
    ) -> Option<Inside> {
        let key = (proto, u32::from(remote), remote_port, port);
        let e = self.by_outside.get_mut(&key)?;
        if e.expired(now) {
            self.remove(key);
            return None;
        }
        e.last_used = now;
        Some(e.inside)
    }

    /// The flow a quoted packet (in an ICMP error) belongs to, without refreshing it.
    fn quoted(&self, now: Instant, key: Outside) -> Option<Inside> {
        let e = self.by_outside.get(&key)?;
        (!e.expired(now)).then_some(e.inside)
    }

    /// What a TCP segment with `flags` that passed translation `key` (`out`: from the
    /// instance) says of its connection: an RST or a FIN each way ends it (the translation
    /// then lives [`RESET_TIMEOUT`] or [`CLOSED_TIMEOUT`] unused), a SYN from the instance
    /// starts it again (the same ports reused).
    fn tcp_seen(&mut self, key: Outside, flags: u8, out: bool) {
        let idle = self.config.idle_timeout;
        let Some(e) = self.by_outside.get_mut(&key) else {
            return;
        };
        if out && flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN {
            e.timeout = idle;
            e.ends = 0;
        } else if flags & TCP_RST != 0 {
            e.ends |= RESET;
            e.timeout = e.timeout.min(RESET_TIMEOUT);
        } else if flags & TCP_FIN != 0 {
            e.ends |= if out { FIN_OUT } else { FIN_IN };
            if e.ended() {
                e.timeout = e.timeout.min(CLOSED_TIMEOUT);
            }
        }
    }

    /// Frees translation `key`; counted as an idle timeout unless its connection had ended.
    fn remove(&mut self, key: Outside) {
        if let Some(e) = self.by_outside.remove(&key) {
            let idle = !e.ended();
            self.by_inside.remove(&e.inside);
            let dest = dest_of(&e.inside);
            if let Some(d) = self.dests.get_mut(&dest) {
                d.count = d.count.saturating_sub(1);
                if d.count == 0 {
                    self.dests.remove(&dest);
                }
            }
            if idle {
                self.stats.idle_timeouts += 1;
            }
        }
    }

    fn expire_dest(&mut self, now: Instant, dest: Dest) {
        let gone: Vec<Outside> = self
            .by_outside
            .iter()
            .filter(|(k, e)| (k.0, k.1, k.2) == dest && e.expired(now))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            self.remove(k);
        }
    }

    /// Drops every translation idle for the timeout, and fragmented datagrams not complete in
    /// time (the engine's timer calls it).
    pub fn expire(&mut self, now: Instant) {
        self.frags_out.expire(now);
        self.frags_in.expire(now);
        let gone: Vec<Outside> = self
            .by_outside
            .iter()
            .filter(|(_, e)| e.expired(now))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            self.remove(k);
        }
    }

    /// Translates an IPv4 packet `l3` an instance sent through the gateway: source address
    /// `private` (the gateway's), source port or echo identifier the translation's. Counted.
    /// `nat_connection_reset` for a TCP segment of a connection it holds no translation for:
    /// the caller answers it with [`reset_for`]'s RST.
    pub fn translate_out(
        &mut self,
        now: Instant,
        l3: &mut [u8],
        private: Ipv4Addr,
    ) -> Result<(), DropReason> {
        let r = self.out_inner(now, l3, private);
        match r {
            Ok(()) => {
                self.stats.packets_out_to_destination += 1;
                self.stats.bytes_out_to_destination += l3.len() as u64;
            }
            Err(reason) => {
                self.stats.packets_drop += 1;
                if reason == DropReason::NatConnectionReset {
                    self.stats.idle_resets += 1;
                }
            }
        }
        r
    }

    fn out_inner(
        &mut self,
        now: Instant,
        l3: &mut [u8],
        private: Ipv4Addr,
    ) -> Result<(), DropReason> {
        let (h, later) = self.frags_out.read(now, l3)?;
        if let Some(f) = later {
            nat::set_src(l3, f.addr);
            nat::set_ip_id(l3, f.id);
            return Ok(());
        }
        let (src_port, dst_port, at) = match (h.proto, h.l4) {
            (6 | 17, Some([a, b, c, d, ..])) => {
                (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]), 0)
            }
            // An echo request: its identifier.
            (1, Some([8, 0, _, _, a, b, ..])) => (u16::from_be_bytes([a, b]), 0, 4),
            _ => return Err(DropReason::NatNoTranslation),
        };
        let inside = Inside {
            proto: h.proto,
            src: h.src,
            src_port,
            dst: h.dst,
            dst_port,
        };
        let syn = h.proto == 6 && h.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN;
        let port = match self.live(now, inside) {
            Some(port) => port,
            // Only a SYN opens a TCP connection; a segment continuing one the gateway does
            // not hold (expired idle) gets an RST, an RST nothing.
            None if h.proto == 6 && !syn => {
                return Err(if h.tcp_flags & TCP_RST != 0 {
                    DropReason::NatNoTranslation
                } else {
                    DropReason::NatConnectionReset
                });
            }
            None => self
                .allocate(now, inside)
                .ok_or(DropReason::NatPortAllocation)?,
        };
        if h.proto == 6 {
            self.tcp_seen(outside_of(&inside, port), h.tcp_flags, true);
        }
        if h.more {
            let id = self.next_ip_id;
            self.frags_out.first(now, &h, (private, id), inside)?;
            self.next_ip_id = id.wrapping_add(1);
            nat::set_ip_id(l3, id);
        }
        nat::set_src(l3, private);
        nat::set_l4_u16(l3, at, port);
        Ok(())
    }

    /// Translates an IPv4 packet `l3` from the internet to the gateway's address back to the
    /// instance's flow (an ICMP error: its quoted packet too). `nat_no_translation` when no
    /// live translation has it. Counted.
    pub fn translate_in(&mut self, now: Instant, l3: &mut [u8]) -> Result<Inside, DropReason> {
        let r = self.in_inner(now, l3);
        match r {
            Ok(_) => {
                self.stats.packets_in_from_destination += 1;
                self.stats.bytes_in_from_destination += l3.len() as u64;
            }
            Err(_) => self.stats.packets_drop += 1,
        }
        r
    }

    fn in_inner(&mut self, now: Instant, l3: &mut [u8]) -> Result<Inside, DropReason> {
        let (h, later) = self.frags_in.read(now, l3)?;
        if let Some(f) = later {
            nat::set_dst(l3, f.addr);
            return Ok(f.inside);
        }
        match (h.proto, h.l4) {
            (6 | 17, Some([a, b, c, d, ..])) => {
                let (sport, dport) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
                let inside = self
                    .inbound(now, h.proto, h.src, sport, dport)
                    .ok_or(DropReason::NatNoTranslation)?;
                if h.proto == 6 {
                    self.tcp_seen((6, u32::from(h.src), sport, dport), h.tcp_flags, false);
                }
                if h.more {
                    self.frags_in.first(now, &h, (inside.src, h.id), inside)?;
                }
                nat::set_dst(l3, inside.src);
                nat::set_l4_u16(l3, 2, inside.src_port);
                Ok(inside)
            }
            (1, Some([0, 0, _, _, a, b, ..])) => {
                let id = u16::from_be_bytes([a, b]);
                let inside = self
                    .inbound(now, 1, h.src, 0, id)
                    .ok_or(DropReason::NatNoTranslation)?;
                nat::set_dst(l3, inside.src);
                nat::set_l4_u16(l3, 4, inside.src_port);
                Ok(inside)
            }
            (1, _) if nat::is_icmp_error(l3) => {
                // The quoted packet: what the gateway sent (its address and port as source).
                let q = l3.get(h.ihl + 8..).ok_or(DropReason::Malformed)?;
                let qh = Header::read_quoted(q).ok_or(DropReason::NatNoTranslation)?;
                let key = match (qh.proto, qh.l4) {
                    (6 | 17, Some([a, b, c, d, ..])) => (
                        qh.proto,
                        u32::from(qh.dst),
                        u16::from_be_bytes([c, d]),
                        u16::from_be_bytes([a, b]),
                    ),
                    (1, Some([8, 0, _, _, a, b, ..])) => {
                        (1, u32::from(qh.dst), 0, u16::from_be_bytes([a, b]))
                    }
                    _ => return Err(DropReason::NatNoTranslation),
                };
                let inside = self.quoted(now, key).ok_or(DropReason::NatNoTranslation)?;
                nat::set_dst(l3, inside.src);
                nat::translate_icmp_quote(l3, inside.src, Some(inside.src_port));
                Ok(inside)
            }
            _ => Err(DropReason::NatNoTranslation),
        }
    }
}

/// The few IPv4 fields translation reads.
struct Header {
    ihl: usize,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    /// Identification, fragment offset (bytes), more fragments.
    id: u16,
    offset: u32,
    more: bool,
    /// The payload bytes this packet carries (total length less the header).
    payload_len: u32,
    /// The first transport bytes (8 at most), when there.
    l4: Option<[u8; 8]>,
    /// TCP's flags, when there (0 otherwise).
    tcp_flags: u8,
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

impl Header {
    /// A whole packet's header (the caller checked the header's validity).
    fn read(l3: &[u8]) -> Option<Header> {
        let h = Self::read_quoted(l3)?;
        (usize::from(nat::total_len(l3)) <= l3.len()).then_some(h)
    }

    /// A header that may be cut short after its first 8 transport bytes (an ICMP quote).
    fn read_quoted(l3: &[u8]) -> Option<Header> {
        let first = *l3.first()?;
        let ihl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || ihl < 20 || l3.len() < ihl {
            return None;
        }
        let frag = u16::from_be_bytes([l3[6], l3[7]]);
        let l4 = l3.get(ihl..ihl + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            a
        });
        Some(Header {
            ihl,
            proto: l3[9],
            src: Ipv4Addr::new(l3[12], l3[13], l3[14], l3[15]),
            dst: Ipv4Addr::new(l3[16], l3[17], l3[18], l3[19]),
            id: u16::from_be_bytes([l3[4], l3[5]]),
            offset: u32::from(frag & 0x1fff) * 8,
            more: frag & 0x2000 != 0,
            payload_len: u32::from(nat::total_len(l3)).saturating_sub(ihl as u32),
            l4,
            tcp_flags: l3.get(ihl + 13).copied().unwrap_or(0),
        })
    }

    /// The datagram a fragment belongs to.
    fn frag_key(&self) -> FragKey {
        (
            self.proto,
            u32::from(self.src),
            u32::from(self.dst),
            self.id,
        )
    }

    /// Whether it is a fragment (first, middle or last).
    fn fragment(&self) -> bool {
        self.more || self.offset != 0
    }
}

/// The RST a NAT gateway answers a TCP segment (IPv4 packet `l3`) of a connection it holds no
/// translation for with: from the segment's destination to its source, as RFC 793 resets (the
/// segment's ACK as sequence number; without one, sequence 0 and an ACK of all it carried).
/// `None` when `l3` is not a TCP segment with its header.
pub fn reset_for(l3: &[u8]) -> Option<[u8; 40]> {
    let h = Header::read(l3)?;
    if h.proto != 6 || h.offset != 0 {
        return None;
    }
    let tcp = l3.get(h.ihl..usize::from(nat::total_len(l3)))?;
    let data_off = usize::from(*tcp.get(12)? >> 4) * 4;
    if data_off < 20 || tcp.len() < data_off {
        return None;
    }
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    let (seq, ack, flags) = if h.tcp_flags & TCP_ACK != 0 {
        (ack, 0, TCP_RST)
    } else {
        let len = (tcp.len() - data_off) as u32
            + u32::from(h.tcp_flags & TCP_SYN != 0)
            + u32::from(h.tcp_flags & 0x01 != 0);
        (0, seq.wrapping_add(len), TCP_RST | TCP_ACK)
    };
    let mut p = [0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&h.dst.octets());
    p[16..20].copy_from_slice(&h.src.octets());
    let c = nat::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&tcp[2..4]);
    p[22..24].copy_from_slice(&tcp[0..2]);
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[28..32].copy_from_slice(&ack.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = flags;
    // The checksum over the pseudo-header (addresses, protocol, length) and the header.
    let mut pseudo = [0u8; 32];
    pseudo[0..8].copy_from_slice(&p[12..20]);
    pseudo[9] = 6;
    pseudo[11] = 20;
    pseudo[12..32].copy_from_slice(&p[20..40]);
    let c = nat::checksum(&pseudo);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    Some(p)
}

/// A NAT gateway held by this host's engine: its id, its ENI, its table.
#[derive(Debug)]
pub(crate) struct NatGateway {
    pub nat_id: Box<str>,
    pub eni_id: Box<str>,
    pub table: NatTable,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(port: u16, dst_port: u16) -> Inside {
        Inside {
            proto: 6,
            src: Ipv4Addr::new(10, 0, 1, 5),
            src_port: port,
            dst: Ipv4Addr::new(203, 0, 113, 10),
            dst_port,
        }
    }

    #[test]
    fn ports_are_per_destination_and_reused_by_a_flow() {
        let now = Instant::now();
        let mut t = NatTable::new(NatConfig::default());
        let a = t.outbound(now, inside(40000, 80)).unwrap();
        let b = t.outbound(now, inside(40001, 80)).unwrap();
        assert_ne!(a, b);
        assert!(a >= PORT_FIRST && b >= PORT_FIRST);
        assert_eq!(t.outbound(now, inside(40000, 80)), Some(a));
        // Another destination may use the same port.
        assert_eq!(t.outbound(now, inside(40002, 443)), Some(a));
        assert_eq!(t.len(), 3);
        assert_eq!(t.stats().connection_attempts, 3);
    }
}
