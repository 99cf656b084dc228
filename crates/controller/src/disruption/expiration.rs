//! Expiration (Karpenter v1's `nodeclaim.expiration`): a NodeClaim whose `spec.expireAfter` has
//! passed since its creation is deleted — forcefully: no budget, no candidate checks, no
//! replacement launched first. Termination drains it (PDBs still apply to the evictions), and the
//! provisioner launches capacity for the pods that become pending. An `Expired` event on the
//! NodeClaim says why.
//!
//! Each pass deletes what has expired and sleeps until the next NodeClaim expires (at most
//! [`POLL`] of the clock's time), or until NodeClaims change. NodeClaims already being deleted
//! are left alone, so a restart or a repeated pass never deletes twice. An `expireAfter` that does
//! not parse (the CRD refuses such values) is reported with its NodeClaim and field, and that
//! NodeClaim never expires.

use std::{sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use kube::{Api, ResourceExt, api::DeleteParams};
use nodewright_api::{NodeClaim, labels};

use crate::{
    context::Context,
    error::{ControllerError, is_not_found},
    events::reasons::EXPIRED,
    metrics::record as metrics,
};

/// The longest sleep between passes, in the clock's time.
pub const POLL: Duration = Duration::from_secs(10);

/// Deletes expired NodeClaims, forever.
pub async fn run(ctx: Context) {
    let mut claims = ctx.state.node_claims.changes();
    loop {
        claims.mark_seen();
        let now = ctx.clock.now();
        let decision = decide(&ctx.state.node_claims.all(), now);
        for error in &decision.invalid {
            tracing::warn!(%error, "NodeClaim not expired");
        }
        for claim in &decision.expired {
            if let Err(error) = expire(&ctx, claim).await {
                tracing::warn!(nodeclaim = %claim.name_any(), %error, "could not delete an expired NodeClaim; retrying");
            }
        }
        let sleep = decision
            .next
            .and_then(|at| Duration::try_from(at.duration_since(now)).ok())
            .map_or(POLL, |until| until.min(POLL));
        tokio::select! {
            () = claims.changed() => {}
            () = tokio::time::sleep(ctx.settings.wall(sleep)) => {}
        }
    }
}

/// What one pass does.
#[derive(Debug, Default)]
pub struct Decision {
    /// NodeClaims to delete now.
    pub expired: Vec<Arc<NodeClaim>>,
    /// When the next of the others expires.
    pub next: Option<Timestamp>,
    /// NodeClaims whose expiry cannot be computed.
    pub invalid: Vec<ControllerError>,
}

/// Which NodeClaims have expired at `now`, and when the next one will. Pure.
pub fn decide(claims: &[Arc<NodeClaim>], now: Timestamp) -> Decision {
    let mut decision = Decision::default();
    for claim in claims {
        if claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match expires_at(claim) {
            Ok(Some(at)) if at <= now => decision.expired.push(Arc::clone(claim)),
            Ok(Some(at)) => decision.next = Some(decision.next.map_or(at, |next| next.min(at))),
            Ok(None) => {}
            Err(error) => decision.invalid.push(error),
        }
    }
    decision
}

/// Creation plus `expireAfter`; `None` for `Never` or a NodeClaim not yet created.
pub fn expires_at(claim: &NodeClaim) -> Result<Option<Timestamp>, ControllerError> {
    let invalid = |message: String| ControllerError::InvalidSpec {
        kind: "NodeClaim",
        name: claim.name_any(),
        field: "spec.expireAfter".to_owned(),
        message,
    };
    let Some(after) = claim
        .spec
        .expire_after
        .parse()
        .map_err(|e| invalid(e.to_string()))?
    else {
        return Ok(None);
    };
    let Some(created) = claim.metadata.creation_timestamp.as_ref() else {
        return Ok(None);
    };
    let after = SignedDuration::try_from(after).map_err(|e| invalid(e.to_string()))?;
    // A lifetime past the end of time never ends.
    Ok(created.0.checked_add(after).ok())
}

/// Deletes the NodeClaim (one already gone is fine) and says why.
async fn expire(ctx: &Context, claim: &NodeClaim) -> Result<(), ControllerError> {
    let name = claim.name_any();
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    // Preconditioned on the uid: a NodeClaim re-created under the same name is not expired.
    let params = DeleteParams {
        preconditions: claim.uid().map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(error) if is_not_found(&error) => return Ok(()),
        Err(error) => return Err(error.into()),
    }
    tracing::info!(nodeclaim = %name, expire_after = %claim.spec.expire_after, "deleted an expired NodeClaim");
    let pool_name = claim.labels().get(labels::NODE_POOL);
    let pool = ctx
        .state
        .node_pools
        .all()
        .into_iter()
        .find(|p| Some(&p.name_any()) == pool_name);
    metrics::nodeclaim_expired(claim, pool.as_deref());
    ctx.events
        .normal(
            claim,
            EXPIRED,
            "Deleting",
            format!(
                "expireAfter {} elapsed since the NodeClaim was created",
                claim.spec.expire_after
            ),
        )
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_fixtures::arc;

    fn claim(name: &str, expire_after: &str, deleting: bool) -> Arc<NodeClaim> {
        let mut metadata = json!({ "name": name, "creationTimestamp": "2026-01-01T00:00:00Z" });
        if deleting {
            metadata["deletionTimestamp"] = json!("2026-01-01T00:30:00Z");
        }
        arc(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": metadata,
            "spec": { "requirements": [], "expireAfter": expire_after,
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } }
        }))
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn names(claims: &[Arc<NodeClaim>]) -> Vec<String> {
        claims.iter().map(|c| c.name_any()).collect()
    }

    #[test]
    fn a_claim_expires_when_its_lifetime_has_passed_and_the_next_expiry_is_known() {
        let claims = [
            claim("hour", "1h", false),
            claim("day", "24h", false),
            claim("never", "Never", false),
            claim("deleting", "1m", true),
        ];
        let before = decide(&claims, at("2026-01-01T00:59:59Z"));
        assert!(before.expired.is_empty());
        assert_eq!(before.next, Some(at("2026-01-01T01:00:00Z")));
        let after = decide(&claims, at("2026-01-01T01:00:00Z"));
        assert_eq!(
            names(&after.expired),
            ["hour"],
            "Never never expires; one being deleted is not deleted again"
        );
        assert_eq!(after.next, Some(at("2026-01-02T00:00:00Z")));
    }

    #[test]
    fn an_unparsable_lifetime_names_the_claim_and_field() {
        let decision = decide(&[claim("bad", "soon", false)], at("2027-01-01T00:00:00Z"));
        assert!(decision.expired.is_empty());
        let message = decision.invalid[0].to_string();
        assert!(
            message.contains("bad") && message.contains("spec.expireAfter"),
            "{message}"
        );
    }
}
