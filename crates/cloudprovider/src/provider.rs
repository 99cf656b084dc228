//! The trait itself and the small value types its methods return.

use std::{fmt, future::Future, pin::Pin};

use nodewright_api::{NodeClaim, NodePool};
use nodewright_catalog::InstanceType;

use crate::{RepairPolicy, Result};

/// A boxed, sendable future: what the trait's async methods return, so the trait stays usable as
/// `dyn CloudProvider` without the `async-trait` crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a provider considers a launched NodeClaim drifted (`NodeClassDrift`, `AMIDrift`,
/// `SubnetDrift`, ...). It becomes the reason of the NodeClaim's `Drifted` condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DriftReason(pub String);

impl DriftReason {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DriftReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A cloud that launches, finds and terminates the instances behind NodeClaims.
///
/// Every method may be called concurrently from many controllers; implementations synchronise
/// internally. Errors are [`crate::CloudProviderError`]s, which callers match on: the variant
/// decides what the controller does next, the message is for people.
pub trait CloudProvider: Send + Sync {
    /// Launches one instance for `node_claim` and returns the NodeClaim as launched.
    ///
    /// The NodeClaim's requirements list everything acceptable (instance types, zones, capacity
    /// types, labels) and `spec.resources.requests` what must fit in the instance's allocatable
    /// resources; the provider picks one offering among them. The returned NodeClaim is the input
    /// with `status.providerID`, `status.capacity` and `status.allocatable` filled, and the labels
    /// of the chosen instance set: `node.kubernetes.io/instance-type`,
    /// `topology.kubernetes.io/zone`, `karpenter.sh/capacity-type` and the type's other
    /// single-valued labels. Existing labels are kept.
    ///
    /// Errors:
    /// - [`InsufficientCapacity`](crate::CloudProviderError::InsufficientCapacity) when every
    ///   offering tried had no capacity; the error lists them, so the caller can mark them
    ///   unavailable and retry elsewhere. Karpenter deletes the NodeClaim and provisions again.
    /// - [`NodeClassNotReady`](crate::CloudProviderError::NodeClassNotReady) when the node class
    ///   cannot launch yet. The NodeClaim is deleted too.
    /// - [`CreateError`](crate::CloudProviderError::CreateError) for anything else about the
    ///   request (no compatible instance type, quota, bad configuration); its reason becomes the
    ///   reason of the NodeClaim's `Launched=False` condition.
    fn create<'a>(&'a self, node_claim: &'a NodeClaim) -> BoxFuture<'a, Result<NodeClaim>>;

    /// Terminates the instance named by `node_claim`'s `status.providerID`.
    ///
    /// Idempotent by contract: once the instance is gone (terminated, or never launched because
    /// the NodeClaim has no providerID) the answer is
    /// [`NodeClaimNotFound`](crate::CloudProviderError::NodeClaimNotFound). A successful return
    /// means termination started, not that it finished; callers keep calling `delete` until it
    /// answers `NodeClaimNotFound`, and only then remove the NodeClaim's termination finalizer.
    fn delete<'a>(&'a self, node_claim: &'a NodeClaim) -> BoxFuture<'a, Result<()>>;

    /// The NodeClaim of the live (pending or running) instance with this provider ID, as
    /// [`create`](Self::create) returned it. A terminated or unknown instance is
    /// [`NodeClaimNotFound`](crate::CloudProviderError::NodeClaimNotFound).
    fn get<'a>(&'a self, provider_id: &'a str) -> BoxFuture<'a, Result<NodeClaim>>;

    /// Every live instance this provider launched for the cluster, as NodeClaims. The garbage
    /// collector compares it with the NodeClaims in the API server to find leaked instances, so it
    /// must include instances whose NodeClaim no longer exists.
    fn list(&self) -> BoxFuture<'_, Result<Vec<NodeClaim>>>;

    /// The instance types `node_pool`'s node class can launch, each with all its offerings. An
    /// offering the provider knows to be out of capacity is listed with `available: false`, not
    /// dropped, so explanations can say why. The NodePool's requirements are not applied here;
    /// the scheduler does that.
    fn get_instance_types<'a>(&'a self, node_pool: &'a NodePool) -> BoxFuture<'a, Result<Vec<InstanceType>>>;

    /// Whether the launched `node_claim` no longer matches what its node class would launch
    /// today, and why; `None` when it does. Drift the core detects itself (NodePool hash,
    /// requirements) is not the provider's business.
    fn is_drifted<'a>(&'a self, node_claim: &'a NodeClaim) -> BoxFuture<'a, Result<Option<DriftReason>>>;

    /// Node conditions that mean the node is broken, and how long each may last before the node
    /// is replaced. Empty disables node repair.
    fn repair_policies(&self) -> Vec<RepairPolicy>;

    /// The provider's name for logs and metrics (`aws`, `fake`).
    fn name(&self) -> &str;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Controllers share one provider across tasks: `dyn CloudProvider` must exist (the trait is
    /// object safe) and be shareable between threads. This fails to compile otherwise.
    #[test]
    fn the_trait_is_usable_as_a_shared_trait_object() {
        fn shareable<T: Send + Sync + ?Sized>() {}
        shareable::<dyn CloudProvider>();
        shareable::<std::sync::Arc<dyn CloudProvider>>();
        assert_eq!(DriftReason::new("AMIDrift").to_string(), "AMIDrift");
    }
}
