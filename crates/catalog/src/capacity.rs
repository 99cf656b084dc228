//! Capacity and overhead exactly as the Karpenter AWS provider computes them
//! (`pkg/providers/instancetype/types.go`), so a plan made here fits on the node Karpenter (and the
//! kubelet) would register.
//!
//! Where Karpenter computes in `float64` (VM memory overhead, kube-reserved CPU, percentage
//! eviction thresholds) the same operations are done in the same order, so rounding agrees on every
//! type rather than only on the published examples.
//!
//! `vpc.amazonaws.com/pod-eni` is not advertised: Karpenter takes it from the VPC resource
//! controller's limits table (`IsTrunkingCompatible`, `BranchInterface`), and neither field is in
//! `DescribeInstanceTypes`, so the data cannot give it. Pods asking for security-groups-for-pods
//! branch ENIs therefore find no capacity until the AWS provider supplies the table.

use crate::hardware::Hardware;
use crate::model::{Overhead, Resources};
use crate::settings::{GI, MI, NodeSettings, ReservedResources};

pub const NVIDIA_GPU: &str = "nvidia.com/gpu";
pub const AMD_GPU: &str = "amd.com/gpu";
pub const HABANA_GAUDI: &str = "habana.ai/gaudi";
pub const AWS_NEURON: &str = "aws.amazon.com/neuron";
pub const AWS_NEURON_CORE: &str = "aws.amazon.com/neuroncore";
pub const EFA: &str = "vpc.amazonaws.com/efa";
/// Secondary IPv4 addresses a Windows node hands to pods (the VPC resource controller's resource).
pub const PRIVATE_IPV4_ADDRESS: &str = "vpc.amazonaws.com/PrivateIPv4Address";

/// Pods on a node without `maxPods` or `podsPerCore`, when the family is not ENI-limited (Windows).
pub const DEFAULT_MAX_PODS: i64 = 110;

/// What a node of this type registers with, before any reservation.
pub fn capacity(hardware: &Hardware, settings: &NodeSettings) -> Resources {
    let mut capacity = Resources {
        cpu_millis: i64::from(hardware.vcpus) * 1000,
        memory_bytes: memory_bytes(hardware, settings.vm_memory_overhead_percent),
        pods: pods(hardware, settings),
        ephemeral_storage_bytes: ephemeral_storage_bytes(hardware, settings),
        ..Resources::default()
    };
    capacity.set(NVIDIA_GPU, i64::from(hardware.gpu_count("NVIDIA")));
    capacity.set(AMD_GPU, i64::from(hardware.gpu_count("AMD")));
    capacity.set(HABANA_GAUDI, i64::from(hardware.gpu_count("Habana")));
    let neurons: i64 = hardware.neuron_devices.iter().map(|d| i64::from(d.count)).sum();
    capacity.set(AWS_NEURON, neurons);
    // Karpenter multiplies the first device kind's count by its cores; no type has two kinds.
    let neuron_cores = hardware
        .neuron_devices
        .first()
        .map_or(0, |d| i64::from(d.count) * i64::from(d.cores_per_device));
    capacity.set(AWS_NEURON_CORE, neuron_cores);
    capacity.set(EFA, i64::from(hardware.efa_max_interfaces));
    if settings.family().is_windows() {
        // Karpenter reads IPv4PerInterface from the VPC limits table; DescribeInstanceTypes has the
        // same figure as Ipv4AddressesPerInterface.
        capacity.set(PRIVATE_IPV4_ADDRESS, i64::from(hardware.ipv4_per_interface) - 1);
    }
    capacity
}

/// kube-reserved, system-reserved and the hard eviction thresholds.
pub fn overhead(hardware: &Hardware, settings: &NodeSettings) -> Overhead {
    let family = settings.family();
    let pods_for_memory = if family.eni_limited_memory_overhead {
        // AL2/AL2023/Custom size kube-reserved memory for the ENI limit with no reserved ENIs,
        // whatever maxPods says.
        eni_limited_pods(hardware, 0)
    } else {
        pods(hardware, settings)
    };
    let mut kube_reserved = Resources {
        cpu_millis: kube_reserved_cpu_millis(hardware.vcpus),
        memory_bytes: (11 * pods_for_memory + 255) * MI,
        ephemeral_storage_bytes: GI,
        ..Resources::default()
    };
    apply_overrides(&mut kube_reserved, &settings.kube_reserved);
    let mut system_reserved = Resources::default();
    apply_overrides(&mut system_reserved, &settings.system_reserved);

    let memory = memory_bytes(hardware, settings.vm_memory_overhead_percent);
    let storage = ephemeral_storage_bytes(hardware, settings);
    let eviction_threshold = Resources {
        memory_bytes: settings
            .eviction_hard_memory
            .map_or(100 * MI, |t| t.reserved_bytes(memory)),
        ephemeral_storage_bytes: settings.eviction_hard_nodefs.map_or_else(
            || default_nodefs_eviction_bytes(storage),
            |t| t.reserved_bytes(storage),
        ),
        ..Resources::default()
    };
    Overhead {
        kube_reserved,
        system_reserved,
        eviction_threshold,
    }
}

fn apply_overrides(resources: &mut Resources, overrides: &ReservedResources) {
    if let Some(cpu) = overrides.cpu_millis {
        resources.cpu_millis = cpu;
    }
    if let Some(memory) = overrides.memory_bytes {
        resources.memory_bytes = memory;
    }
    if let Some(storage) = overrides.ephemeral_storage_bytes {
        resources.ephemeral_storage_bytes = storage;
    }
}

/// Memory capacity in bytes: `SizeInMiB`, less 64 MiB of CMA on Graviton (Karpenter checks the
/// first listed architecture), less `ceil(MiB × vm_memory_overhead_percent)` MiB for the VM.
pub fn memory_bytes(hardware: &Hardware, vm_memory_overhead_percent: f64) -> i64 {
    let cma_mib = if hardware
        .supported_architectures
        .first()
        .is_some_and(|a| a == "arm64")
    {
        64
    } else {
        0
    };
    let mib = i64::try_from(hardware.memory_mib)
        .unwrap_or(i64::MAX / MI)
        .saturating_sub(cma_mib);
    let bytes = mib.saturating_mul(MI);
    // Karpenter: ceil(float64(mem.Value()) * percent / 1024 / 1024), in that order.
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let overhead_mib = (bytes as f64 * vm_memory_overhead_percent / 1024.0 / 1024.0).ceil() as i64;
    bytes.saturating_sub(overhead_mib.saturating_mul(MI))
}

/// Pods the VPC CNI can address: `usable ENIs × (IPv4 per ENI − 1) + 2`, with usable ENIs those of
/// the default network card less `reserved_enis`; none usable means no pods at all.
pub fn eni_limited_pods(hardware: &Hardware, reserved_enis: u32) -> i64 {
    let usable = i64::from(hardware.default_card_max_interfaces) - i64::from(reserved_enis);
    if usable <= 0 {
        return 0;
    }
    usable * (i64::from(hardware.ipv4_per_interface) - 1) + 2
}

/// The node's pod capacity: `maxPods`, else the ENI limit (or 110 on Windows), then capped at
/// `podsPerCore × vCPUs` when set and the family honours it.
pub fn pods(hardware: &Hardware, settings: &NodeSettings) -> i64 {
    let family = settings.family();
    let count = match settings.max_pods {
        Some(max_pods) => i64::from(max_pods),
        None if family.eni_limited_pod_density => eni_limited_pods(hardware, settings.reserved_enis),
        None => DEFAULT_MAX_PODS,
    };
    match settings.pods_per_core {
        Some(per_core) if per_core > 0 && family.pods_per_core => {
            count.min(i64::from(per_core) * i64::from(hardware.vcpus))
        }
        _ => count,
    }
}

/// Ephemeral storage: with `instanceStorePolicy: RAID0` the instance store's total (GB = 10^9
/// bytes) on types that have one; otherwise the root volume (set, or the family default).
pub fn ephemeral_storage_bytes(hardware: &Hardware, settings: &NodeSettings) -> i64 {
    if settings.instance_store_raid0
        && let Some(storage) = &hardware.instance_storage
    {
        return i64::try_from(storage.total_size_gb)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000_000);
    }
    settings
        .root_volume_bytes
        .unwrap_or(settings.family().default_root_volume_bytes)
}

/// kube-reserved CPU, Bottlerocket's formula: 6% of the first core, 1% of the second, 0.5% of the
/// third and fourth, 0.25% of every core beyond (1 → 60m, 2 → 70m, 4 → 80m, 8 → 90m, 96 → 310m).
/// Each range's share is truncated to whole millicores before summing, as Karpenter does.
pub fn kube_reserved_cpu_millis(vcpus: u32) -> i64 {
    const RANGES: [(i64, i64, f64); 4] = [
        (0, 1000, 0.06),
        (1000, 2000, 0.01),
        (2000, 4000, 0.005),
        (4000, 1 << 31, 0.0025),
    ];
    let cpu = i64::from(vcpus) * 1000;
    let mut reserved = 0;
    for (start, end, rate) in RANGES {
        if cpu >= start {
            let span = if cpu < end { cpu - start } else { end - start };
            // Karpenter: int64(float64(span) * rate). Spans are at most 2^31.
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let share = (span as f64 * rate) as i64;
            reserved += share;
        }
    }
    reserved
}

/// The default `nodefs.available` threshold: `ceil(storage / 100 × 10)` bytes (2Gi of 20Gi).
fn default_nodefs_eviction_bytes(storage_bytes: i64) -> i64 {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let reserved = (storage_bytes as f64 / 100.0 * 10.0).ceil() as i64;
    reserved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::{Gpu, InstanceStorage, NeuronDevice, m5_large};
    use crate::settings::{AmiFamily, EvictionThreshold};

    #[test]
    fn kube_reserved_cpu_table() {
        let table = [
            (1, 60),
            (2, 70),
            (3, 75),
            (4, 80),
            (8, 90),
            (16, 110),
            (48, 190),
            (96, 310),
            (192, 550),
        ];
        for (vcpus, millis) in table {
            assert_eq!(kube_reserved_cpu_millis(vcpus), millis, "{vcpus} vCPU");
        }
    }

    #[test]
    fn published_m5_large_example() {
        let hardware = m5_large();
        let settings = NodeSettings::default();
        let capacity = capacity(&hardware, &settings);
        // 8192 − ceil(8192 × 0.075 = 614.4) = 8192 − 615 = 7577Mi.
        assert_eq!(capacity.memory_bytes, 7577 * MI);
        assert_eq!(capacity.pods, 29);
        let allocatable = capacity.minus(&overhead(&hardware, &settings).total());
        assert_eq!(allocatable.cpu_millis, 1930);
        assert_eq!(allocatable.memory_bytes, 6903 * MI);
        assert_eq!(allocatable.ephemeral_storage_bytes, 17 * GI);
        assert!(capacity.extended.is_empty(), "{:?}", capacity.extended);
    }

    #[test]
    fn zero_usable_enis_give_zero_pods() {
        assert_eq!(eni_limited_pods(&m5_large(), 3), 0);
        assert_eq!(eni_limited_pods(&m5_large(), 7), 0);
        assert_eq!(eni_limited_pods(&m5_large(), 2), 11);
    }

    #[test]
    fn pods_per_core_is_ignored_on_bottlerocket_only() {
        let settings = NodeSettings {
            pods_per_core: Some(5),
            ..NodeSettings::default()
        };
        assert_eq!(pods(&m5_large(), &settings), 10);
        let bottlerocket = NodeSettings {
            ami_family: AmiFamily::Bottlerocket,
            ..settings.clone()
        };
        assert_eq!(pods(&m5_large(), &bottlerocket), 29);
        let zero = NodeSettings {
            pods_per_core: Some(0),
            ..NodeSettings::default()
        };
        assert_eq!(pods(&m5_large(), &zero), 29, "podsPerCore 0 means unset");
    }

    #[test]
    fn overrides_replace_key_by_key() {
        let settings = NodeSettings {
            kube_reserved: ReservedResources {
                cpu_millis: Some(250),
                ..ReservedResources::default()
            },
            system_reserved: ReservedResources {
                memory_bytes: Some(300 * MI),
                ..ReservedResources::default()
            },
            eviction_hard_memory: Some(EvictionThreshold::Bytes(500 * MI)),
            eviction_hard_nodefs: Some(EvictionThreshold::Percent(100.0)),
            ..NodeSettings::default()
        };
        let overhead = overhead(&m5_large(), &settings);
        assert_eq!(overhead.kube_reserved.cpu_millis, 250);
        assert_eq!(
            overhead.kube_reserved.memory_bytes,
            574 * MI,
            "memory keeps its computed value"
        );
        assert_eq!(overhead.system_reserved.memory_bytes, 300 * MI);
        assert_eq!(overhead.system_reserved.cpu_millis, 0);
        assert_eq!(overhead.eviction_threshold.memory_bytes, 500 * MI);
        assert_eq!(overhead.eviction_threshold.ephemeral_storage_bytes, 0);
    }

    #[test]
    fn accelerators_become_extended_resources() {
        let mut hardware = m5_large();
        hardware.gpus = vec![
            Gpu {
                name: "A".into(),
                manufacturer: "NVIDIA".into(),
                count: 2,
                memory_mib: 1,
            },
            Gpu {
                name: "B".into(),
                manufacturer: "NVIDIA".into(),
                count: 1,
                memory_mib: 1,
            },
            Gpu {
                name: "C".into(),
                manufacturer: "AMD".into(),
                count: 4,
                memory_mib: 1,
            },
            Gpu {
                name: "D".into(),
                manufacturer: "Habana".into(),
                count: 8,
                memory_mib: 1,
            },
        ];
        hardware.neuron_devices = vec![NeuronDevice {
            name: "Trainium".into(),
            count: 16,
            cores_per_device: 2,
            memory_mib: 1,
        }];
        hardware.efa_max_interfaces = 8;
        let capacity = capacity(&hardware, &NodeSettings::default());
        assert_eq!(capacity.get(NVIDIA_GPU), 3);
        assert_eq!(capacity.get(AMD_GPU), 4);
        assert_eq!(capacity.get(HABANA_GAUDI), 8);
        assert_eq!(capacity.get(AWS_NEURON), 16);
        assert_eq!(capacity.get(AWS_NEURON_CORE), 32);
        assert_eq!(capacity.get(EFA), 8);
        assert_eq!(
            capacity.get(PRIVATE_IPV4_ADDRESS),
            0,
            "Linux nodes do not advertise it"
        );
    }

    #[test]
    fn raid0_needs_an_instance_store() {
        let raid0 = NodeSettings {
            instance_store_raid0: true,
            ..NodeSettings::default()
        };
        assert_eq!(
            ephemeral_storage_bytes(&m5_large(), &raid0),
            20 * GI,
            "no instance store: root volume"
        );
        let mut m5d = m5_large();
        m5d.instance_storage = Some(InstanceStorage {
            total_size_gb: 75,
            nvme: true,
            disks: 1,
        });
        assert_eq!(ephemeral_storage_bytes(&m5d, &raid0), 75_000_000_000);
        let root = NodeSettings {
            root_volume_bytes: Some(100 * GI),
            ..NodeSettings::default()
        };
        assert_eq!(ephemeral_storage_bytes(&m5d, &root), 100 * GI);
    }

    #[test]
    fn vm_overhead_applies_after_the_arm64_reservation() {
        let mut graviton = m5_large();
        graviton.supported_architectures = vec!["arm64".into()];
        // Karpenter's memory_test.go: (8192 − 64) MiB less ceil(8128 × 0.075 = 609.6) = 610 MiB.
        assert_eq!(memory_bytes(&graviton, 0.075), 7_883_194_368);
        assert_eq!(memory_bytes(&graviton, 0.0), (8192 - 64) * MI);
        // 16384 MiB at 15%: (16384 − 64) − ceil(16320 × 0.15 = 2448) = 13872 MiB.
        graviton.memory_mib = 16384;
        assert_eq!(memory_bytes(&graviton, 0.15), 14_545_846_272);
    }
}
