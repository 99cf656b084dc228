//! Plays a scenario: the simulated cluster (API server, data plane, fake cloud) and Nodewright's
//! real controllers in one process, on a clock that runs `speed` times faster than the wall
//! clock; steps are applied at their simulated times and the cluster is sampled throughout.

use std::{path::PathBuf, sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use nodewright_api::clock::Clock;
use nodewright_controller::{Election, Settings};
use nodewright_sim::{
    cloud::{FakeCloudConfig, Ledger},
    dataplane::DataPlaneConfig,
    simulation::{Simulation, SimulationConfig, SimulationError},
    store::DeleteOptions,
    testing::kubeconfig_yaml,
};
use serde_json::json;

use crate::{
    format::{Action, ScaleKind, Scenario},
    sample::{PodStarts, Sample},
};

/// The NodePool and EC2NodeClass every scenario starts with.
pub const DEFAULT_NODEPOOL: &str = include_str!("../../../examples/default/nodepool.yaml");
pub const DEFAULT_NODECLASS: &str = include_str!("../../../examples/default/ec2nodeclass.yaml");

/// When the simulated clock starts (a Monday morning, so schedules read naturally).
pub const START: &str = "2026-01-05T08:00:00Z";

/// How to play.
#[derive(Debug, Clone)]
pub struct PlayOptions {
    /// Simulated seconds per wall-clock second (1 = real time).
    pub speed: f64,
    /// Port of the API server (0: any free port).
    pub port: u16,
    /// Write a kubeconfig for the cluster here, so kubectl can watch.
    pub kubeconfig: Option<PathBuf>,
    /// Delays of the fake cloud and the simulated machines (simulated time).
    pub cloud: FakeCloudConfig,
    pub data_plane: DataPlaneConfig,
}

impl Default for PlayOptions {
    fn default() -> Self {
        Self {
            speed: 60.0,
            port: 0,
            kubeconfig: None,
            cloud: FakeCloudConfig {
                launch_latency: SignedDuration::from_secs(30),
                ..FakeCloudConfig::default()
            },
            data_plane: DataPlaneConfig::default(),
        }
    }
}

/// Why a scenario stopped.
#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    #[error(transparent)]
    Simulation(#[from] SimulationError),
    #[error("step at {at}: {action}: {message}")]
    Step {
        at: String,
        action: String,
        message: String,
    },
    #[error("writing the kubeconfig {path}: {source}")]
    Kubeconfig { path: String, source: std::io::Error },
    #[error("speed must be a positive number, not {0}")]
    Speed(f64),
    #[error("variant {variant}: {source}")]
    Variant { variant: String, source: Box<PlayError> },
}

/// What happened, for the progress display.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The cluster is up (its URL).
    Started(&'a str),
    /// A step was applied.
    Step {
        at: SignedDuration,
        description: &'a str,
    },
    Sample(&'a Sample),
}

/// The record of a played scenario.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub samples: Vec<Sample>,
    /// Steps as applied: simulated time and description.
    pub steps: Vec<(SignedDuration, String)>,
    /// The cloud's bill at the end.
    pub ledger: Ledger,
    /// Instances still running at the end.
    pub live_instances: usize,
    /// When each instance was launched (simulated time since the start), in launch order.
    pub launches: Vec<SignedDuration>,
    /// How long the pods existing at the end took to start.
    pub pod_starts: PodStarts,
}

/// One variant's record (`variant` None: the scenario has no variants).
#[derive(Debug, Clone)]
pub struct Played {
    pub variant: Option<String>,
    pub outcome: Outcome,
}

/// A clock that stands at `start` until started, then runs `speed` times faster than the wall
/// clock, so setting the cluster up costs no simulated time.
#[derive(Clone)]
struct ScaledClock {
    start: Timestamp,
    speed: f64,
    origin: Arc<std::sync::OnceLock<std::time::Instant>>,
}

impl ScaledClock {
    fn new(start: Timestamp, speed: f64) -> Self {
        Self {
            start,
            speed,
            origin: Arc::default(),
        }
    }

    fn begin(&self) {
        let _ = self.origin.set(std::time::Instant::now());
    }

    fn now(&self) -> Timestamp {
        let Some(origin) = self.origin.get() else {
            return self.start;
        };
        SignedDuration::try_from(origin.elapsed().mul_f64(self.speed))
            .ok()
            .and_then(|d| self.start.checked_add(d).ok())
            .unwrap_or(Timestamp::MAX)
    }

    fn clock(&self) -> Clock {
        let this = self.clone();
        Clock::from_fn(move || this.now())
    }
}

/// The controllers' own waits are wall-clock timers: tell them how fast the clock runs so they
/// keep Karpenter's lengths in simulated time.
fn scaled_settings(speed: f64) -> Settings {
    Settings {
        cluster_name: "nodewright-sim".to_owned(),
        wall_clock_speedup: speed,
        ..Settings::default()
    }
}

/// Plays `scenario`, calling `progress` as it goes.
pub async fn play(
    scenario: &Scenario,
    options: &PlayOptions,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Outcome, PlayError> {
    if !(options.speed.is_finite() && options.speed > 0.0) {
        return Err(PlayError::Speed(options.speed));
    }
    let start: Timestamp = START.parse().unwrap_or(Timestamp::UNIX_EPOCH);
    let scaled = ScaledClock::new(start, options.speed);
    let clock = scaled.clock();
    let simulation = Simulation::start(
        SimulationConfig {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], options.port)),
            clock: clock.clone(),
            cloud: FakeCloudConfig {
                cluster_name: "nodewright-sim".to_owned(),
                ..options.cloud.clone()
            },
            data_plane: DataPlaneConfig {
                // The data plane's wake-ups are wall-clock time too.
                poll_interval: options
                    .data_plane
                    .poll_interval
                    .div_f64(options.speed)
                    .max(Duration::from_millis(2)),
                ..options.data_plane.clone()
            },
            install_crds: true,
        },
        |error| eprintln!("data plane: {error}"),
    )
    .await?;
    let url = simulation.url();
    if let Some(path) = &options.kubeconfig {
        std::fs::write(path, kubeconfig_yaml(&url)).map_err(|source| PlayError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
    }
    progress(Progress::Started(&url));
    simulation.apply_yaml(DEFAULT_NODECLASS, "nodewright-sim")?;
    simulation.apply_yaml(DEFAULT_NODEPOOL, "nodewright-sim")?;

    let client = simulation.client()?;
    let controllers = tokio::spawn(nodewright_controller::run(
        client.clone(),
        Arc::new(simulation.cloud().clone()),
        clock.clone(),
        scaled_settings(options.speed),
        Election::Disabled,
    ));

    scaled.begin();
    let elapsed = || clock.now().duration_since(start);
    let tick = options_tick(scenario, options.speed);
    let mut outcome = Outcome::default();
    let mut next_step = 0;
    let mut next_sample = SignedDuration::ZERO;
    loop {
        let now = elapsed();
        while let Some(step) = scenario.steps.get(next_step).filter(|s| s.at <= now) {
            let description = step.action.describe();
            perform(&simulation, &client, &step.action)
                .await
                .map_err(|message| PlayError::Step {
                    at: format!("{:#}", step.at),
                    action: description.clone(),
                    message,
                })?;
            // Let the workload controllers react at once, so the step's pods exist when sampled.
            let plane = simulation.data_plane().clone();
            if let Ok(Err(error)) = tokio::task::spawn_blocking(move || plane.settle()).await {
                eprintln!("data plane: {error}");
            }
            progress(Progress::Step {
                at: now,
                description: &description,
            });
            outcome.steps.push((now, description));
            next_step += 1;
        }
        if now >= next_sample {
            let sample = Sample::take(&simulation.state().store, simulation.cloud(), now, clock.now());
            progress(Progress::Sample(&sample));
            outcome.samples.push(sample);
            next_sample = now
                .checked_add(scenario.sample_every)
                .unwrap_or(SignedDuration::MAX);
        }
        if now >= scenario.duration {
            break;
        }
        if controllers.is_finished() {
            break;
        }
        tokio::time::sleep(tick).await;
    }
    controllers.abort();
    record_the_end(&simulation, start, &mut outcome);
    Ok(outcome)
}

/// What the cluster and the cloud show at the end: the bill, the instances (live, and when each
/// was launched) and how long the pods took to start.
fn record_the_end(simulation: &Simulation, start: Timestamp, outcome: &mut Outcome) {
    outcome.ledger = simulation.ledger();
    outcome.live_instances = simulation.cloud().instances().len();
    outcome.launches = simulation
        .cloud()
        .all_instances()
        .iter()
        .map(|i| i.launched_at.duration_since(start))
        .collect();
    outcome.pod_starts = PodStarts::take(&simulation.state().store);
}

/// Plays every variant of `scenario` one after the other, each on a fresh simulated cluster
/// (or the scenario once when it has none), calling `progress` with the variant's name.
pub async fn play_variants(
    scenario: &Scenario,
    options: &PlayOptions,
    mut progress: impl FnMut(Option<&str>, Progress<'_>),
) -> Result<Vec<Played>, PlayError> {
    if scenario.variants.is_empty() {
        let outcome = play(scenario, options, |p| progress(None, p)).await?;
        return Ok(vec![Played {
            variant: None,
            outcome,
        }]);
    }
    let mut played = Vec::with_capacity(scenario.variants.len());
    for variant in &scenario.variants {
        let name = variant.name.as_str();
        let outcome = play(&scenario.with_variant(variant), options, |p| {
            progress(Some(name), p);
        })
        .await
        .map_err(|source| PlayError::Variant {
            variant: variant.name.clone(),
            source: Box::new(source),
        })?;
        played.push(Played {
            variant: Some(variant.name.clone()),
            outcome,
        });
    }
    Ok(played)
}

/// How often the player wakes (wall clock): a tenth of the sample interval, at most 100 ms.
fn options_tick(scenario: &Scenario, speed: f64) -> Duration {
    let sample = Duration::try_from(scenario.sample_every).unwrap_or(Duration::from_secs(10));
    sample
        .div_f64(speed * 10.0)
        .clamp(Duration::from_millis(1), Duration::from_millis(100))
}

async fn perform(simulation: &Simulation, client: &kube::Client, action: &Action) -> Result<(), String> {
    match action {
        Action::Apply { yaml, .. } => simulation
            .apply_yaml(yaml, "nodewright-sim")
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Action::Scale {
            kind,
            namespace,
            name,
            replicas,
        } => {
            let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
            let params = PatchParams::default();
            let result = match kind {
                ScaleKind::Deployment => {
                    Api::<Deployment>::namespaced(client.clone(), namespace)
                        .patch_scale(name, &params, &patch)
                        .await
                }
                ScaleKind::ReplicaSet => {
                    Api::<ReplicaSet>::namespaced(client.clone(), namespace)
                        .patch_scale(name, &params, &patch)
                        .await
                }
                ScaleKind::StatefulSet => {
                    Api::<StatefulSet>::namespaced(client.clone(), namespace)
                        .patch_scale(name, &params, &patch)
                        .await
                }
            };
            result.map(|_| ()).map_err(|e| e.to_string())
        }
        Action::Delete {
            kind,
            namespace,
            name,
        } => {
            let store = &simulation.state().store;
            let registry = store.registry();
            // Core kinds first, so `Event` means core/v1.
            let mut matching: Vec<_> = registry.all().filter(|i| i.kind == *kind).cloned().collect();
            matching.sort_by_key(|i| !i.group.is_empty());
            let info = matching.first().ok_or_else(|| format!("no served kind {kind}"))?;
            let ns = if info.namespaced { namespace.as_str() } else { "" };
            store
                .delete(info, ns, name, &DeleteOptions::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}
