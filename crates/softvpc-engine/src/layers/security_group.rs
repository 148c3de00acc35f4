//! Security groups: stateful, allow-only, the union of the ENI's groups, both directions.
//!
//! Egress: the sender ENI's outbound rules; ingress: the receiver ENI's inbound rules (for a
//! local delivery both run, in one pass). The decision is `softvpc_policy::firewall`'s: an ICMP
//! error quoting a tracked connection passes, a packet of a tracked connection passes whatever
//! the rules say now, otherwise a rule must allow it (a tracked one makes a conntrack entry; a
//! full table refuses the flow: `conntrack_full`). An ENI without groups passes everything;
//! DNS with the VPC's +2 address is never filtered (AWS; DHCP is the gateway's, before this
//! layer).
//!
//! The data path calls `Firewall::check`, a trace `Firewall::peek` (the same decision, nothing
//! changed).

use softvpc_policy::firewall::{Allowed, Denied};
use softvpc_policy::packet::{parse_icmp_quote, TCP, UDP};
use softvpc_policy::secgroup::SgVerdict;
use softvpc_policy::Direction as PolicyDirection;

use super::{Ctx, LayerResult, Packet, Ports, SgWhy, St, Step};
use crate::mapping::{EniEntry, Location, MappingTable};
use crate::{DropReason, PortId};

/// Egress: the sender's groups.
#[inline]
pub(crate) fn egress<'a, 't>(
    cx: Ctx<'t>,
    st: &mut St<'_>,
    pkt: &mut Packet<'a, 't>,
) -> LayerResult {
    let Some((port, eni)) = pkt.sender else {
        return Err(DropReason::UnknownPort);
    };
    check(cx, st, pkt, port, eni, PolicyDirection::Egress, 0)
}

/// Ingress: the receiver's groups (the route layer found the receiver).
#[inline]
pub(crate) fn ingress<'a, 't>(
    cx: Ctx<'t>,
    st: &mut St<'_>,
    pkt: &mut Packet<'a, 't>,
) -> LayerResult {
    let Some(eni) = pkt.target else {
        return Err(DropReason::VxlanNotLocal);
    };
    let Location::Local(port) = eni.location else {
        return Err(DropReason::VxlanNotLocal);
    };
    check(cx, st, pkt, port, eni, PolicyDirection::Ingress, 1)
}

/// The groups of local `eni` (on `port`) for a packet crossing it in `dir`.
pub(crate) fn check<'a, 't>(
    cx: Ctx<'t>,
    st: &mut St<'_>,
    pkt: &mut Packet<'a, 't>,
    port: PortId,
    eni: &'t EniEntry,
    dir: PolicyDirection,
    side: usize,
) -> LayerResult {
    if eni.groups.is_none() {
        pkt.notes.sg[side] = Some((eni, SgWhy::NoGroups));
        return Ok(Step::Next);
    }
    let Some(p) = pkt.pol else {
        return Err(DropReason::Malformed);
    };
    if always_allowed(cx.table, eni, &p, dir) {
        pkt.notes.sg[side] = Some((eni, SgWhy::AlwaysAllowed));
        return Ok(Step::Next);
    }
    // An ICMP error quotes the packet it is about, after its 8-byte header.
    let quoted = if p.is_icmp_error() {
        pkt.meta.ipv4().and_then(|ip| {
            let at = usize::from(ip.header_len) + 8;
            parse_icmp_quote(pkt.meta.l3_bytes().get(at..)?).ok()
        })
    } else {
        None
    };
    let members = cx.table.members();
    let verdict = match &mut st.ports {
        Ports::Live(m) => {
            let fw = m.get_mut(&port).and_then(|s| s.fw.as_mut());
            let (Some(fw), Some(now)) = (fw, st.now) else {
                return Err(DropReason::UnknownPort);
            };
            fw.check(&p, quoted.as_ref(), dir, now, members)
        }
        Ports::Trace(m) => match (m.get(&port).and_then(|s| s.fw.as_ref()), st.now) {
            (Some(fw), Some(now)) => fw.peek(&p, quoted.as_ref(), dir, now, members),
            // Nothing tracked yet: the rules alone.
            _ => match eni.groups.as_deref().map(|g| g.evaluate(&p, dir, members)) {
                Some(SgVerdict::Allow { rule, tracked }) => Ok(Allowed::Rule { rule, tracked }),
                _ => Err(Denied::NoRule),
            },
        },
    };
    let (why, result) = match verdict {
        Ok(Allowed::Related) => {
            pkt.cacheable = false;
            (SgWhy::Related, Ok(Step::Next))
        }
        Ok(Allowed::Tracked { reply, rule }) => {
            pkt.tracked[side] = Some((port, dir));
            (SgWhy::Tracked { reply, rule }, Ok(Step::Next))
        }
        Ok(Allowed::Rule { rule, tracked }) => {
            if tracked {
                pkt.tracked[side] = Some((port, dir));
            }
            (SgWhy::Rule { rule, tracked }, Ok(Step::Next))
        }
        Err(Denied::NoRule) => (SgWhy::Denied, Err(DropReason::SgDenied)),
        Err(Denied::ConntrackFull) => (SgWhy::Full, Err(DropReason::ConntrackFull)),
    };
    pkt.notes.sg[side] = Some((eni, why));
    result
}

/// DNS with the VPC's resolver (its first CIDR's network + 2, TCP or UDP 53) is never filtered
/// by security groups (AWS). DHCP never reaches this layer: the gateway layer, before it on the
/// way out, keeps every broadcast and everything for the router address.
fn always_allowed(
    table: &MappingTable,
    eni: &EniEntry,
    p: &softvpc_policy::Packet,
    dir: PolicyDirection,
) -> bool {
    let softvpc_policy::L4::Ports { src, dst } = p.l4 else {
        return false;
    };
    let (far, far_port) = match dir {
        PolicyDirection::Egress => (p.dst, dst),
        PolicyDirection::Ingress => (p.src, src),
    };
    if !(p.proto == UDP || p.proto == TCP) || far_port != 53 {
        return false;
    }
    table
        .vpc(eni.vni)
        .and_then(|v| v.cidrs.first())
        .is_some_and(|c| u32::from(c.network()).wrapping_add(2) == u32::from(far))
}
