//! EC2 instances as the provider sees them: found by ID or by the cluster's tags, terminated, and
//! described without SDK types so the rest of the crate (and its tests) need none.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, InstanceLifecycleType};
use jiff::Timestamp;

use crate::error::AwsError;

/// Tag keys Nodewright puts on what it launches.
pub mod tags {
    pub const NODE_POOL: &str = "karpenter.sh/nodepool";
    pub const NODE_CLAIM: &str = "karpenter.sh/nodeclaim";
    pub const NODE_CLASS: &str = "karpenter.k8s.aws/ec2nodeclass";
    pub const CLUSTER_NAME: &str = "eks:eks-cluster-name";
    /// `kubernetes.io/cluster/<name>: owned`.
    pub const CLUSTER_PREFIX: &str = "kubernetes.io/cluster/";
}

/// Instance states of an instance that still exists for the cluster (terminated ones linger in
/// DescribeInstances for an hour).
pub const LIVE_STATES: [&str; 5] = ["pending", "running", "stopping", "stopped", "shutting-down"];

/// An instance, as much as the provider needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    pub id: String,
    pub instance_type: String,
    pub zone: String,
    /// `pending`, `running`, `shutting-down`, `terminated`, ...
    pub state: String,
    pub spot: bool,
    /// The capacity reservation the instance runs in, if any.
    pub capacity_reservation_id: Option<String>,
    pub image_id: Option<String>,
    pub subnet_id: Option<String>,
    pub security_group_ids: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub launch_time: Option<Timestamp>,
}

impl InstanceInfo {
    /// `aws:///<zone>/<id>`.
    pub fn provider_id(&self) -> String {
        provider_id(&self.zone, &self.id)
    }

    pub fn is_live(&self) -> bool {
        LIVE_STATES.contains(&self.state.as_str())
    }
}

pub fn provider_id(zone: &str, instance_id: &str) -> String {
    format!("aws:///{zone}/{instance_id}")
}

/// The instance ID in `aws:///<zone>/<instance-id>`.
pub fn instance_id(provider_id: &str) -> Result<&str, AwsError> {
    let invalid = || AwsError::InvalidProviderId(provider_id.to_owned());
    let rest = provider_id.strip_prefix("aws:///").ok_or_else(invalid)?;
    let (_zone, id) = rest.rsplit_once('/').ok_or_else(invalid)?;
    if id.starts_with("i-") {
        Ok(id)
    } else {
        Err(invalid())
    }
}

fn info(instance: &aws_sdk_ec2::types::Instance) -> Option<InstanceInfo> {
    Some(InstanceInfo {
        id: instance.instance_id()?.to_owned(),
        instance_type: instance.instance_type()?.as_str().to_owned(),
        zone: instance.placement()?.availability_zone()?.to_owned(),
        state: instance
            .state()
            .and_then(|s| s.name())
            .map_or_else(|| "unknown".to_owned(), |n| n.as_str().to_owned()),
        spot: instance.instance_lifecycle() == Some(&InstanceLifecycleType::Spot),
        capacity_reservation_id: instance.capacity_reservation_id().map(str::to_owned),
        image_id: instance.image_id().map(str::to_owned),
        subnet_id: instance.subnet_id().map(str::to_owned),
        security_group_ids: instance
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect(),
        tags: instance
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
            .collect(),
        launch_time: instance
            .launch_time()
            .and_then(|t| Timestamp::from_second(t.secs()).ok()),
    })
}

async fn describe(
    ec2: &aws_sdk_ec2::Client,
    ids: &[String],
    filters: Vec<Filter>,
) -> Result<Vec<InstanceInfo>, AwsError> {
    let mut pages = ec2
        .describe_instances()
        .set_instance_ids((!ids.is_empty()).then(|| ids.to_vec()))
        .set_filters((!filters.is_empty()).then_some(filters))
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                let error = AwsError::api("DescribeInstances", &error);
                if error.code() == Some("InvalidInstanceID.NotFound") {
                    return Ok(Vec::new());
                }
                return Err(error);
            }
        };
        for reservation in page.reservations() {
            found.extend(reservation.instances().iter().filter_map(info));
        }
    }
    Ok(found)
}

/// The instances with these IDs, whatever their state. An unknown ID fails the whole call with
/// `InvalidInstanceID.NotFound` (EC2's behaviour); a single unknown ID answers nothing.
pub async fn describe_ids(ec2: &aws_sdk_ec2::Client, ids: &[String]) -> Result<Vec<InstanceInfo>, AwsError> {
    if let [_single] = ids {
        return describe(ec2, ids, Vec::new()).await;
    }
    let mut pages = ec2
        .describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::api("DescribeInstances", &e))?;
        for reservation in page.reservations() {
            found.extend(reservation.instances().iter().filter_map(info));
        }
    }
    Ok(found)
}

/// The instance with this ID, whatever its state; `None` when EC2 does not know it.
pub async fn get(ec2: &aws_sdk_ec2::Client, instance_id: &str) -> Result<Option<InstanceInfo>, AwsError> {
    Ok(describe(ec2, &[instance_id.to_owned()], Vec::new())
        .await?
        .into_iter()
        .next())
}

/// Every live instance Nodewright launched for `cluster` (tagged with a NodePool, an EC2NodeClass
/// and the cluster's name).
pub async fn list(ec2: &aws_sdk_ec2::Client, cluster: &str) -> Result<Vec<InstanceInfo>, AwsError> {
    let mut states = Filter::builder().name("instance-state-name");
    for state in LIVE_STATES {
        states = states.values(state);
    }
    let filters = vec![
        Filter::builder().name("tag-key").values(tags::NODE_POOL).build(),
        Filter::builder().name("tag-key").values(tags::NODE_CLASS).build(),
        Filter::builder()
            .name(format!("tag:{}", tags::CLUSTER_NAME))
            .values(cluster)
            .build(),
        states.build(),
    ];
    describe(ec2, &[], filters).await
}

/// Starts terminating the instance; `false` when EC2 does not know it.
pub async fn terminate(ec2: &aws_sdk_ec2::Client, instance_id: &str) -> Result<bool, AwsError> {
    terminate_ids(ec2, &[instance_id.to_owned()]).await
}

/// Starts terminating the instances. For one ID, `false` when EC2 does not know it; for several,
/// an unknown ID fails the call with `InvalidInstanceID.NotFound`.
pub async fn terminate_ids(ec2: &aws_sdk_ec2::Client, ids: &[String]) -> Result<bool, AwsError> {
    match ec2
        .terminate_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(error) => {
            let error = AwsError::api("TerminateInstances", &error);
            if ids.len() == 1 && error.code() == Some("InvalidInstanceID.NotFound") {
                Ok(false)
            } else {
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_round_trip_and_bad_ones_are_named() {
        assert_eq!(provider_id("us-west-2a", "i-0abc"), "aws:///us-west-2a/i-0abc");
        assert_eq!(instance_id("aws:///us-west-2a/i-0abc").unwrap(), "i-0abc");
        let error = instance_id("kind://node-1").unwrap_err();
        assert_eq!(
            error.to_string(),
            "providerID \"kind://node-1\" is not aws:///<zone>/<instance-id>"
        );
        assert!(instance_id("aws:///us-west-2a/vol-1").is_err());
    }
}
