//! The EC2NodeClass spec hash behind `NodeClassDrift`: FNV-1a (64-bit) of the spec as canonical
//! JSON, written to NodeClaims at launch as `karpenter.k8s.aws/ec2nodeclass-hash`. Like Karpenter's,
//! it leaves out what drift judges by its resolved value (the subnet, security group, AMI and
//! capacity-reservation selector terms) and `ipPrefixCount`, and hashes the resolved AMI family in
//! place of `amiFamily`. Object keys are sorted at every level, so a kubelet map written in
//! another order hashes the same.

use nodewright_api::EC2NodeClass;
use nodewright_catalog::spot::fnv1a_64;
use serde_json::Value;

/// Bumped whenever the hashed fields change, so NodeClaims stamped by an older version are
/// re-stamped instead of all reading as drifted.
pub const HASH_VERSION: &str = "nw1";

/// Spec fields drift judges by their resolved value, not their text.
const IGNORED: [&str; 6] = [
    "subnetSelectorTerms",
    "securityGroupSelectorTerms",
    "amiSelectorTerms",
    "capacityReservationSelectorTerms",
    "ipPrefixCount",
    "amiFamily",
];

/// The hash of `node_class`'s spec, as a decimal string.
pub fn spec_hash(node_class: &EC2NodeClass) -> String {
    let mut spec = serde_json::to_value(&node_class.spec).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut spec {
        for key in IGNORED {
            fields.remove(key);
        }
        let family = node_class.ami_family().map(|f| f.as_str().to_owned());
        fields.insert(
            "resolvedAmiFamily".to_owned(),
            family.map_or(Value::Null, Value::String),
        );
    }
    let mut canonical = String::new();
    write_canonical(&spec, &mut canonical);
    fnv1a_64(canonical.as_bytes()).to_string()
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&fields[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_class(yaml_spec: &serde_json::Value) -> EC2NodeClass {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.k8s.aws/v1",
            "kind": "EC2NodeClass",
            "metadata": {"name": "default"},
            "spec": yaml_spec,
        }))
        .unwrap()
    }

    #[test]
    fn selector_terms_do_not_count_but_tags_and_kubelet_do() {
        let base = serde_json::json!({
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "subnetSelectorTerms": [{"tags": {"a": "b"}}],
            "securityGroupSelectorTerms": [{"tags": {"a": "b"}}],
            "role": "nodes",
            "kubelet": {"maxPods": 20, "podsPerCore": 2},
        });
        let hash = spec_hash(&node_class(&base));
        let mut other_terms = base.clone();
        other_terms["subnetSelectorTerms"] = serde_json::json!([{"id": "subnet-1"}]);
        assert_eq!(spec_hash(&node_class(&other_terms)), hash);
        let mut reordered = base.clone();
        reordered["kubelet"] = serde_json::json!({"podsPerCore": 2, "maxPods": 20});
        assert_eq!(spec_hash(&node_class(&reordered)), hash);
        let mut tagged = base.clone();
        tagged["tags"] = serde_json::json!({"team": "a"});
        assert_ne!(spec_hash(&node_class(&tagged)), hash);
        let mut family = base;
        family["amiSelectorTerms"] = serde_json::json!([{"alias": "bottlerocket@latest"}]);
        assert_ne!(
            spec_hash(&node_class(&family)),
            hash,
            "the resolved family counts"
        );
    }
}
