//! Watches over real HTTP with kube-rs and kube-runtime: events, bookmarks, 410 Gone and the
//! watcher's relist, selector transitions, streaming lists, metadata watches, controllers and
//! the events Recorder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use std::time::Duration;

use common::{WAIT, cluster, cluster_with, cm, code, pod};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    runtime::{WatchStreamExt, watcher},
};
use nodewright_sim::faults::FaultConfig;
use serde_json::json;

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
        .watch(&WatchParams::default().timeout(60), &start)
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
        .watch(&WatchParams::default().labels("team=a").timeout(60), &rv)
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
    assert_eq!(initial_names(&mut streaming).await, ["s1", "s2"]);

    // Metadata-only watchers get PartialObjectMetadata.
    let partial: Api<kube::core::PartialObjectMeta<ConfigMap>> = Api::default_namespaced(c.client());
    let meta = watcher(partial, watcher::Config::default());
    let mut meta = std::pin::pin!(meta);
    assert_eq!(initial_names(&mut meta).await, ["s1", "s2"]);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_a_watcher_agree() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let start = api.create(&PostParams::default(), &cm("counter")).await.unwrap();
    let rv0 = start.resource_version().unwrap();
    let mut stream = api
        .watch(
            &WatchParams::default().fields("metadata.name=counter").timeout(20),
            &rv0,
        )
        .await
        .unwrap()
        .boxed();
    // Eight writers each add their own key through merge patches (no lost updates possible) and
    // bump a shared counter through read-modify-write with resourceVersion preconditions.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let api = api.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let patch = Patch::Merge(json!({"data": {format!("w{w}-{i}"): "x"}}));
                    api.patch("counter", &PatchParams::default(), &patch)
                        .await
                        .unwrap();
                    loop {
                        let mut current = api.get("counter").await.unwrap();
                        let data = current.data.get_or_insert_default();
                        let n: u32 = data.get("n").map_or(0, |v| v.parse().unwrap());
                        data.insert("n".into(), (n + 1).to_string());
                        match api.replace("counter", &PostParams::default(), &current).await {
                            Ok(_) => break,
                            Err(e) if common::code(&e) == Some(409) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let last = api.get("counter").await.unwrap();
    let data = last.data.clone().unwrap();
    assert_eq!(data["n"], "80", "every increment survived");
    assert_eq!(data.len(), 82, "every key survived");
    // The watcher saw strictly increasing versions ending at the final one.
    let final_rv: u64 = last.resource_version().unwrap().parse().unwrap();
    let mut previous = 0_u64;
    loop {
        match tokio::time::timeout(WAIT, stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Modified(o) => {
                let rv: u64 = o.resource_version().unwrap().parse().unwrap();
                assert!(rv > previous, "{rv} after {previous}");
                previous = rv;
                if rv == final_rv {
                    break;
                }
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(previous, final_rv);
}

/// The names a kube-runtime watcher delivers in its initial list (up to `InitDone`), sorted.
async fn initial_names<K: ResourceExt>(
    stream: &mut (impl futures_util::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin),
) -> Vec<String> {
    let mut names = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, stream.next())
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
    names
}
