//! Errors of the controllers, classified the way the loops react to them, and per-object
//! exponential backoff.

use std::{collections::HashMap, hash::Hasher, time::Duration};

use nodewright_cloudprovider::CloudProviderError;

/// What went wrong in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The cloud provider failed.
    #[error(transparent)]
    Cloud(#[from] CloudProviderError),
    /// An object's spec cannot be acted on until a user changes it.
    #[error("{kind} {name}: {field}: {message}")]
    InvalidSpec {
        kind: &'static str,
        name: String,
        field: String,
        message: String,
    },
    /// A controller loop stopped (a panic): the controllers stop rather than run half-way.
    #[error("controller loop stopped: {0}")]
    LoopStopped(String),
    /// An object could not be encoded for a write.
    #[error("encoding {what}: {message}")]
    Encode { what: String, message: String },
}

/// How a loop reacts to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Wait for the object to change; retrying cannot help.
    InvalidSpec,
    /// The cloud has no capacity for what was asked: the offerings are marked unavailable and the
    /// next round chooses others, after a short requeue.
    Capacity,
    /// The object or instance is gone: nothing left to do.
    Gone,
    /// Anything else: retry with backoff.
    Transient,
}

impl ControllerError {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidSpec { .. }
            | Self::Encode { .. }
            | Self::Cloud(CloudProviderError::CreateError { .. }) => ErrorClass::InvalidSpec,
            Self::Cloud(CloudProviderError::InsufficientCapacity { .. }) => ErrorClass::Capacity,
            Self::Cloud(CloudProviderError::NodeClaimNotFound(_)) => ErrorClass::Gone,
            Self::Kube(kube::Error::Api(status)) if status.code == 404 => ErrorClass::Gone,
            Self::Kube(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
                ErrorClass::InvalidSpec
            }
            Self::Cloud(_) | Self::Kube(_) | Self::LoopStopped(_) => ErrorClass::Transient,
        }
    }
}

/// The error of a 409 Conflict (stale resourceVersion or lost race), which a reconcile answers by
/// re-reading and trying again.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// The error of a 404 Not Found.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Per-key exponential backoff with jitter: 1 s, 2 s, 4 s ... up to 5 minutes, each ±10%, reset on
/// success. The jitter is derived from the key and attempt (no global randomness), so runs on a
/// simulated clock are reproducible while replicas and objects still spread out.
#[derive(Debug, Default)]
pub struct Backoff {
    attempts: HashMap<String, u32>,
}

const BASE: Duration = Duration::from_secs(1);
const CAP: Duration = Duration::from_mins(5);

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before the next try.
    pub fn failed(&mut self, key: &str) -> Duration {
        let attempt = self.attempts.entry(key.to_owned()).or_insert(0);
        *attempt = attempt.saturating_add(1);
        delay(key, *attempt)
    }

    /// Forgets the failures of `key`.
    pub fn succeeded(&mut self, key: &str) {
        self.attempts.remove(key);
    }

    /// Failures recorded for `key` since its last success.
    pub fn attempts(&self, key: &str) -> u32 {
        self.attempts.get(key).copied().unwrap_or(0)
    }
}

fn delay(key: &str, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let raw = BASE.saturating_mul(1 << exponent).min(CAP);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(key.as_bytes());
    hasher.write_u32(attempt);
    // A factor in [0.9, 1.1).
    let jitter = 900 + hasher.finish() % 200;
    raw.mul_f64(f64::from(u32::try_from(jitter).unwrap_or(1000)) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_caps_and_resets() {
        let mut backoff = Backoff::default();
        let first = backoff.failed("nodeclaim/a");
        assert!(
            first >= Duration::from_millis(900) && first < Duration::from_millis(1100),
            "{first:?}"
        );
        let second = backoff.failed("nodeclaim/a");
        assert!(
            second >= Duration::from_millis(1800) && second < Duration::from_millis(2200),
            "{second:?}"
        );
        for _ in 0..30 {
            backoff.failed("nodeclaim/a");
        }
        let capped = backoff.failed("nodeclaim/a");
        assert!(
            capped <= CAP.mul_f64(1.1) && capped >= CAP.mul_f64(0.9),
            "{capped:?}"
        );
        backoff.succeeded("nodeclaim/a");
        assert_eq!(backoff.attempts("nodeclaim/a"), 0);
        // Other keys are independent.
        assert_eq!(backoff.attempts("nodeclaim/b"), 0);
    }

    #[test]
    fn errors_are_classified_for_the_loops() {
        let capacity = ControllerError::Cloud(CloudProviderError::InsufficientCapacity {
            node_claim: "a".into(),
            offerings: vec![],
        });
        assert_eq!(capacity.class(), ErrorClass::Capacity);
        let gone = ControllerError::Cloud(CloudProviderError::NodeClaimNotFound("i-1".into()));
        assert_eq!(gone.class(), ErrorClass::Gone);
        let invalid = ControllerError::InvalidSpec {
            kind: "NodePool",
            name: "default".into(),
            field: "spec.template.spec.nodeClassRef".into(),
            message: "not found".into(),
        };
        assert_eq!(invalid.class(), ErrorClass::InvalidSpec);
        assert!(
            invalid
                .to_string()
                .contains("NodePool default: spec.template.spec.nodeClassRef")
        );
    }
}
