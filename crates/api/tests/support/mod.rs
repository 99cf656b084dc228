//! Test support: the CRD layer (OpenAPI structure plus CEL, as an API server applies it) and path
//! helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // shared by several test binaries; fails loudly by design

use kube::core::cel::Validator;
use nodewright_api::crds;
use serde_json::Value;

/// The `openAPIV3Schema` of the CRD serving `kind`.
pub(crate) fn crd_schema(kind: &str) -> Value {
    let crd = crds::all()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("kind has a CRD");
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("schema");
    serde_json::to_value(schema).unwrap()
}

/// What the CRD layer says about an object: structural errors (JSON pointers of the offending
/// values) and CEL rule failures (their messages).
#[derive(Debug, Default)]
pub(crate) struct CrdVerdict {
    pub(crate) structural: Vec<String>,
    pub(crate) cel: Vec<String>,
}

impl CrdVerdict {
    pub(crate) fn accepted(&self) -> bool {
        self.structural.is_empty() && self.cel.is_empty()
    }
}

/// Validates `object` (and, for updates, against `old`) as an API server would with our CRD.
pub(crate) fn crd_verdict(kind: &str, object: &Value, old: Option<&Value>) -> CrdVerdict {
    let schema = crd_schema(kind);
    let structural_schema = openapi_to_json_schema(schema.clone());
    let validator = jsonschema::draft4::new(&structural_schema).expect("schema compiles as JSON Schema");
    let structural = validator
        .iter_errors(object)
        .map(|e| e.instance_path().as_str().to_owned())
        .collect();
    let cel = match Validator::new().validate(&schema, object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    };
    CrdVerdict { structural, cel }
}

/// OpenAPI v3.0's `nullable` becomes a JSON Schema type union; everything else carries over.
fn openapi_to_json_schema(mut schema: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if map.get("nullable") == Some(&Value::Bool(true))
                    && let Some(Value::String(t)) = map.get("type").cloned()
                {
                    map.insert("type".into(), serde_json::json!([t, "null"]));
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

/// `spec.limits[cpu]` → `/spec/limits/cpu`, `a.b[2].c` → `/a/b/2/c`.
pub(crate) fn field_to_pointer(field: &str) -> String {
    let mut pointer = String::new();
    let mut rest = field;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').expect("closing bracket");
            pointer.push('/');
            pointer.push_str(&after[..end].replace('~', "~0").replace('/', "~1"));
            rest = &after[end + 1..];
        } else {
            let rest_trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_trimmed.find(['.', '[']).unwrap_or(rest_trimmed.len());
            pointer.push('/');
            pointer.push_str(&rest_trimmed[..end]);
            rest = &rest_trimmed[end..];
        }
    }
    pointer
}

/// Applies `(pointer, value)` edits to a JSON document; `Value::Null` removes the field.
pub(crate) fn edit(mut document: Value, edits: &[(&str, Value)]) -> Value {
    for (pointer, value) in edits {
        let (parent, last) = pointer.rsplit_once('/').expect("pointer has a parent");
        let last = last.replace("~1", "/").replace("~0", "~");
        let target = document
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("no parent {parent} for {pointer}"));
        match target {
            Value::Object(map) => {
                if value.is_null() {
                    map.remove(&last);
                } else {
                    map.insert(last, value.clone());
                }
            }
            Value::Array(items) => {
                let index: usize = last.parse().expect("array index");
                if value.is_null() {
                    items.remove(index);
                } else if index == items.len() {
                    items.push(value.clone());
                } else {
                    items[index] = value.clone();
                }
            }
            _ => panic!("{parent} is not a container"),
        }
    }
    document
}

#[test]
fn pointers() {
    assert_eq!(field_to_pointer("spec.limits[cpu]"), "/spec/limits/cpu");
    assert_eq!(
        field_to_pointer("spec.template.metadata.labels[karpenter.sh/nodepool]"),
        "/spec/template/metadata/labels/karpenter.sh~1nodepool"
    );
    assert_eq!(
        field_to_pointer("spec.budgets[1].duration"),
        "/spec/budgets/1/duration"
    );
}
