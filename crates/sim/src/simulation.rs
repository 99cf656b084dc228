//! A whole simulated cluster on one clock: the API server with Nodewright's CRDs installed, the
//! fake cloud, and the data plane (scheduler, kubelets, workload controllers) running in the
//! background. What `nodewright sim serve` runs.

use std::{net::SocketAddr, sync::Arc};

use nodewright_catalog::CatalogError;
use tokio::task::JoinHandle;

use crate::{
    AppState, Server, ServerConfig,
    cloud::{FakeCloud, FakeCloudConfig, Ledger},
    dataplane::{DataPlane, DataPlaneConfig, DataPlaneError},
    error::ApiError,
    meta::Clock,
    store::{Store, StoreConfig, WriteOptions},
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
