//! `capacityreservation.capacitytype`: every [`Settings::reservation_check_interval`]
//! (Karpenter: a minute) and whenever node classes change, NodeClaims and Nodes labelled
//! `karpenter.sh/capacity-type: reserved` whose reservation their node class no longer lists are
//! relabelled `on-demand` and lose the `karpenter.k8s.aws/capacity-reservation-*` labels: the
//! instance keeps running and EC2 bills it as on-demand. Consolidation then prices it as such.
//!
//! [`Settings::reservation_check_interval`]: crate::Settings::reservation_check_interval

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use nodewright_api::{EC2NodeClass, NodeClaim, labels};

use super::{Reservations, node_class_of, reserved_in};
use crate::{
    context::Context,
    error::{ControllerError, is_not_found},
};

/// Demotes NodeClaims and Nodes of vanished reservations, forever.
pub async fn run(ctx: Context) {
    let mut classes = ctx.state.node_classes.changes();
    loop {
        classes.mark_seen();
        let demotion = decide(
            &ctx.state.node_claims.all(),
            &ctx.state.nodes.all(),
            &ctx.state.node_classes.all(),
        );
        for name in &demotion.node_claims {
            if let Err(error) = demote::<NodeClaim>(&ctx, name).await {
                tracing::warn!(nodeclaim = %name, %error, "reserved NodeClaim not demoted; retrying");
            }
        }
        for name in &demotion.nodes {
            if let Err(error) = demote::<Node>(&ctx, name).await {
                tracing::warn!(node = %name, %error, "reserved Node not demoted; retrying");
            }
        }
        tokio::select! {
            () = classes.changed() => {}
            () = tokio::time::sleep(ctx.settings.wall(ctx.settings.reservation_check_interval)) => {}
        }
    }
}

/// The NodeClaims and Nodes (by name) to demote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Demotion {
    pub node_claims: Vec<String>,
    pub nodes: Vec<String>,
}

/// Which reserved NodeClaims and Nodes lost their reservation. A Node is judged by its
/// NodeClaim's node class (matched by provider ID), so a Node whose NodeClaim was demoted on an
/// earlier pass is still demoted. Pure.
pub fn decide(
    claims: &[Arc<NodeClaim>],
    nodes: &[Arc<Node>],
    node_classes: &[Arc<EC2NodeClass>],
) -> Demotion {
    let reservations = Reservations::of(node_classes);
    let gone = |node_class: &str, id: &str| matches!(reservations.lookup(node_class, id), Some(None));
    let mut demotion = Demotion::default();
    for claim in claims {
        if let Some(id) = reserved_in(claim.labels())
            && gone(node_class_of(claim), id)
        {
            demotion.node_claims.push(claim.name_any());
        }
    }
    let claim_of: std::collections::HashMap<&str, &NodeClaim> = claims
        .iter()
        .filter_map(|c| Some((c.provider_id()?, c.as_ref())))
        .collect();
    for node in nodes {
        let Some(id) = reserved_in(node.labels()) else {
            continue;
        };
        let provider_id = node.spec.as_ref().and_then(|s| s.provider_id.as_deref());
        let claim = provider_id.and_then(|p| claim_of.get(p));
        if claim.is_some_and(|claim| gone(node_class_of(claim), id)) {
            demotion.nodes.push(node.name_any());
        }
    }
    demotion
}

/// The merge patch of a demotion: `on-demand`, no reservation labels.
pub fn demotion_patch() -> serde_json::Value {
    serde_json::json!({ "metadata": { "labels": {
        labels::CAPACITY_TYPE: labels::CAPACITY_TYPE_ON_DEMAND,
        labels::AWS_CAPACITY_RESERVATION_ID: null,
        labels::AWS_CAPACITY_RESERVATION_TYPE: null,
        labels::AWS_CAPACITY_RESERVATION_INTERRUPTIBLE: null,
    } } })
}

async fn demote<K>(ctx: &Context, name: &str) -> Result<(), ControllerError>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(ctx.client.clone());
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&demotion_patch()))
        .await
    {
        Ok(_) => {
            tracing::info!(kind = %K::kind(&()), name, "capacity reservation gone: demoted to on-demand");
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

    pub(super) fn node_class(reservations: &[&str]) -> Arc<EC2NodeClass> {
        let reservations: Vec<serde_json::Value> = reservations
            .iter()
            .map(|id| {
                json!({"id": id, "availabilityZone": "us-east-1a", "instanceType": "m5.large",
                             "ownerID": "123456789012", "reservationType": "default", "state": "active"})
            })
            .collect();
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
                "metadata": {"name": "default"},
                "spec": {"amiSelectorTerms": [{"alias": "al2023@latest"}], "role": "r",
                         "subnetSelectorTerms": [{"id": "subnet-1"}],
                         "securityGroupSelectorTerms": [{"id": "sg-1"}]},
                "status": {"capacityReservations": reservations},
            }))
            .unwrap(),
        )
    }

    fn claim(name: &str, capacity_type: &str, reservation: Option<&str>) -> Arc<NodeClaim> {
        let mut claim_labels = json!({ "karpenter.sh/capacity-type": capacity_type });
        if let Some(id) = reservation {
            claim_labels["karpenter.k8s.aws/capacity-reservation-id"] = json!(id);
        }
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
                "metadata": {"name": name, "labels": claim_labels},
                "spec": {"requirements": [],
                         "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}},
                "status": {"providerID": format!("aws:///us-east-1a/i-{name}")},
            }))
            .unwrap(),
        )
    }

    fn node(name: &str, claim: &str, reservation: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {
                    "karpenter.sh/capacity-type": "reserved",
                    "karpenter.k8s.aws/capacity-reservation-id": reservation}},
                "spec": {"providerID": format!("aws:///us-east-1a/i-{claim}")},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn only_reserved_objects_whose_reservation_left_the_status_are_demoted() {
        let claims = [
            claim("kept", "reserved", Some("cr-live")),
            claim("lost", "reserved", Some("cr-gone")),
            claim("already", "on-demand", None),
            claim("spot", "spot", None),
        ];
        // The Node of an already demoted NodeClaim is still reserved: it is demoted too.
        let nodes = [
            node("n-kept", "kept", "cr-live"),
            node("n-lost", "lost", "cr-gone"),
            node("n-already", "already", "cr-gone"),
            node("n-orphan", "nobody", "cr-gone"),
        ];
        let demotion = decide(&claims, &nodes, &[node_class(&["cr-live"])]);
        assert_eq!(
            demotion,
            Demotion {
                node_claims: vec!["lost".into()],
                nodes: vec!["n-lost".into(), "n-already".into()],
            }
        );
        // A node class not resolved (or not seen) yet says nothing: nothing is demoted.
        assert_eq!(decide(&claims, &nodes, &[]), Demotion::default());
    }

    #[test]
    fn the_patch_relabels_on_demand_and_removes_the_reservation_labels() {
        let patch = demotion_patch();
        let patched = &patch["metadata"]["labels"];
        assert_eq!(patched[labels::CAPACITY_TYPE], "on-demand");
        for key in [
            labels::AWS_CAPACITY_RESERVATION_ID,
            labels::AWS_CAPACITY_RESERVATION_TYPE,
            labels::AWS_CAPACITY_RESERVATION_INTERRUPTIBLE,
        ] {
            assert_eq!(patched.get(key), Some(&serde_json::Value::Null), "{key}");
        }
    }
}
