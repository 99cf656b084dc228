//! The Deployment controller: one ReplicaSet per distinct pod template, named
//! `<deployment>-<pod-template-hash>`, and the Deployment's status from its ReplicaSets.
//!
//! Simplified rollout: the ReplicaSet of the current template gets all `spec.replicas` at once
//! and every older one is scaled to 0 in the same pass, whatever the strategy (a RollingUpdate
//! that ignores maxSurge and maxUnavailable, or a Recreate that does not wait for the old pods to
//! go). A paused Deployment's ReplicaSets are left alone (no rollout and no scaling) while its
//! status is still reported. Orphan ReplicaSets are not adopted, `ProgressDeadlineExceeded` is
//! never reported, and old ReplicaSets beyond `revisionHistoryLimit` are deleted once empty.

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec},
        core::v1::PodTemplateSpec,
    },
    apimachinery::pkg::{
        apis::meta::v1::{ObjectMeta, Time},
        util::intstr::IntOrString,
    },
};

use super::{POD_TEMPLATE_HASH_LABEL, hash::template_hash, nonzero, pods, wrote};
use crate::{
    dataplane::{Ctx, DataPlaneError},
    store::Subresource,
};

/// The revision annotation of Deployments and their ReplicaSets (`kubectl rollout history`).
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

pub(super) fn reconcile(ctx: &Ctx<'_>) -> Result<usize, DataPlaneError> {
    let deployments: Vec<Deployment> = ctx.list("apps", "deployments")?;
    if deployments.is_empty() {
        return Ok(0);
    }
    let sets: Vec<ReplicaSet> = ctx.list("apps", "replicasets")?;
    let mut writes = 0;
    for d in &deployments {
        writes += sync(ctx, d, &sets)?;
    }
    Ok(writes)
}

fn sync(ctx: &Ctx<'_>, d: &Deployment, sets: &[ReplicaSet]) -> Result<usize, DataPlaneError> {
    let (Some(uid), Some(spec)) = (d.metadata.uid.as_deref(), &d.spec) else {
        return Ok(0);
    };
    let ns = d.metadata.namespace.as_deref().unwrap_or_default();
    let owned: Vec<&ReplicaSet> = sets
        .iter()
        .filter(|rs| {
            rs.metadata.namespace.as_deref() == Some(ns) && pods::controller_uid(&rs.metadata) == Some(uid)
        })
        .collect();
    let template = without_hash(&spec.template);
    let current = owned.iter().copied().find(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| without_hash(t) == template)
    });
    let mut writes = 0;
    if d.metadata.deletion_timestamp.is_none() && spec.paused != Some(true) {
        let replicas = spec.replicas.unwrap_or(1);
        match current {
            None => writes += create_replica_set(ctx, d, &template, &owned, sets)?,
            Some(rs) => {
                writes += scale(ctx, rs, replicas)?;
                writes += bump_revision(ctx, rs, &owned)?;
                writes += annotate_revision(ctx, d, rs)?;
            }
        }
        for old in owned
            .iter()
            .filter(|rs| current.is_none_or(|c| c.metadata.uid != rs.metadata.uid))
        {
            writes += scale(ctx, old, 0)?;
        }
        writes += clean_up_history(ctx, d, &owned, current)?;
    }
    writes += write_status(ctx, d, &owned, current)?;
    Ok(writes)
}

/// A template without the `pod-template-hash` label (kube's `EqualIgnoreHash`): how a
/// ReplicaSet's template is compared with its Deployment's.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        if meta
            .labels
            .as_ref()
            .is_some_and(std::collections::BTreeMap::is_empty)
        {
            meta.labels = None;
        }
    }
    if t.metadata.as_ref().is_some_and(|m| *m == ObjectMeta::default()) {
        t.metadata = None;
    }
    t
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Creates the ReplicaSet of the current template, or, when its name is taken by another
/// ReplicaSet, bumps `status.collisionCount` so that the next pass hashes to a new name.
fn create_replica_set(
    ctx: &Ctx<'_>,
    d: &Deployment,
    template: &PodTemplateSpec,
    owned: &[&ReplicaSet],
    sets: &[ReplicaSet],
) -> Result<usize, DataPlaneError> {
    let (Some(name), Some(spec), Some(reference)) = (
        d.metadata.name.as_deref(),
        &d.spec,
        pods::controller_ref("apps/v1", "Deployment", &d.metadata),
    ) else {
        return Ok(0);
    };
    let ns = d.metadata.namespace.as_deref().unwrap_or_default();
    let collisions = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(template, collisions);
    let rs_name = format!("{name}-{hash}");
    if sets.iter().any(|rs| {
        rs.metadata.namespace.as_deref() == Some(ns) && rs.metadata.name.as_deref() == Some(&rs_name)
    }) {
        let next = collisions.unwrap_or(0).saturating_add(1);
        return Ok(wrote(ctx.update::<Deployment>(
            "apps",
            "deployments",
            ns,
            name,
            Subresource::Status,
            &mut |d| d.status.get_or_insert_with(Default::default).collision_count = Some(next),
        )?));
    }
    let mut template = template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.to_owned(), hash.clone());
    let labels = meta.labels.clone();
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.to_owned(), hash);
    let next_revision = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0) + 1;
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(rs_name),
            namespace: Some(ns.to_owned()),
            labels,
            annotations: Some([(REVISION_ANNOTATION.to_owned(), next_revision.to_string())].into()),
            owner_references: Some(vec![reference]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(spec.replicas.unwrap_or(1)),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    Ok(wrote(ctx.create("apps", "replicasets", ns, &rs)?))
}

fn scale(ctx: &Ctx<'_>, rs: &ReplicaSet, replicas: i32) -> Result<usize, DataPlaneError> {
    if rs.spec.as_ref().and_then(|s| s.replicas) == Some(replicas) {
        return Ok(0);
    }
    let (ns, name) = key(&rs.metadata);
    Ok(wrote(ctx.update::<ReplicaSet>(
        "apps",
        "replicasets",
        ns,
        name,
        Subresource::Main,
        &mut |rs| {
            rs.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
        },
    )?))
}

/// A template rolled back to gets the newest revision again, as in Kubernetes.
fn bump_revision(
    ctx: &Ctx<'_>,
    current: &ReplicaSet,
    owned: &[&ReplicaSet],
) -> Result<usize, DataPlaneError> {
    let newest_other = owned
        .iter()
        .filter(|rs| rs.metadata.uid != current.metadata.uid)
        .map(|rs| revision(rs))
        .max()
        .unwrap_or(0);
    if revision(current) > newest_other {
        return Ok(0);
    }
    let wanted = (newest_other + 1).to_string();
    let (ns, name) = key(&current.metadata);
    Ok(wrote(ctx.update::<ReplicaSet>(
        "apps",
        "replicasets",
        ns,
        name,
        Subresource::Main,
        &mut |rs| {
            rs.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(REVISION_ANNOTATION.to_owned(), wanted.clone());
        },
    )?))
}

/// The Deployment carries its current ReplicaSet's revision.
fn annotate_revision(ctx: &Ctx<'_>, d: &Deployment, current: &ReplicaSet) -> Result<usize, DataPlaneError> {
    let wanted = revision(current).to_string();
    let has = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION));
    if revision(current) == 0 || has == Some(&wanted) {
        return Ok(0);
    }
    let (ns, name) = key(&d.metadata);
    Ok(wrote(ctx.update::<Deployment>(
        "apps",
        "deployments",
        ns,
        name,
        Subresource::Main,
        &mut |d| {
            d.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(REVISION_ANNOTATION.to_owned(), wanted.clone());
        },
    )?))
}

/// Deletes the oldest empty old ReplicaSets beyond `revisionHistoryLimit` (default 10).
fn clean_up_history(
    ctx: &Ctx<'_>,
    d: &Deployment,
    owned: &[&ReplicaSet],
    current: Option<&ReplicaSet>,
) -> Result<usize, DataPlaneError> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let limit = usize::try_from(limit).unwrap_or(0);
    let mut empty: Vec<&ReplicaSet> = owned
        .iter()
        .copied()
        .filter(|rs| current.is_none_or(|c| c.metadata.uid != rs.metadata.uid))
        .filter(|rs| {
            rs.metadata.deletion_timestamp.is_none()
                && rs.spec.as_ref().and_then(|s| s.replicas) == Some(0)
                && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
        })
        .collect();
    if empty.len() <= limit {
        return Ok(0);
    }
    empty.sort_by_key(|rs| (revision(rs), rs.metadata.creation_timestamp.as_ref().map(|t| t.0)));
    let mut writes = 0;
    for rs in &empty[..empty.len() - limit] {
        let (ns, name) = key(&rs.metadata);
        writes += wrote(ctx.delete("apps", "replicasets", ns, name, None)?);
    }
    Ok(writes)
}

fn write_status(
    ctx: &Ctx<'_>,
    d: &Deployment,
    owned: &[&ReplicaSet],
    current: Option<&ReplicaSet>,
) -> Result<usize, DataPlaneError> {
    let status = status(d, owned, current, &ctx.now_time());
    if d.status.as_ref() == Some(&status) {
        return Ok(0);
    }
    let (ns, name) = key(&d.metadata);
    Ok(wrote(ctx.update::<Deployment>(
        "apps",
        "deployments",
        ns,
        name,
        Subresource::Status,
        &mut |d| {
            // The collision count is the one thing written elsewhere (by `create_replica_set`).
            let collisions = d.status.as_ref().and_then(|s| s.collision_count);
            d.status = Some(DeploymentStatus {
                collision_count: collisions,
                ..status.clone()
            });
        },
    )?))
}

/// kube's `calculateStatus` plus the Available and Progressing conditions.
fn status(
    d: &Deployment,
    owned: &[&ReplicaSet],
    current: Option<&ReplicaSet>,
    now: &Time,
) -> DeploymentStatus {
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| owned.iter().map(|rs| f(rs)).fold(0_i32, i32::saturating_add);
    let of_status = |f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32| {
        move |rs: &ReplicaSet| rs.status.as_ref().map_or(0, f)
    };
    let spec_total = sum(&|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1));
    let replicas = sum(&of_status(|s| s.replicas));
    let ready = sum(&of_status(|s| s.ready_replicas.unwrap_or(0)));
    let available = sum(&of_status(|s| s.available_replicas.unwrap_or(0)));
    let updated = current.map_or(0, of_status(|s| s.replicas));
    let previous = d.status.clone().unwrap_or_default();
    let mut conditions = previous.conditions.clone().unwrap_or_default();

    let (status, reason, message) = if available >= wanted.saturating_sub(max_unavailable(d)) {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    set_condition(&mut conditions, "Available", status, reason, message, now);
    let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
    if paused {
        set_condition(
            &mut conditions,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            now,
        );
    } else if let Some(rs) = current {
        let rs_name = rs.metadata.name.as_deref().unwrap_or_default();
        if updated == wanted && replicas == wanted && available == wanted {
            let message = format!("ReplicaSet \"{rs_name}\" has successfully progressed.");
            set_condition(
                &mut conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &message,
                now,
            );
        } else {
            let message = format!("ReplicaSet \"{rs_name}\" is progressing.");
            set_condition(
                &mut conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &message,
                now,
            );
        }
    }
    DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nonzero(replicas),
        updated_replicas: nonzero(updated),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero(spec_total.saturating_sub(available).max(0)),
        conditions: Some(conditions),
        collision_count: previous.collision_count,
        terminating_replicas: previous.terminating_replicas,
    }
}

/// Sets a condition, keeping its times when nothing changes and its transition time when only
/// the reason or message does.
fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
) {
    let wanted = DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == wanted.status && c.reason == wanted.reason && c.message == wanted.message => {}
        Some(c) if c.status == wanted.status => {
            c.reason = wanted.reason;
            c.message = wanted.message;
            c.last_update_time = wanted.last_update_time;
        }
        Some(c) => *c = wanted,
        None => conditions.push(wanted),
    }
}

/// How many pods may be unavailable during a rolling update (kube's `MaxUnavailable`:
/// maxUnavailable rounded down, maxSurge up, 1 when both come to 0; 0 for Recreate).
fn max_unavailable(d: &Deployment) -> i32 {
    let Some(spec) = &d.spec else { return 0 };
    let replicas = spec.replicas.unwrap_or(1);
    let strategy = spec.strategy.as_ref();
    if replicas == 0 || strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return 0;
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let quarter = IntOrString::String("25%".to_owned());
    let surge = scaled(
        rolling.and_then(|r| r.max_surge.as_ref()).unwrap_or(&quarter),
        replicas,
        true,
    );
    let unavailable = scaled(
        rolling
            .and_then(|r| r.max_unavailable.as_ref())
            .unwrap_or(&quarter),
        replicas,
        false,
    );
    if surge == 0 && unavailable == 0 {
        return 1.min(replicas);
    }
    unavailable.min(replicas)
}

/// An int-or-percent of `total` (kube's `GetScaledValueFromIntOrPercent`); malformed values
/// count as 0.
fn scaled(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let Some(percent) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let product = percent.saturating_mul(i64::from(total));
            let value = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(value).unwrap_or(i32::MAX)
        }
    }
}

fn key(meta: &ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{
        apps::v1::{DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment},
        core::v1::PodTemplateSpec,
    };

    use super::*;

    fn deployment(replicas: i32, strategy: Option<DeploymentStrategy>) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy,
                template: PodTemplateSpec::default(),
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    fn rolling(surge: IntOrString, unavailable: IntOrString) -> DeploymentStrategy {
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(surge),
                max_unavailable: Some(unavailable),
            }),
        }
    }

    fn rs(name: &str, spec: i32, replicas: i32, ready: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(spec),
                ..ReplicaSetSpec::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(ready),
                available_replicas: Some(available),
                ..ReplicaSetStatus::default()
            }),
        }
    }

    #[test]
    fn max_unavailable_rounds_down_and_resolves_fenceposts() {
        assert_eq!(max_unavailable(&deployment(10, None)), 2, "25% of 10 rounds down");
        assert_eq!(
            max_unavailable(&deployment(3, None)),
            0,
            "25% of 3 is 0, surge is 1"
        );
        let none = rolling(IntOrString::Int(0), IntOrString::String("10%".into()));
        assert_eq!(max_unavailable(&deployment(3, Some(none))), 1, "both 0 → 1");
        let recreate = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        assert_eq!(max_unavailable(&deployment(5, recreate)), 0);
        let big = rolling(IntOrString::Int(1), IntOrString::Int(9));
        assert_eq!(
            max_unavailable(&deployment(4, Some(big))),
            4,
            "capped at replicas"
        );
        assert_eq!(scaled(&IntOrString::String("25%".into()), 3, true), 1);
        assert_eq!(scaled(&IntOrString::String("bad".into()), 3, true), 0);
    }

    #[test]
    fn status_sums_replica_sets_and_reports_progress() {
        let now = Time("2024-01-01T00:00:00Z".parse().unwrap());
        let d = deployment(3, None);
        let new = rs("web-new", 3, 3, 3, 3);
        let old = rs("web-old", 0, 1, 1, 1);
        let s = status(&d, &[&old, &new], Some(&new), &now);
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(
            (s.replicas, s.updated_replicas, s.ready_replicas),
            (Some(4), Some(3), Some(4))
        );
        assert_eq!((s.available_replicas, s.unavailable_replicas), (Some(4), None));
        let conditions = s.conditions.unwrap();
        assert_eq!(conditions[0].type_, "Available");
        assert_eq!(conditions[0].status, "True");
        assert_eq!(
            conditions[1].reason.as_deref(),
            Some("ReplicaSetUpdated"),
            "old pods remain"
        );

        let done = status(&d, &[&new], Some(&new), &now);
        let progressing = &done.conditions.as_ref().unwrap()[1];
        assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetAvailable"));

        let starting = rs("web-new", 3, 3, 1, 1);
        let s = status(&d, &[&starting], Some(&starting), &now);
        assert_eq!(s.unavailable_replicas, Some(2));
        assert_eq!(
            s.conditions.unwrap()[0].reason.as_deref(),
            Some("MinimumReplicasUnavailable")
        );
    }

    #[test]
    fn conditions_keep_their_times_unless_they_change() {
        let t0 = Time("2024-01-01T00:00:00Z".parse().unwrap());
        let t1 = Time("2024-01-01T00:01:00Z".parse().unwrap());
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            "a",
            &t0,
        );
        set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            "a",
            &t1,
        );
        assert_eq!(conditions[0].last_update_time, Some(t0.clone()));
        set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            "b",
            &t1,
        );
        assert_eq!(conditions[0].last_update_time, Some(t1.clone()));
        assert_eq!(conditions[0].last_transition_time, Some(t0));
        set_condition(
            &mut conditions,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "c",
            &t1,
        );
        assert_eq!(conditions[0].last_transition_time, Some(t1));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let mut labeled = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([(POD_TEMPLATE_HASH_LABEL.to_owned(), "abc".to_owned())].into()),
                ..ObjectMeta::default()
            }),
            spec: None,
        };
        let plain = PodTemplateSpec {
            metadata: Some(ObjectMeta::default()),
            spec: None,
        };
        assert_eq!(without_hash(&labeled), without_hash(&plain));
        assert_eq!(without_hash(&plain).metadata, None);
        labeled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("app".into(), "web".into());
        assert_ne!(without_hash(&labeled), without_hash(&plain));
    }
}
