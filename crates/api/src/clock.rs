//! The injectable time source every component reads "now" from: the wall clock in production, a
//! test's or the simulator's clock elsewhere, so hours of simulated time run in milliseconds.

use std::{fmt, sync::Arc};

use jiff::Timestamp;

/// A time source: the wall clock by default, or a test's or the simulator's clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self(Arc::new(Timestamp::now))
    }

    /// A clock that calls `now` for the time.
    pub fn from_fn(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }

    /// The current time as Kubernetes writes it (RFC 3339, whole seconds, UTC).
    pub fn now_rfc3339(&self) -> String {
        rfc3339(self.now())
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

/// A clock a test moves by hand, for scenarios of hours that run in milliseconds.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<std::sync::Mutex<Timestamp>>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(std::sync::Mutex::new(start)))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves the clock forward (saturating at the end of representable time).
    pub fn advance(&self, by: jiff::SignedDuration) {
        let mut now = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *now = now.checked_add(by).unwrap_or(Timestamp::MAX);
    }

    /// A [`Clock`] reading this one.
    pub fn clock(&self) -> Clock {
        let this = self.clone();
        Clock::from_fn(move || this.now())
    }
}

/// RFC 3339 in whole seconds, `2024-05-01T10:00:00Z`, as Kubernetes writes timestamps.
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let manual = ManualClock::new(start);
        let clock = manual.clock();
        assert_eq!(clock.now(), start);
        manual.advance(jiff::SignedDuration::from_secs(90));
        assert_eq!(clock.now_rfc3339(), "2026-01-01T00:01:30Z");
    }
}
