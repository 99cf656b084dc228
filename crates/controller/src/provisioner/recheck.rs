//! The stale-cache guard: before a round creates NodeClaims, the pods it placed on them are read
//! again from the API server, because the watch can lag. A pod deleted, terminating or bound
//! meanwhile — or one on a leaving node that is now gone — still looks like it needs a home in
//! the cache, and would otherwise buy a NodeClaim nobody needs.
//!
//! Only pods on *new* NodeClaims are checked: nominating a pod to capacity that exists or is in
//! flight costs nothing. The reads are batched: per namespace, a few pending pods are fetched one
//! by one and more are found in one list of the namespace's unbound pods
//! (`spec.nodeName=`); pods on a leaving node come from one list of that node's pods
//! (`spec.nodeName=<node>`) after a GET of the node.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    sync::Arc,
};

use futures_util::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{Api, Client, ResourceExt, api::ListParams};
use nodewright_solver::NodeClaimPlan;

use crate::error::ControllerError;

/// Pending pods of one namespace fetched one by one at most; more are found in one list.
const GET_AT_MOST: usize = 8;
/// Reads in flight at once.
const PARALLEL_READS: usize = 16;

/// Why a planned pod no longer needs a new home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stale {
    /// Deleted, or replaced by a pod of the same name (which a later round considers by itself);
    /// for a pending pod looked for among the unbound pods, possibly bound meanwhile.
    Deleted,
    /// Being deleted or already finished.
    Terminating,
    /// A pending pod that was bound meanwhile.
    Bound(String),
    /// A pod on a leaving node that no longer exists: the pod goes with it, and its
    /// replacement arrives as a pending pod of its own.
    NodeGone(String),
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deleted => f.write_str("deleted"),
            Self::Terminating => f.write_str("terminating"),
            Self::Bound(node) => write!(f, "bound to node {node}"),
            Self::NodeGone(node) => write!(f, "its node {node} is gone"),
        }
    }
}

/// What the API server says now about the pods checked.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Pods found, by namespace and name. A pending pod searched for among unbound pods and not
    /// found is deleted or bound: either way it needs no NodeClaim.
    pods: HashMap<(String, String), Pod>,
    /// The leaving nodes that still exist.
    nodes: HashSet<String>,
}

/// The planned pods (indices into `pods`) that no longer need the NodeClaims planned for them.
pub(crate) async fn gone_pods(
    client: &Client,
    pods: &[Arc<Pod>],
    new_nodes: &[NodeClaimPlan],
) -> Result<Vec<(usize, Stale)>, ControllerError> {
    let planned: Vec<usize> = new_nodes.iter().flat_map(|n| n.pods.iter().copied()).collect();
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    let live = read(client, pods, &planned).await?;
    Ok(planned
        .into_iter()
        .filter_map(|index| {
            let cached = pods.get(index)?;
            let found = live.pods.get(&key(cached));
            gone(cached, found, &live.nodes).map(|why| (index, why))
        })
        .collect())
}

/// Reads the planned pods: pending ones per namespace, ones on leaving nodes per node.
async fn read(client: &Client, pods: &[Arc<Pod>], planned: &[usize]) -> Result<Live, ControllerError> {
    let mut pending: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut leaving: HashSet<String> = HashSet::new();
    for pod in planned.iter().filter_map(|i| pods.get(*i)) {
        match bound_node(pod) {
            Some(node) => {
                leaving.insert(node.to_owned());
            }
            None => pending
                .entry(pod.namespace().unwrap_or_default())
                .or_default()
                .push(pod.name_any()),
        }
    }
    let mut live = Live::default();
    for (namespace, names) in pending {
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let found: Vec<Pod> = if names.len() <= GET_AT_MOST {
            let gets = names.into_iter().map(|name| {
                let api = api.clone();
                async move { api.get_opt(&name).await }
            });
            let found: Vec<Option<Pod>> = stream::iter(gets)
                .buffer_unordered(PARALLEL_READS)
                .try_collect()
                .await?;
            found.into_iter().flatten().collect()
        } else {
            api.list(&ListParams::default().fields("spec.nodeName="))
                .await?
                .items
        };
        live.insert_pods(found);
    }
    let node_reads = leaving.into_iter().map(|node| {
        let nodes: Api<Node> = Api::all(client.clone());
        let all_pods: Api<Pod> = Api::all(client.clone());
        async move {
            if nodes.get_opt(&node).await?.is_none() {
                return Ok::<_, kube::Error>((node, None));
            }
            let on_node = all_pods
                .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
                .await?
                .items;
            Ok((node, Some(on_node)))
        }
    });
    let per_node: Vec<(String, Option<Vec<Pod>>)> = stream::iter(node_reads)
        .buffer_unordered(PARALLEL_READS)
        .try_collect()
        .await?;
    for (node, on_node) in per_node {
        if let Some(on_node) = on_node {
            live.nodes.insert(node);
            live.insert_pods(on_node);
        }
    }
    Ok(live)
}

impl Live {
    fn insert_pods(&mut self, pods: Vec<Pod>) {
        self.pods.extend(pods.into_iter().map(|pod| (key(&pod), pod)));
    }
}

fn key(pod: &Pod) -> (String, String) {
    (pod.namespace().unwrap_or_default(), pod.name_any())
}

fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Why the cached pod no longer needs a new home, judging by the live pod (None: not found) and
/// the leaving nodes that still exist; None while it still does. A node the cache saw leaving
/// cannot stop leaving (deletion is final), so only its disappearance matters. Pure.
pub(crate) fn gone(cached: &Pod, live: Option<&Pod>, nodes_present: &HashSet<String>) -> Option<Stale> {
    let Some(live) = live else {
        return Some(match bound_node(cached) {
            Some(node) if !nodes_present.contains(node) => Stale::NodeGone(node.to_owned()),
            _ => Stale::Deleted,
        });
    };
    if live.metadata.uid != cached.metadata.uid {
        return Some(Stale::Deleted);
    }
    let finished = matches!(
        live.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    if live.metadata.deletion_timestamp.is_some() || finished {
        return Some(Stale::Terminating);
    }
    match (bound_node(cached), bound_node(live)) {
        (None, Some(node)) => Some(Stale::Bound(node.to_owned())),
        (Some(node), _) if !nodes_present.contains(node) => Some(Stale::NodeGone(node.to_owned())),
        (Some(cached_node), Some(live_node)) if cached_node != live_node => Some(Stale::Deleted),
        _ => None,
    }
}

/// Drops the new NodeClaims that lost a pod: their size and count were chosen for pods that are
/// not there, and the next round re-plans the rest. Returns how many still-waiting pods were
/// on the dropped NodeClaims.
pub(crate) fn drop_affected(new_nodes: &mut Vec<NodeClaimPlan>, gone: &HashSet<usize>) -> usize {
    let mut deferred = 0;
    new_nodes.retain(|node| {
        let lost = node.pods.iter().any(|i| gone.contains(i));
        if lost {
            deferred += node.pods.iter().filter(|i| !gone.contains(i)).count();
        }
        !lost
    });
    deferred
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn pod(uid: &str, node: Option<&str>, extra_meta: &Value, phase: &str) -> Pod {
        let mut metadata = json!({ "name": "web-1", "namespace": "default", "uid": uid });
        if let (Some(base), Some(extra)) = (metadata.as_object_mut(), extra_meta.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(json!({
            "metadata": metadata,
            "spec": { "nodeName": node, "containers": [{ "name": "c" }] },
            "status": { "phase": phase }
        }))
        .unwrap()
    }

    fn nodes(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn pending_pods_deleted_terminating_replaced_or_bound_are_gone() {
        let cached = pod("u1", None, &json!({}), "Pending");
        assert_eq!(gone(&cached, Some(&cached), &nodes(&[])), None, "still pending");
        assert_eq!(gone(&cached, None, &nodes(&[])), Some(Stale::Deleted));
        let terminating = pod(
            "u1",
            None,
            &json!({ "deletionTimestamp": "2026-01-01T00:00:00Z" }),
            "Pending",
        );
        assert_eq!(
            gone(&cached, Some(&terminating), &nodes(&[])),
            Some(Stale::Terminating)
        );
        let replaced = pod("u2", None, &json!({}), "Pending");
        assert_eq!(gone(&cached, Some(&replaced), &nodes(&[])), Some(Stale::Deleted));
        let bound = pod("u1", Some("ip-1"), &json!({}), "Running");
        assert_eq!(
            gone(&cached, Some(&bound), &nodes(&[])),
            Some(Stale::Bound("ip-1".into()))
        );
        let failed = pod("u1", None, &json!({}), "Failed");
        assert_eq!(
            gone(&cached, Some(&failed), &nodes(&[])),
            Some(Stale::Terminating)
        );
    }

    #[test]
    fn pods_on_leaving_nodes_are_gone_with_the_node_or_when_evicted() {
        let cached = pod("u1", Some("ip-1"), &json!({}), "Running");
        let present = nodes(&["ip-1"]);
        assert_eq!(gone(&cached, Some(&cached), &present), None, "still to move");
        assert_eq!(
            gone(&cached, Some(&cached), &nodes(&[])),
            Some(Stale::NodeGone("ip-1".into()))
        );
        assert_eq!(
            gone(&cached, None, &nodes(&[])),
            Some(Stale::NodeGone("ip-1".into()))
        );
        assert_eq!(gone(&cached, None, &present), Some(Stale::Deleted));
        let evicting = pod(
            "u1",
            Some("ip-1"),
            &json!({ "deletionTimestamp": "2026-01-01T00:00:00Z" }),
            "Running",
        );
        assert_eq!(gone(&cached, Some(&evicting), &present), Some(Stale::Terminating));
    }

    fn plan(pods: &[usize]) -> NodeClaimPlan {
        NodeClaimPlan {
            nodepool: "default".into(),
            requirements: Vec::new(),
            instance_types: Vec::new(),
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: nodewright_catalog::CapacityType::OnDemand,
            price: nodewright_catalog::Price::from_usd(0.1),
            pods: pods.to_vec(),
            requests: nodewright_catalog::Resources::default(),
            min_values_relaxed: false,
        }
    }

    #[test]
    fn node_claims_that_lost_a_pod_are_dropped_and_their_other_pods_deferred() {
        let mut new_nodes = vec![plan(&[0, 1]), plan(&[2]), plan(&[3, 4, 5])];
        let deferred = drop_affected(&mut new_nodes, &HashSet::from([0, 3, 4]));
        assert_eq!(deferred, 2, "pods 1 and 5 wait for the next round");
        assert_eq!(new_nodes.len(), 1);
        assert_eq!(new_nodes[0].pods, [2]);
    }
}
