//! Solver behaviour on small problems with hand-checked answers; every plan also passes the
//! independent verifier.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use common::*;
use nodewright_catalog::{CapacityType, Price, Resources};
use nodewright_solver::{ExistingNode, Plan, Problem, solve, verify::verify};
use serde_json::json;

fn solve_checked(problem: &Problem) -> Plan {
    let plan = solve(problem);
    let violations = verify(problem, &plan);
    assert!(violations.is_empty(), "verifier: {violations:#?}");
    assert!(
        plan.lower_bound <= plan.total_price,
        "bound {} above plan {}",
        plan.lower_bound,
        plan.total_price
    );
    plan
}

#[test]
fn cheapest_node_set_for_a_handful_of_pods() {
    // Five 1-cpu/1Gi pods: 5 cpu. c6i.2xlarge (8 cpu, $0.34) holds them; c6i.xlarge + c6i.large
    // (6 cpu, $0.17 + $0.085 = $0.255) is cheaper and is what a cost-minimal plan buys.
    let problem = problem(
        pods("web", 5, "1", "1Gi", json!({ "app": "web" }), json!({})),
        vec![pool(
            "default",
            json!({
                "template": { "spec": { "requirements": [{ "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"] }] } }
            }),
            small_catalog(),
        )],
    );
    let plan = solve_checked(&problem);
    assert!(plan.unschedulable.is_empty());
    assert_eq!(
        plan.total_price,
        Price::from_usd(0.255),
        "{:#?}",
        plan.new_nodes
            .iter()
            .map(|n| &n.instance_type)
            .collect::<Vec<_>>()
    );
    assert!(
        plan.new_nodes
            .iter()
            .all(|n| n.capacity_type == CapacityType::OnDemand)
    );
}

#[test]
fn spot_is_chosen_when_allowed_and_cheaper() {
    let problem = problem(
        pods("web", 4, "1", "1Gi", json!({ "app": "web" }), json!({})),
        vec![pool("default", json!({}), small_catalog())],
    );
    let plan = solve_checked(&problem);
    assert!(
        plan.new_nodes
            .iter()
            .all(|n| n.capacity_type == CapacityType::Spot)
    );
    assert_eq!(
        plan.total_price,
        Price::from_usd(0.17 * 0.4),
        "one c6i.xlarge on spot"
    );
}

#[test]
fn untolerated_taints_and_impossible_requirements_are_explained() {
    let gpu = pool(
        "gpu",
        json!({ "template": { "spec": { "taints": [{ "key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule" }] } }, "weight": 50 }),
        small_catalog(),
    );
    let default = pool(
        "default",
        json!({ "template": { "spec": { "requirements": [{ "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"] }] } } }),
        small_catalog(),
    );
    let arm = pod(
        "arm",
        "1",
        "1Gi",
        json!({}),
        json!({ "nodeSelector": { "kubernetes.io/arch": "arm64" } }),
    );
    let huge = pod("huge", "96", "1Gi", json!({}), json!({}));
    let plan = solve_checked(&problem(vec![arm, huge], vec![gpu, default]));
    assert_eq!(plan.unschedulable.len(), 2);
    let arm_reasons = plan.unschedulable.iter().find(|u| u.pod == 0).unwrap().message();
    assert!(
        arm_reasons.contains("nodepool gpu: taint nvidia.com/gpu=true:NoSchedule not tolerated"),
        "{arm_reasons}"
    );
    assert!(
        arm_reasons.contains("nodepool default: kubernetes.io/arch In [arm64] not satisfied"),
        "{arm_reasons}"
    );
    let huge_reasons = plan.unschedulable.iter().find(|u| u.pod == 1).unwrap().message();
    assert!(huge_reasons.contains("nodepool default: no instance type meeting the requirements has 96 cpu and 1Gi memory allocatable"), "{huge_reasons}");
    assert!(
        plan.new_nodes.is_empty(),
        "nothing is launched for pods that cannot run"
    );
}

#[test]
fn existing_nodes_are_used_first() {
    let mut problem = problem(
        pods("web", 3, "1", "1Gi", json!({ "app": "web" }), json!({})),
        vec![pool("default", json!({}), small_catalog())],
    );
    problem.existing_nodes.push(ExistingNode {
        name: "node-a".into(),
        labels: [
            ("kubernetes.io/hostname", "node-a"),
            ("topology.kubernetes.io/zone", "us-east-1a"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into(),
        allocatable: Resources {
            cpu_millis: 2500,
            memory_bytes: 8 * GIB,
            pods: 110,
            ..Resources::default()
        },
        initialized: true,
        ..ExistingNode::default()
    });
    let plan = solve_checked(&problem);
    assert_eq!(
        plan.existing_placements.len(),
        2,
        "two 1-cpu pods fit in 2.5 free cpu"
    );
    assert_eq!(plan.new_nodes.len(), 1);
    assert_eq!(plan.new_nodes[0].pods.len(), 1);
}

#[test]
fn an_existing_pods_anti_affinity_across_all_namespaces_keeps_pending_pods_out_of_its_zone() {
    // The pending pods live in "default"; the existing pod, in "guard", repels app=web pods in
    // every namespace (namespaceSelector: {}) from its zone. Without the selector it would only
    // repel pods of its own namespace.
    let mut guard = pod(
        "guard-0",
        "100m",
        "128Mi",
        json!({ "app": "guard" }),
        json!({
            "nodeName": "node-a",
            "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{
                "topologyKey": "topology.kubernetes.io/zone",
                "labelSelector": { "matchLabels": { "app": "web" } },
                "namespaceSelector": {}
            }] } }
        }),
    );
    guard.metadata.namespace = Some("guard".into());
    let mut problem = problem(
        pods("web", 3, "1", "1Gi", json!({ "app": "web" }), json!({})),
        vec![pool("default", json!({}), small_catalog())],
    );
    problem.existing_nodes.push(ExistingNode {
        name: "node-a".into(),
        labels: [
            ("kubernetes.io/hostname", "node-a"),
            ("topology.kubernetes.io/zone", "us-east-1a"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into(),
        allocatable: Resources {
            cpu_millis: 8000,
            memory_bytes: 32 * GIB,
            pods: 110,
            ..Resources::default()
        },
        pods: vec![guard],
        initialized: true,
        ..ExistingNode::default()
    });
    let plan = solve_checked(&problem);
    assert!(plan.unschedulable.is_empty());
    assert!(
        plan.existing_placements.is_empty(),
        "node-a is in the repelled zone"
    );
    assert!(!plan.new_nodes.is_empty());
    assert!(
        plan.new_nodes.iter().all(|n| n.zone != "us-east-1a"),
        "{:#?}",
        plan.new_nodes
    );
}

#[test]
fn hostname_anti_affinity_gives_each_pod_its_own_node() {
    let anti = json!({ "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
        { "topologyKey": "kubernetes.io/hostname", "labelSelector": { "matchLabels": { "app": "db" } } }
    ] } } });
    let plan = solve_checked(&problem(
        pods("db", 4, "500m", "1Gi", json!({ "app": "db" }), anti),
        vec![pool("default", json!({}), small_catalog())],
    ));
    assert_eq!(plan.new_nodes.len(), 4);
    assert!(
        plan.new_nodes.iter().all(|n| n.pods.len() == 1
            && n.instance_type
                .split_once('.')
                .is_some_and(|(_, size)| size == "large")),
        "the smallest type suffices"
    );
}

#[test]
fn zone_spread_balances_across_zones() {
    let spread = json!({ "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": { "matchLabels": { "app": "web" } } }] });
    let plan = solve_checked(&problem(
        pods("web", 6, "1", "1Gi", json!({ "app": "web" }), spread),
        vec![pool("default", json!({}), small_catalog())],
    ));
    let mut per_zone = std::collections::BTreeMap::new();
    for node in &plan.new_nodes {
        *per_zone.entry(node.zone.clone()).or_insert(0) += node.pods.len();
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{per_zone:?}"
    );
}

#[test]
fn higher_weight_pools_are_tried_first() {
    // The heavier pool is the dearer one (on-demand, against spot at 40% of the price), so a
    // plan that only chased price would pick the other pool.
    let on_demand = pool(
        "on-demand",
        json!({ "weight": 100, "template": { "spec": { "requirements": [{ "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"] }] } } }),
        small_catalog(),
    );
    let spot = pool(
        "spot",
        json!({ "weight": 10, "template": { "spec": { "requirements": [{ "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"] }] } } }),
        small_catalog(),
    );
    let plan = solve_checked(&problem(
        pods("web", 3, "1", "1Gi", json!({}), json!({})),
        vec![spot, on_demand],
    ));
    assert!(plan.unschedulable.is_empty());
    assert!(!plan.new_nodes.is_empty());
    assert!(
        plan.new_nodes
            .iter()
            .all(|n| n.nodepool == "on-demand" && n.capacity_type == CapacityType::OnDemand),
        "{:#?}",
        plan.new_nodes
    );
}

#[test]
fn limits_cap_new_capacity() {
    let limited = pool("default", json!({ "limits": { "cpu": "8" } }), small_catalog());
    let plan = solve_checked(&problem(
        pods("web", 12, "1", "1Gi", json!({}), json!({})),
        vec![limited],
    ));
    let cpu: i64 = plan
        .new_nodes
        .iter()
        .map(|n| {
            let ty = small_catalog()
                .into_iter()
                .find(|t| t.name == n.instance_type)
                .unwrap();
            ty.capacity.cpu_millis
        })
        .sum();
    assert!(cpu <= 8000, "launched {cpu}m cpu against an 8 cpu limit");
    assert!(!plan.unschedulable.is_empty());
    assert!(
        plan.unschedulable.iter().all(|u| u.message().contains("limits")),
        "{:?}",
        plan.unschedulable[0].message()
    );
}

#[test]
fn preferred_node_affinity_is_relaxed_when_it_cannot_hold() {
    let prefer_arm = json!({ "affinity": { "nodeAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
        { "weight": 10, "preference": { "matchExpressions": [{ "key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"] }] } }
    ] } } });
    let plan = solve_checked(&problem(
        pods("web", 2, "1", "1Gi", json!({}), prefer_arm),
        vec![pool("default", json!({}), small_catalog())],
    ));
    assert!(
        plan.unschedulable.is_empty(),
        "no arm64 type exists, so the preference is dropped"
    );
}

#[test]
fn preferred_anti_affinity_terms_are_dropped_heaviest_first() {
    // Zone anti-affinity (weight 100) can hold for only three pods (three zones); the hostname
    // term (weight 10) can hold for all five. Dropping the heaviest term alone keeps the pods on
    // separate nodes; dropping every preferred term at once would pack pods four and five.
    let anti = json!({ "affinity": { "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
        { "weight": 100, "podAffinityTerm": { "topologyKey": "topology.kubernetes.io/zone", "labelSelector": { "matchLabels": { "app": "cache" } } } },
        { "weight": 10, "podAffinityTerm": { "topologyKey": "kubernetes.io/hostname", "labelSelector": { "matchLabels": { "app": "cache" } } } }
    ] } } });
    let plan = solve_checked(&problem(
        pods("cache", 5, "500m", "1Gi", json!({ "app": "cache" }), anti),
        vec![pool("default", json!({}), small_catalog())],
    ));
    assert!(
        plan.unschedulable.is_empty(),
        "{:?}",
        plan.unschedulable
            .iter()
            .map(nodewright_solver::Unschedulable::message)
            .collect::<Vec<_>>()
    );
    assert_eq!(plan.new_nodes.len(), 5, "{:#?}", plan.new_nodes);
    assert!(plan.new_nodes.iter().all(|n| n.pods.len() == 1));
}

#[test]
fn the_verifier_catches_a_broken_plan() {
    let problem = problem(
        pods("web", 3, "2", "1Gi", json!({}), json!({})),
        vec![pool("default", json!({}), small_catalog())],
    );
    let mut plan = solve(&problem);
    assert!(verify(&problem, &plan).is_empty());
    // Cram every pod onto the first node (a 2-cpu type) and misstate its price.
    let all: Vec<usize> = plan.new_nodes.iter().flat_map(|n| n.pods.clone()).collect();
    plan.new_nodes.truncate(1);
    plan.new_nodes[0].pods = all;
    plan.new_nodes[0].instance_type = "c6i.large".into();
    plan.new_nodes[0].price = Price(1);
    let violations = verify(&problem, &plan);
    assert!(
        violations.iter().any(|v| v.contains("over-committed")),
        "{violations:?}"
    );
    assert!(violations.iter().any(|v| v.contains("price")), "{violations:?}");
}

/// Packing quality, not speed: on Karpenter's benchmark pod sizes the plan stays within 5% of the
/// LP lower bound (the bench records the exact figures).
#[test]
fn generic_pods_pack_close_to_the_lower_bound() {
    let cpus = ["100m", "250m", "500m", "1", "1500m"];
    let memories = ["100Mi", "256Mi", "512Mi", "1Gi", "2Gi", "4Gi"];
    let mut seed = 0x5eed_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % 1_000_003).unwrap()
    };
    let pods = (0..400)
        .map(|i| {
            pod(
                &format!("p{i}"),
                cpus[next() % 5],
                memories[next() % 6],
                json!({}),
                json!({}),
            )
        })
        .collect();
    let on_demand = json!({ "template": { "spec": { "requirements": [
        { "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"] }
    ] } } });
    let plan = solve_checked(&problem(pods, vec![pool("default", on_demand, small_catalog())]));
    assert!(plan.unschedulable.is_empty());
    assert!(
        plan.optimality_gap() < 0.05,
        "gap {:.3}: {} vs bound {}",
        plan.optimality_gap(),
        plan.total_price,
        plan.lower_bound
    );
}

#[test]
fn volumes_pin_pods_to_their_zones() {
    use nodewright_solver::volumes::Volumes;
    let claim = |name: &str, spec: serde_json::Value| {
        serde_json::from_value(json!({ "metadata": { "name": name, "namespace": "default" }, "spec": spec }))
            .unwrap()
    };
    let volumes = Volumes {
        claims: vec![
            claim("data-db-0", json!({ "volumeName": "pv-db-0", "storageClassName": "gp3" })),
            claim("data-db-1", json!({ "storageClassName": "gp3" })),
            claim("data-db-2", json!({ "storageClassName": "eager" })),
        ],
        volumes: vec![serde_json::from_value(json!({ "metadata": { "name": "pv-db-0" }, "spec": { "nodeAffinity": { "required": { "nodeSelectorTerms": [
            { "matchExpressions": [{ "key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1b"] }] }
        ] } } } }))
        .unwrap()],
        storage_classes: vec![
            serde_json::from_value(json!({ "metadata": { "name": "gp3" }, "provisioner": "ebs.csi.aws.com", "volumeBindingMode": "WaitForFirstConsumer",
                "allowedTopologies": [{ "matchLabelExpressions": [{ "key": "topology.kubernetes.io/zone", "values": ["us-east-1c"] }] }] }))
            .unwrap(),
            serde_json::from_value(json!({ "metadata": { "name": "eager" }, "provisioner": "ebs.csi.aws.com", "volumeBindingMode": "Immediate" })).unwrap(),
        ],
    };
    let pods = (0..3)
        .map(|i| {
            let volume = json!({ "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": format!("data-db-{i}") } }] });
            pod(&format!("db-{i}"), "1", "1Gi", json!({ "app": "db" }), volume)
        })
        .collect();
    let mut problem = problem(pods, vec![pool("default", json!({}), small_catalog())]);
    problem.volumes = volumes;
    let plan = solve_checked(&problem);
    let zone_of = |pod: usize| {
        plan.new_nodes
            .iter()
            .find(|n| n.pods.contains(&pod))
            .map(|n| n.zone.as_str())
    };
    assert_eq!(zone_of(0), Some("us-east-1b"), "bound volume's zone");
    assert_eq!(zone_of(1), Some("us-east-1c"), "storage class's allowed zone");
    let reasons = plan
        .unschedulable
        .iter()
        .find(|u| u.pod == 2)
        .expect("the immediate-binding claim blocks db-2")
        .message();
    assert!(reasons.contains("binds immediately"), "{reasons}");
}

#[test]
fn min_values_are_strict_by_default_and_relaxed_on_request() {
    // The catalogue has three families (c6i, m6i, r6i); require four.
    let spec = json!({ "template": { "spec": { "requirements": [
        { "key": "karpenter.k8s.aws/instance-family", "operator": "Exists", "minValues": 4 }
    ] } } });
    let strict = problem(
        pods("web", 1, "1", "1Gi", json!({}), json!({})),
        vec![pool("default", spec.clone(), small_catalog())],
    );
    let plan = solve_checked(&strict);
    assert_eq!(plan.unschedulable.len(), 1);
    assert!(
        plan.unschedulable[0].message().contains("minValues"),
        "{}",
        plan.unschedulable[0].message()
    );

    let mut relaxed = problem(
        pods("web", 1, "1", "1Gi", json!({}), json!({})),
        vec![pool("default", spec, small_catalog())],
    );
    relaxed.options.min_values_policy = nodewright_solver::MinValuesPolicy::BestEffort;
    let plan = solve_checked(&relaxed);
    assert!(plan.unschedulable.is_empty());
    let node = &plan.new_nodes[0];
    assert!(node.min_values_relaxed);
    let family = node
        .requirements
        .iter()
        .find(|r| r.key == "karpenter.k8s.aws/instance-family")
        .unwrap();
    assert_eq!(
        family.min_values,
        Some(3),
        "lowered to the three families that exist"
    );
}

#[test]
fn node_taints_policy_decides_whether_tainted_zones_count() {
    let zones =
        |zones: &[&str]| json!({ "key": "topology.kubernetes.io/zone", "operator": "In", "values": zones });
    let general = pool(
        "general",
        json!({ "template": { "spec": { "requirements": [zones(&["us-east-1a", "us-east-1b"])] } } }),
        small_catalog(),
    );
    let tainted = pool(
        "batch",
        json!({ "template": { "spec": {
            "requirements": [zones(&["us-east-1c"])],
            "taints": [{ "key": "batch", "effect": "NoSchedule" }]
        } } }),
        small_catalog(),
    );
    let spread = |policy: &str| {
        json!({ "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": policy, "labelSelector": { "matchLabels": { "app": "web" } } }] })
    };
    // Ignore (the default): the tainted pool's zone counts, stays empty, and caps the others at one.
    let ignore = problem(
        pods("web", 4, "1", "1Gi", json!({ "app": "web" }), spread("Ignore")),
        vec![general.clone(), tainted.clone()],
    );
    let plan = solve_checked(&ignore);
    assert_eq!(
        plan.unschedulable.len(),
        2,
        "a: 1, b: 1, c: 0 (unreachable) blocks the rest"
    );
    // Honor: only zones of nodes the pods tolerate are domains, so a and b take two each.
    let honor = problem(
        pods("web", 4, "1", "1Gi", json!({ "app": "web" }), spread("Honor")),
        vec![general, tainted],
    );
    let plan = solve_checked(&honor);
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
}

#[test]
fn capacity_reservations_are_used_first_never_overcommitted_and_pinned() {
    use nodewright_catalog::{Offering, Reservation};
    // One reservation with room for two m6i.xlarge in us-east-1a, priced as Karpenter prices them
    // (on-demand / 10,000,000).
    let mut types = small_catalog();
    let xlarge = types.iter_mut().find(|t| t.name == "m6i.xlarge").unwrap();
    xlarge.offerings.push(Offering {
        zone: "us-east-1a".into(),
        capacity_type: CapacityType::Reserved,
        price: Price::from_usd(0.192 / 10_000_000.0),
        available: true,
        reservation: Some(Reservation {
            id: "cr-0123456789".into(),
            capacity: 2,
        }),
    });
    let anti = json!({ "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
        { "topologyKey": "kubernetes.io/hostname", "labelSelector": { "matchLabels": { "app": "db" } } }
    ] } } });
    let plan = solve_checked(&problem(
        pods("db", 3, "3", "8Gi", json!({ "app": "db" }), anti),
        vec![pool("default", json!({}), types)],
    ));
    let reserved: Vec<_> = plan
        .new_nodes
        .iter()
        .filter(|n| n.capacity_type == CapacityType::Reserved)
        .collect();
    assert_eq!(
        reserved.len(),
        2,
        "the reservation holds two nodes, the third falls back"
    );
    for node in reserved {
        assert_eq!(node.zone, "us-east-1a");
        let pinned = |key: &str, value: &str| {
            node.requirements
                .iter()
                .any(|r| r.key == key && r.values == [value])
        };
        assert!(
            pinned("karpenter.sh/capacity-type", "reserved"),
            "{:?}",
            node.requirements
        );
        assert!(
            pinned("karpenter.k8s.aws/capacity-reservation-id", "cr-0123456789"),
            "{:?}",
            node.requirements
        );
    }
}
