//! Status conditions: the type and reason vocabulary of each kind, and a [`ConditionSet`] that keeps
//! a root `Ready` condition derived from its dependents (Karpenter's operatorpkg semantics).
//!
//! Time is passed in, never read, so reconcilers stay testable with an injected clock.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

/// Condition status values.
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

/// The root condition of every kind.
pub const READY: &str = "Ready";
/// Reason of a dependent not yet reconciled.
pub const AWAITING_RECONCILIATION: &str = "AwaitingReconciliation";
/// Reason of a root condition held back by its dependents.
pub const UNHEALTHY_DEPENDENTS: &str = "UnhealthyDependents";

/// NodeClaim condition types and reasons.
pub mod nodeclaim {
    pub const LAUNCHED: &str = "Launched";
    pub const REGISTERED: &str = "Registered";
    pub const INITIALIZED: &str = "Initialized";
    pub const CONSOLIDATABLE: &str = "Consolidatable";
    pub const DRIFTED: &str = "Drifted";
    pub const DRAINED: &str = "Drained";
    pub const VOLUMES_DETACHED: &str = "VolumesDetached";
    pub const INSTANCE_TERMINATING: &str = "InstanceTerminating";
    pub const CONSISTENT_STATE_FOUND: &str = "ConsistentStateFound";
    pub const DISRUPTION_REASON: &str = "DisruptionReason";
    /// `Ready` is true when these are.
    pub const DEPENDENTS: [&str; 3] = [LAUNCHED, REGISTERED, INITIALIZED];

    pub const REASON_LAUNCH_FAILED: &str = "LaunchFailed";
    pub const REASON_NODE_NOT_FOUND: &str = "NodeNotFound";
    pub const REASON_MULTIPLE_NODES_FOUND: &str = "MultipleNodesFound";
    pub const REASON_REGISTRATION_HOOK_PENDING: &str = "RegistrationHookPending";
    pub const REASON_NODE_NOT_READY: &str = "NodeNotReady";
    pub const REASON_STARTUP_TAINTS_EXIST: &str = "StartupTaintsExist";
    pub const REASON_KNOWN_EPHEMERAL_TAINTS_EXIST: &str = "KnownEphemeralTaintsExist";
    pub const REASON_RESOURCE_NOT_REGISTERED: &str = "ResourceNotRegistered";
    pub const REASON_NODEPOOL_DRIFTED: &str = "NodePoolDrifted";
    pub const REASON_REQUIREMENTS_DRIFTED: &str = "RequirementsDrifted";
    pub const REASON_INSTANCE_TYPE_NOT_FOUND: &str = "InstanceTypeNotFound";
    pub const REASON_DRAINING: &str = "Draining";
    pub const REASON_AWAITING_VOLUME_DETACHMENT: &str = "AwaitingVolumeDetachment";
    pub const REASON_TERMINATION_GRACE_PERIOD_ELAPSED: &str = "TerminationGracePeriodElapsed";
    pub const REASON_CONSISTENCY_CHECK_FAILED: &str = "ConsistencyCheckFailed";
}

/// NodePool condition types and reasons.
pub mod nodepool {
    pub const VALIDATION_SUCCEEDED: &str = "ValidationSucceeded";
    pub const NODE_CLASS_READY: &str = "NodeClassReady";
    pub const NODE_REGISTRATION_HEALTHY: &str = "NodeRegistrationHealthy";
    /// `Ready` is true when these are; `NodeRegistrationHealthy` is informational.
    pub const DEPENDENTS: [&str; 2] = [VALIDATION_SUCCEEDED, NODE_CLASS_READY];

    pub const REASON_VALIDATION_FAILED: &str = "NodePoolValidationFailed";
    pub const REASON_NODE_CLASS_NOT_FOUND: &str = "NodeClassNotFound";
    pub const REASON_NODE_CLASS_TERMINATING: &str = "NodeClassTerminating";
    pub const REASON_NODE_CLASS_READINESS_UNKNOWN: &str = "NodeClassReadinessUnknown";
    pub const REASON_REGISTRATION_FAILED: &str = "RegistrationFailed";
}

/// EC2NodeClass condition types and reasons.
pub mod ec2nodeclass {
    pub const AMIS_READY: &str = "AMIsReady";
    pub const SUBNETS_READY: &str = "SubnetsReady";
    pub const SECURITY_GROUPS_READY: &str = "SecurityGroupsReady";
    pub const INSTANCE_PROFILE_READY: &str = "InstanceProfileReady";
    pub const VALIDATION_SUCCEEDED: &str = "ValidationSucceeded";
    pub const PLACEMENT_GROUP_READY: &str = "PlacementGroupReady";
    pub const CAPACITY_RESERVATIONS_READY: &str = "CapacityReservationsReady";
    /// `Ready` is true when these are (capacity reservations join with the ReservedCapacity gate).
    pub const DEPENDENTS: [&str; 5] = [
        AMIS_READY,
        SUBNETS_READY,
        SECURITY_GROUPS_READY,
        INSTANCE_PROFILE_READY,
        VALIDATION_SUCCEEDED,
    ];

    pub const REASON_SUBNETS_NOT_FOUND: &str = "SubnetsNotFound";
    pub const REASON_SECURITY_GROUPS_NOT_FOUND: &str = "SecurityGroupsNotFound";
    pub const REASON_AMI_NOT_FOUND: &str = "AMINotFound";
    pub const REASON_UNSUPPORTED_ALIAS: &str = "UnsupportedAlias";
    pub const REASON_INSTANCE_PROFILE_NOT_FOUND: &str = "InstanceProfileNotFound";
    pub const REASON_INVALID_KUBELET_CONFIGURATION: &str = "InvalidKubeletConfiguration";
}

/// NodeOverlay condition types and reasons.
pub mod nodeoverlay {
    pub const VALIDATION_SUCCEEDED: &str = "ValidationSucceeded";
    pub const DEPENDENTS: [&str; 1] = [VALIDATION_SUCCEEDED];
    pub const REASON_RUNTIME_VALIDATION: &str = "RuntimeValidation";
    pub const REASON_CONFLICT: &str = "Conflict";
}

/// CapacityBuffer condition types and reasons.
pub mod capacitybuffer {
    pub const READY_FOR_PROVISIONING: &str = "ReadyForProvisioning";
    pub const PROVISIONING: &str = "Provisioning";
    pub const REASON_RESOLVED: &str = "Resolved";
    pub const REASON_SCALABLE_REF_NOT_FOUND: &str = "ScalableRefNotFound";
    pub const REASON_POD_TEMPLATE_NOT_FOUND: &str = "PodTemplateNotFound";
    pub const REASON_RESOLUTION_FAILED: &str = "ResolutionFailed";
    pub const REASON_FITS_EXISTING_CAPACITY: &str = "FitsExistingCapacity";
    pub const REASON_REQUIRES_NEW_CAPACITY: &str = "RequiresNewCapacity";
    pub const REASON_NOT_READY_FOR_PROVISIONING: &str = "NotReadyForProvisioning";
    pub const REASON_BUFFER_EMPTY: &str = "BufferEmpty";
}

/// A condition status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => TRUE,
            Self::False => FALSE,
            Self::Unknown => UNKNOWN,
        }
    }

    fn of(condition: Option<&Condition>) -> Self {
        match condition.map(|c| c.status.as_str()) {
            Some(TRUE) => Self::True,
            Some(FALSE) => Self::False,
            _ => Self::Unknown,
        }
    }
}

/// The conditions of one object with a root condition derived from its dependents:
/// `Ready` is True when every dependent is True, False when any is False, Unknown otherwise.
#[derive(Debug)]
pub struct ConditionSet<'a> {
    conditions: &'a mut Vec<Condition>,
    dependents: &'static [&'static str],
    generation: Option<i64>,
    now: Timestamp,
}

impl<'a> ConditionSet<'a> {
    /// Wraps `conditions`; changes are stamped with `now` and the object's `generation`.
    pub fn new(
        conditions: &'a mut Vec<Condition>,
        dependents: &'static [&'static str],
        generation: Option<i64>,
        now: Timestamp,
    ) -> Self {
        Self {
            conditions,
            dependents,
            generation,
            now,
        }
    }

    /// Adds every missing dependent as Unknown, so a new object shows what it waits for.
    pub fn initialize(&mut self) {
        for dependent in self.dependents {
            if self.get(dependent).is_none() {
                self.set(
                    dependent,
                    Status::Unknown,
                    AWAITING_RECONCILIATION,
                    "object is awaiting reconciliation",
                );
            }
        }
        self.recompute_root();
    }

    pub fn get(&self, condition_type: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == condition_type)
    }

    pub fn is_true(&self, condition_type: &str) -> bool {
        Status::of(self.get(condition_type)) == Status::True
    }

    pub fn set_true(&mut self, condition_type: &str) -> bool {
        self.set(condition_type, Status::True, condition_type, "")
    }

    pub fn set_false(&mut self, condition_type: &str, reason: &str, message: &str) -> bool {
        self.set(condition_type, Status::False, reason, message)
    }

    pub fn set_unknown(&mut self, condition_type: &str, reason: &str, message: &str) -> bool {
        self.set(condition_type, Status::Unknown, reason, message)
    }

    /// Removes a condition; returns whether it was present.
    pub fn clear(&mut self, condition_type: &str) -> bool {
        let before = self.conditions.len();
        self.conditions.retain(|c| c.type_ != condition_type);
        let removed = self.conditions.len() != before;
        if removed {
            self.recompute_root();
        }
        removed
    }

    /// Sets a condition and recomputes the root. `lastTransitionTime` moves only when the status
    /// flips. Returns whether anything changed.
    pub fn set(&mut self, condition_type: &str, status: Status, reason: &str, message: &str) -> bool {
        let changed = self.write(condition_type, status, reason, message);
        if condition_type != READY {
            self.recompute_root();
        }
        changed
    }

    fn write(&mut self, condition_type: &str, status: Status, reason: &str, message: &str) -> bool {
        let now = Time(self.now);
        let Some(existing) = self.conditions.iter_mut().find(|c| c.type_ == condition_type) else {
            self.conditions.push(Condition {
                type_: condition_type.to_owned(),
                status: status.as_str().to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                observed_generation: self.generation,
                last_transition_time: now,
            });
            return true;
        };
        let unchanged = existing.status == status.as_str()
            && existing.reason == reason
            && existing.message == message
            && existing.observed_generation == self.generation;
        if unchanged {
            return false;
        }
        if existing.status != status.as_str() {
            existing.last_transition_time = now;
        }
        status.as_str().clone_into(&mut existing.status);
        reason.clone_into(&mut existing.reason);
        message.clone_into(&mut existing.message);
        existing.observed_generation = self.generation;
        true
    }

    fn recompute_root(&mut self) {
        let mut unhealthy = Vec::new();
        let mut any_false = false;
        for dependent in self.dependents {
            let condition = self.get(dependent);
            match Status::of(condition) {
                Status::True => {}
                status => {
                    any_false |= status == Status::False;
                    let reason = condition.map_or(AWAITING_RECONCILIATION, |c| c.reason.as_str());
                    unhealthy.push(format!("{dependent}={} ({reason})", status.as_str()));
                }
            }
        }
        if unhealthy.is_empty() {
            self.write(READY, Status::True, READY, "");
        } else {
            let status = if any_false { Status::False } else { Status::Unknown };
            self.write(READY, status, UNHEALTHY_DEPENDENTS, &unhealthy.join(", "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn root_follows_dependents() {
        let mut conditions = Vec::new();
        let mut set = ConditionSet::new(&mut conditions, &nodeclaim::DEPENDENTS, Some(1), at(0));
        set.initialize();
        assert_eq!(set.get(READY).unwrap().status, UNKNOWN);
        set.set_true(nodeclaim::LAUNCHED);
        set.set_true(nodeclaim::REGISTERED);
        assert_eq!(set.get(READY).unwrap().status, UNKNOWN);
        set.set_false(
            nodeclaim::INITIALIZED,
            nodeclaim::REASON_NODE_NOT_READY,
            "node not ready",
        );
        let ready = set.get(READY).unwrap();
        assert_eq!(ready.status, FALSE);
        assert!(
            ready.message.contains("Initialized=False (NodeNotReady)"),
            "{}",
            ready.message
        );
        set.set_true(nodeclaim::INITIALIZED);
        assert!(set.is_true(READY));
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut conditions = Vec::new();
        ConditionSet::new(&mut conditions, &nodepool::DEPENDENTS, None, at(10))
            .set_true(nodepool::VALIDATION_SUCCEEDED);
        let mut later = ConditionSet::new(&mut conditions, &nodepool::DEPENDENTS, None, at(20));
        assert!(
            !later.set_true(nodepool::VALIDATION_SUCCEEDED),
            "same state is not a change"
        );
        assert!(later.set(nodepool::VALIDATION_SUCCEEDED, Status::True, "Other", "msg"));
        assert_eq!(
            later
                .get(nodepool::VALIDATION_SUCCEEDED)
                .unwrap()
                .last_transition_time,
            Time(at(10))
        );
        later.set_false(
            nodepool::VALIDATION_SUCCEEDED,
            nodepool::REASON_VALIDATION_FAILED,
            "bad",
        );
        assert_eq!(
            later
                .get(nodepool::VALIDATION_SUCCEEDED)
                .unwrap()
                .last_transition_time,
            Time(at(20))
        );
        assert!(later.clear(nodepool::VALIDATION_SUCCEEDED));
        assert!(later.get(nodepool::VALIDATION_SUCCEEDED).is_none());
    }
}
