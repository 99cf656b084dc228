//! Launch templates: one per distinct launch configuration (AMI, user data, block devices,
//! metadata options, security groups, instance profile, tags, capacity reservation), named after a hash of that
//! configuration so identical launches reuse one template and a changed configuration gets a new
//! one. [`ensure`] creates a template only when EC2 does not have it yet.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    CapacityReservationPreference, CapacityReservationTarget, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateCapacityReservationSpecificationRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMarketOptionsRequest, LaunchTemplateInstanceMetadataEndpointState,
    LaunchTemplateInstanceMetadataOptionsRequest, LaunchTemplateInstanceMetadataProtocolIpv6,
    LaunchTemplateInstanceMetadataTagsState, LaunchTemplateInstanceNetworkInterfaceSpecificationRequest,
    LaunchTemplateTagSpecificationRequest, LaunchTemplatesMonitoringRequest, MarketType,
    RequestLaunchTemplateData, ResourceType, Tag, TagSpecification, VolumeType as Ec2VolumeType,
    builders::RequestLaunchTemplateDataBuilder,
};
use nodewright_api::ec2nodeclass::{
    AmiFamily, BlockDeviceMapping, HttpTokens, MetadataOptions, Toggle, VolumeType,
};
use nodewright_catalog::spot::fnv1a_64;
use serde::Serialize;

use crate::{error::AwsError, reservations::ReservationKind};

/// The prefix of every launch template Nodewright creates.
pub const NAME_PREFIX: &str = "nodewright/";

/// Everything a launch template holds. Its hash names the template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateSpec {
    pub image_id: String,
    /// Base64, as EC2 takes it.
    pub user_data: String,
    pub security_group_ids: Vec<String>,
    pub instance_profile: String,
    pub metadata_options: MetadataOptions,
    pub block_devices: Vec<BlockDeviceMapping>,
    pub detailed_monitoring: bool,
    pub associate_public_ip_address: Option<bool>,
    /// Tags of the template and of the network interfaces it creates.
    pub tags: BTreeMap<String, String>,
    /// How instances use capacity reservations; `None` (the gate off) leaves EC2's default
    /// (`open`) and the template name as it was before reservations were launched into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_reservation: Option<ReservationUse>,
}

/// A template's capacity-reservation setting, as Karpenter's "targeted" mode sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ReservationUse {
    /// Preference `none`: an on-demand or spot launch never draws on an open reservation, whose
    /// count the provider would otherwise not know to take down.
    None,
    /// Preference `capacity-reservations-only` with the reservation as target; capacity blocks
    /// and interruptible reservations also need their market type.
    Only { id: String, kind: ReservationKind },
}

impl TemplateSpec {
    /// `nodewright/<hash of the spec>`.
    pub fn name(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{NAME_PREFIX}{:016x}", fnv1a_64(json.as_bytes()))
    }
}

/// The block devices of a family when the EC2NodeClass lists none: Karpenter's defaults (a 20 GiB
/// encrypted gp3 root volume; Bottlerocket's OS and data volumes; none for Custom, whose AMI
/// decides).
pub fn default_block_devices(family: AmiFamily) -> Vec<BlockDeviceMapping> {
    let volume = |device: &str, gib: u32| BlockDeviceMapping {
        device_name: Some(device.to_owned()),
        ebs: Some(nodewright_api::ec2nodeclass::BlockDevice {
            encrypted: Some(true),
            volume_size: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(format!(
                "{gib}Gi"
            ))),
            volume_type: Some(VolumeType::Gp3),
            ..Default::default()
        }),
        root_volume: false,
    };
    match family {
        AmiFamily::AL2 | AmiFamily::AL2023 => vec![volume("/dev/xvda", 20)],
        AmiFamily::Bottlerocket => vec![volume("/dev/xvda", 4), volume("/dev/xvdb", 20)],
        AmiFamily::Windows2019 | AmiFamily::Windows2022 | AmiFamily::Windows2025 => {
            vec![volume("/dev/sda1", 50)]
        }
        AmiFamily::Custom => Vec::new(),
    }
}

fn tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Volume sizes in whole GiB, rounded up (EC2 takes GiB).
fn volume_gib(text: &str) -> Result<i32, AwsError> {
    let bytes =
        nodewright_api::quantity::parse_resource("storage", text).map_err(|e| AwsError::InvalidValue {
            source_name: "EC2NodeClass".to_owned(),
            field: "spec.blockDeviceMappings.ebs.volumeSize".to_owned(),
            reason: format!("{text}: {e}"),
        })?;
    let gib = (bytes + (1 << 30) - 1) >> 30;
    i32::try_from(gib).map_err(|_| AwsError::InvalidValue {
        source_name: "EC2NodeClass".to_owned(),
        field: "spec.blockDeviceMappings.ebs.volumeSize".to_owned(),
        reason: format!("{text} is too large"),
    })
}

fn volume_type(volume_type: VolumeType) -> Ec2VolumeType {
    match volume_type {
        VolumeType::Standard => Ec2VolumeType::Standard,
        VolumeType::Io1 => Ec2VolumeType::Io1,
        VolumeType::Io2 => Ec2VolumeType::Io2,
        VolumeType::Gp2 => Ec2VolumeType::Gp2,
        VolumeType::Sc1 => Ec2VolumeType::Sc1,
        VolumeType::St1 => Ec2VolumeType::St1,
        VolumeType::Gp3 => Ec2VolumeType::Gp3,
    }
}

fn clamp_i32(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// `data` with the capacity-reservation preference, target and market type of `reservation`.
fn with_reservation_use(
    mut data: RequestLaunchTemplateDataBuilder,
    reservation: Option<&ReservationUse>,
) -> RequestLaunchTemplateDataBuilder {
    match reservation {
        None => {}
        Some(ReservationUse::None) => {
            data = data.capacity_reservation_specification(
                LaunchTemplateCapacityReservationSpecificationRequest::builder()
                    .capacity_reservation_preference(CapacityReservationPreference::None)
                    .build(),
            );
        }
        Some(ReservationUse::Only { id, kind }) => {
            data = data.capacity_reservation_specification(
                LaunchTemplateCapacityReservationSpecificationRequest::builder()
                    .capacity_reservation_preference(CapacityReservationPreference::CapacityReservationsOnly)
                    .capacity_reservation_target(
                        CapacityReservationTarget::builder()
                            .capacity_reservation_id(id)
                            .build(),
                    )
                    .build(),
            );
            let market = match kind {
                ReservationKind::Default => None,
                ReservationKind::CapacityBlock => Some(MarketType::CapacityBlock),
                ReservationKind::Interruptible => Some(MarketType::InterruptibleCapacityReservation),
            };
            if let Some(market) = market {
                data = data.instance_market_options(
                    LaunchTemplateInstanceMarketOptionsRequest::builder()
                        .market_type(market)
                        .build(),
                );
            }
        }
    }
    data
}

/// The `CreateLaunchTemplate` data for `spec`.
pub fn template_data(spec: &TemplateSpec) -> Result<RequestLaunchTemplateData, AwsError> {
    let metadata = &spec.metadata_options;
    let toggle_endpoint = match metadata.http_endpoint {
        Toggle::Enabled => LaunchTemplateInstanceMetadataEndpointState::Enabled,
        Toggle::Disabled => LaunchTemplateInstanceMetadataEndpointState::Disabled,
    };
    let ipv6 = match metadata.http_protocol_ipv6 {
        Toggle::Enabled => LaunchTemplateInstanceMetadataProtocolIpv6::Enabled,
        Toggle::Disabled => LaunchTemplateInstanceMetadataProtocolIpv6::Disabled,
    };
    let tokens = match metadata.http_tokens {
        HttpTokens::Required => LaunchTemplateHttpTokensState::Required,
        HttpTokens::Optional => LaunchTemplateHttpTokensState::Optional,
    };
    let mut data = RequestLaunchTemplateData::builder()
        .image_id(&spec.image_id)
        .user_data(&spec.user_data)
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name(&spec.instance_profile)
                .build(),
        )
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_endpoint(toggle_endpoint)
                .http_protocol_ipv6(ipv6)
                .http_put_response_hop_limit(clamp_i32(metadata.http_put_response_hop_limit))
                .http_tokens(tokens)
                .instance_metadata_tags(LaunchTemplateInstanceMetadataTagsState::Disabled)
                .build(),
        )
        .monitoring(
            LaunchTemplatesMonitoringRequest::builder()
                .enabled(spec.detailed_monitoring)
                .build(),
        )
        .tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ResourceType::NetworkInterface)
                .set_tags(Some(tags(&spec.tags)))
                .build(),
        );
    if let Some(public) = spec.associate_public_ip_address {
        // A public address can only be asked for on an explicit interface, which then carries
        // the security groups.
        data = data.network_interfaces(
            LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                .device_index(0)
                .associate_public_ip_address(public)
                .set_groups(Some(spec.security_group_ids.clone()))
                .build(),
        );
    } else {
        data = data.set_security_group_ids(Some(spec.security_group_ids.clone()));
    }
    data = with_reservation_use(data, spec.capacity_reservation.as_ref());
    for mapping in &spec.block_devices {
        let mut request =
            LaunchTemplateBlockDeviceMappingRequest::builder().set_device_name(mapping.device_name.clone());
        if let Some(ebs) = &mapping.ebs {
            let mut device = LaunchTemplateEbsBlockDeviceRequest::builder()
                .set_delete_on_termination(ebs.delete_on_termination.or(Some(true)))
                .set_encrypted(ebs.encrypted)
                .set_iops(ebs.iops.map(clamp_i32))
                .set_kms_key_id(ebs.kms_key_id.clone())
                .set_snapshot_id(ebs.snapshot_id.clone())
                .set_throughput(ebs.throughput.map(clamp_i32))
                .set_volume_type(ebs.volume_type.map(volume_type));
            if let Some(size) = &ebs.volume_size {
                device = device.volume_size(volume_gib(&size.0)?);
            }
            request = request.ebs(device.build());
        }
        data = data.block_device_mappings(request.build());
    }
    Ok(data.build())
}

/// Creates the launch template named `spec.name()` unless it exists. Two controllers racing to
/// create the same template both succeed.
pub async fn ensure(ec2: &aws_sdk_ec2::Client, spec: &TemplateSpec) -> Result<String, AwsError> {
    let name = spec.name();
    match ec2
        .describe_launch_templates()
        .launch_template_names(&name)
        .send()
        .await
    {
        Ok(found) if !found.launch_templates().is_empty() => return Ok(name),
        Ok(_) => {}
        Err(error) => {
            let error = AwsError::api("DescribeLaunchTemplates", &error);
            if error.code() != Some("InvalidLaunchTemplateName.NotFoundException") {
                return Err(error);
            }
        }
    }
    let created = ec2
        .create_launch_template()
        .launch_template_name(&name)
        .launch_template_data(template_data(spec)?)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::LaunchTemplate)
                .set_tags(Some(tags(&spec.tags)))
                .build(),
        )
        .send()
        .await;
    match created {
        Ok(_) => Ok(name),
        Err(error) => {
            let error = AwsError::api("CreateLaunchTemplate", &error);
            if error.code() == Some("InvalidLaunchTemplateName.AlreadyExistsException") {
                Ok(name)
            } else {
                Err(error)
            }
        }
    }
}

/// The names of the cluster's launch templates (tagged `eks:eks-cluster-name: <cluster>`, named
/// `nodewright/...`).
pub async fn list(ec2: &aws_sdk_ec2::Client, cluster: &str) -> Result<Vec<String>, AwsError> {
    list_tagged(ec2, cluster, None).await
}

/// The names of the cluster's launch templates for one node class (also tagged
/// `karpenter.k8s.aws/ec2nodeclass: <node class>`).
pub async fn list_of_node_class(
    ec2: &aws_sdk_ec2::Client,
    cluster: &str,
    node_class: &str,
) -> Result<Vec<String>, AwsError> {
    list_tagged(ec2, cluster, Some(node_class)).await
}

async fn list_tagged(
    ec2: &aws_sdk_ec2::Client,
    cluster: &str,
    node_class: Option<&str>,
) -> Result<Vec<String>, AwsError> {
    let tag = |key: &str, value: &str| {
        aws_sdk_ec2::types::Filter::builder()
            .name(format!("tag:{key}"))
            .values(value)
            .build()
    };
    let mut filters = vec![tag(crate::instances::tags::CLUSTER_NAME, cluster)];
    filters.extend(node_class.map(|name| tag(crate::instances::tags::NODE_CLASS, name)));
    let mut pages = ec2
        .describe_launch_templates()
        .set_filters(Some(filters))
        .into_paginator()
        .send();
    let mut names = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::api("DescribeLaunchTemplates", &e))?;
        names.extend(
            page.launch_templates()
                .iter()
                .filter_map(|t| t.launch_template_name())
                .filter(|name| name.starts_with(NAME_PREFIX))
                .map(str::to_owned),
        );
    }
    Ok(names)
}

/// Deletes a launch template; one already gone is not an error.
pub async fn delete(ec2: &aws_sdk_ec2::Client, name: &str) -> Result<(), AwsError> {
    match ec2
        .delete_launch_template()
        .launch_template_name(name)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(error) => {
            let error = AwsError::api("DeleteLaunchTemplate", &error);
            if error.code() == Some("InvalidLaunchTemplateName.NotFoundException") {
                Ok(())
            } else {
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TemplateSpec {
        TemplateSpec {
            image_id: "ami-1".into(),
            user_data: "ZWNobw==".into(),
            security_group_ids: vec!["sg-1".into()],
            instance_profile: "nodes".into(),
            metadata_options: MetadataOptions::default(),
            block_devices: default_block_devices(AmiFamily::AL2023),
            detailed_monitoring: false,
            associate_public_ip_address: None,
            tags: BTreeMap::from([("eks:eks-cluster-name".to_owned(), "demo".to_owned())]),
            capacity_reservation: None,
        }
    }

    #[test]
    fn reserved_templates_target_their_reservation_and_others_use_none() {
        assert!(
            template_data(&spec())
                .unwrap()
                .capacity_reservation_specification()
                .is_none()
        );
        let mut none = spec();
        none.capacity_reservation = Some(ReservationUse::None);
        let data = template_data(&none).unwrap();
        let reservation = data.capacity_reservation_specification().unwrap();
        assert_eq!(
            reservation.capacity_reservation_preference(),
            Some(&CapacityReservationPreference::None)
        );
        assert!(reservation.capacity_reservation_target().is_none());
        assert!(data.instance_market_options().is_none());
        let targeted = |kind| {
            let mut spec = spec();
            spec.capacity_reservation = Some(ReservationUse::Only {
                id: "cr-1".into(),
                kind,
            });
            spec
        };
        let data = template_data(&targeted(ReservationKind::Default)).unwrap();
        let reservation = data.capacity_reservation_specification().unwrap();
        assert_eq!(
            reservation.capacity_reservation_preference(),
            Some(&CapacityReservationPreference::CapacityReservationsOnly)
        );
        assert_eq!(
            reservation
                .capacity_reservation_target()
                .and_then(CapacityReservationTarget::capacity_reservation_id),
            Some("cr-1")
        );
        assert!(data.instance_market_options().is_none());
        for (kind, market) in [
            (ReservationKind::CapacityBlock, MarketType::CapacityBlock),
            (
                ReservationKind::Interruptible,
                MarketType::InterruptibleCapacityReservation,
            ),
        ] {
            let data = template_data(&targeted(kind)).unwrap();
            assert_eq!(
                data.instance_market_options().unwrap().market_type(),
                Some(&market)
            );
        }
        // Each reservation has its own template; no setting keeps the name it always had.
        assert_ne!(targeted(ReservationKind::Default).name(), none.name());
        assert_ne!(none.name(), spec().name());
    }

    #[test]
    fn the_name_follows_the_content() {
        let a = spec();
        assert!(a.name().starts_with("nodewright/"));
        assert_eq!(a.name(), spec().name());
        let mut b = spec();
        b.image_id = "ami-2".into();
        assert_ne!(a.name(), b.name());
    }

    #[test]
    fn imds_v2_with_hop_limit_one_and_an_encrypted_gp3_root_volume() {
        let data = template_data(&spec()).unwrap();
        let metadata = data.metadata_options().unwrap();
        assert_eq!(
            metadata.http_tokens(),
            Some(&LaunchTemplateHttpTokensState::Required)
        );
        assert_eq!(metadata.http_put_response_hop_limit(), Some(1));
        assert_eq!(
            metadata.instance_metadata_tags(),
            Some(&LaunchTemplateInstanceMetadataTagsState::Disabled)
        );
        let root = &data.block_device_mappings()[0];
        assert_eq!(root.device_name(), Some("/dev/xvda"));
        let ebs = root.ebs().unwrap();
        assert_eq!((ebs.volume_size(), ebs.encrypted()), (Some(20), Some(true)));
        assert_eq!(ebs.volume_type(), Some(&Ec2VolumeType::Gp3));
        assert_eq!(data.security_group_ids(), ["sg-1"]);
        assert_eq!(data.iam_instance_profile().unwrap().name(), Some("nodes"));
    }
}
