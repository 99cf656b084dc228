//! A structural check of a JSON document against a CRD's OpenAPI schema: required fields, JSON
//! types and enums. Strict decoding runs it first so a manifest with several missing or mistyped
//! fields gets all of them reported at once, as an API server reports them, instead of only the
//! first one a typed decoder trips over.

use std::{collections::BTreeMap, sync::LazyLock};

use serde_json::Value;

use crate::{
    crds,
    validation::{FieldPath, Problems},
};

/// The `openAPIV3Schema` of each kind Nodewright serves, generated once.
static SCHEMAS: LazyLock<BTreeMap<String, Value>> = LazyLock::new(|| {
    crds::all()
        .into_iter()
        .filter_map(|crd| {
            let schema = crd
                .spec
                .versions
                .first()?
                .schema
                .as_ref()?
                .open_api_v3_schema
                .as_ref()?;
            Some((crd.spec.names.kind.clone(), serde_json::to_value(schema).ok()?))
        })
        .collect()
});

/// The CRD schema of a kind Nodewright serves.
pub fn schema_of(kind: &str) -> Option<&'static Value> {
    SCHEMAS.get(kind)
}

/// Missing required fields, values of the wrong JSON type and values outside an enum.
pub fn check(schema: &Value, value: &Value, path: &FieldPath, problems: &mut Problems) {
    if value.is_null() {
        return; // null means unset; `required` is checked by the parent
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            problems.invalid(path, &describe(value), "must be an integer or a string");
        }
        return;
    }
    let Some(expected) = schema.get("type").and_then(Value::as_str) else {
        return;
    };
    if !has_type(value, expected) {
        problems.invalid(path, &describe(value), format!("must be of type {expected}"));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
        problems.not_supported(path, &describe(value), &names);
    }
    match value {
        Value::Object(map) => {
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = required.as_str() else { continue };
                if map.get(name).is_none_or(Value::is_null) {
                    problems.required(&path.child(name), "");
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                    check(child_schema, child, &path.child(key), problems);
                } else if let Some(child_schema) = additional {
                    check(child_schema, child, &path.key(key), problems);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &path.index(i), problems);
                }
            }
        }
        _ => {}
    }
}

fn has_type(value: &Value, expected: &str) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Object(_) => "object".into(),
        Value::Array(_) => "array".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(kind: &str, value: &Value) -> Vec<String> {
        let mut problems = Problems::new();
        check(
            schema_of(kind).unwrap(),
            value,
            &FieldPath::default(),
            &mut problems,
        );
        problems.iter().map(|e| e.field.clone()).collect()
    }

    #[test]
    fn reports_every_missing_and_mistyped_field() {
        let class = json!({ "metadata": { "name": "x" }, "spec": { "amiSelectorTerms": "al2023", "role": 7, "metadataOptions": { "httpTokens": "maybe" } } });
        assert_eq!(
            fields("EC2NodeClass", &class),
            [
                "spec.securityGroupSelectorTerms",
                "spec.subnetSelectorTerms",
                "spec.amiSelectorTerms",
                "spec.metadataOptions.httpTokens",
                "spec.role"
            ]
        );
        let pool = json!({ "spec": { "disruption": { "budgets": [{ "reasons": ["Expired", "Empty", "Consolidation"] }] }, "limits": { "cpu": 4, "memory": [] } } });
        assert_eq!(
            fields("NodePool", &pool),
            [
                "spec.template",
                "spec.disruption.budgets[0].reasons[0]",
                "spec.disruption.budgets[0].reasons[2]",
                "spec.limits[memory]"
            ]
        );
    }
}
