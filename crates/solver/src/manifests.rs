//! Turning decoded manifests into a [`Problem`]: what `nodewright plan` reads. Pure: the caller
//! reads files and parses them with `nodewright_api::parse_objects`; this module only looks at the
//! objects.
//!
//! | Kind (API version) | Becomes |
//! |---|---|
//! | NodePool (`karpenter.sh/v1`) | a [`PoolInput`] with the catalogue's types under its EC2NodeClass's [`NodeSettings`] |
//! | EC2NodeClass (`karpenter.k8s.aws/v1`) | the settings of the NodePools referring to it |
//! | Pod (`v1`) | a pending pod, or with `spec.nodeName` a pod bound to that existing node |
//! | Deployment, ReplicaSet, StatefulSet (`apps/v1`) | `spec.replicas` (default 1) pods `<name>-<i>` from `spec.template` |
//! | Job (`batch/v1`) | `spec.parallelism` (default 1, at most `spec.completions`; none when suspended) pods |
//! | DaemonSet (`apps/v1`) | its template, reserved on every new node it fits ([`Problem::daemonset_pods`]) |
//! | Node (`v1`) | an [`ExistingNode`] (name, labels, taints, `status.allocatable`) |
//! | PersistentVolumeClaim, PersistentVolume (`v1`), StorageClass (`storage.k8s.io/v1`) | the volume topology of pods that use them ([`Problem::volumes`]); a StatefulSet's `volumeClaimTemplates` become unbound claims for its pods unless the claims are given |
//! | List (`v1`, as `kubectl get -o yaml` prints) | its items, each as above |
//!
//! Every other kind is ignored with a warning. Problems in a manifest are errors naming the file,
//! the document, the object and the field ([`DecodeError`], the same errors `nodewright validate`
//! prints); all of them are reported at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
    batch::v1::Job,
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec, PodTemplateSpec, Taint, Volume},
    storage::v1::StorageClass,
};
use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta};
use nodewright_api::{
    DecodeError, EC2NodeClass, NodePool, Object,
    decode::{Problem as DecodeProblem, decode_object, decode_strict},
    labels, quantity,
    validation::{ErrorType, FieldError, FieldPath, Invalid, Problems},
};
use nodewright_catalog::{Catalog, InstanceType, NodeSettings, Resources};
use serde_json::Value;

use crate::problem::{ExistingNode, PoolInput, Problem};

/// The objects of one file, as `nodewright_api::parse_objects` read them (one per document, in
/// order).
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file name, used in errors and warnings.
    pub source_name: String,
    pub objects: Vec<Object>,
}

/// Where a pod of the problem came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOrigin {
    pub namespace: String,
    pub name: String,
    /// `Deployment`, `ReplicaSet`, `StatefulSet`, `Job`, or `Pod` for a bare pod.
    pub workload_kind: String,
    /// The workload's name (the pod's own for a bare pod).
    pub workload_name: String,
    /// The file it was read from.
    pub source_name: String,
}

impl PodOrigin {
    /// `namespace/name`.
    pub fn pod_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `Kind/namespace/name` of the workload, e.g. `Deployment/default/inflate`.
    pub fn workload(&self) -> String {
        format!("{}/{}/{}", self.workload_kind, self.namespace, self.workload_name)
    }
}

/// A problem ready to solve, with what the output needs to name things.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub problem: Problem,
    /// Parallel to `problem.pods`.
    pub pods: Vec<PodOrigin>,
    /// Things ignored or assumed, one sentence each, naming file and object.
    pub warnings: Vec<String>,
    /// The catalogue's region.
    pub region: String,
    /// Whether spot prices come from the catalogue's model rather than the market.
    pub spot_prices_modelled: bool,
}

/// Every problem found in the manifests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestErrors(pub Vec<DecodeError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Builds the problem `manifests` describe, with the instance types of `catalog` (re-derived per
/// EC2NodeClass with [`NodeSettings::from_node_class`]).
pub fn problem_from_manifests(
    manifests: &[Manifest],
    catalog: &Catalog,
) -> Result<PlanInput, ManifestErrors> {
    let mut builder = Builder::default();
    for manifest in manifests {
        for (index, object) in manifest.objects.iter().enumerate() {
            let at = At {
                source: &manifest.source_name,
                document: index,
            };
            builder.add(object.clone(), at);
        }
    }
    builder.finish(catalog)
}

/// Where an object was read.
#[derive(Debug, Clone, Copy)]
struct At<'a> {
    source: &'a str,
    document: usize,
}

impl At<'_> {
    fn error(self, invalid: Invalid) -> DecodeError {
        DecodeError {
            source_name: self.source.to_owned(),
            document: Some(self.document),
            problem: Box::new(DecodeProblem::Fields(invalid)),
        }
    }

    /// `file: document N: Kind/name`.
    fn place(self, object: &str) -> String {
        format!("{}: document {}: {object}", self.source, self.document)
    }

    fn warn(self, object: &str, message: &str) -> String {
        format!("{}: {message}", self.place(object))
    }
}

#[derive(Debug, Default)]
struct Builder {
    errors: Vec<DecodeError>,
    warnings: Vec<String>,
    /// `(kind, namespace, name)` of every object seen, to catch duplicates.
    seen: BTreeSet<(String, String, String)>,
    nodepools: Vec<(NodePool, String, usize)>,
    classes: BTreeMap<String, EC2NodeClass>,
    pods: Vec<Pod>,
    origins: Vec<PodOrigin>,
    /// Bound pods: (pod, node name, where).
    bound: Vec<(Pod, String, String)>,
    daemonset_pods: Vec<Pod>,
    nodes: Vec<Node>,
    volumes: crate::volumes::Volumes,
    /// Claims a StatefulSet's pods would get, added unless given among the inputs.
    template_claims: Vec<PersistentVolumeClaim>,
}

impl Builder {
    fn add(&mut self, object: Object, at: At<'_>) {
        match object {
            Object::NodePool(pool) => {
                let name = pool.metadata.name.clone().unwrap_or_default();
                if !self.first("NodePool", "", &name, at) {
                    return;
                }
                match pool.validate().and_then(|()| check_node_class_ref(&pool)) {
                    Ok(()) => self.nodepools.push((*pool, at.source.to_owned(), at.document)),
                    Err(invalid) => self.errors.push(at.error(invalid)),
                }
            }
            Object::EC2NodeClass(class) => {
                let name = class.metadata.name.clone().unwrap_or_default();
                if !self.first("EC2NodeClass", "", &name, at) {
                    return;
                }
                match class.validate() {
                    Ok(()) => {
                        self.check_kubelet_expressions(&class, at);
                        self.classes.insert(name, *class);
                    }
                    Err(invalid) => self.errors.push(at.error(invalid)),
                }
            }
            Object::Other {
                api_version,
                kind,
                value,
            } => self.add_other(&api_version, &kind, value, at),
            other => {
                let described = other.describe();
                self.warnings.push(at.warn(
                    &described,
                    "not used by plan (it reads NodePools, EC2NodeClasses, Pods, workloads and Nodes); ignored",
                ));
            }
        }
    }

    fn add_other(&mut self, api_version: &str, kind: &str, value: Value, at: At<'_>) {
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let described = format!("{kind}/{name}");
        match (api_version, kind) {
            ("v1", "Pod") => {
                if let Some(pod) = self.decode::<Pod>(value, kind, at) {
                    self.add_pod(pod, at);
                }
            }
            ("v1", "Node") => {
                if let Some(node) = self.decode::<Node>(value, kind, at)
                    && self.first(kind, "", &name, at)
                {
                    self.check_node(&node, at);
                    self.nodes.push(node);
                }
            }
            ("apps/v1", "Deployment") => {
                if let Some(d) = self.decode::<Deployment>(value, kind, at) {
                    let spec = d.spec.unwrap_or_default();
                    let replicas = self.count(spec.replicas, "spec.replicas", kind, &name, at);
                    self.add_workload(kind, &d.metadata, &spec.template, replicas, at);
                }
            }
            ("apps/v1", "ReplicaSet") => {
                if let Some(r) = self.decode::<ReplicaSet>(value, kind, at) {
                    let spec = r.spec.unwrap_or_default();
                    let replicas = self.count(spec.replicas, "spec.replicas", kind, &name, at);
                    let template = spec.template.unwrap_or_default();
                    self.add_workload(kind, &r.metadata, &template, replicas, at);
                }
            }
            ("apps/v1", "StatefulSet") => {
                if let Some(s) = self.decode::<StatefulSet>(value, kind, at) {
                    let spec = s.spec.unwrap_or_default();
                    let replicas = self.count(spec.replicas, "spec.replicas", kind, &name, at);
                    let first = self.pods.len();
                    self.add_workload(kind, &s.metadata, &spec.template, replicas, at);
                    self.add_claim_templates(
                        &s.metadata,
                        spec.volume_claim_templates.as_deref().unwrap_or_default(),
                        first,
                    );
                }
            }
            ("v1", "PersistentVolumeClaim") => {
                if let Some(claim) = self.decode::<PersistentVolumeClaim>(value, kind, at) {
                    self.volumes.claims.push(claim);
                }
            }
            ("v1", "PersistentVolume") => {
                if let Some(volume) = self.decode::<PersistentVolume>(value, kind, at) {
                    self.volumes.volumes.push(volume);
                }
            }
            ("storage.k8s.io/v1", "StorageClass") => {
                if let Some(class) = self.decode::<StorageClass>(value, kind, at) {
                    self.volumes.storage_classes.push(class);
                }
            }
            ("batch/v1", "Job") => {
                if let Some(job) = self.decode::<Job>(value, kind, at) {
                    self.add_job(job, at);
                }
            }
            ("apps/v1", "DaemonSet") => {
                if let Some(daemonset) = self.decode::<DaemonSet>(value, kind, at) {
                    self.add_daemonset(daemonset, at);
                }
            }
            ("v1", list) if list == "List" || list.ends_with("List") => self.add_list(&value, &described, at),
            _ => self.ignore(api_version, kind, &described, at),
        }
    }

    /// A StatefulSet pod `<set>-<i>` mounts claim `<template>-<set>-<i>` for each claim template;
    /// the claims are created unbound from the template when the pod is.
    fn add_claim_templates(
        &mut self,
        metadata: &ObjectMeta,
        templates: &[PersistentVolumeClaim],
        first_pod: usize,
    ) {
        let namespace = namespace_of(metadata);
        for pod in &mut self.pods[first_pod..] {
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let spec = pod.spec.get_or_insert_with(PodSpec::default);
            for template in templates {
                let template_name = template.metadata.name.clone().unwrap_or_default();
                let claim_name = format!("{template_name}-{pod_name}");
                let volumes = spec.volumes.get_or_insert_with(Vec::new);
                if !volumes.iter().any(|v| v.name == template_name) {
                    volumes.push(Volume {
                        name: template_name.clone(),
                        persistent_volume_claim: Some(
                            k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                                claim_name: claim_name.clone(),
                                read_only: None,
                            },
                        ),
                        ..Volume::default()
                    });
                }
                let mut claim = template.clone();
                claim.metadata.name = Some(claim_name);
                claim.metadata.namespace = Some(namespace.clone());
                self.template_claims.push(claim);
            }
        }
    }

    /// Claims given among the inputs win over the ones a StatefulSet would create; a template
    /// claim without a storage class gets the default class, as the API server would.
    fn add_template_claims(&mut self) {
        let default_class = self
            .volumes
            .storage_classes
            .iter()
            .find(|c| {
                c.metadata.annotations.as_ref().is_some_and(|a| {
                    a.get("storageclass.kubernetes.io/is-default-class")
                        .map(String::as_str)
                        == Some("true")
                })
            })
            .and_then(|c| c.metadata.name.clone());
        for mut claim in std::mem::take(&mut self.template_claims) {
            let exists = self.volumes.claims.iter().any(|c| {
                c.metadata.name == claim.metadata.name && c.metadata.namespace == claim.metadata.namespace
            });
            if exists {
                continue;
            }
            if let Some(spec) = claim.spec.as_mut()
                && spec.storage_class_name.is_none()
            {
                spec.storage_class_name.clone_from(&default_class);
            }
            self.volumes.claims.push(claim);
        }
    }

    fn add_job(&mut self, job: Job, at: At<'_>) {
        let name = job.metadata.name.clone().unwrap_or_default();
        let spec = job.spec.unwrap_or_default();
        let parallelism = self.count(spec.parallelism, "spec.parallelism", "Job", &name, at);
        let completions = spec
            .completions
            .map_or(parallelism, |c| usize::try_from(c).unwrap_or(0));
        let pods = if spec.suspend == Some(true) {
            self.warnings
                .push(at.warn(&format!("Job/{name}"), "suspended; it runs no pods"));
            0
        } else {
            parallelism.min(completions)
        };
        self.add_workload("Job", &job.metadata, &spec.template, pods, at);
    }

    fn add_daemonset(&mut self, daemonset: DaemonSet, at: At<'_>) {
        let name = daemonset.metadata.name.clone().unwrap_or_default();
        let namespace = namespace_of(&daemonset.metadata);
        if !self.first("DaemonSet", &namespace, &name, at) {
            return;
        }
        let template = daemonset.spec.unwrap_or_default().template;
        if self.template_ok("DaemonSet", &name, &template, at) {
            self.daemonset_pods
                .push(pod_from_template(&template, &name, &namespace));
        }
    }

    /// A `List` (`kubectl get -o yaml`): each item as if it were its own document.
    fn add_list(&mut self, value: &Value, described: &str, at: At<'_>) {
        let Some(items) = value.get("items").and_then(Value::as_array) else {
            self.warnings
                .push(at.warn(described, "a list without items; ignored"));
            return;
        };
        for item in items {
            match decode_object(item.clone(), at.source, at.document) {
                Ok(object) => self.add(object, at),
                Err(error) => self.errors.push(error),
            }
        }
    }

    fn ignore(&mut self, api_version: &str, kind: &str, described: &str, at: At<'_>) {
        let supported = match kind {
            "Pod" | "Node" | "PersistentVolumeClaim" | "PersistentVolume" => Some("v1"),
            "StorageClass" => Some("storage.k8s.io/v1"),
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => Some("apps/v1"),
            "Job" => Some("batch/v1"),
            _ => None,
        };
        let message = match supported {
            Some(version) => format!("apiVersion {api_version} is not read (use {version}); ignored"),
            None => format!(
                "kind {kind} ({api_version}) is not used by plan (it reads NodePools, EC2NodeClasses, Pods, workloads and Nodes); ignored"
            ),
        };
        self.warnings.push(at.warn(described, &message));
    }

    /// Checks the quantities of a workload's pod template; a problem is recorded.
    fn template_ok(&mut self, kind: &str, name: &str, template: &PodTemplateSpec, at: At<'_>) -> bool {
        let mut problems = Problems::new();
        check_pod_spec(
            template.spec.as_ref(),
            &FieldPath::root("spec").child("template").child("spec"),
            &mut problems,
        );
        match problems.into_result(kind, name) {
            Ok(()) => true,
            Err(invalid) => {
                self.errors.push(at.error(invalid));
                false
            }
        }
    }

    /// Strict decoding (unknown fields and type errors named by path); the error is recorded.
    fn decode<T: serde::de::DeserializeOwned>(&mut self, value: Value, kind: &str, at: At<'_>) -> Option<T> {
        match decode_strict(value, kind) {
            Ok(object) => Some(object),
            Err(invalid) => {
                self.errors.push(at.error(invalid));
                None
            }
        }
    }

    /// Records `(kind, namespace, name)`; a repeat is an error, as the API server would say.
    fn first(&mut self, kind: &str, namespace: &str, name: &str, at: At<'_>) -> bool {
        if self
            .seen
            .insert((kind.to_owned(), namespace.to_owned(), name.to_owned()))
        {
            return true;
        }
        let what = if namespace.is_empty() {
            format!("another {kind} is named {name:?}")
        } else {
            format!("another {kind} in namespace {namespace:?} is named {name:?}")
        };
        self.errors.push(at.error(Invalid {
            kind: kind.to_owned(),
            name: name.to_owned(),
            errors: vec![FieldError {
                field: "metadata.name".into(),
                error_type: ErrorType::Duplicate,
                value: Some(name.to_owned()),
                detail: what,
            }],
        }));
        false
    }

    /// A replica or parallelism count: default 1, negative is an error.
    fn count(&mut self, value: Option<i32>, field: &str, kind: &str, name: &str, at: At<'_>) -> usize {
        let value = value.unwrap_or(1);
        if let Ok(count) = usize::try_from(value) {
            return count;
        }
        self.errors.push(at.error(Invalid {
            kind: kind.to_owned(),
            name: name.to_owned(),
            errors: vec![FieldError {
                field: field.to_owned(),
                error_type: ErrorType::Invalid,
                value: Some(value.to_string()),
                detail: "must be greater than or equal to 0".into(),
            }],
        }));
        0
    }

    fn add_workload(
        &mut self,
        kind: &str,
        metadata: &ObjectMeta,
        template: &PodTemplateSpec,
        replicas: usize,
        at: At<'_>,
    ) {
        let name = metadata.name.clone().unwrap_or_default();
        let namespace = namespace_of(metadata);
        if !self.first(kind, &namespace, &name, at) {
            return;
        }
        if !self.template_ok(kind, &name, template, at) {
            return;
        }
        for i in 0..replicas {
            let pod_name = format!("{name}-{i}");
            self.pods.push(pod_from_template(template, &pod_name, &namespace));
            self.origins.push(PodOrigin {
                namespace: namespace.clone(),
                name: pod_name,
                workload_kind: kind.to_owned(),
                workload_name: name.clone(),
                source_name: at.source.to_owned(),
            });
        }
    }

    fn add_pod(&mut self, mut pod: Pod, at: At<'_>) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = namespace_of(&pod.metadata);
        if !self.first("Pod", &namespace, &name, at) {
            return;
        }
        let mut problems = Problems::new();
        check_pod_spec(pod.spec.as_ref(), &FieldPath::root("spec"), &mut problems);
        if let Err(invalid) = problems.into_result("Pod", &name) {
            self.errors.push(at.error(invalid));
            return;
        }
        pod.metadata.namespace = Some(namespace.clone());
        let described = format!("Pod/{name}");
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            self.warnings
                .push(at.warn(&described, "has finished and takes no resources; ignored"));
            return;
        }
        if let Some(node) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
        {
            self.bound.push((pod, node, at.place(&described)));
            return;
        }
        self.pods.push(pod);
        self.origins.push(PodOrigin {
            namespace,
            workload_kind: "Pod".into(),
            workload_name: name.clone(),
            name,
            source_name: at.source.to_owned(),
        });
    }

    fn check_node(&mut self, node: &Node, at: At<'_>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let status = node.status.as_ref();
        let mut problems = Problems::new();
        if name.is_empty() {
            problems.required(&FieldPath::root("metadata").child("name"), "a Node needs a name");
        }
        for field in ["allocatable", "capacity"] {
            let map = status.and_then(|s| {
                if field == "allocatable" {
                    s.allocatable.as_ref()
                } else {
                    s.capacity.as_ref()
                }
            });
            let path = FieldPath::root("status").child(field);
            for (resource, amount) in map.into_iter().flatten() {
                check_quantity(resource, amount, &path.key(resource), &mut problems);
            }
        }
        if let Err(invalid) = problems.into_result("Node", &name) {
            self.errors.push(at.error(invalid));
        } else if status.and_then(|s| s.allocatable.as_ref()).is_none() {
            self.warnings.push(at.warn(
                &format!("Node/{name}"),
                "has no status.allocatable, so no pod can be placed on it",
            ));
        }
    }

    /// CEL expressions in the kubelet block are not evaluated: say so.
    fn check_kubelet_expressions(&mut self, class: &EC2NodeClass, at: At<'_>) {
        let Some(kubelet) = &class.spec.kubelet else {
            return;
        };
        let name = class.metadata.name.as_deref().unwrap_or("");
        let mut expressions = Vec::new();
        if kubelet.get("maxPods").is_some_and(Value::is_string) {
            expressions.push("kubelet.maxPods".to_owned());
        }
        for field in ["kubeReserved", "systemReserved"] {
            for (resource, amount) in kubelet
                .get(field)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let is_quantity = amount.as_str().is_none_or(|s| quantity::parse_milli(s).is_ok());
                if resource != "pid" && !is_quantity {
                    expressions.push(format!("kubelet.{field}[{resource}]"));
                }
            }
        }
        if !expressions.is_empty() {
            self.warnings.push(at.warn(
                &format!("EC2NodeClass/{name}"),
                &format!(
                    "CEL expressions in {} are not evaluated; the computed defaults are used",
                    expressions.join(", ")
                ),
            ));
        }
    }

    fn finish(mut self, catalog: &Catalog) -> Result<PlanInput, ManifestErrors> {
        let mut problem = Problem::default();
        let mut types_by_class: BTreeMap<String, Vec<InstanceType>> = BTreeMap::new();
        let mut default_types: Option<Vec<InstanceType>> = None;
        for (pool, source, document) in std::mem::take(&mut self.nodepools) {
            let at = At {
                source: &source,
                document,
            };
            let name = pool.metadata.name.clone().unwrap_or_default();
            let reference = &pool.spec.template.spec.node_class_ref;
            if pool.is_static() {
                self.warnings.push(at.warn(
                    &format!("NodePool/{name}"),
                    "is static (spec.replicas) and launches no nodes for pending pods; skipped",
                ));
                continue;
            }
            let instance_types = if let Some(class) = self.classes.get(&reference.name) {
                types_by_class
                    .entry(reference.name.clone())
                    .or_insert_with(|| types_for(catalog, &NodeSettings::from_node_class(class)))
                    .clone()
            } else {
                self.warnings.push(at.warn(
                    &format!("NodePool/{name}"),
                    &format!(
                        "EC2NodeClass {:?} is not among the inputs; default node settings are assumed (AL2023, 20Gi root volume, no kubelet overrides)",
                        reference.name
                    ),
                ));
                default_types
                    .get_or_insert_with(|| types_for(catalog, &NodeSettings::default()))
                    .clone()
            };
            problem.nodepools.push(PoolInput {
                nodepool: pool,
                instance_types,
                in_use: Resources::default(),
            });
        }
        if !self.errors.is_empty() {
            return Err(ManifestErrors(self.errors));
        }

        for node in std::mem::take(&mut self.nodes) {
            let existing = node_with_capacity(node);
            if let Some(pool) = existing.labels.get(labels::NODE_POOL)
                && let Some(input) = problem
                    .nodepools
                    .iter_mut()
                    .find(|p| p.nodepool.metadata.name.as_deref() == Some(pool.as_str()))
            {
                input.in_use.add_assign(&existing.capacity);
                let nodes = input.in_use.get("nodes");
                input.in_use.set("nodes", nodes + 1);
            }
            problem.existing_nodes.push(existing.node);
        }
        for (pod, node_name, at) in std::mem::take(&mut self.bound) {
            match problem
                .existing_nodes
                .iter_mut()
                .find(|n| n.name == node_name)
            {
                Some(node) => node.pods.push(pod),
                None => self.warnings.push(format!(
                    "{at}: is bound to node {node_name:?}, which is not among the inputs (pass Nodes with --existing); ignored"
                )),
            }
        }
        if problem.nodepools.is_empty() {
            self.warnings
                .push("no NodePool among the inputs: no node can be planned".to_owned());
        }
        self.add_template_claims();
        problem.volumes = std::mem::take(&mut self.volumes);
        problem.pods = self.pods;
        problem.daemonset_pods = self.daemonset_pods;
        Ok(PlanInput {
            problem,
            pods: self.origins,
            warnings: self.warnings,
            region: catalog.region().to_owned(),
            spot_prices_modelled: catalog.spot_prices_modelled(),
        })
    }
}

/// Plan only knows EC2NodeClasses: a NodePool pointing at another kind cannot be planned.
fn check_node_class_ref(pool: &NodePool) -> Result<(), Invalid> {
    let reference = &pool.spec.template.spec.node_class_ref;
    let path = FieldPath::root("spec")
        .child("template")
        .child("spec")
        .child("nodeClassRef");
    let mut problems = Problems::new();
    if reference.kind != "EC2NodeClass" {
        problems.not_supported(&path.child("kind"), &reference.kind, &["EC2NodeClass"]);
    }
    if reference.group != labels::KARPENTER_AWS_GROUP {
        problems.not_supported(
            &path.child("group"),
            &reference.group,
            &[labels::KARPENTER_AWS_GROUP],
        );
    }
    problems.into_result("NodePool", pool.metadata.name.as_deref().unwrap_or(""))
}

fn types_for(catalog: &Catalog, settings: &NodeSettings) -> Vec<InstanceType> {
    if catalog.settings() == settings {
        catalog.instance_types().to_vec()
    } else {
        catalog.with_settings(settings).instance_types().to_vec()
    }
}

fn namespace_of(metadata: &ObjectMeta) -> String {
    metadata
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// A pod as its controller would create it from `template`.
fn pod_from_template(template: &PodTemplateSpec, name: &str, namespace: &str) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: meta.labels,
            annotations: meta.annotations,
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Every resource quantity of a pod spec must parse and be non-negative.
fn check_pod_spec(spec: Option<&PodSpec>, path: &FieldPath, problems: &mut Problems) {
    let Some(spec) = spec else {
        problems.required(path, "a pod spec is required");
        return;
    };
    let containers = [
        ("containers", Some(&spec.containers)),
        ("initContainers", spec.init_containers.as_ref()),
    ];
    for (field, list) in containers {
        for (i, container) in list.into_iter().flatten().enumerate() {
            let resources = container.resources.as_ref();
            let at = path.child(field).index(i).child("resources");
            for (part, map) in [
                ("requests", resources.and_then(|r| r.requests.as_ref())),
                ("limits", resources.and_then(|r| r.limits.as_ref())),
            ] {
                for (resource, amount) in map.into_iter().flatten() {
                    check_quantity(resource, amount, &at.child(part).key(resource), problems);
                }
            }
        }
    }
    for (resource, amount) in spec.overhead.iter().flatten() {
        check_quantity(resource, amount, &path.child("overhead").key(resource), problems);
    }
    let pod_level = spec.resources.as_ref();
    for (part, map) in [
        ("requests", pod_level.and_then(|r| r.requests.as_ref())),
        ("limits", pod_level.and_then(|r| r.limits.as_ref())),
    ] {
        for (resource, amount) in map.into_iter().flatten() {
            check_quantity(
                resource,
                amount,
                &path.child("resources").child(part).key(resource),
                problems,
            );
        }
    }
}

fn check_quantity(resource: &str, amount: &Quantity, path: &FieldPath, problems: &mut Problems) {
    match parse_amount(resource, amount) {
        Ok(_) => {}
        Err(reason) => problems.invalid(path, &amount.0, reason),
    }
}

/// `cpu` in millicores, everything else in whole units.
fn parse_amount(resource: &str, amount: &Quantity) -> Result<i64, String> {
    let parsed =
        quantity::parse_resource(resource, &amount.0).map_err(|e| format!("not a quantity: {}", e.reason))?;
    match i64::try_from(parsed) {
        Ok(v) if v >= 0 => Ok(v),
        Ok(_) => Err("must be greater than or equal to 0".to_owned()),
        Err(_) => Err("too large".to_owned()),
    }
}

fn resources_of(map: Option<&BTreeMap<String, Quantity>>) -> Resources {
    let mut resources = Resources::default();
    for (name, amount) in map.into_iter().flatten() {
        // Checked in `check_node`; a quantity that did not parse never gets here.
        resources.set(name, parse_amount(name, amount).unwrap_or(0));
    }
    resources
}

struct NodeWithCapacity {
    node: ExistingNode,
    labels: BTreeMap<String, String>,
    /// `status.capacity`, or the allocatable when no capacity is given: what NodePool limits count.
    capacity: Resources,
}

/// A Node as the solver sees it: labels, taints (a cordoned node gets the unschedulable taint),
/// allocatable, and whether it is initialized (Ready is not False or Unknown). Its pods are left
/// for the caller to fill in.
pub fn existing_node(node: Node) -> ExistingNode {
    node_with_capacity(node).node
}

fn node_with_capacity(node: Node) -> NodeWithCapacity {
    let name = node.metadata.name.clone().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let spec = node.spec.unwrap_or_default();
    let mut taints = spec.taints.unwrap_or_default();
    // A cordoned node takes no new pods: the node lifecycle controller adds this taint.
    if spec.unschedulable == Some(true) && !taints.iter().any(|t| t.key == UNSCHEDULABLE_TAINT) {
        taints.push(Taint {
            key: UNSCHEDULABLE_TAINT.to_owned(),
            effect: "NoSchedule".to_owned(),
            ..Taint::default()
        });
    }
    let status = node.status.unwrap_or_default();
    let allocatable = resources_of(status.allocatable.as_ref());
    let capacity = if status.capacity.is_some() {
        resources_of(status.capacity.as_ref())
    } else {
        allocatable.clone()
    };
    // A node whose Ready condition is not True is still starting (or broken): tried last.
    let initialized = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .is_none_or(|c| c.status == "True");
    NodeWithCapacity {
        node: ExistingNode {
            name,
            labels: labels.clone(),
            taints,
            allocatable,
            pods: Vec::new(),
            initialized,
        },
        labels,
        capacity,
    }
}

const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";
