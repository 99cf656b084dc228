//! Termination and garbage collection against the embedded API server, the fake cloud and the
//! simulated data plane, on a manual clock: each test runs controller passes by hand
//! (`Terminator::reconcile_all`, `GarbageCollector::collect`) between data-plane settles, so
//! every step is observable and the outcome deterministic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
        events::v1::Event,
        policy::v1::PodDisruptionBudget,
        storage::v1::VolumeAttachment,
    },
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use nodewright_api::{NodeClaim, conditions::nodeclaim, labels};
use nodewright_cloudprovider::CloudProvider;
use nodewright_controller::{
    Context, Settings,
    error::ErrorClass,
    events::Events,
    gc::{Collected, GarbageCollector},
    state::ClusterState,
    termination::{ObjectKey, Progress, Report, Terminator},
    unavailable::UnavailableOfferings,
};
use nodewright_sim::{
    cloud::{FakeCloud, FakeCloudConfig},
    dataplane::DataPlaneConfig,
    meta::ManualClock,
    testing::TestCluster,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const START: &str = "2026-01-01T00:00:00Z";

struct Harness {
    clock: ManualClock,
    cluster: TestCluster,
    ctx: Context,
    terminator: Terminator,
}

impl Harness {
    async fn start() -> Self {
        let clock = ManualClock::new(START.parse::<Timestamp>().unwrap());
        let cluster = TestCluster::start_simulated(
            clock.clock(),
            FakeCloudConfig::default(),
            DataPlaneConfig::default(),
        )
        .await
        .unwrap();
        let client = cluster.client();
        let (state, watches) = ClusterState::start(&client);
        tokio::spawn(watches);
        state.wait_synced().await;
        let settings = Settings::default();
        let ctx = Context {
            events: Events::new(client.clone(), "termination-test"),
            unavailable: UnavailableOfferings::new(settings.unavailable_offering_ttl),
            settings: Arc::new(settings),
            cloud: Arc::new(cluster.cloud().unwrap().clone()),
            clock: clock.clock(),
            state,
            client,
        };
        Self {
            clock,
            cluster,
            ctx,
            terminator: Terminator::new(),
        }
    }

    fn cloud(&self) -> &FakeCloud {
        self.cluster.cloud().unwrap()
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::all(self.cluster.client())
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.cluster.client(), "default")
    }

    fn settle(&self) {
        self.cluster.data_plane().unwrap().settle().unwrap();
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(SignedDuration::from_secs(seconds));
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// One termination pass, failing the test on any error but a lost race (the next pass
    /// retries those, as the loop would).
    async fn terminate_once(&self) -> Report {
        let report = self.terminator.reconcile_all(&self.ctx).await;
        for (key, outcome) in &report.outcomes {
            if let Err(error) = outcome {
                let lost_race = matches!(error, nodewright_controller::ControllerError::Kube(e)
                    if nodewright_controller::error::is_conflict(e))
                    || error.class() == ErrorClass::Gone;
                assert!(lost_race, "{key}: {error}");
            }
        }
        report
    }

    /// Lets the controller's watches catch up with writes made through the API.
    async fn catch_up(&self) {
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    async fn until<F, Fut>(&self, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        self.cluster
            .wait_until(Duration::from_secs(10), what, &mut done)
            .await
            .unwrap();
    }

    /// Waits until the controller's cache sees the NodeClaim deleting, so the next pass acts on
    /// it.
    async fn until_cached_deleting(&self, name: &str) {
        self.until(&format!("the cache sees nodeclaim {name} deleting"), || async {
            self.ctx
                .state
                .node_claims
                .all()
                .iter()
                .any(|c| c.name_any() == name && c.metadata.deletion_timestamp.is_some())
        })
        .await;
    }

    async fn claim(&self, name: &str) -> Option<NodeClaim> {
        self.api::<NodeClaim>().get_opt(name).await.unwrap()
    }

    async fn node(&self, name: &str) -> Option<Node> {
        self.api::<Node>().get_opt(name).await.unwrap()
    }

    async fn pods_on(&self, node: &str) -> Vec<Pod> {
        self.pods()
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .unwrap()
            .items
    }

    async fn events(&self, reason: &str) -> Vec<Event> {
        Api::<Event>::all(self.cluster.client())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
    }

    /// Stores a NodeClaim (with the termination finalizer) in the API server.
    async fn create_claim(&self, name: &str, grace: Option<&str>) -> NodeClaim {
        self.api::<NodeClaim>()
            .create(&PostParams::default(), &claim(name, grace))
            .await
            .unwrap()
    }

    /// Launches a stored NodeClaim through the fake cloud and records the launch on it, as the
    /// lifecycle controller would.
    async fn launch(&self, stored: &NodeClaim) -> NodeClaim {
        let launched = self.cloud().create(stored).await.unwrap();
        let status = json!({ "status": launched.status });
        self.api::<NodeClaim>()
            .patch_status(
                &stored.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
            .unwrap()
    }

    /// A NodeClaim launched, its Node registered and Ready, with the finalizer and taints the
    /// registration step leaves; returns the NodeClaim and the Node's name.
    async fn node_for(&self, name: &str, grace: Option<&str>) -> (NodeClaim, String) {
        let stored = self.create_claim(name, grace).await;
        let launched = self.launch(&stored).await;
        let provider_id = launched.status.as_ref().unwrap().provider_id.clone().unwrap();
        // Boot, then readiness.
        self.advance(20);
        self.settle();
        self.advance(10);
        self.settle();
        let node = self
            .api::<Node>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|n| n.spec.as_ref().unwrap().provider_id.as_deref() == Some(provider_id.as_str()))
            .expect("the kubelet registered the node");
        let taints: Vec<_> = node
            .spec
            .as_ref()
            .unwrap()
            .taints
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !labels::UNREGISTERED_TAINT.matches(t))
            .collect();
        let registered = json!({
            "metadata": { "finalizers": [labels::TERMINATION_FINALIZER] },
            "spec": { "taints": taints },
        });
        self.api::<Node>()
            .patch(
                &node.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&registered),
            )
            .await
            .unwrap();
        (launched, node.name_any())
    }

    async fn create_pod(&self, name: &str, node: &str, extra: Value) -> Pod {
        self.pods()
            .create(&PostParams::default(), &pod(name, node, extra))
            .await
            .unwrap()
    }

    /// A DaemonSet pinned to `node` and its pod there: the data plane's DaemonSet controller
    /// makes it when it runs DaemonSets, otherwise the test creates it, owned by the DaemonSet.
    async fn daemon_pod(&self, name: &str, node: &str, critical: bool) -> String {
        let priority = if critical {
            json!("system-node-critical")
        } else {
            Value::Null
        };
        let template_spec = json!({
            "nodeSelector": { "kubernetes.io/hostname": node },
            "priorityClassName": priority,
            "containers": [{ "name": "agent", "image": "agent:1" }],
        });
        let ds: DaemonSet = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": { "name": name, "namespace": "default" },
            "spec": {
                "selector": { "matchLabels": { "daemon": name } },
                "template": { "metadata": { "labels": { "daemon": name } }, "spec": template_spec },
            },
        }))
        .unwrap();
        let ds = Api::<DaemonSet>::namespaced(self.cluster.client(), "default")
            .create(&PostParams::default(), &ds)
            .await
            .unwrap();
        self.settle();
        let owned_by = |p: &Pod| {
            p.owner_references()
                .iter()
                .any(|o| o.kind == "DaemonSet" && o.name == name)
        };
        if let Some(existing) = self.pods_on(node).await.into_iter().find(|p| owned_by(p)) {
            return existing.name_any();
        }
        let pod_name = format!("{name}-pod");
        self.create_pod(
            &pod_name,
            node,
            json!({
                "metadata": {
                    "labels": { "daemon": name },
                    "ownerReferences": [{
                        "apiVersion": "apps/v1", "kind": "DaemonSet", "name": name,
                        "uid": ds.metadata.uid, "controller": true,
                    }],
                },
                "spec": { "priorityClassName": priority },
            }),
        )
        .await;
        pod_name
    }

    async fn delete_claim(&self, name: &str) {
        self.api::<NodeClaim>()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
}

fn claim(name: &str, grace: Option<&str>) -> NodeClaim {
    let mut value = json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": { labels::NODE_POOL: "default" },
            "finalizers": [labels::TERMINATION_FINALIZER],
        },
        "spec": {
            "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" },
            "requirements": [
                { "key": labels::INSTANCE_TYPE, "operator": "In", "values": ["m5.large"] },
                { "key": labels::CAPACITY_TYPE, "operator": "In", "values": ["on-demand"] },
            ],
        },
    });
    if let Some(grace) = grace {
        value["spec"]["terminationGracePeriod"] = json!(grace);
    }
    serde_json::from_value(value).unwrap()
}

fn pod(name: &str, node: &str, extra: Value) -> Pod {
    let mut value = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default", "labels": { "app": name } },
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 30,
            "containers": [{ "name": "main", "image": "app:1", "resources": { "requests": { "cpu": "100m" } } }],
        },
    });
    merge(&mut value, extra);
    serde_json::from_value(value).unwrap()
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                if value.is_null() {
                    continue;
                }
                merge(into.entry(key).or_insert(Value::Null), value);
            }
        }
        (into, from) => *into = from,
    }
}

fn condition<'a>(claim: &'a NodeClaim, condition_type: &str) -> Option<&'a Condition> {
    claim
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == condition_type)
}

fn has_disrupted_taint(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| labels::DISRUPTED_TAINT.matches(t)))
}

/// Which tier each pod of the first test is in (Karpenter's order).
/// DaemonSet pods are named by the simulated DaemonSet controller (`logs-<random>`), or by the
/// test when it makes them itself (`logs-pod`): both start with the DaemonSet's name.
fn tier_of(name: &str) -> Option<usize> {
    match name {
        "web-1" | "web-2" => Some(0),
        "critical" => Some(2),
        _ if name.starts_with("logs-") => Some(1),
        _ if name.starts_with("node-agent-") => Some(3),
        _ => None,
    }
}

/// One pod per tier on `node`, plus two that stay: one tolerating the disrupted taint and a
/// mirror pod.
/// Returns the names of the two DaemonSet pods (non-critical, critical).
async fn populate_tiers(h: &Harness, node: &str) -> (String, String) {
    h.create_pod("web-1", node, json!({})).await;
    h.create_pod("web-2", node, json!({})).await;
    h.create_pod(
        "critical",
        node,
        json!({ "spec": { "priorityClassName": "system-cluster-critical" } }),
    )
    .await;
    h.create_pod(
        "tolerant",
        node,
        json!({ "spec": { "tolerations": [{ "key": "karpenter.sh/disrupted", "operator": "Exists", "effect": "NoSchedule" }] } }),
    )
    .await;
    h.create_pod(
        "mirror",
        node,
        json!({ "metadata": { "annotations": { "kubernetes.io/config.mirror": "static" } } }),
    )
    .await;
    let logs = h.daemon_pod("logs", node, false).await;
    let agent = h.daemon_pod("node-agent", node, true).await;
    assert!(
        logs.starts_with("logs-") && agent.starts_with("node-agent-"),
        "{logs} {agent}"
    );
    h.settle();
    assert!(
        h.pods_on(node)
            .await
            .iter()
            .all(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Running"))
    );
    (logs, agent)
}

/// What the passes of a termination showed.
#[derive(Default)]
struct Observed {
    /// The pass in which each pod was first seen terminating.
    evicted_in_round: BTreeMap<String, usize>,
    taint_seen: bool,
    /// `Type=Status` of every NodeClaim condition seen, with its reason.
    conditions_seen: BTreeMap<String, String>,
}

/// Pass after pass, a second of simulated time apart, watching the pods between the
/// controller's writes and the kubelet's, until the NodeClaim is gone.
async fn terminate_watching(h: &Harness, claim: &str, node: &str) -> Observed {
    let mut seen = Observed::default();
    for round in 0..60 {
        h.terminate_once().await;
        let pods = h.pods_on(node).await;
        for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_some()) {
            let name = pod.name_any();
            let tier = tier_of(&name).unwrap_or_else(|| panic!("{name} must stay until its node goes"));
            seen.evicted_in_round.entry(name.clone()).or_insert(round);
            // A tier starts only when the earlier tiers' pods are gone.
            for other in &pods {
                let earlier = tier_of(&other.name_any()).is_some_and(|t| t < tier);
                assert!(!earlier, "{name} evicted while {} remains", other.name_any());
            }
        }
        if let Some(node) = h.node(node).await {
            seen.taint_seen |= has_disrupted_taint(&node);
        }
        let Some(claim) = h.claim(claim).await else {
            break;
        };
        for c in &claim.status.as_ref().unwrap().conditions {
            seen.conditions_seen
                .insert(format!("{}={}", c.type_, c.status), c.reason.clone());
        }
        h.settle();
        h.advance(1);
        h.catch_up().await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_nodeclaim_drains_its_node_in_tiers_and_terminates_the_instance() {
    let h = Harness::start().await;
    let (launched, node) = h.node_for("default-tiers", None).await;
    let (logs, agent) = populate_tiers(&h, &node).await;

    h.delete_claim("default-tiers").await;
    h.catch_up().await;
    let Observed {
        evicted_in_round,
        taint_seen,
        conditions_seen,
    } = terminate_watching(&h, "default-tiers", &node).await;

    assert!(h.claim("default-tiers").await.is_none(), "the nodeclaim is gone");
    assert!(h.node(&node).await.is_none(), "the node is gone");
    assert!(h.cloud().instances().is_empty(), "the instance is terminated");
    let provider_id = launched.status.unwrap().provider_id.unwrap();
    assert!(
        h.cloud()
            .get(&provider_id)
            .await
            .unwrap_err()
            .is_node_claim_not_found()
    );
    assert!(
        taint_seen,
        "the node was tainted karpenter.sh/disrupted:NoSchedule"
    );

    // Each tier went in a later pass than the one before it.
    let round_of = |name: &str| evicted_in_round[name];
    assert_eq!(round_of("web-1"), round_of("web-2"));
    assert!(round_of("web-1") < round_of(&logs));
    assert!(round_of(&logs) < round_of("critical"));
    assert!(round_of("critical") < round_of(&agent));
    assert!(!evicted_in_round.contains_key("tolerant"));
    assert!(!evicted_in_round.contains_key("mirror"));

    for expected in [
        "Drained=Unknown",
        "Drained=True",
        "VolumesDetached=True",
        "InstanceTerminating=True",
    ] {
        assert!(
            conditions_seen.contains_key(expected),
            "{expected} in {conditions_seen:?}"
        );
    }
    assert_eq!(conditions_seen["Drained=Unknown"], nodeclaim::REASON_DRAINING);
    let evicted: Vec<String> = h
        .events("Evicted")
        .await
        .into_iter()
        .filter_map(|e| e.regarding.and_then(|r| r.name))
        .collect();
    for name in ["web-1", "web-2", logs.as_str(), "critical", agent.as_str()] {
        assert!(evicted.iter().any(|e| e == name), "{name}: {evicted:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_blocks_eviction_until_the_grace_period_forces_deletion() {
    let h = Harness::start().await;
    let (_, node) = h.node_for("default-guarded", Some("5m")).await;
    for name in ["guarded-1", "guarded-2"] {
        h.create_pod(
            name,
            &node,
            json!({ "metadata": { "labels": { "app": "guarded" } } }),
        )
        .await;
    }
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": { "name": "guarded", "namespace": "default" },
        "spec": { "minAvailable": 2, "selector": { "matchLabels": { "app": "guarded" } } },
    }))
    .unwrap();
    Api::<PodDisruptionBudget>::namespaced(h.cluster.client(), "default")
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
    h.settle();

    let deleted_at = h.now();
    let deadline = deleted_at.checked_add(SignedDuration::from_mins(5)).unwrap();
    h.delete_claim("default-guarded").await;
    h.catch_up().await;

    // The budget refuses every eviction: nothing moves, one FailedDraining warning however
    // often the controller tries.
    let mut passes_after_warning = 0;
    for _ in 0..20 {
        h.terminate_once().await;
        h.settle();
        h.advance(1);
        h.catch_up().await;
        if !h.events("FailedDraining").await.is_empty() {
            passes_after_warning += 1;
            if passes_after_warning == 3 {
                break;
            }
        }
    }
    assert_eq!(passes_after_warning, 3, "the drain was refused");
    let claim = h.claim("default-guarded").await.unwrap();
    assert_eq!(
        claim.annotations()[labels::NODECLAIM_TERMINATION_TIMESTAMP],
        nodewright_api::clock::rfc3339(deadline)
    );
    let pods = h.pods_on(&node).await;
    assert_eq!(pods.len(), 2);
    assert!(pods.iter().all(|p| p.metadata.deletion_timestamp.is_none()));
    assert_eq!(h.events("FailedDraining").await.len(), 1);
    assert!(h.node(&node).await.is_some_and(|n| has_disrupted_taint(&n)));

    // A minute before the deadline the pods' 30 s grace still fits: still refused.
    h.clock
        .advance(deadline.duration_since(h.now()) - SignedDuration::from_secs(60));
    let report = h.terminate_once().await;
    assert!(matches!(
        report.outcome(&ObjectKey::Node(node.clone())),
        Some(Ok(Progress::Waiting { .. }))
    ));
    assert!(
        h.pods_on(&node)
            .await
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_none())
    );

    // 29 s before the deadline they are deleted, budget or not, to be gone by the deadline.
    h.clock.advance(SignedDuration::from_secs(31));
    h.terminate_once().await;
    let pods = h.pods_on(&node).await;
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        assert_eq!(pod.metadata.deletion_grace_period_seconds, Some(29));
        assert!(pod.metadata.deletion_timestamp.as_ref().unwrap().0 <= deadline);
    }
    assert_eq!(h.events("Disrupted").await.len(), 2);
    assert_eq!(h.events("TerminationGracePeriodExpiring").await.len(), 1);

    for _ in 0..30 {
        if h.claim("default-guarded").await.is_none() {
            break;
        }
        h.settle();
        h.advance(1);
        h.catch_up().await;
        h.terminate_once().await;
    }
    assert!(h.claim("default-guarded").await.is_none());
    assert!(h.node(&node).await.is_none());
    assert!(h.cloud().instances().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_attachments_hold_the_instance_until_they_detach() {
    let h = Harness::start().await;
    let (_, node) = h.node_for("default-volumes", None).await;
    for (claim, volume) in [("data", "pv-data"), ("cache", "pv-cache")] {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": { "name": volume },
            "spec": {
                "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                "csi": { "driver": "ebs.csi.aws.com", "volumeHandle": format!("vol-{claim}") },
                "claimRef": { "namespace": "default", "name": claim },
            },
        }))
        .unwrap();
        h.api::<PersistentVolume>()
            .create(&PostParams::default(), &pv)
            .await
            .unwrap();
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": { "name": claim, "namespace": "default" },
            "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } }, "volumeName": volume },
        }))
        .unwrap();
        Api::<PersistentVolumeClaim>::namespaced(h.cluster.client(), "default")
            .create(&PostParams::default(), &pvc)
            .await
            .unwrap();
        let attachment: VolumeAttachment = serde_json::from_value(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
            "metadata": { "name": format!("va-{claim}") },
            "spec": { "attacher": "ebs.csi.aws.com", "nodeName": node, "source": { "persistentVolumeName": volume } },
        }))
        .unwrap();
        h.api::<VolumeAttachment>()
            .create(&PostParams::default(), &attachment)
            .await
            .unwrap();
    }
    let volume = |claim: &str| json!([{ "name": "v", "persistentVolumeClaim": { "claimName": claim } }]);
    h.create_pod(
        "database",
        &node,
        json!({ "spec": { "volumes": volume("data") } }),
    )
    .await;
    // A pod that stays on the node until the end: its volume cannot detach first, so it must
    // not hold the node.
    h.create_pod(
        "cache",
        &node,
        json!({ "spec": {
            "volumes": volume("cache"),
            "tolerations": [{ "key": "karpenter.sh/disrupted", "operator": "Exists" }],
        } }),
    )
    .await;
    h.settle();

    h.delete_claim("default-volumes").await;
    h.catch_up().await;
    let awaiting = |claim: &NodeClaim| {
        condition(claim, nodeclaim::VOLUMES_DETACHED)
            .is_some_and(|c| c.reason == nodeclaim::REASON_AWAITING_VOLUME_DETACHMENT)
    };
    for _ in 0..20 {
        h.terminate_once().await;
        h.settle();
        h.advance(1);
        h.catch_up().await;
        if awaiting(&h.claim("default-volumes").await.unwrap()) {
            break;
        }
    }
    let claim = h.claim("default-volumes").await.unwrap();
    assert!(awaiting(&claim), "{:?}", claim.status);
    let message = &condition(&claim, nodeclaim::VOLUMES_DETACHED).unwrap().message;
    assert!(
        message.contains("va-data") && !message.contains("va-cache"),
        "{message}"
    );
    assert!(h.pods_on(&node).await.iter().all(|p| p.name_any() == "cache"));

    // However long it takes, the instance waits for the attachment.
    for _ in 0..5 {
        h.advance(10);
        h.terminate_once().await;
    }
    assert_eq!(h.cloud().instances().len(), 1);

    // The CSI driver detaches the volume: termination goes on.
    h.api::<VolumeAttachment>()
        .delete("va-data", &DeleteParams::default())
        .await
        .unwrap();
    for _ in 0..20 {
        h.terminate_once().await;
        h.settle();
        h.advance(1);
        h.catch_up().await;
        if h.claim("default-volumes").await.is_none() {
            break;
        }
    }
    assert!(h.claim("default-volumes").await.is_none());
    assert!(h.cloud().instances().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodeclaim_without_a_recorded_launch_terminates_instances_tagged_with_its_name() {
    let h = Harness::start().await;
    // A crash between the cloud's create and the status write: the instance exists, the
    // NodeClaim does not know it.
    let stored = h.create_claim("default-unrecorded", None).await;
    h.cloud().create(&stored).await.unwrap();
    // And one that never launched at all.
    h.create_claim("default-unlaunched", None).await;
    h.delete_claim("default-unrecorded").await;
    h.delete_claim("default-unlaunched").await;
    h.until_cached_deleting("default-unrecorded").await;
    h.until_cached_deleting("default-unlaunched").await;

    let report = h.terminate_once().await;
    assert!(matches!(
        report.outcome(&ObjectKey::NodeClaim("default-unlaunched".into())),
        Some(Ok(Progress::Finished))
    ));
    assert!(h.claim("default-unlaunched").await.is_none());
    assert!(
        h.cloud().instances().is_empty(),
        "the unrecorded instance is terminated"
    );
    let claim = h.claim("default-unrecorded").await.unwrap();
    assert_eq!(
        condition(&claim, nodeclaim::INSTANCE_TERMINATING).map(|c| c.status.as_str()),
        Some("True")
    );

    h.terminate_once().await;
    assert!(h.claim("default-unrecorded").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_node_deletes_its_nodeclaim_and_terminates_the_instance() {
    let h = Harness::start().await;
    let (_, node) = h.node_for("default-direct", None).await;
    h.api::<Node>()
        .delete(&node, &DeleteParams::default())
        .await
        .unwrap();
    h.catch_up().await;
    for _ in 0..30 {
        h.terminate_once().await;
        h.settle();
        h.advance(1);
        h.catch_up().await;
        if h.claim("default-direct").await.is_none() {
            break;
        }
    }
    assert!(h.claim("default-direct").await.is_none());
    assert!(h.node(&node).await.is_none());
    assert!(h.cloud().instances().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_terminates_leaked_instances_after_the_grace_period() {
    let h = Harness::start().await;
    // Leaked: launched for a NodeClaim the cluster never had (or lost).
    let leaked = h.cloud().create(&claim("default-leaked", None)).await.unwrap();
    let leaked_id = leaked.status.unwrap().provider_id.unwrap();
    // In flight: the NodeClaim exists, its providerID not written yet.
    let in_flight = h.create_claim("default-in-flight", None).await;
    h.cloud().create(&in_flight).await.unwrap();
    // Owned: launched and recorded.
    let owned = h.create_claim("default-owned", None).await;
    let owned = h.launch(&owned).await;
    h.until("the cache has the nodeclaims", || async {
        h.ctx.state.node_claims.all().len() == 2
            && h.ctx
                .state
                .node_claims
                .all()
                .iter()
                .any(|c| c.status.as_ref().is_some_and(|s| s.provider_id.is_some()))
    })
    .await;

    let mut collector = GarbageCollector::new();
    assert_eq!(collector.collect(&h.ctx).await.unwrap(), Collected::default());
    h.advance(29);
    assert_eq!(collector.collect(&h.ctx).await.unwrap(), Collected::default());
    assert_eq!(h.cloud().instances().len(), 3);

    h.advance(2);
    let collected = collector.collect(&h.ctx).await.unwrap();
    assert_eq!(collected.terminated_instances, [leaked_id]);
    assert!(collected.deleted_node_claims.is_empty());
    let live: Vec<String> = h
        .cloud()
        .instances()
        .into_iter()
        .map(|i| i.tags["karpenter.sh/nodeclaim"].clone())
        .collect();
    assert_eq!(live, ["default-in-flight", "default-owned"]);
    assert!(h.claim("default-owned").await.is_some());
    assert_eq!(owned.metadata.deletion_timestamp, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_deletes_a_nodeclaim_whose_instance_is_gone() {
    let h = Harness::start().await;
    let lost = h.create_claim("default-lost", None).await;
    let lost = h.launch(&lost).await;
    let alive = h.create_claim("default-alive", None).await;
    h.launch(&alive).await;
    h.until("the cache has the launches", || async {
        h.ctx
            .state
            .node_claims
            .all()
            .iter()
            .filter(|c| c.status.as_ref().is_some_and(|s| s.provider_id.is_some()))
            .count()
            == 2
    })
    .await;
    // The instance is terminated behind the controller's back.
    h.cloud().delete(&lost).await.unwrap();

    let mut collector = GarbageCollector::new();
    // Too young: a launch may still be settling.
    assert_eq!(collector.collect(&h.ctx).await.unwrap(), Collected::default());
    h.advance(31);
    let collected = collector.collect(&h.ctx).await.unwrap();
    assert_eq!(collected.deleted_node_claims, ["default-lost"]);
    assert!(collected.terminated_instances.is_empty());
    let deleting = h.claim("default-lost").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert!(
        h.claim("default-alive")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );

    // Termination finds the instance already gone and lets the NodeClaim go.
    h.until_cached_deleting("default-lost").await;
    h.terminate_once().await;
    assert!(h.claim("default-lost").await.is_none());
    assert_eq!(h.cloud().instances().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loops_terminate_and_collect_on_their_own() {
    let mut h = Harness::start().await;
    let (_, node) = h.node_for("default-looped", None).await;
    h.create_pod("web", &node, json!({})).await;
    h.settle();
    let leaked = h.cloud().create(&claim("default-leaked", None)).await.unwrap();
    let leaked_id = leaked.status.unwrap().provider_id.unwrap();
    h.ctx.settings = Arc::new(Settings {
        garbage_collection_interval: Duration::from_millis(50),
        ..Settings::default()
    });

    let data_plane = h
        .cluster
        .data_plane()
        .unwrap()
        .clone()
        .spawn(|e| panic!("data plane: {e}"));
    let termination = tokio::spawn(nodewright_controller::termination::run(h.ctx.clone()));
    let gc = tokio::spawn(nodewright_controller::gc::run(h.ctx.clone()));
    // Simulated time runs at 20x.
    let clock = h.clock.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            clock.advance(SignedDuration::from_secs(1));
        }
    });

    h.delete_claim("default-looped").await;
    // Real time: the loops recheck a terminating instance every 5 s, as Karpenter does.
    h.cluster
        .wait_until(
            Duration::from_secs(30),
            "the nodeclaim, its node and the leaked instance are gone",
            || async {
                h.claim("default-looped").await.is_none()
                    && h.node(&node).await.is_none()
                    && h.cloud().instances().is_empty()
            },
        )
        .await
        .unwrap();
    assert!(h.cloud().instance(&leaked_id).unwrap().terminated_at.is_some());
    assert!(!h.events("Evicted").await.is_empty());
    for task in [termination, gc, ticker, data_plane] {
        task.abort();
    }
}
