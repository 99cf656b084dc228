//! Resource lists as Kubernetes writes them (`cpu: 1500m`, `memory: 4Gi`) and as integers
//! (millicores, bytes, counts).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use nodewright_api::quantity;
use nodewright_catalog::Resources;

const KI: i64 = 1024;

/// A resource list as integers: `cpu` in millicores, everything else in whole units. Entries
/// that do not parse are returned by name (with the text) so the caller can say which field of
/// which object is wrong; they count as zero.
pub(crate) fn parse(list: &BTreeMap<String, Quantity>) -> (Resources, Vec<String>) {
    let mut resources = Resources::default();
    let mut invalid = Vec::new();
    for (name, amount) in list {
        match quantity::parse_resource(name, &amount.0)
            .ok()
            .and_then(|v| i64::try_from(v).ok())
        {
            Some(value) if value >= 0 => resources.set(name, value),
            _ => invalid.push(format!("{name}: {:?}", amount.0)),
        }
    }
    (resources, invalid)
}

/// Integers as a resource list, zero amounts left out: CPU in cores or millicores, bytes in the
/// largest binary unit that divides them.
pub(crate) fn quantities(resources: &Resources) -> BTreeMap<String, Quantity> {
    let mut list = BTreeMap::new();
    let mut put = |name: &str, text: String| {
        list.insert(name.to_owned(), Quantity(text));
    };
    if resources.cpu_millis != 0 {
        put("cpu", cpu(resources.cpu_millis));
    }
    if resources.memory_bytes != 0 {
        put("memory", bytes(resources.memory_bytes));
    }
    if resources.ephemeral_storage_bytes != 0 {
        put("ephemeral-storage", bytes(resources.ephemeral_storage_bytes));
    }
    if resources.pods != 0 {
        put("pods", resources.pods.to_string());
    }
    for (name, amount) in &resources.extended {
        if *amount != 0 {
            put(name, amount.to_string());
        }
    }
    list
}

fn cpu(millis: i64) -> String {
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

fn bytes(amount: i64) -> String {
    for (suffix, unit) in [
        ("Ti", KI * KI * KI * KI),
        ("Gi", KI * KI * KI),
        ("Mi", KI * KI),
        ("Ki", KI),
    ] {
        if amount % unit == 0 {
            return format!("{}{suffix}", amount / unit);
        }
    }
    amount.to_string()
}

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
    fn quantities_round_trip_through_kubernetes_notation() {
        let mut resources = Resources {
            cpu_millis: 1500,
            memory_bytes: 4 * KI * KI * KI,
            pods: 3,
            ephemeral_storage_bytes: 1000,
            extended: BTreeMap::new(),
        };
        resources.set("nvidia.com/gpu", 1);
        let list = quantities(&resources);
        assert_eq!(list["cpu"].0, "1500m");
        assert_eq!(list["memory"].0, "4Gi");
        assert_eq!(list["ephemeral-storage"].0, "1000");
        assert_eq!(list["pods"].0, "3");
        assert_eq!(list["nvidia.com/gpu"].0, "1");
        let (parsed, invalid) = parse(&list);
        assert_eq!(parsed, resources);
        assert!(invalid.is_empty());
        let whole = quantities(&Resources {
            cpu_millis: 2000,
            ..Resources::default()
        });
        assert_eq!(whole.len(), 1, "zero amounts are left out");
        assert_eq!(whole["cpu"].0, "2");
    }

    #[test]
    fn unparseable_amounts_are_named() {
        let list = BTreeMap::from([
            ("cpu".to_owned(), Quantity("lots".to_owned())),
            ("memory".to_owned(), Quantity("1Gi".to_owned())),
        ]);
        let (parsed, invalid) = parse(&list);
        assert_eq!(parsed.memory_bytes, KI * KI * KI);
        assert_eq!(invalid, vec!["cpu: \"lots\"".to_owned()]);
    }

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
