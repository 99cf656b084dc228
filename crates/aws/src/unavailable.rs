//! Offerings EC2 recently reported out of capacity. They stay in the instance-type list with
//! `available: false` (so explanations can name them) and are left out of launches until the
//! entry expires.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use jiff::{SignedDuration, Timestamp};
use nodewright_catalog::InstanceType;
use nodewright_cloudprovider::OfferingKey;

/// The cache; clones share it.
#[derive(Debug, Clone)]
pub struct UnavailableOfferings {
    until: Arc<Mutex<HashMap<OfferingKey, Timestamp>>>,
    ttl: SignedDuration,
}

impl UnavailableOfferings {
    pub fn new(ttl: Duration) -> Self {
        Self {
            until: Arc::default(),
            ttl: SignedDuration::try_from(ttl).unwrap_or(SignedDuration::MAX),
        }
    }

    /// Marks `offerings` unavailable from `now` for the cache's ttl.
    pub fn mark(&self, offerings: &[OfferingKey], now: Timestamp) {
        let end = now.checked_add(self.ttl).unwrap_or(Timestamp::MAX);
        let mut until = self.lock();
        for offering in offerings {
            until.insert(offering.clone(), end);
        }
    }

    pub fn is_unavailable(&self, offering: &OfferingKey, now: Timestamp) -> bool {
        self.lock().get(offering).is_some_and(|end| *end > now)
    }

    /// Sets `available: false` on the cached offerings of `types`, dropping expired entries.
    pub fn apply(&self, types: &mut [InstanceType], now: Timestamp) {
        let mut until = self.lock();
        until.retain(|_, end| *end > now);
        if until.is_empty() {
            return;
        }
        for instance_type in types {
            for offering in &mut instance_type.offerings {
                let key = OfferingKey::new(&instance_type.name, &offering.zone, offering.capacity_type);
                if until.contains_key(&key) {
                    offering.available = false;
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<OfferingKey, Timestamp>> {
        // Entries are inserted or removed whole; a panic elsewhere cannot leave one half-written.
        self.until.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use nodewright_catalog::CapacityType;

    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = UnavailableOfferings::new(Duration::from_mins(3));
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let key = OfferingKey::new("m5.large", "us-west-2a", CapacityType::Spot);
        cache.mark(std::slice::from_ref(&key), start);
        assert!(cache.is_unavailable(&key, start + SignedDuration::from_mins(2)));
        assert!(!cache.is_unavailable(&key, start + SignedDuration::from_mins(3)));
        let other = OfferingKey::new("m5.large", "us-west-2a", CapacityType::OnDemand);
        assert!(!cache.is_unavailable(&other, start));
    }
}
