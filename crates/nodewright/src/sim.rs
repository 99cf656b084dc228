//! `nodewright sim`: the simulated cluster (API server, fake cloud, data plane) for trying
//! Nodewright with kubectl, no cloud account or real cluster needed.

use std::{net::SocketAddr, path::PathBuf, str::FromStr};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::probes::ProbeArgs;
use jiff::SignedDuration;
use nodewright_scenario::{DEFAULT_SCENARIO, PlayOptions, Progress, Scenario, chart, play_variants, report};
use nodewright_sim::{
    cloud::FakeCloudConfig,
    dataplane::DataPlaneConfig,
    simulation::{Simulation, SimulationConfig},
    testing::kubeconfig_yaml,
};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SimArgs {
    #[command(subcommand)]
    command: Option<SimCommand>,
    #[command(flatten)]
    play: PlayArgs,
}

/// `nodewright sim` without a subcommand: play a scenario.
#[derive(Debug, Args)]
struct PlayArgs {
    /// A scenario file (see scenarios/ and the scenario crate docs for the format); default: the built-in inflate lab
    /// (scenarios/inflate-lab.yaml).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Simulated seconds per wall-clock second.
    #[arg(long, default_value_t = 60.0, conflicts_with = "real_time")]
    speed: f64,
    /// Run at wall-clock speed and write a kubeconfig so kubectl can watch (implies --speed 1).
    #[arg(long)]
    real_time: bool,
    /// Where to write the timeline chart (SVG); a scenario with variants writes one per variant,
    /// named after this file (`nodewright-sim-<variant>.svg`).
    #[arg(long, value_name = "FILE", default_value = "nodewright-sim.svg")]
    chart: PathBuf,
    /// Port of the simulated API server (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write a kubeconfig for the simulated cluster here (default with --real-time:
    /// nodewright-sim.kubeconfig).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The controllers' metrics and health probes, for watching a simulation with Prometheus or
    /// Grafana.
    #[command(flatten)]
    probes: ProbeArgs,
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Serve a simulated cluster on 127.0.0.1 until interrupted: the Kubernetes API (kubectl and
    /// client libraries work unchanged), Nodewright's CRDs, a fake EC2 selling the us-east-1
    /// catalogue, and a simulated data plane (kube-scheduler, kubelets that register a Node for
    /// each instance, Deployment/ReplicaSet/DaemonSet/Job controllers).
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Port to listen on (0 picks a free one; the kubeconfig names it).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Write a kubeconfig for the cluster here (`kubectl --kubeconfig FILE get nodes`).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// From an instance's launch until it runs.
    #[arg(long, default_value = "5s", value_parser = duration)]
    launch_latency: SignedDuration,
    /// From an instance running until its Node registers.
    #[arg(long, default_value = "20s", value_parser = duration)]
    boot_delay: SignedDuration,
    /// From registration until the Node is Ready.
    #[arg(long, default_value = "10s", value_parser = duration)]
    ready_delay: SignedDuration,
    /// Written into the instances' cluster tags.
    #[arg(long, default_value = "nodewright-sim")]
    cluster_name: String,
    /// Do not install Nodewright's CRDs at start (apply `crds/` yourself).
    #[arg(long)]
    no_crds: bool,
}

/// `20s`, `1m30s`, `2h`: jiff's friendly duration format.
fn duration(text: &str) -> Result<SignedDuration, String> {
    let parsed = SignedDuration::from_str(text)
        .map_err(|e| format!("{text:?} is not a duration like 20s or 1m30s: {e}"))?;
    if parsed.is_negative() {
        return Err(format!("{text:?} is negative"));
    }
    Ok(parsed)
}

pub(crate) fn run(args: SimArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match args.command {
        Some(SimCommand::Serve(serve)) => runtime.block_on(serve_cluster(serve)),
        None => runtime.block_on(play_scenario(args.play)),
    }
}

async fn play_scenario(args: PlayArgs) -> Result<()> {
    let scenario = match &args.scenario {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let base = path.parent().unwrap_or_else(|| std::path::Path::new("."));
            Scenario::parse(&text, &path.display().to_string(), base)?
        }
        None => Scenario::parse(
            DEFAULT_SCENARIO,
            "built-in inflate-lab scenario",
            std::path::Path::new("."),
        )?,
    };
    let kubeconfig = args
        .kubeconfig
        .clone()
        .or_else(|| args.real_time.then(|| PathBuf::from("nodewright-sim.kubeconfig")));
    let options = PlayOptions {
        speed: if args.real_time { 1.0 } else { args.speed },
        port: args.port,
        kubeconfig: kubeconfig.clone(),
        ..PlayOptions::default()
    };
    println!(
        "nodewright sim: scenario {} ({}), {} of simulated time at {}x",
        scenario.name,
        scenario.description,
        format_args!("{:#}", scenario.duration),
        options.speed
    );
    let _servers = args.probes.serve().await?;
    if let Some(port) = args.probes.metrics_port {
        println!("  metrics on http://127.0.0.1:{port}/metrics");
    }
    let mut last: Option<(usize, usize, usize, usize)> = None;
    let played = play_variants(&scenario, &options, |variant, progress| {
        let tag = variant.map(|v| format!("[{v}] ")).unwrap_or_default();
        match progress {
            Progress::Started(url) => {
                last = None;
                match &kubeconfig {
                    Some(path) => println!(
                        "{tag}  cluster at {url}; kubectl --kubeconfig {} get nodeclaims,nodes,pods",
                        path.display()
                    ),
                    None => println!("{tag}  cluster at {url}"),
                }
            }
            Progress::Step { at, description } => println!("{tag}{:>9}  >> {description}", clock_text(at)),
            Progress::Sample(sample) => {
                let key = (sample.pending_pods, sample.node_claims, sample.nodes_ready(), sample.nodes_not_ready);
                if last != Some(key) {
                    last = Some(key);
                    println!(
                        "{tag}{:>9}  pending {:>4}  running {:>4}  nodeclaims {:>3}  nodes {:>3} ready {:>3} starting  ${:.4}/h",
                        clock_text(sample.at),
                        sample.pending_pods,
                        sample.running_pods,
                        sample.node_claims,
                        sample.nodes_ready(),
                        sample.nodes_not_ready,
                        dollars(sample.cost_per_hour_nano_usd),
                    );
                }
            }
        }
    })
    .await?;
    for run in &played {
        let name = match &run.variant {
            Some(variant) => format!("{}/{variant}", scenario.name),
            None => scenario.name.clone(),
        };
        println!();
        print!("{}", report::summary(&name, &run.outcome));
        let path = chart_path(&args.chart, run.variant.as_deref());
        let svg = chart::svg(&format!("nodewright sim: {name}"), &run.outcome.samples)?;
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        println!("timeline chart written to {}", path.display());
    }
    if played.len() > 1 {
        println!();
        print!("{}", report::comparison(&scenario.name, &played));
    }
    Ok(())
}

/// The chart file of a variant: `<stem>-<variant>.<ext>` next to `chart`.
fn chart_path(chart: &std::path::Path, variant: Option<&str>) -> PathBuf {
    let Some(variant) = variant else {
        return chart.to_path_buf();
    };
    let stem = chart.file_stem().map_or_else(
        || "nodewright-sim".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let name = match chart.extension() {
        Some(ext) => format!("{stem}-{variant}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{variant}"),
    };
    chart.with_file_name(name)
}

fn clock_text(at: SignedDuration) -> String {
    let secs = at.as_secs();
    format!("{}m{:02}s", secs / 60, secs % 60)
}

// Prices are far below 2^52 nano-dollars: exact enough to print.
#[allow(clippy::cast_precision_loss)]
fn dollars(nano: u64) -> f64 {
    nano as f64 / 1e9
}

async fn serve_cluster(args: ServeArgs) -> Result<()> {
    let config = SimulationConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], args.port)),
        cloud: FakeCloudConfig {
            launch_latency: args.launch_latency,
            cluster_name: args.cluster_name,
            ..FakeCloudConfig::default()
        },
        data_plane: DataPlaneConfig {
            boot_delay: args.boot_delay,
            ready_delay: args.ready_delay,
            ..DataPlaneConfig::default()
        },
        install_crds: !args.no_crds,
        ..SimulationConfig::default()
    };
    let simulation = Simulation::start(config, |error| eprintln!("data plane: {error}"))
        .await
        .with_context(|| format!("starting the simulated cluster on port {}", args.port))?;
    let url = simulation.url();
    if let Some(path) = &args.kubeconfig {
        std::fs::write(path, kubeconfig_yaml(&url)).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "nodewright sim: serving on {url}; kubeconfig written to {}",
            path.display()
        );
    } else {
        println!("nodewright sim: serving on {url}; try `kubectl -s {url} get nodepools,nodes,pods -A`");
    }
    wait_for_shutdown()
        .await
        .context("waiting for a shutdown signal")?;
    println!("nodewright sim: stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM where there is one (`kill`, container runtimes).
async fn wait_for_shutdown() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
