//! The shipped catalogue as a whole: which types it holds, their hardware facts, offerings and
//! prices, and how bad records are reported.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::sync::LazyLock;

use nodewright_catalog::catalog::DESCRIBE_INSTANCE_TYPES;
use nodewright_catalog::record::{MemoryInfo, NetworkCard, NetworkInfo, ProcessorInfo, VCpuInfo};
use nodewright_catalog::spot::{MAX_DISCOUNT_BASIS_POINTS, MIN_DISCOUNT_BASIS_POINTS, modelled_spot_price};
use nodewright_catalog::{
    AmiFamily, Architecture, CapacityType, Catalog, CatalogError, InstanceTypeRecord, NodeSettings, Price,
    RegionData,
};

static DEFAULT: LazyLock<Catalog> =
    LazyLock::new(|| Catalog::us_east_1(&NodeSettings::default()).expect("embedded data builds"));

#[test]
fn holds_every_discoverable_type_sorted() {
    // 1,395 records less the 9 Mac types (arm64_mac / x86_64_mac), which Karpenter's
    // DescribeInstanceTypes filter (x86_64, arm64) never returns.
    let types = DEFAULT.instance_types();
    assert_eq!(types.len(), 1386);
    assert!(types.windows(2).all(|w| w[0].name < w[1].name));
    assert!(DEFAULT.get("mac1.metal").is_none() && DEFAULT.get("mac2-m2.metal").is_none());
    assert_eq!(DEFAULT.get("m5.large").map(|t| t.name.as_str()), Some("m5.large"));
    assert!(DEFAULT.get("m5.nope").is_none());
    assert_eq!(DEFAULT.region(), "us-east-1");
    assert_eq!(
        DEFAULT.zones(),
        [
            "us-east-1a",
            "us-east-1b",
            "us-east-1c",
            "us-east-1d",
            "us-east-1e",
            "us-east-1f"
        ]
    );
    assert!(DEFAULT.spot_prices_modelled());
    assert_eq!(DEFAULT.entries().count(), 1386);
    assert!(DEFAULT.entries().all(|(it, hw)| it.name == hw.name));
}

#[test]
fn hardware_facts_are_kept_beside_each_type() {
    let p4d = DEFAULT.hardware("p4d.24xlarge").expect("shipped");
    assert_eq!(
        (p4d.vcpus, p4d.memory_mib, p4d.architecture),
        (96, 1_179_648, Architecture::Amd64)
    );
    assert_eq!(p4d.gpus.len(), 1);
    assert_eq!(
        (
            p4d.gpus[0].name.as_str(),
            p4d.gpus[0].count,
            p4d.gpus[0].memory_mib
        ),
        ("A100", 8, 40960)
    );
    assert_eq!(
        (
            p4d.max_network_interfaces,
            p4d.default_card_max_interfaces,
            p4d.network_cards
        ),
        (60, 15, 4)
    );
    assert_eq!((p4d.ipv4_per_interface, p4d.efa_max_interfaces), (50, 4));
    assert_eq!(
        p4d.instance_storage.as_ref().map(|s| (s.total_size_gb, s.nvme)),
        Some((8000, true))
    );
    assert_eq!(
        (p4d.hypervisor.as_deref(), p4d.bare_metal),
        (Some("nitro"), false)
    );
    assert_eq!(p4d.network_bandwidth_mbps, Some(400_000));
    assert_eq!(p4d.supported_architectures, ["x86_64"]);
    assert_eq!(
        p4d.capacity_types,
        [CapacityType::OnDemand, CapacityType::Spot],
        "capacity-block dropped"
    );
    let t4g = DEFAULT.hardware("t4g.nano").expect("shipped");
    assert!(t4g.burstable && t4g.architecture == Architecture::Arm64);
}

#[test]
fn m5_large_offerings_and_prices() {
    // m5.large: offered in 1a, 1b, 1c, 1d, 1f (not 1e) × on-demand, spot; $0.096/h on demand.
    let m5 = DEFAULT.get("m5.large").expect("shipped");
    assert_eq!(m5.offerings.len(), 10);
    let on_demand: Vec<_> = m5
        .offerings
        .iter()
        .filter(|o| o.capacity_type == CapacityType::OnDemand)
        .collect();
    assert_eq!(on_demand.len(), 5);
    assert!(
        on_demand
            .iter()
            .all(|o| o.price == Price(96_000_000) && o.available)
    );
    // Spot in us-east-1a: the model's 89.01% discount → 96_000_000 × 0.1099 = 10_550_400.
    let spot_1a = m5
        .offerings
        .iter()
        .find(|o| o.zone == "us-east-1a" && o.capacity_type == CapacityType::Spot);
    assert_eq!(spot_1a.map(|o| o.price), Some(Price(10_550_400)));
    assert_eq!(
        m5.cheapest_offering().map(|o| o.capacity_type),
        Some(CapacityType::Spot)
    );
}

#[test]
fn every_spot_price_is_the_model_and_within_the_band() {
    for it in DEFAULT.instance_types() {
        let on_demand = it
            .offerings
            .iter()
            .find(|o| o.capacity_type == CapacityType::OnDemand)
            .map(|o| o.price);
        for spot in it
            .offerings
            .iter()
            .filter(|o| o.capacity_type == CapacityType::Spot && o.available)
        {
            let on_demand = on_demand.expect("a priced spot offering implies an on-demand price");
            assert_eq!(spot.price, modelled_spot_price(on_demand, &it.name, &spot.zone));
            // 10%..45% of on demand, ± rounding.
            let kept_max = u128::from(10_000 - MIN_DISCOUNT_BASIS_POINTS);
            let kept_min = u128::from(10_000 - MAX_DISCOUNT_BASIS_POINTS);
            let (spot_nanos, od_nanos) = (u128::from(spot.price.0), u128::from(on_demand.0));
            assert!(
                spot_nanos * 10_000 <= od_nanos * kept_max + 5_000,
                "{} {}",
                it.name,
                spot.zone
            );
            assert!(
                spot_nanos * 10_000 + 5_000 >= od_nanos * kept_min,
                "{} {}",
                it.name,
                spot.zone
            );
        }
    }
}

#[test]
fn offering_totals_and_availability() {
    // 12,778 offerings over the zones each type is listed in; 12,570 have a price, less the 36 of the
    // six a1 types (3 zones × 2) that AL2023 cannot launch.
    let all: Vec<_> = DEFAULT
        .instance_types()
        .iter()
        .flat_map(|t| &t.offerings)
        .collect();
    assert_eq!(all.len(), 12_778);
    assert_eq!(all.iter().filter(|o| o.available).count(), 12_534);
    // 1,340 types have a price and a zone; 1,334 once a1 is excluded.
    let launchable = DEFAULT
        .instance_types()
        .iter()
        .filter(|t| t.offerings.iter().any(|o| o.available))
        .count();
    assert_eq!(launchable, 1334);
    let al2 = DEFAULT.with_settings(&NodeSettings::for_family(AmiFamily::AL2));
    assert_eq!(
        al2.instance_types()
            .iter()
            .filter(|t| t.offerings.iter().any(|o| o.available))
            .count(),
        1340
    );
}

#[test]
fn unpriced_and_unoffered_types_stay_but_cannot_launch() {
    // r9g.large is offered in zones but has no on-demand price: offerings exist, none available.
    let r9g = DEFAULT.get("r9g.large").expect("shipped");
    assert!(!r9g.offerings.is_empty());
    assert!(
        r9g.offerings
            .iter()
            .all(|o| !o.available && o.price == Price::ZERO)
    );
    assert!(r9g.cheapest_offering().is_none());
    // hpc7a.12xlarge is in no zone of us-east-1: no offerings at all.
    assert!(
        DEFAULT
            .get("hpc7a.12xlarge")
            .expect("shipped")
            .offerings
            .is_empty()
    );
    // t2.nano supports only on-demand: one offering per zone, in all six.
    let t2 = DEFAULT.get("t2.nano").expect("shipped");
    assert_eq!(t2.offerings.len(), 6);
    assert!(
        t2.offerings
            .iter()
            .all(|o| o.capacity_type == CapacityType::OnDemand && o.price == Price(5_800_000))
    );
}

#[test]
fn windows_drops_arm64_and_with_settings_brings_it_back() {
    // 418 of the 1,386 types are arm64; Windows AMIs are amd64 only.
    let windows = DEFAULT.with_settings(&NodeSettings::for_family(AmiFamily::Windows2019));
    assert_eq!(windows.instance_types().len(), 1386 - 418);
    assert!(windows.get("m6g.large").is_none() && windows.hardware("m6g.large").is_none());
    assert_eq!(windows.hardware("m5.large").map(|h| h.vcpus), Some(2));
    let back = windows.with_settings(&NodeSettings::default());
    assert_eq!(back.instance_types(), DEFAULT.instance_types());
    assert_eq!(back.settings(), &NodeSettings::default());
}

fn record(name: &str) -> InstanceTypeRecord {
    InstanceTypeRecord {
        instance_type: name.to_owned(),
        v_cpu_info: VCpuInfo {
            default_v_cpus: 4,
            ..VCpuInfo::default()
        },
        memory_info: MemoryInfo { size_in_mib: 16384 },
        processor_info: ProcessorInfo {
            supported_architectures: vec!["x86_64".into()],
            ..ProcessorInfo::default()
        },
        network_info: NetworkInfo {
            ipv4_addresses_per_interface: 15,
            maximum_network_interfaces: 4,
            network_cards: vec![NetworkCard {
                maximum_network_interfaces: 4,
                ..NetworkCard::default()
            }],
            ..NetworkInfo::default()
        },
        supported_usage_classes: vec!["on-demand".into(), "spot".into()],
        supported_virtualization_types: vec!["hvm".into()],
        ..InstanceTypeRecord::default()
    }
}

fn region(records: Vec<InstanceTypeRecord>) -> RegionData {
    RegionData {
        region: "eu-west-1".into(),
        zones_by_type: [(
            "z9.xlarge".to_owned(),
            vec!["eu-west-1b".to_owned(), "eu-west-1a".to_owned()],
        )]
        .into(),
        on_demand_prices: [("z9.xlarge".to_owned(), Price(200_000_000))].into(),
        records,
        records_source: DESCRIBE_INSTANCE_TYPES.into(),
    }
}

#[test]
fn from_records_builds_any_region() {
    let catalog =
        Catalog::from_records(&region(vec![record("z9.xlarge")]), &NodeSettings::default()).unwrap();
    assert_eq!(catalog.zones(), ["eu-west-1a", "eu-west-1b"]);
    let z9 = catalog.get("z9.xlarge").unwrap();
    assert_eq!(z9.labels["topology.kubernetes.io/region"], "eu-west-1");
    // 4 × (15 − 1) + 2 = 58 pods; 4000 − 80 = 3920m.
    assert_eq!((z9.capacity.pods, z9.allocatable().cpu_millis), (58, 3920));
    assert_eq!(z9.offerings.len(), 4);
    assert_eq!(
        z9.cheapest_offering().map(|o| o.capacity_type),
        Some(CapacityType::Spot)
    );
}

#[test]
fn bad_records_name_source_type_and_field() {
    let mut broken = record("z9.xlarge");
    broken.network_info.default_network_card_index = 2;
    let error = Catalog::from_records(&region(vec![broken]), &NodeSettings::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "DescribeInstanceTypes: instance type z9.xlarge: NetworkInfo.DefaultNetworkCardIndex: \
         no network card at index 2 (1 cards listed)"
    );
    let duplicate = Catalog::from_records(
        &region(vec![record("z9.xlarge"), record("z9.xlarge")]),
        &NodeSettings::default(),
    );
    let Err(CatalogError::InvalidRecord { field, reason, .. }) = &duplicate else {
        panic!("{duplicate:?}")
    };
    assert_eq!(
        (field.as_str(), reason.as_str()),
        ("InstanceType", "listed twice")
    );
    // A Mac record is skipped (not discoverable), not an error.
    let mut mac = record("mac9.metal");
    mac.processor_info.supported_architectures = vec!["arm64_mac".into()];
    let catalog =
        Catalog::from_records(&region(vec![mac, record("z9.xlarge")]), &NodeSettings::default()).unwrap();
    assert_eq!(catalog.instance_types().len(), 1);
}
