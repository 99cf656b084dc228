//! The whole controller on the simulated cluster: the hands-on lab's inflate flow. `inflate`
//! scaled 0 → 5 gives nodes whose allocatable fits the pods, every pod bound and Running; scaled
//! to 0 and its NodeClaims deleted, no instance is left in the fake cloud. Pods no NodePool can
//! take get an event and create nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use common::Lab;
use k8s_openapi::api::{core::v1::Node, events::v1::Event};
use kube::{
    Api,
    api::{DeleteParams, ListParams},
};
use nodewright_api::{NodeClaim, quantity};

fn milli_cpu(
    map: &std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> i128 {
    map.get("cpu").map_or(0, |q| quantity::parse_milli(&q.0).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflate_scales_up_runs_on_new_nodes_and_leaves_nothing_behind() {
    let lab = Lab::start().await;
    lab.scale(5).await;
    lab.run_until("five running inflate pods", || lab.running(5))
        .await;
    // The simulated kubelet runs pods as soon as the node is registered; the controller marks
    // it initialized a moment later (as in a real cluster), so wait for that too.
    lab.run_until("the nodes hosting them initialized", || async {
        let nodes: Api<Node> = Api::all(lab.cluster.client());
        let nodes = nodes.list(&ListParams::default()).await.unwrap().items;
        let pods = lab.pods().await;
        pods.iter()
            .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()))
            .all(|host| {
                nodes.iter().any(|n| {
                    n.metadata.name.as_deref() == Some(host)
                        && n.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("karpenter.sh/initialized"))
                            == Some(&"true".to_owned())
                })
            })
    })
    .await;

    // The nodes hold the pods: each node running pods was registered and initialized by the
    // controller, and its allocatable CPU covers the pods bound to it. (Other nodes may exist
    // for a moment: disruption runs too and may be replacing one.)
    let nodes: Api<Node> = Api::all(lab.cluster.client());
    let nodes = nodes.list(&ListParams::default()).await.unwrap().items;
    let pods = lab.pods().await;
    let mut hosting = 0;
    for node in &nodes {
        let name = node.metadata.name.as_deref().unwrap();
        let requested: i128 = pods
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name))
            .map(|_| 1000)
            .sum();
        if requested == 0 {
            continue;
        }
        hosting += 1;
        let allocatable = milli_cpu(node.status.as_ref().unwrap().allocatable.as_ref().unwrap());
        assert!(requested <= allocatable, "{name}: {requested}m on {allocatable}m");
        let node_labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(
            node_labels.get("karpenter.sh/registered").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            node_labels.get("karpenter.sh/initialized").map(String::as_str),
            Some("true")
        );
    }
    assert!(hosting >= 1);
    // Every instance belongs to a NodeClaim, one each.
    let claims: Api<NodeClaim> = Api::all(lab.cluster.client());
    let claim_names: Vec<String> = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    for instance in lab.cluster.cloud().unwrap().instances() {
        let owner = instance.tags.get("karpenter.sh/nodeclaim").unwrap();
        assert!(
            claim_names.contains(owner),
            "instance of a missing NodeClaim {owner}"
        );
    }

    // Scale to zero and delete the NodeClaims: everything goes, no instance is left.
    lab.scale(0).await;
    lab.run_until("the pods to go", || lab.running(0)).await;
    claims
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    let cloud = lab.cluster.cloud().unwrap().clone();
    lab.run_until("every instance terminated and every NodeClaim gone", || {
        let claims = claims.clone();
        let cloud = cloud.clone();
        async move {
            cloud.instances().is_empty()
                && claims
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .is_empty()
        }
    })
    .await;
    let nodes: Api<Node> = Api::all(lab.cluster.client());
    assert!(nodes.list(&ListParams::default()).await.unwrap().items.is_empty());
    let ledger = lab.cluster.ledger().unwrap();
    assert!(
        ledger.total_cost_nano_usd() > 0,
        "the nodes were billed while they ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_no_nodepool_can_take_get_an_event_and_create_nothing() {
    let lab = Lab::start().await;
    lab.cluster
        .apply_yaml(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: impossible\n  namespace: default\nspec:\n  nodeSelector:\n    kubernetes.io/arch: s390x\n  containers:\n  - name: app\n    image: app:1\n",
        )
        .unwrap();
    let events: Api<Event> = Api::namespaced(lab.cluster.client(), "default");
    lab.run_until("a FailedScheduling event on the pod", || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("FailedScheduling")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("impossible")
            })
    })
    .await;
    // Give the provisioner several more batches: still nothing is created.
    for _ in 0..20 {
        lab.step().await;
    }
    let claims: Api<NodeClaim> = Api::all(lab.cluster.client());
    assert!(
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(lab.cluster.cloud().unwrap().all_instances().is_empty());
}
