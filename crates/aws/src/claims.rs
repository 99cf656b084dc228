//! NodeClaims as the provider returns them: the input of a launch with what was launched filled
//! in, or one rebuilt from an instance found in EC2 (for `get` and `list`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use nodewright_api::{
    NodeClaim,
    duration::NillableDuration,
    labels,
    nodepool::{DEFAULT_EXPIRE_AFTER, NodeClassReference},
    quantity,
};
use nodewright_catalog::{CapacityType, InstanceType, Resources};

use crate::instances::{InstanceInfo, tags};

/// The NodeClaim's resource requests as integers.
pub fn requests(node_claim: &NodeClaim) -> Result<Resources, String> {
    let mut resources = Resources::default();
    for (name, value) in &node_claim.spec.resources.requests {
        let parsed = quantity::parse_resource(name, &value.0).map_err(|e| format!("request {name}: {e}"))?;
        let amount =
            i64::try_from(parsed).map_err(|_| format!("request {name}: {} is too large", value.0))?;
        resources.set(name, amount);
    }
    Ok(resources)
}

/// Where and how an instance was launched.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    pub instance_type: &'a InstanceType,
    pub zone: &'a str,
    pub capacity_type: CapacityType,
    pub provider_id: &'a str,
    pub image_id: Option<&'a str>,
}

/// `node_claim` with the instance's labels, capacity, allocatable, providerID and image set.
pub fn launched(node_claim: &NodeClaim, placement: Placement<'_>) -> NodeClaim {
    let mut launched = node_claim.clone();
    let node_labels = launched.labels_mut();
    for (key, value) in &placement.instance_type.labels {
        node_labels.insert(key.clone(), value.clone());
    }
    node_labels.insert(labels::ZONE.to_owned(), placement.zone.to_owned());
    node_labels.insert(
        labels::CAPACITY_TYPE.to_owned(),
        placement.capacity_type.label().to_owned(),
    );
    let status = launched.status.get_or_insert_with(Default::default);
    status.provider_id = Some(placement.provider_id.to_owned());
    status.image_id = placement.image_id.map(str::to_owned);
    status.capacity = nodewright_cloudprovider::resources::quantities(&placement.instance_type.capacity);
    status.allocatable =
        nodewright_cloudprovider::resources::quantities(&placement.instance_type.allocatable());
    launched
}

/// A NodeClaim describing a live instance: named after its `karpenter.sh/nodeclaim` tag, labelled
/// with its NodePool, type, zone and capacity type (`reserved` with the reservation's ID for an
/// instance in a capacity reservation), created at its launch time. `instance_type`
/// is the catalogue's entry for the type, when known, for capacity and labels.
pub fn from_instance(instance: &InstanceInfo, instance_type: Option<&InstanceType>) -> NodeClaim {
    let capacity_type = if instance.spot {
        CapacityType::Spot
    } else if instance.capacity_reservation_id.is_some() {
        CapacityType::Reserved
    } else {
        CapacityType::OnDemand
    };
    let mut node_claim = NodeClaim::new(
        instance.tags.get(tags::NODE_CLAIM).map_or("", String::as_str),
        nodewright_api::NodeClaimSpec {
            taints: Vec::new(),
            startup_taints: Vec::new(),
            requirements: Vec::new(),
            resources: nodewright_api::nodeclaim::ResourceRequirements::default(),
            node_class_ref: NodeClassReference {
                group: labels::KARPENTER_AWS_GROUP.to_owned(),
                kind: "EC2NodeClass".to_owned(),
                name: instance.tags.get(tags::NODE_CLASS).cloned().unwrap_or_default(),
            },
            termination_grace_period: None,
            expire_after: NillableDuration::new(DEFAULT_EXPIRE_AFTER),
        },
    );
    node_claim.metadata.creation_timestamp = instance.launch_time.map(Time);
    let node_labels = node_claim.labels_mut();
    if let Some(instance_type) = instance_type {
        node_labels.extend(instance_type.labels.clone());
    }
    if let Some(pool) = instance.tags.get(tags::NODE_POOL) {
        node_labels.insert(labels::NODE_POOL.to_owned(), pool.clone());
    }
    node_labels.insert(labels::INSTANCE_TYPE.to_owned(), instance.instance_type.clone());
    node_labels.insert(labels::ZONE.to_owned(), instance.zone.clone());
    node_labels.insert(labels::CAPACITY_TYPE.to_owned(), capacity_type.label().to_owned());
    if let Some(reservation) = &instance.capacity_reservation_id {
        node_labels.insert(
            labels::AWS_CAPACITY_RESERVATION_ID.to_owned(),
            reservation.clone(),
        );
    }
    let status = node_claim.status.get_or_insert_with(Default::default);
    status.provider_id = Some(instance.provider_id());
    status.image_id.clone_from(&instance.image_id);
    if let Some(instance_type) = instance_type {
        status.capacity = nodewright_cloudprovider::resources::quantities(&instance_type.capacity);
        status.allocatable = nodewright_cloudprovider::resources::quantities(&instance_type.allocatable());
    }
    node_claim
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn instance(spot: bool, reservation: Option<&str>) -> InstanceInfo {
        InstanceInfo {
            id: "i-1".into(),
            instance_type: "m5.large".into(),
            zone: "us-west-2a".into(),
            state: "running".into(),
            spot,
            capacity_reservation_id: reservation.map(str::to_owned),
            image_id: None,
            subnet_id: None,
            security_group_ids: Vec::new(),
            tags: BTreeMap::new(),
            launch_time: None,
        }
    }

    #[test]
    fn an_instance_in_a_reservation_is_reserved_capacity_with_its_reservation() {
        let claim = from_instance(&instance(false, Some("cr-1")), None);
        assert_eq!(claim.labels()[labels::CAPACITY_TYPE], "reserved");
        assert_eq!(claim.labels()[labels::AWS_CAPACITY_RESERVATION_ID], "cr-1");
        let claim = from_instance(&instance(false, None), None);
        assert_eq!(claim.labels()[labels::CAPACITY_TYPE], "on-demand");
        assert!(!claim.labels().contains_key(labels::AWS_CAPACITY_RESERVATION_ID));
        let claim = from_instance(&instance(true, None), None);
        assert_eq!(claim.labels()[labels::CAPACITY_TYPE], "spot");
    }
}
