//! The simulated scheduler and kubelets against hand-computed expectations: where pods land
//! given taints, affinity and topology spread; the Unschedulable condition Karpenter watches
//! for; Nodes registering for fake-cloud instances and becoming Ready on the simulated clock;
//! pods running, stopping, and going with their node.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::sync::{Arc, OnceLock};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod};
use nodewright_api::NodeClaim;
use nodewright_catalog::{Catalog, NodeSettings};
use nodewright_cloudprovider::CloudProvider;
use nodewright_sim::{
    cloud::{FakeCloud, FakeCloudConfig},
    dataplane::{DataPlane, DataPlaneConfig, scheduler},
    meta::ManualClock,
    store::{DeleteOptions, Filter, Store, StoreConfig, Subresource, WriteOptions},
};
use serde_json::{Value, json};

struct Cluster {
    store: Arc<Store>,
    clock: ManualClock,
    plane: DataPlane,
}

fn catalog() -> Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG
        .get_or_init(|| Catalog::us_east_1(&NodeSettings::default()).unwrap())
        .clone()
}

fn cluster_with_cloud(cloud: bool) -> (Cluster, Option<FakeCloud>) {
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap());
    let store = Arc::new(Store::new(StoreConfig {
        clock: clock.clock(),
        ..StoreConfig::default()
    }));
    let cloud = cloud.then(|| {
        FakeCloud::new(
            catalog(),
            clock.clock(),
            FakeCloudConfig {
                launch_latency: SignedDuration::from_secs(30),
                ..FakeCloudConfig::default()
            },
        )
    });
    let plane = DataPlane::new(store.clone(), cloud.clone(), DataPlaneConfig::default());
    (Cluster { store, clock, plane }, cloud)
}

fn cluster() -> Cluster {
    cluster_with_cloud(false).0
}

impl Cluster {
    fn create(&self, resource: &str, ns: &str, value: Value) {
        let info = self.store.registry().get("", resource).unwrap();
        self.store
            .create(&info, ns, value, &WriteOptions::default())
            .unwrap();
    }

    // Callers build the JSON inline; taking it by value keeps them short.
    #[allow(clippy::needless_pass_by_value)]
    fn node(&self, name: &str, zone: &str, cpu: &str, taints: Value) {
        self.create(
            "nodes",
            "",
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}},
                "spec": {"taints": taints},
                "status": {"allocatable": {"cpu": cpu, "memory": "16Gi", "pods": "110"},
                           "conditions": [{"type": "Ready", "status": "True"}]}
            }),
        );
    }

    #[allow(clippy::needless_pass_by_value)]
    fn pod(&self, name: &str, cpu: &str, extra_spec: Value) {
        let mut spec = json!({"containers": [{"name": "app", "image": "app:1",
            "resources": {"requests": {"cpu": cpu}}}]});
        for (k, v) in extra_spec.as_object().unwrap() {
            spec[k] = v.clone();
        }
        self.create(
            "pods",
            "default",
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}),
        );
    }

    fn get_pod(&self, name: &str) -> Option<Pod> {
        let info = self.store.registry().get("", "pods").unwrap();
        let obj = self.store.get(&info, "default", name).ok()?;
        Some(serde_json::from_value(obj.value()).unwrap())
    }

    fn node_of(&self, pod: &str) -> Option<String> {
        self.get_pod(pod)?.spec?.node_name
    }

    /// The PodScheduled condition's (status, reason, message).
    fn scheduled(&self, pod: &str) -> (String, Option<String>, String) {
        let pod = self.get_pod(pod).unwrap();
        let condition = pod
            .status
            .unwrap()
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "PodScheduled")
            .unwrap();
        (
            condition.status,
            condition.reason,
            condition.message.unwrap_or_default(),
        )
    }

    fn nodes(&self) -> Vec<Node> {
        let info = self.store.registry().get("", "nodes").unwrap();
        let page = self.store.list(&info, &Filter::default(), None, None).unwrap();
        page.items
            .iter()
            .map(|o| serde_json::from_value(o.value()).unwrap())
            .collect()
    }

    fn settle(&self) {
        self.plane.settle().unwrap();
        // Settled means a further pass has nothing to do.
        assert_eq!(self.plane.step().unwrap(), 0);
    }
}

#[test]
fn taints_send_pods_to_the_nodes_that_tolerate_them_and_refusals_are_counted() {
    let c = cluster();
    c.node(
        "gpu",
        "us-east-1a",
        "4",
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    );
    c.node("small", "us-east-1a", "1", json!([]));
    c.pod("first", "500m", json!({}));
    c.settle();
    // Only the untainted node takes a pod without tolerations.
    assert_eq!(c.node_of("first").as_deref(), Some("small"));

    c.pod("big", "800m", json!({}));
    c.pod(
        "tolerant",
        "800m",
        json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
    );
    c.settle();
    // "small" has 500m left, so the tolerant pod can only go to "gpu"; "big" fits nowhere.
    assert_eq!(c.node_of("tolerant").as_deref(), Some("gpu"));
    assert_eq!(c.node_of("big"), None);
    let (status, reason, message) = c.scheduled("big");
    assert_eq!(status, "False");
    assert_eq!(reason.as_deref(), Some(scheduler::UNSCHEDULABLE));
    assert!(message.starts_with("0/2 nodes are available: "), "{message}");
    assert!(message.contains("1 not enough free resources"), "{message}");
    assert!(
        message.contains("1 taint dedicated=gpu:NoSchedule not tolerated"),
        "{message}"
    );
    // The bound pods carry PodScheduled=True.
    assert_eq!(c.scheduled("tolerant").0, "True");
}

#[test]
fn node_affinity_and_selectors_pick_the_matching_node() {
    let c = cluster();
    for zone in ["a", "b", "c"] {
        c.node(
            &format!("node-{zone}"),
            &format!("us-east-1{zone}"),
            "4",
            json!([]),
        );
    }
    c.pod(
        "zonal",
        "100m",
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1b"]}]}]}}}}),
    );
    c.pod(
        "by-name",
        "100m",
        json!({"nodeSelector": {"kubernetes.io/hostname": "node-c"}}),
    );
    c.pod("nowhere", "100m", json!({"nodeSelector": {"disktype": "ssd"}}));
    c.settle();
    assert_eq!(c.node_of("zonal").as_deref(), Some("node-b"));
    assert_eq!(c.node_of("by-name").as_deref(), Some("node-c"));
    assert_eq!(c.node_of("nowhere"), None);
    let (status, reason, message) = c.scheduled("nowhere");
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("False", Some("Unschedulable"))
    );
    assert!(message.starts_with("0/3 nodes are available: 3 "), "{message}");
    assert!(message.contains("disktype"), "{message}");
}

#[test]
fn zone_spread_puts_two_of_six_pods_in_each_zone_and_anti_affinity_leaves_one_pending() {
    let c = cluster();
    for zone in ["a", "b", "c"] {
        c.node(
            &format!("node-{zone}"),
            &format!("us-east-1{zone}"),
            "8",
            json!([]),
        );
    }
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}}}]});
    for i in 0..6 {
        c.pod(&format!("web-{i}"), "100m", spread.clone());
    }
    c.settle();
    let mut per_node = std::collections::BTreeMap::new();
    for i in 0..6 {
        *per_node
            .entry(c.node_of(&format!("web-{i}")).unwrap())
            .or_insert(0) += 1;
    }
    assert_eq!(
        per_node.into_iter().collect::<Vec<_>>(),
        vec![
            ("node-a".to_owned(), 2),
            ("node-b".to_owned(), 2),
            ("node-c".to_owned(), 2)
        ]
    );

    // Required anti-affinity on the hostname among "db" pods: three nodes hold three of four.
    let anti = |name: &str| {
        let info = c.store.registry().get("", "pods").unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "db:1", "resources": {"requests": {"cpu": "100m"}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app": "db"}}}]}}}});
        c.store
            .create(&info, "default", pod, &WriteOptions::default())
            .unwrap();
    };
    for i in 0..4 {
        anti(&format!("db-{i}"));
    }
    c.settle();
    let placed: std::collections::BTreeSet<String> =
        (0..4).filter_map(|i| c.node_of(&format!("db-{i}"))).collect();
    assert_eq!(placed.len(), 3, "each node holds one db pod");
    let pending: Vec<usize> = (0..4)
        .filter(|i| c.node_of(&format!("db-{i}")).is_none())
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        c.scheduled(&format!("db-{}", pending[0])).1.as_deref(),
        Some("Unschedulable")
    );
}

#[test]
fn gated_terminating_and_foreign_scheduler_pods_are_left_alone() {
    let c = cluster();
    c.node("node", "us-east-1a", "4", json!([]));
    c.pod(
        "gated",
        "100m",
        json!({"schedulingGates": [{"name": "example.com/wait"}]}),
    );
    c.pod("other", "100m", json!({"schedulerName": "my-scheduler"}));
    c.settle();
    assert_eq!(c.node_of("gated"), None);
    assert_eq!(c.node_of("other"), None);
    assert!(
        c.get_pod("gated")
            .unwrap()
            .status
            .and_then(|s| s.conditions)
            .is_none()
    );
}

#[test]
fn bound_pods_run_and_deleted_pods_stop_on_their_node() {
    let c = cluster();
    c.node("node", "us-east-1a", "4", json!([]));
    c.pod("web", "100m", json!({}));
    c.settle();
    let pod = c.get_pod("web").unwrap();
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status.pod_ip.unwrap().starts_with("100."));
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    assert!(status.container_statuses.unwrap()[0].ready);

    // A graceful delete leaves the pod terminating until its kubelet stops it.
    let info = c.store.registry().get("", "pods").unwrap();
    let opts = DeleteOptions {
        grace_period: Some(30),
        ..DeleteOptions::default()
    };
    c.store.delete(&info, "default", "web", &opts).unwrap();
    assert!(c.get_pod("web").unwrap().metadata.deletion_timestamp.is_some());
    c.settle();
    assert!(c.get_pod("web").is_none());
}

fn claim(name: &str) -> NodeClaim {
    serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {"karpenter.sh/nodepool": "default"}},
        "spec": {
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
            "requirements": [
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1b"]}],
            "taints": [{"key": "team", "value": "a", "effect": "NoSchedule"}],
            "startupTaints": [{"key": "example.com/agent-not-ready", "effect": "NoSchedule"}]
        }
    }))
    .unwrap()
}

fn taint_keys(node: &Node) -> Vec<String> {
    let mut keys: Vec<String> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.key)
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn instances_register_as_nodes_turn_ready_and_take_their_pods_with_them() {
    let (c, cloud) = cluster_with_cloud(true);
    let cloud = cloud.unwrap();
    let launched = cloud.create(&claim("default-abc12")).await.unwrap();
    let provider_id = launched.status.unwrap().provider_id.unwrap();

    // Launch latency 30 s, boot delay 20 s: nothing at 49 s, a Node at 50 s.
    c.clock.advance(SignedDuration::from_secs(49));
    c.settle();
    assert!(c.nodes().is_empty());
    c.clock.advance(SignedDuration::from_secs(1));
    c.settle();
    let nodes = c.nodes();
    assert_eq!(nodes.len(), 1);
    let node = &nodes[0];
    assert_eq!(node.metadata.name.as_deref(), Some("ip-10-0-0-1.ec2.internal"));
    let spec = node.spec.as_ref().unwrap();
    assert_eq!(spec.provider_id.as_deref(), Some(provider_id.as_str()));
    let node_labels = node.metadata.labels.as_ref().unwrap();
    assert_eq!(node_labels["node.kubernetes.io/instance-type"], "m5.large");
    assert_eq!(node_labels["topology.kubernetes.io/zone"], "us-east-1b");
    assert_eq!(node_labels["karpenter.sh/capacity-type"], "on-demand");
    assert_eq!(node_labels["karpenter.sh/nodepool"], "default");
    assert_eq!(node_labels["kubernetes.io/hostname"], "ip-10-0-0-1.ec2.internal");
    assert_eq!(
        taint_keys(node),
        [
            "example.com/agent-not-ready",
            "karpenter.sh/unregistered",
            "node.kubernetes.io/not-ready",
            "team"
        ]
    );
    // m5.large: Karpenter's published allocatable.
    let allocatable = node.status.as_ref().unwrap().allocatable.as_ref().unwrap();
    assert_eq!(allocatable["cpu"].0, "1930m");
    assert_eq!(allocatable["pods"].0, "29");

    // Ready 10 s after registration; the startup and not-ready taints go, the rest stay.
    c.clock.advance(SignedDuration::from_secs(9));
    c.settle();
    assert_eq!(
        c.nodes()[0].spec.as_ref().unwrap().taints.as_ref().unwrap().len(),
        4
    );
    c.clock.advance(SignedDuration::from_secs(1));
    c.settle();
    let node = &c.nodes()[0];
    assert_eq!(taint_keys(node), ["karpenter.sh/unregistered", "team"]);
    let ready = node.status.as_ref().unwrap().conditions.as_ref().unwrap();
    assert!(ready.iter().any(|c| c.type_ == "Ready" && c.status == "True"));

    // Karpenter would now remove the unregistered taint; a tolerating pod lands and runs.
    let info = c.store.registry().get("", "nodes").unwrap();
    c.store
        .update(
            &info,
            "",
            "ip-10-0-0-1.ec2.internal",
            Subresource::Main,
            &WriteOptions::default(),
            &mut |n| {
                let mut n = n.unwrap().clone();
                n["spec"]["taints"] = json!([{"key": "team", "value": "a", "effect": "NoSchedule"}]);
                Ok(n)
            },
        )
        .unwrap();
    c.pod(
        "web",
        "500m",
        json!({"tolerations": [{"key": "team", "operator": "Exists"}]}),
    );
    c.settle();
    assert_eq!(c.node_of("web").as_deref(), Some("ip-10-0-0-1.ec2.internal"));
    assert_eq!(
        c.get_pod("web").unwrap().status.unwrap().phase.as_deref(),
        Some("Running")
    );

    // The machine goes: the Node is deleted and its pod with it.
    cloud.delete(&launched_claim(&cloud)).await.unwrap();
    c.settle();
    assert!(c.nodes().is_empty());
    assert!(c.get_pod("web").is_none());
    // And it never registers again.
    c.clock.advance(SignedDuration::from_mins(5));
    c.settle();
    assert!(c.nodes().is_empty());
}

#[tokio::test]
async fn an_instance_on_a_broken_ami_runs_but_never_registers() {
    let (c, cloud) = cluster_with_cloud(true);
    let cloud = cloud.unwrap();
    cloud.break_ami(&cloud.node_class_ami("default"));
    cloud.create(&claim("default-abc12")).await.unwrap();
    c.clock.advance(SignedDuration::from_mins(30));
    c.settle();
    assert!(c.nodes().is_empty());
    assert_eq!(cloud.instances().len(), 1, "it runs (and bills)");
}

fn launched_claim(cloud: &FakeCloud) -> NodeClaim {
    cloud.all_instances()[0].node_claim.clone()
}

/// The test-support path a controller test takes: a simulated cluster with CRDs, a kube-rs
/// client, a NodeClaim stored and launched, the Node seen through the API, and the ledger.
#[tokio::test]
async fn a_simulated_test_cluster_serves_crds_nodes_and_the_ledger() {
    use kube::{
        Api,
        api::{ListParams, PostParams},
    };
    use nodewright_sim::testing::TestCluster;

    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap());
    let cluster = TestCluster::start_simulated(
        clock.clock(),
        FakeCloudConfig {
            launch_latency: SignedDuration::from_secs(30),
            ..FakeCloudConfig::default()
        },
        DataPlaneConfig::default(),
    )
    .await
    .unwrap();
    let claims: Api<NodeClaim> = Api::all(cluster.client());
    let stored = claims
        .create(&PostParams::default(), &claim("default-xyz99"))
        .await
        .unwrap();
    let cloud = cluster.cloud().unwrap();
    let launched = cloud.create(&stored).await.unwrap();
    let provider_id = launched.status.unwrap().provider_id.unwrap();

    // 30 s launch + 20 s boot: the Node is served to kube-rs.
    clock.advance(SignedDuration::from_secs(50));
    cluster.data_plane().unwrap().settle().unwrap();
    let nodes: Api<Node> = Api::all(cluster.client());
    let listed = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].spec.as_ref().unwrap().provider_id.as_deref(),
        Some(provider_id.as_str())
    );

    // An hour after it started running, an m5.large on-demand ($0.096/h) has cost $0.096.
    clock.advance(SignedDuration::from_secs(3600 - 20));
    let ledger = cluster.ledger().unwrap();
    let entry = ledger.entry(&provider_id).unwrap();
    assert_eq!(entry.node_claim, "default-xyz99");
    assert_eq!(entry.billed_seconds, 3600);
    assert_eq!(entry.cost_nano_usd, 96_000_000);
}
