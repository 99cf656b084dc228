//! [`AwsProvider`]: [`CloudProvider`] on EC2.
//!
//! A launch reads the NodeClaim's EC2NodeClass (its resolved status: subnets, security groups,
//! AMIs, instance profile), picks the offerings ([`crate::launch::selection`]), makes sure the
//! launch templates exist, and sends one CreateFleet. Get, List and Delete go through
//! DescribeInstances and TerminateInstances by ID or by the cluster's tags.
//!
//! The launch path lives in `launch.rs`, the drift checks in `drift.rs`.

mod drift;
mod launch;
mod reserved;

pub use drift::drift_reason;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use jiff::Timestamp;
use kube::ResourceExt;
use nodewright_api::{
    EC2NodeClass, NodeClaim, NodePool,
    clock::Clock,
    conditions,
    ec2nodeclass::{RESTRICTED_TAG_KEYS, RESTRICTED_TAG_PREFIX},
    labels,
};
use nodewright_catalog::InstanceType;
use nodewright_cloudprovider::{
    BoxFuture, CloudProvider, CloudProviderError, DriftReason, RepairPolicy, Result,
};

use crate::{
    AwsClients, AwsSettings, claims,
    instance_batcher::InstanceBatcher,
    instance_types::InstanceTypeProvider,
    instances::{self, tags},
    launch::{batcher::FleetBatcher, userdata::Cluster},
    node_classes::NodeClassSource,
    reservations::{ReservationAvailability, availability::DEFAULT_REFRESH},
    unavailable::UnavailableOfferings,
};

/// The `reason` of the CreateError for a NodeClaim no instance type can serve.
pub const NO_COMPATIBLE_INSTANCE_TYPE: &str = "NoCompatibleInstanceType";
/// The `reason` of the CreateError when the types one launch may offer miss a `minValues`.
pub const MIN_VALUES_NOT_MET: &str = "MinValuesNotMet";
/// The `reason` of the CreateError for a request quantity that does not parse.
pub const INVALID_RESOURCE_REQUEST: &str = "InvalidResourceRequest";
/// The `reason` of the CreateError when no user data can be made for the node class.
pub const USER_DATA_UNAVAILABLE: &str = "UserDataUnavailable";

/// Nodewright's AWS cloud provider.
pub struct AwsProvider {
    clients: AwsClients,
    settings: AwsSettings,
    cluster: Option<Cluster>,
    node_classes: Arc<dyn NodeClassSource>,
    instance_types: InstanceTypeProvider,
    unavailable: UnavailableOfferings,
    clock: Clock,
    /// Launch templates known to exist (so a launch sends no DescribeLaunchTemplates for them),
    /// with when each was last used; garbage collection deletes the ones unused for long.
    templates: Mutex<HashMap<String, Timestamp>>,
    /// When this provider started: templates it never used count as used then.
    started: Timestamp,
    fleets: FleetBatcher,
    /// Single-instance DescribeInstances and TerminateInstances, merged.
    instance_calls: InstanceBatcher,
    /// What the node classes' capacity reservations have left.
    reservations: ReservationAvailability,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("region", &self.clients.region)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AwsProvider {
    /// A provider for the cluster in `settings`. `cluster` holds what nodes need to join (API
    /// endpoint, CA, service CIDR); without it only `Custom` node classes, whose user data is the
    /// user's own, can launch.
    pub fn new(
        clients: AwsClients,
        settings: AwsSettings,
        cluster: Option<Cluster>,
        node_classes: Arc<dyn NodeClassSource>,
        clock: Clock,
    ) -> Self {
        let instance_types = InstanceTypeProvider::new(
            clients.ec2.clone(),
            clients.pricing.clone(),
            &clients.region,
            settings.catalog_refresh,
        );
        let unavailable = UnavailableOfferings::new(settings.unavailable_offerings_ttl);
        let started = clock.now();
        let fleets = FleetBatcher::new(clients.ec2.clone(), settings.launch_batch);
        let instance_calls = InstanceBatcher::new(clients.ec2.clone(), settings.instance_batch);
        let reservations = ReservationAvailability::new(clients.ec2.clone(), DEFAULT_REFRESH);
        Self {
            clients,
            settings,
            cluster,
            node_classes,
            instance_types,
            unavailable,
            clock,
            templates: Mutex::default(),
            started,
            fleets,
            instance_calls,
            reservations,
        }
    }

    /// The offerings EC2 recently reported out of capacity.
    pub fn unavailable_offerings(&self) -> &UnavailableOfferings {
        &self.unavailable
    }

    /// The instance-type cache.
    pub fn instance_type_provider(&self) -> &InstanceTypeProvider {
        &self.instance_types
    }

    fn ready_node_class(&self, name: &str) -> Result<Arc<EC2NodeClass>> {
        let not_ready = |message: String| CloudProviderError::NodeClassNotReady {
            node_class: name.to_owned(),
            message,
        };
        let node_class = self
            .node_classes
            .get(name)
            .ok_or_else(|| not_ready("EC2NodeClass not found".to_owned()))?;
        let ready = node_class
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .find(|c| c.type_ == conditions::READY);
        match ready {
            Some(c) if c.status == conditions::TRUE => {
                if c.observed_generation.is_some() && c.observed_generation != node_class.metadata.generation
                {
                    return Err(not_ready(format!(
                        "status is for generation {:?}, the spec is at {:?}",
                        c.observed_generation, node_class.metadata.generation
                    )));
                }
                Ok(node_class)
            }
            Some(c) => Err(not_ready(format!("Ready={}: {}", c.status, c.message))),
            None => Err(not_ready("status not resolved yet".to_owned())),
        }
    }

    /// Tags of everything launched for `node_class`; `node_claim`'s NodePool and name when given.
    fn tags(&self, node_class: &EC2NodeClass, node_claim: Option<&NodeClaim>) -> BTreeMap<String, String> {
        let cluster = &self.settings.cluster_name;
        let mut tags: BTreeMap<String, String> = node_class
            .spec
            .tags
            .iter()
            .filter(|(k, _)| {
                !RESTRICTED_TAG_KEYS.contains(&k.as_str()) && !k.starts_with(RESTRICTED_TAG_PREFIX)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tags.insert(format!("{}{cluster}", tags::CLUSTER_PREFIX), "owned".to_owned());
        tags.insert(tags::CLUSTER_NAME.to_owned(), cluster.clone());
        tags.insert(tags::NODE_CLASS.to_owned(), node_class.name_any());
        if let Some(node_claim) = node_claim {
            if let Some(pool) = node_claim.nodepool_name() {
                tags.insert(tags::NODE_POOL.to_owned(), pool.to_owned());
            }
            tags.insert(tags::NODE_CLAIM.to_owned(), node_claim.name_any());
        }
        tags
    }

    /// A NodeClaim for a live instance, with capacity from its node class's catalogue when that
    /// class still exists.
    async fn claim_of(&self, instance: &instances::InstanceInfo) -> Result<NodeClaim> {
        let node_class = instance
            .tags
            .get(tags::NODE_CLASS)
            .and_then(|name| self.node_classes.get(name));
        let settings = self.settings.node_settings(node_class.as_deref());
        let catalog = self.instance_types.catalog(&settings, self.clock.now()).await?;
        Ok(claims::from_instance(
            instance,
            catalog.get(&instance.instance_type),
        ))
    }

    async fn get_claim(&self, provider_id: &str) -> Result<NodeClaim> {
        let id = instances::instance_id(provider_id)?;
        match self.instance_calls.get(id).await? {
            Some(instance) if instance.is_live() => self.claim_of(&instance).await,
            _ => Err(CloudProviderError::NodeClaimNotFound(provider_id.to_owned())),
        }
    }

    async fn list_claims(&self) -> Result<Vec<NodeClaim>> {
        let found = instances::list(&self.clients.ec2, &self.settings.cluster_name).await?;
        let mut claims = Vec::with_capacity(found.len());
        for instance in found.iter().filter(|i| i.is_live()) {
            claims.push(self.claim_of(instance).await?);
        }
        Ok(claims)
    }

    async fn terminate(&self, node_claim: &NodeClaim) -> Result<()> {
        let Some(provider_id) = node_claim.status.as_ref().and_then(|s| s.provider_id.clone()) else {
            return Err(CloudProviderError::NodeClaimNotFound(format!(
                "nodeclaim {} has no providerID",
                node_claim.name_any()
            )));
        };
        let id = instances::instance_id(&provider_id)?;
        let gone = || {
            // A reserved instance found gone gave its reservation an instance back (as
            // Karpenter's MarkTerminated; termination stops asking once it hears NotFound).
            if let Some(reservation) = node_claim.labels().get(labels::AWS_CAPACITY_RESERVATION_ID) {
                self.reservations.mark_terminated(reservation);
            }
            CloudProviderError::NodeClaimNotFound(provider_id.clone())
        };
        match self.instance_calls.get(id).await? {
            None => Err(gone()),
            Some(instance) if !instance.is_live() => Err(gone()),
            // Termination already started; the next call reports it finished.
            Some(instance) if instance.state == "shutting-down" => Ok(()),
            Some(_) => {
                if self.instance_calls.terminate(id).await? {
                    Ok(())
                } else {
                    Err(gone())
                }
            }
        }
    }

    async fn instance_types_for(&self, node_pool: &NodePool) -> Result<Vec<InstanceType>> {
        let node_class = self.ready_node_class(&node_pool.spec.template.spec.node_class_ref.name)?;
        self.node_class_types(&node_class, self.clock.now()).await
    }
}

impl CloudProvider for AwsProvider {
    fn create<'a>(&'a self, node_claim: &'a NodeClaim) -> BoxFuture<'a, Result<NodeClaim>> {
        Box::pin(self.launch(node_claim))
    }

    fn delete<'a>(&'a self, node_claim: &'a NodeClaim) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.terminate(node_claim))
    }

    fn get<'a>(&'a self, provider_id: &'a str) -> BoxFuture<'a, Result<NodeClaim>> {
        Box::pin(self.get_claim(provider_id))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<NodeClaim>>> {
        Box::pin(self.list_claims())
    }

    fn get_instance_types<'a>(&'a self, node_pool: &'a NodePool) -> BoxFuture<'a, Result<Vec<InstanceType>>> {
        Box::pin(self.instance_types_for(node_pool))
    }

    fn is_drifted<'a>(&'a self, node_claim: &'a NodeClaim) -> BoxFuture<'a, Result<Option<DriftReason>>> {
        Box::pin(self.drift(node_claim))
    }

    /// Karpenter's AWS provider's policies.
    fn repair_policies(&self) -> Vec<RepairPolicy> {
        nodewright_cloudprovider::aws_repair_policies()
    }

    fn name(&self) -> &'static str {
        "aws"
    }
}
