//! `softvpc trace`'s agent side: runs a packet through this host's live engine and says what
//! each layer decided and which rule decided it.
//!
//! Two requests, both answered on the metrics listener (loopback, in the host's namespace):
//! - `POST /trace` `{from, protocol, dst, dst_port?, src?, src_port?}`: an instance (or ENI) on
//!   this host sends the packet. The frame is built as the instance's kernel would send it: the
//!   next hop is the destination inside the ENI's subnet, else the subnet router; its MAC comes
//!   from an ARP request traced through the engine first (proxy ARP answers it or nothing does).
//! - `POST /trace/underlay` `{src, datagram}`: a VXLAN datagram (hex) from underlay address
//!   `src`, as the sending host's trace produced it.
//!
//! Both run on the data-path thread with [`Engine::trace_port_frame`] /
//! [`Engine::trace_underlay_datagram`] on the table the data path uses, with its connection
//! tracking as it is: the same code and state as the real packet, and nothing is changed.
//! The answer names the verdict and, when the packet leaves for another host, the exact
//! datagram the data path would send, which the caller hands to that host's agent.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use softvpc_engine::{LayerDecision, MappingTable, Output, PortId, Trace, TraceVerdict, Why};
use softvpc_wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

use crate::datapath::Command;
use crate::status::{AgentState, LocalPort};
use softvpc_wire::ChecksumCapabilities;

/// How long a trace waits for the data-path thread.
pub const TRACE_TIMEOUT: Duration = Duration::from_secs(2);
/// The source port when none is given (the start of Linux's ephemeral range).
pub const DEFAULT_SRC_PORT: u16 = 32768;
/// The UDP payload and ICMP echo data of a traced packet.
const PAYLOAD: &[u8] = b"softvpc trace";

/// What the data-path thread traces.
#[derive(Debug)]
pub enum TraceInput {
    /// A frame sent by the instance on `port`.
    Port(PortId, Vec<u8>),
    /// A VXLAN datagram from underlay address `src`.
    Underlay(Ipv4Addr, Vec<u8>),
}

/// What it found: the trace, the table it ran with, and what the data path would have sent.
#[derive(Debug)]
pub struct TraceOutput {
    /// What the engine decided, layer by layer.
    pub trace: Trace,
    /// The mapping table the trace ran on.
    pub table: Arc<MappingTable>,
    /// Frames for local ports.
    pub frames: Vec<(PortId, Vec<u8>)>,
    /// Datagrams for the underlay: (destination host, payload).
    pub datagrams: Vec<(Ipv4Addr, Vec<u8>)>,
}

/// Runs `input` on the engine (the data-path thread calls this).
pub fn run(engine: &softvpc_engine::Engine, input: &TraceInput) -> TraceOutput {
    let mut out = Output::with_capacity(4096);
    let trace = match input {
        TraceInput::Port(port, frame) => engine.trace_port_frame(*port, frame, &mut out),
        TraceInput::Underlay(src, datagram) => {
            engine.trace_underlay_datagram(*src, datagram, &mut out)
        }
    };
    TraceOutput {
        trace,
        table: Arc::clone(engine.table()),
        frames: out.to_ports().map(|(p, f)| (p, f.to_vec())).collect(),
        datagrams: out
            .transmits()
            .map(|t| (t.dst_ip, t.payload.to_vec()))
            .collect(),
    }
}

async fn on_datapath(state: &AgentState, input: TraceInput) -> Result<TraceOutput, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    state
        .commander
        .send(Command::Trace(Box::new(input), tx))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(TRACE_TIMEOUT, rx).await {
        Ok(Ok(out)) => Ok(out),
        _ => Err("the data path did not answer the trace".into()),
    }
}

/// A protocol as the CLI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP (a SYN).
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (an echo request).
    Icmp,
    /// Any other IP protocol, by number.
    Other(u8),
}

impl Proto {
    /// `tcp`, `udp`, `icmp` or a protocol number.
    pub fn parse(s: &str) -> Result<Proto, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "6" => Ok(Proto::Tcp),
            "udp" | "17" => Ok(Proto::Udp),
            "icmp" | "1" => Ok(Proto::Icmp),
            n => n.parse::<u8>().map(Proto::Other).map_err(|_| {
                format!("unknown protocol {s:?}: tcp, udp, icmp or a protocol number (0-255)")
            }),
        }
    }

    fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
            Proto::Other(n) => n,
        }
    }
}

/// `POST /trace`'s body.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRequest {
    /// An ENI id or instance id on this host.
    pub from: String,
    /// `tcp`, `udp`, `icmp` or a number.
    pub protocol: String,
    /// The destination address.
    pub dst: Ipv4Addr,
    #[serde(default)]
    /// The destination port (tcp and udp).
    pub dst_port: Option<u16>,
    /// The source address (default: the ENI's primary address).
    #[serde(default)]
    pub src: Option<Ipv4Addr>,
    #[serde(default)]
    /// The source port (tcp and udp; default: an ephemeral one).
    pub src_port: Option<u16>,
}

/// `POST /trace/underlay`'s body.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnderlayRequest {
    /// The sending host's underlay address.
    pub src: Ipv4Addr,
    /// The VXLAN datagram (the UDP payload), hex.
    pub datagram: String,
}

fn bad(msg: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": msg.into() })),
    )
        .into_response()
}

/// The ENI `from` names on this host: an ENI id, or an instance id (its ENI whose address is
/// `src`, else its lowest device index).
pub fn find_port<'a>(
    ports: impl Iterator<Item = &'a LocalPort>,
    from: &str,
    src: Option<Ipv4Addr>,
) -> Option<&'a LocalPort> {
    let mut candidates: Vec<&LocalPort> = ports
        .filter(|p| p.spec.eni_id == from || p.spec.instance_id == from)
        .collect();
    candidates.sort_by_key(|p| p.spec.device_index);
    if let Some(src) = src {
        if let Some(p) = candidates
            .iter()
            .find(|p| p.spec.ip == src || p.spec.secondary_ips.contains(&src))
        {
            return Some(p);
        }
    }
    candidates.first().copied()
}

/// `POST /trace`.
pub async fn trace(State(state): State<Arc<AgentState>>, body: String) -> Response {
    let req: TraceRequest = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("bad trace request: {e}")),
    };
    let proto = match Proto::parse(&req.protocol) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    if matches!(proto, Proto::Tcp | Proto::Udp) && req.dst_port.is_none() {
        return bad(format!("{} needs a destination port", req.protocol));
    }
    let view = state.status.load();
    let Some(port) = find_port(view.ports.values(), &req.from, req.src) else {
        return (
            StatusCode::NOT_FOUND,
            Json(
                json!({ "error": format!("{} has no ENI on host {}", req.from, state.host_name) }),
            ),
        )
            .into_response();
    };
    let spec = &port.spec;
    let src = req.src.unwrap_or(spec.ip);
    let next_hop = if spec.subnet.contains(&req.dst) {
        req.dst
    } else {
        spec.gateway
    };
    let mut hops = Vec::new();
    // The instance's kernel resolves the next hop first.
    let arp = arp_request(spec.mac, src, next_hop);
    let arp_out = match on_datapath(&state, TraceInput::Port(port.port, arp)).await {
        Ok(o) => o,
        Err(e) => {
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": e }))).into_response()
        }
    };
    let answer = arp_out
        .frames
        .iter()
        .find(|(p, _)| *p == port.port)
        .and_then(|(_, f)| arp_answer(f, next_hop));
    let Some(dst_mac) = answer else {
        let mut hop = hop_json(&state, &arp_out, "arp");
        hop["verdict"] = json!({
            "kind": "drop",
            "reason": "no_arp_answer",
            "detail": format!("nothing answers ARP for {next_hop}: the instance cannot send"),
        });
        hops.push(hop);
        return Json(answer_json(&req, proto, src, port, hops)).into_response();
    };
    let frame = packet(spec.mac, dst_mac, src, &req, proto);
    let out = match on_datapath(&state, TraceInput::Port(port.port, frame)).await {
        Ok(o) => o,
        Err(e) => {
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": e }))).into_response()
        }
    };
    let mut hop = hop_json(&state, &out, "egress");
    hop["next_hop"] = json!({ "ip": next_hop.to_string(), "mac": mac_str(dst_mac) });
    hops.push(hop);
    Json(answer_json(&req, proto, src, port, hops)).into_response()
}

/// `POST /trace/underlay`.
pub async fn trace_underlay(State(state): State<Arc<AgentState>>, body: String) -> Response {
    let req: UnderlayRequest = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("bad trace request: {e}")),
    };
    let Some(datagram) = unhex(&req.datagram) else {
        return bad("datagram: not hex");
    };
    let out = match on_datapath(&state, TraceInput::Underlay(req.src, datagram)).await {
        Ok(o) => o,
        Err(e) => {
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": e }))).into_response()
        }
    };
    Json(json!({ "hops": [hop_json(&state, &out, "ingress")] })).into_response()
}

fn answer_json(
    req: &TraceRequest,
    proto: Proto,
    src: Ipv4Addr,
    port: &LocalPort,
    hops: Vec<Value>,
) -> Value {
    json!({
        "packet": {
            "from_eni": port.spec.eni_id,
            "from_instance": port.spec.instance_id,
            "protocol": proto.number(),
            "src": src.to_string(),
            "dst": req.dst.to_string(),
            "src_port": matches!(proto, Proto::Tcp | Proto::Udp).then_some(req.src_port.unwrap_or(DEFAULT_SRC_PORT)),
            "dst_port": req.dst_port,
        },
        "hops": hops,
    })
}

/// One host's part of a trace as JSON.
fn hop_json(state: &AgentState, out: &TraceOutput, stage: &str) -> Value {
    let t = &out.trace;
    let mut whys = t.why.iter().peekable();
    let layers: Vec<Value> = t
        .layers
        .iter()
        .map(|(id, decision)| {
            let why = match whys.peek() {
                Some((wid, _)) if wid == id => whys.next().map(|(_, w)| why_json(w)),
                _ => None,
            };
            let (decision, reason) = match decision {
                LayerDecision::Pass => ("pass", None),
                LayerDecision::Reply => ("reply", None),
                LayerDecision::Absorb(p) => ("absorb", Some(p.as_str())),
                LayerDecision::Drop(r) => ("drop", Some(r.as_str())),
            };
            json!({ "layer": id.as_str(), "decision": decision, "reason": reason, "why": why })
        })
        .collect();
    let eni_of = |p: PortId| out.table.eni_on_port(p).map(|e| e.eni_id.to_string());
    let verdict = match t.verdict {
        TraceVerdict::ToPort(p) => json!({ "kind": "to_port", "eni": eni_of(p) }),
        TraceVerdict::Reply(p) => json!({ "kind": "reply", "eni": eni_of(p) }),
        TraceVerdict::ToUnderlay(ip) => {
            let datagram = out
                .datagrams
                .iter()
                .find(|(d, _)| *d == ip)
                .map(|(_, b)| hex(b));
            json!({ "kind": "to_underlay", "host_ip": ip.to_string(), "datagram": datagram })
        }
        TraceVerdict::Absorb(p) => json!({ "kind": "absorb", "reason": p.as_str() }),
        TraceVerdict::Drop(r) => json!({ "kind": "drop", "reason": r.as_str() }),
    };
    json!({
        "host": state.host_name,
        "underlay_ip": state.underlay_ip.to_string(),
        "stage": stage,
        "layers": layers,
        "verdict": verdict,
    })
}

fn why_json(w: &Why) -> Value {
    let mut v = json!({ "text": w.to_string() });
    match w {
        Why::SecurityGroup { eni, rule, .. } => {
            v["eni"] = json!(eni.as_ref());
            v["rule"] = json!(rule.as_deref());
        }
        Why::NetworkAcl {
            subnet,
            acl,
            rule,
            allow,
            ..
        } => {
            v["subnet"] = json!(subnet.as_ref());
            v["acl"] = json!(acl.as_deref());
            v["rule"] = json!(rule.map(|r| match r {
                softvpc_engine::policy::nacl::AclRule::Number(n) => n.to_string(),
                softvpc_engine::policy::nacl::AclRule::Default => "*".to_string(),
            }));
            v["allow"] = json!(allow);
        }
        Why::Route {
            table,
            destination,
            target,
            pcx,
        } => {
            v["table"] = json!(table.as_deref());
            v["destination"] = json!(destination.map(|d| d.to_string()));
            v["target"] = json!(target.as_deref());
            v["pcx"] = json!(pcx.as_deref());
        }
        Why::Source { pcx, .. } => {
            v["pcx"] = json!(pcx.as_deref());
        }
    }
    v
}

fn mac_str(m: [u8; 6]) -> String {
    softvpc_mapping::record::format_mac(&m)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The ARP request an instance sends for `target`.
pub fn arp_request(mac: [u8; 6], src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: src,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

/// The MAC an ARP reply gives for `ip`.
pub fn arp_answer(frame: &[u8], ip: Ipv4Addr) -> Option<[u8; 6]> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    match ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()? {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr,
            source_protocol_addr,
            ..
        } if source_protocol_addr == ip => Some(source_hardware_addr.0),
        _ => None,
    }
}

/// The IPv4 frame an instance sends: a TCP SYN, a UDP datagram, an ICMP echo request or an
/// empty packet of another protocol, TTL 64.
pub fn packet(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    req: &TraceRequest,
    proto: Proto,
) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let sport = req.src_port.unwrap_or(DEFAULT_SRC_PORT);
    let dport = req.dst_port.unwrap_or(0);
    let (s, d) = (src, req.dst);
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: dport,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1),
        ack_number: None,
        window_len: 64240,
        window_scale: None,
        max_seg_size: Some(1410),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let udp = UdpRepr {
        src_port: sport,
        dst_port: dport,
    };
    let icmp = Icmpv4Repr::EchoRequest {
        ident: 0x7472,
        seq_no: 1,
        data: PAYLOAD,
    };
    let l4_len = match proto {
        Proto::Tcp => tcp.buffer_len(),
        Proto::Udp => udp.header_len() + PAYLOAD.len(),
        Proto::Icmp => icmp.buffer_len(),
        Proto::Other(_) => 0,
    };
    let ip = Ipv4Repr {
        src_addr: s,
        dst_addr: d,
        next_header: IpProtocol::from(proto.number()),
        payload_len: l4_len,
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + l4_len];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut ipp = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut ipp, &caps);
    let payload = ipp.payload_mut();
    match proto {
        Proto::Tcp => tcp.emit(
            &mut TcpPacket::new_unchecked(payload),
            &s.into(),
            &d.into(),
            &caps,
        ),
        Proto::Udp => udp.emit(
            &mut UdpPacket::new_unchecked(payload),
            &s.into(),
            &d.into(),
            PAYLOAD.len(),
            |b| b.copy_from_slice(PAYLOAD),
            &caps,
        ),
        Proto::Icmp => icmp.emit(&mut Icmpv4Packet::new_unchecked(payload), &caps),
        Proto::Other(_) => {}
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use softvpc_wire::FrameMeta;

    #[test]
    fn built_packets_parse_as_valid_ipv4_with_their_ports() {
        for (proto, name) in [
            (Proto::Tcp, "tcp"),
            (Proto::Udp, "udp"),
            (Proto::Icmp, "icmp"),
            (Proto::Other(47), "47"),
        ] {
            let req = TraceRequest {
                from: "i-1".into(),
                protocol: name.into(),
                dst: Ipv4Addr::new(10, 0, 0, 185),
                dst_port: Some(22),
                src: None,
                src_port: Some(40000),
            };
            let f = packet([2; 6], [4; 6], Ipv4Addr::new(10, 0, 0, 148), &req, proto);
            let meta = FrameMeta::parse(&f).unwrap();
            let ip = meta.ipv4().unwrap();
            assert!(ip.valid, "{name}");
            assert_eq!(u8::from(ip.proto), proto.number());
            let key = meta.flow_key().unwrap();
            assert_eq!(key.dst, Ipv4Addr::new(10, 0, 0, 185));
            if matches!(proto, Proto::Tcp | Proto::Udp) {
                assert_eq!(
                    key.l4,
                    softvpc_wire::L4Key::Ports {
                        src: 40000,
                        dst: 22
                    },
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn arp_request_and_answer_round_trip() {
        let req = arp_request(
            [2; 6],
            Ipv4Addr::new(10, 0, 0, 5),
            Ipv4Addr::new(10, 0, 0, 1),
        );
        assert_eq!(arp_answer(&req, Ipv4Addr::new(10, 0, 0, 1)), None);
        assert!(Proto::parse("gre").is_err());
        assert_eq!(Proto::parse("TCP"), Ok(Proto::Tcp));
        assert_eq!(unhex(&hex(&[1, 0xab, 255])), Some(vec![1, 0xab, 255]));
        assert_eq!(unhex("zz"), None);
    }
}
