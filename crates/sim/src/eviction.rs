//! The Eviction API's PodDisruptionBudget arithmetic, computed from the pods themselves rather
//! than from a disruption controller's status: expected pods are the budget's matching pods that
//! are not terminating or finished, healthy ones are those of them that are Ready, and the budget
//! allows `healthy - desiredHealthy` disruptions, where desiredHealthy comes from `minAvailable`
//! or `expected - maxUnavailable` (percentages round up, as Kubernetes rounds them).

use serde_json::Value;

/// The budget's numbers for one eviction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Matching pods that count.
    pub expected: i64,
    /// Of them, Ready ones.
    pub healthy: i64,
    /// How many must stay healthy.
    pub desired_healthy: i64,
}

impl Budget {
    /// Disruptions the budget allows now.
    pub fn disruptions_allowed(&self) -> i64 {
        self.healthy.saturating_sub(self.desired_healthy).max(0)
    }
}

/// Whether a pod is terminating or has finished.
pub fn is_gone(pod: &Value) -> bool {
    pod.get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some()
        || matches!(
            pod.get("status")
                .and_then(|s| s.get("phase"))
                .and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        )
}

/// Whether a pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    pod.get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Ready")
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
}

/// An int-or-percent scaled against a total, rounding up.
fn scaled(value: &Value, total: i64) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<i64>()
                .ok()
                .map(|p| p.saturating_mul(total).saturating_add(99) / 100),
            None => s.parse().ok(),
        },
        _ => None,
    }
}

/// The budget of a PDB over the pods its selector matches.
pub fn budget(pdb: &Value, matching_pods: &[Value]) -> Budget {
    let counted: Vec<&Value> = matching_pods.iter().filter(|p| !is_gone(p)).collect();
    let expected = i64::try_from(counted.len()).unwrap_or(i64::MAX);
    let healthy = i64::try_from(counted.iter().filter(|p| is_ready(p)).count()).unwrap_or(i64::MAX);
    let spec = pdb.get("spec");
    let desired_healthy = if let Some(min) = spec.and_then(|s| s.get("minAvailable")) {
        scaled(min, expected).unwrap_or(0)
    } else if let Some(max) = spec.and_then(|s| s.get("maxUnavailable")) {
        expected.saturating_sub(scaled(max, expected).unwrap_or(0)).max(0)
    } else {
        // Neither set: the API server defaults minAvailable to 1.
        1
    };
    Budget {
        expected,
        healthy,
        desired_healthy,
    }
}

/// Whether a PDB lets an unhealthy (not Ready) pod go regardless of the budget.
pub fn always_allows_unhealthy(pdb: &Value) -> bool {
    pdb.get("spec")
        .and_then(|s| s.get("unhealthyPodEvictionPolicy"))
        .and_then(Value::as_str)
        == Some("AlwaysAllow")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(ready: bool) -> Value {
        json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn min_available_and_max_unavailable() {
        let pods = vec![pod(true), pod(true), pod(true), pod(false)];
        let min2 = budget(&json!({"spec": {"minAvailable": 2}}), &pods);
        assert_eq!((min2.expected, min2.healthy, min2.desired_healthy), (4, 3, 2));
        assert_eq!(min2.disruptions_allowed(), 1);
        let max1 = budget(&json!({"spec": {"maxUnavailable": 1}}), &pods);
        assert_eq!(max1.desired_healthy, 3);
        assert_eq!(max1.disruptions_allowed(), 0);
        let pct = budget(&json!({"spec": {"minAvailable": "50%"}}), &pods[..3]);
        assert_eq!(pct.desired_healthy, 2);
        let mut terminating = pod(true);
        terminating["metadata"] = json!({"deletionTimestamp": "2024-01-01T00:00:00Z"});
        let b = budget(&json!({"spec": {"minAvailable": 1}}), &[terminating, pod(true)]);
        assert_eq!((b.expected, b.healthy), (1, 1));
        assert_eq!(b.disruptions_allowed(), 0);
    }
}
