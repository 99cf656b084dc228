//! Test fixtures shared by the unit tests of the provisioner and disruption: a NodePool,
//! synthetic instance types, pods and existing nodes.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::core::v1::Pod;
use nodewright_api::{NodePool, labels};
use nodewright_catalog::{CapacityType, InstanceType, Offering, Overhead, Price, Resources};
use nodewright_solver::{ExistingNode, PoolInput, Problem};
use serde_json::{Value, json};

/// A value decoded from JSON, shared.
pub(crate) fn arc<T: serde::de::DeserializeOwned>(value: Value) -> Arc<T> {
    // Fixtures are literals that decode; a typo should fail the test loudly.
    #[allow(clippy::unwrap_used)]
    Arc::new(serde_json::from_value(value).unwrap())
}

/// The `default` NodePool: on-demand, the `default` EC2NodeClass.
pub(crate) fn pool() -> Arc<NodePool> {
    arc(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": { "name": "default", "uid": "pool-uid" },
        "spec": { "template": { "spec": {
            "requirements": [{ "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"] }],
            "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
        } } }
    }))
}

/// An instance type with `cpu_millis`, 8 GiB and 110 pods, on-demand in us-east-1a at `usd` an hour.
pub(crate) fn instance_type(name: &str, cpu_millis: i64, usd: f64) -> InstanceType {
    InstanceType {
        name: name.to_owned(),
        labels: BTreeMap::from([(labels::INSTANCE_TYPE.to_owned(), name.to_owned())]),
        capacity: Resources {
            cpu_millis,
            memory_bytes: 8 << 30,
            pods: 110,
            ..Resources::default()
        },
        overhead: Overhead::default(),
        offerings: vec![Offering {
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::OnDemand,
            price: Price::from_usd(usd),
            available: true,
            reservation: None,
        }],
    }
}

/// A Running pod `name` in `default` on `node`, requesting `cpu`.
pub(crate) fn pod(name: &str, node: &str, cpu: &str) -> Pod {
    (*arc::<Pod>(json!({
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "nodeName": node, "containers": [{ "name": "c", "resources": { "requests": { "cpu": cpu } } }] },
        "status": { "phase": "Running" }
    })))
    .clone()
}

/// An initialized node of the `default` pool in us-east-1a, on-demand, with `cpu_millis`, 8 GiB
/// and 110 pods allocatable, running `pods`.
pub(crate) fn existing(name: &str, cpu_millis: i64, pods: Vec<Pod>) -> ExistingNode {
    ExistingNode {
        name: name.to_owned(),
        labels: BTreeMap::from([
            (labels::NODE_POOL.to_owned(), "default".to_owned()),
            (labels::CAPACITY_TYPE.to_owned(), "on-demand".to_owned()),
            (labels::ZONE.to_owned(), "us-east-1a".to_owned()),
            ("kubernetes.io/hostname".to_owned(), name.to_owned()),
        ]),
        taints: Vec::new(),
        allocatable: Resources {
            cpu_millis,
            memory_bytes: 8 << 30,
            pods: 110,
            ..Resources::default()
        },
        pods,
        initialized: true,
    }
}

/// A problem with the `default` pool offering `types`, and `nodes` already running.
pub(crate) fn problem(types: Vec<InstanceType>, nodes: Vec<ExistingNode>) -> Problem {
    Problem {
        nodepools: vec![PoolInput {
            nodepool: (*pool()).clone(),
            instance_types: types,
            in_use: Resources::default(),
        }],
        existing_nodes: nodes,
        ..Problem::default()
    }
}

/// The `default` pool may disrupt `n` nodes.
pub(crate) fn budgets(n: u64) -> BTreeMap<String, u64> {
    BTreeMap::from([("default".to_owned(), n)])
}
