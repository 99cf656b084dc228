//! The controller benchmark (issue 5), printing one JSON object:
//!
//! - **burst**: 1,000 pending pods of mixed sizes, marked Unschedulable by the simulated
//!   scheduler, against the embedded API server, the fake cloud selling the real us-east-1
//!   catalogue and the example NodePool (without its limits). One provisioning round ([`Provisioner::provision_once`]) is timed from its start
//!   — the moment the batch window would close — to the last NodeClaim committed to the store,
//!   and to the end of the round (which also publishes a `Nominated` event per pod). Fresh
//!   cluster per run; the first run pays one-time costs.
//! - **cache**: the controller's resident memory with 5,000 nodes and 50,000 running pods in its
//!   watch caches. The API server runs in a child process (this binary with `--serve-fleet`), so
//!   this process holds only what a controller holds; VmRSS is read before [`ClusterState`]
//!   starts and after it has synced.
//!
//! ```sh
//! cargo run --release -p nodewright-controller --example burst
//! # options: --pods 1000 --runs 3 --nodes 5000 --fleet-pods 50000 --only burst|cache
//! ```

use std::{
    error::Error,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use nodewright_api::clock::Clock;
use nodewright_cloudprovider::CloudProvider;
use nodewright_controller::{
    Context, Settings, events::Events, provisioner::Provisioner, state::ClusterState,
    unavailable::UnavailableOfferings,
};
use nodewright_sim::{
    cloud::FakeCloudConfig,
    dataplane::DataPlaneConfig,
    meta::ManualClock,
    store::{EventType, Filter, Store, Subresource, WriteOptions},
    testing::{DEFAULT_NODE_CLASS, DEFAULT_NODE_POOL, TestCluster},
};
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Pod sizes of the burst: CPU and memory cycle independently.
const CPUS: [&str; 4] = ["250m", "500m", "1", "2"];
const MEMORIES: [&str; 5] = ["256Mi", "512Mi", "1Gi", "2Gi", "4Gi"];

#[derive(Debug)]
struct Args {
    pods: usize,
    runs: usize,
    nodes: usize,
    fleet_pods: usize,
    only: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        pods: 1000,
        runs: 3,
        nodes: 5000,
        fleet_pods: 50_000,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pods" => args.pods = value.parse()?,
            "--runs" => args.runs = value.parse()?,
            "--nodes" => args.nodes = value.parse()?,
            "--fleet-pods" => args.fleet_pods = value.parse()?,
            "--only" => args.only = Some(value),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(args)
}

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--serve-fleet") {
        let mut it = std::env::args().skip(2);
        let nodes = it.next().ok_or("--serve-fleet NODES PODS")?.parse()?;
        let pods = it.next().ok_or("--serve-fleet NODES PODS")?.parse()?;
        return serve_fleet(nodes, pods);
    }
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut report = serde_json::Map::new();
    // The cache first, while this process holds nothing else.
    if args.only.as_deref() != Some("burst") {
        report.insert("cache".into(), measure_cache(&runtime, &args)?);
    }
    if args.only.as_deref() != Some("cache") {
        report.insert("burst".into(), runtime.block_on(measure_burst(&args))?);
    }
    println!("{}", serde_json::to_string_pretty(&Value::Object(report))?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// burst

async fn measure_burst(args: &Args) -> Result<Value> {
    let mut runs = Vec::new();
    for _ in 0..args.runs {
        runs.push(burst_once(args.pods).await?);
        eprintln!(
            "burst run: {}",
            runs.last().map(Value::to_string).unwrap_or_default()
        );
    }
    let mut to_last: Vec<f64> = runs
        .iter()
        .filter_map(|r| r["to_last_nodeclaim_ms"].as_f64())
        .collect();
    to_last.sort_by(f64::total_cmp);
    Ok(json!({
        "pods": args.pods,
        "pod_sizes": format!("cpu cycling {CPUS:?}, memory cycling {MEMORIES:?}; no constraints"),
        "runs": runs,
        "median_to_last_nodeclaim_ms": to_last.get(to_last.len() / 2),
    }))
}

async fn burst_once(pods: usize) -> Result<Value> {
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse::<Timestamp>()?);
    let cluster = TestCluster::start_simulated(
        clock.clock(),
        FakeCloudConfig::default(),
        DataPlaneConfig::default(),
    )
    .await?;
    cluster.apply_yaml(DEFAULT_NODE_CLASS)?;
    // The example's limits (1,000 CPU, 1,000 GiB) are smaller than the burst, and limits count
    // each NodeClaim's largest listed type until it launches: the burst's pool has none.
    let nodepool = DEFAULT_NODE_POOL.replace("  limits:\n    cpu: 1000\n    memory: 1000Gi\n", "");
    if nodepool == DEFAULT_NODE_POOL {
        return Err("the example NodePool's limits moved: update the burst".into());
    }
    cluster.apply_yaml(&nodepool)?;
    let store = cluster.state().store.clone();
    create_pending_pods(&store, pods)?;
    cluster.data_plane().ok_or("no data plane")?.settle()?;

    let client = cluster.client();
    let (state, watches) = ClusterState::start(&client);
    let watches = tokio::spawn(watches);
    state.wait_synced().await;
    let cache = state.clone();
    cluster
        .wait_until(Duration::from_mins(1), "pending pods in the cache", || {
            let marked = cache.pods.all().iter().filter(|p| unschedulable(p)).count();
            std::future::ready(marked == pods)
        })
        .await?;
    let cloud: Arc<dyn CloudProvider> = Arc::new(cluster.cloud().ok_or("no cloud")?.clone());
    let settings = Settings::default();
    let ctx = Context {
        events: Events::new(client.clone(), "burst").with_clock(clock.clock()),
        unavailable: UnavailableOfferings::new(settings.unavailable_offering_ttl),
        settings: Arc::new(settings),
        client,
        state,
        cloud,
        clock: clock.clock(),
    };

    // NodeClaims as the store commits them: the create's end, without the response's trip.
    let committed = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let claims_info = store
        .registry()
        .get("karpenter.sh", "nodeclaims")
        .ok_or("nodeclaims not installed")?;
    let mut changes = store.watch(&claims_info, &Filter::default(), None)?.receiver;
    let recorder = {
        let committed = Arc::clone(&committed);
        tokio::spawn(async move {
            while let Ok(change) = changes.recv().await {
                if change.kind == EventType::Added {
                    committed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Instant::now());
                }
            }
        })
    };

    let mut provisioner = Provisioner::new(ctx);
    let started = Instant::now();
    let report = provisioner.provision_once().await?;
    let round = started.elapsed();
    cluster
        .wait_until(Duration::from_secs(10), "NodeClaim commits recorded", || {
            let seen = committed.lock().unwrap_or_else(PoisonError::into_inner).len();
            std::future::ready(seen >= report.created.len())
        })
        .await?;
    recorder.abort();
    watches.abort();
    let times = committed.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let last = times.iter().max().map(|t| t.duration_since(started));
    let first = times.iter().min().map(|t| t.duration_since(started));
    if !report.failures.is_empty() {
        return Err(format!("the round failed writes: {:?}", report.failures).into());
    }
    Ok(json!({
        "nodeclaims": report.created.len(),
        "nominated": report.nominated,
        "unschedulable": report.unschedulable,
        "first_nodeclaim_ms": first.map(millis),
        "to_last_nodeclaim_ms": last.map(millis),
        "round_ms": millis(round),
    }))
}

/// Creates `count` pending pods straight in the store.
fn create_pending_pods(store: &Store, count: usize) -> Result<()> {
    let pods = store.registry().get("", "pods").ok_or("pods")?;
    let opts = WriteOptions::default();
    for i in 0..count {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": format!("burst-{i:04}"), "namespace": "default",
                "labels": { "app": format!("burst-{}", i % 10) } },
            "spec": { "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.9",
                "resources": { "requests": {
                    "cpu": CPUS[i % CPUS.len()], "memory": MEMORIES[i % MEMORIES.len()] } } }] }
        });
        store.create(&pods, "default", pod, &opts)?;
    }
    Ok(())
}

fn unschedulable(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        })
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

// ---------------------------------------------------------------------------------------------
// cache

fn measure_cache(runtime: &tokio::runtime::Runtime, args: &Args) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let mut server = Command::new(exe)
        .args([
            "--serve-fleet",
            &args.nodes.to_string(),
            &args.fleet_pods.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut ready = String::new();
    BufReader::new(server.stdout.take().ok_or("no stdout")?).read_line(&mut ready)?;
    let fleet: Value = serde_json::from_str(&ready)?;
    let url = fleet["url"]
        .as_str()
        .ok_or("the fleet server gave no url")?
        .to_owned();
    let measured = runtime.block_on(sync_caches(&url, args));
    // Closing its stdin ends the server.
    drop(server.stdin.take());
    server.wait()?;
    let mut measured = measured?;
    if let (Some(out), Value::Object(fleet)) = (measured.as_object_mut(), fleet) {
        out.extend(fleet.into_iter().filter(|(k, _)| k != "url"));
    }
    Ok(measured)
}

async fn sync_caches(url: &str, args: &Args) -> Result<Value> {
    let client = kube::Client::try_from(kube::Config::new(url.parse()?))?;
    let before = rss_mib()?;
    let started = Instant::now();
    let (state, watches) = ClusterState::start(&client);
    let watches = tokio::spawn(watches);
    state.wait_synced().await;
    let synced_in = started.elapsed();
    let synced = rss_mib()?;
    // Let the watches settle into steady state.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let steady = rss_mib()?;
    let (nodes, pods) = (state.nodes.all().len(), state.pods.all().len());
    if nodes != args.nodes || pods != args.fleet_pods {
        return Err(format!("the caches hold {nodes} nodes and {pods} pods").into());
    }
    watches.abort();
    Ok(json!({
        "nodes": nodes,
        "pods": pods,
        "sync_s": (synced_in.as_secs_f64() * 100.0).round() / 100.0,
        "rss_before_mib": before,
        "rss_synced_mib": synced,
        "rss_steady_mib": steady,
        "cache_mib": (steady - before).max(0.0),
    }))
}

/// VmRSS of this process in MiB.
fn rss_mib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok((kib / 1024.0 * 10.0).round() / 10.0)
}

/// The child: an API server holding `nodes` nodes and `pods` running pods, until its stdin
/// closes. Prints one JSON line with its URL first.
fn serve_fleet(nodes: usize, pods: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let cluster = TestCluster::start_simulated(
            Clock::system(),
            FakeCloudConfig::default(),
            DataPlaneConfig::default(),
        )
        .await?;
        let store = cluster.state().store.clone();
        let started = Instant::now();
        create_fleet(&store, nodes, pods)?;
        let stats = store.stats();
        let bytes_of = |table: &str| stats.get(table).map_or(0, |(_, bytes)| *bytes);
        #[allow(clippy::cast_precision_loss)] // MiB for a report
        let mib = |bytes: usize| (bytes as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0;
        let line = json!({
            "url": cluster.url(),
            "fleet_created_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "stored_json_mib": { "nodes": mib(bytes_of("nodes.")), "pods": mib(bytes_of("pods.")) },
        });
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        // Serve until the parent closes stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        })
        .await?;
        drop(cluster);
        Ok(())
    })
}

/// Services (Deployments) the fleet's pods belong to.
const APPS: usize = 50;

/// Nodes and running pods shaped like an EKS cluster's (what admission and the kubelet add
/// included: default tolerations, the service-account token volume, status), without
/// managedFields; the pods' ReplicaSets exist, so garbage collection keeps the pods.
fn create_fleet(store: &Store, nodes: usize, pods: usize) -> Result<()> {
    let registry = store.registry();
    let node_info = registry.get("", "nodes").ok_or("nodes")?;
    let pod_info = registry.get("", "pods").ok_or("pods")?;
    let rs_info = registry.get("apps", "replicasets").ok_or("replicasets")?;
    let opts = WriteOptions::default();
    let mut owners = Vec::with_capacity(APPS);
    for app in 0..APPS {
        let (name, hash) = app_names(app);
        let replica_set = json!({ "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": { "name": format!("{name}-{hash}") },
            "spec": { "selector": { "matchLabels": { "app": name } }, "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": "nginx" }] } } } });
        owners.push(
            store
                .create(&rs_info, "default", replica_set, &opts)?
                .uid
                .to_string(),
        );
    }
    for i in 0..nodes {
        store.create(&node_info, "", fleet_node(i), &opts)?;
    }
    for i in 0..pods {
        let pod = fleet_pod(i, i % nodes.max(1), &owners[i % APPS]);
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let status = pod["status"].clone();
        store.create(&pod_info, "default", pod, &opts)?;
        // Create resets a pod's status, as the API server does; the kubelet writes it after.
        store.update(
            &pod_info,
            "default",
            &name,
            Subresource::Status,
            &opts,
            &mut |current| {
                let mut running = current.cloned().unwrap_or_default();
                running["status"] = status.clone();
                Ok(running)
            },
        )?;
    }
    Ok(())
}

/// A fleet service's name and pod-template hash.
fn app_names(app: usize) -> (String, String) {
    (format!("svc-{app}"), format!("{:010x}", app * 7_919))
}

fn node_name(i: usize) -> String {
    format!(
        "ip-10-{}-{}-{}.ec2.internal",
        i / 65_536,
        (i / 256) % 256,
        i % 256
    )
}

fn fleet_node(i: usize) -> Value {
    let name = node_name(i);
    let zone = ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3];
    let node_conditions: Vec<Value> = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        .iter()
        .map(|t| {
            json!({ "type": t, "status": if *t == "Ready" { "True" } else { "False" },
                "reason": format!("Kubelet{t}"), "message": "kubelet is posting ready status",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z" })
        })
        .collect();
    let images: Vec<Value> = (0..8)
        .map(|n| json!({ "names": [format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app-{n}@sha256:{n:064x}"),
            format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app-{n}:v1.{n}.0")], "sizeBytes": 50_000_000 + n }))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name,
            "labels": { "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux", "kubernetes.io/hostname": name,
                "node.kubernetes.io/instance-type": "m6i.2xlarge", "topology.kubernetes.io/region": "us-east-1",
                "topology.kubernetes.io/zone": zone, "karpenter.sh/nodepool": "default",
                "karpenter.sh/capacity-type": "spot", "karpenter.sh/initialized": "true",
                "karpenter.sh/registered": "true", "karpenter.k8s.aws/ec2nodeclass": "default",
                "karpenter.k8s.aws/instance-category": "m", "karpenter.k8s.aws/instance-family": "m6i",
                "karpenter.k8s.aws/instance-generation": "6", "karpenter.k8s.aws/instance-size": "2xlarge" },
            "annotations": { "alpha.kubernetes.io/provided-node-ip": format!("10.0.{}.{}", i / 256 % 256, i % 256),
                "karpenter.k8s.aws/ec2nodeclass-hash": "15535182697325354914",
                "node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true" },
            "finalizers": ["karpenter.sh/termination"] },
        "spec": { "providerID": format!("aws:///{zone}/i-{i:017x}") },
        "status": {
            "capacity": { "cpu": "8", "memory": "32386544Ki", "pods": "58", "ephemeral-storage": "20959212Ki",
                "hugepages-1Gi": "0", "hugepages-2Mi": "0" },
            "allocatable": { "cpu": "7910m", "memory": "31369712Ki", "pods": "58", "ephemeral-storage": "18242267924",
                "hugepages-1Gi": "0", "hugepages-2Mi": "0" },
            "conditions": node_conditions,
            "addresses": [{ "type": "InternalIP", "address": format!("10.0.{}.{}", i / 256 % 256, i % 256) },
                { "type": "Hostname", "address": name }, { "type": "InternalDNS", "address": name }],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
            "nodeInfo": { "architecture": "amd64", "bootID": format!("{i:08x}-0000-4000-8000-000000000000"),
                "containerRuntimeVersion": "containerd://1.7.22", "kernelVersion": "6.1.112-124.190.amzn2023.x86_64",
                "kubeProxyVersion": "v1.31.2-eks-7f9249a", "kubeletVersion": "v1.31.2-eks-7f9249a",
                "machineID": format!("ec2{i:029x}"), "operatingSystem": "linux", "osImage": "Amazon Linux 2023.6.20241111",
                "systemUUID": format!("ec2{i:05x}-0000-0000-0000-000000000000") },
            "images": images
        }
    })
}

fn fleet_pod(i: usize, node: usize, owner_uid: &str) -> Value {
    let (app, hash) = app_names(i % APPS);
    let pod_conditions: Vec<Value> = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .iter()
    .map(|t| json!({ "type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z" }))
    .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": format!("{app}-{hash}-{i:06}"), "namespace": "default",
            "generateName": format!("{app}-{hash}-"),
            "labels": { "app": app, "pod-template-hash": hash },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-{hash}"),
                "uid": owner_uid, "controller": true, "blockOwnerDeletion": true }] },
        "spec": {
            "nodeName": node_name(node),
            "containers": [{ "name": "app", "image": format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/{app}:v1.2.3"),
                "imagePullPolicy": "IfNotPresent", "ports": [{ "containerPort": 8080, "protocol": "TCP" }],
                "env": [{ "name": "APP_ENV", "value": "production" }, { "name": "LOG_LEVEL", "value": "info" }],
                "resources": { "requests": { "cpu": "250m", "memory": "256Mi" }, "limits": { "memory": "512Mi" } },
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "volumeMounts": [{ "name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true }] }],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "serviceAccountName": "default", "terminationGracePeriodSeconds": 30, "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority", "priority": 0,
            "tolerations": [
                { "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
                { "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 }],
            "volumes": [{ "name": "kube-api-access", "projected": { "defaultMode": 420, "sources": [
                { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } },
                { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                { "downwardAPI": { "items": [{ "path": "namespace", "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } }] } }]
        },
        "status": {
            "phase": "Running", "qosClass": "Burstable", "hostIP": format!("10.0.{}.{}", node / 256 % 256, node % 256),
            "podIP": format!("10.1.{}.{}", i / 256 % 256, i % 256),
            "podIPs": [{ "ip": format!("10.1.{}.{}", i / 256 % 256, i % 256) }],
            "startTime": "2026-01-01T00:00:00Z",
            "conditions": pod_conditions,
            "containerStatuses": [{ "name": "app", "ready": true, "started": true, "restartCount": 0,
                "image": format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/{app}:v1.2.3"),
                "imageID": format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/{app}@sha256:{:064x}", i % APPS),
                "containerID": format!("containerd://{i:064x}"),
                "state": { "running": { "startedAt": "2026-01-01T00:00:00Z" } } }]
        }
    })
}
