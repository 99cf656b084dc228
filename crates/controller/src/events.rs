//! Kubernetes Events with Karpenter's reason strings, published best-effort: an event that cannot
//! be written is logged, never an error of the reconcile that raised it.
//!
//! Repeats are folded the way client-go's event correlator folds them: an event identical to one
//! published recently (same object, type, reason, action **and note**) bumps that event's
//! `series.count` instead of creating another. kube-runtime's `Recorder` leaves the note out of
//! that key, so "Pod should schedule on: nodeclaim/a" followed by "… node/b" only counted the old
//! text twice; here a changed note is a new event, visible in `kubectl describe`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::{
        core::v1::ObjectReference,
        events::v1::{Event, EventSeries},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams, PostParams},
};
use nodewright_api::clock::Clock;

use crate::error::is_not_found;

/// Event reasons Karpenter uses, so alerts and `kubectl get events --field-selector reason=...`
/// keep working.
pub mod reasons {
    pub const NOMINATED: &str = "Nominated";
    pub const FAILED_SCHEDULING: &str = "FailedScheduling";
    pub const INSUFFICIENT_CAPACITY_ERROR: &str = "InsufficientCapacityError";
    pub const NODE_CLASS_NOT_READY: &str = "NodeClassNotReady";
    pub const LAUNCH_FAILED: &str = "LaunchFailed";
    pub const REGISTRATION_TIMEOUT: &str = "RegistrationTimeout";
    pub const DISRUPTION_BLOCKED: &str = "DisruptionBlocked";
    pub const FAILED_DRAINING: &str = "FailedDraining";
    pub const EVICTED: &str = "Evicted";
    /// A pod deleted because its node's termination grace period ran out.
    pub const DISRUPTED: &str = "Disrupted";
    /// A node is being disrupted (emptiness, consolidation) and will be terminated.
    pub const DISRUPTION_TERMINATING: &str = "DisruptionTerminating";
    /// Replacements are being launched for a disruption.
    pub const DISRUPTION_LAUNCHING: &str = "DisruptionLaunching";
    /// A disruption command's replacements did not initialize in time: it was rolled back and
    /// the NodePool's next attempt waits (on the NodePool and the candidates' NodeClaims).
    pub const DISRUPTION_REPLACEMENT_FAILED: &str = "DisruptionReplacementFailed";
    /// Expired NodeClaims are kept while their NodePool cannot launch nodes (on the NodeClaim).
    pub const EXPIRATION_HELD: &str = "ExpirationHeld";
    /// Why a node cannot be consolidated (changes only).
    pub const UNCONSOLIDATABLE: &str = "Unconsolidatable";
    /// A NodeClaim lived past its `expireAfter` and is deleted.
    pub const EXPIRED: &str = "Expired";
    pub const TERMINATION_GRACE_PERIOD_EXPIRING: &str = "TerminationGracePeriodExpiring";
    pub const FAILED_CONSISTENCY_CHECK: &str = "FailedConsistencyCheck";
    /// An unhealthy node is not repaired because too much of its NodePool is unhealthy.
    pub const NODE_REPAIR_BLOCKED: &str = "NodeRepairBlocked";
}

/// Karpenter's reporting component name, so existing event filters match.
const CONTROLLER: &str = "karpenter";
/// How long after its last occurrence an event is still counted rather than published anew
/// (kube-runtime's and client-go's figure).
const REPEAT_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// How often remembered events past the window are dropped.
const SWEEP_EVERY: SignedDuration = SignedDuration::from_mins(1);
/// Remembered events at most; past it the least recently seen quarter is forgotten (their next
/// occurrence is then a new event rather than a count, which is harmless).
const CAPACITY: usize = 16_384;

/// Publishes events as the `karpenter` controller.
#[derive(Clone)]
pub struct Events {
    client: Client,
    instance: String,
    clock: Clock,
    published: Arc<Mutex<Published>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

impl Events {
    /// A publisher for `instance` (the replica's identity), stamping events with the wall clock.
    pub fn new(client: Client, instance: &str) -> Self {
        Self {
            client,
            instance: instance.to_owned(),
            clock: Clock::system(),
            published: Arc::default(),
        }
    }

    /// The same publisher reading the time (event times, the repeat window) from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// A Normal event.
    pub async fn normal<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(object, "Normal", reason, action, note).await;
    }

    /// A Warning event.
    pub async fn warning<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(object, "Warning", reason, action, note).await;
    }

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: &'static str,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let reference = object.object_ref(&());
        let key = EventKey {
            regarding: [
                reference.api_version.clone(),
                reference.kind.clone(),
                reference.namespace.clone(),
                reference.name.clone(),
                reference.uid.clone(),
            ]
            .map(Option::unwrap_or_default),
            type_,
            reason: reason.to_owned(),
            action: action.to_owned(),
            note,
        };
        let now = self.clock.now();
        let step = self.ledger().record(&key, now);
        let result = match step {
            Step::Create => self.create(&key, &reference, now).await,
            Step::Count { name, count } => self.count(&key, &reference, &name, count, now).await,
            // The first occurrence is still being written; its entry carries this count into the
            // next repeat's patch.
            Step::Pending => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(
                object = reference.name.as_deref().unwrap_or_default(),
                reason,
                %error,
                "could not publish event"
            );
        }
    }

    /// Creates the event for a first occurrence and remembers its name.
    async fn create(
        &self,
        key: &EventKey,
        reference: &ObjectReference,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let event = self.new_event(key, reference, now);
        match self.api(reference).create(&PostParams::default(), &event).await {
            Ok(created) => {
                let name = created.metadata.name.unwrap_or_default();
                self.ledger().created(key, name);
                Ok(())
            }
            Err(error) => {
                // Not remembered: the next occurrence tries to create it again.
                self.ledger().forget(key);
                Err(error)
            }
        }
    }

    /// Raises a published event's count; an event the API server no longer has (expired or
    /// deleted) is published anew.
    async fn count(
        &self,
        key: &EventKey,
        reference: &ObjectReference,
        name: &str,
        count: i32,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let patch = serde_json::json!({
            "series": EventSeries { count, last_observed_time: MicroTime(now) },
        });
        match self
            .api(reference)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => {
                self.ledger().restart(key, now);
                self.create(key, reference, now).await
            }
            Err(error) => Err(error),
        }
    }

    fn new_event(&self, key: &EventKey, reference: &ObjectReference, now: Timestamp) -> Event {
        let object_name = reference.name.as_deref().unwrap_or(CONTROLLER);
        Event {
            metadata: ObjectMeta {
                // client-go names events `<object>.<nanoseconds>`; a generated suffix cannot
                // collide when two notes for one object land in the same instant (a simulated
                // clock stands still between steps).
                generate_name: Some(format!("{object_name}.")),
                namespace: Some(event_namespace(reference).to_owned()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(key.type_.to_owned()),
            reason: Some(key.reason.clone()),
            action: Some(key.action.clone()),
            note: Some(key.note.clone()),
            regarding: Some(reference.clone()),
            reporting_controller: Some(CONTROLLER.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }

    fn api(&self, reference: &ObjectReference) -> Api<Event> {
        Api::namespaced(self.client.clone(), event_namespace(reference))
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Published> {
        // The ledger holds plain data and no invariant spans a panic: a poisoned lock is usable.
        self.published.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where events about an object live: its namespace, or `default` for cluster-scoped objects
/// (as client-go does).
fn event_namespace(reference: &ObjectReference) -> &str {
    reference.namespace.as_deref().unwrap_or("default")
}

/// What makes two occurrences the same event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    /// apiVersion, kind, namespace, name, uid of the object.
    regarding: [String; 5],
    type_: &'static str,
    reason: String,
    action: String,
    note: String,
}

/// A remembered event.
#[derive(Debug)]
struct Entry {
    /// The event's name once the create returned.
    name: Option<String>,
    count: i32,
    last_observed: Timestamp,
}

/// What to write for an occurrence.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// A new event.
    Create,
    /// Set the named event's series count.
    Count { name: String, count: i32 },
    /// Nothing yet: the event's create is in flight.
    Pending,
}

/// The events published recently, by [`EventKey`].
#[derive(Debug, Default)]
struct Published {
    entries: HashMap<EventKey, Entry>,
    next_sweep: Option<Timestamp>,
}

impl Published {
    /// Records an occurrence at `now` and says what to write.
    fn record(&mut self, key: &EventKey, now: Timestamp) -> Step {
        self.sweep(now);
        if let Some(entry) = self.entries.get_mut(key)
            && within_window(entry.last_observed, now)
        {
            entry.count = entry.count.saturating_add(1);
            entry.last_observed = now;
            return match &entry.name {
                Some(name) => Step::Count {
                    name: name.clone(),
                    count: entry.count,
                },
                None => Step::Pending,
            };
        }
        if self.entries.len() >= CAPACITY {
            self.evict_least_recent(CAPACITY / 4);
        }
        self.entries.insert(
            key.clone(),
            Entry {
                name: None,
                count: 1,
                last_observed: now,
            },
        );
        Step::Create
    }

    /// The event for `key` was created as `name`.
    fn created(&mut self, key: &EventKey, name: String) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.name = Some(name);
        }
    }

    /// The event for `key` is to be created again, as a first occurrence.
    fn restart(&mut self, key: &EventKey, now: Timestamp) {
        self.entries.insert(
            key.clone(),
            Entry {
                name: None,
                count: 1,
                last_observed: now,
            },
        );
    }

    /// The event for `key` was not written.
    fn forget(&mut self, key: &EventKey) {
        self.entries.remove(key);
    }

    fn sweep(&mut self, now: Timestamp) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.entries
            .retain(|_, entry| within_window(entry.last_observed, now));
        self.next_sweep = now.checked_add(SWEEP_EVERY).ok();
    }

    fn evict_least_recent(&mut self, count: usize) {
        let mut by_age: Vec<(Timestamp, &EventKey)> = self
            .entries
            .iter()
            .map(|(key, entry)| (entry.last_observed, key))
            .collect();
        by_age.sort_unstable_by_key(|(seen, _)| *seen);
        let oldest: Vec<EventKey> = by_age
            .into_iter()
            .take(count)
            .map(|(_, key)| key.clone())
            .collect();
        for key in &oldest {
            self.entries.remove(key);
        }
    }
}

/// Whether an event last seen at `last` is still within the repeat window at `now`.
fn within_window(last: Timestamp, now: Timestamp) -> bool {
    last.checked_add(REPEAT_WINDOW).map_or(true, |until| now < until)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(note: &str) -> EventKey {
        EventKey {
            regarding: ["v1", "Pod", "default", "web-1", "u1"].map(str::to_owned),
            type_: "Normal",
            reason: reasons::NOMINATED.to_owned(),
            action: "Nominating".to_owned(),
            note: note.to_owned(),
        }
    }

    fn at(secs: i64) -> Timestamp {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        start.checked_add(SignedDuration::from_secs(secs)).unwrap()
    }

    #[test]
    fn a_changed_note_is_a_new_event_and_a_repeat_is_counted() {
        let mut published = Published::default();
        let first = key("Pod should schedule on: nodeclaim/a");
        let second = key("Pod should schedule on: node/b");
        assert_eq!(published.record(&first, at(0)), Step::Create);
        published.created(&first, "web-1.abcde".to_owned());
        assert_eq!(published.record(&second, at(1)), Step::Create, "new note");
        assert_eq!(
            published.record(&first, at(2)),
            Step::Count {
                name: "web-1.abcde".to_owned(),
                count: 2
            }
        );
        assert_eq!(
            published.record(&second, at(3)),
            Step::Pending,
            "its create has not returned"
        );
    }

    #[test]
    fn an_event_is_published_anew_after_the_repeat_window_or_a_failed_write() {
        let mut published = Published::default();
        let note = key("n");
        assert_eq!(published.record(&note, at(0)), Step::Create);
        published.created(&note, "e1".to_owned());
        assert_eq!(
            published.record(&note, at(300)),
            Step::Count {
                name: "e1".to_owned(),
                count: 2
            }
        );
        assert_eq!(
            published.record(&note, at(300 + 360)),
            Step::Create,
            "window over"
        );
        published.forget(&note);
        assert_eq!(published.record(&note, at(661)), Step::Create, "create failed");
        published.created(&note, "e2".to_owned());
        published.restart(&note, at(662));
        assert_eq!(published.record(&note, at(663)), Step::Pending, "recreating");
    }

    #[test]
    fn old_entries_are_swept_and_capacity_is_kept() {
        let mut published = Published::default();
        published.record(&key("old"), at(0));
        published.record(&key("new"), at(400));
        assert_eq!(published.entries.len(), 1, "swept once past the window");
        for i in 0..CAPACITY {
            published.record(&key(&i.to_string()), at(401));
        }
        assert!(
            !published.entries.contains_key(&key("new")),
            "the least recent went first"
        );
        assert_eq!(published.entries.len(), CAPACITY - CAPACITY / 4 + 1);
    }
}
