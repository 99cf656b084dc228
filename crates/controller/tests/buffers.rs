//! CapacityBuffers on the simulated cluster with every controller running: a buffer of 10 pods'
//! worth gives spare nodes (no pod is created for it); a burst of 10 real pods runs on them at
//! once, with no instance launched for it; a scheduled window grows the buffer when it opens
//! and shrinks it when it closes, at the right simulated times in the buffer's time zone; empty
//! nodes holding buffer room outlive consolidateAfter and go once the buffer is deleted; a
//! buffer on a Deployment follows its replicas, and a missing workload is named in the status; a
//! buffer on a Deployment keeps a copy of its pod template in a PodTemplate it owns, named by
//! `status.podTemplateRef`, in step with the Deployment and deleted with the buffer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use std::collections::BTreeSet;

use common::Lab;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Node, PodTemplate},
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use nodewright_api::{CapacityBuffer, NodeClaim, conditions, labels};

/// One chunk: the inflate Deployment's pod (1 CPU).
const CHUNK: &str = r#"
apiVersion: v1
kind: PodTemplate
metadata:
  name: inflate-chunk
  namespace: default
template:
  metadata:
    labels:
      app: inflate
  spec:
    containers:
    - name: inflate
      image: public.ecr.aws/eks-distro/kubernetes/pause:3.2
      resources:
        requests:
          cpu: "1"
"#;

fn apply_buffer(lab: &Lab, spec: &str) {
    lab.cluster.apply_yaml(CHUNK).unwrap();
    lab.cluster
        .apply_yaml(&format!(
            "apiVersion: autoscaling.x-k8s.io/v1beta1\nkind: CapacityBuffer\nmetadata:\n  name: warm\n  namespace: default\nspec:\n{spec}"
        ))
        .unwrap();
}

fn buffer(lab: &Lab) -> Option<CapacityBuffer> {
    named(lab, "warm")
}

fn named(lab: &Lab, name: &str) -> Option<CapacityBuffer> {
    lab.stored::<CapacityBuffer>("autoscaling.x-k8s.io", "capacitybuffers")
        .into_iter()
        .find(|b| b.metadata.name.as_deref() == Some(name))
}

fn status_replicas(lab: &Lab) -> Option<i32> {
    buffer(lab)?.status?.replicas
}

/// The buffer's condition of `type_`, as (status, reason).
fn condition(lab: &Lab, type_: &str) -> Option<(String, String)> {
    let status = buffer(lab)?.status?;
    let c = status.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

fn fits_existing(lab: &Lab) -> bool {
    condition(lab, conditions::capacitybuffer::PROVISIONING)
        == Some((
            "True".into(),
            conditions::capacitybuffer::REASON_FITS_EXISTING_CAPACITY.into(),
        ))
}

/// Names of the Nodes, when every NodeClaim has an initialized Node.
fn settled_nodes(lab: &Lab) -> Option<BTreeSet<String>> {
    let nodes: Vec<Node> = lab.stored("", "nodes");
    let claims = lab.claims_in_store();
    let initialized = nodes
        .iter()
        .filter(|n| {
            n.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::NODE_INITIALIZED))
                .is_some_and(|v| v == "true")
        })
        .count();
    (initialized == nodes.len() && nodes.len() == claims.len() && !nodes.is_empty())
        .then(|| nodes.into_iter().filter_map(|n| n.metadata.name).collect())
}

/// The nodes the inflate pods are bound to.
async fn bound(lab: &Lab) -> Vec<String> {
    lab.pods()
        .await
        .into_iter()
        .filter_map(|p| p.spec?.node_name)
        .collect()
}

/// Waits until the buffer's chunks fit on initialized nodes; returns those nodes.
async fn spare_nodes(lab: &Lab) -> BTreeSet<String> {
    lab.run_until("the buffer's room on initialized nodes", || async {
        fits_existing(lab) && settled_nodes(lab).is_some()
    })
    .await;
    settled_nodes(lab).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_gives_spare_nodes_that_a_burst_uses_without_a_launch() {
    let lab = Lab::start().await;
    apply_buffer(
        &lab,
        "  podTemplateRef:\n    name: inflate-chunk\n  replicas: 10\n",
    );
    let spare = spare_nodes(&lab).await;
    assert_eq!(status_replicas(&lab), Some(10));
    assert_eq!(
        condition(&lab, conditions::capacitybuffer::READY_FOR_PROVISIONING),
        Some(("True".into(), "Resolved".into()))
    );
    assert!(lab.pods().await.is_empty(), "no pod exists for the buffer");
    let cloud = lab.cluster.cloud().unwrap();
    let before: BTreeSet<String> = cloud.instances().iter().map(|i| i.provider_id.clone()).collect();
    assert_eq!(before.len(), spare.len());

    // The burst is placed with the clock standing still: no instance can launch meanwhile (the
    // fake cloud takes 30 s), so the pods can only land on what exists.
    lab.scale(10).await;
    let frozen = lab.clock.now();
    for _ in 0..1500 {
        if bound(&lab).await.len() == 10 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(lab.clock.now(), frozen);
    let nodes = bound(&lab).await;
    assert_eq!(nodes.len(), 10, "the burst was not placed on the spare nodes");
    for node in &nodes {
        assert!(
            spare.contains(node),
            "burst pod on {node}, not a spare node {spare:?}"
        );
    }
    let running_instances = cloud
        .instances()
        .iter()
        .filter(|i| i.running_at <= frozen)
        .count();
    assert_eq!(
        running_instances,
        before.len(),
        "no instance launched for the burst"
    );
    lab.run_until("the burst to run", || lab.running(10)).await;

    // The buffer is made again beside the burst.
    lab.run_until("the buffer's room made again", || async {
        fits_existing(&lab) && settled_nodes(&lab).is_some_and(|nodes| nodes.len() > spare.len())
    })
    .await;
    assert!(lab.running(10).await, "the burst still runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_holding_buffer_room_stay_until_the_buffer_goes() {
    let lab = Lab::start().await;
    apply_buffer(
        &lab,
        "  podTemplateRef:\n    name: inflate-chunk\n  replicas: 10\n",
    );
    let spare = spare_nodes(&lab).await;
    // consolidateAfter is 1m: empty nodes without buffer room would be gone by now.
    lab.pass_minutes(5).await;
    assert_eq!(settled_nodes(&lab), Some(spare.clone()), "{}", lab.leftovers());
    let reasons: Vec<String> = lab
        .claims_in_store()
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
        .collect();
    assert_eq!(reasons.len(), spare.len(), "{reasons:?}");
    assert!(reasons.iter().all(|r| r == "CapacityBufferRoom"), "{reasons:?}");

    let buffers: Api<CapacityBuffer> = Api::namespaced(lab.cluster.client(), "default");
    buffers.delete("warm", &DeleteParams::default()).await.unwrap();
    lab.run_until("the spare nodes removed", || async {
        lab.claims_in_store().is_empty() && lab.cluster.cloud().unwrap().instances().is_empty()
    })
    .await;
    lab.assert_nothing_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_window_grows_and_shrinks_the_buffer_on_time() {
    let lab = Lab::start().await;
    // The lab starts at 2026-01-01T00:00Z, 01:00 in Paris (UTC+1 in winter): the window opens
    // at 01:10 Paris (00:10Z) and closes 20 minutes later.
    apply_buffer(
        &lab,
        "  podTemplateRef:\n    name: inflate-chunk\n  replicas: 2\n  timeZone: Europe/Paris\n  schedules:\n  - schedule: \"10 1 * * *\"\n    duration: 20m\n    replicas: 12\n",
    );
    let small = spare_nodes(&lab).await;
    assert_eq!(status_replicas(&lab), Some(2));
    let window_opens: Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
    let window_closes: Timestamp = "2026-01-01T00:30:00Z".parse().unwrap();
    assert!(
        lab.clock.now() < window_opens,
        "the small buffer settled after the window opened"
    );
    // Never early (the status follows the clock). The loop polls every 30 s of the clock's time,
    // a wall-clock wait: on a loaded machine the test's steps may outrun it, hence the margin.
    let late = SignedDuration::from_mins(3);

    lab.run_until("the window to open", || async {
        status_replicas(&lab) == Some(12)
    })
    .await;
    let opened = lab.clock.now();
    assert!(
        opened >= window_opens && opened.duration_since(window_opens) <= late,
        "grew at {opened}, the window opens at {window_opens}"
    );
    lab.run_until("room for 12 chunks", || async {
        fits_existing(&lab) && settled_nodes(&lab).is_some_and(|n| n.len() > small.len())
    })
    .await;
    let grown = settled_nodes(&lab).unwrap().len();

    lab.run_until("the window to close", || async {
        status_replicas(&lab) == Some(2)
    })
    .await;
    let closed = lab.clock.now();
    assert!(
        closed >= window_closes && closed.duration_since(window_closes) <= late,
        "shrank at {closed}, the window closes at {window_closes}"
    );
    lab.run_until("the extra room removed", || async {
        settled_nodes(&lab).is_some_and(|n| n.len() < grown)
    })
    .await;
    assert!(fits_existing(&lab) || status_replicas(&lab) == Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_buffer_follows_its_replicas_and_a_missing_one_is_named() {
    let lab = Lab::start().await;
    lab.cluster
        .apply_yaml(
            "apiVersion: autoscaling.x-k8s.io/v1beta1\nkind: CapacityBuffer\nmetadata:\n  name: warm\n  namespace: default\nspec:\n  scalableRef:\n    apiGroup: apps\n    kind: Deployment\n    name: inflate\n  percentage: 50\n---\napiVersion: autoscaling.x-k8s.io/v1beta1\nkind: CapacityBuffer\nmetadata:\n  name: ghost\n  namespace: default\nspec:\n  scalableRef:\n    apiGroup: apps\n    kind: StatefulSet\n    name: nowhere\n  replicas: 3\n",
        )
        .unwrap();
    // 50% of 0 replicas, rounded up, at least 1.
    lab.run_until("one chunk", || async { status_replicas(&lab) == Some(1) })
        .await;
    lab.scale(6).await;
    lab.run_until("half the workload", || async { status_replicas(&lab) == Some(3) })
        .await;
    lab.run_until("the room for it", || async {
        fits_existing(&lab) && lab.running(6).await
    })
    .await;

    let ghost = named(&lab, "ghost").unwrap().status.unwrap();
    assert_eq!(ghost.replicas, None);
    let ready = ghost
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::capacitybuffer::READY_FOR_PROVISIONING)
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", conditions::capacitybuffer::REASON_SCALABLE_REF_NOT_FOUND)
    );
    assert!(
        ready.message.contains("spec.scalableRef.name"),
        "{}",
        ready.message
    );
}

/// The PodTemplate `name` in the default namespace, from the store.
fn pod_template(lab: &Lab, name: &str) -> Option<PodTemplate> {
    lab.stored::<PodTemplate>("", "podtemplates")
        .into_iter()
        .find(|t| t.metadata.name.as_deref() == Some(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_buffer_keeps_its_template_in_a_pod_template_it_owns() {
    const COPY: &str = "capacitybuffer-warm-pod-template";
    let lab = Lab::start().await;
    lab.cluster
        .apply_yaml(
            "apiVersion: autoscaling.x-k8s.io/v1beta1\nkind: CapacityBuffer\nmetadata:\n  name: warm\n  namespace: default\nspec:\n  scalableRef:\n    apiGroup: apps\n    kind: Deployment\n    name: inflate\n  replicas: 1\n",
        )
        .unwrap();
    lab.run_until("the status to name the buffer's PodTemplate", || async {
        buffer(&lab)
            .and_then(|b| b.status?.pod_template_ref)
            .is_some_and(|r| r.name == COPY)
            && pod_template(&lab, COPY).is_some()
    })
    .await;
    let copy = pod_template(&lab, COPY).unwrap();
    let owner = &copy.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("CapacityBuffer", "warm", Some(true))
    );
    assert_eq!(Some(&owner.uid), buffer(&lab).unwrap().metadata.uid.as_ref());
    let held = copy.template.unwrap();
    assert_eq!(
        held.metadata
            .unwrap()
            .labels
            .unwrap()
            .get("app")
            .map(String::as_str),
        Some("inflate")
    );
    let container = &held.spec.unwrap().containers[0];
    assert_eq!(
        container.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"].0,
        "1"
    );

    // The Deployment's template changes: the copy follows, and the status its generation.
    let deployments: Api<Deployment> = Api::namespaced(lab.cluster.client(), "default");
    deployments
        .patch(
            "inflate",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": { "template": { "metadata": {
                "annotations": { "team": "blue" } } } } })),
        )
        .await
        .unwrap();
    lab.run_until("the copy to follow the Deployment", || async {
        let Some(copy) = pod_template(&lab, COPY) else {
            return false;
        };
        let team = copy
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref()?.annotations.as_ref()?.get("team").cloned());
        let generation = buffer(&lab).and_then(|b| b.status?.pod_template_generation);
        team.as_deref() == Some("blue")
            && copy.metadata.generation.is_some()
            && generation == copy.metadata.generation
    })
    .await;

    // In step, it is left alone: no write on every reconcile (a poll is 30 s).
    let version = pod_template(&lab, COPY).unwrap().metadata.resource_version;
    for _ in 0..24 {
        lab.step().await;
    }
    assert_eq!(
        pod_template(&lab, COPY).unwrap().metadata.resource_version,
        version
    );

    let buffers: Api<CapacityBuffer> = Api::namespaced(lab.cluster.client(), "default");
    buffers.delete("warm", &DeleteParams::default()).await.unwrap();
    lab.run_until("the copy to go with the buffer", || async {
        pod_template(&lab, COPY).is_none()
    })
    .await;
}
