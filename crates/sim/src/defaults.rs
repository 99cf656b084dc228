//! Defaults of built-in kinds that controllers and kubectl read back (a pod's restart policy and
//! grace period, a Deployment's replicas and strategy, a Service's type). Only missing fields are
//! filled, as the API server's defaulters do.

use serde_json::{Map, Value, json};

use crate::{meta, resources::ResourceInfo};

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), value);
    }
}

fn pod_spec(spec: &mut Value) {
    let Some(map) = spec.as_object_mut() else { return };
    set_default(map, "restartPolicy", "Always".into());
    set_default(map, "terminationGracePeriodSeconds", 30.into());
    set_default(map, "dnsPolicy", "ClusterFirst".into());
    set_default(map, "schedulerName", "default-scheduler".into());
    set_default(map, "securityContext", json!({}));
    for list in ["initContainers", "containers"] {
        for container in map
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = container.as_object_mut() else {
                continue;
            };
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            let tag = image.rsplit_once('/').map_or(image, |(_, last)| last);
            let pull = if tag.contains('@') || (tag.contains(':') && !tag.ends_with(":latest")) {
                "IfNotPresent"
            } else {
                "Always"
            };
            set_default(c, "imagePullPolicy", pull.into());
            set_default(c, "terminationMessagePath", "/dev/termination-log".into());
            set_default(c, "terminationMessagePolicy", "File".into());
            set_default(c, "resources", json!({}));
            for port in c
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(p) = port.as_object_mut() {
                    set_default(p, "protocol", "TCP".into());
                }
            }
        }
    }
}

fn template(value: &mut Value) {
    if let Some(spec) = value
        .get_mut("spec")
        .and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
    {
        pod_spec(spec);
    }
}

/// Fills the defaults of a built-in kind.
pub fn apply(info: &ResourceInfo, value: &mut Value) {
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => {
            if let Some(spec) = value.get_mut("spec") {
                pod_spec(spec);
            }
        }
        ("", "podtemplates") => {
            if let Some(spec) = value.get_mut("template").and_then(|t| t.get_mut("spec")) {
                pod_spec(spec);
            }
        }
        ("apps", "deployments") => {
            let spec = meta::object_field_mut(value, "spec");
            set_default(spec, "replicas", 1.into());
            set_default(spec, "revisionHistoryLimit", 10.into());
            set_default(spec, "progressDeadlineSeconds", 600.into());
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
            template(value);
        }
        ("apps", "replicasets" | "statefulsets") => {
            let spec = meta::object_field_mut(value, "spec");
            set_default(spec, "replicas", 1.into());
            template(value);
        }
        ("apps", "daemonsets") => template(value),
        ("batch", "jobs") => {
            let spec = meta::object_field_mut(value, "spec");
            set_default(spec, "backoffLimit", 6.into());
            set_default(spec, "completions", 1.into());
            set_default(spec, "parallelism", 1.into());
            template(value);
        }
        ("", "services") => {
            let spec = meta::object_field_mut(value, "spec");
            set_default(spec, "type", "ClusterIP".into());
            set_default(spec, "sessionAffinity", "None".into());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    #[test]
    fn deployment_defaults_fill_only_missing_fields() {
        let registry = Registry::with_builtins();
        let info = registry.get("apps", "deployments").unwrap();
        let mut d = json!({"spec": {"replicas": 0, "template": {"spec": {"containers": [{"name": "c", "image": "pause:3.2", "ports": [{"containerPort": 80}]}]}}}});
        apply(&info, &mut d);
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }
}
