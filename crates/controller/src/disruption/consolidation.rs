//! The consolidation search. Pure: the cluster as the solver's problem, the candidates with their
//! prices, and the budgets in; the set of nodes to remove (and the cheaper nodes to launch for
//! their pods) out, with a reason for each candidate left alone.
//!
//! Every candidate is considered — no cap, no timeout. Candidates are taken in order of price per
//! unit of disruption (Karpenter's savings ratio, price / (1 + pods to move)), and a set grows
//! greedily: a candidate joins when removing the set with it, rescheduling every pod of the set
//! (and the pending pods) onto the other nodes plus new nodes, saves strictly more than the set
//! without it. A set may be replaced by any number of cheaper nodes (N → M), not only one.
//!
//! Savings are measured against a baseline that removes nothing, so pending pods' own new nodes
//! cost the same on both sides and do not count against a removal.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use nodewright_catalog::{CapacityType, Price};
use nodewright_solver::{NodeClaimPlan, Plan, Problem};

use super::candidates::{Blocker, Candidate, pod_ref};

/// A candidate with what it costs.
#[derive(Debug, Clone)]
pub struct Priced {
    pub candidate: Candidate,
    pub price: Price,
    pub spot: bool,
}

impl Priced {
    /// Price per unit of disruption: higher first.
    fn savings_ratio(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // an ordering key only
        let disruption = 1.0 + self.candidate.pods.len() as f64;
        self.price.as_usd() / disruption
    }
}

/// What to do.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Indices into the candidates given to [`search`].
    pub remove: Vec<usize>,
    /// New nodes for the removed nodes' pods (empty: the other nodes take them).
    pub replacements: Vec<NodeClaimPlan>,
    /// $/h saved.
    pub savings: Price,
}

/// The search's answer.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub decision: Option<Decision>,
    /// Candidates left alone, by index, with why.
    pub refused: Vec<(usize, Blocker)>,
}

/// Searches for the removal with the largest savings. `base` is the cluster as it is (every node
/// existing, the pending pods to place); `budgets` is how many more nodes each NodePool may lose
/// for reason Underutilized, and is decremented for the decision's nodes.
pub fn search(
    base: &Problem,
    candidates: &[Priced],
    budgets: &mut BTreeMap<String, u64>,
    allow_spot_to_spot: bool,
) -> Outcome {
    let mut outcome = Outcome::default();
    if candidates.is_empty() {
        return outcome;
    }
    let baseline = nodewright_solver::solve(base);
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|a, b| {
        candidates[*b]
            .savings_ratio()
            .total_cmp(&candidates[*a].savings_ratio())
            .then_with(|| {
                candidates[*a]
                    .candidate
                    .name()
                    .cmp(&candidates[*b].candidate.name())
            })
    });
    let mut chosen: Vec<usize> = Vec::new();
    let mut best: Option<(Price, Vec<NodeClaimPlan>)> = None;
    let mut left = budgets.clone();
    for index in order {
        let pool = candidates[index].candidate.pool.name_any();
        if left.get(&pool).copied().unwrap_or(0) == 0 {
            outcome
                .refused
                .push((index, Blocker::BudgetExhausted("Underutilized")));
            continue;
        }
        let mut trial = chosen.clone();
        trial.push(index);
        match evaluate(base, &baseline, candidates, &trial, allow_spot_to_spot) {
            Ok((savings, replacements)) if best.as_ref().is_none_or(|(b, _)| savings > *b) => {
                chosen = trial;
                best = Some((savings, replacements));
                if let Some(n) = left.get_mut(&pool) {
                    *n -= 1;
                }
            }
            Ok(_) => outcome.refused.push((index, Blocker::NotCheaper)),
            Err(blocker) => {
                // With others in the set the failure may be theirs; alone it is this node's.
                let blocker = if chosen.is_empty() {
                    blocker
                } else {
                    Blocker::NotCheaper
                };
                outcome.refused.push((index, blocker));
            }
        }
    }
    if let Some((savings, replacements)) = best {
        *budgets = left;
        outcome.decision = Some(Decision {
            remove: chosen,
            replacements,
            savings,
        });
    }
    outcome
}

/// Savings of removing `set`, and the new nodes its pods need; or why it cannot be removed.
fn evaluate(
    base: &Problem,
    baseline: &Plan,
    candidates: &[Priced],
    set: &[usize],
    allow_spot_to_spot: bool,
) -> Result<(Price, Vec<NodeClaimPlan>), Blocker> {
    let names: BTreeSet<String> = set.iter().map(|i| candidates[*i].candidate.name()).collect();
    let mut problem = base.clone();
    problem.existing_nodes.retain(|n| !names.contains(&n.name));
    let first_moved = problem.pods.len();
    for index in set {
        for pod in &candidates[*index].candidate.pods {
            let mut pod = (**pod).clone();
            if let Some(spec) = pod.spec.as_mut() {
                spec.node_name = None;
            }
            problem.pods.push(pod);
        }
    }
    let plan = nodewright_solver::solve(&problem);
    let stranded: Vec<String> = plan
        .unschedulable
        .iter()
        .filter(|u| u.pod >= first_moved)
        .map(|u| pod_ref(&problem.pods[u.pod]))
        .collect();
    if !stranded.is_empty() || plan.unschedulable.len() > baseline.unschedulable.len() {
        return Err(Blocker::PodsNotReschedulable(stranded.join(", ")));
    }
    let removed: Price = set.iter().map(|i| candidates[*i].price).sum();
    let before = removed.saturating_add(baseline.total_price);
    if plan.total_price >= before {
        return Err(Blocker::NotCheaper);
    }
    let replacements: Vec<NodeClaimPlan> = plan
        .new_nodes
        .into_iter()
        .filter(|n| n.pods.iter().any(|p| *p >= first_moved))
        .collect();
    let replaces_spot = set.iter().any(|i| candidates[*i].spot);
    if !allow_spot_to_spot
        && replaces_spot
        && replacements.iter().any(|n| n.capacity_type == CapacityType::Spot)
    {
        return Err(Blocker::SpotToSpotDisabled);
    }
    Ok((Price(before.0 - plan.total_price.0), replacements))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use nodewright_api::{NodeClaim, labels};
    use nodewright_catalog::Resources;
    use nodewright_solver::{ExistingNode, PoolInput};
    use serde_json::json;

    use super::*;
    use crate::test_fixtures::{arc, instance_type, pool};

    fn pod(name: &str, node: &str, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "default" },
            "spec": { "nodeName": node, "containers": [{ "name": "c", "resources": { "requests": { "cpu": cpu } } }] },
            "status": { "phase": "Running" }
        }))
        .unwrap()
    }

    fn existing(name: &str, cpu_millis: i64, pods: Vec<Pod>) -> ExistingNode {
        ExistingNode {
            name: name.to_owned(),
            labels: BTreeMap::from([
                (labels::NODE_POOL.to_owned(), "default".to_owned()),
                (labels::CAPACITY_TYPE.to_owned(), "on-demand".to_owned()),
                (labels::ZONE.to_owned(), "us-east-1a".to_owned()),
                ("kubernetes.io/hostname".to_owned(), name.to_owned()),
            ]),
            taints: Vec::new(),
            allocatable: Resources {
                cpu_millis,
                memory_bytes: 8 << 30,
                pods: 110,
                ..Resources::default()
            },
            pods,
            initialized: true,
        }
    }

    fn candidate(name: &str, pods: &[Pod], usd: f64) -> Priced {
        Priced {
            candidate: Candidate {
                claim: arc::<NodeClaim>(json!({
                    "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
                    "metadata": { "name": name, "labels": { "karpenter.sh/nodepool": "default" } },
                    "spec": { "requirements": [], "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } }
                })),
                node: arc::<Node>(json!({ "metadata": { "name": name } })),
                pool: pool(),
                pods: pods.iter().cloned().map(Arc::new).collect(),
                consolidatable_at: None,
            },
            price: Price::from_usd(usd),
            spot: false,
        }
    }

    fn problem(nodes: Vec<ExistingNode>) -> Problem {
        Problem {
            nodepools: vec![PoolInput {
                nodepool: (*pool()).clone(),
                instance_types: vec![
                    instance_type("two", 2000, 0.1),
                    instance_type("four", 4000, 0.2),
                    instance_type("eight", 8000, 0.4),
                ],
                in_use: Resources::default(),
            }],
            existing_nodes: nodes,
            ..Problem::default()
        }
    }

    fn budgets(n: u64) -> BTreeMap<String, u64> {
        BTreeMap::from([("default".to_owned(), n)])
    }

    #[test]
    fn two_half_empty_nodes_become_one() {
        let a = vec![pod("a1", "a", "1"), pod("a2", "a", "1")];
        let b = vec![pod("b1", "b", "1")];
        let base = problem(vec![
            existing("a", 4000, a.clone()),
            existing("b", 4000, b.clone()),
        ]);
        let candidates = [candidate("a", &a, 0.2), candidate("b", &b, 0.2)];
        let mut left = budgets(10);
        let outcome = search(&base, &candidates, &mut left, false);
        let decision = outcome.decision.unwrap();
        assert_eq!(
            decision.remove,
            [1],
            "b has fewer pods to move for the same price"
        );
        assert!(decision.replacements.is_empty(), "a takes b's pod");
        assert_eq!(decision.savings, Price::from_usd(0.2));
        assert_eq!(left["default"], 9);
        assert_eq!(outcome.refused.len(), 1);
    }

    #[test]
    fn an_expensive_node_is_replaced_by_a_cheaper_one_and_a_full_one_is_kept() {
        // One 8-CPU node running 1 CPU: a 2-CPU node costs a quarter.
        let big = vec![pod("x", "big", "1")];
        let base = problem(vec![existing("big", 8000, big.clone())]);
        let outcome = search(&base, &[candidate("big", &big, 0.4)], &mut budgets(1), false);
        let decision = outcome.decision.unwrap();
        assert_eq!(decision.replacements.len(), 1);
        assert_eq!(decision.replacements[0].instance_type, "two");
        assert_eq!(decision.savings, Price::from_usd(0.3));

        // A full 2-CPU node: nothing cheaper holds its pods.
        let full = vec![pod("y", "small", "2")];
        let base = problem(vec![existing("small", 2000, full.clone())]);
        let outcome = search(&base, &[candidate("small", &full, 0.1)], &mut budgets(1), false);
        assert!(outcome.decision.is_none());
        assert_eq!(outcome.refused[0].1, Blocker::NotCheaper);
    }

    #[test]
    fn a_budget_of_zero_leaves_every_candidate_alone() {
        let b = vec![pod("b1", "b", "1")];
        let base = problem(vec![
            existing("a", 4000, Vec::new()),
            existing("b", 4000, b.clone()),
        ]);
        let outcome = search(&base, &[candidate("b", &b, 0.2)], &mut budgets(0), false);
        assert!(outcome.decision.is_none());
    }

    #[test]
    fn spot_replaced_by_spot_only_when_allowed() {
        let mut spot_pool = (*pool()).clone();
        spot_pool.spec.template.spec.requirements[0].values = vec!["spot".into()];
        let mut base = problem(Vec::new());
        base.nodepools[0].nodepool = spot_pool;
        for t in &mut base.nodepools[0].instance_types {
            t.offerings[0].capacity_type = CapacityType::Spot;
        }
        let big = vec![pod("x", "big", "1")];
        let mut node = existing("big", 8000, big.clone());
        node.labels.insert(labels::CAPACITY_TYPE.into(), "spot".into());
        base.existing_nodes.push(node);
        let mut priced = candidate("big", &big, 0.4);
        priced.spot = true;
        let refused = search(&base, std::slice::from_ref(&priced), &mut budgets(1), false);
        assert!(refused.decision.is_none());
        assert_eq!(refused.refused[0].1, Blocker::SpotToSpotDisabled);
        let allowed = search(&base, &[priced], &mut budgets(1), true);
        assert_eq!(allowed.decision.unwrap().replacements.len(), 1);
    }
}
