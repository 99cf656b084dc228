//! Metrics, health and readiness: what a platform team scrapes and probes.
//!
//! - [`families`]: every metric family, registered once in the process's [`Metrics`]. Names,
//!   types and labels are Karpenter's wherever the meaning is the same (so its dashboards and
//!   alerts keep working; [`KARPENTER_METRICS`] lists the names we promise), plus
//!   `nodewright_*` for what only Nodewright has.
//! - [`record`]: the one-call hooks the controllers use when something happens (a NodeClaim
//!   created, a node drained, a disruption decided, a solve finished, ...).
//! - [`cluster`]: gauges computed at scrape time from the controller's caches (nodes, pods,
//!   NodePools), so they are never stale and cost nothing between scrapes.
//! - [`cloud`]: a [`CloudProvider`](nodewright_cloudprovider::CloudProvider) wrapper timing every
//!   call and counting its errors, which also tells readiness whether the provider answers.
//! - [`health`]: `/healthz` (the process serves) and `/readyz` (caches synced, and on the leader
//!   the cloud provider answers).
//! - [`server`]: the HTTP listeners (axum) for `/metrics` and the probes.
//! - [`summary`]: the summary type prometheus-client lacks, for Karpenter's two summaries;
//!   [`startup`] counts pod start-ups into one of them.
//! - [`text`]: the Prometheus text format derived from the OpenMetrics encoding, for scrapers and
//!   tools (`promtool check metrics`) that do not negotiate OpenMetrics.
//!
//! The registry is process-wide, as in Karpenter (controller-runtime's global registry): a
//! process runs one controller, and hooks deep inside reconcilers record without a handle being
//! threaded through every call. Durations of work the process does (a solve, an evaluation, a
//! cloud call) are measured on the monotonic wall clock, since that is the cost being reported;
//! durations of objects' lives (termination, node lifetime) come from the injected clock, like
//! the timestamps they are measured against.

pub mod cloud;
pub mod cluster;
pub mod families;
pub mod health;
pub mod record;
pub mod server;
pub mod startup;
pub mod summary;
pub mod text;

use std::sync::{Arc, LazyLock};

use nodewright_cloudprovider::CloudProvider;

pub use self::{
    families::{KARPENTER_METRICS, Metrics, NODEWRIGHT_METRICS},
    health::{Health, Readiness},
    record::*,
};
use crate::{context::Context, leader::Leadership};

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// Attaches a running controller to the process's metrics and probes: scrape-time gauges read
/// its caches, and readiness turns on (the caches are synced by the time `run` calls this) and
/// follows its leadership and cloud provider.
pub fn observe(ctx: &Context, leadership: &Leadership) {
    global().attach(ctx, leadership.clone());
}

/// `ctx` with its cloud provider wrapped so the calls of `controller` are timed and counted
/// (Karpenter's `controller` label of the cloud-provider metrics).
pub fn for_controller(ctx: &Context, controller: &'static str) -> Context {
    let cloud: Arc<dyn CloudProvider> =
        Arc::new(cloud::MeteredCloud::new(Arc::clone(&ctx.cloud), controller));
    Context { cloud, ..ctx.clone() }
}
