//! What an API server does to a custom resource with its CRD's structural schema, in order:
//! prune unknown fields (or reject them under `fieldValidation=Strict`), apply `default`s, then
//! validate: types, required fields and enums (`nodewright_api::structural::check`), patterns,
//! numeric bounds, lengths, item and property counts, list-type uniqueness, and the CEL
//! `x-kubernetes-validations` rules (kube-cel, with `oldSelf` on updates). Every failure becomes a
//! cause of one 422 Invalid naming its field.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
};

use kube_cel::Validator;
use nodewright_api::{
    structural,
    validation::{ErrorType, FieldPath, Problems},
};
use regex::Regex;
use serde_json::{Map, Value};

use crate::error::Cause;

thread_local! {
    static CEL: Validator = Validator::new();
    static PATTERNS: RefCell<HashMap<String, Option<Regex>>> = RefCell::new(HashMap::new());
}

/// Removes fields the schema does not know, returning their paths.
pub fn prune(schema: &Value, value: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    prune_at(schema, value, &FieldPath::default(), true, &mut unknown);
    unknown
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

fn prune_at(schema: &Value, value: &mut Value, path: &FieldPath, root: bool, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
            let mut drop = Vec::new();
            for (key, child) in map.iter_mut() {
                if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(child_schema) = props.and_then(|p| p.get(key)) {
                    prune_at(child_schema, child, &path.child(key), false, unknown);
                } else if let Some(child_schema) = additional.filter(|a| a.is_object()) {
                    prune_at(child_schema, child, &path.key(key), false, unknown);
                } else if !(preserve || additional.and_then(Value::as_bool) == Some(true)) {
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
                    prune_at(item_schema, item, &path.index(i), false, unknown);
                }
            }
        }
        _ => {}
    }
}

/// Fills in schema defaults, including defaults nested inside a defaulted value (a defaulted
/// `disruption: {}` then gets its `budgets` default), as the API server's defaulting walks into
/// what it just set.
pub fn default(schema: &Value, value: &Value) -> Value {
    let mut current = kube_cel::apply_defaults(schema, value);
    // Each pass can only add fields one level deeper; schemas are far shallower than this bound.
    for _ in 0..32 {
        let next = kube_cel::apply_defaults(schema, &current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// Every validation failure of an object against its schema (empty when valid).
/// `compiled` is the schema's CEL rules compiled ahead (compiled on the fly when `None`).
pub fn validate(
    schema: &Value,
    compiled: Option<&kube_cel::CompiledSchema>,
    value: &Value,
    old: Option<&Value>,
) -> Vec<Cause> {
    let mut problems = Problems::new();
    structural::check(schema, value, &FieldPath::default(), &mut problems);
    let mut causes: Vec<Cause> = problems.iter().map(field_error_cause).collect();
    bounds(schema, value, &FieldPath::default(), &mut causes);
    if causes.is_empty() {
        // CEL rules assume a structurally valid object, as the API server only runs them then.
        causes.extend(cel(schema, compiled, value, old));
    }
    causes
}

fn field_error_cause(error: &nodewright_api::FieldError) -> Cause {
    let reason = match error.error_type {
        ErrorType::Required => "FieldValueRequired",
        ErrorType::Invalid => "FieldValueInvalid",
        ErrorType::Forbidden => "FieldValueForbidden",
        ErrorType::NotSupported => "FieldValueNotSupported",
        ErrorType::TooLong => "FieldValueTooLong",
        ErrorType::TooMany => "FieldValueTooMany",
        ErrorType::Duplicate => "FieldValueDuplicate",
    };
    let full = error.to_string();
    let message = full
        .strip_prefix(&format!("{}: ", error.field))
        .unwrap_or(&full)
        .to_owned();
    Cause::new(reason, message, error.field.clone())
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn invalid(causes: &mut Vec<Cause>, path: &FieldPath, value: &Value, detail: &str) {
    causes.push(Cause::new(
        "FieldValueInvalid",
        format!("Invalid value: {}: {path} in body {detail}", shown(value)),
        path.to_string(),
    ));
}

fn pattern_matches(pattern: &str, text: &str) -> bool {
    PATTERNS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let regex = cache
            .entry(pattern.to_owned())
            .or_insert_with(|| Regex::new(pattern).ok());
        // A pattern the regex engine cannot compile is not enforced (the API server would have
        // refused the CRD; ours accepts it and skips the check).
        regex.as_ref().is_none_or(|r| r.is_match(text))
    })
}

fn number_bounds(schema: &Value, value: &Value, path: &FieldPath, causes: &mut Vec<Cause>) {
    let Some(n) = value.as_f64() else { return };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if flag(schema, "exclusiveMinimum") && n <= min {
            invalid(causes, path, value, &format!("should be greater than {min}"));
        } else if n < min {
            invalid(
                causes,
                path,
                value,
                &format!("should be greater than or equal to {min}"),
            );
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if flag(schema, "exclusiveMaximum") && n >= max {
            invalid(causes, path, value, &format!("should be less than {max}"));
        } else if n > max {
            invalid(
                causes,
                path,
                value,
                &format!("should be less than or equal to {max}"),
            );
        }
    }
}

fn string_bounds(schema: &Value, text: &str, value: &Value, path: &FieldPath, causes: &mut Vec<Cause>) {
    let len = text.chars().count();
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len as u64 > max
    {
        causes.push(Cause::new(
            "FieldValueTooLong",
            format!("Too long: may not be more than {max} bytes"),
            path.to_string(),
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && (len as u64) < min
    {
        invalid(
            causes,
            path,
            value,
            &format!("should be at least {min} chars long"),
        );
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && !pattern_matches(pattern, text)
    {
        invalid(causes, path, value, &format!("should match '{pattern}'"));
    }
}

fn list_bounds(schema: &Value, items: &[Value], value: &Value, path: &FieldPath, causes: &mut Vec<Cause>) {
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && items.len() as u64 > max
    {
        causes.push(Cause::new(
            "FieldValueTooMany",
            format!("Too many: {}: must have at most {max} items", items.len()),
            path.to_string(),
        ));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        invalid(causes, path, value, &format!("should have at least {min} items"));
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            let mut seen = HashSet::new();
            for (i, item) in items.iter().enumerate() {
                if !seen.insert(item.to_string()) {
                    causes.push(Cause::new(
                        "FieldValueDuplicate",
                        format!("Duplicate value: {}", shown(item)),
                        path.index(i).to_string(),
                    ));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut seen = HashSet::new();
            for (i, item) in items.iter().enumerate() {
                let key: Vec<String> = keys
                    .iter()
                    .map(|k| item.get(*k).map(Value::to_string).unwrap_or_default())
                    .collect();
                if !seen.insert(key) {
                    let shown_key: Map<String, Value> = keys
                        .iter()
                        .filter_map(|k| Some(((*k).to_owned(), item.get(*k)?.clone())))
                        .collect();
                    causes.push(Cause::new(
                        "FieldValueDuplicate",
                        format!("Duplicate value: {}", Value::Object(shown_key)),
                        path.index(i).to_string(),
                    ));
                }
            }
        }
        _ => {}
    }
}

/// Patterns, numeric bounds, lengths, counts and list uniqueness.
fn bounds(schema: &Value, value: &Value, path: &FieldPath, causes: &mut Vec<Cause>) {
    match value {
        Value::Number(_) => number_bounds(schema, value, path, causes),
        Value::String(text) => string_bounds(schema, text, value, path, causes),
        Value::Array(items) => {
            list_bounds(schema, items, value, path, causes);
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    bounds(item_schema, item, &path.index(i), causes);
                }
            }
        }
        Value::Object(map) => {
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
                && map.len() as u64 > max
            {
                causes.push(Cause::new(
                    "FieldValueTooMany",
                    format!("Too many: {}: must have at most {max} items", map.len()),
                    path.to_string(),
                ));
            }
            if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
                && (map.len() as u64) < min
            {
                invalid(
                    causes,
                    path,
                    value,
                    &format!("should have at least {min} properties"),
                );
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                if let Some(child_schema) = props.and_then(|p| p.get(key)) {
                    bounds(child_schema, child, &path.child(key), causes);
                } else if let Some(child_schema) = additional {
                    bounds(child_schema, child, &path.key(key), causes);
                }
            }
        }
        _ => {}
    }
}

/// The CEL rules, evaluated by kube-cel (defaults applied first, `oldSelf` bound on updates).
fn cel(
    schema: &Value,
    compiled: Option<&kube_cel::CompiledSchema>,
    value: &Value,
    old: Option<&Value>,
) -> Vec<Cause> {
    let result = CEL.with(|validator| match compiled {
        Some(compiled) => validator.validate_compiled(compiled, value, old),
        None => validator.validate(schema, value, old),
    });
    match result {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| {
                let at = if e.field_path.is_empty() {
                    value
                } else {
                    structural_lookup(value, &e.field_path).unwrap_or(value)
                };
                Cause::new(
                    e.reason.as_deref().unwrap_or("FieldValueInvalid"),
                    format!("Invalid value: {}: {}", shown(at), e.message),
                    e.field_path.clone(),
                )
            })
            .collect(),
    }
}

/// Finds the value at a kube-cel field path (`spec.template.spec.requirements[0]`).
fn structural_lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = value;
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for index in rest
            .split('[')
            .map(|s| s.trim_end_matches(']'))
            .filter(|s| !s.is_empty())
        {
            cur = match index.parse::<usize>() {
                Ok(i) => cur.get(i)?,
                Err(_) => cur.get(index)?,
            };
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "weight": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    },
                    "x-kubernetes-validations": [{"rule": "self.weight != 13", "message": "unlucky"}]
                }
            }
        })
    }

    #[test]
    fn prunes_unknown_fields_but_keeps_preserved_ones() {
        let mut v = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"name": "a", "bogus": 1, "free": {"any": 1}}, "extra": true});
        let unknown = prune(&schema(), &mut v);
        assert_eq!(unknown, ["spec.bogus", "extra"]);
        assert_eq!(v["spec"]["free"]["any"], 1);
        assert_eq!(v["metadata"]["name"], "a");
    }

    #[test]
    fn defaults_then_bounds_then_cel() {
        let v = default(&schema(), &json!({"spec": {"name": "abc"}}));
        assert_eq!(v["spec"]["weight"], 10);
        let nested = json!({"properties": {"a": {"type": "object", "default": {}, "properties": {"b": {"type": "integer", "default": 3}}}}});
        assert_eq!(default(&nested, &json!({})), json!({"a": {"b": 3}}));
        assert!(validate(&schema(), None, &v, None).is_empty());

        let bad = json!({"spec": {"name": "ABCDEFG", "weight": 0, "tags": ["a", "a", "b"]}});
        let fields: Vec<String> = validate(&schema(), None, &bad, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.name",
                "spec.name",
                "spec.tags",
                "spec.tags[1]",
                "spec.weight"
            ]
        );

        let unlucky = json!({"spec": {"name": "abc", "weight": 13}});
        let causes = validate(&schema(), None, &unlucky, None);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec");
        assert!(causes[0].message.contains("unlucky"), "{causes:?}");
    }

    #[test]
    fn structural_errors_are_reported_as_causes() {
        let causes = validate(&schema(), None, &json!({"spec": {"weight": "heavy"}}), None);
        let reasons: Vec<&str> = causes.iter().map(|c| c.reason.as_str()).collect();
        assert_eq!(reasons, ["FieldValueRequired", "FieldValueInvalid"]);
    }
}
