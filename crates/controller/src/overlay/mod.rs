//! NodeOverlay (`karpenter.sh/v1alpha1`): price and capacity adjustments to the instance types
//! the solver sees, so negotiated discounts, Savings Plans or hugepages steer its choices.
//!
//! - [`apply`] (pure) adjusts every usable NodePool's instance types and decides which overlays
//!   are left out (invalid, or in conflict with an overlay of the same weight).
//! - [`instance_types`] is the one way the provisioner and disruption read instance types
//!   (through `provisioner::snapshot`): the cloud's, with unavailable offerings marked and the
//!   overlays applied, so both decide on the same prices.
//! - [`shared`] keeps the last evaluation for the launches, so a burst of launches reads the
//!   one the provisioner's round made instead of listing every NodePool's types again.
//! - [`launch`] narrows a NodeClaim's instance types before the cloud launches it when an
//!   overlay repriced them: the cloud orders its fallbacks by its own prices, which would undo
//!   the overlay (Karpenter's AWS provider switches to a `prioritized` strategy instead).
//! - [`status`] keeps each overlay's `ValidationSucceeded` (and `Ready`) condition.
//!
//! Overlays never mark NodeClaims drifted: as Karpenter's design says, price and capacity changes
//! take effect through consolidation's regular re-evaluation.

pub mod apply;
pub mod launch;
pub mod shared;
pub mod status;

pub use apply::{Evaluation, Rejection, apply};
pub use status::run;

use std::sync::Arc;

use nodewright_api::NodePool;
use nodewright_catalog::InstanceType;

use crate::{context::Context, provisioner::pools::Skipped};

/// The usable NodePools (in order) with their instance types as the controllers decide on them:
/// the cloud's, unavailable offerings marked, the overlays applied; the NodePools left out; and
/// what the overlays did. Always a fresh evaluation, published for the launches that follow
/// ([`shared`]).
pub(crate) async fn instance_types(
    ctx: &Context,
) -> (Vec<(Arc<NodePool>, Vec<InstanceType>)>, Vec<Skipped>, Evaluation) {
    let evaluated = ctx.state.instance_types.refresh(ctx).await;
    let now = ctx.clock.now();
    let with_types = evaluated
        .pools
        .iter()
        .map(|(pool, types)| {
            let mut types = types.clone();
            ctx.unavailable.apply(&mut types, now);
            (Arc::clone(pool), types)
        })
        .collect();
    (
        with_types,
        evaluated.skipped.clone(),
        evaluated.evaluation.clone(),
    )
}
