//! Resource lists as integers combined per resource; the conversion to and from Kubernetes
//! notation is the cloud-provider crate's, shared with every provider.

use nodewright_catalog::Resources;
pub(crate) use nodewright_cloudprovider::resources::{parse, quantities};

/// Every resource's amount combined over `items` with `pick` (an absent resource is zero).
fn combine<'a>(
    items: impl IntoIterator<Item = &'a Resources>,
    pick: fn(i64, i64) -> i64,
) -> Option<Resources> {
    let items: Vec<&Resources> = items.into_iter().collect();
    let first = items.first()?;
    let mut names: Vec<&str> = vec!["cpu", "memory", "pods", "ephemeral-storage"];
    names.extend(items.iter().flat_map(|r| r.extended.keys().map(String::as_str)));
    names.sort_unstable();
    names.dedup();
    let mut combined = Resources::default();
    for name in names {
        let value = items.iter().map(|r| r.get(name)).fold(first.get(name), pick);
        combined.set(name, value);
    }
    Some(combined)
}

/// The per-resource minimum (what every one of them has at least); None for no items.
pub(crate) fn minimum<'a>(items: impl IntoIterator<Item = &'a Resources>) -> Option<Resources> {
    combine(items, i64::min)
}

/// The per-resource maximum; None for no items.
pub(crate) fn maximum<'a>(items: impl IntoIterator<Item = &'a Resources>) -> Option<Resources> {
    combine(items, i64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_and_maximum_are_per_resource() {
        let mut a = Resources {
            cpu_millis: 2000,
            memory_bytes: 8,
            ..Resources::default()
        };
        a.set("example.com/x", 2);
        let b = Resources {
            cpu_millis: 4000,
            memory_bytes: 4,
            ..Resources::default()
        };
        let low = minimum([&a, &b]).unwrap();
        assert_eq!(
            (low.cpu_millis, low.memory_bytes, low.get("example.com/x")),
            (2000, 4, 0)
        );
        let high = maximum([&a, &b]).unwrap();
        assert_eq!(
            (high.cpu_millis, high.memory_bytes, high.get("example.com/x")),
            (4000, 8, 2)
        );
        assert_eq!(minimum([]), None);
    }
}
