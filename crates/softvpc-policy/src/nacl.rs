//! Network ACL evaluation: stateless, per subnet, lowest rule number first, first match wins,
//! and the `*` rule denies the rest.
//!
//! The engine evaluates a subnet's ACL where traffic enters or leaves the subnet, not between
//! two ENIs of the same subnet (AWS: "We evaluate the network ACL rules when traffic enters and
//! leaves the subnet, not as it is routed within a subnet"). Ingress entries match the packet's
//! source, egress entries its destination; ports are the destination port, so replies need a
//! rule for the client's ephemeral ports (stateless). The verdict names the rule number that
//! decided, or `*`.
//!
//! At most 20 entries per direction (AWS's quota), so a sorted list scanned in order is the
//! fastest structure; the entries reuse the security groups' protocol and port matching.

use ipnet::Ipv4Net;

use crate::packet::{Direction, Packet, ICMP, TCP, UDP};
use crate::secgroup::{protocol_matches, Ports, Protocol, RuleError};
use crate::Generation;

/// What an entry does with a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let it pass.
    Allow,
    /// Drop it.
    Deny,
}

/// One ACL entry: a plain input the mapping service can carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AclEntry {
    /// 1..=32766; lower first.
    pub rule_number: u16,
    /// Ingress (into the subnet) or egress.
    pub direction: Direction,
    /// Protocol.
    pub protocol: Protocol,
    /// TCP/UDP port range, ICMP type/code, or any.
    pub ports: Ports,
    /// Source (ingress) or destination (egress).
    pub cidr: Ipv4Net,
    /// Allow or deny.
    pub action: Action,
}

impl AclEntry {
    /// An entry from AWS's fields as the API stores them: protocol number (`-1` all), `allow` or
    /// `deny`, the port range (TCP/UDP) and the ICMP type and code (`-1`: any).
    pub fn from_aws(
        rule_number: u16,
        egress: bool,
        protocol: &str,
        action: &str,
        cidr: Ipv4Net,
        port_range: Option<(u16, u16)>,
        icmp: Option<(i32, i32)>,
    ) -> Result<AclEntry, RuleError> {
        let protocol = Protocol::parse(protocol)
            .ok_or_else(|| RuleError(format!("invalid protocol {protocol:?}")))?;
        let action = match action.to_ascii_lowercase().as_str() {
            "allow" => Action::Allow,
            "deny" => Action::Deny,
            other => return Err(RuleError(format!("invalid action {other:?}"))),
        };
        let any = |v: i32| -> Result<Option<u8>, RuleError> {
            match v {
                -1 => Ok(None),
                v => u8::try_from(v)
                    .map(Some)
                    .map_err(|_| RuleError(format!("invalid ICMP type or code {v}"))),
            }
        };
        let ports = match (protocol, port_range, icmp) {
            (Protocol::Number(TCP | UDP), Some((from, to)), _) if from <= to => {
                Ports::Range { from, to }
            }
            (Protocol::Number(TCP | UDP), Some(r), _) => {
                return Err(RuleError(format!("invalid port range {r:?}")))
            }
            (Protocol::Number(ICMP), _, Some((ty, code))) => {
                let ty = any(ty)?;
                Ports::Icmp {
                    ty,
                    code: if ty.is_some() { any(code)? } else { None },
                }
            }
            _ => Ports::Any,
        };
        Ok(AclEntry {
            rule_number,
            direction: if egress {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            protocol,
            ports,
            cidr: cidr.trunc(),
            action,
        })
    }

    /// True when the entry matches `pkt` crossing the subnet boundary in `dir`.
    pub fn matches(&self, pkt: &Packet, dir: Direction) -> bool {
        self.direction == dir
            && self.cidr.contains(&pkt.remote(dir))
            && protocol_matches(self.protocol, self.ports, pkt)
    }
}

/// Which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclRule {
    /// A numbered entry.
    Number(u16),
    /// The `*` rule (AWS reports it as 32767): nothing matched, denied.
    Default,
}

/// The ACL's decision and the rule behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclVerdict {
    /// Allow or deny.
    pub action: Action,
    /// The rule that decided.
    pub rule: AclRule,
}

/// One network ACL, compiled: its entries per direction in rule-number order.
#[derive(Debug, Clone)]
pub struct NetworkAcl {
    id: String,
    generation: Generation,
    /// Egress, ingress; each sorted by rule number.
    entries: [Vec<AclEntry>; 2],
}

impl NetworkAcl {
    /// Compiles the entries of the ACL `id` (`acl-...`). Two entries with one number and
    /// direction cannot come from the API; if they do, the first given wins.
    pub fn compile(
        id: &str,
        entries: impl IntoIterator<Item = AclEntry>,
        generation: Generation,
    ) -> NetworkAcl {
        let mut by_dir: [Vec<AclEntry>; 2] = Default::default();
        for e in entries {
            by_dir[usize::from(e.direction == Direction::Ingress)].push(e);
        }
        for v in &mut by_dir {
            // Stable: the first given of a duplicate number stays first.
            v.sort_by_key(|e| e.rule_number);
        }
        NetworkAcl {
            id: id.to_string(),
            generation,
            entries: by_dir,
        }
    }

    /// The ACL's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The generation it was compiled under.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Decides `pkt` entering (`Ingress`) or leaving (`Egress`) the subnet.
    pub fn evaluate(&self, pkt: &Packet, dir: Direction) -> AclVerdict {
        self.entries[usize::from(dir == Direction::Ingress)]
            .iter()
            .find(|e| e.matches(pkt, dir))
            .map_or(
                AclVerdict {
                    action: Action::Deny,
                    rule: AclRule::Default,
                },
                |e| AclVerdict {
                    action: e.action,
                    rule: AclRule::Number(e.rule_number),
                },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{TCP_ACK, TCP_SYN};
    use core::net::Ipv4Addr;
    use proptest::prelude::*;
    use Direction::{Egress, Ingress};

    const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

    fn e(
        n: u16,
        egress: bool,
        proto: &str,
        action: &str,
        cidr: &str,
        ports: Option<(u16, u16)>,
    ) -> AclEntry {
        AclEntry::from_aws(n, egress, proto, action, cidr.parse().unwrap(), ports, None).unwrap()
    }

    fn verdict(a: Action, n: u16) -> AclVerdict {
        AclVerdict {
            action: a,
            rule: AclRule::Number(n),
        }
    }

    #[test]
    fn lowest_number_first_and_the_default_deny() {
        // Given out of order: 90 denies one host before 100 allows its network.
        let acl = NetworkAcl::compile(
            "acl-1",
            [
                e(100, false, "6", "allow", "10.0.1.0/24", Some((22, 22))),
                e(90, false, "6", "deny", "10.0.1.66/32", Some((0, 65535))),
                e(200, false, "-1", "deny", "10.0.0.0/8", None),
                e(300, false, "-1", "allow", "0.0.0.0/0", None),
                e(100, true, "6", "allow", "10.0.1.0/24", Some((1024, 65535))),
            ],
            Generation(1),
        );
        let ssh = |src: [u8; 4]| Packet::tcp(Ipv4Addr::from(src), 40000, VM, 22, TCP_SYN);
        assert_eq!(
            acl.evaluate(&ssh([10, 0, 1, 7]), Ingress),
            verdict(Action::Allow, 100)
        );
        assert_eq!(
            acl.evaluate(&ssh([10, 0, 1, 66]), Ingress),
            verdict(Action::Deny, 90)
        );
        assert_eq!(
            acl.evaluate(&ssh([10, 0, 2, 7]), Ingress),
            verdict(Action::Deny, 200)
        );
        assert_eq!(
            acl.evaluate(&ssh([192, 168, 0, 1]), Ingress),
            verdict(Action::Allow, 300)
        );
        // Stateless: the reply needs its own egress rule for the ephemeral port.
        let reply = |dport| Packet::tcp(VM, 22, Ipv4Addr::new(10, 0, 1, 7), dport, TCP_ACK);
        assert_eq!(
            acl.evaluate(&reply(40000), Egress),
            verdict(Action::Allow, 100)
        );
        assert_eq!(
            acl.evaluate(&reply(1000), Egress),
            AclVerdict {
                action: Action::Deny,
                rule: AclRule::Default
            }
        );
        // An empty (custom, new) ACL denies everything both ways.
        let custom = NetworkAcl::compile("acl-2", [], Generation(1));
        assert_eq!(
            custom.evaluate(&ssh([10, 0, 1, 7]), Ingress).rule,
            AclRule::Default
        );
    }

    #[test]
    fn icmp_entries_and_aws_fields() {
        let frag = AclEntry::from_aws(
            10,
            false,
            "1",
            "allow",
            "0.0.0.0/0".parse().unwrap(),
            None,
            Some((3, 4)),
        )
        .unwrap();
        let acl = NetworkAcl::compile("acl-1", [frag], Generation(1));
        let icmp = |ty, code| Packet::icmp(Ipv4Addr::new(1, 1, 1, 1), VM, ty, code, 0);
        assert_eq!(acl.evaluate(&icmp(3, 4), Ingress).action, Action::Allow);
        assert_eq!(acl.evaluate(&icmp(3, 1), Ingress).action, Action::Deny);
        // The CIDR is canonicalised as AWS does (100.68.0.18/18 -> 100.68.0.0/18).
        let c = AclEntry::from_aws(
            1,
            true,
            "-1",
            "ALLOW",
            "100.68.0.18/18".parse().unwrap(),
            None,
            None,
        )
        .unwrap();
        assert_eq!(c.cidr, "100.68.0.0/18".parse::<Ipv4Net>().unwrap());
        assert!(
            AclEntry::from_aws(1, true, "-1", "reject", Ipv4Net::default(), None, None).is_err()
        );
        assert!(AclEntry::from_aws(
            1,
            true,
            "6",
            "allow",
            Ipv4Net::default(),
            Some((9, 8)),
            None
        )
        .is_err());
    }

    proptest! {
        /// The verdict is the lowest-numbered matching entry of the direction, or `*` deny when
        /// none matches.
        #[test]
        fn first_match_by_number(
            entries in proptest::collection::vec(
                (1u16..50, any::<bool>(), prop_oneof![Just("-1"), Just("6"), Just("17"), Just("1")],
                 any::<bool>(), 0u8..=8, 0u16..30, 0u16..30),
                0..20),
            pkts in proptest::collection::vec((any::<u8>(), prop_oneof![Just(TCP), Just(UDP), Just(ICMP)], 0u16..30, any::<bool>()), 1..20),
        ) {
            let entries: Vec<AclEntry> = entries
                .into_iter()
                .map(|(n, egress, proto, allow, len, a, b)| {
                    let cidr = Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), len).unwrap().trunc();
                    let ports = (proto == "6" || proto == "17").then_some((a.min(b), a.max(b)));
                    let icmp = (proto == "1").then_some((i32::from(a % 4) - 1, -1));
                    AclEntry::from_aws(n, egress, proto, if allow { "allow" } else { "deny" }, cidr, ports, icmp).unwrap()
                })
                .collect();
            let acl = NetworkAcl::compile("acl-p", entries.clone(), Generation(0));
            for (host, proto, port, ingress) in pkts {
                let dir = if ingress { Ingress } else { Egress };
                let far = Ipv4Addr::new(10, 0, host >> 4, host);
                let (src, dst) = if ingress { (far, VM) } else { (VM, far) };
                let pkt = match proto {
                    TCP => Packet::tcp(src, 1, dst, port, TCP_SYN),
                    UDP => Packet::udp(src, 1, dst, port),
                    _ => Packet::icmp(src, dst, (port % 4) as u8, 0, 0),
                };
                let v = acl.evaluate(&pkt, dir);
                let first = entries.iter().filter(|e| e.matches(&pkt, dir)).min_by_key(|e| e.rule_number);
                match first {
                    None => prop_assert_eq!(v, AclVerdict { action: Action::Deny, rule: AclRule::Default }),
                    Some(f) => {
                        prop_assert_eq!(v.rule, AclRule::Number(f.rule_number));
                        // With duplicate numbers the first given decides.
                        let given = entries.iter().find(|e| e.rule_number == f.rule_number && e.matches(&pkt, dir)).unwrap();
                        prop_assert_eq!(v.action, given.action);
                    }
                }
            }
        }
    }
}
