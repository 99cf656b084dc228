//! The NodeClaim finalizer: the Node goes first (draining through the Node finalizer), then the
//! instance, then the NodeClaim.
//!
//! A NodeClaim without a providerID may still have an instance: the controller can have crashed
//! between the cloud's create and the status write. The cloud's list names instances by their
//! NodeClaim tag, so any instance carrying this NodeClaim's name is terminated before it goes.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{api::core::v1::Node, apimachinery::pkg::apis::meta::v1::Condition};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
};
use nodewright_api::{
    NodeClaim,
    conditions::{ConditionSet, Status, nodeclaim},
    labels,
};
use nodewright_cloudprovider::CloudProviderError;
use serde_json::json;

use super::{INSTANCE_RECHECK, Progress, RECHECK};
use crate::{
    context::Context,
    error::{ControllerError, is_conflict, is_not_found},
};

pub(super) async fn reconcile(ctx: &Context, name: &str) -> Result<Progress, ControllerError> {
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let Some(claim) = api.get_opt(name).await? else {
        return Ok(Progress::Finished);
    };
    if !super::awaits_termination(&claim.metadata) {
        return Ok(Progress::Finished);
    }
    let claim = ensure_deadline_annotation(&api, claim).await?;
    let mut conditions = ClaimConditions::new(&claim, ctx.clock.now());
    let progress = match claim.provider_id() {
        Some(provider_id) => terminate_launched(ctx, &claim, provider_id, &mut conditions).await,
        None => terminate_unrecorded_launches(ctx, &claim, &mut conditions).await,
    };
    // Conditions are written even when a step failed: they record how far termination got.
    conditions.write(&api).await?;
    let progress = progress?;
    if progress == Progress::Finished {
        remove_finalizer(&api, &claim).await?;
        crate::metrics::nodeclaim_terminated(&claim, ctx.clock.now());
    }
    Ok(progress)
}

async fn terminate_launched(
    ctx: &Context,
    claim: &NodeClaim,
    provider_id: &str,
    conditions: &mut ClaimConditions,
) -> Result<Progress, ControllerError> {
    let nodes = nodes_of(ctx, provider_id);
    if !nodes.is_empty() {
        let node_api: Api<Node> = Api::all(ctx.client.clone());
        let mut names = Vec::new();
        for node in &nodes {
            let name = node.name_any();
            if node.metadata.deletion_timestamp.is_none() {
                delete_ignoring_gone(&node_api, &name, node.metadata.uid.clone()).await?;
            }
            names.push(name);
        }
        return Ok(Progress::waiting(
            RECHECK,
            format!("waiting for node {} to terminate", names.join(", ")),
        ));
    }
    terminate_instance(ctx, claim, conditions).await
}

/// Terminates the instance `claim` names; `Finished` once the cloud says it is gone.
pub(super) async fn terminate_instance(
    ctx: &Context,
    claim: &NodeClaim,
    conditions: &mut ClaimConditions,
) -> Result<Progress, ControllerError> {
    match ctx.cloud.delete(claim).await {
        Ok(()) => {
            conditions.set(
                nodeclaim::INSTANCE_TERMINATING,
                Status::True,
                nodeclaim::INSTANCE_TERMINATING,
                "",
            );
            Ok(Progress::waiting(
                INSTANCE_RECHECK,
                "waiting for the instance to terminate",
            ))
        }
        Err(CloudProviderError::NodeClaimNotFound(_)) => Ok(Progress::Finished),
        Err(error) => Err(error.into()),
    }
}

async fn terminate_unrecorded_launches(
    ctx: &Context,
    claim: &NodeClaim,
    conditions: &mut ClaimConditions,
) -> Result<Progress, ControllerError> {
    let name = claim.name_any();
    let launched: Vec<NodeClaim> = ctx
        .cloud
        .list()
        .await?
        .into_iter()
        .filter(|instance| instance.metadata.name.as_deref() == Some(name.as_str()))
        .filter(|instance| instance.provider_id().is_some())
        .collect();
    if launched.is_empty() {
        return Ok(Progress::Finished);
    }
    let mut terminating = 0_usize;
    for instance in &launched {
        tracing::info!(
            nodeclaim = name,
            provider_id = instance.provider_id().unwrap_or_default(),
            "terminating an instance launched for the nodeclaim but never recorded on it"
        );
        if terminate_instance(ctx, instance, conditions).await? != Progress::Finished {
            terminating += 1;
        }
    }
    if terminating == 0 {
        return Ok(Progress::Finished);
    }
    Ok(Progress::waiting(
        INSTANCE_RECHECK,
        format!("waiting for {terminating} unrecorded instance(s) to terminate"),
    ))
}

/// Nodes registered for the instance, from the cache: a Node registered a moment ago may be
/// missing, which only means its kubelet's machine is terminated under it and the Node
/// finalizer finds the instance gone.
fn nodes_of(ctx: &Context, provider_id: &str) -> Vec<Arc<Node>> {
    ctx.state
        .nodes
        .all()
        .into_iter()
        .filter(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(provider_id))
        .collect()
}

/// Writes `karpenter.sh/nodeclaim-termination-timestamp` (deletion + terminationGracePeriod)
/// once, so the deadline survives restarts and every reader agrees on it.
async fn ensure_deadline_annotation(
    api: &Api<NodeClaim>,
    claim: NodeClaim,
) -> Result<NodeClaim, ControllerError> {
    if claim
        .annotations()
        .contains_key(labels::NODECLAIM_TERMINATION_TIMESTAMP)
    {
        return Ok(claim);
    }
    let Some(deadline) = grace_period_deadline(&claim) else {
        return Ok(claim);
    };
    let patch = json!({ "metadata": { "annotations": {
        labels::NODECLAIM_TERMINATION_TIMESTAMP: nodewright_api::clock::rfc3339(deadline)
    } } });
    Ok(api
        .patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?)
}

/// When the NodeClaim's pods must be gone: the annotation if set, else deletion +
/// terminationGracePeriod; `None` without a grace period.
pub(super) fn termination_deadline(claim: &NodeClaim) -> Option<Timestamp> {
    if let Some(text) = claim.annotations().get(labels::NODECLAIM_TERMINATION_TIMESTAMP) {
        match text.parse::<Timestamp>() {
            Ok(deadline) => return Some(deadline),
            Err(error) => tracing::warn!(
                nodeclaim = claim.name_any(),
                annotation = labels::NODECLAIM_TERMINATION_TIMESTAMP,
                value = text,
                %error,
                "ignoring an unparseable termination timestamp"
            ),
        }
    }
    grace_period_deadline(claim)
}

fn grace_period_deadline(claim: &NodeClaim) -> Option<Timestamp> {
    let deleted = claim.metadata.deletion_timestamp.as_ref()?.0;
    let grace = claim.spec.termination_grace_period.as_ref()?;
    if let Ok(Ok(grace)) = grace.parse().map(SignedDuration::try_from) {
        return deleted.checked_add(grace).ok();
    }
    let error = ControllerError::InvalidSpec {
        kind: "NodeClaim",
        name: claim.name_any(),
        field: "spec.terminationGracePeriod".to_owned(),
        message: format!("{grace} is not a duration; draining without a deadline"),
    };
    tracing::warn!(%error, "invalid terminationGracePeriod");
    None
}

/// The NodeClaim's conditions, changed in memory during a reconcile and written once at the end.
#[derive(Debug)]
pub(super) struct ClaimConditions {
    name: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    conditions: Vec<Condition>,
    now: Timestamp,
    changed: bool,
    /// The condition types this reconcile set, re-applied over a fresher read on a conflict.
    set_types: Vec<String>,
}

impl ClaimConditions {
    pub(super) fn new(claim: &NodeClaim, now: Timestamp) -> Self {
        Self {
            name: claim.metadata.name.clone(),
            resource_version: claim.metadata.resource_version.clone(),
            generation: claim.metadata.generation,
            conditions: claim
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default(),
            now,
            changed: false,
            set_types: Vec::new(),
        }
    }

    /// Conditions with nowhere to go (a Node whose NodeClaim is gone): kept in memory only.
    pub(super) fn detached(now: Timestamp) -> Self {
        Self {
            name: None,
            resource_version: None,
            generation: None,
            conditions: Vec::new(),
            now,
            changed: false,
            set_types: Vec::new(),
        }
    }

    /// Whether these conditions belong to no NodeClaim (see [`Self::detached`]).
    pub(super) fn is_detached(&self) -> bool {
        self.name.is_none()
    }

    pub(super) fn get(&self, condition_type: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == condition_type)
    }

    pub(super) fn is(&self, condition_type: &str, status: Status) -> bool {
        self.get(condition_type)
            .is_some_and(|c| c.status == status.as_str())
    }

    pub(super) fn set(&mut self, condition_type: &str, status: Status, reason: &str, message: &str) {
        let mut set = ConditionSet::new(
            &mut self.conditions,
            &nodeclaim::DEPENDENTS,
            self.generation,
            self.now,
        );
        let changed = set.set(condition_type, status, reason, message);
        if changed && !self.set_types.iter().any(|t| t == condition_type) {
            self.set_types.push(condition_type.to_owned());
        }
        self.changed |= changed;
    }

    /// One status patch, conditioned on the version read, if anything changed. When another
    /// writer got there first (a conflict), the conditions this reconcile set are laid over a
    /// fresh read and written again: a lost `InstanceTerminating` could never be set later, since
    /// the cloud answers "not found" once the instance is gone.
    pub(super) async fn write(&self, api: &Api<NodeClaim>) -> Result<(), ControllerError> {
        let (true, Some(name)) = (self.changed, &self.name) else {
            return Ok(());
        };
        let mut resource_version = self.resource_version.clone();
        let mut conditions = self.conditions.clone();
        for attempt in 0..3 {
            let patch = json!({
                "metadata": { "resourceVersion": resource_version },
                "status": { "conditions": conditions },
            });
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Gone already: its conditions no longer matter.
                Err(error) if is_not_found(&error) => return Ok(()),
                Err(error) if is_conflict(&error) && attempt < 2 => {
                    let Some(fresh) = api.get_opt(name).await? else {
                        return Ok(());
                    };
                    resource_version = fresh.metadata.resource_version;
                    conditions = self.laid_over(fresh.status.map(|s| s.conditions).unwrap_or_default());
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// `fresh` with the conditions this reconcile set replaced by ours.
    fn laid_over(&self, mut fresh: Vec<Condition>) -> Vec<Condition> {
        for condition_type in &self.set_types {
            fresh.retain(|c| &c.type_ != condition_type);
            if let Some(ours) = self.get(condition_type) {
                fresh.push(ours.clone());
            }
        }
        fresh
    }
}

/// Removes our finalizer, conditioned on it still being where we saw it (a JSON patch `test`),
/// so no other controller's finalizer is ever dropped.
pub(super) async fn remove_finalizer<K>(api: &Api<K>, object: &K) -> Result<(), ControllerError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(index) = object
        .meta()
        .finalizers
        .iter()
        .flatten()
        .position(|f| f == labels::TERMINATION_FINALIZER)
    else {
        return Ok(());
    };
    let finalizer_at = format!("/metadata/finalizers/{index}");
    // The JSON-patch type is kube's (`Patch::Json`'s field); inferred, so this crate needs no
    // direct dependency on it.
    let patch = serde_json::from_value(json!([
        { "op": "test", "path": finalizer_at, "value": labels::TERMINATION_FINALIZER },
        { "op": "remove", "path": finalizer_at },
    ]))
    .map_err(|e| ControllerError::Encode {
        what: "finalizer patch".to_owned(),
        message: e.to_string(),
    })?;
    let name = object.meta().name.clone().unwrap_or_default();
    match api
        .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Deletes an object if it still is the one we saw (uid precondition); gone already is fine.
pub(super) async fn delete_ignoring_gone<K>(
    api: &Api<K>,
    name: &str,
    uid: Option<String>,
) -> Result<(), ControllerError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) || crate::error::is_conflict(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}
