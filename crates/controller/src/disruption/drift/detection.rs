//! The `Drifted` condition of NodeClaims (Karpenter's `nodeclaim.disruption` drift check): True
//! with the reason the node is out of date, removed when it is not (or not launched).
//!
//! A launched NodeClaim has drifted, checked in this order, when:
//! - **NodePoolDrifted**: its `karpenter.sh/nodepool-hash-version` equals its NodePool's and its
//!   `karpenter.sh/nodepool-hash` differs (the template changed since it was made; a NodeClaim or
//!   NodePool without the annotations is not compared);
//! - **RequirementsDrifted**: its labels no longer satisfy the NodePool's requirements (a key the
//!   NodeClaim has no label for is fine when it is a well-known label, or the requirement is
//!   `NotIn`/`DoesNotExist`);
//! - **InstanceTypeNotFound**: it is at least an hour old and its instance type, zone and
//!   capacity type are no longer offered to its NodePool ([`instance_type_not_found`]);
//! - the cloud provider says so (`CloudProvider::is_drifted`, e.g. `AMIDrift`), with its reason.
//!
//! NodeClaims being deleted, or whose NodePool is gone, are left as they are.
//!
//! The hash and requirement checks run on every change of NodeClaims or NodePools. The cloud's
//! answers — a NodeClaim's drift, a NodePool's instance types — are reused for
//! [`CLOUD_RECHECK`] of the clock's time (Karpenter requeues each NodeClaim every 5 minutes) and
//! asked again at once when a node class changes.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures_util::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use nodewright_api::{
    NodeClaim, NodePool, NodeSelectorRequirementWithMinValues, Operator,
    conditions::{self, ConditionSet, Status},
    labels,
};
use nodewright_catalog::{CapacityType, InstanceType};
use nodewright_cloudprovider::DriftReason;

use crate::{
    context::Context,
    error::{ControllerError, is_conflict},
};

/// How long the cloud's drift answer for a NodeClaim is reused.
pub const CLOUD_RECHECK: SignedDuration = SignedDuration::from_mins(5);
/// How often a pass runs when nothing changes.
pub const POLL: Duration = Duration::from_secs(30);
/// NodeClaims younger than this are not checked for `InstanceTypeNotFound` (Karpenter: 1 h).
pub const INSTANCE_TYPE_CHECK_AGE: SignedDuration = SignedDuration::from_hours(1);
/// Cloud calls in flight at once.
const CONCURRENCY: usize = 8;

/// Why a NodeClaim has drifted: the condition's reason and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub reason: String,
    pub message: String,
}

/// Keeps every NodeClaim's `Drifted` condition current, forever.
pub async fn run(ctx: Context) {
    let mut detector = Detector::default();
    let mut claims = ctx.state.node_claims.changes();
    let mut pools = ctx.state.node_pools.changes();
    let mut classes = ctx.state.node_classes.changes();
    loop {
        claims.mark_seen();
        pools.mark_seen();
        detector.pass(&ctx).await;
        tokio::select! {
            () = claims.changed() => {}
            () = pools.changed() => {}
            () = classes.changed() => {
                classes.mark_seen();
                // A node class changed: what the cloud said about its nodes may no longer hold.
                detector.cloud_answers.clear();
                detector.instance_types.clear();
            }
            () = tokio::time::sleep(ctx.settings.wall(POLL)) => {}
        }
    }
}

/// The cloud's answers between passes.
#[derive(Debug, Default)]
struct Detector {
    /// NodeClaim name → when the cloud was asked, and its answer.
    cloud_answers: HashMap<String, (Timestamp, Option<DriftReason>)>,
    /// NodePool name → when its instance types were listed, and the list.
    instance_types: HashMap<String, (Timestamp, Vec<InstanceType>)>,
}

impl Detector {
    async fn pass(&mut self, ctx: &Context) {
        let now = ctx.clock.now();
        let claims = ctx.state.node_claims.all();
        let pools: BTreeMap<String, Arc<NodePool>> = ctx
            .state
            .node_pools
            .all()
            .into_iter()
            .map(|p| (p.name_any(), p))
            .collect();
        let checked: Vec<(Arc<NodeClaim>, Arc<NodePool>)> = claims
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .filter_map(|c| Some((Arc::clone(c), Arc::clone(pools.get(c.nodepool_name()?)?))))
            .collect();
        self.refresh_instance_types(ctx, &checked, now).await;
        // The cloud is asked only about launched claims not already drifted by what is known here.
        let stale: Vec<Arc<NodeClaim>> = checked
            .iter()
            .filter(|(claim, pool)| is_launched(claim) && self.local_drift(claim, pool, now).is_none())
            .filter(|(claim, _)| {
                self.cloud_answers
                    .get(&claim.name_any())
                    .is_none_or(|(asked, _)| now.duration_since(*asked) >= CLOUD_RECHECK)
            })
            .map(|(claim, _)| Arc::clone(claim))
            .collect();
        let answers: Vec<(String, Result<Option<DriftReason>, String>)> = stream::iter(stale)
            .map(|claim| async move {
                let answer = ctx.cloud.is_drifted(&claim).await.map_err(|e| e.to_string());
                (claim.name_any(), answer)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (name, answer) in answers {
            match answer {
                Ok(reason) => {
                    self.cloud_answers.insert(name, (now, reason));
                }
                Err(error) => {
                    tracing::warn!(nodeclaim = %name, %error, "could not ask the cloud whether the node drifted");
                }
            }
        }
        for (claim, pool) in &checked {
            let cloud = self
                .cloud_answers
                .get(&claim.name_any())
                .map(|(_, answer)| answer.as_ref());
            if is_launched(claim) && cloud.is_none() && self.local_drift(claim, pool, now).is_none() {
                // The cloud did not answer: the condition stays as it is.
                continue;
            }
            let types = self.instance_types_of(pool);
            write_logged(ctx, claim, drift(claim, pool, now, types, cloud.flatten()), now).await;
        }
        let live: HashSet<String> = claims.iter().map(|c| c.name_any()).collect();
        self.cloud_answers.retain(|name, _| live.contains(name));
    }

    fn instance_types_of(&self, pool: &NodePool) -> Option<&[InstanceType]> {
        self.instance_types
            .get(&pool.name_any())
            .map(|(_, types)| types.as_slice())
    }

    fn local_drift(&self, claim: &NodeClaim, pool: &NodePool, now: Timestamp) -> Option<Drift> {
        static_drift(claim, pool)
            .or_else(|| instance_type_not_found(claim, self.instance_types_of(pool)?, now))
    }

    /// Lists the instance types of the pools with a NodeClaim old enough for the instance-type
    /// check, when the last list is older than [`CLOUD_RECHECK`]. A pool whose types cannot be
    /// listed (its node class is not ready) is not checked.
    async fn refresh_instance_types(
        &mut self,
        ctx: &Context,
        checked: &[(Arc<NodeClaim>, Arc<NodePool>)],
        now: Timestamp,
    ) {
        let mut due: BTreeMap<String, Arc<NodePool>> = BTreeMap::new();
        for (claim, pool) in checked {
            let name = pool.name_any();
            let old_enough = age(claim, now).is_some_and(|age| age >= INSTANCE_TYPE_CHECK_AGE);
            let stale = self
                .instance_types
                .get(&name)
                .is_none_or(|(listed, _)| now.duration_since(*listed) >= CLOUD_RECHECK);
            if old_enough && stale {
                due.insert(name, Arc::clone(pool));
            }
        }
        for (name, pool) in due {
            match ctx.cloud.get_instance_types(&pool).await {
                Ok(types) => {
                    self.instance_types.insert(name, (now, types));
                }
                Err(error) => {
                    self.instance_types.remove(&name);
                    tracing::debug!(nodepool = %name, %error, "instance types not listed; not checked for drift");
                }
            }
        }
    }
}

async fn write_logged(ctx: &Context, claim: &NodeClaim, desired: Option<Drift>, now: Timestamp) {
    match write(ctx, claim, desired.as_ref(), now).await {
        Ok(()) => {}
        Err(ControllerError::Kube(error)) if is_conflict(&error) => {}
        Err(error) => tracing::warn!(nodeclaim = %claim.name_any(), %error, "could not write Drifted"),
    }
}

/// Whether and why `claim` drifted from `pool` at `now`, given the pool's instance types (None:
/// not known) and the cloud's answer. Pure.
pub fn drift(
    claim: &NodeClaim,
    pool: &NodePool,
    now: Timestamp,
    instance_types: Option<&[InstanceType]>,
    cloud: Option<&DriftReason>,
) -> Option<Drift> {
    if !is_launched(claim) {
        return None;
    }
    static_drift(claim, pool)
        .or_else(|| instance_type_not_found(claim, instance_types?, now))
        .or_else(|| {
            cloud.map(|reason| Drift {
                reason: reason.as_str().to_owned(),
                message: format!("the cloud provider reports {reason}"),
            })
        })
}

/// **InstanceTypeNotFound**: the NodeClaim's instance type is no longer among its NodePool's, or
/// none of its offerings matches the NodeClaim's zone and capacity type (a reserved node also
/// matches on-demand offerings, which it falls back to). Only for NodeClaims at least
/// [`INSTANCE_TYPE_CHECK_AGE`] old, as Karpenter, so a list refreshed while a node launches does
/// not drift it.
pub fn instance_type_not_found(
    claim: &NodeClaim,
    instance_types: &[InstanceType],
    now: Timestamp,
) -> Option<Drift> {
    if age(claim, now).is_none_or(|age| age < INSTANCE_TYPE_CHECK_AGE) {
        return None;
    }
    let claim_labels = claim.labels();
    let name = claim_labels.get(labels::INSTANCE_TYPE)?;
    let zone = claim_labels.get(labels::ZONE);
    let capacity_type = claim_labels.get(labels::CAPACITY_TYPE).map(String::as_str);
    let offered = instance_types.iter().find(|t| &t.name == name).is_some_and(|t| {
        t.offerings.iter().any(|o| {
            zone.is_none_or(|z| *z == o.zone)
                && capacity_type.is_none_or(|c| {
                    c == o.capacity_type.label()
                        || (c == CapacityType::Reserved.label() && o.capacity_type == CapacityType::OnDemand)
                })
        })
    });
    (!offered).then(|| Drift {
        reason: conditions::nodeclaim::REASON_INSTANCE_TYPE_NOT_FOUND.to_owned(),
        message: format!(
            "instance type {name} is no longer offered to the NodePool in {} as {}",
            zone.map_or("any zone", String::as_str),
            capacity_type.unwrap_or("any capacity type")
        ),
    })
}

fn age(claim: &NodeClaim, now: Timestamp) -> Option<SignedDuration> {
    claim
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|created| now.duration_since(created.0))
}

/// Drift the core detects from the objects alone: the template hash, then the requirements.
pub fn static_drift(claim: &NodeClaim, pool: &NodePool) -> Option<Drift> {
    let (of_claim, of_pool) = (claim.annotations(), pool.annotations());
    if let (Some(claim_version), Some(pool_version), Some(claim_hash), Some(pool_hash)) = (
        of_claim.get(labels::NODE_POOL_HASH_VERSION),
        of_pool.get(labels::NODE_POOL_HASH_VERSION),
        of_claim.get(labels::NODE_POOL_HASH),
        of_pool.get(labels::NODE_POOL_HASH),
    ) && claim_version == pool_version
        && claim_hash != pool_hash
    {
        return Some(Drift {
            reason: conditions::nodeclaim::REASON_NODEPOOL_DRIFTED.to_owned(),
            message: format!(
                "the NodePool's template changed (hash {pool_hash}, the NodeClaim's {claim_hash})"
            ),
        });
    }
    unsatisfied_requirement(claim.labels(), &pool.spec.template.spec.requirements).map(|message| Drift {
        reason: conditions::nodeclaim::REASON_REQUIREMENTS_DRIFTED.to_owned(),
        message,
    })
}

/// The first requirement the labels do not satisfy, as a sentence.
fn unsatisfied_requirement(
    node_labels: &BTreeMap<String, String>,
    requirements: &[NodeSelectorRequirementWithMinValues],
) -> Option<String> {
    requirements.iter().find_map(|requirement| {
        let key = requirement.key.as_str();
        let satisfied = match node_labels.get(key) {
            Some(value) => satisfies(value, requirement),
            None => {
                is_well_known(key) || matches!(requirement.operator, Operator::NotIn | Operator::DoesNotExist)
            }
        };
        (!satisfied).then(|| {
            let label = node_labels
                .get(key)
                .map_or_else(|| format!("no label {key}"), |v| format!("label {key}={v}"));
            format!(
                "{label} does not satisfy the NodePool's requirement {key} {} {:?}",
                requirement.operator, requirement.values
            )
        })
    })
}

fn satisfies(value: &str, requirement: &NodeSelectorRequirementWithMinValues) -> bool {
    let numeric = || value.parse::<i64>().ok().zip(requirement.numeric_value());
    match requirement.operator {
        Operator::In => requirement.values.iter().any(|v| v == value),
        Operator::NotIn => !requirement.values.iter().any(|v| v == value),
        Operator::Exists => true,
        Operator::DoesNotExist => false,
        Operator::Gt => numeric().is_some_and(|(v, bound)| v > bound),
        Operator::Lt => numeric().is_some_and(|(v, bound)| v < bound),
        Operator::Gte => numeric().is_some_and(|(v, bound)| v >= bound),
        Operator::Lte => numeric().is_some_and(|(v, bound)| v <= bound),
    }
}

fn is_well_known(key: &str) -> bool {
    labels::WELL_KNOWN_LABELS.contains(&key) || labels::AWS_WELL_KNOWN_LABELS.contains(&key)
}

fn is_launched(claim: &NodeClaim) -> bool {
    claim.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == conditions::nodeclaim::LAUNCHED && c.status == conditions::TRUE)
    })
}

/// Sets `Drifted` True with the drift's reason, or removes it; writes only a change, guarded by
/// the resourceVersion it was computed from.
async fn write(
    ctx: &Context,
    claim: &NodeClaim,
    desired: Option<&Drift>,
    now: Timestamp,
) -> Result<(), ControllerError> {
    let mut status = claim.status.clone().unwrap_or_default();
    let mut set = ConditionSet::new(
        &mut status.conditions,
        &conditions::nodeclaim::DEPENDENTS,
        claim.metadata.generation,
        now,
    );
    let changed = match desired {
        Some(drift) => set.set(
            conditions::nodeclaim::DRIFTED,
            Status::True,
            &drift.reason,
            &drift.message,
        ),
        None => set.clear(conditions::nodeclaim::DRIFTED),
    };
    if !changed {
        return Ok(());
    }
    let reason = desired.map_or("none", |d| d.reason.as_str());
    tracing::info!(nodeclaim = %claim.name_any(), drifted = desired.is_some(), reason, "drift changed");
    crate::disruption::write::claim_conditions(ctx, claim, &status.conditions).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::test_fixtures::arc;

    fn pool(annotations: &Value, requirements: &Value) -> NodePool {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": { "name": "default", "annotations": annotations },
            "spec": { "template": { "spec": {
                "requirements": requirements,
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
            } } }
        }))
        .unwrap()
    }

    fn claim(annotations: &Value, node_labels: &Value, launched: bool) -> Arc<NodeClaim> {
        let status = if launched { "True" } else { "Unknown" };
        arc(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": { "name": "a", "annotations": annotations, "labels": node_labels,
                "creationTimestamp": "2026-01-01T00:00:00Z" },
            "spec": { "requirements": [], "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } },
            "status": { "conditions": [{ "type": "Launched", "status": status, "reason": "Launched", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z" }] }
        }))
    }

    const NOW: &str = "2026-01-01T02:00:00Z";

    /// [`super::drift`] at [`NOW`] without instance types.
    fn drift(claim: &NodeClaim, pool: &NodePool, cloud: Option<&DriftReason>) -> Option<Drift> {
        super::drift(claim, pool, NOW.parse().unwrap(), None, cloud)
    }

    fn hashed(hash: &str, version: &str) -> Value {
        json!({ "karpenter.sh/nodepool-hash": hash, "karpenter.sh/nodepool-hash-version": version })
    }

    fn reason(drift: Option<Drift>) -> Option<String> {
        drift.map(|d| d.reason)
    }

    #[test]
    fn a_hash_differing_at_the_same_version_drifts_and_another_version_does_not() {
        let pool = pool(&hashed("1", "v9"), &json!([]));
        let labels = json!({ "karpenter.sh/nodepool": "default" });
        assert_eq!(
            reason(drift(&claim(&hashed("2", "v9"), &labels, true), &pool, None)).as_deref(),
            Some("NodePoolDrifted")
        );
        assert_eq!(
            drift(&claim(&hashed("1", "v9"), &labels, true), &pool, None),
            None
        );
        assert_eq!(
            drift(&claim(&hashed("2", "v8"), &labels, true), &pool, None),
            None,
            "versions differ: not comparable"
        );
        assert_eq!(drift(&claim(&json!({}), &labels, true), &pool, None), None);
    }

    #[test]
    fn labels_no_longer_satisfying_the_requirements_drift() {
        let requirements = json!([
            { "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"] },
            { "key": "karpenter.k8s.aws/instance-generation", "operator": "Gt", "values": ["4"] },
            { "key": "team", "operator": "NotIn", "values": ["b"] }
        ]);
        let pool = pool(&json!({}), &requirements);
        let fits = json!({ "karpenter.sh/capacity-type": "on-demand", "karpenter.k8s.aws/instance-generation": "5" });
        assert_eq!(drift(&claim(&json!({}), &fits, true), &pool, None), None);
        let spot =
            json!({ "karpenter.sh/capacity-type": "spot", "karpenter.k8s.aws/instance-generation": "5" });
        let drifted = drift(&claim(&json!({}), &spot, true), &pool, None).unwrap();
        assert_eq!(drifted.reason, "RequirementsDrifted");
        assert!(
            drifted.message.contains("label karpenter.sh/capacity-type=spot"),
            "{}",
            drifted.message
        );
        let old = json!({ "karpenter.sh/capacity-type": "on-demand", "karpenter.k8s.aws/instance-generation": "4" });
        assert_eq!(
            reason(drift(&claim(&json!({}), &old, true), &pool, None)).as_deref(),
            Some("RequirementsDrifted")
        );
        // Well-known keys without a label are allowed; custom keys must be labelled.
        assert_eq!(drift(&claim(&json!({}), &json!({}), true), &pool, None), None);
        let custom = self::pool(
            &json!({}),
            &json!([{ "key": "team", "operator": "In", "values": ["a"] }]),
        );
        assert_eq!(
            reason(drift(&claim(&json!({}), &json!({}), true), &custom, None)).as_deref(),
            Some("RequirementsDrifted")
        );
    }

    #[test]
    fn the_cloud_reason_counts_last_and_nothing_drifts_before_launch() {
        let pool = pool(&hashed("1", "v9"), &json!([]));
        let ami = DriftReason::new("AMIDrift");
        assert_eq!(
            reason(drift(
                &claim(&hashed("1", "v9"), &json!({}), true),
                &pool,
                Some(&ami)
            ))
            .as_deref(),
            Some("AMIDrift")
        );
        assert_eq!(
            reason(drift(
                &claim(&hashed("2", "v9"), &json!({}), true),
                &pool,
                Some(&ami)
            ))
            .as_deref(),
            Some("NodePoolDrifted"),
            "the template is checked first"
        );
        assert_eq!(
            drift(&claim(&hashed("2", "v9"), &json!({}), false), &pool, Some(&ami)),
            None
        );
    }

    #[test]
    fn an_instance_type_no_longer_offered_drifts_an_hour_old_node() {
        use crate::test_fixtures::instance_type;
        let pool = pool(&json!({}), &json!([]));
        let node_labels = json!({ "node.kubernetes.io/instance-type": "four",
            "topology.kubernetes.io/zone": "us-east-1a", "karpenter.sh/capacity-type": "on-demand" });
        let claim = claim(&json!({}), &node_labels, true);
        let now: Timestamp = NOW.parse().unwrap();
        let offered = [instance_type("two", 2000, 0.1), instance_type("four", 4000, 0.2)];
        assert_eq!(super::drift(&claim, &pool, now, Some(&offered), None), None);

        let gone = [instance_type("two", 2000, 0.1)];
        assert_eq!(
            reason(super::drift(&claim, &pool, now, Some(&gone), None)).as_deref(),
            Some("InstanceTypeNotFound")
        );
        let mut other_zone = offered.clone();
        other_zone[1].offerings[0].zone = "us-east-1b".into();
        assert_eq!(
            reason(super::drift(&claim, &pool, now, Some(&other_zone), None)).as_deref(),
            Some("InstanceTypeNotFound")
        );
        // Younger than an hour: not checked yet.
        let young: Timestamp = "2026-01-01T00:59:00Z".parse().unwrap();
        assert_eq!(super::drift(&claim, &pool, young, Some(&gone), None), None);
        // A reserved node falls back to on-demand offerings.
        let reserved = json!({ "node.kubernetes.io/instance-type": "four",
            "topology.kubernetes.io/zone": "us-east-1a", "karpenter.sh/capacity-type": "reserved" });
        let reserved = self::claim(&json!({}), &reserved, true);
        assert_eq!(super::drift(&reserved, &pool, now, Some(&offered), None), None);
    }
}
