//! Garbage collection between the cloud and the cluster, the safety net under every crash:
//! - **leaked instances**: an instance the cloud lists as ours whose NodeClaim is gone (no
//!   NodeClaim has its providerID, and the NodeClaim its tag names does not exist or recorded a
//!   different instance) is terminated once it is older than [`Settings::orphan_grace`];
//! - **lost instances**: a launched NodeClaim whose instance the cloud no longer has is deleted
//!   (its Node, if any, then goes through termination).
//!
//! Nothing younger than the grace period is touched: a launch may be in flight, its providerID
//! not yet written. Each verdict of the pure [`decide`] is confirmed against the source of truth
//! before acting — the NodeClaim re-read from the API server, the instance asked for by ID.
//!
//! An instance's age is its NodeClaim's `creationTimestamp` when the cloud reports one (AWS
//! reports the launch time there), otherwise the time this collector first saw it; after a
//! restart that errs on the side of waiting one more grace period.
//!
//! [`Settings::orphan_grace`]: crate::settings::Settings::orphan_grace

use std::{
    collections::{BTreeSet, HashMap},
    hash::BuildHasher,
    sync::Arc,
};

use jiff::{SignedDuration, Timestamp};
use kube::{Api, ResourceExt};
use nodewright_api::NodeClaim;
use nodewright_cloudprovider::CloudProviderError;

use crate::{
    context::Context,
    error::{ControllerError, is_conflict, is_not_found},
};

/// What one collection did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Provider IDs of the leaked instances terminated.
    pub terminated_instances: Vec<String>,
    /// Names of the NodeClaims deleted because their instance is gone.
    pub deleted_node_claims: Vec<String>,
}

/// The verdicts of one collection before they are confirmed.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    /// Instances (as the cloud lists them) that look leaked.
    pub leaked: Vec<NodeClaim>,
    /// NodeClaims whose instance the cloud did not list.
    pub lost: Vec<String>,
}

/// The collector's memory: when each instance was first seen, for clouds that report no launch
/// time.
#[derive(Debug, Default)]
pub struct GarbageCollector {
    first_seen: HashMap<String, Timestamp>,
}

impl GarbageCollector {
    pub fn new() -> Self {
        Self::default()
    }

    /// One collection. Errors of single objects are logged and skipped, so one bad object does
    /// not stop the rest; listing the cloud failing fails the collection.
    pub async fn collect(&mut self, ctx: &Context) -> Result<Collected, ControllerError> {
        // The cloud first, the cluster second: a NodeClaim launched in between then shows a
        // providerID the list lacks, and the per-instance check below keeps it.
        let instances = ctx.cloud.list().await?;
        let claims = ctx.state.node_claims.all();
        let now = ctx.clock.now();
        self.observe(&instances, now);
        let grace = SignedDuration::try_from(ctx.settings.orphan_grace).unwrap_or(SignedDuration::MAX);
        let decision = decide(&instances, &claims, &self.first_seen, now, grace);

        let api: Api<NodeClaim> = Api::all(ctx.client.clone());
        let mut collected = Collected::default();
        for instance in &decision.leaked {
            match terminate_leaked(ctx, &api, instance).await {
                Ok(Some(provider_id)) => collected.terminated_instances.push(provider_id),
                Ok(None) => {}
                Err(error) => tracing::warn!(
                    instance = instance_id(instance).unwrap_or_default(),
                    %error,
                    "garbage collection: terminating a leaked instance failed"
                ),
            }
        }
        for name in &decision.lost {
            match delete_lost(ctx, &api, name).await {
                Ok(true) => collected.deleted_node_claims.push(name.clone()),
                Ok(false) => {}
                Err(error) => tracing::warn!(
                    nodeclaim = name,
                    %error,
                    "garbage collection: deleting a nodeclaim whose instance is gone failed"
                ),
            }
        }
        Ok(collected)
    }

    /// Records first sightings and forgets instances no longer listed.
    fn observe(&mut self, instances: &[NodeClaim], now: Timestamp) {
        let listed: BTreeSet<&str> = instances.iter().filter_map(instance_id).collect();
        self.first_seen.retain(|id, _| listed.contains(id.as_str()));
        for id in listed {
            self.first_seen.entry(id.to_owned()).or_insert(now);
        }
    }
}

/// Which listed instances look leaked and which NodeClaims look like their instance is gone.
/// `first_seen` dates instances the cloud gives no creation time.
pub fn decide<S: BuildHasher>(
    instances: &[NodeClaim],
    claims: &[Arc<NodeClaim>],
    first_seen: &HashMap<String, Timestamp, S>,
    now: Timestamp,
    grace: SignedDuration,
) -> Decision {
    let old_enough = |since: Option<Timestamp>| {
        since
            .and_then(|t| t.checked_add(grace).ok())
            .is_some_and(|until| now >= until)
    };
    let claimed: BTreeSet<&str> = claims.iter().filter_map(|c| instance_id(c)).collect();
    let by_name: HashMap<&str, &NodeClaim> = claims
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, c.as_ref())))
        .collect();
    let leaked = instances
        .iter()
        .filter(|instance| {
            let Some(id) = instance_id(instance) else {
                return false;
            };
            let launched = instance
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| first_seen.get(id).copied());
            !claimed.contains(id) && !launch_in_flight(instance, &by_name) && old_enough(launched)
        })
        .cloned()
        .collect();
    let listed: BTreeSet<&str> = instances.iter().filter_map(instance_id).collect();
    let lost = claims
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter(|c| instance_id(c).is_some_and(|id| !listed.contains(id)))
        .filter(|c| old_enough(c.metadata.creation_timestamp.as_ref().map(|t| t.0)))
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    Decision { leaked, lost }
}

/// The instance's NodeClaim exists and has not recorded an instance yet: its launch may still be
/// writing the providerID. (A NodeClaim that recorded a different instance makes this one a
/// duplicate launch, which is a leak.)
fn launch_in_flight(instance: &NodeClaim, claims_by_name: &HashMap<&str, &NodeClaim>) -> bool {
    instance
        .metadata
        .name
        .as_deref()
        .and_then(|name| claims_by_name.get(name))
        .is_some_and(|claim| instance_id(claim).is_none())
}

fn instance_id(claim: &NodeClaim) -> Option<&str> {
    claim
        .status
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .filter(|id| !id.is_empty())
}

/// Terminates a leaked instance after re-reading its NodeClaim from the API server; returns its
/// provider ID if it was terminated.
async fn terminate_leaked(
    ctx: &Context,
    api: &Api<NodeClaim>,
    instance: &NodeClaim,
) -> Result<Option<String>, ControllerError> {
    let Some(id) = instance_id(instance) else {
        return Ok(None);
    };
    if let Some(name) = instance.metadata.name.as_deref()
        && let Some(claim) = api.get_opt(name).await?
        && instance_id(&claim).is_none_or(|recorded| recorded == id)
    {
        // The cache was behind: the NodeClaim owns (or is about to record) this instance.
        return Ok(None);
    }
    tracing::info!(
        provider_id = id,
        nodeclaim = instance.metadata.name.as_deref().unwrap_or_default(),
        "garbage collection: terminating an instance with no nodeclaim"
    );
    match ctx.cloud.delete(instance).await {
        Ok(()) | Err(CloudProviderError::NodeClaimNotFound(_)) => Ok(Some(id.to_owned())),
        Err(error) => Err(error.into()),
    }
}

/// Deletes a NodeClaim after the cloud confirms its instance is gone; returns whether it did.
async fn delete_lost(ctx: &Context, api: &Api<NodeClaim>, name: &str) -> Result<bool, ControllerError> {
    let Some(claim) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let Some(id) = instance_id(&claim) else {
        return Ok(false);
    };
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(false);
    }
    match ctx.cloud.get(id).await {
        Ok(_) => return Ok(false),
        Err(CloudProviderError::NodeClaimNotFound(_)) => {}
        Err(error) => return Err(error.into()),
    }
    tracing::info!(
        nodeclaim = name,
        provider_id = id,
        "garbage collection: deleting a nodeclaim whose instance is gone"
    );
    let params = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: claim.metadata.uid.clone(),
            resource_version: None,
        }),
        ..kube::api::DeleteParams::default()
    };
    match api.delete(&claim.name_any(), &params).await {
        Ok(_) => Ok(true),
        Err(error) if is_not_found(&error) || is_conflict(&error) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Collects garbage every [`Settings::garbage_collection_interval`] forever.
///
/// [`Settings::garbage_collection_interval`]: crate::settings::Settings::garbage_collection_interval
pub async fn run(ctx: Context) {
    let mut collector = GarbageCollector::new();
    loop {
        match collector.collect(&ctx).await {
            Ok(collected) if collected != Collected::default() => {
                tracing::info!(
                    terminated_instances = ?collected.terminated_instances,
                    deleted_node_claims = ?collected.deleted_node_claims,
                    "garbage collected"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "garbage collection failed"),
        }
        tokio::time::sleep(ctx.settings.wall(ctx.settings.garbage_collection_interval)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

    use serde_json::json;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn claim(name: &str, provider_id: Option<&str>, created: Option<i64>) -> NodeClaim {
        let mut value = json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": { "name": name },
            "spec": {
                "requirements": [],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
            },
            "status": {}
        });
        if let Some(id) = provider_id {
            value["status"]["providerID"] = json!(id);
        }
        if let Some(created) = created {
            value["metadata"]["creationTimestamp"] = json!(nodewright_api::clock::rfc3339(at(created)));
        }
        serde_json::from_value(value).unwrap()
    }

    fn ids(decision: &Decision) -> Vec<&str> {
        decision.leaked.iter().filter_map(instance_id).collect()
    }

    #[test]
    fn leaked_instances_wait_out_the_grace_period() {
        let grace = SignedDuration::from_secs(30);
        let instances = [
            claim("gone", Some("i-gone"), None),
            claim("owned", Some("i-owned"), None),
            claim("in-flight", Some("i-in-flight"), None),
            claim("duplicate", Some("i-duplicate"), None),
            claim("reported-old", Some("i-reported-old"), Some(-60)),
        ];
        let claims = [
            Arc::new(claim("owned", Some("i-owned"), Some(-3600))),
            Arc::new(claim("in-flight", None, Some(-3600))),
            Arc::new(claim("duplicate", Some("i-other"), Some(-3600))),
        ];
        let first_seen: HashMap<String, Timestamp> = instances
            .iter()
            .map(|i| (instance_id(i).unwrap().to_owned(), at(0)))
            .collect();
        let young = decide(&instances, &claims, &first_seen, at(29), grace);
        // Only the instance whose cloud-reported launch is old enough goes before the grace.
        assert_eq!(ids(&young), ["i-reported-old"]);
        let old = decide(&instances, &claims, &first_seen, at(30), grace);
        assert_eq!(ids(&old), ["i-gone", "i-duplicate", "i-reported-old"]);
    }

    #[test]
    fn nodeclaims_whose_instance_is_gone_are_lost_once_old_enough() {
        let grace = SignedDuration::from_secs(30);
        let instances = [claim("alive", Some("i-alive"), None)];
        let mut deleting = claim("deleting", Some("i-deleting"), Some(-3600));
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(-1)));
        let claims = [
            Arc::new(claim("alive", Some("i-alive"), Some(-3600))),
            Arc::new(claim("lost", Some("i-lost"), Some(-3600))),
            Arc::new(claim("lost-young", Some("i-lost-young"), Some(-10))),
            Arc::new(claim("unlaunched", None, Some(-3600))),
            Arc::new(deleting),
        ];
        let decision = decide(&instances, &claims, &HashMap::new(), at(0), grace);
        assert_eq!(decision.lost, ["lost"]);
        assert!(decision.leaked.is_empty());
    }

    #[test]
    fn first_sightings_are_kept_until_the_instance_is_no_longer_listed() {
        let mut collector = GarbageCollector::new();
        collector.observe(&[claim("a", Some("i-a"), None)], at(0));
        collector.observe(
            &[claim("a", Some("i-a"), None), claim("b", Some("i-b"), None)],
            at(10),
        );
        assert_eq!(collector.first_seen.get("i-a"), Some(&at(0)));
        assert_eq!(collector.first_seen.get("i-b"), Some(&at(10)));
        collector.observe(&[claim("b", Some("i-b"), None)], at(20));
        assert!(!collector.first_seen.contains_key("i-a"));
    }
}
