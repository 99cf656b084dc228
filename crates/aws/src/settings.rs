//! What the AWS provider needs to know beyond the SDK configuration.

use std::time::Duration;

use crate::{instance_batcher::IdBatchWindow, launch::batcher::BatchWindow};

/// Settings of the AWS provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// The cluster's name: instances are tagged `kubernetes.io/cluster/<name>: owned` and
    /// `eks:eks-cluster-name: <name>`, and listed by that tag.
    pub cluster_name: String,
    /// The Kubernetes minor version (`1.33`) that selects the EKS-optimized AMIs of an alias.
    pub kubernetes_version: String,
    /// How long an offering that reported insufficient capacity is skipped (Karpenter: 3 minutes).
    pub unavailable_offerings_ttl: Duration,
    /// How often instance types, their zones and spot prices are described again.
    pub catalog_refresh: Duration,
    /// Instance types per CreateFleet request, cheapest first (Karpenter: 60).
    pub max_instance_types_per_launch: usize,
    /// How long identical launches wait to be merged into one CreateFleet call.
    pub launch_batch: BatchWindow,
    /// How long single-instance describes and terminations wait to be merged.
    pub instance_batch: IdBatchWindow,
}

impl AwsSettings {
    /// Settings for `cluster_name` on Kubernetes `kubernetes_version`, everything else Karpenter's
    /// defaults.
    pub fn new(cluster_name: impl Into<String>, kubernetes_version: impl Into<String>) -> Self {
        Self {
            cluster_name: cluster_name.into(),
            kubernetes_version: kubernetes_version.into(),
            unavailable_offerings_ttl: Duration::from_mins(3),
            catalog_refresh: Duration::from_hours(1),
            max_instance_types_per_launch: 60,
            launch_batch: BatchWindow::default(),
            instance_batch: IdBatchWindow::default(),
        }
    }
}
