//! The fake cloud provider against hand-computed expectations: which offering a launch picks, what
//! requirements exclude, insufficient-capacity failover, idempotent deletion, the ledger's dollars,
//! spot interruptions and leak checks by tag.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::sync::{Arc, OnceLock};

use jiff::{SignedDuration, Timestamp};
use nodewright_api::{NodeClaim, NodePool, labels};
use nodewright_catalog::{CapacityType, Catalog, NodeSettings, Price};
use nodewright_cloudprovider::{CloudProvider, CloudProviderError, DriftReason, OfferingKey};
use nodewright_sim::{
    cloud::{
        CloudEventKind, FakeCloud, FakeCloudConfig, INVALID_RESOURCE_REQUEST, InstanceState, InterruptError,
        NO_COMPATIBLE_INSTANCE_TYPE, tags,
    },
    meta::ManualClock,
};
use serde_json::{Value, json};

/// m5.large and c5.large on-demand in us-east-1, from the AWS price list the catalogue ships.
const M5_LARGE_ON_DEMAND: Price = Price(96_000_000);
const C5_LARGE_ON_DEMAND: Price = Price(85_000_000);

fn catalog() -> Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG
        .get_or_init(|| Catalog::us_east_1(&NodeSettings::default()).unwrap())
        .clone()
}

fn start() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn cloud_with(config: FakeCloudConfig) -> (FakeCloud, ManualClock) {
    let clock = ManualClock::new(start());
    (FakeCloud::new(catalog(), clock.clock(), config), clock)
}

fn cloud() -> (FakeCloud, ManualClock) {
    cloud_with(FakeCloudConfig::default())
}

fn node_claim(name: &str, requirements: Value) -> NodeClaim {
    node_claim_requesting(name, requirements, json!({}))
}

// Callers build the JSON inline; taking it by value keeps them short.
#[allow(clippy::needless_pass_by_value)]
fn node_claim_requesting(name: &str, requirements: Value, requests: Value) -> NodeClaim {
    serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": { "name": name, "labels": { "karpenter.sh/nodepool": "default" } },
        "spec": {
            "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" },
            "requirements": requirements,
            "resources": { "requests": requests },
        }
    }))
    .unwrap()
}

fn req(key: &str, operator: &str, values: &[&str]) -> Value {
    json!({ "key": key, "operator": operator, "values": values })
}

fn label<'a>(claim: &'a NodeClaim, key: &str) -> &'a str {
    claim
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map_or("", String::as_str)
}

fn provider_id(claim: &NodeClaim) -> String {
    claim.status.as_ref().unwrap().provider_id.clone().unwrap()
}

fn key(instance_type: &str, zone: &str, capacity_type: CapacityType) -> OfferingKey {
    OfferingKey::new(instance_type, zone, capacity_type)
}

/// The catalogue's cheapest available offering of `capacity_type` among `types`, ties broken by
/// type name then zone: what the fake must launch.
fn cheapest(types: &[&str], capacity_type: CapacityType) -> OfferingKey {
    let catalog = catalog();
    let mut best: Option<(Price, String, String)> = None;
    for name in types {
        let instance_type = catalog.get(name).unwrap();
        for offering in instance_type.offerings.iter().filter(|o| o.available) {
            if offering.capacity_type != capacity_type {
                continue;
            }
            let candidate = (offering.price, (*name).to_owned(), offering.zone.clone());
            if best.as_ref().is_none_or(|b| candidate < *b) {
                best = Some(candidate);
            }
        }
    }
    let (_, name, zone) = best.unwrap();
    key(&name, &zone, capacity_type)
}

#[tokio::test]
async fn the_cheapest_on_demand_offering_is_launched_and_billed() {
    let (cloud, clock) = cloud();
    let provider: Arc<dyn CloudProvider> = Arc::new(cloud.clone());
    assert_eq!(provider.name(), "fake");
    let claim = node_claim(
        "default-a",
        json!([
            req(
                labels::INSTANCE_TYPE,
                "In",
                &["m5.large", "m5.xlarge", "c5.large"]
            ),
            req(labels::CAPACITY_TYPE, "In", &["on-demand"]),
        ]),
    );
    let launched = provider.create(&claim).await.unwrap();

    let expected = cheapest(&["m5.large", "m5.xlarge", "c5.large"], CapacityType::OnDemand);
    assert_eq!(
        expected.instance_type, "c5.large",
        "c5.large is $0.085/h, m5.large $0.096/h"
    );
    assert_eq!(label(&launched, labels::INSTANCE_TYPE), "c5.large");
    assert_eq!(label(&launched, labels::ZONE), expected.zone);
    assert_eq!(label(&launched, labels::CAPACITY_TYPE), "on-demand");
    assert_eq!(label(&launched, labels::ARCH), "amd64");
    assert_eq!(
        label(&launched, labels::NODE_POOL),
        "default",
        "existing labels are kept"
    );
    let id = provider_id(&launched);
    assert_eq!(id, format!("aws:///{}/i-00000000000000001", expected.zone));
    let status = launched.status.as_ref().unwrap();
    assert_eq!(status.capacity["cpu"].0, "2");
    assert_eq!(status.allocatable["cpu"].0, "1930m");
    assert_eq!(status.capacity["pods"].0, "29");

    let ledger = cloud.ledger();
    let entry = ledger.entry(&id).unwrap();
    assert_eq!(entry.price, C5_LARGE_ON_DEMAND);
    assert_eq!(entry.node_claim, "default-a");
    assert_eq!((entry.billed_seconds, entry.cost_nano_usd), (0, 0));
    clock.advance(SignedDuration::from_mins(90));
    // $0.085/h for 1.5 h = $0.1275.
    assert_eq!(cloud.ledger().entry(&id).unwrap().cost_nano_usd, 127_500_000);
}

#[tokio::test]
async fn spot_is_preferred_when_allowed_and_its_cheapest_offering_wins() {
    let (cloud, _clock) = cloud();
    let claim = node_claim(
        "default-spot",
        json!([
            req(labels::INSTANCE_TYPE, "In", &["m5.large"]),
            req(labels::CAPACITY_TYPE, "In", &["spot", "on-demand"]),
        ]),
    );
    let launched = cloud.create(&claim).await.unwrap();
    let expected = cheapest(&["m5.large"], CapacityType::Spot);
    assert_eq!(label(&launched, labels::CAPACITY_TYPE), "spot");
    assert_eq!(label(&launched, labels::ZONE), expected.zone);
    let price = cloud.ledger().entry(&provider_id(&launched)).unwrap().price;
    let catalog_price = catalog()
        .get("m5.large")
        .unwrap()
        .offerings
        .iter()
        .find(|o| o.zone == expected.zone && o.capacity_type == CapacityType::Spot)
        .unwrap()
        .price;
    assert_eq!(price, catalog_price);
    assert!(price < M5_LARGE_ON_DEMAND, "spot is discounted");
}

#[tokio::test]
async fn requirements_filter_zone_capacity_type_instance_type_and_arch() {
    let (cloud, _clock) = cloud();
    let claim = node_claim(
        "default-arm",
        json!([
            req(labels::ZONE, "In", &["us-east-1c"]),
            req(labels::CAPACITY_TYPE, "NotIn", &["spot"]),
            req(labels::ARCH, "In", &["arm64"]),
            req(labels::AWS_INSTANCE_FAMILY, "In", &["m6g", "m7g"]),
            req(labels::INSTANCE_TYPE, "NotIn", &["m6g.medium"]),
            req(labels::AWS_INSTANCE_CPU, "Gt", &["1"]),
            req("team", "In", &["payments"]),
        ]),
    );
    let launched = cloud.create(&claim).await.unwrap();
    assert_eq!(label(&launched, labels::ZONE), "us-east-1c");
    assert_eq!(label(&launched, labels::CAPACITY_TYPE), "on-demand");
    assert_eq!(label(&launched, labels::ARCH), "arm64");
    let family = label(&launched, labels::AWS_INSTANCE_FAMILY);
    assert!(family == "m6g" || family == "m7g", "{family}");
    let instance_type = label(&launched, labels::INSTANCE_TYPE).to_owned();
    assert_ne!(instance_type, "m6g.medium");
    assert!(label(&launched, labels::AWS_INSTANCE_CPU).parse::<i64>().unwrap() > 1);

    // Nothing cheaper satisfied the same requirements.
    let catalog = catalog();
    let chosen_price = cloud.ledger().entries[0].price;
    for t in catalog.instance_types() {
        let l = |k: &str| t.labels.get(k).map_or("", String::as_str);
        let allowed = l(labels::ARCH) == "arm64"
            && ["m6g", "m7g"].contains(&l(labels::AWS_INSTANCE_FAMILY))
            && t.name != "m6g.medium"
            && l(labels::AWS_INSTANCE_CPU).parse::<i64>().unwrap() > 1;
        for o in t.offerings.iter().filter(|o| o.available) {
            if allowed && o.zone == "us-east-1c" && o.capacity_type == CapacityType::OnDemand {
                assert!(
                    o.price >= chosen_price,
                    "{} is cheaper than {instance_type}",
                    t.name
                );
            }
        }
    }

    // Requests narrow further: 6 cores do not fit a 4-core type's allocatable.
    let big = node_claim_requesting(
        "default-big",
        json!([
            req(labels::INSTANCE_TYPE, "In", &["m5.xlarge", "m5.2xlarge"]),
            req(labels::CAPACITY_TYPE, "In", &["on-demand"]),
        ]),
        json!({ "cpu": "6", "memory": "1Gi" }),
    );
    let launched = cloud.create(&big).await.unwrap();
    assert_eq!(label(&launched, labels::INSTANCE_TYPE), "m5.2xlarge");
}

#[tokio::test]
async fn no_compatible_type_is_a_typed_error_naming_the_node_claim_and_requirement() {
    let (cloud, _clock) = cloud();
    let claim = node_claim(
        "default-mars",
        json!([
            req(labels::CAPACITY_TYPE, "In", &["on-demand"]),
            req(labels::ZONE, "In", &["mars-1a"]),
        ]),
    );
    match cloud.create(&claim).await {
        Err(CloudProviderError::CreateError { reason, message }) => {
            assert_eq!(reason, NO_COMPATIBLE_INSTANCE_TYPE);
            assert!(message.contains("default-mars"), "{message}");
            assert!(
                message.contains("`topology.kubernetes.io/zone In [mars-1a]`"),
                "{message}"
            );
        }
        other => panic!("expected a CreateError, got {other:?}"),
    }

    let too_big = node_claim_requesting(
        "default-huge",
        json!([req(labels::INSTANCE_TYPE, "In", &["m5.large"])]),
        json!({ "cpu": "64" }),
    );
    match cloud.create(&too_big).await {
        Err(CloudProviderError::CreateError { reason, message }) => {
            assert_eq!(reason, NO_COMPATIBLE_INSTANCE_TYPE);
            assert!(
                message.contains("default-huge") && message.contains("cpu 64000m"),
                "{message}"
            );
        }
        other => panic!("expected a CreateError, got {other:?}"),
    }

    let malformed = node_claim_requesting("default-bad", json!([]), json!({ "memory": "lots" }));
    match cloud.create(&malformed).await {
        Err(CloudProviderError::CreateError { reason, message }) => {
            assert_eq!(reason, INVALID_RESOURCE_REQUEST);
            assert!(
                message.contains("default-bad") && message.contains("memory"),
                "{message}"
            );
        }
        other => panic!("expected a CreateError, got {other:?}"),
    }
    assert!(
        cloud.all_instances().is_empty(),
        "failed launches leave nothing behind"
    );
}

#[tokio::test]
async fn insufficient_capacity_fails_over_within_the_node_claim_and_lists_what_it_tried() {
    let (cloud, _clock) = cloud();
    let two_zones = || {
        json!([
            req(labels::INSTANCE_TYPE, "In", &["c5.large"]),
            req(labels::CAPACITY_TYPE, "In", &["on-demand"]),
            req(labels::ZONE, "In", &["us-east-1a", "us-east-1b"]),
        ])
    };
    let zone_a = key("c5.large", "us-east-1a", CapacityType::OnDemand);
    let zone_b = key("c5.large", "us-east-1b", CapacityType::OnDemand);

    // Both zones cost the same, so us-east-1a is first; without capacity there, us-east-1b.
    cloud.inject_insufficient_capacity(zone_a.clone());
    let launched = cloud.create(&node_claim("default-1", two_zones())).await.unwrap();
    assert_eq!(label(&launched, labels::ZONE), "us-east-1b");
    let ice_events: Vec<OfferingKey> = cloud
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            CloudEventKind::InsufficientCapacity { offering, .. } => Some(offering),
            _ => None,
        })
        .collect();
    assert_eq!(ice_events, vec![zone_a.clone()]);

    // A NodeClaim that allows only the empty offering gets the error, with that offering.
    let only_a = json!([
        req(labels::INSTANCE_TYPE, "In", &["c5.large"]),
        req(labels::CAPACITY_TYPE, "In", &["on-demand"]),
        req(labels::ZONE, "In", &["us-east-1a"]),
    ]);
    match cloud.create(&node_claim("default-2", only_a)).await {
        Err(CloudProviderError::InsufficientCapacity {
            node_claim,
            offerings,
        }) => {
            assert_eq!(node_claim, "default-2");
            assert_eq!(offerings, vec![zone_a.clone()]);
        }
        other => panic!("expected InsufficientCapacity, got {other:?}"),
    }

    // With both zones empty, a fresh cloud tries both, cheapest first, and lists exactly them.
    let (fresh, _clock) = cloud_with(FakeCloudConfig::default());
    fresh.inject_insufficient_capacity(zone_a.clone());
    fresh.inject_insufficient_capacity(zone_b.clone());
    match fresh.create(&node_claim("default-3", two_zones())).await {
        Err(CloudProviderError::InsufficientCapacity { offerings, .. }) => {
            assert_eq!(offerings, vec![zone_a.clone(), zone_b.clone()]);
        }
        other => panic!("expected InsufficientCapacity, got {other:?}"),
    }
    assert!(fresh.instances().is_empty());

    // The offerings seen failing are unavailable to the scheduler until capacity returns.
    let pool: NodePool = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": { "name": "default" },
        "spec": { "template": { "spec": {
            "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" },
            "requirements": [] } } }
    }))
    .unwrap();
    let available = |types: &[nodewright_catalog::InstanceType], zone: &str| {
        let c5 = types.iter().find(|t| t.name == "c5.large").unwrap();
        c5.offerings
            .iter()
            .find(|o| o.zone == zone && o.capacity_type == CapacityType::OnDemand)
            .unwrap()
            .available
    };
    let types = fresh.get_instance_types(&pool).await.unwrap();
    assert!(!available(&types, "us-east-1a") && !available(&types, "us-east-1b"));
    assert!(available(&types, "us-east-1c"));
    fresh.restore_capacity(&zone_a);
    let types = fresh.get_instance_types(&pool).await.unwrap();
    assert!(available(&types, "us-east-1a"));
    let launched = fresh.create(&node_claim("default-4", two_zones())).await.unwrap();
    assert_eq!(label(&launched, labels::ZONE), "us-east-1a");
}

#[tokio::test]
async fn spot_capacity_failure_does_not_jump_to_on_demand_within_one_launch() {
    let (cloud, _clock) = cloud();
    let spot_a = key("c5.large", "us-east-1a", CapacityType::Spot);
    cloud.inject_insufficient_capacity(spot_a.clone());
    let either = || {
        json!([
            req(labels::INSTANCE_TYPE, "In", &["c5.large"]),
            req(labels::ZONE, "In", &["us-east-1a"]),
            req(labels::CAPACITY_TYPE, "In", &["spot", "on-demand"]),
        ])
    };
    // Like EC2 Fleet, one launch buys one capacity type: spot fails as a whole.
    match cloud.create(&node_claim("default-1", either())).await {
        Err(CloudProviderError::InsufficientCapacity { offerings, .. }) => {
            assert_eq!(offerings, vec![spot_a]);
        }
        other => panic!("expected InsufficientCapacity, got {other:?}"),
    }
    // The next launch knows spot is empty and buys on-demand, which the NodeClaim allows.
    let launched = cloud.create(&node_claim("default-2", either())).await.unwrap();
    assert_eq!(label(&launched, labels::CAPACITY_TYPE), "on-demand");
    // A spot-only NodeClaim has no fallback.
    let spot_only = json!([
        req(labels::INSTANCE_TYPE, "In", &["c5.large"]),
        req(labels::ZONE, "In", &["us-east-1a"]),
        req(labels::CAPACITY_TYPE, "In", &["spot"]),
    ]);
    let error = cloud
        .create(&node_claim("default-3", spot_only))
        .await
        .unwrap_err();
    assert!(error.is_insufficient_capacity(), "{error}");
}

#[tokio::test]
async fn delete_is_idempotent_and_the_instance_disappears() {
    let (cloud, _clock) = cloud();
    let claim = node_claim(
        "default-a",
        json!([req(labels::INSTANCE_TYPE, "In", &["m5.large"])]),
    );
    let launched = cloud.create(&claim).await.unwrap();
    let id = provider_id(&launched);
    assert_eq!(cloud.get(&id).await.unwrap(), launched);

    cloud.delete(&launched).await.unwrap();
    let again = cloud.delete(&launched).await.unwrap_err();
    assert!(
        matches!(&again, CloudProviderError::NodeClaimNotFound(name) if *name == id),
        "{again:?}"
    );
    assert!(cloud.get(&id).await.unwrap_err().is_node_claim_not_found());
    assert!(cloud.list().await.unwrap().is_empty());
    // A NodeClaim that never launched has nothing to delete.
    assert!(cloud.delete(&claim).await.unwrap_err().is_node_claim_not_found());
    assert_eq!(
        cloud.instance(&id).unwrap().state(cloud.now()),
        InstanceState::Terminated
    );
}

#[tokio::test]
async fn the_ledger_bills_from_running_to_termination_at_the_offering_price() {
    let (cloud, clock) = cloud_with(FakeCloudConfig {
        launch_latency: SignedDuration::from_mins(5),
        ..FakeCloudConfig::default()
    });
    let on_demand = |name: &str| {
        node_claim(
            name,
            json!([
                req(labels::INSTANCE_TYPE, "In", &["m5.large"]),
                req(labels::CAPACITY_TYPE, "In", &["on-demand"]),
            ]),
        )
    };
    let first = cloud.create(&on_demand("default-1")).await.unwrap();
    let first_id = provider_id(&first);
    assert_eq!(
        cloud.instance(&first_id).unwrap().state(cloud.now()),
        InstanceState::Pending
    );
    clock.advance(SignedDuration::from_mins(5));
    assert_eq!(
        cloud.instance(&first_id).unwrap().state(cloud.now()),
        InstanceState::Running
    );
    assert_eq!(
        cloud.ledger().total_cost_nano_usd(),
        0,
        "nothing is billed while pending"
    );

    clock.advance(SignedDuration::from_hours(2));
    let second = cloud.create(&on_demand("default-2")).await.unwrap();
    // Deleted while pending: never billed.
    let third = cloud.create(&on_demand("default-3")).await.unwrap();
    clock.advance(SignedDuration::from_mins(1));
    cloud.delete(&third).await.unwrap();
    clock.advance(SignedDuration::from_mins(4));
    // Now: first has run 2 h 5 min, second 0 s (it just turned running), third never ran.
    cloud.delete(&first).await.unwrap();
    clock.advance(SignedDuration::from_mins(30));

    let ledger = cloud.ledger();
    let first_entry = ledger.entry(&first_id).unwrap();
    assert_eq!(first_entry.price, M5_LARGE_ON_DEMAND);
    assert_eq!(first_entry.billed_seconds, 2 * 3600 + 5 * 60);
    // $0.096/h × 7500 s / 3600 = $0.2.
    assert_eq!(first_entry.cost_nano_usd, 200_000_000);
    let second_entry = ledger.entry(&provider_id(&second)).unwrap();
    assert_eq!(second_entry.billed_seconds, 30 * 60);
    assert_eq!(second_entry.cost_nano_usd, 48_000_000);
    let third_entry = ledger.entry(&provider_id(&third)).unwrap();
    assert_eq!((third_entry.billed_seconds, third_entry.cost_nano_usd), (0, 0));
    assert_eq!(ledger.total_billed_seconds(), 7500 + 1800);
    assert_eq!(ledger.total_cost_nano_usd(), 248_000_000);
}

#[tokio::test]
async fn a_spot_interruption_is_recorded_and_the_instance_is_reclaimed() {
    let (cloud, clock) = cloud();
    let spot = cloud
        .create(&node_claim(
            "default-spot",
            json!([
                req(labels::INSTANCE_TYPE, "In", &["m5.large"]),
                req(labels::CAPACITY_TYPE, "In", &["spot"]),
            ]),
        ))
        .await
        .unwrap();
    let id = provider_id(&spot);
    clock.advance(SignedDuration::from_mins(10));
    let reclaim_at = cloud.interrupt_spot(&id).unwrap();
    let interrupted_at = start() + SignedDuration::from_mins(10);
    assert_eq!(reclaim_at, interrupted_at + SignedDuration::from_mins(2));

    let warning = cloud.events().into_iter().find_map(|e| match e.kind {
        CloudEventKind::SpotInterruptionWarning {
            provider_id,
            reclaim_at,
        } => Some((e.at, provider_id, reclaim_at)),
        _ => None,
    });
    assert_eq!(warning, Some((interrupted_at, id.clone(), reclaim_at)));
    let instance = cloud.instance(&id).unwrap();
    assert_eq!(instance.interrupted_at, Some(interrupted_at));
    assert_eq!(
        cloud.get(&id).await.unwrap(),
        spot,
        "still running during the notice"
    );
    assert_eq!(cloud.instances().len(), 1);

    clock.advance(SignedDuration::from_mins(2));
    assert!(cloud.get(&id).await.unwrap_err().is_node_claim_not_found());
    assert!(cloud.instances().is_empty());
    assert!(cloud.list().await.unwrap().is_empty());
    assert_eq!(cloud.ledger().entry(&id).unwrap().billed_seconds, 12 * 60);
    assert_eq!(
        cloud.interrupt_spot(&id),
        Err(InterruptError::NotFound(id.clone()))
    );

    let on_demand = cloud
        .create(&node_claim(
            "default-od",
            json!([req(labels::CAPACITY_TYPE, "In", &["on-demand"])]),
        ))
        .await
        .unwrap();
    assert!(matches!(
        cloud.interrupt_spot(&provider_id(&on_demand)),
        Err(InterruptError::NotSpot { .. })
    ));
}

#[tokio::test]
async fn tagged_listing_shows_no_leaked_instance_after_deletes() {
    let (cloud, _clock) = cloud();
    let mut launched = Vec::new();
    for name in ["default-1", "default-2", "default-3"] {
        let claim = node_claim(
            name,
            json!([req(labels::INSTANCE_TYPE, "In", &["t3.micro", "t3.small"])]),
        );
        launched.push(cloud.create(&claim).await.unwrap());
    }
    let live = cloud.instances();
    assert_eq!(live.len(), 3);
    let first = &live[0].tags;
    assert_eq!(first[tags::NODE_POOL], "default");
    assert_eq!(first[tags::NODE_CLAIM], "default-1");
    assert_eq!(first[tags::NODE_CLASS], "default");
    assert_eq!(first[tags::CLUSTER_NAME], "nodewright-sim");
    assert_eq!(first["kubernetes.io/cluster/nodewright-sim"], "owned");
    let listed: Vec<String> = cloud.list().await.unwrap().iter().map(provider_id).collect();
    assert_eq!(listed, launched.iter().map(provider_id).collect::<Vec<_>>());

    cloud.delete(&launched[0]).await.unwrap();
    cloud.delete(&launched[2]).await.unwrap();
    let leaked: Vec<String> = cloud
        .instances()
        .into_iter()
        .filter(|i| i.tags[tags::NODE_POOL] == "default")
        .map(|i| i.tags[tags::NODE_CLAIM].clone())
        .collect();
    assert_eq!(leaked, vec!["default-2".to_owned()]);
    cloud.delete(&launched[1]).await.unwrap();
    assert!(cloud.instances().is_empty());
    assert_eq!(
        cloud.all_instances().len(),
        3,
        "terminated instances stay for the ledger"
    );
}

#[tokio::test]
async fn node_class_readiness_drift_and_repair_policies() {
    let (cloud, _clock) = cloud();
    let claim = node_claim(
        "default-a",
        json!([req(labels::INSTANCE_TYPE, "In", &["m5.large"])]),
    );
    cloud.mark_node_class_not_ready("default", "subnets not resolved");
    match cloud.create(&claim).await {
        Err(CloudProviderError::NodeClassNotReady { node_class, message }) => {
            assert_eq!(
                (node_class.as_str(), message.as_str()),
                ("default", "subnets not resolved")
            );
        }
        other => panic!("expected NodeClassNotReady, got {other:?}"),
    }
    cloud.mark_node_class_ready("default");
    let launched = cloud.create(&claim).await.unwrap();
    assert_eq!(cloud.is_drifted(&launched).await.unwrap(), None);
    cloud.mark_drifted(&provider_id(&launched), DriftReason::new("AMIDrift"));
    assert_eq!(
        cloud.is_drifted(&launched).await.unwrap(),
        Some(DriftReason::new("AMIDrift"))
    );
    let policies = cloud.repair_policies();
    let ready_false = policies.iter().find(|p| p.matches("Ready", "False")).unwrap();
    assert_eq!(
        ready_false.toleration_duration,
        std::time::Duration::from_mins(30)
    );
    let accelerated = policies
        .iter()
        .find(|p| p.matches("AcceleratedHardwareReady", "False"))
        .unwrap();
    assert_eq!(
        accelerated.toleration_duration,
        std::time::Duration::from_mins(10)
    );
}

#[tokio::test]
async fn a_new_node_class_ami_drifts_the_instances_launched_with_the_old_one() {
    let (cloud, _clock) = cloud();
    let claim = node_claim(
        "default-a",
        json!([req(labels::INSTANCE_TYPE, "In", &["m5.large"])]),
    );
    let old = cloud.create(&claim).await.unwrap();
    assert_eq!(
        old.status.as_ref().unwrap().image_id.as_deref(),
        Some(nodewright_sim::cloud::DEFAULT_AMI)
    );
    assert_eq!(cloud.is_drifted(&old).await.unwrap(), None);

    cloud.set_node_class_ami("default", "ami-0new");
    assert_eq!(
        cloud.is_drifted(&old).await.unwrap(),
        Some(DriftReason::new(nodewright_sim::cloud::AMI_DRIFT))
    );
    let new = cloud.create(&node_claim("default-b", json!([]))).await.unwrap();
    assert_eq!(new.status.as_ref().unwrap().image_id.as_deref(), Some("ami-0new"));
    assert_eq!(cloud.is_drifted(&new).await.unwrap(), None);

    // Another node class's instances are not touched; a terminated instance is not drifted.
    cloud.set_node_class_ami("other", "ami-0other");
    assert_eq!(cloud.is_drifted(&new).await.unwrap(), None);
    cloud.delete(&old).await.unwrap();
    assert_eq!(cloud.is_drifted(&old).await.unwrap(), None);
}
