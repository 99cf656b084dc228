//! The errors a [`crate::CloudProvider`] returns. Controllers branch on the variant (Karpenter's
//! `IsNodeClaimNotFoundError`, `IsInsufficientCapacityError`, ...), so the set is closed and each
//! variant carries what the caller needs to act.

use std::fmt;

use nodewright_catalog::{CapacityType, InstanceType, Offering};

/// The result of a cloud-provider call.
pub type Result<T, E = CloudProviderError> = std::result::Result<T, E>;

/// One offering, named: an instance type in a zone bought with a capacity type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfferingKey {
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
}

impl OfferingKey {
    pub fn new(
        instance_type: impl Into<String>,
        zone: impl Into<String>,
        capacity_type: CapacityType,
    ) -> Self {
        Self {
            instance_type: instance_type.into(),
            zone: zone.into(),
            capacity_type,
        }
    }

    /// The key of one of `instance_type`'s offerings.
    pub fn of(instance_type: &InstanceType, offering: &Offering) -> Self {
        Self::new(&instance_type.name, &offering.zone, offering.capacity_type)
    }
}

impl fmt::Display for OfferingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.instance_type,
            self.zone,
            self.capacity_type.label()
        )
    }
}

/// Why a cloud-provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum CloudProviderError {
    /// The instance does not exist (any more). `delete` answers this once termination is done;
    /// `get` when the instance was terminated or never existed.
    #[error("nodeclaim not found: {0}")]
    NodeClaimNotFound(String),

    /// No capacity in any offering tried. `offerings` lists exactly those offerings, so the caller
    /// can stop using them for a while and launch elsewhere.
    #[error(
        "insufficient capacity for nodeclaim {node_claim}: {}",
        list_offerings(offerings)
    )]
    InsufficientCapacity {
        node_claim: String,
        offerings: Vec<OfferingKey>,
    },

    /// The node class cannot launch yet (not found, not ready, or observed at an old generation).
    #[error("node class {node_class} is not ready: {message}")]
    NodeClassNotReady { node_class: String, message: String },

    /// The launch request failed for a reason other than capacity. `reason` is a short
    /// CamelCase word for the `Launched` condition; `message` says what to fix.
    #[error("creating instance failed ({reason}): {message}")]
    CreateError { reason: String, message: String },

    /// Anything else: the cloud's API failed, was throttled, or answered nonsense.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

fn list_offerings(offerings: &[OfferingKey]) -> String {
    if offerings.is_empty() {
        return "no offering was available".to_owned();
    }
    let names: Vec<String> = offerings.iter().map(ToString::to_string).collect();
    format!("unavailable offerings {}", names.join(", "))
}

impl CloudProviderError {
    pub fn is_node_claim_not_found(&self) -> bool {
        matches!(self, Self::NodeClaimNotFound(_))
    }

    pub fn is_insufficient_capacity(&self) -> bool {
        matches!(self, Self::InsufficientCapacity { .. })
    }

    pub fn is_node_class_not_ready(&self) -> bool {
        matches!(self, Self::NodeClassNotReady { .. })
    }

    /// Wraps any other error.
    pub fn other(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Other(Box::new(error))
    }
}

/// `Ok(())` for a [`CloudProviderError::NodeClaimNotFound`], the error otherwise: what a caller
/// whose goal is "the instance is gone" wants (Karpenter's `IgnoreNodeClaimNotFoundError`).
pub fn ignore_node_claim_not_found(result: Result<()>) -> Result<()> {
    match result {
        Err(CloudProviderError::NodeClaimNotFound(_)) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

    use super::*;

    #[test]
    fn insufficient_capacity_names_every_offering() {
        let error = CloudProviderError::InsufficientCapacity {
            node_claim: "default-abcde".into(),
            offerings: vec![
                OfferingKey::new("m5.large", "us-east-1a", CapacityType::Spot),
                OfferingKey::new("m5.xlarge", "us-east-1b", CapacityType::OnDemand),
            ],
        };
        assert_eq!(
            error.to_string(),
            "insufficient capacity for nodeclaim default-abcde: unavailable offerings \
             m5.large/us-east-1a/spot, m5.xlarge/us-east-1b/on-demand"
        );
        assert!(error.is_insufficient_capacity());
        assert!(!error.is_node_claim_not_found());
        match error {
            CloudProviderError::InsufficientCapacity { offerings, .. } => {
                assert_eq!(offerings[1].capacity_type, CapacityType::OnDemand);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn other_errors_keep_their_source_message() {
        let io = std::io::Error::other("throttled");
        let error = CloudProviderError::other(io);
        assert_eq!(error.to_string(), "throttled");
        assert!(matches!(error, CloudProviderError::Other(_)));
    }

    #[test]
    fn create_and_node_class_messages() {
        let create = CloudProviderError::CreateError {
            reason: "VcpuLimitExceeded".into(),
            message: "raise the quota".into(),
        };
        assert_eq!(
            create.to_string(),
            "creating instance failed (VcpuLimitExceeded): raise the quota"
        );
        let not_ready = CloudProviderError::NodeClassNotReady {
            node_class: "default".into(),
            message: "subnets not resolved".into(),
        };
        assert!(not_ready.is_node_class_not_ready());
        assert_eq!(
            not_ready.to_string(),
            "node class default is not ready: subnets not resolved"
        );
    }

    #[test]
    fn only_not_found_is_ignored() {
        let gone = Err(CloudProviderError::NodeClaimNotFound(
            "aws:///us-east-1a/i-1".into(),
        ));
        assert!(ignore_node_claim_not_found(gone).is_ok());
        let failed = Err(CloudProviderError::CreateError {
            reason: "x".into(),
            message: "y".into(),
        });
        assert!(ignore_node_claim_not_found(failed).is_err());
    }
}
