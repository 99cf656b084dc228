//! `consolidationPolicy: Balanced` (Karpenter's `balanced.go`): a move is made only when the
//! share of the NodePool's cost it saves outweighs the share of the NodePool's disruption it
//! causes. Pure.
//!
//! - A pod's **eviction cost** is `clamp(1 + pod-deletion-cost / 2^27 + priority / 2^25, -10,
//!   10)`; a node's **disruption cost** is `1 + Σ max(0, eviction cost)` over the pods that move.
//! - A NodePool's **totals** are its candidates' prices and disruption costs (every candidate,
//!   before the method's filters; candidates without a known price left out).
//! - A move's **score** for a pool is `(savings / pool cost) / (move disruption / pool
//!   disruption)`; approved when `score ≥ 1 / k`, `k` = [`BALANCED_K`] = 2. Savings are
//!   `Σ removed prices − Σ replacement prices`; a move over several pools gives each pool the
//!   share of the savings its nodes are of the removed price, and every Balanced pool among the
//!   sources must approve. Zero savings, or a pool costing nothing, never approve; a pool without
//!   disruption cost approves any saving.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use nodewright_catalog::Price;

/// Karpenter's `BalancedK`: the score must reach 1/k.
pub const BALANCED_K: f64 = 2.0;

/// The annotation that ranks pods for deletion by their ReplicaSet.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// How costly it is to evict `pod`, in [-10, 10]; 1 for a pod of default priority and no
/// deletion cost. An unparsable deletion cost is ignored (Karpenter logs and ignores it).
pub fn eviction_cost(pod: &Pod) -> f64 {
    let mut cost = 1.0;
    if let Some(deletion) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
    {
        cost += deletion / f64::from(1u32 << 27);
    }
    if let Some(priority) = pod.spec.as_ref().and_then(|s| s.priority) {
        cost += f64::from(priority) / f64::from(1u32 << 25);
    }
    cost.clamp(-10.0, 10.0)
}

/// A node's disruption cost: 1 for the node plus each moving pod's positive eviction cost.
pub fn disruption_cost<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> f64 {
    1.0 + pods.into_iter().map(|p| eviction_cost(p).max(0.0)).sum::<f64>()
}

/// One NodePool's totals the score is normalized by.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PoolTotals {
    pub cost: Price,
    pub disruption: f64,
}

impl PoolTotals {
    /// Adds a candidate (left out when its price is unknown, as Karpenter does).
    pub fn add(&mut self, price: Price, disruption: f64) {
        if price > Price::ZERO {
            self.cost = self.cost.saturating_add(price);
            self.disruption += disruption;
        }
    }
}

/// One Balanced pool's part in a move.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PoolShare {
    /// The price of the move's nodes of this pool.
    pub price: Price,
    pub disruption: f64,
}

/// The score of a move for one pool, or `None` when it can never be approved (no savings, or
/// a pool that costs nothing). `f64::INFINITY` when the pool has no disruption cost.
pub fn score(savings: f64, disruption: f64, totals: PoolTotals) -> Option<f64> {
    let pool_cost = totals.cost.as_usd();
    if pool_cost <= 0.0 || savings <= 0.0 {
        return None;
    }
    if totals.disruption <= 0.0 || disruption <= 0.0 {
        return Some(f64::INFINITY);
    }
    Some((savings / pool_cost) / (disruption / totals.disruption))
}

/// Whether a move saving `savings` ($/h) is approved by every Balanced pool among its sources.
/// `shares` holds only the Balanced pools' parts; `removed` is the price of all removed nodes
/// (every pool's). `Err` carries the failing pool's score for people.
pub fn approve(
    savings: Price,
    removed: Price,
    shares: &BTreeMap<String, PoolShare>,
    totals: &BTreeMap<String, PoolTotals>,
) -> Result<(), String> {
    let all_from_one_pool = shares.len() == 1 && shares.values().all(|s| s.price == removed);
    for (pool, share) in shares {
        let pool_savings = if all_from_one_pool || removed == Price::ZERO {
            savings.as_usd()
        } else {
            savings.as_usd() * (share.price.as_usd() / removed.as_usd())
        };
        let pool_totals = totals.get(pool).copied().unwrap_or_default();
        match score(pool_savings, share.disruption, pool_totals) {
            Some(score) if score >= 1.0 / BALANCED_K => {}
            Some(score) => {
                return Err(format!(
                    "NodePool {pool}: score {score:.3} < {:.3}",
                    1.0 / BALANCED_K
                ));
            }
            None => return Err(format!("NodePool {pool}: no savings")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(annotations: &serde_json::Value, priority: Option<i32>) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "p", "annotations": annotations },
            "spec": { "containers": [], "priority": priority }
        }))
        .unwrap()
    }

    fn usd(amount: f64) -> Price {
        Price::from_usd(amount)
    }

    #[test]
    fn eviction_cost_follows_deletion_cost_and_priority() {
        assert!((eviction_cost(&pod(&json!({}), None)) - 1.0).abs() < 1e-12);
        // 2^27 deletion cost adds 1; 2^25 priority adds 1.
        let both = pod(&json!({ POD_DELETION_COST: "134217728" }), Some(33_554_432));
        assert!((eviction_cost(&both) - 3.0).abs() < 1e-12);
        // system-cluster-critical (2,000,000,000) clamps at 10.
        assert!((eviction_cost(&pod(&json!({}), Some(2_000_000_000))) - 10.0).abs() < 1e-12);
        // Very negative deletion cost clamps at -10 and adds nothing to a node's cost.
        let cheap = pod(&json!({ POD_DELETION_COST: "-2147483647" }), None);
        assert!((eviction_cost(&cheap) + 10.0).abs() < 1e-12);
        assert!((disruption_cost([&cheap, &pod(&json!({}), None)]) - 2.0).abs() < 1e-12);
        // Unparsable: ignored.
        let bad = pod(&json!({ POD_DELETION_COST: "lots" }), None);
        assert!((eviction_cost(&bad) - 1.0).abs() < 1e-12);
    }

    /// A pool of four $0.40/h nodes, each with three default pods: cost $1.60/h, disruption
    /// 4 × (1 + 3) = 16. Moving one node is a quarter of the disruption, so it must save at
    /// least half a quarter of the cost: $0.20/h.
    #[test]
    fn savings_must_reach_half_the_disruption_share() {
        let totals = BTreeMap::from([(
            "default".to_owned(),
            PoolTotals {
                cost: usd(1.6),
                disruption: 16.0,
            },
        )]);
        let one_node = BTreeMap::from([(
            "default".to_owned(),
            PoolShare {
                price: usd(0.4),
                disruption: 4.0,
            },
        )]);
        // Delete: savings share 0.25, disruption share 0.25, score 1.
        assert!(approve(usd(0.4), usd(0.4), &one_node, &totals).is_ok());
        // Replace by a $0.20 node: share 0.125 / 0.25 = 0.5, exactly the threshold.
        assert!(approve(usd(0.2), usd(0.4), &one_node, &totals).is_ok());
        // Replace by a $0.30 node: 0.0625 / 0.25 = 0.25 < 0.5.
        let refused = approve(usd(0.1), usd(0.4), &one_node, &totals).unwrap_err();
        assert!(refused.contains("0.250"), "{refused}");
        assert!(approve(Price::ZERO, usd(0.4), &one_node, &totals).is_err());
    }

    /// Two pools in one move: savings split by the removed price. Pool a ($1.00/h, disruption
    /// 10) loses a $0.30 node with disruption 5; pool b (WhenEmptyOrUnderutilized) a $0.10 node.
    /// The move saves $0.20: a's part is 0.20 × 0.30 / 0.40 = 0.15, share 0.15 of the cost
    /// against 0.5 of the disruption: score 0.3, refused; saving $0.40 gives 0.6, approved.
    #[test]
    fn a_move_over_two_pools_splits_the_savings_by_price() {
        let totals = BTreeMap::from([(
            "a".to_owned(),
            PoolTotals {
                cost: usd(1.0),
                disruption: 10.0,
            },
        )]);
        let shares = BTreeMap::from([(
            "a".to_owned(),
            PoolShare {
                price: usd(0.3),
                disruption: 5.0,
            },
        )]);
        let refused = approve(usd(0.2), usd(0.4), &shares, &totals).unwrap_err();
        assert!(refused.contains("0.300"), "{refused}");
        assert!(approve(usd(0.4), usd(0.4), &shares, &totals).is_ok());
    }

    #[test]
    fn degenerate_totals() {
        assert_eq!(score(1.0, 1.0, PoolTotals::default()), None);
        let no_disruption = PoolTotals {
            cost: usd(1.0),
            disruption: 0.0,
        };
        assert_eq!(score(0.1, 1.0, no_disruption), Some(f64::INFINITY));
        let mut totals = PoolTotals::default();
        totals.add(Price::ZERO, 5.0);
        assert_eq!(totals, PoolTotals::default(), "unknown prices are left out");
    }
}
