//! The real kubectl against the embedded API server. These tests fail (never skip) when kubectl
//! is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use common::{WAIT, cluster};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::PostParams};
use nodewright_sim::testing::TestCluster;
use serde_json::json;
use tokio::{io::AsyncReadExt, process::Command};

struct Kubectl {
    dir: PathBuf,
}

impl Kubectl {
    fn new(cluster: &TestCluster, test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nodewright-sim-kubectl-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        cluster.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
        Self { dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args)
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl, returning (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::time::timeout(Duration::from_mins(1), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .unwrap_or_else(|e| panic!("kubectl must be installed for these tests (running it failed: {e})"));
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Runs kubectl and expects success, returning stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn apply_crds_and_examples_then_get_printer_columns() {
    let c = cluster().await;
    let k = Kubectl::new(&c, "columns");
    let out = k.ok(&["apply", "-f", &repo("crds")]).await;
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/nodepools.karpenter.sh created"),
        "{out}"
    );
    let out = k.ok(&["apply", "-f", &repo("examples/default")]).await;
    assert!(out.contains("nodepool.karpenter.sh/default created"), "{out}");
    assert!(
        out.contains("ec2nodeclass.karpenter.k8s.aws/default created"),
        "{out}"
    );

    let table = k.ok(&["get", "nodepools"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "NODECLASS", "NODES", "READY", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["default", "default"]);
    let wide = k.ok(&["get", "nodepools", "-o", "wide"]).await;
    assert!(wide.lines().next().unwrap().contains("WEIGHT"), "{wide}");

    // Status columns fill in once a controller writes status.
    k.ok(&["patch", "nodepool", "default", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"resources":{"nodes":"2"},"conditions":[{"type":"Ready","status":"True","reason":"Ready","message":"","lastTransitionTime":"2024-01-01T00:00:00Z"}]}}"#]).await;
    let table = k.ok(&["get", "nodepool", "default", "--no-headers"]).await;
    let row: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(&row[..4], ["default", "default", "2", "True"]);

    // Re-applying is a no-op; describe and get -o yaml show the defaulted object.
    let again = k.ok(&["apply", "-f", &repo("examples/default")]).await;
    assert!(
        again.contains("nodepool.karpenter.sh/default unchanged"),
        "{again}"
    );
    let yaml = k.ok(&["get", "nodepool", "default", "-o", "yaml"]).await;
    assert!(
        yaml.contains("nodes: 10%"),
        "defaulted budgets are stored:\n{yaml}"
    );
    let described = k.ok(&["describe", "nodepool", "default"]).await;
    assert!(
        described.contains("Name:") && described.contains("default"),
        "{described}"
    );

    // explain reads the OpenAPI v3 documents, for custom and built-in kinds alike.
    let explained = k.ok(&["explain", "nodepool.spec.weight"]).await;
    assert!(explained.contains("FIELD: weight <integer>"), "{explained}");
    let explained = k.ok(&["explain", "deployment.spec.replicas"]).await;
    assert!(explained.contains("FIELD: replicas <integer>"), "{explained}");

    // CEL rules reject what Karpenter's API server rejects.
    let (ok, _, err) = k
        .run(&[
            "patch",
            "nodepool",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"weight":0}}"#,
        ])
        .await;
    assert!(!ok);
    assert!(err.contains("spec.weight"), "{err}");
}

#[tokio::test]
async fn scale_edit_and_describe_a_deployment() {
    let c = cluster().await;
    let k = Kubectl::new(&c, "scale");
    k.ok(&["apply", "-f", &repo("examples/inflate.yaml")]).await;
    let out = k.ok(&["scale", "deployment", "inflate", "--replicas=5"]).await;
    assert!(out.contains("deployment.apps/inflate scaled"), "{out}");
    assert_eq!(
        k.ok(&["get", "deploy", "inflate", "-o", "jsonpath={.spec.replicas}"])
            .await,
        "5"
    );
    let table = k.ok(&["get", "deploy", "inflate"]).await;
    assert!(table.lines().next().unwrap().contains("UP-TO-DATE"), "{table}");

    // kubectl edit with a scripted editor sends a strategic merge patch.
    let editor = k.dir.join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/replicas: 5/replicas: 2/' \"$1\"\n").unwrap();
    let status = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()
        .unwrap();
    assert!(status.success());
    let mut edit = k.command(&["edit", "deployment", "inflate"]);
    edit.env("KUBE_EDITOR", &editor);
    let output = edit.output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "inflate",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}"
        ])
        .await,
        "2 3"
    );

    // kubectl validates strictly by default: a misspelt field of a built-in kind is refused and
    // named; without validation it is dropped, as the API server drops it.
    let typo = k.dir.join("typo.yaml");
    std::fs::write(
        &typo,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndata:\n  a: \"1\"\ndatta:\n  b: \"2\"\n",
    )
    .unwrap();
    let (ok, _, err) = k.run(&["apply", "-f", typo.to_str().unwrap()]).await;
    assert!(!ok && err.contains("unknown field \"datta\""), "{err}");
    k.ok(&["apply", "--validate=false", "-f", typo.to_str().unwrap()])
        .await;
    let stored: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "configmap", "typo", "-o", "json"]).await).unwrap();
    assert!(stored.get("datta").is_none(), "{stored}");
    assert_eq!(stored["data"]["a"], "1");

    let described = k.ok(&["describe", "deployment", "inflate"]).await;
    assert!(
        described.contains("Replicas:") && described.contains("2 desired"),
        "{described}"
    );
    assert!(described.contains("RollingUpdateStrategy"), "{described}");
}

#[tokio::test]
async fn get_pods_watch_sees_changes() {
    let c = cluster().await;
    let k = Kubectl::new(&c, "watch");
    let mut watch = k.command(&["get", "pods", "-w", "--output-watch-events"]);
    watch.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = watch.spawn().expect("kubectl must be installed for these tests");
    let mut stdout = child.stdout.take().unwrap();

    // Create, wait until kubectl reports it (whether from its list or its watch), then delete
    // and wait for the deletion: ordered by what kubectl printed, not by sleeping.
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "watched"}, "spec": {"containers": [{"name": "c", "image": "pause"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let mut seen = String::new();
    let mut buf = [0_u8; 4096];
    let mut deleted = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains("DELETED") && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), stdout.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if !deleted && seen.contains("ADDED") && seen.contains("watched") {
            pods.delete("watched", &kube::api::DeleteParams::default())
                .await
                .unwrap();
            deleted = true;
        }
    }
    child.kill().await.unwrap();
    assert!(seen.contains("ADDED") && seen.contains("watched"), "{seen}");
    assert!(seen.contains("DELETED"), "{seen}");
}

#[tokio::test]
async fn delete_waits_for_finalizers() {
    let c = cluster().await;
    let k = Kubectl::new(&c, "finalizers");
    let manifest = k.dir.join("held.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\ndata:\n  a: \"1\"\n",
    )
    .unwrap();
    k.ok(&["apply", "-f", manifest.to_str().unwrap()]).await;

    // kubectl delete waits while the finalizer is pending...
    let mut delete = k.command(&["delete", "configmap", "held", "--timeout=30s"]);
    delete.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = delete.spawn().expect("kubectl must be installed for these tests");
    c.wait_for_object("", "configmaps", "default", "held", WAIT, |o| {
        o["metadata"].get("deletionTimestamp").is_some()
    })
    .await
    .unwrap();
    let shown = k
        .ok(&[
            "get",
            "configmap",
            "held",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ])
        .await;
    assert!(!shown.is_empty());

    // ...and finishes once the finalizer is cleared.
    k.ok(&[
        "patch",
        "configmap",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .await;
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("configmap \"held\" deleted"));
    let (ok, _, err) = k.run(&["get", "configmap", "held"]).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
}

#[tokio::test]
async fn describe_shows_events_published_through_events_k8s_io() {
    let c = cluster().await;
    let k = Kubectl::new(&c, "events");
    k.ok(&["run", "waiting", "--image=pause"]).await;
    let pod = Api::<Pod>::default_namespaced(c.client())
        .get("waiting")
        .await
        .unwrap();
    let recorder = kube::runtime::events::Recorder::new(
        c.client(),
        kube::runtime::events::Reporter {
            controller: "nodewright".into(),
            instance: None,
        },
    );
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: "FailedScheduling".into(),
        note: Some("no NodePool can launch a node for this pod".into()),
        action: "Scheduling".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &kube::Resource::object_ref(&pod, &()))
        .await
        .unwrap();
    let described = k.ok(&["describe", "pod", "waiting"]).await;
    assert!(described.contains("FailedScheduling"), "{described}");
    assert!(
        described.contains("no NodePool can launch a node for this pod"),
        "{described}"
    );
    let events = k.ok(&["get", "events"]).await;
    assert!(events.contains("FailedScheduling"), "{events}");
}
