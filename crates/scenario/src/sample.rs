//! One look at the simulated cluster: pods by state, NodeClaims, nodes by instance type, and what
//! the cloud charges.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod};
use nodewright_api::labels;
use nodewright_sim::{
    cloud::FakeCloud,
    store::{Filter, Store},
};
use serde::de::DeserializeOwned;

/// The cluster at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sample {
    /// Simulated time since the scenario started.
    pub at: SignedDuration,
    /// Pods not bound to a node (and not finished).
    pub pending_pods: usize,
    /// Pods bound to a node and Running.
    pub running_pods: usize,
    /// Pods bound to a node but not Running yet.
    pub starting_pods: usize,
    pub node_claims: usize,
    /// Ready nodes per instance type.
    pub nodes_by_type: BTreeMap<String, usize>,
    /// Nodes that are not Ready yet.
    pub nodes_not_ready: usize,
    /// Live instances and their summed hourly price, in nano-USD per hour.
    pub instances: usize,
    pub cost_per_hour_nano_usd: u64,
    /// Billed since the start, in nano-USD.
    pub billed_nano_usd: u64,
}

impl Sample {
    /// Ready nodes.
    pub fn nodes_ready(&self) -> usize {
        self.nodes_by_type.values().sum()
    }

    /// Reads the store and the cloud.
    pub fn take(store: &Store, cloud: &FakeCloud, at: SignedDuration, now: Timestamp) -> Self {
        let pods: Vec<Pod> = list(store, "", "pods");
        let nodes: Vec<Node> = list(store, "", "nodes");
        let node_claims = list::<serde_json::Value>(store, labels::KARPENTER_GROUP, "nodeclaims").len();
        let mut sample = Self {
            at,
            node_claims,
            ..Self::default()
        };
        for pod in &pods {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            let bound = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty());
            if !bound {
                sample.pending_pods += 1;
            } else if phase == Some("Running") {
                sample.running_pods += 1;
            } else {
                sample.starting_pods += 1;
            }
        }
        for node in &nodes {
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                let instance_type = node
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(labels::INSTANCE_TYPE))
                    .cloned()
                    .unwrap_or_else(|| "unknown".to_owned());
                *sample.nodes_by_type.entry(instance_type).or_default() += 1;
            } else {
                sample.nodes_not_ready += 1;
            }
        }
        let live: Vec<_> = cloud
            .all_instances()
            .into_iter()
            .filter(|i| i.is_live(now))
            .collect();
        sample.instances = live.len();
        sample.cost_per_hour_nano_usd = live.iter().map(|i| i.price.0).sum();
        sample.billed_nano_usd = cloud.ledger().total_cost_nano_usd();
        sample
    }
}

/// Every object of a type that decodes (the store only holds objects its schema accepted).
fn list<T: DeserializeOwned>(store: &Store, group: &str, resource: &str) -> Vec<T> {
    let Some(info) = store.registry().get(group, resource) else {
        return Vec::new();
    };
    store
        .list(&info, &Filter::default(), None, None)
        .map(|page| {
            page.items
                .iter()
                .filter_map(|obj| serde_json::from_value(obj.value()).ok())
                .collect()
        })
        .unwrap_or_default()
}
