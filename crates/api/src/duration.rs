//! Durations as the Karpenter API writes them: Go duration strings (`720h`, `1h30m`, `0s`) and the
//! nillable form that also accepts `Never`.
//!
//! The original text is kept, so objects round-trip byte for byte, and parsing is separate from
//! decoding, so `validate()` can report a malformed duration alongside every other problem.

use std::{fmt, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The literal that disables a nillable duration.
pub const NEVER: &str = "Never";

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {reason}")]
pub struct DurationError {
    pub text: String,
    pub reason: &'static str,
}

/// Parses a Go duration restricted to the units Kubernetes APIs accept in these fields
/// (`h`, `m`, `s`, `ms`), e.g. `1h30m`, `0s`, `1h0m0s`.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        text: text.to_owned(),
        reason,
    };
    if text.is_empty() {
        return Err(fail("empty"));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail("expected a number"));
        }
        let (number, tail) = rest.split_at(digits);
        let number: u128 = number.parse().map_err(|_| fail("number too large"))?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let millis_per_unit: u128 = match unit {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            "" => return Err(fail("missing unit")),
            _ => return Err(fail("unknown unit (use h, m, s or ms)")),
        };
        total = number
            .checked_mul(millis_per_unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| fail("duration too large"))?;
        rest = tail;
    }
    let millis = u64::try_from(total).map_err(|_| fail("duration too large"))?;
    Ok(Duration::from_millis(millis))
}

/// Formats a duration the way Go's `time.Duration.String()` does for whole seconds (`1h0m0s`).
pub fn format_go_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let millis = duration.subsec_millis();
    if total == 0 && millis == 0 {
        return "0s".into();
    }
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let seconds = if millis == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{millis:03}s")
    };
    if h > 0 {
        format!("{h}h{m}m{seconds}")
    } else if m > 0 {
        format!("{m}m{seconds}")
    } else {
        seconds
    }
}

/// A `metav1.Duration`: a Go duration string.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct GoDuration(String);

impl GoDuration {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn from_duration(duration: Duration) -> Self {
        Self(format_go_duration(duration))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_go_duration(&self.0)
    }
}

impl fmt::Debug for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A duration that may be `Never` (Karpenter's `NillableDuration`), e.g. `expireAfter`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct NillableDuration(String);

impl NillableDuration {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn never() -> Self {
        Self(NEVER.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_never(&self) -> bool {
        self.0 == NEVER
    }

    /// `Ok(None)` for `Never`, else the parsed duration.
    pub fn parse(&self) -> Result<Option<Duration>, DurationError> {
        if self.is_never() {
            Ok(None)
        } else {
            parse_go_duration(&self.0).map(Some)
        }
    }
}

impl fmt::Debug for NillableDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for NillableDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_go_duration("720h").unwrap(), Duration::from_hours(720));
        assert_eq!(parse_go_duration("1h30m").unwrap(), Duration::from_mins(90));
        assert_eq!(parse_go_duration("1h0m0s").unwrap(), Duration::from_hours(1));
        assert_eq!(parse_go_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("300s").unwrap(), Duration::from_mins(5));
        assert_eq!(parse_go_duration("1500ms").unwrap(), Duration::from_millis(1500));
        for bad in [
            "",
            "h",
            "10",
            "10d",
            "1.5h",
            "-1h",
            "1h 30m",
            "99999999999999999999999h",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::from_hours(1)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        let back = parse_go_duration(&format_go_duration(Duration::from_secs(7322))).unwrap();
        assert_eq!(back, Duration::from_secs(7322));
    }

    #[test]
    fn nillable_never() {
        assert_eq!(NillableDuration::never().parse().unwrap(), None);
        assert_eq!(
            NillableDuration::new("1h").parse().unwrap(),
            Some(Duration::from_hours(1))
        );
        assert!(NillableDuration::new("never").parse().is_err());
    }
}
