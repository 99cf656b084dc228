//! The NodePool's `NodeRegistrationHealthy` condition (Karpenter's `nodepool.registrationhealth`
//! and its per-NodePool tracker): whether the pool's recent NodeClaims launched and registered.
//!
//! - The lifecycle records each claim's outcome in [`Trackers`] (shared, memory only): a Node
//!   registered, the launch did not succeed within the launch TTL (the launch's reason), or the
//!   Node did not register within the registration TTL (`RegistrationFailed`).
//! - Each NodePool keeps its last [`BUFFER_SIZE`] outcomes. As in Karpenter, failures are counted
//!   against the buffer's size, not its fill: the condition is False once at least half of it
//!   (two of four) failed; otherwise True once a Node of the pool registered, and Unknown until
//!   then (a single failure of a fresh pool proves nothing either way).
//! - An edit of the NodePool (its generation differs from the condition's `observedGeneration`)
//!   or of its EC2NodeClass (differs from `status.nodeClassObservedGeneration`) forgets the
//!   outcomes and sets the condition Unknown: the next launches judge the new configuration.
//! - After a restart the outcomes are gone but the condition is not: the tracker is seeded from
//!   it (True as one success, False as two failures), so a restart changes nothing.
//!
//! The condition is informational: it is not one of `Ready`'s dependents. The NodePool status
//! reconciler writes it with the rest of the status, in one write per change.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use nodewright_api::{
    EC2NodeClass, NodePool,
    conditions::{self, FALSE, TRUE, nodepool},
};
use tokio::sync::watch;

/// Outcomes kept per NodePool (Karpenter's tracker size).
pub const BUFFER_SIZE: usize = 4;
/// Failures among the kept outcomes that make the condition False: half the buffer.
const FAILURES_UNHEALTHY: usize = BUFFER_SIZE / 2;

/// What became of one NodeClaim of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its Node registered.
    Registered,
    /// It did not launch or its Node did not register in time: the condition's reason and
    /// message if this failure makes it False.
    Failed { reason: String, message: String },
}

impl Outcome {
    /// A Node that did not register within the registration TTL.
    pub fn registration_failed() -> Self {
        Self::Failed {
            reason: nodepool::REASON_REGISTRATION_FAILED.to_owned(),
            message: "Failed to register node".to_owned(),
        }
    }
}

/// The condition a NodePool's outcomes call for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Healthy,
    Unhealthy { reason: String, message: String },
}

/// One NodePool's recent outcomes, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    /// `(NodeClaim, outcome)`; seeded outcomes have no NodeClaim.
    outcomes: VecDeque<(Option<String>, Outcome)>,
    /// Whether the outcomes from before a restart (the written condition) were taken in.
    seeded: bool,
}

impl Tracker {
    /// Records a claim's outcome, once per claim, dropping the oldest beyond [`BUFFER_SIZE`].
    fn record(&mut self, node_claim: Option<String>, outcome: Outcome) {
        if node_claim.is_some() && self.outcomes.iter().any(|(claim, _)| *claim == node_claim) {
            return;
        }
        self.outcomes.push_back((node_claim, outcome));
        while self.outcomes.len() > BUFFER_SIZE {
            self.outcomes.pop_front();
        }
    }

    /// Takes in what `written` (the condition before this process started) stands for, before
    /// anything recorded since.
    fn seed(&mut self, written: Option<&Condition>) {
        if self.seeded {
            return;
        }
        self.seeded = true;
        let recorded = std::mem::take(&mut self.outcomes);
        match written {
            Some(c) if c.status == TRUE => self.record(None, Outcome::Registered),
            Some(c) if c.status == FALSE => {
                for _ in 0..FAILURES_UNHEALTHY {
                    self.record(
                        None,
                        Outcome::Failed {
                            reason: c.reason.clone(),
                            message: c.message.clone(),
                        },
                    );
                }
            }
            _ => {}
        }
        for (claim, outcome) in recorded {
            self.record(claim, outcome);
        }
    }

    /// The condition the outcomes call for: the latest failure names the reason.
    pub fn health(&self) -> Health {
        if self.outcomes.is_empty() {
            return Health::Unknown;
        }
        let failures = self
            .outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed { .. }))
            .count();
        let latest_failure = self.outcomes.iter().rev().find_map(|(_, o)| match o {
            Outcome::Failed { reason, message } => Some((reason.clone(), message.clone())),
            Outcome::Registered => None,
        });
        match latest_failure {
            Some((reason, message)) if failures >= FAILURES_UNHEALTHY => {
                Health::Unhealthy { reason, message }
            }
            _ if failures < self.outcomes.len() => Health::Healthy,
            _ => Health::Unknown,
        }
    }
}

/// Every NodePool's tracker by NodePool UID, shared by the lifecycle (which records) and the
/// NodePool status reconciler (which reads, seeds and resets). Clones share them.
#[derive(Debug, Clone)]
pub struct Trackers {
    by_pool: Arc<Mutex<HashMap<String, Tracker>>>,
    recorded: Arc<watch::Sender<u64>>,
}

impl Default for Trackers {
    fn default() -> Self {
        Self {
            by_pool: Arc::default(),
            recorded: Arc::new(watch::channel(0).0),
        }
    }
}

impl Trackers {
    /// Records the outcome of `node_claim` of the NodePool with this UID.
    pub fn record(&self, pool_uid: &str, node_claim: &str, outcome: Outcome) {
        self.lock()
            .entry(pool_uid.to_owned())
            .or_default()
            .record(Some(node_claim.to_owned()), outcome);
        self.recorded.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever an outcome is recorded.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.recorded.subscribe()
    }

    /// The pool's tracker, seeded from its written condition the first time it is read.
    pub fn read(&self, pool_uid: &str, written: Option<&Condition>) -> Tracker {
        let mut by_pool = self.lock();
        let tracker = by_pool.entry(pool_uid.to_owned()).or_default();
        tracker.seed(written);
        tracker.clone()
    }

    /// Forgets the pool's outcomes (its configuration changed).
    pub fn reset(&self, pool_uid: &str) {
        self.lock().insert(
            pool_uid.to_owned(),
            Tracker {
                outcomes: VecDeque::new(),
                seeded: true,
            },
        );
    }

    /// Drops the trackers of NodePools that no longer exist.
    pub fn retain(&self, pool_uids: &HashSet<String>) {
        self.lock().retain(|uid, _| pool_uids.contains(uid));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracker>> {
        // Every change is one whole insert or push: a panic elsewhere cannot leave one half done.
        self.by_pool.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the reconciler does about the condition for one NodePool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The NodePool or its node class changed since the condition was written: forget the
    /// outcomes.
    pub reset: bool,
    /// The condition to write.
    pub health: Health,
    /// `status.nodeClassObservedGeneration` to write.
    pub node_class_generation: Option<i64>,
}

/// The decision for `pool` given its node class (if found) and its tracker. Pure.
pub fn decide(pool: &NodePool, class: Option<&EC2NodeClass>, tracker: &Tracker) -> Decision {
    let status = pool.status.as_ref();
    let written = written_condition(pool);
    let pool_changed = written.is_some_and(|c| c.observed_generation != pool.metadata.generation);
    let observed_class = status.and_then(|s| s.node_class_observed_generation);
    let class_generation = class.and_then(|c| c.metadata.generation);
    let class_changed = class.is_some() && observed_class.is_some() && observed_class != class_generation;
    let reset = pool_changed || class_changed;
    Decision {
        reset,
        health: if reset { Health::Unknown } else { tracker.health() },
        node_class_generation: if class.is_some() {
            class_generation
        } else {
            observed_class
        },
    }
}

/// The pool's `NodeRegistrationHealthy` condition as written.
pub fn written_condition(pool: &NodePool) -> Option<&Condition> {
    pool.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == nodepool::NODE_REGISTRATION_HEALTHY)
}

/// Sets the condition `health` calls for; returns whether it changed.
pub fn set(conditions: &mut conditions::ConditionSet<'_>, health: &Health) -> bool {
    match health {
        Health::Unknown => conditions.set_unknown(
            nodepool::NODE_REGISTRATION_HEALTHY,
            conditions::AWAITING_RECONCILIATION,
            "object is awaiting reconciliation",
        ),
        Health::Healthy => conditions.set_true(nodepool::NODE_REGISTRATION_HEALTHY),
        Health::Unhealthy { reason, message } => {
            conditions.set_false(nodepool::NODE_REGISTRATION_HEALTHY, reason, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    use super::*;

    fn failed(reason: &str) -> Outcome {
        Outcome::Failed {
            reason: reason.to_owned(),
            message: format!("{reason} happened"),
        }
    }

    fn tracker(outcomes: &[Outcome]) -> Tracker {
        let mut tracker = Tracker {
            seeded: true,
            ..Tracker::default()
        };
        for (i, outcome) in outcomes.iter().enumerate() {
            tracker.record(Some(format!("claim-{i}")), outcome.clone());
        }
        tracker
    }

    fn unhealthy(reason: &str) -> Health {
        Health::Unhealthy {
            reason: reason.to_owned(),
            message: format!("{reason} happened"),
        }
    }

    #[test]
    fn half_the_buffer_failing_makes_it_unhealthy_and_successes_heal_it() {
        use Outcome::Registered;
        assert_eq!(tracker(&[]).health(), Health::Unknown);
        assert_eq!(tracker(&[Registered]).health(), Health::Healthy);
        assert_eq!(
            tracker(&[failed("RegistrationFailed")]).health(),
            Health::Unknown,
            "one failure of four is tolerated (counted against the buffer size, as Karpenter does)"
        );
        assert_eq!(
            tracker(&[failed("RegistrationFailed"), Registered]).health(),
            Health::Healthy
        );
        assert_eq!(
            tracker(&[failed("RegistrationFailed"), Registered, failed("LaunchFailed")]).health(),
            unhealthy("LaunchFailed"),
            "the latest failure names the reason"
        );
        let mut healing = tracker(&[failed("RegistrationFailed"), failed("RegistrationFailed")]);
        assert_eq!(healing.health(), unhealthy("RegistrationFailed"));
        healing.record(Some("later-1".into()), Registered);
        healing.record(Some("later-2".into()), Registered);
        assert_eq!(healing.health(), unhealthy("RegistrationFailed"), "still 2 of 4");
        healing.record(Some("later-3".into()), Registered);
        assert_eq!(healing.health(), Health::Healthy, "the oldest failure fell out");
    }

    #[test]
    fn a_claim_counts_once() {
        let mut t = tracker(&[]);
        t.record(Some("a".into()), failed("RegistrationFailed"));
        t.record(Some("a".into()), failed("RegistrationFailed"));
        assert_eq!(t.health(), Health::Unknown);
        assert_eq!(t.outcomes.len(), 1);
    }

    fn condition(status: &str, reason: &str, generation: i64) -> Condition {
        Condition {
            type_: nodepool::NODE_REGISTRATION_HEALTHY.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: "m".to_owned(),
            observed_generation: Some(generation),
            last_transition_time: Time("2026-01-01T00:00:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn a_restart_keeps_the_written_condition() {
        let mut t = Tracker::default();
        t.seed(Some(&condition(FALSE, "RegistrationFailed", 1)));
        assert!(matches!(t.health(), Health::Unhealthy { reason, .. } if reason == "RegistrationFailed"));
        let mut t = Tracker::default();
        t.record(Some("new".into()), Outcome::Registered);
        t.seed(Some(&condition(TRUE, "NodeRegistrationHealthy", 1)));
        assert_eq!(t.health(), Health::Healthy);
        assert_eq!(t.outcomes.len(), 2, "the seed goes before what was recorded");
        let mut t = Tracker::default();
        t.seed(None);
        assert_eq!(t.health(), Health::Unknown);
    }

    fn pool(generation: i64, written: Option<Condition>, class_generation: Option<i64>) -> NodePool {
        let mut pool: NodePool = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": {"name": "default", "generation": generation},
            "spec": {"template": {"spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [],
            }}},
        }))
        .unwrap();
        pool.status = Some(nodewright_api::NodePoolStatus {
            conditions: written.into_iter().collect(),
            node_class_observed_generation: class_generation,
            ..Default::default()
        });
        pool
    }

    fn class(generation: i64) -> EC2NodeClass {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
            "metadata": {"name": "default", "generation": generation},
            "spec": {
                "role": "r",
                "amiSelectorTerms": [{"alias": "al2023@latest"}],
                "subnetSelectorTerms": [{"tags": {"a": "b"}}],
                "securityGroupSelectorTerms": [{"tags": {"a": "b"}}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn an_edit_of_the_pool_or_its_node_class_resets_to_unknown() {
        let failing = tracker(&[failed("RegistrationFailed"), failed("RegistrationFailed")]);
        let written = || Some(condition(FALSE, "RegistrationFailed", 2));
        let same = decide(&pool(2, written(), Some(5)), Some(&class(5)), &failing);
        assert!(!same.reset);
        assert_eq!(same.health, unhealthy("RegistrationFailed"));
        assert_eq!(same.node_class_generation, Some(5));

        let pool_edited = decide(&pool(3, written(), Some(5)), Some(&class(5)), &failing);
        assert!(pool_edited.reset);
        assert_eq!(pool_edited.health, Health::Unknown);

        let class_edited = decide(&pool(2, written(), Some(5)), Some(&class(6)), &failing);
        assert!(class_edited.reset);
        assert_eq!(class_edited.health, Health::Unknown);
        assert_eq!(class_edited.node_class_generation, Some(6));

        let first_seen = decide(&pool(1, None, None), Some(&class(6)), &tracker(&[]));
        assert!(!first_seen.reset, "nothing written yet: nothing to reset");
        assert_eq!(first_seen.health, Health::Unknown);
        assert_eq!(first_seen.node_class_generation, Some(6));

        let class_gone = decide(&pool(2, written(), Some(5)), None, &failing);
        assert!(!class_gone.reset);
        assert_eq!(class_gone.node_class_generation, Some(5), "kept as observed");
    }
}
