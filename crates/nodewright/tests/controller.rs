//! `nodewright controller` end to end: the binary, configured only by Karpenter's environment
//! variables, against the embedded API server (through a kubeconfig) and moto (through
//! `AWS_ENDPOINT_URL`): it discovers the Kubernetes version, takes its Leases, serves its probes,
//! gives an applied EC2NodeClass a Ready status with the subnets and AMIs moto holds, and drains
//! its interruption queue; a pending pod gets a NodeClaim launched through CreateFleet. Invalid
//! settings stop it at start naming the setting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

#[path = "../../aws/tests/support/mod.rs"]
mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, api::PostParams};
use nodewright_api::{EC2NodeClass, conditions};
use nodewright_aws::AwsClients;
use nodewright_sim::testing::TestCluster;

/// The controller process; killed when dropped, its log printed if the test failed.
struct Controller {
    child: Child,
    log: PathBuf,
}

impl Controller {
    /// Sends SIGTERM and waits (at most 10 s) for the exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running 10 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "controller log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

fn controller(envs: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nodewright"));
    command
        .arg("controller")
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
    command
}

#[test]
fn invalid_settings_stop_the_controller_naming_the_setting() {
    let output = controller(&[
        ("CLUSTER_NAME", "demo".to_owned()),
        ("FEATURE_GATES", "SpotToSpotConsolidation=maybe".to_owned()),
    ])
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--feature-gates"), "{stderr}");

    let output = controller(&[
        ("CLUSTER_NAME", "demo".to_owned()),
        ("CLUSTER_ENDPOINT", "http://api.example".to_owned()),
    ])
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CLUSTER_ENDPOINT"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ec2nodeclass_becomes_ready_with_what_moto_holds() {
    let moto = support::Moto::start();
    let clients = AwsClients::new(&moto.sdk_config().await).unwrap();
    let network = support::network(&clients.ec2, "e2e", 51).await;
    let amis = support::seed_al2023_alias(&moto, &clients.ssm, "1.33").await;

    let queue_url = queue_with_a_rebalance_recommendation(&clients.sqs, "e2e-interruptions").await;

    let cluster = TestCluster::start().await.unwrap();
    nodewright_sim::simulation::install_crds(&cluster.state().store).unwrap();
    let dir = std::env::temp_dir().join(format!("nodewright-controller-e2e-{}", std::process::id()));
    let (metrics_port, probe_port) = (free_port(), free_port());
    let controller_process = start_controller(
        &dir,
        &cluster,
        &moto,
        (metrics_port, probe_port),
        &[
            ("CLUSTER_NAME", "e2e"),
            ("INTERRUPTION_QUEUE", "e2e-interruptions"),
            ("POD_NAME", "nodewright-0"),
        ],
    );

    let client = cluster.client();
    let api: Api<EC2NodeClass> = Api::all(client.clone());
    let node_class = support::node_class("default", "e2e");
    api.create(&PostParams::default(), &node_class).await.unwrap();

    let ready = |class: &EC2NodeClass| {
        class.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == conditions::READY && c.status == "True")
        })
    };
    cluster
        .wait_until(Duration::from_mins(1), "the EC2NodeClass is Ready", || {
            let api = api.clone();
            async move { api.get("default").await.is_ok_and(|c| ready(&c)) }
        })
        .await
        .unwrap();
    let status = api.get("default").await.unwrap().status.unwrap();
    assert_eq!(status.subnets.len(), network.subnets.len());
    let mut ami_ids: Vec<String> = status.amis.iter().map(|a| a.id.clone()).collect();
    ami_ids.sort();
    let mut expected = vec![amis.0.clone(), amis.1.clone()];
    expected.sort();
    assert_eq!(
        ami_ids, expected,
        "the alias resolved for the API server's version"
    );

    // Both Leases are held by this replica, and the probes and metrics answer.
    let leases: Api<Lease> = Api::namespaced(client, "kube-system");
    for name in ["karpenter-leader-election", "karpenter-leader-election-aws"] {
        let lease = leases.get(name).await.unwrap();
        assert_eq!(
            lease.spec.and_then(|s| s.holder_identity).as_deref(),
            Some("nodewright-0"),
            "{name}"
        );
    }
    cluster
        .wait_until(Duration::from_secs(20), "/readyz answers 200", || async move {
            http_get(probe_port, "/readyz").is_some_and(|a| a.starts_with("HTTP/1.1 200"))
        })
        .await
        .unwrap();
    let metrics = http_get(metrics_port, "/metrics").unwrap();
    assert!(metrics.contains("karpenter_"), "{metrics}");

    // Logs are JSON lines; the first says what the controller runs with.
    let logged = std::fs::read_to_string(&controller_process.log).unwrap();
    let started: serde_json::Value = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "nodewright controller started")
        .unwrap_or_else(|| panic!("no start line in\n{logged}"));
    assert_eq!(started["kubernetes_version"], "1.33", "{started}");
    assert_eq!(started["region"], support::REGION);

    // The interruption loop runs: the queue is drained.
    cluster
        .wait_until(
            Duration::from_secs(30),
            "the interruption queue is drained",
            || queue_is_empty(clients.sqs.clone(), queue_url.clone()),
        )
        .await
        .unwrap();
    // ... and counted in Karpenter's interruption metrics (just after the delete).
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the message counted as received and deleted",
            || {
                let scraped = http_get(metrics_port, "/metrics").unwrap_or_default();
                std::future::ready(
                    scraped.contains(
                        "karpenter_interruption_received_messages_total{message_type=\"rebalance_recommendation\"} 1",
                    ) && scraped.contains("karpenter_interruption_deleted_messages_total 1"),
                )
            },
        )
        .await
        .unwrap();
    // SIGTERM, as the kubelet sends it, stops the controller cleanly.
    let exit = controller_process.terminate();
    assert!(exit.success(), "{exit}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A queue holding an event about nothing Nodewright launched (read and deleted without acting);
/// returns its URL.
async fn queue_with_a_rebalance_recommendation(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let rebalance = serde_json::json!({
        "version": "0", "id": "1", "source": "aws.ec2", "detail-type": "EC2 Instance Rebalance Recommendation",
        "time": "2026-11-01T00:00:00Z", "region": "us-west-2", "resources": [],
        "detail": {"instance-id": "i-0fffffffffffffff0"},
    });
    sqs.send_message()
        .queue_url(&url)
        .message_body(rebalance.to_string())
        .send()
        .await
        .unwrap();
    url
}

/// Whether the queue holds no message, visible or in flight.
async fn queue_is_empty(sqs: aws_sdk_sqs::Client, url: String) -> bool {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name| attributes.attributes().and_then(|a| a.get(&name)).cloned();
    count(QueueAttributeName::ApproximateNumberOfMessages).as_deref() == Some("0")
        && count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible).as_deref() == Some("0")
}

/// Starts the controller against `cluster` and `moto` with `settings` on top of the AWS ones;
/// its kubeconfig and log live in `dir`.
fn start_controller(
    dir: &std::path::Path,
    cluster: &TestCluster,
    moto: &support::Moto,
    (metrics_port, probe_port): (u16, u16),
    settings: &[(&str, &str)],
) -> Controller {
    std::fs::create_dir_all(dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).unwrap();
    let log = dir.join("controller.log");
    let mut envs = vec![
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_REGION", support::REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("METRICS_PORT", metrics_port.to_string()),
        ("HEALTH_PROBE_PORT", probe_port.to_string()),
    ];
    envs.extend(settings.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Controller {
        child: controller(&envs)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        log,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_pod_gets_a_node_claim_launched_through_create_fleet() {
    let moto = support::Moto::start();
    let clients = AwsClients::new(&moto.sdk_config().await).unwrap();
    support::network(&clients.ec2, "e2e-launch", 52).await;
    support::seed_al2023_alias(&moto, &clients.ssm, "1.33").await;
    let cluster = TestCluster::start().await.unwrap();
    nodewright_sim::simulation::install_crds(&cluster.state().store).unwrap();
    let client = cluster.client();
    Api::<EC2NodeClass>::all(client.clone())
        .create(
            &PostParams::default(),
            &support::node_class("default", "e2e-launch"),
        )
        .await
        .unwrap();
    cluster
        .apply_yaml(
            "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: default}\nspec:\n  template:\n    spec:\n      requirements:\n      - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}\n      - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large, m5.xlarge]}\n      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\nspec:\n  containers:\n  - {name: web, image: nginx, resources: {requests: {cpu: '1', memory: 1Gi}}}\n",
        )
        .unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "default");
    let unschedulable = serde_json::json!({"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
    ]}});
    pods.patch_status(
        "web",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&unschedulable),
    )
    .await
    .unwrap();

    let dir = std::env::temp_dir().join(format!("nodewright-controller-launch-{}", std::process::id()));
    let controller_process = start_controller(
        &dir,
        &cluster,
        &moto,
        (free_port(), free_port()),
        &[
            ("CLUSTER_NAME", "e2e-launch"),
            ("CLUSTER_ENDPOINT", "https://api.e2e.example"),
            ("CLUSTER_CA_BUNDLE", "Q0E="),
            ("CLUSTER_SERVICE_CIDR", "10.100.0.0/16"),
            ("DISABLE_LEADER_ELECTION", "true"),
            ("BATCH_IDLE_DURATION", "100ms"),
            ("BATCH_MAX_DURATION", "1s"),
        ],
    );

    let claims: Api<nodewright_api::NodeClaim> = Api::all(client);
    let launched = |list: Vec<nodewright_api::NodeClaim>| {
        list.into_iter().find_map(|c| {
            let id = c.status.as_ref()?.provider_id.clone()?;
            Some((kube::ResourceExt::name_any(&c), id))
        })
    };
    cluster
        .wait_until(Duration::from_mins(1), "a NodeClaim is launched", || {
            let claims = claims.clone();
            async move {
                launched(
                    claims
                        .list(&kube::api::ListParams::default())
                        .await
                        .unwrap()
                        .items,
                )
                .is_some()
            }
        })
        .await
        .unwrap();
    let (name, provider_id) = launched(
        claims
            .list(&kube::api::ListParams::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    let instance_id = provider_id.rsplit('/').next().unwrap();
    let tags = support::instance_tags(&clients.ec2, instance_id).await;
    assert_eq!(tags.get("karpenter.sh/nodeclaim"), Some(&name), "{tags:?}");
    assert_eq!(
        tags.get("eks:eks-cluster-name").map(String::as_str),
        Some("e2e-launch")
    );
    drop(controller_process);
    let _ = std::fs::remove_dir_all(&dir);
}
