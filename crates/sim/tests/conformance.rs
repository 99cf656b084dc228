//! kube-rs against the embedded API server over real HTTP: reads and writes, optimistic
//! concurrency, subresources, patches and apply, selectors, pages, errors and faults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use std::time::Duration;

use common::{WAIT, cluster, cm, code, deployment, pod};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams, WatchParams},
};
use nodewright_sim::faults::FaultConfig;
use serde_json::json;

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

    // A value of the wrong JSON type is refused as the API server's decoder refuses it, so no
    // typed client ever reads an object it cannot decode.
    let wrong = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": "three"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&wrong), Some(400));
    let kube::Error::Api(status) = &wrong else {
        panic!()
    };
    assert!(status.message.contains("spec.replicas"), "{}", status.message);

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
