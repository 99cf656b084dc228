//! Test support: start a cluster on a free loopback port, get a kube-rs client for it, write a
//! kubeconfig for kubectl, apply YAML, and wait for conditions; with
//! [`TestCluster::start_simulated`], also Nodewright's CRDs, a fake cloud (read its ledger) and
//! the simulated data plane on an injectable clock.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nodewright_sim::testing::TestError> {
//! use nodewright_sim::testing::TestCluster;
//! let cluster = TestCluster::start().await?;
//! cluster.apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: default\n")?;
//! let client = cluster.client();
//! # let _ = client;
//! # Ok(()) }
//! ```

use std::{future::Future, net::SocketAddr, path::Path, time::Duration};

use serde_json::Value;

use crate::{
    cloud::{FakeCloud, FakeCloudConfig, Ledger},
    dataplane::{DataPlane, DataPlaneConfig},
    error::ApiError,
    http::{AppState, Server, ServerConfig},
    meta::{Clock, ManualClock},
    store::StoreConfig,
};

/// The EC2NodeClass shipped in `examples/default`, which simulated tests start with.
pub const DEFAULT_NODE_CLASS: &str = include_str!("../../../examples/default/ec2nodeclass.yaml");

/// The NodePool shipped in `examples/default`.
pub const DEFAULT_NODE_POOL: &str = include_str!("../../../examples/default/nodepool.yaml");

/// The `inflate` Deployment of `examples/` (0 replicas), which the lab flow scales.
pub const INFLATE: &str = include_str!("../../../examples/inflate.yaml");

/// Failures of the test-support helpers.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// Binding or serving failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    /// The kube-rs client could not be built.
    #[error("client: {0}")]
    Client(String),
    /// The API refused a document.
    #[error("api: {0}")]
    Api(#[from] ApiError),
    /// The simulated cluster could not be set up.
    #[error("simulation: {0}")]
    Simulation(#[from] crate::simulation::SimulationError),
    /// A wait ran out of time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

/// A running in-memory cluster.
pub struct TestCluster {
    server: Server,
    client: kube::Client,
    simulated: Option<(FakeCloud, DataPlane)>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The kubeconfig YAML of a server URL (no credentials: the server accepts everyone).
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: nodewright-sim\n  cluster:\n    server: {url}\ncontexts:\n- name: nodewright-sim\n  context:\n    cluster: nodewright-sim\n    user: nodewright-sim\n    namespace: default\ncurrent-context: nodewright-sim\nusers:\n- name: nodewright-sim\n  user: {{}}\n"
    )
}

impl TestCluster {
    /// Starts a cluster with default settings on 127.0.0.1 and a free port.
    pub async fn start() -> Result<Self, TestError> {
        Self::start_with(StoreConfig::default(), ServerConfig::default()).await
    }

    /// Starts a cluster with the given settings.
    pub async fn start_with(store: StoreConfig, server: ServerConfig) -> Result<Self, TestError> {
        let state = AppState::with_config(store, server);
        let server = Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), state).await?;
        let url = format!("http://{}", server.addr());
        let mut config = kube::Config::new(
            url.parse()
                .map_err(|e: axum::http::uri::InvalidUri| TestError::Client(e.to_string()))?,
        );
        // Tests must see every 429 and 503 (evictions refused by a budget, injected faults)
        // rather than have the client retry them for minutes.
        config.default_retry = false;
        let client = kube::Client::try_from(config).map_err(|e| TestError::Client(e.to_string()))?;
        Ok(Self {
            server,
            client,
            simulated: None,
        })
    }

    /// Starts a cluster on `clock` with Nodewright's CRDs installed, a fake cloud selling the
    /// us-east-1 catalogue, and the simulated data plane. The data plane does not run by itself:
    /// call [`DataPlane::settle`] after each step of a test (deterministic with a
    /// [`crate::meta::ManualClock`]), or [`DataPlane::spawn`] it.
    pub async fn start_simulated(
        clock: Clock,
        cloud: FakeCloudConfig,
        data_plane: DataPlaneConfig,
    ) -> Result<Self, TestError> {
        let store = StoreConfig {
            clock: clock.clone(),
            ..StoreConfig::default()
        };
        let mut cluster = Self::start_with(store, ServerConfig::default()).await?;
        let store = cluster.state().store.clone();
        crate::simulation::install_crds(&store)?;
        let cloud = FakeCloud::us_east_1(clock, cloud).map_err(crate::simulation::SimulationError::from)?;
        let plane = DataPlane::new(store, Some(cloud.clone()), data_plane);
        cluster.simulated = Some((cloud, plane));
        Ok(cluster)
    }

    /// [`TestCluster::start_simulated`] on a manual clock at 2026-01-01T00:00:00Z with
    /// [`DEFAULT_NODE_CLASS`] applied, which is how most controller tests begin; returns the
    /// clock too, for the test to advance.
    pub async fn start_with_default_node_class(
        cloud: FakeCloudConfig,
        data_plane: DataPlaneConfig,
    ) -> Result<(Self, ManualClock), TestError> {
        let clock = ManualClock::new(jiff::Timestamp::constant(1_767_225_600, 0)); // 2026-01-01T00:00:00Z
        let cluster = Self::start_simulated(clock.clock(), cloud, data_plane).await?;
        cluster.apply_yaml(DEFAULT_NODE_CLASS)?;
        Ok((cluster, clock))
    }

    /// The lab: [`TestCluster::start_with_default_node_class`] with the default NodePool and the
    /// inflate Deployment applied, launches taking 30 s and the data plane polling every 10 ms
    /// (not yet running: spawn it or settle it).
    pub async fn start_lab() -> Result<(Self, ManualClock), TestError> {
        let cloud = FakeCloudConfig {
            launch_latency: jiff::SignedDuration::from_secs(30),
            ..FakeCloudConfig::default()
        };
        let data_plane = DataPlaneConfig {
            poll_interval: Duration::from_millis(10),
            ..DataPlaneConfig::default()
        };
        let (cluster, clock) = Self::start_with_default_node_class(cloud, data_plane).await?;
        cluster.apply_yaml(DEFAULT_NODE_POOL)?;
        cluster.apply_yaml(INFLATE)?;
        Ok((cluster, clock))
    }

    /// The fake cloud of a simulated cluster.
    pub fn cloud(&self) -> Option<&FakeCloud> {
        self.simulated.as_ref().map(|(cloud, _)| cloud)
    }

    /// The data plane of a simulated cluster.
    pub fn data_plane(&self) -> Option<&DataPlane> {
        self.simulated.as_ref().map(|(_, plane)| plane)
    }

    /// What the fake cloud has billed so far (None for a cluster without one).
    pub fn ledger(&self) -> Option<Ledger> {
        self.cloud().map(FakeCloud::ledger)
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// A kube-rs client for the cluster. Its retry of 429 and 503 responses is off, so a test
    /// sees each refusal; build one from [`Self::url`] to get kube's default retries.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A kube-rs client authenticated as ServiceAccount `namespace/name`: the server allows it
    /// only what the RBAC objects stored in it grant that account, and records each refusal in
    /// `self.state().rbac.denied()`. (The ServiceAccount object itself need not exist.)
    pub fn client_for_service_account(&self, namespace: &str, name: &str) -> Result<kube::Client, TestError> {
        let token = self
            .state()
            .rbac
            .mint_token(crate::rbac::Identity::service_account(namespace, name));
        let mut config = kube::Config::new(
            self.url()
                .parse()
                .map_err(|e: axum::http::uri::InvalidUri| TestError::Client(e.to_string()))?,
        );
        config.default_retry = false;
        config.auth_info.token = Some(token.into());
        kube::Client::try_from(config).map_err(|e| TestError::Client(e.to_string()))
    }

    /// The store, fault injector and settings.
    pub fn state(&self) -> &AppState {
        self.server.state()
    }

    /// Drops every connection and serves again with the same objects.
    pub async fn restart(&mut self) -> Result<(), TestError> {
        Ok(self.server.restart().await?)
    }

    /// Writes a kubeconfig pointing at the cluster.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), TestError> {
        Ok(std::fs::write(path, kubeconfig_yaml(&self.url()))?)
    }

    /// Applies every document of a YAML stream (server-side apply as manager `test-support`,
    /// forced), in order, returning the stored objects.
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>, TestError> {
        Ok(crate::simulation::apply_yaml(
            &self.state().store,
            yaml,
            "test-support",
        )?)
    }

    /// Polls `check` every 20 ms until it returns true, for at most `timeout`.
    pub async fn wait_until<F, Fut>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: F,
    ) -> Result<(), TestError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if check().await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TestError::Timeout(timeout, what.to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until an object exists and satisfies `condition`, returning it.
    pub async fn wait_for_object(
        &self,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
        timeout: Duration,
        condition: impl Fn(&Value) -> bool,
    ) -> Result<Value, TestError> {
        let store = self.state().store.clone();
        let what = format!("{resource}.{group} {namespace}/{name}");
        let mut found = None;
        self.wait_until(timeout, &what, || {
            let value = store
                .registry()
                .get(group, resource)
                .and_then(|info| store.get(&info, namespace, name).ok())
                .map(|o| o.value());
            let ok = value.as_ref().is_some_and(&condition);
            if ok {
                found = value;
            }
            std::future::ready(ok)
        })
        .await?;
        found.ok_or(TestError::Timeout(timeout, what))
    }
}
