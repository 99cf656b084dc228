//! `explain pod`: where a pod runs, or why it waits.
//!
//! A pending pod is put to the solver three ways, all on the provisioner's snapshot of the
//! cluster (existing nodes with their pods, NodeClaims in flight as nodes, the usable NodePools
//! with their instance types and what they already use):
//! - against the whole snapshot: what the provisioner would do for it (an existing node or
//!   NodeClaim in flight takes it, a new node is launched within the NodePool's limits, or the
//!   solver's reason per NodePool);
//! - against each existing node alone: why that node does not take it (kube-scheduler's words:
//!   resources, taints, labels, host ports);
//! - against each NodePool alone: the new node it would launch, or why it cannot (requirements,
//!   taints, limits, no instance type or offering fits).
//!
//! Topology constraints (spread, pod affinity) depend on the other nodes: the per-node and
//! per-NodePool answers judge them against that node or NodePool alone, the first answer
//! against the whole cluster.

use std::fmt::Write as _;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use nodewright_solver::{ExistingNode, PoolInput, Problem};
use serde::Serialize;

use super::{Cluster, EventLine, ExplainError, PoolTypes, write_events};
use crate::provisioner::{
    limits,
    pods::{is_daemon_set_pod, is_provisionable},
    snapshot::{self, Target},
};

/// Where a pod runs, or why it waits.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodExplanation {
    /// `namespace/name`.
    pub pod: String,
    pub at: String,
    pub phase: String,
    /// The node it is bound to.
    pub node: Option<String>,
    /// Its `PodScheduled` condition (kube-scheduler's verdict).
    pub pod_scheduled: Option<PodScheduled>,
    /// Whether the provisioner acts for it now, and if not why.
    pub provisioner: Provisioner,
    pub verdict: Verdict,
    /// Each existing node (and NodeClaim in flight), alone.
    pub existing_nodes: Vec<NodeFit>,
    /// Each NodePool, alone; NodePools the provisioner does not use now are listed with why.
    pub node_pools: Vec<PoolFit>,
    /// Events about the pod (FailedScheduling, Nominated, ...), oldest first.
    pub events: Vec<EventLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodScheduled {
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provisioner {
    /// The provisioner plans capacity for the pod.
    pub acts: bool,
    /// Why it does not (when it does not).
    pub why_not: Option<String>,
}

/// What would become of the pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub outcome: Outcome,
    pub message: String,
    /// The existing node or NodeClaim that takes it (`node/NAME`, `nodeclaim/NAME`).
    pub target: Option<String>,
    /// The new node's NodePool, cheapest instance type and price.
    pub node_pool: Option<String>,
    pub instance_type: Option<String>,
    pub price_per_hour: Option<f64>,
    /// Why nothing takes it: one line per NodePool, plus pod-level problems.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Bound to a node.
    Scheduled,
    /// A node that exists can take it: kube-scheduler binds it.
    FitsExistingNode,
    /// A NodeClaim being launched can take it.
    FitsNodeClaimInFlight,
    /// The provisioner would launch a new node for it.
    NewNode,
    /// Nothing can take it.
    Unschedulable,
}

/// One existing node's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFit {
    pub name: String,
    /// `Node`, or `NodeClaim` for one still launching.
    pub kind: String,
    pub fits: bool,
    pub reason: Option<String>,
}

/// One NodePool's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolFit {
    pub name: String,
    /// Whether the provisioner uses the NodePool now.
    pub considered: bool,
    pub fits: bool,
    pub reason: Option<String>,
    pub instance_type: Option<String>,
    pub price_per_hour: Option<f64>,
}

/// Explains pod `namespace/name` at `now`. Pure.
pub fn explain(
    cluster: &Cluster,
    types: &PoolTypes,
    reference: &str,
    now: Timestamp,
) -> Result<PodExplanation, ExplainError> {
    let (namespace, name) = reference
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| ExplainError::BadName(format!("pod {reference:?}: expected NAMESPACE/NAME")))?;
    let pod = cluster
        .pods
        .iter()
        .find(|p| p.namespace().as_deref() == Some(namespace) && p.name_any() == name)
        .ok_or_else(|| ExplainError::NotFound {
            kind: "pod",
            name: reference.to_owned(),
        })?;
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    let mut explanation = PodExplanation {
        pod: reference.to_owned(),
        at: now.to_string(),
        phase: pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default(),
        node: node.clone(),
        pod_scheduled: pod_scheduled(pod),
        provisioner: Provisioner {
            acts: is_provisionable(pod),
            why_not: (!is_provisionable(pod)).then(|| why_not_provisioned(pod)),
        },
        verdict: Verdict {
            outcome: Outcome::Scheduled,
            message: String::new(),
            target: None,
            node_pool: None,
            instance_type: None,
            price_per_hour: None,
            reasons: Vec::new(),
        },
        existing_nodes: Vec::new(),
        node_pools: Vec::new(),
        events: cluster.events_about(pod.as_ref()),
    };
    if let Some(node) = node {
        explanation.verdict.message = if is_leaving(cluster, &node) {
            format!(
                "bound to node {node}, which is being deleted: the provisioner plans a place for it elsewhere"
            )
        } else {
            format!("bound to node {node}")
        };
        explanation.verdict.target = Some(format!("node/{node}"));
        return Ok(explanation);
    }
    let snapshot = snapshot::assemble(
        &cluster.snapshot_world(),
        types.usable.clone(),
        types.skipped.clone(),
    );
    let mut base = snapshot.problem;
    base.pods = vec![snapshot::unbound(pod)];
    base.volumes = snapshot::volumes_of(&cluster.snapshot_world(), std::slice::from_ref(pod));
    explanation.verdict = whole_cluster(&base, &snapshot.targets);
    explanation.existing_nodes = base
        .existing_nodes
        .iter()
        .map(|node| node_alone(&base, node, &snapshot.targets))
        .collect();
    explanation.node_pools = base
        .nodepools
        .iter()
        .map(|pool| pool_alone(&base, pool))
        .chain(types.skipped.iter().map(|s| PoolFit {
            name: s.nodepool.clone(),
            considered: false,
            fits: false,
            reason: Some(format!("not considered: {}", s.reason)),
            instance_type: None,
            price_per_hour: None,
        }))
        .collect();
    if !types.skipped.is_empty() && explanation.verdict.outcome == Outcome::Unschedulable {
        let skipped: Vec<String> = types
            .skipped
            .iter()
            .map(|s| format!("{} ({})", s.nodepool, s.reason))
            .collect();
        explanation
            .verdict
            .reasons
            .push(format!("nodepools not considered: {}", skipped.join(", ")));
    }
    Ok(explanation)
}

/// Whether the node, or the NodeClaim behind it, is being deleted.
fn is_leaving(cluster: &Cluster, name: &str) -> bool {
    let Some(node) = cluster.nodes.iter().find(|n| n.name_any() == name) else {
        return false;
    };
    let provider_id = node.spec.as_ref().and_then(|s| s.provider_id.as_deref());
    node.metadata.deletion_timestamp.is_some()
        || cluster.claims.iter().any(|c| {
            c.metadata.deletion_timestamp.is_some()
                && provider_id.is_some()
                && c.status.as_ref().and_then(|s| s.provider_id.as_deref()) == provider_id
        })
}

fn pod_scheduled(pod: &Pod) -> Option<PodScheduled> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| PodScheduled {
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
}

/// Why the provisioner leaves a pod alone, in the order its rule checks.
fn why_not_provisioned(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    if spec
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
    {
        return "it is bound to a node".to_owned();
    }
    if spec
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
    {
        return "it has scheduling gates".to_owned();
    }
    if is_daemon_set_pod(pod) {
        return "it is a DaemonSet pod".to_owned();
    }
    if status
        .and_then(|s| s.nominated_node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
    {
        return "kube-scheduler nominated a node for it (preemption)".to_owned();
    }
    let marked = pod_scheduled(pod)
        .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"));
    if !marked {
        return "kube-scheduler has not marked it PodScheduled=False (Unschedulable) yet".to_owned();
    }
    "it is terminating or finished, a mirror pod, or requires nodes Nodewright does not manage".to_owned()
}

/// The pod against the whole snapshot: what a provisioning round would do for it.
fn whole_cluster(base: &Problem, targets: &std::collections::HashMap<String, Target>) -> Verdict {
    let mut plan = nodewright_solver::solve(base);
    let mut verdict = Verdict {
        outcome: Outcome::Unschedulable,
        message: String::new(),
        target: None,
        node_pool: None,
        instance_type: None,
        price_per_hour: None,
        reasons: Vec::new(),
    };
    if let Some((_, node)) = plan.existing_placements.first() {
        let target = targets
            .get(node)
            .cloned()
            .unwrap_or_else(|| Target::Node(node.clone()));
        verdict.outcome = match target {
            Target::Node(_) => Outcome::FitsExistingNode,
            Target::NodeClaim(_) => Outcome::FitsNodeClaimInFlight,
        };
        verdict.message = match &target {
            Target::Node(name) => format!("node {name} can take it: kube-scheduler should bind it"),
            Target::NodeClaim(name) => format!("NodeClaim {name}, being launched, will take it"),
        };
        verdict.target = Some(target.to_string());
        return verdict;
    }
    let refused = limits::enforce(&mut plan.new_nodes, &base.nodepools);
    if let Some(new) = plan.new_nodes.first() {
        verdict.outcome = Outcome::NewNode;
        verdict.message = format!(
            "the provisioner would launch a node of nodepool {} (cheapest type that fits: {}, ${:.4}/h)",
            new.nodepool,
            new.instance_type,
            new.price.as_usd()
        );
        verdict.node_pool = Some(new.nodepool.clone());
        verdict.instance_type = Some(new.instance_type.clone());
        verdict.price_per_hour = Some(new.price.as_usd());
        return verdict;
    }
    Verdict {
        message: "no existing node can take it and no NodePool can launch one that does".to_owned(),
        reasons: refused
            .iter()
            .map(|r| format!("nodepool {}: {}", r.node.nodepool, r.reason))
            .chain(plan.unschedulable.iter().flat_map(|u| u.reasons.iter().cloned()))
            .collect(),
        ..verdict
    }
}

/// The pod against one existing node, no NodePool.
fn node_alone(
    base: &Problem,
    node: &ExistingNode,
    targets: &std::collections::HashMap<String, Target>,
) -> NodeFit {
    let problem = Problem {
        pods: base.pods.clone(),
        nodepools: Vec::new(),
        existing_nodes: vec![node.clone()],
        daemonset_pods: base.daemonset_pods.clone(),
        volumes: base.volumes.clone(),
        options: base.options.clone(),
    };
    let plan = nodewright_solver::solve(&problem);
    let kind = match targets.get(&node.name) {
        Some(Target::NodeClaim(_)) => "NodeClaim",
        _ => "Node",
    };
    let reason = plan.unschedulable.first().map(|u| {
        let message = u.message();
        // The solver words it as kube-scheduler does for the one node: keep the reason only.
        message
            .strip_prefix("0/1 nodes are available: 1 ")
            .map_or(message.clone(), str::to_owned)
    });
    NodeFit {
        name: node.name.clone(),
        kind: kind.to_owned(),
        fits: plan.existing_placements.len() == 1,
        reason,
    }
}

/// The pod against one NodePool, no existing node, within the NodePool's limits.
fn pool_alone(base: &Problem, pool: &PoolInput) -> PoolFit {
    let problem = Problem {
        pods: base.pods.clone(),
        nodepools: vec![pool.clone()],
        existing_nodes: Vec::new(),
        daemonset_pods: base.daemonset_pods.clone(),
        volumes: base.volumes.clone(),
        options: base.options.clone(),
    };
    let name = pool.nodepool.name_any();
    let mut plan = nodewright_solver::solve(&problem);
    let refused = limits::enforce(&mut plan.new_nodes, &problem.nodepools);
    let mut fit = PoolFit {
        name: name.clone(),
        considered: true,
        fits: false,
        reason: None,
        instance_type: None,
        price_per_hour: None,
    };
    if let Some(new) = plan.new_nodes.first() {
        fit.fits = true;
        fit.instance_type = Some(new.instance_type.clone());
        fit.price_per_hour = Some(new.price.as_usd());
        return fit;
    }
    let prefix = format!("nodepool {name}: ");
    let reasons: Vec<String> = refused
        .into_iter()
        .map(|r| r.reason)
        .chain(
            plan.unschedulable
                .iter()
                .flat_map(|u| u.reasons.iter())
                .map(|r| r.strip_prefix(&prefix).map_or_else(|| r.clone(), str::to_owned)),
        )
        .collect();
    fit.reason = Some(reasons.join("; "));
    fit
}

impl PodExplanation {
    /// The explanation for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Pod:   {}", self.pod);
        let _ = writeln!(out, "At:    {}", self.at);
        let _ = writeln!(out, "Phase: {}", self.phase);
        let _ = writeln!(out, "Node:  {}", self.node.as_deref().unwrap_or("-"));
        if let Some(c) = &self.pod_scheduled {
            let reason = c.reason.as_deref().map(|r| format!(" {r}")).unwrap_or_default();
            let message = c.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            let _ = writeln!(out, "PodScheduled: {}{reason}{message}", c.status);
        }
        match &self.provisioner.why_not {
            None => out.push_str("Provisioner: plans capacity for it\n"),
            Some(why) => {
                let _ = writeln!(out, "Provisioner: leaves it alone: {why}");
            }
        }
        let _ = writeln!(
            out,
            "Verdict: {:?}: {}",
            self.verdict.outcome, self.verdict.message
        );
        for reason in &self.verdict.reasons {
            let _ = writeln!(out, "  {reason}");
        }
        if !self.existing_nodes.is_empty() {
            out.push_str("Existing nodes:\n");
            for n in &self.existing_nodes {
                let answer = if n.fits {
                    "fits".to_owned()
                } else {
                    n.reason.clone().unwrap_or_default()
                };
                let _ = writeln!(out, "  {} {}: {answer}", n.kind, n.name);
            }
        }
        if !self.node_pools.is_empty() {
            out.push_str("NodePools:\n");
            for p in &self.node_pools {
                let answer = match (&p.instance_type, p.price_per_hour) {
                    (Some(t), Some(price)) if p.fits => format!("a new {t} node fits (${price:.4}/h)"),
                    _ => p.reason.clone().unwrap_or_default(),
                };
                let _ = writeln!(out, "  {}: {answer}", p.name);
            }
        }
        write_events(&mut out, &self.events);
        out
    }
}
