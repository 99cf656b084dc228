//! Static NodePools on the simulated cluster with every controller running: a pool of 3 empty
//! nodes with `consolidateAfter: 0s` stays at the same 3 nodes while time passes (disruption
//! reports `StaticNodePool` on them), the real `kubectl scale nodepool` takes it to 5 through the
//! scale subresource (`status.nodes` follows), takes a pod on one of its nodes without another
//! launch, and back down to 2 keeping the busy node; a template change replaces a
//! static pool's drifted nodes one at a time, never below its replica count of initialized nodes.
//! Both count their NodeClaims in Karpenter's metrics (created `provisioned` or `drifted`,
//! disrupted `overprovisioned` or `drifted`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use std::{collections::BTreeSet, path::PathBuf, process::Command, time::Duration};

use common::Lab;
use nodewright_api::{NodeClaim, NodePool, conditions, labels};
use nodewright_controller::{
    explain::{
        Cluster, PoolTypes,
        node::{self, Action},
    },
    metrics,
};

const STATIC_POOL: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: { name: fixed }
spec:
  replicas: 3
  template:
    spec:
      requirements:
        - { key: kubernetes.io/arch, operator: In, values: ["amd64"] }
        - { key: karpenter.sh/capacity-type, operator: In, values: ["on-demand"] }
      nodeClassRef: { group: karpenter.k8s.aws, kind: EC2NodeClass, name: default }
  limits:
    nodes: 10
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 0s
"#;

/// The real kubectl, pointed at the test cluster through a kubeconfig of its own.
struct Kubectl {
    dir: PathBuf,
}

impl Kubectl {
    fn new(lab: &Lab, test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "nodewright-controller-kubectl-{test}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        lab.cluster.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
        Self { dir }
    }

    /// Runs kubectl and expects success, returning stdout.
    async fn ok(&self, args: &[&str]) -> String {
        // kubectl runs on a blocking thread (this crate's tokio has no process support) while
        // the controllers and the API server keep running.
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .arg("--request-timeout=30s")
            .args(args);
        let output = tokio::time::timeout(
            Duration::from_mins(1),
            tokio::task::spawn_blocking(move || command.output()),
        )
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
        .unwrap()
        .unwrap_or_else(|e| panic!("kubectl must be installed for these tests (running it failed: {e})"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "kubectl {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// NodePool `pool`'s NodeClaims in the store: (name, deleting, initialized).
fn claims_of(lab: &Lab, pool: &str) -> Vec<(String, bool, bool)> {
    lab.claims_in_store()
        .iter()
        .filter(|c: &&NodeClaim| c.nodepool_name() == Some(pool))
        .map(|c| {
            let initialized = c.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == conditions::nodeclaim::INITIALIZED && c.status == conditions::TRUE)
            });
            (
                c.metadata.name.clone().unwrap(),
                c.metadata.deletion_timestamp.is_some(),
                initialized,
            )
        })
        .collect()
}

/// Names of the static pool's NodeClaims when exactly `n` exist, none deleting, all initialized.
fn settled_at(lab: &Lab, n: usize) -> Option<BTreeSet<String>> {
    settled_of(lab, "fixed", n)
}

/// [`settled_at`] for NodePool `pool`.
fn settled_of(lab: &Lab, pool: &str, n: usize) -> Option<BTreeSet<String>> {
    let claims = claims_of(lab, pool);
    (claims.len() == n
        && claims
            .iter()
            .all(|(_, deleting, initialized)| !deleting && *initialized))
    .then(|| claims.into_iter().map(|(name, ..)| name).collect())
}

/// The static pool's instances in the fake cloud.
fn fixed_instances(lab: &Lab) -> usize {
    lab.cluster
        .cloud()
        .unwrap()
        .instances()
        .iter()
        .filter(|i| i.tags.get(labels::NODE_POOL).map(String::as_str) == Some("fixed"))
        .count()
}

fn status_nodes(lab: &Lab) -> Option<i64> {
    lab.stored::<NodePool>(labels::KARPENTER_GROUP, "nodepools")
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some("fixed"))?
        .status?
        .nodes
}

/// Whether every one of the static pool's NodeClaims is reported unconsolidatable because its
/// NodePool is static.
fn all_reported_static(lab: &Lab) -> bool {
    let claims: Vec<NodeClaim> = lab
        .claims_in_store()
        .into_iter()
        .filter(|c| c.nodepool_name() == Some("fixed"))
        .collect();
    !claims.is_empty()
        && claims.iter().all(|c| {
            c.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == conditions::nodeclaim::CONSOLIDATABLE
                        && c.status == conditions::FALSE
                        && c.reason == "StaticNodePool"
                })
            })
        })
}

/// `nodewright explain node` on one of the static pool's nodes says it stays: static NodePool.
async fn assert_explained_static(lab: &Lab) {
    let node_name = lab
        .claims_in_store()
        .into_iter()
        .find(|c| c.nodepool_name() == Some("fixed"))
        .and_then(|c| c.status?.node_name)
        .unwrap();
    let cluster = Cluster::read(&lab.cluster.client(), "default").await.unwrap();
    let types = PoolTypes::from_cloud(&cluster, lab.cluster.cloud().unwrap(), lab.clock.now()).await;
    let explained = node::explain(
        &cluster,
        &types,
        &node_name,
        lab.clock.now(),
        node::Options::default(),
    )
    .unwrap();
    assert_eq!(explained.decision.action, Action::Keep);
    assert_eq!(explained.decision.reason, "StaticNodePool", "{explained:?}");
    assert!(
        explained.decision.message.contains("static NodePool"),
        "{explained:?}"
    );
}

/// Runs one inflate pod, which lands on a static node with no launch; returns that NodeClaim.
async fn a_pod_on_a_static_node(lab: &Lab) -> String {
    lab.scale(1).await;
    lab.run_until("the inflate pod to run", || lab.running(1)).await;
    let busy = lab.pods().await[0]
        .spec
        .as_ref()
        .unwrap()
        .node_name
        .clone()
        .unwrap();
    let busy_claim = lab
        .claims_in_store()
        .into_iter()
        .find(|c| c.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(busy.as_str()))
        .and_then(|c| c.metadata.name)
        .unwrap();
    assert!(
        settled_at(lab, 5).unwrap().contains(&busy_claim),
        "the pod runs on a static node"
    );
    assert_eq!(
        lab.cluster.cloud().unwrap().ledger().entries.len(),
        5,
        "no launch for the pod"
    );
    busy_claim
}

/// The value of the counter sample `name` whose labels include every one of `labels`, from the
/// process's metrics (this file's tests use NodePools of their own, so their series are theirs).
fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    let scrape = metrics::global().encode_openmetrics();
    scrape
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_pool_keeps_its_count_through_consolidation_and_scales_with_kubectl() {
    let lab = Lab::start().await;
    lab.cluster.apply_yaml(STATIC_POOL).unwrap();

    lab.run_until("3 initialized static NodeClaims", || async {
        settled_at(&lab, 3).is_some()
    })
    .await;
    let first = settled_at(&lab, 3).unwrap();

    // Empty nodes with consolidateAfter 0s: any other pool's would go at once.
    lab.run_until("disruption to report the static pool", || async {
        all_reported_static(&lab)
    })
    .await;
    assert_explained_static(&lab).await;

    for _ in 0..60 {
        lab.step().await;
    }
    assert_eq!(
        settled_at(&lab, 3).as_ref(),
        Some(&first),
        "the same 3 nodes after 5 minutes:\n{}",
        lab.leftovers()
    );
    assert_eq!(fixed_instances(&lab), 3);
    assert_eq!(
        lab.cluster.cloud().unwrap().ledger().entries.len(),
        3,
        "nothing relaunched"
    );
    lab.run_until("status.nodes to show 3", || async {
        status_nodes(&lab) == Some(3)
    })
    .await;

    let kubectl = Kubectl::new(&lab, "static-pools");
    let out = kubectl.ok(&["scale", "nodepool", "fixed", "--replicas=5"]).await;
    assert!(out.contains("nodepool.karpenter.sh/fixed scaled"), "{out}");
    lab.run_until("5 initialized static NodeClaims", || async {
        settled_at(&lab, 5).is_some()
    })
    .await;
    assert!(
        settled_at(&lab, 5).unwrap().is_superset(&first),
        "scaling up keeps the nodes there were"
    );
    lab.run_until("status.nodes to show 5", || async {
        status_nodes(&lab) == Some(5)
    })
    .await;
    let shown = kubectl
        .ok(&[
            "get",
            "nodepool",
            "fixed",
            "-o",
            "jsonpath={.spec.replicas}/{.status.nodes}",
        ])
        .await;
    assert_eq!(shown, "5/5");

    let busy_claim = a_pod_on_a_static_node(&lab).await;

    kubectl.ok(&["scale", "nodepool", "fixed", "--replicas=2"]).await;
    lab.run_until("2 static NodeClaims and instances left", || async {
        settled_at(&lab, 2).is_some() && fixed_instances(&lab) == 2
    })
    .await;
    assert!(
        settled_at(&lab, 2).unwrap().contains(&busy_claim),
        "empty nodes go first: the busy one stays"
    );
    assert!(lab.running(1).await);
    lab.run_until("status.nodes to show 2", || async {
        status_nodes(&lab) == Some(2)
    })
    .await;
    for _ in 0..12 {
        lab.step().await;
    }
    assert!(settled_at(&lab, 2).is_some(), "{}", lab.leftovers());
    assert_eq!(
        lab.cluster.cloud().unwrap().ledger().entries.len(),
        5,
        "5 launches in all"
    );
    // Counted as Karpenter counts static NodePools: created as `provisioned`, the surplus
    // disrupted as `overprovisioned` (forceful: not budgeted).
    let created = [("reason", "provisioned"), ("nodepool", "fixed")];
    assert_eq!(counter("karpenter_nodeclaims_created_total", &created), 5);
    let surplus = [
        ("reason", "overprovisioned"),
        ("nodepool", "fixed"),
        ("termination_mode", "forceful"),
    ];
    assert_eq!(counter("karpenter_nodeclaims_disrupted_total", &surplus), 3);
    let drifted = [("reason", "drifted"), ("nodepool", "fixed")];
    assert_eq!(counter("karpenter_nodeclaims_disrupted_total", &drifted), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_static_pool_is_replaced_one_for_one_without_losing_a_node() {
    const POOL: &str = "drifting";
    let lab = Lab::start().await;
    lab.cluster
        .apply_yaml(
            &STATIC_POOL
                .replace("replicas: 3", "replicas: 2")
                .replace("name: fixed", &format!("name: {POOL}")),
        )
        .unwrap();
    lab.run_until("2 initialized static NodeClaims", || async {
        settled_of(&lab, POOL, 2).is_some()
    })
    .await;
    let first = settled_of(&lab, POOL, 2).unwrap();

    // A template change drifts both nodes (the NodePool hash).
    let pools: kube::Api<NodePool> = kube::Api::all(lab.cluster.client());
    pools
        .patch(
            POOL,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "spec": { "template": { "metadata": { "labels": { "team": "blue" } } } }
            })),
        )
        .await
        .unwrap();
    let fewest_initialized = std::cell::Cell::new(usize::MAX);
    let most_live = std::cell::Cell::new(0);
    lab.run_until("both nodes replaced", || async {
        let claims = claims_of(&lab, POOL);
        let initialized = claims
            .iter()
            .filter(|(_, deleting, ready)| !deleting && *ready)
            .count();
        fewest_initialized.set(fewest_initialized.get().min(initialized));
        let live = claims.iter().filter(|(_, deleting, _)| !deleting).count();
        most_live.set(most_live.get().max(live));
        settled_of(&lab, POOL, 2).is_some_and(|now| now.is_disjoint(&first))
    })
    .await;
    assert!(
        fewest_initialized.get() >= 2,
        "the pool fell to {} initialized nodes",
        fewest_initialized.get()
    );
    assert_eq!(
        most_live.get(),
        3,
        "one replacement at a time (the default Drifted budget, 10% of 2 nodes, is 1)"
    );
    let launches = lab.cluster.cloud().unwrap().ledger().entries.len();
    assert_eq!(launches, 4, "one replacement per drifted node");
    // Counted as Karpenter's static drift: replacements created and the drifted NodeClaims
    // disrupted for reason `drifted`; nothing was overprovisioned.
    let created = |reason| {
        counter(
            "karpenter_nodeclaims_created_total",
            &[("reason", reason), ("nodepool", POOL)],
        )
    };
    assert_eq!(created("provisioned"), 2);
    assert_eq!(created("drifted"), 2);
    let disrupted = |reason| {
        counter(
            "karpenter_nodeclaims_disrupted_total",
            &[("reason", reason), ("nodepool", POOL)],
        )
    };
    assert_eq!(disrupted("drifted"), 2);
    assert_eq!(disrupted("overprovisioned"), 0);
}
