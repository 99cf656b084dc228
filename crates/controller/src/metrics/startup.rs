//! `karpenter_pods_startup_duration_seconds`: for each pod, the time from its creation until it
//! first became Ready, observed once.
//!
//! Observed at scrape time from the pod cache, like the other pod metrics ([`super::cluster`]):
//! a pod counts once its Ready condition is True, measured to that condition's transition time,
//! and is remembered by UID (forgotten when it leaves the cache) so it is counted once. A pod
//! that becomes Ready and goes away between two scrapes is not counted.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
};

use k8s_openapi::api::core::v1::Pod;

use super::summary::Summary;

/// The pods already counted, and the summary they are counted in.
#[derive(Debug)]
pub struct PodStartups {
    summary: Arc<Summary>,
    counted: Mutex<HashSet<String>>,
}

impl PodStartups {
    pub fn new(summary: Arc<Summary>) -> Self {
        Self {
            summary,
            counted: Mutex::new(HashSet::new()),
        }
    }

    /// Counts the pods that became Ready since the last call.
    pub fn record(&self, pods: &[Arc<Pod>]) {
        let mut counted = self.counted.lock().unwrap_or_else(PoisonError::into_inner);
        let present: HashSet<&str> = pods.iter().filter_map(|p| p.metadata.uid.as_deref()).collect();
        counted.retain(|uid| present.contains(uid.as_str()));
        for pod in pods {
            let Some(uid) = pod.metadata.uid.as_deref() else {
                continue;
            };
            if counted.contains(uid) {
                continue;
            }
            if let Some(seconds) = startup_seconds(pod) {
                self.summary.observe(&[], seconds);
                counted.insert(uid.to_owned());
            }
        }
    }
}

/// Seconds from the pod's creation until its Ready condition turned True, once it has.
pub fn startup_seconds(pod: &Pod) -> Option<f64> {
    let created = pod.metadata.creation_timestamp.as_ref()?.0;
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    let became_ready = ready.last_transition_time.as_ref()?.0;
    let elapsed = became_ready.duration_since(created);
    Some(elapsed.as_secs_f64().max(0.0))
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
        let startups = PodStartups::new(Arc::clone(&summary));
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
        assert_eq!(startup_seconds(&pod("a", None)), None);
        assert_eq!(
            startup_seconds(&pod("a", Some("2026-11-24T00:00:05Z"))),
            Some(5.0)
        );
    }
}
