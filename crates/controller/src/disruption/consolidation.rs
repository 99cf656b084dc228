//! Emptiness and the consolidation search. Pure: the candidates, the cluster as the solver's
//! problem and the budgets in; the nodes to remove (and the cheaper nodes to launch for their
//! pods) out, with a reason for each candidate left alone.
//!
//! **The search** considers every candidate — no cap, no timeout — in Karpenter's order (price
//! per unit of disruption, highest first: `price / (1 + Σ pod eviction costs)`), growing one set
//! greedily on a [`model`] of the cluster: a candidate joins when its pods (and those the model
//! put on it) fit on the remaining nodes or on new nodes that cost less than it, its NodePool's
//! budget has room, the PodDisruptionBudgets allow the evictions of the whole set, and, for
//! `Balanced` pools, the set's savings outweigh its disruption ([`balanced`]). The set may be
//! replaced by any number of cheaper nodes (N → M), not only one.
//!
//! **Verification.** The set is then simulated as a whole by the solver: every pod of the removed
//! nodes rescheduled (with the pending pods) onto the other nodes plus new ones. It stands when no
//! moved pod is left unplaced, the new nodes its pods need cost strictly less than the nodes
//! removed, the cluster's cost drops, spot-to-spot is allowed if it happens, and Balanced pools
//! still approve. Otherwise the candidates whose pods were stranded leave the set (or, when the
//! failure is the price, the later half of it) and the rest is verified again.
//!
//! When no pod in the cluster has pod affinity, topology spread or (moving) host ports, the
//! verifying solve sees each other node as its free capacity without its pods, which gives the
//! same answer faster.

pub mod balanced;
mod model;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    hash::BuildHasher,
};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use nodewright_api::{
    NodePool, labels,
    nodepool::{ConsolidationPolicy, DisruptionReason},
};
use nodewright_catalog::{CapacityType, InstanceType, Price, Resources};
use nodewright_solver::{ExistingNode, NodeClaimPlan, Plan, Problem};

use self::{
    balanced::{PoolShare, PoolTotals},
    model::Model,
};
use super::{
    budgets::{self, PoolNodes},
    candidates::{Blocker, Candidate},
};

/// A candidate with what it costs.
#[derive(Debug, Clone)]
pub struct Priced {
    pub candidate: Candidate,
    pub price: Price,
    pub spot: bool,
    /// `1 + Σ max(0, eviction cost)` over its moving pods.
    pub disruption: f64,
}

impl Priced {
    pub fn new(candidate: Candidate, price: Price, spot: bool) -> Self {
        let disruption = balanced::disruption_cost(candidate.pods.iter().map(|p| &**p));
        Self {
            candidate,
            price,
            spot,
            disruption,
        }
    }

    /// Price per unit of disruption: higher first.
    fn savings_ratio(&self) -> f64 {
        self.price.as_usd() / self.disruption
    }

    fn pool(&self) -> String {
        self.candidate.pool.name_any()
    }

    fn is_balanced(&self) -> bool {
        self.candidate.pool.spec.disruption.consolidation_policy == ConsolidationPolicy::Balanced
    }
}

/// What to do.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Indices into the candidates given to [`search`], in the order they were chosen.
    pub remove: Vec<usize>,
    /// New nodes for the removed nodes' pods (empty: the other nodes take them).
    pub replacements: Vec<NodeClaimPlan>,
    /// $/h saved: the removed nodes' prices minus the replacements'.
    pub savings: Price,
}

/// The search's answer.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub decision: Option<Decision>,
    /// Candidates left alone, by index, with why.
    pub refused: Vec<(usize, Blocker)>,
}

/// Empty candidates whose consolidateAfter elapsed, within each pool's `Empty` budget (any
/// policy removes empty nodes). `counts` are the budget counts per NodePool. Returns the chosen
/// nodes and, by node name, those the budget held back.
pub fn emptiness<S: BuildHasher>(
    candidates: &[&Candidate],
    counts: &HashMap<String, PoolNodes, S>,
    now: Timestamp,
) -> (Vec<Candidate>, Vec<(String, Blocker)>) {
    let mut left: HashMap<String, u64> = HashMap::new();
    let mut chosen = Vec::new();
    let mut refused = Vec::new();
    let mut empty: Vec<&&Candidate> = candidates
        .iter()
        .filter(|c| c.is_empty() && c.is_consolidatable(now))
        .collect();
    empty.sort_by_key(|c| c.name());
    for candidate in empty {
        let pool = candidate.pool.name_any();
        let allowed = left.entry(pool.clone()).or_insert_with(|| {
            budgets::allowed(
                &candidate.pool,
                DisruptionReason::Empty,
                counts.get(&pool).copied().unwrap_or_default(),
                now,
            )
        });
        if *allowed == 0 {
            refused.push((candidate.name(), Blocker::BudgetExhausted("Empty")));
            continue;
        }
        *allowed -= 1;
        chosen.push((*candidate).clone());
    }
    (chosen, refused)
}

/// How many nodes of each pool consolidation may take now (reason `Underutilized`).
pub fn underutilized_budgets<S: BuildHasher>(
    pools: &[std::sync::Arc<NodePool>],
    counts: &HashMap<String, PoolNodes, S>,
    now: Timestamp,
) -> BTreeMap<String, u64> {
    budgets::allowed_by_pool(pools, DisruptionReason::Underutilized, counts, now)
}

/// What [`plan`] looks at.
#[derive(Debug)]
pub struct Request<'a> {
    /// Every candidate of the pass (the Balanced totals are over all of them).
    pub candidates: &'a [&'a Candidate],
    /// The cluster as it is: every node, the pending pods, the NodePools' instance types.
    pub problem: &'a Problem,
    /// From [`underutilized_budgets`].
    pub budgets: BTreeMap<String, u64>,
    pub now: Timestamp,
    pub allow_spot_to_spot: bool,
}

/// A consolidation command.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub candidates: Vec<Candidate>,
    pub replacements: Vec<NodeClaimPlan>,
    pub savings: Price,
}

/// [`plan`]'s answer; `refused` by node name.
#[derive(Debug, Clone, Default)]
pub struct Planned {
    pub chosen: Option<Chosen>,
    pub refused: Vec<(String, Blocker)>,
}

/// Consolidation of the non-empty candidates whose consolidateAfter elapsed, in pools whose
/// policy consolidates underutilized nodes (`WhenEmptyOrUnderutilized`, `Balanced`).
pub fn plan(request: &Request<'_>) -> Planned {
    let types: HashMap<String, &[InstanceType]> = request
        .problem
        .nodepools
        .iter()
        .map(|p| (p.nodepool.name_any(), p.instance_types.as_slice()))
        .collect();
    let mut totals: BTreeMap<String, PoolTotals> = BTreeMap::new();
    let mut priced = Vec::new();
    let mut refused = Vec::new();
    for candidate in request.candidates {
        let pool = candidate.pool.name_any();
        let pool_types = types.get(&pool).copied().unwrap_or_default();
        let price = price_of(&candidate.node, pool_types);
        if let Some((price, _)) = price {
            let disruption = balanced::disruption_cost(candidate.pods.iter().map(|p| &**p));
            totals.entry(pool).or_default().add(price, disruption);
        }
        if candidate.is_empty() || !candidate.is_consolidatable(request.now) {
            continue;
        }
        match candidate.pool.spec.disruption.consolidation_policy {
            ConsolidationPolicy::WhenEmpty => {
                refused.push((candidate.name(), Blocker::PolicyWhenEmpty));
                continue;
            }
            ConsolidationPolicy::WhenEmptyOrUnderutilized | ConsolidationPolicy::Balanced => {}
        }
        match price {
            Some((price, capacity_type)) if price > Price::ZERO => priced.push(Priced::new(
                (*candidate).clone(),
                price,
                capacity_type == CapacityType::Spot,
            )),
            _ => refused.push((candidate.name(), Blocker::PriceUnknown)),
        }
    }
    let mut budgets = request.budgets.clone();
    let outcome = search(
        request.problem,
        &priced,
        &mut budgets,
        &totals,
        request.allow_spot_to_spot,
    );
    refused.extend(
        outcome
            .refused
            .into_iter()
            .map(|(i, blocker)| (priced[i].candidate.name(), blocker)),
    );
    Planned {
        chosen: outcome.decision.map(|d| Chosen {
            candidates: d.remove.iter().map(|i| priced[*i].candidate.clone()).collect(),
            replacements: d.replacements,
            savings: d.savings,
        }),
        refused,
    }
}

/// The price of the node's offering: its instance type, zone and capacity type labels, looked up
/// in its NodePool's instance types.
pub fn price_of(node: &Node, types: &[InstanceType]) -> Option<(Price, CapacityType)> {
    let node_labels = node.labels();
    let instance_type = node_labels.get(labels::INSTANCE_TYPE)?;
    let zone = node_labels.get(labels::ZONE)?;
    let capacity_type = node_labels.get(labels::CAPACITY_TYPE)?;
    types
        .iter()
        .find(|t| &t.name == instance_type)?
        .offerings
        .iter()
        .find(|o| &o.zone == zone && o.capacity_type.label() == capacity_type)
        .map(|o| (o.price, o.capacity_type))
}

/// The set being grown, with what the checks need.
#[derive(Debug, Default)]
struct Growing {
    chosen: Vec<usize>,
    removed: Price,
    new_cost: Price,
    shares: BTreeMap<String, PoolShare>,
    pdb_evictions: BTreeMap<String, u32>,
}

/// Searches every candidate for the set whose removal saves the most (see the module docs).
/// `base` is the cluster as it is (every node existing, the pending pods to place); `budgets`
/// is how many more nodes each NodePool may lose for reason Underutilized, decremented for the
/// decision's nodes; `totals` are the Balanced pools' totals.
pub fn search(
    base: &Problem,
    candidates: &[Priced],
    budgets: &mut BTreeMap<String, u64>,
    totals: &BTreeMap<String, PoolTotals>,
    allow_spot_to_spot: bool,
) -> Outcome {
    let mut outcome = Outcome::default();
    if candidates.is_empty() {
        return outcome;
    }
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
    let mut model = Model::new(
        base,
        candidates
            .iter()
            .map(|c| (c.candidate.name(), c.candidate.pods.as_slice())),
    );
    let mut set = Growing::default();
    let mut left = budgets.clone();
    for index in order {
        match consider(
            &mut model,
            &set,
            candidates,
            index,
            &left,
            totals,
            allow_spot_to_spot,
        ) {
            Ok(trial) => {
                let priced = &candidates[index];
                set.chosen.push(index);
                set.removed = set.removed.saturating_add(priced.price);
                set.new_cost = set.new_cost.saturating_add(trial.new_cost);
                if priced.is_balanced() {
                    let share = set.shares.entry(priced.pool()).or_default();
                    share.price = share.price.saturating_add(priced.price);
                    share.disruption += priced.disruption;
                }
                for pdb in &priced.candidate.pdbs {
                    *set.pdb_evictions.entry(pdb.pdb.clone()).or_default() += pdb.evictions;
                }
                if let Some(n) = left.get_mut(&priced.pool()) {
                    *n -= 1;
                }
            }
            Err(blocker) => outcome.refused.push((index, blocker)),
        }
    }
    let verifier = Verifier::new(base, candidates, &model, totals, allow_spot_to_spot);
    let mut chosen = set.chosen;
    while !chosen.is_empty() {
        match verifier.verify(&chosen) {
            Ok(decision) => {
                for index in &decision.remove {
                    if let Some(n) = budgets.get_mut(&candidates[*index].pool()) {
                        *n = n.saturating_sub(1);
                    }
                }
                outcome.decision = Some(decision);
                break;
            }
            Err(Failure::Stranded(owners)) => {
                for owner in owners {
                    chosen.retain(|i| *i != owner.0);
                    outcome.refused.push(owner);
                }
            }
            Err(Failure::NotWorthIt) => {
                let keep = chosen.len() / 2;
                for index in chosen.drain(keep..) {
                    outcome.refused.push((index, Blocker::NotCheaper));
                }
            }
        }
    }
    outcome
}

/// Whether candidate `index` joins `set`; on `Ok` the model keeps its removal.
fn consider(
    model: &mut Model,
    set: &Growing,
    candidates: &[Priced],
    index: usize,
    left: &BTreeMap<String, u64>,
    totals: &BTreeMap<String, PoolTotals>,
    allow_spot_to_spot: bool,
) -> Result<model::Trial, Blocker> {
    let priced = &candidates[index];
    let pool = priced.pool();
    if left.get(&pool).copied().unwrap_or(0) == 0 {
        return Err(Blocker::BudgetExhausted("Underutilized"));
    }
    for pdb in &priced.candidate.pdbs {
        let used = set.pdb_evictions.get(&pdb.pdb).copied().unwrap_or(0);
        if used + pdb.evictions > pdb.allowed {
            return Err(Blocker::PdbAllowanceUsed(pdb.pdb.clone()));
        }
    }
    let own_share = || {
        BTreeMap::from([(
            pool.clone(),
            PoolShare {
                price: priced.price,
                disruption: priced.disruption,
            },
        )])
    };
    // Karpenter's `CanPassThreshold`: deleting outright is the best this node can do; if even
    // that does not outweigh its disruption, nothing will.
    if priced.is_balanced() {
        balanced::approve(priced.price, priced.price, &own_share(), totals)
            .map_err(Blocker::SavingsBelowDisruption)?;
    }
    let trial = model.try_remove(index, priced.price)?;
    if priced.spot && trial.new_spot && !allow_spot_to_spot {
        model.undo(trial);
        return Err(Blocker::SpotToSpotDisabled);
    }
    let mut shares = set.shares.clone();
    if priced.is_balanced() {
        let share = shares.entry(pool).or_default();
        share.price = share.price.saturating_add(priced.price);
        share.disruption += priced.disruption;
    }
    if !shares.is_empty() {
        let removed = set.removed.saturating_add(priced.price);
        let cost = set.new_cost.saturating_add(trial.new_cost);
        let savings = Price(removed.0.saturating_sub(cost.0));
        if let Err(score) = balanced::approve(savings, removed, &shares, totals) {
            model.undo(trial);
            return Err(Blocker::SavingsBelowDisruption(score));
        }
    }
    Ok(trial)
}

/// Why a verification failed.
enum Failure {
    /// These candidates' pods found no place (with the blocker to report).
    Stranded(Vec<(usize, Blocker)>),
    /// The set as a whole does not save enough (or replaces spot with spot when that is off).
    NotWorthIt,
}

/// Verifies sets by solving the cluster without them.
struct Verifier<'a> {
    base: &'a Problem,
    /// The other nodes as the solve sees them (free capacity only, when nothing in the cluster
    /// needs their pods).
    nodes: Vec<ExistingNode>,
    baseline: Plan,
    candidates: &'a [Priced],
    model: &'a Model,
    totals: &'a BTreeMap<String, PoolTotals>,
    allow_spot_to_spot: bool,
}

impl<'a> Verifier<'a> {
    fn new(
        base: &'a Problem,
        candidates: &'a [Priced],
        model: &'a Model,
        totals: &'a BTreeMap<String, PoolTotals>,
        allow_spot_to_spot: bool,
    ) -> Self {
        let nodes = if needs_pods(base, candidates) {
            base.existing_nodes.clone()
        } else {
            base.existing_nodes
                .iter()
                .enumerate()
                .map(|(i, node)| without_pods(node, model.initial_free(i)))
                .collect()
        };
        let mut verifier = Self {
            base,
            nodes,
            baseline: Plan::default(),
            candidates,
            model,
            totals,
            allow_spot_to_spot,
        };
        // Pending pods' own new nodes cost the same with or without the removal: measured once.
        if !base.pods.is_empty() {
            verifier.baseline = nodewright_solver::solve(&verifier.problem(&BTreeSet::new(), Vec::new()));
        }
        verifier
    }

    fn problem(&self, removed: &BTreeSet<String>, moved: Vec<Pod>) -> Problem {
        let mut pods = self.base.pods.clone();
        pods.extend(moved);
        Problem {
            pods,
            nodepools: self.base.nodepools.clone(),
            existing_nodes: self
                .nodes
                .iter()
                .filter(|n| !removed.contains(&n.name))
                .cloned()
                .collect(),
            daemonset_pods: self.base.daemonset_pods.clone(),
            volumes: self.base.volumes.clone(),
            options: self.base.options.clone(),
        }
    }

    fn verify(&self, set: &[usize]) -> Result<Decision, Failure> {
        let removed: BTreeSet<String> = set.iter().map(|i| self.candidates[*i].candidate.name()).collect();
        let mut owner = Vec::new();
        let mut moved = Vec::new();
        for index in set {
            for pod in self.model.own_pods(*index) {
                owner.push(*index);
                moved.push(self.model.pods[*pod].pod.clone());
            }
        }
        let problem = self.problem(&removed, moved);
        let first_moved = self.base.pods.len();
        let plan = nodewright_solver::solve(&problem);
        let mut stranded: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for unschedulable in plan.unschedulable.iter().filter(|u| u.pod >= first_moved) {
            stranded
                .entry(owner[unschedulable.pod - first_moved])
                .or_default()
                .push(super::candidates::pod_ref(&problem.pods[unschedulable.pod]));
        }
        if !stranded.is_empty() {
            return Err(Failure::Stranded(
                stranded
                    .into_iter()
                    .map(|(i, pods)| (i, Blocker::PodsNotReschedulable(pods.join(", "))))
                    .collect(),
            ));
        }
        if plan.unschedulable.len() > self.baseline.unschedulable.len() {
            return Err(Failure::NotWorthIt);
        }
        let removed_price: Price = set.iter().map(|i| self.candidates[*i].price).sum();
        let replacements: Vec<NodeClaimPlan> = plan
            .new_nodes
            .into_iter()
            .filter(|n| n.pods.iter().any(|p| *p >= first_moved))
            .collect();
        let replacement_price: Price = replacements.iter().map(|n| n.price).sum();
        let cheaper = replacement_price < removed_price
            && plan.total_price < removed_price.saturating_add(self.baseline.total_price);
        let spot_to_spot = set.iter().any(|i| self.candidates[*i].spot)
            && replacements.iter().any(|n| n.capacity_type == CapacityType::Spot);
        if !cheaper || (spot_to_spot && !self.allow_spot_to_spot) {
            return Err(Failure::NotWorthIt);
        }
        let savings = Price(removed_price.0 - replacement_price.0);
        let mut shares: BTreeMap<String, PoolShare> = BTreeMap::new();
        for priced in set
            .iter()
            .map(|i| &self.candidates[*i])
            .filter(|p| p.is_balanced())
        {
            let share = shares.entry(priced.pool()).or_default();
            share.price = share.price.saturating_add(priced.price);
            share.disruption += priced.disruption;
        }
        if balanced::approve(savings, removed_price, &shares, self.totals).is_err() {
            return Err(Failure::NotWorthIt);
        }
        Ok(Decision {
            remove: set.to_vec(),
            replacements,
            savings,
        })
    }
}

/// Whether the solve must see the pods on the other nodes: some pod has pod (anti-)affinity or
/// topology spread (they count pods on nodes), or a moving pod has a host port.
fn needs_pods(base: &Problem, candidates: &[Priced]) -> bool {
    let topology = |pod: &Pod| {
        pod.spec.as_ref().is_some_and(|spec| {
            spec.topology_spread_constraints
                .as_ref()
                .is_some_and(|t| !t.is_empty())
                || spec
                    .affinity
                    .as_ref()
                    .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
        })
    };
    let host_ports = |pod: &Pod| {
        pod.spec.as_ref().is_some_and(|spec| {
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .flat_map(|c| c.ports.iter().flatten())
                .any(|p| p.host_port.is_some_and(|port| port > 0))
        })
    };
    base.pods.iter().any(topology)
        || base.existing_nodes.iter().flat_map(|n| &n.pods).any(topology)
        || candidates
            .iter()
            .flat_map(|c| &c.candidate.pods)
            .any(|p| topology(p) || host_ports(p))
}

/// A node as its free capacity (its pods' requests taken).
fn without_pods(node: &ExistingNode, free: &Resources) -> ExistingNode {
    ExistingNode {
        name: node.name.clone(),
        labels: node.labels.clone(),
        taints: node.taints.clone(),
        allocatable: free.clone(),
        pods: Vec::new(),
        initialized: node.initialized,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use nodewright_api::{NodeClaim, labels};
    use nodewright_solver::ExistingNode;
    use serde_json::json;

    use super::{super::candidates::PdbEvictions, *};
    use crate::test_fixtures::{self as fixtures, arc, budgets, existing, instance_type, pod, pool};

    fn candidate(name: &str, pods: &[Pod], usd: f64) -> Priced {
        Priced::new(
            Candidate {
                claim: arc::<NodeClaim>(json!({
                    "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
                    "metadata": { "name": name, "labels": { "karpenter.sh/nodepool": "default" } },
                    "spec": { "requirements": [], "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } }
                })),
                node: arc::<Node>(json!({ "metadata": { "name": name } })),
                pool: pool(),
                pods: pods.iter().cloned().map(Arc::new).collect(),
                consolidatable_at: None,
                pdbs: Vec::new(),
            },
            Price::from_usd(usd),
            false,
        )
    }

    /// The test pool's types with `nodes` running.
    fn problem(nodes: Vec<ExistingNode>) -> Problem {
        fixtures::problem(
            vec![
                instance_type("two", 2000, 0.1),
                instance_type("four", 4000, 0.2),
                instance_type("eight", 8000, 0.4),
            ],
            nodes,
        )
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
        let outcome = search(&base, &candidates, &mut left, &BTreeMap::new(), false);
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

    /// Two half-empty nodes as in two_half_empty_nodes_become_one, but b in us-east-1b, and b's
    /// pod mounting a disk in `disk_zone` (None: a volume that can attach anywhere).
    fn outcome_with_b_disk_in(disk_zone: Option<&str>) -> Outcome {
        let mut b_pod = pod("b1", "b", "1");
        b_pod.spec.as_mut().unwrap().volumes = Some(vec![
            serde_json::from_value(
                json!({ "name": "data", "persistentVolumeClaim": { "claimName": "data" } }),
            )
            .unwrap(),
        ]);
        let a = vec![pod("a1", "a", "1"), pod("a2", "a", "1")];
        let b = vec![b_pod];
        let mut node_b = existing("b", 4000, b.clone());
        node_b
            .labels
            .insert(labels::ZONE.to_owned(), "us-east-1b".to_owned());
        let mut base = problem(vec![existing("a", 4000, a.clone()), node_b]);
        let affinity = disk_zone.map(|zone| {
            json!({ "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                { "key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone] }
            ] }] } })
        });
        base.volumes = nodewright_solver::volumes::Volumes {
            claims: vec![
                serde_json::from_value(json!({
                    "metadata": { "name": "data", "namespace": "default" }, "spec": { "volumeName": "pv-data" }
                }))
                .unwrap(),
            ],
            volumes: vec![
                serde_json::from_value(json!({ "metadata": { "name": "pv-data" }, "spec": { "nodeAffinity": affinity } }))
                    .unwrap(),
            ],
            storage_classes: Vec::new(),
        };
        let candidates = [candidate("a", &a, 0.2), candidate("b", &b, 0.2)];
        search(&base, &candidates, &mut budgets(10), &BTreeMap::new(), false)
    }

    #[test]
    fn pods_are_moved_only_where_their_disks_can_follow() {
        let anywhere = outcome_with_b_disk_in(None);
        assert_eq!(
            anywhere.decision.map(|d| d.remove),
            Some(vec![1]),
            "a takes b's pod"
        );
        let zonal = outcome_with_b_disk_in(Some("us-east-1b"));
        assert!(
            zonal.decision.is_none(),
            "the disk stays in us-east-1b: {:?}",
            zonal.decision
        );
        let elsewhere = outcome_with_b_disk_in(Some("us-east-1a"));
        assert_eq!(
            elsewhere.decision.map(|d| d.remove),
            Some(vec![1]),
            "the disk is in a's zone"
        );
    }

    #[test]
    fn buffer_chunks_needing_the_room_keep_both_half_empty_nodes() {
        // Only 4-CPU nodes exist. Without the buffer, b's pod moves to a (see above); with 3 CPU
        // of chunks to hold, a's and b's free room (2 + 3 CPU) is needed, and a new node costs
        // as much as the one removed.
        let a = vec![pod("a1", "a", "1"), pod("a2", "a", "1")];
        let b = vec![pod("b1", "b", "1")];
        let nodes = vec![existing("a", 4000, a.clone()), existing("b", 4000, b.clone())];
        let candidates = [candidate("a", &a, 0.2), candidate("b", &b, 0.2)];
        let without = fixtures::problem(vec![instance_type("four", 4000, 0.2)], nodes.clone());
        let outcome = search(&without, &candidates, &mut budgets(10), &BTreeMap::new(), false);
        assert!(outcome.decision.is_some(), "without the buffer b goes");
        let base = crate::buffers::room::with_virtual_pods(
            fixtures::problem(vec![instance_type("four", 4000, 0.2)], nodes),
            (0..3)
                .map(|i| crate::provisioner::snapshot::unbound(&pod(&format!("chunk-{i}"), "", "1")))
                .collect(),
        );
        let outcome = search(&base, &candidates, &mut budgets(10), &BTreeMap::new(), false);
        assert!(outcome.decision.is_none(), "{:?}", outcome.decision);
        assert_eq!(outcome.refused.len(), 2);
    }

    #[test]
    fn an_expensive_node_is_replaced_by_a_cheaper_one_and_a_full_one_is_kept() {
        // One 8-CPU node running 1 CPU: a 2-CPU node costs a quarter.
        let big = vec![pod("x", "big", "1")];
        let base = problem(vec![existing("big", 8000, big.clone())]);
        let outcome = search(
            &base,
            &[candidate("big", &big, 0.4)],
            &mut budgets(1),
            &BTreeMap::new(),
            false,
        );
        let decision = outcome.decision.unwrap();
        assert_eq!(decision.replacements.len(), 1);
        assert_eq!(decision.replacements[0].instance_type, "two");
        assert_eq!(decision.savings, Price::from_usd(0.3));

        // A full 2-CPU node: nothing cheaper holds its pods.
        let full = vec![pod("y", "small", "2")];
        let base = problem(vec![existing("small", 2000, full.clone())]);
        let outcome = search(
            &base,
            &[candidate("small", &full, 0.1)],
            &mut budgets(1),
            &BTreeMap::new(),
            false,
        );
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
        let outcome = search(
            &base,
            &[candidate("b", &b, 0.2)],
            &mut budgets(0),
            &BTreeMap::new(),
            false,
        );
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
        let refused = search(
            &base,
            std::slice::from_ref(&priced),
            &mut budgets(1),
            &BTreeMap::new(),
            false,
        );
        assert!(refused.decision.is_none());
        assert_eq!(refused.refused[0].1, Blocker::SpotToSpotDisabled);
        let allowed = search(&base, &[priced], &mut budgets(1), &BTreeMap::new(), true);
        assert_eq!(allowed.decision.unwrap().replacements.len(), 1);
    }

    fn balanced_pool(mut priced: Priced) -> Priced {
        let mut balanced = (*priced.candidate.pool).clone();
        balanced.spec.disruption.consolidation_policy = ConsolidationPolicy::Balanced;
        priced.candidate.pool = Arc::new(balanced);
        priced
    }

    fn totals(usd: f64, disruption: f64) -> BTreeMap<String, PoolTotals> {
        BTreeMap::from([(
            "default".to_owned(),
            PoolTotals {
                cost: Price::from_usd(usd),
                disruption,
            },
        )])
    }

    /// A four-CPU node ($0.20) running 3 CPU could be a cheaper four-CPU type ($0.18): 10% of
    /// the pool's cost saved for all of its disruption (score 0.1 < 0.5). Balanced keeps it;
    /// WhenEmptyOrUnderutilized replaces it.
    #[test]
    fn balanced_refuses_a_small_saving_for_a_whole_pools_disruption() {
        let pods = vec![pod("p1", "z", "1"), pod("p2", "z", "1"), pod("p3", "z", "1")];
        let mut base = problem(vec![existing("z", 4000, pods.clone())]);
        base.nodepools[0]
            .instance_types
            .push(instance_type("four-cheap", 4000, 0.18));
        let plain = candidate("z", &pods, 0.2);
        let pool_totals = totals(0.2, 4.0);
        let outcome = search(
            &base,
            &[balanced_pool(plain.clone())],
            &mut budgets(1),
            &pool_totals,
            false,
        );
        assert!(outcome.decision.is_none());
        assert_eq!(outcome.refused[0].1.reason(), "SavingsBelowDisruption");
        let outcome = search(&base, &[plain], &mut budgets(1), &pool_totals, false);
        let decision = outcome.decision.unwrap();
        assert_eq!(decision.replacements[0].instance_type, "four-cheap");
        assert_eq!(decision.savings, Price::from_usd(0.02));
    }

    /// Two four-CPU nodes ($0.20 each) running 2 and 1 CPU; disruption 3 and 2 of 5. Deleting b
    /// saves half the pool's cost for 2/5 of its disruption: score 1.25, approved.
    #[test]
    fn balanced_approves_a_deletion_worth_its_disruption() {
        let a = vec![pod("a1", "a", "1"), pod("a2", "a", "1")];
        let b = vec![pod("b1", "b", "1")];
        let base = problem(vec![
            existing("a", 4000, a.clone()),
            existing("b", 4000, b.clone()),
        ]);
        let candidates = [
            balanced_pool(candidate("a", &a, 0.2)),
            balanced_pool(candidate("b", &b, 0.2)),
        ];
        let outcome = search(&base, &candidates, &mut budgets(2), &totals(0.4, 5.0), false);
        let decision = outcome.decision.unwrap();
        assert_eq!(decision.remove, [1]);
        assert_eq!(decision.savings, Price::from_usd(0.2));
    }

    /// Two nodes whose pods one PDB covers (one disruption allowed), and room for both pods on
    /// a third: removing both would evict two pods at once, so only one goes.
    #[test]
    fn evictions_of_the_whole_plan_stay_within_a_pdb() {
        let a = vec![pod("a1", "a", "1")];
        let b = vec![pod("b1", "b", "1")];
        let base = problem(vec![
            existing("a", 4000, a.clone()),
            existing("b", 4000, b.clone()),
            existing("c", 4000, Vec::new()),
        ]);
        let covered = |mut priced: Priced| {
            priced.candidate.pdbs = vec![PdbEvictions {
                pdb: "default/web".into(),
                evictions: 1,
                allowed: 1,
            }];
            priced
        };
        let candidates = [covered(candidate("a", &a, 0.2)), covered(candidate("b", &b, 0.2))];
        let outcome = search(&base, &candidates, &mut budgets(10), &BTreeMap::new(), false);
        assert_eq!(outcome.decision.unwrap().remove, [0]);
        assert_eq!(
            outcome.refused,
            [(1, Blocker::PdbAllowanceUsed("default/web".into()))]
        );
    }

    /// Three eight-CPU nodes ($0.40) running 3 CPU each: a's pods go to b, then b's six to c
    /// (five fit) and a two-CPU node for the last; c cannot go (its eight pods need an eight).
    #[test]
    fn pods_moved_onto_a_node_move_again_when_it_goes() {
        let a = vec![pod("a1", "a", "1"), pod("a2", "a", "1"), pod("a3", "a", "1")];
        let b = vec![pod("b1", "b", "1"), pod("b2", "b", "1"), pod("b3", "b", "1")];
        let c = vec![pod("c1", "c", "1"), pod("c2", "c", "1"), pod("c3", "c", "1")];
        let base = problem(vec![
            existing("a", 8000, a.clone()),
            existing("b", 8000, b.clone()),
            existing("c", 8000, c.clone()),
        ]);
        let candidates = [
            candidate("a", &a, 0.4),
            candidate("b", &b, 0.4),
            candidate("c", &c, 0.4),
        ];
        let outcome = search(&base, &candidates, &mut budgets(10), &BTreeMap::new(), false);
        let decision = outcome.decision.unwrap();
        assert_eq!(decision.remove, [0, 1]);
        assert_eq!(decision.replacements.len(), 1);
        assert_eq!(decision.replacements[0].instance_type, "two");
        assert_eq!(decision.savings, Price::from_usd(0.7));
        assert_eq!(outcome.refused, [(2, Blocker::NotCheaper)]);
    }
}
