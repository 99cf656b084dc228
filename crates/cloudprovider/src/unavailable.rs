//! Offerings the cloud reported out of capacity, remembered for a while so the next provisioning
//! round chooses others instead of retrying the same one (no create/delete storms). One cache
//! type for the controllers and every provider: they stay in instance-type lists with
//! `available: false` (so explanations can name them) and are left out of launches until the
//! entry expires.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use crate::OfferingKey;
use jiff::Timestamp;
use nodewright_catalog::InstanceType;

/// The unavailable-offerings cache. Clones share one cache.
#[derive(Debug, Clone)]
pub struct UnavailableOfferings {
    until: Arc<Mutex<HashMap<OfferingKey, Timestamp>>>,
    ttl: Duration,
}

impl UnavailableOfferings {
    /// A cache whose entries last `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            until: Arc::default(),
            ttl,
        }
    }

    /// Marks offerings unavailable from `now` for the cache's ttl.
    pub fn mark(&self, offerings: &[OfferingKey], now: Timestamp) {
        let end = jiff::SignedDuration::try_from(self.ttl)
            .ok()
            .and_then(|ttl| now.checked_add(ttl).ok())
            .unwrap_or(Timestamp::MAX);
        let mut until = self.lock();
        for offering in offerings {
            until.insert(offering.clone(), end);
        }
    }

    /// How many offerings are unavailable at `now` (for the metrics).
    pub fn len_at(&self, now: Timestamp) -> usize {
        self.lock().values().filter(|end| **end > now).count()
    }

    /// Whether an offering is unavailable at `now`.
    pub fn is_unavailable(&self, offering: &OfferingKey, now: Timestamp) -> bool {
        self.lock().get(offering).is_some_and(|end| *end > now)
    }

    /// Marks the cached offerings of `types` unavailable (and drops expired entries).
    pub fn apply(&self, types: &mut [InstanceType], now: Timestamp) {
        let mut until = self.lock();
        until.retain(|_, end| *end > now);
        if until.is_empty() {
            return;
        }
        for instance_type in types {
            let name = instance_type.name.clone();
            for offering in &mut instance_type.offerings {
                let key = OfferingKey::new(&name, &offering.zone, offering.capacity_type);
                if until.contains_key(&key) {
                    offering.available = false;
                }
            }
        }
    }

    /// Offerings unavailable at `now` (for metrics and explanations).
    pub fn current(&self, now: Timestamp) -> Vec<OfferingKey> {
        let mut keys: Vec<OfferingKey> = self
            .lock()
            .iter()
            .filter(|(_, end)| **end > now)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OfferingKey, Timestamp>> {
        // Entries are inserted or removed whole; a panic elsewhere cannot leave one half-written.
        self.until.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use nodewright_catalog::CapacityType;

    use super::*;

    #[test]
    fn offerings_come_back_after_the_ttl() {
        let cache = UnavailableOfferings::new(Duration::from_mins(3));
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let key = OfferingKey::new("m5.large", "us-east-1a", CapacityType::Spot);
        cache.mark(std::slice::from_ref(&key), start);
        assert!(cache.is_unavailable(&key, start));
        let later = start.checked_add(jiff::SignedDuration::from_secs(179)).unwrap();
        assert!(cache.is_unavailable(&key, later));
        let after = start.checked_add(jiff::SignedDuration::from_secs(180)).unwrap();
        assert!(!cache.is_unavailable(&key, after));
        assert!(cache.current(after).is_empty());
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = UnavailableOfferings::new(Duration::from_mins(3));
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let key = OfferingKey::new("m5.large", "us-west-2a", CapacityType::Spot);
        cache.mark(std::slice::from_ref(&key), start);
        assert!(cache.is_unavailable(
            &key,
            start.checked_add(jiff::SignedDuration::from_mins(2)).unwrap()
        ));
        assert!(!cache.is_unavailable(
            &key,
            start.checked_add(jiff::SignedDuration::from_mins(3)).unwrap()
        ));
        let other = OfferingKey::new("m5.large", "us-west-2a", CapacityType::OnDemand);
        assert!(!cache.is_unavailable(&other, start));
    }
}
