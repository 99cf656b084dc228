//! Records what became of each NodeClaim for its NodePool's `NodeRegistrationHealthy`
//! condition: the outcomes go to the NodePool's tracker ([`crate::nodepool_status::health`]),
//! and the NodePool status reconciler writes the condition. Nothing is written here, so a
//! claim's reconcile never waits on (or fails for) its NodePool.

use kube::ResourceExt;
use nodewright_api::{NodeClaim, NodeClaimStatus, conditions::nodeclaim};

use super::condition;
use crate::{
    context::Context,
    nodepool_status::{health::Outcome, pool_key},
};

/// Records `outcome` for the claim's NodePool, if the claim's NodePool still exists (and is the
/// one that created it, not a namesake created since).
pub(super) fn record(ctx: &Context, claim: &NodeClaim, outcome: Outcome) {
    let Some(name) = claim.nodepool_name() else {
        return;
    };
    let Some(pool) = ctx.state.node_pools.store.find(|p| p.name_any() == name) else {
        return;
    };
    let owner = claim
        .owner_references()
        .iter()
        .find(|o| o.kind == "NodePool" && o.name == name);
    if owner.is_some_and(|o| Some(&o.uid) != pool.metadata.uid.as_ref()) {
        return;
    }
    ctx.state
        .registration_health
        .record(&pool_key(&pool), &claim.name_any(), outcome);
}

/// The outcome of a claim that did not launch in time: the reason and message of its last
/// failed launch, or `LaunchFailed` when the cloud never answered with one.
pub(super) fn launch_timed_out(status: &NodeClaimStatus, message: &str) -> Outcome {
    match condition(status, nodeclaim::LAUNCHED) {
        Some(launched) if launched.status == nodewright_api::conditions::FALSE => Outcome::Failed {
            reason: launched.reason.clone(),
            message: launched.message.clone(),
        },
        _ => Outcome::Failed {
            reason: nodeclaim::REASON_LAUNCH_FAILED.to_owned(),
            message: message.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;

    #[test]
    fn a_launch_timeout_carries_the_launchs_reason() {
        let failed = NodeClaimStatus {
            conditions: vec![Condition {
                type_: nodeclaim::LAUNCHED.to_owned(),
                status: "False".to_owned(),
                reason: "NoCompatibleInstanceType".to_owned(),
                message: "nothing fits".to_owned(),
                observed_generation: None,
                last_transition_time: Time("2026-01-01T00:00:00Z".parse().unwrap()),
            }],
            ..NodeClaimStatus::default()
        };
        assert_eq!(
            launch_timed_out(&failed, "did not launch"),
            Outcome::Failed {
                reason: "NoCompatibleInstanceType".to_owned(),
                message: "nothing fits".to_owned()
            }
        );
        assert_eq!(
            launch_timed_out(&NodeClaimStatus::default(), "did not launch"),
            Outcome::Failed {
                reason: nodeclaim::REASON_LAUNCH_FAILED.to_owned(),
                message: "did not launch".to_owned()
            }
        );
    }
}
