//! Expiration on the simulated cluster with every controller running: a node whose NodeClaim has
//! lived past the NodePool's `expireAfter` is deleted even with a disruption budget of 0, with an
//! `Expired` event, and its pod is rescheduled onto a new node the provisioner launches. An
//! expired node whose EC2NodeClass cannot launch is kept (an `ExpirationHeld` event says why)
//! until the node class is ready again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use common::Lab;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::events::v1::Event;
use kube::{Api, api::ListParams};
use nodewright_controller::events::reasons::{EXPIRATION_HELD, EXPIRED};
use serde_json::json;

/// The lab with `expireAfter: 10m` and `disruption` merged into the NodePool (before the
/// controllers start, so their first NodeClaim has it), one inflate pod running: the lab, the
/// node's name (as a one-element list), its NodeClaim's name and when it expires.
async fn one_pod_on_a_node_expiring_in_10m(
    disruption: serde_json::Value,
) -> (Lab, Vec<String>, String, Timestamp) {
    let mut lab = Lab::without_controllers().await;
    lab.patch_nodepool(json!({ "spec": {
        "template": { "spec": { "expireAfter": "10m" } },
        "disruption": disruption
    } }))
    .await;
    lab.start_controllers();
    lab.scale(1).await;
    lab.run_until("one running inflate pod", || lab.running(1)).await;
    let node = lab.node_names();
    let claim = lab.claims_in_store().remove(0);
    let name = claim.metadata.name.clone().unwrap();
    let created: Timestamp = claim.metadata.creation_timestamp.unwrap().0;
    let expiry = created.checked_add(SignedDuration::from_mins(10)).unwrap();
    (lab, node, name, expiry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_node_is_deleted_despite_a_zero_budget_and_its_pod_runs_elsewhere() {
    let (lab, old_node, name, expiry) =
        one_pod_on_a_node_expiring_in_10m(json!({ "budgets": [{ "nodes": "0" }] })).await;

    let deleted_at = std::cell::Cell::new(None);
    lab.run_until("the expired NodeClaim deleted", || async {
        let gone_or_deleting = lab
            .claims_in_store()
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(&name))
            .is_none_or(|c| c.metadata.deletion_timestamp.is_some());
        if gone_or_deleting && deleted_at.get().is_none() {
            deleted_at.set(Some(lab.clock.now()));
        }
        gone_or_deleting
    })
    .await;
    let deleted_at = deleted_at.get().unwrap();
    assert!(
        deleted_at >= expiry,
        "deleted at {deleted_at}, before it expired at {expiry}"
    );

    lab.run_until("the pod running on a new node", || async {
        let nodes = lab.node_names();
        lab.running(1).await && nodes.len() == 1 && nodes != old_node && lab.claims_in_store().len() == 1
    })
    .await;
    let events: Api<Event> = Api::all(lab.cluster.client());
    let expired: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(EXPIRED)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&name)
        })
        .collect();
    assert_eq!(expired.len(), 1, "one Expired event on the NodeClaim");
    let scrape = nodewright_controller::metrics::global().encode_openmetrics();
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("karpenter_nodeclaims_disrupted_total{")
                && l.contains("reason=\"expired\"")),
        "expiration counted as a disruption with reason expired"
    );

    lab.scale(0).await;
    lab.run_until("every node removed", || async {
        lab.delete_claims_in_store();
        lab.claims_in_store().is_empty() && lab.cluster.cloud().unwrap().instances().is_empty()
    })
    .await;
    lab.assert_nothing_leaked();
}

/// Events with `reason` about the object named `name`.
async fn events_about(lab: &Lab, reason: &str, name: &str) -> Vec<Event> {
    let events: Api<Event> = Api::all(lab.cluster.client());
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_node_is_kept_while_its_node_class_is_not_ready_and_expires_once_it_is() {
    let (lab, old_node, name, expiry) = one_pod_on_a_node_expiring_in_10m(json!({})).await;
    let cloud = lab.cluster.cloud().unwrap();
    cloud.mark_node_class_not_ready("default", "subnets not resolved");

    let kept_until = expiry.checked_add(SignedDuration::from_mins(5)).unwrap();
    while lab.clock.now() < kept_until {
        lab.step().await;
        let claims = lab.claims_in_store();
        assert!(
            claims
                .iter()
                .any(|c| c.metadata.name.as_deref() == Some(&name) && c.metadata.deletion_timestamp.is_none()),
            "{}",
            lab.leftovers()
        );
        assert!(lab.running_in_store(1), "{}", lab.leftovers());
    }
    assert_eq!(lab.node_names(), old_node);
    assert_eq!(cloud.all_instances().len(), 1, "nothing launched meanwhile");
    let held = events_about(&lab, EXPIRATION_HELD, &name).await;
    assert_eq!(held.len(), 1, "one event while the reason stays: {held:?}");
    assert!(
        held[0]
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("subnets not resolved"),
        "{held:?}"
    );
    assert!(events_about(&lab, EXPIRED, &name).await.is_empty());

    cloud.mark_node_class_ready("default");
    lab.run_until("the expired NodeClaim deleted", || async {
        lab.claims_in_store()
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(&name))
            .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
    })
    .await;
    lab.run_until("the pod running on a new node", || async {
        let nodes = lab.node_names();
        lab.running(1).await && nodes.len() == 1 && nodes != old_node && lab.claims_in_store().len() == 1
    })
    .await;
    assert_eq!(events_about(&lab, EXPIRED, &name).await.len(), 1);

    lab.scale(0).await;
    lab.run_until("every node removed", || async {
        lab.delete_claims_in_store();
        lab.claims_in_store().is_empty() && cloud.instances().is_empty()
    })
    .await;
    lab.assert_nothing_leaked();
}
