//! `capacityreservation.expiration`: a NodeClaim in a capacity block is deleted once the block
//! is within [`EXPIRING_WITHIN`] (40 minutes) of its end, as Karpenter does, so termination
//! drains it and its pods find new capacity before EC2 reclaims the instance. The block's end
//! comes from its node class's `status.capacityReservations[].endTime`.
//!
//! Each pass deletes what is due and sleeps until the next NodeClaim falls due (at most
//! [`Settings::reservation_check_interval`]), or until NodeClaims or node classes change.
//!
//! [`Settings::reservation_check_interval`]: crate::Settings::reservation_check_interval

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kube::{Api, ResourceExt, api::DeleteParams};
use nodewright_api::{EC2NodeClass, NodeClaim, labels};

use super::{Reservations, node_class_of, reserved_in};
use crate::{
    context::Context,
    error::{ControllerError, is_not_found},
};

/// How long before a capacity block ends its NodeClaims are deleted (Karpenter: 40 minutes).
pub const EXPIRING_WITHIN: SignedDuration = SignedDuration::from_mins(40);

/// The `karpenter.k8s.aws/capacity-reservation-type` of capacity blocks.
const CAPACITY_BLOCK: &str = "capacity-block";

/// Deletes NodeClaims of ending capacity blocks, forever.
pub async fn run(ctx: Context) {
    let mut claims = ctx.state.node_claims.changes();
    let mut classes = ctx.state.node_classes.changes();
    loop {
        claims.mark_seen();
        classes.mark_seen();
        let now = ctx.clock.now();
        let decision = decide(&ctx.state.node_claims.all(), &ctx.state.node_classes.all(), now);
        for claim in &decision.due {
            if let Err(error) = delete(&ctx, claim).await {
                tracing::warn!(nodeclaim = %claim.name_any(), %error, "NodeClaim of an ending capacity block not deleted; retrying");
            }
        }
        let interval = ctx.settings.reservation_check_interval;
        let sleep = crate::settings::until_next(now, decision.next, interval);
        tokio::select! {
            () = claims.changed() => {}
            () = classes.changed() => {}
            () = tokio::time::sleep(ctx.settings.wall(sleep)) => {}
        }
    }
}

/// What one pass does.
#[derive(Debug, Default)]
pub struct Decision {
    /// NodeClaims to delete now.
    pub due: Vec<Arc<NodeClaim>>,
    /// When the next of the others falls due.
    pub next: Option<Timestamp>,
}

/// Which capacity-block NodeClaims are within [`EXPIRING_WITHIN`] of their block's end at `now`,
/// and when the next one will be. NodeClaims being deleted, and blocks without a known end, are
/// left alone. Pure.
pub fn decide(claims: &[Arc<NodeClaim>], node_classes: &[Arc<EC2NodeClass>], now: Timestamp) -> Decision {
    let reservations = Reservations::of(node_classes);
    let mut decision = Decision::default();
    for claim in claims {
        if claim.metadata.deletion_timestamp.is_some()
            || claim
                .labels()
                .get(labels::AWS_CAPACITY_RESERVATION_TYPE)
                .map(String::as_str)
                != Some(CAPACITY_BLOCK)
        {
            continue;
        }
        let Some(id) = reserved_in(claim.labels()) else {
            continue;
        };
        let Some(Some(reservation)) = reservations.lookup(node_class_of(claim), id) else {
            continue;
        };
        let Some(due) = reservation
            .end_time
            .as_ref()
            .and_then(|end| end.0.checked_sub(EXPIRING_WITHIN).ok())
        else {
            continue;
        };
        if due <= now {
            decision.due.push(Arc::clone(claim));
        } else {
            decision.next = Some(decision.next.map_or(due, |next| next.min(due)));
        }
    }
    decision
}

/// Deletes the NodeClaim (one already gone is fine), preconditioned on its uid.
async fn delete(ctx: &Context, claim: &NodeClaim) -> Result<(), ControllerError> {
    let name = claim.name_any();
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let params = DeleteParams {
        preconditions: claim.uid().map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            tracing::info!(nodeclaim = %name, "capacity block ends within 40 minutes: NodeClaim deleted");
            Ok(())
        }
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node_class(end: Timestamp) -> Arc<EC2NodeClass> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
                "metadata": {"name": "gpu"},
                "spec": {"amiSelectorTerms": [{"alias": "al2023@latest"}], "role": "r",
                         "subnetSelectorTerms": [{"id": "subnet-1"}],
                         "securityGroupSelectorTerms": [{"id": "sg-1"}]},
                "status": {"capacityReservations": [
                    {"id": "cr-block", "availabilityZone": "us-east-1a", "instanceType": "p5.48xlarge",
                     "ownerID": "123456789012", "reservationType": "capacity-block", "state": "active",
                     "endTime": end.to_string()},
                    {"id": "cr-odcr", "availabilityZone": "us-east-1a", "instanceType": "m5.large",
                     "ownerID": "123456789012", "reservationType": "default", "state": "active",
                     "endTime": end.to_string()},
                ]},
            }))
            .unwrap(),
        )
    }

    fn claim(name: &str, reservation: &str, reservation_type: &str, deleting: bool) -> Arc<NodeClaim> {
        let mut claim: NodeClaim = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": name, "labels": {
                "karpenter.sh/capacity-type": "reserved",
                "karpenter.k8s.aws/capacity-reservation-id": reservation,
                "karpenter.k8s.aws/capacity-reservation-type": reservation_type}},
            "spec": {"requirements": [],
                     "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"}},
        }))
        .unwrap();
        if deleting {
            claim.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-24T00:00:00Z".parse().unwrap(),
            ));
        }
        Arc::new(claim)
    }

    fn names(decision: &Decision) -> Vec<String> {
        decision.due.iter().map(|c| c.name_any()).collect()
    }

    #[test]
    fn capacity_block_claims_are_due_forty_minutes_before_the_end_and_no_sooner() {
        let end: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        let classes = [node_class(end)];
        let claims = [
            claim("block", "cr-block", "capacity-block", false),
            claim("odcr", "cr-odcr", "default", false),
            claim("leaving", "cr-block", "capacity-block", true),
            claim("unknown", "cr-other", "capacity-block", false),
        ];
        let before = end - SignedDuration::from_mins(41);
        let decision = decide(&claims, &classes, before);
        assert!(decision.due.is_empty());
        assert_eq!(decision.next, Some(end - EXPIRING_WITHIN));
        let decision = decide(&claims, &classes, end - EXPIRING_WITHIN);
        assert_eq!(names(&decision), ["block"]);
        assert_eq!(decision.next, None);
        // Without the node class, nothing is known and nothing deleted.
        assert!(decide(&claims, &[], end).due.is_empty());
    }
}
