//! The security-group layer's verdict for one ENI: connection tracking first, then the rules.
//!
//! Per packet crossing the ENI in either direction:
//! 1. An ICMP error whose quote belongs to a tracked connection passes ([`Allowed::Related`]).
//! 2. A packet of a tracked connection passes, in both directions, whatever the rules say now
//!    ([`Allowed::Tracked`]): AWS does not cut a tracked connection when a rule is removed.
//! 3. Otherwise the groups decide ([`CompiledGroups::evaluate`]). Allowed and tracked: a
//!    conntrack entry is made; if the ENI's table is full the packet is refused
//!    ([`Denied::ConntrackFull`], counted in the table's stats). Allowed and untracked (AWS's
//!    all-open case): passes with no entry, so removing the rule cuts it at once.
//!
//! A conntrack entry caches the rule that opened the connection with the [`Generation`](crate::Generation) of the
//! groups; after a change the rule is looked up again, once per connection, so flow logs and
//! `softvpc trace` name a rule that exists (or none, when the connection lives on by tracking
//! alone).

use std::sync::Arc;
use std::time::Instant;

use crate::conntrack::{ConnTrack, Stats, Timeouts};
use crate::packet::{Direction, Packet};
use crate::secgroup::{CompiledGroups, Members, RuleIdx, SgVerdict};

/// Why a packet passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Part of a tracked connection; `rule` is the rule that allows its opening packet under the
    /// current rules, if any still does.
    Tracked {
        /// Against the opener's direction.
        reply: bool,
        /// The rule, if one still allows the connection's opening direction.
        rule: Option<RuleIdx>,
    },
    /// An ICMP error about a tracked connection.
    Related,
    /// A new flow a rule allows.
    Rule {
        /// The rule.
        rule: RuleIdx,
        /// False for AWS's untracked case.
        tracked: bool,
    },
}

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No rule of the ENI's groups allows it (`sg_denied`).
    NoRule,
    /// Allowed, but the ENI's connection-tracking table is full (`conntrack_full`).
    ConntrackFull,
}

/// The security-group layer's decision.
pub type Verdict = Result<Allowed, Denied>;

/// What a conntrack entry remembers: the rule that allows the connection's opening packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The rule (under the entry's generation), if any.
    pub rule: Option<RuleIdx>,
}

/// One ENI's security groups and connection tracking. See the [module docs](self).
#[derive(Debug)]
pub struct Firewall {
    groups: Arc<CompiledGroups>,
    conntrack: ConnTrack<Opened>,
}

impl Firewall {
    /// A firewall with the ENI's compiled groups and an empty table of at most `limit`
    /// connections.
    pub fn new(
        groups: Arc<CompiledGroups>,
        limit: usize,
        timeouts: Timeouts,
        now: Instant,
    ) -> Firewall {
        Firewall {
            groups,
            conntrack: ConnTrack::new(limit, timeouts, now),
        }
    }

    /// New groups or rules (a higher generation). Tracked connections stay.
    pub fn set_groups(&mut self, groups: Arc<CompiledGroups>) {
        self.groups = groups;
    }

    /// The compiled groups.
    pub fn groups(&self) -> &CompiledGroups {
        &self.groups
    }

    /// The connection-tracking table (timeouts, limit, expiry, stats).
    pub fn conntrack(&mut self) -> &mut ConnTrack<Opened> {
        &mut self.conntrack
    }

    /// The connection-tracking table, read only (to peek at a connection's state).
    pub fn conntrack_ref(&self) -> &ConnTrack<Opened> {
        &self.conntrack
    }

    /// The table's counters.
    pub fn stats(&self) -> Stats {
        self.conntrack.stats()
    }

    /// Decides `pkt` crossing the ENI in `dir` at `now`. `quoted` is what an ICMP error quotes
    /// (see [`crate::packet::parse_icmp_quote`]), `None` for anything else.
    pub fn check(
        &mut self,
        pkt: &Packet,
        quoted: Option<&Packet>,
        dir: Direction,
        now: Instant,
        members: &impl Members,
    ) -> Verdict {
        if let (true, Some(q)) = (pkt.is_icmp_error(), quoted) {
            if self.conntrack.lookup_icmp_error(q, dir, now).is_some() {
                return Ok(Allowed::Related);
            }
        }
        let groups = &self.groups;
        if let Some(hit) = self.conntrack.lookup(pkt, dir, now) {
            if hit.entry.generation() != groups.generation() {
                // Re-decide the opening direction under the new rules: the opener's packet is
                // this one, or this one reversed.
                let origin = hit.entry.origin();
                let rule = match groups.evaluate(pkt, dir, members) {
                    SgVerdict::Allow { rule, .. } if origin == dir => Some(rule),
                    _ if origin == dir => None,
                    _ => match groups.evaluate(&reversed(pkt), origin, members) {
                        SgVerdict::Allow { rule, .. } => Some(rule),
                        SgVerdict::Deny => None,
                    },
                };
                hit.entry.redecide(groups.generation(), Opened { rule });
            }
            return Ok(Allowed::Tracked {
                reply: hit.reply,
                rule: hit.entry.value().rule,
            });
        }
        match groups.evaluate(pkt, dir, members) {
            SgVerdict::Deny => Err(Denied::NoRule),
            SgVerdict::Allow {
                rule,
                tracked: false,
            } => Ok(Allowed::Rule {
                rule,
                tracked: false,
            }),
            SgVerdict::Allow {
                rule,
                tracked: true,
            } => {
                let generation = groups.generation();
                match self
                    .conntrack
                    .insert(pkt, dir, now, generation, Opened { rule: Some(rule) })
                {
                    Ok(_) => Ok(Allowed::Rule {
                        rule,
                        tracked: true,
                    }),
                    Err(_) => Err(Denied::ConntrackFull),
                }
            }
        }
    }
}

impl Firewall {
    /// What [`check`](Self::check) would decide for `pkt` at `now`, changing nothing: no entry
    /// is made, advanced or expired (for `softvpc trace`). A new tracked flow is
    /// [`Denied::ConntrackFull`] when the table has no allowance left.
    pub fn peek(
        &self,
        pkt: &Packet,
        quoted: Option<&Packet>,
        dir: Direction,
        now: Instant,
        members: &impl Members,
    ) -> Verdict {
        if let (true, Some(q)) = (pkt.is_icmp_error(), quoted) {
            if self.conntrack.lookup_icmp_error(q, dir, now).is_some() {
                return Ok(Allowed::Related);
            }
        }
        let groups = &self.groups;
        if let Some(entry) = self.conntrack.peek(pkt, dir, now) {
            let origin = entry.origin();
            let rule = if entry.generation() == groups.generation() {
                entry.value().rule
            } else if origin == dir {
                match groups.evaluate(pkt, dir, members) {
                    SgVerdict::Allow { rule, .. } => Some(rule),
                    SgVerdict::Deny => None,
                }
            } else {
                match groups.evaluate(&reversed(pkt), origin, members) {
                    SgVerdict::Allow { rule, .. } => Some(rule),
                    SgVerdict::Deny => None,
                }
            };
            return Ok(Allowed::Tracked {
                reply: origin != dir,
                rule,
            });
        }
        match groups.evaluate(pkt, dir, members) {
            SgVerdict::Deny => Err(Denied::NoRule),
            SgVerdict::Allow { rule, tracked } => {
                if tracked && self.conntrack.stats().allowance_available == 0 {
                    Err(Denied::ConntrackFull)
                } else {
                    Ok(Allowed::Rule { rule, tracked })
                }
            }
        }
    }
}

/// The same flow the other way (a reply's view of its opener).
fn reversed(pkt: &Packet) -> Packet {
    use crate::packet::L4;
    let l4 = match pkt.l4 {
        L4::Ports { src, dst } => L4::Ports { src: dst, dst: src },
        L4::Icmp { ty: 0, code, ident } => L4::Icmp { ty: 8, code, ident },
        L4::Icmp { ty: 8, code, ident } => L4::Icmp { ty: 0, code, ident },
        other => other,
    };
    Packet {
        src: pkt.dst,
        dst: pkt.src,
        l4,
        ..*pkt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{TCP_ACK, TCP_SYN};
    use crate::secgroup::{GroupMembers, Peer, SgRule};
    use crate::Generation;
    use core::net::Ipv4Addr;
    use std::time::Duration;
    use Direction::{Egress, Ingress};

    const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 9);

    fn rule(id: &str, dir: Direction, proto: &str, port: Option<i32>, cidr: &str) -> SgRule {
        SgRule::from_aws(
            id,
            "sg-1",
            dir,
            proto,
            port,
            port,
            Peer::Cidr(cidr.parse().unwrap()),
        )
        .unwrap()
    }

    fn groups(rules: Vec<SgRule>, g: u64) -> Arc<CompiledGroups> {
        Arc::new(CompiledGroups::compile(rules, Generation(g)))
    }

    #[test]
    fn replies_pass_and_removing_a_rule_keeps_tracked_connections() {
        let t0 = Instant::now();
        let m = GroupMembers::default();
        // Inbound SSH only; no egress rule at all.
        let mut fw = Firewall::new(
            groups(
                vec![rule("sgr-ssh", Ingress, "tcp", Some(22), "10.0.1.0/24")],
                1,
            ),
            16,
            Timeouts::default(),
            t0,
        );
        let syn = Packet::tcp(CLIENT, 5000, VM, 22, TCP_SYN);
        let synack = Packet::tcp(VM, 22, CLIENT, 5000, TCP_SYN | TCP_ACK);
        assert_eq!(
            fw.check(&syn, None, Ingress, t0, &m),
            Ok(Allowed::Rule {
                rule: 0,
                tracked: true
            })
        );
        assert_eq!(
            fw.check(&synack, None, Egress, t0, &m),
            Ok(Allowed::Tracked {
                reply: true,
                rule: Some(0)
            })
        );
        // The instance cannot open anything itself.
        let out = Packet::tcp(VM, 6000, CLIENT, 22, TCP_SYN);
        assert_eq!(fw.check(&out, None, Egress, t0, &m), Err(Denied::NoRule));

        // The rule goes: the open connection lives on, a new one is refused at once.
        fw.set_groups(groups(vec![], 2));
        let ack = Packet::tcp(CLIENT, 5000, VM, 22, TCP_ACK);
        assert_eq!(
            fw.check(&ack, None, Ingress, t0, &m),
            Ok(Allowed::Tracked {
                reply: false,
                rule: None
            })
        );
        assert_eq!(
            fw.check(&synack, None, Egress, t0, &m),
            Ok(Allowed::Tracked {
                reply: true,
                rule: None
            })
        );
        let syn2 = Packet::tcp(CLIENT, 5001, VM, 22, TCP_SYN);
        assert_eq!(fw.check(&syn2, None, Ingress, t0, &m), Err(Denied::NoRule));
        // Until it idles out.
        let later = t0 + Duration::from_secs(432_001);
        assert_eq!(
            fw.check(&ack, None, Ingress, later, &m),
            Err(Denied::NoRule)
        );
    }

    #[test]
    fn icmp_errors_of_tracked_flows_pass() {
        let t0 = Instant::now();
        let m = GroupMembers::default();
        let mut fw = Firewall::new(
            groups(
                vec![rule("sgr-out", Egress, "udp", Some(53), "0.0.0.0/0")],
                1,
            ),
            16,
            Timeouts::default(),
            t0,
        );
        let q = Packet::udp(VM, 4000, CLIENT, 53);
        assert!(fw.check(&q, None, Egress, t0, &m).is_ok());
        // Port unreachable from the server, quoting the query: passes without an ICMP rule.
        let unreach = Packet::icmp(CLIENT, VM, 3, 3, 0);
        assert_eq!(
            fw.check(&unreach, Some(&q), Ingress, t0, &m),
            Ok(Allowed::Related)
        );
        // Quoting something never sent: the rules decide (no inbound ICMP rule).
        let stray = Packet::udp(VM, 4001, CLIENT, 53);
        assert_eq!(
            fw.check(&unreach, Some(&stray), Ingress, t0, &m),
            Err(Denied::NoRule)
        );
    }

    #[test]
    fn untracked_flows_use_no_entry_and_are_cut_with_their_rule() {
        let t0 = Instant::now();
        let m = GroupMembers::default();
        let open = vec![
            rule("sgr-web", Ingress, "tcp", Some(80), "0.0.0.0/0"),
            rule("sgr-all", Egress, "-1", None, "0.0.0.0/0"),
        ];
        let mut fw = Firewall::new(groups(open, 1), 16, Timeouts::default(), t0);
        let syn = Packet::tcp(CLIENT, 5000, VM, 80, TCP_SYN);
        assert_eq!(
            fw.check(&syn, None, Ingress, t0, &m),
            Ok(Allowed::Rule {
                rule: 0,
                tracked: false
            })
        );
        assert_eq!(fw.stats().tracked, 0);
        fw.set_groups(groups(
            vec![rule("sgr-all", Egress, "-1", None, "0.0.0.0/0")],
            2,
        ));
        let ack = Packet::tcp(CLIENT, 5000, VM, 80, TCP_ACK);
        assert_eq!(fw.check(&ack, None, Ingress, t0, &m), Err(Denied::NoRule));
    }

    #[test]
    fn a_full_table_refuses_new_connections_and_counts() {
        let t0 = Instant::now();
        let m = GroupMembers::default();
        let mut fw = Firewall::new(
            groups(
                vec![rule("sgr-dns", Egress, "udp", Some(53), "0.0.0.0/0")],
                1,
            ),
            2,
            Timeouts::default(),
            t0,
        );
        for port in [1, 2] {
            assert!(fw
                .check(&Packet::udp(VM, port, CLIENT, 53), None, Egress, t0, &m)
                .is_ok());
        }
        assert_eq!(
            fw.check(&Packet::udp(VM, 3, CLIENT, 53), None, Egress, t0, &m),
            Err(Denied::ConntrackFull)
        );
        // Established ones still pass.
        assert!(fw
            .check(&Packet::udp(CLIENT, 53, VM, 1), None, Ingress, t0, &m)
            .is_ok());
        let s = fw.stats();
        assert_eq!(
            (s.tracked, s.allowance_available, s.allowance_exceeded),
            (2, 0, 1)
        );
    }
}
