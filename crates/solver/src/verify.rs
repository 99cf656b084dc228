//! An independent check of a [`Plan`] against every hard constraint, written separately from the
//! solver and as plainly as possible (string labels, no interning, no shared placement code), so a
//! solver bug does not hide itself.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Taint;
use nodewright_api::{Operator, labels};
use nodewright_catalog::Resources;

use crate::{
    Plan,
    pod::{PodFacts, Term, WhenUnsatisfiable, tolerates},
    problem::Problem,
};

/// A node in the final picture: existing or new.
struct NodeView {
    name: String,
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
    allocatable: Resources,
    pods: Vec<usize>,
    existing_pods: Vec<PodFacts>,
}

fn term_holds(term: &Term, labels: &BTreeMap<String, String>) -> bool {
    let value = labels
        .get(labels::normalize_label_key(&term.key))
        .or_else(|| labels.get(&term.key));
    let number = |v: &str| v.parse::<i64>().ok();
    let bound = term.values.first().and_then(|v| number(v));
    match term.operator {
        Operator::In => value.is_some_and(|v| term.values.contains(v)),
        Operator::NotIn => value.is_none_or(|v| !term.values.contains(v)),
        Operator::Exists => value.is_some(),
        Operator::DoesNotExist => value.is_none(),
        Operator::Gt => matches!((value.and_then(|v| number(v)), bound), (Some(v), Some(b)) if v > b),
        Operator::Lt => matches!((value.and_then(|v| number(v)), bound), (Some(v), Some(b)) if v < b),
        Operator::Gte => matches!((value.and_then(|v| number(v)), bound), (Some(v), Some(b)) if v >= b),
        Operator::Lte => matches!((value.and_then(|v| number(v)), bound), (Some(v), Some(b)) if v <= b),
    }
}

fn domain(node: &NodeView, key: &str) -> Option<String> {
    if key == labels::HOSTNAME {
        Some(node.name.clone())
    } else {
        node.labels.get(key).cloned()
    }
}

/// Every hard constraint the plan breaks; empty when it is sound.
#[allow(clippy::too_many_lines)] // a flat list of checks reads best in one place
pub fn verify(problem: &Problem, plan: &Plan) -> Vec<String> {
    let mut violations = Vec::new();
    let volume_index = crate::volumes::VolumeIndex::new(&problem.volumes);
    let facts: Vec<PodFacts> = problem
        .pods
        .iter()
        .map(|p| PodFacts::from_pod_with_volumes(p, &volume_index))
        .collect();
    let daemons: Vec<PodFacts> = problem.daemonset_pods.iter().map(PodFacts::from_pod).collect();
    let mut seen = vec![0usize; facts.len()];

    let mut nodes: Vec<NodeView> = Vec::new();
    for node in &problem.existing_nodes {
        nodes.push(NodeView {
            name: node
                .labels
                .get(labels::HOSTNAME)
                .cloned()
                .unwrap_or_else(|| node.name.clone()),
            labels: node.labels.clone(),
            taints: node.taints.clone(),
            allocatable: node.allocatable.clone(),
            pods: Vec::new(),
            existing_pods: node.pods.iter().map(PodFacts::from_pod).collect(),
        });
    }
    for (pod, node_name) in &plan.existing_placements {
        seen[*pod] += 1;
        match problem.existing_nodes.iter().position(|n| &n.name == node_name) {
            Some(i) => nodes[i].pods.push(*pod),
            None => violations.push(format!("pod {pod} placed on unknown node {node_name}")),
        }
    }
    let mut pool_capacity: HashMap<String, Resources> = HashMap::new();
    let mut reservations: HashMap<String, (u32, u32)> = HashMap::new();
    for (i, new_node) in plan.new_nodes.iter().enumerate() {
        let Some(pool) = problem
            .nodepools
            .iter()
            .find(|p| p.nodepool.metadata.name.as_deref() == Some(new_node.nodepool.as_str()))
        else {
            violations.push(format!(
                "new node {i} uses unknown nodepool {}",
                new_node.nodepool
            ));
            continue;
        };
        let Some(ty) = pool
            .instance_types
            .iter()
            .find(|t| t.name == new_node.instance_type)
        else {
            violations.push(format!(
                "new node {i} uses instance type {} its nodepool does not offer",
                new_node.instance_type
            ));
            continue;
        };
        let offering = ty
            .offerings
            .iter()
            .find(|o| o.zone == new_node.zone && o.capacity_type == new_node.capacity_type);
        match offering {
            Some(o) if o.available && o.price == new_node.price => {}
            Some(o) if !o.available => violations.push(format!(
                "new node {i}: offering {} {} is unavailable",
                new_node.zone,
                new_node.capacity_type.label()
            )),
            Some(o) => violations.push(format!(
                "new node {i}: price {} differs from the offering's {}",
                new_node.price, o.price
            )),
            None => violations.push(format!(
                "new node {i}: {} has no offering in {} as {}",
                ty.name,
                new_node.zone,
                new_node.capacity_type.label()
            )),
        }
        let mut node_labels = ty.labels.clone();
        node_labels.insert(labels::ZONE.into(), new_node.zone.clone());
        node_labels.insert(
            labels::CAPACITY_TYPE.into(),
            new_node.capacity_type.label().into(),
        );
        node_labels.insert(labels::NODE_POOL.into(), new_node.nodepool.clone());
        if let Some(reservation) = offering.and_then(|o| o.reservation.as_ref()) {
            node_labels.insert(labels::AWS_CAPACITY_RESERVATION_ID.into(), reservation.id.clone());
            let used = reservations
                .entry(reservation.id.clone())
                .or_insert((0, reservation.capacity));
            used.0 += 1;
        }
        node_labels.extend(pool.nodepool.spec.template.metadata.labels.clone());
        for r in &new_node.requirements {
            let term = Term {
                key: r.key.clone(),
                operator: r.operator,
                values: r.values.clone(),
            };
            if !term_holds(&term, &node_labels) {
                violations.push(format!(
                    "new node {i} ({}): its own requirement {} {:?} {:?} does not hold",
                    ty.name, r.key, r.operator, r.values
                ));
            }
        }
        for r in &pool.nodepool.spec.template.spec.requirements {
            let term = Term {
                key: r.key.clone(),
                operator: r.operator,
                values: r.values.clone(),
            };
            if !term_holds(&term, &node_labels) {
                violations.push(format!(
                    "new node {i} ({}): nodepool requirement {} does not hold",
                    ty.name, r.key
                ));
            }
        }
        let capacity = pool_capacity.entry(new_node.nodepool.clone()).or_default();
        capacity.add_assign(&ty.capacity);
        capacity.set("nodes", capacity.get("nodes") + 1);
        // DaemonSet pods that would run here take their share first.
        let taints = &pool.nodepool.spec.template.spec.taints;
        let overhead = daemons
            .iter()
            .filter(|d| {
                taints
                    .iter()
                    .all(|t| t.effect == "PreferNoSchedule" || tolerates(&d.tolerations, t))
                    && d.required_terms
                        .iter()
                        .any(|term| term.iter().all(|t| term_holds(t, &node_labels)))
            })
            .fold(Resources::default(), |acc, d| acc.plus(&d.requests));
        let allocatable = ty.allocatable().minus(&overhead);
        for pod in &new_node.pods {
            seen[*pod] += 1;
        }
        nodes.push(NodeView {
            name: format!("new-node-{i}"),
            labels: node_labels,
            taints: pool.nodepool.spec.template.spec.taints.clone(),
            allocatable,
            pods: new_node.pods.clone(),
            existing_pods: Vec::new(),
        });
    }
    for u in &plan.unschedulable {
        seen[u.pod] += 1;
        if u.reasons.is_empty() {
            violations.push(format!("pod {} is unschedulable without a reason", u.pod));
        }
    }
    for (pod, count) in seen.iter().enumerate() {
        if *count != 1 {
            violations.push(format!(
                "pod {pod} ({}) appears {count} times in the plan",
                facts[pod].name
            ));
        }
    }

    for (id, (used, capacity)) in &reservations {
        if used > capacity {
            violations.push(format!(
                "capacity reservation {id} holds {capacity} instances, the plan uses {used}"
            ));
        }
    }

    // Limits per NodePool.
    for pool in &problem.nodepools {
        let name = pool.nodepool.metadata.name.clone().unwrap_or_default();
        let used = pool_capacity
            .get(&name)
            .cloned()
            .unwrap_or_default()
            .plus(&pool.in_use);
        for (resource, limit) in &pool.nodepool.spec.limits {
            let limit = nodewright_api::quantity::parse_resource(resource, &limit.0);
            if let Ok(limit) = limit
                && i128::from(used.get(resource)) > limit
            {
                violations.push(format!("nodepool {name}: {resource} limit exceeded"));
            }
        }
    }

    for node in &nodes {
        // Resources, taints, node requirements and host ports.
        let mut total = node
            .existing_pods
            .iter()
            .fold(Resources::default(), |acc, p| acc.plus(&p.requests));
        let mut ports: Vec<&crate::pod::HostPort> =
            node.existing_pods.iter().flat_map(|p| &p.host_ports).collect();
        for &pod in &node.pods {
            let f = &facts[pod];
            total.add_assign(&f.requests);
            for taint in node.taints.iter().filter(|t| t.effect != "PreferNoSchedule") {
                if !tolerates(&f.tolerations, taint) {
                    violations.push(format!(
                        "pod {} on {} does not tolerate taint {}",
                        f.name, node.name, taint.key
                    ));
                }
            }
            if !f
                .required_terms
                .iter()
                .any(|term| term.iter().all(|t| term_holds(t, &node.labels)))
            {
                violations.push(format!(
                    "pod {} on {}: node requirements not met",
                    f.name, node.name
                ));
            }
            for port in &f.host_ports {
                if ports.iter().any(|p| p.conflicts(port)) {
                    violations.push(format!(
                        "pod {} on {}: host port {} taken",
                        f.name, node.name, port.port
                    ));
                }
                ports.push(port);
            }
        }
        if !total.fits_in(&node.allocatable) {
            violations.push(format!(
                "node {} is over-committed: {:?} > {:?}",
                node.name, total, node.allocatable
            ));
        }
    }

    // Topology: required anti-affinity, affinity and DoNotSchedule spread.
    let members = |namespace: &str, selector: &crate::pod::Selector| -> Vec<(usize, Option<usize>)> {
        let mut out = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            for &pod in &node.pods {
                if facts[pod].namespace == namespace && selector.matches(&facts[pod].labels) {
                    out.push((n, Some(pod)));
                }
            }
            for p in &node.existing_pods {
                if p.namespace == namespace && selector.matches(&p.labels) {
                    out.push((n, None));
                }
            }
        }
        out
    };
    for (n, node) in nodes.iter().enumerate() {
        for &pod in &node.pods {
            let f = &facts[pod];
            for term in f.affinity.iter().filter(|a| a.weight.is_none()) {
                let Some(here) = domain(node, &term.topology_key) else {
                    continue;
                };
                let matching: Vec<(usize, Option<usize>)> = members(&f.namespace, &term.selector)
                    .into_iter()
                    .filter(|(m, p)| {
                        *p != Some(pod)
                            && domain(&nodes[*m], &term.topology_key).as_deref() == Some(here.as_str())
                    })
                    .collect();
                if term.anti && !matching.is_empty() {
                    violations.push(format!(
                        "pod {} shares {} {here} with a pod its anti-affinity excludes",
                        f.name, term.topology_key
                    ));
                }
                if !term.anti
                    && matching.is_empty()
                    && members(&f.namespace, &term.selector)
                        .iter()
                        .any(|(_, p)| *p != Some(pod))
                {
                    violations.push(format!(
                        "pod {}: no pod its affinity needs is in {} {here}",
                        f.name, term.topology_key
                    ));
                }
            }
            for spread in f
                .spread
                .iter()
                .filter(|s| s.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule)
            {
                // Count the pods that carry this same constraint (and existing matching pods).
                let mut counts: BTreeMap<String, i64> = BTreeMap::new();
                for (m, p) in members(&f.namespace, &spread.selector) {
                    let owner = p.is_none_or(|p| facts[p].spread.contains(spread));
                    if let (true, Some(d)) = (owner, domain(&nodes[m], &spread.topology_key)) {
                        *counts.entry(d).or_insert(0) += 1;
                    }
                }
                if spread.topology_key == labels::HOSTNAME {
                    if counts.values().any(|c| *c > spread.max_skew) {
                        violations.push(format!(
                            "pod {}: more than {} matching pods on one node",
                            f.name, spread.max_skew
                        ));
                    }
                    continue;
                }
                let max = counts.values().max().copied().unwrap_or(0);
                let min = counts.values().min().copied().unwrap_or(0);
                if max - min > spread.max_skew {
                    violations.push(format!(
                        "pod {}: spread over {} is {counts:?}, skew above {}",
                        f.name, spread.topology_key, spread.max_skew
                    ));
                }
            }
        }
        let _ = n;
    }
    violations
}
