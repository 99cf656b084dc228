//! kube-rs against the embedded API server over real HTTP: the semantics controllers rely on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use std::time::Duration;

use common::{WAIT, cluster, cluster_with, cm, code};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Namespace, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    runtime::{WatchStreamExt, watcher},
};
use nodewright_sim::faults::FaultConfig;
use serde_json::json;

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "pause:3.2"}]}}
        }
    }))
    .unwrap()
}

fn pod(name: &str, labels: &serde_json::Value, node: Option<&str>) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "pause:3.2"}]});
    if let Some(node) = node {
        spec["nodeName"] = node.into();
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})).unwrap()
}

#[tokio::test]
async fn create_get_conflict_and_generation() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv1: u64 = created.resource_version().unwrap().parse().unwrap();

    let dup = api.create(&PostParams::default(), &cm("a")).await.unwrap_err();
    assert_eq!(code(&dup), Some(409));

    let mut fresh = created.clone();
    fresh.data = Some([("k".to_owned(), "w".to_owned())].into());
    let updated = api.replace("a", &PostParams::default(), &fresh).await.unwrap();
    let rv2: u64 = updated.resource_version().unwrap().parse().unwrap();
    assert!(rv2 > rv1, "resourceVersion increases: {rv1} -> {rv2}");

    // The first copy is now stale.
    let stale = api
        .replace("a", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert_eq!(code(&stale), Some(409));
    let kube::Error::Api(status) = stale else { panic!() };
    assert_eq!(status.reason, "Conflict");

    let missing = api.get("nope").await.unwrap_err();
    assert_eq!(code(&missing), Some(404));

    // Generation: bumped by spec changes, not by metadata or status.
    let deployments: Api<Deployment> = Api::default_namespaced(c.client());
    let d = deployments
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let labelled = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let status = deployments
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(status.metadata.generation, Some(1));
    let spec = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(spec.metadata.generation, Some(2));
}

#[tokio::test]
async fn status_and_scale_subresources() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    api.create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();

    // The main resource ignores status; the status subresource ignores everything else.
    let ignored = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert!(ignored.status.as_ref().and_then(|s| s.replicas).is_none());
    let status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 9}, "status": {"replicas": 2, "readyReplicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(status.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(status.status.as_ref().unwrap().ready_replicas, Some(1));

    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(
        scale.status.as_ref().unwrap().selector.as_deref(),
        Some("app=web")
    );
    let scaled = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(5));
    assert_eq!(api.get("web").await.unwrap().spec.unwrap().replicas, Some(5));
}

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
async fn server_side_apply_with_two_managers() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    let alice = PatchParams::apply("alice");
    let bob = PatchParams::apply("bob");
    api.patch("web", &alice, &Patch::Apply(deployment("web", 2)))
        .await
        .unwrap();

    // Same value: shared ownership, no conflict, and the new owner is recorded.
    let shared = api
        .patch("web", &bob, &Patch::Apply(deployment("web", 2)))
        .await
        .unwrap();
    let owners: Vec<String> = shared
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(owners, ["alice", "bob"]);
    // Different value on a field alice owns: conflict.
    let err = api
        .patch("web", &bob, &Patch::Apply(deployment("web", 3)))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(409));
    let kube::Error::Api(status) = &err else { panic!() };
    assert!(
        status.message.contains("conflict with \"alice\""),
        "{}",
        status.message
    );
    assert!(status.message.contains(".spec.replicas"), "{}", status.message);

    let forced = api
        .patch("web", &bob.clone().force(), &Patch::Apply(deployment("web", 3)))
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().replicas, Some(3));
    let managers: Vec<(String, bool)> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| {
            let owns_replicas = m
                .fields_v1
                .as_ref()
                .is_some_and(|f| f.0["f:spec"].get("f:replicas").is_some());
            (m.manager.unwrap(), owns_replicas)
        })
        .collect();
    assert!(managers.contains(&("bob".into(), true)), "{managers:?}");
    assert!(managers.contains(&("alice".into(), false)), "{managers:?}");

    // Alice stops applying a label she alone owned: it goes.
    let mut labelled = deployment("web", 3);
    labelled.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
    api.patch("web", &alice.clone().force(), &Patch::Apply(&labelled))
        .await
        .unwrap();
    assert_eq!(
        api.get("web")
            .await
            .unwrap()
            .labels()
            .get("team")
            .map(String::as_str),
        Some("a")
    );
    api.patch("web", &alice.clone().force(), &Patch::Apply(deployment("web", 3)))
        .await
        .unwrap();
    assert!(!api.get("web").await.unwrap().labels().contains_key("team"));

    // Apply needs a field manager.
    let raw = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Apply(deployment("web", 3)),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&raw), Some(400));
}

#[tokio::test]
async fn patch_types_and_dry_run() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    api.create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s"}]}}}});
    let merged = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(smp))
        .await
        .unwrap();
    let names: Vec<String> = merged
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["c", "side"], "strategic merge keeps containers by name");

    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 4}])).unwrap();
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(4));

    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    api.create(&dry, &deployment("ghost", 1)).await.unwrap();
    assert_eq!(code(&api.get("ghost").await.unwrap_err()), Some(404));
    let dry_patch = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let preview = api
        .patch("web", &dry_patch, &Patch::Merge(json!({"spec": {"replicas": 9}})))
        .await
        .unwrap();
    assert_eq!(preview.spec.unwrap().replicas, Some(9));
    assert_eq!(api.get("web").await.unwrap().spec.unwrap().replicas, Some(4));
}

#[tokio::test]
async fn selectors_and_pagination() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    pods.create(
        &PostParams::default(),
        &pod("a", &json!({"app": "web"}), Some("n1")),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("b", &json!({"app": "web"}), Some("n2")),
    )
    .await
    .unwrap();
    pods.create(&PostParams::default(), &pod("c", &json!({"app": "db"}), None))
        .await
        .unwrap();
    let names =
        |list: kube::api::ObjectList<Pod>| list.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>();

    assert_eq!(
        names(
            pods.list(&ListParams::default().fields("spec.nodeName=n1"))
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        names(pods.list(&ListParams::default().labels("app=web")).await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("app!=web"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().fields("status.phase=Pending,metadata.name!=a"))
                .await
                .unwrap()
        ),
        ["b", "c"]
    );
    let bad = pods
        .list(&ListParams::default().fields("spec.bogus=x"))
        .await
        .unwrap_err();
    assert_eq!(code(&bad), Some(400));

    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    for i in 0..7 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(ResourceExt::name_any));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn watch_events_bookmarks_and_gone() {
    let c = cluster_with(4, Duration::from_millis(100)).await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &start)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("w")).await.unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    let mut bookmarks = 0;
    while kinds.len() < 3 {
        match tokio::time::timeout(WAIT, stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(o) => kinds.push(format!("ADDED {}", o.name_any())),
            WatchEvent::Modified(o) => kinds.push(format!("MODIFIED {}", o.data.unwrap()["k"])),
            WatchEvent::Deleted(o) => kinds.push(format!("DELETED {}", o.name_any())),
            WatchEvent::Bookmark(_) => bookmarks += 1,
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED w", "MODIFIED 2", "DELETED w"]);
    // Bookmarks arrive while idle.
    while bookmarks == 0 {
        if let WatchEvent::Bookmark(b) = tokio::time::timeout(WAIT, stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            assert!(!b.metadata.resource_version.is_empty());
            bookmarks += 1;
        }
    }

    // More changes than the history keeps: the start version is compacted away.
    for i in 0..6 {
        api.create(&PostParams::default(), &cm(&format!("x{i}")))
            .await
            .unwrap();
    }
    let mut old = api.watch(&WatchParams::default(), &start).await.unwrap().boxed();
    match tokio::time::timeout(WAIT, old.try_next()).await.unwrap() {
        Ok(Some(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        Err(e) => assert_eq!(code(&e), Some(410)),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn watcher_relists_after_410() {
    let c = cluster_with(2, Duration::from_secs(5)).await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    api.create(&PostParams::default(), &cm("before")).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(api.clone(), watcher::Config::default()).default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if tx.send(event.map_err(|e| e.to_string())).is_err() {
                break;
            }
        }
    });
    let mut inits = 0;
    let mut applied: Vec<String> = Vec::new();
    let mut next = async || tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    // First list.
    loop {
        match next().await {
            Ok(watcher::Event::Init) => inits += 1,
            Ok(watcher::Event::InitDone) => break,
            Ok(watcher::Event::InitApply(o)) => applied.push(o.name_any()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((inits, applied.as_slice()), (1, ["before".to_owned()].as_slice()));

    // Cut the watcher off (every read fails), change more than the history holds, then let it
    // back: its version is gone, so it must relist and see the new objects.
    c.state().faults.set(FaultConfig {
        fail_ratio: 1.0,
        fail_code: 500,
        ..FaultConfig::default()
    });
    c.state().store.drop_watches();
    for i in 0..5 {
        c.state()
            .store
            .create(
                &c.state().store.registry().get("", "configmaps").unwrap(),
                "default",
                serde_json::to_value(cm(&format!("gap-{i}"))).unwrap(),
                &nodewright_sim::store::WriteOptions::default(),
            )
            .unwrap();
    }
    c.state().faults.clear();
    let mut relisted = Vec::new();
    loop {
        match next().await {
            Ok(watcher::Event::Init) => inits += 1,
            Ok(watcher::Event::InitApply(o)) => relisted.push(o.name_any()),
            Ok(watcher::Event::InitDone) if inits >= 2 => break,
            _ => {}
        }
    }
    assert!(inits >= 2);
    assert!(relisted.contains(&"gap-4".to_owned()), "{relisted:?}");
    // And it keeps watching afterwards.
    api.create(&PostParams::default(), &cm("after")).await.unwrap();
    loop {
        if let Ok(watcher::Event::Apply(o)) = next().await
            && o.name_any() == "after"
        {
            break;
        }
    }
    task.abort();
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
async fn faults_and_restart() {
    let mut c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    api.create(&PostParams::default(), &cm("kept")).await.unwrap();
    for code_wanted in [409_u16, 429, 500] {
        c.state().faults.set(FaultConfig {
            fail_ratio: 1.0,
            fail_code: code_wanted,
            ..FaultConfig::default()
        });
        assert_eq!(code(&api.get("kept").await.unwrap_err()), Some(code_wanted));
    }
    c.state().faults.set(FaultConfig {
        delay_ratio: 1.0,
        delay: Duration::from_millis(200),
        ..FaultConfig::default()
    });
    let started = std::time::Instant::now();
    api.get("kept").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    c.state().faults.clear();

    // A restart drops open watches but keeps every object.
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    c.restart().await.unwrap();
    let ended = tokio::time::timeout(WAIT, stream.try_next()).await.unwrap();
    assert!(!matches!(ended, Ok(Some(_))), "the watch ended: {ended:?}");
    assert_eq!(api.get("kept").await.unwrap().name_any(), "kept");
}

#[tokio::test]
async fn malformed_requests_get_status_errors() {
    let c = cluster().await;
    let url = format!("{}/api/v1/namespaces/default/configmaps", c.url());
    let client = c.client();
    let request = axum::http::Request::post(&url)
        .header("content-type", "application/json")
        .body(b"{not json".to_vec())
        .unwrap();
    let err = client.request::<ConfigMap>(request).await.unwrap_err();
    assert_eq!(code(&err), Some(400));
    let wrong_kind = axum::http::Request::post(&url)
        .header("content-type", "application/json")
        .body(br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}"#.to_vec())
        .unwrap();
    assert_eq!(
        code(&client.request::<ConfigMap>(wrong_kind).await.unwrap_err()),
        Some(400)
    );
    let no_such = axum::http::Request::get(format!("{}/apis/nothing.io/v1/things", c.url()))
        .body(Vec::new())
        .unwrap();
    assert_eq!(
        code(&client.request::<ConfigMap>(no_such).await.unwrap_err()),
        Some(404)
    );
    let not_allowed = axum::http::Request::put(&url).body(b"{}".to_vec()).unwrap();
    assert_eq!(
        code(&client.request::<ConfigMap>(not_allowed).await.unwrap_err()),
        Some(405)
    );
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one table of cases
async fn odd_requests_get_status_errors_and_the_server_survives() {
    let c = cluster().await;
    let client = c.client();
    let pods = "/api/v1/namespaces/default/pods";
    let cms = "/api/v1/namespaces/default/configmaps";
    let deploy = "/apis/apps/v1/namespaces/default/deployments";
    Api::<Deployment>::default_namespaced(c.client())
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    let pdb = json!({"metadata": {"name": "huge"}, "spec": {"minAvailable": "9223372036854775807%", "selector": {}}});
    Api::<PodDisruptionBudget>::default_namespaced(c.client())
        .create(&PostParams::default(), &serde_json::from_value(pdb).unwrap())
        .await
        .unwrap();
    Api::<Pod>::default_namespaced(c.client())
        .create(&PostParams::default(), &pod("p", &json!({}), None))
        .await
        .unwrap();
    let cases: Vec<(&str, String, &str, &[u8], u16)> = vec![
        ("POST", cms.into(), "application/json", b"[]", 400),
        (
            "POST",
            cms.into(),
            "application/json",
            br#"{"metadata": "x"}"#,
            422,
        ),
        (
            "POST",
            cms.into(),
            "application/json",
            br#"{"metadata": {"name": "a%2Fb/c"}}"#,
            422,
        ),
        ("GET", format!("{pods}?limit=abc"), "", b"", 400),
        ("GET", format!("{pods}?labelSelector=a%20in%20b"), "", b"", 400),
        ("GET", format!("{pods}?continue=zz"), "", b"", 400),
        (
            "GET",
            format!("{pods}?watch=true&resourceVersion=abc"),
            "",
            b"",
            400,
        ),
        ("GET", format!("{pods}?dryRun=Some"), "", b"", 200),
        (
            "POST",
            format!("{cms}?dryRun=Some"),
            "application/json",
            br#"{"metadata": {"name": "d"}}"#,
            400,
        ),
        (
            "POST",
            format!("{cms}?fieldValidation=Bad"),
            "application/json",
            br#"{"metadata": {"name": "d"}}"#,
            400,
        ),
        ("PATCH", format!("{deploy}/web"), "text/plain", b"{}", 415),
        (
            "PATCH",
            format!("{deploy}/web"),
            "application/json-patch+json",
            br#"[{"op": "jump"}]"#,
            400,
        ),
        (
            "PATCH",
            format!("{deploy}/web"),
            "application/strategic-merge-patch+json",
            b"[1]",
            400,
        ),
        (
            "PATCH",
            format!("{deploy}/web?fieldManager=x"),
            "application/apply-patch+yaml",
            b"- a\n- b\n",
            400,
        ),
        (
            "PATCH",
            format!("{deploy}/web/scale"),
            "application/merge-patch+json",
            br#"{"spec": {"replicas": -1}}"#,
            422,
        ),
        (
            "DELETE",
            format!("{cms}/nothing"),
            "application/json",
            b"{garbage",
            400,
        ),
        (
            "POST",
            format!("{pods}/p/eviction"),
            "application/json",
            b"nope",
            400,
        ),
        (
            "POST",
            format!("{pods}/p/binding"),
            "application/json",
            b"{}",
            400,
        ),
        ("GET", format!("{pods}/p/log"), "", b"", 404),
        ("GET", "/apis/apps".into(), "", b"", 200),
        ("DELETE", "/version".into(), "", b"", 405),
    ];
    for (method, path, content_type, body, expected) in cases {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", c.url()));
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let request = request.body(body.to_vec()).unwrap();
        let result = client.request_text(request).await;
        match (result, expected) {
            (Ok(_), 200) => {}
            (Err(err), code_wanted) => assert_eq!(code(&err), Some(code_wanted), "{method} {path}: {err:?}"),
            (Ok(text), _) => panic!("{method} {path}: expected {expected}, got success {text}"),
        }
    }
    // An eviction against an absurd budget is refused, not a crash.
    let eviction = axum::http::Request::post(format!("{}{pods}/p/eviction", c.url()))
        .header("content-type", "application/json")
        .body(br#"{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}}"#.to_vec())
        .unwrap();
    assert_eq!(code(&client.request_text(eviction).await.unwrap_err()), Some(429));
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
}

#[tokio::test]
async fn selector_watches_see_objects_enter_and_leave() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().labels("team=a").timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("m")).await.unwrap();
    let label = |team: &str| Patch::Merge(json!({"metadata": {"labels": {"team": team}}}));
    api.patch("m", &PatchParams::default(), &label("a"))
        .await
        .unwrap();
    api.patch("m", &PatchParams::default(), &label("b"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(WAIT, stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.labels()["team"])),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.labels()["team"])),
            WatchEvent::Modified(o) => seen.push(format!("MODIFIED {}", o.labels()["team"])),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    // Entering the selection is ADDED, leaving it is DELETED (carrying the new state).
    assert_eq!(seen, ["ADDED a", "DELETED b"]);
}

#[tokio::test]
async fn streaming_list_and_metadata_watchers() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    for name in ["s1", "s2"] {
        api.create(&PostParams::default(), &cm(name)).await.unwrap();
    }
    // sendInitialEvents: the objects arrive on the watch itself, then the initial-events-end
    // bookmark completes the initial list.
    let streaming = watcher(api.clone(), watcher::Config::default().streaming_lists());
    let mut streaming = std::pin::pin!(streaming);
    let mut listed = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, streaming.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::InitApply(o) => listed.push(o.name_any()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    listed.sort();
    assert_eq!(listed, ["s1", "s2"]);

    // Metadata-only watchers get PartialObjectMetadata.
    let partial: Api<kube::core::PartialObjectMeta<ConfigMap>> = Api::default_namespaced(c.client());
    let meta = watcher(partial, watcher::Config::default());
    let mut meta = std::pin::pin!(meta);
    let mut names = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, meta.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::InitApply(o) => names.push(o.name_any()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    names.sort();
    assert_eq!(names, ["s1", "s2"]);
    api.create(&PostParams::default(), &cm("s3")).await.unwrap();
    loop {
        if let watcher::Event::Apply(o) = tokio::time::timeout(WAIT, meta.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            && o.name_any() == "s3"
        {
            assert!(o.metadata.uid.is_some());
            break;
        }
    }
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
async fn delete_collection_clock_and_single_object_watch() {
    let fixed: jiff::Timestamp = "2030-01-02T03:04:05Z".parse().unwrap();
    let c = nodewright_sim::testing::TestCluster::start_with(
        nodewright_sim::store::StoreConfig {
            clock: nodewright_sim::meta::Clock::from_fn(move || fixed),
            ..nodewright_sim::store::StoreConfig::default()
        },
        nodewright_sim::ServerConfig::default(),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let mut labelled = cm("x1");
    labelled.metadata.labels = Some([("batch".to_owned(), "1".to_owned())].into());
    let created = api.create(&PostParams::default(), &labelled).await.unwrap();
    assert_eq!(
        created.metadata.creation_timestamp.unwrap().0.to_string(),
        "2030-01-02T03:04:05Z"
    );
    labelled.metadata.name = Some("x2".into());
    api.create(&PostParams::default(), &labelled).await.unwrap();
    api.create(&PostParams::default(), &cm("keep")).await.unwrap();

    // A watch on one object's legacy path sees only that object.
    let url = format!(
        "{}/api/v1/watch/namespaces/default/configmaps/x1?timeoutSeconds=1",
        c.url()
    );
    let text = c
        .client()
        .request_text(axum::http::Request::get(url).body(Vec::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\"ADDED\"") && text.contains("\"x1\""), "{text}");

    let deleted = api
        .delete_collection(&DeleteParams::default(), &ListParams::default().labels("batch=1"))
        .await
        .unwrap();
    let names: Vec<String> = deleted
        .left()
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["x1", "x2"]);
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(left, ["keep"]);
}

#[tokio::test]
async fn unserved_subresources_are_not_found() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    api.create(&PostParams::default(), &cm("plain")).await.unwrap();
    let status = api
        .patch_status(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&status), Some(404));
    assert_eq!(code(&api.get_scale("plain").await.unwrap_err()), Some(404));
}

#[tokio::test]
async fn recorder_events_are_visible_as_core_events() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let c = cluster().await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let created = pods
        .create(&PostParams::default(), &pod("pending", &json!({}), None))
        .await
        .unwrap();
    let recorder = Recorder::new(
        c.client(),
        Reporter {
            controller: "nodewright".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Warning,
        reason: "FailedScheduling".into(),
        note: Some("no NodePool can launch a node for this pod".into()),
        action: "Scheduling".into(),
        secondary: None,
    };
    let reference = kube::Resource::object_ref(&created, &());
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();

    let core: Api<CoreEvent> = Api::default_namespaced(c.client());
    let fields = format!(
        "involvedObject.name=pending,involvedObject.uid={}",
        created.uid().unwrap()
    );
    let listed = core.list(&ListParams::default().fields(&fields)).await.unwrap();
    assert_eq!(listed.items.len(), 1, "{:?}", listed.items);
    let shown = &listed.items[0];
    assert_eq!(
        shown.message.as_deref(),
        Some("no NodePool can launch a node for this pod")
    );
    assert_eq!(shown.reporting_component.as_deref(), Some("nodewright"));
    assert_eq!(shown.series.as_ref().and_then(|s| s.count), Some(2));
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

#[tokio::test]
async fn a_kube_runtime_controller_reconciles_against_the_server() {
    use kube::runtime::{Controller, controller::Action};
    use std::sync::Arc;
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Failed(String);
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let reconcile = |obj: Arc<ConfigMap>, api: Arc<Api<ConfigMap>>| async move {
        if obj.labels().get("reconciled").is_none() {
            api.patch(
                &obj.name_any(),
                &PatchParams::apply("test-controller"),
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": obj.name_any(), "labels": {"reconciled": "yes"}}})),
            )
            .await
            .map_err(|e| Failed(e.to_string()))?;
        }
        Ok::<_, Failed>(Action::await_change())
    };
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, |_, _, _| Action::await_change(), Arc::new(api.clone()))
        .for_each(|_| async {});
    let task = tokio::spawn(controller);
    for name in ["r1", "r2"] {
        api.create(&PostParams::default(), &cm(name)).await.unwrap();
    }
    for name in ["r1", "r2"] {
        c.wait_for_object("", "configmaps", "default", name, WAIT, |o| {
            o["metadata"]["labels"]["reconciled"] == "yes"
        })
        .await
        .unwrap();
    }
    task.abort();
}
