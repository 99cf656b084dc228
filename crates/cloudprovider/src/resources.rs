//! Resource lists as Kubernetes writes them (`cpu: 1500m`, `memory: 4Gi`) and as integers
//! (millicores, bytes, counts): one rule for the controllers and every cloud provider (NodeClaim
//! requests, capacity and allocatable).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use nodewright_api::quantity;
use nodewright_catalog::Resources;

const KI: i64 = 1024;

/// A resource list as integers: `cpu` in millicores, everything else in whole units. Entries
/// that do not parse are returned by name (with the text) so the caller can say which field of
/// which object is wrong; they count as zero.
pub fn parse(list: &BTreeMap<String, Quantity>) -> (Resources, Vec<String>) {
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
pub fn quantities(resources: &Resources) -> BTreeMap<String, Quantity> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

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
}
