//! Kubernetes Events with Karpenter's reason strings, published best-effort: an event that cannot
//! be written is logged, never an error of the reconcile that raised it.

use kube::{
    Client, Resource,
    runtime::events::{Event, EventType, Recorder, Reporter},
};

/// Event reasons Karpenter uses, so alerts and `kubectl get events --field-selector reason=...`
/// keep working.
pub mod reasons {
    pub const NOMINATED: &str = "Nominated";
    pub const FAILED_SCHEDULING: &str = "FailedScheduling";
    pub const INSUFFICIENT_CAPACITY_ERROR: &str = "InsufficientCapacityError";
    pub const NODE_CLASS_NOT_READY: &str = "NodeClassNotReady";
    pub const LAUNCH_FAILED: &str = "LaunchFailed";
    pub const REGISTRATION_TIMEOUT: &str = "RegistrationTimeout";
    pub const DISRUPTION_BLOCKED: &str = "DisruptionBlocked";
    pub const FAILED_DRAINING: &str = "FailedDraining";
    pub const EVICTED: &str = "Evicted";
    /// A pod deleted because its node's termination grace period ran out.
    pub const DISRUPTED: &str = "Disrupted";
    /// A node is being disrupted (emptiness, consolidation) and will be terminated.
    pub const DISRUPTION_TERMINATING: &str = "DisruptionTerminating";
    /// Replacements are being launched for a disruption.
    pub const DISRUPTION_LAUNCHING: &str = "DisruptionLaunching";
    /// Why a node cannot be consolidated (changes only).
    pub const UNCONSOLIDATABLE: &str = "Unconsolidatable";
    pub const TERMINATION_GRACE_PERIOD_EXPIRING: &str = "TerminationGracePeriodExpiring";
    pub const FAILED_CONSISTENCY_CHECK: &str = "FailedConsistencyCheck";
}

/// Publishes events as the `karpenter` controller (Karpenter's reporting component name, so
/// existing event filters match).
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

impl Events {
    /// A publisher for `instance` (the replica's identity).
    pub fn new(client: Client, instance: &str) -> Self {
        let reporter = Reporter {
            controller: "karpenter".to_owned(),
            instance: Some(instance.to_owned()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// A Normal event.
    pub async fn normal<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(object, EventType::Normal, reason, action, note)
            .await;
    }

    /// A Warning event.
    pub async fn warning<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(object, EventType::Warning, reason, action, note)
            .await;
    }

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let reference = object.object_ref(&());
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(
                object = reference.name.as_deref().unwrap_or_default(),
                reason,
                %error,
                "could not publish event"
            );
        }
    }
}
