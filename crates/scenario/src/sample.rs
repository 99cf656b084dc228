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

/// How long the pods took to start: for each pod existing now, from its creation until it was
/// Ready (its `Ready` condition's transition to True, else its start time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodStarts {
    /// Creation to Ready, of the pods that started, in no particular order.
    pub latencies: Vec<SignedDuration>,
    /// Pods (not finished) that never became Ready.
    pub not_started: usize,
}

impl PodStarts {
    /// Reads the pods in the store.
    pub fn take(store: &Store) -> Self {
        let mut starts = Self::default();
        for pod in list::<Pod>(store, "", "pods") {
            let status = pod.status.as_ref();
            let phase = status.and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let ready_at = status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
                .and_then(|c| c.last_transition_time.as_ref())
                .or_else(|| {
                    status
                        .and_then(|s| s.start_time.as_ref())
                        .filter(|_| phase == Some("Running"))
                })
                .map(|t| t.0);
            match (created, ready_at) {
                (Some(created), Some(ready)) => starts.latencies.push(ready.duration_since(created)),
                _ => starts.not_started += 1,
            }
        }
        starts
    }

    /// The `q` quantile (0 < q <= 1) of the latencies by nearest rank; None without any.
    pub fn quantile(&self, q: f64) -> Option<SignedDuration> {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let n = sorted.len();
        if n == 0 {
            return None;
        }
        // Nearest rank: the smallest value with at least q of the values at or below it.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n);
        Some(sorted[rank - 1])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let starts = PodStarts {
            latencies: (1..=100).rev().map(SignedDuration::from_secs).collect(),
            not_started: 0,
        };
        assert_eq!(starts.quantile(0.5), Some(SignedDuration::from_secs(50)));
        assert_eq!(starts.quantile(0.99), Some(SignedDuration::from_secs(99)));
        assert_eq!(starts.quantile(1.0), Some(SignedDuration::from_secs(100)));
        let one = PodStarts {
            latencies: vec![SignedDuration::from_secs(7)],
            not_started: 2,
        };
        assert_eq!(one.quantile(0.5), Some(SignedDuration::from_secs(7)));
        assert_eq!(PodStarts::default().quantile(0.5), None);
    }
}
