//! What a CapacityBuffer's status and virtual pods should be, from the buffer, what its
//! reference resolved to, the provisioner's last fit and the time. Pure.
//!
//! Chunks (Karpenter's `computeReplicas`, Cluster Autoscaler semantics): the larger of
//! `replicas` (or the open schedule window's) and `percentage` of the workload's replicas
//! (rounded up, at least 1), then at most as many chunks as `limits` hold (the chunks' total
//! requests within every limited resource the chunk requests); `limits` alone when neither is
//! set.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::PodTemplateSpec,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::ResourceExt;
use nodewright_api::{
    CapacityBuffer, CapacityBufferStatus,
    capacitybuffer::{ACTIVE_CAPACITY_STRATEGY, LocalObjectRef},
    conditions::capacitybuffer as c,
    quantity,
};
use nodewright_catalog::Resources;

use super::{
    schedule::{self, BadField},
    virtual_pods::{BufferPods, Fit},
};

/// `Provisioning` before the provisioner has placed the buffer once.
pub const REASON_AWAITING_PROVISIONER: &str = "AwaitingProvisioner";

/// What the buffer's reference resolved to.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The chunk's template; `generation` of the PodTemplate or workload; the workload's
    /// replicas for `percentage` (scalableRef only).
    Template {
        template: Box<PodTemplateSpec>,
        generation: Option<i64>,
        workload_replicas: Option<i32>,
    },
    /// The referenced object does not exist (reason `PodTemplateNotFound` or
    /// `ScalableRefNotFound`); the message names the field.
    Missing { reason: &'static str, message: String },
}

/// The buffer's new status and the pods to keep room for (`None`: none).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: CapacityBufferStatus,
    pub pods: Option<BufferPods>,
}

/// See the module docs.
pub fn decide(buffer: &CapacityBuffer, source: Source, fit: Option<&Fit>, now: Timestamp) -> Decision {
    let spec = &buffer.spec;
    let generation = buffer.metadata.generation;
    let mut status = buffer.status.clone().unwrap_or_default();
    status.provisioning_strategy = Some(spec.provisioning_strategy.clone());
    let referenced_object_missing = matches!(source, Source::Missing { .. });
    let resolved = resolve(buffer, source, now);
    let (ready, pods) = match resolved {
        Ok((template, template_generation, replicas)) => {
            status.replicas = Some(replicas);
            // A scalableRef's template is copied into a PodTemplate of the buffer's
            // ([`super::template`]), whose generation the write fills in once it is stored.
            status.pod_template_ref = spec.pod_template_ref.clone().or_else(|| {
                spec.scalable_ref.as_ref().map(|_| LocalObjectRef {
                    name: super::template::name_for(&buffer.name_any()),
                })
            });
            status.pod_template_generation = template_generation;
            let requests = chunk_requests(&template);
            let message = format!("{replicas} chunks of {}", describe(&requests));
            (
                (true, c::REASON_RESOLVED, message),
                Some(BufferPods {
                    chunk: template,
                    replicas: u32::try_from(replicas).unwrap_or(0),
                }),
            )
        }
        Err((reason, message)) => {
            status.replicas = None;
            if referenced_object_missing {
                // No template is in use any more (as Cluster Autoscaler's buffers clear it).
                status.pod_template_ref = None;
                status.pod_template_generation = None;
            }
            ((false, reason, message), None)
        }
    };
    let provisioning = match (&pods, fit) {
        (None, _) => (
            Some(false),
            c::REASON_NOT_READY_FOR_PROVISIONING,
            "the buffer is not ready for provisioning".to_owned(),
        ),
        (Some(p), _) if p.replicas == 0 => (
            Some(false),
            c::REASON_BUFFER_EMPTY,
            "the buffer asks for no chunks".to_owned(),
        ),
        (Some(_), Some(Fit::Existing)) => (
            Some(true),
            c::REASON_FITS_EXISTING_CAPACITY,
            "every chunk fits on existing capacity".to_owned(),
        ),
        (Some(_), Some(Fit::NewCapacity(message))) => {
            (Some(false), c::REASON_REQUIRES_NEW_CAPACITY, message.clone())
        }
        (Some(_), None) => (
            None,
            REASON_AWAITING_PROVISIONER,
            "waiting for the provisioner to place the chunks".to_owned(),
        ),
    };
    let (ready_status, ready_reason, ready_message) = ready;
    set_condition(
        &mut status.conditions,
        c::READY_FOR_PROVISIONING,
        Some(ready_status),
        ready_reason,
        &ready_message,
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        c::PROVISIONING,
        provisioning.0,
        provisioning.1,
        &provisioning.2,
        generation,
        now,
    );
    Decision { status, pods }
}

/// The chunk's template, its generation and the number of chunks; or a reason and a message
/// naming the field at fault.
fn resolve(
    buffer: &CapacityBuffer,
    source: Source,
    now: Timestamp,
) -> Result<(PodTemplateSpec, Option<i64>, i32), (&'static str, String)> {
    let failed = |message: String| (c::REASON_RESOLUTION_FAILED, message);
    buffer.validate().map_err(|invalid| failed(invalid.to_string()))?;
    let spec = &buffer.spec;
    if spec.provisioning_strategy != ACTIVE_CAPACITY_STRATEGY {
        return Err(failed(format!(
            "spec.provisioningStrategy: {:?} is not supported; use {ACTIVE_CAPACITY_STRATEGY}",
            spec.provisioning_strategy
        )));
    }
    let (template, generation, workload_replicas) = match source {
        Source::Template {
            template,
            generation,
            workload_replicas,
        } => (*template, generation, workload_replicas),
        Source::Missing { reason, message } => return Err((reason, message)),
    };
    let replicas = schedule::replicas_at(spec, now)
        .map_err(|BadField { field, message }| failed(format!("{field}: {message}")))?;
    let limited = match &spec.limits {
        None => None,
        Some(limits) => Some(chunks_within(limits, &chunk_requests(&template)).map_err(failed)?),
    };
    let from_percentage = spec
        .percentage
        .map(|p| percentage_chunks(p, workload_replicas.unwrap_or(0)));
    let wanted = match (replicas, from_percentage) {
        (Some(r), Some(p)) => Some(r.max(p)),
        (r, p) => r.or(p),
    };
    let chunks = match (wanted, limited) {
        (Some(w), Some(l)) => w.min(l),
        (Some(w), None) => w,
        (None, Some(l)) => l,
        (None, None) => 0,
    };
    Ok((template, generation, chunks.max(0)))
}

/// `percentage` of `workload` replicas, rounded up, at least 1.
fn percentage_chunks(percentage: i32, workload: i32) -> i32 {
    let chunks = (u64::from(workload.max(0).unsigned_abs()) * u64::from(percentage.max(0).unsigned_abs()))
        .div_ceil(100);
    i32::try_from(chunks).unwrap_or(i32::MAX).max(1)
}

/// How many chunks fit within `limits`: the smallest `limit / request` over the resources the
/// chunk requests (resources it does not request do not limit it).
fn chunks_within(
    limits: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    requests: &Resources,
) -> Result<i32, String> {
    let mut chunks = i64::from(i32::MAX);
    for (resource, limit) in limits {
        let limit = quantity::parse_resource(resource, &limit.0)
            .map_err(|e| format!("spec.limits[{resource}]: {e}"))?;
        let request = requests.get(resource);
        if request > 0 {
            let fit = i64::try_from(limit.max(0) / i128::from(request)).unwrap_or(i64::MAX);
            chunks = chunks.min(fit);
        }
    }
    Ok(i32::try_from(chunks).unwrap_or(i32::MAX))
}

/// One chunk's requests, as the scheduler counts them.
pub fn chunk_requests(template: &PodTemplateSpec) -> Resources {
    let mut ignored = Vec::new();
    template
        .spec
        .as_ref()
        .map(|spec| nodewright_solver::pod::pod_requests(spec, &mut ignored))
        .unwrap_or_default()
}

fn describe(requests: &Resources) -> String {
    format!(
        "cpu {}m, memory {} bytes",
        requests.cpu_millis, requests.memory_bytes
    )
}

/// Sets a condition (`None`: Unknown), moving `lastTransitionTime` only when the status flips.
fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: Option<bool>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = match status {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    };
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if existing.status != status {
            existing.last_transition_time = Time(now);
        }
        status.clone_into(&mut existing.status);
        reason.clone_into(&mut existing.reason);
        message.clone_into(&mut existing.message);
        existing.observed_generation = generation;
    } else {
        conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: generation,
            last_transition_time: Time(now),
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn buffer(spec: &Value) -> CapacityBuffer {
        serde_json::from_value(json!({
            "apiVersion": "autoscaling.x-k8s.io/v1beta1", "kind": "CapacityBuffer",
            "metadata": { "name": "warm", "namespace": "default", "generation": 2 }, "spec": spec
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn template(cpu: &str) -> Source {
        Source::Template {
            template: Box::new(
                serde_json::from_value(json!({ "spec": { "containers": [
                    { "name": "c", "resources": { "requests": { "cpu": cpu, "memory": "1Gi" } } }
                ] } }))
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            generation: Some(7),
            workload_replicas: Some(15),
        }
    }

    fn now() -> Timestamp {
        "2026-01-05T10:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn condition<'a>(decision: &'a Decision, type_: &str) -> &'a Condition {
        decision
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_}"))
    }

    #[test]
    fn a_template_buffer_resolves_to_its_replicas() {
        let decision = decide(
            &buffer(&json!({ "podTemplateRef": { "name": "chunk" }, "replicas": 10 })),
            template("1"),
            None,
            now(),
        );
        assert_eq!(decision.status.replicas, Some(10));
        assert_eq!(decision.status.pod_template_generation, Some(7));
        assert_eq!(
            decision.status.pod_template_ref.as_ref().map(|r| r.name.as_str()),
            Some("chunk")
        );
        assert_eq!(
            decision.status.provisioning_strategy.as_deref(),
            Some(ACTIVE_CAPACITY_STRATEGY)
        );
        assert_eq!(decision.pods.as_ref().map(|p| p.replicas), Some(10));
        let ready = condition(&decision, c::READY_FOR_PROVISIONING);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", c::REASON_RESOLVED)
        );
        assert_eq!(ready.observed_generation, Some(2));
        assert_eq!(
            condition(&decision, c::PROVISIONING).status,
            "Unknown",
            "no round yet"
        );
    }

    #[test]
    fn percentage_takes_the_larger_and_limits_cap() {
        let scalable = json!({ "apiGroup": "apps", "kind": "Deployment", "name": "web" });
        // 15 replicas × 10% = 1.5 → 2; max(replicas 1, 2) = 2.
        let decision = decide(
            &buffer(&json!({ "scalableRef": scalable, "replicas": 1, "percentage": 10 })),
            template("1"),
            None,
            now(),
        );
        assert_eq!(decision.status.replicas, Some(2));
        assert_eq!(
            decision.status.pod_template_ref.as_ref().map(|r| r.name.as_str()),
            Some("capacitybuffer-warm-pod-template"),
            "a scalableRef's template is kept in a PodTemplate of the buffer's"
        );
        // 4 CPU of 1.5-CPU chunks: 2, although 10 are asked.
        let decision = decide(
            &buffer(&json!({ "scalableRef": scalable, "replicas": 10, "limits": { "cpu": "4" } })),
            template("1500m"),
            None,
            now(),
        );
        assert_eq!(decision.status.replicas, Some(2));
        // Limits alone.
        let decision = decide(
            &buffer(
                &json!({ "podTemplateRef": { "name": "chunk" }, "limits": { "memory": "3Gi", "cpu": "100" } }),
            ),
            template("1"),
            None,
            now(),
        );
        assert_eq!(decision.status.replicas, Some(3));
        assert_eq!(percentage_chunks(0, 0), 1, "at least one");
    }

    #[test]
    fn a_workload_gone_after_it_was_resolved_leaves_no_template_in_status() {
        let scalable = json!({ "apiGroup": "apps", "kind": "Deployment", "name": "web" });
        let mut warm = buffer(&json!({ "scalableRef": scalable, "replicas": 2 }));
        warm.status = Some(decide(&warm, template("1"), None, now()).status);
        assert!(warm.status.as_ref().is_some_and(|s| s.pod_template_ref.is_some()));
        let gone = decide(
            &warm,
            Source::Missing {
                reason: c::REASON_SCALABLE_REF_NOT_FOUND,
                message: "spec.scalableRef.name: Deployment default/web not found".into(),
            },
            None,
            now(),
        );
        assert_eq!(gone.status.pod_template_ref, None);
        assert_eq!(gone.status.pod_template_generation, None);
        assert_eq!(gone.status.replicas, None);
    }

    #[test]
    fn a_missing_reference_or_bad_schedule_is_reported_by_field() {
        let missing = decide(
            &buffer(&json!({ "podTemplateRef": { "name": "gone" }, "replicas": 1 })),
            Source::Missing {
                reason: c::REASON_POD_TEMPLATE_NOT_FOUND,
                message: "spec.podTemplateRef.name: PodTemplate default/gone not found".into(),
            },
            None,
            now(),
        );
        assert!(missing.pods.is_none());
        assert!(missing.status.pod_template_ref.is_none(), "no template in use");
        let ready = condition(&missing, c::READY_FOR_PROVISIONING);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", c::REASON_POD_TEMPLATE_NOT_FOUND)
        );
        assert!(ready.message.contains("spec.podTemplateRef.name"));
        assert_eq!(
            condition(&missing, c::PROVISIONING).reason,
            c::REASON_NOT_READY_FOR_PROVISIONING
        );

        let bad = decide(
            &buffer(&json!({ "podTemplateRef": { "name": "chunk" }, "replicas": 1,
                "schedules": [{ "schedule": "0 8 * *", "duration": "1h", "replicas": 3 }] })),
            template("1"),
            None,
            now(),
        );
        let ready = condition(&bad, c::READY_FOR_PROVISIONING);
        assert_eq!(ready.reason, c::REASON_RESOLUTION_FAILED);
        assert!(
            ready.message.contains("spec.schedules[0].schedule"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn provisioning_follows_the_fit_and_empty_buffers() {
        let spec = json!({ "podTemplateRef": { "name": "chunk" }, "replicas": 2 });
        let fits = decide(&buffer(&spec), template("1"), Some(&Fit::Existing), now());
        let provisioning = condition(&fits, c::PROVISIONING);
        assert_eq!(
            (provisioning.status.as_str(), provisioning.reason.as_str()),
            ("True", c::REASON_FITS_EXISTING_CAPACITY)
        );
        let needs = decide(
            &buffer(&spec),
            template("1"),
            Some(&Fit::NewCapacity("2 chunks need new nodes".into())),
            now(),
        );
        assert_eq!(
            condition(&needs, c::PROVISIONING).reason,
            c::REASON_REQUIRES_NEW_CAPACITY
        );
        let empty = decide(
            &buffer(&json!({ "podTemplateRef": { "name": "chunk" }, "replicas": 0 })),
            template("1"),
            None,
            now(),
        );
        assert_eq!(condition(&empty, c::PROVISIONING).reason, c::REASON_BUFFER_EMPTY);
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let spec = json!({ "podTemplateRef": { "name": "chunk" }, "replicas": 2 });
        let mut first = buffer(&spec);
        first.status = Some(decide(&first, template("1"), None, now()).status);
        let later: Timestamp = "2026-01-05T11:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let again = decide(&first, template("1"), None, later);
        assert_eq!(
            condition(&again, c::READY_FOR_PROVISIONING).last_transition_time,
            Time(now())
        );
        assert_eq!(Some(&again.status), first.status.as_ref(), "nothing to write");
    }
}
