//! DNS answered by the VPC router on the host (AWS's AmazonProvidedDNS, the Route 53 Resolver),
//! at the VPC's base + 2 and at 169.254.169.253, from the mapping the host holds. DNS never
//! crosses the underlay: the gateway layer takes every UDP query to those addresses (port 53)
//! off the sender's port and answers on that port, or hands it to the shell to forward.
//!
//! The wire format is `hickory-proto`'s; this module decides ([`resolve`], pure, fuzzed and
//! property-tested), frames answers ([`emit`]) and multiplexes forwarded queries over one
//! upstream socket ([`Forwarder`], also sans-IO: the shell owns the socket and the clock).
//!
//! | question | answer |
//! | --- | --- |
//! | A `ip-10-0-0-148.<private domain>` (an RFC 1918 address) | that address, as AWS's IP names |
//! | other types of such a name | NOERROR, no records |
//! | A/PTR under the private domain that is no IP name | NXDOMAIN |
//! | PTR `148.0.0.10.in-addr.arpa` in a VPC CIDR, `enableDnsHostnames` on | `ip-10-0-0-148.<domain>` |
//! | A `ec2-203-0-113-25.compute-1.amazonaws.com` of an ENI of the VPC, hostnames on | its private address (split horizon) |
//! | anything else | forwarded to the agent's upstream, SERVFAIL without one |
//!
//! With `enableDnsSupport` off nothing is answered (dropped, `dns_disabled`). A message that is
//! not a query with one question gets FORMERR (NOTIMP for another opcode); one too short to
//! have a header, or a response, is dropped and counted (`dns_invalid`).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use ipnet::Ipv4Net;
use smoltcp::phy::ChecksumCapabilities;
use softvpc_wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet,
    Ipv4Repr, UdpPacket, UdpRepr,
};

use crate::mapping::{Mac, Vni};
use crate::PortId;

/// The DNS port.
pub const PORT: u16 = 53;
/// The resolver's link-local address (AWS's 169.254.169.253).
pub const LINK_LOCAL: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 253);
/// TTL of the records the router answers itself (AWS gives 60 s for private names).
pub const TTL: u32 = 60;
/// The largest DNS message the router frames back (an instance's 9001-byte MTU minus the IPv4
/// and UDP headers).
pub const MAX_MESSAGE: usize = 9001 - 28;
/// TTL of the router's answers.
const IP_TTL: u8 = 64;

/// What the router knows to answer for one VPC.
#[derive(Debug, Clone, Copy)]
pub struct Zone<'a> {
    /// The region's private domain (`ec2.internal`).
    pub private_domain: &'a str,
    /// The region (for public names outside us-east-1).
    pub region: &'a str,
    /// The VPC's CIDR blocks.
    pub cidrs: &'a [Ipv4Net],
    /// `enableDnsHostnames`: public names and reverse zones.
    pub hostnames: bool,
    /// Whether an upstream resolver is set (else SERVFAIL for what the router does not know).
    pub upstream: bool,
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Send this DNS message back to the client.
    Answer(Vec<u8>),
    /// Forward the query, as it came, to the upstream resolver.
    Forward,
}

/// A message the router neither answers nor forwards: dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// Decides what to do with `payload` (a UDP payload sent to the resolver). `public` maps a
/// public address to the private address of the VPC's ENI holding it, if any.
pub fn resolve(
    payload: &[u8],
    zone: &Zone<'_>,
    public: &dyn Fn(Ipv4Addr) -> Option<Ipv4Addr>,
) -> Result<Resolution, Invalid> {
    if payload.len() < 12 {
        return Err(Invalid);
    }
    if payload[2] & 0x80 != 0 {
        // A response: nobody asked.
        return Err(Invalid);
    }
    let id = u16::from_be_bytes([payload[0], payload[1]]);
    let query = match Message::from_vec(payload) {
        Ok(m) => m,
        Err(_) => return encode(error(id, OpCode::Query, false, ResponseCode::FormErr)),
    };
    let rd = query.metadata.recursion_desired;
    if query.metadata.op_code != OpCode::Query {
        return encode(error(id, query.metadata.op_code, rd, ResponseCode::NotImp));
    }
    let [question] = &query.queries[..] else {
        return encode(error(id, OpCode::Query, rd, ResponseCode::FormErr));
    };
    let mut reply = error(id, OpCode::Query, rd, ResponseCode::NoError);
    reply.add_query(question.clone());
    if question.query_class() != DNSClass::IN {
        reply.metadata.response_code = ResponseCode::Refused;
        return encode(reply);
    }
    match lookup(question, zone, public) {
        Lookup::Records(records) => {
            reply.metadata.authoritative = true;
            reply.add_answers(records);
        }
        Lookup::NxDomain => {
            reply.metadata.authoritative = true;
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        Lookup::Unknown if zone.upstream => return Ok(Resolution::Forward),
        Lookup::Unknown => reply.metadata.response_code = ResponseCode::ServFail,
    }
    encode(reply)
}

enum Lookup {
    Records(Vec<Record>),
    NxDomain,
    Unknown,
}

fn error(id: u16, op: OpCode, rd: bool, code: ResponseCode) -> Message {
    let mut m = Message::error_msg(id, op, code);
    m.metadata.recursion_desired = rd;
    m.metadata.recursion_available = true;
    m
}

fn encode(m: Message) -> Result<Resolution, Invalid> {
    m.to_vec().map(Resolution::Answer).map_err(|_| Invalid)
}

/// The labels of `name`, lowercased, without the root.
fn labels(name: &Name) -> Vec<String> {
    name.iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect()
}

/// `ip-10-0-0-148` (or `ec2-…` with `prefix` "ec2-") -> 10.0.0.148.
fn dashed_ip(label: &str, prefix: &str) -> Option<Ipv4Addr> {
    let rest = label.strip_prefix(prefix)?;
    let mut octets = [0u8; 4];
    let mut parts = rest.split('-');
    for o in octets.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// The private IP name of `ip` in `domain`: `ip-10-0-0-148.ec2.internal.`.
pub fn private_name(ip: Ipv4Addr, domain: &str) -> String {
    let [a, b, c, d] = ip.octets();
    format!("ip-{a}-{b}-{c}-{d}.{domain}.")
}

/// The public DNS name of `ip` in `region`: `ec2-203-0-113-25.compute-1.amazonaws.com` in
/// us-east-1, `ec2-….<region>.compute.amazonaws.com` elsewhere.
pub fn public_name(ip: Ipv4Addr, region: &str) -> String {
    let [a, b, c, d] = ip.octets();
    if region == "us-east-1" {
        format!("ec2-{a}-{b}-{c}-{d}.compute-1.amazonaws.com.")
    } else {
        format!("ec2-{a}-{b}-{c}-{d}.{region}.compute.amazonaws.com.")
    }
}

fn lookup(q: &Query, zone: &Zone<'_>, public: &dyn Fn(Ipv4Addr) -> Option<Ipv4Addr>) -> Lookup {
    let name = q.name();
    let labels = labels(name);
    let domain: Vec<&str> = zone.private_domain.split('.').collect();
    let a = |ip: Ipv4Addr| {
        if q.query_type() == RecordType::A {
            Lookup::Records(vec![Record::from_rdata(name.clone(), TTL, RData::A(A(ip)))])
        } else {
            Lookup::Records(Vec::new())
        }
    };
    // The private domain: IP names.
    if labels.len() == domain.len() + 1 && labels[1..].iter().eq(domain.iter()) {
        return match dashed_ip(&labels[0], "ip-") {
            Some(ip) if ip.is_private() => a(ip),
            _ => Lookup::NxDomain,
        };
    }
    // Public names of the VPC's instances resolve to their private addresses inside it.
    if zone.hostnames {
        let public_suffix: Vec<String> = public_name(Ipv4Addr::UNSPECIFIED, zone.region)
            .trim_end_matches('.')
            .split('.')
            .skip(1)
            .map(str::to_string)
            .collect();
        if labels.len() == public_suffix.len() + 1 && labels[1..] == public_suffix[..] {
            if let Some(private) = dashed_ip(&labels[0], "ec2-").and_then(public) {
                return a(private);
            }
            return Lookup::Unknown;
        }
        // Reverse: the VPC's own CIDRs.
        if labels.len() == 6 && labels[4] == "in-addr" && labels[5] == "arpa" {
            let octets: Option<Vec<u8>> =
                labels[..4].iter().rev().map(|l| l.parse().ok()).collect();
            if let Some(o) = octets {
                let ip = Ipv4Addr::new(o[0], o[1], o[2], o[3]);
                if zone.cidrs.iter().any(|c| c.contains(&ip)) {
                    if q.query_type() != RecordType::PTR {
                        return Lookup::Records(Vec::new());
                    }
                    return match Name::from_ascii(private_name(ip, zone.private_domain)) {
                        Ok(target) => Lookup::Records(vec![Record::from_rdata(
                            name.clone(),
                            TTL,
                            RData::PTR(PTR(target)),
                        )]),
                        Err(_) => Lookup::Unknown,
                    };
                }
            }
        }
    }
    Lookup::Unknown
}

/// Where a query came from, so that its forwarded answer goes back to the asker: carried
/// through the shell with the forwarded query and handed back with the upstream's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Asker {
    /// The asking ENI's port.
    pub port: PortId,
    /// Its VPC.
    pub vni: Vni,
    /// Its MAC.
    pub mac: Mac,
    /// Its address (the query's source).
    pub ip: Ipv4Addr,
    /// The query's source port.
    pub src_port: u16,
    /// The resolver address it asked (base + 2 or 169.254.169.253): the answer's source.
    pub server: Ipv4Addr,
}

/// An answer to frame: from `asker.server:53` to `asker.ip:src_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsReply {
    /// The VPC router's MAC (the answer's source).
    pub router_mac: Mac,
    /// Who asked.
    pub asker: Asker,
    /// The DNS message.
    pub payload: Vec<u8>,
}

/// The length of the frame carrying `reply`.
pub(crate) fn frame_len(reply: &DnsReply) -> usize {
    14 + 20 + 8 + reply.payload.len()
}

/// Writes the Ethernet + IPv4 + UDP frame of `reply` into `buf` ([`frame_len`] bytes).
pub(crate) fn emit(buf: &mut [u8], reply: &DnsReply) {
    let a = &reply.asker;
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(buf);
    EthernetRepr {
        src_addr: EthernetAddress(reply.router_mac),
        dst_addr: EthernetAddress(a.mac),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut frame);
    let mut ip = Ipv4Packet::new_unchecked(frame.payload_mut());
    Ipv4Repr {
        src_addr: a.server,
        dst_addr: a.ip,
        next_header: IpProtocol::Udp,
        payload_len: 8 + reply.payload.len(),
        hop_limit: IP_TTL,
    }
    .emit(&mut ip, &caps);
    let mut packet = UdpPacket::new_unchecked(ip.payload_mut());
    UdpRepr {
        src_port: PORT,
        dst_port: a.src_port,
    }
    .emit(
        &mut packet,
        &a.server.into(),
        &a.ip.into(),
        reply.payload.len(),
        |b| b.copy_from_slice(&reply.payload),
        &caps,
    );
}

/// SERVFAIL for `query` (a query the upstream did not answer), or `None` when it is no query.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let m = Message::from_vec(query).ok()?;
    let mut reply = error(
        m.metadata.id,
        m.metadata.op_code,
        m.metadata.recursion_desired,
        ResponseCode::ServFail,
    );
    reply.add_queries(m.queries);
    reply.to_vec().ok()
}

/// Whether `payload` is an answer the router may pass back to an asker: a DNS response that
/// decodes and fits an instance's MTU.
pub fn is_answer(payload: &[u8]) -> bool {
    payload.len() <= MAX_MESSAGE
        && payload.len() >= 12
        && payload[2] & 0x80 != 0
        && Message::from_vec(payload).is_ok()
}

/// Multiplexes forwarded queries over one upstream socket (sans-IO): each query gets a fresh
/// 16-bit id, the upstream's answer is matched by id and by question and gets the asker's id
/// back. Bounded: at most [`Forwarder::LIMIT`] queries in flight; one unanswered after
/// [`Forwarder::TIMEOUT`] is handed back by [`Forwarder::expired`] (the engine answers it
/// SERVFAIL, as a resolver whose upstream fails does).
#[derive(Debug, Default)]
pub struct Forwarder {
    next_id: u16,
    pending: HashMap<u16, Pending>,
}

#[derive(Debug)]
struct Pending {
    asker: Asker,
    id: u16,
    question: Vec<u8>,
    query: Vec<u8>,
    at: Instant,
}

/// The question section's bytes (after the 12-byte header, up to the end of the first
/// question), to match an answer to its query.
fn question_bytes(msg: &[u8]) -> Option<&[u8]> {
    let mut i = 12;
    loop {
        let len = usize::from(*msg.get(i)?);
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        i += 1 + len;
    }
    msg.get(12..i + 4)
}

impl Forwarder {
    /// Queries in flight at most.
    pub const LIMIT: usize = 4096;
    /// How long a forwarded query waits for its answer.
    pub const TIMEOUT: Duration = Duration::from_secs(2);

    /// Queries in flight.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no query is in flight.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The bytes to send upstream for `query` from `asker`, or `None` when too many are in
    /// flight or the query has no question.
    pub fn send(&mut self, now: Instant, asker: Asker, query: &[u8]) -> Option<Vec<u8>> {
        if self.pending.len() >= Self::LIMIT {
            return None;
        }
        let question = question_bytes(query)?.to_vec();
        let mut id = self.next_id;
        while self.pending.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_id = id.wrapping_add(1);
        let mut out = query.to_vec();
        let orig = u16::from_be_bytes([out[0], out[1]]);
        out[..2].copy_from_slice(&id.to_be_bytes());
        self.pending.insert(
            id,
            Pending {
                asker,
                id: orig,
                question,
                query: query.to_vec(),
                at: now,
            },
        );
        Some(out)
    }

    /// The asker and the answer (with the asker's id) for `answer` from upstream, or `None`
    /// when it answers no pending query.
    pub fn receive(&mut self, _now: Instant, answer: &[u8]) -> Option<(Asker, Vec<u8>)> {
        let id = u16::from_be_bytes([*answer.first()?, *answer.get(1)?]);
        let p = self.pending.get(&id)?;
        if question_bytes(answer).map(|q| q.eq_ignore_ascii_case(&p.question)) != Some(true) {
            return None;
        }
        let p = self.pending.remove(&id)?;
        let mut out = answer.to_vec();
        out[..2].copy_from_slice(&p.id.to_be_bytes());
        Some((p.asker, out))
    }

    /// The queries that waited [`Forwarder::TIMEOUT`] without an answer, with their askers
    /// (each the query as the asker sent it), forgotten from now on.
    pub fn expired(&mut self, now: Instant) -> Vec<(Asker, Vec<u8>)> {
        let mut out = Vec::new();
        self.pending.retain(|_, p| {
            if now.saturating_duration_since(p.at) < Self::TIMEOUT {
                return true;
            }
            out.push((p.asker, std::mem::take(&mut p.query)));
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            dashed_ip("ip-10-0-0-148", "ip-"),
            Some(Ipv4Addr::new(10, 0, 0, 148))
        );
        assert_eq!(dashed_ip("ip-10-0-0-1480", "ip-"), None);
        assert_eq!(dashed_ip("ip-10-0-0", "ip-"), None);
        assert_eq!(dashed_ip("ip-10-0-0-1-2", "ip-"), None);
        assert_eq!(dashed_ip("ip-+1-0-0-1", "ip-"), None);
        assert_eq!(
            public_name(Ipv4Addr::new(203, 0, 113, 25), "us-east-1"),
            "ec2-203-0-113-25.compute-1.amazonaws.com."
        );
        assert_eq!(
            public_name(Ipv4Addr::new(203, 0, 113, 25), "eu-west-1"),
            "ec2-203-0-113-25.eu-west-1.compute.amazonaws.com."
        );
    }
}
