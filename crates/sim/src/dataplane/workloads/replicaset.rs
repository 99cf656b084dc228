//! The ReplicaSet controller: keeps `spec.replicas` active pods (neither terminating nor
//! finished) made from the template, and reports how many exist, carry the template's labels,
//! are Ready and are available.
//!
//! Simplifications: pods are found by their controller reference only (orphans matching the
//! selector are not adopted); surplus pods are deleted in kube's preference order without its
//! rank of pods sharing a node; creations are not slow-started, only capped per pass.

use k8s_openapi::api::{
    apps::v1::{ReplicaSet, ReplicaSetStatus},
    core::v1::Pod,
};

use super::{
    count, nonzero,
    pods::{self, PodIndex},
    wrote,
};
use crate::{
    dataplane::{Ctx, DataPlaneError},
    store::Subresource,
};

/// Pods one ReplicaSet creates or deletes in one pass at most (kube's `burstReplicas`).
const BURST: usize = 500;

pub(super) fn reconcile(ctx: &Ctx<'_>, pods: &PodIndex) -> Result<usize, DataPlaneError> {
    let sets: Vec<ReplicaSet> = ctx.list("apps", "replicasets")?;
    let mut writes = 0;
    for rs in &sets {
        writes += sync(ctx, rs, pods)?;
    }
    Ok(writes)
}

fn sync(ctx: &Ctx<'_>, rs: &ReplicaSet, pods: &PodIndex) -> Result<usize, DataPlaneError> {
    let (Some(uid), Some(name), Some(spec)) = (&rs.metadata.uid, &rs.metadata.name, &rs.spec) else {
        return Ok(0);
    };
    let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
    let owned = pods.owned_by(uid);
    let mut active: Vec<&Pod> = owned.iter().copied().filter(|p| pods::is_active(p)).collect();
    let desired = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    let mut writes = 0;
    // A ReplicaSet being deleted (foreground) leaves its pods to the garbage collector.
    if rs.metadata.deletion_timestamp.is_none() {
        if active.len() < desired {
            let Some(reference) = pods::controller_ref("apps/v1", "ReplicaSet", &rs.metadata) else {
                return Ok(0);
            };
            if let Some(template) = &spec.template {
                let pod = pods::from_template(template, ns, name, reference);
                for _ in 0..(desired - active.len()).min(BURST) {
                    writes += wrote(ctx.create("", "pods", ns, &pod)?);
                }
            }
        } else if active.len() > desired {
            active.sort_by(|a, b| pods::deletion_order(a, b));
            for pod in active.iter().take((active.len() - desired).min(BURST)) {
                let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
                writes += wrote(ctx.delete("", "pods", ns, pod_name, None)?);
            }
        }
    }
    let status = status(rs, &active, ctx.now());
    if rs.status.as_ref() != Some(&status) {
        writes += wrote(ctx.update::<ReplicaSet>(
            "apps",
            "replicasets",
            ns,
            name,
            Subresource::Status,
            &mut |rs| {
                rs.status = Some(status.clone());
            },
        )?);
    }
    Ok(writes)
}

/// The status from the active pods (kube counts them before this pass's creations and
/// deletions too; the next pass reports those).
fn status(rs: &ReplicaSet, active: &[&Pod], now: jiff::Timestamp) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    ReplicaSetStatus {
        replicas: count(active.len()),
        fully_labeled_replicas: nonzero(count(fully_labeled)),
        ready_replicas: nonzero(count(active.iter().filter(|p| pods::is_ready(p)).count())),
        available_replicas: nonzero(count(
            active
                .iter()
                .filter(|p| pods::is_available(p, min_ready, now))
                .count(),
        )),
        observed_generation: rs.metadata.generation,
        // Conditions (ReplicaFailure) and terminatingReplicas are kept as they are.
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: rs.status.as_ref().and_then(|s| s.terminating_replicas),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::{
            apps::v1::ReplicaSetSpec,
            core::v1::{PodCondition, PodStatus, PodTemplateSpec},
        },
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    };

    use super::*;

    fn labeled(labels: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn pod(labels: &[(&str, &str)], ready_at: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                labels: Some(labeled(labels)),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(t.parse().unwrap())),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn status_counts_labels_readiness_and_availability() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                generation: Some(4),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                min_ready_seconds: Some(30),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labeled(&[("app", "web"), ("tier", "fe")])),
                        ..ObjectMeta::default()
                    }),
                    spec: None,
                }),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        };
        let pods = [
            pod(&[("app", "web"), ("tier", "fe")], Some("2024-01-01T00:00:00Z")),
            pod(
                &[("app", "web"), ("tier", "fe"), ("x", "y")],
                Some("2024-01-01T00:00:50Z"),
            ),
            pod(&[("app", "web")], None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let now = "2024-01-01T00:01:00Z".parse().unwrap();
        let s = status(&rs, &refs, now);
        assert_eq!(s.replicas, 3);
        assert_eq!(s.fully_labeled_replicas, Some(2));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(1), "the second is Ready for only 10 s");
        assert_eq!(s.observed_generation, Some(4));
        let empty = status(&rs, &[], now);
        assert_eq!(
            (empty.replicas, empty.ready_replicas, empty.available_replicas),
            (0, None, None)
        );
    }
}
