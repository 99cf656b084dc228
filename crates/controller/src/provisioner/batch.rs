//! When a provisioning round runs: pure bookkeeping over injected instants, so the timing rules
//! are unit-tested without sleeping.
//!
//! A batch opens with the first waiting pod nobody has considered yet and closes when no new
//! one arrived for `idle`, or when it has been open for `max` (Karpenter's
//! `BATCH_IDLE_DURATION` / `BATCH_MAX_DURATION`). The window only decides *when* a round runs;
//! the round then looks at every pod waiting at that moment.

use std::{collections::HashSet, time::Duration};

use tokio::time::Instant;

/// The batch window.
#[derive(Debug, Clone)]
pub(crate) struct BatchWindow {
    idle: Duration,
    max: Duration,
    open: Option<Open>,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    opened: Instant,
    last_arrival: Instant,
}

impl BatchWindow {
    pub(crate) fn new(idle: Duration, max: Duration) -> Self {
        Self {
            idle,
            max,
            open: None,
        }
    }

    /// A new pod arrived at `now`: opens the batch, or restarts its idle timer.
    pub(crate) fn arrive(&mut self, now: Instant) {
        match &mut self.open {
            None => {
                self.open = Some(Open {
                    opened: now,
                    last_arrival: now,
                });
            }
            Some(open) => open.last_arrival = open.last_arrival.max(now),
        }
    }

    /// When the open batch closes: `idle` after the last arrival, at most `max` after opening.
    pub(crate) fn closes_at(&self) -> Option<Instant> {
        self.open.map(|open| {
            let idle_end = add(open.last_arrival, self.idle);
            let max_end = add(open.opened, self.max);
            idle_end.min(max_end)
        })
    }

    /// Whether the open batch is over at `now`.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.closes_at().is_some_and(|end| now >= end)
    }

    /// Ends the batch (its round is about to run).
    pub(crate) fn close(&mut self) {
        self.open = None;
    }
}

/// Which waiting pods are new, and when pods still waiting after a round are tried again.
///
/// Pods stay waiting after a round when capacity for them is in flight, or when nothing can
/// take them; Karpenter re-triggers every provisionable pod every 10 s, so a NodeClaim that
/// failed to launch, or a NodePool limit that was raised, is noticed. Here a round runs again
/// `retry_after` after the last one while pods wait.
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    /// The waiting pods (UIDs) as last observed: already in the open batch or considered by a
    /// round.
    known: HashSet<String>,
    last_round: Option<Instant>,
    retry_after: Duration,
}

impl Trigger {
    pub(crate) fn new(retry_after: Duration) -> Self {
        Self {
            known: HashSet::new(),
            last_round: None,
            retry_after,
        }
    }

    /// Records the pods waiting now; true when one of them was not waiting before (a new
    /// arrival). Pods that stopped waiting are forgotten.
    pub(crate) fn observe(&mut self, waiting: &HashSet<String>) -> bool {
        let arrived = waiting.iter().any(|uid| !self.known.contains(uid));
        self.known.clone_from(waiting);
        arrived
    }

    /// A round finished at `now`.
    pub(crate) fn round_finished(&mut self, now: Instant) {
        self.last_round = Some(now);
    }

    /// When pods that are still waiting are tried again: None when nothing waits, or before the
    /// first round (the first waiting pods are arrivals).
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        if self.known.is_empty() {
            return None;
        }
        self.last_round.map(|last| add(last, self.retry_after))
    }

    /// Whether waiting pods are due for another round at `now`.
    pub(crate) fn retry_due(&self, now: Instant) -> bool {
        self.retry_at().is_some_and(|at| now >= at)
    }
}

/// `instant + duration`, saturating far in the future instead of overflowing.
fn add(instant: Instant, duration: Duration) -> Instant {
    const FAR: Duration = Duration::from_hours(24 * 365);
    instant
        .checked_add(duration)
        .or_else(|| instant.checked_add(FAR))
        .unwrap_or(instant)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(10);

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn a_batch_closes_after_the_idle_time_without_arrivals() {
        let start = Instant::now();
        let mut batch = BatchWindow::new(IDLE, MAX);
        assert_eq!(batch.closes_at(), None);
        assert_eq!(batch.closes_at(), None);
        batch.arrive(start);
        assert_eq!(batch.closes_at(), Some(at(start, 1000)));
        assert!(!batch.is_due(at(start, 999)));
        assert!(batch.is_due(at(start, 1000)));
    }

    #[test]
    fn each_arrival_restarts_the_idle_timer_until_the_maximum() {
        let start = Instant::now();
        let mut batch = BatchWindow::new(IDLE, MAX);
        batch.arrive(start);
        batch.arrive(at(start, 800));
        assert_eq!(batch.closes_at(), Some(at(start, 1800)));
        // Arrivals every 0.9 s keep it open, but never past 10 s.
        for step in 2..=12 {
            batch.arrive(at(start, 900 * step));
        }
        assert_eq!(batch.closes_at(), Some(at(start, 10_000)));
        assert!(batch.is_due(at(start, 10_000)));
        batch.close();
        assert_eq!(batch.closes_at(), None);
        // The next batch starts its own clock.
        batch.arrive(at(start, 20_000));
        assert_eq!(batch.closes_at(), Some(at(start, 21_000)));
    }

    #[test]
    fn an_earlier_arrival_reported_late_does_not_shorten_the_batch() {
        let start = Instant::now();
        let mut batch = BatchWindow::new(IDLE, MAX);
        batch.arrive(at(start, 500));
        batch.arrive(start);
        assert_eq!(batch.closes_at(), Some(at(start, 1500)));
    }

    fn uids(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn only_pods_not_seen_waiting_before_are_arrivals() {
        let mut trigger = Trigger::new(MAX);
        assert!(!trigger.observe(&uids(&[])));
        assert!(trigger.observe(&uids(&["a", "b"])));
        assert!(!trigger.observe(&uids(&["a", "b"])));
        assert!(!trigger.observe(&uids(&["b"])), "a pod leaving is no arrival");
        assert!(trigger.observe(&uids(&["b", "c"])));
        // A pod that left and came back (e.g. evicted again) is new again.
        assert!(trigger.observe(&uids(&["a", "b", "c"])));
    }

    #[test]
    fn pods_still_waiting_are_retried_after_the_interval() {
        let start = Instant::now();
        let mut trigger = Trigger::new(MAX);
        trigger.observe(&uids(&["a"]));
        trigger.round_finished(start);
        assert_eq!(trigger.retry_at(), Some(at(start, 10_000)));
        assert!(!trigger.retry_due(at(start, 9_999)));
        assert!(trigger.retry_due(at(start, 10_000)));
        // Nothing waiting: nothing to retry.
        trigger.observe(&uids(&[]));
        assert_eq!(trigger.retry_at(), None);
        assert!(!trigger.retry_due(at(start, 60_000)));
    }
}
