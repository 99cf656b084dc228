//! The patch types of `PATCH`: JSON merge patch (RFC 7386), JSON patch (RFC 6902), both from the
//! json-patch crate, and strategic merge patch for built-in kinds.
//!
//! Strategic merge patch subset: objects merge field by field (`null` deletes); lists with a
//! merge key merge item by item (containers, initContainers, ephemeralContainers, volumes, env and
//! imagePullSecrets by `name`; container ports by `containerPort`; service ports by `port`;
//! volumeMounts by `mountPath`; conditions and node addresses by `type`; taints by `key`;
//! hostAliases by `ip`; topologySpreadConstraints by `topologyKey`; ownerReferences by `uid`);
//! finalizers merge as a set; every other list (tolerations, args, command, ...) is replaced
//! whole. Directives: `$patch: replace|delete|merge` on objects and list items,
//! `$deleteFromPrimitiveList/<field>`, `$retainKeys`; `$setElementOrder/<field>` is accepted and
//! ignored (merged lists keep the live order, new items are appended).

use serde_json::{Map, Value};

use crate::{
    error::{ApiError, ApiResult},
    listtype::{Context, ListKind},
};

/// The patch types, by content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply; see `crate::apply`).
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header.
    pub fn from_content_type(content_type: &str) -> ApiResult<Self> {
        let base = content_type.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            _ => Err(ApiError::UnsupportedMediaType(
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
                    .into(),
            )),
        }
    }
}

fn parse(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))
}

/// Applies a JSON merge patch.
pub fn merge_patch(target: &mut Value, body: &[u8]) -> ApiResult<()> {
    let patch = parse(body)?;
    json_patch::merge(target, &patch);
    Ok(())
}

/// Applies a JSON patch, atomically. As Kubernetes' implementation does (and kube-runtime's
/// finalizer helper relies on), a `test` for `null` passes when the path does not exist.
pub fn json_patch(target: &mut Value, body: &[u8]) -> ApiResult<()> {
    let patch: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding JSON patch: {e}")))?;
    let mut doc = target.clone();
    for op in &patch.0 {
        if let json_patch::PatchOperation::Test(test) = op
            && test.value.is_null()
            && doc.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(|e| {
            // A failed `test` operation or a missing path is the client's mistake.
            ApiError::Invalid {
                subject: Box::new(crate::error::Subject::default()),
                causes: vec![crate::error::Cause::new("FieldValueInvalid", e.to_string(), "")],
            }
        })?;
    }
    *target = doc;
    Ok(())
}

/// Applies a strategic merge patch to a built-in object.
pub fn strategic_patch(target: &mut Value, body: &[u8]) -> ApiResult<()> {
    let patch = parse(body)?;
    if !patch.is_object() {
        return Err(ApiError::BadRequest(
            "a strategic merge patch must be an object".into(),
        ));
    }
    merge_object(&Context::root(None), target, &patch);
    Ok(())
}

fn directive<'a>(patch: &'a Value, name: &str) -> Option<&'a str> {
    patch.get(name).and_then(Value::as_str)
}

/// A copy of a patch object without `$` directives (for values inserted as they are).
fn strip(patch: &Value) -> Value {
    match patch {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
        other => other.clone(),
    }
}

fn merge_object(ctx: &Context<'_>, target: &mut Value, patch: &Value) {
    let Some(patch_map) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if directive(patch, "$patch") == Some("replace") {
        *target = strip(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let retain: Option<Vec<String>> = patch_map
        .get("$retainKeys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        });
    for (key, value) in patch_map {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) = (
                target.get_mut(field).and_then(Value::as_array_mut),
                value.as_array(),
            ) {
                list.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        let Some(map) = target.as_object_mut() else { return };
        let child_ctx = ctx.field(key);
        match value {
            Value::Null => {
                map.remove(key);
            }
            Value::Object(_) if directive(value, "$patch") == Some("delete") => {
                map.remove(key);
            }
            Value::Object(_) => {
                let slot = map.entry(key.clone()).or_insert(Value::Null);
                merge_object(&child_ctx, slot, value);
            }
            Value::Array(items) => {
                let slot = map.entry(key.clone()).or_insert(Value::Null);
                merge_list(&child_ctx, slot, items);
            }
            scalar => {
                map.insert(key.clone(), scalar.clone());
            }
        }
    }
    if let (Some(keep), Some(map)) = (retain, target.as_object_mut()) {
        map.retain(|k, _| keep.contains(k));
    }
}

fn merge_list(ctx: &Context<'_>, target: &mut Value, patch: &[Value]) {
    if patch.iter().any(|i| directive(i, "$patch") == Some("replace")) {
        *target = Value::Array(
            patch
                .iter()
                .filter(|i| directive(i, "$patch") != Some("replace"))
                .map(strip)
                .collect(),
        );
        return;
    }
    let kind = ctx.list_kind();
    if !target.is_array() || kind == ListKind::Atomic {
        *target = Value::Array(patch.iter().map(strip).collect());
        return;
    }
    let Some(items) = target.as_array_mut() else {
        return;
    };
    match kind {
        ListKind::Set => {
            for item in patch {
                if !items.contains(item) {
                    items.push(item.clone());
                }
            }
        }
        ListKind::Map(keys) => {
            let Some(merge_key) = keys.first() else { return };
            let item_ctx = ctx.item();
            for item in patch {
                let key = item.get(merge_key);
                let position = key.and_then(|k| items.iter().position(|i| i.get(merge_key) == Some(k)));
                match (directive(item, "$patch"), position) {
                    (Some("delete"), _) => {
                        items.retain(|i| key.is_none() || i.get(merge_key) != key);
                    }
                    (_, Some(index)) => merge_object(&item_ctx, &mut items[index], item),
                    (_, None) => items.push(strip(item)),
                }
            }
        }
        ListKind::Atomic => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn smp(target: Value, patch: &Value) -> Value {
        let mut t = target;
        strategic_patch(&mut t, patch.to_string().as_bytes()).unwrap();
        t
    }

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}});
        let out = smp(
            pod,
            &json!({"spec": {"containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
                {"name": "c", "image": "c:1"}
            ]}}),
        );
        let containers = out["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 3);
        assert_eq!(containers[0]["image"], "a:2");
        assert_eq!(containers[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(containers[1]["image"], "b:1");
    }

    #[test]
    fn directives_and_atomic_lists() {
        let pod = json!({"metadata": {"finalizers": ["a"]}, "spec": {
            "tolerations": [{"key": "x"}],
            "containers": [{"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 81}]}, {"name": "b"}]
        }});
        let out = smp(
            pod,
            &json!({
                "metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]},
                "spec": {
                    "tolerations": [{"key": "y"}],
                    "$setElementOrder/containers": [{"name": "a"}],
                    "containers": [{"name": "b", "$patch": "delete"}, {"name": "a", "ports": [{"containerPort": 81, "$patch": "delete"}]}]
                }
            }),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "y"}]));
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "ports": [{"containerPort": 80}]}])
        );
    }

    #[test]
    fn conditions_merge_by_type_and_null_deletes() {
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "A", "status": "True"}]}, "x": 1});
        let out = smp(
            status,
            &json!({"x": null, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(
            out,
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "A", "status": "True"}]}})
        );
    }

    #[test]
    fn merge_and_json_patch() {
        let mut v = json!({"a": {"b": 1, "c": 2}});
        merge_patch(&mut v, br#"{"a": {"b": null, "d": 3}}"#).unwrap();
        assert_eq!(v, json!({"a": {"c": 2, "d": 3}}));
        json_patch(&mut v, br#"[{"op": "replace", "path": "/a/c", "value": 5}]"#).unwrap();
        // A null test on a missing path passes; the patch is atomic when a later op fails.
        json_patch(
            &mut v,
            br#"[{"op": "test", "path": "/f", "value": null}, {"op": "add", "path": "/f", "value": [1]}]"#,
        )
        .unwrap();
        assert_eq!(v["f"], json!([1]));
        let before = v.clone();
        assert!(
            json_patch(
                &mut v,
                br#"[{"op": "add", "path": "/g", "value": 1}, {"op": "test", "path": "/f", "value": null}]"#
            )
            .is_err()
        );
        assert_eq!(v, before);
        assert_eq!(v["a"]["c"], 5);
        let err = json_patch(&mut v, br#"[{"op": "test", "path": "/a/c", "value": 6}]"#).unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(merge_patch(&mut v, b"{oops").unwrap_err().code(), 400);
        assert_eq!(
            PatchType::from_content_type("text/plain").unwrap_err().code(),
            415
        );
    }
}
