//! NodePool weights as the spot → on-demand fallback of the source document (seeds 15 and 16):
//! with every spot offering out of capacity, the pods of a burst end up on on-demand nodes of
//! the lower-weight pool, without a create/delete loop on the spot pool.
//!
//! What "no loop" means here: the spot NodeClaims of the first round fail once (each deleted
//! once, the offerings they tried marked unavailable), and the very next round puts the pods on
//! the on-demand pool: the spot pool ranks last for the unavailable TTL, so it is not worked
//! through 60 instance types at a time (a chain of ~20 failed claims with this catalogue, the
//! field reports' minutes-long fallback). So the cloud sees failures from one batch only, no
//! offering is tried twice while it is marked, and once the pods run nothing is created any more.
//!
//! After the unavailable-offerings TTL the spot offerings are usable again as far as the
//! controller knows. The right behaviour then is Karpenter's: the on-demand nodes stay, and
//! only consolidation may replace them with cheaper spot capacity; if spot is still out of
//! capacity, that replacement fails once per TTL and the on-demand nodes keep the pods. The
//! second test checks exactly that: the pods keep running on the nodes they have, the spot pool
//! is not retried more than once per TTL, and no node is deleted or added.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Lab;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{Api, api::DeleteParams};
use nodewright_api::{NodePool, labels};
use nodewright_catalog::CapacityType;
use nodewright_cloudprovider::OfferingKey;
use nodewright_sim::cloud::CloudEventKind;

const SPOT_POOL: &str = "spot-primary";
const FALLBACK_POOL: &str = "on-demand-fallback";
const PODS: usize = 5;
/// The spot claims of one provisioning round reach the cloud within this much simulated time
/// (the lifecycle's rounds and the lab's 5 s steps, with room for a slow machine: the lab's
/// clock runs 250 times faster than the wall clock). Without the fallback the chain of failed
/// rounds took minutes, and its 33 failed claims also exceed the one-per-pod bound.
const ONE_BATCH: SignedDuration = SignedDuration::from_mins(1);

/// The lab with the seed's two pools instead of the default one, every spot offering of the
/// catalogue out of capacity, and the controllers running.
async fn spot_out_of_capacity() -> Lab {
    let mut lab = Lab::without_controllers().await;
    let pools: Api<NodePool> = Api::all(lab.cluster.client());
    pools.delete("default", &DeleteParams::default()).await.unwrap();
    lab.cluster
        .apply_yaml(include_str!(
            "../../../examples/seeds/15-nodepool-spot-primary.yaml"
        ))
        .unwrap();
    lab.cluster
        .apply_yaml(include_str!(
            "../../../examples/seeds/16-nodepool-on-demand-fallback.yaml"
        ))
        .unwrap();
    let cloud = lab.cluster.cloud().unwrap();
    for instance_type in cloud.catalog().instance_types() {
        for offering in &instance_type.offerings {
            if offering.capacity_type == CapacityType::Spot {
                cloud.inject_insufficient_capacity(OfferingKey::new(
                    &instance_type.name,
                    &offering.zone,
                    offering.capacity_type,
                ));
            }
        }
    }
    lab.start_controllers();
    lab
}

/// Every insufficient-capacity error the cloud returned: when, the NodeClaim, the offering.
fn capacity_errors(lab: &Lab) -> Vec<(Timestamp, String, OfferingKey)> {
    lab.cluster
        .cloud()
        .unwrap()
        .events()
        .into_iter()
        .filter_map(|event| match event.kind {
            CloudEventKind::InsufficientCapacity { node_claim, offering } => {
                Some((event.at, node_claim, offering))
            }
            _ => None,
        })
        .collect()
}

/// NodeClaims whose launch failed for capacity.
fn failed_claims(lab: &Lab) -> BTreeSet<String> {
    capacity_errors(lab)
        .into_iter()
        .map(|(_, claim, _)| claim)
        .collect()
}

/// Every instance ever launched, by provider ID.
fn launched(lab: &Lab) -> BTreeSet<String> {
    lab.cluster
        .cloud()
        .unwrap()
        .all_instances()
        .into_iter()
        .map(|i| i.provider_id)
        .collect()
}

/// The NodePool and capacity type of the node each inflate pod runs on.
async fn hosting(lab: &Lab) -> Vec<(String, String)> {
    let nodes: BTreeMap<String, Node> = lab
        .stored::<Node>("", "nodes")
        .into_iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), n))
        .collect();
    lab.pods()
        .await
        .iter()
        .map(|pod: &Pod| {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .and_then(|name| nodes.get(name));
            let label = |key: &str| {
                node.and_then(|n| n.metadata.labels.as_ref())
                    .and_then(|l| l.get(key).cloned())
                    .unwrap_or_default()
            };
            (label(labels::NODE_POOL), label(labels::CAPACITY_TYPE))
        })
        .collect()
}

/// Asserts that no offering was tried again while the cache still marked it unavailable.
fn assert_no_retry_within_ttl(lab: &Lab) {
    let ttl = SignedDuration::try_from(lab.settings.unavailable_offering_ttl).unwrap();
    let mut last_tried: BTreeMap<OfferingKey, (Timestamp, String)> = BTreeMap::new();
    for (at, claim, offering) in capacity_errors(lab) {
        if let Some((before, before_claim)) = last_tried.get(&offering)
            && *before_claim != claim
        {
            assert!(
                at.duration_since(*before) >= ttl,
                "{offering:?} tried by {before_claim} at {before} and again by {claim} at {at}, \
                 within the unavailable TTL"
            );
        }
        last_tried.insert(offering, (at, claim));
    }
}

/// Asserts that every capacity error came from the first batch of spot claims.
fn assert_one_failed_batch(lab: &Lab) {
    let errors = capacity_errors(lab);
    let first = errors.first().expect("the spot pool was tried first").0;
    let last = errors.last().unwrap().0;
    assert!(
        last.duration_since(first) <= ONE_BATCH,
        "spot tried again after the first failure ({first} .. {last}): {:?}",
        failed_claims(lab)
    );
}

/// Runs the burst until every pod runs; returns the failed spot claims.
async fn burst_falls_back(lab: &Lab) -> BTreeSet<String> {
    lab.scale(i32::try_from(PODS).unwrap()).await;
    lab.run_until("every inflate pod running", || lab.running(PODS))
        .await;
    let hosts = hosting(lab).await;
    assert!(
        hosts
            .iter()
            .all(|(pool, capacity)| pool == FALLBACK_POOL && capacity == "on-demand"),
        "pods must run on on-demand nodes of {FALLBACK_POOL}: {hosts:?}\n{}",
        lab.leftovers()
    );
    let failed = failed_claims(lab);
    assert!(
        !failed.is_empty() && failed.iter().all(|c| c.starts_with(SPOT_POOL)),
        "the spot pool was tried first: {failed:?}"
    );
    assert!(
        failed.len() <= PODS,
        "at most one spot claim per pod failed: {failed:?}"
    );
    assert_one_failed_batch(lab);
    assert_no_retry_within_ttl(lab);
    let claims = lab.claims_in_store();
    assert!(
        claims.iter().all(|c| c.nodepool_name() == Some(FALLBACK_POOL)),
        "the failed spot claims are deleted: {}",
        lab.leftovers()
    );
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_out_of_capacity_falls_back_to_on_demand_without_a_loop() {
    let lab = spot_out_of_capacity().await;
    let failed = burst_falls_back(&lab).await;
    let instances = launched(&lab);

    // Settled: a minute later nothing new was tried or launched.
    lab.pass_minutes(1).await;
    assert_eq!(failed_claims(&lab), failed, "no new spot attempt");
    assert_eq!(launched(&lab), instances, "no new instance:\n{}", lab.leftovers());
    assert!(lab.running(PODS).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_nodes_stay_after_the_unavailable_ttl_expires() {
    let lab = spot_out_of_capacity().await;
    burst_falls_back(&lab).await;
    let nodes = lab.node_names();
    let instances = launched(&lab);
    let before = failed_claims(&lab);

    // Two TTLs and a bit: the spot offerings come back in the controller's cache twice.
    let ttl_minutes = i64::try_from(lab.settings.unavailable_offering_ttl.as_secs() / 60).unwrap();
    lab.pass_minutes(2 * ttl_minutes + 1).await;

    assert_eq!(
        lab.node_names(),
        nodes,
        "no node added or removed:\n{}",
        lab.leftovers()
    );
    assert_eq!(launched(&lab), instances, "no instance launched");
    assert!(lab.running(PODS).await, "the pods keep running");
    assert_no_retry_within_ttl(&lab);
    assert_eq!(
        failed_claims(&lab),
        before,
        "no pod waits, so nothing asks the spot pool again"
    );
}
