//! What the engine did, counted: frames and bytes per path, and every drop by reason.
//!
//! A malformed or refused packet is never an error: it is dropped and counted here, and the
//! shell exports the counts as Prometheus metrics (`softvpc_drops_total{reason="..."}`,
//! `softvpc_frames_total{path="..."}`, `softvpc_bytes_total{path="..."}`): see
//! [`Counters::samples`] and [`Counters::write_prometheus`].
//!
//! Every frame or datagram handed to the engine ends in exactly one of three ways: it produces
//! one output (a frame to a port or a datagram to the underlay), it is dropped (one
//! [`DropReason`]), or it is absorbed (gratuitous ARP and the like: consumed on purpose, not an
//! error). The tests check that balance.

use std::fmt::Write as _;

/// Why a frame or datagram was dropped. The snake_case names ([`DropReason::as_str`]) are a
/// contract with the agent's metrics and the end-to-end tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// Too short, inconsistent length fields, bad IPv4 version or header checksum, an ARP
    /// packet that is not Ethernet/IPv4, an ICMP message with a bad checksum.
    Malformed,
    /// An ethertype the router does not carry (IPv6, VLAN tags, ...): IPv4 and ARP only.
    UnsupportedEthertype,
    /// Source MAC, source IPv4, or ARP sender MAC/IP not the sending ENI's own.
    SpoofedSource,
    /// An IPv4 broadcast or multicast (or a frame to a broadcast/multicast MAC): nothing
    /// broadcast ever leaves the host.
    BroadcastNotForwarded,
    /// An ARP request for an address that nobody in the VPC holds (or an ARP operation that is
    /// neither request nor reply).
    ArpUnanswered,
    /// Unknown destination, destination outside the VPC, or a destination MAC that is neither
    /// the target ENI's (in the same subnet) nor the router's; also non-echo traffic to the
    /// router address.
    NoRoute,
    /// A frame from a port that no ENI in the current mapping table is attached to.
    UnknownPort,
    /// A VXLAN header without the I flag (RFC 7348: the VNI is then not valid).
    VxlanBadFlags,
    /// A VXLAN VNI that is not one of the VPCs this host knows.
    VxlanUnknownVni,
    /// A VXLAN datagram whose outer source is not a registered host's underlay address.
    VxlanUnknownSource,
    /// A decapsulated frame whose destination is not an ENI of that VNI on this host (wrong MAC,
    /// wrong IP, ARP, broadcast or multicast).
    VxlanNotLocal,
    /// A routed packet whose TTL would reach zero.
    TtlExceeded,
    /// No rule of the ENI's security groups allows a new flow (either direction).
    SgDenied,
    /// The subnet's network ACL denies the packet where it leaves or enters the subnet.
    NaclDenied,
    /// The route that matched is a blackhole (its target is gone, or a peering connection
    /// that is not active).
    Blackhole,
    /// The route that matched targets an internet or NAT gateway, not on the wire yet.
    GatewayNotOnWire,
    /// A packet routed to an ENI for an address it does not hold while its
    /// source/destination check is on.
    SrcDstCheck,
    /// A new tracked flow while the ENI's connection-tracking table is full (ENA's
    /// `conntrack_allowance_exceeded`).
    ConntrackFull,
    /// A decapsulated frame whose inner source the mapping does not place on the host it came
    /// from (nor on a path that host forwards for: peering, a middlebox).
    ForgedSource,
    /// A DHCP message to the router that it does not answer: undecodable, not a client's
    /// request, or for another MAC than the sending ENI's.
    DhcpInvalid,
    /// Routed to an internet gateway from an address without a public IP (no 1:1 NAT: AWS
    /// passes nothing).
    NoPublicIp,
    /// The internet-side next hop's MAC is not known yet (the edge asked for it by ARP).
    EdgeNoNeighbor,
    /// A frame from the internet this host does not carry: not for a public address held
    /// here, not to the edge's MAC, or neither IPv4 nor ARP.
    EdgeNotHeld,
    /// From the internet to a public address whose subnet has no route back to an internet
    /// gateway (AWS: no route, no internet traffic).
    NoIgwRoute,
    /// A NAT gateway found no free source port for the destination (AWS's
    /// `ErrorPortAllocation`): the connection is refused.
    NatPortAllocation,
    /// From the internet to a NAT gateway's public address, matching no translation
    /// (unsolicited).
    NatNoTranslation,
    /// A fragment a NAT gateway does not forward: TCP or ICMP (AWS forwards fragmented UDP
    /// only), a later fragment whose first fragment it did not see, or past its limit of
    /// datagrams in flight.
    NatFragment,
    /// A TCP segment (not a SYN) of a connection a NAT gateway holds no translation for (it
    /// expired idle): not forwarded; the gateway answers the instance with an RST.
    NatConnectionReset,
    /// A DNS message to the router's resolver that it does not answer (shorter than a header,
    /// a response, a bad UDP header), or a forwarded answer for an asker that is gone or that
    /// does not decode.
    DnsInvalid,
    /// A DNS query to a VPC whose `enableDnsSupport` is off.
    DnsDisabled,
    /// A packet of the instance metadata server that is not a TCP answer from
    /// 169.254.169.254:80 to an address of the port's ENI (or for a port without one).
    ImdsInvalid,
}

impl DropReason {
    /// Every reason, in declaration order (the order of [`Counters::samples`]).
    pub const ALL: [DropReason; 31] = [
        DropReason::Malformed,
        DropReason::UnsupportedEthertype,
        DropReason::SpoofedSource,
        DropReason::BroadcastNotForwarded,
        DropReason::ArpUnanswered,
        DropReason::NoRoute,
        DropReason::UnknownPort,
        DropReason::VxlanBadFlags,
        DropReason::VxlanUnknownVni,
        DropReason::VxlanUnknownSource,
        DropReason::VxlanNotLocal,
        DropReason::TtlExceeded,
        DropReason::SgDenied,
        DropReason::NaclDenied,
        DropReason::Blackhole,
        DropReason::GatewayNotOnWire,
        DropReason::SrcDstCheck,
        DropReason::ConntrackFull,
        DropReason::ForgedSource,
        DropReason::DhcpInvalid,
        DropReason::NoPublicIp,
        DropReason::EdgeNoNeighbor,
        DropReason::EdgeNotHeld,
        DropReason::NoIgwRoute,
        DropReason::NatPortAllocation,
        DropReason::NatNoTranslation,
        DropReason::NatFragment,
        DropReason::NatConnectionReset,
        DropReason::DnsInvalid,
        DropReason::DnsDisabled,
        DropReason::ImdsInvalid,
    ];

    /// The metric label value (snake_case; part of the agent's metrics contract).
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnsupportedEthertype => "unsupported_ethertype",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::BroadcastNotForwarded => "broadcast_not_forwarded",
            DropReason::ArpUnanswered => "arp_unanswered",
            DropReason::NoRoute => "no_route",
            DropReason::UnknownPort => "unknown_port",
            DropReason::VxlanBadFlags => "vxlan_bad_flags",
            DropReason::VxlanUnknownVni => "vxlan_unknown_vni",
            DropReason::VxlanUnknownSource => "vxlan_unknown_source",
            DropReason::VxlanNotLocal => "vxlan_not_local",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::SgDenied => "sg_denied",
            DropReason::NaclDenied => "nacl_denied",
            DropReason::Blackhole => "blackhole",
            DropReason::GatewayNotOnWire => "gateway_not_on_wire",
            DropReason::SrcDstCheck => "src_dst_check",
            DropReason::ConntrackFull => "conntrack_full",
            DropReason::ForgedSource => "forged_source",
            DropReason::DhcpInvalid => "dhcp_invalid",
            DropReason::NoPublicIp => "no_public_ip",
            DropReason::EdgeNoNeighbor => "edge_no_neighbor",
            DropReason::EdgeNotHeld => "edge_not_held",
            DropReason::NoIgwRoute => "no_igw_route",
            DropReason::NatPortAllocation => "nat_port_allocation",
            DropReason::NatNoTranslation => "nat_no_translation",
            DropReason::NatFragment => "nat_fragment",
            DropReason::NatConnectionReset => "nat_connection_reset",
            DropReason::DnsInvalid => "dns_invalid",
            DropReason::DnsDisabled => "dns_disabled",
            DropReason::ImdsInvalid => "imds_invalid",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A path a frame takes through the engine, counted in frames and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Path {
    /// Frames read from local ports (input).
    PortRx,
    /// VXLAN datagrams received from the underlay (input; bytes = UDP payload).
    UnderlayRx,
    /// Frames forwarded from one local port to another, without encapsulation.
    ToPortLocal,
    /// Decapsulated frames delivered from the underlay to a local port.
    ToPortDecap,
    /// Datagrams sent to the underlay (bytes = UDP payload, VXLAN header included).
    ToUnderlay,
    /// ARP replies the proxy answered on the VPC's behalf.
    ArpReplies,
    /// ICMP echo replies from the router address.
    IcmpReplies,
    /// ARP frames consumed on purpose (gratuitous ARP, unsolicited replies, probes for the
    /// asker's own address): not an error, not forwarded.
    ArpAbsorbed,
    /// DHCP answers (OFFER, ACK, NAK) of the router.
    DhcpReplies,
    /// DHCP messages that need no answer (RELEASE, DECLINE, a REQUEST for another server).
    DhcpAbsorbed,
    /// Frames read from the edge (the host's link to the internet).
    EdgeRx,
    /// Frames sent to the internet on the edge, translated to a public source.
    ToEdge,
    /// Frames from the internet delivered to a local port, translated to a private address.
    FromEdge,
    /// ARP on the edge: answers for held public addresses, announcements, requests for the
    /// next hop, and ARP frames consumed there.
    EdgeArp,
    /// ICMP "fragmentation needed" sent by the router for a DF packet too big for the edge.
    IcmpFragNeeded,
    /// DNS answers of the router's resolver (its own, FORMERR and the like, and forwarded
    /// answers passed back).
    DnsReplies,
    /// DNS queries handed to the shell to forward upstream.
    DnsForwarded,
    /// TCP packets to 169.254.169.254:80 handed to the shell's metadata server.
    ImdsRequests,
    /// Packets of the metadata server framed to their port.
    ImdsReplies,
}

impl Path {
    /// Every path, in declaration order.
    pub const ALL: [Path; 19] = [
        Path::PortRx,
        Path::UnderlayRx,
        Path::ToPortLocal,
        Path::ToPortDecap,
        Path::ToUnderlay,
        Path::ArpReplies,
        Path::IcmpReplies,
        Path::ArpAbsorbed,
        Path::DhcpReplies,
        Path::DhcpAbsorbed,
        Path::EdgeRx,
        Path::ToEdge,
        Path::FromEdge,
        Path::EdgeArp,
        Path::IcmpFragNeeded,
        Path::DnsReplies,
        Path::DnsForwarded,
        Path::ImdsRequests,
        Path::ImdsReplies,
    ];

    /// The metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Path::PortRx => "port_rx",
            Path::UnderlayRx => "underlay_rx",
            Path::ToPortLocal => "to_port_local",
            Path::ToPortDecap => "to_port_decap",
            Path::ToUnderlay => "to_underlay",
            Path::ArpReplies => "arp_replies",
            Path::IcmpReplies => "icmp_replies",
            Path::ArpAbsorbed => "arp_absorbed",
            Path::DhcpReplies => "dhcp_replies",
            Path::DhcpAbsorbed => "dhcp_absorbed",
            Path::EdgeRx => "edge_rx",
            Path::ToEdge => "to_edge",
            Path::FromEdge => "to_port_edge",
            Path::EdgeArp => "edge_arp",
            Path::IcmpFragNeeded => "icmp_frag_needed",
            Path::DnsReplies => "dns_replies",
            Path::DnsForwarded => "dns_forwarded",
            Path::ImdsRequests => "imds_requests",
            Path::ImdsReplies => "imds_replies",
        }
    }
}

/// Metric name of the per-ENI, per-reason drop counter (labels `eni`, `reason`).
pub const METRIC_ENI_DROPS: &str = "softvpc_eni_drops_total";
/// Metric name of the per-ENI tracked-flow gauge (label `eni`).
pub const METRIC_ENI_TRACKED: &str = "softvpc_eni_tracked_flows";
/// Metric name of the per-ENI count of connections refused at the tracking limit (label `eni`).
pub const METRIC_ENI_ALLOWANCE: &str = "softvpc_eni_conntrack_allowance_exceeded_total";
/// Metric name of the flow-table lookups that found a current entry.
pub const METRIC_FLOW_HITS: &str = "softvpc_flow_table_hits_total";
/// Metric name of the flow-table lookups that walked the layers.
pub const METRIC_FLOW_MISSES: &str = "softvpc_flow_table_misses_total";
/// Metric name of the flow-table size gauge.
pub const METRIC_FLOW_ENTRIES: &str = "softvpc_flow_table_entries";

/// Metric name of the per-reason drop counter (label `reason`).
pub const METRIC_DROPS: &str = "softvpc_drops_total";
/// Metric name of the per-path frame counter (label `path`).
pub const METRIC_FRAMES: &str = "softvpc_frames_total";
/// Metric name of the per-path byte counter (label `path`).
pub const METRIC_BYTES: &str = "softvpc_bytes_total";

/// One counter value as a metric sample: `metric{label.0="label.1"} value`.
pub type Sample = (&'static str, (&'static str, &'static str), u64);

/// Engine counters (plain integers: the engine runs on one thread; the shell reads them
/// between batches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    drops: [u64; DropReason::ALL.len()],
    frames: [u64; Path::ALL.len()],
    bytes: [u64; Path::ALL.len()],
    /// Per local ENI (kept across table swaps while the ENI stays local).
    pub(crate) enis: Vec<EniCounters>,
    pub(crate) flow_hits: u64,
    pub(crate) flow_misses: u64,
    pub(crate) flow_entries: u64,
    /// Per NAT gateway held on this host (refreshed after each batch and timer).
    pub(crate) nat_gateways: Vec<(Box<str>, crate::natgw::NatStats)>,
}

/// What happened at one local ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniCounters {
    /// The ENI id.
    pub eni_id: Box<str>,
    drops: [u64; DropReason::ALL.len()],
    /// Connections its tracking table holds now.
    pub tracked: u64,
    /// New connections refused because its table was full.
    pub conntrack_allowance_exceeded: u64,
}

impl EniCounters {
    pub(crate) fn new(eni_id: Box<str>) -> EniCounters {
        EniCounters {
            eni_id,
            drops: [0; DropReason::ALL.len()],
            tracked: 0,
            conntrack_allowance_exceeded: 0,
        }
    }

    /// Drops attributed to the ENI (its own packets, or packets for it) for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }
}

impl Counters {
    /// Frames or datagrams dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// All drops, whatever the reason.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Frames that took `path`.
    pub fn frames(&self, path: Path) -> u64 {
        self.frames[path as usize]
    }

    /// Bytes that took `path`.
    pub fn bytes(&self, path: Path) -> u64 {
        self.bytes[path as usize]
    }

    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// The local ENIs' counters.
    pub fn enis(&self) -> &[EniCounters] {
        &self.enis
    }

    /// The counters of local ENI `eni_id`.
    pub fn eni(&self, eni_id: &str) -> Option<&EniCounters> {
        self.enis.iter().find(|e| &*e.eni_id == eni_id)
    }

    /// Flow-table lookups that found a current entry (the layers were skipped).
    pub fn flow_hits(&self) -> u64 {
        self.flow_hits
    }

    /// Flow-table lookups that walked the layers (no entry, or one of an older generation).
    pub fn flow_misses(&self) -> u64 {
        self.flow_misses
    }

    /// Entries in the flow table (at the last batch or timer).
    pub fn flow_entries(&self) -> u64 {
        self.flow_entries
    }

    /// The NAT gateways held on this host and what each did, by gateway id.
    pub fn nat_gateways(&self) -> &[(Box<str>, crate::natgw::NatStats)] {
        &self.nat_gateways
    }

    /// Counts `frames` frames of `bytes` bytes in all (the kernel fast path's fold).
    pub(crate) fn add(&mut self, path: Path, frames: u64, bytes: u64) {
        self.frames[path as usize] = self.frames[path as usize].saturating_add(frames);
        self.bytes[path as usize] = self.bytes[path as usize].saturating_add(bytes);
    }

    pub(crate) fn count(&mut self, path: Path, bytes: usize) {
        self.frames[path as usize] += 1;
        self.bytes[path as usize] += bytes as u64;
    }

    /// Every counter as `(metric name, (label name, label value), value)`, drops first, then
    /// frames and bytes per path. Zero counters are included (Prometheus prefers series that
    /// exist from the start).
    pub fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        let drops = DropReason::ALL
            .iter()
            .map(|&r| (METRIC_DROPS, ("reason", r.as_str()), self.drops(r)));
        let frames = Path::ALL
            .iter()
            .map(|&p| (METRIC_FRAMES, ("path", p.as_str()), self.frames(p)));
        let bytes = Path::ALL
            .iter()
            .map(|&p| (METRIC_BYTES, ("path", p.as_str()), self.bytes(p)));
        drops.chain(frames).chain(bytes)
    }

    /// Appends the counters to `out` in the Prometheus text exposition format (with `# HELP`
    /// and `# TYPE` lines), ready to serve at `/metrics`.
    pub fn write_prometheus(&self, out: &mut String) {
        let help = [
            (
                METRIC_DROPS,
                "Frames and datagrams dropped by the engine, by reason.",
            ),
            (METRIC_FRAMES, "Frames through the engine, by path."),
            (METRIC_BYTES, "Bytes through the engine, by path."),
        ];
        for (metric, text) in help {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {metric} {text}\n# TYPE {metric} counter");
            for (m, (key, value), n) in self.samples().filter(|s| s.0 == metric) {
                let _ = writeln!(out, "{m}{{{key}=\"{value}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP {METRIC_ENI_DROPS} Drops at each local ENI (its packets or packets for it), by reason.\n# TYPE {METRIC_ENI_DROPS} counter"
        );
        for e in &self.enis {
            for r in DropReason::ALL {
                let _ = writeln!(
                    out,
                    "{METRIC_ENI_DROPS}{{eni=\"{}\",reason=\"{}\"}} {}",
                    e.eni_id,
                    r.as_str(),
                    e.drops(r)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP {METRIC_ENI_TRACKED} Connections each local ENI's tracking table holds.\n# TYPE {METRIC_ENI_TRACKED} gauge"
        );
        for e in &self.enis {
            let _ = writeln!(
                out,
                "{METRIC_ENI_TRACKED}{{eni=\"{}\"}} {}",
                e.eni_id, e.tracked
            );
        }
        let _ = writeln!(
            out,
            "# HELP {METRIC_ENI_ALLOWANCE} New connections each local ENI refused because its tracking table was full (ENA's conntrack_allowance_exceeded).\n# TYPE {METRIC_ENI_ALLOWANCE} counter"
        );
        for e in &self.enis {
            let _ = writeln!(
                out,
                "{METRIC_ENI_ALLOWANCE}{{eni=\"{}\"}} {}",
                e.eni_id, e.conntrack_allowance_exceeded
            );
        }
        for (metric, kind, text, n) in [
            (METRIC_FLOW_HITS, "counter", "Packets decided by one flow-table lookup.", self.flow_hits),
            (METRIC_FLOW_MISSES, "counter", "Packets that walked the layers (first of a flow, or after a policy or mapping change).", self.flow_misses),
            (METRIC_FLOW_ENTRIES, "gauge", "Entries in the flow table.", self.flow_entries),
        ] {
            let _ = writeln!(out, "# HELP {metric} {text}\n# TYPE {metric} {kind}\n{metric} {n}");
        }
        // NAT gateways, named after AWS's CloudWatch metrics (AWS/NATGateway).
        type Get = fn(&crate::natgw::NatStats) -> u64;
        let nat: [(&str, &str, &str, Get); 10] = [
            ("softvpc_nat_gateway_active_connection_count", "gauge", "ActiveConnectionCount: translations a NAT gateway holds (TCP, UDP, ICMP).", |s| s.active_connections),
            ("softvpc_nat_gateway_connection_attempt_count_total", "counter", "ConnectionAttemptCount: new translations asked for.", |s| s.connection_attempts),
            ("softvpc_nat_gateway_error_port_allocation_total", "counter", "ErrorPortAllocation: no source port free for the destination (connection refused).", |s| s.error_port_allocation),
            ("softvpc_nat_gateway_idle_timeout_count_total", "counter", "IdleTimeoutCount: translations expired after 350 s idle.", |s| s.idle_timeouts),
            ("softvpc_nat_gateway_packets_drop_count_total", "counter", "PacketsDropCount: packets the NAT gateway dropped.", |s| s.packets_drop),
            ("softvpc_nat_gateway_idle_resets_total", "counter", "TCP segments of a connection without a translation (expired idle) answered with an RST.", |s| s.idle_resets),
            ("softvpc_nat_gateway_packets_out_to_destination_total", "counter", "PacketsOutToDestination.", |s| s.packets_out_to_destination),
            ("softvpc_nat_gateway_bytes_out_to_destination_total", "counter", "BytesOutToDestination (IPv4 bytes).", |s| s.bytes_out_to_destination),
            ("softvpc_nat_gateway_packets_in_from_destination_total", "counter", "PacketsInFromDestination.", |s| s.packets_in_from_destination),
            ("softvpc_nat_gateway_bytes_in_from_destination_total", "counter", "BytesInFromDestination (IPv4 bytes).", |s| s.bytes_in_from_destination),
        ];
        for (metric, kind, text, get) in nat {
            let _ = writeln!(out, "# HELP {metric} {text}\n# TYPE {metric} {kind}");
            for (id, stats) in &self.nat_gateways {
                let _ = writeln!(out, "{metric}{{nat_gateway_id=\"{id}\"}} {}", get(stats));
            }
        }
    }
}
