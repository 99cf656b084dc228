//! The NodeClaim lifecycle and NodePool status against the embedded API server, the fake cloud
//! and the simulated data plane on a manual clock: each test creates NodeClaims as the
//! provisioner would, runs lifecycle rounds, moves the clock and settles the data plane.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use jiff::SignedDuration;
use k8s_openapi::api::{core::v1::Node, events::v1::Event};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};
use nodewright_api::{EC2NodeClass, NodeClaim, NodePool, labels};
use nodewright_catalog::CapacityType;
use nodewright_cloudprovider::OfferingKey;
use nodewright_controller::{
    Context, Settings,
    events::Events,
    lifecycle::{self, Failure},
    nodepool_status,
    state::ClusterState,
    unavailable::UnavailableOfferings,
};
use nodewright_sim::{
    cloud::{CloudEventKind, FakeCloudConfig},
    dataplane::DataPlaneConfig,
    faults::FaultConfig,
    meta::ManualClock,
    testing::TestCluster,
};
use serde_json::json;

const ZONE: &str = "us-east-1a";
const STARTUP_TAINT: &str = "example.com/agent-not-ready";

struct Harness {
    cluster: TestCluster,
    clock: ManualClock,
    ctx: Context,
    watches: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.watches.abort();
    }
}

impl Harness {
    async fn start() -> Self {
        let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
        let cloud = FakeCloudConfig {
            launch_latency: SignedDuration::from_secs(30),
            ..FakeCloudConfig::default()
        };
        let cluster = TestCluster::start_simulated(clock.clock(), cloud, DataPlaneConfig::default())
            .await
            .unwrap();
        cluster
            .apply_yaml(include_str!("../../../examples/default/ec2nodeclass.yaml"))
            .unwrap();
        cluster
            .apply_yaml(include_str!("../../../examples/default/nodepool.yaml"))
            .unwrap();
        let client = cluster.client();
        let (state, watches) = ClusterState::start(&client);
        let watches = tokio::spawn(watches);
        state.wait_synced().await;
        let settings = Settings::default();
        let ctx = Context {
            events: Events::new(client.clone(), "lifecycle-test"),
            unavailable: UnavailableOfferings::new(settings.unavailable_offering_ttl),
            settings: Arc::new(settings),
            client,
            state,
            cloud: Arc::new(cluster.cloud().unwrap().clone()),
            clock: clock.clock(),
        };
        Self {
            cluster,
            clock,
            ctx,
            watches,
        }
    }

    fn claims(&self) -> Api<NodeClaim> {
        Api::all(self.cluster.client())
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.cluster.client())
    }

    /// A NodeClaim as the provisioner creates it, for one m5.large on-demand in us-east-1a.
    async fn create_claim(&self, finalizer: bool) -> String {
        self.create_claim_for("m5.large", finalizer).await
    }

    /// A NodeClaim as the provisioner creates it, for one instance type on-demand in us-east-1a.
    async fn create_claim_for(&self, instance_type: &str, finalizer: bool) -> String {
        let finalizers: Vec<&str> = if finalizer {
            vec![labels::TERMINATION_FINALIZER]
        } else {
            vec![]
        };
        let claim: NodeClaim = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": {
                "generateName": "default-",
                "labels": {labels::NODE_POOL: "default"},
                "annotations": {"karpenter.sh/nodepool-hash": "123"},
                "finalizers": finalizers,
            },
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [
                    {"key": labels::NODE_POOL, "operator": "In", "values": ["default"]},
                    {"key": labels::INSTANCE_TYPE, "operator": "In", "values": [instance_type]},
                    {"key": labels::CAPACITY_TYPE, "operator": "In", "values": ["on-demand"]},
                    {"key": labels::ZONE, "operator": "In", "values": [ZONE]},
                ],
                "resources": {"requests": {"cpu": "1", "pods": "2"}},
                "startupTaints": [{"key": STARTUP_TAINT, "effect": "NoSchedule"}],
            },
        }))
        .unwrap();
        let created = self
            .claims()
            .create(&PostParams::default(), &claim)
            .await
            .unwrap();
        self.synced().await;
        created.name_any()
    }

    async fn claim(&self, name: &str) -> NodeClaim {
        self.claims().get(name).await.unwrap()
    }

    /// Waits until the watch caches hold exactly what the API server holds.
    async fn synced(&self) {
        let state = self.ctx.state.clone();
        let (claims, nodes) = (self.claims(), self.nodes());
        let pools: Api<NodePool> = Api::all(self.cluster.client());
        let classes: Api<EC2NodeClass> = Api::all(self.cluster.client());
        self.cluster
            .wait_until(Duration::from_secs(10), "watch caches in sync", || {
                let (state, claims, nodes, pools, classes) = (
                    state.clone(),
                    claims.clone(),
                    nodes.clone(),
                    pools.clone(),
                    classes.clone(),
                );
                async move {
                    let lp = ListParams::default();
                    versions(&claims.list(&lp).await.unwrap().items, &state.node_claims.all())
                        && versions(&nodes.list(&lp).await.unwrap().items, &state.nodes.all())
                        && versions(&pools.list(&lp).await.unwrap().items, &state.node_pools.all())
                        && versions(&classes.list(&lp).await.unwrap().items, &state.node_classes.all())
                }
            })
            .await
            .unwrap();
    }

    /// One lifecycle round on current caches; it must not fail.
    async fn round(&self) {
        self.synced().await;
        let failures: Vec<Failure> = lifecycle::reconcile_all(&self.ctx).await;
        assert!(failures.is_empty(), "{failures:?}");
        self.synced().await;
    }

    fn settle(&self) {
        self.cluster.data_plane().unwrap().settle().unwrap();
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(SignedDuration::from_secs(seconds));
    }

    /// Moves past the launch latency and the boot delay, so the kubelet registers the Node.
    fn boot(&self) {
        let cloud = self.cluster.cloud().unwrap().config().launch_latency;
        let data_plane = self.cluster.data_plane().unwrap().config().boot_delay;
        self.clock.advance(cloud + data_plane);
        self.settle();
    }

    /// Moves past the ready delay, so the kubelet turns the Node Ready.
    fn ready(&self) {
        self.clock
            .advance(self.cluster.data_plane().unwrap().config().ready_delay);
        self.settle();
    }

    async fn events_for(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.cluster.client(), "default");
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    /// One NodePool status round on current caches; it must not fail.
    async fn pool_status_round(&self) {
        self.synced().await;
        let failures = nodepool_status::reconcile_all(&self.ctx).await;
        assert!(failures.is_empty(), "{failures:?}");
        self.synced().await;
    }

    /// `NodeRegistrationHealthy` of the NodePool as (status, reason), after a status round.
    async fn registration_health(&self) -> (String, String) {
        self.pool_status_round().await;
        pool_condition(&self.pool().await, "NodeRegistrationHealthy")
    }

    /// Claims launched whose Nodes never register (the data plane does not run), deleted at
    /// the registration TTL.
    async fn registration_timeouts(&self, count: usize) {
        let mut names = Vec::new();
        for _ in 0..count {
            names.push(self.create_claim(true).await);
        }
        self.round().await;
        self.advance(15 * 60);
        self.round().await;
        for name in names {
            assert!(self.claim(&name).await.metadata.deletion_timestamp.is_some());
        }
    }

    /// Merge-patches an object's spec and waits until the caches have it.
    async fn edit<K>(&self, name: &str, spec: serde_json::Value)
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.cluster.client());
        let before = api.get(name).await.unwrap().meta().generation;
        let after = api
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .unwrap()
            .meta()
            .generation;
        assert_ne!(before, after, "a spec edit is a new generation");
        self.synced().await;
    }

    async fn pool(&self) -> NodePool {
        let pools: Api<NodePool> = Api::all(self.cluster.client());
        pools.get("default").await.unwrap()
    }
}

/// Whether the cache holds the same objects at the same versions as the API server.
fn versions<K: ResourceExt>(served: &[K], cached: &[Arc<K>]) -> bool {
    let of = |objects: &mut dyn Iterator<Item = &K>| -> BTreeMap<String, Option<String>> {
        objects.map(|o| (o.name_any(), o.resource_version())).collect()
    };
    of(&mut served.iter()) == of(&mut cached.iter().map(AsRef::as_ref))
}

fn condition(claim: &NodeClaim, type_: &str) -> (String, String) {
    claim
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map_or_else(
            || panic!("{} has no {type_} condition", claim.name_any()),
            |c| (c.status.clone(), c.reason.clone()),
        )
}

fn pool_condition(pool: &NodePool, type_: &str) -> (String, String) {
    pool.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map_or_else(
            || panic!("nodepool has no {type_} condition"),
            |c| (c.status.clone(), c.reason.clone()),
        )
}

fn status_of(pair: (String, String)) -> String {
    pair.0
}

fn taint_keys(node: &Node) -> Vec<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| t.iter().map(|t| t.key.clone()).collect())
        .unwrap_or_default()
}

fn offering() -> OfferingKey {
    OfferingKey::new("m5.large", ZONE, CapacityType::OnDemand)
}

#[tokio::test]
async fn a_claim_launches_registers_and_initializes() {
    let h = Harness::start().await;
    let name = h.create_claim(true).await;
    h.round().await;

    // Launched: one instance, its details on the claim.
    let instances = h.cluster.cloud().unwrap().instances();
    assert_eq!(instances.len(), 1);
    let claim = h.claim(&name).await;
    let status = claim.status.clone().unwrap();
    assert_eq!(
        status.provider_id.as_deref(),
        Some(instances[0].provider_id.as_str())
    );
    assert_eq!(status.capacity["cpu"].0, "2");
    assert!(status.allocatable.contains_key("memory"));
    assert_eq!(claim.labels()[labels::INSTANCE_TYPE], "m5.large");
    assert_eq!(claim.labels()[labels::CAPACITY_TYPE], "on-demand");
    assert_eq!(claim.labels()[labels::ZONE], ZONE);
    assert_eq!(claim.labels()[labels::NODE_POOL], "default");
    assert_eq!(status_of(condition(&claim, "Launched")), "True");
    assert_eq!(
        condition(&claim, "Registered"),
        ("Unknown".into(), "NodeNotFound".into())
    );
    assert_eq!(status_of(condition(&claim, "Ready")), "Unknown");

    // Registered: the kubelet's Node is synced from the claim.
    h.boot();
    h.round().await;
    let claim = h.claim(&name).await;
    let node_name = claim.status.as_ref().unwrap().node_name.clone().unwrap();
    let node = h.nodes().get(&node_name).await.unwrap();
    assert_eq!(status_of(condition(&claim, "Registered")), "True");
    assert_eq!(node.labels()[labels::NODE_REGISTERED], "true");
    assert_eq!(node.labels()[labels::NODE_POOL], "default");
    assert_eq!(node.labels()[labels::INSTANCE_TYPE], "m5.large");
    assert_eq!(node.annotations()["karpenter.sh/nodepool-hash"], "123");
    assert!(
        node.finalizers()
            .contains(&labels::TERMINATION_FINALIZER.to_owned())
    );
    let owner = &node.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("NodeClaim", name.as_str())
    );
    assert_eq!(Some(owner.uid.clone()), claim.uid());
    let taints = taint_keys(&node);
    assert!(
        !taints.contains(&labels::UNREGISTERED_TAINT.key.to_owned()),
        "{taints:?}"
    );
    assert!(taints.contains(&STARTUP_TAINT.to_owned()), "{taints:?}");
    assert_eq!(
        condition(&claim, "Initialized"),
        ("Unknown".into(), "NodeNotReady".into())
    );
    assert_eq!(
        status_of(h.registration_health().await),
        "True",
        "a registration marks the pool healthy"
    );

    // Initialized: the Node turned Ready and its startup taint is gone.
    h.ready();
    h.round().await;
    let claim = h.claim(&name).await;
    assert_eq!(status_of(condition(&claim, "Initialized")), "True");
    assert_eq!(condition(&claim, "Ready"), ("True".into(), "Ready".into()));
    let node = h.nodes().get(&node_name).await.unwrap();
    assert_eq!(node.labels()[labels::NODE_INITIALIZED], "true");

    // Later rounds change nothing.
    let version = claim.resource_version();
    h.round().await;
    assert_eq!(h.claim(&name).await.resource_version(), version);
    assert_eq!(h.cluster.cloud().unwrap().instances().len(), 1);
}

#[tokio::test]
async fn a_claim_whose_node_never_registers_is_deleted_after_the_registration_ttl() {
    let h = Harness::start().await;
    let name = h.create_claim(true).await;
    h.round().await;
    // The data plane never runs: no Node registers.
    h.advance(15 * 60 - 1);
    h.round().await;
    assert!(h.claim(&name).await.metadata.deletion_timestamp.is_none());

    h.advance(1);
    h.round().await;
    let claim = h.claim(&name).await;
    assert!(claim.metadata.deletion_timestamp.is_some(), "deleted at the TTL");
    let events = h.events_for(&name).await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("RegistrationTimeout")),
        "{events:?}"
    );
    h.pool_status_round().await;
    assert_eq!(
        status_of(pool_condition(&h.pool().await, "NodeRegistrationHealthy")),
        "Unknown",
        "one failure of the last four proves nothing yet"
    );
    // A deleting claim is the termination controller's: the lifecycle leaves it alone.
    h.round().await;
    assert_eq!(h.cluster.cloud().unwrap().all_instances().len(), 1);
}

#[tokio::test]
async fn insufficient_capacity_marks_the_offering_and_deletes_the_claim_without_retrying() {
    let h = Harness::start().await;
    let cloud = h.cluster.cloud().unwrap();
    cloud.inject_insufficient_capacity(offering());
    let name = h.create_claim(true).await;
    h.round().await;

    assert!(h.ctx.unavailable.is_unavailable(&offering(), h.ctx.clock.now()));
    let claim = h.claim(&name).await;
    assert!(claim.metadata.deletion_timestamp.is_some());
    let events = h.events_for(&name).await;
    let ice = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("InsufficientCapacityError"))
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(ice.type_.as_deref(), Some("Warning"));
    assert!(
        ice.note
            .as_deref()
            .unwrap()
            .contains("m5.large/us-east-1a/on-demand")
    );

    // No retry on the same offering: later rounds launch nothing.
    h.advance(10);
    h.round().await;
    h.round().await;
    assert!(cloud.instances().is_empty());
    let attempts = cloud
        .events()
        .iter()
        .filter(|e| matches!(e.kind, CloudEventKind::InsufficientCapacity { .. }))
        .count();
    assert_eq!(attempts, 1);
}

#[tokio::test]
async fn launch_adopts_the_instance_of_a_crash_between_create_and_status_write() {
    let h = Harness::start().await;
    let name = h.create_claim(true).await;
    // The controller that crashed got this far: the cloud launched, nothing was written.
    let before_crash = h.ctx.cloud.create(&h.claim(&name).await).await.unwrap();
    h.round().await;

    let instances = h.cluster.cloud().unwrap().instances();
    assert_eq!(instances.len(), 1, "no second instance");
    let claim = h.claim(&name).await;
    assert_eq!(
        claim.status.as_ref().unwrap().provider_id,
        before_crash.status.unwrap().provider_id
    );
    assert_eq!(status_of(condition(&claim, "Launched")), "True");
    assert_eq!(claim.labels()[labels::INSTANCE_TYPE], "m5.large");
}

#[tokio::test]
async fn the_finalizer_is_written_before_any_cloud_call() {
    let h = Harness::start().await;
    let name = h.create_claim(false).await;
    // Every write fails: the finalizer cannot be added, so nothing may be launched.
    h.cluster.state().faults.set(FaultConfig {
        fail_ratio: 1.0,
        fail_code: 500,
        writes_only: true,
        ..FaultConfig::default()
    });
    let failures = lifecycle::reconcile_all(&h.ctx).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(h.cluster.cloud().unwrap().all_instances().is_empty());

    h.cluster.state().faults.clear();
    h.round().await;
    let claim = h.claim(&name).await;
    assert_eq!(claim.finalizers(), [labels::TERMINATION_FINALIZER]);
    assert_eq!(status_of(condition(&claim, "Launched")), "True");
    assert_eq!(h.cluster.cloud().unwrap().instances().len(), 1);
}

#[tokio::test]
async fn a_node_class_that_is_not_ready_holds_the_launch_until_it_is() {
    let h = Harness::start().await;
    let cloud = h.cluster.cloud().unwrap();
    cloud.mark_node_class_not_ready("default", "subnets not resolved");
    let name = h.create_claim(true).await;
    h.round().await;
    let claim = h.claim(&name).await;
    assert_eq!(
        condition(&claim, "Launched"),
        ("False".into(), "NodeClassNotReady".into())
    );
    assert_eq!(status_of(condition(&claim, "Ready")), "False");
    assert!(claim.metadata.deletion_timestamp.is_none());
    assert!(cloud.all_instances().is_empty());

    cloud.mark_node_class_ready("default");
    h.round().await;
    assert_eq!(status_of(condition(&h.claim(&name).await, "Launched")), "True");
    assert_eq!(cloud.instances().len(), 1);
}

#[tokio::test]
async fn a_rejected_launch_is_recorded_and_retried_not_deleted() {
    let h = Harness::start().await;
    let name = h.create_claim_for("m5.doesnotexist", true).await;
    h.round().await;
    let claim = h.claim(&name).await;
    assert_eq!(
        condition(&claim, "Launched"),
        ("False".into(), "NoCompatibleInstanceType".into())
    );
    assert!(claim.metadata.deletion_timestamp.is_none());
    let events = h.events_for(&name).await;
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("LaunchFailed")),
        "{events:?}"
    );
    // The same failure again is not a new event.
    h.round().await;
    let events = h.events_for(&name).await;
    let launch_failed: Vec<&Event> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("LaunchFailed"))
        .collect();
    assert_eq!(launch_failed.len(), 1, "{events:?}");
    assert!(launch_failed[0].series.is_none(), "published once: {events:?}");
    assert!(h.cluster.cloud().unwrap().all_instances().is_empty());
}

#[tokio::test]
async fn a_claim_that_never_launches_is_deleted_after_the_launch_ttl() {
    let h = Harness::start().await;
    h.cluster
        .cloud()
        .unwrap()
        .mark_node_class_not_ready("default", "subnets not resolved");
    let name = h.create_claim(true).await;
    h.round().await;
    h.advance(i64::try_from(lifecycle::LAUNCH_TTL.as_secs()).unwrap());
    h.round().await;
    assert!(h.claim(&name).await.metadata.deletion_timestamp.is_some());
}

#[tokio::test]
async fn two_nodes_with_one_provider_id_block_registration() {
    let h = Harness::start().await;
    let name = h.create_claim(true).await;
    h.round().await;
    h.boot();
    let provider_id = h.claim(&name).await.status.unwrap().provider_id.unwrap();
    let impostor: Node = serde_json::from_value(json!({
        "metadata": {"name": "impostor"},
        "spec": {"providerID": provider_id},
    }))
    .unwrap();
    h.nodes().create(&PostParams::default(), &impostor).await.unwrap();
    h.round().await;
    let claim = h.claim(&name).await;
    assert_eq!(
        condition(&claim, "Registered"),
        ("False".into(), "MultipleNodesFound".into())
    );
    assert_eq!(status_of(condition(&claim, "Ready")), "False");
    let impostor = h.nodes().get("impostor").await.unwrap();
    assert!(impostor.finalizers().is_empty(), "nothing is synced");
}

#[tokio::test]
async fn nodepool_status_counts_nodes_and_resources_and_follows_the_node_class() {
    let h = Harness::start().await;
    let first = h.create_claim(true).await;
    h.create_claim(true).await;
    h.round().await;
    h.boot();
    h.round().await;
    assert!(
        h.claim(&first).await.status.unwrap().node_name.is_some(),
        "registered"
    );

    let failures = nodepool_status::reconcile_all(&h.ctx).await;
    assert!(failures.is_empty(), "{failures:?}");
    let status = h.pool().await.status.unwrap();
    assert_eq!(status.nodes, Some(2));
    assert_eq!(status.resources["nodes"].0, "2");
    assert_eq!(status.resources["cpu"].0, "4", "two m5.large");
    assert!(status.resources.contains_key("memory"));
    let pool = h.pool().await;
    assert_eq!(status_of(pool_condition(&pool, "ValidationSucceeded")), "True");
    assert_eq!(status_of(pool_condition(&pool, "NodeClassReady")), "True");
    assert_eq!(status_of(pool_condition(&pool, "Ready")), "True");
    assert_eq!(
        status_of(pool_condition(&pool, "NodeRegistrationHealthy")),
        "True",
        "both claims registered"
    );

    let classes: Api<EC2NodeClass> = Api::all(h.cluster.client());
    classes.delete("default", &DeleteParams::default()).await.unwrap();
    h.synced().await;
    let failures = nodepool_status::reconcile_all(&h.ctx).await;
    assert!(failures.is_empty(), "{failures:?}");
    let pool = h.pool().await;
    assert_eq!(
        pool_condition(&pool, "NodeClassReady"),
        ("False".into(), "NodeClassNotFound".into())
    );
    assert_eq!(status_of(pool_condition(&pool, "Ready")), "False");
}

#[tokio::test]
async fn the_running_loop_carries_a_claim_to_ready() {
    let h = Harness::start().await;
    let lifecycle = tokio::spawn(lifecycle::run(h.ctx.clone()));
    let name = h.create_claim(true).await;
    let claims = h.claims();
    let wait_for = |condition_type: &'static str| {
        let claims = claims.clone();
        let name = name.clone();
        h.cluster
            .wait_until(Duration::from_secs(10), condition_type, move || {
                let (claims, name) = (claims.clone(), name.clone());
                async move {
                    claims.get(&name).await.ok().is_some_and(|c| {
                        c.status.is_some_and(|s| {
                            s.conditions
                                .iter()
                                .any(|c| c.type_ == condition_type && c.status == "True")
                        })
                    })
                }
            })
    };
    wait_for("Launched").await.unwrap();
    h.boot();
    wait_for("Registered").await.unwrap();
    h.ready();
    wait_for("Ready").await.unwrap();
    lifecycle.abort();
}

#[tokio::test]
async fn nodepool_registration_health_follows_launch_outcomes_and_resets_on_edits() {
    let h = Harness::start().await;
    let unknown = ("Unknown".to_owned(), "AwaitingReconciliation".to_owned());
    let failed = ("False".to_owned(), "RegistrationFailed".to_owned());
    assert_eq!(h.registration_health().await, unknown);

    // Two of the last four claims time out registering: False, and the pool stays Ready.
    h.registration_timeouts(2).await;
    assert_eq!(h.registration_health().await, failed);
    let pool = h.pool().await;
    assert_eq!(status_of(pool_condition(&pool, "Ready")), "True");
    let classes: Api<EC2NodeClass> = Api::all(h.cluster.client());
    assert_eq!(
        pool.status.as_ref().unwrap().node_class_observed_generation,
        classes.get("default").await.unwrap().metadata.generation
    );

    // An edit of the node class judges the new configuration afresh.
    h.edit::<EC2NodeClass>("default", json!({ "tags": { "team": "platform" } }))
        .await;
    assert_eq!(h.registration_health().await, unknown);
    h.registration_timeouts(2).await;
    assert_eq!(h.registration_health().await, failed);

    // So does an edit of the NodePool.
    h.edit::<NodePool>("default", json!({ "weight": 10 })).await;
    assert_eq!(h.registration_health().await, unknown);
    let unchanged = h.pool().await.resource_version();
    assert_eq!(h.registration_health().await, unknown);
    assert_eq!(
        h.pool().await.resource_version(),
        unchanged,
        "no write when nothing changed"
    );

    // A claim whose Node registers: True.
    let healthy = h.create_claim(true).await;
    h.round().await;
    h.boot();
    h.round().await;
    assert!(h.claim(&healthy).await.status.unwrap().node_name.is_some());
    assert_eq!(
        h.registration_health().await,
        ("True".to_owned(), "NodeRegistrationHealthy".to_owned())
    );
}
