//! The AWS provider against moto's EC2 and SSM: node class resolution, instance types, launch
//! through CreateFleet with launch templates, Get/List/Delete, and capacity errors injected by
//! the launcher in `support/moto_launcher.py`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

mod support;

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use nodewright_api::{
    EC2NodeClass, NodeClaim, NodePool,
    clock::{Clock, ManualClock},
    conditions, labels,
};
use nodewright_aws::{
    AwsClients, AwsProvider, AwsSettings, StaticNodeClasses, instances::tags, launch::userdata::Cluster,
    nodeclass,
};
use nodewright_catalog::{CapacityType, Catalog, NodeSettings};
use nodewright_cloudprovider::{CloudProvider, CloudProviderError, OfferingKey};
use support::{Moto, Network};

const K8S: &str = "1.33";

fn node_class(name: &str, discovery: &str) -> EC2NodeClass {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "karpenter.k8s.aws/v1",
        "kind": "EC2NodeClass",
        "metadata": {"name": name, "generation": 1},
        "spec": {
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": discovery}}],
            "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": discovery}}],
            "instanceProfile": "nodes",
            "tags": {"team": "platform"},
        },
    }))
    .unwrap()
}

fn node_claim(name: &str, node_class: &str, requirements: &serde_json::Value) -> NodeClaim {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {"karpenter.sh/nodepool": "default"}},
        "spec": {
            "requirements": requirements,
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class},
        },
    }))
    .unwrap()
}

fn node_pool(node_class: &str) -> NodePool {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": "default"},
        "spec": {"template": {"spec": {
            "requirements": [],
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class},
        }}},
    }))
    .unwrap()
}

fn now() -> Timestamp {
    "2026-11-01T00:00:00Z".parse().unwrap()
}

/// A moto account with a tagged network, the al2023 alias published, and a resolved node class
/// in a provider for cluster `cluster`.
struct Setup {
    clients: AwsClients,
    provider: AwsProvider,
    network: Network,
    node_class: EC2NodeClass,
    amis: (String, String),
}

async fn setup(moto: &Moto, cluster: &str, octet: u8) -> Setup {
    setup_with_clock(moto, cluster, octet, Clock::from_fn(now)).await
}

async fn setup_with_clock(moto: &Moto, cluster: &str, octet: u8, clock: Clock) -> Setup {
    setup_with(moto, cluster, octet, clock, |_| {}).await
}

/// [`setup_with_clock`], with the provider's settings changed by `tweak`.
async fn setup_with(
    moto: &Moto,
    cluster: &str,
    octet: u8,
    clock: Clock,
    tweak: impl FnOnce(&mut AwsSettings),
) -> Setup {
    let config = moto.sdk_config().await;
    let clients = AwsClients::new(&config).unwrap();
    let network = support::network(&clients.ec2, cluster, octet).await;
    let amis = support::seed_al2023_alias(moto, &clients.ssm, K8S).await;
    let mut settings = AwsSettings::new(cluster, K8S);
    tweak(&mut settings);
    let mut class = node_class(cluster, cluster);
    let resolved = nodeclass::resolve(&clients, &settings, &class, now())
        .await
        .unwrap();
    class.status = Some(nodeclass::status(&class, &resolved, now()));
    let classes = StaticNodeClasses::new();
    classes.insert(class.clone());
    let cluster_info = Cluster {
        name: cluster.to_owned(),
        endpoint: "https://api.example".to_owned(),
        ca_bundle: "Q0E=".to_owned(),
        service_cidr: "10.100.0.0/16".to_owned(),
    };
    let provider = AwsProvider::new(
        clients.clone(),
        settings,
        Some(cluster_info),
        Arc::new(classes),
        clock,
    );
    Setup {
        clients,
        provider,
        network,
        node_class: class,
        amis,
    }
}

fn condition<'a>(class: &'a EC2NodeClass, kind: &str) -> (&'a str, &'a str) {
    let c = class
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .unwrap_or_else(|| panic!("no {kind} condition"));
    (c.status.as_str(), c.reason.as_str())
}

#[tokio::test]
async fn node_class_resolution_finds_the_tagged_network_and_the_alias_amis() {
    let moto = Moto::shared();
    let setup = setup(moto, "resolve", 11).await;
    let class = &setup.node_class;
    let status = class.status.as_ref().unwrap();
    assert_eq!(
        condition(class, conditions::READY).0,
        "True",
        "{:?}",
        status.conditions
    );
    let mut subnets: Vec<(String, String)> = status
        .subnets
        .iter()
        .map(|s| (s.id.clone(), s.zone.clone()))
        .collect();
    subnets.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        subnets, setup.network.subnets,
        "only the tagged subnets, not the default VPC's"
    );
    assert_eq!(status.security_groups.len(), 1);
    assert_eq!(status.security_groups[0].id, setup.network.security_group_id);
    let mut amis: Vec<(&str, &str)> = status
        .amis
        .iter()
        .map(|a| {
            (
                a.id.as_str(),
                a.requirements[0].values.as_ref().unwrap()[0].as_str(),
            )
        })
        .collect();
    amis.sort_by_key(|(_, arch)| *arch);
    assert_eq!(
        amis,
        [(setup.amis.0.as_str(), "amd64"), (setup.amis.1.as_str(), "arm64")]
    );
    assert_eq!(status.instance_profile.as_deref(), Some("nodes"));

    // Terms that match nothing, and a pinned alias whose parameter was never published.
    let mut missing = node_class("missing", "no-such-tag");
    missing.spec.ami_selector_terms[0].alias = Some("al2023@v20990101".to_owned());
    let resolved = nodeclass::resolve(&setup.clients, &AwsSettings::new("resolve", K8S), &missing, now())
        .await
        .unwrap();
    missing.status = Some(nodeclass::status(&missing, &resolved, now()));
    assert_eq!(
        condition(&missing, conditions::ec2nodeclass::SUBNETS_READY),
        ("False", conditions::ec2nodeclass::REASON_SUBNETS_NOT_FOUND)
    );
    assert_eq!(
        condition(&missing, conditions::ec2nodeclass::AMIS_READY),
        ("False", conditions::ec2nodeclass::REASON_AMI_NOT_FOUND)
    );
    assert_eq!(condition(&missing, conditions::READY).0, "False");

    // Security groups by name and subnets by id select the same objects.
    let mut by_id = node_class("by-id", "unused");
    by_id.spec.subnet_selector_terms = vec![nodewright_api::ec2nodeclass::SubnetSelectorTerm {
        id: Some(setup.network.subnets[1].0.clone()),
        ..Default::default()
    }];
    by_id.spec.security_group_selector_terms =
        vec![nodewright_api::ec2nodeclass::SecurityGroupSelectorTerm {
            name: Some("nodes-resolve".to_owned()),
            ..Default::default()
        }];
    let resolved = nodeclass::resolve(&setup.clients, &AwsSettings::new("resolve", K8S), &by_id, now())
        .await
        .unwrap();
    assert_eq!(resolved.subnets.len(), 1);
    assert_eq!(resolved.subnets[0].zone, "us-west-2b");
    assert_eq!(resolved.security_groups[0].id, setup.network.security_group_id);
}

#[tokio::test]
async fn capacity_reservations_are_selected_by_id_and_by_owner_and_tags() {
    use nodewright_api::ec2nodeclass::{CapacityReservationSelectorTerm, InstanceMatchCriteria};
    let moto = Moto::shared();
    // moto has no capacity reservations: the launcher serves these, with EC2's filters.
    moto.seed_capacity_reservations(&serde_json::json!([
        {"id": "cr-0a1", "instance_type": "m5.large", "availability_zone": "us-west-2a",
         "owner_id": "111111111111", "instance_match_criteria": "targeted", "tags": {"team": "ml"}},
        {"id": "cr-0a2", "instance_type": "p5.48xlarge", "availability_zone": "us-west-2b",
         "owner_id": "111111111111", "reservation_type": "capacity-block", "interruptible": false,
         "end_date": "2026-11-01T00:30:00Z", "tags": {"team": "ml"}},
        {"id": "cr-0a3", "instance_type": "m5.large", "availability_zone": "us-west-2c",
         "owner_id": "222222222222", "tags": {"team": "ml"}},
        {"id": "cr-0a4", "instance_type": "m5.large", "availability_zone": "us-west-2a",
         "owner_id": "111111111111", "state": "cancelled", "tags": {"team": "ml"}},
        {"id": "cr-0a5", "instance_type": "c5.xlarge", "availability_zone": "us-west-2c",
         "owner_id": "333333333333"},
        {"id": "cr-0a6", "instance_type": "c5.xlarge", "availability_zone": "us-west-2c",
         "owner_id": "333333333333", "state": "expired"},
    ]));
    let setup = setup(moto, "reservations", 21).await;
    let mut class = setup.node_class.clone();
    assert!(
        class.status.as_ref().unwrap().capacity_reservations.is_empty(),
        "no terms, no reservations"
    );
    class.spec.capacity_reservation_selector_terms = vec![
        CapacityReservationSelectorTerm {
            id: Some("cr-0a5".to_owned()),
            ..Default::default()
        },
        CapacityReservationSelectorTerm {
            id: Some("cr-0a6".to_owned()),
            ..Default::default()
        },
        CapacityReservationSelectorTerm {
            tags: [("team".to_owned(), "ml".to_owned())].into(),
            owner_id: Some("111111111111".to_owned()),
            ..Default::default()
        },
    ];
    let settings = AwsSettings::new("reservations", K8S);
    let resolved = nodeclass::resolve(&setup.clients, &settings, &class, now())
        .await
        .unwrap();
    class.status = Some(nodeclass::status(&class, &resolved, now()));
    let status = class.status.as_ref().unwrap();
    let found: Vec<(&str, &str, &str, Option<&str>)> = status
        .capacity_reservations
        .iter()
        .map(|r| {
            (
                r.id.as_str(),
                r.availability_zone.as_str(),
                r.instance_type.as_str(),
                r.state.as_deref(),
            )
        })
        .collect();
    // Not cr-0a3 (another owner), cr-0a4 (cancelled) or cr-0a6 (expired); the capacity block
    // ends within 40 minutes, so it is expiring.
    assert_eq!(
        found,
        [
            ("cr-0a1", "us-west-2a", "m5.large", Some("active")),
            ("cr-0a2", "us-west-2b", "p5.48xlarge", Some("expiring")),
            ("cr-0a5", "us-west-2c", "c5.xlarge", Some("active")),
        ]
    );
    let block = &status.capacity_reservations[1];
    assert_eq!(block.reservation_type.as_deref(), Some("capacity-block"));
    assert_eq!(block.interruptible, Some(false));
    assert_eq!(block.owner_id, "111111111111");
    assert_eq!(
        block.end_time.as_ref().map(|t| t.0),
        Some("2026-11-01T00:30:00Z".parse().unwrap())
    );
    assert_eq!(
        status.capacity_reservations[0].instance_match_criteria,
        Some(InstanceMatchCriteria::Targeted)
    );
    assert_eq!(
        condition(&class, conditions::ec2nodeclass::CAPACITY_RESERVATIONS_READY).0,
        "True"
    );
    assert_eq!(condition(&class, conditions::READY).0, "True");
}

#[tokio::test]
async fn instance_types_come_from_ec2_through_the_catalogue_formulas() {
    // The whole catalogue, so every record moto describes goes through the conversion.
    let moto = Moto::start_with_every_instance_type();
    let setup = setup(&moto, "types", 12).await;
    let types = setup
        .provider
        .get_instance_types(&node_pool("types"))
        .await
        .unwrap();
    assert!(
        types.len() > 1000,
        "moto describes the whole catalogue: {}",
        types.len()
    );
    let m5 = types.iter().find(|t| t.name == "m5.large").unwrap();
    let shipped = Catalog::us_east_1(&NodeSettings::default()).unwrap();
    assert_eq!(m5.allocatable(), shipped.get("m5.large").unwrap().allocatable());
    let zones: Vec<(&str, bool)> = m5
        .offerings
        .iter()
        .filter(|o| o.capacity_type == CapacityType::OnDemand)
        .map(|o| (o.zone.as_str(), o.available))
        .collect();
    assert_eq!(
        zones,
        [
            ("us-west-2a", true),
            ("us-west-2b", true),
            ("us-west-2c", true),
            ("us-west-2d", false)
        ],
        "offered in the region's four zones, available only where the node class has a subnet"
    );
    let price = m5.offerings[0].price;
    assert_eq!(
        price,
        shipped.get("m5.large").unwrap().offerings[0].price,
        "shipped on-demand price"
    );
}

#[tokio::test]
async fn launch_get_list_and_delete_against_moto() {
    let moto = Moto::shared();
    let cluster = "lifecycle";
    let setup = setup(moto, cluster, 13).await;
    let ec2 = &setup.clients.ec2;
    let requirements = serde_json::json!([
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large", "m5.xlarge"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
    ]);
    let claim = node_claim("default-aaaaa", cluster, &requirements);
    let launched = setup.provider.create(&claim).await.unwrap();

    let provider_id = launched.status.as_ref().unwrap().provider_id.clone().unwrap();
    let instance_id = nodewright_aws::instances::instance_id(&provider_id)
        .unwrap()
        .to_owned();
    let launched_labels = launched.labels();
    assert_eq!(
        launched_labels[labels::INSTANCE_TYPE],
        "m5.large",
        "the cheaper type is first"
    );
    assert_eq!(launched_labels[labels::CAPACITY_TYPE], "on-demand");
    assert!(provider_id.starts_with(&format!("aws:///{}/i-", launched_labels[labels::ZONE])));
    assert_eq!(launched.status.as_ref().unwrap().allocatable["cpu"].0, "1930m");
    assert_eq!(
        launched.status.as_ref().unwrap().image_id.as_deref(),
        Some(setup.amis.0.as_str())
    );
    assert_eq!(
        launched.annotations()[labels::EC2_NODE_CLASS_HASH],
        nodeclass::hash::spec_hash(&setup.node_class)
    );

    let instance_tags = support::instance_tags(ec2, &instance_id).await;
    for (key, value) in [
        (tags::NODE_POOL, "default"),
        (tags::NODE_CLAIM, "default-aaaaa"),
        (tags::NODE_CLASS, cluster),
        (tags::CLUSTER_NAME, cluster),
        ("kubernetes.io/cluster/lifecycle", "owned"),
        ("team", "platform"),
    ] {
        assert_eq!(
            instance_tags.get(key).map(String::as_str),
            Some(value),
            "tag {key}: {instance_tags:?}"
        );
    }

    // A second launch of the same shape reuses the launch templates (one per AMI and max-pods:
    // m5.large and m5.xlarge differ in the latter).
    let templates = support::launch_templates(ec2, cluster).await;
    assert_eq!(templates.len(), 2, "{templates:?}");
    assert!(templates.iter().all(|t| t.starts_with("nodewright/")));
    let second = setup
        .provider
        .create(&node_claim("default-bbbbb", cluster, &requirements))
        .await
        .unwrap();
    assert_eq!(support::launch_templates(ec2, cluster).await, templates);

    let found = setup.provider.get(&provider_id).await.unwrap();
    assert_eq!(found.name_any(), "default-aaaaa");
    assert_eq!(found.labels()[labels::NODE_POOL], "default");
    assert_eq!(found.status.as_ref().unwrap().allocatable["cpu"].0, "1930m");

    let listed: Vec<String> = setup
        .provider
        .list()
        .await
        .unwrap()
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&"default-bbbbb".to_owned()));

    // An instance leaked by a NodeClaim that no longer exists is listed too (for the garbage
    // collector), and only this cluster's instances are.
    setup.provider.delete(&launched).await.unwrap();
    let again = setup.provider.delete(&launched).await.unwrap_err();
    assert!(again.is_node_claim_not_found(), "{again}");
    assert!(
        setup
            .provider
            .get(&provider_id)
            .await
            .unwrap_err()
            .is_node_claim_not_found()
    );
    let listed = setup.provider.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].status.as_ref().unwrap().provider_id,
        second.status.as_ref().unwrap().provider_id
    );

    // The node class's spec hash moved on: NodeClassDrift.
    let mut stale = second.clone();
    stale
        .annotations_mut()
        .insert(labels::EC2_NODE_CLASS_HASH.to_owned(), "0".to_owned());
    let drift = setup.provider.is_drifted(&stale).await.unwrap();
    assert_eq!(drift.map(|d| d.to_string()).as_deref(), Some("NodeClassDrift"));
}

#[tokio::test]
async fn launch_templates_are_recreated_when_missing_and_collected_when_unused() {
    let moto = Moto::shared();
    let cluster = "templates";
    let clock = ManualClock::new(now());
    let setup = setup_with_clock(moto, cluster, 16, clock.clock()).await;
    let ec2 = &setup.clients.ec2;
    let requirements = serde_json::json!([
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
    ]);
    setup
        .provider
        .create(&node_claim("default-aaaaa", cluster, &requirements))
        .await
        .unwrap();
    let templates = support::launch_templates(ec2, cluster).await;
    assert_eq!(templates.len(), 1, "{templates:?}");

    // A template deleted behind the provider's back is recreated by the launch that misses it.
    for name in &templates {
        ec2.delete_launch_template()
            .launch_template_name(name)
            .send()
            .await
            .unwrap();
    }
    setup
        .provider
        .create(&node_claim("default-ggggg", cluster, &requirements))
        .await
        .unwrap();
    assert_eq!(support::launch_templates(ec2, cluster).await, templates);

    // Garbage collection keeps templates in use and deletes those unused for the given time.
    let unused_for = std::time::Duration::from_hours(1);
    let collect = || setup.provider.garbage_collect_launch_templates(unused_for);
    assert!(collect().await.unwrap().is_empty());
    clock.advance(jiff::SignedDuration::from_hours(2));
    let mut deleted = collect().await.unwrap();
    deleted.sort();
    let mut expected = templates.clone();
    expected.sort();
    assert_eq!(deleted, expected);
    assert!(support::launch_templates(ec2, cluster).await.is_empty());
}

#[tokio::test]
async fn capacity_errors_fall_back_to_other_offerings_and_are_remembered() {
    // Fault rules are server-wide: this test has a server of its own.
    let moto = Moto::start();
    let cluster = "capacity";
    let setup = setup(&moto, cluster, 14).await;
    let spot = serde_json::json!([
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large", "m5.xlarge"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-west-2a"]},
    ]);
    moto.set_faults(&serde_json::json!([
        {"action": "CreateFleet", "ice": [{"instance_type": "m5.large"}]},
    ]));
    let launched = setup
        .provider
        .create(&node_claim("default-ccccc", cluster, &spot))
        .await
        .unwrap();
    assert_eq!(launched.labels()[labels::INSTANCE_TYPE], "m5.xlarge");
    let m5_large_a = OfferingKey::new("m5.large", "us-west-2a", CapacityType::Spot);
    assert!(
        setup
            .provider
            .unavailable_offerings()
            .is_unavailable(&m5_large_a, now())
    );
    let types = setup
        .provider
        .get_instance_types(&node_pool(cluster))
        .await
        .unwrap();
    let m5 = types.iter().find(|t| t.name == "m5.large").unwrap();
    let offering = m5
        .offerings
        .iter()
        .find(|o| o.zone == "us-west-2a" && o.capacity_type == CapacityType::Spot)
        .unwrap();
    assert!(!offering.available, "listed as unavailable, not dropped");

    // Nothing left: the launch fails with insufficient capacity naming the pool.
    moto.set_faults(&serde_json::json!([
        {"action": "CreateFleet", "ice": [{"availability_zone": "us-west-2a"}]},
    ]));
    let error = setup
        .provider
        .create(&node_claim("default-ddddd", cluster, &spot))
        .await
        .unwrap_err();
    let CloudProviderError::InsufficientCapacity { offerings, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(
        offerings,
        &[OfferingKey::new("m5.xlarge", "us-west-2a", CapacityType::Spot)]
    );

    // Once every compatible offering is known to be out, no call is made at all.
    let error = setup
        .provider
        .create(&node_claim("default-eeeee", cluster, &spot))
        .await
        .unwrap_err();
    assert!(error.is_insufficient_capacity(), "{error}");

    // An error of the call itself is a CreateError with AWS's code.
    moto.set_faults(&serde_json::json!([
        {"action": "CreateFleet", "error": {"status": 403, "code": "UnauthorizedOperation", "message": "denied"}},
    ]));
    let on_demand = serde_json::json!([
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
    ]);
    let error = setup
        .provider
        .create(&node_claim("default-fffff", cluster, &on_demand))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CloudProviderError::CreateError { reason, .. } if reason == "UnauthorizedOperation"),
        "{error}"
    );
}

async fn create_role(iam: &aws_sdk_iam::Client, name: &str) {
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    });
    iam.create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn managed_instance_profiles_follow_the_role() {
    let moto = Moto::shared();
    let config = moto.sdk_config().await;
    let clients = AwsClients::new(&config).unwrap();
    let cluster = "profiles";
    support::network(&clients.ec2, cluster, 15).await;
    support::seed_al2023_alias(moto, &clients.ssm, K8S).await;
    create_role(&clients.iam, "profiles-nodes-a").await;
    create_role(&clients.iam, "profiles-nodes-b").await;
    let settings = AwsSettings::new(cluster, K8S);
    let mut class = node_class(cluster, cluster);
    class.metadata.uid = Some("uid-1".to_owned());
    class.spec.instance_profile = None;
    class.spec.role = Some("profiles-nodes-a".to_owned());
    let resolve = |class: EC2NodeClass| {
        let (clients, settings) = (clients.clone(), settings.clone());
        async move {
            let resolved = nodeclass::resolve(&clients, &settings, &class, now())
                .await
                .unwrap();
            let mut class = class;
            class.status = Some(nodeclass::status(&class, &resolved, now()));
            class
        }
    };
    let profile_roles = |name: String| {
        let iam = clients.iam.clone();
        async move {
            let found = iam
                .get_instance_profile()
                .instance_profile_name(name)
                .send()
                .await
                .unwrap();
            let profile = found.instance_profile().unwrap().clone();
            let roles: Vec<String> = profile.roles().iter().map(|r| r.role_name().to_owned()).collect();
            (profile.path().to_owned(), roles)
        }
    };

    let resolved = resolve(class.clone()).await;
    assert_eq!(
        condition(&resolved, conditions::ec2nodeclass::INSTANCE_PROFILE_READY).0,
        "True"
    );
    let name = resolved
        .status
        .as_ref()
        .unwrap()
        .instance_profile
        .clone()
        .unwrap();
    assert!(name.starts_with("profiles_"), "{name}");
    assert_eq!(
        profile_roles(name.clone()).await,
        (
            "/karpenter/us-west-2/profiles/uid-1/".to_owned(),
            vec!["profiles-nodes-a".to_owned()]
        )
    );

    // A new role replaces the old one in the same profile.
    class.spec.role = Some("profiles-nodes-b".to_owned());
    let resolved = resolve(class.clone()).await;
    assert_eq!(
        resolved.status.as_ref().unwrap().instance_profile.as_deref(),
        Some(name.as_str())
    );
    assert_eq!(profile_roles(name.clone()).await.1, ["profiles-nodes-b"]);

    // A role that does not exist makes the node class not ready, not the reconcile fail.
    class.spec.role = Some("profiles-no-such-role".to_owned());
    let resolved = resolve(class).await;
    assert_eq!(
        condition(&resolved, conditions::ec2nodeclass::INSTANCE_PROFILE_READY),
        (
            "False",
            conditions::ec2nodeclass::REASON_INSTANCE_PROFILE_NOT_FOUND
        )
    );

    // Garbage collection deletes the cluster's profiles no node class uses.
    let deleted =
        nodeclass::instance_profile::garbage_collect(&clients.iam, support::REGION, cluster, Vec::new)
            .await
            .unwrap();
    assert_eq!(deleted, std::slice::from_ref(&name));
    let gone = clients
        .iam
        .get_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await;
    assert!(gone.is_err());
}

#[tokio::test]
async fn interruption_messages_are_read_from_the_queue() {
    use nodewright_aws::interruption::{Action, InterruptionKind, InterruptionQueue};

    let moto = Moto::shared();
    let config = moto.sdk_config().await;
    let clients = AwsClients::new(&config).unwrap();
    clients
        .sqs
        .create_queue()
        .queue_name("interruptions")
        .send()
        .await
        .unwrap();
    let queue = InterruptionQueue::by_name(clients.sqs.clone(), "interruptions", 0)
        .await
        .unwrap();
    let spot = support::spot_interruption_warning("i-0123456789abcdef0");
    for body in [spot.to_string(), "not json".to_owned()] {
        clients
            .sqs
            .send_message()
            .queue_url(queue.url())
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let mut received = Vec::new();
    for _ in 0..10 {
        received.extend(queue.receive().await.unwrap());
        if received.len() >= 2 {
            break;
        }
    }
    assert_eq!(received.len(), 2, "{received:?}");
    let interruption = received
        .iter()
        .find_map(|r| r.message.clone().ok().flatten())
        .expect("the spot warning parses");
    assert_eq!(interruption.kind, InterruptionKind::SpotInterrupted);
    assert_eq!(interruption.kind.action(), Action::CordonAndDrain);
    assert_eq!(interruption.instance_ids, ["i-0123456789abcdef0"]);
    assert!(
        received.iter().any(|r| r.message.is_err()),
        "the malformed one says so"
    );
    for message in &received {
        queue.delete(&message.receipt_handle).await.unwrap();
    }
    let attributes = clients
        .sqs
        .get_queue_attributes()
        .queue_url(queue.url())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let left = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .cloned();
    assert_eq!(
        left.as_deref(),
        Some("0"),
        "handled and malformed messages are deleted"
    );
}

#[tokio::test]
async fn concurrent_identical_launches_share_one_create_fleet_call() {
    // Counting fleets needs a server no other test launches on.
    let moto = Moto::start();
    let cluster = "batch";
    // What is tested is that identical launches merge, not the 35 ms window: a wider one keeps
    // a loaded machine from starting the five launches in two windows.
    let setup = setup_with(&moto, cluster, 17, Clock::from_fn(now), |settings| {
        settings.launch_batch.idle = std::time::Duration::from_millis(500);
    })
    .await;
    let provider = Arc::new(setup.provider);
    let requirements = serde_json::json!([
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
    ]);
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..5 {
        let provider = Arc::clone(&provider);
        let claim = node_claim(&format!("default-batch{index}"), cluster, &requirements);
        tasks.spawn(async move { provider.create(&claim).await.unwrap() });
    }
    let launched = tasks.join_all().await;
    let elapsed = started.elapsed();
    let mut instance_ids: Vec<String> = launched
        .iter()
        .map(|c| {
            let provider_id = c.status.as_ref().unwrap().provider_id.as_deref().unwrap();
            nodewright_aws::instances::instance_id(provider_id)
                .unwrap()
                .to_owned()
        })
        .collect();
    instance_ids.sort();
    instance_ids.dedup();
    assert_eq!(instance_ids.len(), 5, "one instance per NodeClaim");
    let fleets = setup.clients.ec2.describe_fleets().send().await.unwrap();
    assert_eq!(
        fleets.fleets().len(),
        1,
        "one CreateFleet call for the five launches"
    );
    for claim in &launched {
        let provider_id = claim.status.as_ref().unwrap().provider_id.as_deref().unwrap();
        let id = nodewright_aws::instances::instance_id(provider_id).unwrap();
        let tags = support::instance_tags(&setup.clients.ec2, id).await;
        assert_eq!(
            tags.get(tags::NODE_CLAIM),
            Some(&claim.name_any()),
            "each instance named after its own NodeClaim"
        );
    }
    eprintln!("5 batched launches through moto in {elapsed:?}");
}

#[tokio::test]
async fn on_demand_prices_come_from_the_price_list_api_over_the_shipped_ones() {
    // The canned GetProducts answer is server-wide: this test has a server of its own.
    let moto = Moto::start();
    let product = |instance_type: &str, usd: &str| {
        serde_json::json!({
            "product": {"productFamily": "Compute Instance", "attributes": {
                "instanceType": instance_type, "regionCode": "us-west-2", "operatingSystem": "Linux"}},
            "terms": {"OnDemand": {"T": {"priceDimensions": {"D": {"unit": "Hrs", "pricePerUnit": {"USD": usd}}}}}},
        })
        .to_string()
    };
    moto.set_faults(&serde_json::json!([
        {"action": "GetProducts", "json": {"FormatVersion": "aws_v1",
            "PriceList": [product("m5.large", "0.5000000000"), product("m5.metal", "5.0000000000")]}},
    ]));
    let setup = setup(&moto, "pricing", 18).await;
    let types = setup
        .provider
        .get_instance_types(&node_pool("pricing"))
        .await
        .unwrap();
    let on_demand = |name: &str| {
        types
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .offerings
            .iter()
            .find(|o| o.capacity_type == CapacityType::OnDemand)
            .unwrap()
            .price
    };
    assert_eq!(on_demand("m5.large"), nodewright_catalog::Price::from_usd(0.5));
    assert_eq!(on_demand("m5.metal"), nodewright_catalog::Price::from_usd(5.0));
    let shipped = Catalog::us_east_1(&NodeSettings::default()).unwrap();
    assert_eq!(
        on_demand("c5.large"),
        shipped.get("c5.large").unwrap().offerings[0].price,
        "types the API does not price keep the shipped price"
    );
}

#[tokio::test]
async fn concurrent_gets_and_deletes_are_merged_and_an_unknown_instance_fails_alone() {
    let moto = Moto::shared();
    let cluster = "merged";
    let setup = setup(moto, cluster, 19).await;
    let provider = Arc::new(setup.provider);
    let requirements = serde_json::json!([
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
    ]);
    let inputs = [
        node_claim("default-merged0", cluster, &requirements),
        node_claim("default-merged1", cluster, &requirements),
    ];
    let (first, second) = tokio::join!(provider.create(&inputs[0]), provider.create(&inputs[1]));
    let claims = [first.unwrap(), second.unwrap()];
    let provider_id = |claim: &NodeClaim| claim.status.as_ref().unwrap().provider_id.clone().unwrap();
    let unknown = "aws:///us-west-2a/i-0000000000000dead".to_owned();
    let ids = [provider_id(&claims[0]), provider_id(&claims[1])];
    let (a, b, missing) = tokio::join!(
        provider.get(&ids[0]),
        provider.get(&ids[1]),
        provider.get(&unknown)
    );
    assert_eq!(a.unwrap().name_any(), "default-merged0");
    assert_eq!(b.unwrap().name_any(), "default-merged1");
    assert!(missing.unwrap_err().is_node_claim_not_found());

    let (a, b) = tokio::join!(provider.delete(&claims[0]), provider.delete(&claims[1]));
    a.unwrap();
    b.unwrap();
    let (a, b) = tokio::join!(provider.delete(&claims[0]), provider.delete(&claims[1]));
    assert!(a.unwrap_err().is_node_claim_not_found());
    assert!(b.unwrap_err().is_node_claim_not_found());
}
