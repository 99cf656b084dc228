//! The lab flow's scale-down: five inflate pods (1 CPU each) scaled to one end on a single node of
//! the cheapest type that holds one pod, on-demand (consolidation replaces the bigger node) and
//! spot (only with spot-to-spot consolidation; without it the spot node is kept and says why).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use common::Lab;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, api::ListParams};
use nodewright_api::{NodePool, labels};
use nodewright_catalog::{CapacityType, InstanceType, Price};
use serde_json::json;

/// The lab with the NodePool limited to one capacity type, changed before the controllers start.
async fn lab_on(capacity_type: &str, spot_to_spot: bool) -> Lab {
    let mut lab = Lab::without_controllers().await;
    lab.settings.spot_to_spot_consolidation = spot_to_spot;
    lab.patch_nodepool(json!({ "spec": { "template": { "spec": { "requirements": [
        { "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"] },
        { "key": "kubernetes.io/os", "operator": "In", "values": ["linux"] },
        { "key": "karpenter.sh/capacity-type", "operator": "In", "values": [capacity_type] },
        { "key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m", "r"] },
        { "key": "karpenter.k8s.aws/instance-generation", "operator": "Gt", "values": ["2"] }
    ] } } } }))
    .await;
    lab.start_controllers();
    lab
}

/// Whether `ty` is one the lab's NodePool allows (the requirements `lab_on` sets).
fn allowed(ty: &InstanceType) -> bool {
    let label = |key: &str| ty.labels.get(key).map(String::as_str);
    let generation: u32 = label("karpenter.k8s.aws/instance-generation")
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    label("kubernetes.io/arch") == Some("amd64")
        && label("kubernetes.io/os") == Some("linux")
        && matches!(
            label("karpenter.k8s.aws/instance-category"),
            Some("c" | "m" | "r")
        )
        && generation > 2
}

/// The price of the cheapest available offering of `capacity` among allowed types whose
/// allocatable holds one inflate pod (1 CPU); and the price of `node`'s own offering.
async fn cheapest_and_node_price(lab: &Lab, capacity: CapacityType, node: &Node) -> (Price, Price) {
    let pools: Api<NodePool> = Api::all(lab.cluster.client());
    let pool = pools.get("default").await.unwrap();
    let cloud = lab.cluster.cloud().unwrap().clone();
    let types = nodewright_cloudprovider::CloudProvider::get_instance_types(&cloud, &pool)
        .await
        .unwrap();
    let price_of = |ty: &InstanceType, zone: Option<&str>| {
        ty.offerings
            .iter()
            .filter(|o| o.available && o.capacity_type == capacity)
            .filter(|o| zone.is_none_or(|z| o.zone == z))
            .map(|o| o.price)
            .min()
    };
    let cheapest = types
        .iter()
        .filter(|t| allowed(t) && t.allocatable().cpu_millis >= 1000)
        .filter_map(|t| price_of(t, None))
        .min()
        .unwrap();
    let node_labels = node.metadata.labels.as_ref().unwrap();
    let node_type = &node_labels[labels::INSTANCE_TYPE];
    let zone = node_labels.get(labels::ZONE).map(String::as_str);
    let ty = types.iter().find(|t| &t.name == node_type).unwrap();
    (cheapest, price_of(ty, zone).unwrap())
}

/// Scales to five, waits, scales to one, and waits until one pod runs.
async fn five_then_one(lab: &Lab) {
    lab.scale(5).await;
    lab.run_until("five running inflate pods", || lab.running(5))
        .await;
    lab.scale(1).await;
    lab.run_until("one running inflate pod", || lab.running(1)).await;
}

async fn nodes(lab: &Lab) -> Vec<Node> {
    let api: Api<Node> = Api::all(lab.cluster.client());
    api.list(&ListParams::default()).await.unwrap().items
}

/// Runs until one node is left, its instance priced at the cheapest fitting offering.
async fn ends_on_the_cheapest_node(lab: &Lab, capacity: CapacityType) {
    lab.run_until(
        "one node left, of the cheapest type that holds the pod",
        || async {
            let nodes = nodes(lab).await;
            if nodes.len() != 1
                || lab.cluster.cloud().unwrap().instances().len() != 1
                || !lab.running(1).await
            {
                return false;
            }
            let (cheapest, price) = cheapest_and_node_price(lab, capacity, &nodes[0]).await;
            price == cheapest
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_on_demand_from_five_pods_to_one_ends_on_the_cheapest_node_that_fits() {
    let lab = lab_on("on-demand", false).await;
    five_then_one(&lab).await;
    ends_on_the_cheapest_node(&lab, CapacityType::OnDemand).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_is_replaced_by_cheaper_spot_only_with_spot_to_spot_consolidation() {
    // Without the setting: once the pods are down to one, consolidation keeps the spot node that
    // is left and its NodeClaim says why (unless that node happens to be the cheapest already).
    let lab = lab_on("spot", false).await;
    five_then_one(&lab).await;
    lab.run_until("empty nodes removed, one node left", || async {
        nodes(&lab).await.len() == 1 && lab.running(1).await
    })
    .await;
    lab.pass_minutes(5).await;
    let left = nodes(&lab).await;
    assert_eq!(left.len(), 1, "{}", lab.leftovers());
    let (cheapest, price) = cheapest_and_node_price(&lab, CapacityType::Spot, &left[0]).await;
    assert!(
        price > cheapest,
        "the setup wants a spot node dearer than the cheapest fitting spot offering"
    );
    let claims = lab.claims_in_store();
    assert_eq!(claims.len(), 1);
    let reason = claims[0]
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Consolidatable"))
        .map(|c| (c.status.clone(), c.reason.clone()));
    assert_eq!(
        reason,
        Some(("False".to_owned(), "SpotToSpotConsolidationDisabled".to_owned())),
        "{}",
        lab.leftovers()
    );
    drop(lab);

    // With it, the same flow ends on the cheapest spot node that holds the pod.
    let lab = lab_on("spot", true).await;
    five_then_one(&lab).await;
    ends_on_the_cheapest_node(&lab, CapacityType::Spot).await;
}
