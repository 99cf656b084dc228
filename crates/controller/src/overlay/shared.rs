//! One evaluation of the NodePools' instance types (the cloud's listing with the NodeOverlays
//! applied), shared between the loops that make it and the launches that read it.
//!
//! The provisioner's round (like disruption's snapshot and the overlay status) always evaluates
//! afresh, so the cloud's view stays as current as before, and publishes what it got. A launch
//! reads the published evaluation as long as the NodePools, EC2NodeClasses and NodeOverlays it
//! was made from are unchanged ([`Key`]): the NodeClaims it launches were planned on exactly
//! those types, and a burst of N launches costs no listing at all where each launch used to list
//! every NodePool's types again. When nothing usable is published (after a restart, or an
//! object changed since), the first launch evaluates under the lock and the others wait for it
//! and reuse its answer: one evaluation, not N.
//!
//! The unavailable-offerings cache is not applied to the shared types: it changes far more often
//! than they do, so every reader marks the offerings out at the time it reads (an entry that
//! expired meanwhile is never read as still out).

use std::sync::Arc;

use kube::ResourceExt;
use nodewright_api::{EC2NodeClass, NodeOverlay, NodePool};
use nodewright_catalog::InstanceType;

use super::{Evaluation, apply};
use crate::{
    context::Context,
    provisioner::{
        pools::{self, Skipped},
        snapshot,
    },
};

/// The usable NodePools (in order) with their instance types as the cloud lists them and the
/// overlays change them, the NodePools left out, and what the overlays did.
#[derive(Debug)]
pub(crate) struct Evaluated {
    key: Key,
    pub(crate) pools: Vec<(Arc<NodePool>, Vec<InstanceType>)>,
    pub(crate) skipped: Vec<Skipped>,
    pub(crate) evaluation: Evaluation,
}

impl Evaluated {
    /// The instance types of a usable NodePool.
    pub(crate) fn types_of(&self, pool: &str) -> Option<&[InstanceType]> {
        self.pools
            .iter()
            .find(|(p, _)| p.name_any() == pool)
            .map(|(_, types)| types.as_slice())
    }
}

/// What an evaluation depends on besides the cloud: each NodePool's and EC2NodeClass's identity,
/// generation, deletion and readiness (what decides whether a pool is usable and what its types
/// are), and each NodeOverlay's identity, generation and deletion. Status counters are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key(Vec<String>);

impl Key {
    pub(crate) fn of(
        pools: &[Arc<NodePool>],
        classes: &[Arc<EC2NodeClass>],
        overlays: &[Arc<NodeOverlay>],
    ) -> Self {
        let mut parts = pools::fingerprint(pools, classes);
        parts.extend(
            pools
                .iter()
                .map(|p| format!("NodePool/{}/uid/{:?}", p.name_any(), p.uid()))
                .chain(
                    classes
                        .iter()
                        .map(|c| format!("EC2NodeClass/{}/uid/{:?}", c.name_any(), c.uid())),
                ),
        );
        parts.extend(overlays.iter().map(|o| {
            format!(
                "NodeOverlay/{}/{:?}/{:?}/{}",
                o.name_any(),
                o.uid(),
                o.metadata.generation,
                o.metadata.deletion_timestamp.is_some()
            )
        }));
        parts.sort();
        Self(parts)
    }

    fn now(ctx: &Context) -> Self {
        Self::of(
            &ctx.state.node_pools.all(),
            &ctx.state.node_classes.all(),
            &ctx.state.node_overlays.all(),
        )
    }
}

/// The last published evaluation. Clones share it.
#[derive(Clone, Default)]
pub struct SharedEvaluation(Arc<tokio::sync::Mutex<Option<Arc<Evaluated>>>>);

impl std::fmt::Debug for SharedEvaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedEvaluation").finish_non_exhaustive()
    }
}

impl SharedEvaluation {
    /// The published evaluation if it still matches the cluster's objects, else a fresh one
    /// (published). Concurrent callers wait for one evaluation instead of each making their own.
    pub(crate) async fn current(&self, ctx: &Context) -> Arc<Evaluated> {
        let mut published = self.0.lock().await;
        let key = Key::now(ctx);
        if let Some(evaluated) = published.as_ref().filter(|e| e.key == key) {
            return Arc::clone(evaluated);
        }
        let evaluated = Arc::new(evaluate(ctx, key).await);
        *published = Some(Arc::clone(&evaluated));
        evaluated
    }

    /// A fresh evaluation, published for the launches that follow.
    pub(crate) async fn refresh(&self, ctx: &Context) -> Arc<Evaluated> {
        let evaluated = Arc::new(evaluate(ctx, Key::now(ctx)).await);
        *self.0.lock().await = Some(Arc::clone(&evaluated));
        evaluated
    }
}

/// Lists every usable NodePool's instance types and applies the overlays. `key` is read before
/// the stores are, so an object changed meanwhile makes the next reader evaluate again.
async fn evaluate(ctx: &Context, key: Key) -> Evaluated {
    let (mut pools, skipped) = snapshot::listed_types(
        ctx.cloud.as_ref(),
        &ctx.state.node_pools.all(),
        &ctx.state.node_classes.all(),
    )
    .await;
    let evaluation = apply(&ctx.state.node_overlays.all(), &mut pools);
    Evaluated {
        key,
        pools,
        skipped,
        evaluation,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_fixtures::arc;

    fn pool(generation: i64, uid: &str) -> Arc<NodePool> {
        arc(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": { "name": "default", "uid": uid, "generation": generation },
            "spec": { "template": { "spec": {
                "requirements": [],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
            } } }
        }))
    }

    fn overlay(generation: i64) -> Arc<NodeOverlay> {
        arc(json!({
            "apiVersion": "karpenter.sh/v1alpha1", "kind": "NodeOverlay",
            "metadata": { "name": "discount", "uid": "o1", "generation": generation },
            "spec": { "requirements": [], "price": "0.01" }
        }))
    }

    #[test]
    fn the_key_changes_with_specs_identity_and_overlays_not_with_status_counters() {
        let base = Key::of(&[pool(1, "a")], &[], &[overlay(1)]);
        assert_eq!(base, Key::of(&[pool(1, "a")], &[], &[overlay(1)]));
        let mut counted = (*pool(1, "a")).clone();
        counted.status = Some(nodewright_api::NodePoolStatus {
            nodes: Some(3),
            ..Default::default()
        });
        assert_eq!(
            base,
            Key::of(&[Arc::new(counted)], &[], &[overlay(1)]),
            "node counts do not change instance types"
        );
        assert_ne!(
            base,
            Key::of(&[pool(2, "a")], &[], &[overlay(1)]),
            "NodePool edited"
        );
        assert_ne!(
            base,
            Key::of(&[pool(1, "b")], &[], &[overlay(1)]),
            "NodePool recreated"
        );
        assert_ne!(
            base,
            Key::of(&[pool(1, "a")], &[], &[overlay(2)]),
            "overlay edited"
        );
        assert_ne!(base, Key::of(&[pool(1, "a")], &[], &[]), "overlay deleted");
    }
}
