//! Manifests to problems (`nodewright plan`'s input side): replica expansion, DaemonSet overhead,
//! bound pods and existing nodes, EC2NodeClass settings, warnings for what is ignored, and errors
//! that name the file, the object and the field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::sync::LazyLock;

use nodewright_api::parse_objects;
use nodewright_catalog::{Catalog, NodeSettings};
use nodewright_solver::manifests::{Manifest, ManifestErrors, PlanInput, PodOrigin, problem_from_manifests};
use nodewright_solver::report::PlanReport;
use nodewright_solver::{solve, verify::verify};

static CATALOG: LazyLock<Catalog> =
    LazyLock::new(|| Catalog::us_east_1(&NodeSettings::default()).expect("embedded data builds"));

const NODE_CLASS: &str = "apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: default
spec:
  amiSelectorTerms:
  - alias: al2023@latest
  role: KarpenterNodeRole-test
  subnetSelectorTerms:
  - tags:
      karpenter.sh/discovery: test
  securityGroupSelectorTerms:
  - tags:
      karpenter.sh/discovery: test
";

const NODE_POOL: &str = "apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    spec:
      requirements:
      - key: karpenter.k8s.aws/instance-category
        operator: In
        values: [c, m, r]
      - key: kubernetes.io/arch
        operator: In
        values: [amd64]
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: default
";

/// The plan in brief, for failure messages.
fn summary(plan: &nodewright_solver::Plan) -> String {
    let nodes: Vec<String> = plan
        .new_nodes
        .iter()
        .map(|n| {
            format!(
                "{} {} {} {} pods {:?}",
                n.instance_type,
                n.capacity_type.label(),
                n.zone,
                n.price,
                n.pods
            )
        })
        .collect();
    format!(
        "new: {nodes:#?}\nexisting: {:?}\nunschedulable: {:?}",
        plan.existing_placements, plan.unschedulable
    )
}

fn manifest(source_name: &str, text: &str) -> Manifest {
    Manifest {
        source_name: source_name.to_owned(),
        objects: parse_objects(text, source_name).unwrap_or_else(|e| panic!("{e}")),
    }
}

fn pools() -> Manifest {
    manifest("pools.yaml", &format!("{NODE_CLASS}---\n{NODE_POOL}"))
}

fn build(manifests: &[Manifest]) -> PlanInput {
    problem_from_manifests(manifests, &CATALOG).unwrap_or_else(|e| panic!("{e}"))
}

fn build_err(manifests: &[Manifest]) -> String {
    let error: ManifestErrors = problem_from_manifests(manifests, &CATALOG).expect_err("manifests are bad");
    error.to_string()
}

fn workload(kind: &str, api_version: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n{spec}"
    )
}

const TEMPLATE: &str = "  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      containers:
      - name: app
        image: app
        resources:
          requests: {cpu: 500m, memory: 1Gi}
";

#[test]
fn workloads_expand_into_named_pods_with_their_origin() {
    let deployment = workload(
        "Deployment",
        "apps/v1",
        "web",
        &format!("  replicas: 3\n{TEMPLATE}"),
    );
    let statefulset = workload("StatefulSet", "apps/v1", "db", TEMPLATE); // replicas default 1
    let replicaset = workload(
        "ReplicaSet",
        "apps/v1",
        "rs",
        &format!("  replicas: 2\n{TEMPLATE}"),
    );
    let job_template = TEMPLATE.replace("  selector:\n    matchLabels: {app: x}\n", "");
    let job = workload(
        "Job",
        "batch/v1",
        "batch",
        &format!("  parallelism: 4\n  completions: 2\n{job_template}"),
    );
    let suspended = workload(
        "Job",
        "batch/v1",
        "later",
        &format!("  suspend: true\n{job_template}"),
    );
    let default_job = workload("Job", "batch/v1", "once", &job_template);
    let scaled_to_zero = workload(
        "Deployment",
        "apps/v1",
        "idle",
        &format!("  replicas: 0\n{TEMPLATE}"),
    );
    let text = [
        deployment,
        statefulset,
        replicaset,
        job,
        suspended,
        default_job,
        scaled_to_zero,
    ]
    .join("---\n");
    let input = build(&[pools(), manifest("apps.yaml", &text)]);

    let names: Vec<String> = input.pods.iter().map(PodOrigin::pod_ref).collect();
    assert_eq!(
        names,
        [
            "apps/web-0",
            "apps/web-1",
            "apps/web-2",
            "apps/db-0",
            "apps/rs-0",
            "apps/rs-1",
            "apps/batch-0",
            "apps/batch-1",
            "apps/once-0",
        ]
    );
    assert_eq!(input.problem.pods.len(), names.len());
    assert_eq!(input.pods[0].workload(), "Deployment/apps/web");
    assert_eq!(input.pods[3].workload(), "StatefulSet/apps/db");
    assert_eq!(input.pods[6].workload(), "Job/apps/batch");
    assert!(input.pods.iter().all(|p| p.source_name == "apps.yaml"));
    // The pods are the template: labels, namespace and requests.
    let pod = &input.problem.pods[1];
    assert_eq!(pod.metadata.name.as_deref(), Some("web-1"));
    assert_eq!(pod.metadata.namespace.as_deref(), Some("apps"));
    assert_eq!(
        pod.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("app")
            .map(String::as_str),
        Some("x")
    );
    assert!(
        input
            .warnings
            .iter()
            .any(|w| w.contains("apps.yaml: document 4: Job/later") && w.contains("suspended")),
        "{:#?}",
        input.warnings
    );
    assert_eq!(input.problem.nodepools.len(), 1);
    assert!(input.problem.nodepools[0].instance_types.len() > 100);
}

#[test]
fn daemonset_overhead_reaches_the_problem_and_the_plan() {
    let daemonset = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: logs
  namespace: kube-system
spec:
  selector:
    matchLabels: {app: logs}
  template:
    metadata:
      labels: {app: logs}
    spec:
      containers:
      - name: agent
        image: agent
        resources:
          requests: {cpu: 300m, memory: 256Mi}
";
    let deployment = workload(
        "Deployment",
        "apps/v1",
        "web",
        &format!("  replicas: 2\n{TEMPLATE}"),
    );
    let input = build(&[
        pools(),
        manifest("ds.yaml", daemonset),
        manifest("web.yaml", &deployment),
    ]);
    assert_eq!(input.problem.daemonset_pods.len(), 1);
    let ds = &input.problem.daemonset_pods[0];
    assert_eq!(ds.metadata.name.as_deref(), Some("logs"));
    assert_eq!(ds.metadata.namespace.as_deref(), Some("kube-system"));
    assert_eq!(
        input.problem.pods.len(),
        2,
        "DaemonSet pods are overhead, not pending pods"
    );

    let plan = solve(&input.problem);
    assert!(verify(&input.problem, &plan).is_empty());
    assert!(plan.unschedulable.is_empty());
    let requested: i64 = plan.new_nodes.iter().map(|n| n.requests.cpu_millis).sum();
    // Two 500m pods plus 300m of DaemonSet on every new node.
    let nodes = i64::try_from(plan.new_nodes.len()).unwrap();
    assert_eq!(requested, 1000 + 300 * nodes);
}

/// Two existing nodes, as `kubectl get nodes -o yaml` prints them: node-a belongs to NodePool
/// default; node-b is cordoned and tainted.
const NODES: &str = "apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: node-a
    labels:
      kubernetes.io/hostname: node-a
      topology.kubernetes.io/zone: us-east-1a
      karpenter.sh/nodepool: default
      kubernetes.io/arch: amd64
  status:
    capacity: {cpu: '4', memory: 16Gi, pods: '110'}
    allocatable: {cpu: 3900m, memory: 15Gi, pods: '110'}
    conditions:
    - type: Ready
      status: 'True'
- apiVersion: v1
  kind: Node
  metadata:
    name: node-b
  spec:
    unschedulable: true
    taints:
    - key: dedicated
      value: gpu
      effect: NoSchedule
  status:
    allocatable: {cpu: '8', memory: 32Gi, pods: '110'}
";

/// A pod running on node-a, one bound to a node not in the input, two pending, one finished.
const PODS: &str = "apiVersion: v1
kind: Pod
metadata:
  name: running
  namespace: apps
spec:
  nodeName: node-a
  containers:
  - name: app
    image: app
    resources:
      requests: {cpu: '3', memory: 1Gi}
---
apiVersion: v1
kind: Pod
metadata:
  name: elsewhere
spec:
  nodeName: node-z
  containers:
  - name: app
    image: app
---
apiVersion: v1
kind: Pod
metadata:
  name: pending
spec:
  containers:
  - name: app
    image: app
    resources:
      requests: {cpu: 500m, memory: 1Gi}
---
apiVersion: v1
kind: Pod
metadata:
  name: big
spec:
  containers:
  - name: app
    image: app
    resources:
      requests: {cpu: '2', memory: 1Gi}
---
apiVersion: v1
kind: Pod
metadata:
  name: done
spec:
  containers:
  - name: app
    image: app
status:
  phase: Succeeded
";

#[test]
fn bound_pods_go_to_their_existing_node_and_pending_pods_are_placed_around_them() {
    let input = build(&[
        pools(),
        manifest("pods.yaml", PODS),
        manifest("nodes.yaml", NODES),
    ]);
    let existing = &input.problem.existing_nodes;
    assert_eq!(existing.len(), 2);
    let a = &existing[0];
    assert_eq!(a.name, "node-a");
    assert_eq!(a.allocatable.cpu_millis, 3900);
    assert_eq!(a.allocatable.memory_bytes, 15 << 30);
    assert_eq!(a.allocatable.pods, 110);
    assert!(a.taints.is_empty());
    assert!(a.initialized);
    assert_eq!(a.pods.len(), 1, "the bound pod");
    assert_eq!(a.pods[0].metadata.name.as_deref(), Some("running"));
    let b = &existing[1];
    assert_eq!(b.taints.len(), 2, "its own taint and the cordon");
    assert!(
        b.taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unschedulable" && t.effect == "NoSchedule"),
        "a cordoned node is tainted"
    );
    // node-a belongs to NodePool default: its capacity counts against the pool's limits.
    let in_use = &input.problem.nodepools[0].in_use;
    assert_eq!(in_use.cpu_millis, 4000);
    assert_eq!(in_use.get("nodes"), 1);

    let names: Vec<String> = input.pods.iter().map(PodOrigin::pod_ref).collect();
    assert_eq!(names, ["default/pending", "default/big"]);
    assert!(
        input
            .warnings
            .iter()
            .any(|w| w.contains("pods.yaml: document 1: Pod/elsewhere") && w.contains("node-z")),
        "{:#?}",
        input.warnings
    );
    assert!(input.warnings.iter().any(|w| w.contains("Pod/done")));

    // 900m left on node-a takes the 500m pod; node-b is cordoned; the 2-CPU pod needs a new node.
    let plan = solve(&input.problem);
    assert!(
        verify(&input.problem, &plan).is_empty(),
        "{:#?}",
        verify(&input.problem, &plan)
    );
    assert_eq!(
        plan.existing_placements,
        vec![(0, "node-a".to_owned())],
        "{}",
        summary(&plan)
    );
    assert_eq!(plan.new_nodes.len(), 1);
    let report = PlanReport::new(&input, &plan);
    assert_eq!(report.existing_placements[0].pod, "default/pending");
    assert_eq!(report.existing_placements[0].workload, "Pod/default/pending");
    assert_eq!(report.nodes[0].pods, ["default/big"]);
    assert_eq!(report.totals.pending_pods, 2);
    assert_eq!(report.totals.pods_on_existing_nodes, 1);
}

#[test]
fn unknown_kinds_and_unread_versions_are_ignored_with_a_warning() {
    let text = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: b
---
apiVersion: apps/v1beta1
kind: Deployment
metadata:
  name: old
---
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata:
  name: claim
spec:
  requirements: []
  nodeClassRef:
    group: karpenter.k8s.aws
    kind: EC2NodeClass
    name: default
";
    let input = build(&[pools(), manifest("misc.yaml", text)]);
    assert!(input.problem.pods.is_empty());
    let expect = [
        "misc.yaml: document 0: ConfigMap/settings: kind ConfigMap (v1) is not used by plan",
        "misc.yaml: document 1: Deployment/old: apiVersion apps/v1beta1 is not read (use apps/v1)",
        "misc.yaml: document 2: NodeClaim/claim: not used by plan",
    ];
    for expected in expect {
        assert!(
            input.warnings.iter().any(|w| w.starts_with(expected)),
            "no warning {expected:?} in {:#?}",
            input.warnings
        );
    }
}

#[test]
fn node_class_settings_shape_the_instance_types_and_a_missing_class_is_assumed() {
    let class = NODE_CLASS.replace(
        "  role: KarpenterNodeRole-test\n",
        "  role: KarpenterNodeRole-test\n  kubelet:\n    maxPods: 8\n",
    );
    let input = build(&[manifest("pools.yaml", &format!("{class}---\n{NODE_POOL}"))]);
    let types = &input.problem.nodepools[0].instance_types;
    assert!(types.iter().all(|t| t.capacity.pods <= 8));
    assert!(input.warnings.is_empty(), "{:#?}", input.warnings);

    let input = build(&[manifest("pool.yaml", NODE_POOL)]);
    assert_eq!(
        input.problem.nodepools[0].instance_types,
        CATALOG.instance_types()
    );
    assert!(
        input.warnings.iter().any(|w| w.starts_with(
            "pool.yaml: document 0: NodePool/default: EC2NodeClass \"default\" is not among the inputs"
        )),
        "{:#?}",
        input.warnings
    );
}

#[test]
fn bad_manifests_are_errors_naming_file_object_and_field() {
    let cases: [(&str, String, &[&str]); 7] = [
        (
            "weight zero",
            NODE_POOL.replace("spec:\n  template:", "spec:\n  weight: 0\n  template:"),
            &["bad.yaml: document 0: ", "NodePool \"default\"", "spec.weight"],
        ),
        (
            "node class of another kind",
            NODE_POOL.replace("kind: EC2NodeClass", "kind: AKSNodeClass"),
            &[
                "bad.yaml: document 0: ",
                "NodePool \"default\"",
                "spec.template.spec.nodeClassRef.kind",
                "AKSNodeClass",
            ],
        ),
        (
            "replicas of the wrong type",
            workload(
                "Deployment",
                "apps/v1",
                "web",
                &format!("  replicas: many\n{TEMPLATE}"),
            ),
            &["bad.yaml: document 0: ", "Deployment \"web\"", "spec.replicas"],
        ),
        (
            "unknown field",
            workload(
                "Deployment",
                "apps/v1",
                "web",
                &format!("  replica: 3\n{TEMPLATE}"),
            ),
            &["Deployment \"web\"", "spec.replica", "unknown field"],
        ),
        (
            "negative replicas",
            workload(
                "StatefulSet",
                "apps/v1",
                "db",
                &format!("  replicas: -1\n{TEMPLATE}"),
            ),
            &["StatefulSet \"db\"", "spec.replicas", "-1"],
        ),
        (
            "bad quantity",
            workload(
                "Deployment",
                "apps/v1",
                "web",
                &TEMPLATE.replace("cpu: 500m", "cpu: lots"),
            ),
            &[
                "Deployment \"web\"",
                "spec.template.spec.containers[0].resources.requests[cpu]",
                "lots",
            ],
        ),
        (
            "node with a bad allocatable",
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-x\nstatus:\n  allocatable: {memory: 1Zi}\n"
                .to_owned(),
            &["Node \"node-x\"", "status.allocatable[memory]"],
        ),
    ];
    for (case, text, needles) in cases {
        let error = build_err(&[manifest("bad.yaml", &text)]);
        for needle in needles {
            assert!(error.contains(needle), "{case}: {needle:?} not in {error:?}");
        }
    }

    // Every problem at once, each with its own file.
    let a = manifest(
        "a.yaml",
        &NODE_POOL.replace("spec:\n  template:", "spec:\n  weight: 0\n  template:"),
    );
    let b = manifest(
        "b.yaml",
        &format!(
            "{}---\n{}",
            workload("Deployment", "apps/v1", "web", TEMPLATE),
            workload("Deployment", "apps/v1", "web", TEMPLATE)
        ),
    );
    let error = build_err(&[a, b]);
    let lines: Vec<&str> = error.lines().collect();
    assert_eq!(lines.len(), 2, "{error}");
    assert!(lines[0].starts_with("a.yaml: document 0: NodePool \"default\""));
    assert!(
        lines[1]
            .starts_with("b.yaml: document 1: Deployment \"web\" is invalid: metadata.name: Duplicate value"),
        "{error}"
    );
}

/// The README's example: the default NodePool and EC2NodeClass with the inflate Deployment at 5
/// replicas. Every pod is placed and the plan passes the verifier.
#[test]
fn the_examples_plan_places_every_inflate_pod() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let read = |path: &str| {
        let text = std::fs::read_to_string(format!("{root}/{path}")).unwrap();
        manifest(path, &text)
    };
    let inflate = std::fs::read_to_string(format!("{root}/inflate.yaml"))
        .unwrap()
        .replace("replicas: 0", "replicas: 5");
    let input = build(&[
        read("default/ec2nodeclass.yaml"),
        read("default/nodepool.yaml"),
        manifest("inflate.yaml", &inflate),
    ]);
    assert!(input.warnings.is_empty(), "{:#?}", input.warnings);
    assert_eq!(input.problem.pods.len(), 5);
    let plan = solve(&input.problem);
    let violations = verify(&input.problem, &plan);
    assert!(violations.is_empty(), "{violations:#?}\n{}", summary(&plan));
    assert!(plan.unschedulable.is_empty());
    let report = PlanReport::new(&input, &plan);
    assert_eq!(report.totals.pods, 5);
    assert_eq!(report.nodes.iter().map(|n| n.pod_count).sum::<usize>(), 5);
    assert!(
        report
            .nodes
            .iter()
            .all(|n| n.workloads[0].workload == "Deployment/default/inflate")
    );
    assert!(report.totals.price_per_hour > 0.0);
    assert!(report.totals.lower_bound_per_hour <= report.totals.price_per_hour);
}

#[test]
fn statefulset_claim_templates_follow_the_default_storage_class_topology() {
    let storage = "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: gp3
  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}
provisioner: ebs.csi.aws.com
volumeBindingMode: WaitForFirstConsumer
allowedTopologies:
- matchLabelExpressions:
  - key: topology.kubernetes.io/zone
    values: [us-east-1a]
";
    let spec = format!(
        "  replicas: 3\n  serviceName: db\n{TEMPLATE}  volumeClaimTemplates:\n  - metadata: {{name: data}}\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources: {{requests: {{storage: 10Gi}}}}\n"
    );
    let db = workload("StatefulSet", "apps/v1", "db", &spec);
    let input = build(&[
        pools(),
        manifest("storage.yaml", storage),
        manifest("db.yaml", &db),
    ]);
    assert_eq!(
        input.problem.volumes.claims.len(),
        3,
        "one claim per replica from the template"
    );
    let plan = solve(&input.problem);
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    assert!(
        plan.new_nodes.iter().all(|n| n.zone == "us-east-1a"),
        "{}",
        summary(&plan)
    );
    assert!(verify(&input.problem, &plan).is_empty());
}
