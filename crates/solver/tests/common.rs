//! Fixtures for solver tests: synthetic instance types, NodePools and pods.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// test support fails loudly
// Fixtures take json! literals by value and price synthetic types from small integers.
#![allow(clippy::needless_pass_by_value, clippy::cast_precision_loss)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use nodewright_api::NodePool;
use nodewright_catalog::{CapacityType, InstanceType, Offering, Overhead, Price, Resources};
use nodewright_solver::{PoolInput, Problem};
use serde_json::{Value, json};

pub(crate) const GIB: i64 = 1 << 30;
pub(crate) const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

/// A type with `cpu` cores and `memory_gib`, no overhead, offered on-demand in every zone at `usd`/h
/// and as spot at 40% of that.
pub(crate) fn instance_type(name: &str, cpu: i64, memory_gib: i64, usd: f64) -> InstanceType {
    let family = name.split('.').next().unwrap_or(name);
    let labels = BTreeMap::from([
        ("node.kubernetes.io/instance-type".to_owned(), name.to_owned()),
        (
            "kubernetes.io/arch".to_owned(),
            if family.ends_with('g') { "arm64" } else { "amd64" }.to_owned(),
        ),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("karpenter.k8s.aws/instance-family".to_owned(), family.to_owned()),
        ("karpenter.k8s.aws/instance-cpu".to_owned(), cpu.to_string()),
    ]);
    let mut offerings = Vec::new();
    for zone in ZONES {
        offerings.push(Offering {
            zone: zone.into(),
            capacity_type: CapacityType::OnDemand,
            price: Price::from_usd(usd),
            available: true,
            reservation: None,
        });
        offerings.push(Offering {
            zone: zone.into(),
            capacity_type: CapacityType::Spot,
            price: Price::from_usd(usd * 0.4),
            available: true,
            reservation: None,
        });
    }
    InstanceType {
        name: name.into(),
        labels,
        capacity: Resources {
            cpu_millis: cpu * 1000,
            memory_bytes: memory_gib * GIB,
            pods: 110,
            ..Resources::default()
        },
        overhead: Overhead::default(),
        offerings,
    }
}

/// c-, m- and r-like families in three sizes each, priced like AWS (m: 0.048/vCPU·h).
pub(crate) fn small_catalog() -> Vec<InstanceType> {
    let mut types = Vec::new();
    for (size, cpu) in [("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16)] {
        types.push(instance_type(
            &format!("c6i.{size}"),
            cpu,
            cpu * 2,
            0.0425 * cpu as f64,
        ));
        types.push(instance_type(
            &format!("m6i.{size}"),
            cpu,
            cpu * 4,
            0.048 * cpu as f64,
        ));
        types.push(instance_type(
            &format!("r6i.{size}"),
            cpu,
            cpu * 8,
            0.063 * cpu as f64,
        ));
    }
    types
}

pub(crate) fn nodepool(name: &str, spec: Value) -> NodePool {
    let mut spec = spec;
    let template = spec
        .as_object_mut()
        .unwrap()
        .entry("template")
        .or_insert(json!({ "spec": {} }));
    let template_spec = template
        .as_object_mut()
        .unwrap()
        .entry("spec")
        .or_insert(json!({}));
    let ts = template_spec.as_object_mut().unwrap();
    ts.entry("requirements").or_insert(json!([]));
    ts.entry("nodeClassRef")
        .or_insert(json!({ "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }));
    serde_json::from_value(json!({ "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": { "name": name }, "spec": spec })).unwrap()
}

pub(crate) fn pool(name: &str, spec: Value, types: Vec<InstanceType>) -> PoolInput {
    PoolInput {
        nodepool: nodepool(name, spec),
        instance_types: types,
        in_use: Resources::default(),
    }
}

/// A pod requesting `cpu` (e.g. "500m") and `memory` (e.g. "1Gi"), with extra spec fields.
pub(crate) fn pod(name: &str, cpu: &str, memory: &str, labels: Value, extra: Value) -> Pod {
    let mut spec = json!({ "containers": [{ "name": "app", "image": "app", "resources": { "requests": { "cpu": cpu, "memory": memory } } }] });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(
        json!({ "metadata": { "name": name, "namespace": "default", "labels": labels }, "spec": spec }),
    )
    .unwrap()
}

pub(crate) fn pods(
    prefix: &str,
    count: usize,
    cpu: &str,
    memory: &str,
    labels: Value,
    extra: Value,
) -> Vec<Pod> {
    (0..count)
        .map(|i| {
            pod(
                &format!("{prefix}-{i}"),
                cpu,
                memory,
                labels.clone(),
                extra.clone(),
            )
        })
        .collect()
}

pub(crate) fn problem(pods: Vec<Pod>, pools: Vec<PoolInput>) -> Problem {
    Problem {
        pods,
        nodepools: pools,
        ..Problem::default()
    }
}
