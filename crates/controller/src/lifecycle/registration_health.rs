//! The NodePool's `NodeRegistrationHealthy` condition (Karpenter v1.2+), kept simple: a claim
//! of the pool that registers sets it True, one that times out registering sets it False
//! (`RegistrationFailed`). Karpenter's failure ratio over the last launches and its reset on a
//! NodePool or node class change are not modelled.
//!
//! Best effort: the condition is informational (not part of the pool's `Ready`), so a failed
//! write is logged, never an error of the claim's reconcile.

use jiff::Timestamp;
use kube::{Api, ResourceExt, api::PostParams};
use nodewright_api::{
    NodeClaim, NodePool,
    conditions::{ConditionSet, TRUE, nodepool},
};

use crate::{context::Context, error::is_conflict};

/// Records that a claim of the pool registered (`healthy`) or failed to.
pub(super) async fn record(ctx: &Context, claim: &NodeClaim, healthy: bool, now: Timestamp) {
    let Some(pool) = claim.nodepool_name() else {
        return;
    };
    let api: Api<NodePool> = Api::all(ctx.client.clone());
    let cached = ctx.state.node_pools.store.find(|p| p.name_any() == pool);
    if cached.is_some_and(|p| is_recorded(&p, healthy)) {
        return;
    }
    // One retry on a conflict, from a fresh read; after that the next registration tries again.
    for _ in 0..2 {
        let mut fresh = match api.get(pool).await {
            Ok(fresh) => fresh,
            Err(error) => {
                tracing::warn!(nodepool = pool, %error, "reading the nodepool for its registration health");
                return;
            }
        };
        if is_recorded(&fresh, healthy) {
            return;
        }
        set(&mut fresh, healthy, now);
        match api.replace_status(pool, &PostParams::default(), &fresh).await {
            Ok(_) => return,
            Err(error) if is_conflict(&error) => {}
            Err(error) => {
                tracing::warn!(nodepool = pool, %error, "writing the nodepool's registration health");
                return;
            }
        }
    }
}

fn is_recorded(pool: &NodePool, healthy: bool) -> bool {
    let status = pool
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == nodepool::NODE_REGISTRATION_HEALTHY)
        })
        .map(|c| c.status.as_str());
    status == Some(TRUE) && healthy || status == Some(nodewright_api::conditions::FALSE) && !healthy
}

fn set(pool: &mut NodePool, healthy: bool, now: Timestamp) {
    let generation = pool.metadata.generation;
    let status = pool.status.get_or_insert_with(Default::default);
    let mut conditions = ConditionSet::new(&mut status.conditions, &nodepool::DEPENDENTS, generation, now);
    if healthy {
        conditions.set_true(nodepool::NODE_REGISTRATION_HEALTHY);
    } else {
        conditions.set_false(
            nodepool::NODE_REGISTRATION_HEALTHY,
            nodepool::REASON_REGISTRATION_FAILED,
            "Failed to register node",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_flips_both_ways_and_leaves_ready_to_its_dependents() {
        let mut pool: NodePool = serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodePool",
            "metadata": {"name": "default"},
            "spec": {"template": {"spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [],
            }}},
        }))
        .unwrap();
        let now = Timestamp::from_second(100).unwrap();
        assert!(!is_recorded(&pool, false));
        set(&mut pool, false, now);
        assert!(is_recorded(&pool, false));
        assert!(!is_recorded(&pool, true));
        set(&mut pool, true, now);
        assert!(is_recorded(&pool, true));
        let conditions = &pool.status.unwrap().conditions;
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_ne!(
            ready.status, TRUE,
            "Ready depends on validation and the node class only"
        );
    }
}
