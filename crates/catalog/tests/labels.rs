//! Labels of real catalogue types, value for value as Karpenter's `computeRequirements` sets them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::collections::BTreeMap;
use std::sync::LazyLock;

use nodewright_api::labels as keys;
use nodewright_catalog::labels::category_and_generation;
use nodewright_catalog::{AmiFamily, Catalog, NodeSettings, RegionData};

static DEFAULT: LazyLock<Catalog> =
    LazyLock::new(|| Catalog::us_east_1(&NodeSettings::default()).expect("embedded data builds"));

fn labels(name: &str) -> &'static BTreeMap<String, String> {
    &DEFAULT
        .get(name)
        .unwrap_or_else(|| panic!("{name} is in the catalogue"))
        .labels
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn m5_large_has_exactly_karpenters_labels() {
    // Raw: 2 vCPU, 8192 MiB, Intel at 3.1 GHz, EBS-optimized by default at 4750 Mbps max,
    // "Up to 10 Gigabit" with a 0.75 Gbps baseline, nitro, no encryption in transit, no instance store.
    assert_eq!(
        *labels("m5.large"),
        expect(&[
            (keys::INSTANCE_TYPE, "m5.large"),
            (keys::ARCH, "amd64"),
            (keys::OS, "linux"),
            (keys::REGION, "us-east-1"),
            (keys::AWS_INSTANCE_CATEGORY, "m"),
            (keys::AWS_INSTANCE_GENERATION, "5"),
            (keys::AWS_INSTANCE_FAMILY, "m5"),
            (keys::AWS_INSTANCE_SIZE, "large"),
            (keys::AWS_INSTANCE_CAPABILITY_FLEX, "false"),
            (keys::AWS_INSTANCE_CPU, "2"),
            (keys::AWS_INSTANCE_CPU_MANUFACTURER, "intel"),
            (keys::AWS_INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ, "3100"),
            (keys::AWS_INSTANCE_MEMORY, "8192"),
            (keys::AWS_INSTANCE_EBS_BANDWIDTH, "4750"),
            (keys::AWS_INSTANCE_NETWORK_BANDWIDTH, "750"),
            (keys::AWS_INSTANCE_HYPERVISOR, "nitro"),
            (keys::AWS_INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED, "false"),
        ])
    );
}

#[test]
fn flex_types_keep_their_family_suffix() {
    // m7i-flex.large: category m, generation 7, family m7i-flex; baseline 0.39 Gbps → 390.
    let flex = labels("m7i-flex.large");
    assert_eq!(flex[keys::AWS_INSTANCE_CAPABILITY_FLEX], "true");
    assert_eq!(flex[keys::AWS_INSTANCE_FAMILY], "m7i-flex");
    assert_eq!(
        (
            &*flex[keys::AWS_INSTANCE_CATEGORY],
            &*flex[keys::AWS_INSTANCE_GENERATION]
        ),
        ("m", "7")
    );
    assert_eq!(flex[keys::AWS_INSTANCE_NETWORK_BANDWIDTH], "390");
    assert_eq!(flex[keys::AWS_INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED], "true");
}

#[test]
fn single_gpu_kind_gets_gpu_labels() {
    // g5.xlarge: one A10G (22888 MiB), AMD CPU, 250 GB NVMe instance store.
    let g5 = labels("g5.xlarge");
    assert_eq!(g5[keys::AWS_INSTANCE_GPU_NAME], "a10g");
    assert_eq!(g5[keys::AWS_INSTANCE_GPU_MANUFACTURER], "nvidia");
    assert_eq!(g5[keys::AWS_INSTANCE_GPU_COUNT], "1");
    assert_eq!(g5[keys::AWS_INSTANCE_GPU_MEMORY], "22888");
    assert_eq!(g5[keys::AWS_INSTANCE_LOCAL_NVME], "250");
    assert_eq!(g5[keys::AWS_INSTANCE_CPU_MANUFACTURER], "amd");
    // p4d.24xlarge: 8 × A100 40960 MiB; "4x 100 Gigabit" → 400000 Mbps.
    let p4d = labels("p4d.24xlarge");
    assert_eq!(
        (
            &*p4d[keys::AWS_INSTANCE_GPU_NAME],
            &*p4d[keys::AWS_INSTANCE_GPU_COUNT]
        ),
        ("a100", "8")
    );
    assert_eq!(p4d[keys::AWS_INSTANCE_GPU_MEMORY], "40960");
    assert_eq!(p4d[keys::AWS_INSTANCE_NETWORK_BANDWIDTH], "400000");
    // g6f.large: a fractional L4, which EC2 reports as Count 0; Karpenter labels it as given.
    assert_eq!(labels("g6f.large")[keys::AWS_INSTANCE_GPU_COUNT], "0");
    assert!(!labels("m5.large").contains_key(keys::AWS_INSTANCE_GPU_NAME));
}

#[test]
fn accelerators_from_neuron_or_inference_info() {
    // inf2.xlarge has both NeuronInfo and InferenceAcceleratorInfo; the Neuron device wins.
    let inf2 = labels("inf2.xlarge");
    assert_eq!(inf2[keys::AWS_INSTANCE_ACCELERATOR_NAME], "inferentia2");
    assert_eq!(inf2[keys::AWS_INSTANCE_ACCELERATOR_MANUFACTURER], "aws");
    assert_eq!(inf2[keys::AWS_INSTANCE_ACCELERATOR_COUNT], "1");
    // trn1.32xlarge: 16 Trainium; "8x 100 Gigabit" → 800000 Mbps.
    let trn1 = labels("trn1.32xlarge");
    assert_eq!(
        (
            &*trn1[keys::AWS_INSTANCE_ACCELERATOR_NAME],
            &*trn1[keys::AWS_INSTANCE_ACCELERATOR_COUNT]
        ),
        ("trainium", "16")
    );
    assert_eq!(trn1[keys::AWS_INSTANCE_NETWORK_BANDWIDTH], "800000");
    // dl2q.24xlarge: only InferenceAcceleratorInfo, 8 × "Qualcomm AI100" by Qualcomm.
    let dl2q = labels("dl2q.24xlarge");
    assert_eq!(dl2q[keys::AWS_INSTANCE_ACCELERATOR_NAME], "qualcomm-ai100");
    assert_eq!(dl2q[keys::AWS_INSTANCE_ACCELERATOR_MANUFACTURER], "qualcomm");
    assert_eq!(dl2q[keys::AWS_INSTANCE_ACCELERATOR_COUNT], "8");
}

#[test]
fn bare_metal_has_an_empty_hypervisor() {
    assert_eq!(labels("m5.metal")[keys::AWS_INSTANCE_HYPERVISOR], "");
    assert_eq!(labels("m5.metal")[keys::AWS_INSTANCE_SIZE], "metal");
    assert_eq!(labels("i3.large")[keys::AWS_INSTANCE_HYPERVISOR], "xen");
}

#[test]
fn previous_generation_quirks() {
    // m1.small: no clock speed (Karpenter labels 0), "Low" network (no bandwidth label), an HDD
    // instance store without NVMe (no local-nvme), EBS optimization unsupported (no EBS label),
    // architectures [i386, x86_64] → amd64.
    let m1 = labels("m1.small");
    assert_eq!(m1[keys::AWS_INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ], "0");
    assert_eq!(m1[keys::ARCH], "amd64");
    for absent in [
        keys::AWS_INSTANCE_NETWORK_BANDWIDTH,
        keys::AWS_INSTANCE_LOCAL_NVME,
        keys::AWS_INSTANCE_EBS_BANDWIDTH,
    ] {
        assert!(!m1.contains_key(absent), "m1.small has {absent}");
    }
    // i3.large: 475 GB NVMe, EBS max 425 Mbps.
    let i3 = labels("i3.large");
    assert_eq!(
        (
            &*i3[keys::AWS_INSTANCE_LOCAL_NVME],
            &*i3[keys::AWS_INSTANCE_EBS_BANDWIDTH]
        ),
        ("475", "425")
    );
}

#[test]
fn graviton_and_high_memory_names() {
    let c6g = labels("c6g.medium");
    assert_eq!(
        (&*c6g[keys::ARCH], &*c6g[keys::AWS_INSTANCE_CPU_MANUFACTURER]),
        ("arm64", "aws")
    );
    assert_eq!(c6g[keys::AWS_INSTANCE_NETWORK_BANDWIDTH], "500");
    // u-3tb1.56xlarge: the optional "-3tb" group of Karpenter's regex.
    let u = labels("u-3tb1.56xlarge");
    assert_eq!(
        (
            &*u[keys::AWS_INSTANCE_CATEGORY],
            &*u[keys::AWS_INSTANCE_GENERATION]
        ),
        ("u", "1")
    );
    assert_eq!(u[keys::AWS_INSTANCE_FAMILY], "u-3tb1");
}

#[test]
fn windows_families_label_os_and_build() {
    let catalog = DEFAULT.with_settings(&NodeSettings::for_family(AmiFamily::Windows2022));
    let m5 = &catalog.get("m5.large").expect("amd64 stays").labels;
    assert_eq!(m5[keys::OS], "windows");
    assert_eq!(m5[keys::WINDOWS_BUILD], "10.0.20348");
    assert!(!labels("m5.large").contains_key(keys::WINDOWS_BUILD));
}

#[test]
fn category_parser_agrees_with_karpenters_regex_on_every_name() {
    let scheme = regex::Regex::new(r"(^[a-z]+)(\-[0-9]+tb)?([0-9]+).*\.").unwrap();
    let data = RegionData::us_east_1().unwrap();
    let mut extra = vec![
        "u-12tb1.112xlarge",
        "u-12tb.large",
        "a-1tb.x",
        "abc",
        "5x.large",
        "m5",
        "x-",
        "u-1tb2",
    ];
    extra.extend(data.records.iter().map(|r| r.instance_type.as_str()));
    for name in extra {
        let expected = scheme
            .captures(name)
            .map(|c| (c.get(1).unwrap().as_str(), c.get(3).unwrap().as_str()));
        assert_eq!(category_and_generation(name), expected, "{name}");
    }
}

#[test]
fn every_type_carries_the_always_present_labels() {
    for it in DEFAULT.instance_types() {
        for key in [
            keys::INSTANCE_TYPE,
            keys::ARCH,
            keys::OS,
            keys::REGION,
            keys::AWS_INSTANCE_CPU,
            keys::AWS_INSTANCE_MEMORY,
            keys::AWS_INSTANCE_HYPERVISOR,
            keys::AWS_INSTANCE_CATEGORY,
            keys::AWS_INSTANCE_FAMILY,
            keys::AWS_INSTANCE_CAPABILITY_FLEX,
        ] {
            assert!(it.labels.contains_key(key), "{} lacks {key}", it.name);
        }
        assert_eq!(it.labels[keys::INSTANCE_TYPE], it.name);
    }
}
