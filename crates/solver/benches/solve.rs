//! Criterion benchmark of one solve on Karpenter's diverse mix (400 synthetic types), for
//! statistically sound comparisons between versions. The `scheduling` bench binary covers every
//! size and the cost comparisons; figures are recorded in benches/README.md.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Pod;
use nodewright_catalog::{CapacityType, InstanceType, Offering, Overhead, Price, Resources};
use nodewright_solver::{PoolInput, Problem, solve};
use serde_json::json;

fn types() -> Vec<InstanceType> {
    let mut types = Vec::new();
    for (family, factor) in [1.0, 0.9, 1.1, 0.95, 1.05].iter().enumerate() {
        for arch in ["amd64", "arm64"] {
            for ratio in [1, 2, 4, 8] {
                for cpu in [1i64, 2, 4, 8, 16, 32, 48, 64, 96, 128] {
                    let usd = (0.025 * cpu as f64 + 0.004 * (cpu * ratio) as f64)
                        * factor
                        * if arch == "arm64" { 0.8 } else { 1.0 };
                    let name = format!("f{family}{arch}-r{ratio}.{cpu}x");
                    let offerings = ["a", "b", "c"]
                        .iter()
                        .flat_map(|z| {
                            [(CapacityType::OnDemand, usd), (CapacityType::Spot, usd * 0.35)].map(
                                |(capacity_type, price)| Offering {
                                    zone: format!("zone-{z}"),
                                    capacity_type,
                                    price: Price::from_usd(price),
                                    available: true,
                                    reservation: None,
                                },
                            )
                        })
                        .collect();
                    types.push(InstanceType {
                        labels: BTreeMap::from([
                            ("node.kubernetes.io/instance-type".into(), name.clone()),
                            ("kubernetes.io/arch".into(), arch.into()),
                        ]),
                        name,
                        capacity: Resources {
                            cpu_millis: cpu * 1000,
                            memory_bytes: (cpu * ratio) << 30,
                            pods: 110,
                            ..Resources::default()
                        },
                        overhead: Overhead::default(),
                        offerings,
                    });
                }
            }
        }
    }
    types
}

fn pods(count: usize) -> Vec<Pod> {
    let mut seed = 0x5eed_u64;
    (0..count)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let cpu = [100, 250, 500, 1000, 1500][(seed % 5) as usize];
            let memory = [100, 256, 512, 1024, 2048, 4096][(seed / 5 % 6) as usize];
            let app = format!("k{}-g{}", i % 5, i % 10);
            let selector = json!({ "matchLabels": { "app": app } });
            let extra = match i % 5 {
                1 => json!({ "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector }] }),
                2 => json!({ "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector }] }),
                3 => json!({ "affinity": { "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{ "topologyKey": "topology.kubernetes.io/zone", "labelSelector": selector }] } } }),
                4 => json!({ "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{ "topologyKey": "kubernetes.io/hostname", "labelSelector": selector }] } } }),
                _ => json!({}),
            };
            let mut spec = json!({ "containers": [{ "name": "app", "resources": { "requests": { "cpu": format!("{cpu}m"), "memory": format!("{memory}Mi") } } }] });
            spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value(json!({ "metadata": { "name": format!("p{i}"), "namespace": "default", "labels": { "app": app } }, "spec": spec })).unwrap()
        })
        .collect()
}

fn diverse(c: &mut Criterion) {
    let nodepool: nodewright_api::NodePool = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": { "name": "default" },
        "spec": { "template": { "spec": { "requirements": [], "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } } } }
    }))
    .unwrap();
    let mut group = c.benchmark_group("solve/diverse");
    group.sample_size(10);
    for count in [1000usize, 5000] {
        let problem = Problem {
            pods: pods(count),
            nodepools: vec![PoolInput {
                nodepool: nodepool.clone(),
                instance_types: types(),
                in_use: Resources::default(),
            }],
            ..Problem::default()
        };
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(BenchmarkId::from_parameter(count), &problem, |b, problem| {
            b.iter(|| solve(problem));
        });
    }
    group.finish();
}

criterion_group!(benches, diverse);
criterion_main!(benches);
