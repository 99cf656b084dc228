//! Fault injection for tests: fail a fraction of resource requests with 409, 429 or 500, delay a
//! fraction of them, and (through the store and the server handle) drop every watch or restart
//! the server. Discovery and OpenAPI requests are never faulted, so clients can always find their
//! way back.

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use crate::error::{ApiError, Subject};

/// What to inject.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// Fraction (0..=1) of resource requests answered with `fail_code` instead of being served.
    pub fail_ratio: f64,
    /// 409, 429 or 500 (anything else is served as 500).
    pub fail_code: u16,
    /// Only fail writes (POST, PUT, PATCH, DELETE), never reads.
    pub writes_only: bool,
    /// Fraction (0..=1) of resource requests delayed by `delay`.
    pub delay_ratio: f64,
    /// The injected delay.
    pub delay: Duration,
}

/// What the server should do with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Serve,
    /// Wait, then serve it.
    Delay(Duration),
    /// Answer with this error.
    Fail(ApiError),
}

/// The fault injector shared by the server.
#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<(FaultConfig, u64)>,
}

impl Faults {
    /// Replaces the configuration.
    pub fn set(&self, config: FaultConfig) {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).0 = config;
    }

    /// Stops injecting.
    pub fn clear(&self) {
        self.set(FaultConfig::default());
    }

    /// The current configuration.
    pub fn config(&self) -> FaultConfig {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// Decides the fate of a resource request.
    pub fn verdict(&self, is_write: bool) -> Verdict {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (config, state) = &mut *guard;
        if config.fail_ratio <= 0.0 && config.delay_ratio <= 0.0 {
            return Verdict::Serve;
        }
        let fail_roll = next_unit(state);
        let delay_roll = next_unit(state);
        if config.fail_ratio > 0.0 && fail_roll < config.fail_ratio && (is_write || !config.writes_only) {
            return Verdict::Fail(injected(config.fail_code));
        }
        if config.delay_ratio > 0.0 && delay_roll < config.delay_ratio {
            return Verdict::Delay(config.delay);
        }
        Verdict::Serve
    }
}

fn injected(code: u16) -> ApiError {
    match code {
        409 => ApiError::conflict(
            Subject {
                resource: "injected".into(),
                name: "fault".into(),
                ..Subject::default()
            },
            "the object has been modified; please apply your changes to the latest version and try again",
        ),
        429 => ApiError::TooManyRequests {
            message: "injected fault: too many requests, please try again later".into(),
            causes: Vec::new(),
        },
        _ => ApiError::Internal("injected fault".into()),
    }
}

/// A uniform number in [0, 1) from a splitmix64 sequence (deterministic for a test run).
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    #[allow(clippy::cast_precision_loss)] // 53 bits are plenty for a ratio
    let unit = (z >> 11) as f64 / (1_u64 << 53) as f64;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_fails_about_that_fraction() {
        let faults = Faults::default();
        assert_eq!(faults.verdict(true), Verdict::Serve);
        faults.set(FaultConfig {
            fail_ratio: 0.5,
            fail_code: 429,
            ..FaultConfig::default()
        });
        let failed = (0..1000)
            .filter(|_| matches!(faults.verdict(false), Verdict::Fail(e) if e.code() == 429))
            .count();
        assert!((400..600).contains(&failed), "{failed}");
        faults.set(FaultConfig {
            fail_ratio: 1.0,
            fail_code: 500,
            writes_only: true,
            ..FaultConfig::default()
        });
        assert_eq!(faults.verdict(false), Verdict::Serve);
        assert!(matches!(faults.verdict(true), Verdict::Fail(e) if e.code() == 500));
        faults.clear();
        assert_eq!(faults.verdict(true), Verdict::Serve);
    }
}
