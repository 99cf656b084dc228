//! Launch: ask the cloud for the claim's instance and record what it launched.
//!
//! - Crash safety: before creating, the round's listing of the cloud's instances is searched for
//!   one already launched for this claim (same name, same uid when both are known). A controller
//!   that died between the cloud's create and the status write adopts that instance instead of
//!   launching a second one. The listing is taken once per round, only when some claim needs it.
//! - Insufficient capacity: the offerings the cloud tried are marked unavailable, a
//!   `InsufficientCapacityError` event is published, and the claim is deleted, as Karpenter does.
//!   The next provisioning round plans around those offerings because of the cache: no retry of
//!   the same offering, no create/delete storm. A claim whose every offering the cache already
//!   marks (planned in the same round as one that just failed) is failed the same way without
//!   asking the cloud again ([`super::known_unavailable`]).
//! - Node class not ready: `Launched=False` (reason `NodeClassNotReady`) and retry with backoff.
//!   Karpenter deletes the claim here; we keep it because the provisioner would create the same
//!   claim again at once (our NodePool readiness cannot see the cloud's view of the node class),
//!   which is the storm the deletion is meant to avoid. The launch TTL still bounds the wait.
//! - Any other create error: `Launched=False` with the provider's reason (or `LaunchFailed`) and
//!   message, a `LaunchFailed` event when the condition changes, and retry with backoff — as
//!   Karpenter does. The claim is not deleted at once: its spec cannot change, so deleting it
//!   would only make the provisioner create the same claim again every batch; liveness deletes it
//!   after [`super::LAUNCH_TTL`], bounding the churn to one claim per TTL.

use std::collections::{BTreeMap, HashMap};

use kube::ResourceExt;
use nodewright_api::{NodeClaim, NodeClaimStatus, Operator, conditions::nodeclaim, labels};
use nodewright_cloudprovider::{CloudProviderError, OfferingKey};

use super::{Working, write};
use crate::{context::Context, error::ControllerError, events::reasons};

/// How a launch attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Launch {
    /// The claim has its instance (created now or adopted) and `Launched=True`.
    Launched,
    /// The claim was deleted (insufficient capacity).
    Deleted,
    /// `Launched=False` was recorded; retry later.
    Failed,
}

/// Whether a claim still waits for its instance.
pub(super) fn needs_launch(claim: &NodeClaim) -> bool {
    claim.metadata.deletion_timestamp.is_none()
        && claim
            .status
            .as_ref()
            .and_then(|s| s.provider_id.as_ref())
            .is_none()
}

/// The cloud's live instances by the name of the NodeClaim they were launched for.
#[derive(Debug)]
pub(super) struct Instances(Result<HashMap<String, NodeClaim>, String>);

/// The listing was unavailable, so no launch may happen this round.
#[derive(Debug, thiserror::Error)]
#[error("cannot launch without checking for an instance launched before: {0}")]
struct NotListed(String);

impl Instances {
    /// Lists the cloud's instances.
    pub(super) async fn list(ctx: &Context) -> Self {
        match ctx.cloud.list().await {
            Ok(launched) => Self(Ok(launched
                .into_iter()
                .map(|claim| (claim.name_any(), claim))
                .collect())),
            Err(error) => Self(Err(format!("listing the cloud's instances failed: {error}"))),
        }
    }

    /// No claim needed launching when the round started.
    pub(super) fn not_needed() -> Self {
        Self(Err("the round did not list the cloud's instances".to_owned()))
    }

    /// The instance already launched for `claim`, if any.
    fn launched_for(&self, claim: &NodeClaim) -> Result<Option<&NodeClaim>, ControllerError> {
        let by_claim = self
            .0
            .as_ref()
            .map_err(|message| CloudProviderError::other(NotListed(message.clone())))?;
        Ok(by_claim
            .get(&claim.name_any())
            .filter(|launched| same_claim(claim, launched)))
    }
}

/// Same name (the caller's lookup) and, when both carry one, the same uid: a claim that reuses a
/// deleted claim's name must not adopt the old instance.
fn same_claim(claim: &NodeClaim, launched: &NodeClaim) -> bool {
    match (claim.uid(), launched.uid()) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Launches (or adopts) the claim's instance and records it in `working`.
pub(super) async fn launch(
    ctx: &Context,
    working: &mut Working,
    instances: &Instances,
) -> Result<Launch, ControllerError> {
    let launched = match instances.launched_for(&working.claim)? {
        Some(existing) => {
            tracing::info!(
                node_claim = working.name(),
                provider_id = existing.status.as_ref().and_then(|s| s.provider_id.as_deref()),
                "adopting the instance launched before"
            );
            existing.clone()
        }
        None if let Some(offerings) = known_out_of_capacity(ctx, working).await => {
            let message = CloudProviderError::InsufficientCapacity {
                node_claim: working.name(),
                offerings,
            }
            .to_string();
            // Already marked: marking again would only push their return further out.
            return capacity_failed(ctx, working, &[], &message).await;
        }
        None => {
            let request = crate::overlay::launch::prioritized(ctx, &working.claim).await;
            match ctx.cloud.create(&request.claim).await {
                Ok(mut launched) => {
                    let instance_type = launched.labels().get(labels::INSTANCE_TYPE).cloned();
                    let overlaid = instance_type
                        .map(|t| request.applied_annotations(&t))
                        .unwrap_or_default();
                    launched
                        .annotations_mut()
                        .extend(overlaid.into_iter().map(|(k, v)| (k.to_owned(), v)));
                    launched
                }
                Err(error) => return launch_failed(ctx, working, error).await,
            }
        }
    };
    let desired = with_launched_metadata(&working.claim, &launched);
    if desired.metadata.labels != working.claim.metadata.labels
        || desired.metadata.annotations != working.claim.metadata.annotations
    {
        working.claim = write::claim_metadata(ctx, &desired).await?;
    }
    record_launch(&mut working.status, &launched);
    working.conditions().set_true(nodeclaim::LAUNCHED);
    Ok(Launch::Launched)
}

/// The claim's offerings when every one of them is already known to be out of capacity (see
/// [`super::known_unavailable`]). Only looked up while the cache holds something, in the
/// instance types the provisioner's round evaluated (no listing per launch); a NodePool that is
/// not usable or whose types cannot be listed leaves the decision to the cloud.
async fn known_out_of_capacity(ctx: &Context, working: &Working) -> Option<Vec<OfferingKey>> {
    if ctx.unavailable.len_at(working.now) == 0 {
        return None;
    }
    let pool_name = working.claim.nodepool_name()?;
    let evaluated = ctx.state.instance_types.current(ctx).await;
    let types = evaluated.types_of(pool_name)?;
    super::known_unavailable::all_offerings_unavailable(&working.claim, types, |key| {
        ctx.unavailable.is_unavailable(key, working.now)
    })
}

/// What a failed create means for the claim.
#[derive(Debug)]
enum CreateFailure {
    Capacity {
        offerings: Vec<OfferingKey>,
        message: String,
    },
    NodeClassNotReady(String),
    Rejected {
        reason: String,
        message: String,
    },
    Transient(CloudProviderError),
}

fn classify(error: CloudProviderError) -> CreateFailure {
    let message = error.to_string();
    match error {
        CloudProviderError::InsufficientCapacity { offerings, .. } => {
            CreateFailure::Capacity { offerings, message }
        }
        CloudProviderError::NodeClassNotReady { .. } => CreateFailure::NodeClassNotReady(message),
        CloudProviderError::CreateError { reason, .. } => CreateFailure::Rejected {
            reason: condition_reason(&reason).to_owned(),
            message,
        },
        other => CreateFailure::Transient(other),
    }
}

/// The provider's reason if it is a valid condition reason (CamelCase word), else `LaunchFailed`.
fn condition_reason(reason: &str) -> &str {
    let valid = reason.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && reason
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | ':'))
        && !reason.ends_with([',', ':']);
    if valid {
        reason
    } else {
        nodeclaim::REASON_LAUNCH_FAILED
    }
}

/// Condition messages are kept short enough for every reader (Karpenter truncates too).
fn truncate(message: &str) -> String {
    const MAX: usize = 1024;
    match message.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &message[..end]),
        None => message.to_owned(),
    }
}

async fn launch_failed(
    ctx: &Context,
    working: &mut Working,
    error: CloudProviderError,
) -> Result<Launch, ControllerError> {
    match classify(error) {
        CreateFailure::Capacity { offerings, message } => {
            capacity_failed(ctx, working, &offerings, &message).await
        }
        CreateFailure::NodeClassNotReady(message) => {
            let message = truncate(&message);
            let changed =
                working
                    .conditions()
                    .set_false(nodeclaim::LAUNCHED, reasons::NODE_CLASS_NOT_READY, &message);
            if changed {
                ctx.events
                    .warning(&working.claim, reasons::NODE_CLASS_NOT_READY, "Launch", message)
                    .await;
            }
            Ok(Launch::Failed)
        }
        CreateFailure::Rejected { reason, message } => {
            let message = truncate(&message);
            if working
                .conditions()
                .set_false(nodeclaim::LAUNCHED, &reason, &message)
            {
                ctx.events
                    .warning(&working.claim, reasons::LAUNCH_FAILED, "Launch", message)
                    .await;
            }
            Ok(Launch::Failed)
        }
        CreateFailure::Transient(error) => Err(error.into()),
    }
}

/// Marks `offerings` unavailable, tells the claim why, and deletes it.
async fn capacity_failed(
    ctx: &Context,
    working: &Working,
    offerings: &[OfferingKey],
    message: &str,
) -> Result<Launch, ControllerError> {
    ctx.unavailable.mark(offerings, working.now);
    ctx.events
        .warning(
            &working.claim,
            reasons::INSUFFICIENT_CAPACITY_ERROR,
            "Launch",
            format!("NodeClaim {} event: {message}", working.name()),
        )
        .await;
    tracing::info!(node_claim = working.name(), %message, "deleting the nodeclaim: insufficient capacity");
    write::delete_claim(ctx, &working.claim).await?;
    crate::metrics::nodeclaim_failed(&working.claim, "insufficient_capacity");
    Ok(Launch::Deleted)
}

/// `claim` with the labels and annotations of its launch: the provider's resolved labels, then
/// the labels its single-valued requirements imply, then its own labels (each later source wins,
/// so what the user asked for is never overwritten); annotations are merged the same way.
fn with_launched_metadata(claim: &NodeClaim, launched: &NodeClaim) -> NodeClaim {
    let mut merged: BTreeMap<String, String> = launched.labels().clone();
    merged.extend(requirement_labels(claim));
    merged.extend(claim.labels().iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut annotations = claim.annotations().clone();
    for (key, value) in launched.annotations() {
        annotations.entry(key.clone()).or_insert_with(|| value.clone());
    }
    let mut desired = claim.clone();
    desired.metadata.labels = Some(merged);
    if !annotations.is_empty() || desired.metadata.annotations.is_some() {
        desired.metadata.annotations = Some(annotations);
    }
    desired
}

/// Labels implied by requirements with exactly one allowed value, for keys a node may carry.
fn requirement_labels(claim: &NodeClaim) -> BTreeMap<String, String> {
    claim
        .spec
        .requirements
        .iter()
        .filter(|r| r.operator == Operator::In && r.values.len() == 1)
        .filter(|r| labels::restricted_label_reason(&r.key, true).is_none())
        .map(|r| {
            (
                labels::normalize_label_key(&r.key).to_owned(),
                r.values[0].clone(),
            )
        })
        .collect()
}

/// Copies what the cloud reports about the instance into the status.
fn record_launch(status: &mut NodeClaimStatus, launched: &NodeClaim) {
    let Some(reported) = launched.status.as_ref() else {
        return;
    };
    status.provider_id.clone_from(&reported.provider_id);
    if reported.image_id.is_some() {
        status.image_id.clone_from(&reported.image_id);
    }
    status.capacity.clone_from(&reported.capacity);
    status.allocatable.clone_from(&reported.allocatable);
}

#[cfg(test)]
mod tests {
    use nodewright_catalog::CapacityType;
    use serde_json::json;

    use super::*;

    fn claim(name: &str, uid: Option<&str>) -> NodeClaim {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": {
                "name": name,
                "uid": uid,
                "labels": {"karpenter.sh/nodepool": "default", "team": "a"},
            },
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [
                    {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand", "spot"]},
                    {"key": "example.com/tier", "operator": "In", "values": ["gold"]},
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["h"]},
                ],
            }
        }))
        .unwrap()
    }

    #[test]
    fn adoption_matches_name_and_uid() {
        let mine = claim("default-abc", Some("u1"));
        let launched = claim("default-abc", Some("u1"));
        let instances = Instances(Ok(HashMap::from([("default-abc".to_owned(), launched)])));
        assert!(instances.launched_for(&mine).unwrap().is_some());
        let reused_name = claim("default-abc", Some("u2"));
        assert!(instances.launched_for(&reused_name).unwrap().is_none());
        assert!(instances.launched_for(&claim("other", None)).unwrap().is_none());
        assert!(
            Instances::not_needed().launched_for(&mine).is_err(),
            "no listing, no launch"
        );
    }

    #[test]
    fn launched_labels_never_override_the_claims_own() {
        let mine = claim("c", None);
        let mut launched = mine.clone();
        launched.labels_mut().extend([
            ("team".to_owned(), "from-cloud".to_owned()),
            (labels::ZONE.to_owned(), "us-east-1a".to_owned()),
            (labels::INSTANCE_TYPE.to_owned(), "m5.large".to_owned()),
        ]);
        let desired = with_launched_metadata(&mine, &launched);
        let got = desired.labels();
        assert_eq!(got["team"], "a");
        assert_eq!(got[labels::ZONE], "us-east-1a");
        assert_eq!(got[labels::INSTANCE_TYPE], "m5.large");
        assert_eq!(got["example.com/tier"], "gold", "single-valued requirement");
        assert!(
            !got.contains_key(labels::CAPACITY_TYPE),
            "two values: not implied"
        );
        assert!(!got.contains_key(labels::HOSTNAME), "restricted key");
    }

    #[test]
    fn create_errors_are_classified() {
        let offering = OfferingKey::new("m5.large", "us-east-1a", CapacityType::OnDemand);
        match classify(CloudProviderError::InsufficientCapacity {
            node_claim: "c".into(),
            offerings: vec![offering.clone()],
        }) {
            CreateFailure::Capacity { offerings, message } => {
                assert_eq!(offerings, vec![offering]);
                assert!(message.contains("m5.large/us-east-1a/on-demand"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(CloudProviderError::NodeClassNotReady {
                node_class: "default".into(),
                message: "subnets".into()
            }),
            CreateFailure::NodeClassNotReady(_)
        ));
        match classify(CloudProviderError::CreateError {
            reason: "NoCompatibleInstanceType".into(),
            message: "nothing fits".into(),
        }) {
            CreateFailure::Rejected { reason, message } => {
                assert_eq!(reason, "NoCompatibleInstanceType");
                assert!(message.contains("nothing fits"));
            }
            other => panic!("{other:?}"),
        }
        match classify(CloudProviderError::CreateError {
            reason: "not a reason!".into(),
            message: "m".into(),
        }) {
            CreateFailure::Rejected { reason, .. } => assert_eq!(reason, nodeclaim::REASON_LAUNCH_FAILED),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(CloudProviderError::other(std::io::Error::other("throttled"))),
            CreateFailure::Transient(_)
        ));
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(2000);
        let short = truncate(&long);
        assert_eq!(short.chars().count(), 1024 + 3);
        assert_eq!(truncate("fine"), "fine");
    }

    #[test]
    fn needs_launch_until_a_provider_id_is_recorded() {
        let mut c = claim("c", None);
        assert!(needs_launch(&c));
        c.status = Some(NodeClaimStatus {
            provider_id: Some("aws:///us-east-1a/i-1".into()),
            ..NodeClaimStatus::default()
        });
        assert!(!needs_launch(&c));
    }
}
