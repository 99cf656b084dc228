//! CreateFleet (type `instant`) requests and what their answers mean.
//!
//! One request asks for one instance with overrides for every candidate type × zone (one subnet
//! per zone), with EC2's allocation strategy doing the final pick: `price-capacity-optimized` for
//! spot, `lowest-price` for on-demand. An `instant` fleet answers with the instance or, per pool it
//! could not use, an error; capacity errors mark the pool unavailable for a while so the next
//! launch goes elsewhere.

use std::collections::BTreeMap;

use aws_sdk_ec2::{
    operation::create_fleet::{CreateFleetOutput, builders::CreateFleetFluentBuilder},
    types::{
        DefaultTargetCapacityType, FleetLaunchTemplateConfigRequest, FleetLaunchTemplateOverridesRequest,
        FleetLaunchTemplateSpecificationRequest, FleetOnDemandAllocationStrategy, FleetReservationType,
        FleetType, InstanceLifecycle, InstanceType as Ec2InstanceType, OnDemandOptionsRequest,
        ReservedCapacityOptionsRequest, ResourceType, SpotAllocationStrategy, SpotOptionsRequest, Tag,
        TagSpecification, TargetCapacitySpecificationRequest,
    },
};
use nodewright_catalog::{CapacityType, Price};
use nodewright_cloudprovider::{CloudProviderError, OfferingKey};

use crate::reservations::ReservationKind;

/// Fleet error codes that mean "this pool cannot give an instance now" (Karpenter's
/// unfulfillable-capacity codes): the offering is marked unavailable and the launch is an
/// insufficient-capacity error when nothing else launched.
pub const CAPACITY_ERROR_CODES: [&str; 8] = [
    "InsufficientInstanceCapacity",
    "MaxSpotInstanceCountExceeded",
    "VcpuLimitExceeded",
    "UnfulfillableCapacity",
    "Unsupported",
    "InsufficientFreeAddressesInSubnet",
    "MaxFleetCountExceeded",
    "ReservationCapacityExceeded",
];

pub fn is_capacity_error(code: &str) -> bool {
    CAPACITY_ERROR_CODES.contains(&code)
}

/// One pool a fleet may launch from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FleetOverride {
    pub instance_type: String,
    pub subnet_id: String,
    pub zone: String,
    /// The offering's price; EC2 reads it as the override's priority.
    pub price: Price,
}

/// The overrides that share one launch template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FleetConfig {
    pub template_name: String,
    pub overrides: Vec<FleetOverride>,
}

/// One CreateFleet call (for one instance; the batcher asks for more at once).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FleetRequest {
    pub capacity_type: CapacityType,
    /// The kind of the reservations a `reserved` launch targets (through its templates): it
    /// decides the fleet's default capacity type and options.
    pub reservation_kind: Option<ReservationKind>,
    pub configs: Vec<FleetConfig>,
    /// Tags of the instance, its volumes and the fleet.
    pub tags: BTreeMap<String, String>,
    /// `spec.context` of the EC2NodeClass.
    pub context: Option<String>,
}

impl FleetRequest {
    /// The zone of a subnet the request names.
    pub fn zone_of_subnet(&self, subnet: &str) -> Option<String> {
        self.configs
            .iter()
            .flat_map(|c| &c.overrides)
            .find(|o| o.subnet_id == subnet)
            .map(|o| o.zone.clone())
    }
}

/// How the fleet buys: Karpenter's table of default target capacity type and options. A default
/// reservation is bought as on-demand (its template targets the reservation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Market {
    Spot,
    OnDemand,
    CapacityBlock,
    Interruptible,
}

impl Market {
    fn of(request: &FleetRequest) -> Self {
        match (request.capacity_type, request.reservation_kind) {
            (CapacityType::Spot, _) => Self::Spot,
            (CapacityType::Reserved, Some(ReservationKind::CapacityBlock)) => Self::CapacityBlock,
            (CapacityType::Reserved, Some(ReservationKind::Interruptible)) => Self::Interruptible,
            (CapacityType::OnDemand | CapacityType::Reserved, _) => Self::OnDemand,
        }
    }
}

/// The request as an SDK call for `count` instances, ready to send.
pub fn build(ec2: &aws_sdk_ec2::Client, request: &FleetRequest, count: i32) -> CreateFleetFluentBuilder {
    let market = Market::of(request);
    let tags: Vec<Tag> = request
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let mut call = ec2
        .create_fleet()
        .r#type(FleetType::Instant)
        .set_context(request.context.clone())
        .target_capacity_specification(
            TargetCapacitySpecificationRequest::builder()
                .total_target_capacity(count)
                .default_target_capacity_type(match market {
                    Market::Spot => DefaultTargetCapacityType::Spot,
                    Market::OnDemand => DefaultTargetCapacityType::OnDemand,
                    Market::CapacityBlock => DefaultTargetCapacityType::CapacityBlock,
                    Market::Interruptible => DefaultTargetCapacityType::ReservedCapacity,
                })
                .build(),
        );
    call = match market {
        Market::Spot => call.spot_options(
            SpotOptionsRequest::builder()
                .allocation_strategy(SpotAllocationStrategy::PriceCapacityOptimized)
                .build(),
        ),
        Market::OnDemand => call.on_demand_options(
            OnDemandOptionsRequest::builder()
                .allocation_strategy(FleetOnDemandAllocationStrategy::LowestPrice)
                .build(),
        ),
        // Capacity blocks take no options.
        Market::CapacityBlock => call,
        Market::Interruptible => call.reserved_capacity_options(
            ReservedCapacityOptionsRequest::builder()
                .reservation_types(FleetReservationType::InterruptibleCapacityReservation)
                .build(),
        ),
    };
    for resource in [ResourceType::Instance, ResourceType::Volume, ResourceType::Fleet] {
        call = call.tag_specifications(
            TagSpecification::builder()
                .resource_type(resource)
                .set_tags(Some(tags.clone()))
                .build(),
        );
    }
    for config in &request.configs {
        let overrides = config
            .overrides
            .iter()
            .map(|o| {
                FleetLaunchTemplateOverridesRequest::builder()
                    .instance_type(Ec2InstanceType::from(o.instance_type.as_str()))
                    .subnet_id(&o.subnet_id)
                    .availability_zone(&o.zone)
                    .priority(o.price.as_usd())
                    .build()
            })
            .collect();
        call = call.launch_template_configs(
            FleetLaunchTemplateConfigRequest::builder()
                .launch_template_specification(
                    FleetLaunchTemplateSpecificationRequest::builder()
                        .launch_template_name(&config.template_name)
                        .version("$Latest")
                        .build(),
                )
                .set_overrides(Some(overrides))
                .build(),
        );
    }
    call
}

/// The instance a fleet launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchedInstance {
    pub instance_id: String,
    pub instance_type: String,
    pub zone: Option<String>,
    pub subnet_id: Option<String>,
}

/// One pool the fleet could not launch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetFailure {
    /// The pool, when the error names its type and its zone or subnet.
    pub offering: Option<OfferingKey>,
    pub code: String,
    pub message: String,
}

/// The launched instances (one per ID, in EC2's order) and the pools that failed.
/// `zone_of_subnet` maps a subnet to its zone for answers that name only the subnet.
pub fn read_output(
    output: &CreateFleetOutput,
    capacity_type: CapacityType,
    zone_of_subnet: &dyn Fn(&str) -> Option<String>,
) -> (Vec<LaunchedInstance>, Vec<FleetFailure>) {
    let mut launched = Vec::new();
    for instance in output.instances() {
        let Some(instance_type) = instance.instance_type() else {
            continue;
        };
        let chosen = instance
            .launch_template_and_overrides()
            .and_then(|l| l.overrides());
        let subnet_id = chosen.and_then(|o| o.subnet_id()).map(str::to_owned);
        let zone = chosen
            .and_then(|o| o.availability_zone())
            .map(str::to_owned)
            .or_else(|| subnet_id.as_deref().and_then(zone_of_subnet));
        for id in instance.instance_ids() {
            launched.push(LaunchedInstance {
                instance_id: id.clone(),
                instance_type: instance_type.as_str().to_owned(),
                zone: zone.clone(),
                subnet_id: subnet_id.clone(),
            });
        }
    }
    let failures = output
        .errors()
        .iter()
        .map(|error| {
            let overrides = error.launch_template_and_overrides().and_then(|l| l.overrides());
            let zone = overrides.and_then(|o| {
                o.availability_zone()
                    .map(str::to_owned)
                    .or_else(|| o.subnet_id().and_then(zone_of_subnet))
            });
            // EC2 reports a reserved launch's pools as on-demand; they are the reserved offerings.
            let lifecycle = match error.lifecycle() {
                _ if capacity_type == CapacityType::Reserved => CapacityType::Reserved,
                Some(InstanceLifecycle::Spot) => CapacityType::Spot,
                Some(InstanceLifecycle::OnDemand) => CapacityType::OnDemand,
                _ => capacity_type,
            };
            let offering = overrides
                .and_then(|o| o.instance_type())
                .zip(zone)
                .map(|(instance_type, zone)| OfferingKey::new(instance_type.as_str(), zone, lifecycle));
            FleetFailure {
                offering,
                code: error.error_code().unwrap_or("Unknown").to_owned(),
                message: error.error_message().unwrap_or_default().to_owned(),
            }
        })
        .collect();
    (launched, failures)
}

/// The offerings to mark unavailable after these failures.
pub fn unavailable_offerings(failures: &[FleetFailure]) -> Vec<OfferingKey> {
    let mut offerings: Vec<OfferingKey> = failures
        .iter()
        .filter(|f| is_capacity_error(&f.code))
        .filter_map(|f| f.offering.clone())
        .collect();
    offerings.sort();
    offerings.dedup();
    offerings
}

/// The error of a fleet that launched nothing: insufficient capacity when every failure was a
/// capacity error (Karpenter then tries other offerings), otherwise a CreateError with the first
/// other AWS code as its reason.
pub fn launch_failed(node_claim: &str, failures: &[FleetFailure]) -> CloudProviderError {
    match failures.iter().find(|f| !is_capacity_error(&f.code)) {
        None => CloudProviderError::InsufficientCapacity {
            node_claim: node_claim.to_owned(),
            offerings: unavailable_offerings(failures),
        },
        Some(first) => CloudProviderError::CreateError {
            reason: first.code.clone(),
            message: format!(
                "CreateFleet launched no instance for nodeclaim {node_claim}: {}",
                failures
                    .iter()
                    .map(|f| format!("{} ({})", f.code, f.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        },
    }
}

/// An error of the CreateFleet call itself (not of a pool): a CreateError with AWS's code, or
/// `Other` for throttling and transport failures, which are worth retrying as they are.
pub fn call_failed(error: crate::error::AwsError) -> CloudProviderError {
    match error {
        crate::error::AwsError::Api { code, message, .. }
            if !matches!(
                code.as_str(),
                crate::error::REQUEST_FAILED | "RequestLimitExceeded" | "Throttling"
            ) =>
        {
            CloudProviderError::CreateError {
                reason: code,
                message,
            }
        }
        other => CloudProviderError::other(other),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{
        CreateFleetError, CreateFleetInstance, FleetLaunchTemplateOverrides,
        LaunchTemplateAndOverridesResponse,
    };

    use super::*;

    fn request(capacity_type: CapacityType) -> FleetRequest {
        FleetRequest {
            capacity_type,
            reservation_kind: None,
            configs: vec![FleetConfig {
                template_name: "nodewright/abc".into(),
                overrides: vec![
                    FleetOverride {
                        instance_type: "m5.large".into(),
                        subnet_id: "subnet-a".into(),
                        zone: "us-west-2a".into(),
                        price: Price(96_000_000),
                    },
                    FleetOverride {
                        instance_type: "c5.large".into(),
                        subnet_id: "subnet-b".into(),
                        zone: "us-west-2b".into(),
                        price: Price(85_000_000),
                    },
                ],
            }],
            tags: BTreeMap::from([("karpenter.sh/nodepool".to_owned(), "default".to_owned())]),
            context: None,
        }
    }

    fn client() -> aws_sdk_ec2::Client {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("us-west-2"))
            .build();
        aws_sdk_ec2::Client::from_conf(config)
    }

    #[test]
    fn spot_requests_are_instant_price_capacity_optimized_and_tag_three_resources() {
        let call = build(&client(), &request(CapacityType::Spot), 1);
        let input = call.as_input();
        assert_eq!(input.get_type(), &Some(FleetType::Instant));
        let target = input.get_target_capacity_specification().as_ref().unwrap();
        assert_eq!(target.total_target_capacity(), Some(1));
        assert_eq!(
            target.default_target_capacity_type(),
            Some(&DefaultTargetCapacityType::Spot)
        );
        assert_eq!(
            input.get_spot_options().as_ref().unwrap().allocation_strategy(),
            Some(&SpotAllocationStrategy::PriceCapacityOptimized)
        );
        assert!(input.get_on_demand_options().is_none());
        let tagged: Vec<&ResourceType> = input
            .get_tag_specifications()
            .as_ref()
            .unwrap()
            .iter()
            .filter_map(|t| t.resource_type())
            .collect();
        assert_eq!(
            tagged,
            [
                &ResourceType::Instance,
                &ResourceType::Volume,
                &ResourceType::Fleet
            ]
        );
        let configs = input.get_launch_template_configs().as_ref().unwrap();
        let spec = configs[0].launch_template_specification().unwrap();
        assert_eq!(
            (spec.launch_template_name(), spec.version()),
            (Some("nodewright/abc"), Some("$Latest"))
        );
        let overrides = configs[0].overrides();
        assert_eq!(overrides.len(), 2);
        assert_eq!(overrides[1].instance_type(), Some(&Ec2InstanceType::C5Large));
        assert_eq!(overrides[1].subnet_id(), Some("subnet-b"));
        assert_eq!(overrides[1].priority(), Some(0.085));
    }

    #[test]
    fn on_demand_requests_use_lowest_price() {
        let call = build(&client(), &request(CapacityType::OnDemand), 1);
        let input = call.as_input();
        assert_eq!(
            input
                .get_on_demand_options()
                .as_ref()
                .unwrap()
                .allocation_strategy(),
            Some(&FleetOnDemandAllocationStrategy::LowestPrice)
        );
        assert!(input.get_spot_options().is_none());
    }

    #[test]
    fn reserved_requests_buy_by_the_kind_of_their_reservations() {
        let mut reserved = request(CapacityType::Reserved);
        reserved.reservation_kind = Some(ReservationKind::Default);
        let call = build(&client(), &reserved, 1);
        let input = call.as_input();
        let target_type =
            |input: &aws_sdk_ec2::operation::create_fleet::builders::CreateFleetInputBuilder| {
                input
                    .get_target_capacity_specification()
                    .as_ref()
                    .and_then(|t| t.default_target_capacity_type().cloned())
            };
        assert_eq!(target_type(input), Some(DefaultTargetCapacityType::OnDemand));
        assert!(input.get_on_demand_options().is_some());
        reserved.reservation_kind = Some(ReservationKind::CapacityBlock);
        let call = build(&client(), &reserved, 1);
        let input = call.as_input();
        assert_eq!(target_type(input), Some(DefaultTargetCapacityType::CapacityBlock));
        assert!(input.get_on_demand_options().is_none() && input.get_spot_options().is_none());
        reserved.reservation_kind = Some(ReservationKind::Interruptible);
        let call = build(&client(), &reserved, 1);
        let input = call.as_input();
        assert_eq!(
            target_type(input),
            Some(DefaultTargetCapacityType::ReservedCapacity)
        );
        assert_eq!(
            input
                .get_reserved_capacity_options()
                .as_ref()
                .unwrap()
                .reservation_types(),
            [FleetReservationType::InterruptibleCapacityReservation]
        );
        // A refused reserved pool is the reserved offering, not the on-demand one.
        let output = CreateFleetOutput::builder()
            .errors(
                CreateFleetError::builder()
                    .launch_template_and_overrides(
                        LaunchTemplateAndOverridesResponse::builder()
                            .overrides(
                                FleetLaunchTemplateOverrides::builder()
                                    .instance_type(Ec2InstanceType::M5Large)
                                    .subnet_id("subnet-a")
                                    .build(),
                            )
                            .build(),
                    )
                    .lifecycle(InstanceLifecycle::OnDemand)
                    .error_code("ReservationCapacityExceeded")
                    .build(),
            )
            .build();
        let (_, failures) = read_output(&output, CapacityType::Reserved, &zone_of);
        assert_eq!(
            unavailable_offerings(&failures),
            [OfferingKey::new("m5.large", "us-west-2a", CapacityType::Reserved)]
        );
    }

    fn error(instance_type: &str, subnet: &str, code: &str) -> CreateFleetError {
        CreateFleetError::builder()
            .launch_template_and_overrides(
                LaunchTemplateAndOverridesResponse::builder()
                    .overrides(
                        FleetLaunchTemplateOverrides::builder()
                            .instance_type(Ec2InstanceType::from(instance_type))
                            .subnet_id(subnet)
                            .build(),
                    )
                    .build(),
            )
            .lifecycle(InstanceLifecycle::Spot)
            .error_code(code)
            .error_message("no capacity")
            .build()
    }

    fn zone_of(subnet: &str) -> Option<String> {
        match subnet {
            "subnet-a" => Some("us-west-2a".to_owned()),
            "subnet-b" => Some("us-west-2b".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn capacity_errors_become_insufficient_capacity_with_the_pools() {
        let output = CreateFleetOutput::builder()
            .errors(error("m5.large", "subnet-a", "InsufficientInstanceCapacity"))
            .errors(error("c5.large", "subnet-b", "MaxSpotInstanceCountExceeded"))
            .build();
        let (launched, failures) = read_output(&output, CapacityType::Spot, &zone_of);
        assert!(launched.is_empty());
        let error = launch_failed("default-abc", &failures);
        let CloudProviderError::InsufficientCapacity { offerings, .. } = &error else {
            panic!("{error}")
        };
        assert_eq!(
            offerings,
            &[
                OfferingKey::new("c5.large", "us-west-2b", CapacityType::Spot),
                OfferingKey::new("m5.large", "us-west-2a", CapacityType::Spot),
            ]
        );
    }

    #[test]
    fn other_errors_are_create_errors_with_the_aws_code() {
        let output = CreateFleetOutput::builder()
            .errors(error("m5.large", "subnet-a", "InsufficientInstanceCapacity"))
            .errors(error("c5.large", "subnet-b", "InvalidParameterValue"))
            .build();
        let (_, failures) = read_output(&output, CapacityType::Spot, &zone_of);
        assert_eq!(
            unavailable_offerings(&failures),
            [OfferingKey::new("m5.large", "us-west-2a", CapacityType::Spot)]
        );
        let error = launch_failed("default-abc", &failures);
        assert!(
            matches!(&error, CloudProviderError::CreateError { reason, .. } if reason == "InvalidParameterValue"),
            "{error}"
        );
        let throttled = call_failed(crate::error::AwsError::Api {
            operation: "CreateFleet",
            code: "RequestLimitExceeded".into(),
            message: "slow down".into(),
        });
        assert!(matches!(throttled, CloudProviderError::Other(_)));
        let denied = call_failed(crate::error::AwsError::Api {
            operation: "CreateFleet",
            code: "UnauthorizedOperation".into(),
            message: "denied".into(),
        });
        assert!(
            matches!(denied, CloudProviderError::CreateError { reason, .. } if reason == "UnauthorizedOperation")
        );
    }

    #[test]
    fn the_launched_instance_is_read_with_its_pool() {
        let output = CreateFleetOutput::builder()
            .instances(
                CreateFleetInstance::builder()
                    .instance_ids("i-1")
                    .instance_type(Ec2InstanceType::C5Large)
                    .launch_template_and_overrides(
                        LaunchTemplateAndOverridesResponse::builder()
                            .overrides(
                                FleetLaunchTemplateOverrides::builder()
                                    .subnet_id("subnet-b")
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build();
        let (launched, failures) = read_output(&output, CapacityType::Spot, &zone_of);
        assert!(failures.is_empty());
        assert_eq!(
            launched,
            [LaunchedInstance {
                instance_id: "i-1".into(),
                instance_type: "c5.large".into(),
                zone: Some("us-west-2b".into()),
                subnet_id: Some("subnet-b".into()),
            }]
        );
    }
}
