//! Replacement backoff per NodePool: after a command's replacements fail to initialize in time
//! (a bad AMI, a node that never joins), the NodePools involved wait before disruption tries
//! again — 1 minute after the first failure, doubling per further failure, at most 30 minutes —
//! instead of launching new replacements at once on every pass (k-sigs#3072, aws#3979). A
//! command whose replacements initialize resets the count.
//!
//! The state lives on the NodePool as two annotations ([`FAILURES_ANNOTATION`],
//! [`UNTIL_ANNOTATION`]), so it survives a controller restart and `nodewright explain node`
//! reads the same answer from the cluster: while `now` is before the NodePool's
//! [`UNTIL_ANNOTATION`], none of its nodes is a disruption candidate
//! ([`Blocker::ReplacementBackoff`](super::candidates::Blocker::ReplacementBackoff)), empty ones
//! included — the pool cannot get nodes, so taking capacity away from it waits too. Expiration
//! and termination are not held by it. Annotations that do not parse (edited by hand) are
//! ignored and replaced by the next failure.
//!
//! The command's side is here too: `Disruption::back_off` after a timeout (annotations, a
//! `DisruptionReplacementFailed` event on the NodePool and the candidates' NodeClaims naming
//! the next attempt, the `nodewright_disruption_replacement_backoffs_total` counter), and
//! `Disruption::reset_backoff` after a command whose replacements initialized.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use nodewright_api::NodePool;

use super::{Command, Disruption, REPLACEMENT_TIMEOUT, candidates::Candidate, write};
use crate::{events::reasons::DISRUPTION_REPLACEMENT_FAILED, metrics};

/// How many commands in a row failed because their replacements did not initialize.
pub const FAILURES_ANNOTATION: &str = "disruption.nodewright.io/replacement-failures";
/// Until when (RFC 3339) no node of the NodePool is disrupted.
pub const UNTIL_ANNOTATION: &str = "disruption.nodewright.io/replacement-backoff-until";
/// The wait after the first failure.
pub const FIRST_DELAY: SignedDuration = SignedDuration::from_mins(1);
/// The longest wait.
pub const MAX_DELAY: SignedDuration = SignedDuration::from_mins(30);
/// How long a failed command waits for the cache to show the backoff it wrote.
const CACHE_WAIT: SignedDuration = SignedDuration::from_secs(30);

/// A NodePool's backoff as its annotations record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failed commands in a row (at least 1).
    pub failures: u32,
    /// No disruption of the NodePool's nodes before this.
    pub until: Timestamp,
}

impl Backoff {
    /// The backoff after one more failure at `now`, following `previous`.
    pub fn after_failure(previous: Option<Self>, now: Timestamp) -> Self {
        let failures = previous.map_or(1, |p| p.failures.saturating_add(1));
        Self {
            failures,
            until: now.checked_add(delay(failures)).unwrap_or(Timestamp::MAX),
        }
    }

    /// The NodePool's backoff, or None when it has none (or its annotations do not parse).
    pub fn of(pool: &NodePool) -> Option<Self> {
        let annotations = pool.metadata.annotations.as_ref()?;
        let failures = annotations.get(FAILURES_ANNOTATION)?.parse().ok()?;
        let until = annotations.get(UNTIL_ANNOTATION)?.parse().ok()?;
        Some(Self { failures, until })
    }
}

/// The wait after `failures` failures in a row: 1 min, 2, 4, 8, 16, then 30.
pub fn delay(failures: u32) -> SignedDuration {
    let doublings = failures.saturating_sub(1).min(16);
    let minutes = FIRST_DELAY.as_mins().saturating_mul(1_i64 << doublings);
    SignedDuration::from_mins(minutes).min(MAX_DELAY)
}

/// Until when the NodePool's nodes are held at `now`, or None.
pub fn held_until(pool: &NodePool, now: Timestamp) -> Option<Timestamp> {
    Backoff::of(pool).map(|b| b.until).filter(|until| *until > now)
}

impl Disruption {
    /// The NodePools of the command's candidates and replacements, by name.
    fn pools_involved(command: &Command) -> BTreeSet<String> {
        command
            .candidates
            .iter()
            .map(|c| c.pool.name_any())
            .chain(command.replacements.iter().map(|r| r.nodepool.clone()))
            .collect()
    }

    /// After replacements timed out: one more failure for each NodePool involved, with events
    /// on the NodePool and the candidates' NodeClaims naming the next attempt. Waits until the
    /// cache shows the backoff, so the next pass does not launch again at once.
    pub(super) async fn back_off(&self, command: &Command, launched: &[String]) {
        let now = self.ctx.clock.now();
        let names: Vec<String> = command.candidates.iter().map(Candidate::name).collect();
        for pool_name in Self::pools_involved(command) {
            let Some(pool) = self
                .ctx
                .state
                .node_pools
                .store
                .find(|p| p.name_any() == pool_name)
            else {
                continue;
            };
            let state = Backoff::after_failure(Backoff::of(&pool), now);
            metrics::disruption_replacement_backoff(&pool_name);
            if let Err(error) = write::set_pool_backoff(&self.ctx, &pool_name, Some(state)).await {
                tracing::warn!(nodepool = %pool_name, %error, "could not record the replacement backoff");
                continue;
            }
            let note = format!(
                "replacements {launched:?} for {names:?} ({:?}) did not initialize within {:#}: rolled back; failure {} in a row, next attempt at {}",
                command.reason, REPLACEMENT_TIMEOUT, state.failures, state.until
            );
            tracing::warn!(nodepool = %pool_name, until = %state.until, failures = state.failures, "disruption backs off");
            self.ctx
                .events
                .warning(&*pool, DISRUPTION_REPLACEMENT_FAILED, "Disrupting", note.clone())
                .await;
            for candidate in command
                .candidates
                .iter()
                .filter(|c| c.pool.name_any() == pool_name)
            {
                self.ctx
                    .events
                    .warning(
                        &*candidate.claim,
                        DISRUPTION_REPLACEMENT_FAILED,
                        "Disrupting",
                        note.clone(),
                    )
                    .await;
            }
            let recorded = || {
                self.ctx
                    .state
                    .node_pools
                    .store
                    .find(|p| p.name_any() == pool_name)
                    .and_then(|p| Backoff::of(&p))
                    == Some(state)
            };
            if !self.wait(CACHE_WAIT, recorded).await {
                tracing::warn!(nodepool = %pool_name, "the cache did not show the backoff in time");
            }
        }
    }

    /// After replacements initialized: the NodePools involved launch fine, their count restarts.
    pub(super) async fn reset_backoff(&self, command: &Command) {
        for pool_name in Self::pools_involved(command) {
            let has_backoff = self
                .ctx
                .state
                .node_pools
                .store
                .find(|p| p.name_any() == pool_name)
                .is_some_and(|p| Backoff::of(&p).is_some());
            if has_backoff && let Err(error) = write::set_pool_backoff(&self.ctx, &pool_name, None).await {
                tracing::warn!(nodepool = %pool_name, %error, "could not clear the replacement backoff");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pool(annotations: &serde_json::Value) -> NodePool {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": { "name": "default", "annotations": annotations },
            "spec": { "template": { "spec": { "requirements": [],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } } } }
        }))
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_delay_doubles_from_one_minute_up_to_thirty() {
        let minutes: Vec<i64> = (1..=8).map(|n| delay(n).as_mins()).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn each_failure_extends_the_backoff_from_its_own_time() {
        let first = Backoff::after_failure(None, at("2026-01-01T00:10:00Z"));
        assert_eq!(
            first,
            Backoff {
                failures: 1,
                until: at("2026-01-01T00:11:00Z")
            }
        );
        let second = Backoff::after_failure(Some(first), at("2026-01-01T00:21:00Z"));
        assert_eq!(
            second,
            Backoff {
                failures: 2,
                until: at("2026-01-01T00:23:00Z")
            }
        );
    }

    #[test]
    fn a_pool_is_held_until_its_annotation_and_not_after() {
        let held = pool(&json!({ FAILURES_ANNOTATION: "3", UNTIL_ANNOTATION: "2026-01-01T00:30:00Z" }));
        assert_eq!(
            Backoff::of(&held),
            Some(Backoff {
                failures: 3,
                until: at("2026-01-01T00:30:00Z")
            })
        );
        assert_eq!(
            held_until(&held, at("2026-01-01T00:29:59Z")),
            Some(at("2026-01-01T00:30:00Z"))
        );
        assert_eq!(held_until(&held, at("2026-01-01T00:30:00Z")), None);
    }

    #[test]
    fn missing_or_unparsable_annotations_hold_nothing() {
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(held_until(&pool(&json!({})), now), None);
        let garbage = pool(&json!({ FAILURES_ANNOTATION: "many", UNTIL_ANNOTATION: "later" }));
        assert_eq!(Backoff::of(&garbage), None);
        assert_eq!(held_until(&garbage, now), None);
    }
}
