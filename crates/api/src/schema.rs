//! Hand-written OpenAPI fragments for fields whose Rust type comes from k8s-openapi (taints) or whose
//! schema needs more than schemars derives (label maps with CEL rules).

use schemars::{Schema, SchemaGenerator, json_schema};

use crate::requirements::{LABEL_VALUE_PATTERN, QUALIFIED_NAME_PATTERN, restricted_key_rules};

/// Allowed taint effects.
pub(crate) const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// `[]corev1.Taint` with the key, value and effect constraints Karpenter's CRDs put on taints.
pub(crate) fn taints(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "description": "The node this Taint is attached to has the \"effect\" on any pod that does not tolerate the Taint.",
            "required": ["effect", "key"],
            "properties": {
                "effect": { "type": "string", "enum": TAINT_EFFECTS },
                "key": { "type": "string", "minLength": 1, "pattern": QUALIFIED_NAME_PATTERN },
                "timeAdded": { "type": "string", "format": "date-time" },
                "value": { "type": "string", "pattern": LABEL_VALUE_PATTERN }
            }
        }
    })
}

/// Template labels of a NodePool: label syntax plus the reserved-domain CEL rules.
pub(crate) fn nodepool_labels(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": 100,
        "additionalProperties": { "type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN },
        "x-kubernetes-validations": restricted_key_rules(false, Some("x"))
    })
}

/// A plain `map[string]string`.
pub(crate) fn string_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "additionalProperties": { "type": "string" } })
}

/// The pattern Kubernetes puts on resource quantities.
pub(crate) const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// One resource quantity (`2`, `100m`, `4Gi`), integer or string.
pub(crate) fn quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [{ "type": "integer" }, { "type": "string" }],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": true
    })
}

/// A `ResourceList`: resource name to quantity.
pub(crate) fn resource_list(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "additionalProperties": quantity(generator) })
}
