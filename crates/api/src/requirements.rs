//! Node selector requirements as NodePools and NodeClaims carry them, with Karpenter's additions:
//! the `Gte`/`Lte` operators and `minValues`. The algebra over them lives in the solver; this module
//! owns the wire format, parsing and validation.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    labels,
    validation::{FieldPath, Problems, syntax},
};

/// A requirement operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
    Gte,
    Lte,
}

impl Operator {
    pub const ALL: [Operator; 8] = [
        Self::In,
        Self::NotIn,
        Self::Exists,
        Self::DoesNotExist,
        Self::Gt,
        Self::Lt,
        Self::Gte,
        Self::Lte,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
            Self::Gt => "Gt",
            Self::Lt => "Lt",
            Self::Gte => "Gte",
            Self::Lte => "Lte",
        }
    }

    /// Whether the operator compares one integer value.
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Gt | Self::Lt | Self::Gte | Self::Lte)
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Operator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| format!("unsupported operator {s:?}, expected one of In, NotIn, Exists, DoesNotExist, Gt, Lt, Gte, Lte"))
    }
}

/// Karpenter's `NodeSelectorRequirementWithMinValues`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = requirement_rules()))]
pub struct NodeSelectorRequirementWithMinValues {
    /// The label key the requirement applies to.
    #[schemars(length(max = 316), regex(pattern = QUALIFIED_NAME_PATTERN))]
    pub key: String,
    /// How the key relates to the values.
    pub operator: Operator,
    /// The values; one non-negative integer for Gt, Lt, Gte and Lte.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"), inner(length(max = 63), regex(pattern = LABEL_VALUE_PATTERN)))]
    pub values: Vec<String>,
    /// The minimum number of distinct values this key must keep across the instance types chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub min_values: Option<i64>,
}

/// A label key: an optional DNS-subdomain prefix and a name part.
pub const QUALIFIED_NAME_PATTERN: &str = r"^(([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*(\/))?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])$";
/// A label value (possibly empty).
pub const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";

fn requirement_rules() -> serde_json::Value {
    json!([
        {
            "message": "requirements with operator 'In' must have a value defined",
            "rule": "self.operator == 'In' ? self.values.size() != 0 : true"
        },
        {
            "message": "requirements operator 'Gt', 'Lt', 'Gte', or 'Lte' must have a single positive integer value",
            "rule": "(self.operator == 'Gt' || self.operator == 'Lt' || self.operator == 'Gte' || self.operator == 'Lte') ? (self.values.size() == 1 && int(self.values[0]) >= 0) : true"
        },
        {
            "message": "requirements with 'minValues' must have at least that many values specified in the 'values' field",
            "rule": "(self.operator == 'In' && has(self.minValues)) ? self.values.size() >= self.minValues : true"
        }
    ])
}

/// CEL rules on a requirement key that keep reserved label domains out of NodePools (and, with
/// `allow_nodepool_label`, NodeClaims, which carry `karpenter.sh/nodepool`).
pub(crate) fn restricted_key_rules(
    allow_nodepool_label: bool,
    quantifier: Option<&str>,
) -> serde_json::Value {
    let kubernetes_io = labels::ALLOWED_KUBERNETES_IO_LABELS
        .map(|l| format!("\"{l}\""))
        .join(", ");
    let aws = labels::AWS_WELL_KNOWN_LABELS
        .map(|l| format!("\"{l}\""))
        .join(", ");
    // The same predicate is used on a single key (`self`) and on every key of a label map.
    let wrap = |predicate: String| match quantifier {
        Some(var) => format!("self.all({var}, {})", predicate.replace("self", var)),
        None => predicate,
    };
    let mut rules = vec![
        json!({
            "message": "label domain \"kubernetes.io\" is restricted",
            "rule": wrap(format!("self in [{kubernetes_io}] || self.find(\"^([^/]+)\").endsWith(\"node.kubernetes.io\") || self.find(\"^([^/]+)\").endsWith(\"node-restriction.kubernetes.io\") || !self.find(\"^([^/]+)\").endsWith(\"kubernetes.io\")"))
        }),
        json!({
            "message": "label domain \"k8s.io\" is restricted",
            "rule": wrap("self.find(\"^([^/]+)\").endsWith(\"kops.k8s.io\") || !self.find(\"^([^/]+)\").endsWith(\"k8s.io\")".into())
        }),
        json!({
            "message": "label domain \"karpenter.sh\" is restricted",
            "rule": wrap("self in [\"karpenter.sh/capacity-type\", \"karpenter.sh/nodepool\"] || !self.find(\"^([^/]+)\").endsWith(\"karpenter.sh\")".into())
        }),
    ];
    if !allow_nodepool_label {
        rules.push(json!({
            "message": "label \"karpenter.sh/nodepool\" is restricted",
            "rule": wrap("self != \"karpenter.sh/nodepool\"".into())
        }));
    }
    rules.push(json!({
        "message": "label \"kubernetes.io/hostname\" is restricted",
        "rule": wrap("self != \"kubernetes.io/hostname\"".into())
    }));
    rules.push(json!({
        "message": "label domain \"karpenter.k8s.aws\" is restricted",
        "rule": wrap(format!("self in [{aws}] || !self.find(\"^([^/]+)\").endsWith(\"karpenter.k8s.aws\")"))
    }));
    serde_json::Value::Array(rules)
}

/// Schema transform adding the reserved-domain rules to `items.properties.key` of a NodePool's
/// requirement list.
pub(crate) fn restrict_nodepool_keys(schema: &mut schemars::Schema) {
    add_key_rules(schema, false);
}

/// Like [`restrict_nodepool_keys`] for NodeClaims, which may carry `karpenter.sh/nodepool`.
pub(crate) fn restrict_nodeclaim_keys(schema: &mut schemars::Schema) {
    add_key_rules(schema, true);
}

fn add_key_rules(schema: &mut schemars::Schema, allow_nodepool_label: bool) {
    if let Some(key) = schema
        .pointer_mut("/items/properties/key")
        .and_then(serde_json::Value::as_object_mut)
    {
        key.insert(
            "x-kubernetes-validations".into(),
            restricted_key_rules(allow_nodepool_label, None),
        );
    }
}

impl NodeSelectorRequirementWithMinValues {
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            key: key.into(),
            operator,
            values: values.into_iter().map(Into::into).collect(),
            min_values: None,
        }
    }

    /// The single integer of a Gt/Lt/Gte/Lte requirement, if well formed.
    pub fn numeric_value(&self) -> Option<i64> {
        match self.values.as_slice() {
            [only] => only.parse::<i64>().ok().filter(|v| *v >= 0),
            _ => None,
        }
    }

    /// Whether a label with `value` (`None`: the label is absent) meets the requirement. A
    /// malformed bound or a non-integer value meets no Gt/Lt/Gte/Lte, as in Kubernetes.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let contains = |v: &str| self.values.iter().any(|allowed| allowed == v);
        match self.operator {
            Operator::In => value.is_some_and(contains),
            Operator::NotIn => !value.is_some_and(contains),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt | Operator::Lt | Operator::Gte | Operator::Lte => {
                let (Some(bound), Some(actual)) =
                    (self.numeric_value(), value.and_then(|v| v.parse::<i64>().ok()))
                else {
                    return false;
                };
                match self.operator {
                    Operator::Gt => actual > bound,
                    Operator::Lt => actual < bound,
                    Operator::Gte => actual >= bound,
                    _ => actual <= bound,
                }
            }
        }
    }
}

/// Validates a requirement list the way Karpenter's CRD and runtime validation do.
pub(crate) fn validate_requirements(
    requirements: &[NodeSelectorRequirementWithMinValues],
    path: &FieldPath,
    allow_nodepool_label: bool,
    problems: &mut Problems,
) {
    if requirements.len() > 100 {
        problems.too_many(path, requirements.len(), 100);
    }
    for (i, requirement) in requirements.iter().enumerate() {
        validate_requirement(requirement, &path.index(i), allow_nodepool_label, problems);
    }
}

fn validate_requirement(
    requirement: &NodeSelectorRequirementWithMinValues,
    path: &FieldPath,
    allow_nodepool_label: bool,
    problems: &mut Problems,
) {
    let key = requirement.key.as_str();
    let key_path = path.child("key");
    if key.len() > 316 {
        problems.too_long(&key_path, key, 316);
    } else if let Some(reason) = syntax::qualified_name(key) {
        problems.invalid(&key_path, key, reason);
    } else if let Some(reason) = labels::restricted_label_reason(key, allow_nodepool_label) {
        problems.invalid(&key_path, key, reason);
    }

    let values_path = path.child("values");
    for (i, value) in requirement.values.iter().enumerate() {
        if let Some(reason) = syntax::label_value(value) {
            problems.invalid(&values_path.index(i), value, reason);
        }
    }
    match requirement.operator {
        Operator::In if requirement.values.is_empty() => {
            problems.required(
                &values_path,
                "requirements with operator 'In' must have a value defined",
            );
        }
        op if op.is_numeric() && requirement.numeric_value().is_none() => {
            problems.invalid(
                &values_path,
                &requirement.values.join(","),
                format!("requirements operator '{op}' must have a single positive integer value"),
            );
        }
        _ => {}
    }
    if let Some(min_values) = requirement.min_values {
        let min_path = path.child("minValues");
        if !(1..=50).contains(&min_values) {
            problems.invalid(&min_path, &min_values.to_string(), "must be between 1 and 50");
        } else if requirement.operator == Operator::In
            && usize::try_from(min_values).is_ok_and(|min| requirement.values.len() < min)
        {
            problems.invalid(
                &min_path,
                &min_values.to_string(),
                "requirements with 'minValues' must have at least that many values specified in the 'values' field",
            );
        }
    }
    if labels::normalize_label_key(key) == labels::CAPACITY_TYPE
        && requirement.operator == Operator::In
        && !requirement.values.is_empty()
        && !requirement
            .values
            .iter()
            .any(|v| labels::CAPACITY_TYPES.contains(&v.as_str()))
    {
        problems.invalid(
            &values_path,
            &requirement.values.join(","),
            "karpenter.sh/capacity-type must include at least one of \"on-demand\", \"spot\", \"reserved\"",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(requirement: NodeSelectorRequirementWithMinValues) -> Vec<String> {
        let mut problems = Problems::new();
        validate_requirements(
            &[requirement],
            &FieldPath::root("requirements"),
            false,
            &mut problems,
        );
        problems.iter().map(|e| e.field.clone()).collect()
    }

    #[test]
    fn operators_parse_and_print() {
        for op in Operator::ALL {
            assert_eq!(op.as_str().parse::<Operator>().unwrap(), op);
        }
        assert!("Equals".parse::<Operator>().is_err());
    }

    #[test]
    fn valid_requirements_pass() {
        assert!(
            problems_of(NodeSelectorRequirementWithMinValues::new(
                labels::ARCH,
                Operator::In,
                ["amd64"]
            ))
            .is_empty()
        );
        assert!(
            problems_of(NodeSelectorRequirementWithMinValues::new(
                labels::AWS_INSTANCE_GENERATION,
                Operator::Gt,
                ["2"]
            ))
            .is_empty()
        );
        assert!(
            problems_of(NodeSelectorRequirementWithMinValues::new(
                "example.com/team",
                Operator::Exists,
                Vec::<String>::new()
            ))
            .is_empty()
        );
    }

    #[test]
    fn each_rule_names_its_field() {
        assert_eq!(
            problems_of(NodeSelectorRequirementWithMinValues::new(
                labels::ARCH,
                Operator::In,
                Vec::<String>::new()
            )),
            ["requirements[0].values"]
        );
        // "-1" is both a malformed label value and not a non-negative integer.
        assert_eq!(
            problems_of(NodeSelectorRequirementWithMinValues::new(
                "cpu",
                Operator::Gt,
                ["-1"]
            )),
            ["requirements[0].values[0]", "requirements[0].values"]
        );
        assert_eq!(
            problems_of(NodeSelectorRequirementWithMinValues::new(
                "cpu",
                Operator::Lte,
                ["1", "2"]
            )),
            ["requirements[0].values"]
        );
        assert_eq!(
            problems_of(NodeSelectorRequirementWithMinValues::new(
                labels::NODE_POOL,
                Operator::In,
                ["a"]
            )),
            ["requirements[0].key"]
        );
        assert_eq!(
            problems_of(NodeSelectorRequirementWithMinValues::new(
                "bad key",
                Operator::Exists,
                Vec::<String>::new()
            )),
            ["requirements[0].key"]
        );
        assert_eq!(
            problems_of(NodeSelectorRequirementWithMinValues::new(
                labels::CAPACITY_TYPE,
                Operator::In,
                ["cheap"]
            )),
            ["requirements[0].values"]
        );
        let mut with_min =
            NodeSelectorRequirementWithMinValues::new(labels::INSTANCE_TYPE, Operator::In, ["a", "b"]);
        with_min.min_values = Some(3);
        assert_eq!(problems_of(with_min.clone()), ["requirements[0].minValues"]);
        with_min.min_values = Some(51);
        assert_eq!(problems_of(with_min), ["requirements[0].minValues"]);
    }
}
