//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), with a CRD's
//! `additionalPrinterColumns` (a JSONPath subset: `.a.b`, `.a[0]`, `.a[*].b`,
//! `.a[?(@.type=="Ready")].status`) and kubectl's usual columns for common built-in kinds.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::{crd::PrinterColumn, meta, resources::ResourceInfo, store::Obj};

/// What a table row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

fn column(name: &str, type_: &str, priority: i64, format: &str) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        format: format.into(),
        description: String::new(),
        priority,
        json_path: String::new(),
    }
}

/// The columns of a type (Name first).
pub fn columns(info: &ResourceInfo, version: &str) -> Vec<PrinterColumn> {
    if info.group.is_empty() && info.plural == "events" {
        return vec![
            column("Last Seen", "string", 0, ""),
            column("Type", "string", 0, ""),
            column("Reason", "string", 0, ""),
            column("Object", "string", 0, ""),
            column("Message", "string", 0, ""),
            column("Name", "string", 1, "name"),
        ];
    }
    let mut cols = vec![column("Name", "string", 0, "name")];
    if let Some(crd) = &info.crd {
        let custom = crd.columns.get(version).cloned().unwrap_or_default();
        if custom.is_empty() {
            cols.push(column("Age", "date", 0, ""));
        }
        cols.extend(custom);
        return cols;
    }
    let extra: &[(&str, &str, i64)] = match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => &[
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "date", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
        ("", "nodes") => &[
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "date", 0),
            ("Version", "string", 0),
        ],
        ("", "namespaces") => &[("Status", "string", 0), ("Age", "date", 0)],
        ("apps", "deployments") => &[
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "date", 0),
        ],
        ("apps", "replicasets") => &[
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "date", 0),
        ],
        _ => &[("Age", "date", 0)],
    };
    cols.extend(extra.iter().map(|(n, t, p)| column(n, t, *p, "")));
    cols
}

/// A human age as kubectl prints it (`45s`, `12m`, `5h`, `3d`).
pub fn age(created: Option<&str>, now: Timestamp) -> String {
    let Some(created) = created.and_then(meta::parse_time) else {
        return "<unknown>".into();
    };
    let secs = now.as_second().saturating_sub(created.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 && s % 60 == 0 => format!("{}m", s / 60),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 && (s % 3600) / 60 == 0 => format!("{}h", s / 3600),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s if s < 8 * 86_400 && (s % 86_400) / 3600 == 0 => format!("{}d", s / 86_400),
        s if s < 8 * 86_400 => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn int(value: &Value, path: &str) -> i64 {
    crate::selector::lookup(value, path)
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn text(value: &Value, path: &str) -> String {
    crate::selector::field_string(crate::selector::lookup(value, path))
}

fn condition(value: &Value, type_: &str) -> Option<String> {
    value
        .get("status")?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        .and_then(|c| c.get("status")?.as_str().map(str::to_owned))
}

fn builtin_cell(info: &ResourceInfo, name: &str, value: &Value, now: Timestamp) -> Value {
    let created = value
        .get("metadata")
        .and_then(|m| m.get("creationTimestamp"))
        .and_then(Value::as_str);
    match (info.plural.as_str(), name) {
        (_, "Age") => age(created, now).into(),
        ("pods", "Ready") => {
            let statuses = value
                .get("status")
                .and_then(|s| s.get("containerStatuses"))
                .and_then(Value::as_array);
            let total = value
                .get("spec")
                .and_then(|s| s.get("containers"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses
                .into_iter()
                .flatten()
                .filter(|c| c.get("ready") == Some(&Value::Bool(true)))
                .count();
            format!("{ready}/{total}").into()
        }
        ("pods", "Status") => {
            if value
                .get("metadata")
                .and_then(|m| m.get("deletionTimestamp"))
                .is_some()
            {
                "Terminating".into()
            } else {
                text(value, "status.phase").into()
            }
        }
        ("pods", "Restarts") => {
            let restarts: i64 = value
                .get("status")
                .and_then(|s| s.get("containerStatuses"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                .sum();
            restarts.to_string().into()
        }
        ("pods", "IP") => text(value, "status.podIP").into(),
        ("pods", "Node") => text(value, "spec.nodeName").into(),
        ("nodes", "Status") => {
            let mut status = match condition(value, "Ready").as_deref() {
                Some("True") => "Ready".to_owned(),
                Some(_) => "NotReady".to_owned(),
                None => "Unknown".to_owned(),
            };
            if value.get("spec").and_then(|s| s.get("unschedulable")) == Some(&Value::Bool(true)) {
                status.push_str(",SchedulingDisabled");
            }
            status.into()
        }
        ("events", "Last Seen") => {
            let last = [
                "series.lastObservedTime",
                "lastTimestamp",
                "eventTime",
                "firstTimestamp",
            ]
            .iter()
            .find_map(|p| crate::selector::lookup(value, p).and_then(Value::as_str));
            age(last.or(created), now).into()
        }
        ("events", "Type") => text(value, "type").into(),
        ("events", "Reason") => text(value, "reason").into(),
        ("events", "Object") => format!(
            "{}/{}",
            text(value, "involvedObject.kind").to_lowercase(),
            text(value, "involvedObject.name")
        )
        .into(),
        ("events", "Message") => text(value, "message").into(),
        ("nodes", "Roles") => "<none>".into(),
        ("nodes", "Version") => text(value, "status.nodeInfo.kubeletVersion").into(),
        ("namespaces", "Status") => text(value, "status.phase").into(),
        ("deployments", "Ready") => format!(
            "{}/{}",
            int(value, "status.readyReplicas"),
            int(value, "spec.replicas")
        )
        .into(),
        ("deployments", "Up-to-date") => int(value, "status.updatedReplicas").into(),
        ("deployments", "Available") => int(value, "status.availableReplicas").into(),
        ("replicasets", "Desired") => int(value, "spec.replicas").into(),
        ("replicasets", "Current") => int(value, "status.replicas").into(),
        ("replicasets", "Ready") => int(value, "status.readyReplicas").into(),
        _ => Value::Null,
    }
}

fn custom_cell(column: &PrinterColumn, value: &Value, now: Timestamp) -> Value {
    let Some(found) = jsonpath(value, &column.json_path).into_iter().next() else {
        return Value::Null;
    };
    match column.type_.as_str() {
        "date" => age(found.as_str(), now).into(),
        "integer" | "number" | "boolean" => found.clone(),
        _ => match found {
            Value::String(s) => s.clone().into(),
            Value::Null => Value::Null,
            other => other.to_string().into(),
        },
    }
}

/// The cells of one row.
pub fn cells(info: &ResourceInfo, columns: &[PrinterColumn], value: &Value, now: Timestamp) -> Vec<Value> {
    columns
        .iter()
        .map(|c| {
            if c.name == "Name" && c.format == "name" {
                value
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .cloned()
                    .unwrap_or(Value::Null)
            } else if info.crd.is_some() && !c.json_path.is_empty() {
                custom_cell(c, value, now)
            } else {
                builtin_cell(info, &c.name, value, now)
            }
        })
        .collect()
}

/// `PartialObjectMetadata` of an object.
pub fn partial_metadata(value: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": value.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A Table of objects.
pub fn table(
    info: &ResourceInfo,
    version: &str,
    objects: &[&Obj],
    rv: u64,
    continue_token: Option<&str>,
    include: IncludeObject,
    now: Timestamp,
) -> Value {
    let cols = columns(info, version);
    let definitions: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let value = obj.value();
            let mut row = json!({"cells": cells(info, &cols, &value, now)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(&value),
                IncludeObject::Object => row["object"] = value,
            }
            row
        })
        .collect();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(token) = continue_token {
        metadata["continue"] = token.into();
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// Evaluates the JSONPath subset printer columns use.
pub fn jsonpath<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut current = vec![value];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let (name, tail) = after.split_at(end);
            if !name.is_empty() {
                current = current.into_iter().filter_map(|v| v.get(name)).collect();
            }
            rest = tail;
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return Vec::new();
            };
            let (inside, tail) = (&after[..end], &after[end + 1..]);
            current = current.into_iter().flat_map(|v| subscript(v, inside)).collect();
            rest = tail;
        } else {
            return Vec::new();
        }
    }
    current
}

fn subscript<'a>(value: &'a Value, inside: &str) -> Vec<&'a Value> {
    let items: Vec<&Value> = value.as_array().map(|a| a.iter().collect()).unwrap_or_default();
    if inside == "*" {
        return items;
    }
    if let Ok(i) = inside.parse::<usize>() {
        return items.get(i).copied().into_iter().collect();
    }
    let Some(filter) = inside.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) else {
        return Vec::new();
    };
    let Some((lhs, rhs)) = filter.split_once("==") else {
        return Vec::new();
    };
    let field = lhs.trim().trim_start_matches('@');
    let expected = rhs.trim().trim_matches(|c| c == '"' || c == '\'');
    items
        .into_iter()
        .filter(|item| {
            jsonpath(item, field)
                .first()
                .is_some_and(|v| crate::selector::field_string(Some(v)) == expected)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let v = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}, "spec": {"x": [{"n": 1}, {"n": 2}]}});
        assert_eq!(
            jsonpath(&v, ".status.conditions[?(@.type==\"Ready\")].status"),
            [&json!("True")]
        );
        assert_eq!(jsonpath(&v, ".spec.x[*].n"), [&json!(1), &json!(2)]);
        assert_eq!(jsonpath(&v, ".spec.x[1].n"), [&json!(2)]);
        assert!(jsonpath(&v, ".spec.missing").is_empty());
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now: Timestamp = "2024-01-02T00:00:00Z".parse().unwrap();
        assert_eq!(age(Some("2024-01-01T23:59:30Z"), now), "30s");
        assert_eq!(age(Some("2024-01-01T23:55:00Z"), now), "5m");
        assert_eq!(age(Some("2024-01-01T23:54:50Z"), now), "5m10s");
        assert_eq!(age(Some("2024-01-01T23:00:00Z"), now), "60m");
        assert_eq!(age(Some("2023-12-30T00:00:00Z"), now), "3d");
        assert_eq!(age(None, now), "<unknown>");
    }
}
