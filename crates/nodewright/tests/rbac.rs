//! Least privilege, checked: the controllers run against the embedded API server as the chart's
//! ServiceAccount, with only the chart's ClusterRole and Role bound to it (the server enforces
//! RBAC for that client), through the hands-on lab's flow — inflate scaled 0 → 5 runs on new
//! nodes, scaled back to 0 the nodes go — and the server refused none of their requests.
//!
//! The chart is rendered by the real Helm library (see tests/helm), so a rule the chart lacks
//! fails here, naming the request that was refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod helm;

use std::{future::Future, sync::Arc, time::Duration};

use jiff::SignedDuration;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Node, Pod},
};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use nodewright_controller::{Election, Settings};
use nodewright_sim::{meta::ManualClock, testing::TestCluster};
use serde_json::{Value, json};

use helm::{NAMESPACE, objects};

/// The kinds that make up the controllers' permissions.
const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// Simulated time per step and the wall-clock pause between steps (the controllers' own timers
/// run `SPEEDUP` times faster than the wall clock to keep up).
const STEP: SignedDuration = SignedDuration::from_secs(5);
const PAUSE: Duration = Duration::from_millis(20);
const SPEEDUP: f64 = 250.0;

struct Lab {
    cluster: TestCluster,
    /// The client authenticated as the chart's ServiceAccount.
    client: kube::Client,
    clock: ManualClock,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Lab {
    /// Steps the clock until `done` holds (at most 2 simulated hours), failing at once if the
    /// server refused a request of the controllers.
    async fn run_until<F, Fut>(&self, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        for _ in 0..1440 {
            self.assert_nothing_denied(what);
            if done().await {
                return;
            }
            self.clock.advance(STEP);
            tokio::time::sleep(PAUSE).await;
        }
        panic!("{what} did not happen within 2 simulated hours");
    }

    fn assert_nothing_denied(&self, during: &str) {
        let denied: Vec<String> = self
            .cluster
            .state()
            .rbac
            .denied()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            denied.is_empty(),
            "while waiting for {during}, the chart's RBAC refused the controllers:\n{}",
            denied.join("\n")
        );
    }

    fn stored<T: k8s_openapi::serde::de::DeserializeOwned>(&self, group: &str, resource: &str) -> Vec<T> {
        let store = &self.cluster.state().store;
        let info = store.registry().get(group, resource).unwrap();
        store
            .list(&info, &nodewright_sim::store::Filter::default(), None, None)
            .unwrap()
            .items
            .iter()
            .map(|o| serde_json::from_value(o.value()).unwrap())
            .collect()
    }
}

/// Applies the chart's ServiceAccount, roles and bindings and returns the account's name.
fn apply_chart_permissions(cluster: &TestCluster) -> String {
    let objects = objects("default-values.yaml");
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap()
        .to_owned();
    let permissions: Vec<&Value> = objects
        .iter()
        .filter(|o| RBAC_KINDS.contains(&o["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(permissions.len(), RBAC_KINDS.len(), "{permissions:?}");
    for object in permissions {
        cluster
            .apply_yaml(&serde_saphyr::to_string(object).unwrap())
            .unwrap_or_else(|e| panic!("applying {}: {e}", object["kind"]));
    }
    account
}

async fn start() -> Lab {
    let (cluster, clock) = TestCluster::start_lab().await.unwrap();
    let account = apply_chart_permissions(&cluster);
    let client = cluster.client_for_service_account(NAMESPACE, &account).unwrap();
    let plane = cluster
        .data_plane()
        .unwrap()
        .clone()
        .spawn(|e| panic!("data plane: {e}"));
    let cloud = Arc::new(cluster.cloud().unwrap().clone());
    let settings = Settings {
        wall_clock_speedup: SPEEDUP,
        lease_namespace: NAMESPACE.to_owned(),
        ..Settings::default()
    };
    let controllers = tokio::spawn({
        let client = client.clone();
        let clock = clock.clock();
        async move {
            // Leader election too: the chart's Role must let the controllers take their Lease.
            nodewright_controller::run(client, cloud, clock, settings, Election::Lease)
                .await
                .unwrap();
        }
    });
    Lab {
        cluster,
        client,
        clock,
        tasks: vec![plane, controllers],
    }
}

async fn scale(lab: &Lab, replicas: i32) {
    let deployments: Api<Deployment> = Api::namespaced(lab.cluster.client(), "default");
    deployments
        .patch_scale(
            "inflate",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
}

fn running(lab: &Lab, n: usize) -> bool {
    let pods: Vec<Pod> = lab.stored("", "pods");
    let inflate: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some("default"))
        .collect();
    inflate.len() == n
        && inflate
            .iter()
            .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
}

fn initialized(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("karpenter.sh/initialized"))
        .is_some_and(|v| v == "true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_complete_the_lab_flow_with_only_the_charts_permissions() {
    let lab = start().await;
    scale(&lab, 5).await;
    lab.run_until("five inflate pods running on initialized nodes", || {
        let done = running(&lab, 5) && {
            let nodes: Vec<Node> = lab.stored("", "nodes");
            !nodes.is_empty() && nodes.iter().all(initialized)
        };
        std::future::ready(done)
    })
    .await;
    let lease: Vec<Value> = lab.stored("coordination.k8s.io", "leases");
    assert!(
        lease
            .iter()
            .any(|l| l["metadata"]["name"] == "karpenter-leader-election"),
        "the controllers took their Lease"
    );

    scale(&lab, 0).await;
    let cloud = lab.cluster.cloud().unwrap().clone();
    lab.run_until("the empty nodes to be consolidated away", || {
        let nodes: Vec<Node> = lab.stored("", "nodes");
        std::future::ready(running(&lab, 0) && nodes.is_empty() && cloud.instances().is_empty())
    })
    .await;
    lab.assert_nothing_denied("the end of the flow");
    // The log level ConfigMap (read by `nodewright controller`, not by these loops) may be read:
    // absent, it is a 404, not a 403.
    let config_maps: Api<ConfigMap> = Api::namespaced(lab.client.clone(), NAMESPACE);
    match config_maps.get("config-logging").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404, "{status:?}"),
        other => panic!("expected a 404, got {other:?}"),
    }
    lab.assert_nothing_denied("reading the log level ConfigMap");
    // The flow did go through the server as the ServiceAccount: NodeClaims were made and removed.
    assert!(!cloud.all_instances().is_empty());
    let nodes: Api<Node> = Api::all(lab.cluster.client());
    assert!(nodes.list(&ListParams::default()).await.unwrap().items.is_empty());
}
