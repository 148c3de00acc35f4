//! Security-group evaluation: the stateful, allow-only union of every group on an ENI.
//!
//! The inputs are plain rules ([`SgRule`], what AWS's `IpPermission` says once split into one
//! rule per peer) that the mapping service can carry to the host. [`CompiledGroups::compile`]
//! turns the rules of all groups of one ENI into a decision structure; [`CompiledGroups::evaluate`]
//! answers, for the first packet of a flow, which `sgr-` rule allows it (or that none does) and
//! whether the flow is tracked. Connection tracking itself (replies pass) is the
//! [`firewall`](crate::firewall)'s job.
//!
//! Matching as AWS's: protocol `-1` is all traffic (ports ignored); TCP and UDP match the
//! destination port of the new flow against the range; ICMP matches type and code (`-1`: any);
//! other protocol numbers have no ports. An ingress rule's peer is the source, an egress rule's
//! the destination: a CIDR, or a referenced group, which matches the private addresses of the
//! ENIs in that group (the caller provides them through [`Members`]).
//!
//! Untracked flows (AWS, "Untracked connections"): a TCP or UDP flow allowed by a rule for
//! `0.0.0.0/0` is not tracked when the other direction has a rule for `0.0.0.0/0` that allows
//! every port of that protocol (or all traffic). Its replies are then allowed by that rule, not
//! by tracking. ICMP and other protocols are always tracked.
//!
//! The decision structure: per direction and protocol (TCP, UDP, ICMP, other numbers, all), a
//! prefix trie of the CIDR peers whose values are the port ranges sorted by their start with a
//! running maximum of their ends, and a list of the referenced groups with theirs. A lookup
//! walks the (at most 33) prefixes covering the address and finds a covering range in O(log n)
//! plus the overlapping ranges; 1,000 rules cost about what 10 do (see `benches/policy.rs`).

use core::net::Ipv4Addr;
use std::collections::{HashMap, HashSet};

use ipnet::Ipv4Net;
use prefix_trie::PrefixMap;

use crate::packet::{Direction, Packet, ICMP, TCP, UDP};
use crate::Generation;

/// A rule's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `-1`: all traffic.
    All,
    /// One IP protocol number (`tcp` is 6, `udp` 17, `icmp` 1).
    Number(u8),
}

impl Protocol {
    /// AWS's spelling: `tcp`, `udp`, `icmp`, `-1`/`all`, or a number 0..=255.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.to_ascii_lowercase().as_str() {
            "-1" | "all" => Some(Protocol::All),
            "tcp" => Some(Protocol::Number(TCP)),
            "udp" => Some(Protocol::Number(UDP)),
            "icmp" => Some(Protocol::Number(ICMP)),
            n => n.parse::<u8>().ok().map(Protocol::Number),
        }
    }
}

/// What a rule matches beyond the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ports {
    /// Every port (all traffic, or a protocol without ports).
    Any,
    /// TCP/UDP destination ports `from..=to`.
    Range {
        /// First port.
        from: u16,
        /// Last port.
        to: u16,
    },
    /// ICMP type and code; `None` is any.
    Icmp {
        /// ICMP type, or any.
        ty: Option<u8>,
        /// ICMP code, or any (only with a type).
        code: Option<u8>,
    },
}

impl Ports {
    /// The rule as an inclusive range of [`Packet::match_port`] values.
    fn span(self) -> (u16, u16) {
        match self {
            Ports::Any | Ports::Icmp { ty: None, .. } => (0, u16::MAX),
            Ports::Range { from, to } => (from, to),
            Ports::Icmp {
                ty: Some(t),
                code: None,
            } => (u16::from(t) << 8, u16::from(t) << 8 | 0xff),
            Ports::Icmp {
                ty: Some(t),
                code: Some(c),
            } => {
                let v = u16::from(t) << 8 | u16::from(c);
                (v, v)
            }
        }
    }
}

/// Whom a rule allows: the source of ingress, the destination of egress.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    /// An IPv4 CIDR.
    Cidr(Ipv4Net),
    /// A referenced group (`sg-...`): the private addresses of the ENIs that have it.
    Group(String),
    /// A managed prefix list (`pl-...`) as the mapping service carries it. The holder of the
    /// list's entries expands it into one [`Peer::Cidr`] rule per entry (same rule id) before
    /// compiling; unexpanded it matches nothing, so an unknown list can only allow less.
    PrefixList(String),
}

/// One rule of one group, one peer: a plain input the mapping service can carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SgRule {
    /// The `sgr-` id: what the decision names.
    pub id: String,
    /// The group the rule belongs to.
    pub group_id: String,
    /// Ingress or egress.
    pub direction: Direction,
    /// Protocol.
    pub protocol: Protocol,
    /// Ports or ICMP type/code.
    pub ports: Ports,
    /// Source (ingress) or destination (egress).
    pub peer: Peer,
}

/// A rule whose AWS fields do not make sense together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError(pub String);

impl core::fmt::Display for RuleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuleError {}

impl SgRule {
    /// A rule from AWS's fields as the API stores them: `protocol` as AWS reports it, and
    /// `FromPort`/`ToPort` (for ICMP: type and code, `-1` for any).
    pub fn from_aws(
        id: &str,
        group_id: &str,
        direction: Direction,
        protocol: &str,
        from_port: Option<i32>,
        to_port: Option<i32>,
        peer: Peer,
    ) -> Result<SgRule, RuleError> {
        let protocol = Protocol::parse(protocol)
            .ok_or_else(|| RuleError(format!("invalid protocol {protocol:?}")))?;
        let port = |v: i32| u16::try_from(v).map_err(|_| RuleError(format!("invalid port {v}")));
        let icmp = |v: Option<i32>| -> Result<Option<u8>, RuleError> {
            match v {
                None | Some(-1) => Ok(None),
                Some(v) => u8::try_from(v)
                    .map(Some)
                    .map_err(|_| RuleError(format!("invalid ICMP type or code {v}"))),
            }
        };
        let ports = match protocol {
            Protocol::Number(TCP | UDP) => match (from_port, to_port) {
                (None, None) | (Some(-1), Some(-1)) => Ports::Any,
                (Some(f), Some(t)) if f <= t => Ports::Range {
                    from: port(f)?,
                    to: port(t)?,
                },
                (f, t) => return Err(RuleError(format!("invalid port range {f:?}..{t:?}"))),
            },
            Protocol::Number(ICMP) => {
                let ty = icmp(from_port)?;
                let code = if ty.is_some() { icmp(to_port)? } else { None };
                Ports::Icmp { ty, code }
            }
            _ => Ports::Any,
        };
        Ok(SgRule {
            id: id.to_string(),
            group_id: group_id.to_string(),
            direction,
            protocol,
            ports,
            peer,
        })
    }

    /// True when this rule allows `pkt` crossing in `dir` (the reference semantics the compiled
    /// structure must agree with).
    pub fn matches(&self, pkt: &Packet, dir: Direction, members: &impl Members) -> bool {
        if self.direction != dir {
            return false;
        }
        protocol_matches(self.protocol, self.ports, pkt)
            && match &self.peer {
                Peer::Cidr(c) => c.contains(&pkt.remote(dir)),
                Peer::Group(g) => members.contains(g, pkt.remote(dir)),
                Peer::PrefixList(_) => false,
            }
    }
}

/// True when `pkt` is of `protocol` and within `ports` (AWS's matching, shared with network
/// ACL entries): all traffic ignores ports; a packet without readable ports matches only a
/// rule for every port.
pub(crate) fn protocol_matches(protocol: Protocol, ports: Ports, pkt: &Packet) -> bool {
    match protocol {
        Protocol::All => true,
        Protocol::Number(p) if p != pkt.proto => false,
        Protocol::Number(_) => {
            let (lo, hi) = ports.span();
            match pkt.match_port() {
                Some(v) => (lo..=hi).contains(&v),
                None => (lo, hi) == (0, u16::MAX),
            }
        }
    }
}

/// The private addresses of the ENIs that have a group (same VPC or a peered one), as the
/// mapping service tells the host.
pub trait Members {
    /// True when `addr` belongs to an ENI that has `group_id`.
    fn contains(&self, group_id: &str, addr: Ipv4Addr) -> bool;
}

/// Members as a plain map from group id to addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMembers(pub HashMap<String, HashSet<Ipv4Addr>>);

impl Members for GroupMembers {
    fn contains(&self, group_id: &str, addr: Ipv4Addr) -> bool {
        self.0.get(group_id).is_some_and(|s| s.contains(&addr))
    }
}

/// The index of a rule in [`CompiledGroups::rules`].
pub type RuleIdx = u32;

/// The decision for the first packet of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SgVerdict {
    /// A rule allows it.
    Allow {
        /// The rule ([`CompiledGroups::rule`]).
        rule: RuleIdx,
        /// False for AWS's untracked case: the flow needs no conntrack entry.
        tracked: bool,
    },
    /// No rule of any group allows it.
    Deny,
}

/// Port ranges sorted by start, with the running maximum of the ends.
#[derive(Debug, Clone, Default)]
struct Ranges {
    items: Vec<(u16, u16, RuleIdx)>,
    max_hi: Vec<u16>,
}

impl Ranges {
    fn push(&mut self, span: (u16, u16), rule: RuleIdx) {
        self.items.push((span.0, span.1, rule));
    }

    fn seal(&mut self) {
        self.items.sort_unstable();
        let mut m = 0;
        self.max_hi = self
            .items
            .iter()
            .map(|&(_, hi, _)| {
                m = m.max(hi);
                m
            })
            .collect();
    }

    /// A rule whose range holds `port` (`None`: only a full range does).
    fn find(&self, port: Option<u16>) -> Option<RuleIdx> {
        let Some(port) = port else {
            return self
                .items
                .iter()
                .find(|&&(lo, hi, _)| (lo, hi) == (0, u16::MAX))
                .map(|&(_, _, r)| r);
        };
        let end = self.items.partition_point(|&(lo, _, _)| lo <= port);
        for i in (0..end).rev() {
            if self.max_hi[i] < port {
                return None;
            }
            let (_, hi, r) = self.items[i];
            if hi >= port {
                return Some(r);
            }
        }
        None
    }
}

/// The rules of one direction and one protocol key.
#[derive(Debug, Clone, Default)]
struct Bucket {
    cidrs: PrefixMap<Ipv4Net, Ranges>,
    groups: Vec<(String, Ranges)>,
}

impl Bucket {
    fn find(&self, addr: Ipv4Addr, port: Option<u16>, members: &impl Members) -> Option<RuleIdx> {
        let host = Ipv4Net::from(addr);
        self.cidrs
            .cover_values(&host)
            .find_map(|r| r.find(port))
            .or_else(|| {
                self.groups
                    .iter()
                    .filter(|(g, _)| members.contains(g, addr))
                    .find_map(|(_, r)| r.find(port))
            })
    }
}

/// One direction's buckets.
#[derive(Debug, Clone, Default)]
struct DirIndex {
    /// Rules of protocol `-1`.
    all: Bucket,
    /// Rules of one protocol number.
    by_proto: HashMap<u8, Bucket, foldhash::fast::FixedState>,
}

/// The rules of every group on one ENI, compiled. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct CompiledGroups {
    generation: Generation,
    rules: Vec<SgRule>,
    dirs: [DirIndex; 2],
    /// Per direction, for TCP and UDP: the `0.0.0.0/0` rule opening every port, if any.
    open: [[Option<RuleIdx>; 2]; 2],
    /// Per direction, for TCP and UDP: the port ranges of the `0.0.0.0/0` rules (all-traffic
    /// ones included).
    world: [[Ranges; 2]; 2],
}

/// 0 for TCP, 1 for UDP: the protocols that can be untracked.
fn pi(proto: u8) -> Option<usize> {
    match proto {
        TCP => Some(0),
        UDP => Some(1),
        _ => None,
    }
}

fn di(dir: Direction) -> usize {
    match dir {
        Direction::Egress => 0,
        Direction::Ingress => 1,
    }
}

impl CompiledGroups {
    /// Compiles the rules of all groups on an ENI (the union: order does not matter).
    pub fn compile(
        rules: impl IntoIterator<Item = SgRule>,
        generation: Generation,
    ) -> CompiledGroups {
        let rules: Vec<SgRule> = rules.into_iter().collect();
        let mut dirs: [DirIndex; 2] = Default::default();
        for (i, rule) in rules.iter().enumerate() {
            let idx = RuleIdx::try_from(i).unwrap_or(RuleIdx::MAX);
            let d = &mut dirs[di(rule.direction)];
            let (bucket, span) = match rule.protocol {
                Protocol::All => (&mut d.all, (0, u16::MAX)),
                Protocol::Number(p) => (d.by_proto.entry(p).or_default(), rule.ports.span()),
            };
            match &rule.peer {
                Peer::Cidr(c) => bucket.cidrs.entry(c.trunc()).or_default().push(span, idx),
                Peer::Group(g) => match bucket.groups.iter_mut().find(|(x, _)| x == g) {
                    Some((_, r)) => r.push(span, idx),
                    None => {
                        let mut r = Ranges::default();
                        r.push(span, idx);
                        bucket.groups.push((g.clone(), r));
                    }
                },
                // Unexpanded: matches nothing (see `Peer::PrefixList`).
                Peer::PrefixList(_) => {}
            }
        }
        for d in &mut dirs {
            for b in std::iter::once(&mut d.all).chain(d.by_proto.values_mut()) {
                b.cidrs.values_mut().for_each(Ranges::seal);
                b.groups.iter_mut().for_each(|(_, r)| r.seal());
            }
        }
        let mut open = [[None; 2]; 2];
        let mut world: [[Ranges; 2]; 2] = Default::default();
        for (d, dir) in dirs.iter().enumerate() {
            for (p, proto) in [TCP, UDP].into_iter().enumerate() {
                let w = &mut world[d][p];
                for b in [Some(&dir.all), dir.by_proto.get(&proto)]
                    .into_iter()
                    .flatten()
                {
                    if let Some(r) = b.cidrs.get(&Ipv4Net::default()) {
                        w.items.extend_from_slice(&r.items);
                    }
                }
                w.seal();
                open[d][p] = w.find(None);
            }
        }
        CompiledGroups {
            generation,
            rules,
            dirs,
            open,
            world,
        }
    }

    /// The generation the rules were compiled under.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Every rule, in the order given.
    pub fn rules(&self) -> &[SgRule] {
        &self.rules
    }

    /// One rule by index.
    pub fn rule(&self, idx: RuleIdx) -> Option<&SgRule> {
        self.rules.get(idx as usize)
    }

    fn allowed(&self, pkt: &Packet, dir: Direction, members: &impl Members) -> Option<RuleIdx> {
        let d = &self.dirs[di(dir)];
        let addr = pkt.remote(dir);
        let port = pkt.match_port();
        d.by_proto
            .get(&pkt.proto)
            .and_then(|b| b.find(addr, port, members))
            .or_else(|| d.all.find(addr, None, members))
    }

    /// AWS's untracked case for `pkt` in `dir`: allowed by a `0.0.0.0/0` rule while the other
    /// direction is open to `0.0.0.0/0` on every port, or a reply of such a flow. The rule that
    /// allows this packet.
    fn untracked(&self, pkt: &Packet, dir: Direction) -> Option<RuleIdx> {
        let p = pi(pkt.proto)?;
        let crate::packet::L4::Ports { src, dst } = pkt.l4 else {
            return None;
        };
        let (d, r) = (di(dir), di(dir.reverse()));
        // A new untracked flow in `dir`.
        if self.open[r][p].is_some() {
            if let Some(rule) = self.world[d][p].find(Some(dst)) {
                return Some(rule);
            }
        }
        // The reply of an untracked flow opened the other way: its destination port was our
        // source port, and this direction is open on every port.
        let open = self.open[d][p]?;
        self.world[r][p].find(Some(src)).map(|_| open)
    }

    /// Decides the first packet of a flow crossing the ENI in `dir`.
    pub fn evaluate(&self, pkt: &Packet, dir: Direction, members: &impl Members) -> SgVerdict {
        if let Some(rule) = self.untracked(pkt, dir) {
            return SgVerdict::Allow {
                rule,
                tracked: false,
            };
        }
        match self.allowed(pkt, dir, members) {
            Some(rule) => SgVerdict::Allow {
                rule,
                tracked: true,
            },
            None => SgVerdict::Deny,
        }
    }
}

#[cfg(test)]
mod tests;
