//! Capacity and allocatable of real catalogue types under Karpenter's formulas. Every expected value
//! is worked by hand in a comment from the type's raw `DescribeInstanceTypes` values, so a failure
//! says which step of which formula disagrees.
//!
//! Formulas (Karpenter AWS provider, defaults AL2023 / 7.5% VM overhead / 20Gi root volume):
//! - memory capacity = (MiB − 64 if arm64) − ceil(that × 0.075) MiB
//! - pods = ENIs on the default card × (IPv4 per ENI − 1) + 2
//! - kube-reserved: CPU 60/10/5/5/2.5-per-core millicores; memory (11 × pods + 255) MiB; 1Gi disk
//! - eviction: 100Mi memory, 10% of ephemeral storage

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::sync::LazyLock;

use nodewright_catalog::capacity::{
    AWS_NEURON, AWS_NEURON_CORE, EFA, NVIDIA_GPU, PRIVATE_IPV4_ADDRESS, kube_reserved_cpu_millis,
};
use nodewright_catalog::settings::{GI, MI};
use nodewright_catalog::{
    AmiFamily, Catalog, EvictionThreshold, InstanceType, NodeSettings, ReservedResources, Resources,
};

static DEFAULT: LazyLock<Catalog> =
    LazyLock::new(|| Catalog::us_east_1(&NodeSettings::default()).expect("embedded data builds"));

fn with(settings: &NodeSettings) -> Catalog {
    DEFAULT.with_settings(settings)
}

fn get<'a>(catalog: &'a Catalog, name: &str) -> &'a InstanceType {
    catalog
        .get(name)
        .unwrap_or_else(|| panic!("{name} is in the catalogue"))
}

/// (cpu millicores, memory MiB, pods, ephemeral bytes) of `resources`; memory must be whole MiB.
fn summary(resources: &Resources) -> (i64, i64, i64, i64) {
    assert_eq!(
        resources.memory_bytes % MI,
        0,
        "memory {} is not whole MiB",
        resources.memory_bytes
    );
    (
        resources.cpu_millis,
        resources.memory_bytes / MI,
        resources.pods,
        resources.ephemeral_storage_bytes,
    )
}

#[test]
fn m5_large_al2023_published_example() {
    // m5.large: 2 vCPU, 8192 MiB, x86_64, 3 ENIs × 10 IPv4 on its one card.
    let m5 = get(&DEFAULT, "m5.large");
    // capacity memory: 8192 − ceil(8192 × 0.075 = 614.4) = 8192 − 615 = 7577Mi.
    // pods: 3 × (10 − 1) + 2 = 29.
    assert_eq!(summary(&m5.capacity), (2000, 7577, 29, 20 * GI));
    // kube-reserved: CPU 60 + 10 = 70m; memory 11 × 29 + 255 = 574Mi; 1Gi disk.
    assert_eq!(summary(&m5.overhead.kube_reserved), (70, 574, 0, GI));
    // eviction: 100Mi; ceil(20Gi / 100 × 10) = 2Gi.
    assert_eq!(summary(&m5.overhead.eviction_threshold), (0, 100, 0, 2 * GI));
    // allocatable: 2000 − 70 = 1930m; 7577 − 574 − 100 = 6903Mi; 29 pods; 20 − 1 − 2 = 17Gi.
    assert_eq!(summary(&m5.allocatable()), (1930, 6903, 29, 17 * GI));
    assert!(
        m5.capacity.extended.is_empty(),
        "no GPUs, EFA or pod-eni: {:?}",
        m5.capacity.extended
    );
}

#[test]
fn graviton_loses_64_mib_before_the_vm_overhead() {
    // m6g.large: 2 vCPU, 8192 MiB, arm64, 3 ENIs × 10 IPv4.
    // memory: 8192 − 64 = 8128; ceil(8128 × 0.075 = 609.6) = 610; 8128 − 610 = 7518Mi.
    // allocatable memory: 7518 − (11 × 29 + 255 = 574) − 100 = 6844Mi.
    let m6g = get(&DEFAULT, "m6g.large");
    assert_eq!(summary(&m6g.capacity), (2000, 7518, 29, 20 * GI));
    assert_eq!(summary(&m6g.allocatable()), (1930, 6844, 29, 17 * GI));
}

#[test]
fn tiny_types_t3_nano_and_t4g_nano() {
    // t3.nano: 2 vCPU, 512 MiB, x86_64, 2 ENIs × 2 IPv4.
    // memory: 512 − ceil(512 × 0.075 = 38.4) = 512 − 39 = 473Mi; pods 2 × (2 − 1) + 2 = 4.
    // allocatable: 2000 − 70 = 1930m; 473 − (11 × 4 + 255 = 299) − 100 = 74Mi.
    let t3 = get(&DEFAULT, "t3.nano");
    assert_eq!(summary(&t3.capacity), (2000, 473, 4, 20 * GI));
    assert_eq!(summary(&t3.allocatable()), (1930, 74, 4, 17 * GI));
    // t4g.nano: the same shape on arm64. memory: 512 − 64 = 448; 448 − ceil(33.6) = 448 − 34 = 414Mi.
    // allocatable: 414 − 299 − 100 = 15Mi, the smallest in the catalogue.
    let t4g = get(&DEFAULT, "t4g.nano");
    assert_eq!(summary(&t4g.capacity), (2000, 414, 4, 20 * GI));
    assert_eq!(summary(&t4g.allocatable()), (1930, 15, 4, 17 * GI));
}

#[test]
fn one_vcpu_a1_medium_on_al2() {
    // a1.medium: 1 vCPU, 2048 MiB, arm64, 2 ENIs × 4 IPv4. (AL2: AL2023 has no a1 AMI.)
    // kube-reserved CPU: 6% of the first core = 60m → 1000 − 60 = 940m.
    // memory: 2048 − 64 = 1984; 1984 − ceil(1984 × 0.075 = 148.8) = 1984 − 149 = 1835Mi.
    // pods: 2 × (4 − 1) + 2 = 8; kube-reserved memory 11 × 8 + 255 = 343Mi.
    // allocatable memory: 1835 − 343 − 100 = 1392Mi.
    let catalog = with(&NodeSettings::for_family(AmiFamily::AL2));
    let a1 = get(&catalog, "a1.medium");
    assert_eq!(summary(&a1.capacity), (1000, 1835, 8, 20 * GI));
    assert_eq!(summary(&a1.allocatable()), (940, 1392, 8, 17 * GI));
    assert!(a1.offerings.iter().any(|o| o.available));
    assert!(
        get(&DEFAULT, "a1.medium").offerings.iter().all(|o| !o.available),
        "AL2023 cannot launch a1"
    );
}

#[test]
fn eight_vcpu_m5_2xlarge() {
    // m5.2xlarge: 8 vCPU, 32768 MiB, 4 ENIs × 15 IPv4.
    // kube-reserved CPU: 60 + 10 + 2 × 5 + 4 × 2.5 = 90m → 7910m.
    // memory: 32768 − ceil(2457.6) = 32768 − 2458 = 30310Mi; pods 4 × 14 + 2 = 58.
    // allocatable memory: 30310 − (11 × 58 + 255 = 893) − 100 = 29317Mi.
    let m5 = get(&DEFAULT, "m5.2xlarge");
    assert_eq!(summary(&m5.capacity), (8000, 30310, 58, 20 * GI));
    assert_eq!(summary(&m5.allocatable()), (7910, 29317, 58, 17 * GI));
}

#[test]
fn ninety_six_vcpus_reserve_310m_and_bare_metal_matches_its_virtual_twin() {
    // m5.24xlarge and m5.metal: 96 vCPU, 393216 MiB, 15 ENIs × 50 IPv4.
    // kube-reserved CPU: 60 + 10 + 10 + 92 × 2.5 = 310m → 95690m.
    // memory: 393216 − ceil(393216 × 0.075 = 29491.2) = 393216 − 29492 = 363724Mi.
    // pods: 15 × 49 + 2 = 737; kube-reserved memory 11 × 737 + 255 = 8362Mi.
    // allocatable memory: 363724 − 8362 − 100 = 355262Mi.
    assert_eq!(kube_reserved_cpu_millis(96), 310);
    for name in ["m5.24xlarge", "m5.metal"] {
        let m5 = get(&DEFAULT, name);
        assert_eq!(summary(&m5.capacity), (96_000, 363_724, 737, 20 * GI), "{name}");
        assert_eq!(
            summary(&m5.allocatable()),
            (95_690, 355_262, 737, 17 * GI),
            "{name}"
        );
    }
    assert!(
        DEFAULT
            .hardware("m5.metal")
            .is_some_and(|h| h.bare_metal && h.hypervisor.is_none())
    );
}

#[test]
fn gpu_type_g5_xlarge() {
    // g5.xlarge: 4 vCPU, 16384 MiB, 4 ENIs × 15 IPv4, one NVIDIA A10G.
    // kube-reserved CPU: 60 + 10 + 2 × 5 = 80m → 3920m.
    // memory: 16384 − ceil(1228.8) = 16384 − 1229 = 15155Mi; pods 4 × 14 + 2 = 58.
    // allocatable memory: 15155 − (11 × 58 + 255 = 893) − 100 = 14162Mi.
    let g5 = get(&DEFAULT, "g5.xlarge");
    assert_eq!(summary(&g5.capacity), (4000, 15155, 58, 20 * GI));
    assert_eq!(summary(&g5.allocatable()), (3920, 14162, 58, 17 * GI));
    assert_eq!(g5.capacity.get(NVIDIA_GPU), 1);
    assert_eq!(g5.allocatable().get(NVIDIA_GPU), 1, "no GPU is reserved");
    // g6f.large: 1/8 of an L4, which EC2 lists as Count 0 → no whole GPU to advertise.
    assert_eq!(get(&DEFAULT, "g6f.large").capacity.get(NVIDIA_GPU), 0);
}

#[test]
fn eight_gpu_p4d_uses_only_its_default_network_card_for_pods() {
    // p4d.24xlarge: 96 vCPU, 1179648 MiB, 4 cards × 15 ENIs (60 in all), 50 IPv4, 8 × A100, EFA 4.
    // pods use card 0 only: 15 × 49 + 2 = 737, not 60 × 49 + 2.
    // memory: 1179648 − ceil(88473.6) = 1179648 − 88474 = 1091174Mi.
    // allocatable memory: 1091174 − (11 × 737 + 255 = 8362) − 100 = 1082712Mi.
    let p4d = get(&DEFAULT, "p4d.24xlarge");
    assert_eq!(summary(&p4d.capacity), (96_000, 1_091_174, 737, 20 * GI));
    assert_eq!(summary(&p4d.allocatable()), (95_690, 1_082_712, 737, 17 * GI));
    assert_eq!((p4d.capacity.get(NVIDIA_GPU), p4d.capacity.get(EFA)), (8, 4));
}

#[test]
fn neuron_and_efa_trn1_32xlarge() {
    // trn1.32xlarge: 128 vCPU, 524288 MiB, card 0 with 5 ENIs × 50 IPv4, 16 Trainium × 2 cores, EFA 8.
    // kube-reserved CPU: 80 + 124 × 2.5 = 390m → 127610m.
    // memory: 524288 − ceil(39321.6) = 524288 − 39322 = 484966Mi; pods 5 × 49 + 2 = 247.
    // allocatable memory: 484966 − (11 × 247 + 255 = 2972) − 100 = 481894Mi.
    let trn1 = get(&DEFAULT, "trn1.32xlarge");
    assert_eq!(summary(&trn1.capacity), (128_000, 484_966, 247, 20 * GI));
    assert_eq!(summary(&trn1.allocatable()), (127_610, 481_894, 247, 17 * GI));
    // neuron = 16 devices; neuroncore = 16 × 2; efa = MaximumEfaInterfaces 8.
    assert_eq!(
        (trn1.capacity.get(AWS_NEURON), trn1.capacity.get(AWS_NEURON_CORE)),
        (16, 32)
    );
    assert_eq!(trn1.capacity.get(EFA), 8);
}

#[test]
fn windows_gets_110_pods_and_a_50gi_root_volume() {
    // m5.large on Windows2022: not ENI-limited → 110 pods; kube-reserved memory uses them:
    // 11 × 110 + 255 = 1465Mi → 7577 − 1465 − 100 = 6012Mi.
    // Root volume 50Gi: eviction ceil(50Gi × 10%) = 5Gi → 50 − 1 − 5 = 44Gi.
    // PrivateIPv4Address: 10 IPv4 per ENI − 1 = 9.
    let catalog = with(&NodeSettings::for_family(AmiFamily::Windows2022));
    let m5 = get(&catalog, "m5.large");
    assert_eq!(summary(&m5.capacity), (2000, 7577, 110, 50 * GI));
    assert_eq!(summary(&m5.allocatable()), (1930, 6012, 110, 44 * GI));
    assert_eq!(m5.capacity.get(PRIVATE_IPV4_ADDRESS), 9);
}

#[test]
fn max_pods_override_keeps_eni_limited_memory_on_al2023_but_not_bottlerocket() {
    let settings = NodeSettings {
        max_pods: Some(110),
        ..NodeSettings::default()
    };
    // AL2023 sizes kube-reserved memory for ENI-limited pods (29) whatever maxPods says:
    // still 574Mi → 6903Mi, with 110 pods.
    let m5 = get(&with(&settings), "m5.large").allocatable();
    assert_eq!(summary(&m5), (1930, 6903, 110, 17 * GI));
    // Bottlerocket uses the actual pods: 11 × 110 + 255 = 1465Mi → 7577 − 1465 − 100 = 6012Mi.
    let bottlerocket = NodeSettings {
        ami_family: AmiFamily::Bottlerocket,
        ..settings
    };
    let m5 = get(&with(&bottlerocket), "m5.large").allocatable();
    assert_eq!(summary(&m5), (1930, 6012, 110, 17 * GI));
    // Custom with maxPods 50: ENI-limited memory (574Mi) like AL2023, 50 pods.
    let custom = NodeSettings {
        ami_family: AmiFamily::Custom,
        max_pods: Some(50),
        ..NodeSettings::default()
    };
    assert_eq!(
        summary(&get(&with(&custom), "m5.large").allocatable()),
        (1930, 6903, 50, 17 * GI)
    );
}

#[test]
fn pods_per_core_caps_pods_except_on_bottlerocket() {
    // m5.xlarge: 4 vCPU, 4 ENIs × 15 IPv4 → 4 × 14 + 2 = 58 ENI-limited pods.
    // podsPerCore 10: min(10 × 4 = 40, 58) = 40.
    let settings = NodeSettings {
        pods_per_core: Some(10),
        ..NodeSettings::default()
    };
    assert_eq!(get(&with(&settings), "m5.xlarge").capacity.pods, 40);
    // Bottlerocket ignores podsPerCore: 58.
    let bottlerocket = NodeSettings {
        ami_family: AmiFamily::Bottlerocket,
        ..settings.clone()
    };
    assert_eq!(get(&with(&bottlerocket), "m5.xlarge").capacity.pods, 58);
    // Windows honours it on top of 110: min(40, 110) = 40.
    let windows = NodeSettings {
        ami_family: AmiFamily::Windows2019,
        ..settings
    };
    assert_eq!(get(&with(&windows), "m5.xlarge").capacity.pods, 40);
}

#[test]
fn reserved_enis_lower_pods_but_not_al2023_memory() {
    // m5.large with 1 reserved ENI: (3 − 1) × 9 + 2 = 20 pods.
    let settings = NodeSettings {
        reserved_enis: 1,
        ..NodeSettings::default()
    };
    // AL2023 kube-reserved memory uses reservedENIs = 0: still 574Mi → 6903Mi.
    assert_eq!(
        summary(&get(&with(&settings), "m5.large").allocatable()),
        (1930, 6903, 20, 17 * GI)
    );
    // Bottlerocket uses the 20 pods: 11 × 20 + 255 = 475Mi → 7577 − 475 − 100 = 7002Mi.
    let bottlerocket = NodeSettings {
        ami_family: AmiFamily::Bottlerocket,
        ..settings
    };
    assert_eq!(
        summary(&get(&with(&bottlerocket), "m5.large").allocatable()),
        (1930, 7002, 20, 17 * GI)
    );
    // 3 reserved ENIs leave none usable: 0 pods.
    let none = NodeSettings {
        reserved_enis: 3,
        ..NodeSettings::default()
    };
    assert_eq!(get(&with(&none), "m5.large").capacity.pods, 0);
}

#[test]
fn raid0_uses_the_instance_store_in_decimal_gigabytes() {
    // m5d.large: one 75 GB NVMe disk. RAID0 → 75 × 10^9 bytes.
    // eviction: ceil(75e9 / 100 × 10) = 7.5e9; kube-reserved 1Gi = 1073741824.
    // allocatable: 75e9 − 1073741824 − 7.5e9 = 66426258176.
    let settings = NodeSettings {
        instance_store_raid0: true,
        ..NodeSettings::default()
    };
    let raid0 = with(&settings);
    let m5d = get(&raid0, "m5d.large");
    assert_eq!(m5d.capacity.ephemeral_storage_bytes, 75_000_000_000);
    assert_eq!(m5d.allocatable().ephemeral_storage_bytes, 66_426_258_176);
    // m5.large has no instance store: RAID0 changes nothing.
    assert_eq!(
        get(&with(&settings), "m5.large").capacity.ephemeral_storage_bytes,
        20 * GI
    );
}

#[test]
fn root_volume_and_vm_overhead_settings() {
    // 100Gi root volume: 100 − 1 − ceil(10%) 10 = 89Gi.
    let big_root = NodeSettings {
        root_volume_bytes: Some(100 * GI),
        ..NodeSettings::default()
    };
    assert_eq!(
        get(&with(&big_root), "m5.large")
            .allocatable()
            .ephemeral_storage_bytes,
        89 * GI
    );
    // No VM overhead: capacity is the full 8192Mi; allocatable 8192 − 574 − 100 = 7518Mi.
    let no_overhead = NodeSettings {
        vm_memory_overhead_percent: 0.0,
        ..NodeSettings::default()
    };
    let catalog = with(&no_overhead);
    let m5 = get(&catalog, "m5.large");
    assert_eq!(m5.capacity.memory_bytes, 8192 * MI);
    assert_eq!(m5.allocatable().memory_bytes, 7518 * MI);
}

#[test]
fn kubelet_reservations_and_eviction_overrides() {
    let settings = NodeSettings {
        kube_reserved: ReservedResources {
            cpu_millis: Some(200),
            ..ReservedResources::default()
        },
        system_reserved: ReservedResources {
            memory_bytes: Some(100 * MI),
            ..ReservedResources::default()
        },
        eviction_hard_memory: Some(EvictionThreshold::Percent(5.0)),
        eviction_hard_nodefs: Some(EvictionThreshold::Bytes(GI)),
        ..NodeSettings::default()
    };
    let catalog = with(&settings);
    let m5 = get(&catalog, "m5.large");
    // CPU: 2000 − 200 (kube-reserved override) = 1800m.
    assert_eq!(m5.allocatable().cpu_millis, 1800);
    // memory eviction 5% of capacity 7577Mi = 7945060352 B: ceil(397253017.6) = 397253018 B.
    assert_eq!(m5.overhead.eviction_threshold.memory_bytes, 397_253_018);
    // memory: 7945060352 − 574Mi (kube, unchanged) − 100Mi (system) − 397253018
    //       = 7945060352 − 601882624 − 104857600 − 397253018 = 6841067110 B.
    assert_eq!(m5.allocatable().memory_bytes, 6_841_067_110);
    // disk: 20Gi − 1Gi − 1Gi (nodefs override) = 18Gi.
    assert_eq!(m5.allocatable().ephemeral_storage_bytes, 18 * GI);
}

#[test]
fn every_type_has_positive_allocatable_cpu_memory_and_pods() {
    for it in DEFAULT.instance_types() {
        let allocatable = it.allocatable();
        assert!(
            allocatable.cpu_millis > 0 && allocatable.memory_bytes > 0,
            "{}: {allocatable:?}",
            it.name
        );
        assert!(allocatable.pods > 0, "{}: {allocatable:?}", it.name);
    }
}
