//! Loads 10,000 nodes and 200,000 pods into the store and prints the resident memory before and
//! after, with the bytes the objects' JSON takes: `cargo run --release -p nodewright-sim --example
//! memory [NODES PODS]`.

use std::time::Instant;

use nodewright_sim::store::{Store, StoreConfig, WriteOptions};
use serde_json::json;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[allow(clippy::cast_precision_loss)] // MiB figures for a report
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let pods: usize = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let before = rss_mib();
    let store = Store::new(StoreConfig::default());
    let registry = store.registry();
    let (node_info, pod_info) = (
        registry.get("", "nodes").ok_or("nodes")?,
        registry.get("", "pods").ok_or("pods")?,
    );
    let opts = WriteOptions::default();
    let rs_info = registry.get("apps", "replicasets").ok_or("replicasets")?;
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-7d9f8c6b5"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
    let rs_uid = store.create(&rs_info, "default", rs, &opts)?.uid.to_string();
    let started = Instant::now();
    for i in 0..nodes {
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("ip-10-0-{}-{}.ec2.internal", i / 250, i % 250), "labels": {
                "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "m6i.2xlarge",
                "topology.kubernetes.io/zone": "us-east-1a", "karpenter.sh/nodepool": "default", "karpenter.sh/capacity-type": "spot"}},
            "spec": {"providerID": format!("aws:///us-east-1a/i-{i:017x}"), "taints": [{"key": "example.com/t", "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "8", "memory": "32Gi", "pods": "58"}, "allocatable": {"cpu": "7910m", "memory": "31Gi", "pods": "58"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
        });
        store.create(&node_info, "", node, &opts)?;
    }
    for i in 0..pods {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("web-7d9f8c6b5-{i:06}"), "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5", "uid": rs_uid, "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"nodeName": format!("ip-10-0-{}-{}.ec2.internal", (i % nodes.max(1)) / 250, (i % nodes.max(1)) % 250),
                     "containers": [{"name": "web", "image": "public.ecr.aws/nginx/nginx:1.27", "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}]},
        });
        store.create(&pod_info, "default", pod, &opts)?;
    }
    let elapsed = started.elapsed();
    let after = rss_mib();
    let json_bytes: usize = store.stats().values().map(|(_, bytes)| bytes).sum();
    println!(
        "{nodes} nodes + {pods} pods created in {:.1}s",
        elapsed.as_secs_f64()
    );
    println!(
        "RSS {before:.0} MiB -> {after:.0} MiB (+{:.0} MiB); stored JSON and indexes {:.0} MiB",
        after - before,
        json_bytes as f64 / 1024.0 / 1024.0
    );
    Ok(())
}
