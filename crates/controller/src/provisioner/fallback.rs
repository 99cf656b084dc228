//! NodePool weights as a capacity fallback (the source document's spot pool at weight 100, an
//! on-demand pool at weight 50): when a NodeClaim of a NodePool fails to launch for lack of
//! capacity, that NodePool ranks below every other one for the unavailable-offerings TTL, so
//! the next round puts its pods on the next pool at once.
//!
//! Why the whole NodePool and not only the offerings the claim tried: the cloud returns
//! insufficient capacity only when every offering the claim listed failed, and a claim lists the
//! pool's cheapest fitting types (60 at most, EC2 CreateFleet's limit). Marking those offerings
//! alone makes the next round try the next 60 and so on: with a few hundred spot types that is
//! a chain of failed NodeClaims, minutes long, before the fallback pool is used (the field
//! reports' "ICE meant 9 min passed before the on-demand fallback", kubernetes-sigs/karpenter
//! #1899 and #2275). A demoted pool still takes pods no other pool can take, and a claim of it
//! that launches lifts the demotion. When the TTL ends the pool ranks by its weight again; pods
//! already running stay where they are (moving them to cheaper capacity is consolidation's job).
//!
//! The provisioner infers the failure from what it can see: a NodeClaim it created is deleted
//! before it launched while the unavailable-offerings cache holds an offering of one of its
//! instance types (the lifecycle marks them just before deleting the claim).

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use nodewright_api::NodeClaim;
use nodewright_cloudprovider::OfferingKey;
use nodewright_solver::PoolInput;

/// A NodeClaim this provisioner created and has not seen launch.
#[derive(Debug, Clone)]
struct Unlaunched {
    nodepool: String,
    /// The claim's `node.kubernetes.io/instance-type In` values.
    instance_types: HashSet<String>,
    created: Timestamp,
}

/// What became of a watched claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Not launched yet, or not in the cache yet.
    Waiting,
    Launched,
    /// Deleted before launch, with offerings of its types marked out of capacity.
    OutOfCapacity,
    /// Deleted before launch for another reason, or watched for too long.
    Forgotten,
}

/// The provisioner's memory of capacity failures.
#[derive(Debug, Default)]
pub(crate) struct CapacityFallback {
    unlaunched: HashMap<String, Unlaunched>,
    /// NodePools that rank last, and until when.
    demoted: HashMap<String, Timestamp>,
}

impl CapacityFallback {
    /// Remembers a NodeClaim just created.
    pub(crate) fn watch(&mut self, claim: &NodeClaim, now: Timestamp) {
        let Some(nodepool) = claim.nodepool_name() else {
            return;
        };
        self.unlaunched.insert(
            claim.name_any(),
            Unlaunched {
                nodepool: nodepool.to_owned(),
                instance_types: instance_types(claim),
                created: now,
            },
        );
    }

    /// Reads what became of the watched claims: a claim deleted for capacity demotes its
    /// NodePool until `now + ttl`, a launched claim lifts its NodePool's demotion. `undelivered`
    /// are the claims created that the watch cache has not shown yet (absent from `stored`
    /// without being gone). `forget_after` bounds how long a claim is watched (the launch TTL:
    /// liveness deletes it by then).
    pub(crate) fn observe(
        &mut self,
        stored: &[std::sync::Arc<NodeClaim>],
        undelivered: &HashSet<String>,
        unavailable: &[OfferingKey],
        now: Timestamp,
        ttl: SignedDuration,
        forget_after: SignedDuration,
    ) {
        self.demoted.retain(|_, end| *end > now);
        if self.unlaunched.is_empty() {
            return;
        }
        let by_name: HashMap<String, &NodeClaim> =
            stored.iter().map(|c| (c.name_any(), c.as_ref())).collect();
        let out_of_capacity: HashSet<&str> = unavailable.iter().map(|o| o.instance_type.as_str()).collect();
        let until = now.checked_add(ttl).unwrap_or(Timestamp::MAX);
        let mut finished = Vec::new();
        for (name, watched) in &self.unlaunched {
            let stored = by_name.get(name).copied();
            let gone = stored.is_none() && !undelivered.contains(name);
            let outcome = outcome(watched, stored, gone, &out_of_capacity, now, forget_after);
            match outcome {
                Outcome::Waiting => continue,
                Outcome::Launched => {
                    self.demoted.remove(&watched.nodepool);
                }
                Outcome::OutOfCapacity => {
                    tracing::info!(
                        nodepool = %watched.nodepool,
                        nodeclaim = %name,
                        %until,
                        "NodePool out of capacity: other NodePools rank before it until the unavailable TTL ends"
                    );
                    self.demoted.insert(watched.nodepool.clone(), until);
                }
                Outcome::Forgotten => {}
            }
            finished.push(name.clone());
        }
        for name in finished {
            self.unlaunched.remove(&name);
        }
    }

    /// Ranks the demoted NodePools of the round below every other one (keeping their order
    /// among themselves). The solver tries NodePools by weight; the weights changed here are
    /// the round's copies, never written back.
    pub(crate) fn demote(&self, pools: &mut [PoolInput], now: Timestamp) {
        let is_demoted = |pool: &PoolInput| {
            self.demoted
                .get(&pool.nodepool.name_any())
                .is_some_and(|end| *end > now)
        };
        if !pools.iter().any(is_demoted) {
            return;
        }
        let weight = |pool: &PoolInput| i64::from(pool.nodepool.spec.weight.unwrap_or(0));
        let lowest_kept = pools
            .iter()
            .filter(|p| !is_demoted(p))
            .map(weight)
            .min()
            .unwrap_or(0);
        let highest_demoted = pools
            .iter()
            .filter(|p| is_demoted(p))
            .map(weight)
            .max()
            .unwrap_or(0);
        // Shift the demoted pools below the lowest kept one; i64 arithmetic cannot overflow on
        // i32 inputs, and the result is clamped back into i32.
        let shift = highest_demoted - lowest_kept + 1;
        for pool in pools.iter_mut().filter(|p| is_demoted(p)) {
            let shifted = (weight(pool) - shift).max(i64::from(i32::MIN));
            pool.nodepool.spec.weight = Some(i32::try_from(shifted).unwrap_or(i32::MIN));
        }
    }

    /// Whether a NodePool ranks last now (for tests and explanations).
    #[cfg(test)]
    fn is_demoted(&self, nodepool: &str, now: Timestamp) -> bool {
        self.demoted.get(nodepool).is_some_and(|end| *end > now)
    }
}

/// The claim's `node.kubernetes.io/instance-type In` values.
fn instance_types(claim: &NodeClaim) -> HashSet<String> {
    claim.listed_instance_types().map(str::to_owned).collect()
}

fn outcome(
    watched: &Unlaunched,
    stored: Option<&NodeClaim>,
    gone: bool,
    out_of_capacity: &HashSet<&str>,
    now: Timestamp,
    forget_after: SignedDuration,
) -> Outcome {
    let launched = stored
        .and_then(|c| c.status.as_ref())
        .and_then(|s| s.provider_id.as_ref())
        .is_some_and(|id| !id.is_empty());
    if launched {
        return Outcome::Launched;
    }
    let deleted = gone || stored.is_some_and(|c| c.metadata.deletion_timestamp.is_some());
    if deleted {
        let capacity = watched
            .instance_types
            .iter()
            .any(|t| out_of_capacity.contains(t.as_str()));
        return if capacity {
            Outcome::OutOfCapacity
        } else {
            Outcome::Forgotten
        };
    }
    let age = now.duration_since(watched.created);
    if age > forget_after {
        Outcome::Forgotten
    } else {
        Outcome::Waiting
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use nodewright_api::{NodeClaimStatus, NodePool};
    use nodewright_catalog::CapacityType;
    use serde_json::json;

    use super::*;

    const TTL: SignedDuration = SignedDuration::from_mins(3);
    const FORGET: SignedDuration = SignedDuration::from_mins(5);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + seconds).unwrap()
    }

    fn claim(name: &str, pool: &str, types: &[&str]) -> NodeClaim {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": {"name": name, "labels": {"karpenter.sh/nodepool": pool}},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [
                    {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": types},
                ],
            }
        }))
        .unwrap()
    }

    fn deleting(mut claim: NodeClaim) -> NodeClaim {
        claim.metadata.deletion_timestamp = Some(Time(at(10)));
        claim
    }

    fn launched(mut claim: NodeClaim) -> NodeClaim {
        claim.status = Some(NodeClaimStatus {
            provider_id: Some("aws:///us-east-1a/i-1".into()),
            ..NodeClaimStatus::default()
        });
        claim
    }

    fn see(
        fallback: &mut CapacityFallback,
        stored: &[NodeClaim],
        undelivered: &[&str],
        unavailable: &[OfferingKey],
        seconds: i64,
    ) {
        let stored: Vec<Arc<NodeClaim>> = stored.iter().cloned().map(Arc::new).collect();
        let undelivered: HashSet<String> = undelivered.iter().map(|n| (*n).to_owned()).collect();
        fallback.observe(&stored, &undelivered, unavailable, at(seconds), TTL, FORGET);
    }

    fn spot_out(instance_type: &str) -> OfferingKey {
        OfferingKey::new(instance_type, "us-east-1a", CapacityType::Spot)
    }

    fn pool(name: &str, weight: Option<i32>) -> PoolInput {
        let nodepool: NodePool = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodePool",
            "metadata": {"name": name},
            "spec": {"weight": weight, "template": {"spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [],
            }}},
        }))
        .unwrap();
        PoolInput {
            nodepool,
            instance_types: Vec::new(),
            in_use: nodewright_catalog::Resources::default(),
        }
    }

    fn weights(pools: &[PoolInput]) -> Vec<(String, Option<i32>)> {
        pools
            .iter()
            .map(|p| (p.nodepool.name_any(), p.nodepool.spec.weight))
            .collect()
    }

    #[test]
    fn a_claim_deleted_for_capacity_demotes_its_pool_for_the_ttl() {
        let mut fallback = CapacityFallback::default();
        let spot = claim("spot-a", "spot", &["m5.large", "c5.large"]);
        fallback.watch(&spot, at(0));
        see(&mut fallback, std::slice::from_ref(&spot), &[], &[], 1);
        assert!(!fallback.is_demoted("spot", at(1)), "still launching");
        see(&mut fallback, &[deleting(spot)], &[], &[spot_out("c5.large")], 2);
        assert!(fallback.is_demoted("spot", at(2)));
        assert!(fallback.is_demoted("spot", at(2 + 179)));
        assert!(!fallback.is_demoted("spot", at(2 + 180)), "the TTL ended");
    }

    #[test]
    fn a_claim_gone_from_the_cache_counts_as_deleted_once_delivered() {
        let mut fallback = CapacityFallback::default();
        let spot = claim("spot-a", "spot", &["m5.large"]);
        fallback.watch(&spot, at(0));
        let out = [spot_out("m5.large")];
        see(&mut fallback, &[], &["spot-a"], &out, 1);
        assert!(
            !fallback.is_demoted("spot", at(1)),
            "not delivered yet: nothing known"
        );
        see(&mut fallback, &[spot], &[], &out, 2);
        see(&mut fallback, &[], &[], &out, 3);
        assert!(fallback.is_demoted("spot", at(3)));
    }

    #[test]
    fn deletion_for_other_reasons_and_launches_do_not_demote() {
        let mut fallback = CapacityFallback::default();
        let other = claim("spot-a", "spot", &["m5.large"]);
        fallback.watch(&other, at(0));
        see(&mut fallback, &[deleting(other)], &[], &[spot_out("r5.large")], 1);
        assert!(
            !fallback.is_demoted("spot", at(1)),
            "its types are not out of capacity"
        );

        let out = claim("spot-b", "spot", &["m5.large"]);
        fallback.watch(&out, at(2));
        see(&mut fallback, &[deleting(out)], &[], &[spot_out("m5.large")], 3);
        assert!(fallback.is_demoted("spot", at(3)));
        let works = claim("spot-c", "spot", &["r5.large"]);
        fallback.watch(&works, at(4));
        see(&mut fallback, &[launched(works)], &[], &[spot_out("m5.large")], 5);
        assert!(!fallback.is_demoted("spot", at(5)), "a launch lifts the demotion");
        assert!(fallback.unlaunched.is_empty());
    }

    #[test]
    fn claims_are_forgotten_after_the_launch_ttl() {
        let mut fallback = CapacityFallback::default();
        let stuck = claim("spot-a", "spot", &["m5.large"]);
        fallback.watch(&stuck, at(0));
        see(&mut fallback, &[stuck], &[], &[], 301);
        assert!(fallback.unlaunched.is_empty());
    }

    #[test]
    fn demoted_pools_rank_below_every_other_in_their_own_order() {
        let mut fallback = CapacityFallback::default();
        fallback.demoted.insert("spot".into(), at(100));
        fallback.demoted.insert("spot-big".into(), at(100));
        let mut pools = vec![
            pool("spot", Some(100)),
            pool("spot-big", Some(90)),
            pool("on-demand", Some(50)),
            pool("default", None),
        ];
        fallback.demote(&mut pools, at(1));
        assert_eq!(
            weights(&pools),
            vec![
                ("spot".to_owned(), Some(-1)),
                ("spot-big".to_owned(), Some(-11)),
                ("on-demand".to_owned(), Some(50)),
                ("default".to_owned(), None),
            ]
        );
        let mut later = vec![pool("spot", Some(100)), pool("on-demand", Some(50))];
        fallback.demote(&mut later, at(100));
        assert_eq!(later[0].nodepool.spec.weight, Some(100), "expired");
    }
}
