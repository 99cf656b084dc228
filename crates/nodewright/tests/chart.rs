//! The Helm chart (charts/nodewright), checked with the real Helm v4 library: PyPI's
//! `helm-python-sdk` (Helm's Go SDK behind a C ABI) lints it strictly, validates values against
//! values.schema.json and renders it, through charts/render.py. For the defaults and three other
//! value sets the rendered objects are checked field by field, then applied to the embedded API
//! server, whose simulated scheduler must place every controller replica on a node Nodewright
//! does not manage, one per zone. The chart's CRDs must equal the repository's, and
//! deploy/nodewright.yaml must equal a fresh render.
//!
//! The SDK comes from the venv `.ci/run` creates (`NODEWRIGHT_HELM_VENV`); without it these tests
//! fail, saying how to create it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod helm;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use helm::{NAMESPACE, objects, render, repo, run_render, value_set};

use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams},
};
use nodewright_sim::{
    cloud::FakeCloudConfig, dataplane::DataPlaneConfig, meta::ManualClock, testing::TestCluster,
};
use serde_json::{Value, json};

fn kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], wanted: &str) -> &'a Value {
    let found = kind(objects, wanted);
    assert_eq!(found.len(), 1, "one {wanted} expected");
    found[0]
}

fn env_names(deployment: &Value) -> BTreeSet<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

fn env_value<'a>(deployment: &'a Value, name: &str) -> Option<&'a str> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

/// What every rendering must hold, whatever the values.
fn check_invariants(objects: &[Value]) {
    let deployment = one(objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["args"], json!(["controller"]));
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let names = env_names(deployment);
    for karpenter_name in [
        "CLUSTER_NAME",
        "BATCH_MAX_DURATION",
        "BATCH_IDLE_DURATION",
        "FEATURE_GATES",
        "LOG_LEVEL",
        "METRICS_PORT",
        "HEALTH_PROBE_PORT",
        "VM_MEMORY_OVERHEAD_PERCENT",
        "RESERVED_ENIS",
        "SYSTEM_NAMESPACE",
    ] {
        assert!(
            names.contains(karpenter_name),
            "{karpenter_name} missing from {names:?}"
        );
    }
    // The probes and metrics ports are the ones the controller is told to serve on.
    let ports: BTreeMap<&str, i64> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["containerPort"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        env_value(deployment, "METRICS_PORT"),
        Some(ports["http-metrics"].to_string().as_str())
    );
    assert_eq!(
        env_value(deployment, "HEALTH_PROBE_PORT"),
        Some(ports["http"].to_string().as_str())
    );

    check_least_privilege(objects);
    // Bindings name the ServiceAccount the pods run as.
    let account = pod["serviceAccountName"].as_str().unwrap();
    for binding in kind(objects, "ClusterRoleBinding")
        .into_iter()
        .chain(kind(objects, "RoleBinding"))
    {
        assert_eq!(binding["subjects"][0]["name"], account);
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    }
    // The PodDisruptionBudget and the Service select the controller's pods.
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(
        &one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        selector
    );
    assert_eq!(&one(objects, "Service")["spec"]["selector"], selector);
}

/// No Secrets, ConfigMaps only the log level's (read by name, in the release namespace), no
/// wildcards, and the namespaced Role only for Leases and that ConfigMap.
fn check_least_privilege(objects: &[Value]) {
    let mut rules = Vec::new();
    for role in kind(objects, "ClusterRole")
        .into_iter()
        .chain(kind(objects, "Role"))
    {
        rules.extend(role["rules"].as_array().unwrap().iter());
    }
    assert!(!rules.is_empty());
    let log_level_rule = json!({
        "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["config-logging"], "verbs": ["get"]
    });
    for rule in rules.iter().filter(|r| **r != &log_level_rule) {
        let resources: Vec<&str> = rule["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for forbidden in ["secrets", "configmaps", "*"] {
            assert!(!resources.contains(&forbidden), "rule grants {forbidden}: {rule}");
        }
        assert!(!verbs.contains(&"*"), "wildcard verb: {rule}");
        assert!(
            !rule["apiGroups"].as_array().unwrap().contains(&json!("*")),
            "wildcard group: {rule}"
        );
    }
    let role = one(objects, "Role");
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    assert!(
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["resources"] == json!(["leases"]) || *r == log_level_rule),
        "the namespaced Role is for the leader-election Lease and the log level only: {role}"
    );
}

#[test]
fn default_values_render_lint_clean_with_karpenters_settings_and_a_restricted_pod() {
    let objects = objects("default-values.yaml");
    check_invariants(&objects);
    let deployment = one(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["whenUnsatisfiable"],
        "DoNotSchedule"
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(env_value(deployment, "CLUSTER_NAME"), Some("my-cluster"));
    assert_eq!(env_value(deployment, "BATCH_IDLE_DURATION"), Some("1s"));
    assert_eq!(env_value(deployment, "BATCH_MAX_DURATION"), Some("10s"));
    assert_eq!(
        env_value(deployment, "FEATURE_GATES"),
        Some("SpotToSpotConsolidation=false,NodeRepair=false")
    );
    assert_eq!(env_value(deployment, "LOG_LEVEL"), Some("info"));
    assert_eq!(env_value(deployment, "METRICS_PORT"), Some("8080"));
    assert_eq!(env_value(deployment, "HEALTH_PROBE_PORT"), Some("8081"));
    // Unset optional settings are left out, so the controller's own defaults apply.
    assert_eq!(env_value(deployment, "INTERRUPTION_QUEUE"), None);
    let resources = &pod["containers"][0]["resources"];
    assert!(resources["requests"]["cpu"].is_string() && resources["limits"]["memory"].is_string());
    assert_eq!(one(&objects, "PodDisruptionBudget")["spec"]["maxUnavailable"], 1);
    assert!(kind(&objects, "ServiceMonitor").is_empty());
    assert_eq!(
        one(&objects, "ServiceAccount")["metadata"].get("annotations"),
        None
    );
}

#[test]
fn an_eks_value_set_carries_irsa_the_queue_feature_gates_and_a_service_monitor() {
    let objects = objects("irsa-values.yaml");
    check_invariants(&objects);
    let deployment = one(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        one(&objects, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::111122223333:role/KarpenterControllerRole-prod"
    );
    assert_eq!(
        env_value(deployment, "INTERRUPTION_QUEUE"),
        Some("prod-karpenter")
    );
    assert_eq!(
        env_value(deployment, "CLUSTER_ENDPOINT"),
        Some("https://ABCDEF.gr7.us-east-1.eks.amazonaws.com")
    );
    assert_eq!(
        env_value(deployment, "FEATURE_GATES"),
        Some("SpotToSpotConsolidation=true,NodeRepair=false")
    );
    assert_eq!(env_value(deployment, "BATCH_IDLE_DURATION"), Some("2s"));
    assert_eq!(env_value(deployment, "LOG_LEVEL"), Some("debug"));
    let monitor = one(&objects, "ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "30s");
    assert!(
        objects
            .iter()
            .all(|o| o["metadata"]["labels"]["team"] == "platform")
    );
}

#[test]
fn renamed_objects_an_existing_account_a_digest_and_other_ports_render_consistently() {
    let objects = objects("custom-ports-values.yaml");
    check_invariants(&objects);
    assert!(kind(&objects, "ServiceAccount").is_empty());
    let deployment = one(&objects, "Deployment");
    assert_eq!(deployment["metadata"]["name"], "autoscaler");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "platform-autoscaler");
    assert_eq!(
        pod["containers"][0]["image"],
        "registry.example.com/nodewright@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(env_value(deployment, "METRICS_PORT"), Some("9090"));
    assert_eq!(one(&objects, "Service")["spec"]["ports"][0]["port"], 9090);
    assert_eq!(
        one(&objects, "PodDisruptionBudget")["metadata"]["name"],
        "autoscaler-pdb"
    );
    assert_eq!(env_value(deployment, "VM_MEMORY_OVERHEAD_PERCENT"), Some("0.1"));
    assert_eq!(env_value(deployment, "RESERVED_ENIS"), Some("1"));
}

#[test]
fn a_single_replica_value_set_drops_the_spread_and_the_priority_class() {
    let objects = objects("single-replica-values.yaml");
    check_invariants(&objects);
    let deployment = one(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(pod.get("topologySpreadConstraints"), None);
    assert_eq!(pod.get("priorityClassName"), None);
    assert_eq!(env_value(deployment, "LOG_FORMAT"), Some("text"));
    assert_eq!(pod["containers"][0]["resources"]["requests"]["cpu"], "250m");
}

#[test]
fn missing_or_malformed_values_are_refused_naming_the_value() {
    let rendered = render(None);
    let error = rendered
        .render_error
        .expect("rendering without settings.clusterName fails");
    assert!(error.contains("settings.clusterName is required"), "{error}");

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (name, yaml, field) in [
        (
            "bad-duration.yaml",
            "settings: {clusterName: x, batchIdleDuration: soon}",
            "/settings/batchIdleDuration",
        ),
        (
            "bad-log-level.yaml",
            "settings: {clusterName: x}\nlogLevel: loud",
            "/logLevel",
        ),
        (
            "unknown-setting.yaml",
            "settings: {clusterName: x, isolatedVPC: true}",
            "isolatedVPC",
        ),
        (
            "bad-endpoint.yaml",
            "settings: {clusterName: x, clusterEndpoint: not-a-url}",
            "/settings/clusterEndpoint",
        ),
    ] {
        let path = dir.join(name);
        fs::write(&path, yaml).unwrap();
        let rendered = render(Some(&path));
        let error = rendered
            .schema_error
            .unwrap_or_else(|| panic!("{name} was accepted"));
        assert!(error.contains(field), "{name}: {error}");
        assert!(rendered.manifests.is_empty());
    }
}

#[test]
fn the_charts_crds_are_the_repositorys() {
    let list = |dir: &Path| -> BTreeMap<String, String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    fs::read_to_string(&path).unwrap(),
                )
            })
            .collect()
    };
    let chart = list(&repo().join("charts/nodewright/crds"));
    let repo_crds = list(&repo().join("crds"));
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        repo_crds.keys().collect::<Vec<_>>(),
        "copy crds/ into charts/nodewright/crds/"
    );
    for (name, text) in &repo_crds {
        assert!(
            chart[name] == *text,
            "charts/nodewright/crds/{name} differs from crds/{name}: copy it"
        );
    }
}

#[test]
fn deploy_manifest_is_the_default_rendering() {
    let output = run_render(Some(&value_set("default-values.yaml")), &["--stream"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fresh = String::from_utf8(output.stdout).unwrap();
    let file = fs::read_to_string(repo().join("deploy/nodewright.yaml")).unwrap();
    // The header comment is the file's own; the rendering starts at the first document.
    let body = file.find("\n---\n").map_or(file.as_str(), |at| &file[at + 1..]);
    assert!(
        body == fresh,
        "deploy/nodewright.yaml is stale: regenerate it with the command in its header"
    );
}

fn api(cluster: &TestCluster, group: &str, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::all_with(cluster.client(), &resource)
}

/// A Ready node outside Nodewright's management (a managed node group's), or inside it with
/// `nodepool`.
async fn add_node(cluster: &TestCluster, name: &str, zone: &str, nodepool: Option<&str>) {
    let nodes = api(cluster, "", "v1", "Node", "nodes");
    let mut labels = json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "topology.kubernetes.io/zone": zone,
    });
    if let Some(pool) = nodepool {
        labels["karpenter.sh/nodepool"] = json!(pool);
    }
    let node: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": {}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({"status": {
        "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True"}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Kinds the embedded API server does not serve: the prometheus-operator's ServiceMonitor (a CRD
/// that cluster does not have). RBAC objects are served and enforced by tests/rbac.rs.
const NOT_SERVED: [&str; 1] = ["ServiceMonitor"];

/// Applies a value set's objects to a simulated cluster with three system nodes (one per zone)
/// and a bigger Nodewright-managed node, and returns the controller pods' (node, zone) once the
/// data plane has settled.
async fn deploy(values: &str) -> (usize, Vec<(String, String)>) {
    let objects = objects(values);
    let replicas =
        usize::try_from(one(&objects, "Deployment")["spec"]["replicas"].as_u64().unwrap()).unwrap();
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
    let cluster = TestCluster::start_simulated(
        clock.clock(),
        FakeCloudConfig::default(),
        DataPlaneConfig::default(),
    )
    .await
    .unwrap();
    for (name, zone) in [
        ("system-a", "us-east-1a"),
        ("system-b", "us-east-1b"),
        ("system-c", "us-east-1c"),
    ] {
        add_node(&cluster, name, zone, None).await;
    }
    add_node(&cluster, "managed-a", "us-east-1a", Some("default")).await;

    let mut applied = BTreeSet::new();
    for object in &objects {
        let kind = object["kind"].as_str().unwrap();
        if NOT_SERVED.contains(&kind) {
            continue;
        }
        let yaml = serde_saphyr::to_string(object).unwrap();
        cluster
            .apply_yaml(&yaml)
            .unwrap_or_else(|e| panic!("{values}: applying {kind}: {e}"));
        applied.insert(kind.to_owned());
    }
    assert!(
        applied.contains("Deployment")
            && applied.contains("Service")
            && applied.contains("PodDisruptionBudget")
    );
    cluster.data_plane().unwrap().settle().unwrap();

    let pods = api(&cluster, "", "v1", "Pod", "pods");
    let selector = one(&objects, "Deployment")["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect::<Vec<_>>()
        .join(",");
    let listed = pods.list(&ListParams::default().labels(&selector)).await.unwrap();
    let zone_of = |node: &str| format!("us-east-1{}", node.chars().last().unwrap());
    let placed = listed
        .items
        .iter()
        .map(|pod| {
            assert_eq!(pod.metadata.namespace.as_deref(), Some(NAMESPACE));
            assert_eq!(
                pod.data["status"]["phase"], "Running",
                "{values}: {}",
                pod.data["status"]
            );
            let node = pod.data["spec"]["nodeName"].as_str().unwrap().to_owned();
            let zone = zone_of(&node);
            (node, zone)
        })
        .collect();
    (replicas, placed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_set_comes_up_on_the_simulated_cluster_one_replica_per_zone_off_managed_nodes() {
    for values in [
        "default-values.yaml",
        "irsa-values.yaml",
        "custom-ports-values.yaml",
        "single-replica-values.yaml",
    ] {
        let (replicas, placed) = deploy(values).await;
        assert_eq!(placed.len(), replicas, "{values}: {placed:?}");
        let nodes: BTreeSet<&String> = placed.iter().map(|(node, _)| node).collect();
        let zones: BTreeSet<&String> = placed.iter().map(|(_, zone)| zone).collect();
        assert_eq!(
            nodes.len(),
            replicas,
            "{values}: one replica per node: {placed:?}"
        );
        assert_eq!(
            zones.len(),
            replicas,
            "{values}: one replica per zone: {placed:?}"
        );
        assert!(
            nodes.iter().all(|node| node.starts_with("system-")),
            "{values}: a replica landed on a node Nodewright manages: {placed:?}"
        );
    }
}
