//! Per-type hardware facts, normalized and validated once from a [`InstanceTypeRecord`].
//!
//! The provider-neutral [`crate::InstanceType`] carries only what scheduling needs (labels,
//! resources, offerings). Explanations ("no instance type has 96 vCPU and arm64"), the AWS provider
//! (ENI and EFA limits at launch) and reports need the raw facts too, so the catalogue keeps a
//! [`Hardware`] beside every type, keyed by name. Capacity, labels and offerings are all computed
//! from `Hardware`, which is what lets [`crate::Catalog::with_settings`] re-derive a catalogue for
//! another EC2NodeClass without parsing the data again.

use crate::model::CapacityType;
use crate::record::InstanceTypeRecord;

/// CPU architecture as Kubernetes names it (`kubernetes.io/arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Architecture {
    Amd64,
    Arm64,
}

impl Architecture {
    /// The `kubernetes.io/arch` value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    /// EC2's name (`x86_64`, `arm64`) mapped the way Karpenter's `AWSToKubeArchitectures` does;
    /// `i386`, `x86_64_mac` and `arm64_mac` have no Kubernetes architecture.
    pub fn from_ec2(name: &str) -> Option<Self> {
        match name {
            "x86_64" => Some(Self::Amd64),
            "arm64" => Some(Self::Arm64),
            _ => None,
        }
    }
}

/// One kind of GPU on an instance type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gpu {
    /// `A10G`, `H100`, ...
    pub name: String,
    /// `NVIDIA`, `AMD`, `Habana`.
    pub manufacturer: String,
    /// Whole GPUs; EC2 reports 0 for fractional GPUs (`g6f.large` has 1/8 of an L4).
    pub count: u32,
    /// Memory per GPU.
    pub memory_mib: u64,
}

/// AWS Neuron devices (Inferentia, Trainium).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NeuronDevice {
    pub name: String,
    pub count: u32,
    pub cores_per_device: u32,
    pub memory_mib: u64,
}

/// An inference accelerator as `InferenceAcceleratorInfo` lists it (Qualcomm AI100, Inferentia).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Accelerator {
    pub name: String,
    pub manufacturer: String,
    pub count: u32,
    pub memory_mib: u64,
}

/// Local instance-store disks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceStorage {
    /// Sum over all disks, in GB (10^9 bytes), as EC2 reports it.
    pub total_size_gb: u64,
    /// False only when EC2 says NVMe is `unsupported` (older SATA/SAS instance stores).
    pub nvme: bool,
    pub disks: u32,
}

/// The hardware facts of one instance type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hardware {
    pub name: String,
    /// The first of `supported_architectures` Kubernetes knows.
    pub architecture: Architecture,
    /// As EC2 lists them; Karpenter's arm64 memory reservation looks only at the first.
    pub supported_architectures: Vec<String>,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// `Intel`, `AMD`, `AWS`.
    pub cpu_manufacturer: Option<String>,
    /// Sustained all-core clock, GHz × 1000 rounded half away from zero (as Karpenter's label).
    pub sustained_clock_speed_mhz: Option<u64>,
    pub gpus: Vec<Gpu>,
    pub neuron_devices: Vec<NeuronDevice>,
    pub inference_accelerators: Vec<Accelerator>,
    /// ENIs over all network cards.
    pub max_network_interfaces: u32,
    /// ENIs on the default network card: the VPC CNI uses only this card, so pod density uses it.
    pub default_card_max_interfaces: u32,
    pub ipv4_per_interface: u32,
    pub network_cards: u32,
    /// `EfaInfo.MaximumEfaInterfaces`, 0 without EFA.
    pub efa_max_interfaces: u32,
    /// EC2's description: `Up to 10 Gigabit`, `4x 100 Gigabit`, `Moderate`.
    pub network_performance: String,
    /// Baseline network bandwidth in Mbps; see [`network_bandwidth_mbps`] for how it is derived.
    pub network_bandwidth_mbps: Option<u64>,
    /// Maximum EBS bandwidth in Mbps when the type is EBS-optimized by default (the only case
    /// Karpenter labels).
    pub ebs_bandwidth_mbps: Option<u32>,
    pub instance_storage: Option<InstanceStorage>,
    /// `nitro` or `xen`; `None` on bare metal.
    pub hypervisor: Option<String>,
    pub bare_metal: bool,
    pub burstable: bool,
    pub encryption_in_transit: bool,
    /// On-demand and/or spot, in EC2's order; `capacity-block` is not a Karpenter capacity type.
    pub capacity_types: Vec<CapacityType>,
}

/// Why a record cannot become [`Hardware`]: the record field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordError {
    pub(crate) field: &'static str,
    pub(crate) reason: String,
}

impl RecordError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Whether Karpenter's discovery would return the type at all: it asks `DescribeInstanceTypes` for
/// `supported-virtualization-type=hvm` and `processor-info.supported-architecture` in
/// {`x86_64`, `arm64`}, which leaves out the Mac types and paravirtual-only ones.
pub fn is_discoverable(record: &InstanceTypeRecord) -> bool {
    record.supported_virtualization_types.iter().any(|v| v == "hvm")
        && record
            .processor_info
            .supported_architectures
            .iter()
            .any(|a| Architecture::from_ec2(a).is_some())
}

impl Hardware {
    /// Normalizes a record, rejecting values no formula can use (Karpenter would crash or compute
    /// nonsense on them).
    pub(crate) fn from_record(record: &InstanceTypeRecord) -> Result<Self, RecordError> {
        let processor = &record.processor_info;
        let architecture = processor
            .supported_architectures
            .iter()
            .find_map(|a| Architecture::from_ec2(a))
            .ok_or_else(|| {
                RecordError::new(
                    "ProcessorInfo.SupportedArchitectures",
                    format!("no x86_64 or arm64 in {:?}", processor.supported_architectures),
                )
            })?;
        if record.v_cpu_info.default_v_cpus == 0 {
            return Err(RecordError::new("VCpuInfo.DefaultVCpus", "must be positive"));
        }
        if record.memory_info.size_in_mib == 0 {
            return Err(RecordError::new("MemoryInfo.SizeInMiB", "must be positive"));
        }
        let network = &record.network_info;
        let default_card = usize::try_from(network.default_network_card_index)
            .ok()
            .and_then(|index| network.network_cards.get(index))
            .ok_or_else(|| {
                RecordError::new(
                    "NetworkInfo.DefaultNetworkCardIndex",
                    format!(
                        "no network card at index {} ({} cards listed)",
                        network.default_network_card_index,
                        network.network_cards.len()
                    ),
                )
            })?;
        if network.ipv4_addresses_per_interface == 0 {
            // The pod formula subtracts the ENI's own address; zero would give negative pods.
            return Err(RecordError::new(
                "NetworkInfo.Ipv4AddressesPerInterface",
                "must be at least 1",
            ));
        }
        if record
            .neuron_info
            .as_ref()
            .is_some_and(|n| n.neuron_devices.is_empty())
        {
            // Karpenter reads NeuronDevices[0] for neuron cores whenever NeuronInfo is present.
            return Err(RecordError::new("NeuronInfo.NeuronDevices", "present but empty"));
        }
        let network_cards = u32::try_from(network.network_cards.len())
            .map_err(|_| RecordError::new("NetworkInfo.NetworkCards", "too many network cards"))?;

        Ok(Self {
            name: record.instance_type.clone(),
            architecture,
            supported_architectures: processor.supported_architectures.clone(),
            vcpus: record.v_cpu_info.default_v_cpus,
            memory_mib: record.memory_info.size_in_mib,
            cpu_manufacturer: processor.manufacturer.clone(),
            sustained_clock_speed_mhz: processor.sustained_clock_speed_in_ghz.map(ghz_to_mhz),
            gpus: gpus(record),
            neuron_devices: neuron_devices(record),
            inference_accelerators: inference_accelerators(record),
            max_network_interfaces: network.maximum_network_interfaces,
            default_card_max_interfaces: default_card.maximum_network_interfaces,
            ipv4_per_interface: network.ipv4_addresses_per_interface,
            network_cards,
            efa_max_interfaces: network
                .efa_info
                .as_ref()
                .map_or(0, |efa| efa.maximum_efa_interfaces),
            network_performance: network.network_performance.clone(),
            network_bandwidth_mbps: network_bandwidth_mbps(
                &network.network_performance,
                default_card.baseline_bandwidth_in_gbps,
            ),
            ebs_bandwidth_mbps: record.ebs_info.as_ref().and_then(|ebs| {
                (ebs.ebs_optimized_support.as_deref() == Some("default"))
                    .then_some(ebs.ebs_optimized_info.as_ref()?.maximum_bandwidth_in_mbps)
            }),
            instance_storage: record.instance_storage_info.as_ref().and_then(|storage| {
                Some(InstanceStorage {
                    total_size_gb: storage.total_size_in_gb?,
                    nvme: storage.nvme_support.as_deref() != Some("unsupported"),
                    disks: storage.disks.iter().map(|d| d.count).sum(),
                })
            }),
            hypervisor: record.hypervisor.clone().filter(|h| !h.is_empty()),
            bare_metal: record.bare_metal,
            burstable: record.burstable_performance_supported,
            encryption_in_transit: network.encryption_in_transit_supported,
            capacity_types: capacity_types(&record.supported_usage_classes),
        })
    }

    /// The instance family (`m7i-flex` of `m7i-flex.large`), when the name has exactly one dot.
    pub fn family(&self) -> Option<&str> {
        self.name_parts().map(|(family, _)| family)
    }

    /// The size (`large` of `m7i-flex.large`), when the name has exactly one dot.
    pub fn size(&self) -> Option<&str> {
        self.name_parts().map(|(_, size)| size)
    }

    fn name_parts(&self) -> Option<(&str, &str)> {
        let (family, size) = self.name.split_once('.')?;
        (!size.contains('.')).then_some((family, size))
    }

    /// Whole GPUs by manufacturer, as Karpenter sums `GpuInfo.Gpus[].Count`.
    pub fn gpu_count(&self, manufacturer: &str) -> u32 {
        self.gpus
            .iter()
            .filter(|g| g.manufacturer == manufacturer)
            .map(|g| g.count)
            .sum()
    }
}

fn ghz_to_mhz(ghz: f64) -> u64 {
    // Karpenter: int(math.Round(ghz * 1000)); clock speeds are small positive numbers, and the
    // cast saturates (negative or NaN → 0) should a record carry garbage.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mhz = (ghz * 1000.0).round() as u64;
    mhz
}

fn mib(memory: Option<&crate::record::MemoryInfo>) -> u64 {
    memory.map_or(0, |m| m.size_in_mib)
}

fn gpus(record: &InstanceTypeRecord) -> Vec<Gpu> {
    let Some(info) = &record.gpu_info else {
        return Vec::new();
    };
    info.gpus
        .iter()
        .map(|g| Gpu {
            name: g.name.clone(),
            manufacturer: g.manufacturer.clone(),
            count: g.count,
            memory_mib: mib(g.memory_info.as_ref()),
        })
        .collect()
}

fn neuron_devices(record: &InstanceTypeRecord) -> Vec<NeuronDevice> {
    let Some(info) = &record.neuron_info else {
        return Vec::new();
    };
    info.neuron_devices
        .iter()
        .map(|d| NeuronDevice {
            name: d.name.clone(),
            count: d.count,
            cores_per_device: d.core_info.count,
            memory_mib: mib(d.memory_info.as_ref()),
        })
        .collect()
}

fn inference_accelerators(record: &InstanceTypeRecord) -> Vec<Accelerator> {
    let Some(info) = &record.inference_accelerator_info else {
        return Vec::new();
    };
    info.accelerators
        .iter()
        .map(|a| Accelerator {
            name: a.name.clone(),
            manufacturer: a.manufacturer.clone(),
            count: a.count,
            memory_mib: mib(a.memory_info.as_ref()),
        })
        .collect()
}

fn capacity_types(usage_classes: &[String]) -> Vec<CapacityType> {
    let mut types = Vec::with_capacity(2);
    for class in usage_classes {
        let capacity_type = match class.as_str() {
            "on-demand" => CapacityType::OnDemand,
            "spot" => CapacityType::Spot,
            // capacity-block: Karpenter skips it without error.
            _ => continue,
        };
        if !types.contains(&capacity_type) {
            types.push(capacity_type);
        }
    }
    types
}

/// Baseline network bandwidth in Mbps, reconstructing Karpenter's generated
/// `InstanceTypeBandwidthMegabits` table from `DescribeInstanceTypes` data.
///
/// Karpenter scrapes the EC2 documentation's "baseline bandwidth" column, which is not in the API;
/// this follows the same rules on the API's fields:
/// - `Up to X Gigabit` (burstable): the default card's `BaselineBandwidthInGbps` (m5.large: 0.75 →
///   750), which is the documented baseline;
/// - `N Gigabit`: N × 1000 (vt1.3xlarge: 3.12 → 3120), and `Kx N Gigabit`: K × N × 1000
///   (p4d.24xlarge: 4x 100 → 400000), the instance total, not the per-card sum;
/// - descriptions without a number (`Moderate`, `High`, `Low to Moderate`: the previous-generation
///   types) have no label, as Karpenter's table skips them as "vague".
///
/// Where the documentation and the API disagree the API wins (i8ge.48xlarge: documented 180 Gbps,
/// API "300 Gigabit").
pub fn network_bandwidth_mbps(performance: &str, default_card_baseline_gbps: Option<f64>) -> Option<u64> {
    let performance = performance.trim();
    if !performance.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let gbps = if performance.starts_with("Up to") {
        default_card_baseline_gbps?
    } else {
        let amount = performance.strip_suffix("Gigabit")?.trim();
        match amount.split_once("x ") {
            Some((count, each)) => count.trim().parse::<f64>().ok()? * each.trim().parse::<f64>().ok()?,
            None => amount.parse::<f64>().ok()?,
        }
    };
    if !gbps.is_finite() || gbps < 0.0 {
        return None;
    }
    // Rounded, not truncated: 1.876 Gbps is 1875.9999… in binary and the table says 1876.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mbps = (gbps * 1000.0).round() as u64;
    Some(mbps)
}

/// A synthetic m5.large for unit tests: 2 vCPU, 8192 MiB, 3 ENIs × 10 IPv4 on one card.
#[cfg(test)]
pub(crate) fn m5_large() -> Hardware {
    Hardware {
        name: "m5.large".into(),
        architecture: Architecture::Amd64,
        supported_architectures: vec!["x86_64".into()],
        vcpus: 2,
        memory_mib: 8192,
        cpu_manufacturer: Some("Intel".into()),
        sustained_clock_speed_mhz: Some(3100),
        gpus: Vec::new(),
        neuron_devices: Vec::new(),
        inference_accelerators: Vec::new(),
        max_network_interfaces: 3,
        default_card_max_interfaces: 3,
        ipv4_per_interface: 10,
        network_cards: 1,
        efa_max_interfaces: 0,
        network_performance: "Up to 10 Gigabit".into(),
        network_bandwidth_mbps: Some(750),
        ebs_bandwidth_mbps: Some(4750),
        instance_storage: None,
        hypervisor: Some("nitro".into()),
        bare_metal: false,
        burstable: false,
        encryption_in_transit: false,
        capacity_types: vec![crate::CapacityType::OnDemand, crate::CapacityType::Spot],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{NetworkCard, NetworkInfo, ProcessorInfo, VCpuInfo};

    fn record() -> InstanceTypeRecord {
        InstanceTypeRecord {
            instance_type: "x9.large".to_owned(),
            v_cpu_info: VCpuInfo {
                default_v_cpus: 2,
                ..VCpuInfo::default()
            },
            memory_info: crate::record::MemoryInfo { size_in_mib: 8192 },
            processor_info: ProcessorInfo {
                supported_architectures: vec!["i386".to_owned(), "x86_64".to_owned()],
                ..ProcessorInfo::default()
            },
            network_info: NetworkInfo {
                ipv4_addresses_per_interface: 10,
                maximum_network_interfaces: 3,
                network_cards: vec![NetworkCard {
                    maximum_network_interfaces: 3,
                    ..NetworkCard::default()
                }],
                ..NetworkInfo::default()
            },
            supported_usage_classes: vec![
                "capacity-block".into(),
                "on-demand".into(),
                "spot".into(),
                "spot".into(),
            ],
            supported_virtualization_types: vec!["hvm".into()],
            ..InstanceTypeRecord::default()
        }
    }

    #[test]
    fn bandwidth_follows_karpenters_table_rules() {
        assert_eq!(network_bandwidth_mbps("Up to 10 Gigabit", Some(0.75)), Some(750));
        assert_eq!(
            network_bandwidth_mbps("Up to 12.5 Gigabit", Some(1.876)),
            Some(1876)
        );
        assert_eq!(network_bandwidth_mbps("Up to 10 Gigabit", None), None);
        assert_eq!(network_bandwidth_mbps("25 Gigabit", Some(25.0)), Some(25_000));
        assert_eq!(network_bandwidth_mbps("3.12 Gigabit", Some(3.125)), Some(3120));
        assert_eq!(
            network_bandwidth_mbps("4x 100 Gigabit", Some(100.0)),
            Some(400_000)
        );
        assert_eq!(
            network_bandwidth_mbps("16x 200 Gigabit", Some(200.0)),
            Some(3_200_000)
        );
        assert_eq!(network_bandwidth_mbps("Moderate", Some(0.45)), None);
        assert_eq!(network_bandwidth_mbps("Low to Moderate", Some(0.1)), None);
    }

    #[test]
    fn first_known_architecture_wins_and_capacity_block_is_dropped() {
        let hardware = Hardware::from_record(&record()).unwrap();
        assert_eq!(hardware.architecture, Architecture::Amd64);
        assert_eq!(
            hardware.capacity_types,
            vec![CapacityType::OnDemand, CapacityType::Spot]
        );
        assert_eq!((hardware.family(), hardware.size()), (Some("x9"), Some("large")));
        assert!(is_discoverable(&record()));
    }

    #[test]
    fn mac_and_paravirtual_types_are_not_discovered() {
        let mut mac = record();
        mac.processor_info.supported_architectures = vec!["x86_64_mac".into()];
        assert!(!is_discoverable(&mac));
        let mut paravirtual = record();
        paravirtual.supported_virtualization_types = vec!["paravirtual".into()];
        assert!(!is_discoverable(&paravirtual));
    }

    #[test]
    fn unusable_records_name_the_field() {
        let mut no_card = record();
        no_card.network_info.default_network_card_index = 1;
        let error = Hardware::from_record(&no_card).unwrap_err();
        assert_eq!(error.field, "NetworkInfo.DefaultNetworkCardIndex");
        assert!(error.reason.contains("1 cards listed"), "{}", error.reason);

        let mut no_cpu = record();
        no_cpu.v_cpu_info.default_v_cpus = 0;
        assert_eq!(
            Hardware::from_record(&no_cpu).unwrap_err().field,
            "VCpuInfo.DefaultVCpus"
        );

        let mut no_ips = record();
        no_ips.network_info.ipv4_addresses_per_interface = 0;
        assert_eq!(
            Hardware::from_record(&no_ips).unwrap_err().field,
            "NetworkInfo.Ipv4AddressesPerInterface"
        );

        let mut mac = record();
        mac.processor_info.supported_architectures = vec!["arm64_mac".into()];
        assert_eq!(
            Hardware::from_record(&mac).unwrap_err().field,
            "ProcessorInfo.SupportedArchitectures"
        );
    }

    #[test]
    fn names_with_two_dots_have_no_family_or_size() {
        let mut odd = record();
        odd.instance_type = "a.b.c".into();
        let hardware = Hardware::from_record(&odd).unwrap();
        assert_eq!((hardware.family(), hardware.size()), (None, None));
    }
}
