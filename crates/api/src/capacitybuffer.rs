//! `autoscaling.x-k8s.io/v1beta1` CapacityBuffer: spare capacity kept ready for a workload's shape,
//! as in Karpenter and Cluster Autoscaler.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    quantity,
    validation::{FieldPath, Invalid, Problems},
};

/// The only provisioning strategy: keep real capacity free.
pub const ACTIVE_CAPACITY_STRATEGY: &str = "buffer.x-k8s.io/active-capacity";
/// Kinds a `scalableRef` may name.
pub const SCALABLE_KINDS: [&str; 3] = ["Deployment", "StatefulSet", "ReplicaSet"];

/// CapacityBuffer keeps room for `replicas` pods of a template or workload.
// kube-derive repeats `type_`/`priority` keys across printcolumn(...) entries by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    derive = "PartialEq",
    group = "autoscaling.x-k8s.io",
    version = "v1beta1",
    kind = "CapacityBuffer",
    plural = "capacitybuffers",
    singular = "capacitybuffer",
    namespaced,
    status = "CapacityBufferStatus",
    shortname = "cb",
    category = "autoscaling",
    printcolumn(
        name = "Strategy",
        type_ = "string",
        json_path = ".status.provisioningStrategy"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ReadyForProvisioning\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    doc = "CapacityBuffer is the Schema for the CapacityBuffers API"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "message": "If podTemplateRef is set, replicas or limits must also be set", "rule": "!has(self.podTemplateRef) || has(self.replicas) || has(self.limits)" },
    { "message": "You must define either PodTemplateRef or ScalableRef, but not both", "rule": "has(self.podTemplateRef) != has(self.scalableRef)" },
    { "message": "percentage may only be set with scalableRef", "rule": "!has(self.percentage) || has(self.scalableRef)" }
]))]
pub struct CapacityBufferSpec {
    /// How the buffer is provisioned.
    #[serde(default = "default_strategy")]
    pub provisioning_strategy: String,
    /// A PodTemplate in the same namespace giving the shape of one buffer chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_ref: Option<LocalObjectRef>,
    /// A workload whose pod template gives the shape and whose replicas scale the buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalable_ref: Option<ScalableRef>,
    /// Number of chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Chunks as a percentage of the workload's replicas (rounded up, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub percentage: Option<i32>,
    /// Caps the buffer by the chunks' total requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::resource_list")]
    pub limits: Option<BTreeMap<String, Quantity>>,
}

fn default_strategy() -> String {
    ACTIVE_CAPACITY_STRATEGY.into()
}

/// A reference to an object in the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectRef {
    #[schemars(length(min = 1))]
    pub name: String,
}

/// A reference to a scalable workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalableRef {
    #[serde(default)]
    pub api_group: String,
    #[schemars(length(min = 1))]
    pub kind: String,
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Observed state of a CapacityBuffer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityBufferStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_ref: Option<LocalObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl CapacityBuffer {
    /// Every problem with this CapacityBuffer.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut problems = Problems::new();
        crate::nodepool::validate_object_name(self.metadata.name.as_deref(), &mut problems);
        let spec = FieldPath::root("spec");
        let s = &self.spec;
        match (&s.pod_template_ref, &s.scalable_ref) {
            (Some(_), Some(_)) => problems.forbidden(
                &spec.child("scalableRef"),
                "You must define either PodTemplateRef or ScalableRef, but not both",
            ),
            (None, None) => problems.required(
                &spec.child("podTemplateRef"),
                "You must define either PodTemplateRef or ScalableRef, but not both",
            ),
            _ => {}
        }
        if let Some(template) = &s.pod_template_ref {
            if template.name.is_empty() {
                problems.required(
                    &spec.child("podTemplateRef").child("name"),
                    "name may not be empty",
                );
            }
            if s.replicas.is_none() && s.limits.is_none() {
                problems.required(
                    &spec.child("replicas"),
                    "If podTemplateRef is set, replicas or limits must also be set",
                );
            }
        }
        if let Some(scalable) = &s.scalable_ref {
            let path = spec.child("scalableRef");
            if scalable.name.is_empty() {
                problems.required(&path.child("name"), "name may not be empty");
            }
            if !SCALABLE_KINDS.contains(&scalable.kind.as_str()) {
                problems.not_supported(&path.child("kind"), &scalable.kind, &SCALABLE_KINDS);
            }
        }
        if s.percentage.is_some() && s.scalable_ref.is_none() {
            problems.forbidden(
                &spec.child("percentage"),
                "percentage may only be set with scalableRef",
            );
        }
        for (field, value) in [("replicas", s.replicas), ("percentage", s.percentage)] {
            if let Some(value) = value
                && value < 0
            {
                problems.invalid(
                    &spec.child(field),
                    &value.to_string(),
                    "must be greater than or equal to 0",
                );
            }
        }
        for (resource, value) in s.limits.iter().flatten() {
            if quantity::parse_milli(&value.0).is_err() {
                problems.invalid(
                    &spec.child("limits").key(resource),
                    &value.0,
                    "must be a quantity",
                );
            }
        }
        problems.into_result("CapacityBuffer", &self.name_any())
    }
}
