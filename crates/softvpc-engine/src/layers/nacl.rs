//! Network ACLs: stateless, per subnet, evaluated at the subnet boundary.
//!
//! Where it sits: the sender's subnet on egress, the receiver's on ingress; lowest rule number
//! first, first match wins, `*` denies the rest (issue 10). The mapping stream does not carry ACLs
//! yet, so this layer has no rules and passes every packet; it is called on both sides (see
//! [`super::EGRESS`] and [`super::INGRESS`]) so rules can land here without reshaping the pipeline.

use super::{Ctx, LayerResult, Packet, Step};

/// Egress: passes (no rules yet).
#[inline]
pub(crate) fn egress<'a>(_cx: Ctx<'_>, _pkt: &mut Packet<'a, '_>) -> LayerResult {
    Ok(Step::Next)
}

/// Ingress: passes (no rules yet).
#[inline]
pub(crate) fn ingress<'a>(_cx: Ctx<'_>, _pkt: &mut Packet<'a, '_>) -> LayerResult {
    Ok(Step::Next)
}
