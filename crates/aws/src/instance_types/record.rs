//! `DescribeInstanceTypes` answers as the catalogue's [`InstanceTypeRecord`]s, so instance types
//! described live go through exactly the capacity, overhead and label formulas the shipped data
//! does. A field the formulas need that EC2 left out, or a negative count, is an error naming
//! the type and field.

use aws_sdk_ec2::types::InstanceTypeInfo;
use nodewright_catalog::record::{
    DiskInfo, EbsInfo, EbsOptimizedInfo, EfaInfo, GpuDeviceInfo, GpuInfo, InferenceAcceleratorInfo,
    InferenceDeviceInfo, InstanceStorageInfo, InstanceTypeRecord, MemoryInfo, NetworkCard, NetworkInfo,
    NeuronCoreInfo, NeuronDeviceInfo, NeuronInfo, ProcessorInfo, VCpuInfo,
};

use crate::error::AwsError;

/// Reads fields of one described type, naming it in errors.
struct Reader<'a> {
    instance_type: &'a str,
}

impl Reader<'_> {
    fn invalid(&self, field: &str, reason: impl Into<String>) -> AwsError {
        AwsError::InvalidValue {
            source_name: format!("DescribeInstanceTypes {}", self.instance_type),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    fn required<T>(&self, field: &str, value: Option<T>) -> Result<T, AwsError> {
        value.ok_or_else(|| self.invalid(field, "missing"))
    }

    fn count(&self, field: &str, value: Option<i32>) -> Result<u32, AwsError> {
        let value = self.required(field, value)?;
        u32::try_from(value).map_err(|_| self.invalid(field, format!("{value} is negative")))
    }

    fn optional_count(&self, field: &str, value: Option<i32>) -> Result<Option<u32>, AwsError> {
        value.map(|v| self.count(field, Some(v))).transpose()
    }

    fn mib(&self, field: &str, value: Option<i64>) -> Result<u64, AwsError> {
        let value = self.required(field, value)?;
        u64::try_from(value).map_err(|_| self.invalid(field, format!("{value} is negative")))
    }
}

/// One described type as a catalogue record.
pub fn record_from_info(info: &InstanceTypeInfo) -> Result<InstanceTypeRecord, AwsError> {
    let name = info
        .instance_type()
        .map(|t| t.as_str().to_owned())
        .ok_or(AwsError::MissingField {
            operation: "DescribeInstanceTypes",
            field: "InstanceType",
        })?;
    let reader = Reader { instance_type: &name };
    let v_cpu = reader.required("VCpuInfo", info.v_cpu_info())?;
    let memory = reader.required("MemoryInfo", info.memory_info())?;
    let processor = reader.required("ProcessorInfo", info.processor_info())?;
    let network = reader.required("NetworkInfo", info.network_info())?;
    Ok(InstanceTypeRecord {
        bare_metal: info.bare_metal().unwrap_or(false),
        burstable_performance_supported: info.burstable_performance_supported().unwrap_or(false),
        hypervisor: info.hypervisor().map(|h| h.as_str().to_owned()),
        v_cpu_info: VCpuInfo {
            default_v_cpus: reader.count("VCpuInfo.DefaultVCpus", v_cpu.default_v_cpus())?,
            default_cores: reader.optional_count("VCpuInfo.DefaultCores", v_cpu.default_cores())?,
            default_threads_per_core: reader
                .optional_count("VCpuInfo.DefaultThreadsPerCore", v_cpu.default_threads_per_core())?,
        },
        memory_info: MemoryInfo {
            size_in_mib: reader.mib("MemoryInfo.SizeInMiB", memory.size_in_mib())?,
        },
        processor_info: ProcessorInfo {
            supported_architectures: processor
                .supported_architectures()
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
            manufacturer: processor.manufacturer().map(str::to_owned),
            sustained_clock_speed_in_ghz: processor.sustained_clock_speed_in_ghz(),
        },
        network_info: network_info(&reader, network)?,
        gpu_info: info.gpu_info().map(|g| gpu_info(&reader, g)).transpose()?,
        neuron_info: info.neuron_info().map(|n| neuron_info(&reader, n)).transpose()?,
        inference_accelerator_info: info
            .inference_accelerator_info()
            .map(|a| inference_info(&reader, a))
            .transpose()?,
        instance_storage_info: info
            .instance_storage_info()
            .map(|s| storage_info(&reader, s))
            .transpose()?,
        ebs_info: info.ebs_info().map(|e| ebs_info(&reader, e)).transpose()?,
        supported_usage_classes: info
            .supported_usage_classes()
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        supported_virtualization_types: info
            .supported_virtualization_types()
            .iter()
            .map(|v| v.as_str().to_owned())
            .collect(),
        instance_type: name,
    })
}

fn network_info(
    reader: &Reader<'_>,
    network: &aws_sdk_ec2::types::NetworkInfo,
) -> Result<NetworkInfo, AwsError> {
    let cards = network
        .network_cards()
        .iter()
        .map(|card| {
            Ok(NetworkCard {
                network_card_index: reader
                    .optional_count(
                        "NetworkInfo.NetworkCards.NetworkCardIndex",
                        card.network_card_index(),
                    )?
                    .unwrap_or(0),
                maximum_network_interfaces: reader.count(
                    "NetworkInfo.NetworkCards.MaximumNetworkInterfaces",
                    card.maximum_network_interfaces(),
                )?,
                baseline_bandwidth_in_gbps: card.baseline_bandwidth_in_gbps(),
                peak_bandwidth_in_gbps: card.peak_bandwidth_in_gbps(),
            })
        })
        .collect::<Result<Vec<_>, AwsError>>()?;
    Ok(NetworkInfo {
        default_network_card_index: reader
            .optional_count(
                "NetworkInfo.DefaultNetworkCardIndex",
                network.default_network_card_index(),
            )?
            .unwrap_or(0),
        ipv4_addresses_per_interface: reader.count(
            "NetworkInfo.Ipv4AddressesPerInterface",
            network.ipv4_addresses_per_interface(),
        )?,
        maximum_network_interfaces: reader.count(
            "NetworkInfo.MaximumNetworkInterfaces",
            network.maximum_network_interfaces(),
        )?,
        network_cards: cards,
        network_performance: network.network_performance().unwrap_or_default().to_owned(),
        encryption_in_transit_supported: network.encryption_in_transit_supported().unwrap_or(false),
        efa_supported: network.efa_supported().unwrap_or(false),
        efa_info: network
            .efa_info()
            .map(|efa| {
                Ok::<_, AwsError>(EfaInfo {
                    maximum_efa_interfaces: reader.count(
                        "NetworkInfo.EfaInfo.MaximumEfaInterfaces",
                        efa.maximum_efa_interfaces(),
                    )?,
                })
            })
            .transpose()?,
    })
}

fn device_mib(reader: &Reader<'_>, field: &str, value: Option<i32>) -> Result<Option<MemoryInfo>, AwsError> {
    Ok(reader.optional_count(field, value)?.map(|mib| MemoryInfo {
        size_in_mib: u64::from(mib),
    }))
}

fn gpu_info(reader: &Reader<'_>, gpus: &aws_sdk_ec2::types::GpuInfo) -> Result<GpuInfo, AwsError> {
    let gpus = gpus
        .gpus()
        .iter()
        .map(|gpu| {
            Ok(GpuDeviceInfo {
                name: reader.required("GpuInfo.Gpus.Name", gpu.name())?.to_owned(),
                manufacturer: reader
                    .required("GpuInfo.Gpus.Manufacturer", gpu.manufacturer())?
                    .to_owned(),
                count: reader.count("GpuInfo.Gpus.Count", gpu.count())?,
                memory_info: device_mib(
                    reader,
                    "GpuInfo.Gpus.MemoryInfo.SizeInMiB",
                    gpu.memory_info()
                        .and_then(aws_sdk_ec2::types::GpuDeviceMemoryInfo::size_in_mib),
                )?,
            })
        })
        .collect::<Result<_, AwsError>>()?;
    Ok(GpuInfo { gpus })
}

fn neuron_info(reader: &Reader<'_>, neuron: &aws_sdk_ec2::types::NeuronInfo) -> Result<NeuronInfo, AwsError> {
    let devices = neuron
        .neuron_devices()
        .iter()
        .map(|device| {
            Ok(NeuronDeviceInfo {
                name: reader
                    .required("NeuronInfo.NeuronDevices.Name", device.name())?
                    .to_owned(),
                count: reader.count("NeuronInfo.NeuronDevices.Count", device.count())?,
                core_info: NeuronCoreInfo {
                    count: reader.count(
                        "NeuronInfo.NeuronDevices.CoreInfo.Count",
                        device
                            .core_info()
                            .and_then(aws_sdk_ec2::types::NeuronDeviceCoreInfo::count),
                    )?,
                },
                memory_info: device_mib(
                    reader,
                    "NeuronInfo.NeuronDevices.MemoryInfo.SizeInMiB",
                    device
                        .memory_info()
                        .and_then(aws_sdk_ec2::types::NeuronDeviceMemoryInfo::size_in_mib),
                )?,
            })
        })
        .collect::<Result<_, AwsError>>()?;
    Ok(NeuronInfo {
        neuron_devices: devices,
    })
}

fn inference_info(
    reader: &Reader<'_>,
    accelerators: &aws_sdk_ec2::types::InferenceAcceleratorInfo,
) -> Result<InferenceAcceleratorInfo, AwsError> {
    let accelerators = accelerators
        .accelerators()
        .iter()
        .map(|device| {
            Ok(InferenceDeviceInfo {
                name: reader
                    .required("InferenceAcceleratorInfo.Accelerators.Name", device.name())?
                    .to_owned(),
                manufacturer: reader
                    .required(
                        "InferenceAcceleratorInfo.Accelerators.Manufacturer",
                        device.manufacturer(),
                    )?
                    .to_owned(),
                count: reader.count("InferenceAcceleratorInfo.Accelerators.Count", device.count())?,
                memory_info: device_mib(
                    reader,
                    "InferenceAcceleratorInfo.Accelerators.MemoryInfo.SizeInMiB",
                    device
                        .memory_info()
                        .and_then(aws_sdk_ec2::types::InferenceDeviceMemoryInfo::size_in_mib),
                )?,
            })
        })
        .collect::<Result<_, AwsError>>()?;
    Ok(InferenceAcceleratorInfo { accelerators })
}

fn storage_info(
    reader: &Reader<'_>,
    storage: &aws_sdk_ec2::types::InstanceStorageInfo,
) -> Result<InstanceStorageInfo, AwsError> {
    let disks = storage
        .disks()
        .iter()
        .map(|disk| {
            Ok(DiskInfo {
                count: reader.count("InstanceStorageInfo.Disks.Count", disk.count())?,
                size_in_gb: reader.mib("InstanceStorageInfo.Disks.SizeInGB", disk.size_in_gb())?,
                disk_type: disk.r#type().map(|t| t.as_str().to_owned()),
            })
        })
        .collect::<Result<_, AwsError>>()?;
    Ok(InstanceStorageInfo {
        total_size_in_gb: storage
            .total_size_in_gb()
            .map(|gb| reader.mib("InstanceStorageInfo.TotalSizeInGB", Some(gb)))
            .transpose()?,
        nvme_support: storage.nvme_support().map(|n| n.as_str().to_owned()),
        disks,
    })
}

fn ebs_info(reader: &Reader<'_>, ebs: &aws_sdk_ec2::types::EbsInfo) -> Result<EbsInfo, AwsError> {
    Ok(EbsInfo {
        ebs_optimized_support: ebs.ebs_optimized_support().map(|s| s.as_str().to_owned()),
        ebs_optimized_info: ebs
            .ebs_optimized_info()
            .map(|info| {
                Ok::<_, AwsError>(EbsOptimizedInfo {
                    maximum_bandwidth_in_mbps: reader.count(
                        "EbsInfo.EbsOptimizedInfo.MaximumBandwidthInMbps",
                        info.maximum_bandwidth_in_mbps(),
                    )?,
                })
            })
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{
        ArchitectureType, InstanceType, MemoryInfo as Ec2Memory, NetworkCardInfo, NetworkInfo as Ec2Network,
        ProcessorInfo as Ec2Processor, UsageClassType, VCpuInfo as Ec2VCpu, VirtualizationType,
    };
    use nodewright_catalog::{Catalog, NodeSettings, RegionData};

    use super::*;

    fn m5_large() -> InstanceTypeInfo {
        InstanceTypeInfo::builder()
            .instance_type(InstanceType::M5Large)
            .v_cpu_info(Ec2VCpu::builder().default_v_cpus(2).default_cores(1).build())
            .memory_info(Ec2Memory::builder().size_in_mib(8192).build())
            .processor_info(
                Ec2Processor::builder()
                    .supported_architectures(ArchitectureType::X8664)
                    .manufacturer("Intel")
                    .sustained_clock_speed_in_ghz(3.1)
                    .build(),
            )
            .network_info(
                Ec2Network::builder()
                    .ipv4_addresses_per_interface(10)
                    .maximum_network_interfaces(3)
                    .network_cards(
                        NetworkCardInfo::builder()
                            .network_card_index(0)
                            .maximum_network_interfaces(3)
                            .baseline_bandwidth_in_gbps(0.75)
                            .build(),
                    )
                    .network_performance("Up to 10 Gigabit")
                    .build(),
            )
            .supported_usage_classes(UsageClassType::OnDemand)
            .supported_usage_classes(UsageClassType::Spot)
            .supported_virtualization_types(VirtualizationType::Hvm)
            .hypervisor(aws_sdk_ec2::types::InstanceTypeHypervisor::Nitro)
            .build()
    }

    /// A described m5.large gets the allocatable the shipped data gives m5.large: the same record
    /// goes through the same formulas.
    #[test]
    fn described_types_use_the_catalogue_formulas() {
        let record = record_from_info(&m5_large()).unwrap();
        assert_eq!(record.instance_type, "m5.large");
        assert_eq!(record.network_info.ipv4_addresses_per_interface, 10);
        let data = RegionData {
            region: "us-east-1".into(),
            records: vec![record],
            zones_by_type: [("m5.large".to_owned(), vec!["us-east-1a".to_owned()])].into(),
            on_demand_prices: [("m5.large".to_owned(), nodewright_catalog::Price(96_000_000))].into(),
            records_source: "DescribeInstanceTypes".into(),
        };
        let described = Catalog::from_records(&data, &NodeSettings::default()).unwrap();
        let shipped = Catalog::us_east_1(&NodeSettings::default()).unwrap();
        let (described, shipped) = (
            described.get("m5.large").unwrap(),
            shipped.get("m5.large").unwrap(),
        );
        assert_eq!(described.allocatable(), shipped.allocatable());
        assert_eq!(described.allocatable().cpu_millis, 1930);
        assert_eq!(described.capacity.pods, 29);
    }

    #[test]
    fn missing_and_negative_fields_name_the_type_and_field() {
        let info = InstanceTypeInfo::builder()
            .instance_type(InstanceType::M5Large)
            .build();
        let error = record_from_info(&info).unwrap_err();
        assert_eq!(
            error.to_string(),
            "DescribeInstanceTypes m5.large: VCpuInfo: missing"
        );
        let mut info = m5_large();
        info.v_cpu_info = Some(Ec2VCpu::builder().default_v_cpus(-2).build());
        let error = record_from_info(&info).unwrap_err();
        assert_eq!(
            error.to_string(),
            "DescribeInstanceTypes m5.large: VCpuInfo.DefaultVCpus: -2 is negative"
        );
    }
}
