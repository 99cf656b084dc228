//! Liveness and readiness.
//!
//! - **Live** (`/healthz`): the process answers HTTP. A wedged runtime cannot answer, so the
//!   kubelet restarts it.
//! - **Ready** (`/readyz`): the controller's caches have synced (a controller attaches itself
//!   with [`super::observe`] only after `wait_synced`), and — on the leader, the only replica
//!   that calls the cloud — the cloud provider answers. Any answer counts, errors that are
//!   answers included (not found, no capacity); only failures to reach or use the provider's API
//!   ([`CloudProviderError::Other`]) do not. The provider's last answer is taken from the calls
//!   the controllers make anyway; only when none was made within [`FRESH`] does readiness ask
//!   itself, with a `list`, at most once per probe and bounded by [`PROBE_TIMEOUT`].
//!
//! Freshness is measured on the monotonic wall clock: it is about the process's real exchange
//! with the provider, which the kubelet probes in real time.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use nodewright_cloudprovider::{CloudProvider, CloudProviderError};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::gauge::ConstGauge,
};

use super::cloud::MeteredCloud;
use crate::{context::Context, leader::Leadership};

/// A provider answer older than this is not evidence that it answers now.
pub const FRESH: Duration = Duration::from_mins(1);
/// How long readiness waits for its own provider call.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the process is ready, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotReady(String),
}

/// The last thing the cloud provider did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ProviderOutcome {
    Answered,
    Failed(String),
}

#[derive(Debug, Default)]
struct State {
    attached: Option<Attached>,
    provider: Option<(Instant, ProviderOutcome)>,
}

#[derive(Clone)]
struct Attached {
    leadership: Leadership,
    cloud: Arc<dyn CloudProvider>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("leading", &self.leadership.is_leader())
            .field("cloud", &self.cloud.name())
            .finish()
    }
}

/// The process's health. Clones share it.
#[derive(Debug, Clone)]
pub struct Health {
    state: Arc<Mutex<State>>,
    started: Instant,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            started: Instant::now(),
        }
    }
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain data, valid after any panic elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The controller's caches are synced; readiness now follows its leadership and provider.
    pub(super) fn attach(&self, ctx: &Context, leadership: Leadership) {
        self.lock().attached = Some(Attached {
            leadership,
            cloud: Arc::clone(&ctx.cloud),
        });
    }

    /// Whether a controller with synced caches is attached.
    pub fn is_synced(&self) -> bool {
        self.lock().attached.is_some()
    }

    /// Records a provider call's result: any answer but [`CloudProviderError::Other`] shows the
    /// provider is reachable.
    pub fn record_provider<T>(&self, result: &Result<T, CloudProviderError>) {
        let outcome = match result {
            Err(CloudProviderError::Other(error)) => ProviderOutcome::Failed(error.to_string()),
            _ => ProviderOutcome::Answered,
        };
        self.lock().provider = Some((Instant::now(), outcome));
    }

    /// Readiness now; may call the provider (see the module docs).
    pub async fn readiness(&self) -> Readiness {
        let (attached, provider) = {
            let state = self.lock();
            (state.attached.clone(), state.provider.clone())
        };
        let Some(attached) = attached else {
            return Readiness::NotReady("the controller's caches have not synced yet".to_owned());
        };
        if !attached.leadership.is_leader() {
            return Readiness::Ready;
        }
        if let Some(readiness) = judge_provider(provider.as_ref(), Instant::now()) {
            return readiness;
        }
        let probe = MeteredCloud::new(Arc::clone(&attached.cloud), "readiness");
        match tokio::time::timeout(PROBE_TIMEOUT, probe.list()).await {
            // The call recorded its own outcome through the metered wrapper.
            Ok(result) => match result {
                Err(CloudProviderError::Other(error)) => {
                    Readiness::NotReady(format!("the cloud provider does not answer: {error}"))
                }
                _ => Readiness::Ready,
            },
            Err(_) => Readiness::NotReady(format!(
                "the cloud provider did not answer within {}s",
                PROBE_TIMEOUT.as_secs()
            )),
        }
    }

    /// The collector of `karpenter_cluster_state_synced` and `..._unsynced_time_seconds`.
    pub(super) fn collector(&self) -> SyncCollector {
        SyncCollector(self.clone())
    }
}

/// What the provider's last outcome says, or `None` when it is too old to say anything.
fn judge_provider(last: Option<&(Instant, ProviderOutcome)>, now: Instant) -> Option<Readiness> {
    let (at, outcome) = last?;
    if now.saturating_duration_since(*at) > FRESH {
        return None;
    }
    Some(match outcome {
        ProviderOutcome::Answered => Readiness::Ready,
        ProviderOutcome::Failed(message) => {
            Readiness::NotReady(format!("the cloud provider does not answer: {message}"))
        }
    })
}

/// Scrape-time sync gauges.
#[derive(Debug)]
pub(super) struct SyncCollector(Health);

impl Collector for SyncCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let synced = self.0.is_synced();
        let unsynced = if synced {
            0.0
        } else {
            self.0.started.elapsed().as_secs_f64()
        };
        let gauge = ConstGauge::new(i64::from(synced));
        gauge.encode(encoder.encode_descriptor(
            "karpenter_cluster_state_synced",
            "1 when the controller's caches have synced, 0 before.",
            None,
            gauge.metric_type(),
        )?)?;
        let gauge = ConstGauge::new(unsynced);
        gauge.encode(encoder.encode_descriptor(
            "karpenter_cluster_state_unsynced_time_seconds",
            "Time since the process started while the caches have not synced; 0 once synced.",
            None,
            gauge.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_answer_makes_the_leader_ready_and_a_fresh_failure_not() {
        let now = Instant::now();
        let answered = (now, ProviderOutcome::Answered);
        assert_eq!(judge_provider(Some(&answered), now), Some(Readiness::Ready));
        let failed = (now, ProviderOutcome::Failed("throttled".to_owned()));
        assert!(matches!(
            judge_provider(Some(&failed), now),
            Some(Readiness::NotReady(message)) if message.contains("throttled")
        ));
    }

    #[test]
    fn an_old_or_missing_outcome_says_nothing() {
        let now = Instant::now();
        assert_eq!(judge_provider(None, now), None);
        let later = now + FRESH + Duration::from_secs(1);
        assert_eq!(
            judge_provider(Some(&(now, ProviderOutcome::Answered)), later),
            None
        );
    }

    #[tokio::test]
    async fn not_ready_until_a_controller_attaches() {
        let health = Health::default();
        assert!(matches!(health.readiness().await, Readiness::NotReady(m) if m.contains("synced")));
        assert!(!health.is_synced());
    }

    #[test]
    fn only_other_errors_count_as_the_provider_not_answering() {
        let health = Health::default();
        health.record_provider::<()>(&Err(CloudProviderError::NodeClaimNotFound("x".to_owned())));
        assert_eq!(
            health.lock().provider.as_ref().map(|p| p.1.clone()),
            Some(ProviderOutcome::Answered)
        );
        health.record_provider::<()>(&Err(CloudProviderError::other(std::io::Error::other("down"))));
        assert_eq!(
            health.lock().provider.as_ref().map(|p| p.1.clone()),
            Some(ProviderOutcome::Failed("down".to_owned()))
        );
    }
}
