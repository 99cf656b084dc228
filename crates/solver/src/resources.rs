//! Dense resource vectors for the hot loops: one slot per resource the problem mentions (cpu,
//! memory, pods, ephemeral-storage, then each extended resource), integers throughout.

use std::collections::BTreeMap;

use nodewright_catalog::Resources;

/// The resource dimensions of one problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimensions {
    names: Vec<String>,
}

impl Dimensions {
    pub const CPU: usize = 0;
    pub const MEMORY: usize = 1;
    pub const PODS: usize = 2;
    pub const EPHEMERAL: usize = 3;

    /// The four core dimensions plus every extended resource named in `extended`.
    pub fn new<'a>(extended: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<String> = ["cpu", "memory", "pods", "ephemeral-storage"]
            .map(String::from)
            .to_vec();
        let mut more: Vec<String> = extended.into_iter().map(String::from).collect();
        more.sort();
        more.dedup();
        more.retain(|n| !names.contains(n));
        names.extend(more);
        Self { names }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, index: usize) -> &str {
        &self.names[index]
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Converts a named resource list; resources outside these dimensions are returned as unknown.
    pub fn dense(&self, resources: &Resources) -> (Res, Vec<String>) {
        let mut dense = Res::zero(self.len());
        dense.0[Self::CPU] = resources.cpu_millis;
        dense.0[Self::MEMORY] = resources.memory_bytes;
        dense.0[Self::PODS] = resources.pods;
        dense.0[Self::EPHEMERAL] = resources.ephemeral_storage_bytes;
        let mut unknown = Vec::new();
        for (name, amount) in &resources.extended {
            match self.index(name) {
                Some(i) => dense.0[i] = *amount,
                None if *amount > 0 => unknown.push(name.clone()),
                None => {}
            }
        }
        (dense, unknown)
    }

    /// Converts back to a named resource list.
    pub fn named(&self, res: &Res) -> Resources {
        let mut extended = BTreeMap::new();
        for (i, amount) in res.0.iter().enumerate().skip(4) {
            if *amount != 0 {
                extended.insert(self.names[i].clone(), *amount);
            }
        }
        Resources {
            cpu_millis: res.0[Self::CPU],
            memory_bytes: res.0[Self::MEMORY],
            pods: res.0[Self::PODS],
            ephemeral_storage_bytes: res.0[Self::EPHEMERAL],
            extended,
        }
    }
}

/// Inline room for cpu, memory, pods, ephemeral storage and two extended resources: resource
/// vectors are copied on every candidate-node check, so most of them never touch the heap.
pub type ResVec = smallvec::SmallVec<[i64; 6]>;

/// A resource vector over a problem's [`Dimensions`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Res(pub ResVec);

impl Res {
    pub fn zero(dims: usize) -> Self {
        Res(smallvec::smallvec![0; dims])
    }

    pub fn fits_in(&self, capacity: &Res) -> bool {
        self.0.iter().zip(&capacity.0).all(|(need, have)| need <= have)
    }

    /// Whether `self + extra` fits in `capacity`, without allocating.
    pub fn fits_with(&self, extra: &Res, capacity: &Res) -> bool {
        self.0
            .iter()
            .zip(&extra.0)
            .zip(&capacity.0)
            .all(|((a, b), c)| a.saturating_add(*b) <= *c)
    }

    pub fn add(&mut self, other: &Res) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a = a.saturating_add(*b);
        }
    }

    pub fn sub(&mut self, other: &Res) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a = a.saturating_sub(*b);
        }
    }

    /// `self -= factor × other`, without building the scaled vector.
    pub fn sub_scaled(&mut self, other: &Res, factor: i64) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a = a.saturating_sub(b.saturating_mul(factor));
        }
    }

    #[must_use]
    pub fn scaled(&self, factor: i64) -> Res {
        Res(self.0.iter().map(|v| v.saturating_mul(factor)).collect())
    }

    /// The largest `k` such that `k` copies of `self` fit in `room` (`i64::MAX` when `self` is zero).
    pub fn copies_in(&self, room: &Res) -> i64 {
        self.0
            .iter()
            .zip(&room.0)
            .filter(|(need, _)| **need > 0)
            .map(|(need, have)| if *have <= 0 { 0 } else { have / need })
            .min()
            .unwrap_or(i64::MAX)
    }

    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|v| *v == 0)
    }
}

/// Human units for messages: `2 cpu`, `512Mi memory`.
pub fn describe_amount(name: &str, amount: i64) -> String {
    match name {
        "cpu" if amount % 1000 == 0 => format!("{} cpu", amount / 1000),
        "cpu" => format!("{amount}m cpu"),
        "memory" | "ephemeral-storage" => {
            const MI: i64 = 1024 * 1024;
            const GI: i64 = MI * 1024;
            if amount % GI == 0 {
                format!("{}Gi {name}", amount / GI)
            } else {
                format!("{}Mi {name}", (amount + MI - 1) / MI)
            }
        }
        _ => format!("{amount} {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_round_trip_and_arithmetic() {
        let dims = Dimensions::new(["nvidia.com/gpu"]);
        let mut named = Resources {
            cpu_millis: 1500,
            memory_bytes: 1 << 30,
            pods: 1,
            ..Resources::default()
        };
        named.set("nvidia.com/gpu", 2);
        named.set("example.com/unknown", 1);
        let (dense, unknown) = dims.dense(&named);
        assert_eq!(unknown, ["example.com/unknown"]);
        assert_eq!(dense.0.as_slice(), [1500, 1 << 30, 1, 0, 2]);
        named.set("example.com/unknown", 0);
        assert_eq!(dims.named(&dense), named);
        let room = Res(smallvec::smallvec![4000, 4 << 30, 10, 0, 4]);
        assert_eq!(dense.copies_in(&room), 2);
        assert!(dense.fits_with(&dense, &room));
        assert!(!dense.scaled(3).fits_in(&room));
        assert_eq!(describe_amount("memory", 512 << 20), "512Mi memory");
        assert_eq!(describe_amount("cpu", 2000), "2 cpu");
    }
}
