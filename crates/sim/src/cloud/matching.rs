//! Whether an offering's labels satisfy a NodeClaim requirement.
//!
//! An offering is labelled by its instance type's catalogue labels plus its zone and capacity
//! type. Keys the provider defines (Kubernetes' well-known labels and the `karpenter.k8s.aws/*`
//! ones) are judged even when the type lacks them — a type without a GPU has no
//! `instance-gpu-name`, so `In [t4]` excludes it — as Karpenter's AWS provider does by giving
//! every type `DoesNotExist` for the keys it does not set. Any other key (`team`,
//! `karpenter.sh/nodepool`) is a label the node gets from its NodeClaim, not from the instance,
//! so it never excludes an offering.

use std::collections::BTreeMap;

use nodewright_api::{NodeSelectorRequirementWithMinValues, labels};

/// The labels of one offering of one type, borrowed from the catalogue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OfferingLabels<'a> {
    pub(crate) type_labels: &'a BTreeMap<String, String>,
    pub(crate) zone: &'a str,
    pub(crate) capacity_type: &'a str,
}

impl OfferingLabels<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            labels::ZONE => Some(self.zone),
            labels::CAPACITY_TYPE => Some(self.capacity_type),
            other => self.type_labels.get(other).map(String::as_str),
        }
    }
}

/// Whether the provider, rather than the NodeClaim, decides this key's value on a node.
fn provider_defined(key: &str) -> bool {
    key != labels::NODE_POOL
        && (labels::WELL_KNOWN_LABELS.contains(&key) || labels::AWS_WELL_KNOWN_LABELS.contains(&key))
}

/// Whether the offering satisfies `requirement`.
pub(crate) fn satisfies(
    offering: OfferingLabels<'_>,
    requirement: &NodeSelectorRequirementWithMinValues,
) -> bool {
    let key = labels::normalize_label_key(&requirement.key);
    if !provider_defined(key) {
        return true;
    }
    let value = offering.get(key);
    requirement.matches(value)
}

/// A requirement as people write it: `topology.kubernetes.io/zone In [us-east-1a]`.
pub(crate) fn describe(requirement: &NodeSelectorRequirementWithMinValues) -> String {
    if requirement.values.is_empty() {
        format!("{} {}", requirement.key, requirement.operator)
    } else {
        format!(
            "{} {} [{}]",
            requirement.key,
            requirement.operator,
            requirement.values.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use nodewright_api::Operator;

    use super::*;

    fn requirement(key: &str, operator: Operator, values: &[&str]) -> NodeSelectorRequirementWithMinValues {
        NodeSelectorRequirementWithMinValues::new(key, operator, values.iter().copied())
    }

    #[test]
    fn operators_over_provider_and_custom_keys() {
        let type_labels = BTreeMap::from([
            (labels::INSTANCE_TYPE.to_owned(), "m5.large".to_owned()),
            (labels::AWS_INSTANCE_CPU.to_owned(), "2".to_owned()),
        ]);
        let offering = OfferingLabels {
            type_labels: &type_labels,
            zone: "us-east-1a",
            capacity_type: "spot",
        };
        let check = |key, op, values: &[&str]| satisfies(offering, &requirement(key, op, values));
        assert!(check(labels::ZONE, Operator::In, &["us-east-1a"]));
        assert!(
            check(labels::BETA_ZONE, Operator::In, &["us-east-1a"]),
            "aliases normalise"
        );
        assert!(!check(labels::CAPACITY_TYPE, Operator::NotIn, &["spot"]));
        assert!(check(labels::AWS_INSTANCE_CPU, Operator::Gt, &["1"]));
        assert!(!check(labels::AWS_INSTANCE_CPU, Operator::Lt, &["2"]));
        assert!(check(labels::AWS_INSTANCE_CPU, Operator::Lte, &["2"]));
        assert!(!check(labels::AWS_INSTANCE_GPU_NAME, Operator::In, &["t4"]));
        assert!(check(labels::AWS_INSTANCE_GPU_NAME, Operator::DoesNotExist, &[]));
        assert!(!check(labels::AWS_INSTANCE_GPU_NAME, Operator::Exists, &[]));
        assert!(
            check("team", Operator::In, &["a"]),
            "custom keys come from the NodeClaim"
        );
        assert!(check(labels::NODE_POOL, Operator::In, &["default"]));
    }
}
