//! Repair policies: which Node conditions mean the node is unhealthy, and for how long that is
//! tolerated before the node is replaced.

use std::{fmt, time::Duration};

/// A Node condition status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    /// The status as Kubernetes writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Node whose condition `condition_type` has had status `condition_status` for longer than
/// `toleration_duration` is unhealthy and gets replaced.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepairPolicy {
    pub condition_type: String,
    pub condition_status: ConditionStatus,
    pub toleration_duration: Duration,
}

impl RepairPolicy {
    pub fn new(
        condition_type: impl Into<String>,
        condition_status: ConditionStatus,
        toleration_duration: Duration,
    ) -> Self {
        Self {
            condition_type: condition_type.into(),
            condition_status,
            toleration_duration,
        }
    }

    /// Whether a Node condition with this type and status (as Kubernetes writes it) is one this
    /// policy watches.
    pub fn matches(&self, condition_type: &str, status: &str) -> bool {
        self.condition_type == condition_type && self.condition_status.as_str() == status
    }
}

/// Karpenter's AWS provider's repair policies: `Ready` False or Unknown for 30 minutes,
/// `AcceleratedHardwareReady` False for 10, and the node-monitoring agent's `StorageReady`,
/// `NetworkingReady`, `KernelReady` and `ContainerRuntimeReady` False for 30.
pub fn aws_repair_policies() -> Vec<RepairPolicy> {
    let thirty_minutes = Duration::from_mins(30);
    let mut policies = vec![
        RepairPolicy::new("Ready", ConditionStatus::False, thirty_minutes),
        RepairPolicy::new("Ready", ConditionStatus::Unknown, thirty_minutes),
        RepairPolicy::new(
            "AcceleratedHardwareReady",
            ConditionStatus::False,
            Duration::from_mins(10),
        ),
    ];
    for condition in [
        "StorageReady",
        "NetworkingReady",
        "KernelReady",
        "ContainerRuntimeReady",
    ] {
        policies.push(RepairPolicy::new(
            condition,
            ConditionStatus::False,
            thirty_minutes,
        ));
    }
    policies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_match_type_and_status() {
        let policy = RepairPolicy::new("Ready", ConditionStatus::False, Duration::from_mins(30));
        assert!(policy.matches("Ready", "False"));
        assert!(!policy.matches("Ready", "Unknown"));
        assert!(!policy.matches("NetworkingReady", "False"));
    }
}
