//! The workload controllers of kube-controller-manager, simplified where noted in each module:
//!
//! - `deployment`: Deployment → one ReplicaSet per pod template (rolled out all at once).
//! - `replicaset`: ReplicaSet → pods, deleting extras in the order kube prefers.
//! - `daemonset`: one pod per eligible node (`nodefit` decides eligibility), bound directly.
//! - `job`: Job → pods, which "run" for a set time and then succeed.
//! - `pdb`: PodDisruptionBudget status, with the eviction path's arithmetic.
//!
//! Each is a level-triggered pass over the current objects that writes only what differs, so a
//! pass over a settled cluster writes nothing and [`super::DataPlane::settle`] reaches a fixpoint.

mod daemonset;
mod deployment;
mod hash;
mod job;
mod nodefit;
mod pdb;
mod pods;
mod replicaset;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Ctx, DataPlaneConfig, DataPlaneError};

/// The field manager of everything these controllers write.
pub const MANAGER: &str = "kube-controller-manager";
/// A Job template annotation: how many seconds its pods run before succeeding (else
/// [`DataPlaneConfig::job_run_time`]).
pub const RUN_SECONDS_ANNOTATION: &str = "sim.nodewright.dev/run-seconds";
/// The label a Deployment adds to its ReplicaSets' selectors, labels and templates.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The label a DaemonSet puts on its pods, naming the template they were made from.
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// One pass of every workload controller, in the order a change flows (Deployments before the
/// ReplicaSets they write, those before the pods). Returns how many objects were written.
pub(crate) fn reconcile(ctx: &Ctx<'_>, config: &DataPlaneConfig) -> Result<usize, DataPlaneError> {
    let mut writes = deployment::reconcile(ctx)?;
    // One snapshot of the pods serves the rest of the pass: each controller reads only the pods
    // it owns (which the others do not write), and any write makes `settle` run another pass,
    // which sees the new pods.
    let pods = pods::PodIndex::new(ctx.list("", "pods")?);
    writes += replicaset::reconcile(ctx, &pods)?;
    writes += daemonset::reconcile(ctx, &pods)?;
    writes += job::reconcile(ctx, &pods, config)?;
    writes += pdb::reconcile(ctx, &pods)?;
    Ok(writes)
}

impl Ctx<'_> {
    /// Now, truncated to whole seconds as the API stores times, so a time written and read back
    /// compares equal to the one computed.
    fn now_time(&self) -> Time {
        Time(whole_seconds(self.now()))
    }
}

/// A time truncated to whole seconds.
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// A count as the API's int32.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `Some(n)` unless zero: the API server's `omitempty` for counters.
fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// Counts one write when `done`.
fn wrote(done: bool) -> usize {
    usize::from(done)
}
