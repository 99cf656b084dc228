//! Which pods the provisioner acts for (Karpenter's `IsProvisionable` and
//! `IsReschedulable`): pure predicates over one pod.

use k8s_openapi::api::core::v1::Pod;
use nodewright_api::{Operator, labels};

/// `PodScheduled=False` reason kube-scheduler writes when no node fits.
const UNSCHEDULABLE: &str = "Unschedulable";
/// The annotation the kubelet puts on the API mirror of a static pod.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// A pending pod kube-scheduler gave up on and that new capacity could help: marked
/// `PodScheduled=False, reason Unschedulable`, unbound, not preempting (`nominatedNodeName`
/// empty), not owned by a DaemonSet, not a mirror pod, not terminating, not finished, not
/// scheduling-gated. Karpenter never acts before kube-scheduler has given up on a pod.
pub(crate) fn is_provisionable(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let status = pod.status.as_ref();
    let unschedulable = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some(UNSCHEDULABLE)
        });
    let preempting = status
        .and_then(|s| s.nominated_node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    unschedulable
        && spec.node_name.as_deref().is_none_or(str::is_empty)
        && spec.scheduling_gates.as_ref().is_none_or(Vec::is_empty)
        && !preempting
        && !is_terminating_or_finished(pod)
        && !is_daemon_set_pod(pod)
        && !is_mirror_pod(pod)
        && !opts_out_of_managed_nodes(pod)
}

/// A pod on a node that is going away which will need a place elsewhere: not a DaemonSet or
/// mirror pod, not terminating or finished, not protected by `karpenter.sh/do-not-disrupt`.
/// Capacity for it is provisioned before it is evicted, as Karpenter does.
pub(crate) fn is_reschedulable(pod: &Pod) -> bool {
    let do_not_disrupt = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::DO_NOT_DISRUPT))
        .is_some_and(|v| v == "true");
    !do_not_disrupt
        && !is_terminating_or_finished(pod)
        && !is_daemon_set_pod(pod)
        && !is_mirror_pod(pod)
        && !opts_out_of_managed_nodes(pod)
}

/// Whether the pod holds resources on its node: bound and not finished. Terminating pods still
/// hold theirs until they are gone.
pub(crate) fn holds_resources(pod: &Pod) -> bool {
    !is_finished(pod)
}

pub(crate) fn is_daemon_set_pod(pod: &Pod) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet" && o.api_version.starts_with("apps/"))
}

fn is_mirror_pod(pod: &Pod) -> bool {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    let node_owned = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Node" && o.api_version == "v1");
    annotated || node_owned
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn is_terminating_or_finished(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() || is_finished(pod)
}

/// A pod whose every required node-affinity term says `karpenter.sh/nodepool DoesNotExist`
/// asked not to run on a node Nodewright launches; Karpenter ignores such pods without an event.
fn opts_out_of_managed_nodes(pod: &Pod) -> bool {
    let terms = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or_default();
    !terms.is_empty()
        && terms.iter().all(|term| {
            term.match_expressions
                .iter()
                .flatten()
                .any(|e| e.key == labels::NODE_POOL && e.operator == Operator::DoesNotExist.as_str())
        })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn pod(extra: &Value) -> Pod {
        let mut base = json!({
            "metadata": { "name": "p", "namespace": "default", "uid": "u1" },
            "spec": { "containers": [{ "name": "c" }] },
            "status": { "phase": "Pending", "conditions": [
                { "type": "PodScheduled", "status": "False", "reason": "Unschedulable" }
            ] }
        });
        merge(&mut base, extra);
        serde_json::from_value(base).unwrap()
    }

    fn merge(base: &mut Value, extra: &Value) {
        match (base, extra) {
            (Value::Object(base), Value::Object(extra)) => {
                for (key, value) in extra {
                    merge(base.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
            (base, extra) => *base = extra.clone(),
        }
    }

    #[test]
    fn only_pods_kube_scheduler_gave_up_on_are_provisionable() {
        assert!(is_provisionable(&pod(&json!({}))));
        let not_yet_tried = pod(&json!({ "status": { "conditions": [] } }));
        assert!(!is_provisionable(&not_yet_tried));
        let other_reason = pod(&json!({ "status": { "conditions": [
            { "type": "PodScheduled", "status": "False", "reason": "SchedulerError" }
        ] } }));
        assert!(!is_provisionable(&other_reason));
        let bound = pod(&json!({ "spec": { "nodeName": "n1" } }));
        assert!(!is_provisionable(&bound));
        let preempting = pod(&json!({ "status": { "nominatedNodeName": "n1" } }));
        assert!(!is_provisionable(&preempting));
    }

    #[test]
    fn daemon_set_mirror_terminating_and_gated_pods_are_not_provisionable() {
        let daemon = pod(&json!({ "metadata": { "ownerReferences": [
            { "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "d" }
        ] } }));
        assert!(!is_provisionable(&daemon));
        let replica = pod(&json!({ "metadata": { "ownerReferences": [
            { "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "r" }
        ] } }));
        assert!(is_provisionable(&replica));
        let mirror = pod(&json!({ "metadata": { "annotations": { "kubernetes.io/config.mirror": "x" } } }));
        assert!(!is_provisionable(&mirror));
        let terminating = pod(&json!({ "metadata": { "deletionTimestamp": "2026-01-01T00:00:00Z" } }));
        assert!(!is_provisionable(&terminating));
        let gated = pod(&json!({ "spec": { "schedulingGates": [{ "name": "wait" }] } }));
        assert!(!is_provisionable(&gated));
        let failed = pod(&json!({ "status": { "phase": "Failed" } }));
        assert!(!is_provisionable(&failed));
    }

    #[test]
    fn pods_refusing_managed_nodes_are_ignored() {
        let refusing = pod(&json!({ "spec": { "affinity": { "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                { "matchExpressions": [{ "key": "karpenter.sh/nodepool", "operator": "DoesNotExist" }] }
            ] } } } } }));
        assert!(!is_provisionable(&refusing));
        // One term that allows managed nodes is enough.
        let either = pod(&json!({ "spec": { "affinity": { "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                { "matchExpressions": [{ "key": "karpenter.sh/nodepool", "operator": "DoesNotExist" }] },
                { "matchExpressions": [{ "key": "team", "operator": "In", "values": ["a"] }] }
            ] } } } } }));
        assert!(is_provisionable(&either));
    }

    #[test]
    fn reschedulable_pods_exclude_daemons_and_do_not_disrupt() {
        let running = pod(&json!({ "spec": { "nodeName": "n1" }, "status": { "phase": "Running" } }));
        assert!(is_reschedulable(&running));
        let protected =
            pod(&json!({ "metadata": { "annotations": { "karpenter.sh/do-not-disrupt": "true" } } }));
        assert!(!is_reschedulable(&protected));
        let daemon = pod(&json!({ "metadata": { "ownerReferences": [
            { "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "d" }
        ] } }));
        assert!(!is_reschedulable(&daemon));
        let done = pod(&json!({ "status": { "phase": "Succeeded" } }));
        assert!(!holds_resources(&done));
        assert!(holds_resources(&running));
    }
}
