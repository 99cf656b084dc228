//! Disruption's writes: the `karpenter.sh/disrupted:NoSchedule` taint on and off candidate
//! nodes, the `Consolidatable` condition, replacement NodeClaims, deleting candidates'
//! NodeClaims (termination does the rest), and NodePools' replacement backoff. Writes that replace a list carry the
//! resourceVersion they were computed from, so a concurrent change answers 409 (re-read next
//! pass) instead of being overwritten.

use k8s_openapi::{api::core::v1::Node, apimachinery::pkg::apis::meta::v1::Condition};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use nodewright_api::{
    NodeClaim, NodePool,
    conditions::{self, ConditionSet, Status},
    labels,
};
use nodewright_solver::NodeClaimPlan;
use serde_json::json;

use super::backoff::{self, Backoff};
use crate::{
    context::Context,
    error::{ControllerError, is_not_found},
    provisioner::claims,
};

/// Adds (`on`) or removes the disrupted taint; a node already gone is fine.
pub(super) async fn set_disrupted_taint(ctx: &Context, node: &Node, on: bool) -> Result<(), ControllerError> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let present = taints.iter().any(|t| labels::DISRUPTED_TAINT.matches(t));
    if present == on {
        return Ok(());
    }
    if on {
        taints.push(labels::DISRUPTED_TAINT.to_taint());
    } else {
        taints.retain(|t| !labels::DISRUPTED_TAINT.matches(t));
    }
    let patch = json!({
        "metadata": { "resourceVersion": node.resource_version() },
        "spec": { "taints": taints },
    });
    let api: Api<Node> = Api::all(ctx.client.clone());
    match api
        .patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Writes `Consolidatable` (True, or False with a reason) if it differs; returns whether it wrote.
pub(super) async fn set_consolidatable(
    ctx: &Context,
    claim: &NodeClaim,
    blocker: Option<(&str, &str)>,
) -> Result<bool, ControllerError> {
    let mut status = claim.status.clone().unwrap_or_default();
    let mut set = ConditionSet::new(
        &mut status.conditions,
        &conditions::nodeclaim::DEPENDENTS,
        claim.metadata.generation,
        ctx.clock.now(),
    );
    let changed = match blocker {
        None => set.set_true(conditions::nodeclaim::CONSOLIDATABLE),
        Some((reason, message)) => set.set(
            conditions::nodeclaim::CONSOLIDATABLE,
            Status::False,
            reason,
            message,
        ),
    };
    if !changed {
        return Ok(false);
    }
    claim_conditions(ctx, claim, &status.conditions).await
}

/// Writes `conditions` as the claim's, guarded by the resourceVersion they were computed from;
/// returns whether it wrote (a claim gone already is not an error).
pub(super) async fn claim_conditions(
    ctx: &Context,
    claim: &NodeClaim,
    conditions: &[Condition],
) -> Result<bool, ControllerError> {
    let patch = json!({
        "metadata": { "resourceVersion": claim.resource_version() },
        "status": { "conditions": conditions },
    });
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    match api
        .patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(error) if is_not_found(&error) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Creates the NodeClaim for a replacement node of `pool`.
pub(super) async fn create_replacement(
    ctx: &Context,
    plan: &NodeClaimPlan,
    pool: &NodePool,
) -> Result<NodeClaim, ControllerError> {
    let claim = claims::node_claim(plan, pool)?;
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    Ok(api.create(&PostParams::default(), &claim).await?)
}

/// Deletes a NodeClaim; one already gone is fine.
pub(super) async fn delete_claim(ctx: &Context, name: &str) -> Result<(), ControllerError> {
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Writes the NodePool's replacement backoff annotations, or removes them (`None`). Not guarded
/// by a resourceVersion: the annotations are disruption's alone.
pub(super) async fn set_pool_backoff(
    ctx: &Context,
    pool: &str,
    state: Option<Backoff>,
) -> Result<(), ControllerError> {
    let (failures, until) = match state {
        Some(b) => (json!(b.failures.to_string()), json!(b.until.to_string())),
        None => (serde_json::Value::Null, serde_json::Value::Null),
    };
    let mut annotations = serde_json::Map::new();
    annotations.insert(backoff::FAILURES_ANNOTATION.to_owned(), failures);
    annotations.insert(backoff::UNTIL_ANNOTATION.to_owned(), until);
    let patch = json!({ "metadata": { "annotations": annotations } });
    let api: Api<NodePool> = Api::all(ctx.client.clone());
    match api
        .patch(pool, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}
