//! `explain node`: whether disruption would act on a node now, and if not, the blocker.
//!
//! The steps are the disruption pass's, on the listed cluster: the candidate rules
//! ([`candidates::evaluate`]), consolidateAfter, then emptiness (empty candidates in name order
//! within each NodePool's `Empty` budget) or, for a node with pods, the consolidation search over
//! every candidate of `WhenEmptyOrUnderutilized` and `Balanced` NodePools ([`consolidation::plan`]) within the
//! `Underutilized` budgets. A drifted node (not empty and due) is answered by the drift method
//! instead ([`drift::empty`], [`drift::search`] within the `Drifted` budgets), with pod-level
//! blockers left out for NodeClaims with a terminationGracePeriod as drift leaves them out.
//! CapacityBuffer chunks count as in the pass: emptiness keeps empty nodes holding their room
//! and consolidation simulates them as pods that need room. A pass runs
//! emptiness, then drift, then consolidation, each only when the one before found nothing;
//! explain answers each node by the method that applies to it. A NodePool in replacement backoff
//! (its annotations, [`disruption::backoff`]) keeps its nodes with reason `ReplacementBackoff`
//! and the time left.

use std::{
    collections::{BTreeSet, HashSet},
    fmt::Write as _,
};

use jiff::Timestamp;
use kube::ResourceExt;
use nodewright_api::{
    NodeClaim, conditions,
    nodepool::{ConsolidationPolicy, DisruptionReason},
};
use serde::Serialize;

use super::{Cluster, ConditionLine, EventLine, ExplainError, PoolTypes, write_events};
use crate::{
    disruption::{
        self,
        candidates::{self, Blocker, Candidate, Inputs},
        consolidation, drift,
    },
    provisioner::{pods::is_daemon_set_pod, snapshot},
    repair::{self, decide::NodeRepairStatus},
};

/// Settings that change disruption's answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The controller's `spot_to_spot_consolidation` setting.
    pub spot_to_spot_consolidation: bool,
}

/// Why a node is kept, or how it would be disrupted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeExplanation {
    pub node: String,
    pub node_claim: Option<String>,
    pub node_pool: Option<String>,
    /// The time the answer holds for (RFC 3339).
    pub at: String,
    /// Whether the node passes the candidate rules (do-not-disrupt, PDBs, initialized, ...).
    pub candidate: bool,
    pub decision: Decision,
    /// Every pod bound to the node.
    pub pods: Vec<PodOnNode>,
    /// The NodeClaim's `Consolidatable` condition as the controller last wrote it.
    pub consolidatable_condition: Option<ConditionLine>,
    /// Where an unhealthy node stands with node repair (the AWS provider's repair policies, as
    /// the controller applies them with the `NodeRepair` gate on); `None` while healthy.
    pub repair: Option<NodeRepairStatus>,
    /// Events about the Node and its NodeClaim, oldest first.
    pub events: Vec<EventLine>,
}

/// What disruption would do with the node now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub action: Action,
    /// Machine-readable: the blocker's reason (the `Consolidatable` condition's reason), or the
    /// disruption reason (`Empty`, `Underutilized`).
    pub reason: String,
    pub message: String,
    /// Until consolidateAfter elapses (`ConsolidateAfterNotElapsed` only).
    pub time_left: Option<String>,
    /// $/h the whole command saves (`Consolidate` only).
    pub savings_per_hour: Option<f64>,
    /// Other nodes removed by the same command.
    pub together_with: Vec<String>,
    /// Nodes launched for the removed nodes' pods (empty: other nodes take them).
    pub replacements: Vec<Replacement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    /// Disruption leaves the node alone now.
    Keep,
    /// Removed as an empty node.
    RemoveEmpty,
    /// Removed by consolidation.
    Consolidate,
    /// Replaced because its NodeClaim drifted.
    ReplaceDrifted,
    /// No NodeClaim owns the node: Nodewright never disrupts it.
    NotManaged,
}

/// A node a consolidation would launch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replacement {
    pub node_pool: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: String,
    pub price_per_hour: f64,
}

/// A pod bound to the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodOnNode {
    /// `namespace/name`.
    pub pod: String,
    /// Whether it would need a place elsewhere (not a DaemonSet, mirror, finished or
    /// terminating pod).
    pub moves: bool,
    pub daemon_set: bool,
}

impl Decision {
    fn keep(blocker: &Blocker, now: Timestamp) -> Self {
        let time_left = match blocker {
            Blocker::ConsolidateAfterNotElapsed(at) | Blocker::ReplacementBackoff(at) => {
                Some(format!("{:#}", at.duration_since(now)))
            }
            _ => None,
        };
        Self {
            action: Action::Keep,
            reason: blocker.reason().to_owned(),
            message: blocker.message(),
            time_left,
            savings_per_hour: None,
            together_with: Vec::new(),
            replacements: Vec::new(),
        }
    }

    fn act(action: Action, reason: DisruptionReason, message: String) -> Self {
        Self {
            action,
            reason: reason_name(reason).to_owned(),
            message,
            time_left: None,
            savings_per_hour: None,
            together_with: Vec::new(),
            replacements: Vec::new(),
        }
    }
}

fn reason_name(reason: DisruptionReason) -> &'static str {
    match reason {
        DisruptionReason::Empty => "Empty",
        DisruptionReason::Drifted => "Drifted",
        DisruptionReason::Underutilized => "Underutilized",
    }
}

/// Explains node `name` at `now`. Pure.
pub fn explain(
    cluster: &Cluster,
    types: &PoolTypes,
    name: &str,
    now: Timestamp,
    options: Options,
) -> Result<NodeExplanation, ExplainError> {
    let node = cluster
        .nodes
        .iter()
        .find(|n| n.name_any() == name)
        .ok_or_else(|| ExplainError::NotFound {
            kind: "node",
            name: name.to_owned(),
        })?;
    let provider_id = node.spec.as_ref().and_then(|s| s.provider_id.as_deref());
    let claim = provider_id.and_then(|id| {
        cluster
            .claims
            .iter()
            .find(|c| c.status.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(id))
    });
    let pods = cluster
        .pods
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name))
        .map(|p| PodOnNode {
            pod: candidates::pod_ref(p),
            moves: candidates::must_move(p),
            daemon_set: is_daemon_set_pod(p),
        })
        .collect();
    let mut events = cluster.events_about(node.as_ref());
    let (candidate, decision) = match claim {
        Some(claim) => {
            events.extend(cluster.events_about(claim.as_ref()));
            super::sort_events(&mut events);
            decide(cluster, types, claim, now, options)
        }
        None => (
            false,
            Decision {
                action: Action::NotManaged,
                reason: "NotManaged".to_owned(),
                message: "no NodeClaim has this node's providerID: Nodewright does not manage it".to_owned(),
                time_left: None,
                savings_per_hour: None,
                together_with: Vec::new(),
                replacements: Vec::new(),
            },
        ),
    };
    Ok(NodeExplanation {
        node: name.to_owned(),
        node_claim: claim.map(|c| c.name_any()),
        node_pool: claim
            .and_then(|c| c.nodepool_name())
            .or_else(|| {
                node.labels()
                    .get(nodewright_api::labels::NODE_POOL)
                    .map(String::as_str)
            })
            .map(str::to_owned),
        at: now.to_string(),
        candidate,
        decision,
        pods,
        consolidatable_condition: claim.and_then(|c| consolidatable_condition(c)),
        repair: repair::decide::status_of(
            &nodewright_cloudprovider::aws_repair_policies(),
            &cluster.nodes,
            &cluster.claims,
            name,
            now,
        ),
        events,
    })
}

fn consolidatable_condition(claim: &NodeClaim) -> Option<ConditionLine> {
    claim
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::nodeclaim::CONSOLIDATABLE)
        .map(ConditionLine::from_condition)
}

/// Whether the claim is a candidate, and what disruption does with it.
fn decide(
    cluster: &Cluster,
    types: &PoolTypes,
    claim: &NodeClaim,
    now: Timestamp,
    options: Options,
) -> (bool, Decision) {
    let inputs = Inputs {
        claims: &cluster.claims,
        nodes: &cluster.nodes,
        pods: &cluster.pods,
        pools: &cluster.pools,
        pdbs: &cluster.pdbs,
    };
    let evaluations = candidates::evaluate(&inputs, now);
    let name = claim.name_any();
    let Some(own) = evaluations.iter().find(|e| e.claim.name_any() == name) else {
        return (false, Decision::keep(&Blocker::NodeNotFound, now));
    };
    // Drift's candidates: pod-level blockers left out for NodeClaims with a
    // terminationGracePeriod, as the pass takes them.
    let drift_candidates = || -> Vec<&Candidate> {
        evaluations
            .iter()
            .filter_map(|e| e.for_reason(DisruptionReason::Drifted).ok())
            .collect()
    };
    let candidate = match &own.outcome {
        Ok(candidate) => candidate,
        Err(blocker) => {
            if let Ok(eventual) = own.for_reason(DisruptionReason::Drifted)
                && drift::drifted_at(eventual).is_some()
            {
                let mut decision = drifted(cluster, types, &drift_candidates(), eventual, now);
                let _ = write!(
                    decision.message,
                    " (drift ignores the pod-level blocker, the NodeClaim having spec.terminationGracePeriod: {})",
                    blocker.message()
                );
                return (true, decision);
            }
            let mut decision = Decision::keep(blocker, now);
            if is_drifted(claim)
                && own.eventual.is_none()
                && matches!(
                    blocker,
                    Blocker::PodDoNotDisrupt(_)
                        | Blocker::PdbBlocks { .. }
                        | Blocker::PdbTooFewDisruptions { .. }
                        | Blocker::MultiplePdbs(_)
                )
            {
                decision.message = format!(
                    "the NodeClaim drifted ({}), but it is kept: {} (drift would ignore this pod-level blocker if the NodeClaim had spec.terminationGracePeriod)",
                    drift_reason(claim),
                    decision.message
                );
            }
            return (false, decision);
        }
    };
    let empty_and_due = candidate.is_empty() && candidate.is_consolidatable(now);
    if drift::drifted_at(candidate).is_some() && !empty_and_due {
        return (true, drifted(cluster, types, &drift_candidates(), candidate, now));
    }
    let decision = match candidate.consolidatable_at {
        None => Decision::keep(&Blocker::ConsolidationDisabled, now),
        Some(at) if at > now => Decision::keep(&Blocker::ConsolidateAfterNotElapsed(at), now),
        Some(_) => {
            let all: Vec<&Candidate> = evaluations
                .iter()
                .filter_map(|e| e.outcome.as_ref().ok())
                .collect();
            if candidate.is_empty() {
                emptiness(cluster, types, &all, candidate, now)
            } else {
                consolidation(cluster, types, &all, candidate, now, options)
            }
        }
    };
    (true, decision)
}

/// The emptiness method, as the pass runs it ([`consolidation::emptiness`]): empty
/// consolidatable candidates in name order, each NodePool's `Empty` budget spent on the first
/// ones, except empty ones whose free room holds CapacityBuffer chunks.
fn emptiness(
    cluster: &Cluster,
    types: &PoolTypes,
    all: &[&Candidate],
    candidate: &Candidate,
    now: Timestamp,
) -> Decision {
    let own = candidate.name();
    let virtual_pods = cluster.buffer_pods();
    let buffer_room = if virtual_pods.is_empty() {
        BTreeSet::new()
    } else {
        let snapshot = snapshot::assemble(
            &cluster.snapshot_world(),
            types.usable.clone(),
            types.skipped.clone(),
        );
        crate::buffers::room::hosting_nodes(&snapshot.problem, virtual_pods)
    };
    let (all, holding) = disruption::without_buffer_room(all, &buffer_room);
    if let Some((_, blocker)) = holding.iter().find(|(name, _)| *name == own) {
        return Decision::keep(blocker, now);
    }
    let counts = disruption::pool_nodes(&cluster.claims, &cluster.nodes, &HashSet::new());
    let (chosen, held) = consolidation::emptiness(&all, &counts, now);
    if chosen.iter().any(|c| c.name() == own) {
        return Decision::act(
            Action::RemoveEmpty,
            DisruptionReason::Empty,
            "the node has no pod to move and consolidateAfter has elapsed: emptiness removes it".to_owned(),
        );
    }
    let blocker = held
        .into_iter()
        .find(|(name, _)| *name == own)
        .map_or(Blocker::BudgetExhausted("Empty"), |(_, b)| b);
    Decision::keep(&blocker, now)
}

/// The drift method, as the pass runs it: empty drifted candidates within the `Drifted` budgets
/// ([`drift::empty`]), else the first drifted candidate whose pods can all be placed
/// ([`drift::search`]), one command at a time.
fn drifted(
    cluster: &Cluster,
    types: &PoolTypes,
    all: &[&Candidate],
    candidate: &Candidate,
    now: Timestamp,
) -> Decision {
    let drifted: Vec<Candidate> = all
        .iter()
        .filter(|c| drift::drifted_at(c).is_some())
        .map(|c| (*c).clone())
        .collect();
    let counts = disruption::pool_nodes(&cluster.claims, &cluster.nodes, &HashSet::new());
    let mut budgets = drift::drifted_budgets(&cluster.pools, &counts, now);
    let mut outcome = drift::empty(&drifted, &mut budgets);
    if outcome.decision.is_none() && drifted.iter().any(|c| !c.is_empty()) {
        let snapshot = snapshot::assemble_moving(
            &cluster.snapshot_world(),
            types.usable.clone(),
            types.skipped.clone(),
            drifted.iter().flat_map(|c| &c.pods),
        );
        let searched = drift::search(&snapshot.problem, &drifted, &budgets);
        outcome.decision = searched.decision;
        outcome.refused.extend(searched.refused);
    }
    let own = candidate.name();
    let why = drift_reason(&candidate.claim);
    let index = drifted.iter().position(|c| c.name() == own);
    if let Some((chosen, replacements)) = &outcome.decision
        && index.is_some_and(|i| chosen.contains(&i))
    {
        let together_with = chosen
            .iter()
            .map(|i| drifted[*i].name())
            .filter(|name| *name != own)
            .collect();
        let replacements: Vec<Replacement> = replacements.iter().map(replacement).collect();
        let message = if replacements.is_empty() {
            format!("the NodeClaim drifted ({why}): its pods fit on the other nodes, so it is removed")
        } else {
            format!(
                "the NodeClaim drifted ({why}): {} new node(s) take its pods, then it is removed",
                replacements.len()
            )
        };
        return Decision {
            together_with,
            replacements,
            ..Decision::act(Action::ReplaceDrifted, DisruptionReason::Drifted, message)
        };
    }
    if let Some((_, blocker)) = outcome.refused.iter().find(|(i, _)| Some(*i) == index) {
        let mut decision = Decision::keep(blocker, now);
        decision.message = format!(
            "the NodeClaim drifted ({why}), but it is kept: {}",
            decision.message
        );
        return decision;
    }
    Decision {
        action: Action::Keep,
        reason: "DriftQueued".to_owned(),
        message: format!(
            "the NodeClaim drifted ({why}); another drifted node is replaced first (one command at a time, oldest drift first)"
        ),
        time_left: None,
        savings_per_hour: None,
        together_with: Vec::new(),
        replacements: Vec::new(),
    }
}

/// Whether the NodeClaim is `Drifted=True`.
fn is_drifted(claim: &NodeClaim) -> bool {
    claim.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == conditions::nodeclaim::DRIFTED && c.status == conditions::TRUE)
    })
}

/// The `Drifted` condition's reason (`AMIDrift`, `NodePoolDrifted`, ...).
fn drift_reason(claim: &NodeClaim) -> String {
    claim
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == conditions::nodeclaim::DRIFTED)
        })
        .map_or_else(|| "Drifted".to_owned(), |c| c.reason.clone())
}

fn replacement(r: &nodewright_solver::NodeClaimPlan) -> Replacement {
    Replacement {
        node_pool: r.nodepool.clone(),
        instance_type: r.instance_type.clone(),
        zone: r.zone.clone(),
        capacity_type: r.capacity_type.label().to_owned(),
        price_per_hour: r.price.as_usd(),
    }
}

/// The consolidation method: [`consolidation::plan`] over every non-empty consolidatable
/// candidate of `WhenEmptyOrUnderutilized` and `Balanced` NodePools.
fn consolidation(
    cluster: &Cluster,
    types: &PoolTypes,
    all: &[&Candidate],
    candidate: &Candidate,
    now: Timestamp,
    options: Options,
) -> Decision {
    if candidate.pool.spec.disruption.consolidation_policy == ConsolidationPolicy::WhenEmpty {
        return Decision::keep(&Blocker::PolicyWhenEmpty, now);
    }
    let snapshot = snapshot::assemble_moving(
        &cluster.snapshot_world(),
        types.usable.clone(),
        types.skipped.clone(),
        all.iter().flat_map(|c| &c.pods),
    );
    // Buffer chunks need room like pending pods, as in the pass.
    let problem = crate::buffers::room::with_virtual_pods(snapshot.problem, cluster.buffer_pods());
    let counts = disruption::pool_nodes(&cluster.claims, &cluster.nodes, &HashSet::new());
    let planned = consolidation::plan(&consolidation::Request {
        candidates: all,
        problem: &problem,
        budgets: consolidation::underutilized_budgets(&cluster.pools, &counts, now),
        now,
        allow_spot_to_spot: options.spot_to_spot_consolidation,
    });
    let own = candidate.name();
    if let Some(decision) = planned
        .chosen
        .filter(|d| d.candidates.iter().any(|c| c.name() == own))
    {
        let together_with = decision
            .candidates
            .iter()
            .map(Candidate::name)
            .filter(|name| *name != own)
            .collect();
        let replacements: Vec<Replacement> = decision.replacements.iter().map(replacement).collect();
        let message = if replacements.is_empty() {
            format!(
                "its pods fit on the other nodes: removing it saves ${:.4}/h",
                decision.savings.as_usd()
            )
        } else {
            format!(
                "{} cheaper node(s) take its pods: the command saves ${:.4}/h",
                replacements.len(),
                decision.savings.as_usd()
            )
        };
        return Decision {
            savings_per_hour: Some(decision.savings.as_usd()),
            together_with,
            replacements,
            ..Decision::act(Action::Consolidate, DisruptionReason::Underutilized, message)
        };
    }
    let blocker = planned
        .refused
        .into_iter()
        .find(|(name, _)| *name == own)
        .map_or(Blocker::NotCheaper, |(_, b)| b);
    Decision::keep(&blocker, now)
}

impl NodeExplanation {
    /// The explanation for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Node:      {}", self.node);
        let _ = writeln!(out, "NodeClaim: {}", self.node_claim.as_deref().unwrap_or("-"));
        let _ = writeln!(out, "NodePool:  {}", self.node_pool.as_deref().unwrap_or("-"));
        let _ = writeln!(out, "At:        {}", self.at);
        let _ = writeln!(out, "Candidate: {}", if self.candidate { "yes" } else { "no" });
        let d = &self.decision;
        let verb = match d.action {
            Action::Keep => "Kept",
            Action::RemoveEmpty => "Would be removed (empty)",
            Action::Consolidate => "Would be consolidated",
            Action::ReplaceDrifted => "Would be replaced (drifted)",
            Action::NotManaged => "Not managed",
        };
        let _ = writeln!(out, "{verb}: {} — {}", d.reason, d.message);
        if let Some(left) = &d.time_left {
            let _ = writeln!(out, "  time left: {left}");
        }
        if !d.together_with.is_empty() {
            let _ = writeln!(out, "  together with: {}", d.together_with.join(", "));
        }
        for r in &d.replacements {
            let _ = writeln!(
                out,
                "  replacement: {} {} {} {} (${:.4}/h)",
                r.node_pool, r.instance_type, r.capacity_type, r.zone, r.price_per_hour
            );
        }
        let moving = self.pods.iter().filter(|p| p.moves).count();
        let _ = writeln!(out, "Pods: {} bound, {moving} would move", self.pods.len());
        for pod in &self.pods {
            let note = if pod.moves {
                "moves"
            } else if pod.daemon_set {
                "stays (DaemonSet)"
            } else {
                "stays (finished, terminating or mirror)"
            };
            let _ = writeln!(out, "  {} ({note})", pod.pod);
        }
        match &self.consolidatable_condition {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "Consolidatable: {} {} (since {}){}",
                    c.status,
                    c.reason,
                    c.last_transition_time,
                    if c.message.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", c.message)
                    }
                );
            }
            None => out.push_str("Consolidatable: not written\n"),
        }
        if let Some(repair) = &self.repair {
            let _ = writeln!(
                out,
                "Repair (NodeRepair gate): {:?} {} — {}",
                repair.state,
                repair.condition.as_deref().unwrap_or("-"),
                repair.message
            );
        }
        write_events(&mut out, &self.events);
        out
    }
}
