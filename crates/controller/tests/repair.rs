//! Node repair on the simulated cluster with every controller running and the `NodeRepair` gate
//! on. Nodes are marked unhealthy with `NetworkingReady=False` (a policy condition the simulated
//! kubelet does not own, so it stays as the test wrote it; the kubelet re-readies `Ready`). The
//! pool launches m5.large nodes only, so each 1-CPU inflate pod gets a node of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use std::collections::BTreeSet;

use common::Lab;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{core::v1::Node, events::v1::Event, policy::v1::PodDisruptionBudget};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use nodewright_controller::events::reasons::{DISRUPTION_TERMINATING, NODE_REPAIR_BLOCKED};
use serde_json::json;

/// The policy's toleration for `NetworkingReady=False`.
const TOLERATION: SignedDuration = SignedDuration::from_mins(30);

/// A lab whose pool launches one m5.large per inflate pod, with a disruption budget of 0 (repair
/// is forceful and ignores it; it also keeps consolidation out of the way), running `pods` pods.
async fn lab_with_nodes(pods: usize) -> Lab {
    let mut lab = Lab::without_controllers().await;
    lab.patch_nodepool(json!({ "spec": {
        "template": { "spec": { "requirements": [
            { "key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"] },
            { "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"] }
        ] } },
        "disruption": { "budgets": [{ "nodes": "0" }] }
    } }))
    .await;
    lab.settings.node_repair = true;
    lab.start_controllers();
    lab.scale(i32::try_from(pods).unwrap()).await;
    lab.run_until("every inflate pod running on its own node", || async {
        lab.running(pods).await && lab.node_names().len() == pods
    })
    .await;
    lab
}

/// Sets `NetworkingReady` on a node, as a node-monitoring agent would, with the given
/// transition time.
async fn set_networking(lab: &Lab, node: &str, status: &str, since: Timestamp) {
    let nodes: Api<Node> = Api::all(lab.cluster.client());
    let mut conditions = nodes
        .get_status(node)
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions
        .unwrap_or_default();
    conditions.retain(|c| c.type_ != "NetworkingReady");
    let time = nodewright_api::clock::rfc3339(since);
    let mut value = serde_json::to_value(&conditions).unwrap();
    value.as_array_mut().unwrap().push(json!({
        "type": "NetworkingReady", "status": status, "reason": "NetworkUnavailable",
        "message": "set by the test", "lastTransitionTime": time, "lastHeartbeatTime": time
    }));
    nodes
        .patch_status(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "conditions": value } })),
        )
        .await
        .unwrap();
}

/// The names of the NodeClaims in the store, and of those being deleted.
fn claims(lab: &Lab) -> (BTreeSet<String>, BTreeSet<String>) {
    let all = lab.claims_in_store();
    let deleting = all
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_some())
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    (
        all.into_iter().filter_map(|c| c.metadata.name).collect(),
        deleting,
    )
}

/// The names of the objects events with `reason` were published about.
async fn regarding(lab: &Lab, reason: &str) -> BTreeSet<String> {
    let events: Api<Event> = Api::all(lab.cluster.client());
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.regarding.and_then(|r| r.name))
        .collect()
}

async fn tear_down(lab: &Lab) {
    lab.scale(0).await;
    lab.run_until("every node removed", || async {
        lab.delete_claims_in_store();
        lab.claims_in_store().is_empty() && lab.cluster.cloud().unwrap().instances().is_empty()
    })
    .await;
    lab.assert_nothing_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_node_is_replaced_after_its_toleration_despite_a_budget_and_its_pod_runs_elsewhere() {
    let lab = lab_with_nodes(1).await;
    // A budget that refuses every eviction: repair is forceful and does not wait for it.
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": { "name": "inflate", "namespace": "default" },
        "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": "inflate" } } },
    }))
    .unwrap();
    Api::<PodDisruptionBudget>::namespaced(lab.cluster.client(), "default")
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
    let old_nodes = lab.node_names();
    let (old_claims, _) = claims(&lab);
    // Unhealthy since 29 minutes ago: due in a minute.
    let since = lab
        .clock
        .now()
        .checked_sub(TOLERATION - SignedDuration::from_mins(1))
        .unwrap();
    set_networking(&lab, &old_nodes[0], "False", since).await;
    let due = since.checked_add(TOLERATION).unwrap();

    let deleted_at = std::cell::Cell::new(None);
    lab.run_until("the unhealthy node's NodeClaim deleted", || async {
        let (all, deleting) = claims(&lab);
        let gone = old_claims
            .iter()
            .all(|c| !all.contains(c) || deleting.contains(c));
        if gone && deleted_at.get().is_none() {
            deleted_at.set(Some(lab.clock.now()));
        }
        gone
    })
    .await;
    let deleted_at = deleted_at.get().unwrap();
    assert!(
        deleted_at >= due,
        "repaired at {deleted_at}, before the toleration ran out at {due}"
    );

    lab.run_until("the pod running on a new node", || async {
        let nodes = lab.node_names();
        lab.running(1).await && nodes.len() == 1 && nodes != old_nodes && lab.claims_in_store().len() == 1
    })
    .await;
    let terminating = regarding(&lab, DISRUPTION_TERMINATING).await;
    assert!(
        terminating.contains(&old_nodes[0]) && old_claims.is_subset(&terminating),
        "DisruptionTerminating on the Node and the NodeClaim: {terminating:?}"
    );
    let scrape = nodewright_controller::metrics::global().encode_openmetrics();
    assert!(
        scrape.lines().any(|l| {
            l.starts_with("karpenter_nodeclaims_unhealthy_disrupted_total{")
                && l.contains("condition=\"networking_ready\"")
        }),
        "the repair counted by condition"
    );
    assert!(
        scrape.lines().any(|l| {
            l.starts_with("karpenter_nodeclaims_disrupted_total{") && l.contains("reason=\"unhealthy\"")
        }),
        "the repair counted as a disruption with reason unhealthy"
    );
    tear_down(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_repaired_while_more_than_a_fifth_of_the_pool_is_unhealthy() {
    let lab = lab_with_nodes(5).await;
    let nodes = lab.node_names();
    let (before, _) = claims(&lab);
    // Due in a minute, so both are unhealthy before either is due.
    let since = lab
        .clock
        .now()
        .checked_sub(TOLERATION - SignedDuration::from_mins(1))
        .unwrap();
    set_networking(&lab, &nodes[0], "False", since).await;
    set_networking(&lab, &nodes[1], "False", since).await;

    // 2 of 5 (40%) unhealthy and overdue: held back, and the nodes say so.
    lab.run_until("NodeRepairBlocked on both unhealthy nodes", || async {
        let blocked = regarding(&lab, NODE_REPAIR_BLOCKED).await;
        blocked.contains(&nodes[0]) && blocked.contains(&nodes[1])
    })
    .await;
    lab.pass_minutes(10).await;
    let (after, deleting) = claims(&lab);
    assert_eq!(after, before, "no NodeClaim replaced");
    assert!(deleting.is_empty(), "no NodeClaim deleted: {deleting:?}");
    assert_eq!(lab.node_names(), nodes);

    // One recovers: 1 of 5 is 20%, so the other is repaired.
    set_networking(&lab, &nodes[1], "True", lab.clock.now()).await;
    lab.run_until("the still unhealthy node replaced", || async {
        let current = lab.node_names();
        !current.contains(&nodes[0]) && current.contains(&nodes[1]) && lab.running(5).await
    })
    .await;
    tear_down(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_pool_with_every_node_unhealthy_repairs_one_node_at_a_time() {
    let lab = lab_with_nodes(2).await;
    let nodes = lab.node_names();
    let (originals, _) = claims(&lab);
    let since = lab
        .clock
        .now()
        .checked_sub(TOLERATION - SignedDuration::from_mins(1))
        .unwrap();
    for node in &nodes {
        set_networking(&lab, node, "False", since).await;
    }

    lab.run_until("both nodes replaced, one at a time", || async {
        let (all, deleting) = claims(&lab);
        let originals_deleting = originals.intersection(&deleting).count();
        assert!(
            originals_deleting <= 1,
            "{originals_deleting} unhealthy nodes replaced at once\n{}",
            lab.leftovers()
        );
        let current = lab.node_names();
        all.is_disjoint(&originals) && nodes.iter().all(|n| !current.contains(n)) && lab.running(2).await
    })
    .await;
    tear_down(&lab).await;
}
