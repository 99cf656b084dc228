//! `consolidationPolicy: Balanced` on the simulated cluster with every controller running: an
//! m5.xlarge running three 1-CPU pods could become an m5a.xlarge ($0.192 → $0.172 an hour).
//! That saves 10% of the pool's cost while moving every pod of it (score 0.10 < 0.5), so
//! Balanced keeps the node and says why; `WhenEmptyOrUnderutilized` replaces it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use common::Lab;
use nodewright_api::{NodeClaim, conditions, labels};
use serde_json::json;

fn requirements(types: &[&str]) -> serde_json::Value {
    json!([
        { "key": labels::INSTANCE_TYPE, "operator": "In", "values": types },
        { "key": labels::CAPACITY_TYPE, "operator": "In", "values": ["on-demand"] }
    ])
}

fn reasons(lab: &Lab) -> Vec<String> {
    lab.claims_in_store()
        .iter()
        .filter_map(|c: &NodeClaim| {
            let condition = c
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == conditions::nodeclaim::CONSOLIDATABLE)?;
            Some(condition.reason.clone())
        })
        .collect()
}

fn instance_types(lab: &Lab) -> Vec<String> {
    lab.cluster
        .cloud()
        .unwrap()
        .instances()
        .iter()
        .map(|i| i.offering.instance_type.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balanced_keeps_a_node_whose_small_saving_does_not_outweigh_moving_every_pod() {
    let lab = Lab::start().await;
    lab.patch_nodepool(json!({ "spec": {
        "template": { "spec": { "requirements": requirements(&["m5.xlarge"]) } },
        "disruption": { "budgets": [{ "nodes": "0" }] }
    } }))
    .await;
    lab.scale(3).await;
    lab.run_until("three running inflate pods", || lab.running(3))
        .await;
    assert_eq!(instance_types(&lab), ["m5.xlarge"], "{}", lab.leftovers());
    let node = lab.node_names();

    lab.patch_nodepool(json!({ "spec": {
        "template": { "spec": { "requirements": requirements(&["m5.xlarge", "m5a.xlarge"]) } },
        "disruption": { "consolidationPolicy": "Balanced", "budgets": [{ "nodes": "1" }] }
    } }))
    .await;
    lab.pass_minutes(5).await;
    assert_eq!(lab.node_names(), node, "{}", lab.leftovers());
    assert_eq!(reasons(&lab), ["SavingsBelowDisruption"]);

    lab.patch_nodepool(
        json!({ "spec": { "disruption": { "consolidationPolicy": "WhenEmptyOrUnderutilized" } } }),
    )
    .await;
    lab.run_until("the pods running on an m5a.xlarge alone", || async {
        instance_types(&lab) == ["m5a.xlarge"] && lab.running(3).await && lab.node_names().len() == 1
    })
    .await;

    lab.scale(0).await;
    lab.run_until("every node removed", || async {
        lab.claims_in_store().is_empty() && lab.cluster.cloud().unwrap().instances().is_empty()
    })
    .await;
    lab.assert_nothing_leaked();
}
