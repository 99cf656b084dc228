//! CustomResourceDefinitions: checking a CRD, giving it the status an API server gives an accepted
//! one (NamesAccepted, Established), serving its resource as soon as it is stored, and running its
//! schema (pruning, defaults, validation) on every write of a custom resource.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::{Value, json};

use crate::{
    error::{ApiError, ApiResult, Cause, Subject},
    resources::{ResourceInfo, ScalePaths},
    store::{FieldValidation, Inner},
    validation,
};

/// The API group of CRDs.
pub const GROUP: &str = "apiextensions.k8s.io";

/// An `additionalPrinterColumns` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// `string`, `integer`, `date`, ...
    pub type_: String,
    /// `format`, if any.
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 shows by default; higher only with `-o wide`.
    pub priority: i64,
    /// The JSONPath of the value (`.spec.template.spec.nodeClassRef.name`).
    pub json_path: String,
}

/// The per-version schema and columns of a custom resource.
#[derive(Clone, Debug, Default)]
pub struct CrdSchema {
    /// `openAPIV3Schema` per served version.
    pub schemas: BTreeMap<String, Value>,
    /// Printer columns per served version.
    pub columns: BTreeMap<String, Vec<PrinterColumn>>,
    /// The CEL rules of each version's schema, compiled once when the CRD is stored.
    pub compiled: BTreeMap<String, Arc<kube_cel::CompiledSchema>>,
}

impl CrdSchema {
    /// The schema of a version.
    pub fn schema(&self, version: &str) -> Option<&Value> {
        self.schemas.get(version)
    }

    /// The compiled CEL rules of a version.
    pub fn compiled(&self, version: &str) -> Option<&kube_cel::CompiledSchema> {
        self.compiled.get(version).map(Arc::as_ref)
    }
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(value, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// The resource type a CRD defines.
pub fn resource_info(crd: &Value) -> Option<ResourceInfo> {
    let spec = crd.get("spec")?;
    let names = spec.get("names")?;
    let mut versions: Vec<&Value> = spec
        .get("versions")?
        .as_array()?
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        .collect();
    // Storage version first: discovery prefers it and objects are stored in it.
    versions.sort_by_key(|v| v.get("storage").and_then(Value::as_bool) != Some(true));
    let storage = *versions.first()?;
    let mut schema = CrdSchema::default();
    for v in &versions {
        let name = str_at(v, &["name"]).to_owned();
        if let Some(s) = v.get("schema").and_then(|s| s.get("openAPIV3Schema")) {
            schema.schemas.insert(name.clone(), s.clone());
            schema
                .compiled
                .insert(name.clone(), Arc::new(kube_cel::compile_schema(s)));
        }
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| PrinterColumn {
                name: str_at(c, &["name"]).into(),
                type_: str_at(c, &["type"]).into(),
                format: str_at(c, &["format"]).into(),
                description: str_at(c, &["description"]).into(),
                priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                json_path: str_at(c, &["jsonPath"]).into(),
            })
            .collect();
        schema.columns.insert(name, columns);
    }
    let subresources = storage.get("subresources");
    let scale = subresources.and_then(|s| s.get("scale")).map(|s| ScalePaths {
        spec_replicas: str_at(s, &["specReplicasPath"]).trim_start_matches('.').into(),
        status_replicas: str_at(s, &["statusReplicasPath"]).trim_start_matches('.').into(),
        label_selector: s
            .get("labelSelectorPath")
            .and_then(Value::as_str)
            .map(|p| p.trim_start_matches('.').to_owned()),
    });
    let plural = str_at(names, &["plural"]).to_owned();
    let kind = str_at(names, &["kind"]).to_owned();
    Some(ResourceInfo {
        group: str_at(spec, &["group"]).into(),
        versions: versions.iter().map(|v| str_at(v, &["name"]).to_owned()).collect(),
        singular: match str_at(names, &["singular"]) {
            "" => kind.to_lowercase(),
            s => s.to_owned(),
        },
        plural,
        kind,
        namespaced: str_at(spec, &["scope"]) == "Namespaced",
        short_names: strings(names.get("shortNames")),
        categories: strings(names.get("categories")),
        status: subresources.and_then(|s| s.get("status")).is_some(),
        scale,
        extra_subresources: Vec::new(),
        selectable_fields: storage
            .get("selectableFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|f| str_at(f, &["jsonPath"]).trim_start_matches('.').to_owned())
            .collect(),
        crd: Some(Arc::new(schema)),
    })
}

/// Checks a CRD before it is stored and gives it the status of an accepted, established one.
pub fn prepare(
    crd_info: &ResourceInfo,
    now: &str,
    registry_has: impl Fn(&str, &str) -> bool,
    value: &mut Value,
    old: Option<&Value>,
) -> ApiResult<()> {
    let name = str_at(value, &["metadata", "name"]).to_owned();
    let mut causes = Vec::new();
    let group = str_at(value, &["spec", "group"]);
    let plural = str_at(value, &["spec", "names", "plural"]);
    if group.is_empty() {
        causes.push(Cause::new("FieldValueRequired", "Required value", "spec.group"));
    }
    if plural.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "Required value",
            "spec.names.plural",
        ));
    }
    if str_at(value, &["spec", "names", "kind"]).is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "Required value",
            "spec.names.kind",
        ));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
            "metadata.name",
        ));
    }
    if old.is_none() && registry_has(group, plural) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("Invalid value: \"{plural}\": the resource is already served by the server"),
            "spec.names.plural",
        ));
    }
    let versions = value
        .get("spec")
        .and_then(|s| s.get("versions"))
        .and_then(Value::as_array);
    let storage = versions
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if versions.is_none_or(Vec::is_empty) {
        causes.push(Cause::new(
            "FieldValueRequired",
            "Required value",
            "spec.versions",
        ));
    } else if storage != 1 {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "Invalid value: must have exactly one version marked as storage version",
            "spec.versions",
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::Invalid {
            subject: Box::new(Subject {
                group: GROUP.into(),
                resource: crd_info.plural.clone(),
                kind: crd_info.kind.clone(),
                name,
            }),
            causes,
        });
    }
    let storage_version = versions
        .into_iter()
        .flatten()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| str_at(v, &["name"]).to_owned())
        .unwrap_or_default();
    let mut stored: Vec<String> = old
        .map(|o| strings(o.get("status").and_then(|s| s.get("storedVersions"))))
        .unwrap_or_default();
    if !stored.contains(&storage_version) {
        stored.push(storage_version);
    }
    let names = value
        .get("spec")
        .and_then(|s| s.get("names"))
        .cloned()
        .unwrap_or(Value::Null);
    let condition = |type_: &str, reason: &str, message: &str| json!({"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now});
    value["status"] = json!({
        "acceptedNames": names,
        "storedVersions": stored,
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
    });
    Ok(())
}

/// Registers (or re-registers) the resource of a stored CRD.
pub(crate) fn on_write(inner: &mut Inner, crd: &Value) {
    if let Some(info) = resource_info(crd) {
        Arc::make_mut(&mut inner.registry).insert(info);
    }
}

/// Stops serving a removed CRD's resource and deletes its objects.
pub(crate) fn on_remove(inner: &mut Inner, crd: &Value) {
    if let Some(info) = resource_info(crd) {
        let key = info.key();
        if let Some(served) = Arc::make_mut(&mut inner.registry).remove(&key) {
            inner.drop_table(&served);
        }
    }
}

/// Prunes, defaults and validates a custom resource against its CRD's schema.
pub fn admit(
    info: &ResourceInfo,
    value: &mut Value,
    old: Option<&Value>,
    field_validation: FieldValidation,
) -> ApiResult<()> {
    let Some(schema) = info.crd.as_ref().and_then(|c| c.schema(info.storage_version())) else {
        return Ok(());
    };
    let unknown = validation::prune(schema, value);
    if field_validation == FieldValidation::Strict && !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
        return Err(ApiError::BadRequest(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    *value = validation::default(schema, value);
    let compiled = info.crd.as_ref().and_then(|c| c.compiled(info.storage_version()));
    let causes = validation::validate(schema, compiled, value, old);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid {
            subject: Box::new(Subject {
                group: info.group.clone(),
                resource: info.plural.clone(),
                kind: info.kind.clone(),
                name: str_at(value, &["metadata", "name"]).to_owned(),
            }),
            causes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodepool_crd_becomes_a_cluster_scoped_resource_with_columns() {
        let crd = nodewright_api::crds::all()
            .into_iter()
            .find(|c| c.spec.names.kind == "NodePool")
            .unwrap();
        let value = serde_json::to_value(&crd).unwrap();
        let info = resource_info(&value).unwrap();
        assert_eq!(info.group, "karpenter.sh");
        assert_eq!(info.plural, "nodepools");
        assert!(!info.namespaced);
        assert!(info.status);
        assert_eq!(info.categories, ["karpenter"]);
        let columns = &info.crd.as_ref().unwrap().columns["v1"];
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(&names[..4], ["NodeClass", "Nodes", "Ready", "Age"]);
    }
}
