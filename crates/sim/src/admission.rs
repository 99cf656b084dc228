//! The admission chain every write passes after its metadata is prepared: built-in defaults, the
//! few built-in validations controllers rely on, a CRD's own checks and status, a custom
//! resource's schema, and managedFields bookkeeping for non-apply writes.

use serde_json::{Value, json};

use crate::{
    crd, defaults,
    error::{ApiError, ApiResult, Cause, Subject},
    managed,
    meta::{self, meta_str},
    resources::ResourceInfo,
    selector::LabelSelector,
    store::{FieldValidation, Operation, Store, Subresource, WriteOptions},
};

/// What status a new object starts with: CRDs with a status subresource and most built-ins start
/// without one; pods start Pending; nodes keep what their kubelet registers; namespaces start
/// Active.
pub fn reset_status_on_create(info: &ResourceInfo, value: &mut Value) {
    if !info.status {
        return;
    }
    let map = meta::ensure_object(value);
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "nodes" | "persistentvolumes" | "persistentvolumeclaims" | "services") => {}
        ("", "pods") => {
            map.insert("status".into(), json!({"phase": "Pending"}));
        }
        ("", "namespaces") => {
            map.insert("status".into(), json!({"phase": "Active"}));
            let spec = meta::object_field_mut(value, "spec");
            spec.insert("finalizers".into(), json!(["kubernetes"]));
        }
        _ => {
            map.remove("status");
        }
    }
}

/// Runs the admission chain on a prepared object.
pub fn admit(
    store: &Store,
    info: &ResourceInfo,
    new: &mut Value,
    old: Option<&Value>,
    opts: &WriteOptions,
    sub: Subresource,
) -> ApiResult<()> {
    if info.crd.is_none()
        && let Some(schema) = crate::builtin_schema::schema_of(&info.group, &info.plural)
    {
        let wrong = crate::builtin_schema::check_types(&schema, new);
        if let Some(first) = wrong.first() {
            let version = info.storage_version();
            return Err(ApiError::BadRequest(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {}: expected {}, got {}",
                first.field,
                first.expected,
                first.found,
                kind = info.kind
            )));
        }
        let unknown = crate::builtin_schema::prune(&schema, new);
        if opts.validation == FieldValidation::Strict && !unknown.is_empty() {
            let list: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
            return Err(ApiError::BadRequest(format!(
                "strict decoding error: {}",
                list.join(", ")
            )));
        }
    }
    defaults::apply(info, new);
    if info.crd.is_some() {
        crd::admit(info, new, old, opts.validation)?;
    }
    if info.group == crd::GROUP && info.plural == "customresourcedefinitions" && sub == Subresource::Main {
        let registry = store.registry();
        let now = store.config().clock.now_rfc3339();
        crd::prepare(info, &now, |g, p| registry.get(g, p).is_some(), new, old)?;
    }
    validate_metadata(info, new)?;
    validate_builtin(info, new)?;
    if opts.operation == Operation::Update {
        let manager = opts.field_manager.as_deref().unwrap_or("unknown");
        let now = store.config().clock.now_rfc3339();
        managed::record_update(info, old, new, manager, sub, &now);
    }
    Ok(())
}

fn invalid(info: &ResourceInfo, value: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        subject: Box::new(Subject {
            group: info.group.clone(),
            resource: info.plural.clone(),
            kind: info.kind.clone(),
            name: meta_str(value, "name").unwrap_or_default().to_owned(),
        }),
        causes,
    }
}

/// Label and annotation syntax for every object, and DNS-1123 names for built-in kinds (custom
/// resources only need names that are path segments, checked before admission).
fn validate_metadata(info: &ResourceInfo, value: &Value) -> ApiResult<()> {
    use nodewright_api::validation::syntax::{is_dns1123_subdomain, label_value, qualified_name};
    let mut causes = Vec::new();
    let meta = value.get("metadata");
    let name = meta_str(value, "name").unwrap_or_default();
    if info.crd.is_none() && !is_dns1123_subdomain(name) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
            "metadata.name",
        ));
    }
    let entries = |key: &str| {
        meta.and_then(|m| m.get(key))
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
    };
    for (key, v) in entries("labels") {
        if let Some(problem) = qualified_name(key) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("Invalid value: {key:?}: {problem}"),
                "metadata.labels",
            ));
        }
        match v.as_str() {
            Some(text) => {
                if let Some(problem) = label_value(text) {
                    causes.push(Cause::new(
                        "FieldValueInvalid",
                        format!("Invalid value: {text:?}: {problem}"),
                        "metadata.labels",
                    ));
                }
            }
            None => causes.push(Cause::new(
                "FieldValueInvalid",
                "Invalid value: label values must be strings",
                "metadata.labels",
            )),
        }
    }
    for (key, v) in entries("annotations") {
        if let Some(problem) = qualified_name(&key.to_lowercase()) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("Invalid value: {key:?}: {problem}"),
                "metadata.annotations",
            ));
        }
        if !v.is_string() {
            causes.push(Cause::new(
                "FieldValueInvalid",
                "Invalid value: annotation values must be strings",
                "metadata.annotations",
            ));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(info, value, causes))
    }
}

/// The checks of built-in kinds that clients depend on: a Deployment-like selector must be set
/// and match its template; a PodDisruptionBudget sets one of minAvailable and maxUnavailable; a
/// pod has containers.
fn validate_builtin(info: &ResourceInfo, value: &Value) -> ApiResult<()> {
    let mut causes = Vec::new();
    match (info.group.as_str(), info.plural.as_str()) {
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") => {
            let spec = value.get("spec");
            match spec.and_then(|s| s.get("selector")) {
                None | Some(Value::Null) => causes.push(Cause::new(
                    "FieldValueRequired",
                    "Required value",
                    "spec.selector",
                )),
                Some(selector) => {
                    let parsed = LabelSelector::from_object(selector)?;
                    let labels = spec
                        .and_then(|s| s.get("template"))
                        .and_then(|t| t.get("metadata"))
                        .and_then(|m| m.get("labels"));
                    if parsed.is_empty() {
                        causes.push(Cause::new(
                            "FieldValueInvalid",
                            "Invalid value: \"null\": empty selector is invalid for deployment",
                            "spec.selector",
                        ));
                    } else if !parsed.matches(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str)) {
                        causes.push(Cause::new(
                            "FieldValueInvalid",
                            "Invalid value: map[string]string(nil): `selector` does not match template `labels`",
                            "spec.template.metadata.labels",
                        ));
                    }
                }
            }
        }
        ("policy", "poddisruptionbudgets") => {
            let spec = value.get("spec");
            if spec.and_then(|s| s.get("minAvailable")).is_some()
                && spec.and_then(|s| s.get("maxUnavailable")).is_some()
            {
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    "Invalid value: minAvailable and maxUnavailable cannot be both set",
                    "spec",
                ));
            }
        }
        ("", "pods") => {
            let containers = value
                .get("spec")
                .and_then(|s| s.get("containers"))
                .and_then(Value::as_array);
            if containers.is_none_or(Vec::is_empty) {
                causes.push(Cause::new(
                    "FieldValueRequired",
                    "Required value",
                    "spec.containers",
                ));
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(info, value, causes))
    }
}
