//! NodeClaims as the solver sees them: an in-flight NodeClaim (no Node yet) is a node that pods
//! will be able to use, so pods it was made for do not cause another one; and every NodeClaim
//! counts against its NodePool's limits.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Pod, Taint};
use kube::ResourceExt;
use nodewright_api::{NodeClaim, Operator, labels};
use nodewright_catalog::{InstanceType, Resources};
use nodewright_solver::{
    ExistingNode,
    pod::{PodFacts, Term, tolerates},
};

use super::resources;

/// The instance types the claim may become (its `node.kubernetes.io/instance-type In` values)
/// among `types`.
fn listed_types<'a>(claim: &NodeClaim, types: &'a [InstanceType]) -> Vec<&'a InstanceType> {
    let by_name: HashMap<&str, &InstanceType> = types.iter().map(|t| (t.name.as_str(), t)).collect();
    claim
        .listed_instance_types()
        .filter_map(|n| by_name.get(n).copied())
        .collect()
}

fn requests(claim: &NodeClaim) -> Resources {
    let (requests, invalid) = resources::parse(&claim.spec.resources.requests);
    if !invalid.is_empty() {
        tracing::warn!(
            nodeclaim = claim.name_any(),
            invalid = invalid.join(", "),
            "spec.resources.requests: amounts that do not parse count as zero"
        );
    }
    requests
}

/// Whether the claim's instance is known: `status.allocatable` is set at launch.
fn is_launched(claim: &NodeClaim) -> bool {
    claim.status.as_ref().is_some_and(|s| !s.allocatable.is_empty())
}

/// What pods can request on the claim's node: `status.allocatable` once launched; before, the
/// least any instance type it lists offers (never less than its own requests, which every listed
/// type holds), or its requests when its types are unknown (its NodePool is not usable now).
fn allocatable(claim: &NodeClaim, types: &[InstanceType]) -> Resources {
    if let Some(status) = claim.status.as_ref().filter(|_| is_launched(claim)) {
        let (allocatable, invalid) = resources::parse(&status.allocatable);
        if !invalid.is_empty() {
            tracing::warn!(
                nodeclaim = claim.name_any(),
                invalid = invalid.join(", "),
                "status.allocatable: amounts that do not parse count as zero"
            );
        }
        return allocatable;
    }
    let requests = requests(claim);
    let listed: Vec<Resources> = listed_types(claim, types)
        .iter()
        .map(|t| t.allocatable())
        .collect();
    match resources::minimum(&listed) {
        Some(least) => resources::maximum([&least, &requests]).unwrap_or(requests),
        None => requests,
    }
}

/// What the claim counts against its NodePool's limits, with `nodes: 1`: `status.capacity`
/// once launched; before, the most any listed type could bring (Karpenter subtracts the maximum
/// too, so limits are never overrun by a launch that picks a larger type), or its requests.
pub(crate) fn capacity(claim: &NodeClaim, types: &[InstanceType]) -> Resources {
    let launched = claim.status.as_ref().filter(|_| is_launched(claim)).map(|s| {
        if s.capacity.is_empty() {
            &s.allocatable
        } else {
            &s.capacity
        }
    });
    let mut capacity = if let Some(list) = launched {
        resources::parse(list).0
    } else {
        let listed: Vec<&Resources> = listed_types(claim, types).iter().map(|t| &t.capacity).collect();
        let requests = requests(claim);
        resources::maximum(listed.into_iter().chain([&requests])).unwrap_or(requests)
    };
    capacity.set("nodes", 1);
    capacity
}

/// The labels the claim's node will carry that are known now: its own labels (the NodePool's,
/// and the instance's once launched), every requirement with a single `In` value, and its name
/// as hostname (Karpenter's hostname domain of a NodeClaim without a Node).
fn known_labels(claim: &NodeClaim) -> BTreeMap<String, String> {
    let mut known: BTreeMap<String, String> = claim
        .labels()
        .iter()
        .map(|(k, v)| (labels::normalize_label_key(k).to_owned(), v.clone()))
        .collect();
    for requirement in &claim.spec.requirements {
        if requirement.operator == Operator::In
            && let [value] = requirement.values.as_slice()
        {
            known
                .entry(labels::normalize_label_key(&requirement.key).to_owned())
                .or_insert_with(|| value.clone());
        }
    }
    known
        .entry(labels::HOSTNAME.to_owned())
        .or_insert_with(|| claim.name_any());
    known
}

/// An in-flight NodeClaim as a node for the solver: its known labels, its taints (startup
/// taints leave before the node is initialized, so pods need not tolerate them), what it will
/// offer, and the DaemonSet pods that will run there, whose requests are taken off.
pub(crate) fn in_flight_node(claim: &NodeClaim, types: &[InstanceType], daemons: &[Pod]) -> ExistingNode {
    let labels = known_labels(claim);
    let taints = claim.spec.taints.clone();
    let pods = daemons
        .iter()
        .filter(|d| daemon_runs_on(d, &labels, &taints))
        .cloned()
        .collect();
    ExistingNode {
        name: claim.name_any(),
        labels,
        taints,
        allocatable: allocatable(claim, types),
        pods,
        initialized: false,
    }
}

/// Whether a DaemonSet's pod would run on a node with these labels and taints: it tolerates
/// every NoSchedule/NoExecute taint and one of its required node terms (with its nodeSelector)
/// matches the labels.
fn daemon_runs_on(daemon: &Pod, node_labels: &BTreeMap<String, String>, taints: &[Taint]) -> bool {
    let facts = PodFacts::from_pod(daemon);
    let tolerated = taints
        .iter()
        .all(|t| t.effect == "PreferNoSchedule" || tolerates(&facts.tolerations, t));
    tolerated
        && facts
            .required_terms
            .iter()
            .any(|term| term.iter().all(|t| term_matches(t, node_labels)))
}

fn term_matches(term: &Term, node_labels: &BTreeMap<String, String>) -> bool {
    let value = node_labels.get(labels::normalize_label_key(&term.key));
    let number = |v: &str| v.parse::<i64>().ok();
    let compare = |op: fn(i64, i64) -> bool| match (
        value.and_then(|v| number(v)),
        term.values.first().and_then(|v| number(v)),
    ) {
        (Some(have), Some(bound)) => op(have, bound),
        _ => false,
    };
    match term.operator {
        Operator::In => value.is_some_and(|v| term.values.contains(v)),
        Operator::NotIn => value.is_none_or(|v| !term.values.contains(v)),
        Operator::Exists => value.is_some(),
        Operator::DoesNotExist => value.is_none(),
        Operator::Gt => compare(|a, b| a > b),
        Operator::Lt => compare(|a, b| a < b),
        Operator::Gte => compare(|a, b| a >= b),
        Operator::Lte => compare(|a, b| a <= b),
    }
}

#[cfg(test)]
mod tests {
    use nodewright_catalog::{CapacityType, Offering, Overhead, Price};
    use serde_json::json;

    use super::*;

    fn claim(extra_status: Option<serde_json::Value>) -> NodeClaim {
        let mut value = json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": { "name": "default-abcde", "labels": { "karpenter.sh/nodepool": "default", "team": "a" } },
            "spec": {
                "requirements": [
                    { "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"] },
                    { "key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a", "us-east-1b"] },
                    { "key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["small", "large"] }
                ],
                "resources": { "requests": { "cpu": "1500m", "pods": "3" } },
                "taints": [{ "key": "dedicated", "value": "x", "effect": "NoSchedule" }],
                "startupTaints": [{ "key": "cni", "effect": "NoSchedule" }],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
            }
        });
        if let Some(status) = extra_status {
            value["status"] = status;
        }
        serde_json::from_value(value).unwrap()
    }

    fn instance_type(name: &str, cpu_millis: i64) -> InstanceType {
        InstanceType {
            name: name.to_owned(),
            labels: BTreeMap::new(),
            capacity: Resources {
                cpu_millis,
                memory_bytes: 1 << 30,
                pods: 10,
                ..Resources::default()
            },
            overhead: Overhead {
                kube_reserved: Resources {
                    cpu_millis: 100,
                    ..Resources::default()
                },
                ..Overhead::default()
            },
            offerings: vec![Offering {
                zone: "us-east-1a".into(),
                capacity_type: CapacityType::OnDemand,
                price: Price::from_usd(0.1),
                available: true,
                reservation: None,
            }],
        }
    }

    fn daemon(spec: &serde_json::Value) -> Pod {
        let mut pod = json!({ "metadata": { "name": "ds", "namespace": "kube-system" },
            "spec": { "containers": [{ "name": "agent", "resources": { "requests": { "cpu": "100m" } } }] } });
        if let (Some(base), Some(extra)) = (pod["spec"].as_object_mut(), spec.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(pod).unwrap()
    }

    #[test]
    fn an_unlaunched_claim_offers_the_least_of_its_listed_types() {
        let types = [
            instance_type("small", 2000),
            instance_type("large", 8000),
            instance_type("other", 500),
        ];
        let node = in_flight_node(&claim(None), &types, &[]);
        assert_eq!(node.name, "default-abcde");
        assert_eq!(
            node.allocatable.cpu_millis, 1900,
            "small: 2 cpu minus 100m reserved"
        );
        assert_eq!(node.allocatable.pods, 10);
        assert!(!node.initialized);
        // Unknown types: its requests.
        let unknown = in_flight_node(&claim(None), &[], &[]);
        assert_eq!(unknown.allocatable.cpu_millis, 1500);
        assert_eq!(unknown.allocatable.pods, 3);
    }

    #[test]
    fn a_launched_claim_offers_its_status_allocatable() {
        let launched = claim(Some(json!({
            "providerID": "aws:///us-east-1a/i-1",
            "capacity": { "cpu": "4", "pods": "20" },
            "allocatable": { "cpu": "3800m", "pods": "20" }
        })));
        let node = in_flight_node(&launched, &[], &[]);
        assert_eq!(node.allocatable.cpu_millis, 3800);
        let counted = capacity(&launched, &[]);
        assert_eq!(counted.cpu_millis, 4000);
        assert_eq!(counted.get("nodes"), 1);
    }

    #[test]
    fn limits_count_the_largest_listed_type_until_launch() {
        let types = [instance_type("small", 2000), instance_type("large", 8000)];
        let counted = capacity(&claim(None), &types);
        assert_eq!(counted.cpu_millis, 8000);
        assert_eq!(counted.get("nodes"), 1);
        assert_eq!(capacity(&claim(None), &[]).cpu_millis, 1500);
    }

    #[test]
    fn known_labels_come_from_labels_single_requirements_and_the_name() {
        let node = in_flight_node(&claim(None), &[], &[]);
        assert_eq!(node.labels["karpenter.sh/nodepool"], "default");
        assert_eq!(node.labels["team"], "a");
        assert_eq!(node.labels["kubernetes.io/arch"], "amd64");
        assert_eq!(node.labels["kubernetes.io/hostname"], "default-abcde");
        assert!(
            !node.labels.contains_key("topology.kubernetes.io/zone"),
            "two zones: not known yet"
        );
        assert_eq!(
            node.taints.len(),
            1,
            "startup taints are not for pods to tolerate"
        );
    }

    #[test]
    fn daemon_set_pods_that_would_run_there_take_their_share() {
        let tolerant = daemon(&json!({ "tolerations": [{ "operator": "Exists" }] }));
        let intolerant = daemon(&json!({}));
        let arm_only = daemon(&json!({ "tolerations": [{ "operator": "Exists" }],
            "nodeSelector": { "kubernetes.io/arch": "arm64" } }));
        let node = in_flight_node(&claim(None), &[], &[tolerant, intolerant, arm_only]);
        assert_eq!(
            node.pods.len(),
            1,
            "only the pod tolerating the taint and matching amd64"
        );
    }

    #[test]
    fn terms_match_labels_like_the_scheduler() {
        let labels = BTreeMap::from([
            ("gen".to_owned(), "5".to_owned()),
            ("team".to_owned(), "a".to_owned()),
        ]);
        let term = |key: &str, operator, values: &[&str]| Term {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        };
        assert!(term_matches(&term("team", Operator::In, &["a", "b"]), &labels));
        assert!(!term_matches(&term("team", Operator::NotIn, &["a"]), &labels));
        assert!(term_matches(&term("zone", Operator::NotIn, &["a"]), &labels));
        assert!(term_matches(&term("gen", Operator::Gt, &["4"]), &labels));
        assert!(!term_matches(&term("gen", Operator::Lt, &["5"]), &labels));
        assert!(term_matches(&term("gen", Operator::Lte, &["5"]), &labels));
        assert!(!term_matches(&term("team", Operator::Gte, &["1"]), &labels));
        assert!(term_matches(&term("zone", Operator::DoesNotExist, &[]), &labels));
        assert!(term_matches(&term("team", Operator::Exists, &[]), &labels));
    }
}
