//! Which NodeClaims disruption may act on, and for each one it may not, a machine-readable
//! reason (Karpenter's `NewCandidate` and `ValidatePodsDisruptable`). Pure.
//!
//! A candidate has a Node and is Initialized, is not being deleted or already tainted
//! `karpenter.sh/disrupted`, belongs to a NodePool that exists and is not in replacement
//! backoff ([`super::backoff`]: replacements for its nodes recently failed to initialize), is
//! not annotated `karpenter.sh/do-not-disrupt: "true"`, runs no pod with an active
//! `do-not-disrupt` ("true" or a duration not yet elapsed since the pod started), and runs no pod a PodDisruptionBudget
//! would refuse to evict (covered by a PDB with `disruptionsAllowed` 0, or by more than one).
//!
//! **PDBs over the whole drain.** Stricter than Karpenter, which checks each pod alone: a node
//! whose pods one PDB covers more often than the PDB allows disruptions is not a candidate
//! (draining it would exceed the PDB), and each candidate carries its evictions per PDB
//! ([`Candidate::pdbs`]) so a plan removing several nodes keeps their sum within the allowance.
//! The cost: a node running, say, two replicas of a Deployment whose PDB allows one disruption
//! waits until the replicas spread out (Karpenter would drain it, one eviction at a time).
//!
//! **Nominated nodes.** Karpenter skips nodes a provisioning round expects pods to land on.
//! Nodewright's provisioner nominates through events only, so the rule here is time-based and
//! honest about it: a node is treated as nominated for [`NOMINATION_WINDOW`] after it was
//! initialized and after every pod event on it (a pod bound or gone) — Karpenter's nomination
//! period (twice the 10 s batch maximum) — since a provisioning round that placed pods on it
//! acts within that time.
//!
//! **Drift with a terminationGracePeriod** (Karpenter's exception for the eventual class): when
//! only pod-level blockers refuse a node (`do-not-disrupt` pods, PDBs that would refuse an
//! eviction) and its NodeClaim has `spec.terminationGracePeriod`, the node is still a candidate
//! for drift ([`Evaluation::eventual`]): termination deletes such pods by the deadline anyway
//! (each at the deadline minus its own grace period). Node-level blockers (the node's
//! `do-not-disrupt`, nomination, ...) and budgets still hold; consolidation and emptiness keep
//! every blocker.
//!
//! Whether a candidate's pods can be rescheduled anywhere is the simulation's question
//! ([`super::consolidation`]); its answer is reported the same way.

use std::{collections::BTreeMap, sync::Arc};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{
    core::v1::{Node, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::ResourceExt;
use nodewright_api::{NodeClaim, NodePool, conditions, labels, nodepool::DisruptionReason};
use nodewright_solver::pod::Selector;

use crate::{provisioner::pods::is_daemon_set_pod, termination::drain};

/// How long after its initialization or a pod event a node counts as nominated.
pub const NOMINATION_WINDOW: SignedDuration = SignedDuration::from_secs(20);

/// Why a NodeClaim is not a disruption candidate. [`Blocker::reason`] is the machine-readable
/// form written to the `Consolidatable` condition and events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    NotInitialized,
    NodeNotFound,
    Deleting,
    NodePoolNotFound(String),
    /// The NodePool is static (`spec.replicas`): its node count is its own controller's
    /// (`crate::static_pools`, which also replaces drifted ones), so no disruption method
    /// removes or replaces its nodes.
    StaticNodePool(String),
    NominatedRecently,
    NodeDoNotDisrupt,
    PodDoNotDisrupt(String),
    PdbBlocks {
        pod: String,
        pdb: String,
    },
    /// The node runs more pods a PDB covers than the PDB allows disruptions.
    PdbTooFewDisruptions {
        pdb: String,
        pods: u32,
        allowed: u32,
    },
    MultiplePdbs(String),
    ConsolidationDisabled,
    ConsolidateAfterNotElapsed(Timestamp),
    /// From the simulation: these pods fit nowhere else.
    PodsNotReschedulable(String),
    /// From the simulation: no cheaper arrangement without this node was found.
    NotCheaper,
    /// From the simulation: the only cheaper arrangement replaces spot with spot.
    SpotToSpotDisabled,
    /// The node's price is unknown, so it can only be removed when empty.
    PriceUnknown,
    /// The NodePool's policy does not consolidate underutilized nodes.
    PolicyWhenEmpty,
    /// The NodePool's policy is Balanced and the move's savings do not outweigh its disruption
    /// (the score, savings share over disruption share, is below 1/k).
    SavingsBelowDisruption(String),
    /// With the nodes already chosen, evicting this node's pods would take a
    /// PodDisruptionBudget past its allowed disruptions.
    PdbAllowanceUsed(String),
    /// The NodePool's disruption budget for this reason is used up.
    BudgetExhausted(&'static str),
    /// The node is empty but its free room holds CapacityBuffer chunks ([`crate::buffers`]).
    HoldsBufferRoom,
    /// Replacements for the NodePool's nodes did not initialize in time; disruption waits until
    /// this time before trying again ([`super::backoff`]).
    ReplacementBackoff(Timestamp),
}

impl Blocker {
    /// The condition and event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotInitialized => "NotInitialized",
            Self::NodeNotFound => "NodeNotFound",
            Self::Deleting => "Deleting",
            Self::NodePoolNotFound(_) => "NodePoolNotFound",
            Self::StaticNodePool(_) => "StaticNodePool",
            Self::NominatedRecently => "Nominated",
            Self::NodeDoNotDisrupt => "NodeDoNotDisrupt",
            Self::PodDoNotDisrupt(_) => "PodDoNotDisrupt",
            Self::PdbBlocks { .. } | Self::PdbTooFewDisruptions { .. } => "PodDisruptionBudgetBlocks",
            Self::MultiplePdbs(_) => "MultiplePodDisruptionBudgets",
            Self::ConsolidationDisabled => "ConsolidationDisabled",
            Self::ConsolidateAfterNotElapsed(_) => "ConsolidateAfterNotElapsed",
            Self::PodsNotReschedulable(_) => "PodsNotReschedulable",
            Self::NotCheaper => "NotCheaper",
            Self::SpotToSpotDisabled => "SpotToSpotConsolidationDisabled",
            Self::PriceUnknown => "PriceUnknown",
            Self::PolicyWhenEmpty => "ConsolidationPolicyWhenEmpty",
            Self::SavingsBelowDisruption(_) => "SavingsBelowDisruption",
            Self::PdbAllowanceUsed(_) => "PodDisruptionBudgetAllowanceUsed",
            Self::BudgetExhausted(_) => "DisruptionBudgetExhausted",
            Self::HoldsBufferRoom => "CapacityBufferRoom",
            Self::ReplacementBackoff(_) => "ReplacementBackoff",
        }
    }

    /// A sentence for people.
    pub fn message(&self) -> String {
        match self {
            Self::NotInitialized => "the node is not initialized".to_owned(),
            Self::NodeNotFound => "no Node has registered for the NodeClaim".to_owned(),
            Self::Deleting => "the node is already being deleted or disrupted".to_owned(),
            Self::NodePoolNotFound(pool) => format!("NodePool {pool:?} not found"),
            Self::StaticNodePool(pool) => format!(
                "static NodePool {pool:?} (spec.replicas): its nodes are never consolidated; its own controller keeps their count and replaces drifted ones one for one"
            ),
            Self::NominatedRecently => format!(
                "pods were bound or removed, or the node initialized, less than {}s ago",
                NOMINATION_WINDOW.as_secs()
            ),
            Self::NodeDoNotDisrupt => format!("the node is annotated {}=true", labels::DO_NOT_DISRUPT),
            Self::PodDoNotDisrupt(pod) => format!("pod {pod} has an active {}", labels::DO_NOT_DISRUPT),
            Self::PdbBlocks { pod, pdb } => {
                format!("PodDisruptionBudget {pdb} allows no disruption of pod {pod}")
            }
            Self::PdbTooFewDisruptions { pdb, pods, allowed } => format!(
                "PodDisruptionBudget {pdb} covers {pods} pods of the node but allows {allowed} disruptions"
            ),
            Self::MultiplePdbs(pod) => format!("pod {pod} is covered by more than one PodDisruptionBudget"),
            Self::ConsolidationDisabled => "the NodePool's consolidateAfter is Never".to_owned(),
            Self::ConsolidateAfterNotElapsed(at) => format!("consolidateAfter elapses at {at}"),
            Self::PodsNotReschedulable(pods) => format!("pods fit on no other node: {pods}"),
            Self::NotCheaper => "no cheaper arrangement of its pods was found".to_owned(),
            Self::SpotToSpotDisabled => {
                "replacing spot with spot is disabled (spot-to-spot consolidation)".to_owned()
            }
            Self::PriceUnknown => "the node's offering price is unknown".to_owned(),
            Self::PolicyWhenEmpty => {
                "the NodePool's consolidationPolicy is WhenEmpty: only empty nodes are removed".to_owned()
            }
            Self::SavingsBelowDisruption(score) => {
                format!("consolidationPolicy Balanced: the savings do not outweigh the disruption ({score})")
            }
            Self::PdbAllowanceUsed(pdb) => format!(
                "PodDisruptionBudget {pdb} allows no more evictions beside those of the nodes already chosen"
            ),
            Self::BudgetExhausted(reason) => {
                format!("the NodePool's disruption budget for reason {reason} allows no more nodes now")
            }
            Self::HoldsBufferRoom => "the node's free room holds CapacityBuffer chunks".to_owned(),
            Self::ReplacementBackoff(at) => format!(
                "replacements launched for the NodePool's nodes did not initialize in time; the next attempt is at {at}"
            ),
        }
    }
}

/// A node disruption may act on.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub claim: Arc<NodeClaim>,
    pub node: Arc<Node>,
    pub pool: Arc<NodePool>,
    /// Pods that would have to move: bound, not finished or terminating, not DaemonSet or
    /// mirror pods.
    pub pods: Vec<Arc<Pod>>,
    /// When consolidateAfter has elapsed (None: Never).
    pub consolidatable_at: Option<Timestamp>,
    /// The PodDisruptionBudgets its pods' evictions count against, with how many; a plan that
    /// removes several nodes adds these up per PDB and stays within `allowed`.
    pub pdbs: Vec<PdbEvictions>,
}

/// Evictions of one node's pods that one PodDisruptionBudget counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdbEvictions {
    /// `namespace/name`.
    pub pdb: String,
    pub evictions: u32,
    /// The PDB's `status.disruptionsAllowed`.
    pub allowed: u32,
}

impl Candidate {
    pub fn name(&self) -> String {
        self.node.name_any()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Whether consolidateAfter has elapsed at `now`.
    pub fn is_consolidatable(&self, now: Timestamp) -> bool {
        self.consolidatable_at.is_some_and(|at| at <= now)
    }
}

/// One NodeClaim's evaluation.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub claim: Arc<NodeClaim>,
    /// For every method (the graceful class): the candidate, or the first blocker.
    pub outcome: Result<Candidate, Blocker>,
    /// For drift alone (the eventual class), when `outcome` is refused only by pod-level
    /// blockers and the NodeClaim has `spec.terminationGracePeriod`: the candidate those
    /// blockers do not hold back (see the module docs). `None` otherwise.
    pub eventual: Option<Candidate>,
}

impl Evaluation {
    /// The outcome for a method disrupting for `reason`: drift takes [`Evaluation::eventual`]
    /// when there is one, every other method `outcome`.
    pub fn for_reason(&self, reason: DisruptionReason) -> Result<&Candidate, &Blocker> {
        match (reason, &self.eventual) {
            (DisruptionReason::Drifted, Some(candidate)) => Ok(candidate),
            _ => self.outcome.as_ref(),
        }
    }
}

/// What candidates are computed from.
#[derive(Debug, Default)]
pub struct Inputs<'a> {
    pub claims: &'a [Arc<NodeClaim>],
    pub nodes: &'a [Arc<Node>],
    pub pods: &'a [Arc<Pod>],
    pub pools: &'a [Arc<NodePool>],
    pub pdbs: &'a [Arc<PodDisruptionBudget>],
}

/// Evaluates every NodeClaim at `now`.
pub fn evaluate(inputs: &Inputs<'_>, now: Timestamp) -> Vec<Evaluation> {
    let pdbs_read: Vec<PdbSelector<'_>> = inputs.pdbs.iter().map(PdbSelector::new).collect();
    let node_by_provider: BTreeMap<&str, &Arc<Node>> = inputs
        .nodes
        .iter()
        .filter_map(|n| Some((n.spec.as_ref()?.provider_id.as_deref()?, n)))
        .collect();
    let mut pods_by_node: BTreeMap<&str, Vec<&Arc<Pod>>> = BTreeMap::new();
    for pod in inputs.pods {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            pods_by_node.entry(node).or_default().push(pod);
        }
    }
    inputs
        .claims
        .iter()
        .map(|claim| {
            let node = claim
                .status
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .and_then(|id| node_by_provider.get(id).copied());
            let pods = node
                .and_then(|n| pods_by_node.get(n.name_any().as_str()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let (outcome, eventual) = evaluate_one(claim, node, pods, inputs.pools, &pdbs_read, now);
            Evaluation {
                claim: Arc::clone(claim),
                outcome,
                eventual,
            }
        })
        .collect()
}

/// The outcome for every method and, when only pod-level blockers refuse it and the NodeClaim
/// has a terminationGracePeriod, the candidate for drift.
fn evaluate_one(
    claim: &Arc<NodeClaim>,
    node: Option<&Arc<Node>>,
    pods: &[&Arc<Pod>],
    pools: &[Arc<NodePool>],
    pdbs_read: &[PdbSelector<'_>],
    now: Timestamp,
) -> (Result<Candidate, Blocker>, Option<Candidate>) {
    let refused = |blocker| (Err(blocker), None);
    let (node, pool, initialized_at) = match node_level(claim, node, pools, now) {
        Ok(found) => found,
        Err(blocker) => return refused(blocker),
    };
    let moving: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| must_move(p))
        .map(|p| Arc::clone(p))
        .collect();
    let pods_checked = check_pods(&moving, pdbs_read, now);
    if let Err(blocker) = &pods_checked
        && claim.spec.termination_grace_period.is_none()
    {
        return refused(blocker.clone());
    }
    let last_event = last_pod_event(claim).map_or(initialized_at, |at| at.max(initialized_at));
    if now < last_event.checked_add(NOMINATION_WINDOW).unwrap_or(last_event) {
        // A pod-level blocker stays the reason given: it outlasts the nomination.
        return refused(pods_checked.err().unwrap_or(Blocker::NominatedRecently));
    }
    let consolidatable_at = match pool.spec.disruption.consolidate_after.parse() {
        Ok(Some(after)) => SignedDuration::try_from(after)
            .ok()
            .and_then(|after| last_event.checked_add(after).ok()),
        Ok(None) | Err(_) => None,
    };
    let candidate = |pdbs| Candidate {
        claim: Arc::clone(claim),
        node: Arc::clone(node),
        pool: Arc::clone(pool),
        pods: moving.clone(),
        consolidatable_at,
        pdbs,
    };
    match pods_checked {
        Ok(pdbs) => (Ok(candidate(pdbs)), None),
        // Only a NodeClaim with a terminationGracePeriod gets here with a blocker: its
        // evictions are not counted against PDBs, since termination deletes what they refuse.
        Err(blocker) => (Err(blocker), Some(candidate(Vec::new()))),
    }
}

/// The node-level checks: the Node, its initialization time and its NodePool, or the blocker.
fn node_level<'a>(
    claim: &NodeClaim,
    node: Option<&'a Arc<Node>>,
    pools: &'a [Arc<NodePool>],
    now: Timestamp,
) -> Result<(&'a Arc<Node>, &'a Arc<NodePool>, Timestamp), Blocker> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(Blocker::Deleting);
    }
    let node = node.ok_or(Blocker::NodeNotFound)?;
    if node.metadata.deletion_timestamp.is_some() || is_tainted_disrupted(node) {
        return Err(Blocker::Deleting);
    }
    let initialized_at = initialized_at(claim).ok_or(Blocker::NotInitialized)?;
    let pool_name = claim.nodepool_name().unwrap_or_default().to_owned();
    let pool = pools
        .iter()
        .find(|p| p.name_any() == pool_name)
        .ok_or_else(|| Blocker::NodePoolNotFound(pool_name.clone()))?;
    if pool.is_static() {
        return Err(Blocker::StaticNodePool(pool_name));
    }
    if let Some(until) = super::backoff::held_until(pool, now) {
        return Err(Blocker::ReplacementBackoff(until));
    }
    if node.annotations().get(labels::DO_NOT_DISRUPT).map(String::as_str) == Some("true") {
        return Err(Blocker::NodeDoNotDisrupt);
    }
    Ok((node, pool, initialized_at))
}

/// The pod-level checks: the evictions per PDB draining the node takes, or the blocker.
fn check_pods(
    moving: &[Arc<Pod>],
    pdbs_read: &[PdbSelector<'_>],
    now: Timestamp,
) -> Result<Vec<PdbEvictions>, Blocker> {
    let mut pdbs: Vec<PdbEvictions> = Vec::new();
    for pod in moving {
        if drain::has_active_do_not_disrupt(pod, now) {
            return Err(Blocker::PodDoNotDisrupt(pod_ref(pod)));
        }
        if let Some(counted) = check_pdbs(pod, pdbs_read)? {
            match pdbs.iter_mut().find(|p| p.pdb == counted.pdb) {
                Some(entry) => entry.evictions += 1,
                None => pdbs.push(counted),
            }
        }
    }
    // The node's own pods together: one node whose pods a PDB covers more often than it allows
    // disruptions would break it when drained.
    if let Some(over) = pdbs.iter().find(|p| p.evictions > p.allowed) {
        return Err(Blocker::PdbTooFewDisruptions {
            pdb: over.pdb.clone(),
            pods: over.evictions,
            allowed: over.allowed,
        });
    }
    Ok(pdbs)
}

/// Pods that leave with the node and need a place elsewhere.
pub fn must_move(pod: &Pod) -> bool {
    !drain::is_terminal(pod)
        && !drain::is_terminating(pod)
        && !drain::is_mirror(pod)
        && !is_daemon_set_pod(pod)
}

pub fn pod_ref(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

pub fn is_tainted_disrupted(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|taints| taints.iter().any(|t| labels::DISRUPTED_TAINT.matches(t)))
}

/// When the claim's `Initialized` condition became True.
pub fn initialized_at(claim: &NodeClaim) -> Option<Timestamp> {
    claim
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::nodeclaim::INITIALIZED && c.status == conditions::TRUE)
        .map(|c| c.last_transition_time.0)
}

fn last_pod_event(claim: &NodeClaim) -> Option<Timestamp> {
    claim.status.as_ref()?.last_pod_event_time.as_ref().map(|t| t.0)
}

/// A PDB with its selector read once per evaluation (not once per pod).
struct PdbSelector<'a> {
    namespace: String,
    selector: Selector,
    pdb: &'a Arc<PodDisruptionBudget>,
}

impl<'a> PdbSelector<'a> {
    fn new(pdb: &'a Arc<PodDisruptionBudget>) -> Self {
        Self {
            namespace: pdb.namespace().unwrap_or_default(),
            selector: Selector::from_k8s(pdb.spec.as_ref().and_then(|s| s.selector.as_ref())),
            pdb,
        }
    }
}

/// An eviction of `pod` would be refused: a covering PDB allows no disruption (unless the pod is
/// unhealthy and the PDB lets unhealthy pods go), or more than one PDB covers it (the Eviction
/// API refuses those). Otherwise the PDB the eviction counts against, if any (one eviction).
fn check_pdbs(pod: &Pod, pdbs: &[PdbSelector<'_>]) -> Result<Option<PdbEvictions>, Blocker> {
    let namespace = pod.namespace().unwrap_or_default();
    let pod_labels = pod.labels();
    let covering: Vec<&Arc<PodDisruptionBudget>> = pdbs
        .iter()
        .filter(|p| p.namespace == namespace && p.selector.matches(pod_labels))
        .map(|p| p.pdb)
        .collect();
    if covering.len() > 1 {
        return Err(Blocker::MultiplePdbs(pod_ref(pod)));
    }
    let Some(pdb) = covering.first() else {
        return Ok(None);
    };
    let allowed = pdb.status.as_ref().map_or(0, |s| s.disruptions_allowed);
    let unhealthy_may_go = pdb
        .spec
        .as_ref()
        .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref())
        == Some("AlwaysAllow")
        && !is_ready(pod);
    if unhealthy_may_go {
        // The Eviction API lets it go without counting it.
        return Ok(None);
    }
    if allowed <= 0 {
        return Err(Blocker::PdbBlocks {
            pod: pod_ref(pod),
            pdb: pdb.name_any(),
        });
    }
    Ok(Some(PdbEvictions {
        pdb: format!("{namespace}/{}", pdb.name_any()),
        evictions: 1,
        allowed: u32::try_from(allowed).unwrap_or(u32::MAX),
    }))
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn arc<T: serde::de::DeserializeOwned>(value: Value) -> Arc<T> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    const NOW: &str = "2026-01-01T01:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn claim(name: &str, extra_status: &Value) -> Arc<NodeClaim> {
        let mut status = json!({
            "providerID": format!("aws:///{name}"),
            "conditions": [{ "type": "Initialized", "status": "True", "reason": "Initialized", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z" }]
        });
        for (k, v) in extra_status.as_object().unwrap() {
            status[k] = v.clone();
        }
        arc(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": { "name": name, "labels": { "karpenter.sh/nodepool": "default" } },
            "spec": { "requirements": [], "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } },
            "status": status
        }))
    }

    fn node(name: &str, annotations: &Value, taints: &Value) -> Arc<Node> {
        arc(json!({
            "metadata": { "name": name, "annotations": annotations },
            "spec": { "providerID": format!("aws:///{name}"), "taints": taints }
        }))
    }

    fn pod(name: &str, node: &str, annotations: &Value) -> Arc<Pod> {
        arc(json!({
            "metadata": { "name": name, "namespace": "default", "labels": { "app": "web" }, "annotations": annotations },
            "spec": { "nodeName": node, "containers": [{ "name": "c" }] },
            "status": { "phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{ "type": "Ready", "status": "True" }] }
        }))
    }

    fn pool(consolidate_after: &str) -> Arc<NodePool> {
        arc(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": { "name": "default" },
            "spec": {
                "template": { "spec": { "requirements": [],
                    "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } } },
                "disruption": { "consolidateAfter": consolidate_after }
            }
        }))
    }

    fn pdb(name: &str, allowed: i32) -> Arc<PodDisruptionBudget> {
        arc(json!({
            "metadata": { "name": name, "namespace": "default" },
            "spec": { "selector": { "matchLabels": { "app": "web" } } },
            "status": { "disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1 }
        }))
    }

    struct World {
        claims: Vec<Arc<NodeClaim>>,
        nodes: Vec<Arc<Node>>,
        pods: Vec<Arc<Pod>>,
        pools: Vec<Arc<NodePool>>,
        pdbs: Vec<Arc<PodDisruptionBudget>>,
    }

    impl World {
        fn one_node() -> Self {
            Self {
                claims: vec![claim("a", &json!({}))],
                nodes: vec![node("a", &json!({}), &json!([]))],
                pods: vec![pod("web-1", "a", &json!({}))],
                pools: vec![pool("1m")],
                pdbs: Vec::new(),
            }
        }

        fn outcome(&self) -> Result<Candidate, Blocker> {
            let inputs = Inputs {
                claims: &self.claims,
                nodes: &self.nodes,
                pods: &self.pods,
                pools: &self.pools,
                pdbs: &self.pdbs,
            };
            evaluate(&inputs, now()).remove(0).outcome
        }
    }

    #[test]
    fn an_initialized_node_with_movable_pods_is_a_candidate() {
        let world = World::one_node();
        let candidate = world.outcome().unwrap();
        assert_eq!(candidate.pods.len(), 1);
        assert_eq!(
            candidate.consolidatable_at,
            Some("2026-01-01T00:01:00Z".parse().unwrap()),
            "consolidateAfter runs from initialization when no pod event is recorded"
        );
        assert!(candidate.is_consolidatable(now()));
    }

    #[test]
    fn a_node_pool_in_replacement_backoff_has_no_candidates_until_the_backoff_ends() {
        let held = |until: &str| {
            let mut pool = (*pool("0s")).clone();
            pool.metadata.annotations = Some(
                [
                    (
                        super::super::backoff::FAILURES_ANNOTATION.to_owned(),
                        "2".to_owned(),
                    ),
                    (
                        super::super::backoff::UNTIL_ANNOTATION.to_owned(),
                        until.to_owned(),
                    ),
                ]
                .into(),
            );
            vec![Arc::new(pool)]
        };
        let mut world = World::one_node();
        world.pools = held("2026-01-01T01:02:00Z");
        let blocker = world.outcome().unwrap_err();
        assert_eq!(
            blocker,
            Blocker::ReplacementBackoff("2026-01-01T01:02:00Z".parse().unwrap())
        );
        assert_eq!(blocker.reason(), "ReplacementBackoff");
        assert!(
            blocker.message().contains("2026-01-01T01:02:00Z"),
            "{}",
            blocker.message()
        );
        world.pools = held(NOW);
        assert!(world.outcome().is_ok(), "the backoff ended at {NOW}");
    }

    #[test]
    fn a_static_node_pools_nodes_are_never_candidates() {
        let mut world = World::one_node();
        world.pods.clear();
        let mut pool = (*pool("0s")).clone();
        pool.spec.replicas = Some(1);
        world.pools = vec![Arc::new(pool)];
        let blocker = world.outcome().unwrap_err();
        assert_eq!(blocker, Blocker::StaticNodePool("default".into()));
        assert_eq!(blocker.reason(), "StaticNodePool");
        assert!(
            blocker.message().contains("static NodePool"),
            "{}",
            blocker.message()
        );
    }

    #[test]
    fn each_blocker_has_its_reason() {
        let mut world = World::one_node();
        world.nodes = vec![node(
            "a",
            &json!({ "karpenter.sh/do-not-disrupt": "true" }),
            &json!([]),
        )];
        assert_eq!(world.outcome().unwrap_err(), Blocker::NodeDoNotDisrupt);

        let mut world = World::one_node();
        world.pods = vec![pod("web-1", "a", &json!({ "karpenter.sh/do-not-disrupt": "2h" }))];
        assert_eq!(
            world.outcome().unwrap_err(),
            Blocker::PodDoNotDisrupt("default/web-1".into()),
            "started 1h ago: 2h not elapsed"
        );
        world.pods = vec![pod(
            "web-1",
            "a",
            &json!({ "karpenter.sh/do-not-disrupt": "30m" }),
        )];
        assert!(world.outcome().is_ok(), "30m elapsed");

        let mut world = World::one_node();
        world.pdbs = vec![pdb("web", 0)];
        assert_eq!(world.outcome().unwrap_err().reason(), "PodDisruptionBudgetBlocks");
        world.pdbs = vec![pdb("web", 1)];
        assert!(world.outcome().is_ok());
        let candidate = world.outcome().unwrap();
        assert_eq!(
            candidate.pdbs,
            [PdbEvictions {
                pdb: "default/web".into(),
                evictions: 1,
                allowed: 1
            }]
        );
        world.pods.push(pod("web-2", "a", &json!({})));
        assert_eq!(
            world.outcome().unwrap_err(),
            Blocker::PdbTooFewDisruptions {
                pdb: "default/web".into(),
                pods: 2,
                allowed: 1
            },
            "draining the node evicts both"
        );
        world.pods.pop();
        world.pdbs = vec![pdb("web", 1), pdb("web-too", 1)];
        assert_eq!(
            world.outcome().unwrap_err().reason(),
            "MultiplePodDisruptionBudgets"
        );

        let mut world = World::one_node();
        world.nodes = vec![node(
            "a",
            &json!({}),
            &json!([{ "key": "karpenter.sh/disrupted", "effect": "NoSchedule" }]),
        )];
        assert_eq!(world.outcome().unwrap_err(), Blocker::Deleting);

        let mut world = World::one_node();
        world.nodes.clear();
        assert_eq!(world.outcome().unwrap_err(), Blocker::NodeNotFound);

        let mut world = World::one_node();
        world.claims = vec![claim("a", &json!({ "conditions": [] }))];
        assert_eq!(world.outcome().unwrap_err(), Blocker::NotInitialized);

        let mut world = World::one_node();
        world.pools.clear();
        assert_eq!(
            world.outcome().unwrap_err(),
            Blocker::NodePoolNotFound("default".into())
        );
    }

    /// `claim("a")` with `spec.terminationGracePeriod`.
    fn with_grace_period(claim: &Arc<NodeClaim>) -> Arc<NodeClaim> {
        let mut claim = (**claim).clone();
        claim.spec.termination_grace_period = Some(nodewright_api::duration::GoDuration::new("1h"));
        Arc::new(claim)
    }

    fn evaluation(world: &World) -> Evaluation {
        let inputs = Inputs {
            claims: &world.claims,
            nodes: &world.nodes,
            pods: &world.pods,
            pools: &world.pools,
            pdbs: &world.pdbs,
        };
        evaluate(&inputs, now()).remove(0)
    }

    #[test]
    fn drift_ignores_pod_level_blockers_only_with_a_termination_grace_period() {
        let mut world = World::one_node();
        world.pods = vec![pod(
            "web-1",
            "a",
            &json!({ "karpenter.sh/do-not-disrupt": "true" }),
        )];
        let without = evaluation(&world);
        assert!(without.eventual.is_none());
        assert_eq!(
            without.for_reason(DisruptionReason::Drifted).unwrap_err(),
            &Blocker::PodDoNotDisrupt("default/web-1".into()),
            "no grace period: drift waits like the other methods"
        );

        world.claims = vec![with_grace_period(&world.claims[0])];
        let with = evaluation(&world);
        assert_eq!(
            with.outcome.as_ref().unwrap_err(),
            &Blocker::PodDoNotDisrupt("default/web-1".into()),
            "consolidation and emptiness keep the blocker"
        );
        for reason in [DisruptionReason::Empty, DisruptionReason::Underutilized] {
            assert!(with.for_reason(reason).is_err());
        }
        let drift = with.for_reason(DisruptionReason::Drifted).unwrap();
        assert_eq!(drift.pods.len(), 1, "the pod still needs room elsewhere");

        // A PDB that refuses the eviction is a pod-level blocker too.
        world.pods = vec![pod("web-1", "a", &json!({}))];
        world.pdbs = vec![pdb("web", 0)];
        let with = evaluation(&world);
        assert_eq!(
            with.outcome.as_ref().unwrap_err().reason(),
            "PodDisruptionBudgetBlocks"
        );
        assert!(with.for_reason(DisruptionReason::Drifted).is_ok());

        // The node's own do-not-disrupt still holds, grace period or not.
        world.nodes = vec![node(
            "a",
            &json!({ "karpenter.sh/do-not-disrupt": "true" }),
            &json!([]),
        )];
        let with = evaluation(&world);
        assert!(with.eventual.is_none());
        assert_eq!(
            with.for_reason(DisruptionReason::Drifted).unwrap_err(),
            &Blocker::NodeDoNotDisrupt
        );

        // So does nomination: a recent pod event keeps the node for every method.
        world.nodes = vec![node("a", &json!({}), &json!([]))];
        let mut claim = (*claim("a", &json!({ "lastPodEventTime": "2026-01-01T00:59:50Z" }))).clone();
        claim.spec.termination_grace_period = Some(nodewright_api::duration::GoDuration::new("1h"));
        world.claims = vec![Arc::new(claim)];
        let with = evaluation(&world);
        assert!(with.eventual.is_none());
        assert_eq!(with.outcome.unwrap_err().reason(), "PodDisruptionBudgetBlocks");
    }

    #[test]
    fn a_recent_pod_event_makes_the_node_nominated_then_starts_consolidate_after() {
        let mut world = World::one_node();
        world.claims = vec![claim("a", &json!({ "lastPodEventTime": "2026-01-01T00:59:50Z" }))];
        assert_eq!(world.outcome().unwrap_err(), Blocker::NominatedRecently);
        world.claims = vec![claim("a", &json!({ "lastPodEventTime": "2026-01-01T00:59:30Z" }))];
        let candidate = world.outcome().unwrap();
        assert_eq!(
            candidate.consolidatable_at,
            Some("2026-01-01T01:00:30Z".parse().unwrap())
        );
        assert!(!candidate.is_consolidatable(now()));
    }

    #[test]
    fn daemon_set_and_finished_pods_do_not_count_and_never_disables_consolidation() {
        let mut world = World::one_node();
        let daemon = arc(json!({
            "metadata": { "name": "agent", "namespace": "kube-system",
                "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "u" }] },
            "spec": { "nodeName": "a", "containers": [{ "name": "c" }] },
            "status": { "phase": "Running" }
        }));
        let done = arc(json!({
            "metadata": { "name": "job", "namespace": "default" },
            "spec": { "nodeName": "a", "containers": [{ "name": "c" }] },
            "status": { "phase": "Succeeded" }
        }));
        world.pods = vec![daemon, done];
        world.pools = vec![pool("Never")];
        let candidate = world.outcome().unwrap();
        assert!(candidate.is_empty());
        assert_eq!(candidate.consolidatable_at, None);
    }
}
