//! How a list merges, for strategic merge patch and server-side apply: atomically (replaced
//! whole), as a set of scalars, or as a map keyed by some of its items' fields. Custom resources
//! say so in their schema (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`); built-in kinds
//! use the keys Kubernetes declares for them (containers by name, ports by number, conditions by
//! type, ...).

use serde_json::Value;

/// The merge behaviour of one list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars: merged by union.
    Set,
    /// Items are merged by these key fields.
    Map(Vec<String>),
}

fn map(keys: &[&str]) -> ListKind {
    ListKind::Map(keys.iter().map(|k| (*k).to_owned()).collect())
}

/// The kind of a built-in list, from its field name and the names of the fields above it.
pub fn builtin(parents: &[&str], field: &str) -> ListKind {
    let in_container = parents
        .iter()
        .any(|p| matches!(*p, "containers" | "initContainers" | "ephemeralContainers"));
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => map(&["name"]),
        "ports" if in_container => map(&["containerPort", "protocol"]),
        "ports" => map(&["port", "protocol"]),
        "volumeMounts" => map(&["mountPath"]),
        "volumeDevices" => map(&["devicePath"]),
        "conditions" => map(&["type"]),
        "addresses" if parents.last() == Some(&"status") => map(&["type"]),
        "hostAliases" => map(&["ip"]),
        "topologySpreadConstraints" => map(&["topologyKey", "whenUnsatisfiable"]),
        "ownerReferences" => map(&["uid"]),
        "taints" => map(&["key", "effect"]),
        "finalizers" => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// The kind of a custom resource's list from its schema node.
pub fn from_schema(schema: &Value) -> ListKind {
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListKind::Set,
        Some("map") => ListKind::Map(
            schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => ListKind::Atomic,
    }
}

/// Where a walk over an object is: the names of the fields above and, for custom resources, the
/// schema node of the current value.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    /// Field names from the root (list indices left out).
    pub parents: Vec<&'a str>,
    /// The schema of the current value (custom resources only).
    pub schema: Option<&'a Value>,
    /// Whether the object is a custom resource (schema-driven) rather than a built-in kind.
    pub custom: bool,
}

impl<'a> Context<'a> {
    /// The root of an object; `schema` is the CRD schema for custom resources.
    pub fn root(schema: Option<&'a Value>) -> Self {
        Self {
            parents: Vec::new(),
            schema,
            custom: schema.is_some(),
        }
    }

    /// Descends into an object field.
    #[must_use]
    pub fn field(&self, name: &'a str) -> Self {
        let schema = self.schema.and_then(|s| {
            s.get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
        });
        let mut parents = self.parents.clone();
        parents.push(name);
        Self {
            parents,
            schema,
            custom: self.custom,
        }
    }

    /// Descends into a list item.
    #[must_use]
    pub fn item(&self) -> Self {
        Self {
            parents: self.parents.clone(),
            schema: self.schema.and_then(|s| s.get("items")),
            custom: self.custom,
        }
    }

    /// The merge behaviour of the list at this position. Lists under `metadata` follow the
    /// built-in rules even in custom resources.
    pub fn list_kind(&self) -> ListKind {
        let Some((field, above)) = self.parents.split_last() else {
            return ListKind::Atomic;
        };
        if self.custom && above.first() != Some(&"metadata") {
            self.schema.map_or(ListKind::Atomic, from_schema)
        } else {
            builtin(above, field)
        }
    }
}

/// Whether a list item matches key values.
pub fn item_matches(item: &Value, keys: &[String], key_values: &Value) -> bool {
    keys.iter().all(|k| item.get(k) == key_values.get(k))
}

/// The key values of a list-map item (only the key fields).
pub fn key_of(item: &Value, keys: &[String]) -> Value {
    let map: serde_json::Map<String, Value> = keys
        .iter()
        .filter_map(|k| Some((k.clone(), item.get(k)?.clone())))
        .collect();
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn builtin_lists() {
        assert_eq!(builtin(&["spec"], "containers"), map(&["name"]));
        assert_eq!(
            builtin(&["spec", "template", "spec", "containers"], "ports"),
            map(&["containerPort", "protocol"])
        );
        assert_eq!(builtin(&["spec"], "ports"), map(&["port", "protocol"]));
        assert_eq!(builtin(&["spec"], "tolerations"), ListKind::Atomic);
        assert_eq!(builtin(&["metadata"], "finalizers"), ListKind::Set);
    }

    #[test]
    fn schema_lists() {
        let schema = json!({"properties": {"spec": {"properties": {"req": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["key"]}}}}});
        let ctx = Context::root(Some(&schema)).field("spec").field("req");
        assert_eq!(ctx.list_kind(), map(&["key"]));
        let meta = Context::root(Some(&schema)).field("metadata").field("finalizers");
        assert_eq!(meta.list_kind(), ListKind::Set);
    }
}
