//! One broken rule per manifest: each is rejected by `validate()` (or by strict decoding) with the
//! right field path, and by the CRD layer (OpenAPI structure or CEL) wherever Karpenter's CRDs
//! reject it; rules Karpenter checks only at run time are shown to pass the CRD layer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod support;

use nodewright_api::decode::decode_object;
use serde_json::{Value, json};
use support::{crd_verdict, edit, field_to_pointer};

/// Where Karpenter's CRD rejects the object.
#[derive(Debug, Clone, Copy)]
enum Crd {
    /// An OpenAPI constraint (pattern, enum, range, size) on the value at the field.
    Structure,
    /// A CEL rule whose message contains this text.
    Cel(&'static str),
    /// Not in the CRD: Karpenter's controllers (or kube-apiserver's object-meta checks) reject it.
    Accepts,
}

struct Case {
    name: &'static str,
    base: fn() -> Value,
    edits: Vec<(&'static str, Value)>,
    /// Field path `validate()` (or strict decoding) must name.
    field: &'static str,
    crd: Crd,
}

fn case(
    name: &'static str,
    base: fn() -> Value,
    edits: Vec<(&'static str, Value)>,
    field: &'static str,
    crd: Crd,
) -> Case {
    Case {
        name,
        base,
        edits,
        field,
        crd,
    }
}

fn nodepool() -> Value {
    json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": { "name": "default" },
        "spec": {
            "template": {
                "metadata": { "labels": { "team": "payments" } },
                "spec": {
                    "requirements": [
                        { "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"] },
                        { "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"] },
                        { "key": "karpenter.k8s.aws/instance-generation", "operator": "Gt", "values": ["2"] }
                    ],
                    "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" },
                    "taints": [{ "key": "example.com/dedicated", "value": "batch", "effect": "NoSchedule" }],
                    "expireAfter": "720h"
                }
            },
            "disruption": {
                "consolidationPolicy": "WhenEmptyOrUnderutilized",
                "consolidateAfter": "1m",
                "budgets": [{ "nodes": "10%" }, { "nodes": "0", "schedule": "0 9 * * mon-fri", "duration": "8h" }]
            },
            "limits": { "cpu": "1000", "memory": "1000Gi" },
            "weight": 10
        }
    })
}

fn static_nodepool() -> Value {
    edit(
        nodepool(),
        &[
            ("/spec/weight", Value::Null),
            ("/spec/limits", json!({ "nodes": "5" })),
            ("/spec/replicas", json!(3)),
        ],
    )
}

fn ec2nodeclass() -> Value {
    json!({
        "apiVersion": "karpenter.k8s.aws/v1",
        "kind": "EC2NodeClass",
        "metadata": { "name": "default" },
        "spec": {
            "amiSelectorTerms": [{ "alias": "al2023@latest" }],
            "role": "KarpenterNodeRole-my-cluster",
            "subnetSelectorTerms": [{ "tags": { "karpenter.sh/discovery": "my-cluster" } }],
            "securityGroupSelectorTerms": [{ "tags": { "karpenter.sh/discovery": "my-cluster" } }],
            "tags": { "team": "payments" },
            "blockDeviceMappings": [{ "deviceName": "/dev/xvda", "rootVolume": true, "ebs": { "volumeSize": "100Gi", "volumeType": "gp3", "encrypted": true } }],
            "kubelet": { "maxPods": 110, "evictionHard": { "memory.available": "5%" }, "imageGCHighThresholdPercent": 85, "imageGCLowThresholdPercent": 80 }
        }
    })
}

fn nodeclaim() -> Value {
    json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": { "name": "default-abcde", "labels": { "karpenter.sh/nodepool": "default" } },
        "spec": {
            "requirements": [
                { "key": "karpenter.sh/nodepool", "operator": "In", "values": ["default"] },
                { "key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large", "m5.xlarge"] }
            ],
            "resources": { "requests": { "cpu": "1500m", "pods": "3" } },
            "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
        }
    })
}

fn nodeoverlay() -> Value {
    json!({
        "apiVersion": "karpenter.sh/v1alpha1",
        "kind": "NodeOverlay",
        "metadata": { "name": "savings-plan" },
        "spec": {
            "requirements": [{ "key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["m5", "c5"] }],
            "priceAdjustment": "-20%",
            "weight": 10
        }
    })
}

fn capacitybuffer() -> Value {
    json!({
        "apiVersion": "autoscaling.x-k8s.io/v1beta1",
        "kind": "CapacityBuffer",
        "metadata": { "name": "warm", "namespace": "default" },
        "spec": { "podTemplateRef": { "name": "web" }, "replicas": 10 }
    })
}

fn requirement(key: &str, operator: &str, values: &[&str]) -> Value {
    json!({ "key": key, "operator": operator, "values": values })
}

const REQ0: &str = "/spec/template/spec/requirements/0";
const REQ2: &str = "/spec/template/spec/requirements/2";
const LABELS: &str = "/spec/template/metadata/labels";

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    use Crd::{Accepts, Cel, Structure};
    vec![
        // NodePool
        case(
            "weight below range",
            nodepool,
            vec![("/spec/weight", json!(0))],
            "spec.weight",
            Structure,
        ),
        case(
            "weight above range",
            nodepool,
            vec![("/spec/weight", json!(101))],
            "spec.weight",
            Structure,
        ),
        case(
            "In without values",
            nodepool,
            vec![(REQ0, requirement("kubernetes.io/arch", "In", &[]))],
            "spec.template.spec.requirements[0].values",
            Cel("operator 'In' must have a value"),
        ),
        case(
            "Gt with two values",
            nodepool,
            vec![(
                REQ2,
                requirement("karpenter.k8s.aws/instance-generation", "Gt", &["2", "3"]),
            )],
            "spec.template.spec.requirements[2].values",
            Cel("single positive integer"),
        ),
        case(
            "Gt negative",
            nodepool,
            vec![(
                REQ2,
                requirement("karpenter.k8s.aws/instance-generation", "Gt", &["-1"]),
            )],
            "spec.template.spec.requirements[2].values",
            Cel("single positive integer"),
        ),
        case(
            "Lt not a number",
            nodepool,
            vec![(
                REQ2,
                requirement("karpenter.k8s.aws/instance-generation", "Lt", &["six"]),
            )],
            "spec.template.spec.requirements[2].values",
            Cel(""),
        ),
        case(
            "Gte without value",
            nodepool,
            vec![(REQ2, requirement("karpenter.k8s.aws/instance-cpu", "Gte", &[]))],
            "spec.template.spec.requirements[2].values",
            Cel("single positive integer"),
        ),
        case(
            "minValues above values",
            nodepool,
            vec![(
                REQ0,
                json!({ "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"], "minValues": 2 }),
            )],
            "spec.template.spec.requirements[0].minValues",
            Cel("at least that many values"),
        ),
        case(
            "minValues zero",
            nodepool,
            vec![(
                REQ0,
                json!({ "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"], "minValues": 0 }),
            )],
            "spec.template.spec.requirements[0].minValues",
            Structure,
        ),
        case(
            "minValues above 50",
            nodepool,
            vec![(
                REQ0,
                json!({ "key": "kubernetes.io/arch", "operator": "Exists", "minValues": 51 }),
            )],
            "spec.template.spec.requirements[0].minValues",
            Structure,
        ),
        case(
            "requirement on karpenter.sh/nodepool",
            nodepool,
            vec![(REQ0, requirement("karpenter.sh/nodepool", "In", &["x"]))],
            "spec.template.spec.requirements[0].key",
            Cel("label \"karpenter.sh/nodepool\" is restricted"),
        ),
        case(
            "requirement on hostname",
            nodepool,
            vec![(REQ0, requirement("kubernetes.io/hostname", "In", &["x"]))],
            "spec.template.spec.requirements[0].key",
            Cel("kubernetes.io/hostname"),
        ),
        case(
            "requirement in karpenter.sh domain",
            nodepool,
            vec![(REQ0, requirement("karpenter.sh/spot-price", "Exists", &[]))],
            "spec.template.spec.requirements[0].key",
            Cel("label domain \"karpenter.sh\" is restricted"),
        ),
        case(
            "requirement in kubernetes.io domain",
            nodepool,
            vec![(REQ0, requirement("example.kubernetes.io/role", "Exists", &[]))],
            "spec.template.spec.requirements[0].key",
            Cel("label domain \"kubernetes.io\" is restricted"),
        ),
        case(
            "requirement in k8s.io domain",
            nodepool,
            vec![(REQ0, requirement("team.k8s.io/role", "Exists", &[]))],
            "spec.template.spec.requirements[0].key",
            Cel("label domain \"k8s.io\" is restricted"),
        ),
        case(
            "requirement in karpenter.k8s.aws domain",
            nodepool,
            vec![(REQ0, requirement("karpenter.k8s.aws/secret", "Exists", &[]))],
            "spec.template.spec.requirements[0].key",
            Cel("label domain \"karpenter.k8s.aws\" is restricted"),
        ),
        case(
            "requirement key with a space",
            nodepool,
            vec![(REQ0, requirement("my key", "Exists", &[]))],
            "spec.template.spec.requirements[0].key",
            Structure,
        ),
        case(
            "requirement value too long",
            nodepool,
            vec![(
                REQ0,
                json!({ "key": "kubernetes.io/arch", "operator": "In", "values": ["a".repeat(64)] }),
            )],
            "spec.template.spec.requirements[0].values[0]",
            Structure,
        ),
        case(
            "capacity type unknown",
            nodepool,
            vec![(
                "/spec/template/spec/requirements/1",
                requirement("karpenter.sh/capacity-type", "In", &["cheap"]),
            )],
            "spec.template.spec.requirements[1].values",
            Accepts,
        ),
        case(
            "too many requirements",
            nodepool,
            vec![(
                "/spec/template/spec/requirements",
                Value::Array(vec![requirement("example.com/x", "Exists", &[]); 101]),
            )],
            "spec.template.spec.requirements",
            Structure,
        ),
        case(
            "template label karpenter.sh/nodepool",
            nodepool,
            vec![(LABELS, json!({ "karpenter.sh/nodepool": "x" }))],
            "spec.template.metadata.labels[karpenter.sh/nodepool]",
            Cel("label \"karpenter.sh/nodepool\" is restricted"),
        ),
        case(
            "template label hostname",
            nodepool,
            vec![(LABELS, json!({ "kubernetes.io/hostname": "x" }))],
            "spec.template.metadata.labels[kubernetes.io/hostname]",
            Cel("kubernetes.io/hostname"),
        ),
        case(
            "template label in karpenter.sh",
            nodepool,
            vec![(LABELS, json!({ "karpenter.sh/team": "x" }))],
            "spec.template.metadata.labels[karpenter.sh/team]",
            Cel("label domain \"karpenter.sh\" is restricted"),
        ),
        case(
            "template label value invalid",
            nodepool,
            vec![(LABELS, json!({ "team": "not valid!" }))],
            "spec.template.metadata.labels[team]",
            Structure,
        ),
        case(
            "taint effect unknown",
            nodepool,
            vec![("/spec/template/spec/taints/0/effect", json!("Sometimes"))],
            "spec.template.spec.taints[0].effect",
            Structure,
        ),
        case(
            "taint key empty",
            nodepool,
            vec![("/spec/template/spec/taints/0/key", json!(""))],
            "spec.template.spec.taints[0].key",
            Structure,
        ),
        case(
            "taint repeated as startup taint",
            nodepool,
            vec![(
                "/spec/template/spec/startupTaints",
                json!([{ "key": "example.com/dedicated", "effect": "NoSchedule" }]),
            )],
            "spec.template.spec.startupTaints[0]",
            Accepts,
        ),
        case(
            "nodeClassRef name empty",
            nodepool,
            vec![("/spec/template/spec/nodeClassRef/name", json!(""))],
            "spec.template.spec.nodeClassRef.name",
            Cel("name may not be empty"),
        ),
        case(
            "nodeClassRef kind empty",
            nodepool,
            vec![("/spec/template/spec/nodeClassRef/kind", json!(""))],
            "spec.template.spec.nodeClassRef.kind",
            Cel("kind may not be empty"),
        ),
        case(
            "nodeClassRef group with slash",
            nodepool,
            vec![(
                "/spec/template/spec/nodeClassRef/group",
                json!("karpenter.k8s.aws/v1"),
            )],
            "spec.template.spec.nodeClassRef.group",
            Structure,
        ),
        case(
            "expireAfter in days",
            nodepool,
            vec![("/spec/template/spec/expireAfter", json!("30d"))],
            "spec.template.spec.expireAfter",
            Structure,
        ),
        case(
            "terminationGracePeriod Never",
            nodepool,
            vec![("/spec/template/spec/terminationGracePeriod", json!("Never"))],
            "spec.template.spec.terminationGracePeriod",
            Structure,
        ),
        case(
            "consolidateAfter words",
            nodepool,
            vec![("/spec/disruption/consolidateAfter", json!("soon"))],
            "spec.disruption.consolidateAfter",
            Structure,
        ),
        case(
            "budget over 100%",
            nodepool,
            vec![("/spec/disruption/budgets/0/nodes", json!("110%"))],
            "spec.disruption.budgets[0].nodes",
            Structure,
        ),
        case(
            "budget negative",
            nodepool,
            vec![("/spec/disruption/budgets/0/nodes", json!("-1"))],
            "spec.disruption.budgets[0].nodes",
            Structure,
        ),
        case(
            "schedule without duration",
            nodepool,
            vec![("/spec/disruption/budgets/1/duration", Value::Null)],
            "spec.disruption.budgets[1].duration",
            Cel("'schedule' must be set with 'duration'"),
        ),
        case(
            "duration without schedule",
            nodepool,
            vec![("/spec/disruption/budgets/0/duration", json!("1h"))],
            "spec.disruption.budgets[0].schedule",
            Cel("'schedule' must be set with 'duration'"),
        ),
        case(
            "budget duration in seconds",
            nodepool,
            vec![("/spec/disruption/budgets/1/duration", json!("30s"))],
            "spec.disruption.budgets[1].duration",
            Structure,
        ),
        case(
            "budget duration with two hour parts",
            nodepool,
            vec![("/spec/disruption/budgets/1/duration", json!("1h2h"))],
            "spec.disruption.budgets[1].duration",
            Structure,
        ),
        case(
            "schedule with four fields",
            nodepool,
            vec![("/spec/disruption/budgets/1/schedule", json!("0 9 * *"))],
            "spec.disruption.budgets[1].schedule",
            Structure,
        ),
        case(
            "schedule unknown descriptor",
            nodepool,
            vec![("/spec/disruption/budgets/1/schedule", json!("@fortnightly"))],
            "spec.disruption.budgets[1].schedule",
            Structure,
        ),
        case(
            "schedule wrapped hour range",
            nodepool,
            vec![("/spec/disruption/budgets/1/schedule", json!("0 19-7 * * *"))],
            "spec.disruption.budgets[1].schedule",
            Accepts,
        ),
        case(
            "schedule hour out of range",
            nodepool,
            vec![("/spec/disruption/budgets/1/schedule", json!("0 25 * * *"))],
            "spec.disruption.budgets[1].schedule",
            Accepts,
        ),
        case(
            "limit not a quantity",
            nodepool,
            vec![("/spec/limits/cpu", json!("lots"))],
            "spec.limits[cpu]",
            Structure,
        ),
        case(
            "static pool with cpu limit",
            static_nodepool,
            vec![("/spec/limits/cpu", json!("100"))],
            "spec.limits",
            Cel("only 'limits.nodes' is supported on static NodePools"),
        ),
        case(
            "static pool with weight",
            static_nodepool,
            vec![("/spec/weight", json!(5))],
            "spec.weight",
            Cel("'weight' is not supported on static NodePools"),
        ),
        case(
            "static pool negative replicas",
            static_nodepool,
            vec![("/spec/replicas", json!(-1))],
            "spec.replicas",
            Structure,
        ),
        case(
            "name not a DNS subdomain",
            nodepool,
            vec![("/metadata/name", json!("Default_Pool"))],
            "metadata.name",
            Accepts,
        ),
        // Decoding: enums and unknown fields, as a strict API server rejects them.
        case(
            "budget reason Expired",
            nodepool,
            vec![("/spec/disruption/budgets/0/reasons", json!(["Expired"]))],
            "spec.disruption.budgets[0].reasons[0]",
            Structure,
        ),
        case(
            "consolidation policy unknown",
            nodepool,
            vec![("/spec/disruption/consolidationPolicy", json!("Sometimes"))],
            "spec.disruption.consolidationPolicy",
            Structure,
        ),
        case(
            "operator unknown",
            nodepool,
            vec![(REQ0, requirement("kubernetes.io/arch", "Equals", &["amd64"]))],
            "spec.template.spec.requirements[0].operator",
            Structure,
        ),
        case(
            "v1beta1 expireAfter under disruption",
            nodepool,
            vec![("/spec/disruption/expireAfter", json!("720h"))],
            "spec.disruption.expireAfter",
            Accepts,
        ),
        case(
            "nodeClassRef missing",
            nodepool,
            vec![("/spec/template/spec/nodeClassRef", Value::Null)],
            "spec.template.spec.nodeClassRef",
            Structure,
        ),
        // EC2NodeClass
        case(
            "role and instanceProfile",
            ec2nodeclass,
            vec![("/spec/instanceProfile", json!("my-profile"))],
            "spec.instanceProfile",
            Cel("exactly one of ['role', 'instanceProfile']"),
        ),
        case(
            "neither role nor instanceProfile",
            ec2nodeclass,
            vec![("/spec/role", Value::Null)],
            "spec.role",
            Cel("exactly one of ['role', 'instanceProfile']"),
        ),
        case(
            "empty role",
            ec2nodeclass,
            vec![("/spec/role", json!(""))],
            "spec.role",
            Cel("role cannot be empty"),
        ),
        case(
            "alias with a second term",
            ec2nodeclass,
            vec![(
                "/spec/amiSelectorTerms/1",
                json!({ "id": "ami-0123456789abcdef0" }),
            )],
            "spec.amiSelectorTerms",
            Cel("'alias' is mutually exclusive"),
        ),
        case(
            "alias and id in one term",
            ec2nodeclass,
            vec![("/spec/amiSelectorTerms/0/id", json!("ami-0123456789abcdef0"))],
            "spec.amiSelectorTerms[0].alias",
            Cel("'alias' is mutually exclusive"),
        ),
        case(
            "alias without version",
            ec2nodeclass,
            vec![("/spec/amiSelectorTerms/0/alias", json!("al2023"))],
            "spec.amiSelectorTerms[0].alias",
            Cel("improperly formatted"),
        ),
        case(
            "alias of unknown family",
            ec2nodeclass,
            vec![("/spec/amiSelectorTerms/0/alias", json!("ubuntu@latest"))],
            "spec.amiSelectorTerms[0].alias",
            Cel("family is not supported"),
        ),
        case(
            "windows alias pinned",
            ec2nodeclass,
            vec![("/spec/amiSelectorTerms/0/alias", json!("windows2022@v20240101"))],
            "spec.amiSelectorTerms[0].alias",
            Cel("windows families may only specify version 'latest'"),
        ),
        case(
            "amiFamily contradicts alias",
            ec2nodeclass,
            vec![("/spec/amiFamily", json!("Bottlerocket"))],
            "spec.amiFamily",
            Cel("amiFamily must be 'AL2023' or 'Custom'"),
        ),
        case(
            "amiFamily missing without alias",
            ec2nodeclass,
            vec![(
                "/spec/amiSelectorTerms/0",
                json!({ "id": "ami-0123456789abcdef0" }),
            )],
            "spec.amiFamily",
            Cel("must specify amiFamily"),
        ),
        case(
            "no AMI terms",
            ec2nodeclass,
            vec![("/spec/amiSelectorTerms", json!([]))],
            "spec.amiSelectorTerms",
            Structure,
        ),
        case(
            "empty subnet term",
            ec2nodeclass,
            vec![("/spec/subnetSelectorTerms/0", json!({}))],
            "spec.subnetSelectorTerms[0]",
            Cel("expected at least one, got none, ['tags', 'id']"),
        ),
        case(
            "subnet id with tags",
            ec2nodeclass,
            vec![("/spec/subnetSelectorTerms/0/id", json!("subnet-0abc"))],
            "spec.subnetSelectorTerms[0].id",
            Cel("'id' is mutually exclusive"),
        ),
        case(
            "subnet id of a VPC",
            ec2nodeclass,
            vec![("/spec/subnetSelectorTerms/0", json!({ "id": "vpc-0abc" }))],
            "spec.subnetSelectorTerms[0].id",
            Structure,
        ),
        case(
            "no subnet terms",
            ec2nodeclass,
            vec![("/spec/subnetSelectorTerms", json!([]))],
            "spec.subnetSelectorTerms",
            Cel("subnetSelectorTerms cannot be empty"),
        ),
        case(
            "security group id and name",
            ec2nodeclass,
            vec![(
                "/spec/securityGroupSelectorTerms/0",
                json!({ "id": "sg-0abc", "name": "nodes" }),
            )],
            "spec.securityGroupSelectorTerms[0].id",
            Cel("'id' is mutually exclusive"),
        ),
        case(
            "security group tag value empty",
            ec2nodeclass,
            vec![(
                "/spec/securityGroupSelectorTerms/0/tags",
                json!({ "karpenter.sh/discovery": "" }),
            )],
            "spec.securityGroupSelectorTerms[0].tags[karpenter.sh/discovery]",
            Cel("empty tag keys or values"),
        ),
        case(
            "restricted tag eks cluster name",
            ec2nodeclass,
            vec![("/spec/tags", json!({ "eks:eks-cluster-name": "x" }))],
            "spec.tags[eks:eks-cluster-name]",
            Cel("restricted tag matching eks:eks-cluster-name"),
        ),
        case(
            "restricted tag cluster ownership",
            ec2nodeclass,
            vec![(
                "/spec/tags",
                json!({ "kubernetes.io/cluster/my-cluster": "owned" }),
            )],
            "spec.tags[kubernetes.io/cluster/my-cluster]",
            Cel("restricted tag matching kubernetes.io/cluster/"),
        ),
        case(
            "restricted tag nodepool",
            ec2nodeclass,
            vec![("/spec/tags", json!({ "karpenter.sh/nodepool": "x" }))],
            "spec.tags[karpenter.sh/nodepool]",
            Cel("restricted tag matching karpenter.sh/nodepool"),
        ),
        case(
            "two root volumes",
            ec2nodeclass,
            vec![(
                "/spec/blockDeviceMappings/1",
                json!({ "deviceName": "/dev/xvdb", "rootVolume": true, "ebs": { "volumeSize": "20Gi" } }),
            )],
            "spec.blockDeviceMappings",
            Cel("only one blockDeviceMappings with rootVolume"),
        ),
        case(
            "volume without size or snapshot",
            ec2nodeclass,
            vec![("/spec/blockDeviceMappings/0/ebs", json!({ "volumeType": "gp3" }))],
            "spec.blockDeviceMappings[0].ebs",
            Cel("snapshotID or volumeSize must be defined"),
        ),
        case(
            "volume too large",
            ec2nodeclass,
            vec![("/spec/blockDeviceMappings/0/ebs/volumeSize", json!("100Ti"))],
            "spec.blockDeviceMappings[0].ebs.volumeSize",
            Structure,
        ),
        case(
            "volume above the CRD's 58Ti even though under 64 TiB",
            ec2nodeclass,
            vec![("/spec/blockDeviceMappings/0/ebs/volumeSize", json!("60Ti"))],
            "spec.blockDeviceMappings[0].ebs.volumeSize",
            Structure,
        ),
        case(
            "volume size with a leading zero",
            ec2nodeclass,
            vec![("/spec/blockDeviceMappings/0/ebs/volumeSize", json!("0100Gi"))],
            "spec.blockDeviceMappings[0].ebs.volumeSize",
            Structure,
        ),
        case(
            "initialization rate too low",
            ec2nodeclass,
            vec![(
                "/spec/blockDeviceMappings/0/ebs",
                json!({ "snapshotID": "snap-1", "volumeInitializationRate": 50 }),
            )],
            "spec.blockDeviceMappings[0].ebs.volumeInitializationRate",
            Structure,
        ),
        case(
            "initialization rate without snapshot",
            ec2nodeclass,
            vec![(
                "/spec/blockDeviceMappings/0/ebs/volumeInitializationRate",
                json!(200),
            )],
            "spec.blockDeviceMappings[0].ebs.snapshotID",
            Cel("volumeInitializationRate requires snapshotID"),
        ),
        case(
            "hop limit zero",
            ec2nodeclass,
            vec![("/spec/metadataOptions", json!({ "httpPutResponseHopLimit": 0 }))],
            "spec.metadataOptions.httpPutResponseHopLimit",
            Structure,
        ),
        case(
            "http tokens unknown",
            ec2nodeclass,
            vec![("/spec/metadataOptions", json!({ "httpTokens": "maybe" }))],
            "spec.metadataOptions.httpTokens",
            Structure,
        ),
        case(
            "udp timeout out of range",
            ec2nodeclass,
            vec![("/spec/connectionTracking", json!({ "udpTimeout": 10 }))],
            "spec.connectionTracking.udpTimeout",
            Structure,
        ),
        case(
            "reservation owner not an account",
            ec2nodeclass,
            vec![(
                "/spec/capacityReservationSelectorTerms",
                json!([{ "tags": { "team": "a" }, "ownerID": "12" }]),
            )],
            "spec.capacityReservationSelectorTerms[0].ownerID",
            Structure,
        ),
        case(
            "placement group name and id",
            ec2nodeclass,
            vec![(
                "/spec/placementGroupSelector",
                json!({ "name": "pg", "id": "pg-0abc" }),
            )],
            "spec.placementGroupSelector",
            Cel("exactly one of ['name', 'id']"),
        ),
        case(
            "kubelet registerWithTaints",
            ec2nodeclass,
            vec![(
                "/spec/kubelet/registerWithTaints",
                json!([{ "key": "a", "effect": "NoSchedule" }]),
            )],
            "spec.kubelet.registerWithTaints",
            Accepts,
        ),
        case(
            "kubelet unknown eviction signal",
            ec2nodeclass,
            vec![("/spec/kubelet/evictionHard", json!({ "memory.free": "5%" }))],
            "spec.kubelet.evictionHard[memory.free]",
            Accepts,
        ),
        case(
            "kubelet image GC thresholds inverted",
            ec2nodeclass,
            vec![("/spec/kubelet/imageGCLowThresholdPercent", json!(90))],
            "spec.kubelet.imageGCHighThresholdPercent",
            Accepts,
        ),
        case(
            "kubelet soft eviction without grace period",
            ec2nodeclass,
            vec![("/spec/kubelet/evictionSoft", json!({ "memory.available": "10%" }))],
            "spec.kubelet.evictionSoftGracePeriod",
            Accepts,
        ),
        case(
            "kubelet negative podsPerCore",
            ec2nodeclass,
            vec![("/spec/kubelet/podsPerCore", json!(-1))],
            "spec.kubelet.podsPerCore",
            Accepts,
        ),
        // NodeClaim
        case(
            "nodeclaim In without values",
            nodeclaim,
            vec![("/spec/requirements/1/values", json!([]))],
            "spec.requirements[1].values",
            Cel("operator 'In' must have a value"),
        ),
        case(
            "nodeclaim hostname requirement",
            nodeclaim,
            vec![(
                "/spec/requirements/0",
                requirement("kubernetes.io/hostname", "In", &["a"]),
            )],
            "spec.requirements[0].key",
            Cel("kubernetes.io/hostname"),
        ),
        case(
            "nodeclaim request not a quantity",
            nodeclaim,
            vec![("/spec/resources/requests/cpu", json!("one"))],
            "spec.resources.requests[cpu]",
            Structure,
        ),
        // NodeOverlay
        case(
            "overlay price and adjustment",
            nodeoverlay,
            vec![("/spec/price", json!("0.5"))],
            "spec.priceAdjustment",
            Cel("cannot set both 'price' and 'priceAdjustment'"),
        ),
        case(
            "overlay adjustment below -100%",
            nodeoverlay,
            vec![("/spec/priceAdjustment", json!("-150%"))],
            "spec.priceAdjustment",
            Structure,
        ),
        case(
            "overlay cpu capacity",
            nodeoverlay,
            vec![("/spec/capacity", json!({ "cpu": "2" }))],
            "spec.capacity[cpu]",
            Cel("invalid resource restricted"),
        ),
        case(
            "overlay weight zero",
            nodeoverlay,
            vec![("/spec/weight", json!(0))],
            "spec.weight",
            Structure,
        ),
        case(
            "overlay NotIn without values",
            nodeoverlay,
            vec![(
                "/spec/requirements/0",
                requirement("karpenter.k8s.aws/instance-family", "NotIn", &[]),
            )],
            "spec.requirements[0].values",
            Cel("must have a value defined"),
        ),
        // CapacityBuffer
        case(
            "buffer with both references",
            capacitybuffer,
            vec![(
                "/spec/scalableRef",
                json!({ "kind": "Deployment", "name": "web" }),
            )],
            "spec.scalableRef",
            Cel("either PodTemplateRef or ScalableRef"),
        ),
        case(
            "buffer template without size",
            capacitybuffer,
            vec![("/spec/replicas", Value::Null)],
            "spec.replicas",
            Cel("replicas or limits must also be set"),
        ),
        case(
            "buffer percentage with template",
            capacitybuffer,
            vec![("/spec/percentage", json!(10))],
            "spec.percentage",
            Cel("percentage may only be set with scalableRef"),
        ),
        case(
            "buffer negative replicas",
            capacitybuffer,
            vec![("/spec/replicas", json!(-1))],
            "spec.replicas",
            Structure,
        ),
    ]
}

/// `validate()` after strict decoding, or the decode error, as the list of field paths named.
fn nodewright_fields(object: &Value) -> Vec<String> {
    match decode_object(object.clone(), "case", 0) {
        Ok(decoded) => match decoded.validate() {
            Ok(()) => Vec::new(),
            Err(invalid) => invalid.errors.iter().map(|e| e.field.clone()).collect(),
        },
        Err(error) => match error.invalid() {
            Some(invalid) => invalid.errors.iter().map(|e| e.field.clone()).collect(),
            None => panic!("unexpected decode failure: {error}"),
        },
    }
}

#[test]
fn bases_are_valid_in_both_layers() {
    for base in [
        nodepool,
        static_nodepool,
        ec2nodeclass,
        nodeclaim,
        nodeoverlay,
        capacitybuffer,
    ] {
        let object = base();
        assert!(
            nodewright_fields(&object).is_empty(),
            "{:?}",
            nodewright_fields(&object)
        );
        let kind = object["kind"].as_str().unwrap();
        let verdict = crd_verdict(kind, &object, None);
        assert!(verdict.accepted(), "{kind}: {verdict:?}");
    }
}

#[test]
fn every_invalid_manifest_is_rejected_with_its_field() {
    let cases = cases();
    assert!(
        cases.len() >= 40,
        "the table must hold at least 40 cases, has {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let object = edit((case.base)(), &case.edits);
        let fields = nodewright_fields(&object);
        if !fields.iter().any(|f| f == case.field) {
            failures.push(format!(
                "{}: validate() named {fields:?}, expected {}",
                case.name, case.field
            ));
        }
        let kind = object["kind"].as_str().unwrap();
        let verdict = crd_verdict(kind, &object, None);
        match case.crd {
            Crd::Structure => {
                let pointer = field_to_pointer(case.field);
                if !verdict
                    .structural
                    .iter()
                    .any(|p| p.starts_with(&pointer) || pointer.starts_with(p.as_str()) && !p.is_empty())
                {
                    failures.push(format!(
                        "{}: CRD structure did not reject {pointer}: {verdict:?}",
                        case.name
                    ));
                }
            }
            Crd::Cel(message) => {
                if !verdict.cel.iter().any(|m| m.contains(message)) {
                    failures.push(format!(
                        "{}: no CEL rule rejected it with {message:?}: {verdict:?}",
                        case.name
                    ));
                }
            }
            Crd::Accepts => {
                if !verdict.accepted() {
                    failures.push(format!("{}: expected the CRD layer to accept (Karpenter checks this at run time): {verdict:?}", case.name));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let object = edit(
        nodepool(),
        &[
            ("/spec/weight", json!(0)),
            (REQ0, requirement("kubernetes.io/hostname", "In", &[])),
            ("/spec/disruption/budgets/1/duration", Value::Null),
            ("/spec/limits/cpu", json!("lots")),
        ],
    );
    let fields = nodewright_fields(&object);
    for expected in [
        "spec.weight",
        "spec.template.spec.requirements[0].key",
        "spec.template.spec.requirements[0].values",
        "spec.disruption.budgets[1].duration",
        "spec.limits[cpu]",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} missing from {fields:?}"
        );
    }
}

#[test]
fn error_text_names_object_field_and_rule() {
    let object = edit(nodepool(), &[("/spec/weight", json!(0))]);
    let decoded = decode_object(object, "case", 0).unwrap();
    let text = decoded.validate().unwrap_err().to_string();
    assert_eq!(
        text,
        "NodePool \"default\" is invalid: spec.weight: Invalid value: \"0\": must be between 1 and 100"
    );
}

#[test]
fn unknown_fields_are_all_named() {
    let object = edit(
        nodepool(),
        &[
            ("/spec/disruption/expireAfter", json!("720h")),
            ("/spec/template/spec/kubelet", json!({})),
        ],
    );
    let error = decode_object(object, "case", 0).unwrap_err();
    let invalid = error.invalid().expect("a field error");
    let fields: Vec<_> = invalid
        .errors
        .iter()
        .map(|e| (e.field.as_str(), e.detail.as_str()))
        .collect();
    assert!(
        fields.contains(&("spec.disruption.expireAfter", "unknown field")),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("spec.template.spec.kubelet", "unknown field")),
        "{fields:?}"
    );
}
