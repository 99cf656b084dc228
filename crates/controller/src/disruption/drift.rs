//! Drift as a disruption method (Karpenter's `Drift`, reason `Drifted`): nodes whose NodeClaim
//! is `Drifted=True` ([`detection`] sets it) are replaced, within each NodePool's budget for
//! `Drifted` (scheduled windows included), after emptiness and before consolidation.
//!
//! - Drifted candidates are taken empty ones first, then oldest drift first (the `Drifted`
//!   condition's `lastTransitionTime`).
//! - **Empty** drifted candidates need no simulation: every one the budgets allow goes in one
//!   command.
//! - Otherwise the first non-empty candidate whose budget allows it and whose pods can all be
//!   placed — on the other nodes, or on new nodes of the NodePools — is one command, with the new
//!   nodes its pods need as replacements. There is no price test: a drifted node is replaced even
//!   when the replacement costs more. A candidate whose pods fit nowhere is skipped with
//!   [`Blocker::PodsNotReschedulable`], one with no budget left with [`Blocker::BudgetExhausted`].
//!
//! The command runs like any other (taint, launch and wait for replacements, re-validate, delete:
//! see the parent module). Why a drifted node is kept is published as a `DisruptionBlocked` event
//! on its NodeClaim when that reason changes.
//!
//! As in Karpenter, a NodeClaim with a `terminationGracePeriod` is a drift candidate even when
//! pod-level blockers (`do-not-disrupt` pods, PDBs refusing an eviction) hold it back from the
//! other methods ([`super::candidates::Evaluation::for_reason`]): termination deletes those pods
//! by the deadline. Its pods are simulated like any other's, so their room is kept.

pub mod detection;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use jiff::Timestamp;
use kube::ResourceExt;
use nodewright_api::{NodePool, conditions, nodepool::DisruptionReason};
use nodewright_catalog::Price;
use nodewright_solver::{NodeClaimPlan, Problem};

use super::{
    Command, Disruption, World, budgets,
    candidates::{Blocker, Candidate, pod_ref},
};
use crate::{events::reasons::DISRUPTION_BLOCKED, metrics, provisioner::snapshot};

/// What drift decided.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Indices into the drifted candidates to remove, and the new nodes their pods need.
    pub decision: Option<(Vec<usize>, Vec<NodeClaimPlan>)>,
    /// Drifted candidates left alone, by index, with why.
    pub refused: Vec<(usize, Blocker)>,
}

/// When the candidate's NodeClaim became `Drifted=True`; `None` when it is not drifted.
pub fn drifted_at(candidate: &Candidate) -> Option<Timestamp> {
    candidate
        .claim
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::nodeclaim::DRIFTED && c.status == conditions::TRUE)
        .map(|c| c.last_transition_time.0)
}

/// How many nodes of each NodePool drift may take now (reason `Drifted`, windows included).
/// `counts` are the budget counts per NodePool.
pub fn drifted_budgets<S: std::hash::BuildHasher>(
    pools: &[Arc<NodePool>],
    counts: &HashMap<String, budgets::PoolNodes, S>,
    now: Timestamp,
) -> BTreeMap<String, u64> {
    budgets::allowed_by_pool(pools, DisruptionReason::Drifted, counts, now)
}

/// Karpenter's drift order: empty first, then oldest drift first (then by name, so passes agree).
pub fn order(drifted: &[Candidate]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..drifted.len()).collect();
    order.sort_by_key(|i| {
        let candidate = &drifted[*i];
        (!candidate.is_empty(), drifted_at(candidate), candidate.name())
    });
    order
}

/// Every empty drifted candidate the budgets allow, decrementing `budgets` (NodePool → nodes
/// that may still be disrupted for reason Drifted). Pure.
pub fn empty(drifted: &[Candidate], budgets: &mut BTreeMap<String, u64>) -> Outcome {
    let mut outcome = Outcome::default();
    let mut chosen = Vec::new();
    for index in order(drifted) {
        let candidate = &drifted[index];
        if !candidate.is_empty() {
            continue;
        }
        match budgets.get_mut(&candidate.pool.name_any()) {
            Some(left) if *left > 0 => {
                *left -= 1;
                chosen.push(index);
            }
            _ => outcome.refused.push((index, Blocker::BudgetExhausted("Drifted"))),
        }
    }
    if !chosen.is_empty() {
        outcome.decision = Some((chosen, Vec::new()));
    }
    outcome
}

/// The first non-empty drifted candidate, in [`order`], that the budgets allow and whose pods
/// can all be placed in `base` (the cluster as it is) without its node; with the new nodes its
/// pods need. Pure.
pub fn search(base: &Problem, drifted: &[Candidate], budgets: &BTreeMap<String, u64>) -> Outcome {
    let mut outcome = Outcome::default();
    for index in order(drifted) {
        let candidate = &drifted[index];
        if candidate.is_empty() {
            continue;
        }
        if budgets.get(&candidate.pool.name_any()).copied().unwrap_or(0) == 0 {
            outcome.refused.push((index, Blocker::BudgetExhausted("Drifted")));
            continue;
        }
        match replacements_for(base, candidate) {
            Ok(replacements) => {
                outcome.decision = Some((vec![index], replacements));
                return outcome;
            }
            Err(blocker) => outcome.refused.push((index, blocker)),
        }
    }
    outcome
}

/// The new nodes the candidate's pods need when its node is gone, or the pods that fit nowhere.
fn replacements_for(base: &Problem, candidate: &Candidate) -> Result<Vec<NodeClaimPlan>, Blocker> {
    let name = candidate.name();
    let mut problem = base.clone();
    problem.existing_nodes.retain(|n| n.name != name);
    let first_moved = problem.pods.len();
    for pod in &candidate.pods {
        let mut pod = (**pod).clone();
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = None;
        }
        problem.pods.push(pod);
    }
    let plan = nodewright_solver::solve(&problem);
    let stranded: BTreeSet<String> = plan
        .unschedulable
        .iter()
        .filter(|u| u.pod >= first_moved)
        .map(|u| pod_ref(&problem.pods[u.pod]))
        .collect();
    if !stranded.is_empty() {
        return Err(Blocker::PodsNotReschedulable(
            stranded.into_iter().collect::<Vec<_>>().join(", "),
        ));
    }
    Ok(plan
        .new_nodes
        .into_iter()
        .filter(|n| n.pods.iter().any(|p| *p >= first_moved))
        .collect())
}

/// The reason last published for each drifted NodeClaim kept (events once per change).
#[derive(Debug, Default)]
pub(super) struct Told(HashMap<String, &'static str>);

impl Disruption {
    /// The drift method: a command for drifted candidates, or None.
    pub(super) async fn drift(&mut self, world: &World) -> Option<Command> {
        let _evaluation = metrics::disruption_evaluating(DisruptionReason::Drifted);
        let drifted: Vec<Candidate> = world
            .drift_candidates()
            .filter(|c| drifted_at(c).is_some())
            .cloned()
            .collect();
        metrics::disruption_eligible(DisruptionReason::Drifted, drifted.len());
        if drifted.is_empty() {
            self.drift_told.0.clear();
            return None;
        }
        let counts = world.pool_nodes(&HashSet::new());
        let mut budgets = drifted_budgets(&world.pools, &counts, world.now);
        let mut outcome = empty(&drifted, &mut budgets);
        if outcome.decision.is_none() && drifted.iter().any(|c| !c.is_empty()) {
            let problem = snapshot::take_moving(&self.ctx, drifted.iter().flat_map(|c| &c.pods))
                .await
                .problem;
            let candidates = drifted.clone();
            // The simulation is CPU-bound: off the async workers.
            match tokio::task::spawn_blocking(move || search(&problem, &candidates, &budgets)).await {
                Ok(searched) => {
                    outcome.decision = searched.decision;
                    outcome.refused.extend(searched.refused);
                }
                Err(error) => tracing::error!(%error, "the drift simulation failed"),
            }
        }
        self.tell_kept(&drifted, &outcome).await;
        let (remove, replacements) = outcome.decision?;
        Some(Command {
            reason: DisruptionReason::Drifted,
            candidates: remove.into_iter().map(|i| drifted[i].clone()).collect(),
            replacements,
            savings: Price::ZERO,
        })
    }

    /// A `DisruptionBlocked` event for each drifted NodeClaim kept, when its reason changed.
    async fn tell_kept(&mut self, drifted: &[Candidate], outcome: &Outcome) {
        let mut now_told = HashMap::new();
        for (index, blocker) in &outcome.refused {
            let candidate = &drifted[*index];
            let name = candidate.claim.name_any();
            if self.drift_told.0.get(&name) != Some(&blocker.reason()) {
                self.ctx
                    .events
                    .normal(
                        &*candidate.claim,
                        DISRUPTION_BLOCKED,
                        "Disrupting",
                        format!("drifted, but kept: {}", blocker.message()),
                    )
                    .await;
            }
            now_told.insert(name, blocker.reason());
        }
        self.drift_told.0 = now_told;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use nodewright_api::NodeClaim;
    use nodewright_solver::ExistingNode;
    use serde_json::json;

    use super::*;
    use crate::test_fixtures::{self as fixtures, arc, budgets, existing, instance_type, pod, pool};

    /// A drifted candidate whose drift began at minute `minute`.
    fn drifted(name: &str, pods: &[Pod], minute: u32) -> Candidate {
        Candidate {
            claim: arc::<NodeClaim>(json!({
                "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
                "metadata": { "name": name, "labels": { "karpenter.sh/nodepool": "default" } },
                "spec": { "requirements": [], "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } },
                "status": { "conditions": [{ "type": "Drifted", "status": "True", "reason": "AMIDrift", "message": "",
                    "lastTransitionTime": format!("2026-01-01T00:{minute:02}:00Z") }] }
            })),
            node: arc::<Node>(json!({ "metadata": { "name": name } })),
            pool: pool(),
            pods: pods.iter().cloned().map(Arc::new).collect(),
            consolidatable_at: None,
            pdbs: Vec::new(),
        }
    }

    /// The test pool's types with `nodes` running.
    fn problem(nodes: Vec<ExistingNode>) -> Problem {
        fixtures::problem(
            vec![instance_type("two", 2000, 0.1), instance_type("four", 4000, 0.2)],
            nodes,
        )
    }

    #[test]
    fn empty_first_then_oldest_drift_first() {
        let busy = [pod("p", "old", "1")];
        let candidates = [
            drifted("new", &busy, 30),
            drifted("old", &busy, 10),
            drifted("empty", &[], 50),
        ];
        assert_eq!(order(&candidates), [2, 1, 0]);
    }

    #[test]
    fn empty_drifted_nodes_go_together_within_the_budget() {
        let candidates = [drifted("a", &[], 1), drifted("b", &[], 2), drifted("c", &[], 3)];
        let mut left = budgets(2);
        let outcome = empty(&candidates, &mut left);
        assert_eq!(outcome.decision.unwrap().0, [0, 1]);
        assert_eq!(outcome.refused, [(2, Blocker::BudgetExhausted("Drifted"))]);
        assert_eq!(left["default"], 0);
    }

    #[test]
    fn a_drifted_node_is_replaced_when_its_pods_fit_nowhere_else_even_at_a_higher_price() {
        // The only node: its pod needs a new node, which costs as much as the old one.
        let pods = vec![pod("p", "old", "1500m")];
        let base = problem(vec![existing("old", 2000, pods.clone())]);
        let outcome = search(&base, &[drifted("old", &pods, 1)], &budgets(1));
        let (remove, replacements) = outcome.decision.unwrap();
        assert_eq!(remove, [0]);
        assert_eq!(replacements.len(), 1);
        assert_eq!(replacements[0].instance_type, "two");
    }

    #[test]
    fn pods_that_fit_on_another_node_need_no_replacement() {
        let pods = vec![pod("p", "old", "1")];
        let base = problem(vec![
            existing("old", 2000, pods.clone()),
            existing("other", 4000, Vec::new()),
        ]);
        let (remove, replacements) = search(&base, &[drifted("old", &pods, 1)], &budgets(1))
            .decision
            .unwrap();
        assert_eq!(remove, [0]);
        assert!(replacements.is_empty());
    }

    #[test]
    fn no_budget_or_no_room_keeps_the_node_with_the_reason() {
        let pods = vec![pod("p", "old", "1")];
        let base = problem(vec![existing("old", 2000, pods.clone())]);
        let outcome = search(&base, &[drifted("old", &pods, 1)], &budgets(0));
        assert!(outcome.decision.is_none());
        assert_eq!(outcome.refused, [(0, Blocker::BudgetExhausted("Drifted"))]);

        // A pod bigger than any instance type: no place for it anywhere.
        let huge = vec![pod("huge", "old", "3500m")];
        let base = problem(vec![existing("old", 4000, huge.clone())]);
        let mut tiny = base.clone();
        tiny.nodepools[0].instance_types.truncate(1);
        let outcome = search(&tiny, &[drifted("old", &huge, 1)], &budgets(1));
        assert!(outcome.decision.is_none());
        assert_eq!(
            outcome.refused,
            [(0, Blocker::PodsNotReschedulable("default/huge".into()))]
        );
    }
}
