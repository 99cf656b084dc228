//! Initialization: the registered Node is ready for pods — `Ready`, none of the claim's startup
//! taints left, no known ephemeral taint, and every resource the claim requested present in its
//! allocatable. Then the Node is labelled `karpenter.sh/initialized=true` and the claim
//! `Initialized=True`. Until then `Initialized` is Unknown with the first reason that holds it
//! back (Karpenter's order and reasons).

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use nodewright_api::{NodeClaim, conditions::nodeclaim, labels, quantity};

use super::{
    Working,
    registration::{NodeMatch, is_ready},
    write,
};
use crate::{context::Context, error::ControllerError};

/// Initializes the claim if its Node is ready for pods.
pub(super) async fn initialize(
    ctx: &Context,
    working: &mut Working,
    found: &NodeMatch,
) -> Result<(), ControllerError> {
    let NodeMatch::One(node) = found else {
        working.conditions().set_unknown(
            nodeclaim::INITIALIZED,
            nodeclaim::REASON_NODE_NOT_FOUND,
            "Node not registered with cluster",
        );
        return Ok(());
    };
    if let Some((reason, message)) = held_back(&working.claim, node) {
        working
            .conditions()
            .set_unknown(nodeclaim::INITIALIZED, reason, &message);
        return Ok(());
    }
    if node.labels().get(labels::NODE_INITIALIZED).map(String::as_str) != Some("true") {
        write::node_label(ctx, &node.name_any(), labels::NODE_INITIALIZED, "true").await?;
    }
    working.conditions().set_true(nodeclaim::INITIALIZED);
    Ok(())
}

/// Why the Node is not initialized yet (reason, message), or None when it is.
fn held_back(claim: &NodeClaim, node: &Node) -> Option<(&'static str, String)> {
    if !is_ready(node) {
        return Some((
            nodeclaim::REASON_NODE_NOT_READY,
            "Node status is NotReady".to_owned(),
        ));
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    if let Some(taint) = taints.iter().find(|t| {
        claim
            .spec
            .startup_taints
            .iter()
            .any(|s| s.key == t.key && s.effect == t.effect)
    }) {
        return Some((
            nodeclaim::REASON_STARTUP_TAINTS_EXIST,
            format!("StartupTaint {:?} still exists", taint_string(taint)),
        ));
    }
    if let Some(taint) = taints.iter().find(|t| labels::is_known_ephemeral_taint(t)) {
        return Some((
            nodeclaim::REASON_KNOWN_EPHEMERAL_TAINTS_EXIST,
            format!("KnownEphemeralTaint {:?} still exists", taint_string(taint)),
        ));
    }
    if let Some(resource) = unregistered_resource(claim, node) {
        return Some((
            nodeclaim::REASON_RESOURCE_NOT_REGISTERED,
            format!("Resource {resource:?} was requested but not registered"),
        ));
    }
    None
}

fn taint_string(taint: &k8s_openapi::api::core::v1::Taint) -> String {
    match &taint.value {
        Some(value) => format!("{}={}:{}", taint.key, value, taint.effect),
        None => format!("{}:{}", taint.key, taint.effect),
    }
}

/// A resource the claim requested (a non-zero amount) that the Node's allocatable lacks, as
/// device plugins register extended resources some time after the kubelet starts.
fn unregistered_resource<'a>(claim: &'a NodeClaim, node: &Node) -> Option<&'a str> {
    let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let nonzero = |text: &str| quantity::parse_milli(text).is_ok_and(|v| v > 0);
    claim
        .spec
        .resources
        .requests
        .iter()
        .filter(|(_, amount)| nonzero(&amount.0))
        .find(|(name, _)| {
            !allocatable
                .and_then(|a| a.get(*name))
                .is_some_and(|amount| nonzero(&amount.0))
        })
        .map(|(name, _)| name.as_str())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn claim() -> NodeClaim {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": {"name": "c"},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [],
                "startupTaints": [{"key": "example.com/agent", "effect": "NoSchedule"}],
                "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": "1", "example.com/none": "0"}},
            }
        }))
        .unwrap()
    }

    fn node(ready: &str, taints: &Value, allocatable: &Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"taints": taints},
            "status": {
                "conditions": [{"type": "Ready", "status": ready}],
                "allocatable": allocatable,
            },
        }))
        .unwrap()
    }

    fn reason(node: &Node) -> Option<&'static str> {
        held_back(&claim(), node).map(|(reason, _)| reason)
    }

    #[test]
    fn each_reason_holds_initialization_back_in_order() {
        let full = json!({"cpu": "2", "nvidia.com/gpu": "1"});
        let startup = json!([{"key": "example.com/agent", "effect": "NoSchedule"}]);
        assert_eq!(
            reason(&node("False", &json!([]), &full)),
            Some(nodeclaim::REASON_NODE_NOT_READY)
        );
        assert_eq!(
            reason(&node("True", &startup, &full)),
            Some(nodeclaim::REASON_STARTUP_TAINTS_EXIST)
        );
        assert_eq!(
            reason(&node(
                "True",
                &json!([{"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"}]),
                &full
            )),
            Some(nodeclaim::REASON_KNOWN_EPHEMERAL_TAINTS_EXIST)
        );
        assert_eq!(
            reason(&node(
                "True",
                &json!([]),
                &json!({"cpu": "2", "nvidia.com/gpu": "0"})
            )),
            Some(nodeclaim::REASON_RESOURCE_NOT_REGISTERED)
        );
        let (_, message) = held_back(&claim(), &node("True", &json!([]), &json!({"cpu": "2"}))).unwrap();
        assert!(message.contains("nvidia.com/gpu"), "{message}");
        // An unrelated taint does not matter; a zero request needs nothing.
        assert_eq!(
            reason(&node(
                "True",
                &json!([{"key": "dedicated", "effect": "NoSchedule"}]),
                &full
            )),
            None
        );
    }
}
