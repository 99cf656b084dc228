//! A whole simulated cluster on one clock: the API server with Nodewright's CRDs installed, the
//! fake cloud, and the data plane (scheduler, kubelets, workload controllers) running in the
//! background. What `nodewright sim serve` runs.

use std::{net::SocketAddr, sync::Arc};

use serde_json::Value;

use nodewright_catalog::CatalogError;
use tokio::task::JoinHandle;

use crate::{
    AppState, Server, ServerConfig, apply,
    cloud::{FakeCloud, FakeCloudConfig, Ledger},
    dataplane::{DataPlane, DataPlaneConfig, DataPlaneError},
    error::ApiError,
    meta::Clock,
    meta::{meta_str, metadata_mut},
    store::{Operation, Store, StoreConfig, Subresource, WriteOptions},
};

/// Why a simulation could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    #[error("binding the API server: {0}")]
    Io(#[from] std::io::Error),
    #[error("loading the instance-type catalogue: {0}")]
    Catalog(#[from] CatalogError),
    #[error("installing CRD {name}: {source}")]
    Crd { name: String, source: ApiError },
    /// A YAML stream did not parse.
    #[error("yaml: {0}")]
    Yaml(String),
    /// A document names a type the server does not serve.
    #[error("no resource serves {0}")]
    UnknownKind(String),
    /// The API server refused a document.
    #[error("{kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        source: ApiError,
    },
    /// A client for the server could not be built.
    #[error("client: {0}")]
    Client(String),
}

/// How to start a [`Simulation`].
#[derive(Clone, Debug)]
pub struct SimulationConfig {
    /// Where to listen (port 0 picks a free one).
    pub addr: SocketAddr,
    /// The clock of the store, the cloud and the data plane.
    pub clock: Clock,
    pub cloud: FakeCloudConfig,
    pub data_plane: DataPlaneConfig,
    /// Install NodePool, NodeClaim, EC2NodeClass, NodeOverlay and CapacityBuffer CRDs at start.
    pub install_crds: bool,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            clock: Clock::system(),
            cloud: FakeCloudConfig::default(),
            data_plane: DataPlaneConfig::default(),
            install_crds: true,
        }
    }
}

/// A running simulated cluster. Dropping it stops the server and the data plane.
#[derive(Debug)]
pub struct Simulation {
    server: Server,
    cloud: FakeCloud,
    data_plane: DataPlane,
    task: JoinHandle<()>,
}

impl Simulation {
    /// Starts the server, installs the CRDs, and runs the data plane in the background;
    /// data-plane errors go to `on_error` (the loop goes on).
    pub async fn start(
        config: SimulationConfig,
        on_error: impl Fn(&DataPlaneError) + Send + 'static,
    ) -> Result<Self, SimulationError> {
        let state = AppState::with_config(
            StoreConfig {
                clock: config.clock.clone(),
                ..StoreConfig::default()
            },
            ServerConfig::default(),
        );
        if config.install_crds {
            install_crds(&state.store)?;
        }
        let cloud = FakeCloud::us_east_1(config.clock.clone(), config.cloud)?;
        let data_plane = DataPlane::new(state.store.clone(), Some(cloud.clone()), config.data_plane);
        let server = Server::start(config.addr, state).await?;
        let task = data_plane.clone().spawn(on_error);
        Ok(Self {
            server,
            cloud,
            data_plane,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The store and settings the server uses.
    pub fn state(&self) -> &AppState {
        self.server.state()
    }

    /// The fake cloud (a controller under test launches through it).
    pub fn cloud(&self) -> &FakeCloud {
        &self.cloud
    }

    /// The data plane, to settle it at once rather than wait for its loop.
    pub fn data_plane(&self) -> &DataPlane {
        &self.data_plane
    }

    /// What the cloud has billed so far.
    pub fn ledger(&self) -> Ledger {
        self.cloud.ledger()
    }

    /// A kube-rs client for the server, with kube's default retries.
    pub fn client(&self) -> Result<kube::Client, SimulationError> {
        let url = self
            .url()
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| SimulationError::Client(e.to_string()))?;
        kube::Client::try_from(kube::Config::new(url)).map_err(|e| SimulationError::Client(e.to_string()))
    }

    /// Applies a YAML stream (server-side apply as `manager`, forced).
    pub fn apply_yaml(&self, yaml: &str, manager: &str) -> Result<Vec<Value>, SimulationError> {
        apply_yaml(&self.state().store, yaml, manager)
    }
}

impl Drop for Simulation {
    fn drop(&mut self) {
        self.task.abort();
        self.server.stop();
    }
}

/// Stores Nodewright's CRDs (which serves their types at once).
pub fn install_crds(store: &Arc<Store>) -> Result<(), SimulationError> {
    let Some(info) = store
        .registry()
        .get("apiextensions.k8s.io", "customresourcedefinitions")
    else {
        return Ok(());
    };
    for crd in nodewright_api::crds::all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let value = serde_json::to_value(&crd).map_err(|e| SimulationError::Crd {
            name: name.clone(),
            source: ApiError::BadRequest(e.to_string()),
        })?;
        let opts = WriteOptions {
            field_manager: Some("nodewright".to_owned()),
            ..WriteOptions::default()
        };
        match store.create(&info, "", value, &opts) {
            Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
            Err(source) => return Err(SimulationError::Crd { name, source }),
        }
    }
    Ok(())
}

/// Applies every document of a YAML stream in order (server-side apply as `manager`, forced, as
/// `kubectl apply --server-side --force-conflicts` does), returning the stored objects.
pub fn apply_yaml(store: &Store, yaml: &str, manager: &str) -> Result<Vec<Value>, SimulationError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| SimulationError::Yaml(e.to_string()))?;
    let mut out = Vec::new();
    for doc in docs.into_iter().filter(Value::is_object) {
        let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let info = store
            .registry()
            .by_kind(group, kind)
            .ok_or_else(|| SimulationError::UnknownKind(format!("{api_version} {kind}")))?;
        let name = meta_str(&doc, "name").unwrap_or_default().to_owned();
        let ns = if info.namespaced {
            meta_str(&doc, "namespace").unwrap_or("default").to_owned()
        } else {
            String::new()
        };
        let opts = WriteOptions {
            field_manager: Some(manager.to_owned()),
            operation: Operation::Apply,
            ..WriteOptions::default()
        };
        let now = store.config().clock.now_rfc3339();
        let (obj, _) = store
            .update(&info, &ns, &name, Subresource::Main, &opts, &mut |current| {
                let mut merged = apply::apply(&info, current, &doc, manager, true, Subresource::Main, &now)?;
                if current.is_none() {
                    metadata_mut(&mut merged).insert("name".into(), name.clone().into());
                }
                Ok(merged)
            })
            .map_err(|source| SimulationError::Apply {
                kind: kind.to_owned(),
                name: name.clone(),
                source,
            })?;
        out.push(obj.value());
    }
    Ok(out)
}
