//! `events.k8s.io/v1` Events are also visible as `core/v1` Events, as they are in a real cluster
//! (where both APIs are views of one stored object): every write of an events.k8s.io Event stores
//! its core/v1 form under the same namespace, name and uid, so `kubectl get events` and
//! `kubectl describe` show what controllers publish with kube-runtime's `Recorder`. The mirror
//! runs one way only: core/v1 writes are not copied to events.k8s.io.

use serde_json::{Map, Value};

/// Whether a type is `events.k8s.io` Events.
pub fn is_events_v1(group: &str, plural: &str) -> bool {
    group == "events.k8s.io" && plural == "events"
}

/// The core/v1 form of an events.k8s.io/v1 Event, by Kubernetes' field mapping.
pub fn to_core(event: &Value) -> Value {
    let mut core = Map::new();
    core.insert("apiVersion".into(), "v1".into());
    core.insert("kind".into(), "Event".into());
    if let Some(Value::Object(meta)) = event.get("metadata") {
        let mut meta = meta.clone();
        meta.remove("resourceVersion");
        meta.remove("managedFields");
        core.insert("metadata".into(), Value::Object(meta));
    }
    let renames = [
        ("regarding", "involvedObject"),
        ("related", "related"),
        ("reason", "reason"),
        ("note", "message"),
        ("type", "type"),
        ("action", "action"),
        ("eventTime", "eventTime"),
        ("series", "series"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
        ("deprecatedSource", "source"),
        ("deprecatedCount", "count"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
    ];
    for (from, to) in renames {
        if let Some(v) = event.get(from).filter(|v| !v.is_null()) {
            core.insert(to.into(), v.clone());
        }
    }
    Value::Object(core)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_are_renamed_as_kubernetes_converts_them() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "p.1", "namespace": "default", "resourceVersion": "9"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "no nodes fit", "reason": "FailedScheduling",
            "type": "Warning", "reportingController": "nodewright", "series": {"count": 2}});
        let core = to_core(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "no nodes fit");
        assert_eq!(core["reportingComponent"], "nodewright");
        assert_eq!(core["series"]["count"], 2);
        assert!(core["metadata"].get("resourceVersion").is_none());
    }
}
