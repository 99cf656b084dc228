//! Object lifecycles over real HTTP with kube-rs: finalizers (and kube-runtime's finalizer
//! helper), owner-reference garbage collection, namespaces, eviction against budgets, pod
//! binding and graceful termination.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use common::{WAIT, cluster, cm, code, pod};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    core::v1::{ConfigMap, Namespace, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
};
use serde_json::json;

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let mut held = cm("held");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &held).await.unwrap();

    let pending = api.delete("held", &DeleteParams::default()).await.unwrap();
    let obj = pending
        .left()
        .expect("still there while the finalizer is pending");
    assert!(obj.metadata.deletion_timestamp.is_some());
    assert!(
        api.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );

    // No new finalizers on a terminating object.
    let add = api
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "b"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&add), Some(422));

    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(code(&api.get("held").await.unwrap_err()), Some(404));

    // Without finalizers a delete is immediate.
    api.create(&PostParams::default(), &cm("plain")).await.unwrap();
    let gone = api.delete("plain", &DeleteParams::default()).await.unwrap();
    assert!(gone.is_right());
}

#[tokio::test]
async fn owner_references_are_garbage_collected() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let dependent = |name: &str, owner: &ConfigMap, block: bool, finalizer: bool| {
        let mut o = cm(name);
        o.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner.name_any(),
                uid: owner.uid().unwrap(),
                block_owner_deletion: Some(block),
                controller: Some(true),
            },
        ]);
        if finalizer {
            o.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        }
        o
    };
    let pp = PostParams::default();

    // Background: dependents go after the owner.
    let owner = api.create(&pp, &cm("bg-owner")).await.unwrap();
    api.create(&pp, &dependent("bg-dep", &owner, false, false))
        .await
        .unwrap();
    api.delete("bg-owner", &DeleteParams::background()).await.unwrap();
    c.wait_until(WAIT, "bg-dep deleted", || async {
        api.get_opt("bg-dep").await.unwrap().is_none()
    })
    .await
    .unwrap();

    // Foreground: the owner waits for a blocking dependent.
    let owner = api.create(&pp, &cm("fg-owner")).await.unwrap();
    api.create(&pp, &dependent("fg-dep", &owner, true, true))
        .await
        .unwrap();
    api.delete("fg-owner", &DeleteParams::foreground()).await.unwrap();
    let waiting = api.get("fg-owner").await.unwrap();
    assert!(waiting.finalizers().contains(&"foregroundDeletion".to_owned()));
    assert!(
        api.get("fg-dep")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    api.patch(
        "fg-dep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    c.wait_until(WAIT, "fg-owner deleted", || async {
        api.get_opt("fg-owner").await.unwrap().is_none()
    })
    .await
    .unwrap();

    // Orphan: dependents stay, without the owner reference.
    let owner = api.create(&pp, &cm("or-owner")).await.unwrap();
    api.create(&pp, &dependent("or-dep", &owner, false, false))
        .await
        .unwrap();
    api.delete("or-owner", &DeleteParams::orphan()).await.unwrap();
    c.wait_until(WAIT, "or-owner deleted", || async {
        api.get_opt("or-owner").await.unwrap().is_none()
    })
    .await
    .unwrap();
    assert!(api.get("or-dep").await.unwrap().owner_references().is_empty());

    // Namespaces take their contents with them.
    let namespaces: Api<Namespace> = Api::all(c.client());
    namespaces
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
        )
        .await
        .unwrap();
    let team: Api<ConfigMap> = Api::namespaced(c.client(), "team");
    team.create(&pp, &cm("inside")).await.unwrap();
    namespaces.delete("team", &DeleteParams::default()).await.unwrap();
    c.wait_until(WAIT, "namespace team deleted", || async {
        namespaces.get_opt("team").await.unwrap().is_none()
    })
    .await
    .unwrap();
    assert!(team.get_opt("inside").await.unwrap().is_none());
    assert_eq!(
        code(
            &namespaces
                .delete("default", &DeleteParams::default())
                .await
                .unwrap_err()
        ),
        Some(403)
    );
    let elsewhere = Api::<ConfigMap>::namespaced(c.client(), "missing")
        .create(&pp, &cm("x"))
        .await
        .unwrap_err();
    assert_eq!(code(&elsewhere), Some(404));
}

#[tokio::test]
async fn eviction_honours_pod_disruption_budgets() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let pp = PostParams::default();
    for name in ["a", "b"] {
        pods.create(&pp, &pod(name, &json!({"app": "web"}), None))
            .await
            .unwrap();
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
        )
        .await
        .unwrap();
    }
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(c.client());
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "web"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}
    }))
    .unwrap();
    pdbs.create(&pp, &pdb).await.unwrap();

    let refused = pods.evict("a", &EvictParams::default()).await.unwrap_err();
    assert_eq!(code(&refused), Some(429));
    let kube::Error::Api(status) = &refused else {
        panic!()
    };
    assert!(status.message.contains("disruption budget"), "{}", status.message);
    assert!(pods.get_opt("a").await.unwrap().is_some());

    pdbs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": 1}})),
    )
    .await
    .unwrap();
    pods.evict("a", &EvictParams::default()).await.unwrap();
    assert!(pods.get_opt("a").await.unwrap().is_none());
    // The last healthy pod is protected again.
    assert_eq!(
        code(&pods.evict("b", &EvictParams::default()).await.unwrap_err()),
        Some(429)
    );

    // A pod no budget covers is simply deleted.
    pods.create(&pp, &pod("free", &json!({"app": "other"}), None))
        .await
        .unwrap();
    pods.evict("free", &EvictParams::default()).await.unwrap();
    assert!(pods.get_opt("free").await.unwrap().is_none());
}

#[tokio::test]
async fn bound_pods_terminate_gracefully() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    pods.create(&PostParams::default(), &pod("p", &json!({}), None))
        .await
        .unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    let _: serde_json::Value = pods
        .create_subresource("binding", "p", &PostParams::default(), &binding)
        .await
        .unwrap();
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
    assert!(
        bound
            .status
            .unwrap()
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );

    let pending = pods.delete("p", &DeleteParams::default()).await.unwrap();
    let terminating = pending.left().expect("a bound pod terminates gracefully");
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    // The kubelet's final delete.
    let gone = pods
        .delete(
            "p",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap();
    assert!(gone.is_right());
}

#[tokio::test]
async fn dangling_owners_and_new_types_need_no_relist() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    // A list at an old version of a type nobody has written yet can still be watched from.
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let old = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &cm("unrelated"))
        .await
        .unwrap();
    let mut watch = pods
        .watch(&WatchParams::default().timeout(2), &old)
        .await
        .unwrap()
        .boxed();
    pods.create(&PostParams::default(), &pod("late", &json!({}), None))
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, watch.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Added(p) => assert_eq!(p.name_any(), "late"),
        other => panic!("{other:?}"),
    }

    // An object created naming only owners that do not exist is garbage.
    let mut orphan = cm("orphan");
    orphan.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "gone".into(),
            uid: "00000000-0000-0000-0000-000000000000".into(),
            ..Default::default()
        },
    ]);
    api.create(&PostParams::default(), &orphan).await.unwrap();
    c.wait_until(WAIT, "dangling dependent collected", || async {
        api.get_opt("orphan").await.unwrap().is_none()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn kube_runtime_finalizer_helper_round_trip() {
    use kube::runtime::{controller::Action, finalizer};
    use std::sync::Arc;
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    api.create(&PostParams::default(), &cm("guarded")).await.unwrap();
    let name = "nodewright.io/test";
    let reconcile = |event: finalizer::Event<ConfigMap>| async move {
        match event {
            finalizer::Event::Apply(_) | finalizer::Event::Cleanup(_) => {
                Ok::<_, std::convert::Infallible>(Action::await_change())
            }
        }
    };
    // First pass adds the finalizer (JSON patch: test null, add).
    let obj = Arc::new(api.get("guarded").await.unwrap());
    finalizer::finalizer(&api, name, obj, reconcile).await.unwrap();
    assert_eq!(api.get("guarded").await.unwrap().finalizers(), [name.to_owned()]);
    // Deleting leaves it terminating; the cleanup pass removes the finalizer and it goes.
    api.delete("guarded", &DeleteParams::default()).await.unwrap();
    let obj = Arc::new(api.get("guarded").await.unwrap());
    finalizer::finalizer(&api, name, obj, reconcile).await.unwrap();
    assert!(api.get_opt("guarded").await.unwrap().is_none());
}
