//! NodeOverlay end to end: a price overlay changes the instance type the next pending pod gets,
//! and two overlays of equal weight that set the same field differently are reported as a
//! conflict (the later-named one is left out).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use common::Lab;
use kube::ResourceExt;
use nodewright_api::{NodeClaim, NodeOverlay, conditions, labels};
use serde_json::json;

/// A type the NodePool allows but that costs far more than the cheapest type for one inflate pod.
const DISCOUNTED: &str = "m5.2xlarge";

/// The lab on on-demand capacity only, so the overlay's price is the one the cloud would bill.
async fn on_demand_lab() -> Lab {
    let mut lab = Lab::without_controllers().await;
    lab.patch_nodepool(json!({ "spec": { "template": { "spec": { "requirements": [
        { "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"] },
        { "key": "kubernetes.io/os", "operator": "In", "values": ["linux"] },
        { "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"] },
        { "key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m", "r"] },
        { "key": "karpenter.k8s.aws/instance-generation", "operator": "Gt", "values": ["2"] }
    ] } } } }))
    .await;
    lab.start_controllers();
    lab
}

/// The launched NodeClaims' instance types, oldest first.
fn launched_types(lab: &Lab) -> Vec<String> {
    let mut claims: Vec<NodeClaim> = lab.claims_in_store();
    claims.sort_by_key(|c| c.metadata.creation_timestamp.clone().map(|t| t.0));
    claims
        .iter()
        .filter_map(|c| c.labels().get(labels::INSTANCE_TYPE).cloned())
        .collect()
}

fn overlays(lab: &Lab) -> Vec<NodeOverlay> {
    lab.stored(labels::KARPENTER_GROUP, "nodeoverlays")
}

/// (status, reason, message) of an overlay's condition, once written.
fn condition(lab: &Lab, name: &str, kind: &str) -> Option<(String, String, String)> {
    let overlay = overlays(lab).into_iter().find(|o| o.name_any() == name)?;
    let status = overlay.status?;
    let c = status.conditions.into_iter().find(|c| c.type_ == kind)?;
    Some((c.status, c.reason, c.message))
}

#[tokio::test]
async fn a_price_overlay_makes_the_next_pod_land_on_the_discounted_type() {
    let lab = on_demand_lab().await;
    lab.scale(1).await;
    lab.run_until("the first pod runs", || async { lab.running_in_store(1) })
        .await;
    let first = launched_types(&lab);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_ne!(
        first[0], DISCOUNTED,
        "without an overlay the cheapest fitting type is chosen"
    );

    lab.cluster
        .apply_yaml(&format!(
            "apiVersion: karpenter.sh/v1alpha1\nkind: NodeOverlay\nmetadata:\n  name: negotiated\nspec:\n  \
             requirements:\n  - key: node.kubernetes.io/instance-type\n    operator: In\n    values: [\"{DISCOUNTED}\"]\n  \
             price: \"0.001\"\n"
        ))
        .unwrap();
    lab.run_until("the overlay is validated", || async {
        condition(&lab, "negotiated", conditions::READY).is_some_and(|c| c.0 == conditions::TRUE)
    })
    .await;
    // `nodewright explain` prices the instance types as the controllers do.
    let cluster = nodewright_controller::explain::Cluster::read(&lab.cluster.client(), "default")
        .await
        .unwrap();
    let cloud = lab.cluster.cloud().unwrap().clone();
    let types =
        nodewright_controller::explain::PoolTypes::from_cloud(&cluster, &cloud, lab.clock.now()).await;
    let discounted = types
        .of_pool("default")
        .unwrap()
        .iter()
        .find(|t| t.name == DISCOUNTED)
        .unwrap();
    assert!(
        discounted
            .offerings
            .iter()
            .all(|o| (o.price.as_usd() - 0.001).abs() < 1e-9),
        "{:?}",
        discounted.offerings
    );
    lab.scale(2).await;
    lab.run_until("a NodeClaim of the discounted type runs the new pod", || async {
        lab.running_in_store(2) && launched_types(&lab).iter().any(|t| t == DISCOUNTED)
    })
    .await;
    // Karpenter's annotation says an overlay priced the launch; the first NodeClaim has none.
    let overlaid: Vec<(String, Option<String>)> = lab
        .claims_in_store()
        .iter()
        .map(|c| {
            (
                c.labels().get(labels::INSTANCE_TYPE).cloned().unwrap_or_default(),
                c.annotations().get(labels::PRICE_OVERLAY_APPLIED).cloned(),
            )
        })
        .collect();
    for (instance_type, annotation) in &overlaid {
        let expected = (instance_type == DISCOUNTED).then(|| "true".to_owned());
        assert_eq!(annotation, &expected, "{overlaid:?}");
    }
}

#[tokio::test]
async fn equal_weight_overlays_setting_the_price_differently_conflict() {
    let lab = Lab::start().await;
    lab.cluster
        .apply_yaml(
            "apiVersion: karpenter.sh/v1alpha1\nkind: NodeOverlay\nmetadata:\n  name: alpha\nspec:\n  weight: 7\n  \
             requirements:\n  - key: node.kubernetes.io/instance-type\n    operator: In\n    values: [\"m5.large\"]\n  \
             price: \"0.01\"\n---\n\
             apiVersion: karpenter.sh/v1alpha1\nkind: NodeOverlay\nmetadata:\n  name: beta\nspec:\n  weight: 7\n  \
             requirements: []\n  priceAdjustment: \"-20%\"\n---\n\
             apiVersion: karpenter.sh/v1alpha1\nkind: NodeOverlay\nmetadata:\n  name: gamma\nspec:\n  weight: 8\n  \
             requirements: []\n  priceAdjustment: \"+5%\"\n",
        )
        .unwrap();
    lab.run_until("the conflict is reported", || async {
        condition(&lab, "beta", conditions::nodeoverlay::VALIDATION_SUCCEEDED)
            .is_some_and(|c| c.0 == conditions::FALSE)
    })
    .await;
    let (_, reason, message) =
        condition(&lab, "beta", conditions::nodeoverlay::VALIDATION_SUCCEEDED).unwrap();
    assert_eq!(reason, conditions::nodeoverlay::REASON_CONFLICT);
    assert!(
        message.contains("alpha") && message.contains("price"),
        "{message}"
    );
    assert_eq!(
        condition(&lab, "beta", conditions::READY).unwrap().0,
        conditions::FALSE
    );
    lab.run_until("the others are validated", || async {
        ["alpha", "gamma"]
            .iter()
            .all(|name| condition(&lab, name, conditions::READY).is_some_and(|c| c.0 == conditions::TRUE))
    })
    .await;
}
