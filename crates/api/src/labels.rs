//! Well-known label, annotation, taint and finalizer names of the Karpenter v1 API, and the label
//! aliases Karpenter normalizes. Controllers and the solver use these constants, never literals.

/// API group of NodePool and NodeClaim.
pub const KARPENTER_GROUP: &str = "karpenter.sh";
/// API group of EC2NodeClass.
pub const KARPENTER_AWS_GROUP: &str = "karpenter.k8s.aws";

// Labels set by Karpenter on NodeClaims and Nodes.
/// The NodePool that owns a NodeClaim or Node.
pub const NODE_POOL: &str = "karpenter.sh/nodepool";
/// `on-demand`, `spot` or `reserved`.
pub const CAPACITY_TYPE: &str = "karpenter.sh/capacity-type";
/// `true` once the Node registered with its NodeClaim.
pub const NODE_REGISTERED: &str = "karpenter.sh/registered";
/// `true` once the Node is initialized (Ready, startup taints gone, resources registered).
pub const NODE_INITIALIZED: &str = "karpenter.sh/initialized";
/// On a Node: `true` stops taint synchronisation from its NodeClaim.
pub const DO_NOT_SYNC_TAINTS: &str = "karpenter.sh/do-not-sync-taints";
/// Added to a Node while it drains so load balancers stop sending it traffic.
pub const EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

// Kubernetes well-known labels.
pub const HOSTNAME: &str = "kubernetes.io/hostname";
pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const REGION: &str = "topology.kubernetes.io/region";
pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const ARCH: &str = "kubernetes.io/arch";
pub const OS: &str = "kubernetes.io/os";
pub const WINDOWS_BUILD: &str = "node.kubernetes.io/windows-build";

// Label aliases: deprecated keys Karpenter translates to the stable ones.
pub const BETA_ZONE: &str = "failure-domain.beta.kubernetes.io/zone";
pub const BETA_REGION: &str = "failure-domain.beta.kubernetes.io/region";
pub const BETA_ARCH: &str = "beta.kubernetes.io/arch";
pub const BETA_OS: &str = "beta.kubernetes.io/os";
pub const BETA_INSTANCE_TYPE: &str = "beta.kubernetes.io/instance-type";

/// Capacity-type values.
pub const CAPACITY_TYPE_ON_DEMAND: &str = "on-demand";
pub const CAPACITY_TYPE_SPOT: &str = "spot";
pub const CAPACITY_TYPE_RESERVED: &str = "reserved";
pub const CAPACITY_TYPES: [&str; 3] = [
    CAPACITY_TYPE_ON_DEMAND,
    CAPACITY_TYPE_SPOT,
    CAPACITY_TYPE_RESERVED,
];

// AWS provider labels (karpenter.k8s.aws/*) set from the instance type.
pub const AWS_EC2_NODE_CLASS: &str = "karpenter.k8s.aws/ec2nodeclass";
pub const AWS_CAPACITY_RESERVATION_ID: &str = "karpenter.k8s.aws/capacity-reservation-id";
pub const AWS_CAPACITY_RESERVATION_TYPE: &str = "karpenter.k8s.aws/capacity-reservation-type";
pub const AWS_CAPACITY_RESERVATION_INTERRUPTIBLE: &str =
    "karpenter.k8s.aws/capacity-reservation-interruptible";
pub const AWS_INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED: &str =
    "karpenter.k8s.aws/instance-encryption-in-transit-supported";
pub const AWS_INSTANCE_CATEGORY: &str = "karpenter.k8s.aws/instance-category";
pub const AWS_INSTANCE_HYPERVISOR: &str = "karpenter.k8s.aws/instance-hypervisor";
pub const AWS_INSTANCE_FAMILY: &str = "karpenter.k8s.aws/instance-family";
pub const AWS_INSTANCE_GENERATION: &str = "karpenter.k8s.aws/instance-generation";
pub const AWS_INSTANCE_LOCAL_NVME: &str = "karpenter.k8s.aws/instance-local-nvme";
pub const AWS_INSTANCE_SIZE: &str = "karpenter.k8s.aws/instance-size";
pub const AWS_INSTANCE_CPU: &str = "karpenter.k8s.aws/instance-cpu";
pub const AWS_INSTANCE_CPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-cpu-manufacturer";
pub const AWS_INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ: &str =
    "karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz";
pub const AWS_INSTANCE_MEMORY: &str = "karpenter.k8s.aws/instance-memory";
pub const AWS_INSTANCE_EBS_BANDWIDTH: &str = "karpenter.k8s.aws/instance-ebs-bandwidth";
pub const AWS_INSTANCE_NETWORK_BANDWIDTH: &str = "karpenter.k8s.aws/instance-network-bandwidth";
pub const AWS_INSTANCE_GPU_NAME: &str = "karpenter.k8s.aws/instance-gpu-name";
pub const AWS_INSTANCE_GPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-gpu-manufacturer";
pub const AWS_INSTANCE_GPU_COUNT: &str = "karpenter.k8s.aws/instance-gpu-count";
pub const AWS_INSTANCE_GPU_MEMORY: &str = "karpenter.k8s.aws/instance-gpu-memory";
pub const AWS_INSTANCE_ACCELERATOR_NAME: &str = "karpenter.k8s.aws/instance-accelerator-name";
pub const AWS_INSTANCE_ACCELERATOR_MANUFACTURER: &str = "karpenter.k8s.aws/instance-accelerator-manufacturer";
pub const AWS_INSTANCE_ACCELERATOR_COUNT: &str = "karpenter.k8s.aws/instance-accelerator-count";
pub const AWS_INSTANCE_CAPABILITY_FLEX: &str = "karpenter.k8s.aws/instance-capability-flex";
/// Zone ID (e.g. `use1-az1`), stable across accounts unlike zone names.
pub const AWS_ZONE_ID: &str = "topology.k8s.aws/zone-id";

/// The `karpenter.k8s.aws/*` labels a NodePool may use in requirements and labels; every other key
/// in that domain is reserved for the provider.
pub const AWS_WELL_KNOWN_LABELS: [&str; 23] = [
    AWS_CAPACITY_RESERVATION_TYPE,
    AWS_CAPACITY_RESERVATION_ID,
    AWS_EC2_NODE_CLASS,
    AWS_INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED,
    AWS_INSTANCE_CATEGORY,
    AWS_INSTANCE_HYPERVISOR,
    AWS_INSTANCE_FAMILY,
    AWS_INSTANCE_GENERATION,
    AWS_INSTANCE_LOCAL_NVME,
    AWS_INSTANCE_SIZE,
    AWS_INSTANCE_CPU,
    AWS_INSTANCE_CPU_MANUFACTURER,
    AWS_INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ,
    AWS_INSTANCE_MEMORY,
    AWS_INSTANCE_EBS_BANDWIDTH,
    AWS_INSTANCE_NETWORK_BANDWIDTH,
    AWS_INSTANCE_GPU_NAME,
    AWS_INSTANCE_GPU_MANUFACTURER,
    AWS_INSTANCE_GPU_COUNT,
    AWS_INSTANCE_GPU_MEMORY,
    AWS_INSTANCE_ACCELERATOR_NAME,
    AWS_INSTANCE_ACCELERATOR_MANUFACTURER,
    AWS_INSTANCE_ACCELERATOR_COUNT,
];

/// Well-known labels: a pod may require them even when no NodePool lists them, because every node
/// Karpenter launches carries them.
pub const WELL_KNOWN_LABELS: [&str; 8] = [
    NODE_POOL,
    ZONE,
    REGION,
    INSTANCE_TYPE,
    ARCH,
    OS,
    CAPACITY_TYPE,
    WINDOWS_BUILD,
];

/// `kubernetes.io` keys that NodePools may set although the domain is otherwise reserved.
pub const ALLOWED_KUBERNETES_IO_LABELS: [&str; 11] = [
    BETA_INSTANCE_TYPE,
    BETA_REGION,
    BETA_OS,
    BETA_ARCH,
    BETA_ZONE,
    ZONE,
    REGION,
    INSTANCE_TYPE,
    ARCH,
    OS,
    WINDOWS_BUILD,
];

// Annotations.
/// Pod: `"true"` or a duration blocks voluntary disruption. Node/NodeClaim: `"true"` blocks candidacy.
pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
pub const NODE_POOL_HASH: &str = "karpenter.sh/nodepool-hash";
pub const NODE_POOL_HASH_VERSION: &str = "karpenter.sh/nodepool-hash-version";
pub const NODECLAIM_TERMINATION_TIMESTAMP: &str = "karpenter.sh/nodeclaim-termination-timestamp";
pub const NODECLAIM_MIN_VALUES_RELAXED: &str = "karpenter.sh/nodeclaim-min-values-relaxed";
pub const REQUESTED_DRA_DRIVERS: &str = "karpenter.sh/requested-dra-drivers";
pub const PRICE_OVERLAY_APPLIED: &str = "karpenter.sh/price-overlay-applied";
pub const CAPACITY_OVERLAY_APPLIED: &str = "karpenter.sh/capacity-overlay-applied";
pub const CAPACITY_BUFFER_FAKE_POD: &str = "karpenter.sh/capacity-buffer-fake-pod";
pub const EC2_NODE_CLASS_HASH: &str = "karpenter.k8s.aws/ec2nodeclass-hash";
pub const EC2_NODE_CLASS_HASH_VERSION: &str = "karpenter.k8s.aws/ec2nodeclass-hash-version";
/// Pod annotation read as the pod's eviction cost.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

// Finalizers.
/// On NodeClaims and Nodes: the instance is terminated before the object goes away.
pub const TERMINATION_FINALIZER: &str = "karpenter.sh/termination";
/// On EC2NodeClasses: launch templates and instance profiles are cleaned up first.
pub const AWS_TERMINATION_FINALIZER: &str = "karpenter.k8s.aws/termination";

/// A taint as key, value and effect, for the constants below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaintSpec {
    pub key: &'static str,
    pub value: Option<&'static str>,
    pub effect: &'static str,
}

impl TaintSpec {
    /// The taint as the Kubernetes type, for Nodes and NodeClaims.
    pub fn to_taint(self) -> k8s_openapi::api::core::v1::Taint {
        k8s_openapi::api::core::v1::Taint {
            key: self.key.to_owned(),
            value: self.value.map(str::to_owned),
            effect: self.effect.to_owned(),
            time_added: None,
        }
    }

    /// Whether `taint` is this taint (same key and effect; value ignored as Karpenter does).
    pub fn matches(self, taint: &k8s_openapi::api::core::v1::Taint) -> bool {
        taint.key == self.key && taint.effect == self.effect
    }
}

/// Put on disruption candidates and draining nodes so nothing new schedules there.
pub const DISRUPTED_TAINT: TaintSpec = TaintSpec {
    key: "karpenter.sh/disrupted",
    value: None,
    effect: "NoSchedule",
};
/// Present when a node joins; removed by Karpenter at registration.
pub const UNREGISTERED_TAINT: TaintSpec = TaintSpec {
    key: "karpenter.sh/unregistered",
    value: None,
    effect: "NoExecute",
};

/// Taints that are expected while a node starts and must be gone before it is initialized.
pub const KNOWN_EPHEMERAL_TAINTS: [TaintSpec; 5] = [
    TaintSpec {
        key: "node.kubernetes.io/not-ready",
        value: None,
        effect: "NoSchedule",
    },
    TaintSpec {
        key: "node.kubernetes.io/not-ready",
        value: None,
        effect: "NoExecute",
    },
    TaintSpec {
        key: "node.kubernetes.io/unreachable",
        value: None,
        effect: "NoSchedule",
    },
    TaintSpec {
        key: "node.cloudprovider.kubernetes.io/uninitialized",
        value: Some("true"),
        effect: "NoSchedule",
    },
    UNREGISTERED_TAINT,
];
/// Taints whose key has this prefix are ephemeral too (the Node Readiness Controller's).
pub const EPHEMERAL_TAINT_KEY_PREFIX: &str = "readiness.k8s.io/";

/// Whether a taint is one of the known ephemeral taints.
pub fn is_known_ephemeral_taint(taint: &k8s_openapi::api::core::v1::Taint) -> bool {
    taint.key.starts_with(EPHEMERAL_TAINT_KEY_PREFIX)
        || KNOWN_EPHEMERAL_TAINTS.iter().any(|t| t.matches(taint))
}

/// The stable key for a deprecated label alias, or the key itself.
pub fn normalize_label_key(key: &str) -> &str {
    match key {
        BETA_ZONE => ZONE,
        BETA_REGION => REGION,
        BETA_ARCH => ARCH,
        BETA_OS => OS,
        BETA_INSTANCE_TYPE => INSTANCE_TYPE,
        other => other,
    }
}

/// The domain (prefix before `/`) of a label key, or the empty string if it has none.
pub fn label_domain(key: &str) -> &str {
    key.split_once('/').map_or("", |(domain, _)| domain)
}

/// Why a label key is reserved, if it is; the message matches the CRD's CEL rule.
///
/// `allow_nodepool_label` is true for NodeClaims, which carry `karpenter.sh/nodepool` legitimately.
pub fn restricted_label_reason(key: &str, allow_nodepool_label: bool) -> Option<&'static str> {
    let domain = label_domain(key);
    if key == HOSTNAME {
        return Some("label \"kubernetes.io/hostname\" is restricted");
    }
    if key == NODE_POOL && !allow_nodepool_label {
        return Some("label \"karpenter.sh/nodepool\" is restricted");
    }
    if domain.ends_with("kubernetes.io")
        && !ALLOWED_KUBERNETES_IO_LABELS.contains(&key)
        && !domain.ends_with("node.kubernetes.io")
        && !domain.ends_with("node-restriction.kubernetes.io")
    {
        return Some("label domain \"kubernetes.io\" is restricted");
    }
    if domain.ends_with("k8s.io") && !domain.ends_with("kops.k8s.io") {
        return Some("label domain \"k8s.io\" is restricted");
    }
    if domain.ends_with(KARPENTER_GROUP) && key != CAPACITY_TYPE && key != NODE_POOL {
        return Some("label domain \"karpenter.sh\" is restricted");
    }
    if domain.ends_with(KARPENTER_AWS_GROUP) && !AWS_WELL_KNOWN_LABELS.contains(&key) {
        return Some("label domain \"karpenter.k8s.aws\" is restricted");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_normalize_to_stable_keys() {
        assert_eq!(
            normalize_label_key("failure-domain.beta.kubernetes.io/zone"),
            ZONE
        );
        assert_eq!(normalize_label_key("beta.kubernetes.io/arch"), ARCH);
        assert_eq!(
            normalize_label_key("beta.kubernetes.io/instance-type"),
            INSTANCE_TYPE
        );
        assert_eq!(normalize_label_key("team"), "team");
    }

    #[test]
    fn restricted_domains() {
        assert!(restricted_label_reason("kubernetes.io/hostname", true).is_some());
        assert!(restricted_label_reason("karpenter.sh/nodepool", false).is_some());
        assert!(restricted_label_reason("karpenter.sh/nodepool", true).is_none());
        assert!(restricted_label_reason("karpenter.sh/custom", false).is_some());
        assert!(restricted_label_reason("sub.karpenter.sh/custom", false).is_some());
        assert!(restricted_label_reason("karpenter.sh/capacity-type", false).is_none());
        assert!(restricted_label_reason("kubernetes.io/custom", false).is_some());
        assert!(restricted_label_reason("node.kubernetes.io/custom", false).is_none());
        assert!(restricted_label_reason("node-restriction.kubernetes.io/x", false).is_none());
        assert!(restricted_label_reason("topology.kubernetes.io/zone", false).is_none());
        assert!(restricted_label_reason("x.k8s.io/y", false).is_some());
        assert!(restricted_label_reason("kops.k8s.io/y", false).is_none());
        assert!(restricted_label_reason("karpenter.k8s.aws/instance-family", false).is_none());
        assert!(restricted_label_reason("karpenter.k8s.aws/secret", false).is_some());
        assert!(restricted_label_reason("example.com/team", false).is_none());
        assert!(restricted_label_reason("team", false).is_none());
    }

    #[test]
    fn ephemeral_taints_are_recognised() {
        let mut taint = UNREGISTERED_TAINT.to_taint();
        assert!(is_known_ephemeral_taint(&taint));
        taint.key = "readiness.k8s.io/cni".into();
        assert!(is_known_ephemeral_taint(&taint));
        taint.key = "example.com/gpu".into();
        assert!(!is_known_ephemeral_taint(&taint));
    }
}
