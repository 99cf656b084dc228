//! The single-valued labels Karpenter's `computeRequirements` gives an instance type, so NodePool
//! requirements and pod node selectors match here exactly as they match there.
//!
//! Zone, zone ID and capacity type vary per offering and are not here. Two provider keys are left
//! out on purpose: `karpenter.k8s.aws/instance-tenancy` (Karpenter gives it two values, `default`
//! and `dedicated`, so it is not a single label) and the reservation labels (no reservations in the
//! shipped data).

use std::collections::BTreeMap;

use nodewright_api::labels as keys;

use crate::hardware::Hardware;
use crate::settings::NodeSettings;

/// The labels every node of this type carries in `region` under `settings`.
pub fn labels(hardware: &Hardware, region: &str, settings: &NodeSettings) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut set = |key: &str, value: String| {
        labels.insert(key.to_owned(), value);
    };
    let family = settings.family();

    set(keys::INSTANCE_TYPE, hardware.name.clone());
    set(keys::ARCH, hardware.architecture.label().to_owned());
    set(
        keys::OS,
        if family.is_windows() { "windows" } else { "linux" }.to_owned(),
    );
    if let Some(build) = family.windows_build {
        set(keys::WINDOWS_BUILD, build.to_owned());
    }
    set(keys::REGION, region.to_owned());

    if let Some((category, generation)) = category_and_generation(&hardware.name) {
        set(keys::AWS_INSTANCE_CATEGORY, category.to_owned());
        set(keys::AWS_INSTANCE_GENERATION, generation.to_owned());
    }
    if let (Some(family), Some(size)) = (hardware.family(), hardware.size()) {
        set(keys::AWS_INSTANCE_FAMILY, family.to_owned());
        set(keys::AWS_INSTANCE_SIZE, size.to_owned());
    }
    // Karpenter looks at everything before the first dot, even for names without a size.
    let prefix = hardware.name.split('.').next().unwrap_or_default();
    set(
        keys::AWS_INSTANCE_CAPABILITY_FLEX,
        prefix.contains("-flex").to_string(),
    );

    set(keys::AWS_INSTANCE_CPU, hardware.vcpus.to_string());
    set(
        keys::AWS_INSTANCE_CPU_MANUFACTURER,
        lower_kebab_case(hardware.cpu_manufacturer.as_deref().unwrap_or_default()),
    );
    // Karpenter labels 0 when EC2 gives no clock speed (m1, m2, c1, t1).
    set(
        keys::AWS_INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ,
        hardware.sustained_clock_speed_mhz.unwrap_or(0).to_string(),
    );
    set(keys::AWS_INSTANCE_MEMORY, hardware.memory_mib.to_string());
    if let Some(mbps) = hardware.ebs_bandwidth_mbps {
        set(keys::AWS_INSTANCE_EBS_BANDWIDTH, mbps.to_string());
    }
    if let Some(mbps) = hardware.network_bandwidth_mbps {
        set(keys::AWS_INSTANCE_NETWORK_BANDWIDTH, mbps.to_string());
    }
    if let Some(storage) = hardware.instance_storage.as_ref().filter(|s| s.nvme) {
        set(keys::AWS_INSTANCE_LOCAL_NVME, storage.total_size_gb.to_string());
    }
    // Karpenter puts the hypervisor in as is, so bare-metal types carry an empty value.
    set(
        keys::AWS_INSTANCE_HYPERVISOR,
        hardware.hypervisor.clone().unwrap_or_default(),
    );
    set(
        keys::AWS_INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED,
        hardware.encryption_in_transit.to_string(),
    );

    if let [gpu] = hardware.gpus.as_slice() {
        set(keys::AWS_INSTANCE_GPU_NAME, lower_kebab_case(&gpu.name));
        set(
            keys::AWS_INSTANCE_GPU_MANUFACTURER,
            lower_kebab_case(&gpu.manufacturer),
        );
        set(keys::AWS_INSTANCE_GPU_COUNT, gpu.count.to_string());
        set(keys::AWS_INSTANCE_GPU_MEMORY, gpu.memory_mib.to_string());
    }
    if let ([accelerator], []) = (
        hardware.inference_accelerators.as_slice(),
        hardware.neuron_devices.as_slice(),
    ) {
        set(
            keys::AWS_INSTANCE_ACCELERATOR_NAME,
            lower_kebab_case(&accelerator.name),
        );
        set(
            keys::AWS_INSTANCE_ACCELERATOR_MANUFACTURER,
            lower_kebab_case(&accelerator.manufacturer),
        );
        set(
            keys::AWS_INSTANCE_ACCELERATOR_COUNT,
            accelerator.count.to_string(),
        );
    }
    if let [device] = hardware.neuron_devices.as_slice() {
        set(
            keys::AWS_INSTANCE_ACCELERATOR_NAME,
            lower_kebab_case(&device.name),
        );
        set(keys::AWS_INSTANCE_ACCELERATOR_MANUFACTURER, "aws".to_owned());
        set(keys::AWS_INSTANCE_ACCELERATOR_COUNT, device.count.to_string());
    }
    labels
}

/// Category and generation as Karpenter's `(^[a-z]+)(\-[0-9]+tb)?([0-9]+).*\.` captures them:
/// `m` and `5` of `m5.large`, `u` and `1` of `u-12tb1.112xlarge`, `m` and `7` of `m7i-flex.large`.
pub fn category_and_generation(name: &str) -> Option<(&str, &str)> {
    // Without backtracking this regex reads: a maximal run of lowercase letters, optionally `-`,
    // digits and `tb`, then a maximal run of digits, then a dot anywhere after.
    let letters = name.bytes().take_while(u8::is_ascii_lowercase).count();
    if letters == 0 {
        return None;
    }
    let mut rest = &name[letters..];
    if let Some(after_dash) = rest.strip_prefix('-') {
        let digits = after_dash.bytes().take_while(u8::is_ascii_digit).count();
        rest = after_dash[digits..].strip_prefix("tb").filter(|_| digits > 0)?;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !rest[digits..].contains('.') {
        return None;
    }
    Some((&name[..letters], &rest[..digits]))
}

/// Karpenter's `lowerKabobCase`: spaces to dashes, lowercase (`Qualcomm AI100` → `qualcomm-ai100`).
fn lower_kebab_case(text: &str) -> String {
    text.replace(' ', "-").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_and_generation_follow_the_regex() {
        assert_eq!(category_and_generation("m5.large"), Some(("m", "5")));
        assert_eq!(category_and_generation("m7i-flex.large"), Some(("m", "7")));
        assert_eq!(category_and_generation("u-12tb1.112xlarge"), Some(("u", "1")));
        assert_eq!(category_and_generation("u7i-12tb.224xlarge"), Some(("u", "7")));
        assert_eq!(category_and_generation("p6-b200.48xlarge"), Some(("p", "6")));
        assert_eq!(category_and_generation("x8aedz.metal-12xl"), Some(("x", "8")));
        assert_eq!(category_and_generation("mac2-m2.metal"), Some(("mac", "2")));
        assert_eq!(
            category_and_generation("u-12tb.large"),
            None,
            "tb group needs digits after it"
        );
        assert_eq!(category_and_generation("m5"), None, "needs a dot");
        assert_eq!(category_and_generation("5m.large"), None);
    }

    #[test]
    fn gpu_and_accelerator_labels_need_exactly_one_kind() {
        use crate::hardware::{Accelerator, Gpu, NeuronDevice, m5_large};
        let settings = NodeSettings::default();
        let gpu = |name: &str| Gpu {
            name: name.into(),
            manufacturer: "NVIDIA".into(),
            count: 1,
            memory_mib: 1,
        };
        let mut two_gpus = m5_large();
        two_gpus.gpus = vec![gpu("A"), gpu("B")];
        assert!(!labels(&two_gpus, "r", &settings).contains_key(keys::AWS_INSTANCE_GPU_NAME));
        two_gpus.gpus.pop();
        assert_eq!(
            labels(&two_gpus, "r", &settings)[keys::AWS_INSTANCE_GPU_NAME],
            "a"
        );

        let device = |name: &str| NeuronDevice {
            name: name.into(),
            count: 2,
            cores_per_device: 2,
            memory_mib: 1,
        };
        let mut two_devices = m5_large();
        two_devices.neuron_devices = vec![device("Inferentia"), device("Trainium")];
        two_devices.inference_accelerators = vec![Accelerator {
            name: "X Y".into(),
            manufacturer: "Z".into(),
            count: 3,
            memory_mib: 1,
        }];
        // Neuron info present (even with two kinds) hides the inference accelerator, and two kinds
        // give no accelerator labels at all.
        assert!(!labels(&two_devices, "r", &settings).contains_key(keys::AWS_INSTANCE_ACCELERATOR_NAME));
        two_devices.neuron_devices.clear();
        let only_inference = labels(&two_devices, "r", &settings);
        assert_eq!(only_inference[keys::AWS_INSTANCE_ACCELERATOR_NAME], "x-y");
        assert_eq!(only_inference[keys::AWS_INSTANCE_ACCELERATOR_COUNT], "3");
    }

    #[test]
    fn kebab_case() {
        assert_eq!(lower_kebab_case("Qualcomm AI100"), "qualcomm-ai100");
        assert_eq!(lower_kebab_case("AWS"), "aws");
    }
}
