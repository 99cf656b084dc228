//! The simulated data plane: what a real cluster runs besides the API server, so pods created
//! through the API behave as they would on EKS.
//!
//! - [`workloads`]: Deployment → ReplicaSet → Pods, DaemonSet pods per node, Job pods (which
//!   succeed after their run time), and PodDisruptionBudget status.
//! - [`scheduler`]: binds pending pods to nodes that fit, else marks them
//!   `PodScheduled=False, reason Unschedulable` as kube-scheduler does.
//! - [`kubelet`]: registers a Node for each running fake-cloud instance after a boot delay, turns
//!   it Ready after a further delay, runs bound pods, finishes terminating pods, and removes pods
//!   and Nodes whose machine is gone.
//!
//! Every controller is a pass over the store's current objects (level-triggered, like the real
//! ones): [`DataPlane::step`] runs each once, [`DataPlane::settle`] repeats until nothing
//! changes, and [`DataPlane::spawn`] settles in the background whenever the store or the clock
//! moves. Tests with a [`crate::meta::ManualClock`] advance time and call `settle`, so hours of
//! simulated time take milliseconds and every outcome is deterministic.

mod ctx;
pub mod kubelet;
pub mod scheduler;
pub mod workloads;

use std::{sync::Arc, time::Duration};

use jiff::SignedDuration;

use crate::{cloud::FakeCloud, error::ApiError, meta::Clock, store::Store};

pub(crate) use ctx::Ctx;

/// Delays of the simulated machines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataPlaneConfig {
    /// From an instance running until its kubelet registers the Node.
    pub boot_delay: SignedDuration,
    /// From registration until the Node is Ready and its startup taints are gone.
    pub ready_delay: SignedDuration,
    /// How long a Job's pod runs before it succeeds, unless its template's annotation
    /// [`workloads::RUN_SECONDS_ANNOTATION`] says otherwise.
    pub job_run_time: SignedDuration,
    /// How often the background loop looks for work when nothing wakes it (real time).
    pub poll_interval: Duration,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            boot_delay: SignedDuration::from_secs(20),
            ready_delay: SignedDuration::from_secs(10),
            job_run_time: SignedDuration::from_secs(30),
            poll_interval: Duration::from_millis(100),
        }
    }
}

/// Why a pass failed. Races (an object changed or vanished meanwhile) are not errors: the next
/// pass sees the new state.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// The API server refused a write for a reason other than a race.
    #[error("api server: {0}")]
    Api(#[from] ApiError),
    /// A stored object does not decode as its type.
    #[error("{resource} {name} does not decode: {message}")]
    Decode {
        resource: String,
        name: String,
        message: String,
    },
    /// An object could not be encoded for a write.
    #[error("encoding an object: {0}")]
    Encode(String),
    /// A type the data plane writes is not served (its CRD is missing).
    #[error("{0} is not served")]
    NotServed(String),
    /// A pass panicked (a bug); the background loop reports it and goes on.
    #[error("a data plane pass panicked: {0}")]
    Panicked(String),
    /// `settle` kept finding work: the controllers are fighting each other.
    #[error("the data plane did not settle in {0} passes")]
    NoFixpoint(usize),
}

/// How many passes `settle` makes before deciding the controllers fight each other.
const MAX_PASSES: usize = 64;

/// The simulated controllers, kubelets and scheduler of one cluster.
#[derive(Clone)]
pub struct DataPlane {
    store: Arc<Store>,
    clock: Clock,
    cloud: Option<FakeCloud>,
    config: DataPlaneConfig,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("config", &self.config)
            .field("cloud", &self.cloud.is_some())
            .finish_non_exhaustive()
    }
}

impl DataPlane {
    /// A data plane for `store`, timed by the store's clock. Without a cloud, no Node registers
    /// by itself (tests create Nodes directly) but everything else runs.
    pub fn new(store: Arc<Store>, cloud: Option<FakeCloud>, config: DataPlaneConfig) -> Self {
        let clock = store.config().clock.clone();
        Self {
            store,
            clock,
            cloud,
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &DataPlaneConfig {
        &self.config
    }

    /// The fake cloud whose instances become Nodes.
    pub fn cloud(&self) -> Option<&FakeCloud> {
        self.cloud.as_ref()
    }

    fn ctx(&self, manager: &'static str) -> Ctx<'_> {
        Ctx {
            store: &self.store,
            clock: &self.clock,
            manager,
        }
    }

    /// Runs every controller once, in the order a change flows through a cluster; returns how
    /// many objects were written.
    pub fn step(&self) -> Result<usize, DataPlaneError> {
        let mut writes = 0;
        writes += workloads::reconcile(&self.ctx(workloads::MANAGER), &self.config)?;
        writes += kubelet::reconcile_nodes(&self.ctx(kubelet::MANAGER), self.cloud.as_ref(), &self.config)?;
        writes += scheduler::reconcile(&self.ctx(scheduler::MANAGER))?;
        writes += kubelet::reconcile_pods(&self.ctx(kubelet::MANAGER))?;
        Ok(writes)
    }

    /// Runs passes until one writes nothing; returns the total writes.
    pub fn settle(&self) -> Result<usize, DataPlaneError> {
        let mut total = 0;
        for _ in 0..MAX_PASSES {
            let writes = self.step()?;
            if writes == 0 {
                return Ok(total);
            }
            total += writes;
        }
        Err(DataPlaneError::NoFixpoint(MAX_PASSES))
    }

    /// Settles in the background: after any change to the store, and every poll interval (so
    /// delays measured on the clock elapse). Errors are reported to `on_error` and the loop goes on,
    /// as a real controller's would.
    pub fn spawn(self, on_error: impl Fn(&DataPlaneError) + Send + 'static) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut seen = None;
            let mut ticks_since_work = 0_u32;
            loop {
                let version = self.store.resource_version();
                // Time-driven work (boot and ready delays, Job run times) needs a pass now and
                // then even when no object changed.
                if seen != Some(version) || ticks_since_work >= 10 {
                    ticks_since_work = 0;
                    let this = self.clone();
                    match tokio::task::spawn_blocking(move || this.settle()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => on_error(&e),
                        Err(join) => on_error(&DataPlaneError::Panicked(join.to_string())),
                    }
                    seen = Some(self.store.resource_version());
                } else {
                    ticks_since_work += 1;
                }
                tokio::time::sleep(self.config.poll_interval).await;
            }
        })
    }
}
