//! Registration: the claim's Node has joined (matched by providerID). The Node is synced from the
//! claim — labels and annotations, taints and startup taints (unless `karpenter.sh/do-not-sync-
//! taints` is `true` on the Node), the termination finalizer, an owner reference to the claim,
//! `karpenter.sh/registered=true` — and loses the `karpenter.sh/unregistered` taint; then the
//! claim records `status.nodeName` and `Registered=True`.
//!
//! The sync runs until the claim is Registered, never after, so taints a daemon removes later are
//! not put back. Startup taints are only added while the Node is not Ready yet: the agent that
//! removes one does so once, at start-up, and a Ready node given it again would never initialize.

use std::{collections::HashMap, sync::Arc};

use k8s_openapi::{
    api::core::v1::{Node, Taint},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{Resource, ResourceExt};
use nodewright_api::{NodeClaim, conditions::nodeclaim, labels};

use super::{Working, registration_health, write};
use crate::{context::Context, error::ControllerError, nodepool_status::health::Outcome};

/// The Nodes of one providerID.
#[derive(Debug, Clone)]
pub(super) enum NodeMatch {
    None,
    One(Arc<Node>),
    /// More than one Node claims the instance: an invariant is broken, nothing is synced.
    Many(Vec<String>),
}

/// Nodes by providerID, built once per round from the watch cache.
#[derive(Debug, Default)]
pub(super) struct NodeIndex(HashMap<String, Vec<Arc<Node>>>);

impl NodeIndex {
    pub(super) fn build(ctx: &Context) -> Self {
        let mut index: HashMap<String, Vec<Arc<Node>>> = HashMap::new();
        for node in ctx.state.nodes.all() {
            if let Some(provider_id) = node.spec.as_ref().and_then(|s| s.provider_id.clone()) {
                index.entry(provider_id).or_default().push(node);
            }
        }
        Self(index)
    }

    pub(super) fn find(&self, provider_id: &str) -> NodeMatch {
        match self.0.get(provider_id).map(Vec::as_slice) {
            None | Some([]) => NodeMatch::None,
            Some([node]) => NodeMatch::One(Arc::clone(node)),
            Some(nodes) => {
                let mut names: Vec<String> = nodes.iter().map(|n| n.name_any()).collect();
                names.sort();
                NodeMatch::Many(names)
            }
        }
    }
}

/// Registers the claim with its Node if exactly one exists; returns the Node as it is now.
pub(super) async fn register(
    ctx: &Context,
    working: &mut Working,
    found: NodeMatch,
) -> Result<NodeMatch, ControllerError> {
    match found {
        NodeMatch::None => {
            working.conditions().set_unknown(
                nodeclaim::REGISTERED,
                nodeclaim::REASON_NODE_NOT_FOUND,
                "Node not registered with cluster",
            );
            Ok(NodeMatch::None)
        }
        NodeMatch::Many(names) => {
            working.conditions().set_false(
                nodeclaim::REGISTERED,
                nodeclaim::REASON_MULTIPLE_NODES_FOUND,
                &format!("invariant violated, matched multiple nodes: {}", names.join(", ")),
            );
            Ok(NodeMatch::Many(names))
        }
        NodeMatch::One(node) => {
            let desired = synced_node(&working.claim, &node);
            let node = if desired == *node {
                node
            } else {
                Arc::new(write::node(ctx, &desired).await?)
            };
            working.status.node_name = Some(node.name_any());
            if working.conditions().set_true(nodeclaim::REGISTERED) {
                crate::metrics::node_registered(&working.claim);
                registration_health::record(ctx, &working.claim, Outcome::Registered);
            }
            Ok(NodeMatch::One(node))
        }
    }
}

/// `node` as registration leaves it for `claim`.
fn synced_node(claim: &NodeClaim, node: &Node) -> Node {
    let mut synced = node.clone();
    synced
        .labels_mut()
        .extend(claim.labels().iter().map(|(k, v)| (k.clone(), v.clone())));
    synced
        .labels_mut()
        .insert(labels::NODE_REGISTERED.to_owned(), "true".to_owned());
    synced
        .annotations_mut()
        .extend(claim.annotations().iter().map(|(k, v)| (k.clone(), v.clone())));
    if !synced
        .finalizers()
        .iter()
        .any(|f| f == labels::TERMINATION_FINALIZER)
    {
        synced
            .finalizers_mut()
            .push(labels::TERMINATION_FINALIZER.to_owned());
    }
    if let Some(owner) = owner_reference(claim)
        && !synced.owner_references().iter().any(|o| o.uid == owner.uid)
    {
        synced.owner_references_mut().push(owner);
    }

    let original = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    let mut taints: Vec<Taint> = original.cloned().unwrap_or_default();
    if !do_not_sync_taints(&synced) {
        merge_taints(&mut taints, &claim.spec.taints);
        if !is_ready(node) {
            merge_taints(&mut taints, &claim.spec.startup_taints);
        }
    }
    taints.retain(|t| !labels::UNREGISTERED_TAINT.matches(t));
    if original.is_some() || !taints.is_empty() {
        synced.spec.get_or_insert_with(Default::default).taints = Some(taints);
    }
    synced
}

/// Adds each taint whose key and effect the list does not have yet.
fn merge_taints(taints: &mut Vec<Taint>, add: &[Taint]) {
    for taint in add {
        if !taints
            .iter()
            .any(|t| t.key == taint.key && t.effect == taint.effect)
        {
            taints.push(taint.clone());
        }
    }
}

fn do_not_sync_taints(node: &Node) -> bool {
    let set = |map: &std::collections::BTreeMap<String, String>| {
        map.get(labels::DO_NOT_SYNC_TAINTS).is_some_and(|v| v == "true")
    };
    set(node.labels()) || set(node.annotations())
}

/// Whether the Node's `Ready` condition is True.
pub(super) fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The Node → NodeClaim owner reference (so deleting the claim collects the Node).
fn owner_reference(claim: &NodeClaim) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: NodeClaim::api_version(&()).into_owned(),
        kind: NodeClaim::kind(&()).into_owned(),
        name: claim.name_any(),
        uid: claim.uid()?,
        block_owner_deletion: Some(true),
        controller: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claim(extra_labels: &serde_json::Value) -> NodeClaim {
        let mut labels = json!({"karpenter.sh/nodepool": "default", "team": "a"});
        labels
            .as_object_mut()
            .unwrap()
            .extend(extra_labels.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": {"name": "default-abc", "uid": "uid-1", "labels": labels, "annotations": {"note": "x"}},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [],
                "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}],
                "startupTaints": [{"key": "example.com/agent", "effect": "NoSchedule"}],
            }
        }))
        .unwrap()
    }

    fn node(ready: bool) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "ip-10-0-0-1.ec2.internal", "labels": {"kubernetes.io/hostname": "ip-10-0-0-1"}},
            "spec": {
                "providerID": "aws:///us-east-1a/i-1",
                "taints": [
                    {"key": "karpenter.sh/unregistered", "effect": "NoExecute"},
                    {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                ],
            },
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    fn keys(node: &Node) -> Vec<&str> {
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .map(|t| t.iter().map(|t| t.key.as_str()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn registration_syncs_the_node_from_its_claim() {
        let synced = synced_node(&claim(&json!({})), &node(false));
        assert_eq!(synced.labels()["team"], "a");
        assert_eq!(synced.labels()[labels::NODE_POOL], "default");
        assert_eq!(synced.labels()[labels::NODE_REGISTERED], "true");
        assert_eq!(
            synced.labels()[labels::HOSTNAME],
            "ip-10-0-0-1",
            "node's own labels kept"
        );
        assert_eq!(synced.annotations()["note"], "x");
        assert_eq!(synced.finalizers(), [labels::TERMINATION_FINALIZER]);
        let owner = &synced.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("NodeClaim", "default-abc", "uid-1")
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(
            keys(&synced),
            ["node.kubernetes.io/not-ready", "dedicated", "example.com/agent"]
        );
        // Idempotent: a second sync changes nothing, so no second write.
        assert_eq!(synced_node(&claim(&json!({})), &synced), synced);
    }

    #[test]
    fn startup_taints_are_not_given_back_to_a_ready_node() {
        let synced = synced_node(&claim(&json!({})), &node(true));
        assert_eq!(keys(&synced), ["node.kubernetes.io/not-ready", "dedicated"]);
    }

    #[test]
    fn do_not_sync_taints_keeps_the_nodes_taints_but_removes_unregistered() {
        let synced = synced_node(
            &claim(&json!({"karpenter.sh/do-not-sync-taints": "true"})),
            &node(false),
        );
        assert_eq!(keys(&synced), ["node.kubernetes.io/not-ready"]);
    }

    #[test]
    fn nodes_are_found_by_provider_id() {
        let one = Arc::new(node(false));
        let mut other = node(false);
        other.metadata.name = Some("second".into());
        let index = NodeIndex(HashMap::from([
            ("aws:///us-east-1a/i-1".to_owned(), vec![one.clone()]),
            ("aws:///us-east-1a/i-2".to_owned(), vec![one, Arc::new(other)]),
        ]));
        assert!(matches!(index.find("aws:///us-east-1a/i-1"), NodeMatch::One(_)));
        assert!(matches!(index.find("aws:///us-east-1a/i-3"), NodeMatch::None));
        match index.find("aws:///us-east-1a/i-2") {
            NodeMatch::Many(names) => assert_eq!(names, ["ip-10-0-0-1.ec2.internal", "second"]),
            other => panic!("{other:?}"),
        }
    }
}
