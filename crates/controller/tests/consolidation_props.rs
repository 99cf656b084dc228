//! Property test of disruption's pure decision on random clusters: nodes of several catalogue
//! types and prices (on-demand and spot) in NodePools of every consolidation policy, pods with
//! requests, some `do-not-disrupt` pods and nodes, PodDisruptionBudgets allowing 0–2
//! disruptions, budgets per NodePool (counts including 0, percentages), and a few pending pods.
//! The pass's steps run as the controller runs them — candidates, budget counts, emptiness, and
//! consolidation when emptiness finds nothing — and every plan must:
//! - evict no pod with `do-not-disrupt` and remove no node annotated with it;
//! - keep every PDB within its allowed disruptions, counting all the plan's evictions together;
//! - remove no more nodes of a NodePool than its budget for the reason allows;
//! - cost less: the replacements' price below the removed nodes' (none for empty nodes), and
//!   consolidate only pools whose policy consolidates underutilized nodes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use jiff::Timestamp;
use k8s_openapi::api::{
    core::v1::{Node, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::ResourceExt;
use nodewright_api::{
    NodeClaim, NodePool,
    nodepool::{ConsolidationPolicy, DisruptionReason},
};
use nodewright_catalog::{CapacityType, InstanceType, Offering, Overhead, Price, Resources};
use nodewright_controller::disruption::{
    budgets,
    candidates::{self, Candidate, Inputs},
    consolidation::{self, Request},
    pool_nodes,
};
use nodewright_solver::{PoolInput, Problem, manifests::existing_node};
use proptest::prelude::*;
use serde_json::{Value, json};

const NOW: &str = "2026-01-05T12:00:00Z";
const ZONE: &str = "us-east-1a";
const APPS: [&str; 3] = ["web", "api", "batch"];

/// (name, millicores, GiB, on-demand $/h).
const TYPES: [(&str, i64, i64, f64); 5] = [
    ("c5.large", 2000, 4, 0.085),
    ("m5.large", 2000, 8, 0.096),
    ("m5.xlarge", 4000, 16, 0.192),
    ("c5.2xlarge", 8000, 16, 0.34),
    ("m5.2xlarge", 8000, 32, 0.384),
];

fn catalogue() -> Vec<InstanceType> {
    TYPES
        .iter()
        .map(|(name, cpu, gib, usd)| InstanceType {
            name: (*name).to_owned(),
            labels: BTreeMap::from([
                ("node.kubernetes.io/instance-type".to_owned(), (*name).to_owned()),
                ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
                ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ]),
            capacity: Resources {
                cpu_millis: *cpu,
                memory_bytes: gib << 30,
                pods: 110,
                ..Resources::default()
            },
            overhead: Overhead::default(),
            offerings: [(CapacityType::OnDemand, 1.0), (CapacityType::Spot, 0.35)]
                .into_iter()
                .map(|(capacity_type, factor)| Offering {
                    zone: ZONE.to_owned(),
                    capacity_type,
                    price: Price::from_usd(usd * factor),
                    available: true,
                    reservation: None,
                })
                .collect(),
        })
        .collect()
}

#[derive(Debug, Clone)]
struct PoolSpec {
    policy: &'static str,
    budgets: Vec<&'static str>,
}

#[derive(Debug, Clone)]
struct PodSpec {
    cpu_millis: i64,
    memory_mib: i64,
    app: usize,
    do_not_disrupt: bool,
}

#[derive(Debug, Clone)]
struct NodeSpec {
    pool: usize,
    instance_type: usize,
    spot: bool,
    do_not_disrupt: bool,
    pods: Vec<PodSpec>,
}

#[derive(Debug, Clone)]
struct ClusterSpec {
    pools: Vec<PoolSpec>,
    nodes: Vec<NodeSpec>,
    /// Per app: the PDB's allowed disruptions, or none.
    pdbs: Vec<Option<i32>>,
    pending: Vec<PodSpec>,
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        prop::sample::select(vec![100i64, 250, 500, 1000, 1500]),
        prop::sample::select(vec![128i64, 512, 1024, 2048]),
        0..APPS.len(),
        prop::bool::weighted(0.08),
    )
        .prop_map(|(cpu_millis, memory_mib, app, do_not_disrupt)| PodSpec {
            cpu_millis,
            memory_mib,
            app,
            do_not_disrupt,
        })
}

fn cluster_spec() -> impl Strategy<Value = ClusterSpec> {
    let pool = (
        prop::sample::select(vec!["WhenEmpty", "WhenEmptyOrUnderutilized", "Balanced"]),
        prop::collection::vec(
            prop::sample::select(vec!["0", "1", "2", "3", "10%", "50%", "100%"]),
            1..=2,
        ),
    )
        .prop_map(|(policy, budgets)| PoolSpec { policy, budgets });
    (
        prop::collection::vec(pool, 1..=2),
        prop::collection::vec(
            (
                0..2usize,
                0..TYPES.len(),
                prop::bool::weighted(0.3),
                prop::bool::weighted(0.05),
                // Mostly busy nodes: an empty node makes the pass emptiness's alone.
                (
                    prop::bool::weighted(0.08),
                    prop::collection::vec(pod_spec(), 1..=6),
                )
                    .prop_map(|(empty, pods)| if empty { Vec::new() } else { pods }),
            ),
            1..=10,
        ),
        prop::collection::vec(prop::option::weighted(0.6, 0..=2i32), APPS.len()),
        prop::collection::vec(pod_spec(), 0..=2),
    )
        .prop_map(|(pools, nodes, pdbs, pending)| {
            let pool_count = pools.len();
            ClusterSpec {
                nodes: nodes
                    .into_iter()
                    .map(|(pool, instance_type, spot, do_not_disrupt, pods)| NodeSpec {
                        pool: pool % pool_count,
                        instance_type,
                        spot,
                        do_not_disrupt,
                        pods,
                    })
                    .collect(),
                pools,
                pdbs,
                pending,
            }
        })
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// The objects a pass reads, built from a spec.
struct Cluster {
    claims: Vec<Arc<NodeClaim>>,
    nodes: Vec<Arc<Node>>,
    pods: Vec<Arc<Pod>>,
    pools: Vec<Arc<NodePool>>,
    pdbs: Vec<Arc<PodDisruptionBudget>>,
    problem: Problem,
}

fn pod(name: &str, node: Option<&str>, spec: &PodSpec) -> Pod {
    let annotations = if spec.do_not_disrupt {
        json!({ "karpenter.sh/do-not-disrupt": "true" })
    } else {
        json!({})
    };
    let status = if node.is_some() {
        json!({ "phase": "Running", "startTime": "2026-01-05T10:00:00Z",
                "conditions": [{ "type": "Ready", "status": "True" }] })
    } else {
        json!({ "phase": "Pending",
                "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable" }] })
    };
    decode(json!({
        "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                      "labels": { "app": APPS[spec.app] }, "annotations": annotations },
        "spec": { "nodeName": node, "containers": [{ "name": "c", "resources": { "requests": {
            "cpu": format!("{}m", spec.cpu_millis), "memory": format!("{}Mi", spec.memory_mib) } } }] },
        "status": status
    }))
}

/// The NodeClaim and Node of node `i`: initialized, Ready, labelled as Karpenter labels them.
fn claim_and_node(i: usize, n: &NodeSpec) -> (Arc<NodeClaim>, Node) {
    let name = format!("node-{i}");
    let (type_name, cpu, gib, _) = TYPES[n.instance_type];
    let pool = format!("pool-{}", n.pool);
    let capacity_type = if n.spot { "spot" } else { "on-demand" };
    let provider_id = format!("aws:///{ZONE}/i-{i}");
    let claim = Arc::new(decode::<NodeClaim>(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": { "name": format!("claim-{i}"), "labels": { "karpenter.sh/nodepool": pool } },
        "spec": { "requirements": [], "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } },
        "status": { "providerID": provider_id, "conditions": [{ "type": "Initialized", "status": "True",
            "reason": "Initialized", "message": "", "lastTransitionTime": "2026-01-05T09:00:00Z" }] }
    })));
    let annotations = if n.do_not_disrupt {
        json!({ "karpenter.sh/do-not-disrupt": "true" })
    } else {
        json!({})
    };
    let allocatable = json!({ "cpu": format!("{cpu}m"), "memory": format!("{gib}Gi"), "pods": "110" });
    let node = decode(json!({
        "metadata": { "name": name, "annotations": annotations, "labels": {
            "karpenter.sh/nodepool": pool, "node.kubernetes.io/instance-type": type_name,
            "topology.kubernetes.io/zone": ZONE, "karpenter.sh/capacity-type": capacity_type,
            "kubernetes.io/hostname": name, "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
            "karpenter.sh/registered": "true", "karpenter.sh/initialized": "true" } },
        "spec": { "providerID": provider_id },
        "status": { "allocatable": allocatable, "capacity": allocatable,
                    "conditions": [{ "type": "Ready", "status": "True" }] }
    }));
    (claim, node)
}

fn build(spec: &ClusterSpec) -> Cluster {
    let pools: Vec<Arc<NodePool>> = spec
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let budgets: Vec<Value> = p.budgets.iter().map(|n| json!({ "nodes": n })).collect();
            Arc::new(decode(json!({
                "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
                "metadata": { "name": format!("pool-{i}"), "uid": format!("pool-uid-{i}") },
                "spec": {
                    "template": { "spec": {
                        "requirements": [{ "key": "karpenter.sh/capacity-type", "operator": "In",
                                           "values": ["on-demand", "spot"] }],
                        "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } } },
                    "disruption": { "consolidationPolicy": p.policy, "consolidateAfter": "0s", "budgets": budgets }
                }
            })))
        })
        .collect();
    let mut claims = Vec::new();
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    let mut existing = Vec::new();
    for (i, n) in spec.nodes.iter().enumerate() {
        let name = format!("node-{i}");
        let (claim, node) = claim_and_node(i, n);
        claims.push(claim);
        let mut on_node = Vec::new();
        for (j, p) in n.pods.iter().enumerate() {
            let bound = pod(&format!("pod-{i}-{j}"), Some(&name), p);
            on_node.push(bound.clone());
            pods.push(Arc::new(bound));
        }
        let mut model = existing_node(node.clone());
        model.pods = on_node;
        existing.push(model);
        nodes.push(Arc::new(node));
    }
    let pending: Vec<Pod> = spec
        .pending
        .iter()
        .enumerate()
        .map(|(j, p)| pod(&format!("pending-{j}"), None, p))
        .collect();
    pods.extend(pending.iter().cloned().map(Arc::new));
    let pdbs = spec
        .pdbs
        .iter()
        .enumerate()
        .filter_map(|(app, allowed)| {
            let allowed = (*allowed)?;
            Some(Arc::new(decode::<PodDisruptionBudget>(json!({
                "metadata": { "name": APPS[app], "namespace": "default" },
                "spec": { "maxUnavailable": allowed, "selector": { "matchLabels": { "app": APPS[app] } } },
                "status": { "disruptionsAllowed": allowed, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3 }
            }))))
        })
        .collect();
    let problem = Problem {
        pods: pending,
        nodepools: pools
            .iter()
            .map(|p| PoolInput {
                nodepool: (**p).clone(),
                instance_types: catalogue(),
                in_use: Resources::default(),
            })
            .collect(),
        existing_nodes: existing,
        ..Problem::default()
    };
    Cluster {
        claims,
        nodes,
        pods,
        pools,
        pdbs,
        problem,
    }
}

/// One pass's decision: the reason, the nodes removed, the replacements' price.
struct Plan {
    reason: DisruptionReason,
    removed: Vec<Candidate>,
    replacement_price: Price,
}

fn decide(cluster: &Cluster, now: Timestamp) -> Option<Plan> {
    let inputs = Inputs {
        claims: &cluster.claims,
        nodes: &cluster.nodes,
        pods: &cluster.pods,
        pools: &cluster.pools,
        pdbs: &cluster.pdbs,
    };
    let evaluations = candidates::evaluate(&inputs, now);
    let all: Vec<&Candidate> = evaluations
        .iter()
        .filter_map(|e| e.outcome.as_ref().ok())
        .collect();
    let counts = pool_nodes(&cluster.claims, &cluster.nodes, &HashSet::new());
    let (empty, _) = consolidation::emptiness(&all, &counts, now);
    if !empty.is_empty() {
        return Some(Plan {
            reason: DisruptionReason::Empty,
            removed: empty,
            replacement_price: Price::ZERO,
        });
    }
    let planned = consolidation::plan(&Request {
        candidates: &all,
        problem: &cluster.problem,
        budgets: consolidation::underutilized_budgets(&cluster.pools, &counts, now),
        now,
        allow_spot_to_spot: true,
    });
    planned.chosen.map(|chosen| Plan {
        reason: DisruptionReason::Underutilized,
        removed: chosen.candidates,
        replacement_price: chosen.replacements.iter().map(|r| r.price).sum(),
    })
}

fn check(spec: &ClusterSpec) -> Result<(), TestCaseError> {
    let cluster = build(spec);
    let now: Timestamp = NOW.parse().unwrap();
    let Some(plan) = decide(&cluster, now) else {
        return Ok(());
    };
    prop_assert!(!plan.removed.is_empty());
    let removed: HashSet<String> = plan.removed.iter().map(Candidate::name).collect();
    let evicted: Vec<&Arc<Pod>> = cluster
        .pods
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| removed.contains(n))
        })
        .collect();
    for node in cluster.nodes.iter().filter(|n| removed.contains(&n.name_any())) {
        prop_assert!(
            !node.annotations().contains_key("karpenter.sh/do-not-disrupt"),
            "removed do-not-disrupt node {}",
            node.name_any()
        );
    }
    for pod in &evicted {
        prop_assert!(
            !pod.annotations().contains_key("karpenter.sh/do-not-disrupt"),
            "evicts do-not-disrupt pod {}",
            pod.name_any()
        );
    }
    for pdb in &cluster.pdbs {
        let app = pdb.name_any();
        let covered = evicted
            .iter()
            .filter(|p| p.labels().get("app") == Some(&app))
            .count();
        let allowed = pdb.status.as_ref().unwrap().disruptions_allowed;
        prop_assert!(
            i32::try_from(covered).unwrap() <= allowed,
            "evicts {covered} pods of PDB {app} allowing {allowed}"
        );
    }
    let counts = pool_nodes(&cluster.claims, &cluster.nodes, &HashSet::new());
    let mut per_pool: HashMap<String, u64> = HashMap::new();
    for candidate in &plan.removed {
        *per_pool.entry(candidate.pool.name_any()).or_default() += 1;
    }
    for (name, taken) in per_pool {
        let pool = cluster.pools.iter().find(|p| p.name_any() == name).unwrap();
        let allowed = budgets::allowed(
            pool,
            plan.reason,
            counts.get(&name).copied().unwrap_or_default(),
            now,
        );
        prop_assert!(
            taken <= allowed,
            "pool {name}: {taken} nodes removed, budget {allowed}"
        );
        if plan.reason == DisruptionReason::Underutilized {
            prop_assert_ne!(
                &pool.spec.disruption.consolidation_policy,
                &ConsolidationPolicy::WhenEmpty,
                "consolidated a WhenEmpty pool"
            );
        }
    }
    let types = catalogue();
    let removed_price: Price = plan
        .removed
        .iter()
        .map(|c| consolidation::price_of(&c.node, &types).unwrap().0)
        .sum();
    match plan.reason {
        DisruptionReason::Empty => {
            prop_assert!(plan.removed.iter().all(Candidate::is_empty));
            prop_assert_eq!(plan.replacement_price, Price::ZERO);
        }
        _ => prop_assert!(
            plan.replacement_price < removed_price,
            "replacements cost {} for {} removed",
            plan.replacement_price,
            removed_price
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        max_shrink_iters: 500,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_plan_breaks_a_pdb_a_do_not_disrupt_or_a_budget_or_raises_cost(spec in cluster_spec()) {
        check(&spec)?;
    }
}

/// The property is not vacuous: on the same random clusters, passes do remove nodes, both
/// empty ones and by consolidation (with and without replacements).
#[test]
fn random_clusters_do_get_plans() {
    use proptest::{strategy::ValueTree, test_runner::TestRunner};
    let mut runner = TestRunner::deterministic();
    let now: Timestamp = NOW.parse().unwrap();
    let (mut empty, mut deleted, mut replaced, mut none) = (0, 0, 0, 0);
    for _ in 0..128 {
        let spec = cluster_spec().new_tree(&mut runner).unwrap().current();
        match decide(&build(&spec), now) {
            None => none += 1,
            Some(plan) if plan.reason == DisruptionReason::Empty => empty += 1,
            Some(plan) if plan.replacement_price == Price::ZERO => deleted += 1,
            Some(_) => replaced += 1,
        }
    }
    eprintln!("empty {empty}, deleted {deleted}, replaced {replaced}, none {none}");
    assert!(
        empty >= 5 && deleted >= 5 && replaced >= 2,
        "empty {empty}, deleted {deleted}, replaced {replaced}, none {none}"
    );
}
