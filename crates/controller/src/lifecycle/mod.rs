//! The NodeClaim lifecycle (Karpenter's `nodeclaim.lifecycle`): every NodeClaim goes through
//! `Launched` (the cloud created its instance), `Registered` (its Node joined and was synced) and
//! `Initialized` (the Node is ready for pods); `Ready` is derived from the three. Liveness deletes
//! claims that never launch or never register. Finalization (deleting a claim's Node and
//! instance) is the termination controller's.
//!
//! One round reconciles every NodeClaim: read (the claim from the watch cache, its Node by
//! providerID, and — when some claim still needs launching — the cloud's instances, once per
//! round) → decide (pure functions in the phase modules) → write (metadata patches, one Node patch,
//! one status write per claim). Status writes carry the resourceVersion read, so a concurrent
//! writer's change is never overwritten: the 409 makes the next round re-read.

mod initialization;
mod known_unavailable;
mod launch;
mod liveness;
mod registration;
mod registration_health;
mod write;

use std::{collections::HashMap, time::Duration};

use futures_util::{StreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use nodewright_api::{
    NodeClaim, NodeClaimStatus,
    conditions::{ConditionSet, TRUE, nodeclaim},
    labels,
};

use crate::{
    context::Context,
    error::{Backoff, ControllerError, ErrorClass},
};

/// How often a round runs when nothing changes, so liveness deadlines are noticed.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// A NodeClaim the cloud has not launched this long after its creation is deleted (Karpenter's
/// `LaunchTimeout`), so a claim retrying a failing launch gives way to a fresh plan.
pub const LAUNCH_TTL: Duration = Duration::from_mins(5);
/// Claims reconciled at once. Each touches only its own claim and Node.
const CONCURRENCY: usize = 32;

/// A claim whose reconcile failed, and why.
#[derive(Debug)]
pub struct Failure {
    pub node_claim: String,
    pub error: ControllerError,
}

/// Runs the lifecycle on every NodeClaim change, Node change and [`POLL_INTERVAL`] tick, forever.
pub async fn run(ctx: Context) {
    let mut claims = ctx.state.node_claims.changes();
    let mut nodes = ctx.state.nodes.changes();
    let mut lifecycle = Lifecycle::default();
    loop {
        // Marked before the round, so a change made during it triggers the next one.
        claims.mark_seen();
        nodes.mark_seen();
        for failure in lifecycle.reconcile_all(&ctx).await {
            tracing::warn!(node_claim = failure.node_claim, error = %failure.error, "nodeclaim lifecycle");
        }
        tokio::select! {
            () = claims.changed() => {}
            () = nodes.changed() => {}
            () = tokio::time::sleep(ctx.settings.wall(POLL_INTERVAL)) => {}
        }
    }
}

/// One round over every NodeClaim, ignoring backoff (tests; [`Lifecycle`] keeps backoff across
/// rounds). Returns the claims that failed.
pub async fn reconcile_all(ctx: &Context) -> Vec<Failure> {
    Lifecycle::default().reconcile_all(ctx).await
}

/// The lifecycle's memory across rounds: per-claim backoff after failures.
#[derive(Debug, Default)]
pub struct Lifecycle {
    backoff: Backoff,
    /// Claims not to retry before this time (of the injected clock).
    retry_at: HashMap<String, Timestamp>,
}

/// How a claim's reconcile ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing to retry; later changes or ticks bring the claim back.
    Done,
    /// The claim waits on something outside the cluster (the cloud): retry with backoff.
    RetryLater,
}

impl Lifecycle {
    /// Reconciles every NodeClaim not waiting out a backoff; returns the failures (conflicts,
    /// which the next round resolves by re-reading, are not failures).
    pub async fn reconcile_all(&mut self, ctx: &Context) -> Vec<Failure> {
        let now = ctx.clock.now();
        let mut claims = ctx.state.node_claims.all();
        claims.retain(|claim| self.retry_at.get(&claim.name_any()).is_none_or(|at| *at <= now));
        self.forget_missing(ctx);
        let instances = if claims.iter().any(|claim| launch::needs_launch(claim)) {
            launch::Instances::list(ctx).await
        } else {
            launch::Instances::not_needed()
        };
        let nodes = registration::NodeIndex::build(ctx);
        let results: Vec<(String, Result<Outcome, ControllerError>)> = stream::iter(claims)
            .map(|claim| {
                let (instances, nodes) = (&instances, &nodes);
                async move {
                    let result = reconcile(ctx, &claim, instances, nodes, now).await;
                    (claim.name_any(), result)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut failures = Vec::new();
        for (name, result) in results {
            match result {
                Ok(Outcome::Done) => self.succeeded(&name),
                Ok(Outcome::RetryLater) => self.failed(&name, now),
                Err(ControllerError::Kube(error)) if crate::error::is_conflict(&error) => {
                    tracing::debug!(node_claim = name, "conflict: re-reading next round");
                }
                Err(error) => {
                    if error.class() == ErrorClass::Gone {
                        self.succeeded(&name);
                    } else {
                        self.failed(&name, now);
                    }
                    failures.push(Failure {
                        node_claim: name,
                        error,
                    });
                }
            }
        }
        failures
    }

    fn succeeded(&mut self, name: &str) {
        self.backoff.succeeded(name);
        self.retry_at.remove(name);
    }

    fn failed(&mut self, name: &str, now: Timestamp) {
        let delay = self.backoff.failed(name);
        let at = jiff::SignedDuration::try_from(delay)
            .ok()
            .and_then(|delay| now.checked_add(delay).ok())
            .unwrap_or(Timestamp::MAX);
        self.retry_at.insert(name.to_owned(), at);
    }

    /// Drops the backoff of claims that no longer exist.
    fn forget_missing(&mut self, ctx: &Context) {
        if self.retry_at.is_empty() {
            return;
        }
        let existing: std::collections::HashSet<String> =
            ctx.state.node_claims.all().iter().map(|c| c.name_any()).collect();
        let gone: Vec<String> = self
            .retry_at
            .keys()
            .filter(|name| !existing.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            self.succeeded(&name);
        }
    }
}

/// A NodeClaim during its reconcile: the object as last written, and its status as it will be
/// written at the end.
#[derive(Debug)]
pub(crate) struct Working {
    pub(crate) claim: NodeClaim,
    pub(crate) status: NodeClaimStatus,
    pub(crate) now: Timestamp,
}

impl Working {
    fn new(claim: NodeClaim, now: Timestamp) -> Self {
        let status = claim.status.clone().unwrap_or_default();
        let mut working = Self { claim, status, now };
        working.conditions().initialize();
        working
    }

    pub(crate) fn name(&self) -> String {
        self.claim.name_any()
    }

    /// The status conditions, with `Ready` kept derived.
    pub(crate) fn conditions(&mut self) -> ConditionSet<'_> {
        ConditionSet::new(
            &mut self.status.conditions,
            &nodeclaim::DEPENDENTS,
            self.claim.metadata.generation,
            self.now,
        )
    }

    pub(crate) fn is_true(&self, condition_type: &str) -> bool {
        condition(&self.status, condition_type).is_some_and(|c| c.status == TRUE)
    }
}

/// A condition of a NodeClaim status.
pub(crate) fn condition<'a>(status: &'a NodeClaimStatus, condition_type: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == condition_type)
}

/// Whether the claim carries the termination finalizer.
fn has_finalizer(claim: &NodeClaim) -> bool {
    claim
        .finalizers()
        .iter()
        .any(|f| f == labels::TERMINATION_FINALIZER)
}

/// Reconciles one NodeClaim through every phase it is ready for.
async fn reconcile(
    ctx: &Context,
    claim: &NodeClaim,
    instances: &launch::Instances,
    nodes: &registration::NodeIndex,
    now: Timestamp,
) -> Result<Outcome, ControllerError> {
    if claim.metadata.deletion_timestamp.is_some() {
        // Finalization belongs to the termination controller.
        return Ok(Outcome::Done);
    }
    let mut claim = claim.clone();
    if !has_finalizer(&claim) {
        // Before any cloud call (invariant 1): an instance must never exist for a claim that can
        // disappear without its termination running.
        claim = write::add_claim_finalizer(ctx, &claim).await?;
    }
    let mut working = Working::new(claim, now);
    let mut outcome = Outcome::Done;
    if working.status.provider_id.is_none() {
        match launch::launch(ctx, &mut working, instances).await? {
            launch::Launch::Launched => {}
            launch::Launch::Deleted => return Ok(Outcome::Done),
            launch::Launch::Failed => outcome = Outcome::RetryLater,
        }
    } else if !working.is_true(nodeclaim::LAUNCHED) {
        // An instance is recorded (written by another controller version, or a status write
        // that lost its condition): the claim is launched, whatever the condition said.
        working.conditions().set_true(nodeclaim::LAUNCHED);
    }
    let mut node = match working.status.provider_id.as_deref() {
        Some(provider_id) => nodes.find(provider_id),
        None => registration::NodeMatch::None,
    };
    if working.is_true(nodeclaim::LAUNCHED) && !working.is_true(nodeclaim::REGISTERED) {
        node = registration::register(ctx, &mut working, node).await?;
    }
    if working.is_true(nodeclaim::REGISTERED) && !working.is_true(nodeclaim::INITIALIZED) {
        initialization::initialize(ctx, &mut working, &node).await?;
    }
    if liveness::enforce(ctx, &working).await? {
        return Ok(Outcome::Done);
    }
    write::claim_status(ctx, &working).await?;
    Ok(outcome)
}
