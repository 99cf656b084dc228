//! The NodePool hash behind static drift (Karpenter's `NodePool.Hash()`): a stable digest of the
//! template fields whose change makes existing nodes out of date. The hash and
//! [`NODEPOOL_HASH_VERSION`] are written on the NodePool and on every NodeClaim made from it
//! (annotations [`crate::labels::NODE_POOL_HASH`] and [`crate::labels::NODE_POOL_HASH_VERSION`]);
//! a NodeClaim whose version equals its NodePool's but whose hash differs has drifted.
//!
//! Hashed, as Karpenter hashes `spec.template`: the template's labels and annotations, taints and
//! startup taints (as sets: order and duplicates do not matter), the node class reference,
//! `terminationGracePeriod` and `expireAfter` (by value: `60m` and `1h` are the same). Not hashed:
//! the requirements (drift checks them against the NodeClaim's labels instead) and everything
//! outside the template (limits, weight, disruption).
//!
//! The digest is FNV-1a (64 bit) over a canonical text of those fields, printed in decimal like
//! Karpenter's. It is not Karpenter's hashstructure digest, so the version is Nodewright's own:
//! a NodeClaim stamped by Karpenter (version `v3`) is re-stamped, not drifted, after a migration
//! (the rule Karpenter itself applies when its hash version changes).

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Taint;

use crate::{NodePool, duration::parse_go_duration};

/// The version of [`nodepool_hash`]'s algorithm, written next to the hash.
pub const NODEPOOL_HASH_VERSION: &str = "nodewright-v1";

/// The hash of `pool`'s template, as the decimal text written in the annotation.
pub fn nodepool_hash(pool: &NodePool) -> String {
    fnv1a(canonical(pool).as_bytes()).to_string()
}

/// One line per field, each value JSON-quoted so no value can imitate a separator.
fn canonical(pool: &NodePool) -> String {
    let template = &pool.spec.template;
    let spec = &template.spec;
    let mut text = String::new();
    for (key, value) in &template.metadata.labels {
        line(&mut text, "label", &[key, value]);
    }
    for (key, value) in &template.metadata.annotations {
        line(&mut text, "annotation", &[key, value]);
    }
    for (field, taints) in [("taint", &spec.taints), ("startupTaint", &spec.startup_taints)] {
        for taint in taint_set(taints) {
            line(&mut text, field, &taint);
        }
    }
    let reference = &spec.node_class_ref;
    line(
        &mut text,
        "nodeClassRef",
        &[&reference.group, &reference.kind, &reference.name],
    );
    if let Some(grace) = &spec.termination_grace_period {
        line(
            &mut text,
            "terminationGracePeriod",
            &[&duration_value(grace.as_str())],
        );
    }
    let expire_after = if spec.expire_after.is_never() {
        "Never".to_owned()
    } else {
        duration_value(spec.expire_after.as_str())
    };
    line(&mut text, "expireAfter", &[&expire_after]);
    text
}

/// Taints as sorted, deduplicated (key, value, effect) triples.
fn taint_set(taints: &[Taint]) -> Vec<[String; 3]> {
    let mut set: Vec<[String; 3]> = taints
        .iter()
        .map(|t| {
            [
                t.key.clone(),
                t.value.clone().unwrap_or_default(),
                t.effect.clone(),
            ]
        })
        .collect();
    set.sort();
    set.dedup();
    set
}

/// A duration as whole nanoseconds when it parses (so equal durations written differently hash
/// the same), as written otherwise (validation refuses such text; the hash stays stable anyway).
fn duration_value(text: &str) -> String {
    parse_go_duration(text).map_or_else(|_| format!("raw:{text}"), |d| d.as_nanos().to_string())
}

fn line<S: AsRef<str>>(text: &mut String, field: &str, values: &[S]) {
    text.push_str(field);
    for value in values {
        // Writing to a String cannot fail.
        let _ = write!(text, " {:?}", value.as_ref());
    }
    text.push('\n');
}

/// 64-bit FNV-1a: small, dependency-free and fixed forever (unlike std's `DefaultHasher`, whose
/// algorithm may change between Rust releases and would drift every node on an upgrade).
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn pool(template: &Value) -> NodePool {
        let mut spec = json!({
            "requirements": [{ "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"] }],
            "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
        });
        let mut metadata = json!({});
        for (key, value) in template.as_object().unwrap() {
            if key == "metadata" {
                metadata = value.clone();
            } else {
                spec[key] = value.clone();
            }
        }
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": { "name": "default" },
            "spec": { "template": { "metadata": metadata, "spec": spec } }
        }))
        .unwrap()
    }

    fn hash(template: &Value) -> String {
        nodepool_hash(&pool(template))
    }

    #[test]
    fn the_hash_is_fixed_text_so_upgrades_do_not_drift_nodes() {
        // A change of this value drifts every node of every cluster: only with a new version.
        assert_eq!(hash(&json!({})), "889960473239673385");
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn template_fields_change_the_hash_and_requirements_and_limits_do_not() {
        let base = hash(&json!({}));
        for changed in [
            json!({ "metadata": { "labels": { "team": "a" } } }),
            json!({ "metadata": { "annotations": { "note": "x" } } }),
            json!({ "taints": [{ "key": "k", "effect": "NoSchedule" }] }),
            json!({ "startupTaints": [{ "key": "k", "effect": "NoSchedule" }] }),
            json!({ "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "other" } }),
            json!({ "terminationGracePeriod": "1h" }),
            json!({ "expireAfter": "Never" }),
        ] {
            assert_ne!(hash(&changed), base, "{changed}");
        }
        let other_requirements = json!({ "requirements": [{ "key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"] }] });
        assert_eq!(hash(&other_requirements), base);
        let mut limited = pool(&json!({}));
        limited.spec.weight = Some(10);
        limited.spec.disruption.consolidate_after = crate::duration::NillableDuration::new("5m");
        assert_eq!(nodepool_hash(&limited), base);
    }

    #[test]
    fn equal_values_written_differently_hash_the_same() {
        assert_eq!(
            hash(&json!({ "expireAfter": "60m" })),
            hash(&json!({ "expireAfter": "1h" }))
        );
        let a = json!({ "taints": [{ "key": "a", "effect": "NoSchedule" }, { "key": "b", "value": "1", "effect": "NoExecute" }] });
        let b = json!({ "taints": [{ "key": "b", "value": "1", "effect": "NoExecute" }, { "key": "a", "effect": "NoSchedule" }, { "key": "a", "effect": "NoSchedule" }] });
        assert_eq!(hash(&a), hash(&b));
        // A label value cannot pose as two labels.
        assert_ne!(
            hash(&json!({ "metadata": { "labels": { "a": "b\" \"c" } } })),
            hash(&json!({ "metadata": { "labels": { "a": "b", "c": "" } } }))
        );
    }
}
