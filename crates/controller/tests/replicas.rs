//! Two controller replicas on one cluster: only the Lease holder acts; when it stops, the other
//! takes the Lease once it expires and carries on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::{sync::Arc, time::Duration};

use jiff::SignedDuration;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use nodewright_api::{NodeClaim, labels};
use nodewright_controller::{
    Election, Settings,
    leader::{LeaseConfig, try_acquire_or_renew},
};
use nodewright_sim::{
    cloud::FakeCloudConfig,
    dataplane::DataPlaneConfig,
    testing::{DEFAULT_NODE_POOL, TestCluster},
};
use serde_json::json;

fn claim(name: &str) -> NodeClaim {
    serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {labels::NODE_POOL: "default"},
                     "finalizers": [labels::TERMINATION_FINALIZER]},
        "spec": {
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
            "requirements": [
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}]
        }
    }))
    .unwrap()
}

/// The Lease the controllers elect on, held by `identity`.
fn lease_for(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "kube-system".to_owned(),
        name: "karpenter-leader-election".to_owned(),
        identity: identity.to_owned(),
        duration: Duration::from_secs(15),
        renew_interval: Duration::from_secs(2),
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("karpenter-leader-election")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_the_other_replica_takes_over_when_it_stops() {
    let (cluster, clock) =
        TestCluster::start_with_default_node_class(FakeCloudConfig::default(), DataPlaneConfig::default())
            .await
            .unwrap();
    cluster.apply_yaml(DEFAULT_NODE_POOL).unwrap();
    let replica = |identity: &str| {
        let settings = Settings {
            identity: identity.to_owned(),
            lease_renew_interval: Duration::from_millis(20),
            ..Settings::default()
        };
        tokio::spawn(nodewright_controller::run(
            cluster.client(),
            Arc::new(cluster.cloud().unwrap().clone()),
            clock.clock(),
            settings,
            Election::Lease,
        ))
    };
    let leases: Api<Lease> = Api::namespaced(cluster.client(), "kube-system");
    // Someone else holds the lease: neither replica may act.
    let outsider = lease_for("outsider");
    assert!(
        try_acquire_or_renew(&leases, &outsider, clock.now())
            .await
            .unwrap()
    );
    let mut replicas = vec![
        ("replica-a", replica("replica-a")),
        ("replica-b", replica("replica-b")),
    ];
    let claims: Api<NodeClaim> = Api::all(cluster.client());
    claims
        .create(&PostParams::default(), &claim("first"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cloud = cluster.cloud().unwrap().clone();
    assert!(
        cloud.instances().is_empty(),
        "a replica without the lease launched an instance"
    );
    assert_eq!(holder(&leases).await.as_deref(), Some("outsider"));

    // The outsider stops renewing: after 15 s of the cluster's clock one replica takes over and acts.
    clock.advance(SignedDuration::from_secs(16));
    let wait_for_instances = |count: usize| {
        let cloud = cloud.clone();
        cluster.wait_until(Duration::from_secs(10), "a launch", move || {
            let cloud = cloud.clone();
            async move { cloud.instances().len() == count }
        })
    };
    wait_for_instances(1).await.unwrap();
    let leader = holder(&leases).await.unwrap();
    assert!(leader.starts_with("replica-"), "{leader}");

    // The leader stops. Until its lease expires the other waits; then it takes over and acts.
    let index = replicas.iter().position(|(name, _)| *name == leader).unwrap();
    let (_, stopped) = replicas.remove(index);
    stopped.abort();
    let (follower, _) = replicas[0];
    clock.advance(SignedDuration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(holder(&leases).await.as_deref(), Some(leader.as_str()));
    clock.advance(SignedDuration::from_secs(6));
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the follower to take the lease",
            || async { holder(&leases).await.as_deref() == Some(follower) },
        )
        .await
        .unwrap();
    claims
        .create(&PostParams::default(), &claim("second"))
        .await
        .unwrap();
    wait_for_instances(2).await.unwrap();
    cluster
        .wait_until(
            Duration::from_secs(10),
            "both claims to record their instance",
            || async {
                let launched = claims.list(&ListParams::default()).await.unwrap().items;
                launched.len() == 2
                    && launched
                        .iter()
                        .all(|c| c.status.as_ref().and_then(|s| s.provider_id.as_ref()).is_some())
            },
        )
        .await
        .unwrap();
    for (_, task) in replicas {
        task.abort();
    }
}
