//! The consolidation benchmark (issue 7), printing one JSON object per budget.
//!
//! A synthetic cluster of `--nodes` on-demand nodes (m5/c5/r5 large to 2xlarge, real us-east-1
//! prices, three zones) running `--pods` pods (50 Deployments; CPU 50m–500m, memory 64Mi–1Gi;
//! 1% `do-not-disrupt`; every Deployment's PDB allows 20% of its pods to be disrupted), in one
//! `WhenEmptyOrUnderutilized` NodePool allowing c/m/r types of generation 5 or later (the real
//! catalogue's types for the solver). Node sizes and pod counts are drawn so utilization
//! varies from nearly empty to full.
//!
//! - **ours**: disruption's pure decision as a pass makes it — candidates, budget counts,
//!   emptiness, and [`consolidation::plan`] over every candidate (the search and its verifying
//!   solve) — timed end to end. Building the solver's problem from the objects (the pass's
//!   snapshot) is timed separately.
//! - **baseline**: Karpenter's multi-node consolidation as its code describes it: candidates
//!   within the budget sorted by disruption cost (ascending; the order before v1.14), at most 100
//!   of them, a binary search over the prefix length where each step simulates removing the
//!   prefix with the solver on the whole cluster and accepts a deletion or a single cheaper
//!   replacement.
//!
//! Each decision is then checked by one more solve of the whole cluster (every pod on every other
//! node) that its pods fit.
//!
//! ```sh
//! cargo run --release -p nodewright-controller --example consolidation
//! # options: --nodes 5000 --pods 50000 --budgets 10%,100% --seed 7
//! ```

use std::{
    collections::{BTreeMap, HashSet},
    error::Error,
    sync::Arc,
    time::Instant,
};

use jiff::Timestamp;
use k8s_openapi::api::{
    core::v1::{Node, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::ResourceExt;
use nodewright_api::{NodeClaim, NodePool, labels};
use nodewright_catalog::{Catalog, InstanceType, NodeSettings, Price, Resources};
use nodewright_controller::disruption::{
    candidates::{self, Candidate, Inputs},
    consolidation::{self, Priced, Request},
    pool_nodes,
};
use nodewright_solver::{PoolInput, Problem, manifests::existing_node};
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const NOW: &str = "2026-01-05T12:00:00Z";
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const NODE_TYPES: [&str; 8] = [
    "m5.large",
    "m5.xlarge",
    "m5.2xlarge",
    "c5.large",
    "c5.xlarge",
    "c5.2xlarge",
    "r5.large",
    "r5.xlarge",
];
const APPS: usize = 50;
const CPU_MILLIS: [i64; 4] = [50, 100, 250, 500];
const MEMORY_MIB: [i64; 4] = [64, 256, 512, 1024];
/// Karpenter's multi-node consolidation looks at no more than this many candidates.
const KARPENTER_MAX_CANDIDATES: usize = 100;

struct Args {
    nodes: usize,
    pods: usize,
    budgets: Vec<String>,
    seed: u64,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        nodes: 5000,
        pods: 50_000,
        budgets: vec!["10%".into(), "100%".into()],
        seed: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--nodes" => args.nodes = value.parse()?,
            "--pods" => args.pods = value.parse()?,
            "--budgets" => args.budgets = value.split(',').map(str::to_owned).collect(),
            "--seed" => args.seed = value.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(args)
}

/// xorshift64*: reproducible draws without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap_or(1)).unwrap_or(0)
    }
}

/// This process's CPU time (user + system) from `/proc/self/stat`, in seconds (10 ms ticks);
/// 0 where there is no procfs. On a shared machine it shows what the wall time includes of
/// waiting for a core.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u32>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line: the 12th and 13th after the command.
    (f64::from(ticks(11)) + f64::from(ticks(12))) / 100.0
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    Ok(serde_json::from_value(value)?)
}

fn nodepool(budget: &str) -> Result<NodePool> {
    decode(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": { "name": "default", "uid": "pool-uid" },
        "spec": {
            "template": { "spec": {
                "requirements": [
                    { "key": labels::CAPACITY_TYPE, "operator": "In", "values": ["on-demand"] },
                    { "key": labels::AWS_INSTANCE_CATEGORY, "operator": "In", "values": ["c", "m", "r"] },
                    { "key": labels::AWS_INSTANCE_GENERATION, "operator": "Gt", "values": ["4"] }
                ],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } } },
            "disruption": { "consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "0s",
                            "budgets": [{ "nodes": budget }] }
        }
    }))
}

/// The cluster's objects.
struct Cluster {
    claims: Vec<Arc<NodeClaim>>,
    nodes: Vec<Arc<Node>>,
    pods: Vec<Arc<Pod>>,
    pdbs: Vec<Arc<PodDisruptionBudget>>,
}

fn generate(args: &Args, catalogue: &Catalog) -> Result<Cluster> {
    let mut rng = Rng(args.seed.max(1));
    let mut claims = Vec::with_capacity(args.nodes);
    let mut nodes = Vec::with_capacity(args.nodes);
    let mut pods = Vec::with_capacity(args.pods);
    let mut per_app = [0usize; APPS];
    let mut left = args.pods;
    for i in 0..args.nodes {
        let type_name = NODE_TYPES[rng.below(NODE_TYPES.len())];
        let instance_type = catalogue
            .get(type_name)
            .ok_or(format!("{type_name} not in the catalogue"))?;
        let zone = ZONES[rng.below(ZONES.len())];
        let name = format!("node-{i:05}");
        let provider_id = format!("aws:///{zone}/i-{i:017x}");
        claims.push(Arc::new(decode::<NodeClaim>(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": { "name": format!("default-{i:05}"), "labels": { labels::NODE_POOL: "default" } },
            "spec": { "requirements": [], "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } },
            "status": { "providerID": provider_id, "conditions": [{ "type": "Initialized", "status": "True",
                "reason": "Initialized", "message": "", "lastTransitionTime": "2026-01-05T09:00:00Z" }] }
        }))?));
        let allocatable = instance_type.allocatable();
        let mut node_labels: BTreeMap<String, String> = instance_type.labels.clone();
        node_labels.insert(labels::NODE_POOL.into(), "default".into());
        node_labels.insert(labels::ZONE.into(), zone.into());
        node_labels.insert(labels::CAPACITY_TYPE.into(), "on-demand".into());
        node_labels.insert(labels::HOSTNAME.into(), name.clone());
        let quantities = json!({ "cpu": format!("{}m", allocatable.cpu_millis),
            "memory": format!("{}", allocatable.memory_bytes), "pods": format!("{}", allocatable.pods) });
        nodes.push(Arc::new(decode::<Node>(json!({
            "metadata": { "name": name, "labels": node_labels },
            "spec": { "providerID": provider_id },
            "status": { "allocatable": quantities, "capacity": quantities,
                        "conditions": [{ "type": "Ready", "status": "True" }] }
        }))?));
        // Pods for this node: an even share of what is left, ±60%, while they fit.
        let share = left / (args.nodes - i);
        let wanted = if i + 1 == args.nodes {
            left
        } else {
            (share * (40 + rng.below(121)) / 100).min(left)
        };
        let mut used = Resources::default();
        for j in 0..wanted {
            let cpu = CPU_MILLIS[rng.below(CPU_MILLIS.len())];
            let memory = MEMORY_MIB[rng.below(MEMORY_MIB.len())] << 20;
            let (cpu, memory) = if used.cpu_millis + cpu <= allocatable.cpu_millis
                && used.memory_bytes + memory <= allocatable.memory_bytes
            {
                (cpu, memory)
            } else {
                (10, 16 << 20)
            };
            used.cpu_millis += cpu;
            used.memory_bytes += memory;
            let app = rng.below(APPS);
            per_app[app] += 1;
            let annotations = if rng.below(100) == 0 {
                json!({ "karpenter.sh/do-not-disrupt": "true" })
            } else {
                json!({})
            };
            pods.push(Arc::new(decode::<Pod>(json!({
                "metadata": { "name": format!("app-{app}-{i}-{j}"), "namespace": "default",
                    "uid": format!("uid-{i}-{j}"), "labels": { "app": format!("app-{app}") },
                    "annotations": annotations },
                "spec": { "nodeName": name, "containers": [{ "name": "c", "resources": { "requests": {
                    "cpu": format!("{cpu}m"), "memory": format!("{memory}") } } }] },
                "status": { "phase": "Running", "startTime": "2026-01-05T09:00:00Z",
                    "conditions": [{ "type": "Ready", "status": "True" }] }
            }))?));
        }
        left -= wanted;
    }
    let pdbs = (0..APPS)
        .map(|app| {
            let allowed = i32::try_from(per_app[app] / 5).unwrap_or(i32::MAX);
            decode::<PodDisruptionBudget>(json!({
                "metadata": { "name": format!("app-{app}"), "namespace": "default" },
                "spec": { "maxUnavailable": "20%", "selector": { "matchLabels": { "app": format!("app-{app}") } } },
                "status": { "disruptionsAllowed": allowed, "currentHealthy": per_app[app],
                            "desiredHealthy": per_app[app] - per_app[app] / 5, "expectedPods": per_app[app] }
            }))
            .map(Arc::new)
        })
        .collect::<Result<_>>()?;
    Ok(Cluster {
        claims,
        nodes,
        pods,
        pdbs,
    })
}

fn problem(cluster: &Cluster, pool: &NodePool, types: &[InstanceType]) -> Problem {
    let mut by_node: BTreeMap<&str, Vec<Pod>> = BTreeMap::new();
    for pod in &cluster.pods {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            by_node.entry(node).or_default().push((**pod).clone());
        }
    }
    Problem {
        nodepools: vec![PoolInput {
            nodepool: pool.clone(),
            instance_types: types.to_vec(),
            in_use: Resources::default(),
        }],
        existing_nodes: cluster
            .nodes
            .iter()
            .map(|n| {
                let mut node = existing_node((**n).clone());
                node.pods = by_node.remove(n.name_any().as_str()).unwrap_or_default();
                node
            })
            .collect(),
        ..Problem::default()
    }
}

/// A decision's nodes, replacements and savings.
struct Decision {
    removed: Vec<String>,
    replacements: Vec<String>,
    savings: Price,
}

/// Whether the pods of `removed` fit on the other nodes plus `replacements` new nodes, by a
/// solve of the whole cluster with every pod.
fn fits(base: &Problem, cluster: &Cluster, removed: &[String]) -> (bool, usize) {
    let gone: HashSet<&str> = removed.iter().map(String::as_str).collect();
    let mut problem = base.clone();
    problem.existing_nodes.retain(|n| !gone.contains(n.name.as_str()));
    problem.pods = moved_pods(cluster, &gone);
    let plan = nodewright_solver::solve(&problem);
    (plan.unschedulable.is_empty(), plan.new_nodes.len())
}

fn moved_pods(cluster: &Cluster, gone: &HashSet<&str>) -> Vec<Pod> {
    moved_pods_of(cluster, gone)
        .map(|p| {
            let mut pod = (**p).clone();
            if let Some(spec) = pod.spec.as_mut() {
                spec.node_name = None;
            }
            pod
        })
        .collect()
}

/// How many PDBs the removal of `removed` would take past their allowed disruptions, all its
/// evictions counted together.
fn pdbs_exceeded(cluster: &Cluster, removed: &[String]) -> usize {
    let gone: HashSet<&str> = removed.iter().map(String::as_str).collect();
    let mut evicted: BTreeMap<String, i32> = BTreeMap::new();
    for pod in moved_pods_of(cluster, &gone) {
        if let Some(app) = pod.labels().get("app") {
            *evicted.entry(app.clone()).or_default() += 1;
        }
    }
    cluster
        .pdbs
        .iter()
        .filter(|pdb| {
            let allowed = pdb.status.as_ref().map_or(0, |s| s.disruptions_allowed);
            evicted.get(&pdb.name_any()).copied().unwrap_or(0) > allowed
        })
        .count()
}

fn moved_pods_of<'a>(cluster: &'a Cluster, gone: &'a HashSet<&str>) -> impl Iterator<Item = &'a Arc<Pod>> {
    cluster.pods.iter().filter(|p| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| gone.contains(n))
    })
}

/// Karpenter's multi-node consolidation (see the module docs).
fn karpenter_baseline(
    base: &Problem,
    cluster: &Cluster,
    priced: &[Priced],
    budget: u64,
) -> (Option<Decision>, usize) {
    let mut order: Vec<&Priced> = priced.iter().collect();
    order.sort_by(|a, b| {
        a.disruption
            .total_cmp(&b.disruption)
            .then_with(|| a.candidate.name().cmp(&b.candidate.name()))
    });
    let budget = usize::try_from(budget).unwrap_or(usize::MAX);
    order.truncate(budget.min(KARPENTER_MAX_CANDIDATES + 1));
    let mut simulations = 0;
    if order.len() < 2 {
        return (None, simulations);
    }
    let (mut lo, mut hi) = (1usize, (order.len() - 1).min(KARPENTER_MAX_CANDIDATES));
    let mut best = None;
    while lo <= hi {
        let mid = usize::midpoint(lo, hi);
        let prefix = &order[..=mid];
        simulations += 1;
        let gone: HashSet<&str> = prefix
            .iter()
            .map(|p| p.candidate.node.metadata.name.as_deref().unwrap_or_default())
            .collect();
        let mut problem = base.clone();
        problem.existing_nodes.retain(|n| !gone.contains(n.name.as_str()));
        problem.pods = moved_pods(cluster, &gone);
        let plan = nodewright_solver::solve(&problem);
        let price: Price = prefix.iter().map(|p| p.price).sum();
        let ok = plan.unschedulable.is_empty() && plan.new_nodes.len() <= 1 && plan.total_price < price;
        if ok {
            best = Some(Decision {
                removed: prefix.iter().map(|p| p.candidate.name()).collect(),
                replacements: plan.new_nodes.iter().map(|n| n.instance_type.clone()).collect(),
                savings: Price(price.0 - plan.total_price.0),
            });
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    (best, simulations)
}

fn decision_json(decision: Option<&Decision>) -> Value {
    decision.map_or_else(
        || json!({ "removed": 0, "replacements": [], "savings_usd_per_hour": 0.0 }),
        |d| {
            json!({
                "removed": d.removed.len(),
                "replacements": d.replacements,
                "savings_usd_per_hour": (d.savings.as_usd() * 1e4).round() / 1e4,
            })
        },
    )
}

fn run(args: &Args, budget: &str, catalogue: &Catalog) -> Result<Value> {
    let pool = Arc::new(nodepool(budget)?);
    let cluster = generate(args, catalogue)?;
    let now: Timestamp = NOW.parse()?;
    let started = Instant::now();
    let base = problem(&cluster, &pool, catalogue.instance_types());
    let problem_seconds = started.elapsed().as_secs_f64();

    let pools = [Arc::clone(&pool)];
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let inputs = Inputs {
        claims: &cluster.claims,
        nodes: &cluster.nodes,
        pods: &cluster.pods,
        pools: &pools,
        pdbs: &cluster.pdbs,
    };
    let evaluations = candidates::evaluate(&inputs, now);
    let all: Vec<&Candidate> = evaluations
        .iter()
        .filter_map(|e| e.outcome.as_ref().ok())
        .collect();
    let counts = pool_nodes(&cluster.claims, &cluster.nodes, &HashSet::new());
    let candidates_seconds = started.elapsed().as_secs_f64();
    let (empty, _) = consolidation::emptiness(&all, &counts, now);
    let budgets = consolidation::underutilized_budgets(&pools, &counts, now);
    let budget_nodes = budgets.get("default").copied().unwrap_or(0);
    let planned = consolidation::plan(&Request {
        candidates: &all,
        problem: &base,
        budgets,
        now,
        allow_spot_to_spot: false,
    });
    let ours_seconds = started.elapsed().as_secs_f64();
    let ours_cpu_seconds = cpu_seconds() - cpu_before;
    let ours = planned.chosen.as_ref().map(|c| Decision {
        removed: c.candidates.iter().map(Candidate::name).collect(),
        replacements: c.replacements.iter().map(|r| r.instance_type.clone()).collect(),
        savings: c.savings,
    });

    let priced: Vec<Priced> = all
        .iter()
        .filter(|c| !c.is_empty())
        .filter_map(|c| {
            let (price, _) = consolidation::price_of(&c.node, catalogue.instance_types())?;
            Some(Priced::new((*c).clone(), price, false))
        })
        .collect();
    let started = Instant::now();
    let (baseline, simulations) = karpenter_baseline(&base, &cluster, &priced, budget_nodes);
    let baseline_seconds = started.elapsed().as_secs_f64();

    let check = |d: Option<&Decision>| {
        d.map_or(json!(null), |d| {
            let (ok, new_nodes) = fits(&base, &cluster, &d.removed);
            json!({ "all_pods_fit": ok, "new_nodes": new_nodes,
                    "pdbs_exceeded": pdbs_exceeded(&cluster, &d.removed) })
        })
    };
    let mut refused: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, blocker) in &planned.refused {
        *refused.entry(blocker.reason()).or_default() += 1;
    }
    for evaluation in &evaluations {
        if let Err(blocker) = &evaluation.outcome {
            *refused.entry(blocker.reason()).or_default() += 1;
        }
    }
    let cluster_price: Price = cluster
        .nodes
        .iter()
        .filter_map(|n| consolidation::price_of(n, catalogue.instance_types()).map(|p| p.0))
        .sum();
    let mut ours_json = decision_json(ours.as_ref());
    ours_json["seconds"] = json!(ours_seconds);
    ours_json["cpu_seconds"] = json!((ours_cpu_seconds * 100.0).round() / 100.0);
    ours_json["candidates_seconds"] = json!(candidates_seconds);
    ours_json["empty_nodes"] = json!(empty.len());
    ours_json["check"] = check(ours.as_ref());
    ours_json["kept_by_reason"] = json!(refused);
    let mut baseline_json = decision_json(baseline.as_ref());
    baseline_json["seconds"] = json!(baseline_seconds);
    baseline_json["simulations"] = json!(simulations);
    baseline_json["check"] = check(baseline.as_ref());
    Ok(json!({
        "nodes": cluster.nodes.len(),
        "pods": cluster.pods.len(),
        "cluster_usd_per_hour": (cluster_price.as_usd() * 100.0).round() / 100.0,
        "budget": budget,
        "budget_nodes": budget_nodes,
        "candidates": all.len(),
        "non_empty_candidates": priced.len(),
        "problem_seconds": problem_seconds,
        "ours": ours_json,
        "karpenter_baseline": baseline_json,
    }))
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let catalogue = Catalog::us_east_1(&NodeSettings::default())?;
    for budget in &args.budgets {
        println!("{}", run(&args, budget, &catalogue)?);
    }
    Ok(())
}
