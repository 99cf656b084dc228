//! Which NodePools may launch nodes this round, in the order they are tried.
//!
//! The readiness rule: Karpenter provisions only from NodePools whose `Ready` condition is
//! True. Nodewright provisions from NodePools whose `Ready` is **not False** — True, Unknown, or
//! absent — because a NodePool's status may not be written by anyone yet (a fresh NodePool, the
//! simulation, a cluster where the status controller has not run). What `Ready=False` stands
//! for is checked here directly, so nothing is lost:
//!
//! - the NodePool is valid (`validate()`, what `ValidationSucceeded` records);
//! - its `nodeClassRef` names an EC2NodeClass that exists, is not being deleted, and whose own
//!   `Ready` is not False (an EC2NodeClass without status, as in the simulation, counts as
//!   ready: the cloud provider has the last word and answers `NodeClassNotReady` from
//!   `get_instance_types` when it cannot launch with it; that NodePool is then skipped);
//! - it is not being deleted, and is not static (`spec.replicas`: those are scaled to their
//!   replica count by their own controller, never for pending pods).
//!
//! A NodePool whose `Ready` is False is skipped whatever the reason.

use std::sync::Arc;

use kube::ResourceExt;
use nodewright_api::{EC2NodeClass, NodePool, conditions, labels};

/// A NodePool left out of this round, and why (for logs and pod events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skipped {
    pub(crate) nodepool: String,
    pub(crate) reason: String,
    /// The cloud provider said the node class cannot launch (a `NodeClassNotReady` event).
    pub(crate) node_class_not_ready: bool,
}

/// The NodePools that may launch nodes, highest weight first (ties: name descending, as
/// Karpenter orders them), and the ones left out with the reason.
pub(crate) fn usable(
    pools: &[Arc<NodePool>],
    classes: &[Arc<EC2NodeClass>],
) -> (Vec<Arc<NodePool>>, Vec<Skipped>) {
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for pool in pools {
        match why_unusable(pool, classes) {
            None => ok.push(Arc::clone(pool)),
            Some(reason) => skipped.push(Skipped {
                nodepool: pool.name_any(),
                reason,
                node_class_not_ready: false,
            }),
        }
    }
    ok.sort_by(|a, b| {
        let weight = |p: &NodePool| p.spec.weight.unwrap_or(0);
        weight(b)
            .cmp(&weight(a))
            .then_with(|| b.name_any().cmp(&a.name_any()))
    });
    skipped.sort_by(|a, b| a.nodepool.cmp(&b.nodepool));
    (ok, skipped)
}

fn why_unusable(pool: &NodePool, classes: &[Arc<EC2NodeClass>]) -> Option<String> {
    if pool.is_static() && pool.metadata.deletion_timestamp.is_none() {
        return Some("is static (spec.replicas); its nodes are not provisioned for pending pods".to_owned());
    }
    why_cannot_launch(pool, classes)
}

/// Why no node may be launched from `pool` at all (for pending pods or, for a static NodePool,
/// to reach its replica count), or None when it may launch.
pub(crate) fn why_cannot_launch(pool: &NodePool, classes: &[Arc<EC2NodeClass>]) -> Option<String> {
    if pool.metadata.deletion_timestamp.is_some() {
        return Some("is being deleted".to_owned());
    }
    if let Some(ready) = ready_condition(pool.status.as_ref().map(|s| s.conditions.as_slice()))
        && ready.status == conditions::FALSE
    {
        return Some(format!("is not ready: {}: {}", ready.reason, ready.message));
    }
    if let Err(invalid) = pool.validate() {
        return Some(format!("is invalid: {invalid}"));
    }
    let reference = &pool.spec.template.spec.node_class_ref;
    if reference.group != labels::KARPENTER_AWS_GROUP || reference.kind != "EC2NodeClass" {
        return Some(format!(
            "spec.template.spec.nodeClassRef: kind {}/{} is not supported (only {}/EC2NodeClass)",
            reference.group,
            reference.kind,
            labels::KARPENTER_AWS_GROUP
        ));
    }
    let Some(class) = classes.iter().find(|c| c.name_any() == reference.name) else {
        return Some(format!(
            "spec.template.spec.nodeClassRef: EC2NodeClass {} not found",
            reference.name
        ));
    };
    if class.metadata.deletion_timestamp.is_some() {
        return Some(format!("EC2NodeClass {} is being deleted", reference.name));
    }
    if let Some(ready) = ready_condition(class.status.as_ref().map(|s| s.conditions.as_slice()))
        && ready.status == conditions::FALSE
    {
        return Some(format!(
            "EC2NodeClass {} is not ready: {}: {}",
            reference.name, ready.reason, ready.message
        ));
    }
    None
}

fn ready_condition(
    conditions: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]>,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions?.iter().find(|c| c.type_ == conditions::READY)
}

/// What about NodePools and EC2NodeClasses can change a round's outcome: each object's
/// generation, deletion and Ready status. Status churn that changes none of these (resource
/// counters) does not wake the provisioner.
pub(crate) fn fingerprint(pools: &[Arc<NodePool>], classes: &[Arc<EC2NodeClass>]) -> Vec<String> {
    let ready = |conditions: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]>| {
        ready_condition(conditions).map_or_else(String::new, |c| c.status.clone())
    };
    let mut parts: Vec<String> = pools
        .iter()
        .map(|p| {
            format!(
                "NodePool/{}/{:?}/{}/{}",
                p.name_any(),
                p.metadata.generation,
                p.metadata.deletion_timestamp.is_some(),
                ready(p.status.as_ref().map(|s| s.conditions.as_slice()))
            )
        })
        .chain(classes.iter().map(|c| {
            format!(
                "EC2NodeClass/{}/{:?}/{}/{}",
                c.name_any(),
                c.metadata.generation,
                c.metadata.deletion_timestamp.is_some(),
                ready(c.status.as_ref().map(|s| s.conditions.as_slice()))
            )
        }))
        .collect();
    parts.sort();
    parts
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn pool(name: &str, extra: &Value) -> Arc<NodePool> {
        let mut value = json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": { "name": name, "uid": format!("uid-{name}") },
            "spec": { "template": { "spec": {
                "requirements": [{ "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"] }],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
            } } }
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut value, extra) {
            for (k, v) in extra {
                match (base.get_mut(k), v) {
                    (Some(Value::Object(inner)), Value::Object(more)) => {
                        inner.extend(more.clone());
                    }
                    _ => {
                        base.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn class(name: &str, extra: &Value) -> Arc<EC2NodeClass> {
        let mut value = json!({
            "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
            "metadata": { "name": name },
            "spec": {
                "amiSelectorTerms": [{ "alias": "al2023@latest" }],
                "role": "node-role",
                "subnetSelectorTerms": [{ "tags": { "k": "v" } }],
                "securityGroupSelectorTerms": [{ "tags": { "k": "v" } }]
            }
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut value, extra) {
            base.extend(extra.clone());
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn names(pools: &[Arc<NodePool>]) -> Vec<String> {
        pools.iter().map(|p| p.name_any()).collect()
    }

    fn condition(status: &str) -> Value {
        json!({ "conditions": [{ "type": "Ready", "status": status, "reason": "Why", "message": "because",
            "lastTransitionTime": "2026-01-01T00:00:00Z" }] })
    }

    #[test]
    fn pools_are_ordered_by_weight_then_name_descending() {
        let classes = [class("default", &json!({}))];
        let pools = [
            pool("a", &json!({})),
            pool("b", &json!({})),
            pool("heavy", &json!({ "spec": { "weight": 50 } })),
        ];
        let (ok, skipped) = usable(&pools, &classes);
        assert_eq!(names(&ok), ["heavy", "b", "a"]);
        assert!(skipped.is_empty());
    }

    #[test]
    fn ready_unknown_or_absent_is_usable_but_false_is_not() {
        let classes = [class("default", &json!({}))];
        let pools = [
            pool("absent", &json!({})),
            pool("unknown", &json!({ "status": condition("Unknown") })),
            pool("true", &json!({ "status": condition("True") })),
            pool("false", &json!({ "status": condition("False") })),
        ];
        let (ok, skipped) = usable(&pools, &classes);
        assert_eq!(names(&ok), ["unknown", "true", "absent"]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].nodepool, "false");
        assert!(
            skipped[0].reason.contains("not ready: Why: because"),
            "{skipped:?}"
        );
    }

    #[test]
    fn deleting_static_and_classless_pools_are_skipped() {
        let pools = [
            pool(
                "deleting",
                &json!({ "metadata": { "name": "deleting", "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["x"] } }),
            ),
            pool("static", &json!({ "spec": { "replicas": 3 } })),
            pool("ok", &json!({})),
        ];
        let (ok, skipped) = usable(&pools, &[]);
        assert!(ok.is_empty());
        let reasons: Vec<&str> = skipped.iter().map(|s| s.reason.as_str()).collect();
        assert!(reasons[0].contains("being deleted"), "{reasons:?}");
        assert!(
            reasons[1].contains("EC2NodeClass default not found"),
            "{reasons:?}"
        );
        assert!(reasons[2].contains("static"), "{reasons:?}");

        let not_ready = [class("default", &json!({ "status": condition("False") }))];
        let (ok, skipped) = usable(&[pool("ok", &json!({}))], &not_ready);
        assert!(ok.is_empty());
        assert!(skipped[0].reason.contains("EC2NodeClass default is not ready"));
    }

    #[test]
    fn the_fingerprint_ignores_status_counters() {
        let classes = [class("default", &json!({}))];
        let before = fingerprint(&[pool("a", &json!({}))], &classes);
        let counted = fingerprint(
            &[pool("a", &json!({ "status": { "resources": { "cpu": "4" } } }))],
            &classes,
        );
        assert_eq!(before, counted);
        let readied = fingerprint(&[pool("a", &json!({ "status": condition("True") }))], &classes);
        assert_ne!(before, readied);
    }
}
