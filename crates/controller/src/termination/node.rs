//! The Node finalizer: taint the Node, drain it tier by tier, wait for its volumes to detach,
//! terminate the instance, then let the Node go.
//!
//! Progress is kept on the NodeClaim's conditions (`Drained`, `VolumesDetached`,
//! `InstanceTerminating`), written once per reconcile. A Node whose NodeClaim is gone still
//! drains and terminates; its progress is then re-derived on every pass.

use futures_util::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{
    core::v1::{Node, Pod},
    storage::v1::VolumeAttachment,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, Preconditions},
};
use nodewright_api::{
    NodeClaim,
    conditions::{Status, nodeclaim},
    labels,
};
use nodewright_cloudprovider::CloudProviderError;
use serde_json::{Value, json};

use super::{
    Progress, RECHECK, Terminator,
    claim::{self, ClaimConditions},
    drain::{self, DrainPlan, ForceDelete, PodRef},
    volumes,
};
use crate::{
    context::Context,
    error::{ControllerError, is_conflict, is_not_found},
    events::reasons,
};

/// A drained node waits this long before moving on, to catch pods the scheduler placed just
/// before it saw the taint (Karpenter's `MinDrainTime`).
const MIN_DRAIN_TIME: SignedDuration = SignedDuration::from_secs(5);
/// Evictions and deletions in flight at once for one node.
const EVICTION_CONCURRENCY: usize = 16;
/// The value Karpenter gives the exclude-from-load-balancers label.
const EXCLUDED_BY: &str = "karpenter";

pub(super) async fn reconcile(
    ctx: &Context,
    terminator: &Terminator,
    name: &str,
) -> Result<Progress, ControllerError> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let Some(node) = nodes.get_opt(name).await? else {
        terminator.forget(name);
        return Ok(Progress::Finished);
    };
    if !super::awaits_termination(&node.metadata) {
        terminator.forget(name);
        return Ok(Progress::Finished);
    }
    let provider_id = node
        .spec
        .as_ref()
        .and_then(|s| s.provider_id.clone())
        .filter(|id| !id.is_empty());
    let claims: Api<NodeClaim> = Api::all(ctx.client.clone());
    let claim = match &provider_id {
        Some(id) => delete_node_claim(ctx, &claims, id).await?,
        None => None,
    };
    // A Node that is not Ready and whose instance is gone has nothing left to drain or stop.
    if !is_ready(&node) && instance_gone(ctx, provider_id.as_deref()).await? {
        claim::remove_finalizer(&nodes, &node).await?;
        crate::metrics::node_terminated(&node, ctx.clock.now());
        terminator.forget(name);
        return Ok(Progress::Finished);
    }
    let node = ensure_tainted(&nodes, node).await?;
    let now = ctx.clock.now();
    let mut conditions = claim.as_ref().map_or_else(
        || ClaimConditions::detached(now),
        |c| ClaimConditions::new(c, now),
    );
    let progress = finalize(
        ctx,
        terminator,
        &node,
        claim.as_ref(),
        provider_id.as_deref(),
        &mut conditions,
    )
    .await;
    // Conditions are written even when a step failed: they record how far termination got.
    conditions.write(&claims).await?;
    let progress = progress?;
    if progress == Progress::Finished {
        claim::remove_finalizer(&nodes, &node).await?;
        crate::metrics::node_terminated(&node, ctx.clock.now());
        terminator.forget(name);
    }
    Ok(progress)
}

/// The stages after the taint: drain, volumes, instance. `Finished` when the instance is gone.
async fn finalize(
    ctx: &Context,
    terminator: &Terminator,
    node: &Node,
    claim: Option<&NodeClaim>,
    provider_id: Option<&str>,
    conditions: &mut ClaimConditions,
) -> Result<Progress, ControllerError> {
    let now = ctx.clock.now();
    let deadline = claim.and_then(claim::termination_deadline);
    let drained = conditions.is(nodeclaim::DRAINED, Status::True);
    let volumes_done = conditions.is(nodeclaim::VOLUMES_DETACHED, Status::True)
        || conditions.is(nodeclaim::VOLUMES_DETACHED, Status::False);
    if !drained || !volumes_done {
        let pods = pods_on(ctx, &node.name_any()).await?;
        if !drained
            && let Some(waiting) = drain(ctx, terminator, node, &pods, deadline, now, conditions).await?
        {
            return Ok(waiting);
        }
        if !volumes_done
            && let Some(waiting) = await_volumes(ctx, node, &pods, deadline, now, conditions).await?
        {
            return Ok(waiting);
        }
    }
    let instance = match (claim, provider_id) {
        (Some(claim), _) => Some(claim.clone()),
        // No NodeClaim left: the cloud describes the instance well enough to terminate it.
        (None, Some(id)) => match ctx.cloud.get(id).await {
            Ok(instance) => Some(instance),
            Err(CloudProviderError::NodeClaimNotFound(_)) => None,
            Err(error) => return Err(error.into()),
        },
        (None, None) => None,
    };
    match instance {
        Some(instance) => claim::terminate_instance(ctx, &instance, conditions).await,
        None => Ok(Progress::Finished),
    }
}

/// Deleting a Node deletes its NodeClaim (whoever deleted the Node wants the machine gone), and
/// returns the NodeClaim as it is now.
async fn delete_node_claim(
    ctx: &Context,
    claims: &Api<NodeClaim>,
    provider_id: &str,
) -> Result<Option<NodeClaim>, ControllerError> {
    let Some(cached) = ctx
        .state
        .node_claims
        .store
        .find(|c| c.provider_id() == Some(provider_id))
    else {
        return Ok(None);
    };
    let name = cached.name_any();
    let Some(claim) = claims.get_opt(&name).await? else {
        return Ok(None);
    };
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(Some(claim));
    }
    claim::delete_ignoring_gone(claims, &name, claim.metadata.uid.clone()).await?;
    Ok(claims.get_opt(&name).await?)
}

async fn instance_gone(ctx: &Context, provider_id: Option<&str>) -> Result<bool, ControllerError> {
    let Some(provider_id) = provider_id else {
        return Ok(true);
    };
    match ctx.cloud.get(provider_id).await {
        Ok(_) => Ok(false),
        Err(CloudProviderError::NodeClaimNotFound(_)) => Ok(true),
        Err(error) => Err(error.into()),
    }
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Adds `karpenter.sh/disrupted:NoSchedule` and the exclude-from-external-load-balancers label,
/// unless present; the patch fails (and is retried) if the taints changed since they were read.
async fn ensure_tainted(nodes: &Api<Node>, node: Node) -> Result<Node, ControllerError> {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let tainted = taints.iter().any(|t| labels::DISRUPTED_TAINT.matches(t));
    let labelled = node
        .labels()
        .contains_key(labels::EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS);
    if tainted && labelled {
        return Ok(node);
    }
    let mut operations: Vec<Value> = Vec::new();
    if !tainted {
        let mut updated = taints.clone();
        updated.push(labels::DISRUPTED_TAINT.to_taint());
        match node.spec.as_ref().map(|s| s.taints.is_some()) {
            Some(true) => {
                operations.push(json!({ "op": "test", "path": "/spec/taints", "value": taints }));
                operations.push(json!({ "op": "replace", "path": "/spec/taints", "value": updated }));
            }
            Some(false) => operations.push(json!({ "op": "add", "path": "/spec/taints", "value": updated })),
            None => operations.push(json!({ "op": "add", "path": "/spec", "value": { "taints": updated } })),
        }
    }
    if !labelled {
        let key = labels::EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS;
        if node.metadata.labels.is_some() {
            operations.push(json!({ "op": "add", "path": format!("/metadata/labels/{}", pointer_escape(key)), "value": EXCLUDED_BY }));
        } else {
            operations
                .push(json!({ "op": "add", "path": "/metadata/labels", "value": { key: EXCLUDED_BY } }));
        }
    }
    // The JSON-patch type is kube's (`Patch::Json`'s field), inferred from its use.
    let patch = serde_json::from_value(Value::Array(operations)).map_err(|e| ControllerError::Encode {
        what: format!("taint patch for node {}", node.name_any()),
        message: e.to_string(),
    })?;
    Ok(nodes
        .patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await?)
}

/// A JSON Pointer segment (RFC 6901).
fn pointer_escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The pods bound to the node, read from the API server: whether the node is drained is decided
/// on what is there now, not on what a cache saw a moment ago.
async fn pods_on(ctx: &Context, node: &str) -> Result<Vec<Pod>, ControllerError> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
    Ok(pods.list(&params).await?.items)
}

/// Evicts the active tier and deletes what the deadline forces; `Some(waiting)` until the node
/// is drained and has stayed drained for [`MIN_DRAIN_TIME`].
async fn drain(
    ctx: &Context,
    terminator: &Terminator,
    node: &Node,
    pods: &[Pod],
    deadline: Option<Timestamp>,
    now: Timestamp,
    conditions: &mut ClaimConditions,
) -> Result<Option<Progress>, ControllerError> {
    let name = node.name_any();
    let plan = drain::plan(pods, now, deadline);
    if plan.is_drained() {
        return Ok(settle_drained(node, now, conditions));
    }
    let message = format!("{} pods are waiting to be evicted", plan.waiting);
    conditions.set(
        nodeclaim::DRAINED,
        Status::Unknown,
        nodeclaim::REASON_DRAINING,
        &message,
    );
    let outcome = execute(ctx, &name, pods, &plan, deadline).await;
    if outcome.refused > 0 && terminator.should_warn(&name, "drain", now) {
        ctx.events
            .warning(
                node,
                reasons::FAILED_DRAINING,
                "Drain",
                format!("Failed to drain node, {message}"),
            )
            .await;
    }
    if let Some(deadline) = deadline
        && !plan.force_delete.is_empty()
        && terminator.should_warn(&name, "grace-period", now)
    {
        ctx.events
            .warning(
                node,
                reasons::TERMINATION_GRACE_PERIOD_EXPIRING,
                "Drain",
                format!(
                    "All pods will be deleted by {}",
                    nodewright_api::clock::rfc3339(deadline)
                ),
            )
            .await;
    }
    if let Some(error) = outcome.error {
        return Err(error);
    }
    let tier = plan
        .active_tier
        .map_or_else(|| "forced deletions".to_owned(), |t| format!("{t:?}"));
    Ok(Some(Progress::waiting(
        RECHECK,
        format!("draining ({tier}): {message}"),
    )))
}

/// The node has no pod left to wait for: it counts as drained once it has stayed so for
/// [`MIN_DRAIN_TIME`] since draining started.
fn settle_drained(node: &Node, now: Timestamp, conditions: &mut ClaimConditions) -> Option<Progress> {
    let draining_since = if conditions.is_detached() {
        node.metadata.deletion_timestamp.as_ref().map(|t| t.0)
    } else {
        conditions
            .get(nodeclaim::DRAINED)
            .filter(|c| c.status == Status::Unknown.as_str())
            .map(|c| c.last_transition_time.0)
    };
    let Some(since) = draining_since else {
        conditions.set(
            nodeclaim::DRAINED,
            Status::Unknown,
            nodeclaim::REASON_DRAINING,
            "0 pods are waiting to be evicted",
        );
        return Some(Progress::waiting(
            MIN_DRAIN_TIME.unsigned_abs(),
            "drained: waiting for pods scheduled before the taint",
        ));
    };
    let settled_at = since.checked_add(MIN_DRAIN_TIME).unwrap_or(Timestamp::MAX);
    if now < settled_at {
        let left = settled_at.duration_since(now).unsigned_abs();
        return Some(Progress::waiting(
            left.min(MIN_DRAIN_TIME.unsigned_abs()),
            "drained: waiting for pods scheduled before the taint",
        ));
    }
    conditions.set(nodeclaim::DRAINED, Status::True, nodeclaim::DRAINED, "");
    crate::metrics::node_drained(node);
    None
}

/// What the evictions and deletions of one pass came to.
#[derive(Debug, Default)]
struct Executed {
    /// Evictions a PodDisruptionBudget refused.
    refused: usize,
    /// The first failure that was not a refusal.
    error: Option<ControllerError>,
}

enum Action<'a> {
    Evict(&'a PodRef),
    Delete(&'a ForceDelete),
}

async fn execute(
    ctx: &Context,
    node: &str,
    pods: &[Pod],
    plan: &DrainPlan,
    deadline: Option<Timestamp>,
) -> Executed {
    let actions = plan
        .force_delete
        .iter()
        .map(Action::Delete)
        .chain(plan.evict.iter().map(Action::Evict));
    // Futures built up front from a named async fn: closures returning futures defeat the
    // compiler's proof that the loop's future is `Send`.
    let calls: Vec<_> = actions
        .map(|action| act(ctx, node, pods, action, deadline))
        .collect();
    let results: Vec<Result<bool, ControllerError>> = stream::iter(calls)
        .buffer_unordered(EVICTION_CONCURRENCY)
        .collect()
        .await;
    let mut executed = Executed::default();
    for result in results {
        match result {
            Ok(true) => {}
            Ok(false) => executed.refused += 1,
            Err(error) => {
                executed.error.get_or_insert(error);
            }
        }
    }
    executed
}

/// One eviction or deletion; `Ok(false)` when a PodDisruptionBudget refused an eviction.
async fn act(
    ctx: &Context,
    node: &str,
    pods: &[Pod],
    action: Action<'_>,
    deadline: Option<Timestamp>,
) -> Result<bool, ControllerError> {
    match action {
        Action::Evict(pod) => evict(ctx, node, pods, pod).await,
        Action::Delete(forced) => force_delete(ctx, pods, forced, deadline).await.map(|()| true),
    }
}

/// Evicts one pod through the Eviction API; `Ok(false)` when a PodDisruptionBudget refused.
async fn evict(ctx: &Context, node: &str, pods: &[Pod], pod: &PodRef) -> Result<bool, ControllerError> {
    let namespaced: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace);
    let params = EvictParams {
        delete_options: Some(DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        }),
        ..EvictParams::default()
    };
    match crate::metrics::eviction_requested(namespaced.evict(&pod.name, &params).await) {
        Ok(_) => {
            if let Some(object) = find(pods, pod) {
                ctx.events
                    .normal(
                        object,
                        reasons::EVICTED,
                        "Evict",
                        format!("Evicted pod: node {node} is draining"),
                    )
                    .await;
            }
            Ok(true)
        }
        // Gone, or replaced by a pod of the same name: nothing to evict.
        Err(error) if is_not_found(&error) || is_conflict(&error) => Ok(true),
        Err(error) if is_refused_by_budget(&error) => {
            tracing::debug!(pod = %pod, %error, "eviction refused");
            Ok(false)
        }
        Err(error) => Err(error.into()),
    }
}

/// 429: a PodDisruptionBudget allows no disruption now. A pod covered by several budgets cannot
/// be evicted at all (the API server answers 500); that is a refusal too, not a failure.
fn is_refused_by_budget(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.code == 429 || status.message.contains("more than one PodDisruptionBudget")
        }
        _ => false,
    }
}

/// Deletes a pod directly, bypassing budgets, with a grace period that ends by the deadline.
async fn force_delete(
    ctx: &Context,
    pods: &[Pod],
    forced: &ForceDelete,
    deadline: Option<Timestamp>,
) -> Result<(), ControllerError> {
    let namespaced: Api<Pod> = Api::namespaced(ctx.client.clone(), &forced.pod.namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(forced.grace_period_seconds),
        preconditions: Some(Preconditions {
            uid: forced.pod.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match namespaced.delete(&forced.pod.name, &params).await {
        Ok(_) => {
            if let Some(object) = find(pods, &forced.pod) {
                let by = deadline.map_or_else(String::new, |d| {
                    format!(", the node terminates by {}", nodewright_api::clock::rfc3339(d))
                });
                ctx.events
                    .normal(
                        object,
                        crate::events::reasons::DISRUPTED,
                        "Delete",
                        format!("Deleting pod: its node's termination grace period is ending{by}"),
                    )
                    .await;
            }
            Ok(())
        }
        Err(error) if is_not_found(&error) || is_conflict(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn find<'a>(pods: &'a [Pod], pod: &PodRef) -> Option<&'a Pod> {
    pods.iter().find(|p| {
        p.metadata.namespace.as_deref() == Some(pod.namespace.as_str())
            && p.metadata.name.as_deref() == Some(pod.name.as_str())
    })
}

/// `Some(waiting)` while VolumeAttachments of the node remain and the deadline has not passed.
async fn await_volumes(
    ctx: &Context,
    node: &Node,
    pods: &[Pod],
    deadline: Option<Timestamp>,
    now: Timestamp,
    conditions: &mut ClaimConditions,
) -> Result<Option<Progress>, ControllerError> {
    let name = node.name_any();
    let attachments: Api<VolumeAttachment> = Api::all(ctx.client.clone());
    let attachments = attachments.list(&ListParams::default()).await?.items;
    let claims = ctx.state.pvcs.all();
    let volumes = ctx.state.pvs.all();
    let blocking = volumes::blocking_attachments(
        &name,
        &attachments,
        pods,
        &claims.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
        &volumes.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
        now,
    );
    if blocking.is_empty() {
        conditions.set(
            nodeclaim::VOLUMES_DETACHED,
            Status::True,
            nodeclaim::VOLUMES_DETACHED,
            "",
        );
        return Ok(None);
    }
    let message = format!(
        "{} VolumeAttachments remain: {}",
        blocking.len(),
        blocking.join(", ")
    );
    if deadline.is_some_and(|d| now >= d) {
        conditions.set(
            nodeclaim::VOLUMES_DETACHED,
            Status::False,
            nodeclaim::REASON_TERMINATION_GRACE_PERIOD_ELAPSED,
            &message,
        );
        return Ok(None);
    }
    conditions.set(
        nodeclaim::VOLUMES_DETACHED,
        Status::Unknown,
        nodeclaim::REASON_AWAITING_VOLUME_DETACHMENT,
        &message,
    );
    Ok(Some(Progress::waiting(RECHECK, message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_are_escaped_as_json_pointer_segments() {
        assert_eq!(
            pointer_escape("node.kubernetes.io/exclude-from-external-load-balancers"),
            "node.kubernetes.io~1exclude-from-external-load-balancers"
        );
        assert_eq!(pointer_escape("a~b/c"), "a~0b~1c");
    }
}
