//! `nodewright sim`: the simulated cluster (API server, fake cloud, data plane) for trying
//! Nodewright with kubectl, no cloud account or real cluster needed.

use std::{net::SocketAddr, path::PathBuf, str::FromStr};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use jiff::SignedDuration;
use nodewright_sim::{
    cloud::FakeCloudConfig,
    dataplane::DataPlaneConfig,
    simulation::{Simulation, SimulationConfig},
    testing::kubeconfig_yaml,
};

#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
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
        SimCommand::Serve(serve) => runtime.block_on(serve_cluster(serve)),
    }
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
