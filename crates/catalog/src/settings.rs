//! The node settings that change capacity and allocatable: the EC2NodeClass's AMI family, block
//! devices and instance-store policy, its `kubelet` block, and the controller's
//! `VM_MEMORY_OVERHEAD_PERCENT` and `RESERVED_ENIS` options.
//!
//! Karpenter computes capacity per (instance type, EC2NodeClass); the catalogue does the same by
//! building one [`crate::Catalog`] per `NodeSettings`.

pub use nodewright_api::ec2nodeclass::AmiFamily;

/// One gibibyte.
pub const GI: i64 = 1 << 30;
/// One mebibyte.
pub const MI: i64 = 1 << 20;

/// User overrides for `kubeReserved` or `systemReserved`: each set key replaces the computed value
/// of that resource and leaves the others alone (Karpenter's `lo.Assign`). `pid` is not a
/// scheduling resource and is not modelled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ReservedResources {
    pub cpu_millis: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub ephemeral_storage_bytes: Option<i64>,
}

/// An `evictionHard` threshold (`memory.available`, `nodefs.available`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvictionThreshold {
    /// `"10%"`: that share of the resource's capacity, rounded up; `100%` disables the threshold
    /// (reserves 0), as the kubelet reads it.
    Percent(f64),
    /// `"500Mi"`: an absolute amount in bytes.
    Bytes(i64),
}

impl EvictionThreshold {
    /// The amount reserved on a node whose capacity of the resource is `capacity_bytes`.
    pub fn reserved_bytes(self, capacity_bytes: i64) -> i64 {
        match self {
            Self::Bytes(bytes) => bytes,
            Self::Percent(percent) => {
                // Exactly 100 (Karpenter's `p == 100`): the kubelet reads it as "disabled".
                #[allow(clippy::float_cmp)]
                let percent = if percent == 100.0 { 0.0 } else { percent };
                // Karpenter: math.Ceil(capacity.AsApproximateFloat64() / 100 * p).
                #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
                let reserved = (capacity_bytes as f64 / 100.0 * percent).ceil() as i64;
                reserved
            }
        }
    }
}

/// Everything outside the instance type that changes its capacity or overhead. `Default` is
/// Karpenter's default: AL2023, 7.5% VM memory overhead, no reserved ENIs, no kubelet overrides,
/// the family's default root volume, no RAID0.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    pub ami_family: AmiFamily,
    /// Share of memory the hypervisor and kernel take before the kubelet sees it
    /// (`VM_MEMORY_OVERHEAD_PERCENT`, 0.075).
    pub vm_memory_overhead_percent: f64,
    /// ENIs kept away from the VPC CNI (`RESERVED_ENIS`), lowering ENI-limited pod density.
    pub reserved_enis: u32,
    /// `kubelet.maxPods`: replaces the computed pod count.
    pub max_pods: Option<u32>,
    /// `kubelet.podsPerCore`: caps pods at this × vCPUs (ignored on Bottlerocket, as by Karpenter).
    pub pods_per_core: Option<u32>,
    pub kube_reserved: ReservedResources,
    pub system_reserved: ReservedResources,
    /// `kubelet.evictionHard["memory.available"]`; default 100Mi.
    pub eviction_hard_memory: Option<EvictionThreshold>,
    /// `kubelet.evictionHard["nodefs.available"]`; default 10%.
    pub eviction_hard_nodefs: Option<EvictionThreshold>,
    /// Size of the root (ephemeral) volume from the block device mappings; `None` takes the AMI
    /// family's default: 20Gi, or 50Gi for Windows.
    pub root_volume_bytes: Option<i64>,
    /// `instanceStorePolicy: RAID0`: ephemeral storage is the instance store's total size on types
    /// that have one.
    pub instance_store_raid0: bool,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            ami_family: AmiFamily::AL2023,
            vm_memory_overhead_percent: 0.075,
            reserved_enis: 0,
            max_pods: None,
            pods_per_core: None,
            kube_reserved: ReservedResources::default(),
            system_reserved: ReservedResources::default(),
            eviction_hard_memory: None,
            eviction_hard_nodefs: None,
            root_volume_bytes: None,
            instance_store_raid0: false,
        }
    }
}

impl NodeSettings {
    /// Settings for `family` with every other value at its default.
    pub fn for_family(ami_family: AmiFamily) -> Self {
        Self {
            ami_family,
            ..Self::default()
        }
    }

    /// The settings an EC2NodeClass gives its nodes, as Karpenter's AWS provider reads them:
    ///
    /// - the AMI family from the alias or `spec.amiFamily` (neither: `Custom`, Karpenter's fallback);
    /// - `kubelet.maxPods` and `kubelet.podsPerCore` when they are non-negative integers (a CEL
    ///   `maxPods` string is left unset, so the computed count applies);
    /// - `kubelet.kubeReserved` / `systemReserved` `cpu`, `memory` and `ephemeral-storage` when they
    ///   are quantities (CEL expressions and `pid` are left unset);
    /// - `kubelet.evictionHard` `memory.available` and `nodefs.available`, as a percentage or a
    ///   quantity;
    /// - the root volume size: the `rootVolume: true` mapping's `volumeSize`; for `Custom` the last
    ///   mapping's; otherwise the mapping on the family's ephemeral device (`/dev/xvda` on
    ///   AL2/AL2023, `/dev/xvdb` on Bottlerocket, `/dev/sda1` on Windows); else the family default;
    /// - `instanceStorePolicy: RAID0`.
    ///
    /// Controller options (`vm_memory_overhead_percent`, `reserved_enis`) keep their defaults. Values
    /// the class's `validate()` would reject are ignored rather than guessed at.
    pub fn from_node_class(class: &nodewright_api::EC2NodeClass) -> NodeSettings {
        use nodewright_api::{ec2nodeclass::InstanceStorePolicy, quantity};
        use serde_json::Value;

        let ami_family = class.ami_family().unwrap_or(AmiFamily::Custom);
        let kubelet = class.spec.kubelet.as_ref();
        let field = |name: &str| kubelet.and_then(|k| k.get(name));
        let count = |name: &str| {
            field(name)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        let amount = |value: &Value, milli: bool| -> Option<i64> {
            let parsed = match value {
                Value::String(text) if milli => quantity::parse_milli(text).ok()?,
                Value::String(text) => quantity::parse_value(text).ok()?,
                Value::Number(n) => i128::from(n.as_i64()?) * if milli { 1000 } else { 1 },
                _ => return None,
            };
            i64::try_from(parsed).ok().filter(|v| *v >= 0)
        };
        let reserved = |name: &str| {
            let map = field(name).and_then(Value::as_object);
            let get = |resource: &str, milli: bool| {
                map.and_then(|m| m.get(resource)).and_then(|v| amount(v, milli))
            };
            ReservedResources {
                cpu_millis: get("cpu", true),
                memory_bytes: get("memory", false),
                ephemeral_storage_bytes: get("ephemeral-storage", false),
            }
        };
        let eviction = |signal: &str| {
            let text = field("evictionHard")?.get(signal)?.as_str()?;
            match text.strip_suffix('%') {
                // No trimming: validate() rejects "10 %", so the catalogue must not honour it.
                Some(percent) => percent
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .map(EvictionThreshold::Percent),
                None => amount(&Value::String(text.to_owned()), false).map(EvictionThreshold::Bytes),
            }
        };

        let mappings = &class.spec.block_device_mappings;
        let size_of = |m: &nodewright_api::ec2nodeclass::BlockDeviceMapping| {
            let size = m.ebs.as_ref()?.volume_size.as_ref()?;
            i64::try_from(quantity::parse_value(&size.0).ok()?).ok()
        };
        let ephemeral_device = match ami_family {
            AmiFamily::AL2 | AmiFamily::AL2023 => Some("/dev/xvda"),
            AmiFamily::Bottlerocket => Some("/dev/xvdb"),
            AmiFamily::Windows2019 | AmiFamily::Windows2022 | AmiFamily::Windows2025 => Some("/dev/sda1"),
            AmiFamily::Custom => None,
        };
        let root_volume_bytes = mappings
            .iter()
            .find(|m| m.root_volume)
            .and_then(size_of)
            .or_else(|| match ephemeral_device {
                None => mappings.last().and_then(size_of),
                Some(device) => mappings
                    .iter()
                    .find(|m| m.device_name.as_deref() == Some(device))
                    .and_then(size_of),
            });

        NodeSettings {
            ami_family,
            max_pods: count("maxPods"),
            pods_per_core: count("podsPerCore"),
            kube_reserved: reserved("kubeReserved"),
            system_reserved: reserved("systemReserved"),
            eviction_hard_memory: eviction("memory.available"),
            eviction_hard_nodefs: eviction("nodefs.available"),
            root_volume_bytes,
            instance_store_raid0: class.spec.instance_store_policy == Some(InstanceStorePolicy::RAID0),
            ..NodeSettings::default()
        }
    }

    pub(crate) fn family(&self) -> FamilyFlags {
        FamilyFlags::of(self.ami_family)
    }
}

/// The AMI-family feature flags the formulas branch on (`pkg/providers/amifamily`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FamilyFlags {
    /// Pods default to the ENI limit (AL2, AL2023, Bottlerocket, Custom); else 110.
    pub(crate) eni_limited_pod_density: bool,
    /// `podsPerCore` is honoured (all but Bottlerocket).
    pub(crate) pods_per_core: bool,
    /// kube-reserved memory counts ENI-limited pods with no reserved ENIs (AL2, AL2023, Custom)
    /// rather than the node's actual pod count (Bottlerocket, Windows).
    pub(crate) eni_limited_memory_overhead: bool,
    /// `node.kubernetes.io/windows-build` for Windows families.
    pub(crate) windows_build: Option<&'static str>,
    /// The family's ephemeral volume when no block device mapping says otherwise.
    pub(crate) default_root_volume_bytes: i64,
}

impl FamilyFlags {
    pub(crate) fn of(family: AmiFamily) -> Self {
        let linux = Self {
            eni_limited_pod_density: true,
            pods_per_core: true,
            eni_limited_memory_overhead: true,
            windows_build: None,
            default_root_volume_bytes: 20 * GI,
        };
        let windows = |build| Self {
            eni_limited_pod_density: false,
            pods_per_core: true,
            eni_limited_memory_overhead: false,
            windows_build: Some(build),
            default_root_volume_bytes: 50 * GI,
        };
        match family {
            AmiFamily::AL2 | AmiFamily::AL2023 | AmiFamily::Custom => linux,
            AmiFamily::Bottlerocket => Self {
                pods_per_core: false,
                eni_limited_memory_overhead: false,
                ..linux
            },
            AmiFamily::Windows2019 => windows("10.0.17763"),
            AmiFamily::Windows2022 => windows("10.0.20348"),
            AmiFamily::Windows2025 => windows("10.0.26100"),
        }
    }

    pub(crate) fn is_windows(self) -> bool {
        self.windows_build.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_thresholds_round_up_and_100_percent_disables() {
        assert_eq!(EvictionThreshold::Percent(10.0).reserved_bytes(20 * GI), 2 * GI);
        assert_eq!(
            EvictionThreshold::Percent(10.0).reserved_bytes(15),
            2,
            "1.5 rounds up"
        );
        assert_eq!(EvictionThreshold::Percent(100.0).reserved_bytes(20 * GI), 0);
        assert_eq!(EvictionThreshold::Bytes(5 * MI).reserved_bytes(20 * GI), 5 * MI);
    }

    #[test]
    fn family_flags_match_karpenter() {
        let bottlerocket = FamilyFlags::of(AmiFamily::Bottlerocket);
        assert!(bottlerocket.eni_limited_pod_density && !bottlerocket.pods_per_core);
        assert!(!bottlerocket.eni_limited_memory_overhead);
        let custom = FamilyFlags::of(AmiFamily::Custom);
        assert!(custom.eni_limited_memory_overhead && custom.pods_per_core && !custom.is_windows());
        let windows = FamilyFlags::of(AmiFamily::Windows2022);
        assert!(!windows.eni_limited_pod_density && windows.pods_per_core && windows.is_windows());
        assert_eq!(windows.default_root_volume_bytes, 50 * GI);
        assert_eq!(
            FamilyFlags::of(AmiFamily::Windows2025).windows_build,
            Some("10.0.26100")
        );
        assert_eq!(NodeSettings::default().ami_family, AmiFamily::AL2023);
    }
}
