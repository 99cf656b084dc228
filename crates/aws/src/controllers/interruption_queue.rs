//! The interruption loop: long-poll the SQS queue ([`InterruptionQueue::receive`]), decide with
//! [`interruption::plan`] (pure) against the NodeClaims of the instances named, then write: mark
//! reclaimed spot offerings unavailable, delete the NodeClaims to replace (the core's termination
//! cordons and drains their nodes and the provisioner replaces them), record an event on each
//! NodeClaim concerned and its Node ([`InterruptionObserver`], Karpenter's reasons), and delete the
//! message. The observer also counts messages received (by type) and deleted, and how long each
//! waited since its event happened (Karpenter's `karpenter_interruption_*` metrics).
//!
//! A message is deleted only once it was acted on, so a failed NodeClaim delete is retried when
//! the message becomes visible again; a malformed message is logged and deleted at once (it would
//! otherwise come back forever).

use std::{sync::Arc, time::Duration};

use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams},
};
use nodewright_api::{NodeClaim, clock::Clock, labels};
use nodewright_catalog::CapacityType;
use nodewright_cloudprovider::BoxFuture;

use crate::{
    AwsProvider,
    instances::instance_id,
    interruption::{
        self, ClaimedInstance, Interruption, InterruptionKind, InterruptionPlan, InterruptionQueue, Received,
    },
};

/// How long the loop waits after a failed receive before polling again.
const RECEIVE_RETRY: Duration = Duration::from_secs(5);

/// An event about an interruption, on the NodeClaim it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptionEvent {
    /// Warning (the node is going away) or Normal.
    pub warning: bool,
    /// Karpenter's reason string.
    pub reason: &'static str,
    pub message: String,
}

/// Where the loop records what it sees and does: events and metrics.
pub trait InterruptionObserver: Send + Sync {
    /// An event about `node_claim` (and, where the observer can find it, its Node).
    fn record<'a>(&'a self, node_claim: &'a NodeClaim, event: InterruptionEvent) -> BoxFuture<'a, ()>;
    /// A well-formed message arrived, by Karpenter's message type (`spot_interrupted`, ...,
    /// `noop` for events Nodewright does not act on).
    fn received(&self, message_type: &'static str);
    /// A message was deleted from the queue; `queued` is how long since its event happened,
    /// when the message said.
    fn deleted(&self, queued: Option<Duration>);
}

/// The event Karpenter records for `kind`.
pub fn event_for(kind: &InterruptionKind) -> InterruptionEvent {
    let (warning, reason, message) = match kind {
        InterruptionKind::SpotInterrupted => {
            (true, "SpotInterrupted", "Spot interruption warning was triggered")
        }
        InterruptionKind::RebalanceRecommendation => (
            false,
            "SpotRebalanceRecommendation",
            "Spot rebalance recommendation was triggered",
        ),
        InterruptionKind::ScheduledChange => {
            (true, "InstanceUnhealthy", "An unhealthy warning was triggered")
        }
        InterruptionKind::Stopping => (true, "InstanceStopping", "Instance is stopping"),
        InterruptionKind::Terminating => (true, "InstanceTerminating", "Instance is terminating"),
    };
    InterruptionEvent {
        warning,
        reason,
        message: message.to_owned(),
    }
}

/// What the loop knows of a NodeClaim: the instance behind it, if launched and labelled.
pub fn claimed_instance(node_claim: &NodeClaim) -> Option<(String, ClaimedInstance)> {
    let provider_id = node_claim.status.as_ref()?.provider_id.as_deref()?;
    let id = instance_id(provider_id).ok()?.to_owned();
    let labels = node_claim.labels();
    Some((
        id,
        ClaimedInstance {
            node_claim: node_claim.name_any(),
            instance_type: labels.get(labels::INSTANCE_TYPE)?.clone(),
            zone: labels.get(labels::ZONE)?.clone(),
            capacity_type: CapacityType::from_label(labels.get(labels::CAPACITY_TYPE)?)?,
        },
    ))
}

/// The plan for one message against the cluster's NodeClaims.
pub fn plan_for(interruption: &Interruption, node_claims: &[NodeClaim]) -> InterruptionPlan {
    let claimed: Vec<(String, ClaimedInstance)> = node_claims.iter().filter_map(claimed_instance).collect();
    interruption::plan(interruption, &|id| {
        claimed
            .iter()
            .find(|(instance, _)| instance == id)
            .map(|(_, claim)| claim.clone())
    })
}

/// Runs the loop until the returned future is dropped.
pub async fn run(
    client: Client,
    queue: InterruptionQueue,
    provider: Arc<AwsProvider>,
    observer: Arc<dyn InterruptionObserver>,
    clock: Clock,
) {
    let node_claims: Api<NodeClaim> = Api::all(client);
    loop {
        let messages = match queue.receive().await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(queue = queue.url(), %error, "receiving interruption messages failed");
                tokio::time::sleep(RECEIVE_RETRY).await;
                continue;
            }
        };
        // One list serves the whole batch (up to 10 messages); deleting a NodeClaim twice is
        // harmless.
        let mut claims = ClaimsOnce {
            api: &node_claims,
            listed: None,
        };
        for received in messages {
            if let Err(error) = handle(
                &mut claims,
                &queue,
                &provider,
                observer.as_ref(),
                &clock,
                received,
            )
            .await
            {
                tracing::warn!(queue = queue.url(), %error, "interruption message not handled; it will be received again");
            }
        }
    }
}

/// The cluster's NodeClaims, listed when first needed.
struct ClaimsOnce<'a> {
    api: &'a Api<NodeClaim>,
    listed: Option<Vec<NodeClaim>>,
}

impl ClaimsOnce<'_> {
    async fn get(&mut self) -> Result<&[NodeClaim], String> {
        if self.listed.is_none() {
            let list = self
                .api
                .list(&ListParams::default())
                .await
                .map_err(|e| format!("listing NodeClaims: {e}"))?;
            self.listed = Some(list.items);
        }
        Ok(self.listed.as_deref().unwrap_or_default())
    }
}

async fn handle(
    claims: &mut ClaimsOnce<'_>,
    queue: &InterruptionQueue,
    provider: &AwsProvider,
    observer: &dyn InterruptionObserver,
    clock: &Clock,
    received: Received,
) -> Result<(), String> {
    let interruption = match received.message {
        Ok(Some(interruption)) => interruption,
        // An event about nothing Nodewright acts on.
        Ok(None) => {
            observer.received(interruption::NOOP_MESSAGE_TYPE);
            return delete(queue, observer, &received.receipt_handle, None).await;
        }
        Err(why) => {
            tracing::warn!(queue = queue.url(), why, "malformed interruption message deleted");
            return delete(queue, observer, &received.receipt_handle, None).await;
        }
    };
    observer.received(interruption.kind.message_type());
    let node_claims = claims.api;
    let claims = claims.get().await?;
    let plan = plan_for(&interruption, claims);
    provider
        .unavailable_offerings()
        .mark(&plan.unavailable, clock.now());
    for (name, kind) in &plan.events {
        tracing::info!(nodeclaim = name, kind, "interruption");
        if let Some(node_claim) = claims.iter().find(|c| &c.name_any() == name) {
            observer.record(node_claim, event_for(&interruption.kind)).await;
        }
    }
    for name in &plan.delete {
        match node_claims.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(format!("deleting NodeClaim {name}: {error}")),
        }
    }
    let queued = interruption
        .time
        .and_then(|happened| Duration::try_from(clock.now().duration_since(happened)).ok());
    delete(queue, observer, &received.receipt_handle, queued).await
}

/// Deletes a handled message and counts it.
async fn delete(
    queue: &InterruptionQueue,
    observer: &dyn InterruptionObserver,
    receipt_handle: &str,
    queued: Option<Duration>,
) -> Result<(), String> {
    queue.delete(receipt_handle).await.map_err(|e| e.to_string())?;
    observer.deleted(queued);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_claim(name: &str, provider_id: &str, capacity_type: &str) -> NodeClaim {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": {"name": name, "labels": {
                "karpenter.sh/capacity-type": capacity_type,
                "node.kubernetes.io/instance-type": "m5.large",
                "topology.kubernetes.io/zone": "us-west-2a",
            }},
            "spec": {
                "requirements": [],
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
            },
            "status": {"providerID": provider_id},
        }))
        .unwrap()
    }

    #[test]
    fn a_spot_warning_deletes_the_claim_of_the_instance_and_marks_its_pool() {
        let claims = [
            node_claim("spot-a", "aws:///us-west-2a/i-0aaa", "spot"),
            node_claim("other", "aws:///us-west-2a/i-0bbb", "spot"),
        ];
        let warning = Interruption {
            kind: InterruptionKind::SpotInterrupted,
            instance_ids: vec!["i-0aaa".into(), "i-0ccc".into()],
            time: None,
        };
        let plan = plan_for(&warning, &claims);
        assert_eq!(plan.delete, vec!["spot-a".to_owned()]);
        assert_eq!(plan.unavailable.len(), 1);
    }

    #[test]
    fn only_a_rebalance_recommendation_is_a_normal_event() {
        assert_eq!(
            event_for(&InterruptionKind::SpotInterrupted).reason,
            "SpotInterrupted"
        );
        assert!(event_for(&InterruptionKind::Terminating).warning);
        let rebalance = event_for(&InterruptionKind::RebalanceRecommendation);
        assert!(!rebalance.warning);
        assert_eq!(rebalance.reason, "SpotRebalanceRecommendation");
    }

    #[test]
    fn a_claim_without_an_instance_yet_is_not_matched() {
        let mut claim = node_claim("pending", "aws:///us-west-2a/i-0aaa", "on-demand");
        claim.status = None;
        assert_eq!(claimed_instance(&claim), None);
    }
}
