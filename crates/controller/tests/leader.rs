//! Leader election against the embedded API server: one holder at a time, renewal keeps the
//! Lease, another replica takes over only after the holder stops renewing for the lease duration.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use nodewright_controller::leader::{LeaseConfig, try_acquire_or_renew};
use nodewright_sim::testing::TestCluster;

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "kube-system".to_owned(),
        name: "karpenter-leader-election".to_owned(),
        identity: identity.to_owned(),
        duration: Duration::from_secs(15),
        renew_interval: Duration::from_secs(2),
    }
}

fn at(seconds: i64) -> Timestamp {
    "2026-01-01T00:00:00Z"
        .parse::<Timestamp>()
        .unwrap()
        .checked_add(SignedDuration::from_secs(seconds))
        .unwrap()
}

#[tokio::test]
async fn one_replica_leads_until_it_stops_renewing() {
    let cluster = TestCluster::start().await.unwrap();
    let api: Api<Lease> = Api::namespaced(cluster.client(), "kube-system");
    let (a, b) = (config("replica-a"), config("replica-b"));

    assert!(try_acquire_or_renew(&api, &a, at(0)).await.unwrap());
    assert!(!try_acquire_or_renew(&api, &b, at(0)).await.unwrap());
    assert!(try_acquire_or_renew(&api, &a, at(5)).await.unwrap());
    // Renewed at 5 s with a 15 s lease: still A's at 19 s.
    assert!(!try_acquire_or_renew(&api, &b, at(19)).await.unwrap());
    // A stopped renewing: B takes over at 20 s, and A cannot take it back.
    assert!(try_acquire_or_renew(&api, &b, at(20)).await.unwrap());
    assert!(!try_acquire_or_renew(&api, &a, at(21)).await.unwrap());

    let lease = api.get("karpenter-leader-election").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(lease.lease_transitions, Some(1));
    assert_eq!(lease.lease_duration_seconds, Some(15));
    assert_eq!(lease.acquire_time.unwrap().0, at(20));
}
