//! `nodewright sim serve` end to end with the real kubectl (the test fails, never skips, when
//! kubectl is missing): CRDs and the examples apply, NodePools print their columns, the inflate
//! Deployment scales through its ReplicaSet, pods are marked Unschedulable while no node fits,
//! run once a Node joins, are watched, and go when the Deployment is deleted; a finalizer holds a
//! deleted object until it is removed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The served cluster; killed when dropped.
struct Served {
    child: Child,
    dir: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Served {
    fn start(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nodewright-sim-serve-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_nodewright"))
            .args(["sim", "serve", "--port", "0", "--kubeconfig"])
            .arg(dir.join("kubeconfig"))
            .args([
                "--launch-latency",
                "0s",
                "--boot-delay",
                "0s",
                "--ready-delay",
                "0s",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first line is printed once the server listens and the kubeconfig is written.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if !line.contains("serving on http://127.0.0.1:") {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("sim serve did not start: {line}{err}");
        }
        Self { child, dir }
    }

    fn kubectl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args);
        cmd
    }

    /// Runs kubectl and expects success, returning stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self
            .kubectl(args)
            .output()
            .unwrap_or_else(|e| panic!("kubectl must be installed for these tests (running it failed: {e})"));
        let (out, err) = (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        );
        assert!(output.status.success(), "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }

    /// Polls kubectl until its output satisfies `check` (the data plane works in the background).
    fn eventually(&self, args: &[&str], what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.ok(args);
            if check(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last output:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn repo(path: &str) -> String {
    format!("{ROOT}/{path}")
}

#[test]
fn kubectl_drives_the_simulated_cluster() {
    let sim = Served::start("drive");
    // The CRDs are installed at start; applying them again (as a user following the docs does)
    // updates them in place.
    sim.ok(&["apply", "-f", &repo("crds")]);
    sim.ok(&["apply", "-f", &repo("examples/default")]);
    let pools = sim.ok(&["get", "nodepools"]);
    let header = pools.lines().next().unwrap();
    for column in ["NAME", "NODECLASS", "NODES", "READY", "AGE"] {
        assert!(header.contains(column), "{pools}");
    }
    assert!(pools.contains("default"), "{pools}");

    sim.ok(&["apply", "-f", &repo("examples/inflate.yaml")]);
    // A watch started now sees the pods the scale-up creates.
    let mut watch = sim
        .kubectl(&["get", "pods", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sim.ok(&["scale", "deployment", "inflate", "--replicas=3"]);

    // No node yet: three pods, each marked Unschedulable by the scheduler.
    let reasons = sim.eventually(
        &["get", "pods", "-l", "app=inflate", "-o",
          "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"PodScheduled\")].reason}{\"\\n\"}{end}"],
        "three Unschedulable pods",
        |out| out.lines().filter(|l| *l == "Unschedulable").count() == 3,
    );
    assert_eq!(reasons.lines().count(), 3, "{reasons}");
    let replica_sets = sim.ok(&["get", "rs", "-l", "app=inflate", "-o", "name"]);
    assert_eq!(replica_sets.lines().count(), 1, "{replica_sets}");

    // A 4-CPU node joins: the scheduler binds three 1-CPU pods, the kubelet runs them.
    let node = r#"{"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "worker-1", "labels": {"kubernetes.io/hostname": "worker-1",
            "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]}}"#;
    let node_file = sim.dir.join("node.json");
    std::fs::write(&node_file, node).unwrap();
    sim.ok(&["create", "-f", node_file.to_str().unwrap()]);
    sim.eventually(
        &[
            "get",
            "pods",
            "-l",
            "app=inflate",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name",
        ],
        "three running pods",
        |out| out.lines().count() == 3,
    );
    sim.eventually(
        &[
            "get",
            "deployment",
            "inflate",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        "the deployment to report 3 ready",
        |out| out == "3",
    );
    let wide = sim.ok(&["get", "pods", "-o", "wide"]);
    assert_eq!(wide.matches("worker-1").count(), 3, "{wide}");

    // Deleting the Deployment takes its ReplicaSet and pods with it.
    sim.ok(&["delete", "deployment", "inflate"]);
    sim.eventually(&["get", "pods", "-o", "name"], "the pods to go", str::is_empty);

    finalizers_hold_deleted_objects(&sim);

    let _ = watch.kill();
    let mut events = String::new();
    watch.stdout.take().unwrap().read_to_string(&mut events).unwrap();
    let _ = watch.wait();
    assert!(
        events.lines().filter(|l| l.starts_with("ADDED")).count() >= 3,
        "{events}"
    );
    assert!(events.lines().any(|l| l.starts_with("DELETED")), "{events}");
}

/// A finalizer holds a deleted object until kubectl patches it away.
fn finalizers_hold_deleted_objects(sim: &Served) {
    let held = r#"{"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}"#;
    let held_file = sim.dir.join("held.json");
    std::fs::write(&held_file, held).unwrap();
    sim.ok(&["create", "-f", held_file.to_str().unwrap()]);
    sim.ok(&["delete", "configmap", "held", "--wait=false"]);
    let stamp = sim.ok(&[
        "get",
        "configmap",
        "held",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(
        !stamp.is_empty(),
        "a deleted object with a finalizer stays, terminating"
    );
    sim.ok(&[
        "patch",
        "configmap",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    sim.eventually(
        &["get", "configmaps", "-o", "name"],
        "the configmap to go",
        |out| !out.contains("held"),
    );
}

#[test]
fn bad_flags_are_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args(["sim", "serve", "--boot-delay", "soon"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("--boot-delay") && err.contains("soon"), "{err}");
}
