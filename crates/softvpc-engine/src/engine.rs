//! The engine: the entry points (batches of frames and datagrams, the timer), and the last step
//! of the pipeline, which writes each outcome into the shell's [`Output`] and counts it.
//!
//! Every input ends in exactly one way: one output, one drop (counted by reason) or one
//! absorption (counted by path). Time is the caller's: every entry point takes `now`, the engine
//! keeps the latest (never going back) and asks to be woken at [`Engine::poll_timeout`].

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use softvpc_wire::{ArpOperation, FrameMeta, L3Meta, VxlanPacket, VxlanRepr, VXLAN_HEADER_LEN};

use softvpc_policy::firewall::Firewall;

use crate::counters::{EniCounters, Path};
use crate::edge::{self, Edge, EdgeConfig};
use crate::flow::{self, FlowTable};
use crate::flowlog::{FlowLogConfig, FlowLogStats, FlowLogger, FlowWindow};
use crate::layers::gateway::dhcp::{self, DhcpConfig};
use crate::layers::gateway::{arp, dns, icmp};
use crate::layers::{nat, route, Ctx, Direction, EniState, PortMap, Ports, Reply, St};
use crate::mapping::{router_mac, Mac};
use crate::natgw::{self, NatConfig, NatGateway, NatStats, NatTable};
use crate::pipeline::{
    self, Destination, Forward, Lookup, Outcome, Run, Trace, TraceRecorder, TraceVerdict,
};
use crate::report::{DropReporter, Event};
use crate::{Counters, DropReason, MappingTable, Output};

/// A local port: one TAP device, carrying one ENI. Assigned by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

impl PortId {
    /// The edge: the host's link to the internet ([`Engine::set_edge`]). Frames for it come
    /// out of [`Output::to_ports`] under this id; the shell writes them to its edge device.
    pub const EDGE: PortId = PortId(u32::MAX);
}

/// Static configuration of the engine on one host.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This host's underlay address (the outer source of what it sends).
    pub underlay_ip: Ipv4Addr,
    /// UDP destination port for VXLAN (4789, RFC 7348).
    pub vxlan_port: u16,
    /// How long drops are aggregated before one [`Event::Drops`] report; `None`: no reports.
    pub drop_report_interval: Option<Duration>,
    /// Connections each local ENI may track; past it new flows are refused (`conntrack_full`).
    pub conntrack_limit: usize,
    /// Entries the flow table may hold; past it (after sweeping idle entries) new flows are
    /// decided by the layers every packet.
    pub flow_table_limit: usize,
    /// How often the timer expires idle connections and flow-table entries.
    pub expiry_interval: Duration,
    /// What the router's DHCP server hands out besides each ENI's addresses.
    pub dhcp: DhcpConfig,
    /// Whether the shell forwards DNS queries the router cannot answer to an upstream
    /// resolver ([`Output::dns_forwards`]); without one they get SERVFAIL.
    pub dns_upstream: bool,
}

impl EngineConfig {
    /// The default drop-report interval.
    pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);
    /// The default expiry interval.
    pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(10);

    /// The MTU of instances' interfaces (what DHCP option 26 says): AWS's 9001 within a VPC.
    pub const INSTANCE_MTU: u16 = 9001;

    /// The configuration for a host with underlay address `underlay_ip`, VXLAN on 4789, drops
    /// reported every 10 s, DHCP as in us-east-1.
    pub fn new(underlay_ip: Ipv4Addr) -> Self {
        EngineConfig {
            underlay_ip,
            vxlan_port: softvpc_wire::VXLAN_UDP_PORT,
            drop_report_interval: Some(Self::DROP_REPORT_INTERVAL),
            conntrack_limit: softvpc_policy::conntrack::DEFAULT_LIMIT,
            flow_table_limit: flow::DEFAULT_LIMIT,
            expiry_interval: Self::EXPIRY_INTERVAL,
            dhcp: DhcpConfig::for_region("us-east-1", Self::INSTANCE_MTU),
            dns_upstream: false,
        }
    }
}

/// The virtual router of one host. See the [crate docs](crate) for the contract.
pub struct Engine {
    config: EngineConfig,
    table: Arc<MappingTable>,
    counters: Counters,
    /// The latest `now` any entry point was given.
    now: Option<Instant>,
    drops: DropReporter,
    events: VecDeque<Event>,
    /// The local ENIs' state (connection tracking), by port.
    ports: PortMap,
    flows: FlowTable,
    /// What the kernel was offered ([`poll_offers`](Self::poll_offers)).
    offers: crate::offload::OfferLog,
    /// When the timer next expires connections and flow-table entries.
    next_expiry: Option<Instant>,
    /// Flow log capture (issue 10).
    flowlog: FlowLogger,
    /// The link to the internet, when the host has one.
    edge: Option<Edge>,
    /// Where a frame from the internet is translated before the layers see it.
    scratch: Vec<u8>,
    /// The NAT gateways whose ENI is on this host, by their port (`crate::natgw`).
    nats: HashMap<PortId, NatGateway>,
    /// Their tables' limits.
    nat_config: NatConfig,
    /// Where a packet through a NAT gateway is translated.
    nat_scratch: Vec<u8>,
}

impl Engine {
    /// An engine with an empty mapping table (every frame is `unknown_port` until
    /// [`set_table`](Self::set_table)).
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            drops: DropReporter::new(config.drop_report_interval),
            table: Arc::new(MappingTable::default()),
            counters: Counters::default(),
            now: None,
            events: VecDeque::new(),
            ports: PortMap::default(),
            flows: FlowTable::new(config.flow_table_limit),
            offers: crate::offload::OfferLog::default(),
            next_expiry: None,
            flowlog: FlowLogger::default(),
            edge: None,
            scratch: Vec::with_capacity(2048),
            nats: HashMap::new(),
            nat_config: NatConfig::default(),
            nat_scratch: Vec::with_capacity(2048),
            config,
        }
    }

    /// Gives the host its link to the internet (see [`crate::edge`]): from now on packets
    /// routed to an internet gateway from an address with a public IP leave on
    /// [`PortId::EDGE`], and [`handle_edge_frames`](Self::handle_edge_frames) takes what
    /// arrives there. Without an edge such packets are dropped as `gateway_not_on_wire`.
    pub fn set_edge(&mut self, config: EdgeConfig) {
        self.edge = Some(Edge::new(config));
    }

    /// The edge's next hop's MAC, once learned.
    pub fn edge_gateway_mac(&self) -> Option<Mac> {
        self.edge.as_ref().and_then(|e| e.gateway_mac)
    }

    /// Writes the edge's announcements into `out`: a gratuitous ARP for each public address
    /// that became local since the last call, and an ARP request for the next hop while its
    /// MAC is unknown, or unproven for [`edge::REVALIDATE`] while frames are sent to it (at
    /// most once a second). The shell calls it after each batch and at each timer (cheap: the
    /// public addresses are looked at again only under a new table); nothing without an edge.
    pub fn announce(&mut self, now: Instant, out: &mut Output) {
        let now = self.advance(now);
        let Some(edge) = self.edge.as_mut() else {
            return;
        };
        let mac = edge.config.mac;
        if edge.table_changed(self.table.generation()) {
            let held: Vec<Ipv4Addr> = self.table.local_public_ips().map(|(ip, _)| ip).collect();
            for ip in edge.newly_held(&held) {
                // Gratuitous: sender and target are the address that arrived.
                arp_request(out, &mut self.counters, mac, ip, ip);
            }
        }
        if edge.should_ask(now, self.counters.frames(Path::ToEdge)) {
            // One of its public addresses as the sender (none yet: an RFC 5227 probe, which
            // a Linux router answers as well).
            let src = edge.an_address().unwrap_or(Ipv4Addr::UNSPECIFIED);
            arp_request(out, &mut self.counters, mac, src, edge.config.gateway_ip);
        }
    }

    /// Frames read from the edge (the internet), in order. Outputs are appended to `out`.
    /// Without an edge ([`set_edge`](Self::set_edge)) every frame is `edge_not_held`.
    pub fn handle_edge_frames<'a>(
        &mut self,
        now: Instant,
        frames: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Output,
    ) {
        let now = self.advance(now);
        self.ensure_firewalls(now);
        for frame in frames {
            self.counters.count(Path::EdgeRx, frame.len());
            let result = self.edge_frame(now, frame, out);
            if let Err((reason, at)) = result {
                self.counters.drop(reason);
                let idx = at.and_then(|p| self.ports.get(&p).map(|s| s.counters));
                if let Some(c) = idx.and_then(|i| self.counters.enis.get_mut(i)) {
                    c.drop(reason);
                }
                self.drops
                    .on_drop(now, &self.counters, reason, Direction::Ingress, None, frame);
            }
        }
        self.refresh_gauges();
    }

    /// One frame from the edge: ARP, or IPv4 for a held public address.
    fn edge_frame(
        &mut self,
        now: Instant,
        frame: &[u8],
        out: &mut Output,
    ) -> Result<(), (DropReason, Option<PortId>)> {
        let Some(edge) = self.edge.as_mut() else {
            return Err((DropReason::EdgeNotHeld, None));
        };
        let meta = FrameMeta::parse(frame).map_err(|_| (DropReason::Malformed, None))?;
        edge.seen_from(now, &meta.src_mac.0);
        if let L3Meta::Arp(_) = meta.l3 {
            let cx = Ctx {
                table: &self.table,
                config: &self.config,
                edge: None,
            };
            let answer = edge::arp(cx, edge, now, &meta).map_err(|r| (r, None))?;
            let mac = edge.config.mac;
            let len = match answer {
                Some((asker_mac, asker_ip, owner_ip)) => {
                    out.push_port_frame(PortId::EDGE, edge::ARP_LEN, |buf| {
                        edge::emit_arp(
                            buf,
                            asker_mac,
                            ArpOperation::Reply,
                            (mac, owner_ip),
                            (asker_mac, asker_ip),
                        )
                    })
                }
                None => frame.len(),
            };
            self.counters.count(Path::EdgeArp, len);
            return Ok(());
        }
        let mac = edge.config.mac;
        let cx = Ctx {
            table: &self.table,
            config: &self.config,
            edge: self.edge.as_ref(),
        };
        let mut st = St {
            ports: Ports::Live(&mut self.ports),
            now: Some(now),
            limit: self.config.conntrack_limit,
        };
        let port = edge::inbound(cx, &mut st, mac, frame, &mut self.scratch)?;
        if let Some(gw) = self.nats.get_mut(&port) {
            // For a NAT gateway: back to the instance's flow, sent on by the gateway's ENI.
            let eni = cx
                .table
                .eni_on_port(port)
                .ok_or((DropReason::NoRoute, None))?;
            let l3 = &mut self.scratch[14..];
            gw.table
                .translate_in(now, l3)
                .map_err(|r| (r, Some(port)))?;
            self.scratch[0..6].copy_from_slice(&router_mac(eni.vni));
            self.scratch[6..12].copy_from_slice(&eni.mac);
            let run = pipeline::egress(
                cx,
                &mut st,
                Some(&mut self.flows),
                port,
                &self.scratch,
                &mut (),
            );
            if to_nat_gateway(&run, &self.nats).is_some() {
                return Err((DropReason::NoRoute, Some(port)));
            }
            finish(
                cx,
                out,
                &mut self.counters,
                &mut self.drops,
                &st,
                run,
                now,
                Direction::Egress,
                Some(port),
                &self.scratch,
            );
            return Ok(());
        }
        let len = out.push_port_copy(port, &self.scratch, |_| {});
        self.counters.count(Path::FromEdge, len);
        Ok(())
    }

    /// Swaps in a new mapping snapshot (the shell calls this when the mapping view changed).
    /// The very next packet sees it: the table's generation differs, so every cached flow is
    /// decided again. Connection tracking of ENIs that stay local is kept (with their new
    /// groups and timeouts); an ENI that leaves the host forgets its connections.
    pub fn set_table(&mut self, table: Arc<MappingTable>) {
        self.table = table;
        let mut old = std::mem::take(&mut self.ports);
        let old_counters = std::mem::take(&mut self.counters.enis);
        for (port, eni) in self.table.local_enis() {
            let mut state = match old.remove(&port) {
                Some(s) if s.eni_id == eni.eni_id => s,
                _ => EniState {
                    eni_id: eni.eni_id.clone(),
                    fw: None,
                    counters: 0,
                },
            };
            match (&mut state.fw, &eni.groups) {
                (Some(fw), Some(groups)) => {
                    if !std::ptr::eq(fw.groups(), &**groups) {
                        fw.set_groups(groups.clone());
                    }
                    fw.conntrack().set_timeouts(eni.timeouts);
                    fw.conntrack().set_limit(self.config.conntrack_limit);
                }
                (None, Some(groups)) => {
                    // Without a time yet there is nothing to track; the first packet makes it.
                    state.fw = self.now.map(|now| {
                        Firewall::new(
                            groups.clone(),
                            self.config.conntrack_limit,
                            eni.timeouts,
                            now,
                        )
                    });
                }
                (_, None) => state.fw = None,
            }
            let counters = old_counters
                .iter()
                .find(|c| c.eni_id == eni.eni_id)
                .cloned()
                .unwrap_or_else(|| EniCounters::new(eni.eni_id.clone()));
            state.counters = self.counters.enis.len();
            self.counters.enis.push(counters);
            self.ports.insert(port, state);
        }
        // NAT gateways that stay on their port keep their translations.
        let mut old_nats = std::mem::take(&mut self.nats);
        for (port, nat_id, eni) in self.table.local_nat_gateways() {
            let gw = match old_nats.remove(&port) {
                Some(g) if *g.nat_id == *nat_id && g.eni_id == eni.eni_id => g,
                _ => NatGateway {
                    nat_id: nat_id.into(),
                    eni_id: eni.eni_id.clone(),
                    table: NatTable::new(self.nat_config),
                },
            };
            self.nats.insert(port, gw);
        }
        self.flowlog.resolve(&self.table, self.now);
        self.refresh_gauges();
    }

    /// Sets the limits of NAT gateways' translation tables made from now on (AWS's by
    /// default; tests shorten them).
    pub fn set_nat_config(&mut self, config: NatConfig) {
        self.nat_config = config;
    }

    /// What NAT gateway `nat_id` held on this host did so far.
    pub fn nat_gateway_stats(&self, nat_id: &str) -> Option<NatStats> {
        self.nats
            .values()
            .find(|g| &*g.nat_id == nat_id)
            .map(|g| g.table.stats())
    }

    /// The current mapping snapshot.
    pub fn table(&self) -> &Arc<MappingTable> {
        &self.table
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// What the engine did so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The latest time any entry point was given (`None` before the first call).
    pub fn now(&self) -> Option<Instant> {
        self.now
    }

    /// Frames read from a local port (an instance sent them), in order. Outputs are appended to
    /// `out`.
    pub fn handle_port_frames<'a>(
        &mut self,
        now: Instant,
        port: PortId,
        frames: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Output,
    ) {
        let now = self.advance(now);
        self.ensure_firewalls(now);
        let cx = Ctx {
            table: &self.table,
            config: &self.config,
            edge: self.edge.as_ref(),
        };
        let mut st = St {
            ports: Ports::Live(&mut self.ports),
            now: Some(now),
            limit: self.config.conntrack_limit,
        };
        let unknown_neighbor = self.counters.drops(DropReason::EdgeNoNeighbor);
        let mut nx = NatCx {
            flows: &mut self.flows,
            nats: &mut self.nats,
            buf: &mut self.nat_scratch,
            counters: &mut self.counters,
            drops: &mut self.drops,
        };
        for frame in frames {
            nx.counters.count(Path::PortRx, frame.len());
            let run = pipeline::egress(cx, &mut st, Some(&mut *nx.flows), port, frame, &mut ());
            let at = (Direction::Egress, Some(port));
            settle(
                cx,
                &mut st,
                &mut nx,
                &mut self.flowlog,
                out,
                now,
                at,
                run,
                frame,
            );
        }
        if self.counters.drops(DropReason::EdgeNoNeighbor) != unknown_neighbor {
            self.announce(now, out);
        }
        self.refresh_gauges();
    }

    /// UDP payloads received on the VXLAN port, each with its outer IPv4 source address.
    /// Outputs are appended to `out`.
    pub fn handle_underlay_datagrams<'a>(
        &mut self,
        now: Instant,
        datagrams: impl IntoIterator<Item = (Ipv4Addr, &'a [u8])>,
        out: &mut Output,
    ) {
        let now = self.advance(now);
        self.ensure_firewalls(now);
        let cx = Ctx {
            table: &self.table,
            config: &self.config,
            edge: self.edge.as_ref(),
        };
        let mut st = St {
            ports: Ports::Live(&mut self.ports),
            now: Some(now),
            limit: self.config.conntrack_limit,
        };
        let mut nx = NatCx {
            flows: &mut self.flows,
            nats: &mut self.nats,
            buf: &mut self.nat_scratch,
            counters: &mut self.counters,
            drops: &mut self.drops,
        };
        for (src, datagram) in datagrams {
            nx.counters.count(Path::UnderlayRx, datagram.len());
            let run = pipeline::ingress(cx, &mut st, Some(&mut *nx.flows), src, datagram, &mut ());
            let at = (Direction::Ingress, None);
            settle(
                cx,
                &mut st,
                &mut nx,
                &mut self.flowlog,
                out,
                now,
                at,
                run,
                datagram,
            );
        }
        self.refresh_gauges();
    }

    /// An answer of the upstream resolver to a query forwarded for `asker`
    /// ([`Output::dns_forwards`], matched back by the shell, e.g. with
    /// [`dns::Forwarder`](crate::layers::gateway::dns::Forwarder)): framed to the asker when it
    /// is still the ENI on that port and the answer decodes, else dropped as `dns_invalid`.
    pub fn handle_dns_answer(
        &mut self,
        now: Instant,
        asker: dns::Asker,
        answer: &[u8],
        out: &mut Output,
    ) {
        self.advance(now);
        let current = self
            .table
            .eni_on_port(asker.port)
            .is_some_and(|e| e.mac == asker.mac && e.vni == asker.vni && e.ip == asker.ip);
        if !current || !dns::is_answer(answer) {
            self.counters.drop(DropReason::DnsInvalid);
            return;
        }
        let reply = dns::DnsReply {
            router_mac: crate::mapping::router_mac(asker.vni),
            asker,
            payload: answer.to_vec(),
        };
        let len = out.push_port_frame(asker.port, dns::frame_len(&reply), |buf| {
            dns::emit(buf, &reply)
        });
        self.counters.count(Path::DnsReplies, len);
    }

    /// A packet of the shell's instance metadata server for `port`: framed to that port when
    /// it answers from 169.254.169.254:80 to one of the port's ENI's addresses
    /// ([`imds::check_reply`](crate::layers::gateway::imds::check_reply)), else dropped and
    /// counted (`imds_invalid`, also when the port has no ENI any more).
    pub fn handle_imds_reply(
        &mut self,
        now: Instant,
        port: PortId,
        packet: &[u8],
        out: &mut Output,
    ) {
        use crate::layers::gateway::imds;
        self.advance(now);
        let Some(eni) = self.table.eni_on_port(port) else {
            self.counters.drop(DropReason::ImdsInvalid);
            return;
        };
        if imds::check_reply(eni, packet).is_err() {
            self.counters.drop(DropReason::ImdsInvalid);
            return;
        }
        let (router, mac) = (crate::mapping::router_mac(eni.vni), eni.mac);
        let len = out.push_port_frame(port, imds::frame_len(packet), |buf| {
            imds::emit(buf, router, mac, packet)
        });
        self.counters.count(Path::ImdsReplies, len);
    }

    /// A query forwarded for `asker` that the upstream did not answer in time: answered
    /// SERVFAIL (as [`handle_dns_answer`](Self::handle_dns_answer) frames answers).
    pub fn handle_dns_timeout(
        &mut self,
        now: Instant,
        asker: dns::Asker,
        query: &[u8],
        out: &mut Output,
    ) {
        match dns::servfail(query) {
            Some(answer) => self.handle_dns_answer(now, asker, &answer, out),
            None => self.counters.drop(DropReason::DnsInvalid),
        }
    }

    /// Makes the connection-tracking tables of local ENIs that got groups before the engine
    /// had a time (cheap when there is none to make).
    #[inline]
    fn ensure_firewalls(&mut self, now: Instant) {
        for (port, state) in self.ports.iter_mut() {
            if state.fw.is_some() {
                continue;
            }
            if let Some(eni) = self.table.eni_on_port(*port) {
                if let Some(groups) = &eni.groups {
                    state.fw = Some(Firewall::new(
                        groups.clone(),
                        self.config.conntrack_limit,
                        eni.timeouts,
                        now,
                    ));
                }
            }
        }
    }

    /// The per-ENI tracked-flow gauges and the flow table's size, for the metrics.
    fn refresh_gauges(&mut self) {
        for state in self.ports.values_mut() {
            let tracked = state.fw.as_ref().map_or(0, |fw| fw.stats().tracked as u64);
            if let Some(c) = self.counters.enis.get_mut(state.counters) {
                c.tracked = tracked;
                c.conntrack_allowance_exceeded = state
                    .fw
                    .as_ref()
                    .map_or(c.conntrack_allowance_exceeded, |fw| {
                        fw.stats().allowance_exceeded
                    });
            }
        }
        self.counters.flow_entries = self.flows.len() as u64;
        self.counters.nat_gateways.clear();
        for g in self.nats.values() {
            self.counters
                .nat_gateways
                .push((g.nat_id.clone(), g.table.stats()));
        }
        self.counters.nat_gateways.sort_by(|a, b| a.0.cmp(&b.0));
    }

    /// The flow table (for diagnostics and benchmarks).
    pub fn flow_table(&self) -> &FlowTable {
        &self.flows
    }

    /// When the engine next wants [`handle_timeout`](Self::handle_timeout) called, if ever.
    /// May change after any entry point (as quinn-proto's `Connection::poll_timeout`).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.next_expiry.filter(|_| {
            !self.flows.is_empty()
                || self.nats.values().any(|g| !g.table.is_empty())
                || self
                    .ports
                    .values()
                    .any(|s| s.fw.as_ref().is_some_and(|fw| fw.stats().tracked > 0))
        });
        [self.drops.deadline(), expiry, self.flowlog.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the timers due at `now` (the shell calls it at or after
    /// [`poll_timeout`](Self::poll_timeout); calling it early or often is harmless). Then
    /// [`poll_event`](Self::poll_event) hands out what they produced.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        if let Some(report) = self.drops.on_timeout(now, &self.counters) {
            self.events.push_back(Event::Drops(report));
        }
        if self.next_expiry.is_some_and(|t| now >= t) {
            for state in self.ports.values_mut() {
                if let Some(fw) = state.fw.as_mut() {
                    fw.conntrack().expire(now);
                }
            }
            self.flows.expire(now, self.table.generation());
            for gw in self.nats.values_mut() {
                gw.table.expire(now);
            }
            self.next_expiry = Some(now + self.config.expiry_interval);
            self.refresh_gauges();
        }
        if self.flowlog.deadline().is_some_and(|t| now >= t) {
            self.flowlog.on_timeout(now);
        }
    }

    /// Which local ENIs are flow-logged, by ENI id, with the aggregation intervals of the
    /// flow logs covering each (see [`crate::flowlog`]). Replaces what was said before; an ENI
    /// no longer named has its open windows closed now and queued.
    pub fn set_flow_logs(&mut self, enis: HashMap<Box<str>, Vec<Duration>>) {
        self.flowlog.set_wanted(enis);
        self.flowlog.resolve(&self.table, self.now);
    }

    /// Changes how flow log records are captured (the record bound, a shorter window for tests).
    pub fn set_flow_log_config(&mut self, config: FlowLogConfig) {
        self.flowlog.set_config(config);
    }

    /// The next closed flow log window, oldest first (after [`handle_timeout`](Self::handle_timeout)).
    pub fn poll_flow_window(&mut self) -> Option<FlowWindow> {
        self.flowlog.poll_window()
    }

    /// What the flow log capture did so far.
    pub fn flow_log_stats(&self) -> FlowLogStats {
        self.flowlog.stats()
    }

    /// The next event for the shell (drop reports), oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Runs one frame from `port` through the egress pipeline as the data path would, and says
    /// what each layer decided and which rule decided it. Counters, timers, events, connection
    /// tracking and the flow table are left alone (the layers are walked even for a cached
    /// flow: the same decision); the frame the data path would have sent is appended to `out`.
    pub fn trace_port_frame(&self, port: PortId, frame: &[u8], out: &mut Output) -> Trace {
        self.trace(Direction::Egress, out, |cx, st, rec| {
            pipeline::egress(cx, st, None, port, frame, rec)
        })
    }

    /// [`trace_port_frame`](Self::trace_port_frame) for a VXLAN datagram from `src`.
    pub fn trace_underlay_datagram(
        &self,
        src: Ipv4Addr,
        datagram: &[u8],
        out: &mut Output,
    ) -> Trace {
        self.trace(Direction::Ingress, out, |cx, st, rec| {
            pipeline::ingress(cx, st, None, src, datagram, rec)
        })
    }

    /// Runs one direction's pipeline with a recorder of each layer's decision.
    fn trace<'f>(
        &self,
        direction: Direction,
        out: &mut Output,
        run: impl FnOnce(Ctx<'_>, &mut St<'_>, &mut TraceRecorder) -> Run<'f>,
    ) -> Trace {
        let cx = Ctx {
            table: &self.table,
            config: &self.config,
            edge: self.edge.as_ref(),
        };
        let mut st = St {
            ports: Ports::Trace(&self.ports),
            now: self.now,
            limit: self.config.conntrack_limit,
        };
        let mut rec = TraceRecorder::default();
        let run = run(cx, &mut st, &mut rec);
        let verdict = trace_verdict(cx, out, run.outcome);
        Trace {
            direction,
            layers: rec.layers,
            why: rec.why,
            verdict,
        }
    }

    /// Keeps the latest `now`; time never goes back, whatever the caller passes.
    #[inline]
    fn advance(&mut self, now: Instant) -> Instant {
        let now = match self.now {
            Some(prev) if prev > now => prev,
            _ => now,
        };
        self.now = Some(now);
        if self.next_expiry.is_none() {
            self.next_expiry = Some(now + self.config.expiry_interval);
        }
        now
    }
}

/// The forward of a packet delivered to a NAT gateway's port, if that is what `run` is.
fn to_nat_gateway<'a>(
    run: &Run<'a>,
    nats: &HashMap<PortId, NatGateway>,
) -> Option<(PortId, Forward<'a>)> {
    match &run.outcome {
        Ok(Outcome::Forward(f)) if f.snat.is_none() => match f.to {
            Destination::LocalPort(p) | Destination::DecapPort(p) if nats.contains_key(&p) => {
                Some((p, *f))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The engine's state a NAT gateway's packet needs besides the layers'.
struct NatCx<'e> {
    flows: &'e mut FlowTable,
    nats: &'e mut HashMap<PortId, NatGateway>,
    buf: &'e mut Vec<u8>,
    counters: &'e mut Counters,
    drops: &'e mut DropReporter,
}

/// What follows the layers for one packet from a port or the underlay (`at`: its direction
/// and port): the flow logs see it; one delivered to a NAT gateway of this host is translated
/// and sent on; anything else is written out and counted.
#[allow(clippy::too_many_arguments)]
#[inline]
fn settle(
    cx: Ctx<'_>,
    st: &mut St<'_>,
    nx: &mut NatCx<'_>,
    flowlog: &mut FlowLogger,
    out: &mut Output,
    now: Instant,
    at: (Direction, Option<PortId>),
    run: Run<'_>,
    input: &[u8],
) {
    let (direction, port) = at;
    if !flowlog.is_idle() {
        flowlog.observe(now, cx.table, direction, port, &run, input);
    }
    if let Some((nat_port, fwd)) = to_nat_gateway(&run, nx.nats) {
        nat_gateway_out(cx, st, nx, out, now, nat_port, fwd);
        return;
    }
    finish(
        cx,
        out,
        nx.counters,
        nx.drops,
        st,
        run,
        now,
        direction,
        port,
        input,
    );
}

/// A packet an instance sent through NAT gateway `nat_port`: translated (or answered with
/// ICMP "fragmentation needed" when too big for the internet gateway with DF set), then sent
/// on as the gateway's ENI sends it (its subnet's ACL and route table).
fn nat_gateway_out(
    cx: Ctx<'_>,
    st: &mut St<'_>,
    nx: &mut NatCx<'_>,
    out: &mut Output,
    now: Instant,
    nat_port: PortId,
    fwd: Forward<'_>,
) {
    let result = nat_translate_out(cx, nx, now, nat_port, fwd);
    if let Err(reason) = result {
        let run = Run {
            outcome: Err(reason),
            attrib: Some(nat_port),
            lookup: Lookup::None,
        };
        finish(
            cx,
            out,
            nx.counters,
            nx.drops,
            st,
            run,
            now,
            Direction::Egress,
            Some(nat_port),
            fwd.frame,
        );
        return;
    }
    let buf: &[u8] = nx.buf;
    let mut run = pipeline::egress(cx, st, Some(nx.flows), nat_port, buf, &mut ());
    if to_nat_gateway(&run, nx.nats).is_some() {
        // One NAT gateway never sends to another.
        run.outcome = Err(DropReason::NoRoute);
    }
    finish(
        cx,
        out,
        nx.counters,
        nx.drops,
        st,
        run,
        now,
        Direction::Egress,
        Some(nat_port),
        buf,
    );
}

/// Writes into `nx.buf` what NAT gateway `nat_port` sends for `fwd`: the translated frame, or
/// its ICMP "fragmentation needed" to the instance.
fn nat_translate_out(
    cx: Ctx<'_>,
    nx: &mut NatCx<'_>,
    now: Instant,
    nat_port: PortId,
    fwd: Forward<'_>,
) -> Result<(), DropReason> {
    let gw = nx.nats.get_mut(&nat_port).ok_or(DropReason::NoRoute)?;
    let eni = cx.table.eni_on_port(nat_port).ok_or(DropReason::NoRoute)?;
    let buf = &mut *nx.buf;
    buf.clear();
    buf.extend_from_slice(fwd.frame);
    if buf.len() < 34 {
        return Err(DropReason::Malformed);
    }
    if let Some(r) = fwd.rewrite {
        route::rewrite_routed(buf, r.router_mac, r.target_mac);
    }
    let l3 = &buf[14..];
    let total = usize::from(nat::total_len(l3)).min(l3.len());
    if total > usize::from(nat::EDGE_MTU) && nat::dont_fragment(l3) {
        // RFC 1812 4.3.2.3: as much of the packet as fits in 576 bytes.
        let quote = l3[..total.min(576 - 28)].to_vec();
        let instance = Ipv4Addr::new(l3[12], l3[13], l3[14], l3[15]);
        buf.clear();
        buf.resize(nat::frag_needed_len(&quote), 0);
        nat::emit_frag_needed(
            buf,
            eni.mac,
            router_mac(eni.vni),
            eni.ip,
            instance,
            nat::EDGE_MTU,
            &quote,
        );
        return Ok(());
    }
    match gw.table.translate_out(now, &mut buf[14..], eni.ip) {
        Err(DropReason::NatConnectionReset) => {
            // Not forwarded (counted), answered: the RST from the far end to the instance.
            let rst = natgw::reset_for(&buf[14..]).ok_or(DropReason::NatConnectionReset)?;
            nx.counters.drop(DropReason::NatConnectionReset);
            buf.truncate(14);
            buf.extend_from_slice(&rst);
        }
        r => r?,
    }
    buf[0..6].copy_from_slice(&router_mac(eni.vni));
    buf[6..12].copy_from_slice(&eni.mac);
    Ok(())
}

/// The last step of one packet: writes its outcome and counts it (a drop also at the local ENI
/// it concerns, and in the drop report).
#[allow(clippy::too_many_arguments)]
#[inline]
fn finish(
    cx: Ctx<'_>,
    out: &mut Output,
    counters: &mut Counters,
    drops: &mut DropReporter,
    st: &St<'_>,
    run: Run<'_>,
    now: Instant,
    direction: Direction,
    port: Option<PortId>,
    input: &[u8],
) {
    match run.lookup {
        Lookup::Hit => counters.flow_hits += 1,
        Lookup::Miss => counters.flow_misses += 1,
        Lookup::None => {}
    }
    match run.outcome.and_then(|o| write(cx, out, o)) {
        Ok((path, len)) => counters.count(path, len.unwrap_or(input.len())),
        Err(reason) => {
            counters.drop(reason);
            let at = run.attrib.and_then(|p| match &st.ports {
                Ports::Live(m) => m.get(&p).map(|s| s.counters),
                Ports::Trace(m) => m.get(&p).map(|s| s.counters),
            });
            if let Some(c) = at.and_then(|i| counters.enis.get_mut(i)) {
                c.drop(reason);
            }
            drops.on_drop(now, counters, reason, direction, port, input);
            tracing::trace!(reason = reason.as_str(), len = input.len(), "dropped");
        }
    }
}

fn trace_verdict(
    cx: Ctx<'_>,
    out: &mut Output,
    outcome: Result<Outcome<'_>, DropReason>,
) -> TraceVerdict {
    let outcome = match outcome {
        Ok(o) => o,
        Err(reason) => return TraceVerdict::Drop(reason),
    };
    let verdict = match &outcome {
        Outcome::Absorb(path) => TraceVerdict::Absorb(*path),
        Outcome::Reply(port, _) => TraceVerdict::Reply(*port),
        Outcome::Forward(fwd) => match fwd.to {
            Destination::Underlay(encap) => TraceVerdict::ToUnderlay(encap.dst_ip),
            Destination::LocalPort(port) | Destination::DecapPort(port) => {
                TraceVerdict::ToPort(port)
            }
        },
    };
    match write(cx, out, outcome) {
        Ok(_) => verdict,
        Err(reason) => TraceVerdict::Drop(reason),
    }
}

/// The last step: writes an outcome into `out`. Returns the path to count and the bytes to
/// count (`None`: the input's length, for absorptions).
#[inline]
fn write(
    cx: Ctx<'_>,
    out: &mut Output,
    outcome: Outcome<'_>,
) -> Result<(Path, Option<usize>), DropReason> {
    match outcome {
        Outcome::Absorb(path) => Ok((path, None)),
        Outcome::Reply(port, reply) => Ok(write_reply(out, port, reply)),
        Outcome::Forward(Forward {
            frame,
            snat: Some(public),
            ..
        }) => write_edge(cx, out, frame, public),
        Outcome::Forward(fwd) => {
            let rewrite = fwd.rewrite;
            let edit = |f: &mut [u8]| {
                if let Some(r) = rewrite {
                    route::rewrite_routed(f, r.router_mac, r.target_mac);
                }
            };
            Ok(match fwd.to {
                Destination::Underlay(encap) => {
                    let mut header = [0u8; VXLAN_HEADER_LEN];
                    VxlanRepr { vni: fwd.vni.0 }.emit(&mut VxlanPacket::new_unchecked(&mut header));
                    let len = out.push_datagram(
                        encap.dst_ip,
                        cx.config.vxlan_port,
                        encap.src_port,
                        &header,
                        fwd.frame,
                        edit,
                    );
                    (Path::ToUnderlay, Some(len))
                }
                Destination::LocalPort(port) => (
                    Path::ToPortLocal,
                    Some(out.push_port_copy(port, fwd.frame, edit)),
                ),
                Destination::DecapPort(port) => (
                    Path::ToPortDecap,
                    Some(out.push_port_copy(port, fwd.frame, edit)),
                ),
            })
        }
    }
}

/// A broadcast ARP request on the edge from `mac` (sender address `sender`) for `target`.
fn arp_request(
    out: &mut Output,
    counters: &mut Counters,
    mac: Mac,
    sender: Ipv4Addr,
    target: Ipv4Addr,
) {
    let len = out.push_port_frame(PortId::EDGE, edge::ARP_LEN, |buf| {
        edge::emit_arp(
            buf,
            [0xff; 6],
            ArpOperation::Request,
            (mac, sender),
            ([0; 6], target),
        )
    });
    counters.count(Path::EdgeArp, len);
}

/// Writes a frame for the internet on the edge: the next hop's MAC, the edge's MAC, TTL - 1,
/// the public source; fragmented when larger than the edge's MTU (the NAT layer answered one
/// with DF already).
fn write_edge(
    cx: Ctx<'_>,
    out: &mut Output,
    frame: &[u8],
    public: Ipv4Addr,
) -> Result<(Path, Option<usize>), DropReason> {
    let edge = cx.edge.ok_or(DropReason::GatewayNotOnWire)?;
    let gw = edge.gateway_mac.ok_or(DropReason::EdgeNoNeighbor)?;
    let mac = edge.config.mac;
    let edit = |f: &mut [u8]| {
        route::rewrite_routed(f, mac, gw);
        nat::set_src(&mut f[14..], public);
    };
    let l3 = frame.get(14..).ok_or(DropReason::Malformed)?;
    if nat::total_len(l3) <= nat::EDGE_MTU {
        return Ok((
            Path::ToEdge,
            Some(out.push_port_copy(PortId::EDGE, frame, edit)),
        ));
    }
    // Translate a copy once, then cut it.
    let mut whole = frame.to_vec();
    edit(&mut whole);
    let mut sent = 0;
    let ok = nat::fragment(&whole[14..], nat::EDGE_MTU, |header, data| {
        sent += out.push_port_frame(PortId::EDGE, 14 + 20 + data.len(), |buf| {
            buf[..14].copy_from_slice(&whole[..14]);
            buf[14..34].copy_from_slice(header);
            buf[34..].copy_from_slice(data);
        });
    });
    if !ok {
        return Err(DropReason::Malformed);
    }
    Ok((Path::ToEdge, Some(sent)))
}

fn write_reply(out: &mut Output, port: PortId, reply: Reply<'_>) -> (Path, Option<usize>) {
    match reply {
        Reply::FragNeeded {
            router_mac,
            router_ip,
            dst_mac,
            dst_ip,
            mtu,
            quote,
        } => {
            let len = out.push_port_frame(port, nat::frag_needed_len(quote), |buf| {
                nat::emit_frag_needed(buf, router_mac, dst_mac, router_ip, dst_ip, mtu, quote)
            });
            (Path::IcmpFragNeeded, Some(len))
        }
        Reply::Arp {
            owner_mac,
            owner_ip,
            asker_mac,
            asker_ip,
        } => {
            let len = out.push_port_frame(port, arp::REPLY_LEN, |buf| {
                arp::emit_reply(buf, owner_mac, owner_ip, asker_mac, asker_ip)
            });
            (Path::ArpReplies, Some(len))
        }
        Reply::IcmpEcho {
            router_mac,
            router_ip,
            dst_mac,
            dst_ip,
            ident,
            seq_no,
            data,
        } => {
            let len = out.push_port_frame(port, icmp::echo_reply_len(data), |buf| {
                icmp::emit_echo_reply(
                    buf, router_mac, dst_mac, router_ip, dst_ip, ident, seq_no, data,
                )
            });
            (Path::IcmpReplies, Some(len))
        }
        Reply::Dhcp(r) => {
            let len = out.push_port_frame(port, dhcp::frame_len(&r.answer), |buf| {
                dhcp::emit(buf, r.router_mac, &r.lease, &r.answer)
            });
            (Path::DhcpReplies, Some(len))
        }
        Reply::Dns(r) => {
            let len = out.push_port_frame(port, dns::frame_len(&r), |buf| dns::emit(buf, &r));
            (Path::DnsReplies, Some(len))
        }
        Reply::DnsForward(asker, query) => {
            let len = out.push_dns_forward(*asker, query);
            (Path::DnsForwarded, Some(len))
        }
        Reply::Imds(packet) => {
            let len = out.push_imds(port, packet);
            (Path::ImdsRequests, Some(len))
        }
    }
}

/// The kernel fast path's hook (`crate::offload`): what the kernel may hold, and its use folded
/// back.
impl Engine {
    /// The VNI of the ENI behind local port `port` (the fast path's devices for its own VPC).
    pub fn port_vni(&self, port: PortId) -> Option<crate::mapping::Vni> {
        self.table.eni_on_port(port).map(|e| e.vni)
    }

    /// The cached flows the kernel may execute now (each current entry of the flow table that
    /// [`offload::offer`](crate::offload::offer) accepts and whose tracked TCP connection is
    /// established), under the current generation. The shell installs these and removes what
    /// it installed that is no longer offered (or of another generation).
    ///
    /// Entries that cannot be offered until a packet uses or replaces them (another
    /// generation's, not offerable by their kind, a TCP connection ended or gone) are parked
    /// in the flow table and skipped by later calls, so a table full of ended connections costs
    /// little: a packet of such a flow walks the engine (the kernel does not hold it), which
    /// unparks it. A connection re-established by the other direction's packets alone is
    /// offered after this direction's next packet.
    pub fn kernel_flows(&self) -> impl Iterator<Item = crate::offload::KernelFlow> + '_ {
        use crate::offload::Verdict;
        self.flows
            .unparked()
            .filter_map(move |(id, entry)| match self.offer_verdict(id, entry).0 {
                Verdict::Offer(k) => Some(k),
                Verdict::Wait => None,
                Verdict::Park => {
                    self.flows.park(id);
                    None
                }
            })
    }

    /// What the kernel may do with entry `entry` of `id` now, and (TCP) the connections the
    /// verdict depends on (whose other flows a change of this one may change). [`kernel_flows`](Self::kernel_flows) and
    /// [`poll_offers`](Self::poll_offers) both decide with this.
    fn offer_verdict(
        &self,
        id: &flow::FlowId,
        entry: &flow::FlowEntry,
    ) -> (
        crate::offload::Verdict,
        [Option<crate::offload::ConnRef>; 2],
    ) {
        use crate::offload::Verdict;
        use softvpc_policy::conntrack::{ConnKey, ProtoState, TcpState};
        let none = [None, None];
        let Ok(k) = crate::offload::offer(id, entry, self.table.generation()) else {
            // Decided by the entry and the generation alone: only a new entry changes it.
            return (Verdict::Park, none);
        };
        // A NAT gateway's port has no device: its packets are translated here, both the
        // ones to it and the ones it sends on (a reply the gateway translated back, leaving
        // from its port), so the kernel must not carry either.
        if let Destination::LocalPort(p) | Destination::DecapPort(p) = entry.to {
            if self.nats.contains_key(&p) {
                return (Verdict::Wait, none);
            }
        }
        if self.nats.contains_key(&k.port()) {
            return (Verdict::Wait, none);
        }
        if k.proto != 6 {
            return (Verdict::Offer(k), none);
        }
        let pkt = softvpc_policy::Packet {
            src: k.src,
            dst: k.dst,
            proto: k.proto,
            l4: k.l4,
            tcp_flags: 0,
        };
        let mut conns = none;
        for (slot, (port, dir)) in conns.iter_mut().zip(entry.tracked.iter().flatten()) {
            *slot = Some((*port, ConnKey::new(&pkt, *dir)));
        }
        for (port, dir) in entry.tracked.iter().flatten() {
            let Some(fw) = self.ports.get(port).and_then(|s| s.fw.as_ref()) else {
                return (Verdict::Wait, conns);
            };
            let Some(now) = self.now else {
                return (Verdict::Wait, conns);
            };
            let state = fw.conntrack_ref().peek(&pkt, *dir, now).map(|e| e.state());
            match state {
                Some(ProtoState::Tcp(TcpState::Established)) => {}
                // Ended or gone: only a new SYN (or a mid-stream packet) through the
                // engine brings it back. (The connection is named: its other flows are
                // looked at again too.)
                None
                | Some(ProtoState::Tcp(
                    TcpState::Closing | TcpState::TimeWait | TcpState::Closed,
                )) => return (Verdict::Park, conns),
                Some(_) => return (Verdict::Wait, conns),
            }
        }
        (Verdict::Offer(k), conns)
    }

    /// Whether a [`poll_offers`](Self::poll_offers) would look at changed flows (a new flow, a
    /// connection that advanced), or has never been called: the shell need not wait for its
    /// next periodic sweep to install a new flow.
    pub fn offers_changed(&self) -> bool {
        !self.flows.tracks_changes() || self.flows.has_changes()
    }

    /// What changed in the offer of [`kernel_flows`](Self::kernel_flows) since the last call,
    /// appended to `out` (the first call offers everything): the flows the flow table queued
    /// as changed, the other flows of their TCP connections, and up to `sweep` of the flows
    /// offered or waiting, in turn (what no packet announces: a connection idling out); a new
    /// generation withdraws everything offered first. A flow's withdrawal comes before the
    /// offer of its new value. The shell applies the changes in order; its set then equals
    /// `kernel_flows()` after a call whose `sweep` covers [`offer_log`](Self::offer_log)'s
    /// remembered flows. Costs what changed plus `sweep`, not the flow table
    /// ([`crate::offload`]).
    pub fn poll_offers(&mut self, sweep: usize, out: &mut Vec<crate::offload::OfferChange>) {
        use crate::offload::Verdict;
        let mut log = std::mem::take(&mut self.offers);
        self.flows.track_changes();
        let current = self.table.generation();
        if log.generation != Some(current) {
            log.reset(current, out);
        }
        let mut changed = std::mem::take(&mut log.changed);
        let mut siblings = std::mem::take(&mut log.siblings);
        siblings.clear();
        self.flows.drain_changes(&mut changed);
        let mut judge = |engine: &Engine, log: &mut crate::offload::OfferLog, id: &flow::FlowId| {
            let (verdict, conns) = match engine.flows.get(id) {
                Some(entry) => {
                    let (v, c) = engine.offer_verdict(id, entry);
                    if v == Verdict::Park {
                        engine.flows.park(id);
                    }
                    (Some(v), c)
                }
                None => (None, [None, None]),
            };
            log.record(id, verdict, conns, out);
            conns
        };
        for id in &changed {
            let conns = judge(&*self, &mut log, id);
            log.siblings(&conns, id, &mut siblings);
        }
        for id in &siblings {
            judge(&*self, &mut log, id);
        }
        for _ in 0..sweep.min(log.remembered()) {
            let Some(id) = log.next_to_sweep() else {
                break;
            };
            judge(&*self, &mut log, &id);
        }
        log.changed = changed;
        log.siblings = siblings;
        self.offers = log;
    }

    /// What [`poll_offers`](Self::poll_offers) remembers: flows offered, flows a full sweep
    /// looks at.
    pub fn offer_log(&self) -> &crate::offload::OfferLog {
        &self.offers
    }

    /// Forgets the offered flows of `port` without withdrawing them: the shell removed them
    /// from the kernel itself (the port went away). Offered again on their next change.
    pub fn forget_offers(&mut self, port: PortId) {
        self.offers.forget_port(port);
    }

    /// Folds what the kernel did for `flow` since the last fold (`packets` frames of `bytes`
    /// bytes, the last at `last_used`) into the engine: counted as forwarded frames of their
    /// path and, for a logged ENI, in its flow log records (ACCEPT), the flow's entry and its
    /// tracked connections kept alive (their idle timers run
    /// from `last_used`, as if the engine had seen the last packet). A flow the table no
    /// longer holds is only counted.
    pub fn fold_kernel_use(
        &mut self,
        flow: &crate::offload::KernelFlow,
        packets: u64,
        bytes: u64,
        last_used: Instant,
    ) {
        use crate::offload::KernelHook;
        if packets == 0 {
            return;
        }
        // Underlay bytes are UDP payloads (VXLAN header included), as the engine counts them.
        let vxlan = bytes.saturating_add(packets.saturating_mul(VXLAN_HEADER_LEN as u64));
        let (rx, tx, rx_bytes, tx_bytes) = match flow.hook {
            KernelHook::PortEgress(_) => (Path::PortRx, Path::ToUnderlay, bytes, vxlan),
            KernelHook::UnderlayIngress { .. } => {
                (Path::UnderlayRx, Path::ToPortDecap, vxlan, bytes)
            }
        };
        self.counters.add(rx, packets, rx_bytes);
        self.counters.add(tx, packets, tx_bytes);
        if !self.flowlog.is_idle() {
            // The flow logs count IPv4 bytes: the frames' Ethernet headers off (the kernel
            // carries no VLAN tags).
            let ip_bytes = bytes.saturating_sub(packets.saturating_mul(14));
            let (port, direction) = match flow.hook {
                KernelHook::PortEgress(p) => (p, crate::flowlog::FlowDirection::Egress),
                KernelHook::UnderlayIngress { port, .. } => {
                    (port, crate::flowlog::FlowDirection::Ingress)
                }
            };
            let (src_port, dst_port) = match (flow.proto, flow.l4) {
                (6 | 17, softvpc_wire::L4Key::Ports { src, dst }) => (src, dst),
                _ => (0, 0),
            };
            self.flowlog.observe_kernel(
                &self.table,
                port,
                direction,
                (flow.src, flow.dst, flow.proto, src_port, dst_port),
                packets,
                ip_bytes,
                last_used,
            );
        }
        let side = match flow.hook {
            KernelHook::PortEgress(p) => flow::FlowSide::Port(p),
            KernelHook::UnderlayIngress { vni, host, .. } => flow::FlowSide::Underlay { vni, host },
        };
        let id = flow::FlowId {
            side,
            src_mac: flow.src_mac,
            dst_mac: flow.dst_mac,
            key: softvpc_wire::FlowKey {
                src: flow.src,
                dst: flow.dst,
                proto: flow.proto,
                l4: flow.l4,
            },
        };
        let Some(entry) = self.flows.get_mut(&id) else {
            return;
        };
        entry.last_used = entry.last_used.max(last_used);
        // The kernel carried segments without SYN, FIN or RST: an ACK keeps the connection's
        // state and idle timer as the engine's own hit would.
        let pkt = softvpc_policy::Packet {
            src: flow.src,
            dst: flow.dst,
            proto: flow.proto,
            l4: flow.l4,
            tcp_flags: if flow.proto == 6 { 0x10 } else { 0 },
        };
        for (port, dir) in entry.tracked.iter().flatten() {
            if let Some(fw) = self.ports.get_mut(port).and_then(|s| s.fw.as_mut()) {
                let _ = fw.conntrack().lookup(&pkt, *dir, last_used);
            }
        }
    }
}
