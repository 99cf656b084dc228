//! `karpenter_pods_startup_duration_seconds` and `karpenter_pods_bound_duration_seconds`: for
//! each pod, the time from its creation until it first became Ready, and until it was bound to a
//! node, each observed once.
//!
//! Observed at scrape time from the pod cache, like the other pod metrics ([`super::cluster`]):
//! a pod counts once its Ready (PodScheduled) condition is True, measured to that condition's
//! transition time, and is remembered by UID (forgotten when it leaves the cache) so it is
//! counted once. A pod that goes away between two scrapes before it was seen is not counted.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
};

use k8s_openapi::api::core::v1::Pod;

use prometheus_client::metrics::histogram::Histogram;

use super::summary::Summary;

/// The pods already counted, and where they are counted.
#[derive(Debug)]
pub struct PodStartups {
    started: Arc<Summary>,
    bound: Histogram,
    counted_started: Mutex<HashSet<String>>,
    counted_bound: Mutex<HashSet<String>>,
}

impl PodStartups {
    pub fn new(started: Arc<Summary>, bound: Histogram) -> Self {
        Self {
            started,
            bound,
            counted_started: Mutex::new(HashSet::new()),
            counted_bound: Mutex::new(HashSet::new()),
        }
    }

    /// Counts the pods that became Ready, or were bound, since the last call.
    pub fn record(&self, pods: &[Arc<Pod>]) {
        let present: HashSet<&str> = pods.iter().filter_map(|p| p.metadata.uid.as_deref()).collect();
        count_once(&self.counted_started, &present, pods, "Ready", |seconds| {
            self.started.observe(&[], seconds);
        });
        count_once(&self.counted_bound, &present, pods, "PodScheduled", |seconds| {
            self.bound.observe(seconds);
        });
    }
}

/// Observes, for each pod not counted before whose `condition` is True, the seconds from its
/// creation until then; forgets pods no longer `present`.
fn count_once(
    counted: &Mutex<HashSet<String>>,
    present: &HashSet<&str>,
    pods: &[Arc<Pod>],
    condition: &str,
    observe: impl Fn(f64),
) {
    let mut counted = counted.lock().unwrap_or_else(PoisonError::into_inner);
    counted.retain(|uid| present.contains(uid.as_str()));
    for pod in pods {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            continue;
        };
        if counted.contains(uid) {
            continue;
        }
        if let Some(seconds) = seconds_until(pod, condition) {
            observe(seconds);
            counted.insert(uid.to_owned());
        }
    }
}

/// Seconds from the pod's creation until its `condition` turned True, once it has.
pub fn seconds_until(pod: &Pod, condition: &str) -> Option<f64> {
    let created = pod.metadata.creation_timestamp.as_ref()?.0;
    let reached = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == condition && c.status == "True")?;
    let at = reached.last_transition_time.as_ref()?.0;
    Some(at.duration_since(created).as_secs_f64().max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, ready_at: Option<&str>) -> Arc<Pod> {
        let conditions = ready_at.map_or_else(
            || serde_json::json!([{"type": "Ready", "status": "False"}]),
            |at| serde_json::json!([{"type": "Ready", "status": "True", "lastTransitionTime": at}]),
        );
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": uid, "uid": uid, "creationTimestamp": "2026-11-24T00:00:00Z"},
                "status": {"conditions": conditions},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn each_pod_is_counted_once_when_it_becomes_ready() {
        let summary = Arc::new(Summary::new("s", "S", &[]));
        let startups = PodStartups::new(Arc::clone(&summary), Histogram::new([1.0]));
        startups.record(&[pod("a", None), pod("b", Some("2026-11-24T00:00:30Z"))]);
        startups.record(&[
            pod("a", Some("2026-11-24T00:01:00Z")),
            pod("b", Some("2026-11-24T00:00:30Z")),
        ]);
        let mut out = String::new();
        summary.encode(&mut out);
        assert!(out.contains("s_count 2\n"), "{out}");
        assert!(out.contains("s_sum 90\n"), "30 s and 60 s: {out}");
    }

    #[test]
    fn a_pod_not_ready_has_no_startup_time() {
        assert_eq!(seconds_until(&pod("a", None), "Ready"), None);
        let ready = pod("a", Some("2026-11-24T00:00:05Z"));
        assert_eq!(seconds_until(&ready, "Ready"), Some(5.0));
        assert_eq!(seconds_until(&ready, "PodScheduled"), None);
    }
}
