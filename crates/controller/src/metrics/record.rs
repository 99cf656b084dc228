//! The hooks: one call where a controller does something worth counting. Each takes what the
//! controller has at hand and derives Karpenter's labels itself, so the controllers' code stays
//! about their work.

use std::{
    collections::{BTreeSet, HashMap},
    hash::BuildHasher,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use nodewright_api::{
    NodeClaim, NodePool, conditions,
    labels::{self, NODECLAIM_MIN_VALUES_RELAXED},
    nodepool::{ConsolidationPolicy, DisruptionReason},
};
use nodewright_catalog::Price;
use nodewright_solver::Plan;

use super::{
    families::{
        CodeLabels, ConsolidationTypeLabels, ControllerLabels, CreatedLabels, DecisionLabels,
        DisruptedLabels, EvaluationLabels, NodePoolLabels, NodePoolZoneLabels, PoolDecisionLabels,
        PoolReasonLabels, QueueLabels, ReasonLabels, TerminatedLabels, UnhealthyDisruptedLabels,
    },
    global,
};
use crate::disruption::{budgets, budgets::PoolNodes, candidates::Candidate};

/// The reasons budgets are reported for.
const DISRUPTION_REASONS: [DisruptionReason; 3] = [
    DisruptionReason::Empty,
    DisruptionReason::Drifted,
    DisruptionReason::Underutilized,
];

/// The `controller` label of the provisioner's scheduling metrics.
const PROVISIONER: &str = "provisioner";

// ---- provisioning ----

/// Times one scheduling simulation and shows its queue depth while it runs; the duration is
/// recorded and the depth drops to 0 when it is dropped.
#[derive(Debug)]
#[must_use = "the simulation is timed until this is dropped"]
pub struct SchedulingTimer {
    started: Instant,
    queue: QueueLabels,
}

impl Drop for SchedulingTimer {
    fn drop(&mut self) {
        let metrics = global();
        metrics
            .scheduling_duration
            .get_or_create(&ControllerLabels {
                controller: PROVISIONER.to_owned(),
            })
            .observe(self.started.elapsed().as_secs_f64());
        metrics.scheduler_queue_depth.get_or_create(&self.queue).set(0);
    }
}

/// A scheduling simulation of `pods` pods starts. Only the latest simulation's queue is kept
/// (Karpenter deletes each simulation's series when it ends; keeping the last one at 0 keeps
/// the family visible without growing).
pub fn scheduling_started(pods: usize) -> SchedulingTimer {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let queue = QueueLabels {
        controller: PROVISIONER.to_owned(),
        scheduling_id: NEXT_ID.fetch_add(1, Ordering::Relaxed).to_string(),
    };
    let depth = global().scheduler_queue_depth.clone();
    depth.clear();
    depth
        .get_or_create(&queue)
        .set(i64::try_from(pods).unwrap_or(i64::MAX));
    SchedulingTimer {
        started: Instant::now(),
        queue,
    }
}

/// The solver's answer for a provisioning batch: its lower bound and optimality gap. Only plans
/// that launch nodes are recorded; rounds that place every pod on existing or coming capacity
/// (most retries) have nothing to bound, and would hide the last real plan behind zeros.
pub fn solved(plan: &Plan) {
    if plan.new_nodes.is_empty() {
        return;
    }
    let metrics = global();
    metrics.solver_lower_bound.set(plan.lower_bound.as_usd());
    metrics.solver_optimality_gap.set(plan.optimality_gap());
}

/// A provisioning round finished leaving `unschedulable` pods nothing could take.
pub fn provisioning_round(unschedulable: usize) {
    global()
        .unschedulable_pods
        .get_or_create(&ControllerLabels {
            controller: PROVISIONER.to_owned(),
        })
        .set(i64::try_from(unschedulable).unwrap_or(i64::MAX));
}

/// A NodeClaim was created; `reason` is `provisioned` or the disruption reason it replaces for.
pub fn nodeclaim_created(claim: &NodeClaim, reason: &str) {
    let relaxed = claim
        .annotations()
        .get(NODECLAIM_MIN_VALUES_RELAXED)
        .is_some_and(|v| v == "true");
    global()
        .nodeclaims_created
        .get_or_create(&CreatedLabels {
            reason: reason.to_owned(),
            nodepool: label(claim.labels().get(labels::NODE_POOL)),
            min_values_relaxed: relaxed.to_string(),
        })
        .inc();
}

/// A disruption command created a replacement NodeClaim; returns its name.
pub fn replacement_created(claim: &NodeClaim, reason: DisruptionReason) -> String {
    nodeclaim_created(claim, reason_label(reason));
    claim.name_any()
}

// ---- lifecycle ----

/// A NodeClaim's Node registered.
pub fn node_registered(claim: &NodeClaim) {
    let claim_labels = claim.labels();
    global()
        .nodes_created
        .get_or_create(&NodePoolZoneLabels {
            nodepool: label(claim_labels.get(labels::NODE_POOL)),
            zone: label(claim_labels.get(labels::ZONE)),
        })
        .inc();
}

/// The lifecycle deleted a NodeClaim that could not launch or register; `reason` is
/// Karpenter's (`insufficient_capacity`, `launch_timeout`, `registration_timeout`). Nothing ran
/// on it, so its termination is forceful.
pub fn nodeclaim_failed(claim: &NodeClaim, reason: &str) {
    let claim_labels = claim.labels();
    global()
        .nodeclaims_disrupted
        .get_or_create(&DisruptedLabels {
            reason: reason.to_owned(),
            nodepool: label(claim_labels.get(labels::NODE_POOL)),
            capacity_type: label(claim_labels.get(labels::CAPACITY_TYPE)),
            consolidation_policy: String::new(),
            termination_mode: "forceful".to_owned(),
        })
        .inc();
}

// ---- termination ----

/// A NodeClaim's termination finalizer came off at `now`.
pub fn nodeclaim_terminated(claim: &NodeClaim, now: Timestamp) {
    let metrics = global();
    let claim_labels = claim.labels();
    let nodepool = label(claim_labels.get(labels::NODE_POOL));
    metrics
        .nodeclaims_terminated
        .get_or_create(&TerminatedLabels {
            nodepool: nodepool.clone(),
            capacity_type: label(claim_labels.get(labels::CAPACITY_TYPE)),
            zone: label(claim_labels.get(labels::ZONE)),
        })
        .inc();
    if let Some(deleted) = &claim.metadata.deletion_timestamp {
        metrics
            .nodeclaims_termination_duration
            .observe(seconds_between(deleted.0, now));
    }
    let terminating = claim.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == conditions::nodeclaim::INSTANCE_TERMINATING && c.status == conditions::TRUE)
    });
    if let Some(condition) = terminating {
        metrics
            .nodeclaims_instance_termination_duration
            .get_or_create(&NodePoolLabels { nodepool })
            .observe(seconds_between(condition.last_transition_time.0, now));
    }
}

/// A Node's termination finalizer came off at `now`.
pub fn node_terminated(node: &Node, now: Timestamp) {
    let metrics = global();
    let node_labels = node.labels();
    let nodepool = label(node_labels.get(labels::NODE_POOL));
    metrics
        .nodes_terminated
        .get_or_create(&NodePoolZoneLabels {
            nodepool: nodepool.clone(),
            zone: label(node_labels.get(labels::ZONE)),
        })
        .inc();
    if let Some(deleted) = &node.metadata.deletion_timestamp {
        metrics
            .nodes_termination_duration
            .observe(&[&nodepool], seconds_between(deleted.0, now));
    }
    if let Some(created) = &node.metadata.creation_timestamp {
        metrics
            .nodes_lifetime
            .get_or_create(&NodePoolLabels { nodepool })
            .observe(seconds_between(created.0, now));
    }
}

/// A draining Node has no pod left to evict.
pub fn node_drained(node: &Node) {
    global()
        .nodes_drained
        .get_or_create(&NodePoolLabels {
            nodepool: label(node.labels().get(labels::NODE_POOL)),
        })
        .inc();
}

/// Counts an eviction request by the HTTP status of its answer, and hands the answer back.
pub fn eviction_requested<T>(result: Result<T, kube::Error>) -> Result<T, kube::Error> {
    let code = match &result {
        Ok(_) => "200".to_owned(),
        Err(kube::Error::Api(status)) => status.code.to_string(),
        // No HTTP answer (connection, TLS, decoding): no code to report.
        Err(_) => "unknown".to_owned(),
    };
    global()
        .pods_eviction_requests
        .get_or_create(&CodeLabels { code })
        .inc();
    result
}

// ---- disruption ----

/// Times the evaluation of one disruption method until dropped.
#[derive(Debug)]
#[must_use = "the evaluation is timed until this is dropped"]
pub struct EvaluationTimer {
    started: Instant,
    labels: EvaluationLabels,
}

impl Drop for EvaluationTimer {
    fn drop(&mut self) {
        global()
            .disruption_evaluation_duration
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// A disruption method's evaluation starts. Consolidation searches every candidate set at once,
/// which Karpenter calls multi-node consolidation.
pub fn disruption_evaluating(reason: DisruptionReason) -> EvaluationTimer {
    let consolidation_type = match reason {
        DisruptionReason::Empty => "empty",
        DisruptionReason::Underutilized => "multi",
        DisruptionReason::Drifted => "",
    };
    EvaluationTimer {
        started: Instant::now(),
        labels: EvaluationLabels {
            reason: reason_label(reason).to_owned(),
            consolidation_type: consolidation_type.to_owned(),
        },
    }
}

/// `count` nodes were eligible for `reason` in the latest evaluation.
pub fn disruption_eligible(reason: DisruptionReason, count: usize) {
    global()
        .disruption_eligible_nodes
        .get_or_create(&ReasonLabels {
            reason: reason_label(reason).to_owned(),
        })
        .set(i64::try_from(count).unwrap_or(i64::MAX));
}

/// What each NodePool's budgets allow now, per reason, and how many of its nodes count against
/// them.
pub fn disruption_budgets<S: BuildHasher>(
    pools: &[Arc<NodePool>],
    counts: &HashMap<String, PoolNodes, S>,
    now: Timestamp,
) {
    // The NodePools reported last pass, so a deleted one's series go with it.
    static REPORTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let metrics = global();
    let current: BTreeSet<String> = pools.iter().map(|p| p.name_any()).collect();
    let mut reported = REPORTED.lock().unwrap_or_else(PoisonError::into_inner);
    for gone in reported.difference(&current) {
        for reason in DISRUPTION_REASONS {
            let labels = PoolReasonLabels {
                nodepool: gone.clone(),
                reason: reason_label(reason).to_owned(),
            };
            metrics.nodepools_allowed_disruptions.remove(&labels);
            metrics.nodepools_nodes_consuming_budgets.remove(&labels);
        }
    }
    *reported = current;
    drop(reported);
    for pool in pools {
        let name = pool.name_any();
        let nodes = counts.get(&name).copied().unwrap_or_default();
        for reason in DISRUPTION_REASONS {
            let labels = PoolReasonLabels {
                nodepool: name.clone(),
                reason: reason_label(reason).to_owned(),
            };
            let allowed = budgets::allowed(pool, reason, nodes, now);
            metrics
                .nodepools_allowed_disruptions
                .get_or_create(&labels)
                .set(i64::try_from(allowed).unwrap_or(i64::MAX));
            metrics
                .nodepools_nodes_consuming_budgets
                .get_or_create(&labels)
                .set(i64::try_from(nodes.disrupting).unwrap_or(i64::MAX));
        }
    }
}

/// A disruption command starts: `candidates` go for `reason`, with `replacements` new nodes.
pub fn disruption_decided(reason: DisruptionReason, candidates: &[Candidate], replacements: usize) {
    let metrics = global();
    let decision = decision_labels(reason, candidates.len(), replacements);
    metrics.disruption_decisions.get_or_create(&decision).inc();
    let mut pools: Vec<String> = candidates.iter().map(|c| c.pool.name_any()).collect();
    pools.sort();
    pools.dedup();
    for nodepool in pools {
        metrics
            .disruption_decisions_by_nodepool
            .get_or_create(&PoolDecisionLabels {
                nodepool,
                decision: decision.decision.clone(),
                reason: decision.reason.clone(),
                consolidation_type: decision.consolidation_type.clone(),
            })
            .inc();
    }
}

/// A NodeClaim was deleted because it outlived its `expireAfter` (Karpenter counts expiration as
/// a disruption reason, `expired`).
pub fn nodeclaim_expired(claim: &NodeClaim, pool: Option<&NodePool>) {
    let metrics = global();
    let termination_mode = if claim.spec.termination_grace_period.is_some() {
        "eventual"
    } else {
        "graceful"
    };
    let labels = DisruptedLabels {
        reason: "expired".to_owned(),
        nodepool: label(claim.labels().get(labels::NODE_POOL)),
        capacity_type: label(claim.labels().get(labels::CAPACITY_TYPE)),
        consolidation_policy: pool
            .map(|p| policy_label(p.spec.disruption.consolidation_policy))
            .unwrap_or_default()
            .to_owned(),
        termination_mode: termination_mode.to_owned(),
    };
    metrics.nodeclaims_disrupted.get_or_create(&labels).inc();
}

/// Node repair deleted a NodeClaim because its Node's `condition` stayed unhealthy too long:
/// a forceful disruption with reason `unhealthy`, also counted by condition and image.
pub fn nodeclaim_repaired(claim: &NodeClaim, pool: Option<&NodePool>, condition: &str) {
    let metrics = global();
    let nodepool = label(claim.labels().get(labels::NODE_POOL));
    let capacity_type = label(claim.labels().get(labels::CAPACITY_TYPE));
    let disrupted = DisruptedLabels {
        reason: "unhealthy".to_owned(),
        nodepool: nodepool.clone(),
        capacity_type: capacity_type.clone(),
        consolidation_policy: pool
            .map(|p| policy_label(p.spec.disruption.consolidation_policy))
            .unwrap_or_default()
            .to_owned(),
        termination_mode: "forceful".to_owned(),
    };
    metrics.nodeclaims_disrupted.get_or_create(&disrupted).inc();
    let unhealthy = UnhealthyDisruptedLabels {
        condition: snake_case(condition),
        nodepool,
        capacity_type,
        image_id: claim
            .status
            .as_ref()
            .and_then(|s| s.image_id.clone())
            .unwrap_or_default(),
        termination_mode: "forceful".to_owned(),
    };
    metrics
        .nodeclaims_unhealthy_disrupted
        .get_or_create(&unhealthy)
        .inc();
}

/// `NetworkingReady` → `networking_ready` (Karpenter's label values of condition types).
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A candidate's NodeClaim was deleted by a disruption command: the NodeClaim and its pods are
/// disrupted.
pub fn nodeclaim_disrupted(candidate: &Candidate, reason: DisruptionReason) {
    let metrics = global();
    let node_labels = candidate.node.labels();
    let termination_mode = if candidate.claim.spec.termination_grace_period.is_some() {
        "eventual"
    } else {
        "graceful"
    };
    let labels = DisruptedLabels {
        reason: reason_label(reason).to_owned(),
        nodepool: candidate.pool.name_any(),
        capacity_type: label(node_labels.get(labels::CAPACITY_TYPE)),
        consolidation_policy: policy_label(candidate.pool.spec.disruption.consolidation_policy).to_owned(),
        termination_mode: termination_mode.to_owned(),
    };
    metrics.nodeclaims_disrupted.get_or_create(&labels).inc();
    metrics
        .pods_disruption_initiated
        .get_or_create(&labels)
        .inc_by(u64::try_from(candidate.pods.len()).unwrap_or(u64::MAX));
}

/// The static NodePool controller deleted a NodeClaim with `pods` to move: reason
/// `overprovisioned` (above the replicas; forceful and not budgeted, as Karpenter's static
/// deprovisioning) or `drifted` (static drift, replaced one for one; eventual with a
/// terminationGracePeriod). A static NodePool's consolidation policy is ignored: its label is
/// empty.
pub fn static_nodeclaim_disrupted(claim: &NodeClaim, reason: StaticDisruption, pods: usize) {
    let metrics = global();
    let termination_mode = match reason {
        StaticDisruption::Overprovisioned => "forceful",
        StaticDisruption::Drifted if claim.spec.termination_grace_period.is_some() => "eventual",
        StaticDisruption::Drifted => "graceful",
    };
    let labels = DisruptedLabels {
        reason: reason.label().to_owned(),
        nodepool: label(claim.labels().get(labels::NODE_POOL)),
        capacity_type: label(claim.labels().get(labels::CAPACITY_TYPE)),
        consolidation_policy: String::new(),
        termination_mode: termination_mode.to_owned(),
    };
    metrics.nodeclaims_disrupted.get_or_create(&labels).inc();
    metrics
        .pods_disruption_initiated
        .get_or_create(&labels)
        .inc_by(u64::try_from(pods).unwrap_or(u64::MAX));
}

/// Why the static NodePool controller deletes a NodeClaim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaticDisruption {
    /// Above the NodePool's replicas.
    Overprovisioned,
    /// Drifted, its replacement initialized.
    Drifted,
}

impl StaticDisruption {
    /// Karpenter's `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Overprovisioned => "overprovisioned",
            Self::Drifted => "drifted",
        }
    }
}

/// A command was abandoned because re-validation found the cluster changed.
pub fn disruption_validation_failed(reason: DisruptionReason, candidates: usize) {
    let consolidation_type = decision_labels(reason, candidates, 0).consolidation_type;
    global()
        .disruption_failed_validations
        .get_or_create(&ConsolidationTypeLabels { consolidation_type })
        .inc();
}

/// A command was rolled back because its replacements did not initialize in time.
pub fn disruption_queue_failed(reason: DisruptionReason, candidates: usize, replacements: usize) {
    global()
        .disruption_queue_failures
        .get_or_create(&decision_labels(reason, candidates, replacements))
        .inc();
}

/// A NodePool backs off after a command's replacements did not initialize in time.
pub fn disruption_replacement_backoff(nodepool: &str) {
    global()
        .disruption_replacement_backoffs
        .get_or_create(&NodePoolLabels {
            nodepool: nodepool.to_owned(),
        })
        .inc();
}

/// The savings, in $/h, the latest disruption pass found and has not realised yet.
pub fn savings_backlog(savings: Price) {
    global().savings_backlog.set(savings.as_usd());
}

fn decision_labels(reason: DisruptionReason, candidates: usize, replacements: usize) -> DecisionLabels {
    let consolidation_type = match reason {
        DisruptionReason::Empty => "empty",
        DisruptionReason::Underutilized if candidates <= 1 => "single",
        DisruptionReason::Underutilized => "multi",
        DisruptionReason::Drifted => "",
    };
    DecisionLabels {
        decision: if replacements > 0 { "replace" } else { "delete" }.to_owned(),
        reason: reason_label(reason).to_owned(),
        consolidation_type: consolidation_type.to_owned(),
    }
}

/// Karpenter's `reason` label: the disruption reason in lower case.
pub fn reason_label(reason: DisruptionReason) -> &'static str {
    match reason {
        DisruptionReason::Empty => "empty",
        DisruptionReason::Drifted => "drifted",
        DisruptionReason::Underutilized => "underutilized",
    }
}

fn policy_label(policy: ConsolidationPolicy) -> &'static str {
    match policy {
        ConsolidationPolicy::WhenEmpty => "WhenEmpty",
        ConsolidationPolicy::WhenEmptyOrUnderutilized => "WhenEmptyOrUnderutilized",
        ConsolidationPolicy::Balanced => "Balanced",
    }
}

fn label(value: Option<&String>) -> String {
    value.cloned().unwrap_or_default()
}

fn seconds_between(start: Timestamp, end: Timestamp) -> f64 {
    end.duration_since(start).as_secs_f64().max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_labelled_as_karpenter_labels_them() {
        let replace = decision_labels(DisruptionReason::Underutilized, 1, 1);
        assert_eq!(
            (
                replace.decision.as_str(),
                replace.reason.as_str(),
                replace.consolidation_type.as_str()
            ),
            ("replace", "underutilized", "single")
        );
        let multi = decision_labels(DisruptionReason::Underutilized, 3, 0);
        assert_eq!(
            (multi.decision.as_str(), multi.consolidation_type.as_str()),
            ("delete", "multi")
        );
        let empty = decision_labels(DisruptionReason::Empty, 2, 0);
        assert_eq!(
            (empty.reason.as_str(), empty.consolidation_type.as_str()),
            ("empty", "empty")
        );
        assert_eq!(
            decision_labels(DisruptionReason::Drifted, 1, 1).consolidation_type,
            ""
        );
    }

    #[test]
    fn eviction_answers_are_counted_by_status_code() {
        let refused = kube::Error::Api(Box::new(
            kube::core::Status::failure("Cannot evict pod", "TooManyRequests").with_code(429),
        ));
        let before = global()
            .pods_eviction_requests
            .get_or_create(&CodeLabels {
                code: "429".to_owned(),
            })
            .get();
        assert!(eviction_requested::<()>(Err(refused)).is_err());
        let after = global()
            .pods_eviction_requests
            .get_or_create(&CodeLabels {
                code: "429".to_owned(),
            })
            .get();
        assert_eq!(after, before + 1);
    }

    #[test]
    fn condition_types_are_snake_cased_as_karpenter_labels_them() {
        assert_eq!(snake_case("NetworkingReady"), "networking_ready");
        assert_eq!(snake_case("Ready"), "ready");
        assert_eq!(
            snake_case("AcceleratedHardwareReady"),
            "accelerated_hardware_ready"
        );
    }
}
