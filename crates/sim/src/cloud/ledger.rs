//! What the fake cloud's instances cost: each one is billed per whole second, from the moment it
//! runs until it terminates (or until now), at its offering's hourly price. EC2's 60-second
//! minimum for Linux is not applied, so a cost is exactly price × time.

use jiff::Timestamp;
use nodewright_catalog::Price;
use nodewright_cloudprovider::OfferingKey;

use super::instance::Instance;

const SECONDS_PER_HOUR: u128 = 3600;

/// One instance's bill so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub provider_id: String,
    /// The NodeClaim it was launched for.
    pub node_claim: String,
    pub offering: OfferingKey,
    pub price: Price,
    /// Whole seconds billed; instance-hours are this over 3600.
    pub billed_seconds: u64,
    /// Nano-US-dollars: `price × billed_seconds / 3600`, rounded down.
    pub cost_nano_usd: u64,
}

/// The bill of every instance ever launched, in launch order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    pub entries: Vec<LedgerEntry>,
}

impl Ledger {
    pub(crate) fn at(instances: &[Instance], now: Timestamp) -> Self {
        let entries = instances
            .iter()
            .map(|instance| {
                let billed_seconds = billed_seconds(instance, now);
                LedgerEntry {
                    provider_id: instance.provider_id.clone(),
                    node_claim: instance
                        .tags
                        .get(super::tags::NODE_CLAIM)
                        .cloned()
                        .unwrap_or_default(),
                    offering: instance.offering.clone(),
                    price: instance.price,
                    billed_seconds,
                    cost_nano_usd: cost_nano_usd(instance.price, billed_seconds),
                }
            })
            .collect();
        Self { entries }
    }

    /// The entry of one instance.
    pub fn entry(&self, provider_id: &str) -> Option<&LedgerEntry> {
        self.entries.iter().find(|e| e.provider_id == provider_id)
    }

    /// Seconds billed over all instances.
    pub fn total_billed_seconds(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| e.billed_seconds)
            .fold(0, u64::saturating_add)
    }

    /// Nano-US-dollars over all instances (the sum of the rounded per-instance costs).
    pub fn total_cost_nano_usd(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| e.cost_nano_usd)
            .fold(0, u64::saturating_add)
    }
}

fn billed_seconds(instance: &Instance, now: Timestamp) -> u64 {
    let end = instance.terminated_at.map_or(now, |t| t.min(now));
    let seconds = end.duration_since(instance.running_at).as_secs();
    // Negative when it never ran (terminated while pending, or still pending).
    u64::try_from(seconds).unwrap_or(0)
}

/// `price` (nano-USD per hour) for `seconds`, rounded down; saturates far beyond any real bill.
pub fn cost_nano_usd(price: Price, seconds: u64) -> u64 {
    let nanos = u128::from(price.0) * u128::from(seconds) / SECONDS_PER_HOUR;
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_price_times_time_rounded_down() {
        assert_eq!(cost_nano_usd(Price(96_000_000), 3600), 96_000_000);
        assert_eq!(cost_nano_usd(Price(96_000_000), 90 * 60), 144_000_000);
        // 1 nano-dollar an hour for 1 second is 1/3600 nano-dollar: rounds to 0.
        assert_eq!(cost_nano_usd(Price(1), 1), 0);
        assert_eq!(cost_nano_usd(Price(u64::MAX), u64::MAX), u64::MAX);
    }
}
