//! The simulated kube-scheduler: binds each pending pod to a node that can take it, or marks it
//! `PodScheduled=False` with reason `Unschedulable` and a message in kube-scheduler's words
//! (`0/3 nodes are available: ...`) — the condition Karpenter watches for.
//!
//! The fit checks are the solver's (resources with overhead and init containers, taints and
//! tolerations, node selectors and required affinity, host ports, topology spread, pod affinity
//! and anti-affinity), run with no NodePool so only existing nodes are candidates. Unlike
//! kube-scheduler, which scores nodes one pod at a time (spreading by default), the solver packs
//! a batch onto as few nodes as it can; which fitting node a pod lands on is the only difference.
//! Nodes whose Ready condition is False or Unknown are tried last, and a starting node carries the
//! `node.kubernetes.io/not-ready` taint (see [`super::kubelet`]) which ordinary pods do not
//! tolerate, as in a real cluster.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Node, Pod, PodCondition},
    apimachinery::pkg::apis::meta::v1::Time,
};
use nodewright_solver::{Problem, manifests::existing_node, solve};

use super::{Ctx, DataPlaneError};
use crate::store::Subresource;

/// The field manager of bindings and scheduling conditions.
pub const MANAGER: &str = "kube-scheduler";
/// The scheduler name pods without `spec.schedulerName` get.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// `PodScheduled=False` reason kube-scheduler writes when no node fits.
pub const UNSCHEDULABLE: &str = "Unschedulable";

/// One scheduling cycle over every pending pod.
pub(crate) fn reconcile(ctx: &Ctx<'_>) -> Result<usize, DataPlaneError> {
    let pods: Vec<Pod> = ctx.list("", "pods")?;
    let (pending, bound): (Vec<Pod>, Vec<Pod>) = pods
        .into_iter()
        .filter(|p| !finished(p))
        .partition(|p| node_name(p).is_none());
    let pending: Vec<Pod> = pending.into_iter().filter(wants_scheduling).collect();
    if pending.is_empty() {
        return Ok(0);
    }
    let nodes: Vec<Node> = ctx.list("", "nodes")?;
    let problem = problem(pending, bound, nodes);
    let plan = solve(&problem);

    let mut writes = 0;
    for (index, node) in &plan.existing_placements {
        writes += bind(ctx, &problem.pods[*index], node)?;
    }
    for unschedulable in &plan.unschedulable {
        let message = unschedulable.message();
        writes += mark_unschedulable(ctx, &problem.pods[unschedulable.pod], &message)?;
    }
    Ok(writes)
}

/// The solver's view: pending pods, and every live node with the pods bound to it.
fn problem(pending: Vec<Pod>, bound: Vec<Pod>, nodes: Vec<Node>) -> Problem {
    let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in bound {
        if let Some(node) = node_name(&pod) {
            by_node.entry(node.to_owned()).or_default().push(pod);
        }
    }
    let existing_nodes = nodes
        .into_iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .map(|node| {
            let mut existing = existing_node(node);
            existing.pods = by_node.remove(&existing.name).unwrap_or_default();
            existing
        })
        .collect();
    Problem {
        pods: pending,
        existing_nodes,
        ..Problem::default()
    }
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Pods this scheduler is responsible for now: not terminating, not gated, and addressed to the
/// default scheduler.
fn wants_scheduling(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    pod.metadata.deletion_timestamp.is_none()
        && spec.scheduling_gates.as_ref().is_none_or(Vec::is_empty)
        && spec
            .scheduler_name
            .as_deref()
            .is_none_or(|s| s.is_empty() || s == DEFAULT_SCHEDULER)
}

fn bind(ctx: &Ctx<'_>, pod: &Pod, node: &str) -> Result<usize, DataPlaneError> {
    let (ns, name) = key(pod);
    let mut still_unbound = false;
    let bound = ctx.update::<Pod>("", "pods", ns, name, Subresource::Main, &mut |p| {
        let spec = p.spec.get_or_insert_with(Default::default);
        // Another writer may have bound it meanwhile; a binding never moves a pod.
        still_unbound = spec.node_name.as_deref().is_none_or(str::is_empty);
        if still_unbound {
            spec.node_name = Some(node.to_owned());
        }
    })?;
    if !bound {
        return Ok(0);
    }
    let now = Time(ctx.now());
    ctx.update::<Pod>("", "pods", ns, name, Subresource::Status, &mut |p| {
        set_condition(p, "True", None, None, &now);
    })?;
    Ok(1)
}

fn mark_unschedulable(ctx: &Ctx<'_>, pod: &Pod, message: &str) -> Result<usize, DataPlaneError> {
    // Most passes find pods already marked with the same words: skip the write (and its
    // decode/encode round trip) then.
    let already = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some(UNSCHEDULABLE)
                && c.message.as_deref() == Some(message)
        });
    if already {
        return Ok(0);
    }
    let (ns, name) = key(pod);
    let now = Time(ctx.now());
    let written = ctx.update::<Pod>("", "pods", ns, name, Subresource::Status, &mut |p| {
        set_condition(p, "False", Some(UNSCHEDULABLE), Some(message), &now);
    })?;
    Ok(usize::from(written))
}

/// Sets `PodScheduled`, keeping its transition time when the status does not change.
fn set_condition(pod: &mut Pod, status: &str, reason: Option<&str>, message: Option<&str>, now: &Time) {
    let pod_status = pod.status.get_or_insert_with(Default::default);
    pod_status.phase.get_or_insert_with(|| "Pending".to_owned());
    let conditions = pod_status.conditions.get_or_insert_with(Vec::new);
    let wanted = PodCondition {
        type_: "PodScheduled".to_owned(),
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        message: message.map(str::to_owned),
        last_transition_time: Some(now.clone()),
        ..PodCondition::default()
    };
    match conditions.iter_mut().find(|c| c.type_ == "PodScheduled") {
        Some(existing) if existing.status == status => {
            existing.reason = wanted.reason;
            existing.message = wanted.message;
        }
        Some(existing) => *existing = wanted,
        None => conditions.push(wanted),
    }
}

fn key(pod: &Pod) -> (&str, &str) {
    (
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
    )
}
