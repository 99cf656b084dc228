//! The Job controller: keeps `min(parallelism, completions - succeeded)` pods active, counts
//! the pods that succeeded and failed, and finishes the Job (`SuccessCriteriaMet` then
//! `Complete`, or `FailureTarget` then `Failed` past `backoffLimit`) once its pods are gone.
//!
//! There are no containers to exit, so this controller also stands in for them: a Job pod that
//! has been Running (per the kubelet's `status.startTime`) for its run time — the template's
//! [`super::RUN_SECONDS_ANNOTATION`], else [`DataPlaneConfig::job_run_time`] — is marked Succeeded
//! with its containers terminated (exit code 0, reason Completed), as the kubelet would report a
//! container that exited 0.
//!
//! Simplifications: pods are counted while they exist (no `job-tracking` finalizers, so deleting
//! a finished pod early can undercount), `completionMode: Indexed`, pod failure policies,
//! success policies, `activeDeadlineSeconds`, back-off delays and TTL-after-finished are not
//! implemented, and a Job without `completions` finishes once one pod succeeded and none is
//! active (the work-queue pattern).

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::{
        batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods},
        core::v1::{
            ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition, PodTemplateSpec,
        },
    },
    apimachinery::pkg::apis::meta::v1::Time,
};

use super::{
    RUN_SECONDS_ANNOTATION, count, nonzero,
    pods::{self, PodIndex},
    wrote,
};
use crate::{
    dataplane::{Ctx, DataPlaneConfig, DataPlaneError},
    store::Subresource,
};

/// Labels the Job controller's pods carry (the API server also puts them on the template).
const NAME_LABELS: [&str; 2] = ["job-name", "batch.kubernetes.io/job-name"];
const UID_LABELS: [&str; 2] = ["controller-uid", "batch.kubernetes.io/controller-uid"];

pub(super) fn reconcile(
    ctx: &Ctx<'_>,
    pods: &PodIndex,
    config: &DataPlaneConfig,
) -> Result<usize, DataPlaneError> {
    let jobs: Vec<Job> = ctx.list("batch", "jobs")?;
    let mut writes = 0;
    for job in &jobs {
        writes += sync(ctx, job, pods, config)?;
    }
    Ok(writes)
}

/// The Job's pods by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    active: usize,
    ready: usize,
    succeeded: usize,
    failed: usize,
    terminating: usize,
}

impl Counts {
    /// Counts `pods`, taking those in `just_succeeded` as Succeeded.
    fn of(pods: &[&Pod], just_succeeded: &BTreeSet<&str>) -> Self {
        let mut c = Self::default();
        for pod in pods {
            if pod
                .metadata
                .name
                .as_deref()
                .is_some_and(|n| just_succeeded.contains(n))
            {
                c.succeeded += 1;
                continue;
            }
            match pods::phase(pod) {
                "Succeeded" => c.succeeded += 1,
                "Failed" => c.failed += 1,
                _ if pods::is_terminating(pod) => c.terminating += 1,
                _ => {
                    c.active += 1;
                    c.ready += usize::from(pods::is_ready(pod));
                }
            }
        }
        c
    }
}

/// Where a Job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Runs this many pods at once.
    Running(usize),
    Suspended,
    Succeeded,
    Failed,
}

/// kube's decision, from the spec, the counts and whether success or failure was already
/// decided (those stick, whatever happens to the pods afterwards).
fn outcome(spec: &JobSpec, c: &Counts, decided: Option<Outcome>) -> Outcome {
    if let Some(decided) = decided {
        return decided;
    }
    let backoff_limit = usize::try_from(spec.backoff_limit.unwrap_or(6)).unwrap_or(0);
    if c.failed > backoff_limit {
        return Outcome::Failed;
    }
    let parallelism = usize::try_from(spec.parallelism.unwrap_or(1)).unwrap_or(0);
    let wanted = match spec.completions {
        Some(completions) => {
            let completions = usize::try_from(completions).unwrap_or(0);
            if c.succeeded >= completions {
                return Outcome::Succeeded;
            }
            parallelism.min(completions - c.succeeded)
        }
        None if c.succeeded > 0 && c.active == 0 => return Outcome::Succeeded,
        // Work queue: once a pod succeeded, no new pods; the running ones finish.
        None if c.succeeded > 0 => c.active.min(parallelism),
        None => parallelism,
    };
    if spec.suspend == Some(true) {
        return Outcome::Suspended;
    }
    Outcome::Running(wanted)
}

fn sync(
    ctx: &Ctx<'_>,
    job: &Job,
    pods: &PodIndex,
    config: &DataPlaneConfig,
) -> Result<usize, DataPlaneError> {
    let (Some(uid), Some(name), Some(spec)) = (&job.metadata.uid, &job.metadata.name, &job.spec) else {
        return Ok(0);
    };
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let is_true = |type_: &str| conditions.iter().any(|c| c.type_ == type_ && c.status == "True");
    if is_true("Complete") || is_true("Failed") || job.metadata.deletion_timestamp.is_some() {
        return Ok(0);
    }
    let ns = job.metadata.namespace.as_deref().unwrap_or_default();
    let owned = pods.owned_by(uid);
    let now = ctx.now_time();
    let mut writes = 0;

    let run_time = run_time(&spec.template, config);
    let mut just_succeeded = BTreeSet::new();
    for pod in owned
        .iter()
        .filter(|p| pods::is_active(p) && pods::phase(p) == "Running")
    {
        if started(pod)
            .and_then(|t| t.checked_add(run_time).ok())
            .is_some_and(|end| end <= now.0)
        {
            let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
            if ctx.update::<Pod>("", "pods", ns, pod_name, Subresource::Status, &mut |p| {
                succeed(p, &now);
            })? {
                writes += 1;
                just_succeeded.insert(pod_name);
            }
        }
    }

    let counts = Counts::of(&owned, &just_succeeded);
    let decided = if is_true("SuccessCriteriaMet") {
        Some(Outcome::Succeeded)
    } else if is_true("FailureTarget") {
        Some(Outcome::Failed)
    } else {
        None
    };
    let outcome = outcome(spec, &counts, decided);
    let mut active: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|p| {
            pods::is_active(p) && !just_succeeded.contains(p.metadata.name.as_deref().unwrap_or_default())
        })
        .collect();
    let wanted = match outcome {
        Outcome::Running(n) => n,
        _ => 0,
    };
    let mut active_now = active.len();
    if active.len() < wanted {
        let Some(reference) = pods::controller_ref("batch/v1", "Job", &job.metadata) else {
            return Ok(writes);
        };
        let pod = pods::from_template(&labeled_template(&spec.template, name, uid), ns, name, reference);
        for _ in active.len()..wanted {
            let created = ctx.create("", "pods", ns, &pod)?;
            writes += wrote(created);
            active_now += usize::from(created);
        }
    } else if active.len() > wanted {
        active.sort_by(|a, b| pods::deletion_order(a, b));
        for pod in &active[..active.len() - wanted] {
            let deleted = ctx.delete(
                "",
                "pods",
                ns,
                pod.metadata.name.as_deref().unwrap_or_default(),
                None,
            )?;
            writes += wrote(deleted);
            active_now -= usize::from(deleted);
        }
    }

    let status = status(job, &counts, active_now, outcome, &now);
    if job.status.as_ref() != Some(&status) {
        writes += wrote(
            ctx.update::<Job>("batch", "jobs", ns, name, Subresource::Status, &mut |j| {
                j.status = Some(status.clone());
            })?,
        );
    }
    Ok(writes)
}

/// How long the Job's pods run.
fn run_time(template: &PodTemplateSpec, config: &DataPlaneConfig) -> SignedDuration {
    template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(RUN_SECONDS_ANNOTATION))
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|s| *s >= 0)
        .map_or(config.job_run_time, SignedDuration::from_secs)
}

/// When the pod started running: its `startTime`, else its first container's start.
fn started(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref()?;
    status.start_time.as_ref().map(|t| t.0).or_else(|| {
        status
            .container_statuses
            .iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
            .map(|t| t.0)
            .min()
    })
}

/// The template with the labels the Job controller's pods carry.
fn labeled_template(template: &PodTemplateSpec, name: &str, uid: &str) -> PodTemplateSpec {
    let mut t = template.clone();
    let labels = t
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    for key in NAME_LABELS {
        labels.insert(key.to_owned(), name.to_owned());
    }
    for key in UID_LABELS {
        labels.insert(key.to_owned(), uid.to_owned());
    }
    t
}

/// What the kubelet reports when every container of the pod exited 0.
fn succeed(pod: &mut Pod, now: &Time) {
    let containers: Vec<(String, String)> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect();
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase = Some("Succeeded".to_owned());
    let pod_started = status.start_time.clone();
    let statuses = status.container_statuses.get_or_insert_with(Vec::new);
    if statuses.is_empty() {
        *statuses = containers
            .into_iter()
            .map(|(name, image)| ContainerStatus {
                name,
                image_id: image.clone(),
                image,
                ..ContainerStatus::default()
            })
            .collect();
    }
    for c in statuses.iter_mut() {
        let started_at = c
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone())
            .or_else(|| pod_started.clone());
        c.state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 0,
                reason: Some("Completed".to_owned()),
                started_at,
                finished_at: Some(now.clone()),
                container_id: c.container_id.clone(),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        });
        c.ready = false;
        c.started = Some(false);
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    for type_ in ["Ready", "ContainersReady"] {
        let wanted = PodCondition {
            type_: type_.to_owned(),
            status: "False".to_owned(),
            reason: Some("PodCompleted".to_owned()),
            last_transition_time: Some(now.clone()),
            ..PodCondition::default()
        };
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => *c = wanted,
            None => conditions.push(wanted),
        }
    }
}

/// The status after this pass (`active` counts this pass's creations and deletions, as kube's
/// does).
fn status(job: &Job, c: &Counts, active: usize, outcome: Outcome, now: &Time) -> JobStatus {
    let previous = job.status.clone().unwrap_or_default();
    let mut conditions = previous.conditions.clone().unwrap_or_default();
    let settled = active == 0 && c.terminating == 0;
    let mut completion_time = previous.completion_time.clone();
    match outcome {
        Outcome::Succeeded => {
            let message = "Reached expected number of succeeded pods";
            set_condition(
                &mut conditions,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                message,
                now,
            );
            if settled {
                set_condition(
                    &mut conditions,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    message,
                    now,
                );
                completion_time = Some(now.clone());
            }
        }
        Outcome::Failed => {
            let message = "Job has reached the specified backoff limit";
            set_condition(
                &mut conditions,
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                message,
                now,
            );
            if settled {
                set_condition(
                    &mut conditions,
                    "Failed",
                    "True",
                    "BackoffLimitExceeded",
                    message,
                    now,
                );
            }
        }
        Outcome::Suspended => {
            set_condition(
                &mut conditions,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
        }
        Outcome::Running(_) => {
            if conditions.iter().any(|c| c.type_ == "Suspended") {
                set_condition(
                    &mut conditions,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    now,
                );
            }
        }
    }
    let start_time = match (previous.start_time, outcome) {
        (Some(t), _) => Some(t),
        (None, Outcome::Suspended) => None,
        (None, _) => Some(now.clone()),
    };
    JobStatus {
        active: nonzero(count(active)),
        ready: Some(count(c.ready)),
        terminating: Some(count(c.terminating)),
        succeeded: nonzero(count(c.succeeded)),
        failed: nonzero(count(c.failed)),
        start_time,
        completion_time,
        conditions: (!conditions.is_empty()).then_some(conditions),
        uncounted_terminated_pods: Some(UncountedTerminatedPods::default()),
        completed_indexes: previous.completed_indexes,
        failed_indexes: previous.failed_indexes,
    }
}

/// Sets a condition; an unchanged status keeps its times.
fn set_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
) {
    let wanted = JobCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == wanted.status => {}
        Some(c) => *c = wanted,
        None => conditions.push(wanted),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{ContainerStateRunning, PodSpec, PodStatus},
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;

    fn spec(completions: Option<i32>, parallelism: Option<i32>) -> JobSpec {
        JobSpec {
            completions,
            parallelism,
            ..JobSpec::default()
        }
    }

    fn counts(active: usize, succeeded: usize, failed: usize) -> Counts {
        Counts {
            active,
            succeeded,
            failed,
            ..Counts::default()
        }
    }

    #[test]
    fn active_pods_wanted_follow_parallelism_and_remaining_completions() {
        assert_eq!(
            outcome(&spec(Some(5), Some(2)), &counts(0, 0, 0), None),
            Outcome::Running(2)
        );
        assert_eq!(
            outcome(&spec(Some(5), Some(2)), &counts(2, 4, 0), None),
            Outcome::Running(1)
        );
        assert_eq!(
            outcome(&spec(Some(5), Some(2)), &counts(1, 5, 0), None),
            Outcome::Succeeded
        );
        assert_eq!(
            outcome(&spec(None, None), &counts(0, 0, 0), None),
            Outcome::Running(1),
            "defaults 1/1"
        );
        assert_eq!(
            outcome(&spec(Some(2), None), &counts(0, 1, 0), None),
            Outcome::Running(1)
        );
        // Work queue: parallelism pods, no new ones once one succeeded, done when none runs.
        assert_eq!(
            outcome(&spec(None, Some(3)), &counts(0, 0, 0), None),
            Outcome::Running(3)
        );
        assert_eq!(
            outcome(&spec(None, Some(3)), &counts(2, 1, 0), None),
            Outcome::Running(2)
        );
        assert_eq!(
            outcome(&spec(None, Some(3)), &counts(0, 1, 0), None),
            Outcome::Succeeded
        );
    }

    #[test]
    fn backoff_limit_suspension_and_decided_outcomes() {
        let mut limited = spec(Some(3), Some(1));
        limited.backoff_limit = Some(1);
        assert_eq!(outcome(&limited, &counts(1, 0, 1), None), Outcome::Running(1));
        assert_eq!(outcome(&limited, &counts(0, 0, 2), None), Outcome::Failed);
        let mut suspended = spec(Some(3), Some(1));
        suspended.suspend = Some(true);
        assert_eq!(outcome(&suspended, &counts(1, 0, 0), None), Outcome::Suspended);
        assert_eq!(outcome(&suspended, &counts(0, 3, 0), None), Outcome::Succeeded);
        assert_eq!(
            outcome(
                &spec(Some(3), Some(1)),
                &counts(0, 0, 0),
                Some(Outcome::Succeeded)
            ),
            Outcome::Succeeded
        );
    }

    fn pod(name: &str, phase: &str, terminating: bool, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: terminating.then_some(Time(Timestamp::UNIX_EPOCH)),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.then(|| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn counts_sort_pods_by_state() {
        let pods = [
            pod("a", "Running", false, true),
            pod("b", "Pending", false, false),
            pod("c", "Succeeded", false, false),
            pod("d", "Failed", false, false),
            pod("e", "Running", true, true),
            pod("f", "Running", false, true),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let c = Counts::of(&refs, &BTreeSet::from(["f"]));
        assert_eq!(
            c,
            Counts {
                active: 2,
                ready: 1,
                succeeded: 2,
                failed: 1,
                terminating: 1
            }
        );
    }

    #[test]
    fn a_succeeded_pod_reports_terminated_containers() {
        let start = Time("2024-01-01T00:00:00Z".parse().unwrap());
        let end = Time("2024-01-01T00:00:30Z".parse().unwrap());
        let mut p = pod("p", "Running", false, true);
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "c".into(),
            ready: true,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(start.clone()),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]);
        succeed(&mut p, &end);
        let status = p.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        let c = &status.container_statuses.unwrap()[0];
        let terminated = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (terminated.exit_code, terminated.reason.as_deref()),
            (0, Some("Completed"))
        );
        assert_eq!(
            (terminated.started_at.clone(), terminated.finished_at.clone()),
            (Some(start), Some(end))
        );
        assert!(!c.ready);
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("PodCompleted"))
        );
    }

    #[test]
    fn completion_waits_for_the_last_pod_to_go() {
        let now = Time("2024-01-01T00:00:00Z".parse().unwrap());
        let job = Job::default();
        let done = status(&job, &counts(0, 2, 0), 0, Outcome::Succeeded, &now);
        let types: Vec<&str> = done
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, ["SuccessCriteriaMet", "Complete"]);
        assert_eq!(done.completion_time, Some(now.clone()));
        assert_eq!(
            (done.succeeded, done.active, done.ready),
            (Some(2), None, Some(0))
        );
        let lingering = status(&job, &counts(1, 2, 0), 1, Outcome::Succeeded, &now);
        let types: Vec<&str> = lingering
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, ["SuccessCriteriaMet"]);
        assert_eq!(lingering.completion_time, None);
    }

    #[test]
    fn run_time_comes_from_the_template_annotation() {
        let config = DataPlaneConfig::default();
        let mut template = PodTemplateSpec::default();
        assert_eq!(run_time(&template, &config), config.job_run_time);
        template.metadata = Some(ObjectMeta {
            annotations: Some([(RUN_SECONDS_ANNOTATION.to_owned(), "90".to_owned())].into()),
            ..ObjectMeta::default()
        });
        assert_eq!(run_time(&template, &config), SignedDuration::from_secs(90));
    }
}
