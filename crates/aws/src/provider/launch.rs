//! The launch path of [`AwsProvider`]: offerings → launch templates → one (batched) CreateFleet
//! → the launched NodeClaim; and the garbage collection of launch templates.

use std::{
    collections::{BTreeMap, HashMap},
    sync::PoisonError,
    time::Duration,
};

use aws_smithy_types::base64;
use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use nodewright_api::{
    EC2NodeClass, NodeClaim,
    ec2nodeclass::{AmiFamily, CapacityReservation},
    labels,
};
use nodewright_catalog::{CapacityType, InstanceType, Offering};
use nodewright_cloudprovider::{CloudProviderError, Result};

use super::{
    AwsProvider, INVALID_RESOURCE_REQUEST, MIN_VALUES_NOT_MET, NO_COMPATIBLE_INSTANCE_TYPE,
    USER_DATA_UNAVAILABLE,
};
use crate::{
    claims::{self, Placement},
    error::AwsError,
    instances::{self, tags},
    launch::{
        batcher::FleetAnswer,
        fleet::{self, FleetConfig, FleetOverride, FleetRequest},
        selection::{self, NoSelection, Selection},
        template::{self, ReservationUse, TemplateSpec},
        userdata::{self, Bootstrap, Cluster},
    },
    nodeclass::hash::{HASH_VERSION, spec_hash},
    reservations::{self, ReservationKind},
};

impl AwsProvider {
    /// The launch templates and fleet overrides for `selection`: one template per (AMI, max
    /// pods, capacity reservation), and per type one override for each offered zone's best
    /// subnet.
    fn fleet_plan(
        &self,
        node_class: &EC2NodeClass,
        node_claim: &NodeClaim,
        selection: &Selection<'_>,
    ) -> Result<Vec<(TemplateSpec, Vec<FleetOverride>)>> {
        let name = node_claim.name_any();
        let reservations = self.reservations_of(node_class);
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
                capacity_reservation: None,
            };
            for offering in &candidate.offerings {
                let Some(subnet) = subnet_of_zone.get(offering.zone.as_str()) else {
                    continue;
                };
                let over = FleetOverride {
                    instance_type: candidate.instance_type.name.clone(),
                    subnet_id: (*subnet).to_owned(),
                    zone: offering.zone.clone(),
                    price: offering.price,
                };
                let spec = TemplateSpec {
                    capacity_reservation: self.reservation_use(offering, reservations),
                    ..spec.clone()
                };
                match plan.iter_mut().find(|(existing, _)| *existing == spec) {
                    Some((_, existing)) => existing.push(over),
                    None => plan.push((spec, vec![over])),
                }
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

    /// The template setting of a launch through `offering`: its reservation as the only target,
    /// or (gate on, not reserved) no reservation at all.
    fn reservation_use(
        &self,
        offering: &Offering,
        reservations: &[CapacityReservation],
    ) -> Option<ReservationUse> {
        if !self.settings.reserved_capacity {
            return None;
        }
        let Some(reservation) = &offering.reservation else {
            return Some(ReservationUse::None);
        };
        let kind = reservations
            .iter()
            .find(|r| r.id == reservation.id)
            .map_or(ReservationKind::Default, ReservationKind::of);
        Some(ReservationUse::Only {
            id: reservation.id.clone(),
            kind,
        })
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
        .map_err(|e| unavailable(format!("EC2NodeClass {}: {e}", node_class.name_any())))?;
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
    /// A launch racing with the deletion recreates its template (see the retry in `CloudProvider::create`).
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

    pub(super) async fn launch(&self, node_claim: &NodeClaim) -> Result<NodeClaim> {
        let name = node_claim.name_any();
        let node_class = self.ready_node_class(&node_claim.spec.node_class_ref.name)?;
        let now = self.clock.now();
        let mut types = self.node_class_types(&node_class, now).await?;
        let requests = claims::requests(node_claim).map_err(|message| CloudProviderError::CreateError {
            reason: INVALID_RESOURCE_REQUEST.to_owned(),
            message: format!("nodeclaim {name}: {message}"),
        })?;
        let held = self.hold_reservations(
            &mut types,
            node_claim,
            &requests,
            self.reservations_of(&node_class),
        );
        let launched = self
            .launch_selected(node_claim, &node_class, &types, &requests, now)
            .await;
        // The reservation launched into keeps its hold; the others get theirs back.
        let used = launched
            .as_ref()
            .ok()
            .and_then(|(_, reservation)| reservation.clone());
        let unused: Vec<String> = held.into_iter().filter(|id| Some(id) != used.as_ref()).collect();
        self.reservations.release(&unused);
        let (claim, _) = launched?;
        self.tag_with_node_claim(&claim).await;
        Ok(claim)
    }

    /// Selects among `types` and launches; the NodeClaim and the reservation it launched into.
    async fn launch_selected(
        &self,
        node_claim: &NodeClaim,
        node_class: &EC2NodeClass,
        types: &[InstanceType],
        requests: &nodewright_catalog::Resources,
        now: jiff::Timestamp,
    ) -> Result<(NodeClaim, Option<String>)> {
        let name = node_claim.name_any();
        let selection = selection::select(
            types,
            node_claim,
            requests,
            self.settings.max_instance_types_per_launch,
            self.reservations_of(node_class),
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
        let plan = self.fleet_plan(node_class, node_claim, &selection)?;
        let mut request = FleetRequest {
            capacity_type: selection.capacity_type,
            reservation_kind: selection.reservation_kind,
            configs: Vec::with_capacity(plan.len()),
            tags: {
                let mut fleet_tags = self.tags(node_class, Some(node_claim));
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
        self.launched_claim(node_claim, node_class, &selection, &plan, answer, now)
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
    /// NodeClaim and the reservation it launched into, or the launch's error.
    fn launched_claim(
        &self,
        node_claim: &NodeClaim,
        node_class: &EC2NodeClass,
        selection: &Selection<'_>,
        plan: &[(TemplateSpec, Vec<FleetOverride>)],
        answer: FleetAnswer,
        now: Timestamp,
    ) -> Result<(NodeClaim, Option<String>)> {
        let name = node_claim.name_any();
        let FleetAnswer { launched, failures } = answer;
        let reservations = self.reservations_of(node_class);
        let unavailable = fleet::unavailable_offerings(&failures);
        if selection.capacity_type == CapacityType::Reserved {
            self.mark_refused_reservations(selection, reservations, &unavailable);
        } else if !unavailable.is_empty() {
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
        let reservation = (selection.capacity_type == CapacityType::Reserved)
            .then(|| Self::reservation_of(selection, reservations, &launched.instance_type, &zone))
            .flatten();
        if let Some(reservation) = reservation {
            claim
                .labels_mut()
                .extend(reservations::reservation_labels(reservation));
        }
        let annotations = claim.annotations_mut();
        annotations.insert(labels::EC2_NODE_CLASS_HASH.to_owned(), spec_hash(node_class));
        annotations.insert(
            labels::EC2_NODE_CLASS_HASH_VERSION.to_owned(),
            HASH_VERSION.to_owned(),
        );
        Ok((claim, reservation.map(|r| r.id.clone())))
    }
}
