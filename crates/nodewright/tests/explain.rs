//! `nodewright explain` end to end: the binary reads a kubeconfig for the embedded API server
//! holding a hand-built cluster (a NodePool whose nodes carry the taint `team=ml:NoSchedule`, one
//! node with a do-not-disrupt pod, one pending pod that does not tolerate the taint) and prints
//! why the node is kept and why the pod is pending, as JSON and as text; unknown objects are
//! errors naming the object, with a failing exit status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::{path::PathBuf, process::Command};

use jiff::SignedDuration;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use nodewright_sim::{
    cloud::FakeCloudConfig, dataplane::DataPlaneConfig, meta::ManualClock, testing::TestCluster,
};
use serde_json::{Value, json};

const SETUP: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    spec:
      requirements:
        - { key: karpenter.sh/capacity-type, operator: In, values: ["on-demand"] }
      taints:
        - { key: team, value: ml, effect: NoSchedule }
      nodeClassRef: { group: karpenter.k8s.aws, kind: EC2NodeClass, name: default }
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 1m
"#;

fn api(
    cluster: &TestCluster,
    group: &str,
    kind: &str,
    plural: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = match group {
        "" => ("", "v1"),
        "karpenter.sh" => ("karpenter.sh", "v1"),
        other => panic!("no version known for group {other}"),
    };
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match namespace {
        Some(ns) => Api::namespaced_with(cluster.client(), ns, &resource),
        None => Api::all_with(cluster.client(), &resource),
    }
}

/// Creates the object, then merges `status` into its status subresource.
async fn put(api: &Api<DynamicObject>, object: Value, status: Value) {
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .unwrap();
}

async fn cluster() -> (TestCluster, ManualClock) {
    let (cluster, clock) =
        TestCluster::start_with_default_node_class(FakeCloudConfig::default(), DataPlaneConfig::default())
            .await
            .unwrap();
    cluster.apply_yaml(SETUP).unwrap();
    let initialized = clock.now().to_string();
    clock.advance(SignedDuration::from_hours(1));
    let provider_id = "aws:///us-east-1a/i-0123";
    let resources = json!({ "cpu": "3920m", "memory": "14Gi", "pods": "58" });
    put(
        &api(&cluster, "", "Node", "nodes", None),
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": "ml-1", "labels": {
                "kubernetes.io/hostname": "ml-1",
                "node.kubernetes.io/instance-type": "m5.xlarge",
                "topology.kubernetes.io/zone": "us-east-1a",
                "karpenter.sh/capacity-type": "on-demand",
                "karpenter.sh/nodepool": "default",
                "karpenter.sh/initialized": "true" } },
            "spec": { "providerID": provider_id, "taints": [{ "key": "team", "value": "ml", "effect": "NoSchedule" }] }
        }),
        json!({ "allocatable": resources, "capacity": resources,
                "conditions": [{ "type": "Ready", "status": "True" }] }),
    )
    .await;
    let condition = |type_: &str| json!({ "type": type_, "status": "True", "reason": type_, "message": "", "lastTransitionTime": initialized });
    put(
        &api(&cluster, "karpenter.sh", "NodeClaim", "nodeclaims", None),
        json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": { "name": "default-ml-1", "labels": { "karpenter.sh/nodepool": "default" } },
            "spec": { "requirements": [],
                      "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } }
        }),
        json!({ "providerID": provider_id, "nodeName": "ml-1", "capacity": resources, "allocatable": resources,
                "conditions": [condition("Launched"), condition("Registered"), condition("Initialized")] }),
    )
    .await;
    let pods = api(&cluster, "", "Pod", "pods", Some("default"));
    let container =
        json!([{ "name": "c", "image": "pause", "resources": { "requests": { "cpu": "500m" } } }]);
    put(
        &pods,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "trainer", "namespace": "default",
                          "annotations": { "karpenter.sh/do-not-disrupt": "true" } },
            "spec": { "nodeName": "ml-1", "containers": container,
                      "tolerations": [{ "key": "team", "operator": "Exists" }] }
        }),
        json!({ "phase": "Running" }),
    )
    .await;
    put(
        &pods,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "web", "namespace": "default" },
            "spec": { "containers": container }
        }),
        json!({ "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/1 nodes are available" }] }),
    )
    .await;
    (cluster, clock)
}

/// Runs `nodewright explain ARGS --kubeconfig K --at NOW`; (success, stdout, stderr).
async fn explain(kubeconfig: &PathBuf, clock: &ManualClock, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nodewright"));
    command
        .arg("explain")
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--at", &clock.now().to_string()]);
    // The binary talks to the server this test's runtime serves: run it off the runtime.
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_prints_why_a_node_is_kept_and_why_a_pod_is_pending() {
    let (cluster, clock) = cluster().await;
    let dir = std::env::temp_dir().join(format!("nodewright-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).unwrap();

    let (ok, out, err) = explain(&kubeconfig, &clock, &["node", "ml-1", "-o", "json"]).await;
    assert!(ok, "{err}");
    let node: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(node["nodeClaim"], "default-ml-1");
    assert_eq!(node["candidate"], false);
    assert_eq!(node["decision"]["action"], "Keep");
    assert_eq!(node["decision"]["reason"], "PodDoNotDisrupt");
    assert!(
        node["decision"]["message"]
            .as_str()
            .unwrap()
            .contains("default/trainer"),
        "{out}"
    );

    let (ok, out, err) = explain(&kubeconfig, &clock, &["pod", "default/web", "-o", "json"]).await;
    assert!(ok, "{err}");
    let pod: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pod["verdict"]["outcome"], "Unschedulable", "{out}");
    assert_eq!(pod["provisioner"]["acts"], true);
    let node_reason = pod["existingNodes"][0]["reason"].as_str().unwrap();
    assert!(node_reason.contains("team=ml:NoSchedule"), "{out}");
    assert_eq!(pod["nodePools"][0]["name"], "default");
    let pool_reason = pod["nodePools"][0]["reason"].as_str().unwrap();
    assert!(pool_reason.contains("team=ml:NoSchedule"), "{out}");

    let (ok, text, err) = explain(&kubeconfig, &clock, &["pod", "default/web"]).await;
    assert!(ok, "{err}");
    assert!(text.contains("Verdict: Unschedulable"), "{text}");
    assert!(
        text.contains("Node ml-1: taint team=ml:NoSchedule not tolerated"),
        "{text}"
    );

    let (ok, _, err) = explain(&kubeconfig, &clock, &["pod", "default/missing"]).await;
    assert!(!ok);
    assert!(err.contains("pod default/missing not found"), "{err}");
    let (ok, _, err) = explain(&kubeconfig, &clock, &["node", "missing"]).await;
    assert!(!ok);
    assert!(err.contains("node missing not found"), "{err}");

    let _ = std::fs::remove_dir_all(&dir);
}

/// An `https://` API server is reached over TLS (rustls with ring): against a listener that
/// answers the TLS handshake with plain HTTP, the command fails in the handshake (rustls reads
/// the reply as a corrupt record), not for lack of a TLS stack.
#[test]
fn https_api_servers_are_reached_over_tls() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        // One connection is enough: the client gives up after the failed handshake.
        if let Ok((mut stream, _)) = listener.accept() {
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let dir = std::env::temp_dir().join(format!("nodewright-explain-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: tls\nclusters:\n- name: tls\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: tls\n  context: {{ cluster: tls, user: tls }}\nusers:\n- name: tls\n  user: {{ token: t }}\n"
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args(["explain", "pod", "default/x", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    let _ = server.join();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("no TLS stack"), "the build has no TLS: {stderr}");
    // rustls's answer to a reply that is not TLS: the handshake was attempted.
    assert!(
        stderr.contains("InvalidContentType"),
        "the failure is the TLS handshake's: {stderr}"
    );
}
