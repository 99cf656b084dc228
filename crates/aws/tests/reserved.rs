//! Capacity reservations end to end: the controllers (provisioner, NodeClaim lifecycle, the
//! capacity-reservation controllers) on the AWS provider against moto, with the reservation
//! served by the test launcher (`support/moto_launcher.py`), which also takes launched
//! instances from it and records what each CreateFleet targeted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use nodewright_api::clock::ManualClock;
use nodewright_api::{EC2NodeClass, NodeClaim, NodePool, clock::Clock, conditions, labels};
use nodewright_aws::{
    AwsClients, AwsProvider, AwsSettings, StaticNodeClasses,
    controllers::{
        node_class_status::{self, StatusLoopConfig},
        watched::WatchedNodeClasses,
    },
    launch::userdata::Cluster,
    nodeclass,
};
use nodewright_catalog::CapacityType;
use nodewright_cloudprovider::{CloudProvider, CloudProviderError, OfferingKey};
use nodewright_controller::{Election, Settings};
use nodewright_sim::testing::TestCluster;
use serde_json::json;
use support::Moto;

const K8S: &str = "1.33";
const CLUSTER: &str = "reserved";
const RESERVATION: &str = "cr-0123456789abcdef0";

/// Polls `check` every 100 ms until it gives `Some`, for at most `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pending pod the scheduler found no room for, kept off other pods of the test by
/// anti-affinity, so each needs its own node.
async fn unschedulable_pod(pods: &Api<Pod>, name: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "db"}},
        "spec": {
            "containers": [{"name": "db", "image": "db", "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}],
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "db"}}}
            ]}},
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let status = json!({"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    ]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

fn label<'a>(claim: &'a NodeClaim, key: &str) -> Option<&'a str> {
    claim.labels().get(key).map(String::as_str)
}

/// Moto with a network, the al2023 alias and a reservation for two m5.large in us-west-2a; an
/// API server with an EC2NodeClass selecting the reservation and a NodePool allowing reserved and
/// on-demand m5.large; the node class status loop (quick refreshes, so a reservation's
/// disappearance shows soon) and the controllers on the AWS provider.
struct Harness {
    moto: Moto,
    client: kube::Client,
    _cluster: TestCluster,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What nodes need to join `name`.
fn cluster_info(name: &str) -> Cluster {
    Cluster {
        name: name.to_owned(),
        endpoint: "https://api.example".to_owned(),
        ca_bundle: "Q0E=".to_owned(),
        service_cidr: "10.100.0.0/16".to_owned(),
    }
}

fn reservation() -> serde_json::Value {
    json!({"id": RESERVATION, "instance_type": "m5.large", "availability_zone": "us-west-2a",
        "owner_id": "123456789012", "instance_match_criteria": "targeted", "count": 2})
}

impl Harness {
    async fn start() -> Self {
        let moto = Moto::start();
        let config = moto.sdk_config().await;
        let clients = AwsClients::new(&config).unwrap();
        support::network(&clients.ec2, CLUSTER, 41).await;
        support::seed_al2023_alias(&moto, &clients.ssm, K8S).await;
        moto.seed_capacity_reservations(&json!([reservation()]));
        let cluster = TestCluster::start().await.unwrap();
        nodewright_sim::simulation::install_crds(&cluster.state().store).unwrap();
        let client = cluster.client();
        create_node_class_and_pool(&client).await;
        let (classes, watch) = WatchedNodeClasses::start(&client);
        let settings = AwsSettings::new(CLUSTER, K8S);
        let mut tasks = vec![
            tokio::spawn(watch),
            tokio::spawn(node_class_status::run(
                client.clone(),
                clients.clone(),
                settings.clone(),
                Clock::system(),
                classes.clone(),
                StatusLoopConfig {
                    refresh: Duration::from_millis(500),
                    retry: Duration::from_millis(500),
                    tick: Duration::from_millis(100),
                },
            )),
        ];
        let classes_api: Api<EC2NodeClass> = Api::all(client.clone());
        eventually(
            "the node class resolving its reservation",
            Duration::from_secs(30),
            || async {
                let class = classes_api.get(CLUSTER).await.ok()?;
                let status = class.status.as_ref()?;
                let ready = status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == conditions::READY && c.status == conditions::TRUE);
                (ready && status.capacity_reservations.iter().any(|r| r.id == RESERVATION)).then_some(())
            },
        )
        .await;
        let provider = AwsProvider::new(
            clients,
            settings,
            Some(cluster_info(CLUSTER)),
            Arc::new(classes),
            Clock::system(),
        );
        let controller_settings = Settings {
            batch_idle: Duration::from_millis(200),
            batch_max: Duration::from_secs(2),
            reservation_check_interval: Duration::from_millis(200),
            ..Settings::default()
        };
        let controller_client = client.clone();
        tasks.push(tokio::spawn(async move {
            nodewright_controller::run(
                controller_client,
                Arc::new(provider),
                Clock::system(),
                controller_settings,
                Election::Disabled,
            )
            .await
            .unwrap();
        }));
        Self {
            moto,
            client,
            _cluster: cluster,
            tasks,
        }
    }
}

async fn create_node_class_and_pool(client: &kube::Client) {
    let mut class = support::node_class(CLUSTER, CLUSTER);
    class.spec.capacity_reservation_selector_terms =
        vec![nodewright_api::ec2nodeclass::CapacityReservationSelectorTerm {
            id: Some(RESERVATION.to_owned()),
            ..Default::default()
        }];
    Api::<EC2NodeClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    let pool: NodePool = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": "default"},
        "spec": {"template": {"spec": {
            "requirements": [
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["reserved", "on-demand"]},
            ],
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": CLUSTER},
        }}},
    }))
    .unwrap();
    Api::<NodePool>::all(client.clone())
        .create(&PostParams::default(), &pool)
        .await
        .unwrap();
}

/// Waits for `count` launched NodeClaims (not being deleted).
async fn launched_claims(claims: &Api<NodeClaim>, count: usize) -> Vec<NodeClaim> {
    eventually("the NodeClaims launched", Duration::from_mins(1), || async {
        let launched: Vec<NodeClaim> = claims
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|c| {
                c.metadata.deletion_timestamp.is_none()
                    && c.status.as_ref().and_then(|s| s.provider_id.as_ref()).is_some()
            })
            .collect();
        (launched.len() == count).then_some(launched)
    })
    .await
}

/// What EC2 saw: launches into the reservation targeted it with capacity-reservations-only and
/// took exactly its two instances; the launch of `on_demand` kept out of reservations.
fn assert_fleets_targeted_the_reservation(moto: &Moto, on_demand: &NodeClaim) {
    let fleets = moto.launches();
    let into_reservation: Vec<&serde_json::Value> = fleets
        .iter()
        .filter(|l| l["reservations"] == json!([RESERVATION]))
        .collect();
    assert!(!into_reservation.is_empty(), "{fleets:#?}");
    for fleet in &into_reservation {
        assert_eq!(
            fleet["preferences"],
            json!(["capacity-reservations-only"]),
            "{fleet}"
        );
        assert_eq!(fleet["default_target_capacity_type"], "on-demand", "{fleet}");
    }
    let reserved_instances: usize = into_reservation
        .iter()
        .map(|l| l["instances"].as_array().unwrap().len())
        .sum();
    assert_eq!(reserved_instances, 2, "{fleets:#?}");
    let provider_id = on_demand.status.as_ref().unwrap().provider_id.clone().unwrap();
    let fleet = fleets
        .iter()
        .find(|l| {
            l["instances"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| provider_id.ends_with(i.as_str().unwrap()))
        })
        .unwrap_or_else(|| panic!("no launch of {provider_id} in {fleets:#?}"));
    assert_eq!(fleet["preferences"], json!(["none"]), "{fleet}");
    assert_eq!(fleet["reservations"], json!([null]), "{fleet}");
}

/// Whether `claim` is pinned to the reservation by its requirements, as the provisioner pins
/// the NodeClaims it plans on reserved offerings.
fn pinned(claim: &NodeClaim) -> bool {
    let has = |key: &str, value: &str| {
        claim
            .spec
            .requirements
            .iter()
            .any(|r| r.key == key && r.values == [value])
    };
    has(labels::AWS_CAPACITY_RESERVATION_ID, RESERVATION)
        && has(labels::CAPACITY_TYPE, labels::CAPACITY_TYPE_RESERVED)
}

#[tokio::test]
async fn reserved_capacity_is_used_first_never_oversubscribed_and_demoted_when_the_reservation_goes() {
    let harness = Harness::start().await;
    // Three pods, each needing a node of its own: the reservation holds two.
    let pods: Api<Pod> = Api::namespaced(harness.client.clone(), "default");
    for name in ["db-0", "db-1", "db-2"] {
        unschedulable_pod(&pods, name).await;
    }
    let claims: Api<NodeClaim> = Api::all(harness.client.clone());
    let launched = launched_claims(&claims, 3).await;
    let (reserved, others): (Vec<&NodeClaim>, Vec<&NodeClaim>) = launched
        .iter()
        .partition(|c| label(c, labels::CAPACITY_TYPE) == Some(labels::CAPACITY_TYPE_RESERVED));
    assert_eq!(reserved.len(), 2, "the reservation's two instances are used");
    for claim in &reserved {
        assert_eq!(
            label(claim, labels::AWS_CAPACITY_RESERVATION_ID),
            Some(RESERVATION)
        );
        assert_eq!(
            label(claim, labels::AWS_CAPACITY_RESERVATION_TYPE),
            Some("default")
        );
        assert_eq!(
            label(claim, labels::AWS_CAPACITY_RESERVATION_INTERRUPTIBLE),
            Some("false")
        );
        assert_eq!(label(claim, labels::ZONE), Some("us-west-2a"));
    }
    assert_eq!(
        label(others[0], labels::CAPACITY_TYPE),
        Some(labels::CAPACITY_TYPE_ON_DEMAND)
    );
    assert_eq!(label(others[0], labels::AWS_CAPACITY_RESERVATION_ID), None);
    // At least one NodeClaim is pinned (the other may be an unpinned NodeClaim that found the
    // reservation first: Karpenter's launch also prefers reserved capacity).
    assert!(
        launched.iter().any(pinned),
        "{:?}",
        launched.iter().map(|c| &c.spec.requirements).collect::<Vec<_>>()
    );
    assert_fleets_targeted_the_reservation(&harness.moto, others[0]);

    // The reservation is cancelled: the status loop drops it, and the capacity-type controller
    // demotes the NodeClaims that were launched into it.
    let mut cancelled = reservation();
    cancelled["state"] = json!("cancelled");
    harness.moto.seed_capacity_reservations(&json!([cancelled]));
    let reserved_names: Vec<String> = reserved.iter().map(|c| c.name_any()).collect();
    eventually(
        "the reserved NodeClaims demoted",
        Duration::from_secs(30),
        || async {
            for name in &reserved_names {
                let claim = claims.get(name).await.ok()?;
                if label(&claim, labels::CAPACITY_TYPE) != Some(labels::CAPACITY_TYPE_ON_DEMAND)
                    || label(&claim, labels::AWS_CAPACITY_RESERVATION_ID).is_some()
                    || label(&claim, labels::AWS_CAPACITY_RESERVATION_TYPE).is_some()
                {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

fn node_claim(name: &str, requirements: &serde_json::Value) -> NodeClaim {
    serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {"karpenter.sh/nodepool": "default"}},
        "spec": {
            "requirements": requirements,
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "refusals"},
        },
    }))
    .unwrap()
}

/// The reserved offering of m5.large in us-west-2b: (what is left, available).
async fn reserved_offering(provider: &AwsProvider, pool: &NodePool) -> (u32, bool) {
    let types = provider.get_instance_types(pool).await.unwrap();
    let m5 = types.iter().find(|t| t.name == "m5.large").unwrap();
    let offering = m5
        .offerings
        .iter()
        .find(|o| o.capacity_type == CapacityType::Reserved)
        .unwrap();
    assert_eq!(offering.zone, "us-west-2b");
    (
        offering.reservation.as_ref().unwrap().capacity,
        offering.available,
    )
}

/// The reservation `cr-0refused` of m5.large in us-west-2b as the launcher serves it.
fn seed_refusable(moto: &Moto, count: u32, available: u32) {
    moto.seed_capacity_reservations(&json!([{"id": "cr-0refused", "instance_type": "m5.large",
        "availability_zone": "us-west-2b", "owner_id": "123456789012", "count": count, "available": available}]));
}

/// Moto with `cr-0refused` (one instance), a provider on a manual clock for a node class
/// selecting it, and a NodePool of that class.
async fn provider_with_reservation(octet: u8) -> (Moto, AwsProvider, ManualClock, NodePool) {
    provider_with_reservation_gated(octet, true).await
}

/// The same, with Karpenter's `ReservedCapacity` gate as given.
async fn provider_with_reservation_gated(
    octet: u8,
    reserved_capacity: bool,
) -> (Moto, AwsProvider, ManualClock, NodePool) {
    let moto = Moto::start();
    let clients = AwsClients::new(&moto.sdk_config().await).unwrap();
    support::network(&clients.ec2, "refusals", octet).await;
    support::seed_al2023_alias(&moto, &clients.ssm, K8S).await;
    seed_refusable(&moto, 1, 1);
    let clock = ManualClock::new("2026-11-01T00:00:00Z".parse().unwrap());
    let settings = AwsSettings {
        reserved_capacity,
        ..AwsSettings::new("refusals", K8S)
    };
    let mut class = support::node_class("refusals", "refusals");
    class.metadata.generation = Some(1);
    class.spec.capacity_reservation_selector_terms =
        vec![nodewright_api::ec2nodeclass::CapacityReservationSelectorTerm {
            id: Some("cr-0refused".to_owned()),
            ..Default::default()
        }];
    let resolved = nodeclass::resolve(&clients, &settings, &class, clock.clock().now())
        .await
        .unwrap();
    class.status = Some(nodeclass::status(&class, &resolved, clock.clock().now()));
    let classes = StaticNodeClasses::new();
    classes.insert(class);
    let provider = AwsProvider::new(
        clients,
        settings,
        Some(cluster_info("refusals")),
        Arc::new(classes),
        clock.clock(),
    );
    let pool: NodePool = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "default"},
        "spec": {"template": {"spec": {"requirements": [],
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "refusals"}}}},
    }))
    .unwrap();
    (moto, provider, clock, pool)
}

/// m5.large in us-west-2b, reserved or on-demand.
fn reserved_or_on_demand() -> serde_json::Value {
    json!([
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["reserved", "on-demand"]},
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-west-2b"]},
    ])
}

#[tokio::test]
async fn a_refused_reservation_is_marked_unavailable_and_a_gone_instance_gives_its_capacity_back() {
    let (moto, provider, clock, pool) = provider_with_reservation(42).await;
    assert_eq!(reserved_offering(&provider, &pool).await, (1, true));

    // Someone else takes the instance: EC2 refuses the launch the provider still counts room for.
    seed_refusable(&moto, 1, 0);
    let pinned = json!([
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["reserved"]},
        {"key": "karpenter.k8s.aws/capacity-reservation-id", "operator": "In", "values": ["cr-0refused"]},
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
    ]);
    let error = provider
        .create(&node_claim("refused", &pinned))
        .await
        .unwrap_err();
    let CloudProviderError::InsufficientCapacity { offerings, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(
        offerings,
        &[OfferingKey::new("m5.large", "us-west-2b", CapacityType::Reserved)]
    );
    assert_eq!(
        reserved_offering(&provider, &pool).await,
        (0, false),
        "marked unavailable"
    );
    // Only the reservation: on-demand in that zone is still offered, and the next launch uses it.
    let either = reserved_or_on_demand();
    let fallback = provider.create(&node_claim("fallback", &either)).await.unwrap();
    assert_eq!(label(&fallback, labels::CAPACITY_TYPE), Some("on-demand"));

    // The instance is back; after the refresh the provider sees it and launches into it.
    seed_refusable(&moto, 1, 1);
    clock.advance(jiff::SignedDuration::from_mins(2));
    assert_eq!(reserved_offering(&provider, &pool).await, (1, true));
    let reserved = provider.create(&node_claim("reserved", &either)).await.unwrap();
    assert_eq!(label(&reserved, labels::CAPACITY_TYPE), Some("reserved"));
    assert_eq!(
        label(&reserved, labels::AWS_CAPACITY_RESERVATION_ID),
        Some("cr-0refused")
    );
    assert_eq!(reserved_offering(&provider, &pool).await, (0, false), "taken");
    // Deleted: once the instance is gone, its capacity is counted back without waiting for EC2.
    provider.delete(&reserved).await.unwrap();
    let gone = provider.delete(&reserved).await.unwrap_err();
    assert!(gone.is_node_claim_not_found(), "{gone}");
    assert_eq!(reserved_offering(&provider, &pool).await, (1, true), "given back");
}

#[tokio::test]
async fn concurrent_launches_never_count_one_reserved_instance_twice() {
    // Three concurrent launches for a reservation of two: two hold an instance each (and share
    // one CreateFleet), the third goes on-demand without asking EC2 for the reservation.
    let (moto, provider, clock, pool) = provider_with_reservation(43).await;
    seed_refusable(&moto, 2, 2);
    clock.advance(jiff::SignedDuration::from_mins(2));
    assert_eq!(reserved_offering(&provider, &pool).await, (2, true));
    let before = moto.launches().len();
    let provider = Arc::new(provider);
    let mut launches = tokio::task::JoinSet::new();
    for index in 0..3 {
        let provider = Arc::clone(&provider);
        let claim = node_claim(&format!("concurrent-{index}"), &reserved_or_on_demand());
        launches.spawn(async move { provider.create(&claim).await.unwrap() });
    }
    let mut capacity_types: Vec<String> = launches
        .join_all()
        .await
        .iter()
        .map(|c| label(c, labels::CAPACITY_TYPE).unwrap().to_owned())
        .collect();
    capacity_types.sort();
    assert_eq!(capacity_types, ["on-demand", "reserved", "reserved"]);
    let fleets = moto.launches();
    for fleet in &fleets[before..] {
        if fleet["reservations"] == json!(["cr-0refused"]) {
            assert!(
                !fleet["instances"].as_array().unwrap().is_empty(),
                "refused: {fleets:#?}"
            );
        }
    }
    assert_eq!(reserved_offering(&provider, &pool).await, (0, false));
}

#[tokio::test]
async fn with_the_reserved_capacity_gate_off_reservations_are_neither_offered_nor_targeted() {
    let (moto, provider, _clock, pool) = provider_with_reservation_gated(44, false).await;
    let types = provider.get_instance_types(&pool).await.unwrap();
    assert!(
        types
            .iter()
            .flat_map(|t| &t.offerings)
            .all(|o| o.capacity_type != CapacityType::Reserved)
    );
    let launched = provider
        .create(&node_claim("ungated", &reserved_or_on_demand()))
        .await
        .unwrap();
    assert_eq!(label(&launched, labels::CAPACITY_TYPE), Some("on-demand"));
    assert_eq!(label(&launched, labels::AWS_CAPACITY_RESERVATION_ID), None);
    // The template says nothing about reservations, as before the gate existed.
    let fleets = moto.launches();
    assert_eq!(fleets.len(), 1, "{fleets:#?}");
    assert_eq!(fleets[0]["preferences"], json!([null]), "{fleets:#?}");
}
