//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/{group}`, the APIResourceLists of
//! `/api/v1` and `/apis/{group}/{version}`, the aggregated (`apidiscovery.k8s.io/v2`) form of
//! `/api` and `/apis` when a client asks for it, and an OpenAPI v3 index plus per-group-version
//! documents with the paths, operations and `fieldValidation` parameters kubectl probes (CRDs
//! carry their schemas; built-in kinds are described as open objects).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::resources::{Registry, ResourceInfo};

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-nodewright-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(name: &str, versions: &[String]) -> Value {
    let list: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = list.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": list, "preferredVersion": preferred})
}

/// `/apis`.
pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_entry(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    let groups = registry.groups();
    let versions = groups.get(name)?;
    let mut entry = group_entry(name, versions);
    entry["kind"] = "APIGroup".into();
    entry["apiVersion"] = "v1".into();
    Some(entry)
}

fn subresource(info: &ResourceInfo, sub: &str) -> Value {
    let (group, version, kind, verbs): (&str, &str, &str, &[&str]) = match sub {
        "scale" => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        "eviction" => ("policy", "v1", "Eviction", &["create"]),
        "binding" => ("", "v1", "Binding", &["create"]),
        "finalize" => ("", "v1", &info.kind, &["update"]),
        _ => (&info.group, "", &info.kind, &["get", "patch", "update"]),
    };
    let mut v = json!({
        "name": format!("{}/{sub}", info.plural),
        "singularName": "",
        "namespaced": info.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if !version.is_empty() {
        v["group"] = group.into();
        v["version"] = version.into();
    }
    v
}

fn subresources(info: &ResourceInfo) -> Vec<String> {
    let mut subs = Vec::new();
    if info.status {
        subs.push("status".to_owned());
    }
    if info.scale.is_some() {
        subs.push("scale".to_owned());
    }
    subs.extend(info.extra_subresources.iter().cloned());
    subs
}

/// The APIResourceList of a group version.
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for info in registry.all().filter(|i| i.group == group && i.serves(version)) {
        let mut entry = json!({
            "name": info.plural,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": info.verbs(),
        });
        if !info.short_names.is_empty() {
            entry["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            entry["categories"] = json!(info.categories);
        }
        resources.push(entry);
        for sub in subresources(info) {
            resources.push(subresource(info, &sub));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// The aggregated discovery document (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`) of the
/// core group (`core = true`, for `/api`) or of every other group (for `/apis`).
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    let mut groups: BTreeMap<String, BTreeMap<String, Vec<Value>>> = BTreeMap::new();
    for info in registry.all().filter(|i| i.group.is_empty() == core) {
        for version in &info.versions {
            let subs: Vec<Value> = subresources(info)
                .iter()
                .map(|s| {
                    let plain = subresource(info, s);
                    let mut sub = json!({
                        "subresource": s,
                        "verbs": plain["verbs"],
                        "responseKind": {"group": plain.get("group").cloned().unwrap_or_else(|| info.group.clone().into()),
                                          "version": plain.get("version").cloned().unwrap_or_else(|| version.clone().into()),
                                          "kind": plain["kind"]},
                    });
                    if sub["responseKind"]["group"].is_null() {
                        sub["responseKind"]["group"] = "".into();
                    }
                    sub
                })
                .collect();
            let mut resource = json!({
                "resource": info.plural,
                "responseKind": {"group": info.group, "version": version, "kind": info.kind},
                "scope": if info.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": info.singular,
                "verbs": info.verbs(),
                "subresources": subs,
            });
            if !info.short_names.is_empty() {
                resource["shortNames"] = json!(info.short_names);
            }
            if !info.categories.is_empty() {
                resource["categories"] = json!(info.categories);
            }
            groups
                .entry(info.group.clone())
                .or_default()
                .entry(version.clone())
                .or_default()
                .push(resource);
        }
    }
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .into_iter()
                .map(|(version, resources)| json!({"version": version, "resources": resources, "freshness": "Current"}))
                .collect();
            json!({"metadata": {"name": group}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// The OpenAPI v3 index: one entry per group version.
pub fn openapi_index(registry: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (group, versions) in registry.groups() {
        for version in versions {
            let key = if group.is_empty() {
                format!("api/{version}")
            } else {
                format!("apis/{group}/{version}")
            };
            let hash = stable_hash(&openapi_group_version(registry, &group, &version).to_string());
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash:016X}")}),
            );
        }
    }
    json!({"paths": paths})
}

fn stable_hash(text: &str) -> u64 {
    // FNV-1a: stable across runs, so kubectl's cache keys stay valid.
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn schema_name(info: &ResourceInfo, version: &str) -> String {
    let group = if info.group.is_empty() {
        "core"
    } else {
        &info.group
    };
    format!("{group}.{version}.{}", info.kind)
}

/// The OpenAPI v3 document of one group version.
pub fn openapi_group_version(registry: &Registry, group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let query =
        |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": true});
    for info in registry.all().filter(|i| i.group == group && i.serves(version)) {
        let gvk = json!({"group": info.group, "version": version, "kind": info.kind});
        let name = schema_name(info, version);
        let mut schema = info
            .crd
            .as_ref()
            .and_then(|c| c.schema(version))
            .cloned()
            .or_else(|| builtin_openapi(info, &mut schemas))
            .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        schemas.insert(name.clone(), schema);
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let content = json!({"application/json": {"schema": reference}});
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let base = if info.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", info.plural)
        } else {
            format!("{prefix}/{}", info.plural)
        };
        let op = |verb: &str, id: &str| {
            json!({
                "operationId": format!("{id}{}", info.kind),
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation")],
                "responses": {"200": {"description": "OK", "content": content}},
            })
        };
        let mut patch = op("patch", "patch");
        // No requestBody content types: kubectl then computes client-side apply patches from its
        // compiled-in types (strategic merge for built-ins, merge patch for custom resources).
        patch["parameters"]
            .as_array_mut()
            .into_iter()
            .for_each(|p| p.push(query("force")));
        paths.insert(
            base.clone(),
            json!({"get": op("list", "list"), "post": op("post", "create")}),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"get": op("get", "read"), "put": op("put", "replace"), "patch": patch, "delete": op("delete", "delete")}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// A built-in kind's generated schema in OpenAPI form: its `$defs` join the document's
/// components (shared by every kind of the group version) and references point there.
fn builtin_openapi(info: &ResourceInfo, components: &mut serde_json::Map<String, Value>) -> Option<Value> {
    let generated = crate::builtin_schema::schema_of(&info.group, &info.plural)?;
    let mut root = (*generated).clone();
    let defs = root.as_object_mut()?.remove("$defs");
    if let Some(root_map) = root.as_object_mut() {
        root_map.remove("$schema");
    }
    for (name, mut def) in defs.and_then(|d| d.as_object().cloned()).unwrap_or_default() {
        rewrite_refs(&mut def);
        components.entry(name).or_insert(def);
    }
    rewrite_refs(&mut root);
    Some(root)
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
            {
                *r = format!("#/components/schemas/{name}");
            }
            map.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lists_carry_subresources_and_short_names() {
        let registry = Registry::with_builtins();
        let apps = resource_list(&registry, "apps", "v1").unwrap();
        let names: Vec<&str> = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments/scale"));
        let deploy = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments")
            .unwrap();
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        let core = resource_list(&registry, "", "v1").unwrap();
        assert_eq!(core["groupVersion"], "v1");
        assert!(resource_list(&registry, "nope", "v1").is_none());
        let eviction = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(eviction["group"], "policy");
    }

    #[test]
    fn openapi_documents_name_patch_operations_with_field_validation() {
        let registry = Registry::with_builtins();
        let index = openapi_index(&registry);
        assert!(
            index["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
        let doc = openapi_group_version(&registry, "apps", "v1");
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let schemas = &doc["components"]["schemas"];
        let spec_ref = schemas["apps.v1.Deployment"]["properties"]["spec"]["$ref"]
            .as_str()
            .unwrap();
        let name = spec_ref.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas[name]["properties"]["replicas"].is_object(), "{spec_ref}");
    }
}
