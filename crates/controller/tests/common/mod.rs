//! The simulated cluster with Nodewright's controllers running, for end-to-end tests: the test
//! moves the cluster's clock forward while the controllers and the data plane work.

#![allow(dead_code)] // each test file uses part of this

use std::{sync::Arc, time::Duration};

use jiff::SignedDuration;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use nodewright_controller::{Election, Settings};
use nodewright_sim::{meta::ManualClock, testing::TestCluster};
use serde_json::json;

/// Simulated seconds per step of [`Lab::run_until`], and the wall-clock pause between steps.
pub(crate) const STEP: SignedDuration = SignedDuration::from_secs(5);
pub(crate) const PAUSE: Duration = Duration::from_millis(20);
/// How much faster than the wall clock the lab's clock runs (5 s per 20 ms).
pub(crate) const SPEEDUP: f64 = 250.0;

/// A running simulated cluster with the controllers, whose clock the test moves forward.
pub(crate) struct Lab {
    pub(crate) cluster: TestCluster,
    pub(crate) clock: ManualClock,
    pub(crate) settings: Settings,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    controllers: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(c) = &self.controllers {
            c.abort();
        }
    }
}

impl Lab {
    /// The cluster with the default NodePool and EC2NodeClass and the inflate Deployment (0
    /// replicas), the data plane running, and the controllers started.
    pub(crate) async fn start() -> Self {
        let mut lab = Self::without_controllers().await;
        lab.start_controllers();
        lab
    }

    /// The same, without controllers (start them with [`Lab::start_controllers`]).
    pub(crate) async fn without_controllers() -> Self {
        let (cluster, clock) = TestCluster::start_lab().await.unwrap();
        let plane = cluster
            .data_plane()
            .unwrap()
            .clone()
            .spawn(|e| panic!("data plane: {e}"));
        let settings = Settings {
            wall_clock_speedup: SPEEDUP,
            ..Settings::default()
        };
        Self {
            cluster,
            clock,
            settings,
            tasks: vec![plane],
            controllers: None,
        }
    }

    /// Starts the controllers (a fresh process: new caches, nothing remembered).
    pub(crate) fn start_controllers(&mut self) {
        let client = self.cluster.client();
        let cloud = Arc::new(self.cluster.cloud().unwrap().clone());
        let clock = self.clock.clock();
        let settings = self.settings.clone();
        self.controllers = Some(tokio::spawn(async move {
            nodewright_controller::run(client, cloud, clock, settings, Election::Disabled)
                .await
                .unwrap();
        }));
    }

    /// Kills the controllers at once, as a crashed or killed process stops.
    pub(crate) async fn kill_controllers(&mut self) {
        if let Some(task) = self.controllers.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Moves the clock one step.
    pub(crate) async fn step(&self) {
        self.clock.advance(STEP);
        tokio::time::sleep(PAUSE).await;
    }

    /// Steps until `done` holds (at most 2 simulated hours).
    pub(crate) async fn run_until<F, Fut>(&self, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        for _ in 0..1440 {
            if done().await {
                return;
            }
            self.step().await;
        }
        panic!("{what} did not happen within 2 simulated hours");
    }

    pub(crate) async fn scale(&self, replicas: i32) {
        let deployments: Api<Deployment> = Api::namespaced(self.cluster.client(), "default");
        deployments
            .patch_scale(
                "inflate",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .unwrap();
    }

    pub(crate) async fn pods(&self) -> Vec<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.cluster.client(), "default");
        pods.list(&ListParams::default()).await.unwrap().items
    }

    /// Whether exactly `n` inflate pods exist and all run.
    pub(crate) async fn running(&self, n: usize) -> bool {
        let pods = self.pods().await;
        pods.len() == n
            && pods
                .iter()
                .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    }
}

impl Lab {
    /// Objects of a type, read from the store directly (no HTTP, so injected API faults do not
    /// touch the test's own checks).
    pub(crate) fn stored<T: serde::de::DeserializeOwned>(&self, group: &str, resource: &str) -> Vec<T> {
        let store = &self.cluster.state().store;
        let Some(info) = store.registry().get(group, resource) else {
            return Vec::new();
        };
        store
            .list(&info, &nodewright_sim::store::Filter::default(), None, None)
            .unwrap()
            .items
            .iter()
            .map(|o| serde_json::from_value(o.value()).unwrap())
            .collect()
    }

    /// Whether exactly `n` pods exist and all run, from the store.
    pub(crate) fn running_in_store(&self, n: usize) -> bool {
        let pods: Vec<Pod> = self.stored("", "pods");
        pods.len() == n
            && pods
                .iter()
                .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    }

    /// NodeClaims in the store.
    pub(crate) fn claims_in_store(&self) -> Vec<nodewright_api::NodeClaim> {
        self.stored(nodewright_api::labels::KARPENTER_GROUP, "nodeclaims")
    }

    /// Sets the inflate Deployment's replicas through the store (immune to injected faults).
    pub(crate) fn scale_in_store(&self, replicas: i32) {
        let store = &self.cluster.state().store;
        let info = store.registry().get("apps", "deployments").unwrap();
        store
            .update(
                &info,
                "default",
                "inflate",
                nodewright_sim::store::Subresource::Main,
                &nodewright_sim::store::WriteOptions::default(),
                &mut |current| {
                    let mut d = current.unwrap().clone();
                    d["spec"]["replicas"] = json!(replicas);
                    Ok(d)
                },
            )
            .unwrap();
    }

    /// Deletes every NodeClaim not already being deleted, through the store. Teardowns call it
    /// until nothing is left: a provisioner whose pod cache still shows pods on the nodes being
    /// deleted may order a replacement for them, which only consolidation of empty nodes (not
    /// built yet) would otherwise remove.
    pub(crate) fn delete_claims_in_store(&self) {
        let store = &self.cluster.state().store;
        let info = store
            .registry()
            .get(nodewright_api::labels::KARPENTER_GROUP, "nodeclaims")
            .unwrap();
        for claim in self.claims_in_store() {
            if claim.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = claim.metadata.name.unwrap();
            let _ = store.delete(&info, "", &name, &nodewright_sim::store::DeleteOptions::default());
        }
    }

    /// The checks every end-to-end flow ends with: no instance left, no NodeClaim left, and no
    /// NodeClaim ever had two instances.
    pub(crate) fn assert_nothing_leaked(&self) {
        let cloud = self.cluster.cloud().unwrap();
        assert!(
            cloud.instances().is_empty(),
            "instances left: {:?}",
            cloud.instances()
        );
        assert!(self.claims_in_store().is_empty(), "NodeClaims left");
        let ledger = cloud.ledger();
        let mut per_claim = std::collections::BTreeMap::<&str, usize>::new();
        for entry in &ledger.entries {
            *per_claim.entry(entry.node_claim.as_str()).or_default() += 1;
        }
        assert!(
            per_claim.values().all(|n| *n == 1),
            "a NodeClaim launched more than one instance: {per_claim:?}"
        );
    }
}

impl Lab {
    /// What is left of the nodes' side of the cluster, for failure messages.
    pub(crate) fn leftovers(&self) -> String {
        let cloud = self.cluster.cloud().unwrap();
        let claims: Vec<String> = self
            .claims_in_store()
            .iter()
            .map(|c| {
                let status = c.status.clone().unwrap_or_default();
                let conditions: Vec<String> = status
                    .conditions
                    .iter()
                    .map(|c| format!("{}={}:{}", c.type_, c.status, c.reason))
                    .collect();
                format!(
                    "{} created={:?} finalizers={:?} deleting={} providerID={:?} node={:?} {conditions:?}",
                    c.metadata.name.as_deref().unwrap_or_default(),
                    c.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
                    c.metadata.finalizers,
                    c.metadata.deletion_timestamp.is_some(),
                    status.provider_id,
                    status.node_name
                )
            })
            .collect();
        let nodes: Vec<String> = self
            .stored::<k8s_openapi::api::core::v1::Node>("", "nodes")
            .iter()
            .map(|n| {
                format!(
                    "{} finalizers={:?} deleting={}",
                    n.metadata.name.as_deref().unwrap_or_default(),
                    n.metadata.finalizers,
                    n.metadata.deletion_timestamp.is_some()
                )
            })
            .collect();
        let instances: Vec<String> = cloud
            .instances()
            .iter()
            .map(|i| format!("{} for {:?}", i.provider_id, i.tags.get("karpenter.sh/nodeclaim")))
            .collect();
        format!(
            "now {}\ninstances {instances:#?}\nclaims {claims:#?}\nnodes {nodes:#?}",
            self.clock.now()
        )
    }
}

/// Helpers for the disruption tests.
impl Lab {
    /// Merge-patches the default NodePool.
    pub(crate) async fn patch_nodepool(&self, patch: serde_json::Value) {
        let pools: Api<nodewright_api::NodePool> = Api::all(self.cluster.client());
        pools
            .patch("default", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// Merge-patches a Node.
    pub(crate) async fn patch_node(&self, name: &str, patch: serde_json::Value) {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.cluster.client());
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// Names of the Nodes, sorted.
    pub(crate) fn node_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .stored::<k8s_openapi::api::core::v1::Node>("", "nodes")
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        names.sort();
        names
    }

    /// Moves the clock `minutes` simulated minutes, step by step.
    pub(crate) async fn pass_minutes(&self, minutes: i64) {
        for _ in 0..(minutes * 60 / STEP.as_secs()) {
            self.step().await;
        }
    }
}
