//! The NodePool hash annotations (Karpenter's `nodepool.hash` controller): every NodePool carries
//! `karpenter.sh/nodepool-hash` (its template's [`hash::nodepool_hash`]) and
//! `karpenter.sh/nodepool-hash-version`, which drift detection compares with the ones each
//! NodeClaim was stamped with at creation.
//!
//! **Version changes.** A NodeClaim stamped with another version (by Karpenter before a
//! migration, or by an older hash algorithm) cannot be compared: it is re-stamped with the
//! current version and its NodePool's current hash, so it is not drifted by the change of
//! algorithm. One already marked `Drifted` gets the version only and keeps its old hash, so it
//! stays drifted (Karpenter's rule). NodeClaims are re-stamped before their NodePool, so a crash in
//! between only repeats the work.

use std::{collections::HashMap, sync::Arc, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use nodewright_api::{NodeClaim, NodePool, conditions, hash, labels};
use serde_json::json;

use crate::{
    context::Context,
    error::{ControllerError, is_conflict, is_not_found},
};

/// How often every pool is checked when nothing changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(30);

/// Keeps the hash annotations current, forever.
pub async fn run(ctx: Context) {
    let mut pools = ctx.state.node_pools.changes();
    let mut claims = ctx.state.node_claims.changes();
    loop {
        pools.mark_seen();
        claims.mark_seen();
        for stamp in decide(&ctx.state.node_pools.all(), &ctx.state.node_claims.all()) {
            match write(&ctx, &stamp).await {
                Ok(()) => {}
                // Changed meanwhile: the next round sees the new object.
                Err(ControllerError::Kube(error)) if is_conflict(&error) => {}
                Err(error) => tracing::warn!(object = %stamp.describe(), %error, "nodepool hash"),
            }
        }
        tokio::select! {
            () = pools.changed() => {}
            () = claims.changed() => {}
            () = tokio::time::sleep(ctx.settings.wall(POLL_INTERVAL)) => {}
        }
    }
}

/// Annotations to write on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamp {
    NodePool {
        name: String,
        resource_version: Option<String>,
        hash: String,
    },
    NodeClaim {
        name: String,
        resource_version: Option<String>,
        /// None: the version only (the NodeClaim is drifted and keeps its hash).
        hash: Option<String>,
    },
}

impl Stamp {
    fn describe(&self) -> String {
        match self {
            Self::NodePool { name, .. } => format!("nodepool/{name}"),
            Self::NodeClaim { name, .. } => format!("nodeclaim/{name}"),
        }
    }
}

/// The writes that bring every NodePool and NodeClaim up to date: NodeClaims first.
pub fn decide(pools: &[Arc<NodePool>], claims: &[Arc<NodeClaim>]) -> Vec<Stamp> {
    let hashes: HashMap<String, String> = pools
        .iter()
        .map(|p| (p.name_any(), hash::nodepool_hash(p)))
        .collect();
    let mut stamps: Vec<Stamp> = claims
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter(|c| {
            annotation(&c.metadata, labels::NODE_POOL_HASH_VERSION) != Some(hash::NODEPOOL_HASH_VERSION)
        })
        .filter_map(|claim| {
            let pool_hash = hashes.get(claim.nodepool_name()?)?;
            let drifted = claim.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == conditions::nodeclaim::DRIFTED)
            });
            Some(Stamp::NodeClaim {
                name: claim.name_any(),
                resource_version: claim.resource_version(),
                hash: (!drifted).then(|| pool_hash.clone()),
            })
        })
        .collect();
    for pool in pools {
        let hash = &hashes[&pool.name_any()];
        if annotation(&pool.metadata, labels::NODE_POOL_HASH) != Some(hash.as_str())
            || annotation(&pool.metadata, labels::NODE_POOL_HASH_VERSION) != Some(hash::NODEPOOL_HASH_VERSION)
        {
            stamps.push(Stamp::NodePool {
                name: pool.name_any(),
                resource_version: pool.resource_version(),
                hash: hash.clone(),
            });
        }
    }
    stamps
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Merge-patches the annotations, guarded by the resourceVersion they were decided from.
async fn write(ctx: &Context, stamp: &Stamp) -> Result<(), ControllerError> {
    let result = match stamp {
        Stamp::NodePool {
            name,
            resource_version,
            hash,
        } => {
            let patch = json!({ "metadata": {
                "resourceVersion": resource_version,
                "annotations": {
                    labels::NODE_POOL_HASH: hash,
                    labels::NODE_POOL_HASH_VERSION: hash::NODEPOOL_HASH_VERSION,
                },
            } });
            Api::<NodePool>::all(ctx.client.clone())
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop)
        }
        Stamp::NodeClaim {
            name,
            resource_version,
            hash,
        } => {
            let mut annotations = json!({ labels::NODE_POOL_HASH_VERSION: hash::NODEPOOL_HASH_VERSION });
            if let Some(hash) = hash {
                annotations[labels::NODE_POOL_HASH] = json!(hash);
            }
            let patch = json!({ "metadata": {
                "resourceVersion": resource_version,
                "annotations": annotations,
            } });
            Api::<NodeClaim>::all(ctx.client.clone())
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop)
        }
    };
    match result {
        Ok(()) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::test_fixtures::{arc, pool};

    fn claim(name: &str, annotations: &Value, drifted: bool) -> Arc<NodeClaim> {
        let conditions = if drifted {
            json!([{ "type": "Drifted", "status": "True", "reason": "NodePoolDrifted", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z" }])
        } else {
            json!([])
        };
        arc(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": { "name": name, "resourceVersion": "7", "labels": { "karpenter.sh/nodepool": "default" },
                "annotations": annotations },
            "spec": { "requirements": [], "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } },
            "status": { "conditions": conditions }
        }))
    }

    fn stamped_pool() -> Arc<NodePool> {
        let mut pool = (*pool()).clone();
        let hash = hash::nodepool_hash(&pool);
        pool.annotations_mut().insert(labels::NODE_POOL_HASH.into(), hash);
        pool.annotations_mut().insert(
            labels::NODE_POOL_HASH_VERSION.into(),
            hash::NODEPOOL_HASH_VERSION.into(),
        );
        Arc::new(pool)
    }

    #[test]
    fn a_new_pool_is_stamped_and_a_stamped_one_is_left_alone() {
        let stamps = decide(&[pool()], &[]);
        assert_eq!(
            stamps,
            [Stamp::NodePool {
                name: "default".into(),
                resource_version: None,
                hash: hash::nodepool_hash(&pool()),
            }]
        );
        assert!(decide(&[stamped_pool()], &[]).is_empty());
    }

    #[test]
    fn claims_of_another_version_are_restamped_unless_drifted_and_current_ones_are_not() {
        let current = hash::nodepool_hash(&pool());
        let karpenter =
            json!({ "karpenter.sh/nodepool-hash": "123", "karpenter.sh/nodepool-hash-version": "v3" });
        let ours = json!({ "karpenter.sh/nodepool-hash": "999", "karpenter.sh/nodepool-hash-version": hash::NODEPOOL_HASH_VERSION });
        let claims = [
            claim("migrated", &karpenter, false),
            claim("drifted", &karpenter, true),
            claim("current", &ours, false),
        ];
        let stamps = decide(&[stamped_pool()], &claims);
        assert_eq!(
            stamps,
            [
                Stamp::NodeClaim {
                    name: "migrated".into(),
                    resource_version: Some("7".into()),
                    hash: Some(current),
                },
                Stamp::NodeClaim {
                    name: "drifted".into(),
                    resource_version: Some("7".into()),
                    hash: None,
                },
            ],
            "a current-version claim keeps its hash, even a different one: that is drift"
        );
    }

    #[test]
    fn claims_of_a_missing_pool_are_left_alone() {
        let claims = [claim("orphan", &json!({}), false)];
        assert!(decide(&[], &claims).is_empty());
    }
}
