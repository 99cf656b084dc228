//! Disruption budgets (Karpenter's `GetAllowedDisruptionsByReason` and
//! `BuildDisruptionBudgetMapping`): per NodePool and reason, how many more nodes may be disrupted
//! now. Pure.
//!
//! - Each budget applies when its `reasons` is empty or names the reason, and — with a cron
//!   `schedule` (UTC) and `duration` — only while the last schedule hit lies within `duration`
//!   of now. An inactive budget does not limit.
//! - `nodes` is a count or a percentage of the pool's nodes, rounded up.
//! - Several budgets: the minimum. A malformed budget fails closed (0).
//! - Nodes already disrupting (deleting, or tainted `karpenter.sh/disrupted`) or NotReady count
//!   against it: allowed = max(0, minimum − disrupting).

use std::time::Duration;

use jiff::{Timestamp, tz::TimeZone};
use nodewright_api::{
    NodePool,
    nodepool::{Budget, DisruptionReason, parse_budget_nodes, parse_schedule},
};

/// Counts of one pool's nodes that budgets are computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolNodes {
    /// Managed, initialized nodes whose instance is not terminating.
    pub total: u64,
    /// Of them, the ones deleting, tainted disrupted, or NotReady.
    pub disrupting: u64,
}

/// [`allowed`] for every pool, by name; `counts` are the budget counts per NodePool.
pub fn allowed_by_pool<S: std::hash::BuildHasher>(
    pools: &[std::sync::Arc<NodePool>],
    reason: DisruptionReason,
    counts: &std::collections::HashMap<String, PoolNodes, S>,
    now: Timestamp,
) -> std::collections::BTreeMap<String, u64> {
    pools
        .iter()
        .map(|pool| {
            let name = kube::ResourceExt::name_any(pool.as_ref());
            let nodes = counts.get(&name).copied().unwrap_or_default();
            let allowed = allowed(pool, reason, nodes, now);
            (name, allowed)
        })
        .collect()
}

/// How many more nodes of `pool` may be disrupted for `reason` at `now`.
pub fn allowed(pool: &NodePool, reason: DisruptionReason, nodes: PoolNodes, now: Timestamp) -> u64 {
    let mut minimum = u64::MAX;
    for budget in &pool.spec.disruption.budgets {
        if !budget.reasons.is_empty() && !budget.reasons.contains(&reason) {
            continue;
        }
        match budget_value(budget, nodes.total, now) {
            Ok(Some(value)) => minimum = minimum.min(value),
            Ok(None) => {}
            Err(()) => minimum = 0,
        }
    }
    if minimum == u64::MAX {
        // No budget applies: nothing limits this reason (Karpenter's MaxInt32).
        return u64::MAX;
    }
    minimum.saturating_sub(nodes.disrupting)
}

/// The budget's limit now: `None` while its schedule is not active, `Err` when malformed.
fn budget_value(budget: &Budget, total: u64, now: Timestamp) -> Result<Option<u64>, ()> {
    let nodes = parse_budget_nodes(&budget.nodes).ok_or(())?;
    match (&budget.schedule, &budget.duration) {
        (None, None) => Ok(Some(nodes.allowed(total))),
        (Some(schedule), Some(duration)) => {
            let duration = duration.parse().map_err(|_| ())?;
            if is_active(schedule, duration, &TimeZone::UTC, now)? {
                Ok(Some(nodes.allowed(total)))
            } else {
                Ok(None)
            }
        }
        // One without the other is refused by the CRD; fail closed if it got through.
        _ => Err(()),
    }
}

/// Whether a schedule hit, read in `zone` (budgets: UTC; CapacityBuffer windows: their
/// `timeZone`), lies in `(now − duration, now]`: the window it opened is still open. Hits fall
/// on whole minutes; the window's minutes are checked newest first (a day's and an hour's
/// minutes are skipped at once when the day or hour does not match). `Err` when malformed.
pub(crate) fn is_active(
    schedule: &str,
    duration: Duration,
    zone: &TimeZone,
    now: Timestamp,
) -> Result<bool, ()> {
    let pattern = parse_schedule(schedule).map_err(|_| ())?.pattern;
    let window = jiff::SignedDuration::try_from(duration).map_err(|_| ())?;
    let start = now.checked_sub(window).map_err(|_| ())?;
    let minute = jiff::SignedDuration::from_mins(1);
    let mut at = now
        .to_zoned(zone.clone())
        .round(
            jiff::ZonedRound::new()
                .smallest(jiff::Unit::Minute)
                .mode(jiff::RoundMode::Trunc),
        )
        .map_err(|_| ())?;
    while at.timestamp() > start {
        let (year, month, day) = (i32::from(at.year()), at.month(), at.day());
        let day_matches = pattern
            .day_match(
                year,
                u32::try_from(month).map_err(|_| ())?,
                u32::try_from(day).map_err(|_| ())?,
            )
            .map_err(|_| ())?
            && pattern
                .month_match(u32::try_from(month).map_err(|_| ())?)
                .map_err(|_| ())?;
        let hour_matches = day_matches
            && pattern
                .hour_match(u32::try_from(at.hour()).map_err(|_| ())?)
                .map_err(|_| ())?;
        if hour_matches
            && pattern
                .minute_match(u32::try_from(at.minute()).map_err(|_| ())?)
                .map_err(|_| ())?
        {
            return Ok(true);
        }
        // Step back to the previous minute, or to the last minute of the previous hour or day
        // when this hour or day cannot match.
        let back = if !day_matches {
            jiff::SignedDuration::from_mins(i64::from(at.hour()) * 60 + i64::from(at.minute()) + 1)
        } else if !hour_matches {
            jiff::SignedDuration::from_mins(i64::from(at.minute()) + 1)
        } else {
            minute
        };
        at = at.checked_sub(back).map_err(|_| ())?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pool(budgets: &serde_json::Value) -> NodePool {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": { "name": "default" },
            "spec": {
                "template": { "spec": {
                    "requirements": [],
                    "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
                } },
                "disruption": { "budgets": budgets }
            }
        }))
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    const NOON: &str = "2026-01-05T12:00:00Z";

    fn nodes(total: u64, disrupting: u64) -> PoolNodes {
        PoolNodes { total, disrupting }
    }

    #[test]
    fn the_default_budget_is_ten_percent_rounded_up() {
        let pool: NodePool = pool(&json!([{ "nodes": "10%" }]));
        assert_eq!(allowed(&pool, DisruptionReason::Empty, nodes(1, 0), at(NOON)), 1);
        assert_eq!(allowed(&pool, DisruptionReason::Empty, nodes(10, 0), at(NOON)), 1);
        assert_eq!(allowed(&pool, DisruptionReason::Empty, nodes(11, 0), at(NOON)), 2);
        assert_eq!(allowed(&pool, DisruptionReason::Empty, nodes(0, 0), at(NOON)), 0);
    }

    #[test]
    fn disrupting_nodes_count_against_the_budget() {
        let pool = pool(&json!([{ "nodes": "3" }]));
        assert_eq!(
            allowed(&pool, DisruptionReason::Drifted, nodes(20, 1), at(NOON)),
            2
        );
        assert_eq!(
            allowed(&pool, DisruptionReason::Drifted, nodes(20, 5), at(NOON)),
            0
        );
    }

    #[test]
    fn the_minimum_of_the_budgets_that_name_the_reason() {
        let pool = pool(&json!([
            { "nodes": "50%" },
            { "nodes": "2", "reasons": ["Drifted"] },
            { "nodes": "0", "reasons": ["Underutilized"] }
        ]));
        // 50% of 9 = 4.5 → 5.
        assert_eq!(allowed(&pool, DisruptionReason::Empty, nodes(9, 0), at(NOON)), 5);
        assert_eq!(
            allowed(&pool, DisruptionReason::Drifted, nodes(9, 0), at(NOON)),
            2
        );
        assert_eq!(
            allowed(&pool, DisruptionReason::Underutilized, nodes(9, 0), at(NOON)),
            0
        );
    }

    #[test]
    fn a_scheduled_budget_limits_only_inside_its_window() {
        // Weekdays 09:00 UTC for 8 hours: nothing may be disrupted during business hours.
        let pool = pool(&json!([
            { "nodes": "10" },
            { "nodes": "0", "schedule": "0 9 * * 1-5", "duration": "8h" }
        ]));
        let reason = DisruptionReason::Underutilized;
        // 2026-01-05 is a Monday.
        assert_eq!(
            allowed(&pool, reason, nodes(10, 0), at("2026-01-05T08:59:00Z")),
            10
        );
        assert_eq!(
            allowed(&pool, reason, nodes(10, 0), at("2026-01-05T09:00:00Z")),
            0
        );
        assert_eq!(allowed(&pool, reason, nodes(10, 0), at(NOON)), 0);
        assert_eq!(
            allowed(&pool, reason, nodes(10, 0), at("2026-01-05T16:59:00Z")),
            0
        );
        assert_eq!(
            allowed(&pool, reason, nodes(10, 0), at("2026-01-05T17:01:00Z")),
            10
        );
        // Saturday: no hit.
        assert_eq!(
            allowed(&pool, reason, nodes(10, 0), at("2026-01-10T12:00:00Z")),
            10
        );
    }

    #[test]
    fn no_applicable_budget_means_no_limit_and_malformed_fails_closed() {
        let only_drift = pool(&json!([{ "nodes": "1", "reasons": ["Drifted"] }]));
        assert_eq!(
            allowed(&only_drift, DisruptionReason::Empty, nodes(4, 0), at(NOON)),
            u64::MAX
        );
        let malformed = pool(&json!([{ "nodes": "lots" }]));
        assert_eq!(
            allowed(&malformed, DisruptionReason::Empty, nodes(4, 0), at(NOON)),
            0
        );
        let bad_cron = pool(&json!([{ "nodes": "5", "schedule": "not a cron at all x", "duration": "1h" }]));
        assert_eq!(
            allowed(&bad_cron, DisruptionReason::Empty, nodes(4, 0), at(NOON)),
            0
        );
    }
}
