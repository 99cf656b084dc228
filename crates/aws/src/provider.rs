//! [`AwsProvider`]: [`CloudProvider`] on EC2.
//!
//! A launch reads the NodeClaim's EC2NodeClass (its resolved status: subnets, security groups,
//! AMIs, instance profile), picks the offerings ([`crate::launch::selection`]), makes sure the
//! launch templates exist, and sends one CreateFleet. Get, List and Delete go through
//! DescribeInstances and TerminateInstances by ID or by the cluster's tags.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use aws_smithy_types::base64;
use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use nodewright_api::{
    EC2NodeClass, NodeClaim, NodePool,
    clock::Clock,
    conditions,
    ec2nodeclass::{AmiFamily, RESTRICTED_TAG_KEYS, RESTRICTED_TAG_PREFIX},
    labels,
};
use nodewright_catalog::{InstanceType, NodeSettings};
use nodewright_cloudprovider::{
    BoxFuture, CloudProvider, CloudProviderError, ConditionStatus, DriftReason, RepairPolicy, Result,
};

use crate::{
    AwsClients, AwsSettings,
    claims::{self, Placement},
    error::AwsError,
    instance_batcher::InstanceBatcher,
    instance_types::InstanceTypeProvider,
    instances::{self, tags},
    launch::{
        batcher::{FleetAnswer, FleetBatcher},
        fleet::{self, FleetConfig, FleetOverride, FleetRequest},
        selection::{self, NoSelection, Selection},
        template::{self, TemplateSpec},
        userdata::{self, Bootstrap, Cluster},
    },
    node_classes::NodeClassSource,
    nodeclass::hash::{HASH_VERSION, spec_hash},
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

    /// The launch templates and fleet overrides for `selection`: one template per (AMI, max
    /// pods), and per type one override for each offered zone's best subnet.
    fn fleet_plan(
        &self,
        node_class: &EC2NodeClass,
        node_claim: &NodeClaim,
        selection: &Selection<'_>,
    ) -> Result<Vec<(TemplateSpec, Vec<FleetOverride>)>> {
        let name = node_claim.name_any();
        let status = node_class.status.clone().unwrap_or_default();
        // Status subnets are ordered most free IPs first: the first per zone is the one to use.
        let mut subnet_of_zone: BTreeMap<&str, &str> = BTreeMap::new();
        for subnet in &status.subnets {
            subnet_of_zone
                .entry(subnet.zone.as_str())
                .or_insert(subnet.id.as_str());
        }
        let family = node_class.ami_family().unwrap_or(AmiFamily::Custom);
        let instance_profile =
            status
                .instance_profile
                .clone()
                .ok_or_else(|| CloudProviderError::NodeClassNotReady {
                    node_class: node_class.name_any(),
                    message: "no instance profile resolved".to_owned(),
                })?;
        let template_tags = self.tags(node_class, None);
        let mut plan: Vec<(TemplateSpec, Vec<FleetOverride>)> = Vec::new();
        for candidate in &selection.candidates {
            let Some(ami) = crate::nodeclass::amis::ami_for(&status.amis, &candidate.instance_type.labels)
            else {
                tracing::debug!(instance_type = %candidate.instance_type.name, "no AMI of the node class serves it");
                continue;
            };
            let user_data = self.user_data(node_class, node_claim, family, candidate.instance_type)?;
            let spec = TemplateSpec {
                image_id: ami.id.clone(),
                user_data,
                security_group_ids: status.security_groups.iter().map(|g| g.id.clone()).collect(),
                instance_profile: instance_profile.clone(),
                metadata_options: node_class.spec.metadata_options.clone(),
                block_devices: if node_class.spec.block_device_mappings.is_empty() {
                    template::default_block_devices(family)
                } else {
                    node_class.spec.block_device_mappings.clone()
                },
                detailed_monitoring: node_class.spec.detailed_monitoring.unwrap_or(false),
                associate_public_ip_address: node_class.spec.associate_public_ip_address,
                tags: template_tags.clone(),
            };
            let overrides = candidate.offerings.iter().filter_map(|offering| {
                let subnet = subnet_of_zone.get(offering.zone.as_str())?;
                Some(FleetOverride {
                    instance_type: candidate.instance_type.name.clone(),
                    subnet_id: (*subnet).to_owned(),
                    zone: offering.zone.clone(),
                    price: offering.price,
                })
            });
            match plan.iter_mut().find(|(existing, _)| *existing == spec) {
                Some((_, existing)) => existing.extend(overrides),
                None => plan.push((spec, overrides.collect())),
            }
        }
        plan.retain(|(_, overrides)| !overrides.is_empty());
        if plan.is_empty() {
            return Err(CloudProviderError::CreateError {
                reason: NO_COMPATIBLE_INSTANCE_TYPE.to_owned(),
                message: format!(
                    "nodeclaim {name}: no compatible instance type has both an AMI of EC2NodeClass {} and a \
                     subnet in one of its zones",
                    node_class.name_any()
                ),
            });
        }
        Ok(plan)
    }

    fn user_data(
        &self,
        node_class: &EC2NodeClass,
        node_claim: &NodeClaim,
        family: AmiFamily,
        instance_type: &InstanceType,
    ) -> Result<String> {
        let unavailable = |message: String| CloudProviderError::CreateError {
            reason: USER_DATA_UNAVAILABLE.to_owned(),
            message,
        };
        let cluster = match (&self.cluster, family) {
            (Some(cluster), _) => cluster.clone(),
            (None, AmiFamily::Custom) => Cluster {
                name: self.settings.cluster_name.clone(),
                endpoint: String::new(),
                ca_bundle: String::new(),
                service_cidr: String::new(),
            },
            (None, other) => {
                return Err(unavailable(format!(
                    "{} nodes need the cluster's endpoint, CA bundle and service CIDR, which the provider \
                     was not given",
                    other.as_str()
                )));
            }
        };
        let mut taints = node_claim.spec.taints.clone();
        taints.extend(node_claim.spec.startup_taints.iter().cloned());
        let text = userdata::user_data(&Bootstrap {
            family,
            cluster: &cluster,
            custom: node_class.spec.user_data.as_deref(),
            kubelet: node_class.spec.kubelet.as_ref(),
            max_pods: instance_type.capacity.pods,
            labels: node_claim.labels(),
            taints: &taints,
        })
        .map_err(|e| unavailable(e.to_string()))?;
        Ok(base64::encode(text))
    }

    async fn ensure_template(
        &self,
        spec: &TemplateSpec,
        now: Timestamp,
    ) -> std::result::Result<String, AwsError> {
        let name = spec.name();
        if let Some(last_used) = self.known_templates().get_mut(&name) {
            *last_used = now;
            return Ok(name);
        }
        let name = template::ensure(&self.clients.ec2, spec).await?;
        self.known_templates().insert(name.clone(), now);
        Ok(name)
    }

    fn known_templates(&self) -> std::sync::MutexGuard<'_, HashMap<String, Timestamp>> {
        // Whole entries are inserted or removed: a panic elsewhere cannot leave one half-written.
        self.templates.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes the cluster's launch templates that no launch of this provider used for
    /// `unused_for` (templates of outdated AMIs, user data or node classes); returns their names.
    /// A launch racing with the deletion recreates its template (see [`Self::create`]'s retry).
    pub async fn garbage_collect_launch_templates(
        &self,
        unused_for: Duration,
    ) -> std::result::Result<Vec<String>, AwsError> {
        let now = self.clock.now();
        let cutoff = SignedDuration::try_from(unused_for)
            .ok()
            .and_then(|d| now.checked_sub(d).ok())
            .unwrap_or(Timestamp::MIN);
        let existing = template::list(&self.clients.ec2, &self.settings.cluster_name).await?;
        let mut deleted = Vec::new();
        for name in existing {
            let last_used = self.known_templates().get(&name).copied().unwrap_or(self.started);
            if last_used > cutoff {
                continue;
            }
            self.known_templates().remove(&name);
            template::delete(&self.clients.ec2, &name).await?;
            deleted.push(name);
        }
        Ok(deleted)
    }

    async fn launch(&self, node_claim: &NodeClaim) -> Result<NodeClaim> {
        let name = node_claim.name_any();
        let node_class = self.ready_node_class(&node_claim.spec.node_class_ref.name)?;
        let now = self.clock.now();
        let types = self
            .instance_types
            .for_node_class(&node_class, &self.unavailable, now)
            .await?;
        let requests = claims::requests(node_claim).map_err(|message| CloudProviderError::CreateError {
            reason: INVALID_RESOURCE_REQUEST.to_owned(),
            message: format!("nodeclaim {name}: {message}"),
        })?;
        let selection = selection::select(
            &types,
            node_claim,
            &requests,
            self.settings.max_instance_types_per_launch,
        )
        .map_err(|why| match why {
            NoSelection::Incompatible(message) => CloudProviderError::CreateError {
                reason: NO_COMPATIBLE_INSTANCE_TYPE.to_owned(),
                message: format!("nodeclaim {name}: {message}"),
            },
            NoSelection::AllUnavailable => CloudProviderError::InsufficientCapacity {
                node_claim: name.clone(),
                offerings: Vec::new(),
            },
            NoSelection::MinValues(message) => CloudProviderError::CreateError {
                reason: MIN_VALUES_NOT_MET.to_owned(),
                message: format!("nodeclaim {name}: {message}"),
            },
        })?;
        let plan = self.fleet_plan(&node_class, node_claim, &selection)?;
        let mut request = FleetRequest {
            capacity_type: selection.capacity_type,
            configs: Vec::with_capacity(plan.len()),
            tags: {
                let mut fleet_tags = self.tags(&node_class, Some(node_claim));
                fleet_tags.remove(tags::NODE_CLAIM);
                fleet_tags
            },
            context: node_class.spec.context.clone(),
        };
        // A template deleted behind our back (garbage collection elsewhere, a person) fails the
        // call; forgetting the known templates and trying once more recreates it.
        let mut attempts_left = 2;
        let answer = loop {
            attempts_left -= 1;
            request.configs.clear();
            for (spec, overrides) in &plan {
                let template_name = self
                    .ensure_template(spec, now)
                    .await
                    .map_err(fleet::call_failed)?;
                request.configs.push(FleetConfig {
                    template_name,
                    overrides: overrides.clone(),
                });
            }
            match self.fleets.launch(request.clone()).await {
                Ok(answer) => break answer,
                Err(error) => {
                    if error.code() != Some("InvalidLaunchTemplateName.NotFoundException")
                        || attempts_left == 0
                    {
                        return Err(fleet::call_failed(error));
                    }
                    self.known_templates().clear();
                }
            }
        };
        let claim = self.launched_claim(node_claim, &node_class, &selection, &plan, answer, now)?;
        self.tag_with_node_claim(&claim).await;
        Ok(claim)
    }

    /// Tags the launched instance with its NodeClaim's name. The fleet request leaves the name out
    /// so that identical launches for different NodeClaims merge into one call.
    async fn tag_with_node_claim(&self, claim: &NodeClaim) {
        let Some(instance_id) = claim
            .status
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .and_then(|id| instances::instance_id(id).ok())
        else {
            return;
        };
        let tagged = self
            .clients
            .ec2
            .create_tags()
            .resources(instance_id)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(tags::NODE_CLAIM)
                    .value(claim.name_any())
                    .build(),
            )
            .send()
            .await;
        if let Err(error) = tagged {
            // The instance is up and carries the cluster, NodePool and EC2NodeClass tags, so it is
            // listed and garbage-collected anyway; only its NodeClaim name is missing.
            let error = AwsError::api("CreateTags", &error);
            tracing::warn!(%error, instance_id, nodeclaim = %claim.name_any(), "instance not tagged with its NodeClaim");
        }
    }

    /// Reads the fleet's answer: marks pools out of capacity, and returns the launched
    /// NodeClaim or the launch's error.
    fn launched_claim(
        &self,
        node_claim: &NodeClaim,
        node_class: &EC2NodeClass,
        selection: &Selection<'_>,
        plan: &[(TemplateSpec, Vec<FleetOverride>)],
        answer: FleetAnswer,
        now: Timestamp,
    ) -> Result<NodeClaim> {
        let name = node_claim.name_any();
        let FleetAnswer { launched, failures } = answer;
        let unavailable = fleet::unavailable_offerings(&failures);
        if !unavailable.is_empty() {
            tracing::info!(nodeclaim = %name, offerings = ?unavailable, "offerings out of capacity");
            self.unavailable.mark(&unavailable, now);
        }
        let Some(launched) = launched else {
            return Err(fleet::launch_failed(&name, &failures));
        };
        let instance_type = selection
            .candidates
            .iter()
            .find(|c| c.instance_type.name == launched.instance_type)
            .map(|c| c.instance_type)
            .ok_or_else(|| {
                CloudProviderError::other(AwsError::InvalidValue {
                    source_name: "CreateFleet".to_owned(),
                    field: "Instances.InstanceType".to_owned(),
                    reason: format!("{} was not among the requested types", launched.instance_type),
                })
            })?;
        let zone = launched.zone.clone().ok_or_else(|| {
            CloudProviderError::other(AwsError::MissingField {
                operation: "CreateFleet",
                field: "Instances.LaunchTemplateAndOverrides.Overrides.AvailabilityZone",
            })
        })?;
        let image_id = plan
            .iter()
            .find(|(_, overrides)| {
                overrides
                    .iter()
                    .any(|o| o.instance_type == launched.instance_type)
            })
            .map(|(spec, _)| spec.image_id.as_str());
        let provider_id = instances::provider_id(&zone, &launched.instance_id);
        let mut claim = claims::launched(
            node_claim,
            Placement {
                instance_type,
                zone: &zone,
                capacity_type: selection.capacity_type,
                provider_id: &provider_id,
                image_id,
            },
        );
        let annotations = claim.annotations_mut();
        annotations.insert(labels::EC2_NODE_CLASS_HASH.to_owned(), spec_hash(node_class));
        annotations.insert(
            labels::EC2_NODE_CLASS_HASH_VERSION.to_owned(),
            HASH_VERSION.to_owned(),
        );
        Ok(claim)
    }

    /// A NodeClaim for a live instance, with capacity from its node class's catalogue when that
    /// class still exists.
    async fn claim_of(&self, instance: &instances::InstanceInfo) -> Result<NodeClaim> {
        let settings = instance
            .tags
            .get(tags::NODE_CLASS)
            .and_then(|name| self.node_classes.get(name))
            .map_or_else(NodeSettings::default, |class| {
                NodeSettings::from_node_class(&class)
            });
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
        let gone = || CloudProviderError::NodeClaimNotFound(provider_id.clone());
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
        Ok(self
            .instance_types
            .for_node_class(&node_class, &self.unavailable, self.clock.now())
            .await?)
    }

    async fn drift(&self, node_claim: &NodeClaim) -> Result<Option<DriftReason>> {
        let Some(node_class) = self.node_classes.get(&node_claim.spec.node_class_ref.name) else {
            return Ok(None);
        };
        let annotations = node_claim.annotations();
        if annotations
            .get(labels::EC2_NODE_CLASS_HASH_VERSION)
            .map(String::as_str)
            == Some(HASH_VERSION)
            && annotations.get(labels::EC2_NODE_CLASS_HASH) != Some(&spec_hash(&node_class))
        {
            return Ok(Some(DriftReason::new("NodeClassDrift")));
        }
        let Some(provider_id) = node_claim.status.as_ref().and_then(|s| s.provider_id.as_deref()) else {
            return Ok(None);
        };
        let Some(instance) = self
            .instance_calls
            .get(instances::instance_id(provider_id)?)
            .await?
        else {
            return Ok(None);
        };
        let status = node_class.status.clone().unwrap_or_default();
        Ok(drift_reason(&instance, &status).map(DriftReason::new))
    }
}

/// Why an instance no longer matches its node class's resolved status, if it does not (AMI,
/// subnet, security groups; a status not yet resolved judges nothing).
pub fn drift_reason(
    instance: &instances::InstanceInfo,
    status: &nodewright_api::EC2NodeClassStatus,
) -> Option<&'static str> {
    if !status.amis.is_empty()
        && instance
            .image_id
            .as_ref()
            .is_some_and(|image| !status.amis.iter().any(|a| &a.id == image))
    {
        return Some("AMIDrift");
    }
    if !status.subnets.is_empty()
        && instance
            .subnet_id
            .as_ref()
            .is_some_and(|subnet| !status.subnets.iter().any(|s| &s.id == subnet))
    {
        return Some("SubnetDrift");
    }
    if !status.security_groups.is_empty() {
        let mut expected: Vec<&str> = status.security_groups.iter().map(|g| g.id.as_str()).collect();
        let mut actual: Vec<&str> = instance.security_group_ids.iter().map(String::as_str).collect();
        expected.sort_unstable();
        actual.sort_unstable();
        if expected != actual {
            return Some("SecurityGroupDrift");
        }
    }
    None
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
        let thirty_minutes = Duration::from_mins(30);
        let mut policies = vec![
            RepairPolicy::new("Ready", ConditionStatus::False, thirty_minutes),
            RepairPolicy::new("Ready", ConditionStatus::Unknown, thirty_minutes),
            RepairPolicy::new(
                "AcceleratedHardwareReady",
                ConditionStatus::False,
                Duration::from_mins(10),
            ),
        ];
        for condition in [
            "StorageReady",
            "NetworkingReady",
            "KernelReady",
            "ContainerRuntimeReady",
        ] {
            policies.push(RepairPolicy::new(
                condition,
                ConditionStatus::False,
                thirty_minutes,
            ));
        }
        policies
    }

    fn name(&self) -> &'static str {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use nodewright_api::ec2nodeclass::{Ami, SecurityGroup, Subnet};

    use super::*;

    #[test]
    fn drift_by_ami_subnet_and_security_groups() {
        let instance = instances::InstanceInfo {
            id: "i-1".into(),
            instance_type: "m5.large".into(),
            zone: "us-west-2a".into(),
            state: "running".into(),
            spot: false,
            image_id: Some("ami-1".into()),
            subnet_id: Some("subnet-1".into()),
            security_group_ids: vec!["sg-2".into(), "sg-1".into()],
            tags: BTreeMap::new(),
            launch_time: None,
        };
        let mut status = nodewright_api::EC2NodeClassStatus {
            amis: vec![Ami {
                id: "ami-1".into(),
                name: None,
                deprecated: false,
                requirements: vec![],
            }],
            subnets: vec![Subnet {
                id: "subnet-1".into(),
                zone: "us-west-2a".into(),
                zone_id: None,
            }],
            security_groups: vec![
                SecurityGroup {
                    id: "sg-1".into(),
                    name: None,
                },
                SecurityGroup {
                    id: "sg-2".into(),
                    name: None,
                },
            ],
            ..Default::default()
        };
        assert_eq!(drift_reason(&instance, &status), None);
        status.security_groups.pop();
        assert_eq!(drift_reason(&instance, &status), Some("SecurityGroupDrift"));
        status.subnets[0].id = "subnet-9".into();
        assert_eq!(drift_reason(&instance, &status), Some("SubnetDrift"));
        status.amis[0].id = "ami-9".into();
        assert_eq!(drift_reason(&instance, &status), Some("AMIDrift"));
    }
}
