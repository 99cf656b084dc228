//! `NodeSettings::from_node_class`: every EC2NodeClass field that changes capacity or overhead is
//! read as Karpenter's AWS provider reads it, and the catalogue built from the settings shows it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use nodewright_api::{EC2NodeClass, Object, parse_objects};
use nodewright_catalog::settings::{GI, MI};
use nodewright_catalog::{AmiFamily, Catalog, EvictionThreshold, NodeSettings, ReservedResources};

/// An EC2NodeClass with the example's required fields and `extra` spliced into its spec.
fn class(extra: &str) -> EC2NodeClass {
    let indented: String = extra.lines().flat_map(|l| ["  ", l, "\n"]).collect();
    let text = format!(
        "apiVersion: karpenter.k8s.aws/v1\nkind: EC2NodeClass\nmetadata:\n  name: test\nspec:\n  role: KarpenterNodeRole\n  subnetSelectorTerms:\n  - tags:\n      karpenter.sh/discovery: c\n  securityGroupSelectorTerms:\n  - tags:\n      karpenter.sh/discovery: c\n{indented}"
    );
    match parse_objects(&text, "test.yaml").unwrap().pop() {
        Some(Object::EC2NodeClass(class)) => *class,
        other => panic!("expected an EC2NodeClass, got {other:?}"),
    }
}

#[test]
fn the_default_example_gives_the_default_settings() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/default/ec2nodeclass.yaml"
    ))
    .unwrap();
    let Some(Object::EC2NodeClass(class)) = parse_objects(&text, "ec2nodeclass.yaml").unwrap().pop() else {
        panic!("the example is an EC2NodeClass");
    };
    assert_eq!(NodeSettings::from_node_class(&class), NodeSettings::default());
}

#[test]
fn kubelet_block_device_and_instance_store_settings_are_read() {
    let class = class(
        "amiSelectorTerms:\n- alias: al2@latest\nkubelet:\n  maxPods: 110\n  podsPerCore: 4\n  kubeReserved:\n    cpu: 200m\n    memory: 1Gi\n    ephemeral-storage: 3Gi\n    pid: \"100\"\n  systemReserved:\n    cpu: 1\n    memory: \"524288000\"\n  evictionHard:\n    memory.available: 5%\n    nodefs.available: 1Gi\nblockDeviceMappings:\n- deviceName: /dev/xvda\n  rootVolume: true\n  ebs:\n    volumeSize: 100Gi\ninstanceStorePolicy: RAID0",
    );
    let settings = NodeSettings::from_node_class(&class);
    let expected = NodeSettings {
        ami_family: AmiFamily::AL2,
        max_pods: Some(110),
        pods_per_core: Some(4),
        kube_reserved: ReservedResources {
            cpu_millis: Some(200),
            memory_bytes: Some(GI),
            ephemeral_storage_bytes: Some(3 * GI),
        },
        system_reserved: ReservedResources {
            cpu_millis: Some(1000),
            memory_bytes: Some(500 * MI),
            ephemeral_storage_bytes: None,
        },
        eviction_hard_memory: Some(EvictionThreshold::Percent(5.0)),
        eviction_hard_nodefs: Some(EvictionThreshold::Bytes(GI)),
        root_volume_bytes: Some(100 * GI),
        instance_store_raid0: true,
        ..NodeSettings::default()
    };
    assert_eq!(settings, expected);

    // The catalogue built from them: m5.large (2 vCPU, no instance store) gets a 100Gi root volume,
    // min(110, 4 × 2) = 8 pods, and 2000 − 200 − 1000 = 800m allocatable CPU.
    let catalog = Catalog::us_east_1(&settings).unwrap();
    let m5 = catalog.get("m5.large").unwrap();
    assert_eq!(m5.capacity.pods, 8);
    assert_eq!(m5.capacity.ephemeral_storage_bytes, 100 * GI);
    assert_eq!(m5.allocatable().cpu_millis, 800);
    // 100Gi − 3Gi kube-reserved − 1Gi eviction.
    assert_eq!(m5.allocatable().ephemeral_storage_bytes, 96 * GI);
    // m5d.large has a 75 GB NVMe instance store: RAID0 makes that the ephemeral storage.
    let m5d = catalog.get("m5d.large").unwrap();
    assert_eq!(m5d.capacity.ephemeral_storage_bytes, 75_000_000_000);
}

#[test]
fn cel_expressions_and_non_quantities_are_left_to_the_computed_values() {
    let class = class(
        "amiSelectorTerms:\n- alias: al2023@latest\nkubelet:\n  maxPods: \"min(vcpus * 8, 110)\"\n  kubeReserved:\n    cpu: \"vcpus * 10\"\n    memory: 2Gi\n  evictionHard:\n    memory.available: 100%",
    );
    let settings = NodeSettings::from_node_class(&class);
    assert_eq!(settings.max_pods, None, "a CEL maxPods is not evaluated");
    assert_eq!(
        settings.kube_reserved,
        ReservedResources {
            cpu_millis: None,
            memory_bytes: Some(2 * GI),
            ephemeral_storage_bytes: None,
        }
    );
    assert_eq!(
        settings.eviction_hard_memory,
        Some(EvictionThreshold::Percent(100.0))
    );
    assert_eq!(settings.eviction_hard_nodefs, None);
}

#[test]
fn root_volume_follows_karpenters_order() {
    // No rootVolume mapping: the family's ephemeral device (/dev/xvdb on Bottlerocket), not the OS
    // volume on /dev/xvda.
    let bottlerocket = class(
        "amiSelectorTerms:\n- alias: bottlerocket@latest\nblockDeviceMappings:\n- deviceName: /dev/xvda\n  ebs:\n    volumeSize: 4Gi\n- deviceName: /dev/xvdb\n  ebs:\n    volumeSize: 60Gi",
    );
    let settings = NodeSettings::from_node_class(&bottlerocket);
    assert_eq!(settings.ami_family, AmiFamily::Bottlerocket);
    assert_eq!(settings.root_volume_bytes, Some(60 * GI));

    // Custom: the last mapping.
    let custom = class(
        "amiFamily: Custom\namiSelectorTerms:\n- id: ami-0123456789abcdef0\nblockDeviceMappings:\n- deviceName: /dev/sda1\n  ebs:\n    volumeSize: 30Gi\n- deviceName: /dev/sdb\n  ebs:\n    volumeSize: 200Gi",
    );
    let settings = NodeSettings::from_node_class(&custom);
    assert_eq!(settings.ami_family, AmiFamily::Custom);
    assert_eq!(settings.root_volume_bytes, Some(200 * GI));

    // A rootVolume mapping without a size (restored from a snapshot) falls through to the device.
    let snapshot = class(
        "amiSelectorTerms:\n- alias: al2023@latest\nblockDeviceMappings:\n- deviceName: /dev/xvdc\n  rootVolume: true\n  ebs:\n    snapshotID: snap-0123456789abcdef0\n- deviceName: /dev/xvda\n  ebs:\n    volumeSize: 80Gi",
    );
    assert_eq!(
        NodeSettings::from_node_class(&snapshot).root_volume_bytes,
        Some(80 * GI)
    );

    // Mappings on other devices only: the family default (None).
    let other = class(
        "amiSelectorTerms:\n- alias: windows2022@latest\nblockDeviceMappings:\n- deviceName: /dev/xvdf\n  ebs:\n    volumeSize: 500Gi",
    );
    let settings = NodeSettings::from_node_class(&other);
    assert_eq!(settings.ami_family, AmiFamily::Windows2022);
    assert_eq!(settings.root_volume_bytes, None);
}
