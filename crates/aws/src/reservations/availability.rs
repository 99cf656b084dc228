//! How many instances each capacity reservation still holds, as Karpenter's reservation provider
//! keeps it: EC2's `AvailableInstanceCount` (DescribeCapacityReservations by ID, at most once per
//! refresh interval per reservation), set to zero when EC2 refuses a launch into it, and counted
//! up when an instance of it is found gone. A launch holds one instance of each reservation it
//! may use before it calls EC2 and gives back the ones it did not use, so concurrent launches
//! never count the same instance twice. EC2 is the truth: the next describe replaces the local
//! count.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

use aws_sdk_ec2::types::CapacityReservationState;
use jiff::{SignedDuration, Timestamp};

use crate::error::AwsError;

/// Karpenter's query cache for reservations: one minute.
pub const DEFAULT_REFRESH: SignedDuration = SignedDuration::from_mins(1);

/// One reservation's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    available: u32,
    /// The reservation's size, which no local count-up exceeds.
    total: Option<u32>,
    synced_at: Timestamp,
    /// EC2 refused a launch into it since the last describe: holds given back do not count.
    refused: bool,
}

/// The counts of the reservations node classes resolved, shared by all launches of a provider.
#[derive(Debug)]
pub struct ReservationAvailability {
    ec2: aws_sdk_ec2::Client,
    refresh: SignedDuration,
    counts: Mutex<HashMap<String, Count>>,
    /// One describe at a time: concurrent launches wait for it rather than each sending one.
    describing: tokio::sync::Mutex<()>,
}

impl ReservationAvailability {
    pub fn new(ec2: aws_sdk_ec2::Client, refresh: SignedDuration) -> Self {
        Self {
            ec2,
            refresh,
            counts: Mutex::default(),
            describing: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Count>> {
        // Each update is one map operation: a panic elsewhere cannot leave one half-written.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The remaining count of each of `ids`, describing the ones not synced within the refresh
    /// interval. A failed describe is logged and the last counts stay (none: zero left).
    pub async fn available(&self, ids: &[String], now: Timestamp) -> HashMap<String, u32> {
        if ids.is_empty() {
            return HashMap::new();
        }
        {
            let _describing = self.describing.lock().await;
            let stale = self.stale(ids, now);
            if !stale.is_empty() {
                match describe_counts(&self.ec2, &stale).await {
                    Ok(described) => self.sync(&stale, &described, now),
                    Err(error) => {
                        tracing::warn!(%error, reservations = ?stale, "capacity reservation counts not refreshed");
                    }
                }
            }
        }
        let counts = self.lock();
        ids.iter()
            .map(|id| (id.clone(), counts.get(id).map_or(0, |c| c.available)))
            .collect()
    }

    /// The ones of `ids` not synced within the refresh interval (or synced in the future: a
    /// clock moved back).
    fn stale(&self, ids: &[String], now: Timestamp) -> Vec<String> {
        let counts = self.lock();
        ids.iter()
            .filter(|id| {
                counts
                    .get(*id)
                    .is_none_or(|c| now.duration_since(c.synced_at) >= self.refresh || now < c.synced_at)
            })
            .cloned()
            .collect()
    }

    /// Takes EC2's counts for `asked`; a reservation EC2 no longer reports (or not active) has
    /// nothing left.
    fn sync(&self, asked: &[String], described: &HashMap<String, (u32, Option<u32>)>, now: Timestamp) {
        let mut counts = self.lock();
        for id in asked {
            let (available, total) = described.get(id).copied().unwrap_or((0, None));
            counts.insert(
                id.clone(),
                Count {
                    available,
                    total,
                    synced_at: now,
                    refused: false,
                },
            );
        }
    }

    /// Holds one instance of each of `ids` that has one left, for a launch about to start;
    /// returns the ones held. The launch keeps the one it launched into and gives the others
    /// back ([`Self::release`]).
    pub fn hold(&self, ids: &[String]) -> Vec<String> {
        let mut counts = self.lock();
        ids.iter()
            .filter(|id| match counts.get_mut(*id) {
                Some(count) if count.available > 0 => {
                    count.available -= 1;
                    true
                }
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// Gives back held instances a launch did not use (not to a reservation EC2 refused since).
    pub fn release(&self, ids: &[String]) {
        let mut counts = self.lock();
        for id in ids {
            if let Some(count) = counts.get_mut(id)
                && !count.refused
            {
                count.available = count
                    .available
                    .saturating_add(1)
                    .min(count.total.unwrap_or(u32::MAX));
            }
        }
    }

    /// EC2 refused a launch into `id`: nothing is left until EC2 says otherwise.
    pub fn mark_unavailable(&self, id: &str) {
        if let Some(count) = self.lock().get_mut(id) {
            count.available = 0;
            count.refused = true;
        }
    }

    /// An instance of `id` is gone: its capacity is back.
    pub fn mark_terminated(&self, id: &str) {
        if let Some(count) = self.lock().get_mut(id) {
            count.available = count
                .available
                .saturating_add(1)
                .min(count.total.unwrap_or(u32::MAX));
        }
    }

    /// Sets a count as if described at `now` (for tests and tools that know the counts).
    pub fn set(&self, id: &str, available: u32, total: Option<u32>, now: Timestamp) {
        self.lock().insert(
            id.to_owned(),
            Count {
                available,
                total,
                synced_at: now,
                refused: false,
            },
        );
    }
}

/// `(available, total)` of each active reservation among `ids`.
async fn describe_counts(
    ec2: &aws_sdk_ec2::Client,
    ids: &[String],
) -> Result<HashMap<String, (u32, Option<u32>)>, AwsError> {
    let mut pages = ec2
        .describe_capacity_reservations()
        .set_capacity_reservation_ids(Some(ids.to_vec()))
        .into_paginator()
        .send();
    let mut counts = HashMap::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::api("DescribeCapacityReservations", &e))?;
        for reservation in page.capacity_reservations() {
            let Some(id) = reservation.capacity_reservation_id() else {
                continue;
            };
            let active = reservation
                .state()
                .is_none_or(|s| *s == CapacityReservationState::Active);
            let count = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok());
            let available = if active {
                count(reservation.available_instance_count()).unwrap_or(0)
            } else {
                0
            };
            counts.insert(
                id.to_owned(),
                (available, count(reservation.total_instance_count())),
            );
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn availability() -> ReservationAvailability {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("us-west-2"))
            .build();
        ReservationAvailability::new(aws_sdk_ec2::Client::from_conf(config), DEFAULT_REFRESH)
    }

    fn count(a: &ReservationAvailability, id: &str) -> Option<u32> {
        a.lock().get(id).map(|c| c.available)
    }

    #[test]
    fn launches_hold_and_give_back_refusals_zero_and_terminations_count_up_to_the_total() {
        let now: Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
        let a = availability();
        a.set("cr-1", 2, Some(2), now);
        a.set("cr-2", 1, Some(1), now);
        let both = ["cr-1".to_owned(), "cr-2".to_owned()];
        assert_eq!(a.hold(&both), both);
        assert_eq!((count(&a, "cr-1"), count(&a, "cr-2")), (Some(1), Some(0)));
        // A concurrent launch finds only what is left.
        assert_eq!(a.hold(&both), ["cr-1"]);
        assert_eq!(a.hold(&both), Vec::<String>::new(), "never below zero");
        // The first launch used cr-1 and gives cr-2 back.
        a.release(&["cr-2".to_owned()]);
        assert_eq!(count(&a, "cr-2"), Some(1));
        // The second was refused by EC2: its hold does not come back.
        a.mark_unavailable("cr-1");
        a.release(&["cr-1".to_owned()]);
        assert_eq!(count(&a, "cr-1"), Some(0));
        a.mark_terminated("cr-1");
        a.mark_terminated("cr-1");
        a.mark_terminated("cr-1");
        assert_eq!(count(&a, "cr-1"), Some(2), "never above the reservation's size");
        // Unknown reservations stay unknown (the next describe brings them).
        a.mark_terminated("cr-unknown");
        assert_eq!(count(&a, "cr-unknown"), None);
    }

    #[test]
    fn a_sync_replaces_local_counts_and_zeroes_reservations_ec2_no_longer_reports() {
        let now: Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
        let a = availability();
        a.set("cr-1", 0, Some(3), now);
        a.set("cr-gone", 4, Some(4), now);
        let described = HashMap::from([("cr-1".to_owned(), (3, Some(3)))]);
        a.sync(&["cr-1".to_owned(), "cr-gone".to_owned()], &described, now);
        assert_eq!(count(&a, "cr-1"), Some(3));
        assert_eq!(count(&a, "cr-gone"), Some(0));
    }

    #[test]
    fn counts_older_than_the_refresh_or_unknown_are_described_again() {
        let now: Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
        let a = availability();
        a.set("cr-fresh", 2, Some(2), now);
        a.set("cr-old", 2, Some(2), now - DEFAULT_REFRESH);
        let ids = ["cr-fresh".to_owned(), "cr-old".to_owned(), "cr-new".to_owned()];
        assert_eq!(a.stale(&ids, now), ["cr-old", "cr-new"]);
        assert_eq!(
            a.stale(&ids, now - SignedDuration::from_secs(1)),
            ["cr-fresh", "cr-new"]
        );
    }
}
