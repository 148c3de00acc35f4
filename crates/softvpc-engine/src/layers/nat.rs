//! Address translation for gateways and Elastic IPs.
//!
//! Where it sits: rewrites addresses on the way out and back in (a later issue). No translation is
//! configured yet, so this layer passes every packet; it is called on both sides (see
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
