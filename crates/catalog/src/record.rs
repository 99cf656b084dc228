//! `DescribeInstanceTypes`-shaped records: the subset of EC2's `InstanceTypeInfo` the catalogue reads,
//! with EC2's PascalCase field names, so the embedded data file and (later) the AWS provider's API
//! responses deserialize into the same structs. Every other field of the API response is skipped.
//!
//! Optional fields are `Option` or `#[serde(default)]` exactly where EC2 omits them for some types
//! (no GPUs, no instance store, no hypervisor on bare metal, ...); a field the formulas need on every
//! type (vCPUs, memory, network cards) is required, so a record without it fails to parse with its
//! JSON path in the error.

use serde::Deserialize;

/// One instance type as `DescribeInstanceTypes` returns it (only the fields the catalogue uses).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceTypeRecord {
    /// `m5.large`.
    pub instance_type: String,
    #[serde(default)]
    pub bare_metal: bool,
    #[serde(default)]
    pub burstable_performance_supported: bool,
    /// `nitro` or `xen`; absent on bare metal.
    #[serde(default)]
    pub hypervisor: Option<String>,
    pub v_cpu_info: VCpuInfo,
    pub memory_info: MemoryInfo,
    pub processor_info: ProcessorInfo,
    pub network_info: NetworkInfo,
    #[serde(default)]
    pub gpu_info: Option<GpuInfo>,
    #[serde(default)]
    pub neuron_info: Option<NeuronInfo>,
    #[serde(default)]
    pub inference_accelerator_info: Option<InferenceAcceleratorInfo>,
    #[serde(default)]
    pub instance_storage_info: Option<InstanceStorageInfo>,
    #[serde(default)]
    pub ebs_info: Option<EbsInfo>,
    /// `on-demand`, `spot`, `capacity-block`.
    #[serde(default)]
    pub supported_usage_classes: Vec<String>,
    /// `hvm`, `paravirtual`.
    #[serde(default)]
    pub supported_virtualization_types: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VCpuInfo {
    pub default_v_cpus: u32,
    #[serde(default)]
    pub default_cores: Option<u32>,
    #[serde(default)]
    pub default_threads_per_core: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MemoryInfo {
    #[serde(rename = "SizeInMiB")]
    pub size_in_mib: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorInfo {
    /// `x86_64`, `arm64`, `i386`, `x86_64_mac`, `arm64_mac`.
    pub supported_architectures: Vec<String>,
    /// `Intel`, `AMD`, `AWS`, `Apple`.
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub sustained_clock_speed_in_ghz: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInfo {
    /// Index into `network_cards` of the card the primary ENI (and the VPC CNI) uses.
    #[serde(default)]
    pub default_network_card_index: u32,
    pub ipv4_addresses_per_interface: u32,
    /// ENIs over all network cards.
    pub maximum_network_interfaces: u32,
    pub network_cards: Vec<NetworkCard>,
    /// `Up to 10 Gigabit`, `25 Gigabit`, `4x 100 Gigabit`, `Moderate`.
    #[serde(default)]
    pub network_performance: String,
    #[serde(default)]
    pub encryption_in_transit_supported: bool,
    #[serde(default)]
    pub efa_supported: bool,
    #[serde(default)]
    pub efa_info: Option<EfaInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCard {
    #[serde(default)]
    pub network_card_index: u32,
    pub maximum_network_interfaces: u32,
    #[serde(default)]
    pub baseline_bandwidth_in_gbps: Option<f64>,
    #[serde(default)]
    pub peak_bandwidth_in_gbps: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EfaInfo {
    pub maximum_efa_interfaces: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GpuInfo {
    #[serde(default)]
    pub gpus: Vec<GpuDeviceInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GpuDeviceInfo {
    pub name: String,
    /// `NVIDIA`, `AMD`, `Habana`, ...
    pub manufacturer: String,
    /// Whole GPUs; 0 for the fractional GPUs of `g6f`/`gr6f`.
    pub count: u32,
    #[serde(default)]
    pub memory_info: Option<MemoryInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NeuronInfo {
    #[serde(default)]
    pub neuron_devices: Vec<NeuronDeviceInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NeuronDeviceInfo {
    pub name: String,
    pub count: u32,
    pub core_info: NeuronCoreInfo,
    #[serde(default)]
    pub memory_info: Option<MemoryInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NeuronCoreInfo {
    pub count: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InferenceAcceleratorInfo {
    #[serde(default)]
    pub accelerators: Vec<InferenceDeviceInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InferenceDeviceInfo {
    pub name: String,
    pub manufacturer: String,
    pub count: u32,
    #[serde(default)]
    pub memory_info: Option<MemoryInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceStorageInfo {
    #[serde(rename = "TotalSizeInGB", default)]
    pub total_size_in_gb: Option<u64>,
    /// `required`, `supported` or `unsupported`.
    #[serde(default)]
    pub nvme_support: Option<String>,
    #[serde(default)]
    pub disks: Vec<DiskInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskInfo {
    pub count: u32,
    #[serde(rename = "SizeInGB")]
    pub size_in_gb: u64,
    /// `ssd` or `hdd`.
    #[serde(rename = "Type", default)]
    pub disk_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EbsInfo {
    /// `default`, `supported` or `unsupported`.
    #[serde(default)]
    pub ebs_optimized_support: Option<String>,
    #[serde(default)]
    pub ebs_optimized_info: Option<EbsOptimizedInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EbsOptimizedInfo {
    pub maximum_bandwidth_in_mbps: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_case_names_match_ec2() {
        let json = r#"{
            "InstanceType": "x1.large", "Hypervisor": "nitro", "ExtraField": {"ignored": true},
            "VCpuInfo": {"DefaultVCpus": 2},
            "MemoryInfo": {"SizeInMiB": 8192},
            "ProcessorInfo": {"SupportedArchitectures": ["arm64"], "SustainedClockSpeedInGhz": 2.5},
            "NetworkInfo": {"Ipv4AddressesPerInterface": 10, "MaximumNetworkInterfaces": 3,
                            "NetworkCards": [{"MaximumNetworkInterfaces": 3, "BaselineBandwidthInGbps": 0.75}],
                            "EfaInfo": {"MaximumEfaInterfaces": 1}},
            "InstanceStorageInfo": {"TotalSizeInGB": 75, "NvmeSupport": "required",
                                    "Disks": [{"Count": 1, "SizeInGB": 75, "Type": "ssd"}]},
            "EbsInfo": {"EbsOptimizedSupport": "default", "EbsOptimizedInfo": {"MaximumBandwidthInMbps": 4750}}
        }"#;
        let record: InstanceTypeRecord = serde_json::from_str(json).unwrap();
        assert_eq!(record.v_cpu_info.default_v_cpus, 2);
        assert_eq!(record.memory_info.size_in_mib, 8192);
        assert_eq!(record.processor_info.sustained_clock_speed_in_ghz, Some(2.5));
        assert_eq!(record.network_info.ipv4_addresses_per_interface, 10);
        assert_eq!(
            record.network_info.network_cards[0].baseline_bandwidth_in_gbps,
            Some(0.75)
        );
        assert_eq!(
            record.network_info.efa_info,
            Some(EfaInfo {
                maximum_efa_interfaces: 1
            })
        );
        let storage = record.instance_storage_info.unwrap();
        assert_eq!(storage.total_size_in_gb, Some(75));
        assert_eq!(storage.disks[0].disk_type.as_deref(), Some("ssd"));
        assert_eq!(
            record
                .ebs_info
                .unwrap()
                .ebs_optimized_info
                .unwrap()
                .maximum_bandwidth_in_mbps,
            4750
        );
        assert!(record.gpu_info.is_none());
    }
}
