//! `karpenter.sh/v1` NodeClaim: one node's request to the cloud provider, created by the
//! provisioner from a NodePool template. Its spec never changes after creation.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::Taint,
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{Condition, Time},
    },
};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    duration::{GoDuration, NillableDuration},
    nodepool::{DEFAULT_EXPIRE_AFTER, GRACE_PERIOD_PATTERN, NILLABLE_DURATION_PATTERN, NodeClassReference},
    requirements::{NodeSelectorRequirementWithMinValues, validate_requirements},
    schema,
    validation::{FieldPath, Invalid, Problems},
};

/// NodeClaim is the Schema for the NodeClaims API.
// kube-derive repeats `type_`/`priority` keys across printcolumn(...) entries by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    derive = "PartialEq",
    group = "karpenter.sh",
    version = "v1",
    kind = "NodeClaim",
    plural = "nodeclaims",
    singular = "nodeclaim",
    status = "NodeClaimStatus",
    category = "karpenter",
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = ".metadata.labels.node\\.kubernetes\\.io/instance-type"
    ),
    printcolumn(
        name = "Capacity",
        type_ = "string",
        json_path = ".metadata.labels.karpenter\\.sh/capacity-type"
    ),
    printcolumn(
        name = "Zone",
        type_ = "string",
        json_path = ".metadata.labels.topology\\.kubernetes\\.io/zone"
    ),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.nodeName"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "ImageID",
        type_ = "string",
        json_path = ".status.imageID",
        priority = 1
    ),
    printcolumn(name = "ID", type_ = "string", json_path = ".status.providerID", priority = 1),
    printcolumn(
        name = "NodePool",
        type_ = "string",
        json_path = ".metadata.labels.karpenter\\.sh/nodepool",
        priority = 1
    ),
    printcolumn(
        name = "NodeClass",
        type_ = "string",
        json_path = ".spec.nodeClassRef.name",
        priority = 1
    ),
    printcolumn(
        name = "Drifted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Drifted\")].status",
        priority = 1
    ),
    doc = "NodeClaim is the Schema for the NodeClaims API"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{ "message": "spec is immutable", "rule": "self == oldSelf" }]))]
pub struct NodeClaimSpec {
    /// Taints the node carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::taints")]
    pub taints: Vec<Taint>,
    /// Taints present at start-up that a daemon removes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::taints")]
    pub startup_taints: Vec<Taint>,
    /// Constraints the launched instance satisfies.
    #[schemars(length(max = 100), extend("x-kubernetes-list-type" = "atomic"), transform = crate::requirements::restrict_nodeclaim_keys)]
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// Resources the node must provide: the pods' requests plus daemon overhead.
    #[serde(default, skip_serializing_if = "ResourceRequirements::is_empty")]
    pub resources: ResourceRequirements,
    /// The provider node class the instance is launched with.
    pub node_class_ref: NodeClassReference,
    /// How long draining may take before pods are deleted regardless of PDBs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GRACE_PERIOD_PATTERN))]
    pub termination_grace_period: Option<GoDuration>,
    /// Lifetime before forced replacement; `Never` disables expiry.
    #[serde(default = "default_expire_after")]
    #[schemars(regex(pattern = NILLABLE_DURATION_PATTERN))]
    pub expire_after: NillableDuration,
}

fn default_expire_after() -> NillableDuration {
    NillableDuration::new(DEFAULT_EXPIRE_AFTER)
}

/// Resource requests of a NodeClaim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::schema::resource_list")]
    pub requests: BTreeMap<String, Quantity>,
}

impl ResourceRequirements {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

/// Observed state of a NodeClaim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimStatus {
    /// The Node registered for this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The cloud provider's ID of the instance.
    #[serde(default, rename = "providerID", skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// The image the instance booted from.
    #[serde(default, rename = "imageID", skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Estimated capacity of the instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::schema::resource_list")]
    pub capacity: BTreeMap<String, Quantity>,
    /// Estimated allocatable resources of the instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::schema::resource_list")]
    pub allocatable: BTreeMap<String, Quantity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Last time a pod was bound to, or finished or left, this node; drives `consolidateAfter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pod_event_time: Option<Time>,
}

impl NodeClaim {
    /// Every problem with this NodeClaim.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.problems().into_result("NodeClaim", &self.name_any())
    }

    /// [`Self::validate`] plus immutability of the whole spec.
    pub fn validate_update(&self, old: &NodeClaim) -> Result<(), Invalid> {
        let mut problems = self.problems();
        if self.spec != old.spec {
            problems.forbidden(&FieldPath::root("spec"), "spec is immutable");
        }
        problems.into_result("NodeClaim", &self.name_any())
    }

    /// The NodePool this claim belongs to, from its label.
    pub fn nodepool_name(&self) -> Option<&str> {
        self.labels().get(crate::labels::NODE_POOL).map(String::as_str)
    }

    /// The instance types the claim's `node.kubernetes.io/instance-type In` requirements list.
    pub fn listed_instance_types(&self) -> impl Iterator<Item = &str> {
        self.spec
            .requirements
            .iter()
            .filter(|r| {
                crate::labels::normalize_label_key(&r.key) == crate::labels::INSTANCE_TYPE
                    && r.operator == crate::Operator::In
            })
            .flat_map(|r| r.values.iter().map(String::as_str))
    }

    /// The providerID of the instance launched for this claim, once known (never empty).
    pub fn provider_id(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .filter(|id| !id.is_empty())
    }

    fn problems(&self) -> Problems {
        let mut problems = Problems::new();
        if self.metadata.generate_name.is_none() {
            crate::nodepool::validate_object_name(self.metadata.name.as_deref(), &mut problems);
        }
        let spec = FieldPath::root("spec");
        crate::nodepool::validate_taints(&self.spec.taints, &self.spec.startup_taints, &spec, &mut problems);
        validate_requirements(
            &self.spec.requirements,
            &spec.child("requirements"),
            true,
            &mut problems,
        );
        self.spec
            .node_class_ref
            .validate(&spec.child("nodeClassRef"), &mut problems);
        crate::nodepool::validate_lifetimes(
            self.spec.termination_grace_period.as_ref(),
            &self.spec.expire_after,
            &spec,
            &mut problems,
        );
        for (resource, value) in &self.spec.resources.requests {
            if let Err(e) = crate::quantity::parse_milli(&value.0) {
                problems.invalid(
                    &spec.child("resources").child("requests").key(resource),
                    &value.0,
                    e.reason,
                );
            }
        }
        problems
    }
}
