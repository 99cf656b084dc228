//! What the controllers ask of pods: which are active, ready or available, who owns them, how a
//! pod is made from a template, and which pods a controller deletes first when it has too many.

use std::{cmp::Ordering, collections::HashMap};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::core::v1::{Pod, PodCondition, PodTemplateSpec},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};

/// The annotation that ranks pods for scale-down (lower cost goes first).
const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A pass's pods, indexed by their controller's uid.
#[derive(Debug, Default)]
pub(super) struct PodIndex {
    pods: Vec<Pod>,
    by_controller: HashMap<String, Vec<usize>>,
}

impl PodIndex {
    pub(super) fn new(pods: Vec<Pod>) -> Self {
        let mut by_controller: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, pod) in pods.iter().enumerate() {
            if let Some(uid) = controller_uid(&pod.metadata) {
                by_controller.entry(uid.to_owned()).or_default().push(i);
            }
        }
        Self { pods, by_controller }
    }

    /// The pods whose controller is the object with this uid.
    pub(super) fn owned_by(&self, uid: &str) -> Vec<&Pod> {
        self.by_controller
            .get(uid)
            .into_iter()
            .flatten()
            .map(|&i| &self.pods[i])
            .collect()
    }

    /// Every pod of a namespace.
    pub(super) fn in_namespace<'a>(&'a self, ns: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.pods
            .iter()
            .filter(move |p| p.metadata.namespace.as_deref() == Some(ns))
    }
}

/// The uid of the object's controller (the owner reference with `controller: true`).
pub(super) fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// A controller reference to `owner`, as the built-in controllers write it; `None` before the
/// owner has a uid (never, for stored objects).
pub(super) fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone()?,
        uid: owner.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// A pod from a template, named `<prefix>-<random>` by the API server, as controllers create
/// them (template labels, annotations and finalizers; the owner reference).
pub(super) fn from_template(
    template: &PodTemplateSpec,
    ns: &str,
    prefix: &str,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            namespace: Some(ns.to_owned()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The pod's phase (`Pending` when not reported yet).
pub(super) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

pub(super) fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Succeeded or Failed: the pod will not run again.
pub(super) fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Counts towards a controller's replicas: neither terminating nor finished.
pub(super) fn is_active(pod: &Pod) -> bool {
    !is_terminating(pod) && !is_finished(pod)
}

/// The node the pod is bound to.
pub(super) fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

/// The pod's Ready condition when it is True.
fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
}

pub(super) fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some()
}

/// Since when a Ready pod is Ready (`None` when not Ready or not said).
fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)?.last_transition_time.as_ref().map(|t| t.0)
}

/// Ready for at least `min_ready_seconds` (a Ready pod without a transition time counts as
/// available at once).
pub(super) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(ready) = ready_condition(pod) else {
        return false;
    };
    match &ready.last_transition_time {
        Some(since) if min_ready_seconds > 0 => since
            .0
            .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
            .is_ok_and(|at| at <= now),
        _ => true,
    }
}

/// The order kube-controller-manager deletes a controller's surplus pods in (its `ActivePods`
/// ordering): unbound before bound, Pending before Unknown before Running, not Ready before
/// Ready, lower `pod-deletion-cost` first, Ready for less time first, more restarts first,
/// newer first; the name breaks remaining ties so the choice is deterministic.
pub(super) fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let phase_rank = |p: &Pod| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let cost = |p: &Pod| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DELETION_COST_ANNOTATION))
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(0)
    };
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .map(|c| c.restart_count)
            .max()
            .unwrap_or(0)
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    node_name(a)
        .is_some()
        .cmp(&node_name(b).is_some())
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| cost(a).cmp(&cost(b)))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            // Both Ready: the one Ready since later goes first.
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{ContainerStatus, PodSpec, PodStatus},
        apimachinery::pkg::apis::meta::v1::Time,
    };

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(name: &str, node: Option<&str>, phase: &str, ready_since: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(at("2024-01-01T00:00:00Z"))),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_owned),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_since.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(at(t))),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    fn sorted(mut pods: Vec<Pod>) -> Vec<String> {
        pods.sort_by(deletion_order);
        pods.into_iter().map(|p| p.metadata.name.unwrap()).collect()
    }

    #[test]
    fn unbound_then_pending_then_not_ready_then_recently_ready_go_first() {
        let pods = vec![
            pod("old-ready", Some("n"), "Running", Some("2024-01-01T00:01:00Z")),
            pod("new-ready", Some("n"), "Running", Some("2024-01-01T00:05:00Z")),
            pod("running-not-ready", Some("n"), "Running", None),
            pod("unknown", Some("n"), "Unknown", None),
            pod("bound-pending", Some("n"), "Pending", None),
            pod("unbound", None, "Pending", None),
        ];
        assert_eq!(
            sorted(pods),
            [
                "unbound",
                "bound-pending",
                "unknown",
                "running-not-ready",
                "new-ready",
                "old-ready"
            ]
        );
    }

    #[test]
    fn deletion_cost_then_restarts_then_newest_break_ties() {
        let mut cheap = pod("cheap", Some("n"), "Running", Some("2024-01-01T00:01:00Z"));
        cheap.metadata.annotations = Some([(DELETION_COST_ANNOTATION.to_owned(), "-5".to_owned())].into());
        let mut restarted = pod("restarted", Some("n"), "Running", Some("2024-01-01T00:01:00Z"));
        restarted.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            restart_count: 3,
            ..ContainerStatus::default()
        }]);
        let mut newer = pod("newer", Some("n"), "Running", Some("2024-01-01T00:01:00Z"));
        newer.metadata.creation_timestamp = Some(Time(at("2024-01-02T00:00:00Z")));
        let older = pod("older", Some("n"), "Running", Some("2024-01-01T00:01:00Z"));
        assert_eq!(
            sorted(vec![older, newer, restarted, cheap]),
            ["cheap", "restarted", "newer", "older"]
        );
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("p", Some("n"), "Running", Some("2024-01-01T00:00:00Z"));
        assert!(is_available(&p, 0, at("2024-01-01T00:00:00Z")));
        assert!(!is_available(&p, 10, at("2024-01-01T00:00:09Z")));
        assert!(is_available(&p, 10, at("2024-01-01T00:00:10Z")));
        let not_ready = pod("q", Some("n"), "Running", None);
        assert!(!is_available(&not_ready, 0, at("2024-01-01T00:00:00Z")));
    }

    #[test]
    fn active_excludes_terminating_and_finished_pods() {
        let running = pod("a", None, "Running", None);
        assert!(is_active(&running));
        assert!(!is_active(&pod("b", None, "Succeeded", None)));
        assert!(!is_active(&pod("c", None, "Failed", None)));
        let mut terminating = pod("d", None, "Running", None);
        terminating.metadata.deletion_timestamp = Some(Time(at("2024-01-01T00:00:00Z")));
        assert!(!is_active(&terminating));
    }

    #[test]
    fn pods_are_indexed_by_controller_only() {
        let rs_meta = ObjectMeta {
            name: Some("rs".into()),
            uid: Some("u1".into()),
            ..ObjectMeta::default()
        };
        let mut owned = pod("owned", None, "Pending", None);
        owned.metadata.owner_references = controller_ref("apps/v1", "ReplicaSet", &rs_meta).map(|r| vec![r]);
        let mut referenced = pod("referenced", None, "Pending", None);
        let mut weak = controller_ref("apps/v1", "ReplicaSet", &rs_meta).unwrap();
        weak.controller = None;
        referenced.metadata.owner_references = Some(vec![weak]);
        let index = PodIndex::new(vec![owned, referenced]);
        let names: Vec<_> = index
            .owned_by("u1")
            .iter()
            .map(|p| p.metadata.name.clone())
            .collect();
        assert_eq!(names, [Some("owned".to_owned())]);
        assert!(index.owned_by("u2").is_empty());
    }
}
