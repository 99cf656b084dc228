//! The NodePool's `NodeRegistrationHealthy` condition with the controllers running on the
//! simulated cluster: kubelets that never register (a boot delay far beyond the registration
//! TTL) make the pool's NodeClaims time out and the condition turn False; an edit of the NodePool
//! resets it to Unknown; once kubelets register again, the next launch turns it True.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::{sync::Arc, time::Duration};

use jiff::SignedDuration;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use nodewright_api::{NodePool, conditions};
use nodewright_controller::{Election, Settings};
use nodewright_sim::{
    cloud::FakeCloudConfig,
    dataplane::{DataPlane, DataPlaneConfig},
    meta::ManualClock,
    testing::{DEFAULT_NODE_POOL, INFLATE, TestCluster},
};
use serde_json::json;

/// Simulated seconds per step and the wall-clock pause between steps (as the Lab harness).
const STEP: SignedDuration = SignedDuration::from_secs(5);
const PAUSE: Duration = Duration::from_millis(20);
const REGISTRATION_TTL: Duration = Duration::from_mins(5);

struct Simulated {
    cluster: TestCluster,
    clock: ManualClock,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Simulated {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Simulated {
    /// The default NodePool and EC2NodeClass, inflate at one replica, the controllers running,
    /// and kubelets that boot only after `boot_delay`.
    async fn start(boot_delay: SignedDuration) -> Self {
        let cloud = FakeCloudConfig {
            launch_latency: SignedDuration::from_secs(30),
            ..FakeCloudConfig::default()
        };
        let (cluster, clock) = TestCluster::start_with_default_node_class(cloud, data_plane(boot_delay))
            .await
            .unwrap();
        cluster.apply_yaml(DEFAULT_NODE_POOL).unwrap();
        cluster.apply_yaml(INFLATE).unwrap();
        let plane = cluster
            .data_plane()
            .unwrap()
            .clone()
            .spawn(|e| panic!("data plane: {e}"));
        let settings = Settings {
            wall_clock_speedup: 250.0,
            // Shorter than Karpenter's 15 minutes: fewer simulated steps per timeout.
            registration_ttl: REGISTRATION_TTL,
            ..Settings::default()
        };
        let (client, cloud) = (cluster.client(), Arc::new(cluster.cloud().unwrap().clone()));
        let controllers = tokio::spawn(nodewright_controller::run(
            client,
            cloud,
            clock.clock(),
            settings,
            Election::Disabled,
        ));
        let controllers = tokio::spawn(async move {
            controllers.await.unwrap().unwrap();
        });
        let deployments: Api<Deployment> = Api::namespaced(cluster.client(), "default");
        deployments
            .patch_scale(
                "inflate",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 1}})),
            )
            .await
            .unwrap();
        Self {
            cluster,
            clock,
            tasks: vec![plane, controllers],
        }
    }

    /// Replaces the data plane with one whose kubelets boot after `boot_delay`.
    fn replace_data_plane(&mut self, boot_delay: SignedDuration) {
        self.tasks[0].abort();
        let store = self.cluster.state().store.clone();
        let cloud = self.cluster.cloud().unwrap().clone();
        self.tasks[0] =
            DataPlane::new(store, Some(cloud), data_plane(boot_delay)).spawn(|e| panic!("data plane: {e}"));
    }

    async fn pool(&self) -> NodePool {
        let pools: Api<NodePool> = Api::all(self.cluster.client());
        pools.get("default").await.unwrap()
    }

    /// `(status, reason)` of a condition of the NodePool, if written.
    async fn condition(&self, type_: &str) -> Option<(String, String)> {
        let pool = self.pool().await;
        let c = pool.status?.conditions.into_iter().find(|c| c.type_ == type_)?;
        Some((c.status, c.reason))
    }

    /// Steps the clock until the registration health is `status` (at most 2 simulated hours).
    async fn run_until_health(&self, status: &str) -> (String, String) {
        for _ in 0..1440 {
            if let Some(health) = self.condition("NodeRegistrationHealthy").await
                && health.0 == status
            {
                return health;
            }
            self.clock.advance(STEP);
            tokio::time::sleep(PAUSE).await;
        }
        panic!("NodeRegistrationHealthy did not become {status} within 2 simulated hours");
    }
}

fn data_plane(boot_delay: SignedDuration) -> DataPlaneConfig {
    DataPlaneConfig {
        boot_delay,
        poll_interval: Duration::from_millis(10),
        ..DataPlaneConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelets_that_never_register_make_the_nodepool_unhealthy_until_an_edit_and_a_registration() {
    // Kubelets that would need a day to boot never register within the registration TTL.
    let mut c = Simulated::start(SignedDuration::from_hours(24)).await;
    let unhealthy = c.run_until_health(conditions::FALSE).await;
    assert_eq!(unhealthy.1, "RegistrationFailed");
    assert_eq!(
        c.condition(conditions::READY).await.unwrap().0,
        conditions::TRUE,
        "informational: the NodePool stays usable"
    );
    let pool = c.pool().await;
    assert!(pool.status.unwrap().node_class_observed_generation.is_some());

    // An edit of the NodePool (the fix, say) judges the new configuration afresh.
    let pools: Api<NodePool> = Api::all(c.cluster.client());
    pools
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"weight": 10}})),
        )
        .await
        .unwrap();
    let reset = c.run_until_health(conditions::UNKNOWN).await;
    assert_eq!(reset.1, conditions::AWAITING_RECONCILIATION);

    // Kubelets register again: the next launch of the pool turns it True.
    c.replace_data_plane(SignedDuration::from_secs(20));
    let healthy = c.run_until_health(conditions::TRUE).await;
    assert_eq!(healthy.1, "NodeRegistrationHealthy");
}
