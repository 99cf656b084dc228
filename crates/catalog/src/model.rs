//! The provider-neutral instance-type model the solver, the cloud provider trait and the simulator
//! share: resources as integers, offerings with integer prices.

use std::{collections::BTreeMap, fmt};

/// A price in nano-US-dollars per hour (0.096 $/h = 96_000_000). Integers keep sums exact and plans
/// deterministic; reserved offerings are priced near zero, which needs the sub-micro resolution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(pub u64);

impl Price {
    pub const ZERO: Price = Price(0);
    const NANOS_PER_USD: f64 = 1e9;

    /// Rounds a dollar amount to the nearest nano-dollar; negative and non-finite amounts become 0.
    pub fn from_usd(usd: f64) -> Self {
        if usd.is_finite() && usd > 0.0 {
            // The cast saturates for amounts beyond u64, which no real price reaches.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let nanos = (usd * Self::NANOS_PER_USD).round() as u64;
            Price(nanos)
        } else {
            Price(0)
        }
    }

    #[allow(clippy::cast_precision_loss)] // display and reporting only
    pub fn as_usd(self) -> f64 {
        self.0 as f64 / Self::NANOS_PER_USD
    }

    #[must_use]
    pub fn saturating_add(self, other: Price) -> Price {
        Price(self.0.saturating_add(other.0))
    }
}

impl std::iter::Sum for Price {
    fn sum<I: Iterator<Item = Price>>(iter: I) -> Price {
        iter.fold(Price::ZERO, Price::saturating_add)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.4}/h", self.as_usd())
    }
}

/// Resource amounts: CPU in millicores, memory and storage in bytes, pods and extended resources
/// (GPUs, ENIs, ...) as counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub pods: i64,
    pub ephemeral_storage_bytes: i64,
    /// Extended resources by name (`nvidia.com/gpu`, `vpc.amazonaws.com/pod-eni`, ...); zero entries
    /// are omitted.
    pub extended: BTreeMap<String, i64>,
}

impl Resources {
    /// Whether every amount of `self` is at most the corresponding amount of `capacity`.
    pub fn fits_in(&self, capacity: &Resources) -> bool {
        self.cpu_millis <= capacity.cpu_millis
            && self.memory_bytes <= capacity.memory_bytes
            && self.pods <= capacity.pods
            && self.ephemeral_storage_bytes <= capacity.ephemeral_storage_bytes
            && self
                .extended
                .iter()
                .all(|(name, amount)| *amount <= capacity.extended.get(name).copied().unwrap_or(0))
    }

    /// `self + other`, saturating.
    #[must_use]
    pub fn plus(&self, other: &Resources) -> Resources {
        let mut sum = self.clone();
        sum.add_assign(other);
        sum
    }

    /// `self - other`, saturating; may go negative (a deficit).
    #[must_use]
    pub fn minus(&self, other: &Resources) -> Resources {
        let mut difference = Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            pods: self.pods.saturating_sub(other.pods),
            ephemeral_storage_bytes: self
                .ephemeral_storage_bytes
                .saturating_sub(other.ephemeral_storage_bytes),
            extended: self.extended.clone(),
        };
        for (name, amount) in &other.extended {
            let entry = difference.extended.entry(name.clone()).or_insert(0);
            *entry = entry.saturating_sub(*amount);
        }
        difference.extended.retain(|_, v| *v != 0);
        difference
    }

    pub fn add_assign(&mut self, other: &Resources) {
        self.cpu_millis = self.cpu_millis.saturating_add(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
        self.pods = self.pods.saturating_add(other.pods);
        self.ephemeral_storage_bytes = self
            .ephemeral_storage_bytes
            .saturating_add(other.ephemeral_storage_bytes);
        for (name, amount) in &other.extended {
            let entry = self.extended.entry(name.clone()).or_insert(0);
            *entry = entry.saturating_add(*amount);
        }
        self.extended.retain(|_, v| *v != 0);
    }

    /// The amount of a resource by its Kubernetes name (`cpu` in millicores, `memory` in bytes, ...).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.cpu_millis,
            "memory" => self.memory_bytes,
            "pods" => self.pods,
            "ephemeral-storage" => self.ephemeral_storage_bytes,
            other => self.extended.get(other).copied().unwrap_or(0),
        }
    }

    /// Sets a resource by its Kubernetes name.
    pub fn set(&mut self, name: &str, amount: i64) {
        match name {
            "cpu" => self.cpu_millis = amount,
            "memory" => self.memory_bytes = amount,
            "pods" => self.pods = amount,
            "ephemeral-storage" => self.ephemeral_storage_bytes = amount,
            other if amount == 0 => {
                self.extended.remove(other);
            }
            other => {
                self.extended.insert(other.to_owned(), amount);
            }
        }
    }
}

/// How an offering is bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CapacityType {
    OnDemand,
    Spot,
    Reserved,
}

impl CapacityType {
    /// The `karpenter.sh/capacity-type` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::OnDemand => "on-demand",
            Self::Spot => "spot",
            Self::Reserved => "reserved",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            "on-demand" => Some(Self::OnDemand),
            "spot" => Some(Self::Spot),
            "reserved" => Some(Self::Reserved),
            _ => None,
        }
    }
}

/// A capacity reservation an offering draws from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reservation {
    pub id: String,
    /// Instances still available in the reservation.
    pub capacity: u32,
}

/// One way to buy an instance type: a zone and capacity type, at a price.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Offering {
    pub zone: String,
    pub capacity_type: CapacityType,
    pub price: Price,
    /// False when the provider reported insufficient capacity recently, or the zone is excluded.
    pub available: bool,
    pub reservation: Option<Reservation>,
}

/// Resources the node keeps for itself: allocatable = capacity − kube-reserved − system-reserved −
/// eviction threshold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Overhead {
    pub kube_reserved: Resources,
    pub system_reserved: Resources,
    pub eviction_threshold: Resources,
}

impl Overhead {
    pub fn total(&self) -> Resources {
        self.kube_reserved
            .plus(&self.system_reserved)
            .plus(&self.eviction_threshold)
    }
}

/// An instance type as the solver sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceType {
    pub name: String,
    /// Single-valued labels every node of this type carries: `node.kubernetes.io/instance-type`,
    /// `kubernetes.io/arch`, `kubernetes.io/os`, `karpenter.k8s.aws/instance-*`, ... Zone and
    /// capacity type come from the offerings.
    pub labels: BTreeMap<String, String>,
    pub capacity: Resources,
    pub overhead: Overhead,
    pub offerings: Vec<Offering>,
}

impl InstanceType {
    /// What pods may request on a node of this type.
    pub fn allocatable(&self) -> Resources {
        self.capacity.minus(&self.overhead.total())
    }

    /// The cheapest available offering, if any.
    pub fn cheapest_offering(&self) -> Option<&Offering> {
        self.offerings
            .iter()
            .filter(|o| o.available)
            .min_by_key(|o| (o.price, o.zone.as_str(), o.capacity_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_integers() {
        assert_eq!(Price::from_usd(0.096), Price(96_000_000));
        assert_eq!(Price::from_usd(-1.0), Price::ZERO);
        assert_eq!(Price::from_usd(f64::NAN), Price::ZERO);
        assert_eq!([Price(1), Price(2)].into_iter().sum::<Price>(), Price(3));
        assert_eq!(Price::from_usd(0.096).to_string(), "$0.0960/h");
    }

    #[test]
    fn resources_arithmetic() {
        let mut a = Resources {
            cpu_millis: 1000,
            memory_bytes: 10,
            pods: 1,
            ..Resources::default()
        };
        a.set("nvidia.com/gpu", 1);
        let b = Resources {
            cpu_millis: 500,
            memory_bytes: 10,
            pods: 1,
            ..Resources::default()
        };
        assert!(b.fits_in(&a));
        assert!(!a.fits_in(&b), "a GPU does not fit where there is none");
        let diff = a.minus(&b);
        assert_eq!(
            (diff.cpu_millis, diff.memory_bytes, diff.get("nvidia.com/gpu")),
            (500, 0, 1)
        );
        assert_eq!(a.plus(&b).cpu_millis, 1500);
        a.set("nvidia.com/gpu", 0);
        assert!(a.extended.is_empty());
    }
}
