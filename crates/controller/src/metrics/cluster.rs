//! Gauges computed at scrape time from the controller's caches: nodes (allocatable, pod and
//! daemon requests and limits, system overhead, lifetime), cluster utilization, NodePool limits
//! and usage, pod states, and the unavailable-offerings count. Karpenter's `metrics.node`,
//! `metrics.nodepool` and `metrics.pod` controllers recompute these on timers; computing them
//! per scrape gives the same values, never stale, and costs nothing between scrapes.

use std::{
    collections::BTreeMap,
    sync::{Arc, PoisonError, RwLock},
};

use k8s_openapi::{
    api::core::v1::{Node, Pod, PodSpec},
    apimachinery::pkg::api::resource::Quantity,
};
use kube::ResourceExt;
use nodewright_api::{NodePool, clock::Clock, labels, quantity};
use nodewright_catalog::Resources;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, gauge::ConstGauge},
};

use super::startup::PodStartups;
use crate::{context::Context, state::ClusterState, unavailable::UnavailableOfferings};

type Labels = Vec<(&'static str, String)>;

/// The resources every node has.
const CORE_RESOURCES: [&str; 4] = ["cpu", "memory", "pods", "ephemeral-storage"];

/// What the collector reads, once a controller attached.
#[derive(Debug, Clone)]
struct Sources {
    state: ClusterState,
    clock: Clock,
    unavailable: UnavailableOfferings,
}

/// The scrape-time collector. Before a controller attaches it reports nothing.
#[derive(Debug)]
pub struct ClusterCollector {
    sources: RwLock<Option<Sources>>,
    startups: PodStartups,
}

impl ClusterCollector {
    /// A collector that also counts pod start-ups and bindings ([`PodStartups`]).
    pub(super) fn new(startups: PodStartups) -> Self {
        Self {
            sources: RwLock::new(None),
            startups,
        }
    }

    pub(super) fn attach(&self, ctx: &Context) {
        *self.sources.write().unwrap_or_else(PoisonError::into_inner) = Some(Sources {
            state: ctx.state.clone(),
            clock: ctx.clock.clone(),
            unavailable: ctx.unavailable.clone(),
        });
    }
}

/// One gauge family's series, gathered before encoding so empty families are left out.
struct Series {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Labels, f64)>,
}

impl Series {
    fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            samples: Vec::new(),
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        if let [(labels, value)] = self.samples.as_slice()
            && labels.is_empty()
        {
            // An unlabelled gauge: `name value`, not `name{} value`.
            return ConstGauge::new(*value).encode(family);
        }
        for (labels, value) in &self.samples {
            let gauge = ConstGauge::new(*value);
            gauge.encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let sources = self
            .sources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(sources) = sources else {
            return Ok(());
        };
        self.startups.record(&sources.state.pods.all());
        for series in gather(&sources) {
            series.encode(&mut encoder)?;
        }
        Ok(())
    }
}

fn gather(sources: &Sources) -> Vec<Series> {
    let nodes = sources.state.nodes.all();
    let pods = sources.state.pods.all();
    let pools = sources.state.node_pools.all();
    let now = sources.clock.now();
    let mut out = node_series(&nodes, &pods, now);
    out.extend(nodepool_series(&pools));
    out.push(pod_states(&pods, &nodes));
    out.extend(pod_waits(&pods, now));
    let mut unavailable = Series::new(
        "nodewright_unavailable_offerings",
        "Offerings (instance type, zone, capacity type) the cloud recently reported out of capacity, which provisioning avoids until they expire.",
    );
    #[allow(clippy::cast_precision_loss)] // a count far below 2^52
    unavailable
        .samples
        .push((Vec::new(), sources.unavailable.len_at(now) as f64));
    out.push(unavailable);
    out
}

/// What one node holds.
#[derive(Default)]
struct NodeUsage {
    pod_requests: Resources,
    pod_limits: Resources,
    daemon_requests: Resources,
    daemon_limits: Resources,
}

#[allow(clippy::too_many_lines)] // one family after another, each a few lines
fn node_series(nodes: &[Arc<Node>], pods: &[Arc<Pod>], now: jiff::Timestamp) -> Vec<Series> {
    let mut usage: BTreeMap<String, NodeUsage> = BTreeMap::new();
    for pod in pods {
        let Some(spec) = pod.spec.as_ref() else {
            continue;
        };
        let Some(node) = spec.node_name.as_deref() else {
            continue;
        };
        if is_terminal(pod) {
            continue;
        }
        let mut problems = Vec::new();
        let requests = nodewright_solver::pod::pod_requests(spec, &mut problems);
        let limits = pod_limits(spec);
        let entry = usage.entry(node.to_owned()).or_default();
        if is_daemon(pod) {
            entry.daemon_requests.add_assign(&requests);
            entry.daemon_limits.add_assign(&limits);
        } else {
            entry.pod_requests.add_assign(&requests);
            entry.pod_limits.add_assign(&limits);
        }
    }
    let mut count = Series::new(
        "karpenter_cluster_state_node_count",
        "Number of nodes in the controller's cache.",
    );
    #[allow(clippy::cast_precision_loss)] // a count far below 2^52
    count.samples.push((Vec::new(), nodes.len() as f64));
    let mut allocatable = Series::new("karpenter_nodes_allocatable", "Node allocatable resources.");
    let mut pod_requests = Series::new(
        "karpenter_nodes_total_pod_requests",
        "Resources requested by the non-DaemonSet pods bound to the node.",
    );
    let mut pod_limits_series = Series::new(
        "karpenter_nodes_total_pod_limits",
        "Resource limits of the non-DaemonSet pods bound to the node.",
    );
    let mut daemon_requests = Series::new(
        "karpenter_nodes_total_daemon_requests",
        "Resources requested by the DaemonSet pods bound to the node.",
    );
    let mut daemon_limits = Series::new(
        "karpenter_nodes_total_daemon_limits",
        "Resource limits of the DaemonSet pods bound to the node.",
    );
    let mut overhead = Series::new(
        "karpenter_nodes_system_overhead",
        "Resources reserved for the system: the node's capacity minus its allocatable.",
    );
    let mut lifetime = Series::new(
        "karpenter_nodes_current_lifetime_seconds",
        "Time since the node was created.",
    );
    let mut total_allocatable = Resources::default();
    let mut total_requested = Resources::default();
    let empty = NodeUsage::default();
    for node in nodes {
        let node_labels = node_labels(node);
        let status = node.status.as_ref();
        let node_allocatable = resources_of(status.and_then(|s| s.allocatable.as_ref()));
        let node_capacity = resources_of(status.and_then(|s| s.capacity.as_ref()));
        let held = usage.get(&node.name_any()).unwrap_or(&empty);
        push_resources(&mut allocatable, &node_labels, &node_allocatable);
        push_resources(&mut pod_requests, &node_labels, &held.pod_requests);
        push_resources(&mut pod_limits_series, &node_labels, &held.pod_limits);
        push_resources(&mut daemon_requests, &node_labels, &held.daemon_requests);
        push_resources(&mut daemon_limits, &node_labels, &held.daemon_limits);
        push_resources(
            &mut overhead,
            &node_labels,
            &node_capacity.minus(&node_allocatable),
        );
        if let Some(created) = &node.metadata.creation_timestamp {
            let age = now.duration_since(created.0).as_secs_f64().max(0.0);
            lifetime.samples.push((node_labels.clone(), age));
        }
        total_allocatable.add_assign(&node_allocatable);
        total_requested.add_assign(&held.pod_requests.plus(&held.daemon_requests));
    }
    let mut utilization = Series::new(
        "karpenter_cluster_utilization_percent",
        "Requests of every pod bound to a node as a percentage of every node's allocatable, by resource.",
    );
    for (resource, available) in amounts(&total_allocatable) {
        if available > 0.0 {
            let requested = amount(&total_requested, &resource);
            utilization
                .samples
                .push((vec![("resource_type", resource)], 100.0 * requested / available));
        }
    }
    vec![
        count,
        allocatable,
        pod_requests,
        pod_limits_series,
        daemon_requests,
        daemon_limits,
        overhead,
        lifetime,
        utilization,
    ]
}

fn nodepool_series(pools: &[Arc<NodePool>]) -> Vec<Series> {
    let mut limit = Series::new("karpenter_nodepools_limit", "The nodepool's limits, by resource.");
    let mut usage = Series::new(
        "karpenter_nodepools_usage",
        "Resources of the nodepool's nodes and nodeclaims (its status.resources), by resource.",
    );
    for pool in pools {
        let name = pool.name_any();
        push_pool(&mut limit, &name, &resources_of(Some(&pool.spec.limits)));
        let used = resources_of(pool.status.as_ref().map(|s| &s.resources));
        push_pool(&mut usage, &name, &used);
    }
    vec![limit, usage]
}

fn push_pool(series: &mut Series, pool: &str, resources: &Resources) {
    for (resource, value) in amounts(resources) {
        series.samples.push((
            vec![("resource_type", resource), ("nodepool", pool.to_owned())],
            value,
        ));
    }
}

/// `karpenter_pods_state`: 1 per pod, its state in the labels.
fn pod_states(pods: &[Arc<Pod>], nodes: &[Arc<Node>]) -> Series {
    let by_name: BTreeMap<String, &Arc<Node>> = nodes.iter().map(|n| (n.name_any(), n)).collect();
    let mut series = Series::new(
        "karpenter_pods_state",
        "Pod state: 1 for each pod, labelled with its owner, node, scheduling, phase and readiness and its node's nodepool, zone, architecture, capacity type and instance type.",
    );
    for pod in pods {
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let node_labels = by_name
            .get(&node_name)
            .map(|n| n.labels().clone())
            .unwrap_or_default();
        let node_label = |key: &str| node_labels.get(key).cloned().unwrap_or_default();
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        let owner = pod.owner_references().first().map_or_else(String::new, |o| {
            format!(
                "/apis/{}/namespaces/{}/{}s/{}",
                o.api_version,
                pod.namespace().unwrap_or_default(),
                o.kind.to_lowercase(),
                o.name
            )
        });
        let pod_labels = vec![
            ("name", pod.name_any()),
            ("namespace", pod.namespace().unwrap_or_default()),
            ("owner", owner),
            ("node", node_name.clone()),
            ("scheduled", (!node_name.is_empty()).to_string()),
            ("nodepool", node_label(labels::NODE_POOL)),
            ("zone", node_label(labels::ZONE)),
            ("arch", node_label(labels::ARCH)),
            ("capacity_type", node_label(labels::CAPACITY_TYPE)),
            ("instance_type", node_label(labels::INSTANCE_TYPE)),
            ("phase", status.and_then(|s| s.phase.clone()).unwrap_or_default()),
            ("ready", ready.to_string()),
            ("managed", node_labels.contains_key(labels::NODE_POOL).to_string()),
        ];
        series.samples.push((pod_labels, 1.0));
    }
    series
}

/// `karpenter_pods_unbound_time_seconds` and `karpenter_pods_unstarted_time_seconds`: how long
/// each live pod has waited since its creation for a node, and (bound) to become Ready.
fn pod_waits(pods: &[Arc<Pod>], now: jiff::Timestamp) -> [Series; 2] {
    let mut unbound = Series::new(
        "karpenter_pods_unbound_time_seconds",
        "Time since the creation of each pod not yet bound to a node.",
    );
    let mut unstarted = Series::new(
        "karpenter_pods_unstarted_time_seconds",
        "Time since the creation of each pod not yet Ready.",
    );
    for pod in pods
        .iter()
        .filter(|p| !is_terminal(p) && p.metadata.deletion_timestamp.is_none())
    {
        let Some(created) = &pod.metadata.creation_timestamp else {
            continue;
        };
        let waited = now.duration_since(created.0).as_secs_f64().max(0.0);
        let labels = || {
            vec![
                ("name", pod.name_any()),
                ("namespace", pod.namespace().unwrap_or_default()),
            ]
        };
        if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
            unbound.samples.push((labels(), waited));
        }
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !ready {
            unstarted.samples.push((labels(), waited));
        }
    }
    [unbound, unstarted]
}

/// Karpenter's node labels: the well-known labels snake-cased, the node's name and phase, and
/// whether a NodePool manages it.
fn node_labels(node: &Node) -> Labels {
    let node_labels = node.labels();
    let label = |key: &str| node_labels.get(key).cloned().unwrap_or_default();
    vec![
        ("node_name", node.name_any()),
        ("nodepool", label(labels::NODE_POOL)),
        ("zone", label(labels::ZONE)),
        ("region", label("topology.kubernetes.io/region")),
        ("instance_type", label(labels::INSTANCE_TYPE)),
        ("arch", label(labels::ARCH)),
        ("os", label("kubernetes.io/os")),
        ("capacity_type", label(labels::CAPACITY_TYPE)),
        ("windows_build", label("node.kubernetes.io/windows-build")),
        (
            "phase",
            node.status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default(),
        ),
        ("managed", node_labels.contains_key(labels::NODE_POOL).to_string()),
    ]
}

/// A node's series for every core resource, zero included (a node with no DaemonSet pods has 0
/// daemon requests, which dashboards should see), and for its non-zero extended resources.
fn push_resources(series: &mut Series, base: &Labels, resources: &Resources) {
    let mut all = CORE_RESOURCES
        .map(|name| (name.to_owned(), amount(resources, name)))
        .to_vec();
    all.extend(
        amounts(resources)
            .into_iter()
            .filter(|(name, _)| !CORE_RESOURCES.contains(&name.as_str())),
    );
    for (resource, value) in all {
        let mut labels = base.clone();
        labels.push(("resource_type", resource));
        series.samples.push((labels, value));
    }
}

/// A resource list as integers; entries that do not parse count as zero (the object's own
/// controller reports them).
fn resources_of(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
    let mut resources = Resources::default();
    for (name, value) in list.into_iter().flatten() {
        if let Some(parsed) = quantity::parse_resource(name, &value.0)
            .ok()
            .and_then(|v| i64::try_from(v).ok())
        {
            resources.set(name, parsed);
        }
    }
    resources
}

/// The non-zero amounts as Prometheus values: CPU in cores (Kubernetes' unit), the rest in
/// their units (bytes, counts).
fn amounts(resources: &Resources) -> Vec<(String, f64)> {
    let mut names = CORE_RESOURCES.to_vec();
    names.extend(resources.extended.keys().map(String::as_str));
    names
        .into_iter()
        .map(|name| (name.to_owned(), amount(resources, name)))
        .filter(|(_, value)| *value != 0.0)
        .collect()
}

#[allow(clippy::cast_precision_loss)] // exposition only; exact to 2^53
fn amount(resources: &Resources, name: &str) -> f64 {
    let raw = resources.get(name) as f64;
    if name == "cpu" { raw / 1000.0 } else { raw }
}

/// Limits as kube computes them: the larger of the app containers plus sidecars and the largest
/// init step, plus pod overhead.
fn pod_limits(spec: &PodSpec) -> Resources {
    let limits_of = |container: &k8s_openapi::api::core::v1::Container| {
        resources_of(container.resources.as_ref().and_then(|r| r.limits.as_ref()))
    };
    let mut apps = Resources::default();
    for container in &spec.containers {
        apps.add_assign(&limits_of(container));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for init in spec.init_containers.iter().flatten() {
        let limits = limits_of(init);
        let step = if init.restart_policy.as_deref() == Some("Always") {
            sidecars.add_assign(&limits);
            sidecars.clone()
        } else {
            sidecars.plus(&limits)
        };
        init_peak = larger_each(&init_peak, &step);
    }
    let total = larger_each(&apps.plus(&sidecars), &init_peak);
    total.plus(&resources_of(spec.overhead.as_ref()))
}

fn larger_each(a: &Resources, b: &Resources) -> Resources {
    let mut out = a.clone();
    for (name, _) in amounts(b) {
        out.set(&name, a.get(&name).max(b.get(&name)));
    }
    out
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn is_daemon(pod: &Pod) -> bool {
    pod.owner_references().iter().any(|o| o.kind == "DaemonSet")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn limits_take_the_larger_of_apps_and_init_steps_plus_overhead() {
        let pod = pod(json!({
            "metadata": { "name": "p" },
            "spec": {
                "containers": [
                    { "name": "a", "resources": { "limits": { "cpu": "500m", "memory": "1Gi" } } },
                    { "name": "b", "resources": { "limits": { "cpu": "250m" } } }
                ],
                "initContainers": [
                    { "name": "init", "resources": { "limits": { "cpu": "2", "memory": "512Mi" } } }
                ],
                "overhead": { "cpu": "100m" }
            }
        }));
        let limits = pod_limits(pod.spec.as_ref().unwrap());
        assert_eq!(limits.cpu_millis, 2100);
        assert_eq!(limits.memory_bytes, 1 << 30);
    }

    #[test]
    fn cpu_is_exposed_in_cores_and_zero_amounts_are_left_out() {
        let mut resources = Resources::default();
        resources.set("cpu", 3920);
        resources.set("memory", 1024);
        assert_eq!(
            amounts(&resources),
            vec![("cpu".to_owned(), 3.92), ("memory".to_owned(), 1024.0)]
        );
    }

    #[test]
    fn pod_state_names_the_owner_like_a_self_link_and_the_node_labels() {
        let pods = [Arc::new(pod(json!({
            "metadata": {
                "name": "web-1", "namespace": "default",
                "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u" }]
            },
            "spec": { "nodeName": "n1", "containers": [] },
            "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] }
        })))];
        let nodes = [Arc::new(
            serde_json::from_value::<Node>(json!({
                "metadata": { "name": "n1", "labels": { "karpenter.sh/nodepool": "default", "topology.kubernetes.io/zone": "us-east-1a" } }
            }))
            .unwrap(),
        )];
        let series = pod_states(&pods, &nodes);
        let labels: BTreeMap<&str, &str> = series.samples[0]
            .0
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        assert_eq!(
            labels["owner"],
            "/apis/apps/v1/namespaces/default/replicasets/web"
        );
        assert_eq!(labels["nodepool"], "default");
        assert_eq!(labels["zone"], "us-east-1a");
        assert_eq!(labels["scheduled"], "true");
        assert_eq!(labels["ready"], "true");
        assert_eq!(labels["managed"], "true");
        assert_eq!(labels["phase"], "Running");
    }
}
