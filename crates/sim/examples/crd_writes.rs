//! Times NodePool creates through the store (schema pruning, defaults, validation and CEL):
//! `cargo run --release -p nodewright-sim --example crd_writes [N]`.

use std::time::Instant;

use nodewright_sim::store::{Store, StoreConfig, WriteOptions};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args().nth(1).map_or(Ok(1000), |a| a.parse())?;
    let store = Store::new(StoreConfig::default());
    let crds = store
        .registry()
        .get("apiextensions.k8s.io", "customresourcedefinitions")
        .ok_or("crds")?;
    for crd in nodewright_api::crds::all() {
        store.create(&crds, "", serde_json::to_value(crd)?, &WriteOptions::default())?;
    }
    let pools = store
        .registry()
        .get("karpenter.sh", "nodepools")
        .ok_or("nodepools")?;
    let started = Instant::now();
    for i in 0..n {
        let pool = json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": format!("p{i}")},
            "spec": {"template": {"spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
            "requirements": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}}}});
        store.create(&pools, "", pool, &WriteOptions::default())?;
    }
    let elapsed = started.elapsed();
    println!(
        "{n} NodePool creates in {:.2}s ({:.0} µs each)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / f64::from(n)
    );
    Ok(())
}
