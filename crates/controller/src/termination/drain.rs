//! The drain planner: which pods of a draining node to evict, and which to delete outright, right
//! now. Pure — pods, the current time and the node's deadline in, a plan out — so every rule is
//! unit-tested without a cluster.
//!
//! Karpenter's rules (`terminator.Drain`, the eviction queue):
//! - Pods that will never leave are ignored: finished pods, mirror (static) pods, pods that
//!   tolerate `karpenter.sh/disrupted:NoSchedule`, and pods stuck terminating for over a minute
//!   (their kubelet is gone).
//! - The rest drain in tiers, like graceful node shutdown: ordinary pods, then DaemonSet pods,
//!   then critical pods, then critical DaemonSet pods. Only the first tier with pods left is
//!   evicted; terminating pods still hold their tier until they are gone.
//! - With a deadline (the NodeClaim's `terminationGracePeriod`), a pod is deleted directly —
//!   bypassing PodDisruptionBudgets and `do-not-disrupt` — once waiting longer would not leave it
//!   its own grace period before the deadline, with a grace period trimmed to end by the
//!   deadline (never 0, so the kubelet still stops it).
//! - Pods with an active `karpenter.sh/do-not-disrupt` are not evicted, so the drain waits for
//!   them (or for the deadline).

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use nodewright_api::{duration::parse_go_duration, labels};

/// Priority classes Kubernetes reserves for pods the cluster or the node cannot run without.
pub const CRITICAL_PRIORITY_CLASSES: [&str; 2] = ["system-cluster-critical", "system-node-critical"];
/// A pod this long past its `deletionTimestamp` is stuck (its kubelet is gone) and no longer
/// holds the drain.
pub const STUCK_TERMINATING_AFTER: SignedDuration = SignedDuration::from_mins(1);
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_POD_GRACE_SECONDS: i64 = 30;
/// The annotation the kubelet puts on the API mirror of a static pod.
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The eviction tiers, in draining order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Ordinary workloads.
    NonCritical,
    /// DaemonSet pods (logging, networking agents) that should outlive the workloads.
    NonCriticalDaemon,
    /// Pods of a critical priority class.
    Critical,
    /// Critical DaemonSet pods, last of all.
    CriticalDaemon,
}

impl Tier {
    /// The tiers in draining order.
    pub const ORDER: [Tier; 4] = [
        Tier::NonCritical,
        Tier::NonCriticalDaemon,
        Tier::Critical,
        Tier::CriticalDaemon,
    ];

    /// The tier of a pod.
    pub fn of(pod: &Pod) -> Self {
        match (is_critical(pod), is_daemon(pod)) {
            (false, false) => Self::NonCritical,
            (false, true) => Self::NonCriticalDaemon,
            (true, false) => Self::Critical,
            (true, true) => Self::CriticalDaemon,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::NonCritical => 0,
            Self::NonCriticalDaemon => 1,
            Self::Critical => 2,
            Self::CriticalDaemon => 3,
        }
    }
}

/// A pod by namespace and name, with the uid the write is conditioned on (so a pod recreated
/// under the same name is never hit by a decision about its predecessor).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

impl PodRef {
    pub fn of(pod: &Pod) -> Self {
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone(),
        }
    }
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A pod to delete directly, and the grace period that ends it by the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForceDelete {
    pub pod: PodRef,
    pub grace_period_seconds: u32,
}

/// What to do now for one draining node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainPlan {
    /// The tier draining gracefully: the first with pods left, if any.
    pub active_tier: Option<Tier>,
    /// Pods of the active tier to evict through the Eviction API now.
    pub evict: Vec<PodRef>,
    /// Pods to delete directly because of the deadline (any tier).
    pub force_delete: Vec<ForceDelete>,
    /// Pods of the active tier that `do-not-disrupt` keeps from being evicted.
    pub held: Vec<PodRef>,
    /// Pods the drain still waits for, terminating ones included.
    pub waiting: usize,
}

impl DrainPlan {
    /// No pod left that the drain waits for.
    pub fn is_drained(&self) -> bool {
        self.waiting == 0
    }
}

/// The plan for a node's `pods` at `now`, with the node's termination `deadline` if it has one.
pub fn plan(pods: &[Pod], now: Timestamp, deadline: Option<Timestamp>) -> DrainPlan {
    let mut plan = DrainPlan::default();
    let mut tiers: [Vec<&Pod>; 4] = Default::default();
    for pod in pods.iter().filter(|p| is_waiting_eviction(p, now)) {
        plan.waiting += 1;
        if let Some(grace_period_seconds) = deadline.and_then(|d| force_delete_grace(pod, now, d)) {
            plan.force_delete.push(ForceDelete {
                pod: PodRef::of(pod),
                grace_period_seconds,
            });
        } else {
            tiers[Tier::of(pod).index()].push(pod);
        }
    }
    if let Some(tier) = Tier::ORDER.into_iter().find(|t| !tiers[t.index()].is_empty()) {
        plan.active_tier = Some(tier);
        // Terminating pods are on their way out: they hold the tier but need no eviction.
        for pod in tiers[tier.index()].iter().filter(|p| !is_terminating(p)) {
            if has_active_do_not_disrupt(pod, now) {
                plan.held.push(PodRef::of(pod));
            } else {
                plan.evict.push(PodRef::of(pod));
            }
        }
    }
    plan.evict.sort();
    plan.held.sort();
    plan.force_delete.sort_by(|a, b| a.pod.cmp(&b.pod));
    plan
}

/// A pod the drain waits for: not finished, and drainable.
pub fn is_waiting_eviction(pod: &Pod, now: Timestamp) -> bool {
    !is_terminal(pod) && is_drainable(pod, now)
}

/// Whether draining can move the pod at all: it does not tolerate the disrupted taint, is not a
/// mirror pod, and is not stuck terminating.
pub fn is_drainable(pod: &Pod, now: Timestamp) -> bool {
    !tolerates_disrupted_taint(pod) && !is_mirror(pod) && !is_stuck_terminating(pod, now)
}

/// Succeeded or Failed.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_stuck_terminating(pod: &Pod, now: Timestamp) -> bool {
    pod.metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| t.0.checked_add(STUCK_TERMINATING_AFTER).ok())
        .is_some_and(|stuck_at| now > stuck_at)
}

/// A static pod's API mirror: the kubelet owns it, the API cannot remove it.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION))
        || owner_kinds(pod).any(|kind| kind == "Node")
}

/// Pods that tolerate the disrupted taint chose to stay on the node until it goes.
pub fn tolerates_disrupted_taint(pod: &Pod) -> bool {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    nodewright_solver::pod::tolerates(tolerations, &labels::DISRUPTED_TAINT.to_taint())
}

pub fn is_daemon(pod: &Pod) -> bool {
    owner_kinds(pod).any(|kind| kind == "DaemonSet")
}

pub fn is_critical(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.priority_class_name.as_deref())
        .is_some_and(|class| CRITICAL_PRIORITY_CLASSES.contains(&class))
}

fn owner_kinds(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| o.kind.as_str())
}

/// `karpenter.sh/do-not-disrupt` is active: `"true"`, or a duration not yet elapsed since the pod
/// started. Any other value is ignored, as Karpenter ignores it.
pub fn has_active_do_not_disrupt(pod: &Pod, now: Timestamp) -> bool {
    let Some(value) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::DO_NOT_DISRUPT))
    else {
        return false;
    };
    if value == "true" {
        return true;
    }
    let Ok(duration) = parse_go_duration(value) else {
        return false;
    };
    let Some(started) = pod.status.as_ref().and_then(|s| s.start_time.as_ref()) else {
        // Not started yet: the protection has not begun to run out.
        return true;
    };
    SignedDuration::try_from(duration)
        .ok()
        .and_then(|d| started.0.checked_add(d).ok())
        .is_none_or(|until| now < until)
}

/// The grace period to delete `pod` with now, if the `deadline` no longer leaves time for a
/// graceful eviction: for a running pod, once fewer than its own grace seconds remain; for a
/// terminating one, when its current grace would outlast the deadline and a new delete would
/// end it sooner.
fn force_delete_grace(pod: &Pod, now: Timestamp, deadline: Timestamp) -> Option<u32> {
    let remaining = deadline.duration_since(now).as_secs();
    let grace = u32::try_from(remaining.clamp(1, i64::from(u32::MAX))).unwrap_or(1);
    let ends_at = now
        .checked_add(SignedDuration::from_secs(i64::from(grace)))
        .ok()?;
    if let Some(deleting) = &pod.metadata.deletion_timestamp {
        return (deleting.0 > deadline && ends_at < deleting.0).then_some(grace);
    }
    let own_grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_POD_GRACE_SECONDS);
    let start_by = deadline.checked_sub(SignedDuration::from_secs(own_grace)).ok()?;
    (now > start_by).then_some(grace)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

    use serde_json::{Value, json};

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn rfc3339(seconds: i64) -> String {
        nodewright_api::clock::rfc3339(at(seconds))
    }

    #[allow(clippy::needless_pass_by_value)] // json! literals read best passed by value
    fn pod(name: &str, extra: Value) -> Pod {
        let mut value = json!({
            "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}") },
            "spec": { "containers": [{ "name": "c" }] },
            "status": { "phase": "Running", "startTime": rfc3339(-3600) }
        });
        merge(&mut value, extra);
        serde_json::from_value(value).unwrap()
    }

    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(into), Value::Object(from)) => {
                for (key, value) in from {
                    merge(into.entry(key).or_insert(Value::Null), value);
                }
            }
            (into, from) => *into = from,
        }
    }

    fn daemon() -> Value {
        json!({ "metadata": { "ownerReferences": [
            { "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "ds-uid", "controller": true }
        ] } })
    }

    fn critical() -> Value {
        json!({ "spec": { "priorityClassName": "system-node-critical" } })
    }

    fn names(refs: &[PodRef]) -> Vec<&str> {
        refs.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn tiers_drain_in_karpenter_order_one_at_a_time() {
        let mut critical_daemon = daemon();
        merge(&mut critical_daemon, critical());
        let mut pods = vec![
            pod("critical-daemon", critical_daemon),
            pod("critical", critical()),
            pod("daemon", daemon()),
            pod("web-2", json!({})),
            pod("web-1", json!({})),
        ];
        let expected = [
            (Tier::NonCritical, vec!["web-1", "web-2"]),
            (Tier::NonCriticalDaemon, vec!["daemon"]),
            (Tier::Critical, vec!["critical"]),
            (Tier::CriticalDaemon, vec!["critical-daemon"]),
        ];
        for (tier, evicted) in expected {
            let plan = plan(&pods, at(0), None);
            assert_eq!(plan.active_tier, Some(tier));
            assert_eq!(names(&plan.evict), evicted);
            assert_eq!(plan.waiting, pods.len());
            assert!(plan.force_delete.is_empty());
            pods.retain(|p| !evicted.contains(&p.metadata.name.as_deref().unwrap()));
        }
        let done = plan(&pods, at(0), None);
        assert!(done.is_drained());
        assert_eq!(done.active_tier, None);
    }

    #[test]
    fn a_terminating_pod_holds_its_tier_without_a_second_eviction() {
        let pods = vec![
            pod("web", json!({ "metadata": { "deletionTimestamp": rfc3339(20) } })),
            pod("daemon", daemon()),
        ];
        let plan = plan(&pods, at(0), None);
        assert_eq!(plan.active_tier, Some(Tier::NonCritical));
        assert!(plan.evict.is_empty(), "{plan:?}");
        assert_eq!(plan.waiting, 2);
        assert!(!plan.is_drained());
    }

    #[test]
    fn pods_that_stay_are_ignored() {
        let pods = vec![
            pod(
                "tolerates-disrupted",
                json!({ "spec": { "tolerations": [{ "key": "karpenter.sh/disrupted", "operator": "Exists", "effect": "NoSchedule" }] } }),
            ),
            pod(
                "tolerates-everything",
                json!({ "spec": { "tolerations": [{ "operator": "Exists" }] } }),
            ),
            pod(
                "mirror",
                json!({ "metadata": { "annotations": { "kubernetes.io/config.mirror": "abc" } } }),
            ),
            pod(
                "static",
                json!({ "metadata": { "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": "n", "uid": "n" }] } }),
            ),
            pod("finished", json!({ "status": { "phase": "Succeeded" } })),
            pod("failed", json!({ "status": { "phase": "Failed" } })),
            pod(
                "stuck",
                json!({ "metadata": { "deletionTimestamp": rfc3339(-61) } }),
            ),
        ];
        let plan = plan(&pods, at(0), None);
        assert!(plan.is_drained(), "{plan:?}");
        assert!(plan.evict.is_empty());
    }

    #[test]
    fn a_toleration_for_another_effect_or_key_does_not_exempt() {
        let pods = vec![
            pod(
                "no-execute-only",
                json!({ "spec": { "tolerations": [{ "key": "karpenter.sh/disrupted", "operator": "Exists", "effect": "NoExecute" }] } }),
            ),
            pod(
                "other-key",
                json!({ "spec": { "tolerations": [{ "key": "example.com/gpu", "operator": "Exists" }] } }),
            ),
            pod(
                "recently-deleted",
                json!({ "metadata": { "deletionTimestamp": rfc3339(-59) } }),
            ),
        ];
        let plan = plan(&pods, at(0), None);
        assert_eq!(plan.waiting, 3);
        assert_eq!(names(&plan.evict), ["no-execute-only", "other-key"]);
    }

    #[test]
    fn do_not_disrupt_holds_a_pod_until_its_duration_passes() {
        let pods = vec![
            pod(
                "forever",
                json!({ "metadata": { "annotations": { "karpenter.sh/do-not-disrupt": "true" } } }),
            ),
            pod(
                "for-two-hours",
                json!({ "metadata": { "annotations": { "karpenter.sh/do-not-disrupt": "2h" } } }),
            ),
            pod(
                "for-ten-minutes",
                json!({ "metadata": { "annotations": { "karpenter.sh/do-not-disrupt": "10m" } } }),
            ),
            pod(
                "invalid",
                json!({ "metadata": { "annotations": { "karpenter.sh/do-not-disrupt": "soon" } } }),
            ),
        ];
        // The pods started an hour ago.
        let plan = plan(&pods, at(0), None);
        assert_eq!(names(&plan.held), ["for-two-hours", "forever"]);
        assert_eq!(names(&plan.evict), ["for-ten-minutes", "invalid"]);
        assert_eq!(plan.waiting, 4);
    }

    #[test]
    fn the_deadline_forces_deletion_early_enough_for_each_pods_grace() {
        let deadline = at(300);
        let pods = vec![
            pod(
                "quick",
                json!({ "spec": { "terminationGracePeriodSeconds": 10 } }),
            ),
            pod("default-grace", json!({})),
            pod(
                "protected",
                json!({ "metadata": { "annotations": { "karpenter.sh/do-not-disrupt": "true" } } }),
            ),
        ];
        // 60 s before the deadline only pods with a longer grace than 60 s would be forced.
        let early = plan(&pods, at(240), Some(deadline));
        assert!(early.force_delete.is_empty(), "{early:?}");
        assert_eq!(names(&early.evict), ["default-grace", "quick"]);

        // 29 s before: the 30 s pods must go now, with 29 s to stop; the 10 s pod can still be
        // evicted.
        let late = plan(&pods, at(271), Some(deadline));
        let forced: Vec<(&str, u32)> = late
            .force_delete
            .iter()
            .map(|f| (f.pod.name.as_str(), f.grace_period_seconds))
            .collect();
        assert_eq!(forced, [("default-grace", 29), ("protected", 29)]);
        assert_eq!(names(&late.evict), ["quick"]);
        assert_eq!(late.waiting, 3);

        // Past the deadline everything is deleted, with a grace period of 1 s (never 0).
        let past = plan(&pods, at(400), Some(deadline));
        assert_eq!(past.force_delete.len(), 3);
        assert!(past.force_delete.iter().all(|f| f.grace_period_seconds == 1));
        assert!(past.evict.is_empty());
    }

    #[test]
    fn a_terminating_pod_is_deleted_again_only_if_that_ends_it_sooner() {
        let deadline = at(100);
        let pods = vec![
            pod(
                "ends-after-deadline",
                json!({ "metadata": { "deletionTimestamp": rfc3339(400) } }),
            ),
            pod(
                "ends-before-deadline",
                json!({ "metadata": { "deletionTimestamp": rfc3339(90) } }),
            ),
        ];
        let plan = plan(&pods, at(50), Some(deadline));
        let forced: Vec<(&str, u32)> = plan
            .force_delete
            .iter()
            .map(|f| (f.pod.name.as_str(), f.grace_period_seconds))
            .collect();
        assert_eq!(forced, [("ends-after-deadline", 50)]);
        assert!(plan.evict.is_empty());
        assert_eq!(plan.waiting, 2);
        // Past the deadline, a pod already ending within the 1 s minimum is left alone.
        let past = super::plan(
            &[pod(
                "ending",
                json!({ "metadata": { "deletionTimestamp": rfc3339(101) } }),
            )],
            at(100),
            Some(at(90)),
        );
        assert!(past.force_delete.is_empty(), "{past:?}");
    }
}
