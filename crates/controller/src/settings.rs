//! The controllers' settings, with Karpenter's defaults.

use std::time::Duration;

/// Tunables shared by the controllers. Defaults are Karpenter's.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The cluster's name (tags, the fake cloud's cluster tag, events).
    pub cluster_name: String,
    /// A provisioning batch closes when no new pending pod arrived for this long (Karpenter's
    /// `BATCH_IDLE_DURATION`, 1 s).
    pub batch_idle: Duration,
    /// ... or when it has been open this long (`BATCH_MAX_DURATION`, 10 s).
    pub batch_max: Duration,
    /// A launched NodeClaim whose Node has not registered by then is deleted (15 min).
    pub registration_ttl: Duration,
    /// An offering that reported insufficient capacity is not tried again for this long (3 min).
    pub unavailable_offering_ttl: Duration,
    /// Cloud instances tagged for this cluster with no NodeClaim are terminated after this long
    /// (Karpenter: 30 s after launch).
    pub orphan_grace: Duration,
    /// How often the cloud and the cluster are compared for leaked instances and NodeClaims
    /// whose instance is gone (10 s, the AWS provider's first-minutes rate).
    pub garbage_collection_interval: Duration,
    /// The leader-election Lease: its namespace and name.
    pub lease_namespace: String,
    pub lease_name: String,
    /// How long a leader's lease lasts without renewal (15 s), and how often it renews (2 s... the
    /// renew deadline is 10 s in Kubernetes' defaults).
    pub lease_duration: Duration,
    pub lease_renew_interval: Duration,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// How many times faster than the wall clock the injected clock runs (1 in production;
    /// `nodewright sim` and tests run simulated time faster). The loops' own waits — batch
    /// windows, polls, rechecks, lease renewals — are wall-clock timers and are divided by it
    /// (see [`Settings::wall`]), so they keep their length in the clock's time.
    pub wall_clock_speedup: f64,
    /// Whether consolidation may replace a spot node with another spot node (Karpenter's
    /// `SpotToSpotConsolidation` feature gate; off by default).
    pub spot_to_spot_consolidation: bool,
    /// Whether unhealthy nodes are replaced (Karpenter's `NodeRepair` feature gate). Off by
    /// default, as in Karpenter and the chart: Nodewright is a drop-in replacement, and a
    /// controller that starts deleting nodes nobody asked it to touch would surprise a user who
    /// kept Karpenter's settings.
    pub node_repair: bool,
    /// Karpenter's `ReservedCapacity` feature gate (on by default): the capacity-reservation
    /// controllers run ([`crate::reservations`]).
    pub reserved_capacity: bool,
    /// How often the capacity-reservation controllers look (Karpenter: every minute).
    pub reservation_check_interval: Duration,
}

impl Settings {
    /// A wait of `d` in the clock's time, as a wall-clock duration (at least 1 ms).
    pub fn wall(&self, d: Duration) -> Duration {
        let speedup = if self.wall_clock_speedup.is_finite() && self.wall_clock_speedup > 0.0 {
            self.wall_clock_speedup
        } else {
            1.0
        };
        d.div_f64(speedup).max(Duration::from_millis(1))
    }
}

/// How long a timer loop sleeps, in the clock's time: until `next` (when its next object falls
/// due) if that is sooner than `at_most`, else `at_most`. A `next` already past gives `at_most`:
/// the loop's pass just ran and acts on what is due.
pub(crate) fn until_next(now: jiff::Timestamp, next: Option<jiff::Timestamp>, at_most: Duration) -> Duration {
    next.and_then(|at| Duration::try_from(at.duration_since(now)).ok())
        .map_or(at_most, |until| until.min(at_most))
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_name: "nodewright".to_owned(),
            batch_idle: Duration::from_secs(1),
            batch_max: Duration::from_secs(10),
            registration_ttl: Duration::from_mins(15),
            unavailable_offering_ttl: Duration::from_mins(3),
            orphan_grace: Duration::from_secs(30),
            garbage_collection_interval: Duration::from_secs(10),
            lease_namespace: "kube-system".to_owned(),
            lease_name: "karpenter-leader-election".to_owned(),
            lease_duration: Duration::from_secs(15),
            lease_renew_interval: Duration::from_secs(2),
            identity: "nodewright".to_owned(),
            wall_clock_speedup: 1.0,
            spot_to_spot_consolidation: false,
            node_repair: false,
            reserved_capacity: true,
            reservation_check_interval: Duration::from_mins(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jiff::{SignedDuration, Timestamp};

    use super::until_next;

    #[test]
    fn a_timer_loop_sleeps_until_the_next_due_object_or_at_most_its_interval() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let minute = Duration::from_mins(1);
        let soon = now + SignedDuration::from_secs(20);
        assert_eq!(until_next(now, Some(soon), minute), Duration::from_secs(20));
        let later = now + SignedDuration::from_mins(5);
        assert_eq!(until_next(now, Some(later), minute), minute);
        let past = now - SignedDuration::from_secs(1);
        assert_eq!(until_next(now, Some(past), minute), minute);
        assert_eq!(until_next(now, None, minute), minute);
    }
}
