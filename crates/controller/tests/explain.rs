//! `explain` against the embedded API server with hand-built clusters (no controllers running:
//! nodes, NodeClaims, pods and PDBs are written as the controllers and kubelets would leave
//! them): a node kept by a do-not-disrupt pod, one kept by a PDB, one whose consolidateAfter has
//! not elapsed, one consolidation removes, an empty one, an unmanaged one, empty ones beyond the
//! budget; a pod pending for a
//! taint and NodePool limits, one too large for any instance type, one a new node would take,
//! and one bound. Each answer is checked in the machine-readable form.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{
    core::v1::{Node, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client, Resource,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use nodewright_api::NodeClaim;
use nodewright_controller::{
    events::{Events, reasons},
    explain::{
        Cluster, ExplainError, PoolTypes,
        node::{self, Action},
        pod::{self, Outcome},
    },
};
use nodewright_sim::{
    cloud::FakeCloudConfig, dataplane::DataPlaneConfig, meta::ManualClock, testing::TestCluster,
};
use serde_json::{Value, json};

const START: &str = "2026-01-01T00:00:00Z";

struct Setup {
    cluster: TestCluster,
    clock: ManualClock,
}

impl Setup {
    async fn start(yaml: &str) -> Self {
        let clock = ManualClock::new(START.parse().unwrap());
        let cluster = TestCluster::start_simulated(
            clock.clock(),
            FakeCloudConfig::default(),
            DataPlaneConfig::default(),
        )
        .await
        .unwrap();
        cluster
            .apply_yaml(include_str!("../../../examples/default/ec2nodeclass.yaml"))
            .unwrap();
        cluster.apply_yaml(yaml).unwrap();
        Self { cluster, clock }
    }

    fn client(&self) -> Client {
        self.cluster.client()
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client())
    }

    fn claims(&self) -> Api<NodeClaim> {
        Api::all(self.client())
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client(), "default")
    }

    /// A Ready node of `instance_type` with 3920m CPU allocatable; with `pool`, a launched and
    /// initialized NodeClaim of that NodePool owns it (initialized `initialized_ago` before now).
    async fn node(
        &self,
        name: &str,
        instance_type: &str,
        pool: Option<&str>,
        extra: &Value,
        initialized_ago: i64,
    ) {
        self.node_with_claim_spec(name, instance_type, pool, extra, initialized_ago, &json!({}))
            .await;
    }

    /// [`Setup::node`], with `claim_spec` merged into its NodeClaim's spec.
    async fn node_with_claim_spec(
        &self,
        name: &str,
        instance_type: &str,
        pool: Option<&str>,
        extra: &Value,
        initialized_ago: i64,
        claim_spec: &Value,
    ) {
        let provider_id = format!("aws:///us-east-1a/i-{name}");
        let mut labels = json!({
            "kubernetes.io/hostname": name,
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/os": "linux",
            "node.kubernetes.io/instance-type": instance_type,
            "topology.kubernetes.io/zone": "us-east-1a",
            "karpenter.sh/capacity-type": "on-demand",
        });
        if let Some(pool) = pool {
            labels["karpenter.sh/nodepool"] = json!(pool);
            labels["karpenter.sh/registered"] = json!("true");
            labels["karpenter.sh/initialized"] = json!("true");
        }
        let mut node = json!({
            "metadata": { "name": name, "labels": labels },
            "spec": { "providerID": provider_id }
        });
        merge(&mut node, extra);
        create(&self.nodes(), node).await;
        let cpu = if instance_type == "m5.2xlarge" {
            "7910m"
        } else {
            "3920m"
        };
        patch_status(
            &self.nodes(),
            name,
            json!({ "status": {
                "allocatable": { "cpu": cpu, "memory": "14Gi", "pods": "58" },
                "capacity": { "cpu": cpu, "memory": "16Gi", "pods": "58" },
                "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "" }]
            } }),
        )
        .await;
        let Some(pool) = pool else {
            return;
        };
        let claim = format!("{pool}-{name}");
        let mut claim_object = json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": { "name": claim, "labels": { "karpenter.sh/nodepool": pool } },
            "spec": {
                "requirements": [],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
            }
        });
        merge(&mut claim_object["spec"], claim_spec);
        create(&self.claims(), claim_object).await;
        let initialized = self
            .clock
            .now()
            .checked_sub(SignedDuration::from_secs(initialized_ago))
            .unwrap();
        let condition = |type_: &str| {
            json!({ "type": type_, "status": "True", "reason": type_, "message": "",
                    "lastTransitionTime": initialized.to_string() })
        };
        patch_status(
            &self.claims(),
            &claim,
            json!({ "status": {
                "providerID": provider_id,
                "nodeName": name,
                "capacity": { "cpu": cpu, "memory": "16Gi", "pods": "58" },
                "allocatable": { "cpu": cpu, "memory": "14Gi", "pods": "58" },
                "conditions": [condition("Launched"), condition("Registered"), condition("Initialized")]
            } }),
        )
        .await;
    }

    /// A pod requesting `cpu`; bound and Running on `node`, or pending.
    async fn pod(&self, name: &str, node: Option<&str>, cpu: &str, extra: &Value) {
        let mut pod = json!({
            "metadata": { "name": name, "namespace": "default", "labels": { "app": name } },
            "spec": { "containers": [{ "name": "c", "image": "pause",
                "resources": { "requests": { "cpu": cpu, "memory": "128Mi" } } }] }
        });
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        merge(&mut pod, extra);
        create(&self.pods(), pod).await;
        let status = match node {
            Some(_) => json!({ "status": { "phase": "Running", "conditions": [
                { "type": "Ready", "status": "True" }, { "type": "PodScheduled", "status": "True" }] } }),
            None => json!({ "status": { "phase": "Pending" } }),
        };
        patch_status(&self.pods(), name, status).await;
    }

    async fn read(&self, events_namespace: &str) -> (Cluster, PoolTypes, Timestamp) {
        let cluster = Cluster::read(&self.client(), events_namespace).await.unwrap();
        let now = self.clock.now();
        let types = PoolTypes::from_cloud(&cluster, self.cluster.cloud().unwrap(), now).await;
        (cluster, types, now)
    }
}

fn merge(target: &mut Value, extra: &Value) {
    match (target, extra) {
        (Value::Object(target), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (target, extra) => *target = extra.clone(),
    }
}

async fn create<K>(api: &Api<K>, value: Value)
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

async fn patch_status<K>(api: &Api<K>, name: &str, patch: Value)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

const NODE_POOL: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    spec:
      requirements:
        - { key: kubernetes.io/arch, operator: In, values: ["amd64"] }
        - { key: karpenter.sh/capacity-type, operator: In, values: ["on-demand"] }
        - { key: karpenter.k8s.aws/instance-category, operator: In, values: ["c", "m", "r"] }
      nodeClassRef: { group: karpenter.k8s.aws, kind: EC2NodeClass, name: default }
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 1m
    budgets: [{ nodes: "10" }]
"#;

/// Six nodes of the default NodePool and one unmanaged, an hour after they initialized (one 40
/// seconds after).
async fn disruption_cluster() -> Setup {
    let setup = Setup::start(NODE_POOL).await;
    setup.clock.advance(SignedDuration::from_hours(1));
    let none = json!({});
    for (name, instance_type) in [
        ("keeps-pod", "m5.xlarge"),
        ("guarded", "m5.xlarge"),
        ("oversized", "m5.2xlarge"),
        ("empty", "m5.xlarge"),
    ] {
        setup
            .node(name, instance_type, Some("default"), &none, 3600)
            .await;
    }
    setup.node("young", "m5.xlarge", Some("default"), &none, 40).await;
    setup.node("unmanaged", "m5.xlarge", None, &none, 0).await;
    setup
        .pod(
            "precious",
            Some("keeps-pod"),
            "500m",
            &json!({ "metadata": { "annotations": { "karpenter.sh/do-not-disrupt": "true" } } }),
        )
        .await;
    setup.pod("quorum", Some("guarded"), "500m", &none).await;
    setup.pod("small", Some("oversized"), "1", &none).await;
    setup.pod("newcomer", Some("young"), "500m", &none).await;
    create(
        &Api::<PodDisruptionBudget>::namespaced(setup.client(), "default"),
        json!({ "metadata": { "name": "quorum", "namespace": "default" },
                "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": "quorum" } } } }),
    )
    .await;
    patch_status(
        &Api::<PodDisruptionBudget>::namespaced(setup.client(), "default"),
        "quorum",
        json!({ "status": { "currentHealthy": 1, "desiredHealthy": 1, "disruptionsAllowed": 0, "expectedPods": 1 } }),
    )
    .await;
    setup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_explained_by_the_disruption_rules() {
    let setup = disruption_cluster().await;
    // What the disruption loop leaves on a NodeClaim it keeps: the condition and an event.
    let claims = setup.claims();
    let mut conditions = serde_json::to_value(
        &claims
            .get("default-guarded")
            .await
            .unwrap()
            .status
            .unwrap()
            .conditions,
    )
    .unwrap();
    conditions.as_array_mut().unwrap().push(json!({ "type": "Consolidatable", "status": "False",
        "reason": "PodDisruptionBudgetBlocks", "message": "PodDisruptionBudget quorum allows no disruption of pod default/quorum",
        "lastTransitionTime": setup.clock.now().to_string() }));
    patch_status(
        &claims,
        "default-guarded",
        json!({ "status": { "conditions": conditions } }),
    )
    .await;
    let guarded_claim = claims.get("default-guarded").await.unwrap();
    Events::new(setup.client(), "test")
        .with_clock(setup.clock.clock())
        .normal(
            &guarded_claim,
            reasons::UNCONSOLIDATABLE,
            "Disrupting",
            "PodDisruptionBudget quorum allows no disruption of pod default/quorum".to_owned(),
        )
        .await;

    let (cluster, types, now) = setup.read("default").await;
    let explain = |name: &str| node::explain(&cluster, &types, name, now, node::Options::default()).unwrap();

    let kept = explain("keeps-pod");
    assert!(!kept.candidate);
    assert_eq!(kept.decision.action, Action::Keep);
    assert_eq!(kept.decision.reason, "PodDoNotDisrupt");
    assert!(kept.decision.message.contains("default/precious"), "{kept:?}");
    assert_eq!(kept.node_claim.as_deref(), Some("default-keeps-pod"));
    assert_eq!(kept.node_pool.as_deref(), Some("default"));

    let guarded = explain("guarded");
    assert_eq!(guarded.decision.action, Action::Keep);
    assert_eq!(guarded.decision.reason, "PodDisruptionBudgetBlocks");
    assert!(guarded.decision.message.contains("quorum"), "{guarded:?}");
    let condition = guarded.consolidatable_condition.as_ref().unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "PodDisruptionBudgetBlocks")
    );
    assert!(
        guarded
            .events
            .iter()
            .any(|e| e.reason == reasons::UNCONSOLIDATABLE && e.note.contains("quorum")),
        "{:?}",
        guarded.events
    );
    assert_eq!(guarded.pods.len(), 1);
    assert!(guarded.pods[0].moves);

    let young = explain("young");
    assert!(young.candidate, "{young:?}");
    assert_eq!(young.decision.action, Action::Keep);
    assert_eq!(young.decision.reason, "ConsolidateAfterNotElapsed");
    assert_eq!(young.decision.time_left.as_deref(), Some("20s"));

    let oversized = explain("oversized");
    assert!(oversized.candidate);
    assert_eq!(oversized.decision.action, Action::Consolidate, "{oversized:?}");
    assert_eq!(oversized.decision.reason, "Underutilized");
    assert!(
        oversized.decision.savings_per_hour.unwrap() > 0.0,
        "{oversized:?}"
    );

    let empty = explain("empty");
    assert_eq!(empty.decision.action, Action::RemoveEmpty, "{empty:?}");
    assert_eq!(empty.decision.reason, "Empty");

    let unmanaged = explain("unmanaged");
    assert_eq!(unmanaged.decision.action, Action::NotManaged);
    assert!(!unmanaged.candidate);
    assert_eq!(unmanaged.node_claim, None);

    let missing = node::explain(&cluster, &types, "nope", now, node::Options::default()).unwrap_err();
    assert!(matches!(missing, ExplainError::NotFound { .. }));
    assert_eq!(missing.to_string(), "node nope not found");

    // The JSON form carries the machine-readable fields under stable names.
    let json = serde_json::to_value(&guarded).unwrap();
    assert_eq!(json["decision"]["action"], "Keep");
    assert_eq!(json["decision"]["reason"], "PodDisruptionBudgetBlocks");
    assert_eq!(
        json["consolidatableCondition"]["reason"],
        "PodDisruptionBudgetBlocks"
    );
    assert!(guarded.to_text().contains("Kept: PodDisruptionBudgetBlocks"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_nodes_beyond_the_budget_are_kept_with_the_budget_as_the_reason() {
    let one = NODE_POOL.replace(r#"budgets: [{ nodes: "10" }]"#, r#"budgets: [{ nodes: "1" }]"#);
    assert_ne!(one, NODE_POOL);
    let setup = Setup::start(&one).await;
    setup.clock.advance(SignedDuration::from_hours(1));
    for name in ["empty-a", "empty-b"] {
        setup
            .node(name, "m5.xlarge", Some("default"), &json!({}), 3600)
            .await;
    }
    let (cluster, types, now) = setup.read("default").await;
    let explain = |name: &str| node::explain(&cluster, &types, name, now, node::Options::default()).unwrap();
    // Emptiness takes empty nodes in name order: the budget of one goes to the first.
    assert_eq!(explain("empty-a").decision.action, Action::RemoveEmpty);
    let second = explain("empty-b");
    assert_eq!(second.decision.action, Action::Keep);
    assert_eq!(second.decision.reason, "DisruptionBudgetExhausted");
    assert!(second.candidate);
}

/// Marks NodeClaim `claim` `Drifted=True` (reason `AMIDrift`) since `ago` seconds.
async fn mark_drifted(setup: &Setup, claim: &str, ago: i64) {
    let claims = setup.claims();
    let mut conditions =
        serde_json::to_value(&claims.get(claim).await.unwrap().status.unwrap().conditions).unwrap();
    let since = setup
        .clock
        .now()
        .checked_sub(SignedDuration::from_secs(ago))
        .unwrap();
    conditions
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "Drifted", "status": "True",
        "reason": "AMIDrift", "message": "", "lastTransitionTime": since.to_string() }));
    patch_status(&claims, claim, json!({ "status": { "conditions": conditions } })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drifted_nodes_are_replaced_oldest_drift_first_one_command_at_a_time() {
    let setup = Setup::start(NODE_POOL).await;
    setup.clock.advance(SignedDuration::from_hours(1));
    for name in ["drifted-long-ago", "drifted-lately", "spare"] {
        setup
            .node(name, "m5.xlarge", Some("default"), &json!({}), 3600)
            .await;
    }
    setup
        .pod("first", Some("drifted-long-ago"), "500m", &json!({}))
        .await;
    setup
        .pod("second", Some("drifted-lately"), "500m", &json!({}))
        .await;
    mark_drifted(&setup, "default-drifted-long-ago", 1800).await;
    mark_drifted(&setup, "default-drifted-lately", 600).await;
    let (cluster, types, now) = setup.read("default").await;
    let explain = |name: &str| node::explain(&cluster, &types, name, now, node::Options::default()).unwrap();

    let first = explain("drifted-long-ago");
    assert_eq!(
        first.decision.action,
        Action::ReplaceDrifted,
        "{}",
        first.to_text()
    );
    assert_eq!(first.decision.reason, "Drifted");
    assert!(
        first.decision.message.contains("AMIDrift"),
        "{}",
        first.decision.message
    );
    // Its pod fits on the spare node: nothing needs launching.
    assert!(
        first.decision.replacements.is_empty(),
        "{:?}",
        first.decision.replacements
    );

    let second = explain("drifted-lately");
    assert_eq!(second.decision.action, Action::Keep);
    assert_eq!(second.decision.reason, "DriftQueued", "{}", second.to_text());
    assert!(
        second.to_text().contains("Kept: DriftQueued"),
        "{}",
        second.to_text()
    );

    // A node that did not drift is answered by the other methods.
    assert_ne!(explain("spare").decision.action, Action::ReplaceDrifted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_node_with_a_do_not_disrupt_pod_is_replaced_only_with_a_termination_grace_period() {
    let setup = Setup::start(NODE_POOL).await;
    setup.clock.advance(SignedDuration::from_hours(1));
    let none = json!({});
    setup
        .node_with_claim_spec(
            "graceful",
            "m5.xlarge",
            Some("default"),
            &none,
            3600,
            &json!({ "terminationGracePeriod": "1h" }),
        )
        .await;
    setup
        .node("stubborn", "m5.xlarge", Some("default"), &none, 3600)
        .await;
    setup
        .node("spare", "m5.2xlarge", Some("default"), &none, 3600)
        .await;
    let protected = json!({ "metadata": { "annotations": { "karpenter.sh/do-not-disrupt": "true" } } });
    setup.pod("kept-1", Some("graceful"), "500m", &protected).await;
    setup.pod("kept-2", Some("stubborn"), "500m", &protected).await;
    mark_drifted(&setup, "default-graceful", 1800).await;
    mark_drifted(&setup, "default-stubborn", 600).await;
    let (cluster, types, now) = setup.read("default").await;
    let explain = |name: &str| node::explain(&cluster, &types, name, now, node::Options::default()).unwrap();

    let graceful = explain("graceful");
    assert!(graceful.candidate);
    assert_eq!(
        graceful.decision.action,
        Action::ReplaceDrifted,
        "{}",
        graceful.to_text()
    );
    assert!(
        graceful.decision.message.contains("terminationGracePeriod")
            && graceful.decision.message.contains("default/kept-1"),
        "{}",
        graceful.decision.message
    );

    let stubborn = explain("stubborn");
    assert!(!stubborn.candidate);
    assert_eq!(stubborn.decision.action, Action::Keep);
    assert_eq!(
        stubborn.decision.reason,
        "PodDoNotDisrupt",
        "{}",
        stubborn.to_text()
    );
    assert!(
        stubborn.decision.message.contains("drifted (AMIDrift)"),
        "{}",
        stubborn.decision.message
    );
}

/// A CapacityBuffer of `chunks` 1-CPU chunks as the buffers reconciler leaves it: its
/// PodTemplate, and a status `ReadyForProvisioning=True` naming it.
async fn ready_buffer(setup: &Setup, chunks: i32) {
    setup
        .cluster
        .apply_yaml(
            "apiVersion: v1\nkind: PodTemplate\nmetadata:\n  name: chunk\n  namespace: default\ntemplate:\n  metadata:\n    labels: { app: warm }\n  spec:\n    containers:\n    - name: c\n      image: pause\n      resources: { requests: { cpu: \"1\" } }\n---\napiVersion: autoscaling.x-k8s.io/v1beta1\nkind: CapacityBuffer\nmetadata:\n  name: warm\n  namespace: default\nspec:\n  podTemplateRef: { name: chunk }\n  replicas: 3\n",
        )
        .unwrap();
    patch_status(
        &Api::<nodewright_api::CapacityBuffer>::namespaced(setup.client(), "default"),
        "warm",
        json!({ "status": {
            "replicas": chunks,
            "podTemplateRef": { "name": "chunk" },
            "conditions": [{ "type": "ReadyForProvisioning", "status": "True", "reason": "Resolved",
                "message": "", "lastTransitionTime": setup.clock.now().to_string() }]
        } }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_node_holding_buffer_room_is_kept_as_the_pass_keeps_it() {
    let setup = Setup::start(NODE_POOL).await;
    setup.clock.advance(SignedDuration::from_hours(1));
    for name in ["empty-a", "empty-b"] {
        setup
            .node(name, "m5.xlarge", Some("default"), &json!({}), 3600)
            .await;
    }
    let actions = |cluster: &Cluster, types: &PoolTypes, now| {
        ["empty-a", "empty-b"].map(|name| {
            let explained = node::explain(cluster, types, name, now, node::Options::default()).unwrap();
            (explained.decision.action, explained.decision.reason)
        })
    };
    let (cluster, types, now) = setup.read("default").await;
    for (action, _) in actions(&cluster, &types, now) {
        assert_eq!(action, Action::RemoveEmpty, "no buffer: both go");
    }

    // Three 1-CPU chunks fill one node's room: that node stays, the other still goes.
    ready_buffer(&setup, 3).await;
    let (cluster, types, now) = setup.read("default").await;
    let mut answers = actions(&cluster, &types, now).to_vec();
    answers.sort_by_key(|(action, _)| *action != Action::Keep);
    assert_eq!(
        answers,
        [
            (Action::Keep, "CapacityBufferRoom".to_owned()),
            (Action::RemoveEmpty, "Empty".to_owned())
        ]
    );
}

const POD_POOLS: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    spec:
      requirements:
        - { key: karpenter.sh/capacity-type, operator: In, values: ["on-demand"] }
        - { key: karpenter.k8s.aws/instance-category, operator: In, values: ["m"] }
      nodeClassRef: { group: karpenter.k8s.aws, kind: EC2NodeClass, name: default }
  limits:
    cpu: "4"
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: gpu
spec:
  template:
    spec:
      requirements:
        - { key: karpenter.sh/capacity-type, operator: In, values: ["on-demand"] }
        - { key: karpenter.k8s.aws/instance-category, operator: In, values: ["m"] }
      taints:
        - { key: nvidia.com/gpu, value: "true", effect: NoSchedule }
      nodeClassRef: { group: karpenter.k8s.aws, kind: EC2NodeClass, name: default }
"#;

/// `full` (default NodePool, whose whole CPU limit it uses) runs `filler`; `tainted` is not
/// Nodewright's. Pending: `small` (2 CPU, marked Unschedulable, with a FailedScheduling event),
/// `huge` (1000 CPU), `tolerant` (1 CPU, tolerates the gpu NodePool's taint).
async fn pod_cluster() -> Setup {
    let setup = Setup::start(POD_POOLS).await;
    // `full` uses the default NodePool's whole CPU limit; `tainted` is not Nodewright's.
    setup
        .node("full", "m5.xlarge", Some("default"), &json!({}), 600)
        .await;
    setup
        .node(
            "tainted",
            "m5.xlarge",
            None,
            &json!({ "spec": { "taints": [{ "key": "dedicated", "value": "db", "effect": "NoSchedule" }] } }),
            0,
        )
        .await;
    setup.pod("filler", Some("full"), "3", &json!({})).await;
    setup.pod("small", None, "2", &json!({})).await;
    patch_status(
        &setup.pods(),
        "small",
        json!({ "status": { "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/2 nodes are available" }] } }),
    )
    .await;
    setup.pod("huge", None, "1000", &json!({})).await;
    setup
        .pod(
            "tolerant",
            None,
            "1",
            &json!({ "spec": { "tolerations": [{ "key": "nvidia.com/gpu", "operator": "Exists" }] } }),
        )
        .await;
    let pods: Api<Pod> = Api::namespaced(setup.client(), "default");
    let small_pod = pods.get("small").await.unwrap();
    Events::new(setup.client(), "test")
        .with_clock(setup.clock.clock())
        .warning(
            &small_pod,
            reasons::FAILED_SCHEDULING,
            "Scheduling",
            "Failed to schedule pod, nodepool default: limits reached".to_owned(),
        )
        .await;
    setup
}

/// Why `name` of the pod's explanation does not fit (asserting it does not).
fn pool_reason(explanation: &pod::PodExplanation, name: &str) -> String {
    let fit = explanation
        .node_pools
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{name} not listed: {explanation:#?}"))
        .clone();
    assert!(!fit.fits, "{fit:?}");
    fit.reason.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_pending_for_taints_and_limits_is_explained_per_node_and_nodepool() {
    let setup = pod_cluster().await;
    let (cluster, types, now) = setup.read("default").await;
    let small = pod::explain(&cluster, &types, "default/small", now).unwrap();
    assert_eq!(small.verdict.outcome, Outcome::Unschedulable, "{small:#?}");
    assert!(small.provisioner.acts, "{small:#?}");
    let node_reason = |name: &str| {
        small
            .existing_nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("{name} not listed: {small:#?}"))
            .clone()
    };
    let full = node_reason("full");
    assert!(!full.fits);
    assert!(full.reason.as_deref().unwrap().contains("resources"), "{full:?}");
    let tainted = node_reason("tainted");
    assert!(
        tainted.reason.as_deref().unwrap().contains("dedicated"),
        "{tainted:?}"
    );
    assert!(pool_reason(&small, "default").contains("limits"), "{small:#?}");
    assert!(
        pool_reason(&small, "gpu").contains("nvidia.com/gpu"),
        "{small:#?}"
    );
    assert!(
        small.verdict.reasons.iter().any(|r| r.contains("limits")),
        "{small:#?}"
    );
    assert!(
        small
            .events
            .iter()
            .any(|e| e.reason == reasons::FAILED_SCHEDULING),
        "{:?}",
        small.events
    );

    let json = serde_json::to_value(&small).unwrap();
    assert_eq!(json["verdict"]["outcome"], "Unschedulable");
    assert_eq!(json["existingNodes"].as_array().unwrap().len(), 2);
    assert_eq!(json["nodePools"][0]["fits"], false);
    assert!(small.to_text().contains("NodePools:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_too_large_a_pod_a_new_node_takes_and_a_bound_pod_are_explained() {
    let setup = pod_cluster().await;
    let (cluster, types, now) = setup.read("default").await;
    let explain = |name: &str| pod::explain(&cluster, &types, name, now).unwrap();

    let huge = explain("default/huge");
    assert_eq!(huge.verdict.outcome, Outcome::Unschedulable);
    assert!(!huge.provisioner.acts);
    assert!(
        huge.provisioner
            .why_not
            .as_deref()
            .unwrap()
            .contains("PodScheduled"),
        "{huge:#?}"
    );
    let default_reason = pool_reason(&huge, "default");
    assert!(
        default_reason.contains("no instance type") && default_reason.contains("1000 cpu"),
        "{default_reason}"
    );

    let tolerant = explain("default/tolerant");
    assert_eq!(tolerant.verdict.outcome, Outcome::NewNode, "{tolerant:#?}");
    assert_eq!(tolerant.verdict.node_pool.as_deref(), Some("gpu"));
    assert!(tolerant.verdict.price_per_hour.unwrap() > 0.0);

    let filler = explain("default/filler");
    assert_eq!(filler.verdict.outcome, Outcome::Scheduled);
    assert_eq!(filler.node.as_deref(), Some("full"));
    assert!(filler.existing_nodes.is_empty());

    let missing = pod::explain(&cluster, &types, "default/nope", now).unwrap_err();
    assert_eq!(missing.to_string(), "pod default/nope not found");
    let malformed = pod::explain(&cluster, &types, "nope", now).unwrap_err();
    assert!(matches!(malformed, ExplainError::BadName(_)));

    // A pod on a node being deleted is still bound, and said to need a place elsewhere.
    let nodes = setup.nodes();
    nodes
        .patch(
            "full",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": ["test/hold"] } })),
        )
        .await
        .unwrap();
    nodes.delete("full", &DeleteParams::default()).await.unwrap();
    let (cluster, types, now) = setup.read("default").await;
    let leaving = pod::explain(&cluster, &types, "default/filler", now).unwrap();
    assert_eq!(leaving.verdict.outcome, Outcome::Scheduled);
    assert!(leaving.verdict.message.contains("being deleted"), "{leaving:?}");
}
