//! Transition rules: what may not change on update, checked by `validate_update()` and by the CRD's
//! CEL rules with `oldSelf`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod support;

use nodewright_api::{NodeClaim, NodePool};
use serde_json::{Value, json};
use support::{crd_verdict, edit};

fn nodepool() -> Value {
    json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": { "name": "default" },
        "spec": {
            "template": { "spec": {
                "requirements": [{ "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"] }],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
            } }
        }
    })
}

fn nodeclaim() -> Value {
    json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": { "name": "default-x1y2z" },
        "spec": {
            "requirements": [{ "key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"] }],
            "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
        }
    })
}

fn nodepool_update_fields(old: &Value, new: &Value) -> Vec<String> {
    let old: NodePool = serde_json::from_value(old.clone()).unwrap();
    let new: NodePool = serde_json::from_value(new.clone()).unwrap();
    match new.validate_update(&old) {
        Ok(()) => Vec::new(),
        Err(invalid) => invalid.errors.into_iter().map(|e| e.field).collect(),
    }
}

#[test]
fn unchanged_and_allowed_updates_pass() {
    let old = nodepool();
    let renamed_class = edit(
        old.clone(),
        &[("/spec/template/spec/nodeClassRef/name", json!("other"))],
    );
    assert!(
        nodepool_update_fields(&old, &renamed_class).is_empty(),
        "the node class name may change"
    );
    assert!(crd_verdict("NodePool", &renamed_class, Some(&old)).accepted());
    let claim = nodeclaim();
    let relabelled = edit(claim.clone(), &[("/metadata/labels", json!({ "team": "a" }))]);
    assert!(
        crd_verdict("NodeClaim", &relabelled, Some(&claim)).accepted(),
        "metadata may change"
    );
}

#[test]
fn node_class_group_and_kind_are_immutable() {
    let old = nodepool();
    for (field, value, message) in [
        ("group", "example.com", "nodeClassRef.group is immutable"),
        ("kind", "OtherNodeClass", "nodeClassRef.kind is immutable"),
    ] {
        let new = edit(
            old.clone(),
            &[(&format!("/spec/template/spec/nodeClassRef/{field}"), json!(value))],
        );
        let path = format!("spec.template.spec.nodeClassRef.{field}");
        assert!(
            nodepool_update_fields(&old, &new).contains(&path),
            "validate_update must name {path}"
        );
        let verdict = crd_verdict("NodePool", &new, Some(&old));
        assert!(
            verdict.cel.iter().any(|m| m.contains(message)),
            "CEL must reject with {message}: {verdict:?}"
        );
        assert!(
            crd_verdict("NodePool", &new, None).accepted(),
            "the same object is fine on create"
        );
    }
}

#[test]
fn static_and_dynamic_modes_do_not_switch() {
    let dynamic = nodepool();
    let fixed = edit(dynamic.clone(), &[("/spec/replicas", json!(3))]);
    for (old, new) in [(&dynamic, &fixed), (&fixed, &dynamic)] {
        assert!(nodepool_update_fields(old, new).contains(&"spec.replicas".to_owned()));
        let verdict = crd_verdict("NodePool", new, Some(old));
        assert!(
            verdict
                .cel
                .iter()
                .any(|m| m.contains("Cannot transition NodePool between static")),
            "{verdict:?}"
        );
    }
    let scaled = edit(fixed.clone(), &[("/spec/replicas", json!(5))]);
    assert!(
        nodepool_update_fields(&fixed, &scaled).is_empty(),
        "scaling a static pool is allowed"
    );
    assert!(crd_verdict("NodePool", &scaled, Some(&fixed)).accepted());
}

#[test]
fn nodeclaim_spec_is_immutable() {
    let old = nodeclaim();
    let new = edit(old.clone(), &[("/spec/expireAfter", json!("1h"))]);
    let old_claim: NodeClaim = serde_json::from_value(old.clone()).unwrap();
    let new_claim: NodeClaim = serde_json::from_value(new.clone()).unwrap();
    let err = new_claim.validate_update(&old_claim).unwrap_err();
    assert!(err.has_field("spec"), "{err}");
    assert!(old_claim.validate_update(&old_claim).is_ok());
    let verdict = crd_verdict("NodeClaim", &new, Some(&old));
    assert!(
        verdict.cel.iter().any(|m| m.contains("spec is immutable")),
        "{verdict:?}"
    );
}
