//! Disruption on the simulated cluster with every controller running: a node emptied by scaling
//! down goes once consolidateAfter (1m in the example NodePool) has passed; `do-not-disrupt` on
//! the node and a budget of 0 keep it (with the reason on the NodeClaim) until lifted; two
//! half-empty nodes become one (pods Running on the one left, the other's instance terminated);
//! a PodDisruptionBudget that allows no disruption keeps both; a budget of 0 in a cron window
//! holds consolidation until the window ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use common::Lab;
use k8s_openapi::api::{core::v1::Pod, policy::v1::PodDisruptionBudget};
use kube::{Api, api::PostParams};
use nodewright_api::{NodeClaim, conditions};
use serde_json::json;

/// The `Consolidatable` condition's status and reason on every NodeClaim.
fn consolidatable(lab: &Lab) -> Vec<(String, String)> {
    lab.claims_in_store()
        .iter()
        .filter_map(|c: &NodeClaim| {
            let status = c.status.as_ref()?;
            let condition = status
                .conditions
                .iter()
                .find(|c| c.type_ == conditions::nodeclaim::CONSOLIDATABLE)?;
            Some((condition.status.clone(), condition.reason.clone()))
        })
        .collect()
}

async fn one_node_with_one_pod(lab: &Lab) -> String {
    lab.scale(1).await;
    lab.run_until("one running inflate pod", || lab.running(1)).await;
    let nodes = lab.node_names();
    assert_eq!(nodes.len(), 1, "{}", lab.leftovers());
    nodes[0].clone()
}

async fn all_gone(lab: &Lab) {
    lab.run_until("every node removed", || async {
        lab.claims_in_store().is_empty() && lab.cluster.cloud().unwrap().instances().is_empty()
    })
    .await;
    lab.assert_nothing_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_emptied_by_scaling_down_is_removed_after_consolidate_after() {
    let lab = Lab::start().await;
    one_node_with_one_pod(&lab).await;
    lab.scale(0).await;
    lab.run_until("the pod to go", || lab.running(0)).await;
    let emptied = lab.clock.now();
    all_gone(&lab).await;
    let waited = lab.clock.now().duration_since(emptied);
    assert!(
        waited >= jiff::SignedDuration::from_mins(1),
        "removed {waited:?} after the last pod left: consolidateAfter is 1m"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_not_disrupt_on_the_node_keeps_it_until_removed() {
    let lab = Lab::start().await;
    let node = one_node_with_one_pod(&lab).await;
    lab.patch_node(
        &node,
        json!({ "metadata": { "annotations": { "karpenter.sh/do-not-disrupt": "true" } } }),
    )
    .await;
    lab.scale(0).await;
    lab.run_until("the pod to go", || lab.running(0)).await;
    lab.pass_minutes(5).await;
    assert_eq!(
        lab.node_names(),
        std::slice::from_ref(&node),
        "{}",
        lab.leftovers()
    );
    assert_eq!(
        consolidatable(&lab),
        [("False".to_owned(), "NodeDoNotDisrupt".to_owned())]
    );

    lab.patch_node(
        &node,
        json!({ "metadata": { "annotations": { "karpenter.sh/do-not-disrupt": null } } }),
    )
    .await;
    all_gone(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_of_zero_nodes_keeps_an_empty_node_until_raised() {
    let lab = Lab::start().await;
    lab.patch_nodepool(json!({ "spec": { "disruption": { "budgets": [{ "nodes": "0" }] } } }))
        .await;
    let node = one_node_with_one_pod(&lab).await;
    lab.scale(0).await;
    lab.run_until("the pod to go", || lab.running(0)).await;
    lab.pass_minutes(5).await;
    assert_eq!(lab.node_names(), [node], "{}", lab.leftovers());
    assert_eq!(
        consolidatable(&lab),
        [("False".to_owned(), "DisruptionBudgetExhausted".to_owned())]
    );

    lab.patch_nodepool(json!({ "spec": { "disruption": { "budgets": [{ "nodes": "1" }] } } }))
        .await;
    all_gone(&lab).await;
}

/// Two m5.xlarge nodes (3 inflate pods each) holding 2 and 1 pods: one can take them all. Built
/// with disruption blocked (budget 0): 2 pods on the first node, which is then cordoned so the
/// next 2 pods get a second node, then uncordoned, and one pod scaled away. The NodePool is changed
/// before the controllers start, so no NodeClaim is planned from the default pool.
async fn two_half_empty_nodes() -> (Lab, Vec<String>) {
    let mut lab = Lab::without_controllers().await;
    lab.patch_nodepool(json!({ "spec": {
        "template": { "spec": { "requirements": [
            { "key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.xlarge"] },
            { "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"] }
        ] } },
        "disruption": { "budgets": [{ "nodes": "0" }] }
    } }))
    .await;
    lab.start_controllers();
    lab.scale(2).await;
    lab.run_until("two running inflate pods", || lab.running(2)).await;
    let first = lab.node_names();
    assert_eq!(first.len(), 1, "{}", lab.leftovers());
    lab.patch_node(&first[0], json!({ "spec": { "unschedulable": true } }))
        .await;
    lab.scale(4).await;
    lab.run_until("four running inflate pods", || lab.running(4))
        .await;
    lab.patch_node(&first[0], json!({ "spec": { "unschedulable": null } }))
        .await;
    lab.scale(3).await;
    lab.run_until("three running inflate pods", || lab.running(3))
        .await;
    let nodes = lab.node_names();
    assert_eq!(nodes.len(), 2, "{}", lab.leftovers());
    let pods = lab.pods().await;
    for node in &nodes {
        assert!(
            pods.iter()
                .any(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(node)),
            "{node} has no pod: the setup wants two half-empty nodes"
        );
    }
    (lab, nodes)
}

fn node_of(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().node_name.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_half_empty_nodes_are_consolidated_into_one() {
    let (lab, nodes) = two_half_empty_nodes().await;
    let instances_before = lab.cluster.cloud().unwrap().instances().len();
    assert_eq!(instances_before, 2);
    lab.patch_nodepool(json!({ "spec": { "disruption": { "budgets": [{ "nodes": "1" }] } } }))
        .await;
    lab.run_until("one node left with every pod Running on it", || async {
        let pods = lab.pods().await;
        let left = lab.node_names();
        left.len() == 1
            && lab.cluster.cloud().unwrap().instances().len() == 1
            && pods.len() == 3
            && pods.iter().all(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && node_of(p) == left[0]
            })
    })
    .await;
    let kept = lab.node_names().remove(0);
    assert!(
        nodes.contains(&kept),
        "no replacement: the other node took the pods"
    );

    lab.scale(0).await;
    all_gone(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdb_allowing_no_disruption_blocks_consolidation() {
    let (lab, nodes) = two_half_empty_nodes().await;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(lab.cluster.client(), "default");
    let pdb = serde_json::from_value(json!({
        "metadata": { "name": "inflate" },
        "spec": { "minAvailable": 3, "selector": { "matchLabels": { "app": "inflate" } } }
    }))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    lab.run_until("the PDB to allow no disruption", || async {
        pdbs.get("inflate")
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.expected_pods == 3 && s.disruptions_allowed == 0)
    })
    .await;
    lab.patch_nodepool(json!({ "spec": { "disruption": { "budgets": [{ "nodes": "1" }] } } }))
        .await;
    lab.pass_minutes(5).await;
    assert_eq!(lab.node_names(), nodes, "{}", lab.leftovers());
    assert_eq!(lab.cluster.cloud().unwrap().instances().len(), 2);
    let reasons = consolidatable(&lab);
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons
            .iter()
            .all(|(status, reason)| status == "False" && reason == "PodDisruptionBudgetBlocks"),
        "{reasons:?}"
    );
    assert!(lab.running_in_store(3), "no pod was evicted");

    pdbs.delete("inflate", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    lab.scale(0).await;
    all_gone(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_budget_in_a_cron_window_holds_consolidation_until_the_window_ends() {
    let (lab, nodes) = two_half_empty_nodes().await;
    // The lab's clock started at 00:00 UTC; the window is 00:00-00:50 of every hour.
    let window_end: jiff::Timestamp = "2026-01-01T00:50:00Z".parse().unwrap();
    let hold_until = window_end
        .checked_sub(jiff::SignedDuration::from_secs(10))
        .unwrap();
    assert!(
        lab.clock.now()
            < hold_until
                .checked_sub(jiff::SignedDuration::from_mins(5))
                .unwrap(),
        "the setup ended at {}: too late to watch the window",
        lab.clock.now()
    );
    lab.patch_nodepool(json!({ "spec": { "disruption": { "budgets": [
        { "nodes": "0", "schedule": "0 * * * *", "duration": "50m" },
        { "nodes": "1" }
    ] } } }))
    .await;
    while lab.clock.now() < hold_until {
        lab.step().await;
        assert_eq!(lab.node_names(), nodes, "{}", lab.leftovers());
    }
    assert!(
        consolidatable(&lab)
            .iter()
            .all(|(status, reason)| status == "False" && reason == "DisruptionBudgetExhausted"),
        "{:?}",
        consolidatable(&lab)
    );
    lab.run_until("one node left after the window", || async {
        lab.node_names().len() == 1
            && lab.cluster.cloud().unwrap().instances().len() == 1
            && lab.running(3).await
    })
    .await;
    assert!(lab.clock.now() >= window_end);
    lab.scale(0).await;
    all_gone(&lab).await;
}
