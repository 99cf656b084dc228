//! Events against the embedded API server: a changed note for the same object and reason is a
//! new event that `kubectl describe` shows, and an identical repeat only raises the count.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{
    core::v1::{Event as CoreEvent, Pod},
    events::v1::Event,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams},
};
use nodewright_controller::events::{Events, reasons};
use nodewright_sim::{meta::ManualClock, testing::TestCluster};

const POD: &str = r"
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: default }
spec:
  containers: [{ name: app, image: registry.k8s.io/pause:3.9 }]
";

/// The notes of events.k8s.io/v1 Events about `pod`, with their series counts, sorted by note.
async fn notes(events: &Api<Event>, pod: &Pod) -> Vec<(String, Option<i32>)> {
    let mut notes: Vec<(String, Option<i32>)> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == pod.metadata.uid.as_deref()
                && e.reason.as_deref() == Some(reasons::NOMINATED)
        })
        .map(|e| (e.note.unwrap_or_default(), e.series.map(|s| s.count)))
        .collect();
    notes.sort();
    notes
}

/// The messages `kubectl describe pod` lists: core/v1 Events selected by the involved object.
async fn described(client: &kube::Client, pod: &Pod) -> Vec<String> {
    let api: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let selector = format!(
        "involvedObject.name={},involvedObject.namespace=default,involvedObject.uid={}",
        pod.name_any(),
        pod.metadata.uid.as_deref().unwrap()
    );
    let mut messages: Vec<String> = api
        .list(&ListParams::default().fields(&selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    messages.sort();
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_note_is_a_new_event_and_an_identical_repeat_is_counted() {
    let cluster = TestCluster::start().await.unwrap();
    cluster.apply_yaml(POD).unwrap();
    let client = cluster.client();
    let pod = Api::<Pod>::namespaced(client.clone(), "default")
        .get("web-1")
        .await
        .unwrap();
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap());
    let events = Events::new(client.clone(), "events-test").with_clock(clock.clock());
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let first = "Pod should schedule on: nodeclaim/default-abcde".to_owned();
    let second = "Pod should schedule on: node/ip-10-0-0-1.ec2.internal".to_owned();

    events
        .normal(&pod, reasons::NOMINATED, "Nominating", first.clone())
        .await;
    // The same instant: a simulated clock stands still between steps, and names must not collide.
    events
        .normal(&pod, reasons::NOMINATED, "Nominating", second.clone())
        .await;
    assert_eq!(
        notes(&api, &pod).await,
        vec![(second.clone(), None), (first.clone(), None)],
        "both notes are events of their own"
    );
    assert_eq!(
        described(&client, &pod).await,
        vec![second.clone(), first.clone()]
    );

    clock.advance(SignedDuration::from_secs(30));
    events
        .normal(&pod, reasons::NOMINATED, "Nominating", second.clone())
        .await;
    assert_eq!(
        notes(&api, &pod).await,
        vec![(second.clone(), Some(2)), (first.clone(), None)],
        "the repeat raised the count of its event and created none"
    );
    assert_eq!(described(&client, &pod).await, vec![second, first]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_of_an_event_deleted_meanwhile_is_published_anew() {
    let cluster = TestCluster::start().await.unwrap();
    cluster.apply_yaml(POD).unwrap();
    let client = cluster.client();
    let pod = Api::<Pod>::namespaced(client.clone(), "default")
        .get("web-1")
        .await
        .unwrap();
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap());
    let events = Events::new(client.clone(), "events-test").with_clock(clock.clock());
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let note = "Pod should schedule on: nodeclaim/default-abcde".to_owned();

    events
        .normal(&pod, reasons::NOMINATED, "Nominating", note.clone())
        .await;
    let published = api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(published.len(), 1);
    api.delete(&published[0].name_any(), &DeleteParams::default())
        .await
        .unwrap();

    events
        .normal(&pod, reasons::NOMINATED, "Nominating", note.clone())
        .await;
    assert_eq!(notes(&api, &pod).await, vec![(note, None)]);
}
