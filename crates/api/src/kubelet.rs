//! Validation of the EC2NodeClass `kubelet` block: an open map that the API server stores as is and
//! the controller checks, reporting `ValidationSucceeded=False` on failure. `validate()` runs the
//! same checks so users see problems before applying.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{
    duration::parse_go_duration,
    quantity,
    validation::{FieldPath, Problems},
};

/// Eviction signals the kubelet understands.
pub const EVICTION_SIGNALS: [&str; 6] = [
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "pid.available",
];
/// Resources that kubeReserved and systemReserved may hold.
pub const RESERVABLE_RESOURCES: [&str; 4] = ["cpu", "memory", "ephemeral-storage", "pid"];

type Kubelet = BTreeMap<String, Value>;

pub(crate) fn validate(kubelet: &Kubelet, path: &FieldPath, problems: &mut Problems) {
    if kubelet.contains_key("registerWithTaints") {
        problems.forbidden(
            &path.child("registerWithTaints"),
            "registerWithTaints is managed by Nodewright; use the NodePool's taints and startupTaints",
        );
    }
    validate_counts(kubelet, path, problems);
    validate_reserved(kubelet, path, problems);
    validate_eviction(kubelet, path, problems);
    validate_image_gc(kubelet, path, problems);
    if let Some(value) = kubelet.get("cpuCFSQuota")
        && !value.is_boolean()
    {
        problems.invalid(
            &path.child("cpuCFSQuota"),
            &value.to_string(),
            "must be a boolean",
        );
    }
}

fn validate_counts(kubelet: &Kubelet, path: &FieldPath, problems: &mut Problems) {
    for field in ["podsPerCore", "evictionMaxPodGracePeriod"] {
        if let Some(value) = kubelet.get(field)
            && value.as_i64().is_none_or(|v| v < 0)
        {
            problems.invalid(
                &path.child(field),
                &value.to_string(),
                "must be a non-negative integer",
            );
        }
    }
    if let Some(value) = kubelet.get("maxPods") {
        // A string is a CEL expression, evaluated per instance type when the gate allows it.
        let ok = value.as_i64().is_some_and(|v| v >= 0) || value.as_str().is_some_and(|s| !s.is_empty());
        if !ok {
            problems.invalid(
                &path.child("maxPods"),
                &value.to_string(),
                "must be a non-negative integer or a CEL expression",
            );
        }
    }
    if let Some(value) = kubelet.get("clusterDNS") {
        let all_ips = value.as_array().is_some_and(|ips| {
            ips.iter()
                .all(|ip| ip.as_str().is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()))
        });
        if !all_ips {
            problems.invalid(
                &path.child("clusterDNS"),
                &value.to_string(),
                "must be a list of IP addresses",
            );
        }
    }
}

fn validate_reserved(kubelet: &Kubelet, path: &FieldPath, problems: &mut Problems) {
    for field in ["kubeReserved", "systemReserved"] {
        let Some(value) = kubelet.get(field) else { continue };
        let field_path = path.child(field);
        let Some(map) = value.as_object() else {
            problems.invalid(
                &field_path,
                &value.to_string(),
                "must be a map of resource to quantity",
            );
            continue;
        };
        for (resource, amount) in map {
            if !RESERVABLE_RESOURCES.contains(&resource.as_str()) {
                problems.not_supported(&field_path.key(resource), resource, &RESERVABLE_RESOURCES);
            }
            // A string that is not a quantity is a CEL expression (checked when evaluated).
            let ok = amount
                .as_str()
                .is_some_and(|s| !s.is_empty() && quantity::parse_milli(s).ok().is_none_or(|m| m >= 0))
                || amount.as_i64().is_some_and(|v| v >= 0);
            if !ok {
                problems.invalid(
                    &field_path.key(resource),
                    &amount.to_string(),
                    "must be a non-negative quantity",
                );
            }
        }
    }
}

fn validate_eviction(kubelet: &Kubelet, path: &FieldPath, problems: &mut Problems) {
    let mut soft_keys: Option<Vec<&String>> = None;
    for field in ["evictionHard", "evictionSoft"] {
        let Some(value) = kubelet.get(field) else { continue };
        let field_path = path.child(field);
        let Some(map) = value.as_object() else {
            problems.invalid(
                &field_path,
                &value.to_string(),
                "must be a map of signal to threshold",
            );
            continue;
        };
        for (signal, threshold) in map {
            if !EVICTION_SIGNALS.contains(&signal.as_str()) {
                problems.not_supported(&field_path.key(signal), signal, &EVICTION_SIGNALS);
            }
            if !threshold.as_str().is_some_and(valid_threshold) {
                problems.invalid(
                    &field_path.key(signal),
                    &threshold.to_string(),
                    "must be a percentage between 0% and 100% or a non-negative quantity",
                );
            }
        }
        if field == "evictionSoft" {
            soft_keys = Some(map.keys().collect());
        }
    }
    let grace = kubelet.get("evictionSoftGracePeriod").and_then(Value::as_object);
    for (signal, period) in grace.into_iter().flatten() {
        if period.as_str().is_none_or(|p| parse_go_duration(p).is_err()) {
            problems.invalid(
                &path.child("evictionSoftGracePeriod").key(signal),
                &period.to_string(),
                "must be a duration",
            );
        }
    }
    let grace_keys: Vec<&String> = grace.map(|g| g.keys().collect()).unwrap_or_default();
    if soft_keys.unwrap_or_default() != grace_keys {
        let keys = grace_keys
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(",");
        problems.invalid(
            &path.child("evictionSoftGracePeriod"),
            &keys,
            "evictionSoft and evictionSoftGracePeriod must have the same keys",
        );
    }
}

fn validate_image_gc(kubelet: &Kubelet, path: &FieldPath, problems: &mut Problems) {
    let high = kubelet.get("imageGCHighThresholdPercent");
    let low = kubelet.get("imageGCLowThresholdPercent");
    for (field, value) in [
        ("imageGCHighThresholdPercent", high),
        ("imageGCLowThresholdPercent", low),
    ] {
        if let Some(value) = value
            && !value.as_i64().is_some_and(|v| (0..=100).contains(&v))
        {
            problems.invalid(
                &path.child(field),
                &value.to_string(),
                "must be between 0 and 100",
            );
        }
    }
    if let (Some(high), Some(low)) = (high.and_then(Value::as_i64), low.and_then(Value::as_i64))
        && high <= low
    {
        problems.invalid(
            &path.child("imageGCHighThresholdPercent"),
            &high.to_string(),
            "must be greater than imageGCLowThresholdPercent",
        );
    }
}

fn valid_threshold(threshold: &str) -> bool {
    if let Some(percent) = threshold.strip_suffix('%') {
        return percent.parse::<f64>().is_ok_and(|p| (0.0..=100.0).contains(&p));
    }
    quantity::parse_milli(threshold).is_ok_and(|m| m >= 0)
}
