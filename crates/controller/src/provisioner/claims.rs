//! A NodeClaim from a plan's new node and its NodePool's template, as Karpenter builds it
//! (`NodeClaimTemplate.ToNodeClaim`): `generateName: <nodepool>-`, the template's labels and
//! annotations plus `karpenter.sh/nodepool` and the node class label, the NodePool hash
//! annotations (static drift), an owner reference to the NodePool, the
//! `karpenter.sh/termination` finalizer from the start (nothing is launched for a NodeClaim that
//! could lose track of its instance), and the plan's requirements and requests.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use nodewright_api::{
    NodeClaim, NodeClaimSpec, NodePool, Operator, hash, labels, nodeclaim::ResourceRequirements,
};
use nodewright_solver::NodeClaimPlan;

use super::resources;
use crate::error::ControllerError;

/// The NodeClaim to create for `plan`, a new node of `pool`.
pub(crate) fn node_claim(plan: &NodeClaimPlan, pool: &NodePool) -> Result<NodeClaim, ControllerError> {
    let pool_name = pool.name_any();
    let invalid = |field: &str, message: String| ControllerError::InvalidSpec {
        kind: "NodePool",
        name: pool_name.clone(),
        field: field.to_owned(),
        message,
    };
    let uid = pool.metadata.uid.clone().ok_or_else(|| {
        invalid(
            "metadata.uid",
            "not set: the NodePool was not read from the API server".into(),
        )
    })?;
    let template = &pool.spec.template;

    let mut claim_labels = template.metadata.labels.clone();
    // Requirements that allow one value are labels the node will carry in any case.
    for requirement in &plan.requirements {
        if requirement.operator == Operator::In
            && let [value] = requirement.values.as_slice()
            && labels::restricted_label_reason(&requirement.key, true).is_none()
        {
            claim_labels
                .entry(requirement.key.clone())
                .or_insert_with(|| value.clone());
        }
    }
    let reference = &template.spec.node_class_ref;
    claim_labels.insert(
        format!("{}/{}", reference.group, reference.kind.to_lowercase()),
        reference.name.clone(),
    );
    claim_labels.insert(labels::NODE_POOL.to_owned(), pool_name.clone());

    let mut annotations = template.metadata.annotations.clone();
    // The static-drift hash of the template the NodeClaim is made from, computed here rather
    // than copied from the NodePool's annotation, which the hash controller may not have
    // written yet.
    annotations.insert(labels::NODE_POOL_HASH.to_owned(), hash::nodepool_hash(pool));
    annotations.insert(
        labels::NODE_POOL_HASH_VERSION.to_owned(),
        hash::NODEPOOL_HASH_VERSION.to_owned(),
    );
    if plan.requirements.iter().any(|r| r.min_values.is_some()) {
        annotations.insert(
            labels::NODECLAIM_MIN_VALUES_RELAXED.to_owned(),
            plan.min_values_relaxed.to_string(),
        );
    }

    let owner = OwnerReference {
        api_version: NodePool::api_version(&()).into_owned(),
        kind: NodePool::kind(&()).into_owned(),
        name: pool_name.clone(),
        uid,
        block_owner_deletion: Some(true),
        controller: None,
    };
    let claim = NodeClaim {
        metadata: ObjectMeta {
            generate_name: Some(format!("{pool_name}-")),
            labels: Some(claim_labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner]),
            finalizers: Some(vec![labels::TERMINATION_FINALIZER.to_owned()]),
            ..ObjectMeta::default()
        },
        spec: NodeClaimSpec {
            taints: template.spec.taints.clone(),
            startup_taints: template.spec.startup_taints.clone(),
            requirements: plan.requirements.clone(),
            resources: ResourceRequirements {
                requests: resources::quantities(&plan.requests),
            },
            node_class_ref: reference.clone(),
            termination_grace_period: template.spec.termination_grace_period.clone(),
            expire_after: template.spec.expire_after.clone(),
        },
        status: None,
    };
    claim.validate().map_err(|problems| {
        invalid(
            "spec.template",
            format!("the NodeClaim it would create is invalid: {problems}"),
        )
    })?;
    Ok(claim)
}

#[cfg(test)]
mod tests {
    use nodewright_api::NodeSelectorRequirementWithMinValues;
    use nodewright_catalog::{CapacityType, Price, Resources};
    use serde_json::json;

    use super::*;

    fn pool() -> NodePool {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": { "name": "gpu", "uid": "pool-uid",
                "annotations": { "karpenter.sh/nodepool-hash": "123", "karpenter.sh/nodepool-hash-version": "v3", "other": "x" } },
            "spec": { "template": {
                "metadata": { "labels": { "team": "ml" }, "annotations": { "note": "hello" } },
                "spec": {
                    "requirements": [{ "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"] }],
                    "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu-class" },
                    "taints": [{ "key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule" }],
                    "startupTaints": [{ "key": "cni", "effect": "NoSchedule" }],
                    "expireAfter": "24h",
                    "terminationGracePeriod": "1h"
                }
            } }
        }))
        .unwrap()
    }

    fn plan() -> NodeClaimPlan {
        let mut types = NodeSelectorRequirementWithMinValues::new(
            labels::INSTANCE_TYPE,
            Operator::In,
            ["g5.xlarge", "g5.2xlarge"],
        );
        types.min_values = Some(2);
        NodeClaimPlan {
            nodepool: "gpu".into(),
            requirements: vec![
                NodeSelectorRequirementWithMinValues::new(labels::NODE_POOL, Operator::In, ["gpu"]),
                NodeSelectorRequirementWithMinValues::new(labels::ARCH, Operator::In, ["amd64"]),
                NodeSelectorRequirementWithMinValues::new(
                    labels::CAPACITY_TYPE,
                    Operator::In,
                    ["spot", "on-demand"],
                ),
                types,
            ],
            instance_types: vec!["g5.xlarge".into(), "g5.2xlarge".into()],
            instance_type: "g5.xlarge".into(),
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::Spot,
            price: Price::from_usd(0.5),
            pods: vec![0, 1],
            requests: Resources {
                cpu_millis: 2500,
                memory_bytes: 1 << 30,
                pods: 2,
                ..Resources::default()
            },
            min_values_relaxed: false,
        }
    }

    #[test]
    fn the_node_claim_carries_the_template_and_the_plan() {
        let claim = node_claim(&plan(), &pool()).unwrap();
        let meta = &claim.metadata;
        assert_eq!(meta.generate_name.as_deref(), Some("gpu-"));
        assert_eq!(meta.name, None);
        let claim_labels = meta.labels.as_ref().unwrap();
        assert_eq!(claim_labels["karpenter.sh/nodepool"], "gpu");
        assert_eq!(claim_labels["team"], "ml");
        assert_eq!(claim_labels["karpenter.k8s.aws/ec2nodeclass"], "gpu-class");
        assert_eq!(claim_labels["kubernetes.io/arch"], "amd64");
        assert!(
            !claim_labels.contains_key(labels::CAPACITY_TYPE),
            "two values: not decided"
        );
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations["note"], "hello");
        assert_eq!(
            annotations["karpenter.sh/nodepool-hash"],
            hash::nodepool_hash(&pool()),
            "the template's hash, not the stale one on the NodePool"
        );
        assert_eq!(
            annotations["karpenter.sh/nodepool-hash-version"],
            hash::NODEPOOL_HASH_VERSION
        );
        assert_eq!(annotations["karpenter.sh/nodeclaim-min-values-relaxed"], "false");
        assert!(
            !annotations.contains_key("other"),
            "only the template's annotations"
        );
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str()
            ),
            ("karpenter.sh/v1", "NodePool", "gpu", "pool-uid")
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(
            meta.finalizers.as_deref(),
            Some(&["karpenter.sh/termination".to_owned()][..])
        );

        let spec = &claim.spec;
        assert_eq!(spec.node_class_ref.name, "gpu-class");
        assert_eq!(spec.requirements, plan().requirements);
        assert_eq!(spec.resources.requests["cpu"].0, "2500m");
        assert_eq!(spec.resources.requests["memory"].0, "1Gi");
        assert_eq!(spec.resources.requests["pods"].0, "2");
        assert_eq!(spec.taints[0].key, "nvidia.com/gpu");
        assert_eq!(spec.startup_taints[0].key, "cni");
        assert_eq!(spec.expire_after.to_string(), "24h");
        assert_eq!(
            spec.termination_grace_period
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("1h")
        );
    }

    #[test]
    fn a_node_pool_not_read_from_the_api_is_refused_by_name() {
        let mut pool = pool();
        pool.metadata.uid = None;
        let error = node_claim(&plan(), &pool).unwrap_err();
        assert!(
            error.to_string().contains("NodePool gpu: metadata.uid"),
            "{error}"
        );
    }
}
