//! Scheduled sizes: which `replicas` a CapacityBuffer asks for at a moment. Pure.
//!
//! A window opens at each hit of its cron `schedule`, read in the buffer's `timeZone` (UTC when
//! unset), and stays open for its `duration`; the window test is the disruption budgets' own
//! ([`crate::disruption::budgets::is_active`]). While windows are open the largest of their
//! `replicas` applies, otherwise `spec.replicas`.

use jiff::{Timestamp, tz::TimeZone};
use nodewright_api::CapacityBufferSpec;

use crate::disruption::budgets::is_active;

/// A field of the spec that cannot be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadField {
    pub field: String,
    pub message: String,
}

/// The replicas asked for at `now`: the largest open window's, else `spec.replicas`.
pub fn replicas_at(spec: &CapacityBufferSpec, now: Timestamp) -> Result<Option<i32>, BadField> {
    if spec.schedules.is_empty() {
        return Ok(spec.replicas);
    }
    let zone = match &spec.time_zone {
        None => TimeZone::UTC,
        Some(name) => TimeZone::get(name).map_err(|error| BadField {
            field: "spec.timeZone".to_owned(),
            message: format!("{name:?} is not an IANA time zone ({error})"),
        })?,
    };
    let mut open: Option<i32> = None;
    for (index, window) in spec.schedules.iter().enumerate() {
        let bad = |what: &str, value: &str| BadField {
            field: format!("spec.schedules[{index}].{what}"),
            message: format!("{value:?} is not a valid {what}"),
        };
        let duration = window
            .duration
            .parse()
            .map_err(|_| bad("duration", window.duration.as_str()))?;
        if is_active(&window.schedule, duration, &zone, now)
            .map_err(|()| bad("schedule", &window.schedule))?
        {
            open = Some(open.map_or(window.replicas, |o| o.max(window.replicas)));
        }
    }
    Ok(open.or(spec.replicas))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(extra: &serde_json::Value) -> CapacityBufferSpec {
        let mut value = json!({ "podTemplateRef": { "name": "chunk" }, "replicas": 5 });
        if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn weekday_working_hours_in_a_time_zone() {
        let spec = spec(&json!({ "timeZone": "America/New_York", "schedules": [
            { "schedule": "0 8 * * 1-5", "duration": "11h", "replicas": 30 }
        ] }));
        // 2026-01-05 is a Monday; New York is UTC-5 in January.
        assert_eq!(
            replicas_at(&spec, at("2026-01-05T12:59:00Z")),
            Ok(Some(5)),
            "07:59 local"
        );
        assert_eq!(
            replicas_at(&spec, at("2026-01-05T13:00:00Z")),
            Ok(Some(30)),
            "08:00 local"
        );
        assert_eq!(
            replicas_at(&spec, at("2026-01-05T23:59:00Z")),
            Ok(Some(30)),
            "18:59 local"
        );
        assert_eq!(
            replicas_at(&spec, at("2026-01-06T00:00:00Z")),
            Ok(Some(5)),
            "19:00 local"
        );
        assert_eq!(
            replicas_at(&spec, at("2026-01-10T15:00:00Z")),
            Ok(Some(5)),
            "Saturday"
        );
    }

    #[test]
    fn the_largest_open_window_wins_and_no_window_means_spec_replicas() {
        let spec = spec(&json!({ "schedules": [
            { "schedule": "0 8 * * *", "duration": "10h", "replicas": 10 },
            { "schedule": "0 12 * * *", "duration": "1h", "replicas": 20 }
        ] }));
        assert_eq!(replicas_at(&spec, at("2026-01-05T09:00:00Z")), Ok(Some(10)));
        assert_eq!(replicas_at(&spec, at("2026-01-05T12:30:00Z")), Ok(Some(20)));
        assert_eq!(replicas_at(&spec, at("2026-01-05T20:00:00Z")), Ok(Some(5)));
    }

    #[test]
    fn bad_fields_are_named() {
        let zone = spec(&json!({ "timeZone": "Mars/Olympus", "schedules": [
            { "schedule": "0 8 * * *", "duration": "1h", "replicas": 1 }
        ] }));
        assert_eq!(
            replicas_at(&zone, at("2026-01-05T09:00:00Z")).map_err(|e| e.field),
            Err("spec.timeZone".to_owned())
        );
        let cron = spec(&json!({ "schedules": [
            { "schedule": "0 8 * * *", "duration": "1h", "replicas": 1 },
            { "schedule": "0 25 * * *", "duration": "1h", "replicas": 1 }
        ] }));
        assert_eq!(
            replicas_at(&cron, at("2026-01-05T09:00:00Z")).map_err(|e| e.field),
            Err("spec.schedules[1].schedule".to_owned())
        );
    }
}
