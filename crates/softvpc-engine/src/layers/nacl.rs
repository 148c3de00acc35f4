//! Network ACLs: stateless, per subnet, evaluated at the subnet boundary.
//!
//! Egress: the sender's subnet's ACL (outbound entries) when the destination is outside that
//! subnet; ingress: the receiver's subnet's ACL (inbound entries) when the source is outside it.
//! Traffic between two ENIs of one subnet never meets an ACL. Lowest rule number first, first
//! match wins, `*` denies the rest (`softvpc_policy::nacl`). Stateless: a reply is judged like
//! any packet, so replies need their own (ephemeral-port) entries. A subnet without an ACL in
//! the table passes everything.

use std::net::Ipv4Addr;

use softvpc_policy::nacl::Action;
use softvpc_policy::Direction as PolicyDirection;

use super::{Ctx, LayerResult, NaclWhy, Packet, Step};
use crate::mapping::EniEntry;
use crate::DropReason;

/// Egress: the sender's subnet, for a destination outside it.
#[inline]
pub(crate) fn egress<'a, 't>(cx: Ctx<'t>, pkt: &mut Packet<'a, 't>) -> LayerResult {
    let Some(eni) = pkt.sender_eni() else {
        return Err(DropReason::UnknownPort);
    };
    let Some(p) = pkt.pol else {
        return Err(DropReason::Malformed);
    };
    check(cx, pkt, eni, p.dst, PolicyDirection::Egress, 0)
}

/// Ingress: the receiver's subnet (the route layer found the receiver), for a source outside
/// it.
#[inline]
pub(crate) fn ingress<'a, 't>(cx: Ctx<'t>, pkt: &mut Packet<'a, 't>) -> LayerResult {
    let Some(eni) = pkt.target else {
        return Err(DropReason::VxlanNotLocal);
    };
    let Some(p) = pkt.pol else {
        return Err(DropReason::Malformed);
    };
    check(cx, pkt, eni, p.src, PolicyDirection::Ingress, 1)
}

/// The ACL of `eni`'s subnet for a packet whose far end is `far`, crossing in `dir`.
#[inline]
pub(crate) fn check<'a, 't>(
    cx: Ctx<'t>,
    pkt: &mut Packet<'a, 't>,
    eni: &'t EniEntry,
    far: Ipv4Addr,
    dir: PolicyDirection,
    side: usize,
) -> LayerResult {
    let Some(subnet) = eni.subnet.and_then(|s| cx.table.subnet(s)) else {
        return Ok(Step::Next);
    };
    let id: &'t str = &subnet.subnet_id;
    if subnet.cidr.contains(&far) {
        pkt.notes.nacl[side] = Some((id, NaclWhy::InsideSubnet));
        return Ok(Step::Next);
    }
    let Some(acl) = subnet.acl.as_deref() else {
        pkt.notes.nacl[side] = Some((id, NaclWhy::NoAcl));
        return Ok(Step::Next);
    };
    let Some(p) = pkt.pol else {
        return Err(DropReason::Malformed);
    };
    let v = acl.evaluate(&p, dir);
    pkt.notes.nacl[side] = Some((
        id,
        NaclWhy::Entry {
            acl: acl.id(),
            rule: v.rule,
            action: v.action,
        },
    ));
    match v.action {
        Action::Allow => Ok(Step::Next),
        Action::Deny => Err(DropReason::NaclDenied),
    }
}
