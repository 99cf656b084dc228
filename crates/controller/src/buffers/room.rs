//! Where the buffers' virtual pods go: the hooks the provisioner and disruption call. Pure.
//!
//! - **Provisioner** ([`keep_room`]): after the real pods are solved, the virtual pods are
//!   solved alone on the room the real pods left (each existing node and NodeClaim in flight
//!   with the real pods placed on it added to its pods). Real pods therefore always take free
//!   room first — as kube-scheduler, which never sees virtual pods, binds them — and virtual pods
//!   that find no room get new NodeClaims, created without pods to nominate. The virtual pods
//!   do not share the real pods' new nodes of the same round; they fit on them from the next
//!   round on, when those are in flight.
//! - **Emptiness** ([`hosting_nodes`]): the nodes whose free room holds virtual pods are not
//!   empty for disruption. **Consolidation** adds the virtual pods to its simulation as pods
//!   that need room ([`with_virtual_pods`]), so removing a node whose room they need costs a new
//!   node and is not cheaper.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use nodewright_solver::{NodeClaimPlan, Plan, Problem};

use super::virtual_pods::{BufferKey, Fit};

/// What [`keep_room`] decided.
#[derive(Debug, Default)]
pub struct Room {
    /// NodeClaims to create for virtual pods no existing room holds (their `pods` are empty:
    /// there is nothing to nominate).
    pub new_nodes: Vec<NodeClaimPlan>,
    /// Per buffer, whether its pods fit on existing capacity.
    pub fits: BTreeMap<BufferKey, Fit>,
}

/// Places `virtual_pods` on the room `problem`'s nodes have after `plan` placed the real pods.
pub fn keep_room(problem: &Problem, plan: &Plan, virtual_pods: Vec<(BufferKey, Pod)>) -> Room {
    if virtual_pods.is_empty() {
        return Room::default();
    }
    let (owners, pods): (Vec<BufferKey>, Vec<Pod>) = virtual_pods.into_iter().unzip();
    let mut existing_nodes = problem.existing_nodes.clone();
    for (index, node) in &plan.existing_placements {
        if let Some(target) = existing_nodes.iter_mut().find(|n| &n.name == node) {
            target.pods.push(problem.pods[*index].clone());
        }
    }
    let buffers_problem = Problem {
        pods,
        nodepools: problem.nodepools.clone(),
        existing_nodes,
        daemonset_pods: problem.daemonset_pods.clone(),
        volumes: nodewright_solver::volumes::Volumes::default(),
        options: problem.options.clone(),
    };
    let buffers_plan = nodewright_solver::solve(&buffers_problem);

    let mut needing: BTreeMap<&BufferKey, usize> = BTreeMap::new();
    for index in buffers_plan.new_nodes.iter().flat_map(|n| &n.pods) {
        *needing.entry(&owners[*index]).or_default() += 1;
    }
    let mut unplaceable: BTreeMap<&BufferKey, String> = BTreeMap::new();
    for unschedulable in &buffers_plan.unschedulable {
        unplaceable
            .entry(&owners[unschedulable.pod])
            .or_insert_with(|| unschedulable.message());
    }
    let mut fits = BTreeMap::new();
    for owner in &owners {
        if fits.contains_key(owner) {
            continue;
        }
        let fit = match (needing.get(owner), unplaceable.get(owner)) {
            (None, None) => Fit::Existing,
            (new, None) => Fit::NewCapacity(format!(
                "{} chunks need new capacity",
                new.copied().unwrap_or_default()
            )),
            (_, Some(why)) => Fit::NewCapacity(format!("chunks cannot be placed: {why}")),
        };
        fits.insert(owner.clone(), fit);
    }
    let new_nodes = buffers_plan
        .new_nodes
        .into_iter()
        .map(|mut node| {
            node.pods.clear();
            node
        })
        .collect();
    Room { new_nodes, fits }
}

/// The nodes of `problem` whose free room the virtual pods are placed on (no new nodes).
pub fn hosting_nodes(problem: &Problem, virtual_pods: Vec<Pod>) -> BTreeSet<String> {
    if virtual_pods.is_empty() {
        return BTreeSet::new();
    }
    let existing_only = Problem {
        pods: virtual_pods,
        nodepools: Vec::new(),
        existing_nodes: problem.existing_nodes.clone(),
        daemonset_pods: problem.daemonset_pods.clone(),
        volumes: nodewright_solver::volumes::Volumes::default(),
        options: problem.options.clone(),
    };
    nodewright_solver::solve(&existing_only)
        .existing_placements
        .into_iter()
        .map(|(_, node)| node)
        .collect()
}

/// `problem` with the virtual pods added after its pending pods, as pods that need room.
pub fn with_virtual_pods(mut problem: Problem, virtual_pods: Vec<Pod>) -> Problem {
    problem.pods.extend(virtual_pods);
    problem
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nodewright_solver::manifests::existing_node;
    use serde_json::json;

    use super::*;
    use crate::test_fixtures::{arc, instance_type, pool};

    fn pod(name: &str, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "default", "uid": name },
            "spec": { "containers": [{ "name": "c", "resources": { "requests": { "cpu": cpu } } }] }
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn node(name: &str, cpu: &str) -> nodewright_solver::ExistingNode {
        let node: Arc<k8s_openapi::api::core::v1::Node> = arc(json!({
            "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name, "karpenter.sh/nodepool": "default",
                "karpenter.sh/initialized": "true" } },
            "status": { "allocatable": { "cpu": cpu, "memory": "8Gi", "pods": "110" },
                "conditions": [{ "type": "Ready", "status": "True" }] }
        }));
        existing_node((*node).clone())
    }

    fn key(name: &str) -> BufferKey {
        BufferKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn virtual_pods(buffer: &str, n: usize, cpu: &str) -> Vec<(BufferKey, Pod)> {
        (0..n)
            .map(|i| (key(buffer), pod(&format!("{buffer}-{i}"), cpu)))
            .collect()
    }

    fn problem(pods: Vec<Pod>, nodes: Vec<nodewright_solver::ExistingNode>) -> Problem {
        Problem {
            pods,
            nodepools: vec![nodewright_solver::PoolInput {
                nodepool: (*pool()).clone(),
                instance_types: vec![instance_type("eight", 8000, 0.35)],
                in_use: nodewright_catalog::Resources::default(),
            }],
            existing_nodes: nodes,
            daemonset_pods: Vec::new(),
            volumes: nodewright_solver::volumes::Volumes::default(),
            options: nodewright_solver::Options::default(),
        }
    }

    #[test]
    fn real_pods_take_the_room_first_and_the_buffer_gets_new_nodes() {
        // A node with 4 CPU free; 4 real 1-CPU pods and a buffer of 4 1-CPU chunks.
        let problem = problem(
            (0..4).map(|i| pod(&format!("real-{i}"), "1")).collect(),
            vec![node("spare", "4")],
        );
        let plan = nodewright_solver::solve(&problem);
        assert_eq!(plan.existing_placements.len(), 4, "{plan:?}");
        let room = keep_room(&problem, &plan, virtual_pods("warm", 4, "1"));
        assert_eq!(room.new_nodes.len(), 1);
        assert!(room.new_nodes[0].pods.is_empty(), "nothing to nominate");
        assert!(matches!(room.fits[&key("warm")], Fit::NewCapacity(_)));
    }

    #[test]
    fn a_buffer_that_fits_existing_room_launches_nothing() {
        let problem = problem(Vec::new(), vec![node("spare", "8")]);
        let plan = nodewright_solver::solve(&problem);
        let mut pods = virtual_pods("warm", 4, "1");
        pods.extend(virtual_pods("cold", 2, "1"));
        let room = keep_room(&problem, &plan, pods);
        assert!(room.new_nodes.is_empty());
        assert_eq!(room.fits[&key("warm")], Fit::Existing);
        assert_eq!(room.fits[&key("cold")], Fit::Existing);
    }

    #[test]
    fn hosting_nodes_are_those_whose_room_the_buffer_uses() {
        let problem = problem(Vec::new(), vec![node("a", "4"), node("b", "4")]);
        let pods: Vec<Pod> = virtual_pods("warm", 4, "1").into_iter().map(|(_, p)| p).collect();
        let hosting = hosting_nodes(&problem, pods);
        assert_eq!(hosting.len(), 1, "4 chunks fill one node: {hosting:?}");
        assert!(hosting_nodes(&problem, Vec::new()).is_empty());
    }
}
