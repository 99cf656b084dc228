//! Scheduling benchmark, printing one JSON object per measurement.
//!
//! Workloads (see benches/README.md at the repository root for the figures):
//! 1. Karpenter's own benchmark rebuilt: 400 synthetic instance types and the "diverse" pod mix
//!    (1/5 generic, 1/5 zone spread, 1/5 hostname spread, 1/5 zone self-affinity, 1/5 hostname
//!    anti-affinity; random CPU and memory), 1 to 20,000 pods: pods per second.
//! 2. Cost: our plan's $/h against a first-fit-decreasing baseline implemented here as Karpenter
//!    describes it, and against the LP lower bound.
//! 3. 20,000 pending pods against 10,000 existing nodes.
//!
//! Run: `cargo bench -p nodewright-solver --bench scheduling` (add `-- --quick` for small sizes).

// A benchmark program: it fails loudly, converts between counts and floats for reporting, and
// reads best as one main that runs the workloads in order.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::needless_pass_by_value,
    clippy::items_after_statements,
    clippy::too_many_lines,
    clippy::type_complexity
)]

use std::{collections::BTreeMap, time::Instant};

use k8s_openapi::api::core::v1::Pod;
use nodewright_catalog::{CapacityType, InstanceType, Offering, Overhead, Price, Resources};
use nodewright_solver::{ExistingNode, PoolInput, Problem, solve};
use serde_json::{Value, json};

/// The allocator of the shipped `nodewright` binary (crates/nodewright/src/main.rs), so the
/// figures here are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ZONES: [&str; 3] = ["test-zone-a", "test-zone-b", "test-zone-c"];
const GIB: i64 = 1 << 30;

/// A small deterministic generator (xorshift), so runs are repeatable without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// 400 synthetic types: 10 CPU sizes × 4 memory ratios × 2 architectures × 5 families. Price is
/// $0.025 per vCPU-hour plus $0.004 per GiB-hour, times a family factor (0.90–1.10), arm64 20%
/// cheaper. Every type is offered in three zones, on-demand and spot (spot at 35% of on-demand).
/// Allocatable keeps Karpenter's defaults in spirit: 110 pods, no overhead (as its fake types).
fn synthetic_types() -> Vec<InstanceType> {
    let mut types = Vec::new();
    for (family_index, factor) in [1.0, 0.9, 1.1, 0.95, 1.05].iter().enumerate() {
        for arch in ["amd64", "arm64"] {
            for ratio in [1, 2, 4, 8] {
                for cpu in [1, 2, 4, 8, 16, 32, 48, 64, 96, 128] {
                    let memory = cpu * ratio;
                    let arch_factor = if arch == "arm64" { 0.8 } else { 1.0 };
                    let usd = (0.025 * cpu as f64 + 0.004 * memory as f64) * factor * arch_factor;
                    let name = format!(
                        "f{family_index}{}-r{ratio}.{cpu}x",
                        if arch == "arm64" { "g" } else { "" }
                    );
                    let mut offerings = Vec::new();
                    for zone in ZONES {
                        offerings.push(Offering {
                            zone: zone.into(),
                            capacity_type: CapacityType::OnDemand,
                            price: Price::from_usd(usd),
                            available: true,
                            reservation: None,
                        });
                        offerings.push(Offering {
                            zone: zone.into(),
                            capacity_type: CapacityType::Spot,
                            price: Price::from_usd(usd * 0.35),
                            available: true,
                            reservation: None,
                        });
                    }
                    types.push(InstanceType {
                        name: name.clone(),
                        labels: BTreeMap::from([
                            ("node.kubernetes.io/instance-type".to_owned(), name),
                            ("kubernetes.io/arch".to_owned(), arch.to_owned()),
                            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
                        ]),
                        capacity: Resources {
                            cpu_millis: cpu * 1000,
                            memory_bytes: memory * GIB,
                            pods: 110,
                            ..Resources::default()
                        },
                        overhead: Overhead::default(),
                        offerings,
                    });
                }
            }
        }
    }
    types
}

fn pool(types: Vec<InstanceType>, capacity_types: &[&str]) -> PoolInput {
    let nodepool = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": { "name": "default" },
        "spec": { "template": { "spec": {
            "requirements": [{ "key": "karpenter.sh/capacity-type", "operator": "In", "values": capacity_types }],
            "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
        } } }
    }))
    .unwrap();
    PoolInput {
        nodepool,
        instance_types: types,
        in_use: Resources::default(),
    }
}

fn pod(name: &str, cpu_millis: u64, memory_mib: u64, labels: Value, extra: Value) -> Pod {
    let mut spec = json!({ "containers": [{ "name": "app", "image": "app", "resources": { "requests": { "cpu": format!("{cpu_millis}m"), "memory": format!("{memory_mib}Mi") } } }] });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(
        json!({ "metadata": { "name": name, "namespace": "default", "labels": labels }, "spec": spec }),
    )
    .unwrap()
}

/// Karpenter's random sizes: CPU from {100, 250, 500, 1000, 1500}m, memory from {100, 256, 512,
/// 1024, 2048, 4096}Mi.
fn random_size(rng: &mut Rng) -> (u64, u64) {
    (
        rng.pick(&[100, 250, 500, 1000, 1500]),
        rng.pick(&[100, 256, 512, 1024, 2048, 4096]),
    )
}

/// The diverse mix; each constrained fifth uses ten label groups.
fn diverse_pods(count: usize, rng: &mut Rng) -> Vec<Pod> {
    (0..count)
        .map(|i| {
            let (cpu, memory) = random_size(rng);
            let group = format!("g{}", i % 10);
            let kind = i % 5;
            let app = format!("k{kind}-{group}");
            let selector = json!({ "matchLabels": { "app": app } });
            let extra = match kind {
                1 => json!({ "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector }] }),
                2 => json!({ "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector }] }),
                3 => json!({ "affinity": { "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{ "topologyKey": "topology.kubernetes.io/zone", "labelSelector": selector }] } } }),
                4 => json!({ "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{ "topologyKey": "kubernetes.io/hostname", "labelSelector": selector }] } } }),
                _ => json!({}),
            };
            pod(&format!("p{i}"), cpu, memory, json!({ "app": app }), extra)
        })
        .collect()
}

/// Karpenter-style first-fit-decreasing (baseline, bench code only): pods sorted by CPU then memory
/// descending; each goes to the first open node (fewest pods first) whose remaining candidate types
/// can still hold it, else opens a node that keeps every type able to hold it; at the end each node
/// launches its cheapest remaining type. This is why it buys large nodes: a node keeps accepting
/// pods while the largest type still has room.
fn ffd_baseline(sizes: &[(u64, u64)], types: &[InstanceType]) -> f64 {
    let mut order: Vec<(u64, u64)> = sizes.to_vec();
    order.sort_by(|a, b| b.cmp(a));
    let alloc: Vec<(i64, i64, i64, f64)> = types
        .iter()
        .map(|t| {
            let a = t.allocatable();
            let price = t.cheapest_offering().map_or(f64::INFINITY, |o| o.price.as_usd());
            (a.cpu_millis, a.memory_bytes, a.pods, price)
        })
        .collect();
    struct Node {
        cpu: i64,
        mem: i64,
        pods: i64,
        candidates: Vec<usize>,
    }
    let mut nodes: Vec<Node> = Vec::new();
    for (cpu, mem) in order {
        let (cpu, mem) = (cpu as i64, mem as i64 * 1024 * 1024);
        nodes.sort_by_key(|n| n.pods);
        let fits = |n: &Node, t: usize| {
            alloc[t].0 >= n.cpu + cpu && alloc[t].1 >= n.mem + mem && alloc[t].2 > n.pods
        };
        if let Some(node) = nodes
            .iter_mut()
            .find(|n| n.candidates.iter().any(|t| fits(n, *t)))
        {
            let keep: Vec<usize> = node
                .candidates
                .iter()
                .copied()
                .filter(|t| fits(node, *t))
                .collect();
            node.candidates = keep;
            node.cpu += cpu;
            node.mem += mem;
            node.pods += 1;
            continue;
        }
        let empty = Node {
            cpu: 0,
            mem: 0,
            pods: 0,
            candidates: Vec::new(),
        };
        let candidates: Vec<usize> = (0..alloc.len()).filter(|t| fits(&empty, *t)).collect();
        nodes.push(Node {
            cpu,
            mem,
            pods: 1,
            candidates,
        });
    }
    nodes
        .iter()
        .map(|n| {
            n.candidates
                .iter()
                .map(|t| alloc[*t].3)
                .fold(f64::INFINITY, f64::min)
        })
        .sum()
}

fn measure(problem: &Problem) -> (f64, nodewright_solver::Plan) {
    let start = Instant::now();
    let plan = solve(problem);
    (start.elapsed().as_secs_f64(), plan)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--only NAME` runs one benchmark (diverse, cost or existing-fleet), e.g. under a profiler.
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let runs = |name: &str| only.as_deref().is_none_or(|o| o == name);
    // `--one-thread` keeps every solve on one core (the issue's target is stated per core).
    let parallel = !args.iter().any(|a| a == "--one-thread");
    let options = nodewright_solver::Options {
        parallel,
        ..nodewright_solver::Options::default()
    };
    let types = synthetic_types();
    assert_eq!(types.len(), 400);

    // 1. Throughput on the diverse mix.
    let sizes: &[usize] = if quick {
        &[1, 50, 100, 500, 1000]
    } else {
        &[1, 50, 100, 500, 1000, 2000, 5000, 10_000, 20_000]
    };
    for &count in sizes.iter().filter(|_| runs("diverse")) {
        let mut rng = Rng(0x5eed + count as u64);
        let problem = Problem {
            pods: diverse_pods(count, &mut rng),
            nodepools: vec![pool(types.clone(), &["spot", "on-demand"])],
            options: options.clone(),
            ..Problem::default()
        };
        let (seconds, plan) = measure(&problem);
        let placed = count - plan.unschedulable.len();
        println!(
            "{}",
            json!({ "benchmark": "diverse", "threads": if parallel { 2 } else { 1 }, "pods": count, "seconds": seconds, "pods_per_second": count as f64 / seconds,
                    "placed": placed, "nodes": plan.new_nodes.len(), "usd_per_hour": plan.total_price.as_usd(),
                    "lower_bound_usd_per_hour": plan.lower_bound.as_usd() })
        );
    }

    // 2. Cost against the FFD baseline and the lower bound, generic pods (no constraints),
    // on-demand only so prices are comparable.
    let workloads: Vec<(&str, Box<dyn Fn(&mut Rng) -> (u64, u64)>)> = vec![
        ("uniform 1cpu/2Gi", Box::new(|_| (1000, 2048))),
        ("karpenter random sizes", Box::new(random_size)),
        (
            "heterogeneous: cpu-heavy, memory-heavy, small",
            Box::new(|rng: &mut Rng| rng.pick(&[(3500, 1024), (500, 14_336), (250, 512), (1500, 6144)])),
        ),
    ];
    let on_demand: Vec<InstanceType> = types
        .iter()
        .cloned()
        .map(|mut t| {
            t.offerings.retain(|o| o.capacity_type == CapacityType::OnDemand);
            t
        })
        .collect();
    for (name, size) in workloads.iter().filter(|_| runs("cost")) {
        for count in [200usize, 2000] {
            let mut rng = Rng(0xc0 + count as u64);
            let sizes: Vec<(u64, u64)> = (0..count).map(|_| size(&mut rng)).collect();
            let pods = sizes
                .iter()
                .enumerate()
                .map(|(i, (c, m))| pod(&format!("p{i}"), *c, *m, json!({}), json!({})))
                .collect();
            let problem = Problem {
                pods,
                nodepools: vec![pool(on_demand.clone(), &["on-demand"])],
                ..Problem::default()
            };
            let (seconds, plan) = measure(&problem);
            let ffd = ffd_baseline(&sizes, &on_demand);
            let ours = plan.total_price.as_usd();
            println!(
                "{}",
                json!({ "benchmark": "cost", "workload": name, "pods": count, "seconds": seconds,
                        "usd_per_hour": ours, "ffd_usd_per_hour": ffd, "lower_bound_usd_per_hour": plan.lower_bound.as_usd(),
                        "saving_vs_ffd": 1.0 - ours / ffd, "gap_to_lower_bound": plan.optimality_gap() })
            );
        }
    }

    // 2b. The real catalogue: every us-east-1 type (spot and on-demand; spot prices modelled) in a
    // three-zone cluster, with a realistic mix: web pods spread over zones, APIs, batch workers, memory-heavy
    // caches one per node, and GPU pods on a tainted GPU pool.
    if runs("catalogue") {
        let catalog =
            nodewright_catalog::Catalog::us_east_1(&nodewright_catalog::NodeSettings::default()).unwrap();
        let all_types: Vec<InstanceType> = catalog.instance_types().to_vec();
        let general: nodewright_api::NodePool = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": { "name": "general" },
            "spec": { "template": { "spec": {
                "requirements": [
                    { "key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a", "us-east-1b", "us-east-1c"] },
                    { "key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m", "r"] },
                    { "key": "karpenter.k8s.aws/instance-generation", "operator": "Gt", "values": ["4"] }
                ],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
            } } }
        }))
        .unwrap();
        let gpu: nodewright_api::NodePool = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": { "name": "gpu" },
            "spec": { "template": { "spec": {
                "requirements": [
                    { "key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a", "us-east-1b", "us-east-1c"] },
                    { "key": "karpenter.k8s.aws/instance-gpu-manufacturer", "operator": "In", "values": ["nvidia"] }
                ],
                "taints": [{ "key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule" }],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
            } } }
        }))
        .unwrap();
        for count in [1000usize, 5000] {
            let mut rng = Rng(0xa55 + count as u64);
            let pods: Vec<Pod> = (0..count)
                .map(|i| {
                    let name = format!("p{i}");
                    match i % 10 {
                        0..=3 => pod(&name, 500, 1024, json!({ "app": "web" }), json!({ "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": { "matchLabels": { "app": "web" } } }] })),
                        4..=6 => { let (c, m) = random_size(&mut rng); pod(&name, c * 2, m * 2, json!({ "app": "api" }), json!({})) }
                        7 => pod(&name, 4000, 8192, json!({ "app": "batch" }), json!({})),
                        8 => pod(&name, 1000, 16_384, json!({ "app": "cache" }), json!({ "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{ "topologyKey": "kubernetes.io/hostname", "labelSelector": { "matchLabels": { "app": "cache" } } }] } } })),
                        _ => {
                            let mut p = pod(&name, 4000, 16_384, json!({ "app": "train" }), json!({ "tolerations": [{ "key": "nvidia.com/gpu", "operator": "Exists" }] }));
                            let container = &mut p.spec.as_mut().unwrap().containers[0];
                            container.resources.as_mut().unwrap().limits = Some([("nvidia.com/gpu".to_owned(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()))].into());
                            p
                        }
                    }
                })
                .collect();
            let problem = Problem {
                pods,
                nodepools: vec![
                    PoolInput {
                        nodepool: general.clone(),
                        instance_types: all_types.clone(),
                        in_use: Resources::default(),
                    },
                    PoolInput {
                        nodepool: gpu.clone(),
                        instance_types: all_types.clone(),
                        in_use: Resources::default(),
                    },
                ],
                ..Problem::default()
            };
            let (seconds, plan) = measure(&problem);
            if std::env::var_os("SHOW_UNSCHEDULABLE").is_some() {
                for u in plan.unschedulable.iter().take(3) {
                    eprintln!(
                        "{}: {}",
                        problem.pods[u.pod].metadata.labels.as_ref().unwrap()["app"],
                        u.message()
                    );
                }
            }
            println!(
                "{}",
                json!({ "benchmark": "catalogue", "instance_types": all_types.len(), "pods": count, "seconds": seconds,
                        "pods_per_second": count as f64 / seconds, "placed": count - plan.unschedulable.len(),
                        "nodes": plan.new_nodes.len(), "usd_per_hour": plan.total_price.as_usd(),
                        "lower_bound_usd_per_hour": plan.lower_bound.as_usd(), "gap_to_lower_bound": plan.optimality_gap() })
            );
        }
    }

    // 3. Pending pods against a large existing fleet (Karpenter took 27 minutes on this).
    if !runs("existing-fleet") {
        return;
    }
    let (pending, existing) = if quick { (2000, 1000) } else { (20_000, 10_000) };
    let mut rng = Rng(0xfee7);
    let existing_nodes: Vec<ExistingNode> = (0..existing)
        .map(|i| {
            let (cpu, memory) = random_size(&mut rng);
            let name = format!("node-{i:05}");
            ExistingNode {
                name: name.clone(),
                labels: BTreeMap::from([
                    ("kubernetes.io/hostname".to_owned(), name.clone()),
                    ("topology.kubernetes.io/zone".to_owned(), ZONES[i % 3].to_owned()),
                    ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
                ]),
                allocatable: Resources {
                    cpu_millis: 2000,
                    memory_bytes: 8 * GIB,
                    pods: 110,
                    ..Resources::default()
                },
                pods: vec![pod(
                    &format!("running-{i}"),
                    cpu * 3 / 2,
                    memory * 2,
                    json!({ "app": "running" }),
                    json!({}),
                )],
                initialized: true,
                ..ExistingNode::default()
            }
        })
        .collect();
    let problem = Problem {
        pods: diverse_pods(pending, &mut rng),
        nodepools: vec![pool(types.clone(), &["spot", "on-demand"])],
        existing_nodes,
        options: options.clone(),
        ..Problem::default()
    };
    let (seconds, plan) = measure(&problem);
    println!(
        "{}",
        json!({ "benchmark": "existing-fleet", "pending_pods": pending, "existing_nodes": existing, "seconds": seconds,
                "on_existing": plan.existing_placements.len(), "new_nodes": plan.new_nodes.len(), "unschedulable": plan.unschedulable.len() })
    );
}
