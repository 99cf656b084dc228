//! Why a node is kept (or would be disrupted) and why a pod is pending: what
//! `nodewright explain node NAME` and `nodewright explain pod NS/NAME` print.
//!
//! The cluster is listed once into a [`Cluster`] (the same objects the controllers watch, plus
//! the events about the object asked for), the NodePools' instance types are read once into
//! [`PoolTypes`] (from the cloud provider as the controllers do, or from the built-in catalogue
//! for a command line with no cloud account), and then the controllers' own pure functions run
//! on them: [`crate::disruption::candidates::evaluate`], [`crate::disruption::budgets::allowed`]
//! and [`crate::disruption::consolidation::search`] for nodes; the provisioner's snapshot and
//! limits and the solver for pods. Nothing is written.
//!
//! CapacityBuffers count as in a pass: an empty node whose free room holds the buffers' chunks
//! is kept (`CapacityBufferRoom`), and consolidation simulates the chunks as pods that need
//! room. The chunks are read from what the buffers reconciler published (each buffer's
//! `status.replicas` of the PodTemplate its `status.podTemplateRef` names), the same decision
//! it holds in memory for the pass.
//!
//! What differs from a controller pass, and why:
//! - The offerings the controller saw out of capacity recently live in its memory only, so
//!   offerings look available here unless the cloud itself says otherwise.
//! - A pod is explained alone: the provisioner plans every waiting pod together, so a pod that
//!   fits here may still share a new node with others there.

pub mod node;
pub mod pod;

use std::{fmt::Write as _, sync::Arc, time::Duration};

use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, PodTemplate},
    events::v1::Event,
    policy::v1::PodDisruptionBudget,
    storage::v1::StorageClass,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Api, Client, Resource, ResourceExt, api::ListParams};
use nodewright_api::{CapacityBuffer, EC2NodeClass, NodeClaim, NodeOverlay, NodePool};
use nodewright_catalog::{Catalog, InstanceType, NodeSettings};
use nodewright_cloudprovider::CloudProvider;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    provisioner::{pools, pools::Skipped, snapshot},
    unavailable::UnavailableOfferings,
};

/// Why an explanation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The object asked about does not exist.
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },
    /// The object was named in a form that cannot be looked up.
    #[error("{0}")]
    BadName(String),
    /// Listing the cluster failed.
    #[error("listing {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// The cluster as the controllers see it, listed once.
#[derive(Debug, Default, Clone)]
pub struct Cluster {
    pub nodes: Vec<Arc<Node>>,
    pub claims: Vec<Arc<NodeClaim>>,
    pub pods: Vec<Arc<Pod>>,
    pub pools: Vec<Arc<NodePool>>,
    pub node_classes: Vec<Arc<EC2NodeClass>>,
    /// Applied to the instance types as the controllers apply them ([`crate::overlay`]).
    pub overlays: Vec<Arc<NodeOverlay>>,
    pub daemon_sets: Vec<Arc<DaemonSet>>,
    pub pdbs: Vec<Arc<PodDisruptionBudget>>,
    pub pvcs: Vec<Arc<PersistentVolumeClaim>>,
    pub pvs: Vec<Arc<PersistentVolume>>,
    pub storage_classes: Vec<Arc<StorageClass>>,
    /// CapacityBuffers and the PodTemplates their status names: the room disruption keeps for
    /// them ([`Cluster::buffer_pods`]).
    pub buffers: Vec<Arc<CapacityBuffer>>,
    pub pod_templates: Vec<Arc<PodTemplate>>,
    /// `events.k8s.io/v1` events of one namespace (see [`Cluster::read`]).
    pub events: Vec<Event>,
}

impl Cluster {
    /// Lists every object the controllers watch, and the events of `events_namespace`: the
    /// namespace of a pod asked about, or `default` for a node (events about cluster-scoped
    /// objects live there).
    pub async fn read(client: &Client, events_namespace: &str) -> Result<Self, ExplainError> {
        Ok(Self {
            nodes: list(client, "nodes").await?,
            claims: list(client, "nodeclaims").await?,
            pods: list(client, "pods").await?,
            pools: list(client, "nodepools").await?,
            node_classes: list(client, "ec2nodeclasses").await?,
            overlays: list(client, "nodeoverlays").await?,
            daemon_sets: list(client, "daemonsets").await?,
            pdbs: list(client, "poddisruptionbudgets").await?,
            pvcs: list(client, "persistentvolumeclaims").await?,
            pvs: list(client, "persistentvolumes").await?,
            storage_classes: list(client, "storageclasses").await?,
            buffers: list_if_served(client, "capacitybuffers").await?,
            pod_templates: list(client, "podtemplates").await?,
            events: Api::<Event>::namespaced(client.clone(), events_namespace)
                .list(&ListParams::default())
                .await
                .map_err(|source| ExplainError::List {
                    what: "events",
                    source,
                })?
                .items,
        })
    }

    /// The controllers' view of the stored objects, for the provisioner's snapshot.
    fn snapshot_world(&self) -> snapshot::World {
        snapshot::World {
            nodes: self.nodes.clone(),
            claims: self.claims.clone(),
            pods: self.pods.clone(),
            daemon_sets: self.daemon_sets.clone(),
            pvcs: self.pvcs.clone(),
            pvs: self.pvs.clone(),
            storage_classes: self.storage_classes.clone(),
            gone: std::collections::HashSet::new(),
        }
    }

    /// The buffers' virtual pods as the disruption pass holds them: what the buffers reconciler
    /// published in their status ([`crate::buffers::virtual_pods::from_statuses`]).
    fn buffer_pods(&self) -> Vec<Pod> {
        let published = crate::buffers::virtual_pods::from_statuses(&self.buffers, &self.pod_templates);
        crate::buffers::virtual_pods::expand(&published)
            .into_iter()
            .map(|(_, pod)| pod)
            .collect()
    }

    /// The events about `object` (matched by kind and name, and by uid when both carry one),
    /// oldest first.
    fn events_about<K: Resource<DynamicType = ()>>(&self, object: &K) -> Vec<EventLine> {
        let kind = K::kind(&());
        let name = object.meta().name.as_deref().unwrap_or_default();
        let uid = object.meta().uid.as_deref();
        let mut lines: Vec<EventLine> = self
            .events
            .iter()
            .filter(|e| {
                let regarding = e.regarding.as_ref();
                regarding.and_then(|r| r.kind.as_deref()) == Some(kind.as_ref())
                    && regarding.and_then(|r| r.name.as_deref()) == Some(name)
                    && match (uid, regarding.and_then(|r| r.uid.as_deref())) {
                        (Some(a), Some(b)) => a == b,
                        _ => true,
                    }
            })
            .map(EventLine::from_event)
            .collect();
        sort_events(&mut lines);
        lines
    }
}

async fn list<K>(client: &Client, what: &'static str) -> Result<Vec<Arc<K>>, ExplainError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let items = Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|source| ExplainError::List { what, source })?
        .items;
    Ok(items
        .into_iter()
        .map(|mut object| {
            // Never read, and most of an object's size.
            object.meta_mut().managed_fields = None;
            Arc::new(object)
        })
        .collect())
}

/// [`list`], with none when the API server does not serve the kind (a CRD not installed).
async fn list_if_served<K>(client: &Client, what: &'static str) -> Result<Vec<Arc<K>>, ExplainError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match list(client, what).await {
        Err(ExplainError::List { source, .. }) if crate::error::is_not_found(&source) => Ok(Vec::new()),
        listed => listed,
    }
}

/// The NodePools that may launch nodes with their instance types, and the ones left out with
/// why: the provisioner's view of capacity.
#[derive(Debug, Clone, Default)]
pub struct PoolTypes {
    usable: Vec<(Arc<NodePool>, Vec<InstanceType>)>,
    skipped: Vec<Skipped>,
}

impl PoolTypes {
    /// The instance types of a usable NodePool, as the explanations price them.
    pub fn of_pool(&self, pool: &str) -> Option<&[InstanceType]> {
        self.usable
            .iter()
            .find(|(p, _)| p.name_any() == pool)
            .map(|(_, types)| types.as_slice())
    }

    /// Instance types as the controllers get them: from the cloud provider.
    pub async fn from_cloud(cluster: &Cluster, cloud: &dyn CloudProvider, now: Timestamp) -> Self {
        // The controller's recently-unavailable offerings are its own memory: none here.
        let unavailable = UnavailableOfferings::new(Duration::ZERO);
        let (mut usable, skipped) =
            snapshot::pools_with_types(cloud, &unavailable, &cluster.pools, &cluster.node_classes, now).await;
        crate::overlay::apply(&cluster.overlays, &mut usable);
        Self { usable, skipped }
    }

    /// Instance types from a catalogue, under each NodePool's EC2NodeClass settings (what
    /// `nodewright plan` uses): for a command line without cloud credentials.
    pub fn from_catalog(cluster: &Cluster, catalog: &Catalog) -> Self {
        let (pools, skipped) = pools::usable(&cluster.pools, &cluster.node_classes);
        let mut usable = pools
            .into_iter()
            .map(|pool| {
                let class_name = &pool.spec.template.spec.node_class_ref.name;
                // `usable` keeps only NodePools whose EC2NodeClass exists.
                let settings = cluster
                    .node_classes
                    .iter()
                    .find(|c| c.name_any() == *class_name)
                    .map_or_else(NodeSettings::default, |c| NodeSettings::from_node_class(c));
                let types = if catalog.settings() == &settings {
                    catalog.instance_types().to_vec()
                } else {
                    catalog.with_settings(&settings).instance_types().to_vec()
                };
                (pool, types)
            })
            .collect::<Vec<_>>();
        crate::overlay::apply(&cluster.overlays, &mut usable);
        Self { usable, skipped }
    }
}

/// An event, as explain prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub note: String,
    /// How often it happened (1 without a series).
    pub count: i32,
    /// When it last happened (RFC 3339), if the event says.
    pub last_seen: Option<String>,
    /// Who reported it.
    pub reporter: String,
}

impl EventLine {
    fn from_event(event: &Event) -> Self {
        let series = event.series.as_ref();
        let last_seen = series
            .map(|s| s.last_observed_time.0)
            .or_else(|| event.event_time.as_ref().map(|t| t.0))
            .or_else(|| event.deprecated_last_timestamp.as_ref().map(|t| t.0))
            .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0));
        Self {
            type_: event.type_.clone().unwrap_or_default(),
            reason: event.reason.clone().unwrap_or_default(),
            note: event.note.clone().unwrap_or_default(),
            count: series.map_or(1, |s| s.count),
            last_seen: last_seen.map(|t| t.to_string()),
            reporter: event.reporting_controller.clone().unwrap_or_default(),
        }
    }
}

/// Oldest first (events without a time first).
fn sort_events(lines: &mut [EventLine]) {
    lines.sort_by_key(|e| e.last_seen.as_deref().and_then(|t| t.parse::<Timestamp>().ok()));
}

/// A status condition, as explain prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionLine {
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

impl ConditionLine {
    fn from_condition(condition: &Condition) -> Self {
        Self {
            status: condition.status.clone(),
            reason: condition.reason.clone(),
            message: condition.message.clone(),
            last_transition_time: condition.last_transition_time.0.to_string(),
        }
    }
}

/// Appends the events section of a text explanation.
fn write_events(out: &mut String, events: &[EventLine]) {
    if events.is_empty() {
        out.push_str("Events: none\n");
        return;
    }
    out.push_str("Events:\n");
    for event in events {
        let times = if event.count > 1 {
            format!(" (x{})", event.count)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {} {} {}{times}: {}",
            event.last_seen.as_deref().unwrap_or("-"),
            event.type_,
            event.reason,
            event.note
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(name: &str, value: &serde_json::Value) -> Event {
        let mut event = json!({
            "metadata": { "name": name, "namespace": "default" },
            "regarding": { "kind": "Node", "name": "n1" },
            "reason": name, "note": "", "type": "Normal"
        });
        for (key, field) in value.as_object().unwrap() {
            event[key] = field.clone();
        }
        serde_json::from_value(event).unwrap()
    }

    #[test]
    fn events_about_an_object_are_ordered_by_time_and_carry_their_count() {
        let node: Node = serde_json::from_value(json!({ "metadata": { "name": "n1" } })).unwrap();
        let cluster = Cluster {
            events: vec![
                // A repeated event: its series' last time counts, not its first.
                event(
                    "late",
                    &json!({ "eventTime": "2026-01-01T00:00:01.000000Z",
                             "series": { "count": 3, "lastObservedTime": "2026-01-01T00:00:09.000000Z" } }),
                ),
                // Fractional seconds sort by time, not as text.
                event("middle", &json!({ "eventTime": "2026-01-01T00:00:05.500000Z" })),
                event("early", &json!({ "eventTime": "2026-01-01T00:00:05.000000Z" })),
                event(
                    "other-node",
                    &json!({ "regarding": { "kind": "Node", "name": "n2" } }),
                ),
            ],
            ..Cluster::default()
        };
        let lines = cluster.events_about(&node);
        let reasons: Vec<&str> = lines.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["early", "middle", "late"]);
        assert_eq!(lines[2].count, 3);
        assert_eq!(lines[0].count, 1);
    }
}
