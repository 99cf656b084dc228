//! What the AWS provider needs to know beyond the SDK configuration.

use std::time::Duration;

use nodewright_api::EC2NodeClass;
use nodewright_catalog::NodeSettings;

use crate::{instance_batcher::IdBatchWindow, launch::batcher::BatchWindow};

/// Settings of the AWS provider.
#[derive(Debug, Clone, PartialEq)]
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
    /// Share of an instance's memory the hypervisor keeps (`VM_MEMORY_OVERHEAD_PERCENT`, 0.075),
    /// for every node class.
    pub vm_memory_overhead_percent: f64,
    /// ENIs kept away from pod networking (`RESERVED_ENIS`, 0), for every node class.
    pub reserved_enis: u32,
    /// Karpenter's `ReservedCapacity` feature gate (on by default): capacity reservations in the
    /// node classes' status are offered as `reserved` capacity and launched into; templates of
    /// other launches stay out of open reservations.
    pub reserved_capacity: bool,
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
            vm_memory_overhead_percent: NodeSettings::default().vm_memory_overhead_percent,
            reserved_enis: NodeSettings::default().reserved_enis,
            reserved_capacity: true,
        }
    }

    /// The catalogue settings of nodes launched with `node_class` (the defaults without one):
    /// the class's own, with this controller's memory overhead and reserved ENIs.
    pub fn node_settings(&self, node_class: Option<&EC2NodeClass>) -> NodeSettings {
        NodeSettings {
            vm_memory_overhead_percent: self.vm_memory_overhead_percent,
            reserved_enis: self.reserved_enis,
            ..node_class.map_or_else(NodeSettings::default, NodeSettings::from_node_class)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_settings_carry_the_controllers_overheads_over_the_node_classs_own() {
        let settings = AwsSettings {
            vm_memory_overhead_percent: 0.1,
            reserved_enis: 1,
            ..AwsSettings::new("demo", "1.33")
        };
        let class: EC2NodeClass = serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
            "metadata": {"name": "pods"},
            "spec": {"amiSelectorTerms": [{"alias": "bottlerocket@latest"}], "role": "r",
                     "subnetSelectorTerms": [{"id": "subnet-1"}],
                     "securityGroupSelectorTerms": [{"id": "sg-1"}],
                     "kubelet": {"maxPods": 20}},
        }))
        .unwrap();
        let nodes = settings.node_settings(Some(&class));
        assert!((nodes.vm_memory_overhead_percent - 0.1).abs() < 1e-9);
        assert_eq!(nodes.reserved_enis, 1);
        assert_eq!(nodes.max_pods, Some(20), "the class's own settings stay");
        let defaults = AwsSettings::new("demo", "1.33").node_settings(None);
        assert_eq!(defaults, NodeSettings::default());
    }
}
