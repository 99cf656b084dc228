//! CapacityBuffers (`autoscaling.x-k8s.io/v1beta1`, Karpenter's and Cluster Autoscaler's
//! warm capacity): a singleton loop that keeps, for every buffer, room for `replicas` pods of a
//! chunk shape, without any real pod.
//!
//! - **Read**: each CapacityBuffer from the cache, what its reference names from the API server
//!   (`podTemplateRef` → the PodTemplate in its namespace; `scalableRef` → the Deployment,
//!   StatefulSet or ReplicaSet's pod template and replicas), the provisioner's last fit for it,
//!   and the time from the injected clock.
//! - **Decide** ([`decide`], pure): the chunks — `replicas`, or the open window of `schedules`
//!   ([`schedule`]), against `percentage` of the workload and capped by `limits` — and the status:
//!   `replicas`, `podTemplateRef` (the spec's; for a scalableRef, the PodTemplate this
//!   controller keeps as a copy of the workload's template, owned by the buffer: [`template`]),
//!   `podTemplateGeneration`,
//!   `provisioningStrategy`, and the conditions `ReadyForProvisioning` (Resolved /
//!   PodTemplateNotFound / ScalableRefNotFound / ResolutionFailed, the message naming the field)
//!   and `Provisioning` (FitsExistingCapacity / RequiresNewCapacity / NotReadyForProvisioning /
//!   BufferEmpty).
//! - **Write**: the chunks to the in-memory [`VirtualPods`] (which the provisioner and
//!   disruption read, see [`room`]); for a resolved scalableRef, its PodTemplate created or
//!   replaced when the workload's template changed (its stored generation goes into the
//!   status); then one status patch when the status changed.
//!
//! Each buffer is reconciled when buffers change, when the provisioner's fit for one changes,
//! and every [`POLL`] of the clock's time (workload replicas and schedule windows are polled:
//! a window opens or closes within one poll). A failed reconcile backs off per buffer.

pub mod decide;
pub mod room;
pub mod schedule;
pub mod template;
pub mod virtual_pods;

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet, StatefulSet},
    core::v1::{PodTemplate, PodTemplateSpec},
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use nodewright_api::{CapacityBuffer, CapacityBufferStatus, conditions::capacitybuffer as c};
use tokio::{sync::watch, time::Instant};

use self::decide::Source;
pub use self::virtual_pods::{BufferKey, BufferPods, Fit, VirtualPods};
use crate::{
    context::Context,
    error::{Backoff, ControllerError},
};

/// How often every buffer is reconciled when nothing wakes the loop (Karpenter requeues
/// buffers every 30 s).
pub const POLL: Duration = Duration::from_secs(30);

/// Runs the buffers loop until the task is dropped.
pub async fn run(ctx: Context) {
    let _ = ctx.state.capacity_buffers.store.wait_until_ready().await;
    let mut buffers = ctx.state.capacity_buffers.changes();
    let mut fits = ctx.state.buffer_pods.fit_changes();
    let mut backoff = Backoff::default();
    let mut retry_at: HashMap<BufferKey, Instant> = HashMap::new();
    loop {
        buffers.mark_seen();
        fits.mark_unchanged();
        let now = Instant::now();
        let all = ctx.state.capacity_buffers.all();
        let live: BTreeSet<BufferKey> = all.iter().map(|b| key_of(b)).collect();
        ctx.state.buffer_pods.retain(&live);
        retry_at.retain(|key, _| live.contains(key));
        for buffer in &all {
            let key = key_of(buffer);
            if retry_at.get(&key).is_some_and(|at| *at > now) {
                continue;
            }
            match reconcile(&ctx, buffer, &key).await {
                Ok(()) => {
                    backoff.succeeded(&key.to_string());
                    retry_at.remove(&key);
                }
                Err(error) => {
                    let delay = backoff.failed(&key.to_string());
                    tracing::warn!(capacitybuffer = %key, %error, ?delay, "reconciling a CapacityBuffer failed");
                    retry_at.insert(key, now + ctx.settings.wall(delay));
                }
            }
        }
        let poll = now + ctx.settings.wall(POLL);
        let wake = retry_at.values().copied().fold(poll, Instant::min);
        tokio::select! {
            () = buffers.changed() => {}
            () = changed(&mut fits) => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Waits for a change; forever once the sender is gone (nothing changes any more).
async fn changed(receiver: &mut watch::Receiver<u64>) {
    if receiver.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn key_of(buffer: &CapacityBuffer) -> BufferKey {
    BufferKey {
        namespace: buffer.namespace().unwrap_or_default(),
        name: buffer.name_any(),
    }
}

/// Read → decide → write for one buffer.
async fn reconcile(ctx: &Context, buffer: &CapacityBuffer, key: &BufferKey) -> Result<(), ControllerError> {
    let source = read_source(ctx, buffer, key).await?;
    let copy = match (&buffer.spec.scalable_ref, &source) {
        (Some(_), Source::Template { template, .. }) => Some(template::desired(buffer, template)),
        _ => None,
    };
    let fit = ctx.state.buffer_pods.fit(key);
    let mut decision = decide::decide(buffer, source, fit.as_ref(), ctx.clock.now());
    let pods = decision.pods.take();
    let resolved = pods.is_some();
    ctx.state.buffer_pods.set(key, pods);
    if let Some(copy) = copy
        && resolved
    {
        // Boxed: the API calls make a large future, kept off the reconcile loop's stack.
        decision.status.pod_template_generation = Box::pin(template::apply(ctx, copy)).await?;
    }
    if buffer.status.as_ref() != Some(&decision.status) {
        write_status(ctx, key, &decision.status).await?;
    }
    Ok(())
}

/// What the buffer's reference names, from the API server.
async fn read_source(
    ctx: &Context,
    buffer: &CapacityBuffer,
    key: &BufferKey,
) -> Result<Source, ControllerError> {
    let client = ctx.client.clone();
    let namespace = key.namespace.as_str();
    if let Some(reference) = &buffer.spec.pod_template_ref {
        let templates: Api<PodTemplate> = Api::namespaced(client, namespace);
        return Ok(match templates.get_opt(&reference.name).await? {
            Some(template) => Source::Template {
                generation: template.metadata.generation,
                template: Box::new(template.template.unwrap_or_default()),
                workload_replicas: None,
            },
            None => Source::Missing {
                reason: c::REASON_POD_TEMPLATE_NOT_FOUND,
                message: format!(
                    "spec.podTemplateRef.name: PodTemplate {namespace}/{} not found",
                    reference.name
                ),
            },
        });
    }
    let Some(reference) = &buffer.spec.scalable_ref else {
        return Ok(Source::Missing {
            reason: c::REASON_RESOLUTION_FAILED,
            message: "spec.podTemplateRef: one of podTemplateRef or scalableRef must be set".to_owned(),
        });
    };
    let missing = |message: String| Source::Missing {
        reason: c::REASON_SCALABLE_REF_NOT_FOUND,
        message,
    };
    if !matches!(reference.api_group.as_str(), "" | "apps") {
        return Ok(missing(format!(
            "spec.scalableRef.apiGroup: {:?} is not supported; use apps",
            reference.api_group
        )));
    }
    let found: Option<(PodTemplateSpec, Option<i32>, Option<i64>)> = match reference.kind.as_str() {
        "Deployment" => Api::<Deployment>::namespaced(client, namespace)
            .get_opt(&reference.name)
            .await?
            .map(|w| {
                let spec = w.spec.unwrap_or_default();
                (spec.template, spec.replicas, w.metadata.generation)
            }),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client, namespace)
            .get_opt(&reference.name)
            .await?
            .map(|w| {
                let spec = w.spec.unwrap_or_default();
                (spec.template, spec.replicas, w.metadata.generation)
            }),
        "ReplicaSet" => Api::<ReplicaSet>::namespaced(client, namespace)
            .get_opt(&reference.name)
            .await?
            .map(|w| {
                let spec = w.spec.unwrap_or_default();
                (
                    spec.template.unwrap_or_default(),
                    spec.replicas,
                    w.metadata.generation,
                )
            }),
        other => {
            return Ok(Source::Missing {
                reason: c::REASON_RESOLUTION_FAILED,
                message: format!(
                    "spec.scalableRef.kind: {other:?} is not supported; use Deployment, StatefulSet or ReplicaSet"
                ),
            });
        }
    };
    Ok(match found {
        // Kubernetes defaults a workload's replicas to 1.
        Some((template, replicas, generation)) => Source::Template {
            template: Box::new(template),
            generation,
            workload_replicas: Some(replicas.unwrap_or(1)),
        },
        None => missing(format!(
            "spec.scalableRef.name: {} {namespace}/{} not found",
            reference.kind, reference.name
        )),
    })
}

/// One merge patch of the status; fields that became unset are cleared explicitly.
async fn write_status(
    ctx: &Context,
    key: &BufferKey,
    status: &CapacityBufferStatus,
) -> Result<(), ControllerError> {
    let mut value = serde_json::to_value(status).map_err(|e| ControllerError::Encode {
        what: format!("CapacityBuffer {key} status"),
        message: e.to_string(),
    })?;
    if let Some(fields) = value.as_object_mut() {
        for field in ["replicas", "podTemplateRef", "podTemplateGeneration"] {
            fields.entry(field).or_insert(serde_json::Value::Null);
        }
    }
    let api: Api<CapacityBuffer> = Api::namespaced(ctx.client.clone(), &key.namespace);
    api.patch_status(
        &key.name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": value })),
    )
    .await?;
    Ok(())
}
