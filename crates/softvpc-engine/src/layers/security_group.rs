//! Security groups: stateful, allow-only, the union of the ENI's groups, both directions.
//!
//! Where it sits: the sender ENI's outbound rules on egress, the receiver ENI's inbound rules on
//! ingress, with connection tracking so replies pass (issue 10). The mapping stream does not carry
//! groups yet, so this layer has no rules and passes every packet; it is called on both sides (see
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
