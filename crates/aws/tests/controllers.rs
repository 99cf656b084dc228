//! The provider's loops against moto and the embedded API server: the EC2NodeClass status loop
//! writes what the selector terms resolve to, the termination loop finalizes deleted node classes
//! and collects orphaned instance profiles, and the interruption loop deletes the NodeClaim of a
//! spot instance EC2 is reclaiming.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

mod support;

use std::{sync::Arc, time::Duration};

use kube::{Api, api::PostParams};
use nodewright_api::{EC2NodeClass, NodeClaim, clock::Clock, conditions};
use nodewright_aws::{
    AwsClients, AwsProvider, AwsSettings, NodeClassSource,
    controllers::{
        interruption_queue::{self, InterruptionEvent, InterruptionObserver},
        launch_templates::{self, LaunchTemplateCollection},
        node_class_status::{self, StatusLoopConfig},
        node_class_termination::{self, TerminationConfig},
        watched::WatchedNodeClasses,
    },
    interruption::InterruptionQueue,
};
use nodewright_sim::testing::TestCluster;
use support::Moto;

const K8S: &str = "1.33";

async fn cluster() -> TestCluster {
    let cluster = TestCluster::start().await.unwrap();
    nodewright_sim::simulation::install_crds(&cluster.state().store).unwrap();
    cluster
}

fn ready(class: &EC2NodeClass) -> Option<&str> {
    class
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY)
        .map(|c| c.status.as_str())
}

#[tokio::test]
async fn an_applied_node_class_gets_ready_status_with_the_resolved_network_and_amis() {
    let moto = Moto::shared();
    let clients = AwsClients::new(&moto.sdk_config().await).unwrap();
    let network = support::network(&clients.ec2, "ctl-status", 41).await;
    let amis = support::seed_al2023_alias(moto, &clients.ssm, K8S).await;
    let cluster = cluster().await;
    let client = cluster.client();
    let (classes, watch) = WatchedNodeClasses::start(&client);
    let watch = tokio::spawn(watch);
    let status_loop = tokio::spawn(node_class_status::run(
        client.clone(),
        clients.clone(),
        AwsSettings::new("ctl-status", K8S),
        Clock::system(),
        classes.clone(),
        StatusLoopConfig::default(),
    ));
    let api: Api<EC2NodeClass> = Api::all(client);
    api.create(
        &PostParams::default(),
        &support::node_class("ready", "ctl-status"),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &support::node_class("nothing", "no-such-tag"),
    )
    .await
    .unwrap();

    // The provider's view (the watched cache) sees the status the loop wrote.
    cluster
        .wait_until(Duration::from_secs(20), "both node classes have a status", || {
            let classes = classes.clone();
            async move {
                ["ready", "nothing"]
                    .iter()
                    .all(|name| classes.get(name).is_some_and(|c| ready(&c).is_some()))
            }
        })
        .await
        .unwrap();
    let resolved = classes.get("ready").unwrap();
    assert_eq!(ready(&resolved), Some("True"), "{:?}", resolved.status);
    let status = resolved.status.as_ref().unwrap();
    let mut subnets: Vec<(String, String)> = status
        .subnets
        .iter()
        .map(|s| (s.id.clone(), s.zone.clone()))
        .collect();
    subnets.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(subnets, network.subnets);
    assert_eq!(status.security_groups[0].id, network.security_group_id);
    let mut ami_ids: Vec<&str> = status.amis.iter().map(|a| a.id.as_str()).collect();
    ami_ids.sort_unstable();
    let mut expected = [amis.0.as_str(), amis.1.as_str()];
    expected.sort_unstable();
    assert_eq!(ami_ids, expected);
    let unresolved = classes.get("nothing").unwrap();
    assert_eq!(ready(&unresolved), Some("False"));

    // One status write per change: the loop's own patch does not make it resolve and write again.
    let version = api.get("ready").await.unwrap().metadata.resource_version;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.get("ready").await.unwrap().metadata.resource_version, version);

    status_loop.abort();
    watch.abort();
}

/// The events the interruption loop records, as (NodeClaim, reason).
#[derive(Default)]
struct RecordedEvents {
    events: std::sync::Mutex<Vec<(String, &'static str)>>,
    received: std::sync::Mutex<Vec<&'static str>>,
    deleted: std::sync::Mutex<Vec<Option<Duration>>>,
}

impl InterruptionObserver for RecordedEvents {
    fn record<'a>(
        &'a self,
        node_claim: &'a NodeClaim,
        event: InterruptionEvent,
    ) -> nodewright_cloudprovider::BoxFuture<'a, ()> {
        assert!(event.warning);
        self.events
            .lock()
            .unwrap()
            .push((kube::ResourceExt::name_any(node_claim), event.reason));
        Box::pin(std::future::ready(()))
    }

    fn received(&self, message_type: &'static str) {
        self.received.lock().unwrap().push(message_type);
    }

    fn deleted(&self, queued: Option<Duration>) {
        self.deleted.lock().unwrap().push(queued);
    }
}

fn node_claim(name: &str) -> NodeClaim {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {
            "karpenter.sh/nodepool": "default",
            "karpenter.sh/capacity-type": "spot",
            "node.kubernetes.io/instance-type": "m5.large",
            "topology.kubernetes.io/zone": "us-west-2a",
        }},
        "spec": {
            "requirements": [],
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
        },
    }))
    .unwrap()
}

#[tokio::test]
async fn a_spot_interruption_warning_deletes_the_node_claim_and_the_message() {
    let moto = Moto::shared();
    let clients = AwsClients::new(&moto.sdk_config().await).unwrap();
    clients
        .sqs
        .create_queue()
        .queue_name("ctl-interruptions")
        .send()
        .await
        .unwrap();
    let queue = InterruptionQueue::by_name(clients.sqs.clone(), "ctl-interruptions", 1)
        .await
        .unwrap();
    let url = queue.url().to_owned();
    let cluster = cluster().await;
    let client = cluster.client();
    let claims: Api<NodeClaim> = Api::all(client.clone());
    for (name, instance) in [
        ("reclaimed", "i-0aaaaaaaaaaaaaaa1"),
        ("kept", "i-0aaaaaaaaaaaaaaa2"),
    ] {
        create_launched_claim(&claims, name, instance).await;
    }
    let warning = support::spot_interruption_warning("i-0aaaaaaaaaaaaaaa1");
    for body in [warning.to_string(), "not json".to_owned()] {
        clients
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let provider = Arc::new(AwsProvider::new(
        clients.clone(),
        AwsSettings::new("ctl-interruption", K8S),
        None,
        Arc::new(nodewright_aws::StaticNodeClasses::new()),
        Clock::system(),
    ));
    let events = Arc::new(RecordedEvents::default());
    let interruption_loop = tokio::spawn(interruption_queue::run(
        client,
        queue,
        provider.clone(),
        events.clone(),
        Clock::system(),
    ));
    cluster
        .wait_until(
            Duration::from_secs(20),
            "the reclaimed NodeClaim is deleted",
            || {
                let claims = claims.clone();
                async move { claims.get_opt("reclaimed").await.unwrap().is_none() }
            },
        )
        .await
        .unwrap();
    assert!(claims.get_opt("kept").await.unwrap().is_some());
    assert_eq!(
        *events.events.lock().unwrap(),
        [("reclaimed".to_owned(), "SpotInterrupted")],
        "one Warning event on the reclaimed NodeClaim"
    );
    let spot_pool = nodewright_cloudprovider::OfferingKey::new(
        "m5.large",
        "us-west-2a",
        nodewright_catalog::CapacityType::Spot,
    );
    assert!(
        provider
            .unavailable_offerings()
            .is_unavailable(&spot_pool, Clock::system().now())
    );
    cluster
        .wait_until(Duration::from_secs(20), "the queue is empty", || {
            queue_is_empty(clients.sqs.clone(), url.clone())
        })
        .await
        .unwrap();
    // The loop counts a deletion just after SQS confirms it.
    cluster
        .wait_until(Duration::from_secs(20), "both deletions counted", || {
            let counted = events.deleted.lock().unwrap().len();
            std::future::ready(counted == 2)
        })
        .await
        .unwrap();
    interruption_loop.abort();
    // The warning counted by its type; the malformed message is deleted without a type.
    assert_eq!(*events.received.lock().unwrap(), ["spot_interrupted"]);
    assert_eq!(
        events.deleted.lock().unwrap().len(),
        2,
        "both messages deleted and counted"
    );
}

/// A NodeClaim whose instance is `instance` (its status's provider ID).
async fn create_launched_claim(claims: &Api<NodeClaim>, name: &str, instance: &str) {
    let created = claims
        .create(&PostParams::default(), &node_claim(name))
        .await
        .unwrap();
    let mut with_status = created.clone();
    with_status.status = Some(
        serde_json::from_value(serde_json::json!({
            "providerID": format!("aws:///us-west-2a/{instance}"),
        }))
        .unwrap(),
    );
    claims
        .replace_status(name, &PostParams::default(), &with_status)
        .await
        .unwrap();
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

#[tokio::test]
async fn launch_templates_unused_for_long_are_collected_on_the_timer() {
    let moto = Moto::shared();
    let clients = AwsClients::new(&moto.sdk_config().await).unwrap();
    let cluster = "ctl-templates";
    let tag = |key: &str, value: &str| aws_sdk_ec2::types::Tag::builder().key(key).value(value).build();
    clients
        .ec2
        .create_launch_template()
        .launch_template_name("nodewright/00000000000000aa")
        .launch_template_data(aws_sdk_ec2::types::RequestLaunchTemplateData::builder().build())
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::LaunchTemplate)
                .tags(tag(nodewright_aws::instances::tags::CLUSTER_NAME, cluster))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let clock = nodewright_api::clock::ManualClock::new("2026-11-01T00:00:00Z".parse().unwrap());
    let provider = Arc::new(AwsProvider::new(
        clients.clone(),
        AwsSettings::new(cluster, K8S),
        None,
        Arc::new(nodewright_aws::StaticNodeClasses::new()),
        clock.clock(),
    ));
    let config = LaunchTemplateCollection {
        interval: Duration::from_millis(20),
        unused_for: Duration::from_hours(1),
    };
    let collection = tokio::spawn(launch_templates::run(provider, config));
    // Within the hour the template stays...
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(support::launch_templates(&clients.ec2, cluster).await.len(), 1);
    // ... after it, the next round deletes it.
    clock.advance(jiff::SignedDuration::from_hours(2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !support::launch_templates(&clients.ec2, cluster).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the template was not collected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    collection.abort();
}

async fn launch_template(ec2: &aws_sdk_ec2::Client, name: &str, cluster: &str, node_class: &str) {
    let tag = |key: &str, value: &str| aws_sdk_ec2::types::Tag::builder().key(key).value(value).build();
    ec2.create_launch_template()
        .launch_template_name(name)
        .launch_template_data(aws_sdk_ec2::types::RequestLaunchTemplateData::builder().build())
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::LaunchTemplate)
                .tags(tag(nodewright_aws::instances::tags::CLUSTER_NAME, cluster))
                .tags(tag(nodewright_aws::instances::tags::NODE_CLASS, node_class))
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn profile_exists(iam: &aws_sdk_iam::Client, name: &str) -> bool {
    iam.get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .is_ok()
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

/// The node class watch, status loop and termination loop (fast timers) for `cluster_name`.
fn start_node_class_loops(
    client: &kube::Client,
    clients: &AwsClients,
    cluster_name: &str,
) -> (WatchedNodeClasses, Vec<tokio::task::JoinHandle<()>>) {
    let (classes, watch) = WatchedNodeClasses::start(client);
    let settings = AwsSettings::new(cluster_name, K8S);
    let loops = vec![
        tokio::spawn(watch),
        tokio::spawn(node_class_status::run(
            client.clone(),
            clients.clone(),
            settings.clone(),
            Clock::system(),
            classes.clone(),
            StatusLoopConfig::default(),
        )),
        tokio::spawn(node_class_termination::run(
            client.clone(),
            clients.clone(),
            settings,
            classes.clone(),
            TerminationConfig {
                tick: Duration::from_millis(50),
                profile_collection: Duration::from_millis(200),
            },
        )),
    ];
    (classes, loops)
}

/// Creates the EC2NodeClass `name` (discovering the network tagged `name`) with `role`; returns
/// its instance profile once it has that and the termination finalizer.
async fn create_node_class_with_role(
    cluster: &TestCluster,
    classes: &WatchedNodeClasses,
    name: &str,
    role: &str,
) -> String {
    use nodewright_api::labels::AWS_TERMINATION_FINALIZER;
    let api: Api<EC2NodeClass> = Api::all(cluster.client());
    let mut class = support::node_class(name, name);
    class.spec.instance_profile = None;
    class.spec.role = Some(role.to_owned());
    api.create(&PostParams::default(), &class).await.unwrap();
    cluster
        .wait_until(
            Duration::from_secs(20),
            "the node class has the finalizer and its instance profile",
            || {
                let classes = classes.clone();
                async move {
                    classes.get(name).is_some_and(|c| {
                        kube::ResourceExt::finalizers(c.as_ref())
                            .contains(&AWS_TERMINATION_FINALIZER.to_owned())
                            && c.status.as_ref().is_some_and(|s| s.instance_profile.is_some())
                    })
                }
            },
        )
        .await
        .unwrap();
    classes
        .get(name)
        .unwrap()
        .status
        .as_ref()
        .unwrap()
        .instance_profile
        .clone()
        .unwrap()
}

#[tokio::test]
async fn a_deleted_node_class_waits_for_its_node_claims_then_its_profile_and_templates_go() {
    let moto = Moto::shared();
    let clients = AwsClients::new(&moto.sdk_config().await).unwrap();
    let name = "ctl-terminate";
    support::network(&clients.ec2, name, 42).await;
    support::seed_al2023_alias(moto, &clients.ssm, K8S).await;
    create_role(&clients.iam, "ctl-terminate-nodes").await;
    // A profile Nodewright made for a node class that no longer exists.
    let orphan = "ctl-terminate_orphan";
    clients
        .iam
        .create_instance_profile()
        .instance_profile_name(orphan)
        .path(format!(
            "{}gone-uid/",
            nodewright_aws::nodeclass::instance_profile::cluster_path(support::REGION, name)
        ))
        .send()
        .await
        .unwrap();
    let cluster = cluster().await;
    let client = cluster.client();
    let (classes, loops) = start_node_class_loops(&client, &clients, name);
    let api: Api<EC2NodeClass> = Api::all(client.clone());
    let profile = create_node_class_with_role(&cluster, &classes, name, "ctl-terminate-nodes").await;
    assert!(profile_exists(&clients.iam, &profile).await);
    // The orphan goes on the collection timer; the live node class's profile stays.
    cluster
        .wait_until(
            Duration::from_secs(20),
            "the orphaned profile is collected",
            || {
                let iam = clients.iam.clone();
                async move { !profile_exists(&iam, orphan).await }
            },
        )
        .await
        .unwrap();
    assert!(profile_exists(&clients.iam, &profile).await);

    launch_template(&clients.ec2, "nodewright/00000000000000c1", name, name).await;
    launch_template(&clients.ec2, "nodewright/00000000000000c2", name, "another-class").await;
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let claim: NodeClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": "ctl-terminate-claim"},
        "spec": {
            "requirements": [],
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": name},
        },
    }))
    .unwrap();
    claims.create(&PostParams::default(), &claim).await.unwrap();

    api.delete(name, &kube::api::DeleteParams::default())
        .await
        .unwrap();
    cluster
        .wait_until(Duration::from_secs(20), "the deletion is seen", || {
            let classes = classes.clone();
            async move {
                classes
                    .get(name)
                    .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
            }
        })
        .await
        .unwrap();
    // Several termination ticks pass while the NodeClaim still references the node class.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        api.get_opt(name).await.unwrap().is_some(),
        "deleted while a NodeClaim uses it"
    );
    assert!(profile_exists(&clients.iam, &profile).await);

    claims
        .delete("ctl-terminate-claim", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    cluster
        .wait_until(Duration::from_secs(20), "the node class is gone", || {
            let api = api.clone();
            async move { api.get_opt(name).await.unwrap().is_none() }
        })
        .await
        .unwrap();
    assert!(!profile_exists(&clients.iam, &profile).await);
    assert_eq!(
        support::launch_templates(&clients.ec2, name).await,
        ["nodewright/00000000000000c2"],
        "only the other node class's template is left"
    );
    for running in loops {
        running.abort();
    }
}
