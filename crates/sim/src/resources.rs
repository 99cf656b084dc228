//! The resource types the server knows: the built-in kinds it serves from the start and the ones
//! CustomResourceDefinitions add. Discovery, routing, selectors and the store all read this table.

use std::{collections::BTreeMap, sync::Arc};

use crate::crd::CrdSchema;

/// A group and plural resource name, the key of a resource type (`("apps", "deployments")`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    /// API group, empty for the core group.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl GroupResource {
    /// A key from its parts.
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.into(),
            resource: resource.into(),
        }
    }
}

/// Where the scale subresource reads and writes replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    /// Dotted path of the desired replicas (`spec.replicas`).
    pub spec_replicas: String,
    /// Dotted path of the observed replicas (`status.replicas`).
    pub status_replicas: String,
    /// Dotted path of the label selector: a string for CRDs, a LabelSelector object for built-ins.
    pub label_selector: Option<String>,
}

/// Everything the server knows about one resource type.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    /// API group, empty for the core group.
    pub group: String,
    /// Served versions; the first is the storage version and the one discovery prefers.
    pub versions: Vec<String>,
    /// Plural name (`nodepools`).
    pub plural: String,
    /// Singular name (`nodepool`).
    pub singular: String,
    /// Kind (`NodePool`).
    pub kind: String,
    /// Namespace-scoped or cluster-scoped.
    pub namespaced: bool,
    /// `kubectl get` aliases (`po`, `deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`, `karpenter`).
    pub categories: Vec<String>,
    /// Whether `/status` is a separate subresource (spec and status are then written apart).
    pub status: bool,
    /// The scale subresource, if any.
    pub scale: Option<ScalePaths>,
    /// Other subresources (`binding`, `eviction`), for discovery.
    pub extra_subresources: Vec<String>,
    /// Field-selector fields besides `metadata.name` and `metadata.namespace`.
    pub selectable_fields: Vec<String>,
    /// The schema, printer columns and rules of a custom resource.
    pub crd: Option<Arc<CrdSchema>>,
}

impl ResourceInfo {
    /// The key of this type.
    pub fn key(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    /// The storage version.
    pub fn storage_version(&self) -> &str {
        self.versions.first().map_or("v1", String::as_str)
    }

    /// `v1` or `apps/v1` for a version.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// Whether a version is served.
    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// The verbs discovery lists.
    pub fn verbs(&self) -> &'static [&'static str] {
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    /// Every field a field selector may name for this type.
    pub fn field_is_selectable(&self, field: &str) -> bool {
        field == "metadata.name"
            || (field == "metadata.namespace" && self.namespaced)
            || self.selectable_fields.iter().any(|f| f == field)
    }
}

#[allow(clippy::struct_excessive_bools)] // a table row, read once
/// One built-in type, tersely: group, version, plural, singular, kind, namespaced, short names,
/// categories, status subresource, scale, extra subresources, selectable fields.
struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    all: bool,
    status: bool,
    scale: bool,
    extra: &'static [&'static str],
    fields: &'static [&'static str],
}

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

const EVENTS_V1_FIELDS: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "reason",
    "reportingController",
    "type",
];

#[allow(clippy::too_many_lines)] // one line per built-in type reads best as a table
fn builtins() -> Vec<Builtin> {
    macro_rules! b {
        ($g:expr, $v:expr, $p:expr, $k:expr, ns=$ns:expr, short=$s:expr, all=$all:expr,
         status=$st:expr, scale=$sc:expr, extra=$ex:expr, fields=$f:expr) => {
            Builtin {
                group: $g,
                version: $v,
                plural: $p,
                kind: $k,
                namespaced: $ns,
                short: $s,
                all: $all,
                status: $st,
                scale: $sc,
                extra: $ex,
                fields: $f,
            }
        };
    }
    vec![
        b!(
            "",
            "v1",
            "pods",
            "Pod",
            ns = true,
            short = &["po"],
            all = true,
            status = true,
            scale = false,
            extra = &["binding", "eviction"],
            fields = POD_FIELDS
        ),
        b!(
            "",
            "v1",
            "nodes",
            "Node",
            ns = false,
            short = &["no"],
            all = false,
            status = true,
            scale = false,
            extra = &[],
            fields = &["spec.unschedulable"]
        ),
        b!(
            "",
            "v1",
            "namespaces",
            "Namespace",
            ns = false,
            short = &["ns"],
            all = false,
            status = true,
            scale = false,
            extra = &["finalize"],
            fields = &["status.phase"]
        ),
        b!(
            "",
            "v1",
            "events",
            "Event",
            ns = true,
            short = &["ev"],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = EVENT_FIELDS
        ),
        b!(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            ns = true,
            short = &["cm"],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "",
            "v1",
            "secrets",
            "Secret",
            ns = true,
            short = &[],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &["type"]
        ),
        b!(
            "",
            "v1",
            "services",
            "Service",
            ns = true,
            short = &["svc"],
            all = true,
            status = true,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            ns = true,
            short = &["sa"],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "",
            "v1",
            "podtemplates",
            "PodTemplate",
            ns = true,
            short = &[],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "",
            "v1",
            "persistentvolumes",
            "PersistentVolume",
            ns = false,
            short = &["pv"],
            all = false,
            status = true,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            ns = true,
            short = &["pvc"],
            all = false,
            status = true,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            ns = true,
            short = &["deploy"],
            all = true,
            status = true,
            scale = true,
            extra = &[],
            fields = &[]
        ),
        b!(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            ns = true,
            short = &["rs"],
            all = true,
            status = true,
            scale = true,
            extra = &[],
            fields = &["status.replicas"]
        ),
        b!(
            "apps",
            "v1",
            "daemonsets",
            "DaemonSet",
            ns = true,
            short = &["ds"],
            all = true,
            status = true,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            ns = true,
            short = &["sts"],
            all = true,
            status = true,
            scale = true,
            extra = &[],
            fields = &[]
        ),
        b!(
            "batch",
            "v1",
            "jobs",
            "Job",
            ns = true,
            short = &[],
            all = true,
            status = true,
            scale = false,
            extra = &[],
            fields = &["status.successful"]
        ),
        b!(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            ns = true,
            short = &["pdb"],
            all = false,
            status = true,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            ns = true,
            short = &[],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "PriorityClass",
            ns = false,
            short = &["pc"],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            "StorageClass",
            ns = false,
            short = &["sc"],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "storage.k8s.io",
            "v1",
            "volumeattachments",
            "VolumeAttachment",
            ns = false,
            short = &[],
            all = false,
            status = true,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "storage.k8s.io",
            "v1",
            "csinodes",
            "CSINode",
            ns = false,
            short = &[],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "storage.k8s.io",
            "v1",
            "csidrivers",
            "CSIDriver",
            ns = false,
            short = &[],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            ns = true,
            short = &["ev"],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = EVENTS_V1_FIELDS
        ),
        b!(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            ns = false,
            short = &[],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            ns = false,
            short = &[],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            ns = true,
            short = &[],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            ns = true,
            short = &[],
            all = false,
            status = false,
            scale = false,
            extra = &[],
            fields = &[]
        ),
        b!(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            ns = false,
            short = &["crd", "crds"],
            all = false,
            status = true,
            scale = false,
            extra = &[],
            fields = &[]
        ),
    ]
}

/// The resource types the server starts with.
pub fn builtin_resources() -> Vec<ResourceInfo> {
    builtins()
        .into_iter()
        .map(|b| ResourceInfo {
            group: b.group.into(),
            versions: vec![b.version.into()],
            plural: b.plural.into(),
            singular: b.kind.to_lowercase(),
            kind: b.kind.into(),
            namespaced: b.namespaced,
            short_names: b.short.iter().map(|s| (*s).to_owned()).collect(),
            categories: if b.all { vec!["all".into()] } else { Vec::new() },
            status: b.status,
            scale: b.scale.then(|| ScalePaths {
                spec_replicas: "spec.replicas".into(),
                status_replicas: "status.replicas".into(),
                label_selector: Some("spec.selector".into()),
            }),
            extra_subresources: b.extra.iter().map(|s| (*s).to_owned()).collect(),
            selectable_fields: b.fields.iter().map(|s| (*s).to_owned()).collect(),
            crd: None,
        })
        .collect()
}

/// The table of served types, built-in and custom.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    by_key: BTreeMap<GroupResource, Arc<ResourceInfo>>,
}

impl Registry {
    /// A registry of the built-in types.
    pub fn with_builtins() -> Self {
        let mut registry = Self::default();
        for info in builtin_resources() {
            registry.insert(info);
        }
        registry
    }

    /// Adds or replaces a type.
    pub fn insert(&mut self, info: ResourceInfo) {
        self.by_key.insert(info.key(), Arc::new(info));
    }

    /// Removes a type.
    pub fn remove(&mut self, key: &GroupResource) -> Option<Arc<ResourceInfo>> {
        self.by_key.remove(key)
    }

    /// A type by group and plural.
    pub fn get(&self, group: &str, resource: &str) -> Option<Arc<ResourceInfo>> {
        self.by_key.get(&GroupResource::new(group, resource)).cloned()
    }

    /// A type by group, version and plural, if that version is served.
    pub fn get_served(&self, group: &str, version: &str, resource: &str) -> Option<Arc<ResourceInfo>> {
        self.get(group, resource).filter(|info| info.serves(version))
    }

    /// A type by group and kind.
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        self.by_key
            .values()
            .find(|info| info.group == group && info.kind == kind)
            .cloned()
    }

    /// Every type.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.by_key.values()
    }

    /// Every group with the versions it serves, core group first, then built-in groups in a stable
    /// order.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for info in self.by_key.values() {
            let versions = groups.entry(info.group.clone()).or_default();
            for v in &info.versions {
                if !versions.contains(v) {
                    versions.push(v.clone());
                }
            }
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_found_by_key_and_kind() {
        let registry = Registry::with_builtins();
        let pods = registry.get("", "pods").unwrap();
        assert!(pods.namespaced);
        assert!(pods.field_is_selectable("spec.nodeName"));
        assert!(!pods.field_is_selectable("spec.nothing"));
        let deployments = registry.by_kind("apps", "Deployment").unwrap();
        assert_eq!(deployments.plural, "deployments");
        assert!(deployments.scale.is_some());
        assert!(registry.get_served("apps", "v2", "deployments").is_none());
        assert!(!registry.get("", "nodes").unwrap().namespaced);
    }
}
