//! `nodewright explain`: why a node is kept (or would be disrupted) and why a pod is pending,
//! against a live cluster. The work is `nodewright_controller::explain`; this reads the
//! kubeconfig, lists the cluster once and prints.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use jiff::Timestamp;
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use nodewright_api::clock::Clock;
use nodewright_catalog::{Catalog, NodeSettings};
use nodewright_controller::explain::{Cluster, PoolTypes, node, pod};

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum Target {
    /// Whether disruption would remove the node now, and if not what blocks it
    /// (do-not-disrupt, a PodDisruptionBudget, consolidateAfter, budgets, no cheaper
    /// arrangement, ...); the pods that would move, its NodeClaim's Consolidatable condition and
    /// the events recorded about it.
    Node {
        /// The Node's name.
        name: String,
        #[command(flatten)]
        common: Common,
        /// Evaluate with spot-to-spot consolidation allowed (the controller's
        /// `spot_to_spot_consolidation` setting).
        #[arg(long)]
        spot_to_spot_consolidation: bool,
    },
    /// Where the pod runs, or why it is pending: per existing node why it does not fit, per
    /// NodePool why no new node can take it (requirements, taints, limits, no instance type
    /// or offering), and its FailedScheduling and Nominated events.
    Pod {
        /// The pod, as namespace/name.
        #[arg(value_name = "NAMESPACE/NAME")]
        reference: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service
    /// account).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long)]
    context: Option<String>,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Evaluate as of this time (RFC 3339, e.g. 2026-01-01T03:00:00Z) instead of now: budgets'
    /// schedules, consolidateAfter and do-not-disrupt durations depend on it.
    #[arg(long, value_name = "TIME")]
    at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

pub(crate) fn run(args: ExplainArgs) -> Result<String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(explain(args))
}

async fn explain(args: ExplainArgs) -> Result<String> {
    match args.target {
        Target::Node {
            name,
            common,
            spot_to_spot_consolidation,
        } => {
            let (cluster, types, now) = read(&common, "default").await?;
            let options = node::Options {
                spot_to_spot_consolidation,
            };
            let explanation = node::explain(&cluster, &types, &name, now, options)?;
            render(
                common.output,
                || serde_json::to_string_pretty(&explanation),
                || explanation.to_text(),
            )
        }
        Target::Pod { reference, common } => {
            // Events about a pod live in its namespace; a malformed name is reported by explain.
            let namespace = reference.split_once('/').map_or("default", |(ns, _)| ns);
            let (cluster, types, now) = read(&common, namespace).await?;
            let explanation = pod::explain(&cluster, &types, &reference, now)?;
            render(
                common.output,
                || serde_json::to_string_pretty(&explanation),
                || explanation.to_text(),
            )
        }
    }
}

fn render(
    format: Format,
    json: impl FnOnce() -> serde_json::Result<String>,
    text: impl FnOnce() -> String,
) -> Result<String> {
    Ok(match format {
        Format::Text => text(),
        Format::Json => {
            let mut json = json().context("rendering the explanation as JSON")?;
            json.push('\n');
            json
        }
    })
}

/// The cluster, the NodePools' instance types (from the built-in us-east-1 catalogue, under each
/// EC2NodeClass's settings, as `nodewright plan` uses), and the time to evaluate at.
async fn read(common: &Common, events_namespace: &str) -> Result<(Cluster, PoolTypes, Timestamp)> {
    let client = client(common).await?;
    let cluster = Cluster::read(&client, events_namespace).await?;
    let catalog =
        Catalog::us_east_1(&NodeSettings::default()).context("loading the instance-type catalogue")?;
    let types = PoolTypes::from_catalog(&cluster, &catalog);
    let now = common.at.unwrap_or_else(|| Clock::system().now());
    Ok((cluster, types, now))
}

async fn client(common: &Common) -> Result<Client> {
    let options = KubeConfigOptions {
        context: common.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&common.kubeconfig, &common.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        (None, Some(context)) => Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("using kubeconfig context {context}"))?,
        (None, None) => Config::infer()
            .await
            .context("finding a kubeconfig (pass --kubeconfig)")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}
