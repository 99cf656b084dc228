//! `karpenter.k8s.aws/v1` EC2NodeClass: how instances are launched on AWS (AMIs, subnets, security
//! groups, IAM role or instance profile, user data, block devices, metadata options, kubelet).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::NodeSelectorRequirement,
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{Condition, Time},
    },
};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    quantity,
    validation::{FieldPath, Invalid, Problems},
};

/// EC2NodeClass is the Schema for the EC2NodeClass API.
// kube-derive repeats `type_`/`priority` keys across printcolumn(...) entries by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    derive = "PartialEq",
    group = "karpenter.k8s.aws",
    version = "v1",
    kind = "EC2NodeClass",
    plural = "ec2nodeclasses",
    singular = "ec2nodeclass",
    status = "EC2NodeClassStatus",
    category = "karpenter",
    shortname = "ec2nc",
    shortname = "ec2ncs",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role", priority = 1),
    doc = "EC2NodeClass is the Schema for the EC2NodeClass API"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = ec2nodeclass_spec_rules()))]
pub struct EC2NodeClassSpec {
    /// Kubelet settings (an open map, validated by the controller per AMI family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object")]
    pub kubelet: Option<BTreeMap<String, Value>>,
    /// Subnets to launch into; terms are ORed, fields within a term ANDed.
    #[schemars(length(max = 30), extend("x-kubernetes-validations" = [{ "message": "subnetSelectorTerms cannot be empty", "rule": "self.size() != 0" }]))]
    pub subnet_selector_terms: Vec<SubnetSelectorTerm>,
    /// Security groups for the instances.
    #[schemars(length(max = 30), extend("x-kubernetes-validations" = [{ "message": "securityGroupSelectorTerms cannot be empty", "rule": "self.size() != 0" }]))]
    pub security_group_selector_terms: Vec<SecurityGroupSelectorTerm>,
    /// Capacity reservations the NodeClass may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 30))]
    pub capacity_reservation_selector_terms: Vec<CapacityReservationSelectorTerm>,
    /// Placement group for the instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group_selector: Option<PlacementGroupSelector>,
    /// Whether instances get a public IPv4 address; the subnet decides when unset.
    #[serde(
        default,
        rename = "associatePublicIPAddress",
        skip_serializing_if = "Option::is_none"
    )]
    pub associate_public_ip_address: Option<bool>,
    /// Number of IPv4 prefixes per network interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ip_prefix_count: Option<i32>,
    /// AMIs to launch; an alias (`al2023@latest`) must be the only term.
    #[schemars(length(min = 1, max = 30), extend("x-kubernetes-validations" = [{ "message": "'alias' is mutually exclusive, cannot be set with a combination of other amiSelectorTerms", "rule": "!(self.exists(x, has(x.alias)) && self.size() != 1)" }]))]
    pub ami_selector_terms: Vec<AmiSelectorTerm>,
    /// The AMI family; inferred from an alias, required otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami_family: Option<AmiFamily>,
    /// User data merged with the bootstrap Nodewright generates for the AMI family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// IAM role for the node's instance profile (managed by Nodewright).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{ "message": "role cannot be empty", "rule": "self != ''" }]))]
    pub role: Option<String>,
    /// An existing instance profile (unmanaged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{ "message": "instanceProfile cannot be empty", "rule": "self != ''" }]))]
    pub instance_profile: Option<String>,
    /// Tags added to instances, volumes and launch templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = tag_rules()))]
    pub tags: BTreeMap<String, String>,
    /// Block devices attached to the instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), extend("x-kubernetes-validations" = [{ "message": "must have only one blockDeviceMappings with rootVolume", "rule": "self.filter(x, has(x.rootVolume)?x.rootVolume==true:false).size() <= 1" }]))]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// How the NVMe instance store is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_store_policy: Option<InstanceStorePolicy>,
    /// Network interfaces of the instances (EFA).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 150))]
    pub network_interfaces: Vec<NetworkInterface>,
    /// Detailed CloudWatch monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_monitoring: Option<bool>,
    /// Instance metadata service options.
    #[serde(default)]
    #[schemars(default = "metadata_options_schema_default")]
    pub metadata_options: MetadataOptions,
    /// Connection tracking timeouts (Nitro only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_tracking: Option<ConnectionTracking>,
    /// EC2 Fleet context (for reserved or dedicated capacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// CPU options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_options: Option<CpuOptions>,
}

fn open_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// Tag keys Nodewright owns; users may not set them.
pub const RESTRICTED_TAG_KEYS: [&str; 4] = [
    "eks:eks-cluster-name",
    "karpenter.sh/nodepool",
    "karpenter.sh/nodeclaim",
    "karpenter.k8s.aws/ec2nodeclass",
];
/// Tag key prefix Nodewright owns (`kubernetes.io/cluster/<name>`).
pub const RESTRICTED_TAG_PREFIX: &str = "kubernetes.io/cluster";

fn tag_rules() -> Value {
    let mut rules =
        vec![json!({ "message": "empty tag keys aren't supported", "rule": "self.all(k, k != '')" })];
    for key in RESTRICTED_TAG_KEYS {
        rules.push(json!({ "message": format!("tag contains a restricted tag matching {key}"), "rule": format!("self.all(k, k != '{key}')") }));
    }
    rules.push(json!({ "message": "tag contains a restricted tag matching kubernetes.io/cluster/", "rule": "self.all(k, !k.startsWith('kubernetes.io/cluster'))" }));
    Value::Array(rules)
}

/// The AMI families and the alias family names that select them.
const ALIAS_FAMILIES: [(&str, &str); 6] = [
    ("al2", "AL2"),
    ("al2023", "AL2023"),
    ("bottlerocket", "Bottlerocket"),
    ("windows2019", "Windows2019"),
    ("windows2022", "Windows2022"),
    ("windows2025", "Windows2025"),
];

fn ec2nodeclass_spec_rules() -> Value {
    let mut rules = vec![json!({
        "message": "must specify exactly one of ['role', 'instanceProfile']",
        "rule": "(has(self.role) && !has(self.instanceProfile)) || (!has(self.role) && has(self.instanceProfile))"
    })];
    for (alias, family) in ALIAS_FAMILIES {
        rules.push(json!({
            "message": format!("if set, amiFamily must be '{family}' or 'Custom' when using an {family} alias"),
            "rule": format!("!has(self.amiFamily) || (self.amiSelectorTerms.exists(x, has(x.alias) && x.alias.find('^[^@]+') == '{alias}') ? (self.amiFamily == 'Custom' || self.amiFamily == '{family}') : true)")
        }));
    }
    rules.push(json!({
        "message": "must specify amiFamily if amiSelectorTerms does not contain an alias",
        "rule": "self.amiSelectorTerms.exists(x, has(x.alias)) ? true : has(self.amiFamily)"
    }));
    Value::Array(rules)
}

fn tags_not_empty_rule() -> Value {
    json!([{ "message": "empty tag keys or values aren't supported", "rule": "self.all(k, k != '' && self[k] != '')" }])
}

/// Selects subnets by tags (`"*"` matches any value) or by ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "message": "expected at least one, got none, ['tags', 'id']", "rule": "has(self.tags) || has(self.id)" },
    { "message": "'id' is mutually exclusive, cannot be set with a combination of other fields in a subnet selector term", "rule": "!(has(self.id) && has(self.tags))" }
]))]
pub struct SubnetSelectorTerm {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20, "x-kubernetes-validations" = tags_not_empty_rule()))]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "subnet-[0-9a-z]+"))]
    pub id: Option<String>,
}

/// Selects security groups by tags, ID or group name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "message": "expected at least one, got none, ['tags', 'id', 'name']", "rule": "has(self.tags) || has(self.id) || has(self.name)" },
    { "message": "'id' is mutually exclusive, cannot be set with a combination of other fields in a security group selector term", "rule": "!has(self.id) || !(has(self.tags) || has(self.name))" },
    { "message": "'name' is mutually exclusive, cannot be set with a combination of other fields in a security group selector term", "rule": "!has(self.name) || !(has(self.tags) || has(self.id))" }
]))]
pub struct SecurityGroupSelectorTerm {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20, "x-kubernetes-validations" = tags_not_empty_rule()))]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "sg-[0-9a-z]+"))]
    pub id: Option<String>,
    /// The security group's GroupName (not its Name tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Instance match criteria of a capacity reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstanceMatchCriteria {
    Open,
    Targeted,
}

/// Selects capacity reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "message": "expected at least one, got none, ['tags', 'id', 'instanceMatchCriteria']", "rule": "has(self.tags) || has(self.id) || has(self.instanceMatchCriteria)" },
    { "message": "'id' is mutually exclusive, cannot be set along with tags, ownerID or instanceMatchCriteria in a capacity reservation selector term", "rule": "!(has(self.id) && (has(self.tags) || has(self.ownerID) || has(self.instanceMatchCriteria)))" }
]))]
pub struct CapacityReservationSelectorTerm {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20, "x-kubernetes-validations" = tags_not_empty_rule()))]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^cr-[0-9a-z]+$"))]
    pub id: Option<String>,
    #[serde(default, rename = "ownerID", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[0-9]{12}$"))]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_match_criteria: Option<InstanceMatchCriteria>,
}

/// Selects a placement group by name or ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "message": "expected exactly one of ['name', 'id']", "rule": "has(self.name) != has(self.id)" }
]))]
pub struct PlacementGroupSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^pg-[0-9a-z]+$"))]
    pub id: Option<String>,
}

/// Selects AMIs by alias, tags, ID, name (with owner) or SSM parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "message": "expected at least one, got none, ['tags', 'id', 'name', 'alias', 'ssmParameter']", "rule": "has(self.tags) || has(self.id) || has(self.name) || has(self.alias) || has(self.ssmParameter)" },
    { "message": "'id' is mutually exclusive, cannot be set with a combination of other fields in amiSelectorTerms", "rule": "!(has(self.id) && (has(self.alias) || has(self.tags) || has(self.name) || has(self.owner)))" },
    { "message": "'alias' is mutually exclusive, cannot be set with a combination of other fields in amiSelectorTerms", "rule": "!(has(self.alias) && (has(self.id) || has(self.tags) || has(self.name) || has(self.owner)))" }
]))]
pub struct AmiSelectorTerm {
    /// `family@version`, e.g. `al2023@latest` or `bottlerocket@v1.30.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 30), extend("x-kubernetes-validations" = [
        { "message": "'alias' is improperly formatted, must match the format 'family@version'", "rule": "self.matches('^[a-zA-Z0-9]+@.+$')" },
        { "message": "family is not supported, must be one of the following: 'al2', 'al2023', 'bottlerocket', 'windows2019', 'windows2022', 'windows2025'", "rule": "self.split('@')[0] in ['al2','al2023','bottlerocket','windows2019','windows2022','windows2025']" },
        { "message": "windows families may only specify version 'latest'", "rule": "self.split('@')[0] in ['windows2019','windows2022','windows2025'] ? self.split('@')[1] == 'latest' : true" }
    ]))]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20, "x-kubernetes-validations" = tags_not_empty_rule()))]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "ami-[0-9a-z]+"))]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Owner account ID or alias (`amazon`, `self`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// An SSM parameter name or ARN holding an AMI ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm_parameter: Option<String>,
}

impl AmiSelectorTerm {
    /// The alias split into family and version, if this is an alias term.
    pub fn alias_parts(&self) -> Option<(&str, &str)> {
        self.alias.as_deref().and_then(|a| a.split_once('@'))
    }
}

/// AMI families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AmiFamily {
    AL2,
    AL2023,
    Bottlerocket,
    Custom,
    Windows2019,
    Windows2022,
    Windows2025,
}

impl AmiFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AL2 => "AL2",
            Self::AL2023 => "AL2023",
            Self::Bottlerocket => "Bottlerocket",
            Self::Custom => "Custom",
            Self::Windows2019 => "Windows2019",
            Self::Windows2022 => "Windows2022",
            Self::Windows2025 => "Windows2025",
        }
    }

    fn from_alias_family(alias_family: &str) -> Option<Self> {
        Some(match alias_family {
            "al2" => Self::AL2,
            "al2023" => Self::AL2023,
            "bottlerocket" => Self::Bottlerocket,
            "windows2019" => Self::Windows2019,
            "windows2022" => Self::Windows2022,
            "windows2025" => Self::Windows2025,
            _ => return None,
        })
    }
}

/// Instance store policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum InstanceStorePolicy {
    /// Stripe the NVMe instance stores and put containerd and kubelet state on them.
    RAID0,
}

/// A block device of the instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockDeviceMapping {
    /// Device name, e.g. `/dev/xvda`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// The EBS volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebs: Option<BlockDevice>,
    /// Whether this is the root volume (its size sets ephemeral storage).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root_volume: bool,
}

/// EBS volume types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    Standard,
    Io1,
    Io2,
    Gp2,
    Sc1,
    St1,
    Gp3,
}

/// An EBS volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "message": "snapshotID or volumeSize must be defined", "rule": "has(self.snapshotID) || has(self.volumeSize)" },
    { "message": "volumeInitializationRate requires snapshotID", "rule": "has(self.volumeInitializationRate) ? has(self.snapshotID) : true" }
]))]
pub struct BlockDevice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i64>,
    #[serde(default, rename = "kmsKeyID", skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, rename = "snapshotID", skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// MiB/s, gp3 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i64>,
    /// MiB/s at which a volume restored from a snapshot is initialized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 300))]
    pub volume_initialization_rate: Option<i32>,
    /// Size, e.g. `100Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "volume_size")]
    pub volume_size: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<VolumeType>,
}

fn volume_size(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [{ "type": "integer" }, { "type": "string" }],
        "pattern": VOLUME_SIZE_PATTERN,
        "x-kubernetes-int-or-string": true
    })
}

/// Up to 59000Gi, 64000G, 58Ti or 64T.
pub const VOLUME_SIZE_PATTERN: &str = r"^((?:[1-9][0-9]{0,3}|[1-4][0-9]{4}|[5][0-8][0-9]{3}|59000)Gi|(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|[6][0-3][0-9]{3}|64000)G|([1-9]||[1-5][0-7]|58)Ti|([1-9]||[1-5][0-9]|6[0-3]|64)T)$";

/// Network interface types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InterfaceType {
    Interface,
    EfaOnly,
}

/// A network interface of the instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    #[schemars(range(min = 0))]
    pub network_card_index: i32,
    #[schemars(range(min = 0))]
    pub device_index: i32,
    pub interface_type: InterfaceType,
}

/// `enabled` or `disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    Enabled,
    Disabled,
}

/// IMDS token requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HttpTokens {
    Required,
    Optional,
}

/// Instance metadata service options; IMDSv2 with a hop limit of 1 by default, so pods cannot
/// reach the node's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetadataOptions {
    #[serde(default = "enabled")]
    pub http_endpoint: Toggle,
    #[serde(default = "disabled", rename = "httpProtocolIPv6")]
    pub http_protocol_ipv6: Toggle,
    #[serde(default = "default_hop_limit")]
    #[schemars(range(min = 1, max = 64))]
    pub http_put_response_hop_limit: i64,
    #[serde(default = "required_tokens")]
    pub http_tokens: HttpTokens,
}

impl Default for MetadataOptions {
    fn default() -> Self {
        Self {
            http_endpoint: Toggle::Enabled,
            http_protocol_ipv6: Toggle::Disabled,
            http_put_response_hop_limit: default_hop_limit(),
            http_tokens: HttpTokens::Required,
        }
    }
}

fn enabled() -> Toggle {
    Toggle::Enabled
}
fn disabled() -> Toggle {
    Toggle::Disabled
}
fn default_hop_limit() -> i64 {
    1
}
fn required_tokens() -> HttpTokens {
    HttpTokens::Required
}
fn metadata_options_schema_default() -> Value {
    json!({ "httpEndpoint": "enabled", "httpProtocolIPv6": "disabled", "httpPutResponseHopLimit": 1, "httpTokens": "required" })
}

/// Connection tracking timeouts, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "message": "expected at least one, got none, ['tcpEstablishedTimeout', 'udpStreamTimeout', 'udpTimeout']", "rule": "has(self.tcpEstablishedTimeout) || has(self.udpStreamTimeout) || has(self.udpTimeout)" }
]))]
pub struct ConnectionTracking {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 432_000))]
    pub tcp_established_timeout: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 180))]
    pub udp_stream_timeout: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30, max = 60))]
    pub udp_timeout: Option<i32>,
}

/// CPU options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CpuOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nested_virtualization: Option<Toggle>,
}

/// Observed state of an EC2NodeClass.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EC2NodeClassStatus {
    /// Resolved subnets, most free IPs first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<Subnet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<SecurityGroup>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_reservations: Vec<CapacityReservation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amis: Vec<Ami>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A resolved subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    pub id: String,
    pub zone: String,
    #[serde(default, rename = "zoneID", skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
}

/// A resolved security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroup {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A resolved capacity reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityReservation {
    pub availability_zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_match_criteria: Option<InstanceMatchCriteria>,
    pub instance_type: String,
    #[serde(rename = "ownerID")]
    pub owner_id: String,
    /// `default` or `capacity-block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruptible: Option<bool>,
    /// `active` or `expiring`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// A resolved AMI and the instance requirements it serves (architecture, GPU, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ami {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    #[serde(default)]
    pub requirements: Vec<NodeSelectorRequirement>,
}

impl EC2NodeClass {
    /// Every problem with this EC2NodeClass.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut problems = Problems::new();
        crate::nodepool::validate_object_name(self.metadata.name.as_deref(), &mut problems);
        self.spec.problems(&FieldPath::root("spec"), &mut problems);
        problems.into_result("EC2NodeClass", &self.name_any())
    }

    /// The AMI family: the alias's when an alias is used, else `spec.amiFamily`.
    pub fn ami_family(&self) -> Option<AmiFamily> {
        self.spec.alias_family().or(self.spec.ami_family)
    }
}

impl EC2NodeClassSpec {
    fn alias_family(&self) -> Option<AmiFamily> {
        self.ami_selector_terms
            .iter()
            .find_map(AmiSelectorTerm::alias_parts)
            .and_then(|(family, _)| AmiFamily::from_alias_family(family))
    }

    fn problems(&self, path: &FieldPath, problems: &mut Problems) {
        self.validate_subnets(&path.child("subnetSelectorTerms"), problems);
        self.validate_security_groups(&path.child("securityGroupSelectorTerms"), problems);
        self.validate_capacity_reservations(&path.child("capacityReservationSelectorTerms"), problems);
        self.validate_amis(path, problems);
        self.validate_identity(path, problems);
        self.validate_tags(&path.child("tags"), problems);
        self.validate_block_devices(&path.child("blockDeviceMappings"), problems);
        self.validate_network_interfaces(&path.child("networkInterfaces"), problems);
        self.validate_metadata_and_tracking(path, problems);
        if let Some(kubelet) = &self.kubelet {
            crate::kubelet::validate(kubelet, &path.child("kubelet"), problems);
        }
        if let Some(selector) = &self.placement_group_selector {
            let pg = path.child("placementGroupSelector");
            match (&selector.name, &selector.id) {
                (Some(_), Some(_)) | (None, None) => {
                    problems.invalid(&pg, "", "expected exactly one of ['name', 'id']");
                }
                (Some(name), None) if name.is_empty() => {
                    problems.required(&pg.child("name"), "name may not be empty");
                }
                (None, Some(id)) if !has_id_shape(id, "pg-") => {
                    problems.invalid(&pg.child("id"), id, "must match ^pg-[0-9a-z]+$");
                }
                _ => {}
            }
        }
        if let Some(count) = self.ip_prefix_count
            && count < 0
        {
            problems.invalid(
                &path.child("ipPrefixCount"),
                &count.to_string(),
                "must be greater than or equal to 0",
            );
        }
    }

    fn validate_subnets(&self, path: &FieldPath, problems: &mut Problems) {
        check_term_count(
            self.subnet_selector_terms.len(),
            "subnetSelectorTerms",
            path,
            problems,
        );
        for (i, term) in self.subnet_selector_terms.iter().enumerate() {
            let term_path = path.index(i);
            validate_selector_tags(&term.tags, &term_path.child("tags"), problems);
            match &term.id {
                None if term.tags.is_empty() => problems.required(&term_path, "expected at least one, got none, ['tags', 'id']"),
                Some(_) if !term.tags.is_empty() => problems.forbidden(
                    &term_path.child("id"),
                    "'id' is mutually exclusive, cannot be set with a combination of other fields in a subnet selector term",
                ),
                Some(id) if !has_id_shape(id, "subnet-") => problems.invalid(&term_path.child("id"), id, "must match subnet-[0-9a-z]+"),
                _ => {}
            }
        }
    }

    fn validate_security_groups(&self, path: &FieldPath, problems: &mut Problems) {
        check_term_count(
            self.security_group_selector_terms.len(),
            "securityGroupSelectorTerms",
            path,
            problems,
        );
        for (i, term) in self.security_group_selector_terms.iter().enumerate() {
            let term_path = path.index(i);
            validate_selector_tags(&term.tags, &term_path.child("tags"), problems);
            let set = usize::from(!term.tags.is_empty())
                + usize::from(term.id.is_some())
                + usize::from(term.name.is_some());
            if set == 0 {
                problems.required(
                    &term_path,
                    "expected at least one, got none, ['tags', 'id', 'name']",
                );
            } else if set > 1 && term.id.is_some() {
                problems.forbidden(&term_path.child("id"), "'id' is mutually exclusive, cannot be set with a combination of other fields in a security group selector term");
            } else if set > 1 && term.name.is_some() {
                problems.forbidden(&term_path.child("name"), "'name' is mutually exclusive, cannot be set with a combination of other fields in a security group selector term");
            }
            if let Some(id) = &term.id
                && !has_id_shape(id, "sg-")
            {
                problems.invalid(&term_path.child("id"), id, "must match sg-[0-9a-z]+");
            }
        }
    }

    fn validate_capacity_reservations(&self, path: &FieldPath, problems: &mut Problems) {
        if self.capacity_reservation_selector_terms.len() > 30 {
            problems.too_many(path, self.capacity_reservation_selector_terms.len(), 30);
        }
        for (i, term) in self.capacity_reservation_selector_terms.iter().enumerate() {
            let term_path = path.index(i);
            validate_selector_tags(&term.tags, &term_path.child("tags"), problems);
            if term.tags.is_empty() && term.id.is_none() && term.instance_match_criteria.is_none() {
                problems.required(
                    &term_path,
                    "expected at least one, got none, ['tags', 'id', 'instanceMatchCriteria']",
                );
            }
            if term.id.is_some()
                && (!term.tags.is_empty()
                    || term.owner_id.is_some()
                    || term.instance_match_criteria.is_some())
            {
                problems.forbidden(&term_path.child("id"), "'id' is mutually exclusive, cannot be set along with tags, ownerID or instanceMatchCriteria");
            }
            if let Some(id) = &term.id
                && !has_id_shape(id, "cr-")
            {
                problems.invalid(&term_path.child("id"), id, "must match ^cr-[0-9a-z]+$");
            }
            if let Some(owner) = &term.owner_id
                && (owner.len() != 12 || !owner.bytes().all(|b| b.is_ascii_digit()))
            {
                problems.invalid(
                    &term_path.child("ownerID"),
                    owner,
                    "must be a 12-digit AWS account ID",
                );
            }
        }
    }

    fn validate_amis(&self, path: &FieldPath, problems: &mut Problems) {
        let terms_path = path.child("amiSelectorTerms");
        check_term_count(
            self.ami_selector_terms.len(),
            "amiSelectorTerms",
            &terms_path,
            problems,
        );
        let alias_terms = self
            .ami_selector_terms
            .iter()
            .filter(|t| t.alias.is_some())
            .count();
        if alias_terms > 0 && self.ami_selector_terms.len() != 1 {
            problems.forbidden(
                &terms_path,
                "'alias' is mutually exclusive, cannot be set with a combination of other amiSelectorTerms",
            );
        }
        for (i, term) in self.ami_selector_terms.iter().enumerate() {
            let term_path = terms_path.index(i);
            validate_selector_tags(&term.tags, &term_path.child("tags"), problems);
            let others = !term.tags.is_empty() || term.name.is_some() || term.owner.is_some();
            if term.alias.is_none()
                && term.id.is_none()
                && term.ssm_parameter.is_none()
                && term.tags.is_empty()
                && term.name.is_none()
            {
                problems.required(
                    &term_path,
                    "expected at least one, got none, ['tags', 'id', 'name', 'alias', 'ssmParameter']",
                );
            }
            if let Some(id) = &term.id {
                if others || term.alias.is_some() {
                    problems.forbidden(&term_path.child("id"), "'id' is mutually exclusive, cannot be set with a combination of other fields in amiSelectorTerms");
                }
                if !has_id_shape(id, "ami-") {
                    problems.invalid(&term_path.child("id"), id, "must match ami-[0-9a-z]+");
                }
            }
            if let Some(alias) = &term.alias {
                let alias_path = term_path.child("alias");
                if others || term.id.is_some() {
                    problems.forbidden(&alias_path, "'alias' is mutually exclusive, cannot be set with a combination of other fields in amiSelectorTerms");
                }
                validate_alias(alias, &alias_path, problems);
            }
        }
        let family_path = path.child("amiFamily");
        match (self.alias_family(), self.ami_family) {
            (Some(alias), Some(family)) if family != alias && family != AmiFamily::Custom => problems
                .invalid(
                    &family_path,
                    family.as_str(),
                    format!(
                        "if set, amiFamily must be '{}' or 'Custom' when using an {} alias",
                        alias.as_str(),
                        alias.as_str()
                    ),
                ),
            (None, None) if alias_terms == 0 => {
                problems.required(
                    &family_path,
                    "must specify amiFamily if amiSelectorTerms does not contain an alias",
                );
            }
            _ => {}
        }
    }

    fn validate_identity(&self, path: &FieldPath, problems: &mut Problems) {
        match (&self.role, &self.instance_profile) {
            (Some(_), Some(_)) => problems.forbidden(
                &path.child("instanceProfile"),
                "must specify exactly one of ['role', 'instanceProfile']",
            ),
            (None, None) => problems.required(
                &path.child("role"),
                "must specify exactly one of ['role', 'instanceProfile']",
            ),
            _ => {}
        }
        if self.role.as_deref() == Some("") {
            problems.required(&path.child("role"), "role cannot be empty");
        }
        if self.instance_profile.as_deref() == Some("") {
            problems.required(&path.child("instanceProfile"), "instanceProfile cannot be empty");
        }
    }

    fn validate_tags(&self, path: &FieldPath, problems: &mut Problems) {
        for key in self.tags.keys() {
            if key.is_empty() {
                problems.required(&path.key(key), "empty tag keys aren't supported");
            } else if RESTRICTED_TAG_KEYS.contains(&key.as_str()) || key.starts_with(RESTRICTED_TAG_PREFIX) {
                problems.forbidden(
                    &path.key(key),
                    format!("tag contains a restricted tag matching {key}"),
                );
            }
        }
    }

    fn validate_block_devices(&self, path: &FieldPath, problems: &mut Problems) {
        if self.block_device_mappings.len() > 50 {
            problems.too_many(path, self.block_device_mappings.len(), 50);
        }
        if self
            .block_device_mappings
            .iter()
            .filter(|m| m.root_volume)
            .count()
            > 1
        {
            problems.invalid(path, "", "must have only one blockDeviceMappings with rootVolume");
        }
        for (i, mapping) in self.block_device_mappings.iter().enumerate() {
            let Some(ebs) = &mapping.ebs else { continue };
            let ebs_path = path.index(i).child("ebs");
            if ebs.snapshot_id.is_none() && ebs.volume_size.is_none() {
                problems.required(&ebs_path, "snapshotID or volumeSize must be defined");
            }
            if let Some(rate) = ebs.volume_initialization_rate {
                if !(100..=300).contains(&rate) {
                    problems.invalid(
                        &ebs_path.child("volumeInitializationRate"),
                        &rate.to_string(),
                        "must be between 100 and 300",
                    );
                }
                if ebs.snapshot_id.is_none() {
                    problems.required(
                        &ebs_path.child("snapshotID"),
                        "volumeInitializationRate requires snapshotID",
                    );
                }
            }
            if let Some(size) = &ebs.volume_size {
                let size_path = ebs_path.child("volumeSize");
                match quantity::parse_value(&size.0) {
                    Ok(bytes)
                        if bytes > 0 && crate::validation::matches_pattern(VOLUME_SIZE_PATTERN, &size.0) => {}
                    _ => problems.invalid(
                        &size_path,
                        &size.0,
                        "must be a size in Gi, G, Ti or T, at most 64T",
                    ),
                }
            }
        }
    }

    fn validate_network_interfaces(&self, path: &FieldPath, problems: &mut Problems) {
        if self.network_interfaces.is_empty() {
            return;
        }
        let mut seen = Vec::new();
        for (i, ni) in self.network_interfaces.iter().enumerate() {
            let ni_path = path.index(i);
            if ni.network_card_index < 0 {
                problems.invalid(
                    &ni_path.child("networkCardIndex"),
                    &ni.network_card_index.to_string(),
                    "must be >= 0",
                );
            }
            if ni.device_index < 0 {
                problems.invalid(
                    &ni_path.child("deviceIndex"),
                    &ni.device_index.to_string(),
                    "must be >= 0",
                );
            }
            let slot = (ni.network_card_index, ni.device_index);
            if seen.contains(&slot) {
                problems.push(
                    &ni_path,
                    crate::validation::ErrorType::Duplicate,
                    None,
                    "networkCardIndex and deviceIndex pairs must be unique",
                );
            }
            seen.push(slot);
        }
        let has_primary = self.network_interfaces.iter().any(|ni| {
            ni.network_card_index == 0
                && ni.device_index == 0
                && ni.interface_type == InterfaceType::Interface
        });
        if !has_primary {
            problems.required(path, "must include the primary interface (networkCardIndex 0, deviceIndex 0, interfaceType interface)");
        }
    }

    fn validate_metadata_and_tracking(&self, path: &FieldPath, problems: &mut Problems) {
        let hops = self.metadata_options.http_put_response_hop_limit;
        if !(1..=64).contains(&hops) {
            problems.invalid(
                &path.child("metadataOptions").child("httpPutResponseHopLimit"),
                &hops.to_string(),
                "must be between 1 and 64",
            );
        }
        if let Some(tracking) = &self.connection_tracking {
            let tracking_path = path.child("connectionTracking");
            let fields = [
                (
                    "tcpEstablishedTimeout",
                    tracking.tcp_established_timeout,
                    60,
                    432_000,
                ),
                ("udpStreamTimeout", tracking.udp_stream_timeout, 60, 180),
                ("udpTimeout", tracking.udp_timeout, 30, 60),
            ];
            if fields.iter().all(|(_, value, _, _)| value.is_none()) {
                problems.required(&tracking_path, "expected at least one, got none, ['tcpEstablishedTimeout', 'udpStreamTimeout', 'udpTimeout']");
            }
            for (name, value, min, max) in fields {
                if let Some(value) = value
                    && !(min..=max).contains(&value)
                {
                    problems.invalid(
                        &tracking_path.child(name),
                        &value.to_string(),
                        format!("must be between {min} and {max}"),
                    );
                }
            }
        }
    }
}

fn check_term_count(count: usize, field: &str, path: &FieldPath, problems: &mut Problems) {
    if count == 0 {
        problems.required(path, format!("{field} cannot be empty"));
    } else if count > 30 {
        problems.too_many(path, count, 30);
    }
}

fn validate_selector_tags(tags: &BTreeMap<String, String>, path: &FieldPath, problems: &mut Problems) {
    if tags.len() > 20 {
        problems.too_many(path, tags.len(), 20);
    }
    for (key, value) in tags {
        if key.is_empty() || value.is_empty() {
            problems.invalid(&path.key(key), value, "empty tag keys or values aren't supported");
        }
    }
}

fn has_id_shape(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    })
}

fn validate_alias(alias: &str, path: &FieldPath, problems: &mut Problems) {
    if alias.len() > 30 {
        problems.too_long(path, alias, 30);
    }
    let Some((family, version)) = alias.split_once('@') else {
        problems.invalid(
            path,
            alias,
            "'alias' is improperly formatted, must match the format 'family@version'",
        );
        return;
    };
    if family.is_empty() || !family.bytes().all(|b| b.is_ascii_alphanumeric()) || version.is_empty() {
        problems.invalid(
            path,
            alias,
            "'alias' is improperly formatted, must match the format 'family@version'",
        );
        return;
    }
    if AmiFamily::from_alias_family(family).is_none() {
        problems.not_supported(path, family, &ALIAS_FAMILIES.map(|(alias, _)| alias));
    } else if family.starts_with("windows") && version != "latest" {
        problems.invalid(path, alias, "windows families may only specify version 'latest'");
    }
}
