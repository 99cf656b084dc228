//! Interruption messages: EventBridge events about instances that an SQS queue collects (spot
//! interruption warnings, rebalance recommendations, AWS Health scheduled changes, instance state
//! changes), parsed into what the controller should do, as Karpenter's interruption controller does.
//!
//! A controller loop reads with [`InterruptionQueue::receive`], decides with [`parse`] and
//! [`plan`] (pure), writes (deletes NodeClaims, marks offerings, records events), then deletes the
//! message. [`parse`] is pure: a message it cannot read is an
//! error the caller logs before deleting the message (a malformed message would otherwise come
//! back forever); an event about nothing Nodewright acts on is `Ok(None)`.

use jiff::Timestamp;
use nodewright_catalog::CapacityType;
use nodewright_cloudprovider::OfferingKey;
use serde::Deserialize;

use crate::error::AwsError;

const SPOT_WARNING: &str = "EC2 Spot Instance Interruption Warning";
const REBALANCE: &str = "EC2 Instance Rebalance Recommendation";
const STATE_CHANGE: &str = "EC2 Instance State-change Notification";
const HEALTH: &str = "AWS Health Event";

/// The EventBridge events (source, detail-type) [`parse`] reads: what the queue's rules must
/// forward (`deploy/iam/cloudformation.json`).
pub const HANDLED_EVENTS: [(&str, &str); 4] = [
    ("aws.ec2", SPOT_WARNING),
    ("aws.ec2", REBALANCE),
    ("aws.ec2", STATE_CHANGE),
    ("aws.health", HEALTH),
];

/// What happened to the instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterruptionKind {
    /// EC2 reclaims the spot instance in two minutes.
    SpotInterrupted,
    /// EC2 says the spot instance is at elevated risk of interruption.
    RebalanceRecommendation,
    /// AWS Health scheduled maintenance (retirement, reboot) for the instances.
    ScheduledChange,
    /// The instance is stopping or stopped.
    Stopping,
    /// The instance is shutting down or terminated.
    Terminating,
}

impl InterruptionKind {
    /// Karpenter's `message_type` label of `karpenter_interruption_received_messages_total`.
    pub fn message_type(&self) -> &'static str {
        match self {
            Self::SpotInterrupted => "spot_interrupted",
            Self::RebalanceRecommendation => "rebalance_recommendation",
            Self::ScheduledChange => "scheduled_change",
            Self::Stopping | Self::Terminating => "state_change",
        }
    }
}

/// The `message_type` of a well-formed message Nodewright does not act on.
pub const NOOP_MESSAGE_TYPE: &str = "noop";

/// What the controller does about an interruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Delete the NodeClaim: the core cordons and drains the node and launches a replacement.
    CordonAndDrain,
    /// Only record an event.
    NoAction,
}

impl InterruptionKind {
    /// Karpenter's actions: everything but a rebalance recommendation replaces the node.
    pub fn action(&self) -> Action {
        match self {
            Self::RebalanceRecommendation => Action::NoAction,
            _ => Action::CordonAndDrain,
        }
    }

    /// The reason recorded on events and metrics (Karpenter's message kinds).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SpotInterrupted => "spot_interrupted",
            Self::RebalanceRecommendation => "rebalance_recommendation",
            Self::ScheduledChange => "scheduled_change",
            Self::Stopping => "instance_stopped",
            Self::Terminating => "instance_terminated",
        }
    }
}

/// One parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    pub kind: InterruptionKind,
    pub instance_ids: Vec<String>,
    /// When the event happened, per EventBridge.
    pub time: Option<Timestamp>,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    detail: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthDetail {
    service: String,
    event_type_category: String,
    #[serde(default)]
    affected_entities: Vec<AffectedEntity>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AffectedEntity {
    entity_value: String,
}

fn instance_id(detail: &serde_json::Value) -> Result<String, String> {
    detail
        .get("instance-id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "detail.instance-id is missing".to_owned())
}

/// Reads one message body. `Err` says why it is malformed.
pub fn parse(body: &str) -> Result<Option<Interruption>, String> {
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| format!("not an EventBridge event: {e}"))?;
    let time = envelope.time.as_deref().and_then(|t| t.parse().ok());
    let interruption = |kind, instance_ids| {
        Ok(Some(Interruption {
            kind,
            instance_ids,
            time,
        }))
    };
    match (envelope.source.as_str(), envelope.detail_type.as_str()) {
        ("aws.ec2", "EC2 Spot Instance Interruption Warning") => interruption(
            InterruptionKind::SpotInterrupted,
            vec![instance_id(&envelope.detail)?],
        ),
        ("aws.ec2", "EC2 Instance Rebalance Recommendation") => interruption(
            InterruptionKind::RebalanceRecommendation,
            vec![instance_id(&envelope.detail)?],
        ),
        ("aws.ec2", STATE_CHANGE) => {
            let state = envelope
                .detail
                .get("state")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| "detail.state is missing".to_owned())?;
            let kind = match state {
                "stopping" | "stopped" => InterruptionKind::Stopping,
                "shutting-down" | "terminated" => InterruptionKind::Terminating,
                _ => return Ok(None),
            };
            interruption(kind, vec![instance_id(&envelope.detail)?])
        }
        ("aws.health", HEALTH) => {
            let detail: HealthDetail =
                serde_json::from_value(envelope.detail).map_err(|e| format!("AWS Health detail: {e}"))?;
            if detail.service != "EC2" || detail.event_type_category != "scheduledChange" {
                return Ok(None);
            }
            let ids = detail
                .affected_entities
                .into_iter()
                .map(|e| e.entity_value)
                .filter(|id| id.starts_with("i-"))
                .collect();
            interruption(InterruptionKind::ScheduledChange, ids)
        }
        _ => Ok(None),
    }
}

/// What the controller knows about a NodeClaim an interruption may concern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedInstance {
    pub node_claim: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
}

/// What to do about one message: the decide phase of the controller's interruption loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterruptionPlan {
    /// NodeClaims to delete (the core cordons, drains and replaces their nodes).
    pub delete: Vec<String>,
    /// Spot pools about to reclaim an instance: not worth launching into for a while.
    pub unavailable: Vec<OfferingKey>,
    /// (NodeClaim, reason) pairs to record as events, for every NodeClaim the message concerns.
    pub events: Vec<(String, &'static str)>,
}

/// The plan for `interruption`, given the NodeClaim of each instance ID Nodewright knows (IDs of
/// instances that are not Nodewright's are ignored).
pub fn plan(
    interruption: &Interruption,
    claimed: &dyn Fn(&str) -> Option<ClaimedInstance>,
) -> InterruptionPlan {
    let mut plan = InterruptionPlan::default();
    for claim in interruption.instance_ids.iter().filter_map(|id| claimed(id)) {
        plan.events
            .push((claim.node_claim.clone(), interruption.kind.reason()));
        if interruption.kind == InterruptionKind::SpotInterrupted && claim.capacity_type == CapacityType::Spot
        {
            plan.unavailable.push(OfferingKey::new(
                &claim.instance_type,
                &claim.zone,
                CapacityType::Spot,
            ));
        }
        if interruption.kind.action() == Action::CordonAndDrain {
            plan.delete.push(claim.node_claim);
        }
    }
    plan
}

/// A message taken from the queue; delete it with [`InterruptionQueue::delete`] once handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub receipt_handle: String,
    /// The parsed body, `Ok(None)` for events Nodewright does not act on, `Err` when malformed.
    pub message: Result<Option<Interruption>, String>,
}

/// The interruption queue.
#[derive(Debug, Clone)]
pub struct InterruptionQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
    wait_seconds: i32,
}

impl InterruptionQueue {
    /// The queue named `name` (Karpenter's `--interruption-queue`). `wait_seconds` is the long
    /// poll (Karpenter: 20).
    pub async fn by_name(sqs: aws_sdk_sqs::Client, name: &str, wait_seconds: i32) -> Result<Self, AwsError> {
        let found = sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| AwsError::api("GetQueueUrl", &e))?;
        let url = found
            .queue_url()
            .ok_or(AwsError::MissingField {
                operation: "GetQueueUrl",
                field: "QueueUrl",
            })?
            .to_owned();
        Ok(Self {
            sqs,
            url,
            wait_seconds,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Up to 10 messages, waiting up to the long-poll time for the first.
    pub async fn receive(&self) -> Result<Vec<Received>, AwsError> {
        let answer = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .visibility_timeout(20)
            .wait_time_seconds(self.wait_seconds)
            .send()
            .await
            .map_err(|e| AwsError::api("ReceiveMessage", &e))?;
        Ok(answer
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Received {
                    receipt_handle: m.receipt_handle()?.to_owned(),
                    message: parse(m.body().unwrap_or_default()),
                })
            })
            .collect())
    }

    /// Removes a handled (or unreadable) message.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), AwsError> {
        self.sqs
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| AwsError::api("DeleteMessage", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, detail_type: &str, detail: &serde_json::Value) -> String {
        serde_json::json!({
            "version": "0", "id": "1", "account": "123456789012", "region": "us-west-2",
            "time": "2026-11-01T00:00:00Z", "resources": [],
            "source": source, "detail-type": detail_type, "detail": detail,
        })
        .to_string()
    }

    #[test]
    fn the_five_event_kinds_and_their_actions() {
        let spot = parse(&event(
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning",
            &serde_json::json!({"instance-id": "i-1", "instance-action": "terminate"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(spot.kind, InterruptionKind::SpotInterrupted);
        assert_eq!(spot.instance_ids, ["i-1"]);
        assert_eq!(spot.time, Some("2026-11-01T00:00:00Z".parse().unwrap()));
        assert_eq!(spot.kind.action(), Action::CordonAndDrain);

        let rebalance = parse(&event(
            "aws.ec2",
            "EC2 Instance Rebalance Recommendation",
            &serde_json::json!({"instance-id": "i-2"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(rebalance.kind.action(), Action::NoAction);

        let stopping = |state: &str| {
            parse(&event(
                "aws.ec2",
                "EC2 Instance State-change Notification",
                &serde_json::json!({"instance-id": "i-3", "state": state}),
            ))
            .unwrap()
            .map(|i| i.kind)
        };
        assert_eq!(stopping("stopped"), Some(InterruptionKind::Stopping));
        assert_eq!(stopping("terminated"), Some(InterruptionKind::Terminating));
        assert_eq!(stopping("running"), None, "not an interruption");

        let health = parse(&event(
            "aws.health",
            "AWS Health Event",
            &serde_json::json!({
                "service": "EC2", "eventTypeCategory": "scheduledChange",
                "affectedEntities": [{"entityValue": "i-4"}, {"entityValue": "i-5"}],
            }),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(health.kind, InterruptionKind::ScheduledChange);
        assert_eq!(health.instance_ids, ["i-4", "i-5"]);
    }

    #[test]
    fn malformed_messages_say_why_and_unknown_events_are_ignored() {
        assert!(
            parse("{not json")
                .unwrap_err()
                .starts_with("not an EventBridge event")
        );
        let error = parse(&event(
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning",
            &serde_json::json!({}),
        ))
        .unwrap_err();
        assert_eq!(error, "detail.instance-id is missing");
        assert_eq!(
            parse(&event("aws.s3", "Object Created", &serde_json::json!({}))).unwrap(),
            None
        );
    }

    #[test]
    fn spot_warnings_replace_the_node_and_mark_the_pool_and_rebalances_only_record() {
        let known = |id: &str| {
            (id == "i-1").then(|| ClaimedInstance {
                node_claim: "default-abc".into(),
                instance_type: "m5.large".into(),
                zone: "us-west-2a".into(),
                capacity_type: CapacityType::Spot,
            })
        };
        let spot = Interruption {
            kind: InterruptionKind::SpotInterrupted,
            instance_ids: vec!["i-1".into(), "i-not-ours".into()],
            time: None,
        };
        assert_eq!(
            plan(&spot, &known),
            InterruptionPlan {
                delete: vec!["default-abc".into()],
                unavailable: vec![OfferingKey::new("m5.large", "us-west-2a", CapacityType::Spot)],
                events: vec![("default-abc".into(), "spot_interrupted")],
            }
        );
        let rebalance = Interruption {
            kind: InterruptionKind::RebalanceRecommendation,
            ..spot
        };
        let planned = plan(&rebalance, &known);
        assert!(planned.delete.is_empty() && planned.unavailable.is_empty());
        assert_eq!(
            planned.events,
            [("default-abc".to_owned(), "rebalance_recommendation")]
        );
    }
}
