//! `nodewright controller`: the controllers against the cluster the process runs in (or the
//! kubeconfig's), with the AWS provider. Settings come from flags or Karpenter's environment
//! variables; invalid ones stop the process at start with a message naming the setting.
//!
//! Besides the core controllers ([`nodewright_controller::run`]) it runs the AWS provider's
//! loops: the EC2NodeClass status, launch-template garbage collection and, with
//! `INTERRUPTION_QUEUE`, the interruption queue. Those
//! mutate too, so they run only on the holder of their own Lease (`<lease name>-aws`): each loop
//! has exactly one writer even while the two Leases are held by different replicas.

use std::{str::FromStr, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use clap::Args;
use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Node;
use nodewright_api::NodeClaim;
use nodewright_aws::{
    AwsClients, AwsProvider, AwsSettings,
    controllers::{
        interruption_queue::{self, InterruptionEvent, InterruptionObserver},
        launch_templates::{self, LaunchTemplateCollection},
        node_class_status::{self, StatusLoopConfig},
        node_class_termination::{self, TerminationConfig},
        watched::WatchedNodeClasses,
    },
    interruption::InterruptionQueue,
    launch::userdata::Cluster,
};
use nodewright_cloudprovider::{BoxFuture, CloudProvider};
use nodewright_controller::{
    Clock, Election, Settings,
    events::Events,
    leader::{self, Leadership, LeaseConfig},
    metrics::{self, families::MessageTypeLabels},
};
use tokio::task::JoinSet;

use crate::{logging::LogLevel, probes::ProbeArgs};

/// Karpenter's chart serves metrics on 8080 and the probes on 8081.
const DEFAULT_METRICS_PORT: u16 = 8080;
const DEFAULT_HEALTH_PROBE_PORT: u16 = 8081;
/// The SQS long-poll wait (the most SQS allows).
const QUEUE_WAIT_SECONDS: i32 = 20;

#[derive(Debug, Clone, Args)]
pub(crate) struct ControllerArgs {
    /// The EKS cluster's name: instances are tagged with it and listed by it.
    #[arg(long, env = "CLUSTER_NAME", value_name = "NAME")]
    cluster_name: String,
    /// The API server endpoint nodes join (https://...). Without it only node classes with the
    /// Custom AMI family (whose user data is your own) can launch.
    #[arg(long, env = "CLUSTER_ENDPOINT", value_name = "URL")]
    cluster_endpoint: Option<String>,
    /// The cluster's CA bundle, base64 PEM as `aws eks describe-cluster` reports it; by default,
    /// in a pod, the service account's CA.
    #[arg(long, env = "CLUSTER_CA_BUNDLE", value_name = "BASE64")]
    cluster_ca_bundle: Option<String>,
    /// The cluster's service CIDR (nodeadm derives the cluster DNS address from it). Required
    /// with --cluster-endpoint.
    #[arg(long, env = "CLUSTER_SERVICE_CIDR", value_name = "CIDR")]
    cluster_service_cidr: Option<String>,
    /// The Kubernetes minor version (`1.33`) that picks the AMIs of an alias; by default the API
    /// server's own version.
    #[arg(long, env = "KUBERNETES_VERSION", value_name = "VERSION")]
    kubernetes_version: Option<String>,
    /// The SQS queue of EventBridge interruption events (name); no interruption handling when unset.
    #[arg(long, env = "INTERRUPTION_QUEUE", value_name = "NAME")]
    interruption_queue: Option<String>,
    /// A provisioning batch closes after this long without a new pending pod.
    #[arg(long, env = "BATCH_IDLE_DURATION", default_value = "1s", value_parser = duration)]
    batch_idle_duration: Duration,
    /// ... or after this long in all.
    #[arg(long, env = "BATCH_MAX_DURATION", default_value = "10s", value_parser = duration)]
    batch_max_duration: Duration,
    /// Karpenter's feature gates, `Name=true,Name=false`. Nodewright acts on
    /// SpotToSpotConsolidation, NodeRepair and ReservedCapacity (on unless set false);
    /// Karpenter's other gates are accepted and have no effect.
    #[arg(long, env = "FEATURE_GATES", default_value = "", value_parser = FeatureGates::from_str)]
    feature_gates: FeatureGates,
    /// Act without holding the leader Lease (a single replica only).
    #[arg(long, env = "DISABLE_LEADER_ELECTION", default_value_t = false)]
    disable_leader_election: bool,
    /// The leader Lease's name and namespace.
    #[arg(
        long,
        env = "LEADER_ELECTION_NAME",
        default_value = "karpenter-leader-election"
    )]
    leader_election_name: String,
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE", default_value = "kube-system")]
    leader_election_namespace: String,
    /// This replica's identity in the Lease; by default the pod's name (`POD_NAME`, then `HOSTNAME`).
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    leader_election_identity: Option<String>,
    /// Share of an instance's memory the hypervisor keeps, subtracted from the memory the
    /// kubelet sees (0.075 = 7.5%, Karpenter's default); at least 0, below 1.
    #[arg(
        long,
        env = "VM_MEMORY_OVERHEAD_PERCENT",
        default_value = "0.075",
        value_name = "SHARE"
    )]
    vm_memory_overhead_percent: f64,
    /// ENIs kept away from pod networking (for example for a CNI's own use), which lowers the
    /// ENI-limited pod count of each instance type.
    #[arg(long, env = "RESERVED_ENIS", default_value = "0", value_name = "COUNT")]
    reserved_enis: u32,
    /// The least severe log level written: error, warn, info or debug (on stderr).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: tracing::Level,
    /// How log lines are written: json (one object per line) or text.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    log_format: crate::logging::LogFormat,
    /// The namespace the controller runs in, where the ConfigMap `config-logging` (key
    /// `loglevel.controller`) changes the log level while it runs.
    #[arg(long, env = "SYSTEM_NAMESPACE", default_value = "kube-system")]
    system_namespace: String,
    #[command(flatten)]
    probes: ProbeArgs,
}

/// Karpenter's feature gates, as far as Nodewright reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FeatureGates {
    spot_to_spot_consolidation: bool,
    node_repair: bool,
    reserved_capacity: bool,
}

impl Default for FeatureGates {
    /// Karpenter's defaults: only ReservedCapacity is on.
    fn default() -> Self {
        Self {
            spot_to_spot_consolidation: false,
            node_repair: false,
            reserved_capacity: true,
        }
    }
}

/// Gates Karpenter defines that Nodewright accepts without acting on them.
const OTHER_KARPENTER_GATES: [&str; 2] = ["NodeOverlay", "StaticCapacity"];

impl FromStr for FeatureGates {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut gates = Self::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, value) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?} is not Name=true or Name=false"))?;
            let enabled: bool = value
                .trim()
                .parse()
                .map_err(|_| format!("{name}: {value:?} is neither true nor false"))?;
            match name.trim() {
                "SpotToSpotConsolidation" => gates.spot_to_spot_consolidation = enabled,
                "NodeRepair" => gates.node_repair = enabled,
                "ReservedCapacity" => gates.reserved_capacity = enabled,
                other if OTHER_KARPENTER_GATES.contains(&other) => {}
                other => return Err(format!("unknown feature gate {other:?}")),
            }
        }
        Ok(gates)
    }
}

/// `1s`, `500ms`, `1m30s`: Go-style durations as Karpenter's settings take them.
fn duration(text: &str) -> Result<Duration, String> {
    let parsed = SignedDuration::from_str(text)
        .map_err(|e| format!("{text:?} is not a duration like 1s, 500ms or 1m30s: {e}"))?;
    Duration::try_from(parsed).map_err(|_| format!("{text:?} is negative"))
}

/// Where the service account's CA is mounted in a pod.
const SERVICE_ACCOUNT_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// What the pod tells about itself.
#[derive(Debug, Clone, Default)]
struct PodDefaults {
    /// `HOSTNAME`: the pod's name, the default Lease identity.
    hostname: Option<String>,
    /// The service account's CA (PEM), the default CA bundle.
    service_account_ca: Option<Vec<u8>>,
}

impl PodDefaults {
    fn read() -> Self {
        Self {
            hostname: std::env::var("HOSTNAME").ok(),
            service_account_ca: std::fs::read(SERVICE_ACCOUNT_CA).ok(),
        }
    }
}

/// What the flags say, checked.
#[derive(Debug, Clone, PartialEq)]
struct ControllerConfig {
    settings: Settings,
    cluster: Option<Cluster>,
    kubernetes_version: Option<String>,
    vm_memory_overhead_percent: f64,
    reserved_enis: u32,
}

impl ControllerConfig {
    /// The AWS provider's settings for Kubernetes `kubernetes_version` (`1.33`).
    fn aws_settings(&self, kubernetes_version: String) -> AwsSettings {
        AwsSettings {
            vm_memory_overhead_percent: self.vm_memory_overhead_percent,
            reserved_enis: self.reserved_enis,
            reserved_capacity: self.settings.reserved_capacity,
            ..AwsSettings::new(self.settings.cluster_name.clone(), kubernetes_version)
        }
    }
}

impl ControllerArgs {
    /// Checks the settings against each other; errors name the setting.
    /// `defaults` supplies what the pod itself tells: its name and its service account's CA.
    fn config(&self, defaults: PodDefaults) -> Result<ControllerConfig> {
        if self.cluster_name.trim().is_empty() {
            bail!("--cluster-name/CLUSTER_NAME is empty");
        }
        if self.batch_idle_duration.is_zero() {
            bail!("--batch-idle-duration/BATCH_IDLE_DURATION must be positive");
        }
        if self.batch_max_duration < self.batch_idle_duration {
            bail!(
                "--batch-max-duration/BATCH_MAX_DURATION ({:?}) is shorter than BATCH_IDLE_DURATION ({:?})",
                self.batch_max_duration,
                self.batch_idle_duration
            );
        }
        let overhead = self.vm_memory_overhead_percent;
        if !(0.0..1.0).contains(&overhead) {
            bail!(
                "--vm-memory-overhead-percent/VM_MEMORY_OVERHEAD_PERCENT {overhead} is not a share of \
                 memory at least 0 and below 1 (0.075 is 7.5%)"
            );
        }
        if let Some(version) = &self.kubernetes_version {
            minor_version(version)
                .with_context(|| format!("--kubernetes-version/KUBERNETES_VERSION {version:?}"))?;
        }
        let cluster = self.cluster(defaults.service_account_ca.as_deref())?;
        let identity = self
            .leader_election_identity
            .clone()
            .or(defaults.hostname)
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| "nodewright".to_owned());
        let settings = Settings {
            cluster_name: self.cluster_name.clone(),
            batch_idle: self.batch_idle_duration,
            batch_max: self.batch_max_duration,
            lease_namespace: self.leader_election_namespace.clone(),
            lease_name: self.leader_election_name.clone(),
            identity,
            spot_to_spot_consolidation: self.feature_gates.spot_to_spot_consolidation,
            node_repair: self.feature_gates.node_repair,
            reserved_capacity: self.feature_gates.reserved_capacity,
            ..Settings::default()
        };
        Ok(ControllerConfig {
            settings,
            cluster,
            kubernetes_version: self.kubernetes_version.clone(),
            vm_memory_overhead_percent: overhead,
            reserved_enis: self.reserved_enis,
        })
    }

    fn cluster(&self, service_account_ca: Option<&[u8]>) -> Result<Option<Cluster>> {
        let Some(endpoint) = &self.cluster_endpoint else {
            if self.cluster_ca_bundle.is_some() || self.cluster_service_cidr.is_some() {
                bail!("CLUSTER_CA_BUNDLE and CLUSTER_SERVICE_CIDR need --cluster-endpoint/CLUSTER_ENDPOINT");
            }
            return Ok(None);
        };
        if !endpoint.starts_with("https://") {
            bail!("--cluster-endpoint/CLUSTER_ENDPOINT {endpoint:?} is not an https:// URL");
        }
        // In a pod, the service account's CA is the cluster's: what EKS would report.
        let ca_bundle = self
            .cluster_ca_bundle
            .clone()
            .or_else(|| service_account_ca.map(aws_smithy_types::base64::encode))
            .context(
                "--cluster-ca-bundle/CLUSTER_CA_BUNDLE is required with CLUSTER_ENDPOINT outside a pod",
            )?;
        let service_cidr = self
            .cluster_service_cidr
            .clone()
            .context("--cluster-service-cidr/CLUSTER_SERVICE_CIDR is required with CLUSTER_ENDPOINT")?;
        if !is_cidr(&service_cidr) {
            bail!(
                "--cluster-service-cidr/CLUSTER_SERVICE_CIDR {service_cidr:?} is not a CIDR like 10.100.0.0/16"
            );
        }
        Ok(Some(Cluster {
            name: self.cluster_name.clone(),
            endpoint: endpoint.clone(),
            ca_bundle,
            service_cidr,
        }))
    }
}

fn is_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else {
        return false;
    };
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => prefix.parse::<u8>().is_ok_and(|p| p <= 32),
        Ok(std::net::IpAddr::V6(_)) => prefix.parse::<u8>().is_ok_and(|p| p <= 128),
        Err(_) => false,
    }
}

/// `1.33` from `1.33`, `v1.33.2` or the API server's `major`/`minor` fields (`1`, `33+`).
fn minor_version(text: &str) -> Result<String> {
    let mut parts = text.trim_start_matches('v').split('.');
    let major = parts.next().unwrap_or_default();
    let minor = parts.next().unwrap_or_default().trim_end_matches('+');
    if major != "1" || minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        bail!("not a Kubernetes version like 1.33");
    }
    Ok(format!("1.{minor}"))
}

pub(crate) fn run(args: &ControllerArgs) -> Result<()> {
    let config = args.config(PodDefaults::read())?;
    let log_level = crate::logging::install(args.log_level, args.log_format, Clock::system())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, config, log_level))
}

/// The minor version AMI aliases pick: `KUBERNETES_VERSION`, else the API server's.
async fn kubernetes_version(client: &kube::Client, configured: Option<&str>) -> Result<String> {
    if let Some(version) = configured {
        return minor_version(version);
    }
    let info = client
        .apiserver_version()
        .await
        .context("reading the API server's /version (or set KUBERNETES_VERSION)")?;
    minor_version(&format!("{}.{}", info.major, info.minor))
        .with_context(|| format!("the API server's version {}.{}", info.major, info.minor))
}

async fn serve(args: &ControllerArgs, config: ControllerConfig, log_level: LogLevel) -> Result<()> {
    let probes = ProbeArgs {
        metrics_port: Some(args.probes.metrics_port.unwrap_or(DEFAULT_METRICS_PORT)),
        health_probe_port: Some(args.probes.health_probe_port.unwrap_or(DEFAULT_HEALTH_PROBE_PORT)),
    };
    let _servers = probes.serve().await?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster service account or kubeconfig)")?;
    let kubernetes_version = kubernetes_version(&client, config.kubernetes_version.as_deref()).await?;
    let sdk_config = nodewright_aws::load_sdk_config().await;
    let clients = AwsClients::new(&sdk_config)
        .context("no AWS region configured: set AWS_REGION (IRSA and Pod Identity set it too)")?;
    let clock = Clock::system();
    let aws_settings = config.aws_settings(kubernetes_version);
    let (node_classes, node_class_watch) = WatchedNodeClasses::start(&client);
    let provider = Arc::new(AwsProvider::new(
        clients.clone(),
        aws_settings.clone(),
        config.cluster,
        Arc::new(node_classes.clone()),
        clock.clone(),
    ));
    let queue = match &args.interruption_queue {
        Some(name) => Some(
            InterruptionQueue::by_name(clients.sqs.clone(), name, QUEUE_WAIT_SECONDS)
                .await
                .with_context(|| format!("--interruption-queue/INTERRUPTION_QUEUE {name:?}"))?,
        ),
        None => None,
    };
    let election = if args.disable_leader_election {
        Election::Disabled
    } else {
        Election::Lease
    };
    let mut background = JoinSet::new();
    background.spawn(node_class_watch);
    background.spawn(crate::log_config::follow(
        client.clone(),
        args.system_namespace.clone(),
        log_level,
        crate::log_config::READ_INTERVAL,
    ));
    let aws_leadership = match election {
        Election::Disabled => Leadership::always(),
        Election::Lease => {
            let lease = LeaseConfig {
                namespace: config.settings.lease_namespace.clone(),
                name: format!("{}-aws", config.settings.lease_name),
                identity: config.settings.identity.clone(),
                duration: config.settings.lease_duration,
                renew_interval: config.settings.lease_renew_interval,
            };
            let (leadership, elector) = leader::start(client.clone(), lease, clock.clone());
            background.spawn(elector);
            leadership
        }
    };
    let clients_region = clients.region.clone();
    let aws_loops = AwsLoops {
        client: client.clone(),
        clients,
        settings: aws_settings,
        clock: clock.clone(),
        node_classes,
        provider: provider.clone(),
        queue,
        identity: config.settings.identity.clone(),
    };
    tracing::info!(
        cluster = config.settings.cluster_name,
        region = clients_region,
        kubernetes_version = aws_loops.settings.kubernetes_version,
        identity = config.settings.identity,
        metrics_port = probes.metrics_port,
        health_probe_port = probes.health_probe_port,
        interruption_queue = args.interruption_queue,
        "nodewright controller started"
    );
    background.spawn(aws_loops.run_while_leading(aws_leadership));
    let cloud: Arc<dyn CloudProvider> = provider;
    // The kubelet stops a pod with SIGTERM; a terminal with SIGINT.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        result = nodewright_controller::run(client, cloud, clock, config.settings, election) => {
            result.context("the controllers stopped")
        }
        signal = tokio::signal::ctrl_c() => signal.context("waiting for the interrupt signal"),
        _ = terminate.recv() => {
            tracing::info!("SIGTERM: stopping");
            Ok(())
        }
    }
}

/// The AWS provider's loops, started on the holder of their Lease.
struct AwsLoops {
    client: kube::Client,
    clients: AwsClients,
    settings: AwsSettings,
    clock: Clock,
    node_classes: WatchedNodeClasses,
    provider: Arc<AwsProvider>,
    queue: Option<InterruptionQueue>,
    /// This replica's identity, the events' reporting instance.
    identity: String,
}

/// The interruption loop's events, published like the controllers' own on the NodeClaim and its
/// Node (as Karpenter does), and its metrics in the process's registry.
struct PublishedInterruptions {
    events: Events,
    nodes: kube::Api<Node>,
}

impl PublishedInterruptions {
    async fn publish<K>(&self, object: &K, event: &InterruptionEvent)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let message = event.message.clone();
        if event.warning {
            self.events
                .warning(object, event.reason, "Interruption", message)
                .await;
        } else {
            self.events
                .normal(object, event.reason, "Interruption", message)
                .await;
        }
    }
}

impl InterruptionObserver for PublishedInterruptions {
    fn record<'a>(&'a self, node_claim: &'a NodeClaim, event: InterruptionEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.publish(node_claim, &event).await;
            let node_name = node_claim.status.as_ref().and_then(|s| s.node_name.as_deref());
            if let Some(node_name) = node_name {
                match self.nodes.get_opt(node_name).await {
                    Ok(Some(node)) => self.publish(&node, &event).await,
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(node = node_name, %error, "reading the interrupted node for its event failed");
                    }
                }
            }
        })
    }

    fn received(&self, message_type: &'static str) {
        metrics::global()
            .interruption_received
            .get_or_create(&MessageTypeLabels {
                message_type: message_type.to_owned(),
            })
            .inc();
    }

    fn deleted(&self, queued: Option<Duration>) {
        let metrics = metrics::global();
        metrics.interruption_deleted.inc();
        if let Some(queued) = queued {
            metrics.interruption_queue_duration.observe(queued.as_secs_f64());
        }
    }
}

impl AwsLoops {
    async fn run_while_leading(self, mut leadership: Leadership) {
        loop {
            leadership.wait_for(true).await;
            let mut loops = JoinSet::new();
            loops.spawn(node_class_status::run(
                self.client.clone(),
                self.clients.clone(),
                self.settings.clone(),
                self.clock.clone(),
                self.node_classes.clone(),
                StatusLoopConfig::default(),
            ));
            loops.spawn(launch_templates::run(
                self.provider.clone(),
                LaunchTemplateCollection::default(),
            ));
            loops.spawn(node_class_termination::run(
                self.client.clone(),
                self.clients.clone(),
                self.settings.clone(),
                self.node_classes.clone(),
                TerminationConfig::default(),
            ));
            if let Some(queue) = &self.queue {
                let events = Events::new(self.client.clone(), &self.identity).with_clock(self.clock.clone());
                loops.spawn(interruption_queue::run(
                    self.client.clone(),
                    queue.clone(),
                    self.provider.clone(),
                    Arc::new(PublishedInterruptions {
                        events,
                        nodes: kube::Api::all(self.client.clone()),
                    }),
                    self.clock.clone(),
                ));
            }
            leadership.wait_for(false).await;
            loops.abort_all();
            while loops.join_next().await.is_some() {}
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    fn parse(flags: &[&str]) -> Result<ControllerConfig> {
        let mut argv = vec!["nodewright"];
        argv.extend_from_slice(flags);
        let cli = Cli::try_parse_from(argv).map_err(|e| anyhow::anyhow!("{e}"))?;
        cli.args.config(PodDefaults {
            hostname: Some("pod-a".to_owned()),
            service_account_ca: None,
        })
    }

    fn error(flags: &[&str]) -> String {
        format!("{:#}", parse(flags).unwrap_err())
    }

    #[test]
    fn karpenter_defaults_apply_with_only_the_cluster_name() {
        let config = parse(&["--cluster-name", "demo"]).unwrap();
        assert_eq!(config.settings.cluster_name, "demo");
        assert_eq!(config.settings.batch_idle, Duration::from_secs(1));
        assert_eq!(config.settings.batch_max, Duration::from_secs(10));
        assert!(!config.settings.spot_to_spot_consolidation);
        assert!(!config.settings.node_repair);
        assert!(config.settings.reserved_capacity);
        assert_eq!(config.settings.identity, "pod-a");
        assert_eq!(config.settings.lease_name, "karpenter-leader-election");
        assert_eq!(config.cluster, None);
        let aws = config.aws_settings("1.33".to_owned());
        assert!((aws.vm_memory_overhead_percent - 0.075).abs() < 1e-9);
        assert_eq!(aws.reserved_enis, 0);
        assert!(aws.reserved_capacity);
        let off = parse(&["--cluster-name", "demo", "--feature-gates=ReservedCapacity=false"]).unwrap();
        assert!(!off.settings.reserved_capacity);
        assert!(!off.aws_settings("1.33".to_owned()).reserved_capacity);
    }

    #[test]
    fn memory_overhead_and_reserved_enis_reach_the_aws_providers_node_settings() {
        let config = parse(&[
            "--cluster-name=demo",
            "--vm-memory-overhead-percent=0.1",
            "--reserved-enis=2",
        ])
        .unwrap();
        let aws = config.aws_settings("1.33".to_owned());
        assert_eq!(aws.cluster_name, "demo");
        assert_eq!(aws.kubernetes_version, "1.33");
        let nodes = aws.node_settings(None);
        assert!((nodes.vm_memory_overhead_percent - 0.1).abs() < 1e-9);
        assert_eq!(nodes.reserved_enis, 2);
    }

    #[test]
    fn the_cluster_name_is_required() {
        assert!(error(&[]).contains("--cluster-name"), "{}", error(&[]));
    }

    #[test]
    fn go_durations_and_feature_gates_are_read() {
        let config = parse(&[
            "--cluster-name=demo",
            "--batch-idle-duration=500ms",
            "--batch-max-duration=1m30s",
            "--feature-gates=NodeRepair=true, SpotToSpotConsolidation=true",
        ])
        .unwrap();
        assert!(config.settings.node_repair);
        assert_eq!(config.settings.batch_idle, Duration::from_millis(500));
        assert_eq!(config.settings.batch_max, Duration::from_secs(90));
        assert!(config.settings.spot_to_spot_consolidation);
    }

    #[test]
    fn invalid_settings_are_refused_naming_the_setting() {
        for (flags, setting) in [
            (
                &["--cluster-name=demo", "--batch-idle-duration=soon"][..],
                "--batch-idle-duration",
            ),
            (
                &["--cluster-name=demo", "--batch-idle-duration=0s"][..],
                "BATCH_IDLE_DURATION",
            ),
            (
                &[
                    "--cluster-name=demo",
                    "--batch-idle-duration=20s",
                    "--batch-max-duration=10s",
                ][..],
                "BATCH_MAX_DURATION",
            ),
            (
                &["--cluster-name=demo", "--feature-gates=SpotToSpot=true"][..],
                "--feature-gates",
            ),
            (
                &[
                    "--cluster-name=demo",
                    "--feature-gates=SpotToSpotConsolidation=yes",
                ][..],
                "--feature-gates",
            ),
            (
                &["--cluster-name=demo", "--kubernetes-version=2.1"][..],
                "KUBERNETES_VERSION",
            ),
            (
                &["--cluster-name=demo", "--vm-memory-overhead-percent=-0.1"][..],
                "VM_MEMORY_OVERHEAD_PERCENT",
            ),
            (
                &["--cluster-name=demo", "--vm-memory-overhead-percent=7.5"][..],
                "VM_MEMORY_OVERHEAD_PERCENT",
            ),
            (
                &["--cluster-name=demo", "--vm-memory-overhead-percent=NaN"][..],
                "VM_MEMORY_OVERHEAD_PERCENT",
            ),
            (
                &["--cluster-name=demo", "--vm-memory-overhead-percent=much"][..],
                "--vm-memory-overhead-percent",
            ),
            (
                &["--cluster-name=demo", "--reserved-enis=-1"][..],
                "--reserved-enis",
            ),
            (
                &["--cluster-name=demo", "--reserved-enis=two"][..],
                "--reserved-enis",
            ),
            (
                &["--cluster-name=demo", "--cluster-endpoint=http://x"][..],
                "CLUSTER_ENDPOINT",
            ),
            (
                &["--cluster-name=demo", "--cluster-endpoint=https://x"][..],
                "CLUSTER_CA_BUNDLE",
            ),
            (
                &[
                    "--cluster-name=demo",
                    "--cluster-endpoint=https://x",
                    "--cluster-ca-bundle=Q0E=",
                ][..],
                "CLUSTER_SERVICE_CIDR",
            ),
            (
                &[
                    "--cluster-name=demo",
                    "--cluster-endpoint=https://x",
                    "--cluster-ca-bundle=Q0E=",
                    "--cluster-service-cidr=10.100.0.0",
                ][..],
                "CLUSTER_SERVICE_CIDR",
            ),
            (
                &["--cluster-name=demo", "--cluster-service-cidr=10.100.0.0/16"][..],
                "CLUSTER_ENDPOINT",
            ),
        ] {
            let message = error(flags);
            assert!(message.contains(setting), "{flags:?}: {message}");
        }
    }

    #[test]
    fn a_full_cluster_is_what_nodes_join() {
        let config = parse(&[
            "--cluster-name=demo",
            "--cluster-endpoint=https://api.demo.eks.amazonaws.com",
            "--cluster-ca-bundle=Q0E=",
            "--cluster-service-cidr=172.20.0.0/16",
        ])
        .unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.endpoint, "https://api.demo.eks.amazonaws.com");
        assert_eq!(cluster.service_cidr, "172.20.0.0/16");
        assert_eq!(cluster.name, "demo");
    }

    #[test]
    fn in_a_pod_the_service_account_ca_is_the_default_bundle() {
        let cli = Cli::try_parse_from([
            "nodewright",
            "--cluster-name=demo",
            "--cluster-endpoint=https://api.demo.eks.amazonaws.com",
            "--cluster-service-cidr=172.20.0.0/16",
        ])
        .unwrap();
        let config = cli
            .args
            .config(PodDefaults {
                hostname: None,
                service_account_ca: Some(b"CA".to_vec()),
            })
            .unwrap();
        assert_eq!(config.cluster.unwrap().ca_bundle, "Q0E=");
        assert_eq!(config.settings.identity, "nodewright");
    }

    #[test]
    fn kubernetes_versions_are_read_as_their_minor() {
        assert_eq!(minor_version("1.33").unwrap(), "1.33");
        assert_eq!(minor_version("v1.32.4").unwrap(), "1.32");
        assert_eq!(minor_version("1.34+").unwrap(), "1.34");
        assert!(minor_version("1.").is_err());
        assert!(minor_version("latest").is_err());
    }
}
