//! Test support: a moto server (through `moto_launcher.py`, which adds SSM seeding and fault
//! injection) on 127.0.0.1 at a free port, SDK configuration pointing at it, and a tagged network
//! to discover.
//!
//! moto comes from the Python venv `.ci/run` creates (`NODEWRIGHT_MOTO_VENV`, default
//! `~/.cache/nodewright/venv-moto-<version>`). Without it the tests fail, saying how to make it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support fails loudly by design

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::{
    config::Credentials,
    types::{Filter, ResourceType, Tag, TagSpecification},
};

/// The moto release `.ci/run` installs.
pub(crate) const MOTO_VERSION: &str = "5.2.5";
/// The instance types most tests' servers describe: enough families for choices, fallbacks,
/// metal and GPU types, and fast to describe.
pub(crate) const TEST_INSTANCE_TYPES: &str = "m5.*,m5d.*,c5.*,r5.*,m6g.*,t3.*,g5.*,p3.*";
/// The region every test uses (moto has offerings for its four zones).
pub(crate) const REGION: &str = "us-west-2";

/// A running moto server; dropping it stops the server.
#[derive(Debug)]
pub(crate) struct Moto {
    port: u16,
    child: Mutex<Child>,
    /// Held open: the launcher exits when it closes, which happens when this process exits, even
    /// for the shared server no destructor runs for.
    _stdin: ChildStdin,
    log: PathBuf,
}

fn venv() -> PathBuf {
    if let Some(venv) = std::env::var_os("NODEWRIGHT_MOTO_VENV") {
        return PathBuf::from(venv);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(format!(".cache/nodewright/venv-moto-{MOTO_VERSION}"))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

impl Moto {
    /// One server shared by every test of this binary (tests must not depend on its state being
    /// empty: each makes its own network and tags).
    pub(crate) fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        // Its log has a fixed name, replaced on every run: no destructor runs for a static, so a
        // per-port name would leave one file behind per run.
        SHARED.get_or_init(|| Moto::start_with(Some(TEST_INSTANCE_TYPES), Some("moto-shared.log")))
    }

    /// A server of its own, for tests that inject faults, with the [`TEST_INSTANCE_TYPES`].
    pub(crate) fn start() -> Moto {
        Moto::start_with(Some(TEST_INSTANCE_TYPES), None)
    }

    /// A server describing moto's whole catalogue (about 1,400 types; each describe takes
    /// seconds).
    pub(crate) fn start_with_every_instance_type() -> Moto {
        Moto::start_with(None, None)
    }

    /// `log_name`: the log's file name under cargo's per-target temporary directory; by default
    /// one per port, deleted when the server is dropped after passing tests.
    fn start_with(instance_types: Option<&str>, log_name: Option<&str>) -> Moto {
        let venv = venv();
        let python = venv.join("bin/python");
        assert!(
            python.exists() && venv.join("bin/moto_server").exists(),
            "moto is not installed at {}: run .ci/run once (it creates the venv), or create it with\n  \
             python3 -m venv {0} && {0}/bin/pip install 'moto[ec2,ssm,sqs,iam]=={MOTO_VERSION}' flask flask-cors\n\
             (or point NODEWRIGHT_MOTO_VENV at a venv that has moto {MOTO_VERSION})",
            venv.display()
        );
        let port = free_port();
        // Written out from the test binary, so other crates' tests can include this module.
        let launcher = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("moto_launcher-{}-{port}.py", std::process::id()));
        std::fs::write(&launcher, include_str!("moto_launcher.py")).expect("write the moto launcher");
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(log_name.map_or_else(|| format!("moto-{port}.log"), str::to_owned));
        let log_file = std::fs::File::create(&log).expect("create the moto log file");
        let mut command = Command::new(&python);
        command
            .arg(&launcher)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        if let Some(patterns) = instance_types {
            command.args(["--instance-types", patterns]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {}: {e}", python.display(), launcher.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let moto = Moto {
            port,
            child: Mutex::new(child),
            _stdin: stdin,
            log,
        };
        moto.wait_until_ready();
        // Python has read it by now.
        let _ = std::fs::remove_file(&launcher);
        moto
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            if let Some(status) = self.child.lock().unwrap().try_wait().unwrap() {
                panic!(
                    "moto exited with {status} before it was ready:\n{}",
                    self.log_tail()
                );
            }
            if let Ok((200, _)) = self.try_request("GET", "/moto-api/", "") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer on port {} within 60 s:\n{}",
                self.port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn try_request(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    fn control(&self, method: &str, path: &str, body: &serde_json::Value) {
        let (status, answer) = self
            .try_request(method, path, &body.to_string())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }

    /// Publishes SSM parameters, reserved `/aws/service/...` names included.
    pub(crate) fn seed_ssm(&self, params: &[(&str, &str)]) {
        let params: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
            .collect();
        self.control(
            "POST",
            "/_ssm",
            &serde_json::json!({"region": REGION, "params": params}),
        );
    }

    /// Adds capacity reservations for DescribeCapacityReservations, which moto lacks (see
    /// `moto_launcher.py` for the fields).
    pub(crate) fn seed_capacity_reservations(&self, reservations: &serde_json::Value) {
        self.control(
            "POST",
            "/_capacity_reservations",
            &serde_json::json!({ "reservations": reservations }),
        );
    }

    /// Every CreateFleet the server answered, with the reservations its templates targeted (see
    /// `moto_launcher.py`).
    pub(crate) fn launches(&self) -> Vec<serde_json::Value> {
        let (status, body) = self
            .try_request("GET", "/_launches", "")
            .unwrap_or_else(|e| panic!("GET /_launches: {e}"));
        assert_eq!(status, 200, "GET /_launches: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET /_launches: {e}: {body}"))
    }

    /// Replaces the fault rules (see `moto_launcher.py`).
    pub(crate) fn set_faults(&self, rules: &serde_json::Value) {
        self.control("POST", "/_faults", &serde_json::json!({ "rules": rules }));
    }

    /// SDK configuration for this server: Nodewright's loader with the endpoint, the region and
    /// dummy credentials.
    pub(crate) async fn sdk_config(&self) -> SdkConfig {
        nodewright_aws::config_loader()
            .endpoint_url(self.endpoint())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
        if std::thread::panicking() {
            eprintln!("moto's log ({}):\n{}", self.log.display(), self.log_tail());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A VPC with one subnet in each of three zones and a security group, all tagged
/// `karpenter.sh/discovery: <tag>`.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub(crate) vpc_id: String,
    /// (subnet ID, zone), in zone order.
    pub(crate) subnets: Vec<(String, String)>,
    pub(crate) security_group_id: String,
}

pub(crate) const ZONES: [&str; 3] = ["us-west-2a", "us-west-2b", "us-west-2c"];

fn discovery(resource: ResourceType, tag: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .tags(Tag::builder().key("karpenter.sh/discovery").value(tag).build())
        .build()
}

/// Creates a [`Network`]; `octet` keeps each test's VPC CIDR (10.<octet>.0.0/16) distinct.
pub(crate) async fn network(ec2: &aws_sdk_ec2::Client, tag: &str, octet: u8) -> Network {
    let vpc = ec2
        .create_vpc()
        .cidr_block(format!("10.{octet}.0.0/16"))
        .tag_specifications(discovery(ResourceType::Vpc, tag))
        .send()
        .await
        .unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
    let mut subnets = Vec::new();
    for (index, zone) in ZONES.iter().enumerate() {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .availability_zone(*zone)
            .cidr_block(format!("10.{octet}.{index}.0/24"))
            .tag_specifications(discovery(ResourceType::Subnet, tag))
            .send()
            .await
            .unwrap();
        subnets.push((
            subnet.subnet().unwrap().subnet_id().unwrap().to_owned(),
            (*zone).to_owned(),
        ));
    }
    let group = ec2
        .create_security_group()
        .group_name(format!("nodes-{tag}"))
        .description("nodes")
        .vpc_id(&vpc_id)
        .tag_specifications(discovery(ResourceType::SecurityGroup, tag))
        .send()
        .await
        .unwrap();
    Network {
        vpc_id,
        subnets,
        security_group_id: group.group_id().unwrap().to_owned(),
    }
}

/// Publishes the al2023 alias parameters for Kubernetes `k8s` (x86_64 and arm64 standard),
/// pointing at moto's own Amazon Linux 2023 images; returns (x86_64 AMI, arm64 AMI).
pub(crate) async fn seed_al2023_alias(moto: &Moto, ssm: &aws_sdk_ssm::Client, k8s: &str) -> (String, String) {
    let mut amis = Vec::new();
    for arch in ["x86_64", "arm64"] {
        let parameter = ssm
            .get_parameter()
            .name(format!(
                "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
            ))
            .send()
            .await
            .unwrap();
        let ami = parameter.parameter().unwrap().value().unwrap().to_owned();
        moto.seed_ssm(&[(
            &format!(
                "/aws/service/eks/optimized-ami/{k8s}/amazon-linux-2023/{arch}/standard/recommended/image_id"
            ),
            &ami,
        )]);
        amis.push(ami);
    }
    (amis[0].clone(), amis[1].clone())
}

/// The instance's tags, straight from EC2.
pub(crate) async fn instance_tags(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
) -> std::collections::BTreeMap<String, String> {
    let described = ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .unwrap();
    described.reservations()[0].instances()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect()
}

/// Names of launch templates tagged for `cluster`.
pub(crate) async fn launch_templates(ec2: &aws_sdk_ec2::Client, cluster: &str) -> Vec<String> {
    let found = ec2
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name("tag:eks:eks-cluster-name")
                .values(cluster)
                .build(),
        )
        .send()
        .await
        .unwrap();
    found
        .launch_templates()
        .iter()
        .filter_map(|t| t.launch_template_name().map(str::to_owned))
        .collect()
}

/// An EC2NodeClass finding its subnets and security groups by the tag
/// `karpenter.sh/discovery: <discovery>`, with AL2023 AMIs and the instance profile `nodes`.
pub(crate) fn node_class(name: &str, discovery: &str) -> nodewright_api::EC2NodeClass {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "karpenter.k8s.aws/v1",
        "kind": "EC2NodeClass",
        "metadata": {"name": name},
        "spec": {
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": discovery}}],
            "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": discovery}}],
            "instanceProfile": "nodes",
        },
    }))
    .unwrap()
}

/// EventBridge's spot interruption warning for `instance_id`, as the interruption queue gets it.
pub(crate) fn spot_interruption_warning(instance_id: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "0", "id": "1", "source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning",
        "time": "2026-11-01T00:00:00Z", "region": REGION, "resources": [],
        "detail": {"instance-id": instance_id, "instance-action": "terminate"},
    })
}
