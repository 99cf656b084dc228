//! Metrics and probes over HTTP with the controllers running on the simulated cluster:
//! `/healthz` answers from the start, `/readyz` turns 200 once the caches synced; after a
//! provisioning, a consolidation and a drain, `/metrics` shows the counters moved, every
//! Karpenter metric name we promise has samples, the OpenMetrics answer ends with `# EOF`, and
//! `promtool check metrics` (Debian's `prometheus` package; `.ci/run` installs it) finds nothing
//! but the `_count` suffix of Karpenter's own gauge names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::Lab;
use nodewright_controller::metrics::{
    self, KARPENTER_METRICS, NODEWRIGHT_METRICS, families::KARPENTER_COUNT_GAUGES,
};
use serde_json::json;
use tokio::net::TcpListener;

/// An HTTP answer: status code, content type, body.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// `GET path` over a fresh connection (HTTP/1.1, closed after the answer), off the runtime's
/// workers.
async fn get(addr: SocketAddr, path: &str, accept: &str) -> Answer {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n");
    let raw = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        raw
    })
    .await
    .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        body: body.to_owned(),
    }
}

/// The sum of every sample of `name` (labels ignored).
fn total(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| sample_name(l) == name)
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn sample_name(line: &str) -> &str {
    line.split(['{', ' ']).next().unwrap_or_default()
}

/// Whether a sample of a family named `family` is in the scrape (histograms by their `_count`).
fn has_samples(scrape: &str, family: &str) -> bool {
    let count = format!("{family}_count");
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .any(|l| sample_name(l) == family || sample_name(l) == count)
}

/// Per-pod gauges with samples only while some pod waits (for a node, or to become Ready), as in
/// Karpenter; checked while a pod waits, not in the settled scrape.
const WHILE_PODS_WAIT: [&str; 2] = [
    "karpenter_pods_unbound_time_seconds",
    "karpenter_pods_unstarted_time_seconds",
];

/// The promised metric names with no sample in the scrape.
fn missing(scrape: &str) -> Vec<&'static str> {
    KARPENTER_METRICS
        .iter()
        .chain(NODEWRIGHT_METRICS)
        .copied()
        .filter(|name| !WHILE_PODS_WAIT.contains(name))
        .filter(|name| !has_samples(scrape, name))
        .collect()
}

/// The dashboard in deploy/grafana: every query's metrics have samples in `scrape`, and every
/// label it groups by (`by (...)`, `le` aside) is on those samples. Returns what does not hold.
fn dashboard_problems(scrape: &str) -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../deploy/grafana/nodewright.json")).unwrap();
    let mut problems = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let words: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .collect();
            let metrics: Vec<&str> = words
                .iter()
                .filter(|w| w.starts_with("karpenter_") || w.starts_with("nodewright_"))
                .map(|w| w.strip_suffix("_bucket").unwrap_or(w))
                .collect();
            let grouped: Vec<&str> = expr
                .split("by (")
                .skip(1)
                .filter_map(|rest| rest.split(')').next())
                .flat_map(|labels| labels.split(','))
                .map(str::trim)
                .filter(|l| *l != "le")
                .collect();
            for metric in &metrics {
                if !has_samples(scrape, metric) {
                    problems.push(format!("{expr}: {metric} has no samples"));
                    continue;
                }
                for label in &grouped {
                    let on_samples = scrape
                        .lines()
                        .filter(|l| sample_name(l).starts_with(metric))
                        .any(|l| l.contains(&format!("{label}=\"")));
                    if !on_samples {
                        problems.push(format!("{expr}: {metric} has no label {label}"));
                    }
                }
            }
        }
    }
    problems
}

/// `promtool check metrics` on `text`: its findings, or a panic naming what is missing.
fn promtool_findings(text: &str) -> (bool, Vec<String>) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "promtool is missing ({error}): install Debian's `prometheus` package (apt-get install prometheus); .ci/run does"
            )
        });
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let findings = String::from_utf8_lossy(&output.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&output.stderr).lines())
        .map(str::to_owned)
        .filter(|l| !l.trim().is_empty())
        .collect();
    (output.status.success(), findings)
}

/// A scrape once the cluster settled after the drain: the pod runs again on a node no
/// NodeClaim deletion is touching, and the scrape-time gauges (which follow the controller's
/// caches, a moment behind the API) show it with every promised metric.
async fn settled_scrape(lab: &Lab, metrics: SocketAddr) -> Answer {
    for _ in 0..720 {
        let answer = get(metrics, "/metrics", "*/*").await;
        let settled = lab.running_in_store(1)
            && lab
                .claims_in_store()
                .iter()
                .all(|c| c.metadata.deletion_timestamp.is_none())
            && total(&answer.body, "karpenter_cluster_state_node_count") >= 1.0
            && missing(&answer.body).is_empty();
        if answer.status == 200 && settled {
            return answer;
        }
        lab.step().await;
    }
    let last = get(metrics, "/metrics", "*/*").await.body;
    panic!(
        "the cluster did not settle after the drain within an hour (running: {}, promised metrics \
         without samples: {:?}):\n{}",
        lab.running_in_store(1),
        missing(&last),
        lab.leftovers()
    );
}

/// A pod nothing can take (no s390x nodes) shows in the per-pod wait gauges while it waits; it
/// is deleted again so the rest of the test sees only the inflate pods.
async fn a_waiting_pod_shows_in_the_wait_gauges(lab: &Lab, metrics_addr: SocketAddr) {
    lab.cluster
        .apply_yaml(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: waiting\n  namespace: default\nspec:\n  nodeSelector:\n    kubernetes.io/arch: s390x\n  containers:\n  - name: app\n    image: app:1\n",
        )
        .unwrap();
    lab.run_until("the waiting pod in the wait gauges", || async {
        let scrape = get(metrics_addr, "/metrics", "*/*").await.body;
        WHILE_PODS_WAIT.iter().all(|gauge| {
            scrape
                .lines()
                .any(|l| l.starts_with(&format!("{gauge}{{name=\"waiting\",namespace=\"default\"}}")))
        })
    })
    .await;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(lab.cluster.client(), "default");
    pods.delete("waiting", &kube::api::DeleteParams::default().grace_period(0))
        .await
        .unwrap();
}

async fn wait_ready(lab: &Lab, probes: SocketAddr) {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let answer = get(probes, "/readyz", "*/*").await;
        if answer.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {} after a minute: {}",
            answer.status,
            answer.body
        );
        lab.step().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_probes_follow_provisioning_consolidation_and_a_drain() {
    let metrics_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probes_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics_listener.local_addr().unwrap();
    let probes = probes_listener.local_addr().unwrap();
    let metrics_server = tokio::spawn(metrics::server::serve_metrics(metrics_listener));
    let probes_server = tokio::spawn(metrics::server::serve_probes(probes_listener));

    // Alive at once; not ready before a controller has synced its caches.
    let mut lab = Lab::without_controllers().await;
    assert_eq!(get(probes, "/healthz", "*/*").await.status, 200);
    let not_ready = get(probes, "/readyz", "*/*").await;
    assert_eq!(not_ready.status, 503, "{}", not_ready.body);
    assert!(not_ready.body.contains("synced"), "{}", not_ready.body);
    lab.start_controllers();
    wait_ready(&lab, probes).await;

    // On-demand only: consolidation does not replace spot with spot by default.
    lab.patch_nodepool(json!({ "spec": { "template": { "spec": { "requirements": [
        { "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"] },
        { "key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m", "r"] }
    ] } } } }))
    .await;
    a_waiting_pod_shows_in_the_wait_gauges(&lab, metrics_addr).await;
    // Provisioning: five pods, new nodes.
    lab.scale(5).await;
    lab.run_until("five running inflate pods", || lab.running(5))
        .await;
    let scrape = get(metrics_addr, "/metrics", "*/*").await.body;
    let bound = total(&scrape, "nodewright_solver_lower_bound_dollars_per_hour");
    assert!(bound > 0.0, "the solver's lower bound for five pods is {bound}");
    assert!(total(&scrape, "nodewright_solver_optimality_gap_ratio") >= 0.0);
    // Consolidation: one pod left, so nodes are emptied or replaced by a cheaper one.
    lab.scale(1).await;
    lab.run_until("a node disrupted, its Node and NodeClaim terminated", || async {
        let scrape = get(metrics_addr, "/metrics", "*/*").await.body;
        total(&scrape, "karpenter_nodeclaims_disrupted_total") > 0.0
            && total(&scrape, "karpenter_nodes_terminated_total") > 0.0
            && total(&scrape, "karpenter_nodeclaims_terminated_total") > 0.0
    })
    .await;
    // A drain: the remaining NodeClaims are deleted while the pod runs, so it is evicted.
    lab.run_until("one running pod", || lab.running(1)).await;
    lab.delete_claims_in_store();
    lab.run_until("an eviction and a drained node", || async {
        let scrape = get(metrics_addr, "/metrics", "*/*").await.body;
        total(&scrape, "karpenter_pods_eviction_requests_total") > 0.0
            && total(&scrape, "karpenter_nodes_drained_total") > 0.0
    })
    .await;
    let plain = settled_scrape(&lab, metrics_addr).await;
    assert!(
        plain.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        plain.content_type
    );
    let scrape = plain.body;
    for (name, at_least) in [
        ("karpenter_nodeclaims_created_total", 2.0),
        ("karpenter_nodes_created_total", 2.0),
        ("karpenter_nodeclaims_terminated_total", 1.0),
        ("karpenter_nodeclaims_disrupted_total", 1.0),
        ("karpenter_voluntary_disruption_decisions_total", 1.0),
        (
            "karpenter_voluntary_disruption_decision_evaluation_duration_seconds_count",
            1.0,
        ),
        ("karpenter_scheduler_scheduling_duration_seconds_count", 1.0),
        ("karpenter_cloudprovider_duration_seconds_count", 1.0),
        ("karpenter_nodeclaims_termination_duration_seconds_count", 1.0),
        ("karpenter_nodes_lifetime_duration_seconds_count", 1.0),
        ("karpenter_nodes_termination_duration_seconds_count", 1.0),
        ("karpenter_pods_startup_duration_seconds_count", 5.0),
        ("karpenter_pods_bound_duration_seconds_count", 5.0),
        ("karpenter_cluster_state_synced", 1.0),
        ("karpenter_cluster_state_node_count", 1.0),
        ("karpenter_pods_state", 1.0),
        ("karpenter_nodepools_limit", 1.0),
    ] {
        let value = total(&scrape, name);
        assert!(
            value >= at_least,
            "{name} is {value}, expected at least {at_least}"
        );
    }
    let provisioned = scrape.lines().any(|l| {
        l.starts_with("karpenter_nodeclaims_created_total{") && l.contains("reason=\"provisioned\"")
    });
    assert!(provisioned, "no NodeClaim counted as provisioned");

    let missing = missing(&scrape);
    assert!(
        missing.is_empty(),
        "promised metrics without samples: {missing:?}"
    );
    let dashboard = dashboard_problems(&scrape);
    assert!(
        dashboard.is_empty(),
        "the Grafana dashboard's queries: {dashboard:#?}"
    );

    // Prometheus negotiates OpenMetrics and gets the same samples with `# EOF`.
    let openmetrics = get(
        metrics_addr,
        "/metrics",
        "application/openmetrics-text;version=1.0.0",
    )
    .await;
    assert!(
        openmetrics
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        openmetrics.content_type
    );
    assert!(openmetrics.body.ends_with("# EOF\n"));
    assert!(
        openmetrics
            .body
            .contains("# TYPE karpenter_nodeclaims_created counter")
    );

    // promtool: only Karpenter's `_count` gauge names may be reported.
    let (passed, findings) = promtool_findings(&scrape);
    let unexpected: Vec<&String> = findings
        .iter()
        .filter(|finding| {
            !KARPENTER_COUNT_GAUGES.iter().any(|name| {
                finding.starts_with(&format!("{name} "))
                    && finding.contains("should not have \"_count\" suffix")
            })
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "promtool check metrics reported: {unexpected:#?}"
    );
    assert!(
        passed || !findings.is_empty(),
        "promtool failed without saying why"
    );

    metrics_server.abort();
    probes_server.abort();
}
