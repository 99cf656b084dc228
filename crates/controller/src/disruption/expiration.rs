//! Expiration (Karpenter v1's `nodeclaim.expiration`): a NodeClaim whose `spec.expireAfter` has
//! passed since its creation is deleted — forcefully: no budget, no candidate checks, no
//! replacement launched first. Termination drains it (PDBs still apply to the evictions), and the
//! provisioner launches capacity for the pods that become pending. An `Expired` event on the
//! NodeClaim says why.
//!
//! **Held while the NodePool cannot launch** (a deliberate difference from Karpenter, which
//! deletes expired NodeClaims regardless: aws#8707, k-sigs#2627, where expiration kept deleting
//! nodes while the NodeClass was NotReady and nothing replaced them). An expired NodeClaim whose
//! NodePool cannot launch nodes now is kept, with an `ExpirationHeld` event naming why, and
//! deleted on the first pass after the NodePool can launch again. "Cannot launch" is the
//! provisioner's rule (`provisioner::pools::why_cannot_launch`: the NodePool is not
//! Ready, invalid or being deleted; its EC2NodeClass is missing, being deleted or not Ready)
//! plus the cloud provider's last word: `get_instance_types` answering `NodeClassNotReady`. Any
//! other cloud error does not hold expiration. A NodeClaim whose NodePool is gone expires as
//! before. Otherwise expiration stays forceful as in Karpenter.
//!
//! Each pass deletes what has expired and sleeps until the next NodeClaim expires (at most
//! [`POLL`] of the clock's time), or until NodeClaims change. NodeClaims already being deleted
//! are left alone, so a restart or a repeated pass never deletes twice. An `expireAfter` that does
//! not parse (the CRD refuses such values) is reported with its NodeClaim and field, and that
//! NodeClaim never expires.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use jiff::{SignedDuration, Timestamp};
use kube::{Api, ResourceExt, api::DeleteParams};
use nodewright_api::{NodeClaim, labels};

use crate::{
    context::Context,
    error::{ControllerError, is_not_found},
    events::reasons::{EXPIRATION_HELD, EXPIRED},
    metrics::record as metrics,
    provisioner::pools::why_cannot_launch,
};

/// The longest sleep between passes, in the clock's time.
pub const POLL: Duration = Duration::from_secs(10);

/// Deletes expired NodeClaims, forever.
pub async fn run(ctx: Context) {
    let mut claims = ctx.state.node_claims.changes();
    // The reason each held NodeClaim was last told (an event per change).
    let mut told: HashMap<String, String> = HashMap::new();
    loop {
        claims.mark_seen();
        let now = ctx.clock.now();
        let decision = decide(&ctx.state.node_claims.all(), now);
        for error in &decision.invalid {
            tracing::warn!(%error, "NodeClaim not expired");
        }
        let cannot_launch = pools_that_cannot_launch(&ctx, &decision.expired).await;
        let (expired, held) = hold(decision.expired, &cannot_launch);
        tell_held(&ctx, &held, &mut told).await;
        for claim in &expired {
            if let Err(error) = expire(&ctx, claim).await {
                tracing::warn!(nodeclaim = %claim.name_any(), %error, "could not delete an expired NodeClaim; retrying");
            }
        }
        let sleep = crate::settings::until_next(now, decision.next, POLL);
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

/// An expired NodeClaim kept because its NodePool cannot launch.
#[derive(Debug, Clone)]
pub struct Held {
    pub claim: Arc<NodeClaim>,
    /// Which NodePool cannot launch, and why.
    pub why: String,
}

/// The expired NodeClaims to delete now, and those kept because their NodePool cannot launch
/// (`cannot_launch`: NodePool name → why). Pure.
pub fn hold(
    expired: Vec<Arc<NodeClaim>>,
    cannot_launch: &BTreeMap<String, String>,
) -> (Vec<Arc<NodeClaim>>, Vec<Held>) {
    let mut now = Vec::new();
    let mut held = Vec::new();
    for claim in expired {
        let why = claim
            .labels()
            .get(labels::NODE_POOL)
            .and_then(|pool| Some((pool, cannot_launch.get(pool)?)));
        match why {
            Some((pool, why)) => {
                let why = format!("NodePool {pool} cannot launch nodes: {why}");
                held.push(Held { claim, why });
            }
            None => now.push(claim),
        }
    }
    (now, held)
}

/// The NodePools of `expired` that cannot launch nodes now, with why (see the module doc).
async fn pools_that_cannot_launch(ctx: &Context, expired: &[Arc<NodeClaim>]) -> BTreeMap<String, String> {
    let mut cannot = BTreeMap::new();
    if expired.is_empty() {
        return cannot;
    }
    let pools = ctx.state.node_pools.all();
    let classes = ctx.state.node_classes.all();
    let mut names: Vec<&String> = expired
        .iter()
        .filter_map(|c| c.labels().get(labels::NODE_POOL))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let Some(pool) = pools.iter().find(|p| p.name_any() == *name) else {
            continue;
        };
        if let Some(why) = why_cannot_launch(pool, &classes) {
            cannot.insert(name.clone(), why);
            continue;
        }
        match ctx.cloud.get_instance_types(pool).await {
            Err(error) if error.is_node_class_not_ready() => {
                cannot.insert(name.clone(), error.to_string());
            }
            // Any other answer: expiration is not held (Karpenter's semantics).
            Ok(_) | Err(_) => {}
        }
    }
    cannot
}

/// An `ExpirationHeld` event on each held NodeClaim whose reason changed; forgets the others.
async fn tell_held(ctx: &Context, held: &[Held], told: &mut HashMap<String, String>) {
    let mut now_told = HashMap::new();
    for Held { claim, why } in held {
        let name = claim.name_any();
        if told.get(&name) != Some(why) {
            tracing::info!(nodeclaim = %name, %why, "expired NodeClaim kept while its NodePool cannot launch");
            ctx.events
                .warning(
                    &**claim,
                    EXPIRATION_HELD,
                    "Expiring",
                    format!("expireAfter elapsed, but the NodeClaim is kept: {why}; it expires once the NodePool can launch again"),
                )
                .await;
        }
        now_told.insert(name, why.clone());
    }
    *told = now_told;
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
    fn expired_claims_of_a_pool_that_cannot_launch_are_held_with_the_reason() {
        let labelled = |name: &str, pool: &str| {
            let mut claim = (*claim(name, "1h", false)).clone();
            claim
                .metadata
                .labels
                .get_or_insert_default()
                .insert(labels::NODE_POOL.to_owned(), pool.to_owned());
            Arc::new(claim)
        };
        let expired = vec![
            labelled("a", "broken"),
            labelled("b", "fine"),
            claim("orphan", "1h", false),
        ];
        let cannot = BTreeMap::from([(
            "broken".to_owned(),
            "EC2NodeClass default is not ready".to_owned(),
        )]);
        let (now, held) = hold(expired, &cannot);
        assert_eq!(names(&now), ["b", "orphan"]);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].claim.name_any(), "a");
        assert_eq!(
            held[0].why,
            "NodePool broken cannot launch nodes: EC2NodeClass default is not ready"
        );
        let (now, held) = hold(vec![labelled("a", "broken")], &BTreeMap::new());
        assert_eq!(names(&now), ["a"], "resumes once the pool can launch");
        assert!(held.is_empty());
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
