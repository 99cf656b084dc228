//! Server-side apply (`PATCH` with `application/apply-patch+yaml`, kube-rs `Patch::Apply`).
//!
//! The applied configuration names the fields its manager wants to own, with their values:
//! - a field another manager owns with a different value is a conflict (409 listing each field
//!   and manager) unless `force=true`, which takes the field over;
//! - fields the manager applied before and no longer applies are removed, unless another manager
//!   also owns them;
//! - the configuration is merged into the live object: objects field by field, list-maps item by
//!   key, sets by union, atomic lists and scalars replaced;
//! - the manager's `Apply` entry in managedFields becomes exactly the configuration's fields.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::{
    error::{ApiError, ApiResult, Cause, Subject},
    listtype::{Context, ListKind, item_matches, key_of},
    managed::{self, Entry, FieldSet, fields_of, ownable, remove_at, schema_of, value_at},
    resources::ResourceInfo,
    store::Subresource,
};

/// Parses an apply body: YAML or JSON, one object.
pub fn parse_body(body: &[u8]) -> ApiResult<Value> {
    let value: Value = if let Ok(v) = serde_json::from_slice(body) {
        v
    } else {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::BadRequest("the apply body is not UTF-8".into()))?;
        serde_saphyr::from_str(text).map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest("the apply body must be an object".into()));
    }
    for key in ["apiVersion", "kind"] {
        if value.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(ApiError::BadRequest(format!("{key} must be set")));
        }
    }
    Ok(value)
}

fn render(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            out.push('[');
            out.push_str(key);
            out.push(']');
        } else if let Some(member) = element.strip_prefix("v:") {
            let _ = write!(out, "[={member}]");
        } else {
            let _ = write!(out, "[{element}]");
        }
    }
    out
}

/// Applies a configuration for `manager` to the live object (None when creating), returning the
/// merged object with managedFields updated.
pub fn apply(
    info: &ResourceInfo,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    sub: Subresource,
    now: &str,
) -> ApiResult<Value> {
    let ctx = Context::root(schema_of(info));
    let applied_view = ownable(info, applied, sub);
    let applied_fields = fields_of(&ctx, &applied_view);
    let empty = Value::Object(Map::new());
    let live_value = live.unwrap_or(&empty);
    let live_view = ownable(info, live_value, sub);
    let sub_name = managed::subresource_name(sub);
    let mut list = live.map(managed::entries).unwrap_or_default();
    let is_mine = |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == sub_name;

    let mut conflicts: Vec<(String, Vec<String>)> = Vec::new();
    let mut taken = FieldSet::default();
    for path in applied_fields.paths() {
        if applied_fields.has_children(&path) {
            continue; // a list item's existence never conflicts
        }
        let Some(current) = value_at(&live_view, &path) else {
            continue;
        };
        if Some(current) == value_at(&applied_view, &path) {
            continue;
        }
        let owners: Vec<String> = list
            .iter()
            .filter(|e| {
                !is_mine(e) && e.subresource == sub_name && e.manager != manager && e.fields.contains(&path)
            })
            .map(|e| e.manager.clone())
            .collect();
        if !owners.is_empty() {
            taken.insert(&path);
            conflicts.push((render(&path), owners));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(info, applied, &conflicts));
    }

    // Fields this manager applied before and no longer applies go, unless someone else owns them.
    let mut result = live_value.clone();
    if let Some(previous) = list.iter().find(|e| is_mine(e)) {
        let mut dropped = previous.fields.clone();
        dropped.subtract(&applied_fields);
        let mut paths = dropped.paths();
        paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for path in paths {
            let shared = list.iter().any(|e| !is_mine(e) && e.fields.touches(&path));
            if !shared && !applied_fields.touches(&path) {
                remove_at(&mut result, &path);
            }
        }
    }
    merge(&ctx, &mut result, applied);

    for entry in &mut list {
        if !is_mine(entry) {
            entry.fields.subtract(&taken);
        }
    }
    let api_version = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match list.iter_mut().find(|e| is_mine(e)) {
        Some(mine) => {
            mine.fields = applied_fields;
            now.clone_into(&mut mine.time);
            mine.api_version = api_version;
        }
        None => list.push(Entry {
            manager: manager.to_owned(),
            operation: "Apply".into(),
            subresource: sub_name.into(),
            api_version,
            time: now.to_owned(),
            fields: applied_fields,
        }),
    }
    managed::set_entries(&mut result, &list);
    Ok(result)
}

/// The 409 of an apply that would take fields from other managers.
fn conflict_error(info: &ResourceInfo, applied: &Value, conflicts: &[(String, Vec<String>)]) -> ApiError {
    let api_version = applied.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let causes: Vec<Cause> = conflicts
        .iter()
        .flat_map(|(field, owners)| {
            owners.iter().map(move |o| {
                Cause::new(
                    "FieldManagerConflict",
                    format!("conflict with \"{o}\" using {api_version}"),
                    field.clone(),
                )
            })
        })
        .collect();
    let lines: Vec<String> = causes
        .iter()
        .map(|c| format!("- {}: {}", c.message, c.field))
        .collect();
    let message = format!(
        "Apply failed with {} conflict{}: {}",
        causes.len(),
        if causes.len() == 1 { "" } else { "s" },
        lines.join("\n")
    );
    ApiError::Conflict {
        subject: Box::new(Subject {
            group: info.group.clone(),
            resource: info.plural.clone(),
            kind: info.kind.clone(),
            name: crate::meta::meta_str(applied, "name")
                .unwrap_or_default()
                .to_owned(),
        }),
        message,
        causes,
    }
}

/// Merges an applied configuration into a value.
fn merge(ctx: &Context<'_>, live: &mut Value, applied: &Value) {
    match (live, applied) {
        (Value::Object(live_map), Value::Object(applied_map)) => {
            for (key, value) in applied_map {
                if key == "managedFields" && ctx.parents.last() == Some(&"metadata") {
                    continue;
                }
                let child_ctx = ctx.field(key);
                match live_map.get_mut(key) {
                    Some(existing) => merge(&child_ctx, existing, value),
                    None => {
                        live_map.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(live_items), Value::Array(applied_items)) => match ctx.list_kind() {
            ListKind::Atomic => live_items.clone_from(applied_items),
            ListKind::Set => {
                for item in applied_items {
                    if !live_items.contains(item) {
                        live_items.push(item.clone());
                    }
                }
            }
            ListKind::Map(keys) => {
                let item_ctx = ctx.item();
                for item in applied_items {
                    let key = key_of(item, &keys);
                    match live_items.iter_mut().find(|i| item_matches(i, &keys, &key)) {
                        Some(existing) => merge(&item_ctx, existing, item),
                        None => live_items.push(item.clone()),
                    }
                }
            }
        },
        (live, applied) => *live = applied.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::Registry;

    fn deployments() -> std::sync::Arc<ResourceInfo> {
        Registry::with_builtins().get("apps", "deployments").unwrap()
    }

    fn config(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn second_manager_conflicts_then_forces() {
        let info = deployments();
        let first = apply(
            &info,
            None,
            &config(2, "a"),
            "alice",
            false,
            Subresource::Main,
            "t",
        )
        .unwrap();
        // Same values: shared ownership, no conflict.
        let shared = apply(
            &info,
            Some(&first),
            &config(2, "a"),
            "bob",
            false,
            Subresource::Main,
            "t",
        )
        .unwrap();
        assert_eq!(managed::entries(&shared).len(), 2);
        let err = apply(
            &info,
            Some(&first),
            &config(3, "a"),
            "bob",
            false,
            Subresource::Main,
            "t",
        )
        .unwrap_err();
        let ApiError::Conflict { causes, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, ".spec.replicas");
        assert!(err.to_string().contains("conflict with \"alice\""), "{err}");
        let forced = apply(
            &info,
            Some(&first),
            &config(3, "a"),
            "bob",
            true,
            Subresource::Main,
            "t",
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let alice = managed::entries(&forced)
            .into_iter()
            .find(|e| e.manager == "alice")
            .unwrap();
        assert!(!alice.fields.contains(&["f:spec".into(), "f:replicas".into()]));
    }

    #[test]
    fn fields_no_longer_applied_are_removed() {
        let info = deployments();
        let mut with_label = config(1, "a");
        with_label["metadata"]["labels"] = json!({"team": "x", "tier": "web"});
        let first = apply(&info, None, &with_label, "alice", false, Subresource::Main, "t").unwrap();
        let mut fewer = config(1, "a");
        fewer["metadata"]["labels"] = json!({"tier": "web"});
        let second = apply(
            &info,
            Some(&first),
            &fewer,
            "alice",
            false,
            Subresource::Main,
            "t",
        )
        .unwrap();
        assert_eq!(second["metadata"]["labels"], json!({"tier": "web"}));
    }

    #[test]
    fn list_maps_merge_by_key() {
        let info = deployments();
        let live = apply(
            &info,
            None,
            &config(1, "a"),
            "alice",
            false,
            Subresource::Main,
            "t",
        )
        .unwrap();
        let mut sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s"}]}}}});
        sidecar = apply(&info, Some(&live), &sidecar, "bob", false, Subresource::Main, "t").unwrap();
        let names: Vec<&str> = sidecar["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c", "side"]);
    }

    #[test]
    fn yaml_and_json_bodies_parse() {
        assert!(parse_body(b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n").is_ok());
        assert!(parse_body(br#"{"apiVersion":"v1","kind":"ConfigMap"}"#).is_ok());
        assert_eq!(parse_body(b"kind: ConfigMap\n").unwrap_err().code(), 400);
        assert_eq!(parse_body(b"{not json").unwrap_err().code(), 400);
    }
}
