//! The lifecycle's writes. Every write that replaces a list or a whole status carries the
//! resourceVersion it was computed from, so a concurrent change answers 409 (re-read next round)
//! instead of being overwritten.

use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use nodewright_api::{NodeClaim, labels};
use serde_json::json;

use super::Working;
use crate::{
    context::Context,
    error::{ControllerError, is_not_found},
};

/// The field manager of the lifecycle's writes.
const MANAGER: &str = "karpenter";

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

fn claims(ctx: &Context) -> Api<NodeClaim> {
    Api::all(ctx.client.clone())
}

/// Adds the termination finalizer; returns the claim as stored.
pub(super) async fn add_claim_finalizer(
    ctx: &Context,
    claim: &NodeClaim,
) -> Result<NodeClaim, ControllerError> {
    let mut finalizers = claim.finalizers().to_vec();
    finalizers.push(labels::TERMINATION_FINALIZER.to_owned());
    let patch = json!({
        "metadata": {
            "resourceVersion": claim.resource_version(),
            "finalizers": finalizers,
        }
    });
    Ok(claims(ctx)
        .patch(&claim.name_any(), &params(), &Patch::Merge(&patch))
        .await?)
}

/// Writes the claim's labels and annotations (both maps merge: keys are only ever added); returns
/// the claim as stored.
pub(super) async fn claim_metadata(ctx: &Context, claim: &NodeClaim) -> Result<NodeClaim, ControllerError> {
    let patch = json!({
        "metadata": {
            "resourceVersion": claim.resource_version(),
            "labels": claim.labels(),
            "annotations": claim.annotations(),
        }
    });
    Ok(claims(ctx)
        .patch(&claim.name_any(), &params(), &Patch::Merge(&patch))
        .await?)
}

/// Writes the working status through the status subresource, if it changed.
pub(super) async fn claim_status(ctx: &Context, working: &Working) -> Result<(), ControllerError> {
    if working.claim.status.as_ref() == Some(&working.status) {
        return Ok(());
    }
    let mut claim = working.claim.clone();
    claim.status = Some(working.status.clone());
    claims(ctx)
        .replace_status(&claim.name_any(), &PostParams::default(), &claim)
        .await?;
    Ok(())
}

/// Deletes a claim; one already gone is fine. Its finalizer keeps it until termination is done.
pub(super) async fn delete_claim(ctx: &Context, claim: &NodeClaim) -> Result<(), ControllerError> {
    match claims(ctx)
        .delete(&claim.name_any(), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Writes `desired`'s labels, annotations, finalizers, owner references and taints onto the Node
/// it was computed from; returns the Node as stored.
pub(super) async fn node(ctx: &Context, desired: &Node) -> Result<Node, ControllerError> {
    let patch = json!({
        "metadata": {
            "resourceVersion": desired.resource_version(),
            "labels": desired.labels(),
            "annotations": desired.annotations(),
            "finalizers": desired.finalizers(),
            "ownerReferences": desired.owner_references(),
        },
        "spec": {
            "taints": desired.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default(),
        }
    });
    let api: Api<Node> = Api::all(ctx.client.clone());
    Ok(api
        .patch(&desired.name_any(), &params(), &Patch::Merge(&patch))
        .await?)
}

/// Adds one label to a Node (a merge of one key: safe without a resourceVersion).
pub(super) async fn node_label(
    ctx: &Context,
    node: &str,
    key: &str,
    value: &str,
) -> Result<Node, ControllerError> {
    let patch = json!({ "metadata": { "labels": { key: value } } });
    let api: Api<Node> = Api::all(ctx.client.clone());
    Ok(api.patch(node, &params(), &Patch::Merge(&patch)).await?)
}
