//! `autoscaling.x-k8s.io/v1beta1` CapacityBuffer: spare capacity kept ready for a workload's shape,
//! as in Karpenter and Cluster Autoscaler.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    duration::GoDuration,
    nodepool::{BUDGET_DURATION_PATTERN, BUDGET_SCHEDULE_PATTERN, parse_schedule},
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
    /// Scheduled sizes (a Nodewright extension): while a window is open its `replicas` replace
    /// `spec.replicas`; outside every window `spec.replicas` applies. When windows overlap the
    /// largest wins. `percentage` and `limits` combine with the result as they do with
    /// `spec.replicas`. For example, 30 chunks on weekday working hours and 5 otherwise:
    /// `replicas: 5`, `schedules: [{schedule: "0 8 * * 1-5", duration: 11h, replicas: 30}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub schedules: Vec<BufferSchedule>,
    /// The IANA time zone the `schedules` are read in, e.g. `Europe/Paris`; UTC when unset.
    /// Windows follow the zone's daylight-saving changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// A window of a CapacityBuffer's schedule: it opens at each hit of `schedule` (in the buffer's
/// `timeZone`) and stays open for `duration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BufferSchedule {
    /// Cron schedule: five fields (minute hour day-of-month month day-of-week) or one of
    /// `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`; as NodePool disruption budgets.
    #[schemars(regex(pattern = BUDGET_SCHEDULE_PATTERN))]
    pub schedule: String,
    /// How long the window stays open after each hit (hours and minutes, e.g. `11h`, `90m`).
    #[schemars(regex(pattern = BUDGET_DURATION_PATTERN))]
    pub duration: GoDuration,
    /// Number of chunks while the window is open.
    #[schemars(range(min = 0))]
    pub replicas: i32,
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
        validate_schedules(s, &spec, &mut problems);
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

fn validate_schedules(spec: &CapacityBufferSpec, path: &FieldPath, problems: &mut Problems) {
    if let Some(zone) = &spec.time_zone
        && let Err(error) = jiff::tz::TimeZone::get(zone)
    {
        problems.invalid(
            &path.child("timeZone"),
            zone,
            format!("must be an IANA time zone such as Europe/Paris ({error})"),
        );
    }
    if spec.schedules.len() > 50 {
        problems.too_many(&path.child("schedules"), spec.schedules.len(), 50);
    }
    for (index, window) in spec.schedules.iter().enumerate() {
        let path = path.child("schedules").index(index);
        if let Err(reason) = parse_schedule(&window.schedule) {
            problems.invalid(&path.child("schedule"), &window.schedule, reason);
        }
        let text = window.duration.as_str();
        let well_formed = crate::validation::matches_pattern(BUDGET_DURATION_PATTERN, text)
            && window.duration.parse().is_ok();
        if !well_formed {
            problems.invalid(
                &path.child("duration"),
                text,
                "must be hours and minutes, such as 10h, 30m or 1h30m",
            );
        }
        if window.replicas < 0 {
            problems.invalid(
                &path.child("replicas"),
                &window.replicas.to_string(),
                "must be greater than or equal to 0",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(extra: &serde_json::Value) -> CapacityBuffer {
        let mut spec = serde_json::json!({ "podTemplateRef": { "name": "chunk" }, "replicas": 5 });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "autoscaling.x-k8s.io/v1beta1", "kind": "CapacityBuffer",
            "metadata": { "name": "warm", "namespace": "default" }, "spec": spec
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn schedules_and_time_zones_are_checked_by_field() {
        let good = buffer(&serde_json::json!({ "timeZone": "Europe/Paris", "schedules": [
            { "schedule": "0 8 * * 1-5", "duration": "11h", "replicas": 30 }
        ] }));
        assert_eq!(good.validate(), Ok(()));
        let bad = buffer(&serde_json::json!({ "timeZone": "Mars/Olympus", "schedules": [
            { "schedule": "0 25 * * *", "duration": "11x", "replicas": -1 }
        ] }));
        let message = bad.validate().err().map(|e| e.to_string()).unwrap_or_default();
        for field in [
            "spec.timeZone",
            "spec.schedules[0].schedule",
            "spec.schedules[0].duration",
            "spec.schedules[0].replicas",
        ] {
            assert!(message.contains(field), "{field} missing from: {message}");
        }
    }
}
