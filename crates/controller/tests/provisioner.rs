//! The provisioner against the embedded API server, the fake cloud and the simulated data plane:
//! pending pods get NodeClaims built from the NodePool template, pods covered by NodeClaims in
//! flight cause no more, pods nothing can take are told why and create nothing, limits and
//! weights are honoured, the loop batches pods into rounds, and pods gone from the API server
//! while the watch lags buy no NodeClaim.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::{sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{
    core::v1::{Node, Pod},
    events::v1::Event,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use nodewright_api::{NodeClaim, NodePool, Operator, labels};
use nodewright_catalog::Resources;
use nodewright_cloudprovider::{CloudProvider, OfferingKey};
use nodewright_controller::{
    Context, Settings,
    events::Events,
    provisioner::{self, Provisioner},
    state::ClusterState,
    unavailable::UnavailableOfferings,
};
use nodewright_sim::{
    cloud::FakeCloudConfig, dataplane::DataPlaneConfig, meta::ManualClock, testing::TestCluster,
};
use serde_json::json;

const NODEPOOL: &str = include_str!("../../../examples/default/nodepool.yaml");
const NODE_CLASS: &str = include_str!("../../../examples/default/ec2nodeclass.yaml");
const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    cluster: TestCluster,
    clock: ManualClock,
    ctx: Context,
    watches: tokio::task::JoinHandle<()>,
}

impl Harness {
    /// A simulated cluster with the example NodePool and EC2NodeClass, and a controller context
    /// whose stores are synced.
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Like [`Self::start`], with more YAML applied before the stores sync.
    async fn start_with(extra_yaml: &[&str]) -> Self {
        let clock = ManualClock::new("2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap());
        let cluster = TestCluster::start_simulated(
            clock.clock(),
            FakeCloudConfig::default(),
            DataPlaneConfig::default(),
        )
        .await
        .unwrap();
        cluster.apply_yaml(NODE_CLASS).unwrap();
        cluster.apply_yaml(NODEPOOL).unwrap();
        for yaml in extra_yaml {
            cluster.apply_yaml(yaml).unwrap();
        }
        let client = cluster.client();
        let (state, watches) = ClusterState::start(&client);
        let watches = tokio::spawn(watches);
        state.wait_synced().await;
        let settings = Settings {
            batch_idle: Duration::from_millis(50),
            batch_max: Duration::from_millis(500),
            ..Settings::default()
        };
        let cloud: Arc<dyn CloudProvider> = Arc::new(cluster.cloud().unwrap().clone());
        let ctx = Context {
            events: Events::new(client.clone(), "provisioner-test"),
            unavailable: UnavailableOfferings::new(settings.unavailable_offering_ttl),
            settings: Arc::new(settings),
            client,
            state,
            cloud,
            clock: clock.clock(),
        };
        Self {
            cluster,
            clock,
            ctx,
            watches,
        }
    }

    /// Stops the watches: the stores keep what they last saw, as a lagging cache does.
    async fn freeze_cache(&self) {
        self.watches.abort();
        while !self.watches.is_finished() {
            tokio::task::yield_now().await;
        }
    }

    /// Deletes a pod from the API server (the store may still show it).
    async fn delete_pod(&self, name: &str) {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), "default");
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }

    fn cached_pod(&self, name: &str) -> bool {
        self.ctx.state.pods.all().iter().any(|p| p.name_any() == name)
    }

    /// Creates bare pods requesting `cpu` each (with extra spec fields), lets the simulated
    /// scheduler mark them Unschedulable, and waits until the controller's store shows it.
    async fn pending_pods(&self, prefix: &str, count: usize, cpu: &str, extra_spec: &serde_json::Value) {
        for i in 0..count {
            let mut spec = json!({
                "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.9",
                    "resources": { "requests": { "cpu": cpu, "memory": "128Mi" } } }]
            });
            if let (Some(base), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
                base.extend(extra.clone());
            }
            let pod = json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": format!("{prefix}-{i}"), "namespace": "default", "labels": { "app": prefix } },
                "spec": spec });
            self.cluster
                .apply_yaml(&serde_json::to_string(&pod).unwrap())
                .unwrap();
        }
        self.settle();
        let state = self.ctx.state.clone();
        let prefix = prefix.to_owned();
        self.cluster
            .wait_until(WAIT, "pods marked Unschedulable in the store", || {
                let marked = state
                    .pods
                    .all()
                    .iter()
                    .filter(|p| p.name_any().starts_with(&format!("{prefix}-")) && unschedulable(p))
                    .count();
                std::future::ready(marked == count)
            })
            .await
            .unwrap();
    }

    fn settle(&self) {
        self.cluster.data_plane().unwrap().settle().unwrap();
    }

    async fn node_claims(&self) -> Vec<NodeClaim> {
        let api: Api<NodeClaim> = Api::all(self.ctx.client.clone());
        let mut claims = api.list(&ListParams::default()).await.unwrap().items;
        claims.sort_by_key(ResourceExt::name_any);
        claims
    }

    /// Waits until the controller's store has every NodeClaim the API server has.
    async fn store_caught_up(&self) {
        let expected = self.node_claims().await.len();
        let state = self.ctx.state.clone();
        self.cluster
            .wait_until(WAIT, "NodeClaims in the store", || {
                std::future::ready(state.node_claims.all().len() == expected)
            })
            .await
            .unwrap();
    }

    /// Events (events.k8s.io/v1) about `name` with `reason`, in namespace `namespace`.
    async fn events(&self, namespace: &str, name: &str, reason: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.ctx.client.clone(), namespace);
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            })
            .collect()
    }

    async fn patch_nodepool(&self, name: &str, patch: serde_json::Value) {
        let api: Api<NodePool> = Api::all(self.ctx.client.clone());
        let patched = api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let version = patched.resource_version();
        let state = self.ctx.state.clone();
        let name = name.to_owned();
        self.cluster
            .wait_until(WAIT, "the NodePool change in the store", || {
                let seen = state
                    .node_pools
                    .all()
                    .iter()
                    .any(|p| p.name_any() == name && p.resource_version() == version);
                std::future::ready(seen)
            })
            .await
            .unwrap();
    }
}

fn unschedulable(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        })
}

fn requests(claim: &NodeClaim) -> Resources {
    let mut total = Resources::default();
    for (name, quantity) in &claim.spec.resources.requests {
        let amount = if name == "cpu" {
            nodewright_api::quantity::parse_milli(&quantity.0).unwrap()
        } else {
            nodewright_api::quantity::parse_value(&quantity.0).unwrap()
        };
        total.set(name, i64::try_from(amount).unwrap());
    }
    total
}

fn instance_types(claim: &NodeClaim) -> Vec<String> {
    claim
        .spec
        .requirements
        .iter()
        .find(|r| r.key == labels::INSTANCE_TYPE && r.operator == Operator::In)
        .map(|r| r.values.clone())
        .unwrap_or_default()
}

/// What every listed type of the claim offers at least, per the fake cloud's catalogue.
fn least_allocatable(harness: &Harness, claim: &NodeClaim) -> Resources {
    let catalog = harness.cluster.cloud().unwrap().catalog();
    let listed = instance_types(claim);
    assert!(!listed.is_empty(), "{} lists no instance type", claim.name_any());
    let mut least: Option<Resources> = None;
    for name in listed {
        let it = catalog
            .instance_types()
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("unknown instance type {name}"));
        let alloc = it.allocatable();
        least = Some(match least {
            None => alloc,
            Some(l) => Resources {
                cpu_millis: l.cpu_millis.min(alloc.cpu_millis),
                memory_bytes: l.memory_bytes.min(alloc.memory_bytes),
                pods: l.pods.min(alloc.pods),
                ..Resources::default()
            },
        });
    }
    least.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_pods_get_node_claims_built_from_the_nodepool_template() {
    let h = Harness::start().await;
    h.pending_pods("web", 5, "1", &json!({})).await;
    let mut provisioner = Provisioner::new(h.ctx.clone());
    let report = provisioner.provision_once().await.unwrap();
    assert_eq!(report.considered, 5);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.unschedulable, 0);

    let claims = h.node_claims().await;
    assert!(!claims.is_empty());
    assert_eq!(claims.len(), report.created.len());
    let pool: NodePool = Api::<NodePool>::all(h.ctx.client.clone())
        .get("default")
        .await
        .unwrap();
    let mut total_cpu = 0;
    for claim in &claims {
        let name = claim.name_any();
        assert!(name.starts_with("default-"), "{name}");
        assert_eq!(claim.metadata.generate_name.as_deref(), Some("default-"));
        assert_eq!(claim.labels()[labels::NODE_POOL], "default");
        assert_eq!(claim.labels()[labels::AWS_EC2_NODE_CLASS], "default");
        let owner = &claim.owner_references()[0];
        assert_eq!(owner.api_version, "karpenter.sh/v1");
        assert_eq!(owner.kind, "NodePool");
        assert_eq!(owner.name, "default");
        assert_eq!(Some(&owner.uid), pool.metadata.uid.as_ref());
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(claim.finalizers(), [labels::TERMINATION_FINALIZER]);
        assert_eq!(claim.spec.node_class_ref.kind, "EC2NodeClass");
        assert_eq!(claim.spec.node_class_ref.name, "default");
        assert_eq!(claim.spec.expire_after.to_string(), "720h");
        // The NodePool's requirements carry over; the instance types are listed.
        for key in [
            labels::ARCH,
            labels::OS,
            labels::CAPACITY_TYPE,
            labels::AWS_INSTANCE_CATEGORY,
        ] {
            assert!(
                claim.spec.requirements.iter().any(|r| r.key == key),
                "{name} lacks requirement {key}"
            );
        }
        let claimed = requests(claim);
        assert!(claimed.cpu_millis >= 1000, "{name} requests {claimed:?}");
        let least = least_allocatable(&h, claim);
        assert!(
            claimed.cpu_millis <= least.cpu_millis
                && claimed.memory_bytes <= least.memory_bytes
                && claimed.pods <= least.pods,
            "{name}: every listed type must hold {claimed:?}, the smallest offers {least:?}"
        );
        total_cpu += claimed.cpu_millis;
    }
    assert!(
        total_cpu >= 5000,
        "the NodeClaims request {total_cpu}m for 5 pods of 1 CPU"
    );

    for i in 0..5 {
        let events = h.events("default", &format!("web-{i}"), "Nominated").await;
        assert_eq!(events.len(), 1, "web-{i}: {events:?}");
        let note = events[0].note.clone().unwrap_or_default();
        assert!(
            note.starts_with("Pod should schedule on: nodeclaim/default-"),
            "{note}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_covered_by_node_claims_in_flight_cause_no_other() {
    let h = Harness::start().await;
    h.pending_pods("web", 5, "1", &json!({})).await;
    let mut provisioner = Provisioner::new(h.ctx.clone());
    provisioner.provision_once().await.unwrap();
    let first = h.node_claims().await;
    assert!(!first.is_empty());

    // At once, before the watch may have delivered them: the provisioner remembers its creates.
    let again = provisioner.provision_once().await.unwrap();
    assert!(again.created.is_empty(), "{again:?}");
    assert_eq!(again.nominated, 5);

    // A fresh provisioner (a restarted controller) sees them in the store.
    h.store_caught_up().await;
    let restarted = Provisioner::new(h.ctx.clone()).provision_once().await.unwrap();
    assert!(restarted.created.is_empty(), "{restarted:?}");

    // Launched (providerID and allocatable set, no Node yet): still covering.
    let api: Api<NodeClaim> = Api::all(h.ctx.client.clone());
    for claim in &first {
        let launched = h.ctx.cloud.create(claim).await.unwrap();
        let status = launched.status.unwrap();
        api.patch_status(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": {
                "providerID": status.provider_id, "capacity": status.capacity, "allocatable": status.allocatable
            } })),
        )
        .await
        .unwrap();
    }
    let state = h.ctx.state.clone();
    h.cluster
        .wait_until(WAIT, "launched NodeClaims in the store", || {
            let launched = state
                .node_claims
                .all()
                .iter()
                .all(|c| c.status.as_ref().is_some_and(|s| s.provider_id.is_some()));
            std::future::ready(launched)
        })
        .await
        .unwrap();
    let launched = Provisioner::new(h.ctx.clone()).provision_once().await.unwrap();
    assert!(launched.created.is_empty(), "{launched:?}");

    // The Nodes register, still tainted not-ready and unregistered: kube-scheduler cannot use
    // them yet, the pods stay pending, and they still cause nothing new.
    h.clock.advance(SignedDuration::from_secs(21));
    h.settle();
    let state = h.ctx.state.clone();
    let expected = first.len();
    h.cluster
        .wait_until(WAIT, "registered Nodes in the store", || {
            std::future::ready(state.nodes.all().len() == expected)
        })
        .await
        .unwrap();
    assert!(
        h.ctx.state.pods.all().iter().all(|p| unschedulable(p)),
        "the starting nodes are tainted"
    );
    let registering = provisioner.provision_once().await.unwrap();
    assert!(registering.created.is_empty(), "{registering:?}");
    assert_eq!(registering.nominated, 5);
    assert_eq!(h.node_claims().await.len(), first.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_no_nodepool_can_take_are_told_why_and_create_nothing() {
    let h = Harness::start().await;
    h.pending_pods(
        "arm",
        2,
        "1",
        &json!({ "nodeSelector": { "kubernetes.io/arch": "arm64" } }),
    )
    .await;
    let mut provisioner = Provisioner::new(h.ctx.clone());
    let report = provisioner.provision_once().await.unwrap();
    assert_eq!(report.unschedulable, 2);
    assert!(report.created.is_empty());
    assert!(h.node_claims().await.is_empty());
    for i in 0..2 {
        let events = h.events("default", &format!("arm-{i}"), "FailedScheduling").await;
        assert_eq!(events.len(), 1, "arm-{i}: {events:?}");
        assert_eq!(events[0].type_.as_deref(), Some("Warning"));
        let note = events[0].note.clone().unwrap_or_default();
        assert!(note.contains("default"), "names the NodePool: {note}");
        assert!(
            note.contains("arm64") || note.contains("arch"),
            "says why: {note}"
        );
    }
    // The next round has nothing new to say: the same event is not written again (not even
    // as a repeat of the series).
    let again = provisioner.provision_once().await.unwrap();
    assert_eq!(again.unschedulable, 2);
    let events = h.events("default", "arm-0", "FailedScheduling").await;
    assert_eq!(events.len(), 1);
    assert!(events[0].series.is_none(), "{:?}", events[0].series);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodepool_limits_cap_what_is_created() {
    let h = Harness::start().await;
    h.patch_nodepool(
        "default",
        json!({ "spec": { "limits": { "cpu": "2", "memory": "1000Gi" } } }),
    )
    .await;
    h.pending_pods("web", 5, "1", &json!({})).await;
    let mut provisioner = Provisioner::new(h.ctx.clone());
    let report = provisioner.provision_once().await.unwrap();
    assert!(!report.created.is_empty(), "{report:?}");
    assert!(report.unschedulable > 0, "{report:?}");
    let catalog = h.cluster.cloud().unwrap().catalog();
    let mut largest_total = 0;
    for claim in h.node_claims().await {
        largest_total += instance_types(&claim)
            .iter()
            .filter_map(|name| catalog.instance_types().iter().find(|t| &t.name == name))
            .map(|t| t.capacity.cpu_millis)
            .max()
            .unwrap();
    }
    assert!(
        largest_total <= 2000,
        "whatever type launches, the pool stays within 2 CPU: {largest_total}m"
    );
    let limited = h.events("default", "web-4", "FailedScheduling").await;
    let nominated = h.events("default", "web-4", "Nominated").await;
    assert_eq!(limited.len() + nominated.len(), 1);

    // The limit holds across rounds: in-flight capacity counts.
    let again = provisioner.provision_once().await.unwrap();
    assert!(again.created.is_empty(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heavier_nodepool_wins() {
    let heavy = NODEPOOL
        .replace("name: default\nspec:", "name: heavy\nspec:\n  weight: 50")
        .replace("      expireAfter: 720h", "      expireAfter: 24h");
    assert!(heavy.contains("weight: 50"));
    let h = Harness::start_with(&[&heavy]).await;
    h.pending_pods("web", 5, "1", &json!({})).await;
    let report = Provisioner::new(h.ctx.clone()).provision_once().await.unwrap();
    assert!(!report.created.is_empty());
    for claim in h.node_claims().await {
        assert_eq!(claim.labels()[labels::NODE_POOL], "heavy");
        assert_eq!(claim.spec.expire_after.to_string(), "24h");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodepools_that_cannot_launch_are_skipped_with_the_reason() {
    let missing_class = NODEPOOL
        .replace("name: default\nspec:", "name: orphan\nspec:\n  weight: 90")
        .replace("        name: default\n", "        name: missing\n");
    let h = Harness::start_with(&[&missing_class]).await;
    h.cluster
        .cloud()
        .unwrap()
        .mark_node_class_not_ready("default", "subnets not found");
    h.pending_pods("web", 1, "1", &json!({})).await;
    let report = Provisioner::new(h.ctx.clone()).provision_once().await.unwrap();
    assert!(report.created.is_empty());
    let skipped: Vec<&str> = report.skipped_nodepools.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(skipped, ["orphan", "default"], "{report:?}");
    let pool_events = h.events("default", "default", "NodeClassNotReady").await;
    assert_eq!(pool_events.len(), 1, "{pool_events:?}");
    let note = h.events("default", "web-0", "FailedScheduling").await[0]
        .note
        .clone()
        .unwrap_or_default();
    assert!(note.contains("EC2NodeClass missing not found"), "{note}");
    assert!(note.contains("subnets not found"), "{note}");

    // Once the node class is ready, the next round provisions.
    h.cluster.cloud().unwrap().mark_node_class_ready("default");
    let report = Provisioner::new(h.ctx.clone()).provision_once().await.unwrap();
    assert_eq!(report.created.len(), 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_batches_pending_pods_and_never_duplicates_in_flight_capacity() {
    let h = Harness::start().await;
    let task = tokio::spawn(provisioner::run(h.ctx.clone()));
    h.pending_pods("web", 5, "1", &json!({})).await;
    let claims_api: Api<NodeClaim> = Api::all(h.ctx.client.clone());
    h.cluster
        .wait_until(WAIT, "NodeClaims for the first pods", || {
            let api = claims_api.clone();
            async move { !api.list(&ListParams::default()).await.unwrap().items.is_empty() }
        })
        .await
        .unwrap();
    // Several retry intervals pass with the pods still pending: nothing new.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first = h.node_claims().await;
    let first_cpu: i64 = first.iter().map(|c| requests(c).cpu_millis).sum();
    assert!(first_cpu >= 5000, "{first_cpu}m");
    let first_names: Vec<String> = first.iter().map(ResourceExt::name_any).collect();

    // More pods: another round adds capacity for them (or finds room on the coming nodes).
    h.pending_pods("more", 3, "1", &json!({})).await;
    for i in 0..3 {
        let pod = format!("more-{i}");
        let api: Api<Event> = Api::namespaced(h.ctx.client.clone(), "default");
        h.cluster
            .wait_until(WAIT, "the new pods nominated", || {
                let api = api.clone();
                let pod = pod.clone();
                async move {
                    api.list(&ListParams::default())
                        .await
                        .unwrap()
                        .items
                        .iter()
                        .any(|e| {
                            e.reason.as_deref() == Some("Nominated")
                                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod.as_str())
                        })
                }
            })
            .await
            .unwrap();
    }
    let after_more = h.node_claims().await.len();
    assert!(after_more >= first_names.len());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = h.node_claims().await;
    assert_eq!(
        all.len(),
        after_more,
        "pending pods covered in flight cause nothing more"
    );
    let room: i64 = all.iter().map(|c| least_allocatable(&h, c).cpu_millis).sum();
    assert!(room >= 8000, "the NodeClaims hold the 8 pods: {room}m");
    assert!(!task.is_finished());
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_while_the_cache_lags_buys_no_node_claim() {
    let h = Harness::start().await;
    h.pending_pods("web", 1, "1", &json!({})).await;
    h.freeze_cache().await;
    h.delete_pod("web-0").await;
    assert!(h.cached_pod("web-0"), "the store still shows it pending");

    let mut provisioner = Provisioner::new(h.ctx.clone());
    let report = provisioner.provision_once().await.unwrap();
    assert_eq!(report.considered, 1);
    assert_eq!(report.gone, 1, "{report:?}");
    assert!(report.created.is_empty(), "{report:?}");
    assert!(h.node_claims().await.is_empty());

    // The store still lags: the next round leaves the pod out rather than asking again.
    let again = provisioner.provision_once().await.unwrap();
    assert_eq!(again.considered, 0, "{again:?}");
    assert!(h.node_claims().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_claim_that_lost_a_pod_is_replanned_for_the_pods_left() {
    let h = Harness::start().await;
    // Two half-CPU pods share one NodeClaim.
    h.pending_pods("web", 2, "500m", &json!({})).await;
    h.freeze_cache().await;
    h.delete_pod("web-0").await;

    let mut provisioner = Provisioner::new(h.ctx.clone());
    let report = provisioner.provision_once().await.unwrap();
    assert_eq!((report.gone, report.deferred), (1, 1), "{report:?}");
    assert!(report.created.is_empty(), "sized for two pods: not created");

    let replanned = provisioner.provision_once().await.unwrap();
    assert_eq!(replanned.considered, 1);
    assert_eq!(replanned.created.len(), 1, "{replanned:?}");
    let claims = h.node_claims().await;
    assert_eq!(claims.len(), 1);
    assert_eq!(requests(&claims[0]).cpu_millis, 500, "sized for web-1 alone");
    let nominated = h.events("default", "web-1", "Nominated").await;
    assert_eq!(nominated.len(), 1, "{nominated:?}");
    assert!(h.events("default", "web-0", "Nominated").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_leaving_node_evicted_or_gone_with_it_buy_no_node_claim() {
    let h = Harness::start().await;
    h.cluster
        .apply_yaml(
            r"
apiVersion: v1
kind: Node
metadata: { name: doomed, finalizers: [test.nodewright.dev/hold] }
spec: { providerID: 'aws:///us-east-1a/i-doomed' }
",
        )
        .unwrap();
    for i in 0..2 {
        let pod = json!({ "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": format!("run-{i}"), "namespace": "default" },
            "spec": { "nodeName": "doomed", "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.9",
                "resources": { "requests": { "cpu": "500m", "memory": "128Mi" } } }] } });
        h.cluster
            .apply_yaml(&serde_json::to_string(&pod).unwrap())
            .unwrap();
    }
    let nodes: Api<Node> = Api::all(h.ctx.client.clone());
    nodes.delete("doomed", &DeleteParams::default()).await.unwrap();
    let state = h.ctx.state.clone();
    h.cluster
        .wait_until(WAIT, "the leaving node and its pods in the store", || {
            let leaving = state
                .nodes
                .all()
                .iter()
                .any(|n| n.name_any() == "doomed" && n.metadata.deletion_timestamp.is_some());
            let pods = state
                .pods
                .all()
                .iter()
                .filter(|p| p.name_any().starts_with("run-"))
                .count();
            std::future::ready(leaving && pods == 2)
        })
        .await
        .unwrap();
    h.freeze_cache().await;
    // Evicted: terminating (or gone) on the API server, still running in the store.
    h.delete_pod("run-0").await;

    let mut provisioner = Provisioner::new(h.ctx.clone());
    let report = provisioner.provision_once().await.unwrap();
    assert_eq!(report.considered, 2, "both pods need a new home by the store");
    assert_eq!((report.gone, report.deferred), (1, 1), "{report:?}");
    assert!(report.created.is_empty());
    let replanned = provisioner.provision_once().await.unwrap();
    assert_eq!(replanned.created.len(), 1, "{replanned:?}");
    assert_eq!(requests(&h.node_claims().await[0]).cpu_millis, 500);

    // The node finishes going away. A restarted provisioner (which does not remember the
    // NodeClaim it created, absent from the frozen store) finds run-1's node gone and buys
    // nothing for it: its replacement will arrive as a pending pod.
    nodes
        .patch(
            "doomed",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await
        .unwrap();
    assert!(nodes.get_opt("doomed").await.unwrap().is_none());
    let restarted = Provisioner::new(h.ctx.clone()).provision_once().await.unwrap();
    assert_eq!(restarted.considered, 2, "{restarted:?}");
    assert!(restarted.created.is_empty(), "{restarted:?}");
    assert_eq!(h.node_claims().await.len(), 1);
}

/// The fake cloud, counting how often instance types are listed.
struct CountingCloud {
    inner: nodewright_sim::cloud::FakeCloud,
    listings: std::sync::atomic::AtomicUsize,
}

impl CountingCloud {
    /// The listings since the last call.
    fn take_listings(&self) -> usize {
        self.listings.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

impl CloudProvider for CountingCloud {
    fn create<'a>(
        &'a self,
        node_claim: &'a NodeClaim,
    ) -> nodewright_cloudprovider::BoxFuture<'a, nodewright_cloudprovider::Result<NodeClaim>> {
        self.inner.create(node_claim)
    }

    fn delete<'a>(
        &'a self,
        node_claim: &'a NodeClaim,
    ) -> nodewright_cloudprovider::BoxFuture<'a, nodewright_cloudprovider::Result<()>> {
        self.inner.delete(node_claim)
    }

    fn get<'a>(
        &'a self,
        provider_id: &'a str,
    ) -> nodewright_cloudprovider::BoxFuture<'a, nodewright_cloudprovider::Result<NodeClaim>> {
        self.inner.get(provider_id)
    }

    fn list(
        &self,
    ) -> nodewright_cloudprovider::BoxFuture<'_, nodewright_cloudprovider::Result<Vec<NodeClaim>>> {
        self.inner.list()
    }

    fn get_instance_types<'a>(
        &'a self,
        node_pool: &'a NodePool,
    ) -> nodewright_cloudprovider::BoxFuture<
        'a,
        nodewright_cloudprovider::Result<Vec<nodewright_catalog::InstanceType>>,
    > {
        self.listings.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get_instance_types(node_pool)
    }

    fn is_drifted<'a>(
        &'a self,
        node_claim: &'a NodeClaim,
    ) -> nodewright_cloudprovider::BoxFuture<
        'a,
        nodewright_cloudprovider::Result<Option<nodewright_cloudprovider::DriftReason>>,
    > {
        self.inner.is_drifted(node_claim)
    }

    fn repair_policies(&self) -> Vec<nodewright_cloudprovider::RepairPolicy> {
        self.inner.repair_policies()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}

/// An overlay that makes a type far above the cheapest one for a small pod the cheapest of all.
const DISCOUNT_OVERLAY: &str = "apiVersion: karpenter.sh/v1alpha1\nkind: NodeOverlay\nmetadata:\n  name: negotiated\n\
spec:\n  requirements:\n  - key: node.kubernetes.io/instance-type\n    operator: In\n    values: [\"m5.2xlarge\"]\n  \
price: \"0.001\"\n";

/// Pods that each need a node of their own (hostname anti-affinity among the `burst` and
/// `cold` pods).
fn one_per_node() -> serde_json::Value {
    json!({ "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": { "matchExpressions": [{ "key": "app", "operator": "In", "values": ["burst", "cold"] }] },
        "topologyKey": "kubernetes.io/hostname"
    }] } } })
}

/// Launches every NodeClaim the store has with `ctx`; returns the instance-type listings that took.
async fn launch_all(h: &Harness, ctx: &Context, cloud: &CountingCloud) -> usize {
    h.store_caught_up().await;
    let state = ctx.state.clone();
    let expected = h.node_claims().await.len();
    h.cluster
        .wait_until(WAIT, "NodeClaims in the launching store", || {
            std::future::ready(state.node_claims.all().len() == expected)
        })
        .await
        .unwrap();
    cloud.take_listings();
    let failures = nodewright_controller::lifecycle::reconcile_all(ctx).await;
    assert!(failures.is_empty(), "{failures:?}");
    cloud.take_listings()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_launches_reads_the_rounds_instance_types_instead_of_listing_them_again() {
    const BURST: usize = 8;
    let h = Harness::start_with(&[DISCOUNT_OVERLAY]).await;
    let counting = Arc::new(CountingCloud {
        inner: h.cluster.cloud().unwrap().clone(),
        listings: std::sync::atomic::AtomicUsize::new(0),
    });
    let ctx = Context {
        cloud: counting.clone(),
        ..h.ctx.clone()
    };
    let overlays = ctx.state.node_overlays.clone();
    h.cluster
        .wait_until(WAIT, "the overlay in the store", || {
            std::future::ready(!overlays.store.is_empty())
        })
        .await
        .unwrap();
    // Something is out of capacity, so each launch checks whether its offerings all are.
    ctx.unavailable.mark(
        &[OfferingKey::new(
            "x2iedn.32xlarge",
            "us-east-1a",
            nodewright_catalog::CapacityType::OnDemand,
        )],
        h.clock.now(),
    );

    h.pending_pods("burst", BURST, "500m", &one_per_node()).await;
    let report = Provisioner::new(ctx.clone()).provision_once().await.unwrap();
    assert_eq!(report.created.len(), BURST, "{report:?}");
    assert_eq!(
        counting.take_listings(),
        1,
        "the round lists the one NodePool's types once"
    );
    // Before: every launch listed the pool's types twice (the overlay narrowing and the
    // out-of-capacity check), 16 listings for 8 launches.
    assert_eq!(
        launch_all(&h, &ctx, &counting).await,
        0,
        "the launches read the round's evaluation"
    );
    let instances = h.cluster.cloud().unwrap().instances();
    assert_eq!(instances.len(), BURST);
    let launched: Vec<String> = h
        .node_claims()
        .await
        .iter()
        .map(|c| c.labels().get(labels::INSTANCE_TYPE).cloned().unwrap_or_default())
        .collect();
    assert!(
        launched.iter().all(|t| t == "m5.2xlarge"),
        "the overlay still decides what the cloud launches: {launched:?}"
    );

    // A restarted controller has no evaluation yet: the launches share one.
    h.pending_pods("cold", BURST, "500m", &one_per_node()).await;
    let report = Provisioner::new(ctx.clone()).provision_once().await.unwrap();
    assert_eq!(report.created.len(), BURST, "{report:?}");
    let (state, watches) = ClusterState::start(&ctx.client);
    let watches = tokio::spawn(watches);
    state.wait_synced().await;
    let restarted = Context { state, ..ctx.clone() };
    assert_eq!(
        launch_all(&h, &restarted, &counting).await,
        1,
        "one evaluation for the whole burst"
    );
    assert_eq!(h.cluster.cloud().unwrap().instances().len(), 2 * BURST);
    watches.abort();
}
