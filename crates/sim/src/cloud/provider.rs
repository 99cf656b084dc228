//! [`CloudProvider`] for [`FakeCloud`]: launch, find, terminate, and the read-only answers.

use std::{collections::BTreeMap, future::ready};

use kube::ResourceExt;
use nodewright_api::{NodeClaim, NodePool, labels, quantity};
use nodewright_catalog::{InstanceType, Resources};
use nodewright_cloudprovider::{
    BoxFuture, CloudProvider, CloudProviderError, DriftReason, OfferingKey, RepairPolicy, Result,
};

use super::{
    AMI_DRIFT, CloudEvent, CloudEventKind, FakeCloud, Instance,
    selection::{Candidate, compatible_offerings, launch_order},
    tags,
};

/// The `reason` of the CreateError for a NodeClaim no offering can serve.
pub const NO_COMPATIBLE_INSTANCE_TYPE: &str = "NoCompatibleInstanceType";
/// The `reason` of the CreateError for a request quantity that does not parse.
pub const INVALID_RESOURCE_REQUEST: &str = "InvalidResourceRequest";

impl CloudProvider for FakeCloud {
    fn create<'a>(&'a self, node_claim: &'a NodeClaim) -> BoxFuture<'a, Result<NodeClaim>> {
        Box::pin(ready(self.launch(node_claim)))
    }

    fn delete<'a>(&'a self, node_claim: &'a NodeClaim) -> BoxFuture<'a, Result<()>> {
        Box::pin(ready(self.terminate(node_claim)))
    }

    fn get<'a>(&'a self, provider_id: &'a str) -> BoxFuture<'a, Result<NodeClaim>> {
        let now = self.now();
        let found = self
            .state()
            .instances
            .iter()
            .find(|i| i.provider_id == provider_id && i.is_live(now))
            .map(|i| i.node_claim.clone())
            .ok_or_else(|| CloudProviderError::NodeClaimNotFound(provider_id.to_owned()));
        Box::pin(ready(found))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<NodeClaim>>> {
        let claims = self.instances().into_iter().map(|i| i.node_claim).collect();
        Box::pin(ready(Ok(claims)))
    }

    fn get_instance_types<'a>(&'a self, node_pool: &'a NodePool) -> BoxFuture<'a, Result<Vec<InstanceType>>> {
        let node_class = &node_pool.spec.template.spec.node_class_ref.name;
        Box::pin(ready(
            self.node_class_ready(node_class).map(|()| self.instance_types()),
        ))
    }

    /// A reason a test marked, else [`AMI_DRIFT`] when the instance's AMI is no longer its node
    /// class's. An instance that is gone is not drifted (garbage collection handles it).
    fn is_drifted<'a>(&'a self, node_claim: &'a NodeClaim) -> BoxFuture<'a, Result<Option<DriftReason>>> {
        let now = self.now();
        let state = self.state();
        let provider_id = node_claim.status.as_ref().and_then(|s| s.provider_id.as_deref());
        let marked = provider_id.and_then(|id| state.drifted.get(id).cloned());
        let ami_drifted = provider_id
            .and_then(|id| {
                state
                    .instances
                    .iter()
                    .find(|i| i.provider_id == id && i.is_live(now))
            })
            .is_some_and(|instance| {
                let launched_with = instance
                    .node_claim
                    .status
                    .as_ref()
                    .and_then(|s| s.image_id.as_deref());
                launched_with != Some(state.ami_of(&instance.node_claim.spec.node_class_ref.name))
            });
        let reason = marked.or_else(|| ami_drifted.then(|| DriftReason::new(AMI_DRIFT)));
        Box::pin(ready(Ok(reason)))
    }

    /// Karpenter's AWS provider's policies.
    fn repair_policies(&self) -> Vec<RepairPolicy> {
        nodewright_cloudprovider::aws_repair_policies()
    }

    fn name(&self) -> &'static str {
        "fake"
    }
}

impl FakeCloud {
    fn node_class_ready(&self, node_class: &str) -> Result<()> {
        match self.state().not_ready_node_classes.get(node_class) {
            Some(message) => Err(CloudProviderError::NodeClassNotReady {
                node_class: node_class.to_owned(),
                message: message.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The catalogue, with offerings seen out of capacity marked unavailable.
    fn instance_types(&self) -> Vec<InstanceType> {
        let state = self.state();
        let mut types = self.catalog().instance_types().to_vec();
        if state.observed_ice.is_empty() {
            return types;
        }
        for instance_type in &mut types {
            let name = instance_type.name.clone();
            for offering in &mut instance_type.offerings {
                let key = OfferingKey::new(&name, &offering.zone, offering.capacity_type);
                if state.observed_ice.contains(&key) {
                    offering.available = false;
                }
            }
        }
        types
    }

    fn launch(&self, node_claim: &NodeClaim) -> Result<NodeClaim> {
        let name = node_claim.name_any();
        self.node_class_ready(&node_claim.spec.node_class_ref.name)?;
        let requests = requests(node_claim).map_err(|message| CloudProviderError::CreateError {
            reason: INVALID_RESOURCE_REQUEST.to_owned(),
            message: format!("nodeclaim {name}: {message}"),
        })?;
        let candidates = compatible_offerings(self.catalog(), node_claim, &requests).map_err(|why| {
            CloudProviderError::CreateError {
                reason: NO_COMPATIBLE_INSTANCE_TYPE.to_owned(),
                message: format!("nodeclaim {name}: {why}"),
            }
        })?;
        let now = self.now();
        let mut state = self.state();
        let order = launch_order(&candidates, &state.observed_ice);
        let mut unavailable = Vec::new();
        let mut chosen: Option<Candidate<'_>> = None;
        for candidate in order {
            let key = candidate.key();
            if state.injected_ice.contains(&key) {
                state.observed_ice.insert(key.clone());
                state.events.push(CloudEvent {
                    at: now,
                    kind: CloudEventKind::InsufficientCapacity {
                        node_claim: name.clone(),
                        offering: key.clone(),
                    },
                });
                unavailable.push(key);
            } else {
                chosen = Some(candidate);
                break;
            }
        }
        let Some(chosen) = chosen else {
            return Err(CloudProviderError::InsufficientCapacity {
                node_claim: name,
                offerings: unavailable,
            });
        };

        state.launched += 1;
        let id = format!("i-{:017x}", state.launched);
        let provider_id = format!("aws:///{}/{id}", chosen.offering.zone);
        let ami = state.ami_of(&node_claim.spec.node_class_ref.name).to_owned();
        let launched = launched_node_claim(node_claim, chosen, &provider_id, &ami);
        let running_at = now
            .checked_add(self.config().launch_latency)
            .unwrap_or(jiff::Timestamp::MAX);
        let key = chosen.key();
        state.events.push(CloudEvent {
            at: now,
            kind: CloudEventKind::Launched {
                node_claim: name.clone(),
                provider_id: provider_id.clone(),
                offering: key.clone(),
            },
        });
        state.instances.push(Instance {
            id,
            provider_id,
            offering: key,
            price: chosen.offering.price,
            tags: self.tags_for(node_claim, &name),
            launched_at: now,
            running_at,
            interrupted_at: None,
            terminated_at: None,
            node_claim: launched.clone(),
        });
        Ok(launched)
    }

    fn tags_for(&self, node_claim: &NodeClaim, name: &str) -> BTreeMap<String, String> {
        let cluster = &self.config().cluster_name;
        let mut tags = BTreeMap::from([
            (tags::NODE_CLAIM.to_owned(), name.to_owned()),
            (
                tags::NODE_CLASS.to_owned(),
                node_claim.spec.node_class_ref.name.clone(),
            ),
            (tags::CLUSTER_NAME.to_owned(), cluster.clone()),
            (format!("{}{cluster}", tags::CLUSTER_PREFIX), "owned".to_owned()),
        ]);
        if let Some(pool) = node_claim.nodepool_name() {
            tags.insert(tags::NODE_POOL.to_owned(), pool.to_owned());
        }
        tags
    }

    fn terminate(&self, node_claim: &NodeClaim) -> Result<()> {
        let Some(provider_id) = node_claim.status.as_ref().and_then(|s| s.provider_id.clone()) else {
            // Never launched: there is nothing to terminate, which is what NotFound means here.
            return Err(CloudProviderError::NodeClaimNotFound(format!(
                "nodeclaim {} has no providerID",
                node_claim.name_any()
            )));
        };
        let now = self.now();
        let mut state = self.state();
        let Some(instance) = state
            .instances
            .iter_mut()
            .find(|i| i.provider_id == provider_id && i.is_live(now))
        else {
            return Err(CloudProviderError::NodeClaimNotFound(provider_id));
        };
        instance.terminate_by(now);
        state.events.push(CloudEvent {
            at: now,
            kind: CloudEventKind::TerminationRequested { provider_id },
        });
        Ok(())
    }
}

/// The NodeClaim's resource requests as integers.
fn requests(node_claim: &NodeClaim) -> Result<Resources, String> {
    let mut resources = Resources::default();
    for (name, value) in &node_claim.spec.resources.requests {
        let parsed = quantity::parse_resource(name, &value.0).map_err(|e| format!("request {name}: {e}"))?;
        let amount =
            i64::try_from(parsed).map_err(|_| format!("request {name}: {} is too large", value.0))?;
        resources.set(name, amount);
    }
    Ok(resources)
}

/// `node_claim` as launched on `chosen` from `ami`: the instance's labels and resources, its
/// providerID and image.
fn launched_node_claim(
    node_claim: &NodeClaim,
    chosen: Candidate<'_>,
    provider_id: &str,
    ami: &str,
) -> NodeClaim {
    let mut launched = node_claim.clone();
    let node_labels = launched.labels_mut();
    for (key, value) in &chosen.instance_type.labels {
        node_labels.insert(key.clone(), value.clone());
    }
    node_labels.insert(labels::ZONE.to_owned(), chosen.offering.zone.clone());
    node_labels.insert(
        labels::CAPACITY_TYPE.to_owned(),
        chosen.offering.capacity_type.label().to_owned(),
    );
    let status = launched.status.get_or_insert_with(Default::default);
    status.provider_id = Some(provider_id.to_owned());
    status.image_id = Some(ami.to_owned());
    status.capacity = nodewright_cloudprovider::resources::quantities(&chosen.instance_type.capacity);
    status.allocatable = nodewright_cloudprovider::resources::quantities(&chosen.instance_type.allocatable());
    launched
}
