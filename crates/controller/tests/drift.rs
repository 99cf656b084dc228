//! Drift on the simulated cluster with every controller running: a new AMI for the EC2NodeClass
//! replaces its nodes one at a time under a budget of one node, waits out a cron window with a
//! budget of 0, and a changed NodePool template label drifts its node. A controller killed in
//! the middle of a drift command (candidate tainted, replacement launched, nothing deleted yet)
//! and restarted leaves no instance, taint or NodeClaim behind and deletes nothing twice. A
//! drifted node running a `do-not-disrupt` pod is replaced when its NodeClaim has a
//! terminationGracePeriod (the pod goes at the deadline) and kept, with the reason shown,
//! without one. Replacements on a bad AMI that never join are rolled back after the
//! replacement timeout, and the NodePool backs off (1 min doubling) before launching again,
//! while the old node keeps its pod.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Lab;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::{core::v1::Node, events::v1::Event};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use nodewright_api::{EC2NodeClass, NodeClaim, NodePool, conditions, labels};
use nodewright_controller::disruption::{
    REPLACEMENT_TIMEOUT,
    backoff::{Backoff, delay},
};
use nodewright_controller::events::reasons::DISRUPTION_REPLACEMENT_FAILED;
use nodewright_controller::explain::{
    Cluster, PoolTypes,
    node::{self, Action},
};
use nodewright_sim::cloud::{CloudEventKind, DEFAULT_AMI};
use serde_json::json;

const NEW_AMI: &str = "ami-0new0000000000001";

/// The lab with only m5.large on-demand in the NodePool: one inflate pod (1 CPU) per node, and
/// nothing cheaper to consolidate to, so every node change in these tests is drift's. The
/// NodePool is changed before the controllers start, so their first NodeClaim has it.
async fn one_pod_per_node(budgets: serde_json::Value) -> Lab {
    let mut lab = Lab::without_controllers().await;
    lab.patch_nodepool(json!({ "spec": {
        "template": { "spec": { "requirements": [
            { "key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"] },
            { "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"] }
        ] } },
        "disruption": { "budgets": budgets }
    } }))
    .await;
    lab.start_controllers();
    lab
}

/// Releases a new AMI for the `default` EC2NodeClass: the cloud resolves it from now on, and the
/// node class is pinned to the release (which also tells the controllers it changed).
async fn release_new_ami(lab: &Lab) {
    lab.cluster
        .cloud()
        .unwrap()
        .set_node_class_ami("default", NEW_AMI);
    let classes: Api<EC2NodeClass> = Api::all(lab.cluster.client());
    classes
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "amiSelectorTerms": [{ "alias": "al2023@v20260101" }] } })),
        )
        .await
        .unwrap();
}

/// The AMI of every live instance.
fn amis(lab: &Lab) -> Vec<String> {
    lab.cluster
        .cloud()
        .unwrap()
        .instances()
        .iter()
        .map(|i| {
            i.node_claim
                .status
                .as_ref()
                .and_then(|s| s.image_id.clone())
                .unwrap_or_default()
        })
        .collect()
}

fn nodes(lab: &Lab) -> Vec<Node> {
    lab.stored("", "nodes")
}

fn is_tainted_disrupted(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| labels::DISRUPTED_TAINT.matches(t)))
}

/// Nodes being disrupted now: tainted `karpenter.sh/disrupted` or with a NodeClaim being deleted.
fn disrupting(lab: &Lab) -> BTreeSet<String> {
    let deleting: BTreeSet<String> = lab
        .claims_in_store()
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_some())
        .filter_map(|c| c.status.as_ref()?.provider_id.clone())
        .collect();
    nodes(lab)
        .iter()
        .filter(|n| {
            is_tainted_disrupted(n)
                || n.spec
                    .as_ref()
                    .and_then(|s| s.provider_id.as_ref())
                    .is_some_and(|id| deleting.contains(id))
        })
        .filter_map(|n| n.metadata.name.clone())
        .collect()
}

/// The `Drifted` condition reasons on the NodeClaims (True ones only).
fn drifted_reasons(lab: &Lab) -> Vec<String> {
    lab.claims_in_store()
        .iter()
        .filter_map(|c: &NodeClaim| {
            c.status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == conditions::nodeclaim::DRIFTED && c.status == conditions::TRUE)
                .map(|c| c.reason.clone())
        })
        .collect()
}

/// Instances asked to terminate, per providerID.
fn termination_requests(lab: &Lab) -> BTreeMap<String, usize> {
    let mut requests = BTreeMap::new();
    for event in lab.cluster.cloud().unwrap().events() {
        if let CloudEventKind::TerminationRequested { provider_id } = event.kind {
            *requests.entry(provider_id).or_default() += 1;
        }
    }
    requests
}

/// Whether `n` inflate pods run, every node runs the new AMI, and `n` nodes exist.
async fn all_on_the_new_ami(lab: &Lab, n: usize) -> bool {
    lab.running(n).await
        && nodes(lab).len() == n
        && lab.claims_in_store().len() == n
        && amis(lab).iter().all(|a| a == NEW_AMI)
        && amis(lab).len() == n
}

async fn teardown(lab: &Lab) {
    lab.scale(0).await;
    lab.run_until("every node removed", || async {
        lab.delete_claims_in_store();
        lab.claims_in_store().is_empty() && lab.cluster.cloud().unwrap().instances().is_empty()
    })
    .await;
    lab.assert_nothing_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_ami_replaces_every_node_one_at_a_time_under_a_budget_of_one() {
    let lab = one_pod_per_node(json!([{ "nodes": "1" }])).await;
    lab.scale(3).await;
    lab.run_until("three running inflate pods", || lab.running(3))
        .await;
    assert_eq!(nodes(&lab).len(), 3, "{}", lab.leftovers());
    assert_eq!(amis(&lab), [DEFAULT_AMI; 3]);
    let original: BTreeSet<String> = lab.node_names().into_iter().collect();

    release_new_ami(&lab).await;
    lab.run_until("the old nodes to be marked drifted", || async {
        drifted_reasons(&lab).iter().any(|r| r == "AMIDrift")
    })
    .await;
    let most_at_once = std::cell::Cell::new(0);
    lab.run_until("every node replaced by one on the new AMI", || async {
        most_at_once.set(most_at_once.get().max(disrupting(&lab).len()));
        all_on_the_new_ami(&lab, 3).await
    })
    .await;
    assert_eq!(most_at_once.get(), 1, "the budget allows one node at a time");
    let now: BTreeSet<String> = lab.node_names().into_iter().collect();
    assert!(now.is_disjoint(&original), "{now:?} vs {original:?}");
    assert!(drifted_reasons(&lab).is_empty(), "the replacements are current");
    assert_eq!(
        lab.cluster.cloud().unwrap().all_instances().len(),
        6,
        "one replacement per drifted node"
    );
    teardown(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_of_zero_in_a_cron_window_holds_drift_until_the_window_ends() {
    // The lab's clock starts at 00:00 UTC: no drift until 00:30.
    let lab = one_pod_per_node(json!([
        { "nodes": "0", "schedule": "0 0 * * *", "duration": "30m", "reasons": ["Drifted"] }
    ]))
    .await;
    lab.scale(1).await;
    lab.run_until("one running inflate pod", || lab.running(1)).await;
    let node = lab.node_names();
    release_new_ami(&lab).await;
    let window_end: Timestamp = "2026-01-01T00:30:00Z".parse().unwrap();
    while lab.clock.now() < window_end.checked_sub(SignedDuration::from_secs(10)).unwrap() {
        lab.step().await;
        assert_eq!(lab.node_names(), node, "{}", lab.leftovers());
        assert!(disrupting(&lab).is_empty(), "{}", lab.leftovers());
    }
    assert_eq!(drifted_reasons(&lab), ["AMIDrift"]);
    assert_eq!(lab.cluster.cloud().unwrap().all_instances().len(), 1);

    lab.run_until("the node replaced after the window", || {
        all_on_the_new_ami(&lab, 1)
    })
    .await;
    assert!(lab.clock.now() >= window_end);
    assert_ne!(lab.node_names(), node);
    teardown(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_label_in_the_nodepool_template_drifts_its_node() {
    let lab = one_pod_per_node(json!([{ "nodes": "1" }])).await;
    lab.scale(1).await;
    lab.run_until("one running inflate pod", || lab.running(1)).await;
    let node = lab.node_names();

    lab.patch_nodepool(json!({ "spec": { "template": { "metadata": { "labels": { "team": "blue" } } } } }))
        .await;
    lab.run_until("the node marked drifted by the template", || async {
        drifted_reasons(&lab) == ["NodePoolDrifted"]
    })
    .await;
    lab.run_until("a node with the new label running the pod", || async {
        let current = nodes(&lab);
        lab.running(1).await
            && current.len() == 1
            && lab.claims_in_store().len() == 1
            && current[0].metadata.labels.as_ref().unwrap().get("team") == Some(&"blue".to_owned())
    })
    .await;
    assert_ne!(lab.node_names(), node);
    assert!(drifted_reasons(&lab).is_empty(), "{}", lab.leftovers());
    teardown(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restarted_mid_drift_command_leaks_nothing_and_deletes_nothing_twice() {
    let mut lab = one_pod_per_node(json!([{ "nodes": "1" }])).await;
    lab.scale(1).await;
    lab.run_until("one running inflate pod", || lab.running(1)).await;
    let old_node = lab.node_names();
    let old_claim = lab.claims_in_store()[0].metadata.name.clone().unwrap();

    release_new_ami(&lab).await;
    // Kill the controllers once the command has tainted the node and launched its replacement,
    // before it deleted anything.
    lab.run_until("the drift command to taint and launch", || async {
        let claims = lab.claims_in_store();
        disrupting(&lab) == old_node.iter().cloned().collect()
            && claims.len() == 2
            && claims.iter().all(|c| c.metadata.deletion_timestamp.is_none())
    })
    .await;
    lab.kill_controllers().await;
    assert!(
        nodes(&lab).iter().any(is_tainted_disrupted),
        "killed mid-command: {}",
        lab.leftovers()
    );
    lab.start_controllers();

    lab.run_until("the pod on the new AMI and no taint left", || async {
        all_on_the_new_ami(&lab, 1).await && !nodes(&lab).iter().any(is_tainted_disrupted)
    })
    .await;
    let claims: Vec<String> = lab
        .claims_in_store()
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert!(!claims.contains(&old_claim), "{claims:?}");
    assert_eq!(
        lab.cluster.cloud().unwrap().all_instances().len(),
        2,
        "the restarted controller used the replacement already launched: {}",
        lab.leftovers()
    );
    assert!(
        termination_requests(&lab).values().all(|n| *n == 1),
        "an instance was deleted twice: {:?}",
        termination_requests(&lab)
    );
    assert_eq!(termination_requests(&lab).len(), 1);
    teardown(&lab).await;
}

/// One inflate pod annotated `karpenter.sh/do-not-disrupt: "true"` on an m5.large node whose
/// NodeClaim has `terminationGracePeriod: grace` (none with `None`), drifted by a new AMI.
async fn a_protected_pod_on_a_drifted_node(grace: Option<&str>) -> Lab {
    let mut lab = Lab::without_controllers().await;
    let mut template = json!({ "requirements": [
        { "key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"] },
        { "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"] }
    ] });
    if let Some(grace) = grace {
        template["terminationGracePeriod"] = json!(grace);
    }
    lab.patch_nodepool(json!({ "spec": {
        "template": { "spec": template },
        "disruption": { "budgets": [{ "nodes": "1" }] }
    } }))
    .await;
    let deployments: Api<Deployment> = Api::namespaced(lab.cluster.client(), "default");
    deployments
        .patch(
            "inflate",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "template": { "metadata": {
                "annotations": { "karpenter.sh/do-not-disrupt": "true" } } } } })),
        )
        .await
        .unwrap();
    lab.start_controllers();
    lab.scale(1).await;
    lab.run_until("one running inflate pod", || lab.running(1)).await;
    let claims = lab.claims_in_store();
    assert_eq!(
        claims[0]
            .spec
            .termination_grace_period
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        grace,
        "the NodeClaim carries the template's grace period"
    );
    release_new_ami(&lab).await;
    lab.run_until("the node to be marked drifted", || async {
        drifted_reasons(&lab) == ["AMIDrift"]
    })
    .await;
    lab
}

/// The `Consolidatable` condition's reason on the only NodeClaim.
fn consolidatable_reason(lab: &Lab) -> Option<String> {
    lab.claims_in_store()
        .first()?
        .status
        .as_ref()?
        .conditions
        .iter()
        .find_map(|c| (c.type_ == conditions::nodeclaim::CONSOLIDATABLE).then(|| c.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_node_with_a_do_not_disrupt_pod_is_replaced_when_its_node_claim_has_a_grace_period() {
    let lab = a_protected_pod_on_a_drifted_node(Some("10m")).await;
    let old_node = lab.node_names();
    let old_claim = lab.claims_in_store()[0].metadata.name.clone().unwrap();
    let deleted_at = std::cell::Cell::new(None);
    let node_gone_at = std::cell::Cell::new(None);
    lab.run_until("the pod on a new node with the new AMI", || async {
        let now = lab.clock.now();
        let claims = lab.claims_in_store();
        let old = claims
            .iter()
            .find(|c| c.metadata.name.as_ref() == Some(&old_claim));
        if deleted_at.get().is_none() && old.is_some_and(|c| c.metadata.deletion_timestamp.is_some()) {
            deleted_at.set(Some(now));
        }
        if node_gone_at.get().is_none() && !lab.node_names().contains(&old_node[0]) {
            node_gone_at.set(Some(now));
        }
        all_on_the_new_ami(&lab, 1).await
    })
    .await;
    assert_ne!(lab.node_names(), old_node);
    let (deleted_at, node_gone_at) = (deleted_at.get().unwrap(), node_gone_at.get().unwrap());
    // Termination never evicts the do-not-disrupt pod: it deletes it at the deadline (the
    // grace period after the deletion, less the pod's own 0 s grace), and only then does
    // the node go.
    assert!(
        node_gone_at.duration_since(deleted_at) >= SignedDuration::from_mins(9),
        "the node went {} after its NodeClaim's deletion",
        node_gone_at.duration_since(deleted_at)
    );
    assert_eq!(
        lab.cluster.cloud().unwrap().all_instances().len(),
        2,
        "one replacement: {}",
        lab.leftovers()
    );
    teardown(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_node_with_a_do_not_disrupt_pod_is_kept_without_a_grace_period() {
    let lab = a_protected_pod_on_a_drifted_node(None).await;
    let node = lab.node_names();
    lab.run_until("the NodeClaim to show why it is kept", || async {
        consolidatable_reason(&lab).as_deref() == Some("PodDoNotDisrupt")
    })
    .await;
    for _ in 0..120 {
        lab.step().await;
        assert_eq!(lab.node_names(), node, "{}", lab.leftovers());
        assert!(disrupting(&lab).is_empty(), "{}", lab.leftovers());
    }
    assert_eq!(lab.cluster.cloud().unwrap().all_instances().len(), 1);
    assert_eq!(consolidatable_reason(&lab).as_deref(), Some("PodDoNotDisrupt"));

    let cluster = Cluster::read(&lab.cluster.client(), "default").await.unwrap();
    let types = PoolTypes::from_cloud(&cluster, lab.cluster.cloud().unwrap(), lab.clock.now()).await;
    let explained = node::explain(
        &cluster,
        &types,
        &node[0],
        lab.clock.now(),
        node::Options::default(),
    )
    .unwrap();
    assert_eq!(explained.decision.action, Action::Keep, "{}", explained.to_text());
    assert_eq!(explained.decision.reason, "PodDoNotDisrupt");
    assert!(
        explained.decision.message.contains("drifted (AMIDrift)")
            && explained.decision.message.contains("terminationGracePeriod"),
        "{}",
        explained.decision.message
    );
    teardown(&lab).await;
}

/// When instances were launched with `ami`, in launch order.
fn launches_on(lab: &Lab, ami: &str) -> Vec<Timestamp> {
    lab.cluster
        .cloud()
        .unwrap()
        .all_instances()
        .iter()
        .filter(|i| i.node_claim.status.as_ref().and_then(|s| s.image_id.as_deref()) == Some(ami))
        .map(|i| i.launched_at)
        .collect()
}

fn launched_on(lab: &Lab, ami: &str) -> usize {
    launches_on(lab, ami).len()
}

/// The default NodePool's replacement backoff, from the store.
fn pool_backoff(lab: &Lab) -> Option<Backoff> {
    let pools: Vec<NodePool> = lab.stored(labels::KARPENTER_GROUP, "nodepools");
    pools.iter().find_map(Backoff::of)
}

/// Whether the only inflate pod runs on `node`.
fn pod_runs_on(lab: &Lab, node: &str) -> bool {
    let pods: Vec<k8s_openapi::api::core::v1::Pod> = lab.stored("", "pods");
    pods.len() == 1
        && pods[0].spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
        && pods[0].status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// `nodewright explain node` gives the backoff as the reason the node is kept, and the NodePool
/// and the NodeClaim got an event naming the next attempt.
async fn explained_and_told(lab: &Lab, node: &str, backoff: Backoff) {
    let cluster = Cluster::read(&lab.cluster.client(), "default").await.unwrap();
    let types = PoolTypes::from_cloud(&cluster, lab.cluster.cloud().unwrap(), lab.clock.now()).await;
    let explained = node::explain(&cluster, &types, node, lab.clock.now(), node::Options::default()).unwrap();
    assert_eq!(explained.decision.action, Action::Keep, "{}", explained.to_text());
    assert_eq!(explained.decision.reason, "ReplacementBackoff");
    assert!(
        explained.decision.message.contains(&backoff.until.to_string()),
        "{}",
        explained.decision.message
    );
    let events: Api<Event> = Api::all(lab.cluster.client());
    let failed: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(DISRUPTION_REPLACEMENT_FAILED))
        .collect();
    let on = |kind: &str| {
        failed
            .iter()
            .any(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some(kind))
    };
    assert!(on("NodePool") && on("NodeClaim"), "{failed:?}");
    assert!(
        failed.iter().all(|e| e
            .note
            .as_deref()
            .unwrap_or_default()
            .contains(&backoff.until.to_string())),
        "the events name the next attempt: {failed:?}"
    );
}

/// `nodewright_disruption_replacement_backoffs_total` of the `default` NodePool so far.
fn default_pool_backoffs() -> usize {
    nodewright_controller::metrics::global()
        .encode_openmetrics()
        .lines()
        .filter(|l| {
            l.starts_with("nodewright_disruption_replacement_backoffs_total{")
                && l.contains("nodepool=\"default\"")
        })
        .map(|l| {
            let value = l.rsplit(' ').next().unwrap_or_default();
            value
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("a counter value: {l}"))
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacements_on_a_bad_ami_back_off_per_node_pool_and_the_old_node_keeps_its_pod() {
    let lab = one_pod_per_node(json!([{ "nodes": "1" }])).await;
    // The metrics registry is the process's: other tests may count backoffs of `default` too.
    let backoffs_before = default_pool_backoffs();
    lab.scale(1).await;
    lab.run_until("one running inflate pod", || lab.running(1)).await;
    let old_node = lab.node_names();
    let cloud = lab.cluster.cloud().unwrap();
    cloud.break_ami(NEW_AMI);
    release_new_ami(&lab).await;
    lab.run_until("the first replacement launched", || async {
        launched_on(&lab, NEW_AMI) == 1
    })
    .await;
    let first_launch = lab.clock.now();

    // The first command times out after 10 min and the pool waits 1 min: the node says why.
    lab.run_until("the first failure recorded", || async {
        pool_backoff(&lab).is_some_and(|b| b.failures == 1)
    })
    .await;
    let backoff = pool_backoff(&lab).unwrap();
    assert!(backoff.until > lab.clock.now(), "{backoff:?}");
    assert_eq!(launched_on(&lab, NEW_AMI), 1, "no relaunch at once");
    explained_and_told(&lab, &old_node[0], backoff).await;

    // 90 minutes after the first launch. Each command waits 10 min for its replacement, then
    // the pool waits 1, 2, 4, 8, 16 min: launches at 0, 11, 23, 37, 55 and 81 min at the
    // earliest, so at most 6 (without backoff: one every 10 min, 9 or 10). A loaded machine only
    // delays them.
    let end = first_launch.checked_add(SignedDuration::from_mins(90)).unwrap();
    while lab.clock.now() < end {
        lab.step().await;
        assert_eq!(lab.node_names(), old_node, "{}", lab.leftovers());
        assert!(pod_runs_on(&lab, &old_node[0]), "{}", lab.leftovers());
        assert!(
            cloud.instances().len() <= 2,
            "at most the old node and one replacement: {}",
            lab.leftovers()
        );
    }
    let launches = launches_on(&lab, NEW_AMI);
    assert!(
        (3..=6).contains(&launches.len()),
        "at most 6 launches, and still retrying: {launches:?}"
    );
    for (k, pair) in launches.windows(2).enumerate() {
        let failures = u32::try_from(k + 1).unwrap();
        // Less a little: an instance launches a few seconds after its NodeClaim is created.
        let least = REPLACEMENT_TIMEOUT
            .checked_add(delay(failures))
            .and_then(|d| d.checked_sub(SignedDuration::from_secs(30)))
            .unwrap();
        assert!(
            pair[1].duration_since(pair[0]) >= least,
            "launch {} came {} after the one before, less than the timeout and backoff allow ({least}): {launches:?}",
            k + 2,
            pair[1].duration_since(pair[0])
        );
    }
    let failures = pool_backoff(&lab).unwrap().failures as usize;
    assert_eq!(
        default_pool_backoffs() - backoffs_before,
        failures,
        "each recorded failure is counted"
    );
    assert!(
        failures == launches.len() || failures + 1 == launches.len(),
        "every timed-out command counted once: {failures} failures, {} launches",
        launches.len()
    );
    teardown(&lab).await;
}
