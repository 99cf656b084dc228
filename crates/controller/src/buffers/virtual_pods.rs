//! The buffers' virtual pods (Karpenter's `pkg/state/virtualpods`): per CapacityBuffer, the
//! chunk's pod and how many of them to keep room for, published by the buffers reconciler and
//! read by the provisioner and disruption. They live only in memory, never in the API server.
//!
//! The provisioner writes back where the pods went in its last round ([`Fit`]), which the
//! reconciler reports as the buffer's `Provisioning` condition.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{Arc, PoisonError, RwLock},
};

use k8s_openapi::{
    api::core::v1::{Pod, PodTemplate, PodTemplateSpec},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::ResourceExt;
use nodewright_api::{CapacityBuffer, conditions};
use tokio::sync::watch;

/// Annotations a virtual pod carries (Karpenter's names), so logs and reports can tell them.
pub const FAKE_POD_ANNOTATION: &str = "karpenter.sh/capacity-buffer-fake-pod";
pub const BUFFER_NAME_ANNOTATION: &str = "karpenter.sh/capacity-buffer-name";
pub const BUFFER_NAMESPACE_ANNOTATION: &str = "karpenter.sh/capacity-buffer-namespace";

/// A CapacityBuffer by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BufferKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for BufferKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What one buffer asks room for: `replicas` pods shaped like `chunk`.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferPods {
    pub chunk: PodTemplateSpec,
    pub replicas: u32,
}

/// Where the provisioner's last round put a buffer's virtual pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// Every pod fits on existing nodes (or NodeClaims in flight).
    Existing,
    /// Some need new capacity; the message says how many and why when none can be made.
    NewCapacity(String),
}

#[derive(Debug, Default)]
struct Inner {
    buffers: BTreeMap<BufferKey, BufferPods>,
    fits: BTreeMap<BufferKey, Fit>,
}

/// The shared cache. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct VirtualPods {
    inner: Arc<RwLock<Inner>>,
    /// Bumped when a buffer's pods change (wakes the provisioner).
    buffers_changed: Arc<watch::Sender<u64>>,
    /// Bumped when a fit changes (wakes the reconciler).
    fits_changed: Arc<watch::Sender<u64>>,
}

impl Default for VirtualPods {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            buffers_changed: Arc::new(watch::channel(0).0),
            fits_changed: Arc::new(watch::channel(0).0),
        }
    }
}

impl VirtualPods {
    /// Sets (or with `None` removes) a buffer's pods; wakes the provisioner if they changed.
    pub fn set(&self, key: &BufferKey, pods: Option<BufferPods>) {
        let changed = {
            let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
            let changed = inner.buffers.get(key) != pods.as_ref();
            if let Some(pods) = pods {
                inner.buffers.insert(key.clone(), pods);
            } else {
                inner.buffers.remove(key);
                inner.fits.remove(key);
            }
            changed
        };
        if changed {
            self.buffers_changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Removes every buffer not in `live` (deleted CapacityBuffers).
    pub fn retain(&self, live: &BTreeSet<BufferKey>) {
        let stale: Vec<BufferKey> = {
            let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            inner
                .buffers
                .keys()
                .filter(|k| !live.contains(*k))
                .cloned()
                .collect()
        };
        for key in stale {
            self.set(&key, None);
        }
    }

    /// Whether any buffer asks for room.
    pub fn is_empty(&self) -> bool {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.buffers.values().all(|b| b.replicas == 0)
    }

    /// Every virtual pod, with its buffer, in a stable order.
    pub fn pods(&self) -> Vec<(BufferKey, Pod)> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        expand(&inner.buffers)
    }

    /// Records the provisioner's round: the fit of every buffer it placed.
    pub fn record_fits(&self, fits: BTreeMap<BufferKey, Fit>) {
        let changed = {
            let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
            let fits: BTreeMap<BufferKey, Fit> = fits
                .into_iter()
                .filter(|(k, _)| inner.buffers.contains_key(k))
                .collect();
            let changed = inner.fits != fits;
            inner.fits = fits;
            changed
        };
        if changed {
            self.fits_changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The buffer's fit in the provisioner's last round, if it was placed.
    pub fn fit(&self, key: &BufferKey) -> Option<Fit> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.fits.get(key).cloned()
    }

    /// A receiver that sees each change of the buffers' pods.
    pub fn buffer_changes(&self) -> watch::Receiver<u64> {
        self.buffers_changed.subscribe()
    }

    /// A receiver that sees each change of a fit.
    pub fn fit_changes(&self) -> watch::Receiver<u64> {
        self.fits_changed.subscribe()
    }
}

/// Every buffer's virtual pods, with their buffer, in the buffers' order.
pub fn expand(buffers: &BTreeMap<BufferKey, BufferPods>) -> Vec<(BufferKey, Pod)> {
    buffers
        .iter()
        .flat_map(|(key, buffer)| {
            (0..buffer.replicas).map(move |i| (key.clone(), virtual_pod(key, &buffer.chunk, i)))
        })
        .collect()
}

/// What the buffers reconciler published, read back from the API server for a process
/// without its memory (`nodewright explain`): each buffer whose status is
/// `ReadyForProvisioning=True` with `replicas` chunks shaped like the PodTemplate its
/// `status.podTemplateRef` names (the spec's, or the copy of a scalableRef's workload
/// template). The reconciler writes that status and its in-memory chunks from one decision.
pub fn from_statuses(
    buffers: &[Arc<CapacityBuffer>],
    templates: &[Arc<PodTemplate>],
) -> BTreeMap<BufferKey, BufferPods> {
    let mut published = BTreeMap::new();
    for buffer in buffers {
        let Some(status) = &buffer.status else {
            continue;
        };
        let ready = status.conditions.iter().any(|c| {
            c.type_ == conditions::capacitybuffer::READY_FOR_PROVISIONING && c.status == conditions::TRUE
        });
        let (Some(replicas), Some(reference)) = (status.replicas, &status.pod_template_ref) else {
            continue;
        };
        let namespace = buffer.namespace().unwrap_or_default();
        let chunk = templates
            .iter()
            .find(|t| t.namespace().as_deref() == Some(namespace.as_str()) && t.name_any() == reference.name)
            .and_then(|t| t.template.clone());
        if let (true, Some(chunk)) = (ready, chunk) {
            let key = BufferKey {
                namespace,
                name: buffer.name_any(),
            };
            let replicas = u32::try_from(replicas).unwrap_or(0);
            published.insert(key, BufferPods { chunk, replicas });
        }
    }
    published
}

/// The `index`th virtual pod of a buffer: the chunk's labels and spec, at the lowest priority,
/// without volumes that would need claims (as Karpenter strips them), never bound.
fn virtual_pod(key: &BufferKey, chunk: &PodTemplateSpec, index: u32) -> Pod {
    let name = format!("capacity-buffer-{}-{index}", key.name);
    let mut spec = chunk.spec.clone().unwrap_or_default();
    spec.priority = Some(i32::MIN);
    spec.priority_class_name = None;
    spec.node_name = None;
    if let Some(volumes) = spec.volumes.as_mut() {
        volumes.retain(|v| v.persistent_volume_claim.is_none() && v.ephemeral.is_none());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(key.namespace.clone()),
            uid: Some(format!("capacity-buffer/{key}/{index}")),
            labels: chunk.metadata.as_ref().and_then(|m| m.labels.clone()),
            annotations: Some(BTreeMap::from([
                (FAKE_POD_ANNOTATION.to_owned(), "true".to_owned()),
                (BUFFER_NAME_ANNOTATION.to_owned(), key.name.clone()),
                (BUFFER_NAMESPACE_ANNOTATION.to_owned(), key.namespace.clone()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chunk() -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": { "labels": { "app": "web" } },
            "spec": {
                "priorityClassName": "high",
                "containers": [{ "name": "c", "resources": { "requests": { "cpu": "1" } } }],
                "volumes": [
                    { "name": "data", "persistentVolumeClaim": { "claimName": "data" } },
                    { "name": "tmp", "emptyDir": {} }
                ]
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn key() -> BufferKey {
        BufferKey {
            namespace: "default".into(),
            name: "warm".into(),
        }
    }

    #[test]
    fn virtual_pods_are_lowest_priority_copies_without_claims() {
        let cache = VirtualPods::default();
        cache.set(
            &key(),
            Some(BufferPods {
                chunk: chunk(),
                replicas: 3,
            }),
        );
        let pods = cache.pods();
        assert_eq!(pods.len(), 3);
        let spec = pods[0].1.spec.clone().unwrap_or_default();
        assert_eq!(spec.priority, Some(i32::MIN));
        assert_eq!(spec.priority_class_name, None);
        let volumes: Vec<String> = spec.volumes.iter().flatten().map(|v| v.name.clone()).collect();
        assert_eq!(volumes, ["tmp"]);
        let names: BTreeSet<_> = pods.iter().filter_map(|(_, p)| p.metadata.uid.clone()).collect();
        assert_eq!(names.len(), 3, "distinct uids");
    }

    #[test]
    fn published_buffers_are_read_back_from_their_status_and_template() {
        let buffer = |name: &str, ready: &str, replicas: i32| -> Arc<CapacityBuffer> {
            Arc::new(
                serde_json::from_value(json!({
                    "apiVersion": "autoscaling.x-k8s.io/v1beta1", "kind": "CapacityBuffer",
                    "metadata": { "name": name, "namespace": "default" },
                    "spec": { "podTemplateRef": { "name": "chunk" } },
                    "status": { "replicas": replicas, "podTemplateRef": { "name": "chunk" },
                        "conditions": [{ "type": "ReadyForProvisioning", "status": ready, "reason": "R",
                            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z" }] }
                }))
                .unwrap_or_else(|e| panic!("{e}")),
            )
        };
        let template = |namespace: &str| -> Arc<PodTemplate> {
            Arc::new(PodTemplate {
                metadata: ObjectMeta {
                    name: Some("chunk".into()),
                    namespace: Some(namespace.into()),
                    ..ObjectMeta::default()
                },
                template: Some(chunk()),
            })
        };
        let buffers = [buffer("warm", "True", 2), buffer("broken", "False", 5)];
        let published = from_statuses(&buffers, &[template("default")]);
        assert_eq!(published.len(), 1, "only the ready buffer: {published:?}");
        assert_eq!(published[&key()].replicas, 2);
        assert_eq!(expand(&published).len(), 2);
        assert!(
            from_statuses(&buffers, &[template("elsewhere")]).is_empty(),
            "the template is looked up in the buffer's namespace"
        );
    }

    #[test]
    fn changes_wake_only_when_something_changed_and_deleted_buffers_go() {
        let cache = VirtualPods::default();
        let mut changes = cache.buffer_changes();
        let pods = BufferPods {
            chunk: chunk(),
            replicas: 2,
        };
        cache.set(&key(), Some(pods.clone()));
        assert!(changes.has_changed().unwrap_or(false));
        changes.mark_unchanged();
        cache.set(&key(), Some(pods));
        assert!(!changes.has_changed().unwrap_or(true), "same pods: no wake");
        cache.record_fits(BTreeMap::from([(key(), Fit::Existing)]));
        assert_eq!(cache.fit(&key()), Some(Fit::Existing));
        cache.retain(&BTreeSet::new());
        assert!(cache.is_empty());
        assert_eq!(cache.fit(&key()), None);
    }
}
