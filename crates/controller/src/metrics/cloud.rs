//! The cloud provider, metered: every call's duration
//! (`karpenter_cloudprovider_duration_seconds`) and failures
//! (`karpenter_cloudprovider_errors_total`) by controller, method and provider, as Karpenter's
//! metrics decorator records them; and each outcome told to readiness.

use std::{future::Future, sync::Arc, time::Instant};

use nodewright_api::{NodeClaim, NodePool};
use nodewright_catalog::InstanceType;
use nodewright_cloudprovider::{
    BoxFuture, CloudProvider, CloudProviderError, DriftReason, RepairPolicy, Result,
};

use super::families::{CloudCallLabels, CloudErrorLabels};

/// A provider whose calls are timed and counted under one controller's name.
pub struct MeteredCloud {
    inner: Arc<dyn CloudProvider>,
    controller: &'static str,
}

impl std::fmt::Debug for MeteredCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredCloud")
            .field("provider", &self.inner.name())
            .field("controller", &self.controller)
            .finish()
    }
}

impl MeteredCloud {
    pub fn new(inner: Arc<dyn CloudProvider>, controller: &'static str) -> Self {
        Self { inner, controller }
    }

    async fn metered<T>(&self, method: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let result = call.await;
        let metrics = super::global();
        let labels = CloudCallLabels {
            controller: self.controller.to_owned(),
            method: method.to_owned(),
            provider: self.inner.name().to_owned(),
        };
        metrics
            .cloud_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if let Err(error) = &result {
            metrics
                .cloud_errors
                .get_or_create(&CloudErrorLabels {
                    controller: labels.controller,
                    method: labels.method,
                    provider: labels.provider,
                    error: error_type(error).to_owned(),
                })
                .inc();
        }
        metrics.health.record_provider(&result);
        result
    }
}

/// Karpenter's `error` label: the error's type name, empty for errors of no known type.
pub fn error_type(error: &CloudProviderError) -> &'static str {
    match error {
        CloudProviderError::NodeClaimNotFound(_) => "NodeClaimNotFoundError",
        CloudProviderError::InsufficientCapacity { .. } => "InsufficientCapacityError",
        CloudProviderError::NodeClassNotReady { .. } => "NodeClassNotReadyError",
        CloudProviderError::CreateError { .. } => "CreateError",
        CloudProviderError::Other(_) => "",
    }
}

impl CloudProvider for MeteredCloud {
    fn create<'a>(&'a self, node_claim: &'a NodeClaim) -> BoxFuture<'a, Result<NodeClaim>> {
        Box::pin(self.metered("Create", self.inner.create(node_claim)))
    }

    fn delete<'a>(&'a self, node_claim: &'a NodeClaim) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.metered("Delete", self.inner.delete(node_claim)))
    }

    fn get<'a>(&'a self, provider_id: &'a str) -> BoxFuture<'a, Result<NodeClaim>> {
        Box::pin(self.metered("Get", self.inner.get(provider_id)))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<NodeClaim>>> {
        Box::pin(self.metered("List", self.inner.list()))
    }

    fn get_instance_types<'a>(&'a self, node_pool: &'a NodePool) -> BoxFuture<'a, Result<Vec<InstanceType>>> {
        Box::pin(self.metered("GetInstanceTypes", self.inner.get_instance_types(node_pool)))
    }

    fn is_drifted<'a>(&'a self, node_claim: &'a NodeClaim) -> BoxFuture<'a, Result<Option<DriftReason>>> {
        Box::pin(self.metered("IsDrifted", self.inner.is_drifted(node_claim)))
    }

    fn repair_policies(&self) -> Vec<RepairPolicy> {
        self.inner.repair_policies()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_are_karpenters_names() {
        assert_eq!(
            error_type(&CloudProviderError::NodeClaimNotFound("i-1".to_owned())),
            "NodeClaimNotFoundError"
        );
        assert_eq!(
            error_type(&CloudProviderError::CreateError {
                reason: "Quota".to_owned(),
                message: String::new()
            }),
            "CreateError"
        );
        assert_eq!(
            error_type(&CloudProviderError::other(std::io::Error::other("x"))),
            ""
        );
    }
}
