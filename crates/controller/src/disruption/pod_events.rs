//! `status.lastPodEventTime` on NodeClaims (Karpenter's pod-events controller): the last time a
//! pod was bound to the node, or finished or left it. `consolidateAfter` is measured from it.
//!
//! Nothing else writes it, so this loop does: it remembers which pods each node holds and, when
//! the set changes, stamps the node's NodeClaim with the clock's now. After a restart the first
//! observation is a baseline (no writes): a change missed while down leaves an older time, which
//! only makes the node eligible sooner by the time the controller was away.

use std::collections::{BTreeSet, HashMap, HashSet};

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use nodewright_api::NodeClaim;
use serde_json::json;

use crate::{context::Context, error::is_not_found, termination::drain};

/// Pods per node, by uid.
#[derive(Debug, Default)]
pub(super) struct PodEvents {
    seen: Option<HashMap<String, BTreeSet<String>>>,
}

impl PodEvents {
    /// Compares the pods on each node with the last observation and stamps the NodeClaims of
    /// nodes whose pods changed.
    pub(super) async fn record(&mut self, ctx: &Context) {
        let current = pods_by_node(ctx);
        let Some(previous) = self.seen.as_ref() else {
            self.seen = Some(current);
            return;
        };
        let changed: BTreeSet<String> = current
            .iter()
            .filter(|(node, pods)| previous.get(*node) != Some(*pods))
            .map(|(node, _)| node)
            .chain(previous.keys().filter(|node| !current.contains_key(*node)))
            .cloned()
            .collect();
        self.seen = Some(current);
        if changed.is_empty() {
            return;
        }
        // One pass over each cache (not a scan per changed node): the changed nodes' provider IDs,
        // then the NodeClaims launched with them.
        let provider_ids: HashSet<String> = ctx
            .state
            .nodes
            .all()
            .iter()
            .filter(|n| changed.contains(&n.name_any()))
            .filter_map(|n| n.spec.as_ref()?.provider_id.clone())
            .collect();
        let claims: Vec<String> = ctx
            .state
            .node_claims
            .all()
            .iter()
            .filter(|c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.provider_id.as_ref())
                    .is_some_and(|id| provider_ids.contains(id))
            })
            .map(|c| c.name_any())
            .collect();
        let now = ctx.clock.now();
        let api: Api<NodeClaim> = Api::all(ctx.client.clone());
        for claim in claims {
            let patch = json!({ "status": { "lastPodEventTime": now.to_string() } });
            if let Err(error) = api
                .patch_status(&claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                && !is_not_found(&error)
            {
                // Best effort: the time is only as exact as the next change then.
                tracing::warn!(nodeclaim = %claim, %error, "could not record a pod event");
            }
        }
    }
}

fn pods_by_node(ctx: &Context) -> HashMap<String, BTreeSet<String>> {
    let mut by_node: HashMap<String, BTreeSet<String>> = HashMap::new();
    for pod in ctx.state.pods.all() {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        if drain::is_terminal(&pod) {
            continue;
        }
        by_node
            .entry(node)
            .or_default()
            .insert(pod.metadata.uid.clone().unwrap_or_else(|| pod.name_any()));
    }
    by_node
}
