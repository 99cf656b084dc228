//! Termination: NodeClaims and Nodes that are deleted go away cleanly — the Node is tainted and
//! drained in Karpenter's tiers, its volumes detach, the instance is terminated, and only then do
//! the `karpenter.sh/termination` finalizers come off.
//!
//! Two finalizers cooperate, as in Karpenter:
//! - the NodeClaim's (`claim.rs`): delete the Node and wait for it to go, then terminate the
//!   instance (or, for a NodeClaim that never recorded a launch, any instance tagged with its
//!   name), then let the NodeClaim go;
//! - the Node's (`node.rs`): taint `karpenter.sh/disrupted:NoSchedule`, drain ([`drain`] plans
//!   each step), wait for VolumeAttachments ([`volumes`]), terminate the instance, let the Node
//!   go. Deleting a Node directly deletes its NodeClaim too.
//!
//! Progress is recorded on the NodeClaim (`Drained`, `VolumesDetached`, `InstanceTerminating`
//! conditions, the termination-timestamp annotation) and on the Node (the taint), so a restarted
//! controller resumes where the last one stopped. Every pass re-reads the objects it writes from
//! the API server, so a lagging cache never makes it act twice or on stale versions.

mod claim;
pub mod drain;
mod node;
pub mod volumes;

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use futures_util::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};
use kube::api::ObjectMeta;
use nodewright_api::labels;
use tokio::time::Instant;

use crate::{
    context::Context,
    error::{Backoff, ControllerError, ErrorClass},
};

/// How often a waiting termination is looked at again (Karpenter requeues drains and volume
/// waits after 1 s).
const RECHECK: Duration = Duration::from_secs(1);
/// How often an instance still terminating is asked again (Karpenter: 5 s).
const INSTANCE_RECHECK: Duration = Duration::from_secs(5);
/// Rounds start at most this often, however often the watched objects change.
const MIN_ROUND_INTERVAL: Duration = Duration::from_millis(200);
/// Terminations reconciled at once.
const CONCURRENCY: usize = 32;
/// A drain blocked by PodDisruptionBudgets is reported at most this often per node (Karpenter's
/// event deduplication window).
const DRAIN_WARNING_INTERVAL: SignedDuration = SignedDuration::from_mins(2);

/// One object being terminated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKey {
    NodeClaim(String),
    Node(String),
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NodeClaim(name) => write!(f, "nodeclaim/{name}"),
            Self::Node(name) => write!(f, "node/{name}"),
        }
    }
}

/// Where one termination stands after a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The finalizer is off (or the object is gone): nothing left to do.
    Finished,
    /// Waiting for something outside this controller; look again after `retry_after`.
    Waiting { retry_after: Duration, reason: String },
}

impl Progress {
    fn waiting(retry_after: Duration, reason: impl Into<String>) -> Self {
        Self::Waiting {
            retry_after,
            reason: reason.into(),
        }
    }
}

/// What one pass did, per object.
#[derive(Debug, Default)]
pub struct Report {
    /// Every object that was terminating when the pass started.
    pub candidates: Vec<ObjectKey>,
    /// The objects reconciled (all candidates, or the due ones), with their outcome.
    pub outcomes: Vec<(ObjectKey, Result<Progress, ControllerError>)>,
}

impl Report {
    /// The outcome for one object, if it was reconciled.
    pub fn outcome(&self, key: &ObjectKey) -> Option<&Result<Progress, ControllerError>> {
        self.outcomes.iter().find(|(k, _)| k == key).map(|(_, o)| o)
    }
}

/// The termination controller's memory between passes: only what keeps it from repeating
/// itself to people (when it last warned about a blocked drain). Everything that decides what
/// happens next lives in the cluster.
#[derive(Debug, Default)]
pub struct Terminator {
    warned: Mutex<HashMap<(String, &'static str), Timestamp>>,
}

impl Terminator {
    pub fn new() -> Self {
        Self::default()
    }

    /// One pass over every terminating NodeClaim and Node.
    pub async fn reconcile_all(&self, ctx: &Context) -> Report {
        self.reconcile_where(ctx, |_| true).await
    }

    /// One pass over the terminating objects `due` accepts.
    pub async fn reconcile_where(&self, ctx: &Context, due: impl Fn(&ObjectKey) -> bool) -> Report {
        let candidates = candidates(ctx);
        // Futures built up front from a named async fn: closures returning futures defeat the
        // compiler's proof that the loop's future is `Send`.
        let reconciles: Vec<_> = candidates
            .iter()
            .filter(|k| due(k))
            .map(|key| self.reconcile_one(ctx, key.clone()))
            .collect();
        let outcomes = stream::iter(reconciles)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        Report { candidates, outcomes }
    }

    async fn reconcile_one(
        &self,
        ctx: &Context,
        key: ObjectKey,
    ) -> (ObjectKey, Result<Progress, ControllerError>) {
        let outcome = match &key {
            ObjectKey::NodeClaim(name) => claim::reconcile(ctx, name).await,
            ObjectKey::Node(name) => node::reconcile(ctx, self, name).await,
        };
        (key, outcome)
    }

    /// Whether to tell people about `what` on `node` now: at most once per
    /// [`DRAIN_WARNING_INTERVAL`] of the clock.
    fn should_warn(&self, node: &str, what: &'static str, now: Timestamp) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (node.to_owned(), what);
        let due = warned.get(&key).is_none_or(|last| {
            last.checked_add(DRAIN_WARNING_INTERVAL)
                .is_ok_and(|next| now >= next)
        });
        if due {
            warned.insert(key, now);
        }
        due
    }

    /// Forgets the warnings of a node that is gone.
    fn forget(&self, node: &str) {
        self.warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(n, _), _| n != node);
    }
}

/// NodeClaims and Nodes that are deleting and still hold our finalizer, from the cache.
fn candidates(ctx: &Context) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> = ctx
        .state
        .node_claims
        .all()
        .iter()
        .filter(|c| awaits_termination(&c.metadata))
        .filter_map(|c| c.metadata.name.clone().map(ObjectKey::NodeClaim))
        .chain(
            ctx.state
                .nodes
                .all()
                .iter()
                .filter(|n| awaits_termination(&n.metadata))
                .filter_map(|n| n.metadata.name.clone().map(ObjectKey::Node)),
        )
        .collect();
    keys.sort();
    keys
}

/// Deleting, and our finalizer still on it.
fn awaits_termination(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
        && meta
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == labels::TERMINATION_FINALIZER)
}

/// When each object may be reconciled next: after its requested wait, or after a per-object
/// backoff when it failed.
#[derive(Debug, Default)]
struct Schedule {
    not_before: HashMap<ObjectKey, Instant>,
    backoff: Backoff,
}

impl Schedule {
    fn is_due(&self, key: &ObjectKey, now: Instant) -> bool {
        self.not_before.get(key).is_none_or(|at| *at <= now)
    }

    /// `wall` turns a wait in the clock's time into a wall-clock one.
    fn record(&mut self, report: Report, now: Instant, wall: impl Fn(Duration) -> Duration) {
        let live: HashSet<&ObjectKey> = report.candidates.iter().collect();
        self.not_before.retain(|key, _| live.contains(key));
        for (key, outcome) in report.outcomes {
            let name = key.to_string();
            match outcome {
                Ok(Progress::Finished) => {
                    self.backoff.succeeded(&name);
                    self.not_before.remove(&key);
                }
                Ok(Progress::Waiting { retry_after, reason }) => {
                    tracing::debug!(object = %key, reason, "termination waiting");
                    self.backoff.succeeded(&name);
                    self.not_before.insert(key, now + wall(retry_after));
                }
                Err(error) if error.class() == ErrorClass::Gone => {
                    self.backoff.succeeded(&name);
                    self.not_before.remove(&key);
                }
                Err(error) => {
                    let delay = self.backoff.failed(&name);
                    tracing::warn!(object = %key, %error, retry_in = ?delay, "termination failed");
                    self.not_before.insert(key, now + wall(delay));
                }
            }
        }
    }

    /// The earliest moment something is due, or `fallback`.
    fn next_wake(&self, fallback: Instant) -> Instant {
        self.not_before
            .values()
            .copied()
            .min()
            .map_or(fallback, |at| at.min(fallback))
    }
}

/// Runs termination forever: a pass whenever Nodes or NodeClaims change, and whenever a waiting
/// termination is due.
pub async fn run(ctx: Context) {
    let terminator = Terminator::new();
    let mut schedule = Schedule::default();
    let mut node_changes = ctx.state.nodes.changes();
    let mut claim_changes = ctx.state.node_claims.changes();
    loop {
        let started = Instant::now();
        node_changes.mark_seen();
        claim_changes.mark_seen();
        let report = terminator
            .reconcile_where(&ctx, |key| schedule.is_due(key, started))
            .await;
        schedule.record(report, Instant::now(), |d| ctx.settings.wall(d));
        let wake = schedule.next_wake(Instant::now() + ctx.settings.wall(RECHECK));
        tokio::select! {
            () = node_changes.changed() => {}
            () = claim_changes.changed() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
        tokio::time::sleep_until(started + ctx.settings.wall(MIN_ROUND_INTERVAL)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_waits_as_asked_backs_off_on_errors_and_forgets_finished_objects() {
        let now = Instant::now();
        let mut schedule = Schedule::default();
        let waiting = ObjectKey::Node("n1".into());
        let failing = ObjectKey::NodeClaim("c1".into());
        let done = ObjectKey::NodeClaim("c2".into());
        schedule.record(
            Report {
                candidates: vec![waiting.clone(), failing.clone(), done.clone()],
                outcomes: vec![
                    (
                        waiting.clone(),
                        Ok(Progress::waiting(INSTANCE_RECHECK, "instance")),
                    ),
                    (
                        failing.clone(),
                        Err(ControllerError::Encode {
                            what: "x".into(),
                            message: "y".into(),
                        }),
                    ),
                    (done.clone(), Ok(Progress::Finished)),
                ],
            },
            now,
            |d| d,
        );
        assert!(!schedule.is_due(&waiting, now + Duration::from_secs(4)));
        assert!(schedule.is_due(&waiting, now + INSTANCE_RECHECK));
        assert!(!schedule.is_due(&failing, now));
        assert!(schedule.is_due(&failing, now + Duration::from_secs(2)));
        assert!(schedule.is_due(&done, now));
        assert!(schedule.next_wake(now + Duration::from_mins(1)) <= now + Duration::from_millis(1100));

        // An object no longer terminating is forgotten.
        schedule.record(
            Report {
                candidates: vec![waiting.clone()],
                outcomes: vec![],
            },
            now,
            |d| d,
        );
        assert!(schedule.is_due(&failing, now));
        assert!(!schedule.is_due(&waiting, now));
    }

    #[test]
    fn warnings_are_rate_limited_per_node_on_the_clock() {
        let terminator = Terminator::new();
        let t0 = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        assert!(terminator.should_warn("n1", "drain", t0));
        assert!(!terminator.should_warn("n1", "drain", t0 + SignedDuration::from_secs(60)));
        assert!(terminator.should_warn("n2", "drain", t0));
        assert!(terminator.should_warn("n1", "grace", t0));
        assert!(terminator.should_warn("n1", "drain", t0 + SignedDuration::from_secs(120)));
        terminator.forget("n1");
        assert!(terminator.should_warn("n1", "drain", t0 + SignedDuration::from_secs(121)));
    }
}
