//! The OpenAPI schemas of built-in kinds, generated from k8s-openapi's types (schemars), so the
//! server treats unknown fields of built-in objects as the API server does: dropped, or refused
//! under `fieldValidation=Strict` (kubectl's default) with the field named. They also make
//! `kubectl explain` work for built-in kinds.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
};

use k8s_openapi::api as k;
use nodewright_api::validation::FieldPath;
use serde_json::Value;

/// Schemas are shared trees (`$defs` referenced by `#/$defs/...`); deeper than this is a cycle.
const MAX_DEPTH: usize = 64;

macro_rules! schemas {
    ($($group:literal, $plural:literal => $ty:ty;)*) => {
        fn generate() -> HashMap<(&'static str, &'static str), Arc<Value>> {
            let mut map = HashMap::new();
            $(
                // Serializing a schemars schema cannot fail: it is a JSON value already.
                let value = serde_json::to_value(schemars::schema_for!($ty)).unwrap_or(Value::Null);
                map.insert(($group, $plural), Arc::new(value));
            )*
            map
        }
    };
}

schemas! {
    "", "pods" => k::core::v1::Pod;
    "", "nodes" => k::core::v1::Node;
    "", "namespaces" => k::core::v1::Namespace;
    "", "events" => k::core::v1::Event;
    "", "configmaps" => k::core::v1::ConfigMap;
    "", "secrets" => k::core::v1::Secret;
    "", "services" => k::core::v1::Service;
    "", "serviceaccounts" => k::core::v1::ServiceAccount;
    "", "podtemplates" => k::core::v1::PodTemplate;
    "", "persistentvolumes" => k::core::v1::PersistentVolume;
    "", "persistentvolumeclaims" => k::core::v1::PersistentVolumeClaim;
    "apps", "deployments" => k::apps::v1::Deployment;
    "apps", "replicasets" => k::apps::v1::ReplicaSet;
    "apps", "daemonsets" => k::apps::v1::DaemonSet;
    "apps", "statefulsets" => k::apps::v1::StatefulSet;
    "batch", "jobs" => k::batch::v1::Job;
    "policy", "poddisruptionbudgets" => k::policy::v1::PodDisruptionBudget;
    "coordination.k8s.io", "leases" => k::coordination::v1::Lease;
    "scheduling.k8s.io", "priorityclasses" => k::scheduling::v1::PriorityClass;
    "storage.k8s.io", "storageclasses" => k::storage::v1::StorageClass;
    "storage.k8s.io", "volumeattachments" => k::storage::v1::VolumeAttachment;
    "storage.k8s.io", "csinodes" => k::storage::v1::CSINode;
    "storage.k8s.io", "csidrivers" => k::storage::v1::CSIDriver;
    "events.k8s.io", "events" => k::events::v1::Event;
    "rbac.authorization.k8s.io", "clusterroles" => k::rbac::v1::ClusterRole;
    "rbac.authorization.k8s.io", "clusterrolebindings" => k::rbac::v1::ClusterRoleBinding;
    "rbac.authorization.k8s.io", "roles" => k::rbac::v1::Role;
    "rbac.authorization.k8s.io", "rolebindings" => k::rbac::v1::RoleBinding;
    "apiextensions.k8s.io", "customresourcedefinitions" =>
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
}

static SCHEMAS: LazyLock<HashMap<(&'static str, &'static str), Arc<Value>>> = LazyLock::new(generate);

/// The schema of a built-in type (with its `$defs`), if the server knows one.
pub fn schema_of(group: &str, plural: &str) -> Option<Arc<Value>> {
    SCHEMAS.get(&(group, plural)).cloned()
}

/// Follows `$ref`s to the schema they name.
fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..MAX_DEPTH {
        let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        else {
            return schema;
        };
        match root.get("$defs").and_then(|d| d.get(name)) {
            Some(target) => schema = target,
            None => return schema,
        }
    }
    schema
}

/// Removes the fields a built-in kind does not have, returning their paths.
pub fn prune(root: &Value, value: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    prune_at(root, root, value, &FieldPath::default(), &mut unknown, 0);
    unknown
}

fn prune_at(
    root: &Value,
    schema: &Value,
    value: &mut Value,
    path: &FieldPath,
    unknown: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let schema = resolve(root, schema);
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let mut drop = Vec::new();
            for (key, child) in map.iter_mut() {
                if let Some(child_schema) = props.and_then(|p| p.get(key)) {
                    prune_at(root, child_schema, child, &path.child(key), unknown, depth + 1);
                } else if let Some(child_schema) = additional.filter(|a| a.is_object()) {
                    prune_at(root, child_schema, child, &path.key(key), unknown, depth + 1);
                } else if props.is_some() && additional.is_none_or(|a| a == &Value::Bool(false)) {
                    drop.push(key.clone());
                }
            }
            for key in drop {
                map.remove(&key);
                unknown.push(path.child(&key).to_string());
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_at(root, item_schema, item, &path.index(i), unknown, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// A field whose JSON type does not fit the kind, as the API server's decoder refuses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    /// Where (`spec.replicas`).
    pub field: String,
    /// The type the kind has there.
    pub expected: &'static str,
    /// The JSON type sent.
    pub found: &'static str,
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks JSON types against a built-in kind's schema (null is accepted anywhere: it means
/// unset), turning numeric quantities into the strings the API server stores.
pub fn check_types(root: &Value, value: &mut Value) -> Vec<TypeError> {
    let mut errors = Vec::new();
    check_at(root, root, value, &FieldPath::default(), &mut errors, 0);
    errors
}

/// Definitions that hold any JSON although the generated schema says otherwise (CRD `default`
/// and `example` values are `JSON`, typed `{"type": "object"}`).
fn is_free_form(schema: &Value) -> bool {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .is_some_and(|r| r.ends_with("apiextensions.v1.JSON") || r.ends_with("runtime.RawExtension"))
}

fn is_quantity(schema: &Value) -> bool {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .is_some_and(|r| r.ends_with("pkg.api.resource.Quantity"))
}

fn check_at(
    root: &Value,
    schema: &Value,
    value: &mut Value,
    path: &FieldPath,
    errors: &mut Vec<TypeError>,
    depth: usize,
) {
    if depth > MAX_DEPTH || value.is_null() {
        return;
    }
    if is_free_form(schema) {
        return;
    }
    if is_quantity(schema) {
        match value {
            Value::Number(n) => *value = Value::String(n.to_string()),
            Value::String(_) => {}
            other => errors.push(TypeError {
                field: path.to_string(),
                expected: "quantity",
                found: json_type(other),
            }),
        }
        return;
    }
    let schema = resolve(root, schema);
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(TypeError {
                field: path.to_string(),
                expected: "integer or string",
                found: json_type(value),
            });
        }
        return;
    }
    let expected = match schema.get("type").and_then(Value::as_str) {
        Some("string") => "string",
        Some("integer") => "integer",
        Some("number") => "number",
        Some("boolean") => "boolean",
        Some("array") => "array",
        Some("object") => "object",
        _ => return,
    };
    let fits = match expected {
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        other => json_type(value) == other,
    };
    if !fits {
        errors.push(TypeError {
            field: path.to_string(),
            expected,
            found: json_type(value),
        });
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map.iter_mut() {
                if let Some(child_schema) = props.and_then(|p| p.get(key)) {
                    check_at(root, child_schema, child, &path.child(key), errors, depth + 1);
                } else if let Some(child_schema) = additional {
                    check_at(root, child_schema, child, &path.key(key), errors, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    check_at(root, item_schema, item, &path.index(i), errors, depth + 1);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_fields_of_built_in_kinds_are_found_at_any_depth() {
        let schema = schema_of("apps", "deployments").unwrap();
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "b"}, "bogus": 1},
            "spec": {"replica": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                         {"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}, "imagePullPolice": "Always"}]}}},
            "status": {"replicas": 1}
        });
        let mut unknown = prune(&schema, &mut d);
        unknown.sort();
        assert_eq!(
            unknown,
            [
                "metadata.bogus",
                "spec.replica",
                "spec.template.spec.containers[0].imagePullPolice"
            ]
        );
        assert_eq!(d["metadata"]["labels"]["a"], "b");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "1"
        );
        assert!(schema_of("", "pods").is_some());
        assert!(schema_of("example.com", "widgets").is_none());
    }

    #[test]
    fn types_are_checked_and_quantities_become_strings() {
        let schema = schema_of("apps", "deployments").unwrap();
        let mut d = json!({
            "metadata": {"name": "web", "labels": {"a": 1}},
            "spec": {"replicas": "three", "paused": null, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
                     "template": {"spec": {"containers": [
                         {"name": "c", "resources": {"requests": {"cpu": 1, "memory": "1Gi"}}, "ports": [{"containerPort": "80"}]}]}}}
        });
        let errors = check_types(&schema, &mut d);
        let fields: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.expected)).collect();
        assert_eq!(
            fields,
            [
                ("metadata.labels[a]", "string"),
                ("spec.replicas", "integer"),
                (
                    "spec.template.spec.containers[0].ports[0].containerPort",
                    "integer"
                ),
            ]
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "1"
        );
    }

    #[test]
    fn free_form_values_are_left_alone() {
        let schema = schema_of("apiextensions.k8s.io", "customresourcedefinitions").unwrap();
        let mut crd = serde_json::to_value(nodewright_api::crds::all().remove(0)).unwrap();
        let before = crd.clone();
        assert_eq!(prune(&schema, &mut crd), Vec::<String>::new());
        assert_eq!(check_types(&schema, &mut crd), Vec::<TypeError>::new());
        assert_eq!(crd, before);
    }
}
