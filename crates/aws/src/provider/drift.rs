//! Drift: the node class's spec hash, and the instance against the node class's resolved AMIs,
//! subnets and security groups.

use kube::ResourceExt;
use nodewright_api::{NodeClaim, labels};
use nodewright_cloudprovider::{DriftReason, Result};

use super::AwsProvider;
use crate::{
    instances,
    nodeclass::hash::{HASH_VERSION, spec_hash},
};

impl AwsProvider {
    pub(super) async fn drift(&self, node_claim: &NodeClaim) -> Result<Option<DriftReason>> {
        let Some(node_class) = self.node_classes.get(&node_claim.spec.node_class_ref.name) else {
            return Ok(None);
        };
        let annotations = node_claim.annotations();
        if annotations
            .get(labels::EC2_NODE_CLASS_HASH_VERSION)
            .map(String::as_str)
            == Some(HASH_VERSION)
            && annotations.get(labels::EC2_NODE_CLASS_HASH) != Some(&spec_hash(&node_class))
        {
            return Ok(Some(DriftReason::new("NodeClassDrift")));
        }
        let Some(provider_id) = node_claim.status.as_ref().and_then(|s| s.provider_id.as_deref()) else {
            return Ok(None);
        };
        let Some(instance) = self
            .instance_calls
            .get(instances::instance_id(provider_id)?)
            .await?
        else {
            return Ok(None);
        };
        let status = node_class.status.clone().unwrap_or_default();
        Ok(drift_reason(&instance, &status).map(DriftReason::new))
    }
}

/// Why an instance no longer matches its node class's resolved status, if it does not (AMI,
/// subnet, security groups; a status not yet resolved judges nothing).
pub fn drift_reason(
    instance: &instances::InstanceInfo,
    status: &nodewright_api::EC2NodeClassStatus,
) -> Option<&'static str> {
    if !status.amis.is_empty()
        && instance
            .image_id
            .as_ref()
            .is_some_and(|image| !status.amis.iter().any(|a| &a.id == image))
    {
        return Some("AMIDrift");
    }
    if !status.subnets.is_empty()
        && instance
            .subnet_id
            .as_ref()
            .is_some_and(|subnet| !status.subnets.iter().any(|s| &s.id == subnet))
    {
        return Some("SubnetDrift");
    }
    if !status.security_groups.is_empty() {
        let mut expected: Vec<&str> = status.security_groups.iter().map(|g| g.id.as_str()).collect();
        let mut actual: Vec<&str> = instance.security_group_ids.iter().map(String::as_str).collect();
        expected.sort_unstable();
        actual.sort_unstable();
        if expected != actual {
            return Some("SecurityGroupDrift");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nodewright_api::ec2nodeclass::{Ami, SecurityGroup, Subnet};

    use super::*;

    #[test]
    fn drift_by_ami_subnet_and_security_groups() {
        let instance = instances::InstanceInfo {
            id: "i-1".into(),
            instance_type: "m5.large".into(),
            zone: "us-west-2a".into(),
            state: "running".into(),
            spot: false,
            capacity_reservation_id: None,
            image_id: Some("ami-1".into()),
            subnet_id: Some("subnet-1".into()),
            security_group_ids: vec!["sg-2".into(), "sg-1".into()],
            tags: BTreeMap::new(),
            launch_time: None,
        };
        let mut status = nodewright_api::EC2NodeClassStatus {
            amis: vec![Ami {
                id: "ami-1".into(),
                name: None,
                deprecated: false,
                requirements: vec![],
            }],
            subnets: vec![Subnet {
                id: "subnet-1".into(),
                zone: "us-west-2a".into(),
                zone_id: None,
            }],
            security_groups: vec![
                SecurityGroup {
                    id: "sg-1".into(),
                    name: None,
                },
                SecurityGroup {
                    id: "sg-2".into(),
                    name: None,
                },
            ],
            ..Default::default()
        };
        assert_eq!(drift_reason(&instance, &status), None);
        status.security_groups.pop();
        assert_eq!(drift_reason(&instance, &status), Some("SecurityGroupDrift"));
        status.subnets[0].id = "subnet-9".into();
        assert_eq!(drift_reason(&instance, &status), Some("SubnetDrift"));
        status.amis[0].id = "ami-9".into();
        assert_eq!(drift_reason(&instance, &status), Some("AMIDrift"));
    }
}
