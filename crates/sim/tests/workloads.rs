//! The simulated workload controllers through the store, on a manual clock: Deployments roll
//! out ReplicaSets and pods, DaemonSets follow the nodes, Jobs run to completion, and
//! PodDisruptionBudgets report what an eviction would be allowed. Pods are marked Running and
//! Ready here through the status subresource, as the kubelet would, so the tests hold whether or
//! not the simulated scheduler and kubelets act on them (Deployment and Job tests create no
//! Nodes, so nothing binds their pods).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet},
    batch::v1::Job,
    core::v1::Pod,
    policy::v1::PodDisruptionBudget,
};
use nodewright_sim::{
    dataplane::{
        DataPlane, DataPlaneConfig,
        workloads::{POD_TEMPLATE_HASH_LABEL, RUN_SECONDS_ANNOTATION},
    },
    meta::ManualClock,
    resources::ResourceInfo,
    store::{DeleteOptions, Filter, Store, StoreConfig, Subresource, WriteOptions},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

struct Cluster {
    store: Arc<Store>,
    clock: ManualClock,
    plane: DataPlane,
}

fn cluster() -> Cluster {
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap());
    let store = Arc::new(Store::new(StoreConfig {
        clock: clock.clock(),
        ..StoreConfig::default()
    }));
    let plane = DataPlane::new(store.clone(), None, DataPlaneConfig::default());
    Cluster { store, clock, plane }
}

impl Cluster {
    fn info(&self, group: &str, resource: &str) -> Arc<ResourceInfo> {
        self.store.registry().get(group, resource).unwrap()
    }

    fn create(&self, group: &str, resource: &str, ns: &str, value: Value) {
        self.store
            .create(&self.info(group, resource), ns, value, &WriteOptions::default())
            .unwrap();
    }

    fn list<T: DeserializeOwned>(&self, group: &str, resource: &str) -> Vec<T> {
        self.store
            .list(&self.info(group, resource), &Filter::default(), None, None)
            .unwrap()
            .items
            .iter()
            .map(|o| serde_json::from_value(o.value()).unwrap())
            .collect()
    }

    fn get<T: DeserializeOwned>(&self, group: &str, resource: &str, ns: &str, name: &str) -> T {
        let obj = self.store.get(&self.info(group, resource), ns, name).unwrap();
        serde_json::from_value(obj.value()).unwrap()
    }

    fn edit(
        &self,
        group: &str,
        resource: &str,
        ns: &str,
        name: &str,
        sub: Subresource,
        edit: impl Fn(&mut Value),
    ) {
        self.store
            .update(
                &self.info(group, resource),
                ns,
                name,
                sub,
                &WriteOptions::default(),
                &mut |current| {
                    let mut value = current.cloned().unwrap();
                    edit(&mut value);
                    Ok(value)
                },
            )
            .unwrap();
    }

    fn delete(&self, group: &str, resource: &str, ns: &str, name: &str) {
        self.store
            .delete(&self.info(group, resource), ns, name, &DeleteOptions::default())
            .unwrap();
    }

    /// Settles, and checks that a settled cluster writes nothing more.
    fn settle(&self) -> usize {
        let writes = self.plane.settle().expect("the data plane settles");
        assert_eq!(
            self.plane.settle().expect("settles again"),
            0,
            "a settled cluster writes nothing"
        );
        writes
    }

    /// Pods neither terminating nor finished.
    fn active_pods(&self) -> Vec<Pod> {
        self.list::<Pod>("", "pods")
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none() && !matches!(phase(p), Some("Succeeded" | "Failed"))
            })
            .collect()
    }

    /// What a kubelet does with a terminating pod once its containers stopped: the final delete.
    fn finish_terminating(&self) {
        for pod in self.list::<Pod>("", "pods") {
            if pod.metadata.deletion_timestamp.is_some() {
                let opts = DeleteOptions {
                    grace_period: Some(0),
                    ..DeleteOptions::default()
                };
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                // The simulated kubelet may have finished it first.
                let _ = self.store.delete(&self.info("", "pods"), &ns, &name(&pod), &opts);
            }
        }
    }

    /// What the kubelet reports for a started pod: Running since now, Ready or not.
    fn run(&self, pod: &str, ready: bool) {
        let now = self.clock.clock().now_rfc3339();
        let status = if ready { "True" } else { "False" };
        self.edit("", "pods", "default", pod, Subresource::Status, |p| {
            p["status"]["phase"] = json!("Running");
            p["status"]["startTime"] = json!(now);
            p["status"]["conditions"] = json!([
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
                {"type": "Ready", "status": status, "lastTransitionTime": now},
            ]);
        });
    }
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

fn name<T: kube::Resource>(obj: &T) -> String {
    obj.meta().name.clone().unwrap_or_default()
}

fn controller_uid<T: kube::Resource>(obj: &T) -> Option<String> {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

fn deployment(name: &str, replicas: i32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image,
                                         "resources": {"requests": {"cpu": "100m"}}}]}
            }
        }
    })
}

fn set_replicas(c: &Cluster, deploy: &str, replicas: i32) {
    c.edit("apps", "deployments", "default", deploy, Subresource::Main, |d| {
        d["spec"]["replicas"] = json!(replicas);
    });
}

fn set_image(c: &Cluster, deploy: &str, image: &str) {
    c.edit("apps", "deployments", "default", deploy, Subresource::Main, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
    });
}

fn replica_sets(c: &Cluster) -> Vec<ReplicaSet> {
    c.list("apps", "replicasets")
}

fn image(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0].image.clone().unwrap()
}

#[test]
fn a_deployment_gets_one_replica_set_and_its_pods() {
    let c = cluster();
    c.create(
        "apps",
        "deployments",
        "default",
        deployment("web", 3, "nginx:1.27"),
    );
    assert!(c.settle() > 0);

    let d: Deployment = c.get("apps", "deployments", "default", "web");
    let sets = replica_sets(&c);
    assert_eq!(sets.len(), 1);
    let rs = &sets[0];
    let hash = rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL].clone();
    assert!(!hash.is_empty() && hash.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert_eq!(name(rs), format!("web-{hash}"));
    assert_eq!(controller_uid(rs), d.metadata.uid);
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.block_owner_deletion),
        ("Deployment", Some(true))
    );
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL],
        hash
    );
    let template_labels = spec
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(template_labels[POD_TEMPLATE_HASH_LABEL], hash);

    let pods = c.active_pods();
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        assert!(name(pod).starts_with(&format!("web-{hash}-")), "{}", name(pod));
        assert_eq!(controller_uid(pod), rs.metadata.uid);
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(
            (labels["app"].as_str(), &labels[POD_TEMPLATE_HASH_LABEL]),
            ("web", &hash)
        );
        assert_eq!(image(pod), "nginx:1.27");
    }

    let rs: ReplicaSet = c.get("apps", "replicasets", "default", &name(rs));
    let rs_status = rs.status.unwrap();
    assert_eq!(
        (rs_status.replicas, rs_status.fully_labeled_replicas),
        (3, Some(3))
    );
    assert_eq!(rs_status.observed_generation, rs.metadata.generation);
    let status = d.status.unwrap();
    assert_eq!(status.observed_generation, d.metadata.generation);
    assert_eq!((status.replicas, status.updated_replicas), (Some(3), Some(3)));
    assert_eq!(
        (status.ready_replicas, status.unavailable_replicas),
        (None, Some(3))
    );
    let available = status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Available")
        .unwrap();
    assert_eq!(available.status, "False", "no pod is Ready yet");
}

#[test]
fn ready_pods_make_the_deployment_available() {
    let c = cluster();
    c.create(
        "apps",
        "deployments",
        "default",
        deployment("web", 3, "nginx:1.27"),
    );
    c.settle();
    for pod in c.active_pods() {
        c.run(&name(&pod), true);
    }
    c.settle();
    let d: Deployment = c.get("apps", "deployments", "default", "web");
    let status = d.status.unwrap();
    assert_eq!(
        (status.ready_replicas, status.available_replicas),
        (Some(3), Some(3))
    );
    assert_eq!(status.unavailable_replicas, None);
    let conditions = status.conditions.unwrap();
    let find = |t: &str| conditions.iter().find(|c| c.type_ == t).unwrap();
    assert_eq!(
        (
            find("Available").status.as_str(),
            find("Available").reason.as_deref()
        ),
        ("True", Some("MinimumReplicasAvailable"))
    );
    assert_eq!(
        find("Progressing").reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    let rs = &replica_sets(&c)[0];
    assert_eq!(rs.status.as_ref().unwrap().ready_replicas, Some(3));
}

#[test]
fn scaling_a_deployment_up_and_down() {
    let c = cluster();
    c.create(
        "apps",
        "deployments",
        "default",
        deployment("web", 3, "nginx:1.27"),
    );
    c.settle();
    set_replicas(&c, "web", 5);
    c.settle();
    assert_eq!(c.active_pods().len(), 5);
    assert_eq!(replica_sets(&c)[0].spec.as_ref().unwrap().replicas, Some(5));

    // All run, two are Ready: those two are kept, as unready pods go first.
    let pods = c.active_pods();
    let keep: Vec<String> = pods.iter().take(2).map(name).collect();
    for pod in &pods {
        c.run(&name(pod), keep.contains(&name(pod)));
    }
    set_replicas(&c, "web", 2);
    c.settle();
    let mut left: Vec<String> = c.active_pods().iter().map(name).collect();
    left.sort();
    let mut keep = keep;
    keep.sort();
    assert_eq!(left, keep);
    assert_eq!(replica_sets(&c).len(), 1);
    let d: Deployment = c.get("apps", "deployments", "default", "web");
    assert_eq!(d.status.unwrap().replicas, Some(2));

    set_replicas(&c, "web", 0);
    c.settle();
    assert!(c.active_pods().is_empty());
}

#[test]
fn a_template_change_rolls_out_a_new_replica_set() {
    let c = cluster();
    c.create(
        "apps",
        "deployments",
        "default",
        deployment("web", 3, "nginx:1.27"),
    );
    c.settle();
    let first = name(&replica_sets(&c)[0]);
    set_image(&c, "web", "nginx:1.28");
    c.settle();

    let sets = replica_sets(&c);
    assert_eq!(sets.len(), 2);
    let (old, new): (Vec<&ReplicaSet>, Vec<&ReplicaSet>) = sets.iter().partition(|rs| name(*rs) == first);
    let (old, new) = (old[0], new[0]);
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(new.spec.as_ref().unwrap().replicas, Some(3));
    let revision = |rs: &ReplicaSet| {
        rs.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"].clone()
    };
    assert_eq!((revision(old), revision(new)), ("1".to_owned(), "2".to_owned()));
    let pods = c.active_pods();
    assert_eq!(pods.len(), 3);
    assert!(
        pods.iter()
            .all(|p| controller_uid(p) == new.metadata.uid && image(p) == "nginx:1.28")
    );
    let d: Deployment = c.get("apps", "deployments", "default", "web");
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(d.status.unwrap().updated_replicas, Some(3));

    // Rolling back reuses the first ReplicaSet, which becomes the newest revision.
    set_image(&c, "web", "nginx:1.27");
    c.settle();
    let sets = replica_sets(&c);
    assert_eq!(sets.len(), 2);
    let back: ReplicaSet = c.get("apps", "replicasets", "default", &first);
    assert_eq!(back.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(revision(&back), "3");
    assert!(c.active_pods().iter().all(|p| image(p) == "nginx:1.27"));
}

#[test]
fn deleting_a_deployment_collects_its_replica_sets_and_pods() {
    let c = cluster();
    c.create(
        "apps",
        "deployments",
        "default",
        deployment("web", 3, "nginx:1.27"),
    );
    c.create(
        "apps",
        "deployments",
        "default",
        deployment("other", 1, "nginx:1.27"),
    );
    c.settle();
    assert_eq!(c.active_pods().len(), 4);
    c.delete("apps", "deployments", "default", "web");
    c.settle();
    let sets = replica_sets(&c);
    assert_eq!(sets.len(), 1);
    assert!(name(&sets[0]).starts_with("other-"));
    let pods = c.list::<Pod>("", "pods");
    assert_eq!(pods.len(), 1);
    assert!(name(&pods[0]).starts_with("other-"));
}

#[test]
fn a_paused_deployment_does_not_roll_out() {
    let c = cluster();
    c.create(
        "apps",
        "deployments",
        "default",
        deployment("web", 2, "nginx:1.27"),
    );
    c.settle();
    c.edit("apps", "deployments", "default", "web", Subresource::Main, |d| {
        d["spec"]["paused"] = json!(true);
    });
    set_image(&c, "web", "nginx:1.28");
    c.settle();
    assert_eq!(replica_sets(&c).len(), 1);
    assert!(c.active_pods().iter().all(|p| image(p) == "nginx:1.27"));
    let d: Deployment = c.get("apps", "deployments", "default", "web");
    let status = d.status.unwrap();
    assert_eq!(status.observed_generation, d.metadata.generation);
    let progressing = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("DeploymentPaused"));

    c.edit("apps", "deployments", "default", "web", Subresource::Main, |d| {
        d["spec"]["paused"] = json!(false);
    });
    c.settle();
    assert_eq!(replica_sets(&c).len(), 2);
    assert!(c.active_pods().iter().all(|p| image(p) == "nginx:1.28"));
}

fn node(c: &Cluster, name: &str, taints: &Value) {
    c.create(
        "",
        "nodes",
        "",
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }),
    );
}

fn daemon_pods(c: &Cluster) -> Vec<(String, String)> {
    let mut placed: Vec<(String, String)> = c
        .active_pods()
        .iter()
        .map(|p| {
            (
                p.spec.as_ref().unwrap().node_name.clone().unwrap_or_default(),
                name(p),
            )
        })
        .collect();
    placed.sort();
    placed
}

#[test]
fn a_daemon_set_runs_one_pod_per_eligible_node() {
    let c = cluster();
    node(&c, "a", &json!([]));
    node(&c, "b", &json!([]));
    node(
        &c,
        "gpu",
        &json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    );
    c.create(
        "apps",
        "daemonsets",
        "default",
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}
                }
            }
        }),
    );
    c.settle();

    let placed = daemon_pods(&c);
    let nodes: Vec<&str> = placed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes, ["a", "b"], "none on the tainted node");
    let ds: DaemonSet = c.get("apps", "daemonsets", "default", "agent");
    for pod in c.active_pods() {
        assert!(name(&pod).starts_with("agent-"));
        assert_eq!(controller_uid(&pod), ds.metadata.uid);
        let tolerations = pod.spec.as_ref().unwrap().tolerations.clone().unwrap();
        assert!(
            tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready")
                    && t.effect.as_deref() == Some("NoExecute"))
        );
    }
    let status = ds.status.unwrap();
    assert_eq!(
        (status.desired_number_scheduled, status.current_number_scheduled),
        (2, 2)
    );
    assert_eq!(
        (status.number_misscheduled, status.updated_number_scheduled),
        (0, Some(2))
    );
    assert_eq!(status.observed_generation, ds.metadata.generation);

    c.delete("", "nodes", "", "b");
    c.settle();
    let nodes: Vec<String> = daemon_pods(&c).into_iter().map(|(n, _)| n).collect();
    assert_eq!(nodes, ["a"]);
    let status = c
        .get::<DaemonSet>("apps", "daemonsets", "default", "agent")
        .status
        .unwrap();
    assert_eq!(
        (status.desired_number_scheduled, status.current_number_scheduled),
        (1, 1)
    );

    // A new node gets its daemon at once; a template change replaces the pods.
    node(&c, "d", &json!([]));
    c.settle();
    assert_eq!(daemon_pods(&c).len(), 2);
    c.edit("apps", "daemonsets", "default", "agent", Subresource::Main, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("agent:2");
    });
    // A rolling update replaces one pod at a time (maxUnavailable 1), each once the previous
    // replacement is Ready. Act as the kubelets: run the pods and finish the terminating ones.
    for _ in 0..4 {
        for pod in c.active_pods() {
            c.run(&name(&pod), true);
        }
        c.finish_terminating();
        c.settle();
    }
    let pods = c.active_pods();
    assert_eq!(pods.len(), 2);
    assert!(
        pods.iter().all(|p| image(p) == "agent:2"),
        "{:?}",
        pods.iter().map(image).collect::<Vec<_>>()
    );
    let status = c
        .get::<DaemonSet>("apps", "daemonsets", "default", "agent")
        .status
        .unwrap();
    assert_eq!(status.updated_number_scheduled, Some(2));
}

#[test]
fn a_daemon_set_honours_its_node_selector() {
    let c = cluster();
    node(&c, "plain", &json!([]));
    node(&c, "edge", &json!([]));
    c.edit("", "nodes", "", "edge", Subresource::Main, |n| {
        n["metadata"]["labels"]["role"] = json!("edge");
    });
    c.create(
        "apps",
        "daemonsets",
        "default",
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "edge-agent", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "edge-agent"}},
                "template": {
                    "metadata": {"labels": {"app": "edge-agent"}},
                    "spec": {
                        "nodeSelector": {"role": "edge"},
                        "containers": [{"name": "agent", "image": "agent:1"}]
                    }
                }
            }
        }),
    );
    c.settle();
    let nodes: Vec<String> = daemon_pods(&c).into_iter().map(|(n, _)| n).collect();
    assert_eq!(nodes, ["edge"]);
    // The label goes: the pod goes with it.
    c.edit("", "nodes", "", "edge", Subresource::Main, |n| {
        n["metadata"]["labels"].as_object_mut().unwrap().remove("role");
    });
    c.settle();
    assert!(daemon_pods(&c).is_empty());
}

fn job(name: &str, completions: i32, parallelism: i32, run_seconds: Option<i64>) -> Value {
    let annotations =
        run_seconds.map_or_else(|| json!({}), |s| json!({RUN_SECONDS_ANNOTATION: s.to_string()}));
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "completions": completions,
            "parallelism": parallelism,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox"}]}
            }
        }
    })
}

fn job_status(c: &Cluster, name: &str) -> k8s_openapi::api::batch::v1::JobStatus {
    c.get::<Job>("batch", "jobs", "default", name).status.unwrap()
}

fn condition(status: &k8s_openapi::api::batch::v1::JobStatus, type_: &str) -> Option<String> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

#[test]
fn a_job_runs_its_pods_to_completion() {
    let c = cluster();
    c.create("batch", "jobs", "default", job("batch", 2, 1, None));
    c.settle();
    let pods = c.active_pods();
    assert_eq!(pods.len(), 1, "parallelism 1");
    let first = name(&pods[0]);
    assert!(first.starts_with("batch-"));
    let labels = pods[0].metadata.labels.as_ref().unwrap();
    assert_eq!(labels["job-name"], "batch");
    assert_eq!(labels["batch.kubernetes.io/job-name"], "batch");
    let j: Job = c.get("batch", "jobs", "default", "batch");
    assert_eq!(labels.get("controller-uid"), j.metadata.uid.as_ref());
    assert_eq!(controller_uid(&pods[0]), j.metadata.uid);
    let status = job_status(&c, "batch");
    assert_eq!((status.active, status.succeeded), (Some(1), None));
    assert!(status.start_time.is_some());

    // A pending pod does not finish, however long it waits; a running one after the run time.
    c.clock.advance(SignedDuration::from_mins(5));
    c.settle();
    assert_eq!(c.active_pods().len(), 1);
    c.run(&first, true);
    c.clock
        .advance(DataPlaneConfig::default().job_run_time - SignedDuration::from_secs(1));
    c.settle();
    assert_eq!(
        phase(&c.get::<Pod>("", "pods", "default", &first)),
        Some("Running")
    );
    c.clock.advance(SignedDuration::from_secs(1));
    c.settle();
    let done: Pod = c.get("", "pods", "default", &first);
    assert_eq!(phase(&done), Some("Succeeded"));
    let terminated = done.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (0, Some("Completed"))
    );
    let status = job_status(&c, "batch");
    assert_eq!((status.active, status.succeeded), (Some(1), Some(1)));
    assert_eq!(condition(&status, "Complete"), None);

    let second = c.active_pods();
    assert_eq!(second.len(), 1);
    assert_ne!(name(&second[0]), first);
    c.run(&name(&second[0]), true);
    c.clock.advance(DataPlaneConfig::default().job_run_time);
    c.settle();
    let status = job_status(&c, "batch");
    assert_eq!(
        (status.active, status.succeeded, status.failed),
        (None, Some(2), None)
    );
    assert_eq!(condition(&status, "SuccessCriteriaMet").as_deref(), Some("True"));
    assert_eq!(condition(&status, "Complete").as_deref(), Some("True"));
    assert_eq!(status.completion_time.map(|t| t.0), Some(c.clock.now()));
    assert!(c.active_pods().is_empty());
    assert_eq!(c.list::<Pod>("", "pods").len(), 2, "finished pods stay");

    // A finished Job stays finished.
    c.clock.advance(SignedDuration::from_hours(1));
    assert_eq!(c.settle(), 0);
}

#[test]
fn a_job_pod_runs_for_its_annotated_time_and_parallel_pods_run_together() {
    let c = cluster();
    c.create("batch", "jobs", "default", job("quick", 3, 2, Some(5)));
    c.settle();
    let pods = c.active_pods();
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        c.run(&name(pod), true);
    }
    assert_eq!(job_status(&c, "quick").ready, Some(0), "not yet seen Ready");
    c.settle();
    assert_eq!(job_status(&c, "quick").ready, Some(2));
    c.clock.advance(SignedDuration::from_secs(5));
    c.settle();
    let status = job_status(&c, "quick");
    assert_eq!(
        (status.succeeded, status.active),
        (Some(2), Some(1)),
        "one more for the third completion"
    );
    let last = c.active_pods();
    assert_eq!(last.len(), 1);
    c.run(&name(&last[0]), false);
    c.clock.advance(SignedDuration::from_secs(5));
    c.settle();
    assert_eq!(
        condition(&job_status(&c, "quick"), "Complete").as_deref(),
        Some("True")
    );
}

fn pdb_status(c: &Cluster) -> k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus {
    c.get::<PodDisruptionBudget>("policy", "poddisruptionbudgets", "default", "web")
        .status
        .unwrap()
}

#[test]
fn a_pdb_reports_disruptions_allowed_from_ready_pods() {
    let c = cluster();
    c.create(
        "apps",
        "deployments",
        "default",
        deployment("web", 3, "nginx:1.27"),
    );
    c.create(
        "apps",
        "deployments",
        "default",
        deployment("other", 2, "nginx:1.27"),
    );
    c.create(
        "policy",
        "poddisruptionbudgets",
        "default",
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}
        }),
    );
    c.settle();
    let status = pdb_status(&c);
    assert_eq!(
        (
            status.expected_pods,
            status.current_healthy,
            status.disruptions_allowed
        ),
        (3, 0, 0)
    );

    let web: Vec<String> = c
        .active_pods()
        .iter()
        .filter(|p| p.metadata.labels.as_ref().unwrap()["app"] == "web")
        .map(name)
        .collect();
    for pod in &web {
        c.run(pod, true);
    }
    c.settle();
    let status = pdb_status(&c);
    assert_eq!(status.expected_pods, 3);
    assert_eq!((status.current_healthy, status.desired_healthy), (3, 2));
    assert_eq!(status.disruptions_allowed, 1);
    let pdb: PodDisruptionBudget = c.get("policy", "poddisruptionbudgets", "default", "web");
    assert_eq!(status.observed_generation, pdb.metadata.generation);
    let allowed = status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "DisruptionAllowed")
        .unwrap();
    assert_eq!(
        (allowed.status.as_str(), allowed.reason.as_str()),
        ("True", "SufficientPods")
    );

    c.run(&web[0], false);
    c.settle();
    let status = pdb_status(&c);
    assert_eq!((status.current_healthy, status.disruptions_allowed), (2, 0));
    let allowed = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "DisruptionAllowed")
        .unwrap();
    assert_eq!(
        (allowed.status.as_str(), allowed.reason.as_str()),
        ("False", "InsufficientPods")
    );
}
