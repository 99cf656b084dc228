//! One round's view of the cluster as the solver's [`Problem`]: the pods waiting for capacity,
//! the usable NodePools with their instance types and what they already use, the nodes that
//! exist (with their pods) and the NodeClaims in flight, DaemonSet templates, and the volumes
//! the waiting pods mount.
//!
//! Nodes and NodeClaims are read before pods (as Karpenter does): a pod bound meanwhile then
//! looks pending against a view that may lack its node, which errs towards one NodeClaim too
//! many for one round rather than pods left without capacity.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::Arc,
};

use jiff::Timestamp;
use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
        storage::v1::StorageClass,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::ResourceExt;
use nodewright_api::{EC2NodeClass, NodeClaim, NodePool, labels};
use nodewright_catalog::{InstanceType, Resources};
use nodewright_cloudprovider::CloudProvider;
use nodewright_solver::{ExistingNode, PoolInput, Problem, manifests::existing_node, volumes::Volumes};

use super::{
    inflight,
    pods::{holds_resources, is_provisionable, is_reschedulable},
    pools::{self, Skipped},
};
use crate::{context::Context, state::ClusterState, unavailable::UnavailableOfferings};

/// Where a pod placed on an existing node of the problem goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Node(String),
    NodeClaim(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node(name) => write!(f, "node/{name}"),
            Self::NodeClaim(name) => write!(f, "nodeclaim/{name}"),
        }
    }
}

/// A round's problem and what its answers refer to.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) problem: Problem,
    /// The waiting pods as stored, parallel to `problem.pods` (events go to them).
    pub(crate) pods: Vec<Arc<Pod>>,
    /// The existing nodes of the problem by name.
    pub(crate) targets: HashMap<String, Target>,
    /// The usable NodePools by name.
    pub(crate) pools: HashMap<String, Arc<NodePool>>,
    /// NodePools left out this round.
    pub(crate) skipped: Vec<Skipped>,
    /// The pods of [`World::gone`] the cache still shows waiting (left out of `pods`).
    pub(crate) still_gone: HashSet<String>,
}

/// The stored objects a snapshot is made of.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub(crate) nodes: Vec<Arc<Node>>,
    pub(crate) claims: Vec<Arc<NodeClaim>>,
    pub(crate) pods: Vec<Arc<Pod>>,
    pub(crate) daemon_sets: Vec<Arc<DaemonSet>>,
    pub(crate) pvcs: Vec<Arc<PersistentVolumeClaim>>,
    pub(crate) pvs: Vec<Arc<PersistentVolume>>,
    pub(crate) storage_classes: Vec<Arc<StorageClass>>,
    /// UIDs of pods the API server said need no new home while the cache still showed them
    /// waiting (see [`super::recheck`]): not waiting, until the cache catches up.
    pub(crate) gone: HashSet<String>,
}

impl World {
    /// The watched objects, plus NodeClaims this provisioner created that the watch has not
    /// delivered yet (`recent`), so a round never misses capacity it just asked for.
    pub(crate) fn read(state: &ClusterState, recent: &[NodeClaim]) -> Self {
        let nodes = state.nodes.all();
        let mut claims = state.node_claims.all();
        let stored: HashSet<String> = claims.iter().map(|c| c.name_any()).collect();
        claims.extend(
            recent
                .iter()
                .filter(|c| !stored.contains(&c.name_any()))
                .map(|c| Arc::new(c.clone())),
        );
        Self {
            nodes,
            claims,
            pods: state.pods.all(),
            daemon_sets: state.daemon_sets.all(),
            pvcs: state.pvcs.all(),
            pvs: state.pvs.all(),
            storage_classes: state.storage_classes.all(),
            gone: HashSet::new(),
        }
    }
}

/// Reads the cluster and the cloud's instance types for a round, leaving out the pods known to
/// be `gone` despite the cache showing them waiting.
pub(crate) async fn take_leaving_out(
    ctx: &Context,
    recent: &[NodeClaim],
    gone: &HashSet<String>,
) -> Snapshot {
    let mut world = World::read(&ctx.state, recent);
    world.gone.clone_from(gone);
    let (with_types, skipped, _) = crate::overlay::instance_types(ctx).await;
    assemble(&world, with_types, skipped)
}

/// [`take_leaving_out`] for a disruption simulation, which moves the `moving` pods (the candidates') as well
/// as placing the waiting ones: see [`assemble_moving`].
pub(crate) async fn take_moving<'a>(
    ctx: &Context,
    moving: impl IntoIterator<Item = &'a Arc<Pod>>,
) -> Snapshot {
    let world = World::read(&ctx.state, &[]);
    let (with_types, skipped, _) = crate::overlay::instance_types(ctx).await;
    assemble_moving(&world, with_types, skipped, moving)
}

/// [`assemble`], with the volumes of the `moving` pods too: a pod moved off a removed node
/// keeps its volume's topology (a zonal disk stays in its zone), as a waiting pod does.
pub(crate) fn assemble_moving<'a>(
    world: &World,
    pools: Vec<(Arc<NodePool>, Vec<InstanceType>)>,
    skipped: Vec<Skipped>,
    moving: impl IntoIterator<Item = &'a Arc<Pod>>,
) -> Snapshot {
    let mut snapshot = assemble(world, pools, skipped);
    let pods: Vec<Arc<Pod>> = snapshot
        .pods
        .iter()
        .cloned()
        .chain(moving.into_iter().cloned())
        .collect();
    snapshot.problem.volumes = volumes_of(world, &pods);
    snapshot
}

/// The usable NodePools (in order) with the cloud's instance types for each (offerings in
/// `unavailable` marked so), and the NodePools left out with why.
pub(crate) async fn pools_with_types(
    cloud: &dyn CloudProvider,
    unavailable: &UnavailableOfferings,
    pools: &[Arc<NodePool>],
    classes: &[Arc<EC2NodeClass>],
    now: Timestamp,
) -> (Vec<(Arc<NodePool>, Vec<InstanceType>)>, Vec<Skipped>) {
    let (mut with_types, skipped) = listed_types(cloud, pools, classes).await;
    for (_, types) in &mut with_types {
        unavailable.apply(types, now);
    }
    (with_types, skipped)
}

/// The usable NodePools (in order) with the cloud's instance types for each, as listed, and
/// the NodePools left out with why.
pub(crate) async fn listed_types(
    cloud: &dyn CloudProvider,
    pools: &[Arc<NodePool>],
    classes: &[Arc<EC2NodeClass>],
) -> (Vec<(Arc<NodePool>, Vec<InstanceType>)>, Vec<Skipped>) {
    let (usable, mut skipped) = pools::usable(pools, classes);
    let mut with_types = Vec::with_capacity(usable.len());
    for pool in usable {
        match cloud.get_instance_types(&pool).await {
            Ok(types) => with_types.push((pool, types)),
            Err(error) => skipped.push(Skipped {
                nodepool: pool.name_any(),
                reason: format!("its instance types cannot be listed: {error}"),
                node_class_not_ready: error.is_node_class_not_ready(),
            }),
        }
    }
    (with_types, skipped)
}

/// UIDs of the pods waiting for capacity now (what wakes the provisioner).
pub(crate) fn waiting_uids(state: &ClusterState) -> HashSet<String> {
    let nodes = state.nodes.all();
    let claims = state.node_claims.all();
    let pods = state.pods.all();
    let leaving = leaving_nodes(&nodes, &claims);
    waiting(&pods, &leaving)
        .filter_map(|p| p.metadata.uid.clone())
        .collect()
}

/// Pending pods kube-scheduler gave up on, and pods on nodes that are going away.
fn waiting<'a>(pods: &'a [Arc<Pod>], leaving: &'a HashSet<String>) -> impl Iterator<Item = &'a Arc<Pod>> {
    pods.iter().filter(move |pod| match bound_node(pod) {
        None => is_provisionable(pod),
        Some(node) => leaving.contains(node) && is_reschedulable(pod),
    })
}

fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn provider_id(node: &Node) -> Option<&str> {
    node.spec.as_ref().and_then(|s| s.provider_id.as_deref())
}

fn claim_provider_id(claim: &NodeClaim) -> Option<&str> {
    claim
        .status
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .filter(|id| !id.is_empty())
}

/// Names of nodes being deleted, or whose NodeClaim is.
fn leaving_nodes(nodes: &[Arc<Node>], claims: &[Arc<NodeClaim>]) -> HashSet<String> {
    let deleting_claims: HashSet<&str> = claims
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_some())
        .filter_map(|c| claim_provider_id(c))
        .collect();
    nodes
        .iter()
        .filter(|n| {
            n.metadata.deletion_timestamp.is_some()
                || provider_id(n).is_some_and(|id| deleting_claims.contains(id))
        })
        .map(|n| n.name_any())
        .collect()
}

/// The problem from the stored objects and the usable NodePools (in order) with their
/// instance types. Pure.
pub(crate) fn assemble(
    world: &World,
    pools: Vec<(Arc<NodePool>, Vec<InstanceType>)>,
    skipped: Vec<Skipped>,
) -> Snapshot {
    let leaving = leaving_nodes(&world.nodes, &world.claims);
    let mut still_gone = HashSet::new();
    let waiting: Vec<Arc<Pod>> = waiting(&world.pods, &leaving)
        .filter(|pod| match pod.metadata.uid.as_ref() {
            Some(uid) if world.gone.contains(uid) => {
                still_gone.insert(uid.clone());
                false
            }
            _ => true,
        })
        .cloned()
        .collect();
    let daemonset_pods: Vec<Pod> = world.daemon_sets.iter().filter_map(|d| daemon_pod(d)).collect();
    let types_of: HashMap<String, &[InstanceType]> = pools
        .iter()
        .map(|(pool, types)| (pool.name_any(), types.as_slice()))
        .collect();
    let types_for = |claim: &NodeClaim| -> &[InstanceType] {
        claim
            .nodepool_name()
            .and_then(|name| types_of.get(name).copied())
            .unwrap_or_default()
    };

    let mut targets = HashMap::new();
    let mut existing_nodes = nodes_with_pods(world, &leaving, &mut targets);
    let node_provider_ids: HashSet<&str> = world.nodes.iter().filter_map(|n| provider_id(n)).collect();
    let node_names: HashSet<String> = world.nodes.iter().map(|n| n.name_any()).collect();
    let mut in_use: HashMap<String, Resources> = HashMap::new();
    for claim in &world.claims {
        if claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(pool) = claim.nodepool_name() {
            in_use
                .entry(pool.to_owned())
                .or_default()
                .add_assign(&inflight::capacity(claim, types_for(claim)));
        }
        let has_node = claim_provider_id(claim).is_some_and(|id| node_provider_ids.contains(id))
            || claim
                .status
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| node_names.contains(n));
        if !has_node {
            let node = inflight::in_flight_node(claim, types_for(claim), &daemonset_pods);
            targets.insert(node.name.clone(), Target::NodeClaim(node.name.clone()));
            existing_nodes.push(node);
        }
    }

    let pool_names: HashMap<String, Arc<NodePool>> = pools
        .iter()
        .map(|(pool, _)| (pool.name_any(), Arc::clone(pool)))
        .collect();
    let nodepools = pools
        .into_iter()
        .map(|(pool, instance_types)| PoolInput {
            in_use: in_use.remove(&pool.name_any()).unwrap_or_default(),
            nodepool: (*pool).clone(),
            instance_types,
        })
        .collect();
    let problem = Problem {
        pods: waiting.iter().map(|p| unbound(p)).collect(),
        nodepools,
        existing_nodes,
        daemonset_pods,
        volumes: volumes_of(world, &waiting),
        options: nodewright_solver::Options::default(),
    };
    Snapshot {
        problem,
        pods: waiting,
        targets,
        pools: pool_names,
        skipped,
        still_gone,
    }
}

/// Nodes that stay, each with the pods bound to it. A node still starting under a NodeClaim
/// (not yet `karpenter.sh/initialized`) is shown without its startup and known ephemeral taints
/// (not-ready, unregistered, ...): they are about to go, and pods waiting for it must not cause
/// another NodeClaim meanwhile.
fn nodes_with_pods(
    world: &World,
    leaving: &HashSet<String>,
    targets: &mut HashMap<String, Target>,
) -> Vec<ExistingNode> {
    let mut bound: HashMap<&str, Vec<Pod>> = HashMap::new();
    for pod in &world.pods {
        if let Some(node) = bound_node(pod)
            && holds_resources(pod)
        {
            bound.entry(node).or_default().push((**pod).clone());
        }
    }
    let claim_by_provider_id: HashMap<&str, &NodeClaim> = world
        .claims
        .iter()
        .filter_map(|c| Some((claim_provider_id(c)?, c.as_ref())))
        .collect();
    let mut nodes = Vec::new();
    for node in &world.nodes {
        let name = node.name_any();
        if leaving.contains(&name) {
            continue;
        }
        let claim = provider_id(node).and_then(|id| claim_by_provider_id.get(id));
        let initialized = node.labels().get(labels::NODE_INITIALIZED).map(String::as_str) == Some("true");
        let mut existing = existing_node((**node).clone());
        if let Some(claim) = claim
            && !initialized
        {
            existing.taints.retain(|t| {
                !labels::is_known_ephemeral_taint(t)
                    && !claim
                        .spec
                        .startup_taints
                        .iter()
                        .any(|s| s.key == t.key && s.effect == t.effect)
            });
        }
        existing.pods = bound.remove(name.as_str()).unwrap_or_default();
        targets.insert(name.clone(), Target::Node(name));
        nodes.push(existing);
    }
    nodes
}

/// A pod to place: a pod on a node that is going away is placed as if unbound.
pub(crate) fn unbound(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = None;
    }
    pod
}

/// The pod a DaemonSet would run on a new node, from its template; None while it is deleted.
fn daemon_pod(daemon_set: &DaemonSet) -> Option<Pod> {
    if daemon_set.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let template = &daemon_set.spec.as_ref()?.template;
    Some(Pod {
        metadata: ObjectMeta {
            name: Some(daemon_set.name_any()),
            namespace: daemon_set.namespace(),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// The claims the waiting pods mount, the volumes bound to them, and every storage class.
pub(crate) fn volumes_of(world: &World, waiting: &[Arc<Pod>]) -> Volumes {
    let mounted: HashSet<(String, String)> = waiting
        .iter()
        .flat_map(|pod| {
            let namespace = pod.namespace().unwrap_or_else(|| "default".to_owned());
            pod.spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .map(move |c| (namespace.clone(), c.claim_name.clone()))
        })
        .collect();
    if mounted.is_empty() {
        return Volumes::default();
    }
    let claims: Vec<PersistentVolumeClaim> = world
        .pvcs
        .iter()
        .filter(|c| mounted.contains(&(c.namespace().unwrap_or_default(), c.name_any())))
        .map(|c| (**c).clone())
        .collect();
    let bound: HashSet<&str> = claims
        .iter()
        .filter_map(|c| c.spec.as_ref()?.volume_name.as_deref())
        .collect();
    Volumes {
        volumes: world
            .pvs
            .iter()
            .filter(|v| bound.contains(v.name_any().as_str()))
            .map(|v| (**v).clone())
            .collect(),
        claims,
        storage_classes: world.storage_classes.iter().map(|s| (**s).clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::test_fixtures::{arc, instance_type, pool};

    fn pending(name: &str, cpu: &str) -> Arc<Pod> {
        arc(json!({
            "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}") },
            "spec": { "containers": [{ "name": "c", "resources": { "requests": { "cpu": cpu } } }] },
            "status": { "phase": "Pending", "conditions": [
                { "type": "PodScheduled", "status": "False", "reason": "Unschedulable" }
            ] }
        }))
    }

    fn running(name: &str, node: &str) -> Arc<Pod> {
        arc(json!({
            "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}") },
            "spec": { "nodeName": node, "containers": [{ "name": "c", "resources": { "requests": { "cpu": "1" } } }] },
            "status": { "phase": "Running" }
        }))
    }

    fn types() -> Vec<InstanceType> {
        vec![
            instance_type("two", 2000, 0.1),
            instance_type("eight", 8000, 0.35),
        ]
    }

    fn claim(name: &str, extra: &Value) -> Arc<NodeClaim> {
        let mut value = json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": { "name": name, "labels": { "karpenter.sh/nodepool": "default" } },
            "spec": {
                "requirements": [{ "key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["eight"] }],
                "resources": { "requests": { "cpu": "4" } },
                "startupTaints": [{ "key": "cni", "effect": "NoSchedule" }],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
            }
        });
        if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                if let (Some(Value::Object(inner)), Value::Object(more)) = (base.get_mut(k), v) {
                    inner.extend(more.clone());
                } else {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
        arc(value)
    }

    fn node(name: &str, provider_id: &str, extra_labels: &Value, taints: &Value) -> Arc<Node> {
        let mut node_labels = json!({ "kubernetes.io/hostname": name, "karpenter.sh/nodepool": "default" });
        if let (Some(base), Some(extra)) = (node_labels.as_object_mut(), extra_labels.as_object()) {
            base.extend(extra.clone());
        }
        arc(json!({
            "metadata": { "name": name, "labels": node_labels },
            "spec": { "providerID": provider_id, "taints": taints },
            "status": { "allocatable": { "cpu": "8", "memory": "8Gi", "pods": "110" },
                "conditions": [{ "type": "Ready", "status": "True" }] }
        }))
    }

    #[test]
    fn a_claim_without_a_node_is_in_flight_and_covers_its_pods() {
        let world = World {
            pods: (0..4).map(|i| pending(&format!("p{i}"), "1")).collect(),
            claims: vec![claim("default-a", &json!({}))],
            ..World::default()
        };
        let snapshot = assemble(&world, vec![(pool(), types())], Vec::new());
        assert_eq!(snapshot.problem.pods.len(), 4);
        assert_eq!(snapshot.problem.existing_nodes.len(), 1);
        let in_flight = &snapshot.problem.existing_nodes[0];
        assert_eq!(in_flight.name, "default-a");
        assert_eq!(in_flight.allocatable.cpu_millis, 8000, "its one listed type");
        assert_eq!(
            snapshot.targets["default-a"],
            Target::NodeClaim("default-a".into())
        );
        assert_eq!(snapshot.problem.nodepools[0].in_use.cpu_millis, 8000);
        assert_eq!(snapshot.problem.nodepools[0].in_use.get("nodes"), 1);

        let plan = nodewright_solver::solve(&snapshot.problem);
        assert!(plan.new_nodes.is_empty(), "{plan:?}");
        assert_eq!(plan.existing_placements.len(), 4);
        assert!(plan.existing_placements.iter().all(|(_, n)| n == "default-a"));
    }

    #[test]
    fn pods_known_gone_are_not_waiting_until_the_cache_catches_up() {
        let world = World {
            pods: vec![pending("p0", "1"), pending("p1", "1"), running("r1", "ip-1")],
            gone: HashSet::from(["uid-p0".to_owned(), "uid-r1".to_owned(), "uid-old".to_owned()]),
            ..World::default()
        };
        let snapshot = assemble(&world, vec![(pool(), types())], Vec::new());
        let waiting: Vec<String> = snapshot.pods.iter().map(|p| p.name_any()).collect();
        assert_eq!(waiting, ["p1"]);
        assert_eq!(
            snapshot.still_gone,
            HashSet::from(["uid-p0".to_owned()]),
            "r1 is not waiting (its node stays) and the old pod left the cache: both forgotten"
        );
    }

    #[test]
    fn pods_beyond_in_flight_capacity_get_a_new_node() {
        let world = World {
            pods: (0..10).map(|i| pending(&format!("p{i}"), "1")).collect(),
            claims: vec![claim("default-a", &json!({}))],
            ..World::default()
        };
        let snapshot = assemble(&world, vec![(pool(), types())], Vec::new());
        let plan = nodewright_solver::solve(&snapshot.problem);
        assert_eq!(plan.existing_placements.len(), 8);
        let placed: usize = plan.new_nodes.iter().map(|n| n.pods.len()).sum();
        assert_eq!(placed, 2);
    }

    #[test]
    fn a_registered_claim_is_its_node_and_a_starting_node_hides_passing_taints() {
        let starting_taints = json!([
            { "key": "karpenter.sh/unregistered", "effect": "NoExecute" },
            { "key": "node.kubernetes.io/not-ready", "effect": "NoSchedule" },
            { "key": "cni", "effect": "NoSchedule" },
            { "key": "dedicated", "value": "x", "effect": "NoSchedule" }
        ]);
        let world = World {
            nodes: vec![
                node("ip-1", "aws:///i-1", &json!({}), &starting_taints),
                node(
                    "ip-2",
                    "aws:///i-2",
                    &json!({ "karpenter.sh/initialized": "true" }),
                    &starting_taints,
                ),
                node("unmanaged", "aws:///i-9", &json!({}), &starting_taints),
            ],
            claims: vec![
                claim("default-a", &json!({ "status": { "providerID": "aws:///i-1" } })),
                claim("default-b", &json!({ "status": { "providerID": "aws:///i-2" } })),
            ],
            pods: vec![running("r1", "ip-1")],
            ..World::default()
        };
        let snapshot = assemble(&world, vec![(pool(), types())], Vec::new());
        let names: Vec<&str> = snapshot
            .problem
            .existing_nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["ip-1", "ip-2", "unmanaged"],
            "registered claims are not in flight"
        );
        let taint_keys = |i: usize| -> Vec<&str> {
            snapshot.problem.existing_nodes[i]
                .taints
                .iter()
                .map(|t| t.key.as_str())
                .collect()
        };
        assert_eq!(taint_keys(0), ["dedicated"]);
        assert_eq!(taint_keys(1).len(), 4, "initialized: every taint is real");
        assert_eq!(taint_keys(2).len(), 4, "not ours: left alone");
        assert_eq!(snapshot.problem.existing_nodes[0].pods.len(), 1);
        assert_eq!(snapshot.targets["ip-1"], Target::Node("ip-1".into()));
    }

    #[test]
    fn pods_on_nodes_going_away_wait_for_capacity_elsewhere() {
        let world = World {
            nodes: vec![node("ip-1", "aws:///i-1", &json!({}), &json!([]))],
            claims: vec![claim(
                "default-a",
                &json!({ "metadata": { "name": "default-a", "deletionTimestamp": "2026-01-01T00:00:00Z",
                    "finalizers": ["karpenter.sh/termination"], "labels": { "karpenter.sh/nodepool": "default" } },
                    "status": { "providerID": "aws:///i-1" } }),
            )],
            pods: vec![running("r1", "ip-1")],
            ..World::default()
        };
        let snapshot = assemble(&world, vec![(pool(), types())], Vec::new());
        assert!(snapshot.problem.existing_nodes.is_empty());
        assert_eq!(
            snapshot.problem.nodepools[0].in_use,
            Resources::default(),
            "deleting claims do not count"
        );
        assert_eq!(snapshot.problem.pods.len(), 1);
        assert_eq!(
            snapshot.problem.pods[0].spec.as_ref().unwrap().node_name,
            None,
            "placed as if unbound"
        );
    }

    #[test]
    fn only_the_volumes_waiting_pods_mount_are_copied() {
        let mut with_claim = (*pending("db", "1")).clone();
        with_claim.spec.as_mut().unwrap().volumes = Some(vec![
            serde_json::from_value(
                json!({ "name": "data", "persistentVolumeClaim": { "claimName": "data" } }),
            )
            .unwrap(),
        ]);
        let world = World {
            pods: vec![Arc::new(with_claim)],
            pvcs: vec![
                arc(
                    json!({ "metadata": { "name": "data", "namespace": "default" }, "spec": { "volumeName": "pv-1" } }),
                ),
                arc(
                    json!({ "metadata": { "name": "other", "namespace": "default" }, "spec": { "volumeName": "pv-2" } }),
                ),
            ],
            pvs: vec![
                arc(json!({ "metadata": { "name": "pv-1" }, "spec": {} })),
                arc(json!({ "metadata": { "name": "pv-2" }, "spec": {} })),
            ],
            storage_classes: vec![arc(
                json!({ "metadata": { "name": "gp3" }, "provisioner": "ebs.csi.aws.com" }),
            )],
            ..World::default()
        };
        let snapshot = assemble(&world, vec![(pool(), types())], Vec::new());
        let volumes = &snapshot.problem.volumes;
        assert_eq!(volumes.claims.len(), 1);
        assert_eq!(volumes.volumes.len(), 1);
        assert_eq!(volumes.storage_classes.len(), 1);
    }

    #[test]
    fn pods_disruption_moves_bring_their_volumes() {
        let mounting = |name: &str, claim: &str| {
            let mut pod = (*pending(name, "1")).clone();
            pod.spec.as_mut().unwrap().node_name = Some("node-1".to_owned());
            pod.spec.as_mut().unwrap().volumes = Some(vec![
                serde_json::from_value(
                    json!({ "name": "data", "persistentVolumeClaim": { "claimName": claim } }),
                )
                .unwrap(),
            ]);
            Arc::new(pod)
        };
        let (moved, staying) = (mounting("db", "data"), mounting("cache", "other"));
        let world = World {
            pods: vec![moved.clone(), staying],
            pvcs: ["data", "other"]
                .into_iter()
                .map(|name| {
                    arc(json!({ "metadata": { "name": name, "namespace": "default" }, "spec": { "volumeName": format!("pv-{name}") } }))
                })
                .collect(),
            pvs: ["data", "other"]
                .into_iter()
                .map(|name| arc(json!({ "metadata": { "name": format!("pv-{name}") }, "spec": {} })))
                .collect(),
            ..World::default()
        };
        let placing_only = assemble(&world, vec![(pool(), types())], Vec::new());
        assert!(
            placing_only.problem.volumes.claims.is_empty(),
            "no waiting pod mounts a claim"
        );
        let moving = assemble_moving(&world, vec![(pool(), types())], Vec::new(), [&moved]);
        let volumes = &moving.problem.volumes;
        let names = |metas: Vec<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>| -> Vec<String> {
            metas.into_iter().filter_map(|m| m.name.clone()).collect()
        };
        assert_eq!(
            names(volumes.claims.iter().map(|c| &c.metadata).collect()),
            ["data"]
        );
        assert_eq!(
            names(volumes.volumes.iter().map(|v| &v.metadata).collect()),
            ["pv-data"]
        );
    }

    #[test]
    fn daemon_sets_become_template_pods() {
        let daemon_set: Arc<DaemonSet> = arc(json!({
            "metadata": { "name": "agent", "namespace": "kube-system" },
            "spec": { "selector": { "matchLabels": { "app": "agent" } }, "template": {
                "metadata": { "labels": { "app": "agent" } },
                "spec": { "containers": [{ "name": "a", "resources": { "requests": { "cpu": "200m" } } }] }
            } }
        }));
        let world = World {
            daemon_sets: vec![daemon_set],
            claims: vec![claim("default-a", &json!({}))],
            ..World::default()
        };
        let snapshot = assemble(&world, vec![(pool(), types())], Vec::new());
        assert_eq!(snapshot.problem.daemonset_pods.len(), 1);
        assert_eq!(
            snapshot.problem.daemonset_pods[0].metadata.namespace.as_deref(),
            Some("kube-system")
        );
        assert_eq!(
            snapshot.problem.existing_nodes[0].pods.len(),
            1,
            "the in-flight node will run it"
        );
    }
}
