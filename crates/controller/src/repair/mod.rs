//! Node repair (Karpenter's `node.health` controller, behind the `NodeRepair` feature gate): a
//! Node that shows a condition from the cloud provider's repair policies for longer than the
//! policy tolerates has its NodeClaim deleted, so termination removes it and the provisioner
//! launches a replacement for its pods.
//!
//! As in Karpenter the deletion is forceful: the NodeClaim is annotated
//! `karpenter.sh/nodeclaim-termination-timestamp` = now before it is deleted, so the drain
//! deletes the pods at once instead of waiting for PodDisruptionBudgets or `do-not-disrupt`
//! (a broken node cannot run them anyway), and no disruption budget is consulted. What keeps
//! repair from emptying a pool is [`decide::allowance`]: nothing is repaired while more than 20%
//! of a NodePool's nodes are unhealthy, except that pools of up to 4 nodes repair one node at a
//! time. A node held back gets a `NodeRepairBlocked` warning (at most every 15 minutes, as
//! Karpenter deduplicates it); a repaired one a `DisruptionTerminating` event on the Node and
//! the NodeClaim, and the counters `karpenter_nodeclaims_disrupted_total{reason="unhealthy"}` and
//! `karpenter_nodeclaims_unhealthy_disrupted_total`.
//!
//! Each pass reads the cached Nodes and NodeClaims, decides ([`decide::decide`], pure) and
//! writes; it runs when either changes, when the next toleration runs out, or after [`POLL`].

pub mod decide;

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    time::Duration,
};

use jiff::{SignedDuration, Timestamp};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
};
use nodewright_api::{NodeClaim, labels};
use serde_json::json;

use self::decide::{Blocked, Repair};
use crate::{
    context::Context,
    error::{ControllerError, is_not_found},
    events::reasons::{DISRUPTION_TERMINATING, NODE_REPAIR_BLOCKED},
    metrics::record as metrics,
};

/// The longest sleep between passes, in the clock's time (Karpenter requeues a blocked node
/// after a minute; changes to Nodes and NodeClaims wake the loop sooner).
pub const POLL: Duration = Duration::from_mins(1);
/// A node's `NodeRepairBlocked` warning is repeated at most this often (Karpenter's dedupe).
const BLOCKED_EVENT_INTERVAL: SignedDuration = SignedDuration::from_mins(15);

/// Repairs unhealthy nodes, forever; idles when the gate is off or the provider has no policies.
pub async fn run(ctx: Context) {
    let policies = ctx.cloud.repair_policies();
    if !ctx.settings.node_repair || policies.is_empty() {
        tracing::info!(
            gate = ctx.settings.node_repair,
            policies = policies.len(),
            "node repair is off"
        );
        // A loop that returns stops the controllers; this one has nothing to do.
        std::future::pending::<()>().await;
    }
    let mut nodes = ctx.state.nodes.changes();
    let mut claims = ctx.state.node_claims.changes();
    let mut deleted = HashSet::new();
    let mut warned: HashMap<String, Timestamp> = HashMap::new();
    loop {
        nodes.mark_seen();
        claims.mark_seen();
        let now = ctx.clock.now();
        let cached_claims = ctx.state.node_claims.all();
        // Our own deletes matter until the cache shows them.
        deleted.retain(|uid: &String| {
            cached_claims
                .iter()
                .any(|c| c.uid().as_ref() == Some(uid) && c.metadata.deletion_timestamp.is_none())
        });
        let decision = decide::decide(&policies, &ctx.state.nodes.all(), &cached_claims, &deleted, now);
        for error in &decision.invalid {
            tracing::warn!(%error, "unhealthy node not repaired");
        }
        for repair in &decision.repairs {
            match write_repair(&ctx, repair, now).await {
                Ok(Some(uid)) => {
                    deleted.insert(uid);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(node = %repair.node.name_any(), %error, "could not repair a node; retrying");
                }
            }
        }
        warned.retain(|_, at| now.duration_since(*at) < BLOCKED_EVENT_INTERVAL);
        for blocked in &decision.blocked {
            if let Entry::Vacant(entry) = warned.entry(blocked.node.name_any()) {
                entry.insert(now);
                warn_blocked(&ctx, blocked).await;
            }
        }
        let sleep = crate::settings::until_next(now, decision.next, POLL);
        tokio::select! {
            () = nodes.changed() => {}
            () = claims.changed() => {}
            () = tokio::time::sleep(ctx.settings.wall(sleep)) => {}
        }
    }
}

/// Marks the NodeClaim for forceful termination and deletes it; returns its uid, or `None` if
/// it was already gone.
async fn write_repair(
    ctx: &Context,
    repair: &Repair,
    now: Timestamp,
) -> Result<Option<String>, ControllerError> {
    let claim = &repair.claim;
    let name = claim.name_any();
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    // The deadline is now: termination deletes the pods without waiting for their budgets.
    let annotate = json!({ "metadata": { "annotations": {
        labels::NODECLAIM_TERMINATION_TIMESTAMP: nodewright_api::clock::rfc3339(now)
    } } });
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&annotate))
        .await
    {
        Ok(_) => {}
        Err(error) if is_not_found(&error) => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    // Preconditioned on the uid: a NodeClaim re-created under the same name is healthy news.
    let params = DeleteParams {
        preconditions: claim.uid().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(error) if is_not_found(&error) => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let condition = &repair.condition;
    let unhealthy_for = now.duration_since(condition.since);
    tracing::info!(
        node = %repair.node.name_any(),
        nodeclaim = %name,
        condition = %condition.condition_type,
        status = %condition.condition_status,
        %unhealthy_for,
        "deleted an unhealthy node's NodeClaim"
    );
    let pool = claim.labels().get(labels::NODE_POOL).and_then(|pool_name| {
        ctx.state
            .node_pools
            .all()
            .into_iter()
            .find(|p| &p.name_any() == pool_name)
    });
    metrics::nodeclaim_repaired(claim, pool.as_deref(), &condition.condition_type);
    let note = format!(
        "repairing the node: {}={} for {:#}, longer than the {:#} the cloud provider tolerates",
        condition.condition_type,
        condition.condition_status,
        unhealthy_for,
        SignedDuration::try_from(condition.toleration).unwrap_or(SignedDuration::MAX),
    );
    ctx.events
        .normal(&*repair.node, DISRUPTION_TERMINATING, "Repair", note.clone())
        .await;
    ctx.events
        .normal(&**claim, DISRUPTION_TERMINATING, "Repair", note)
        .await;
    Ok(claim.uid())
}

async fn warn_blocked(ctx: &Context, blocked: &Blocked) {
    let message = blocked.message();
    tracing::info!(node = %blocked.node.name_any(), %message, "node repair blocked");
    ctx.events
        .warning(&*blocked.node, NODE_REPAIR_BLOCKED, "Repair", message)
        .await;
}
