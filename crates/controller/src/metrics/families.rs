//! Every metric family, with its name, type, help and labels, registered in one registry.

use std::sync::{Arc, atomic::AtomicU64};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::{cluster::ClusterCollector, health::Health, startup::PodStartups, summary::Summary};
use crate::{context::Context, leader::Leadership};

/// Karpenter's metric names that Nodewright exposes with Karpenter's type, labels and meaning,
/// as they appear in a scrape (counters with `_total`). Dashboards and alerts written for
/// Karpenter keep working on these.
pub const KARPENTER_METRICS: &[&str] = &[
    "karpenter_nodeclaims_created_total",
    "karpenter_nodeclaims_terminated_total",
    "karpenter_nodeclaims_disrupted_total",
    "karpenter_pods_disruption_initiated_total",
    "karpenter_nodes_created_total",
    "karpenter_nodes_terminated_total",
    "karpenter_nodeclaims_instance_termination_duration_seconds",
    "karpenter_nodeclaims_termination_duration_seconds",
    "karpenter_nodes_termination_duration_seconds",
    "karpenter_nodes_drained_total",
    "karpenter_nodes_lifetime_duration_seconds",
    "karpenter_pods_eviction_requests_total",
    "karpenter_voluntary_disruption_decision_evaluation_duration_seconds",
    "karpenter_voluntary_disruption_decisions_total",
    "karpenter_voluntary_disruption_decisions_by_nodepool_total",
    "karpenter_voluntary_disruption_eligible_nodes",
    "karpenter_voluntary_disruption_failed_validations_total",
    "karpenter_voluntary_disruption_queue_failures_total",
    "karpenter_nodepools_allowed_disruptions",
    "karpenter_nodepools_nodes_consuming_budgets",
    "karpenter_scheduler_scheduling_duration_seconds",
    "karpenter_scheduler_queue_depth",
    "karpenter_scheduler_unschedulable_pods_count",
    "karpenter_cluster_state_node_count",
    "karpenter_cluster_state_synced",
    "karpenter_cluster_state_unsynced_time_seconds",
    "karpenter_nodes_allocatable",
    "karpenter_nodes_total_pod_requests",
    "karpenter_nodes_total_pod_limits",
    "karpenter_nodes_total_daemon_requests",
    "karpenter_nodes_total_daemon_limits",
    "karpenter_nodes_system_overhead",
    "karpenter_nodes_current_lifetime_seconds",
    "karpenter_cluster_utilization_percent",
    "karpenter_nodepools_limit",
    "karpenter_nodepools_usage",
    "karpenter_pods_state",
    "karpenter_pods_startup_duration_seconds",
    "karpenter_pods_bound_duration_seconds",
    "karpenter_pods_unbound_time_seconds",
    "karpenter_pods_unstarted_time_seconds",
    "karpenter_cloudprovider_duration_seconds",
    "karpenter_cloudprovider_errors_total",
    "karpenter_interruption_received_messages_total",
    "karpenter_interruption_deleted_messages_total",
    "karpenter_interruption_message_queue_duration_seconds",
    "karpenter_build_info",
];

/// Nodewright's own metrics, for what Karpenter does not have.
pub const NODEWRIGHT_METRICS: &[&str] = &[
    "nodewright_solver_lower_bound_dollars_per_hour",
    "nodewright_solver_optimality_gap_ratio",
    "nodewright_disruption_savings_backlog_dollars_per_hour",
    "nodewright_unavailable_offerings",
];

/// Karpenter's gauges whose names end in `_count`, which `promtool check metrics` reports
/// ("non-histogram and non-summary metrics should not have _count suffix"). They keep
/// Karpenter's names so its dashboards work; that lint finding is expected for them and only them.
pub const KARPENTER_COUNT_GAUGES: &[&str] = &[
    "karpenter_scheduler_unschedulable_pods_count",
    "karpenter_cluster_state_node_count",
];

/// Buckets of work and termination durations, 5 ms to 1 h (Karpenter's duration buckets).
const DURATION_BUCKETS: [f64; 26] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
    180.0, 300.0, 450.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
];

/// Buckets of node lifetimes, 1 min to 30 days.
const LIFETIME_BUCKETS: [f64; 15] = [
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    43200.0,
    86400.0,
    172_800.0,
    345_600.0,
    604_800.0,
    1_209_600.0,
    2_592_000.0,
];

pub type CounterFamily<L> = Family<L, Counter>;
pub type GaugeFamily<L> = Family<L, Gauge>;
pub type FloatGaugeFamily<L> = Family<L, Gauge<f64, AtomicU64>>;
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn lifetime_histogram() -> Histogram {
    Histogram::new(LIFETIME_BUCKETS)
}

fn durations<L: Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
    Family::new_with_constructor(duration_histogram)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CreatedLabels {
    pub reason: String,
    pub nodepool: String,
    pub min_values_relaxed: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TerminatedLabels {
    pub nodepool: String,
    pub capacity_type: String,
    pub zone: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DisruptedLabels {
    pub reason: String,
    pub nodepool: String,
    pub capacity_type: String,
    pub consolidation_policy: String,
    pub termination_mode: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnhealthyDisruptedLabels {
    /// The Node condition type that triggered the repair, snake_cased (`networking_ready`).
    pub condition: String,
    pub nodepool: String,
    pub capacity_type: String,
    pub image_id: String,
    pub termination_mode: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodePoolZoneLabels {
    pub nodepool: String,
    pub zone: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodePoolLabels {
    pub nodepool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvaluationLabels {
    pub reason: String,
    pub consolidation_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: String,
    pub reason: String,
    pub consolidation_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolDecisionLabels {
    pub nodepool: String,
    pub decision: String,
    pub reason: String,
    pub consolidation_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsolidationTypeLabels {
    pub consolidation_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolReasonLabels {
    pub nodepool: String,
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub controller: String,
    pub scheduling_id: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloudCallLabels {
    pub controller: String,
    pub method: String,
    pub provider: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloudErrorLabels {
    pub controller: String,
    pub method: String,
    pub provider: String,
    pub error: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageTypeLabels {
    pub message_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub goversion: String,
    pub goarch: String,
    pub commit: String,
}

/// The process's metric families and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub(super) health: Health,
    pub(super) cluster: Arc<ClusterCollector>,

    pub nodeclaims_created: CounterFamily<CreatedLabels>,
    pub nodeclaims_terminated: CounterFamily<TerminatedLabels>,
    pub nodeclaims_disrupted: CounterFamily<DisruptedLabels>,
    pub nodeclaims_unhealthy_disrupted: CounterFamily<UnhealthyDisruptedLabels>,
    pub pods_disruption_initiated: CounterFamily<DisruptedLabels>,
    pub nodes_created: CounterFamily<NodePoolZoneLabels>,
    pub nodes_terminated: CounterFamily<NodePoolZoneLabels>,
    pub nodeclaims_instance_termination_duration: HistogramFamily<NodePoolLabels>,
    pub nodeclaims_termination_duration: Histogram,
    pub nodes_drained: CounterFamily<NodePoolLabels>,
    /// Summaries are encoded after the registry ([`Metrics::encode_openmetrics`]).
    pub nodes_termination_duration: Summary,
    pub pods_startup_duration: Arc<Summary>,
    /// Observed by the cluster collector at scrape time ([`super::startup`]).
    pub pods_bound_duration: Histogram,
    pub nodes_lifetime: HistogramFamily<NodePoolLabels>,
    pub pods_eviction_requests: CounterFamily<CodeLabels>,

    pub disruption_evaluation_duration: HistogramFamily<EvaluationLabels>,
    pub disruption_decisions: CounterFamily<DecisionLabels>,
    pub disruption_decisions_by_nodepool: CounterFamily<PoolDecisionLabels>,
    pub disruption_eligible_nodes: GaugeFamily<ReasonLabels>,
    pub disruption_failed_validations: CounterFamily<ConsolidationTypeLabels>,
    pub disruption_queue_failures: CounterFamily<DecisionLabels>,
    pub nodepools_allowed_disruptions: GaugeFamily<PoolReasonLabels>,
    pub nodepools_nodes_consuming_budgets: GaugeFamily<PoolReasonLabels>,

    pub scheduling_duration: HistogramFamily<ControllerLabels>,
    pub scheduler_queue_depth: GaugeFamily<QueueLabels>,
    pub unschedulable_pods: GaugeFamily<ControllerLabels>,

    pub cloud_duration: HistogramFamily<CloudCallLabels>,
    pub cloud_errors: CounterFamily<CloudErrorLabels>,

    pub interruption_received: CounterFamily<MessageTypeLabels>,
    pub interruption_deleted: Counter,
    pub interruption_queue_duration: Histogram,

    pub solver_lower_bound: Gauge<f64, AtomicU64>,
    pub solver_optimality_gap: Gauge<f64, AtomicU64>,
    pub savings_backlog: Gauge<f64, AtomicU64>,
    pub disruption_replacement_backoffs: CounterFamily<NodePoolLabels>,
}

impl Metrics {
    /// Every family, registered.
    #[allow(clippy::too_many_lines)] // one registration per family, nothing else
    pub fn new() -> Self {
        let pods_startup_duration = Arc::new(Summary::new(
            "karpenter_pods_startup_duration_seconds",
            "Time from a pod's creation until it first became Ready",
            &[],
        ));
        let pods_bound_duration = duration_histogram();
        let mut metrics = Self {
            registry: Registry::default(),
            health: Health::default(),
            cluster: Arc::new(ClusterCollector::new(PodStartups::new(
                Arc::clone(&pods_startup_duration),
                pods_bound_duration.clone(),
            ))),
            nodeclaims_created: Family::default(),
            nodeclaims_terminated: Family::default(),
            nodeclaims_disrupted: Family::default(),
            nodeclaims_unhealthy_disrupted: Family::default(),
            pods_disruption_initiated: Family::default(),
            nodes_created: Family::default(),
            nodes_terminated: Family::default(),
            nodeclaims_instance_termination_duration: durations(),
            nodeclaims_termination_duration: duration_histogram(),
            nodes_drained: Family::default(),
            nodes_termination_duration: Summary::new(
                "karpenter_nodes_termination_duration_seconds",
                "Time from a node's deletion until its termination finalizer was removed, by nodepool",
                &["nodepool"],
            ),
            pods_startup_duration,
            pods_bound_duration,
            nodes_lifetime: Family::new_with_constructor(lifetime_histogram),
            pods_eviction_requests: Family::default(),
            disruption_evaluation_duration: durations(),
            disruption_decisions: Family::default(),
            disruption_decisions_by_nodepool: Family::default(),
            disruption_eligible_nodes: Family::default(),
            disruption_failed_validations: Family::default(),
            disruption_queue_failures: Family::default(),
            nodepools_allowed_disruptions: Family::default(),
            nodepools_nodes_consuming_budgets: Family::default(),
            scheduling_duration: durations(),
            scheduler_queue_depth: Family::default(),
            unschedulable_pods: Family::default(),
            cloud_duration: durations(),
            cloud_errors: Family::default(),
            interruption_received: Family::default(),
            interruption_deleted: Counter::default(),
            interruption_queue_duration: duration_histogram(),
            solver_lower_bound: Gauge::default(),
            solver_optimality_gap: Gauge::default(),
            savings_backlog: Gauge::default(),
            disruption_replacement_backoffs: Family::default(),
        };
        metrics.register_all();
        metrics.initialize_known_series();
        metrics
    }

    #[allow(clippy::too_many_lines)] // one registration per family, nothing else
    /// Help texts have no final period: the registry adds it.
    fn register_all(&mut self) {
        let r = &mut self.registry;
        r.register(
            "karpenter_nodeclaims_created",
            "Number of nodeclaims created, by the reason they were created and their nodepool",
            self.nodeclaims_created.clone(),
        );
        r.register(
            "karpenter_nodeclaims_terminated",
            "Number of nodeclaims terminated, by nodepool, capacity type and zone",
            self.nodeclaims_terminated.clone(),
        );
        r.register(
            "karpenter_nodeclaims_disrupted",
            "Number of nodeclaims disrupted, by reason, nodepool, capacity type, consolidation policy and termination mode",
            self.nodeclaims_disrupted.clone(),
        );
        // Not in KARPENTER_METRICS (the names every scrape is checked for): its series exist
        // only once a node was repaired, with the NodePool's and image's labels.
        r.register(
            "karpenter_nodeclaims_unhealthy_disrupted",
            "Number of unhealthy nodeclaims disrupted by node repair, by the condition that triggered it, nodepool, capacity type, image ID and termination mode",
            self.nodeclaims_unhealthy_disrupted.clone(),
        );
        r.register(
            "karpenter_pods_disruption_initiated",
            "Number of pods whose node disruption started, by reason, nodepool, capacity type, consolidation policy and termination mode",
            self.pods_disruption_initiated.clone(),
        );
        r.register(
            "karpenter_nodes_created",
            "Number of nodes registered, by nodepool and zone",
            self.nodes_created.clone(),
        );
        r.register(
            "karpenter_nodes_terminated",
            "Number of nodes terminated, by nodepool and zone",
            self.nodes_terminated.clone(),
        );
        r.register(
            "karpenter_nodeclaims_instance_termination_duration_seconds",
            "Time from the start of instance termination until the cloud reported the instance gone",
            self.nodeclaims_instance_termination_duration.clone(),
        );
        r.register(
            "karpenter_nodeclaims_termination_duration_seconds",
            "Time from a nodeclaim's deletion until its termination finalizer was removed",
            self.nodeclaims_termination_duration.clone(),
        );
        r.register(
            "karpenter_nodes_drained",
            "Number of nodes drained, by nodepool",
            self.nodes_drained.clone(),
        );
        r.register(
            "karpenter_nodes_lifetime_duration_seconds",
            "Time from a node's creation until its termination finished, by nodepool",
            self.nodes_lifetime.clone(),
        );
        r.register(
            "karpenter_pods_eviction_requests",
            "Number of eviction requests, by the HTTP status code of the answer",
            self.pods_eviction_requests.clone(),
        );
        r.register(
            "karpenter_voluntary_disruption_decision_evaluation_duration_seconds",
            "Time to evaluate a disruption method, by reason and consolidation type",
            self.disruption_evaluation_duration.clone(),
        );
        r.register(
            "karpenter_voluntary_disruption_decisions",
            "Number of disruption decisions performed, by decision, reason and consolidation type",
            self.disruption_decisions.clone(),
        );
        r.register(
            "karpenter_voluntary_disruption_decisions_by_nodepool",
            "Number of disruption decisions performed, by nodepool, decision, reason and consolidation type",
            self.disruption_decisions_by_nodepool.clone(),
        );
        r.register(
            "karpenter_voluntary_disruption_eligible_nodes",
            "Number of nodes eligible for disruption in the last evaluation, by reason",
            self.disruption_eligible_nodes.clone(),
        );
        r.register(
            "karpenter_voluntary_disruption_failed_validations",
            "Number of disruption commands abandoned because validation found the cluster changed, by consolidation type",
            self.disruption_failed_validations.clone(),
        );
        r.register(
            "karpenter_voluntary_disruption_queue_failures",
            "Number of disruption commands rolled back because their replacements did not initialize, by decision, reason and consolidation type",
            self.disruption_queue_failures.clone(),
        );
        r.register(
            "karpenter_nodepools_allowed_disruptions",
            "Number of nodes the nodepool's budgets allow to disrupt now, by nodepool and reason",
            self.nodepools_allowed_disruptions.clone(),
        );
        r.register(
            "karpenter_nodepools_nodes_consuming_budgets",
            "Number of the nodepool's nodes counted against its disruption budgets (deleting, disrupted or NotReady), by nodepool and reason",
            self.nodepools_nodes_consuming_budgets.clone(),
        );
        r.register(
            "karpenter_scheduler_scheduling_duration_seconds",
            "Time one scheduling simulation (a solve of a provisioning batch) took",
            self.scheduling_duration.clone(),
        );
        r.register(
            "karpenter_scheduler_queue_depth",
            "Number of pods the current or last scheduling simulation still had to place",
            self.scheduler_queue_depth.clone(),
        );
        r.register(
            "karpenter_scheduler_unschedulable_pods_count",
            "Number of pods the last provisioning round could not place",
            self.unschedulable_pods.clone(),
        );
        r.register(
            "karpenter_cloudprovider_duration_seconds",
            "Duration of cloud provider calls, by controller, method and provider",
            self.cloud_duration.clone(),
        );
        r.register(
            "karpenter_cloudprovider_errors",
            "Number of cloud provider calls that failed, by controller, method, provider and error type",
            self.cloud_errors.clone(),
        );
        r.register(
            "karpenter_pods_bound_duration_seconds",
            "Time from a pod's creation until it was bound to a node",
            self.pods_bound_duration.clone(),
        );
        r.register(
            "karpenter_interruption_received_messages",
            "Number of interruption queue messages received, by message type",
            self.interruption_received.clone(),
        );
        r.register(
            "karpenter_interruption_deleted_messages",
            "Number of interruption queue messages deleted after handling",
            self.interruption_deleted.clone(),
        );
        r.register(
            "karpenter_interruption_message_queue_duration_seconds",
            "Time from an interruption event until its queue message was handled and deleted",
            self.interruption_queue_duration.clone(),
        );
        r.register(
            "nodewright_solver_lower_bound_dollars_per_hour",
            "The solver's lower bound on the price of any set of new nodes for the pods of the last provisioning plan that launched nodes, in US dollars per hour",
            self.solver_lower_bound.clone(),
        );
        r.register(
            "nodewright_solver_optimality_gap_ratio",
            "The price of the last provisioning plan that launched nodes above the solver's lower bound, as a fraction of the bound",
            self.solver_optimality_gap.clone(),
        );
        r.register(
            "nodewright_disruption_savings_backlog_dollars_per_hour",
            "Savings the last disruption pass found and has not yet realised, in US dollars per hour",
            self.savings_backlog.clone(),
        );
        // Not in NODEWRIGHT_METRICS (the names every scrape is checked for): its series exist
        // only once a NodePool's replacements failed.
        r.register(
            "nodewright_disruption_replacement_backoffs",
            "Number of disruption commands whose replacements did not initialize in time, after which the nodepool backs off, by nodepool",
            self.disruption_replacement_backoffs.clone(),
        );
        let build_info: GaugeFamily<BuildLabels> = Family::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                // Karpenter's label names, for its dashboards; the values say what built us.
                goversion: "rust".to_owned(),
                goarch: std::env::consts::ARCH.to_owned(),
                commit: option_env!("NODEWRIGHT_COMMIT").unwrap_or("unknown").to_owned(),
            })
            .set(1);
        r.register(
            "karpenter_build_info",
            "A metric with a constant 1 value labeled by version, toolchain, architecture and commit of this build",
            build_info,
        );
        r.register_collector(Box::new(self.health.collector()));
        r.register_collector(Box::new(Arc::clone(&self.cluster)));
    }

    /// Series whose label values are known up front start at 0, so `rate()` and `increase()`
    /// see the first event and dashboards show the series before anything happened.
    fn initialize_known_series(&self) {
        // The AWS interruption queue's message types (as Karpenter labels them), zero until the
        // first message, so rate() queries and alerts see the series from the start.
        for message_type in [
            "spot_interrupted",
            "rebalance_recommendation",
            "scheduled_change",
            "state_change",
            "noop",
        ] {
            self.interruption_received
                .get_or_create(&MessageTypeLabels {
                    message_type: message_type.to_owned(),
                })
                .inc_by(0);
        }
        for consolidation_type in ["empty", "single", "multi", ""] {
            self.disruption_failed_validations
                .get_or_create(&ConsolidationTypeLabels {
                    consolidation_type: consolidation_type.to_owned(),
                })
                .inc_by(0);
        }
        for (reason, consolidation_type) in [
            ("empty", "empty"),
            ("underutilized", "single"),
            ("underutilized", "multi"),
        ] {
            for decision in ["delete", "replace"] {
                let labels = DecisionLabels {
                    decision: decision.to_owned(),
                    reason: reason.to_owned(),
                    consolidation_type: consolidation_type.to_owned(),
                };
                self.disruption_decisions.get_or_create(&labels).inc_by(0);
                self.disruption_queue_failures.get_or_create(&labels).inc_by(0);
            }
        }
    }

    /// The registry, for encoding.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Readiness and liveness.
    pub fn health(&self) -> &Health {
        &self.health
    }

    pub(super) fn attach(&self, ctx: &Context, leadership: Leadership) {
        self.cluster.attach(ctx);
        self.health.attach(ctx, leadership);
    }

    /// The whole registry in the OpenMetrics text format, `# EOF` included.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and every family's encoder only writes.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        // The summaries go before the closing `# EOF`; the registry's collector observes pod
        // start-ups during its encoding, so they are encoded after it.
        let eof = out.rfind("# EOF").unwrap_or(out.len());
        let mut summaries = String::new();
        self.nodes_termination_duration.encode(&mut summaries);
        self.pods_startup_duration.encode(&mut summaries);
        out.insert_str(eof, &summaries);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Prometheus text format escapes help text differently from OpenMetrics; help without
    /// quotes or backslashes reads the same in both, so the conversion can copy it.
    #[test]
    fn help_texts_need_no_escaping() {
        let text = Metrics::new().encode_openmetrics();
        for line in text.lines().filter(|l| l.starts_with("# HELP ")) {
            assert!(!line.contains(['"', '\\']), "{line}");
            assert!(!line.ends_with(".."), "{line}");
        }
    }

    #[test]
    fn promised_names_are_unique_and_prefixed() {
        let mut names: Vec<&str> = KARPENTER_METRICS
            .iter()
            .chain(NODEWRIGHT_METRICS)
            .copied()
            .collect();
        assert!(KARPENTER_METRICS.iter().all(|n| n.starts_with("karpenter_")));
        assert!(NODEWRIGHT_METRICS.iter().all(|n| n.starts_with("nodewright_")));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
        assert!(
            KARPENTER_COUNT_GAUGES
                .iter()
                .all(|n| KARPENTER_METRICS.contains(n))
        );
    }
}
