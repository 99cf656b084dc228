//! The AWS provider's costs against moto (through the test support's launcher), printing one
//! JSON object per measurement:
//!
//! 1. `catalogue_refresh`: describing moto's whole instance-type catalogue (about 1,400 types),
//!    its offerings, spot prices and the Price List API (the launcher answers an empty list, so
//!    the shipped prices stand in) and building the catalogue, as a refresh does; the first,
//!    cold run and then warm ones.
//! 2. `launches`: concurrent `CloudProvider::create` calls for identical NodeClaims through the
//!    CreateFleet batcher, as launches per second.
//!
//! moto is Python: the figures are dominated by the emulator, so they bound the provider's own
//! cost from above rather than measure AWS. Run (dev profile, as the project builds):
//! `cargo test -p nodewright-aws --bench moto` (see benches/README.md for the figures).

// A benchmark program: it fails loudly and converts counts to floats for reporting.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::{sync::Arc, time::Instant};

use jiff::{SignedDuration, Timestamp};
use nodewright_api::{EC2NodeClass, NodeClaim, clock::Clock};
use nodewright_aws::{
    AwsClients, AwsProvider, AwsSettings, StaticNodeClasses, instance_types::InstanceTypeProvider,
    launch::userdata::Cluster, nodeclass,
};
use nodewright_catalog::NodeSettings;
use nodewright_cloudprovider::CloudProvider;
use serde_json::json;
use support::Moto;

const K8S: &str = "1.33";

fn start() -> Timestamp {
    "2026-11-01T00:00:00Z".parse().unwrap()
}

async fn catalogue_refresh() {
    let moto = Moto::start_with_every_instance_type();
    let clients = AwsClients::new(&moto.sdk_config().await).unwrap();
    let refresh = std::time::Duration::from_mins(1);
    let provider = InstanceTypeProvider::new(
        clients.ec2.clone(),
        clients.pricing.clone(),
        clients.region.clone(),
        refresh,
    );
    for round in 0..4 {
        // Each round is past the refresh interval, so each describes EC2 again.
        let now = start() + SignedDuration::from_mins(2 * round);
        let began = Instant::now();
        let catalog = provider.catalog(&NodeSettings::default(), now).await.unwrap();
        let elapsed = began.elapsed();
        println!(
            "{}",
            json!({
                "bench": "catalogue_refresh",
                "round": round,
                "cold": round == 0,
                "instance_types": catalog.instance_types().len(),
                "offerings": catalog.instance_types().iter().map(|t| t.offerings.len()).sum::<usize>(),
                "wall_ms": elapsed.as_secs_f64() * 1000.0,
            })
        );
    }
}

fn node_claim(name: &str, node_class: &str) -> NodeClaim {
    serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {"karpenter.sh/nodepool": "default"}},
        "spec": {
            "requirements": [
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large", "c5.large"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
            ],
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class},
        },
    }))
    .unwrap()
}

async fn provider(moto: &Moto, cluster: &str) -> AwsProvider {
    let clients = AwsClients::new(&moto.sdk_config().await).unwrap();
    support::network(&clients.ec2, cluster, 31).await;
    support::seed_al2023_alias(moto, &clients.ssm, K8S).await;
    let settings = AwsSettings::new(cluster, K8S);
    let mut class: EC2NodeClass = support::node_class(cluster, cluster);
    class.metadata.generation = Some(1);
    let resolved = nodeclass::resolve(&clients, &settings, &class, start())
        .await
        .unwrap();
    class.status = Some(nodeclass::status(&class, &resolved, start()));
    let classes = StaticNodeClasses::new();
    classes.insert(class);
    AwsProvider::new(
        clients,
        settings,
        Some(Cluster {
            name: cluster.to_owned(),
            endpoint: "https://api.example".to_owned(),
            ca_bundle: "Q0E=".to_owned(),
            service_cidr: "10.100.0.0/16".to_owned(),
        }),
        Arc::new(classes),
        Clock::from_fn(start),
    )
}

async fn launches() {
    let moto = Moto::start();
    let cluster = "bench";
    let provider = Arc::new(provider(&moto, cluster).await);
    // Warm the instance-type cache and the launch template, as a running controller has them.
    provider
        .create(&node_claim("default-warm", cluster))
        .await
        .unwrap();
    let mut serial = 0;
    // At most 250 launches in all: the support network's subnets are /24s, and moto launches into
    // the first override's.
    for concurrent in [1, 10, 50, 100] {
        let began = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrent {
            serial += 1;
            let provider = Arc::clone(&provider);
            let claim = node_claim(&format!("default-{serial}"), cluster);
            tasks.spawn(async move { provider.create(&claim).await.unwrap() });
        }
        let launched = tasks.join_all().await.len();
        let elapsed = began.elapsed();
        println!(
            "{}",
            json!({
                "bench": "launches",
                "concurrent": concurrent,
                "launched": launched,
                "wall_ms": elapsed.as_secs_f64() * 1000.0,
                "launches_per_second": launched as f64 / elapsed.as_secs_f64(),
            })
        );
    }
}

#[tokio::main]
async fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if only.as_deref().is_none_or(|o| o == "refresh") {
        catalogue_refresh().await;
    }
    if only.as_deref().is_none_or(|o| o == "launches") {
        launches().await;
    }
}
