//! Offerings: one per zone the type is offered in × capacity type it supports, with a price and
//! whether it can be bought, following Karpenter's base resolver.
//!
//! - On-demand is priced from the price list; spot from [`crate::spot`]'s model of it.
//! - Karpenter needs a price to launch, so a type without an on-demand price keeps its offerings
//!   but all are unavailable (price 0), which lets explanations say why rather than the type just
//!   vanishing.
//! - AL2023 has no AMI for the first-generation Graviton `a1` family, so Karpenter's compatibility
//!   check marks those offerings unavailable under AL2023.
//! - Only zones listed for the type are offered (Karpenter also creates unavailable offerings for
//!   the region's other zones; they carry no information and only slow the solver).

use crate::hardware::Hardware;
use crate::model::{CapacityType, Offering, Price};
use crate::settings::{AmiFamily, NodeSettings};
use crate::spot::modelled_spot_price;

/// The offerings of one type, sorted by zone then capacity type (on-demand before spot).
pub fn offerings(
    hardware: &Hardware,
    zones: &[String],
    on_demand: Option<Price>,
    settings: &NodeSettings,
) -> Vec<Offering> {
    let compatible = is_compatible(hardware, settings);
    let mut zones: Vec<&String> = zones.iter().collect();
    zones.sort();
    zones.dedup();
    let mut offerings = Vec::with_capacity(zones.len() * hardware.capacity_types.len());
    for zone in zones {
        for &capacity_type in &hardware.capacity_types {
            let price = on_demand.map(|price| match capacity_type {
                CapacityType::Spot => modelled_spot_price(price, &hardware.name, zone),
                CapacityType::OnDemand | CapacityType::Reserved => price,
            });
            offerings.push(Offering {
                zone: zone.clone(),
                capacity_type,
                price: price.unwrap_or(Price::ZERO),
                available: compatible && price.is_some(),
                reservation: None,
            });
        }
    }
    offerings.sort_by(|a, b| (&a.zone, a.capacity_type).cmp(&(&b.zone, b.capacity_type)));
    offerings
}

/// Whether a node of this type can be launched with these settings at all.
fn is_compatible(hardware: &Hardware, settings: &NodeSettings) -> bool {
    !(settings.ami_family == AmiFamily::AL2023 && hardware.family() == Some("a1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{InstanceTypeRecord, MemoryInfo, NetworkCard, NetworkInfo, ProcessorInfo, VCpuInfo};

    fn hardware(name: &str, usage: &[&str]) -> Hardware {
        let record = InstanceTypeRecord {
            instance_type: name.to_owned(),
            v_cpu_info: VCpuInfo {
                default_v_cpus: 1,
                ..VCpuInfo::default()
            },
            memory_info: MemoryInfo { size_in_mib: 2048 },
            processor_info: ProcessorInfo {
                supported_architectures: vec!["arm64".into()],
                ..ProcessorInfo::default()
            },
            network_info: NetworkInfo {
                ipv4_addresses_per_interface: 4,
                maximum_network_interfaces: 2,
                network_cards: vec![NetworkCard {
                    maximum_network_interfaces: 2,
                    ..NetworkCard::default()
                }],
                ..NetworkInfo::default()
            },
            supported_usage_classes: usage.iter().map(|u| (*u).to_owned()).collect(),
            ..InstanceTypeRecord::default()
        };
        Hardware::from_record(&record).unwrap()
    }

    fn zones(names: &[&str]) -> Vec<String> {
        names.iter().map(|z| (*z).to_owned()).collect()
    }

    #[test]
    fn zone_times_capacity_type_sorted() {
        let hardware = hardware("x1.large", &["spot", "on-demand"]);
        let offerings = offerings(
            &hardware,
            &zones(&["us-east-1b", "us-east-1a"]),
            Some(Price(100_000_000)),
            &NodeSettings::default(),
        );
        let shape: Vec<_> = offerings
            .iter()
            .map(|o| (o.zone.as_str(), o.capacity_type))
            .collect();
        assert_eq!(
            shape,
            [
                ("us-east-1a", CapacityType::OnDemand),
                ("us-east-1a", CapacityType::Spot),
                ("us-east-1b", CapacityType::OnDemand),
                ("us-east-1b", CapacityType::Spot),
            ]
        );
        assert!(offerings.iter().all(|o| o.available && o.reservation.is_none()));
        assert_eq!(offerings[0].price, Price(100_000_000));
        assert_eq!(
            offerings[1].price,
            modelled_spot_price(Price(100_000_000), "x1.large", "us-east-1a")
        );
        assert!(offerings[1].price < offerings[0].price);
    }

    #[test]
    fn no_price_means_unavailable() {
        let hardware = hardware("x1.large", &["on-demand", "spot"]);
        let offerings = offerings(&hardware, &zones(&["us-east-1a"]), None, &NodeSettings::default());
        assert_eq!(offerings.len(), 2);
        assert!(offerings.iter().all(|o| !o.available && o.price == Price::ZERO));
    }

    #[test]
    fn on_demand_only_types_have_no_spot_offering() {
        let hardware = hardware("x1.large", &["on-demand", "capacity-block"]);
        let offerings = offerings(
            &hardware,
            &zones(&["us-east-1a"]),
            Some(Price(1)),
            &NodeSettings::default(),
        );
        assert_eq!(offerings.len(), 1);
        assert_eq!(offerings[0].capacity_type, CapacityType::OnDemand);
    }

    #[test]
    fn al2023_cannot_launch_a1() {
        let a1 = hardware("a1.medium", &["on-demand"]);
        let price = Some(Price(25_500_000));
        let al2023 = offerings(&a1, &zones(&["us-east-1a"]), price, &NodeSettings::default());
        assert!(!al2023[0].available);
        let al2 = offerings(
            &a1,
            &zones(&["us-east-1a"]),
            price,
            &NodeSettings::for_family(AmiFamily::AL2),
        );
        assert!(al2[0].available);
    }
}
