//! NodeOverlay status (Karpenter's `nodeoverlay.controller`): `ValidationSucceeded` True when the
//! overlay is applied; False with reason `RuntimeValidation` when it is invalid, or `Conflict`
//! (naming the other overlay and the field) when an overlay of the same weight sets a field
//! differently on a common instance type. `Ready` follows it.
//!
//! The decision is the one [`super::apply`] makes for the provisioner and disruption, over the
//! same instance types, so the status says exactly which overlays the solver sees.

use std::time::Duration;

use jiff::Timestamp;
use kube::{Api, ResourceExt, api::PostParams};
use nodewright_api::{
    NodeOverlay, NodeOverlayStatus,
    conditions::{ConditionSet, nodeoverlay},
};

use super::{Evaluation, Rejection};
use crate::{context::Context, error::ControllerError};

/// How often overlays are re-evaluated when nothing they depend on changed: instance types and
/// prices change without an event (Karpenter re-evaluates every 6 h; prices refresh hourly).
pub const POLL_INTERVAL: Duration = Duration::from_mins(5);

/// Keeps every NodeOverlay's status current, forever.
pub async fn run(ctx: Context) {
    let mut overlays = ctx.state.node_overlays.changes();
    let mut pools = ctx.state.node_pools.changes();
    let mut classes = ctx.state.node_classes.changes();
    loop {
        overlays.mark_seen();
        pools.mark_seen();
        classes.mark_seen();
        if let Err(error) = reconcile_all(&ctx).await {
            tracing::warn!(%error, "nodeoverlay status");
        }
        tokio::select! {
            () = overlays.changed() => {}
            () = pools.changed() => {}
            () = classes.changed() => {}
            () = tokio::time::sleep(ctx.settings.wall(POLL_INTERVAL)) => {}
        }
    }
}

/// One round over every overlay: read the instance types, decide, write the statuses that
/// changed. Write conflicts are left to the next round; the first other failure is returned
/// after every overlay was tried.
pub async fn reconcile_all(ctx: &Context) -> Result<(), ControllerError> {
    let overlays = ctx.state.node_overlays.all();
    if overlays.is_empty() {
        return Ok(());
    }
    // The shared evaluation, re-listed only when a NodePool, NodeClass or overlay changed.
    let evaluated = ctx.state.instance_types.current(ctx).await;
    let now = ctx.clock.now();
    let mut first_error = None;
    for overlay in overlays {
        let desired = desired_status(&overlay, &evaluated.evaluation, now);
        match write(ctx, &overlay, desired).await {
            Ok(()) => {}
            Err(ControllerError::Kube(error)) if crate::error::is_conflict(&error) => {}
            Err(error) => {
                tracing::warn!(nodeoverlay = %overlay.name_any(), %error, "could not write status");
                first_error.get_or_insert(error);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The status `overlay` should have given what applying the overlays decided. Pure.
pub fn desired_status(overlay: &NodeOverlay, evaluation: &Evaluation, now: Timestamp) -> NodeOverlayStatus {
    let mut status = overlay.status.clone().unwrap_or_default();
    let mut conditions = ConditionSet::new(
        &mut status.conditions,
        &nodeoverlay::DEPENDENTS,
        overlay.metadata.generation,
        now,
    );
    match evaluation.rejected.get(&overlay.name_any()) {
        None => conditions.set_true(nodeoverlay::VALIDATION_SUCCEEDED),
        Some(rejection @ Rejection::Invalid(_)) => conditions.set_false(
            nodeoverlay::VALIDATION_SUCCEEDED,
            nodeoverlay::REASON_RUNTIME_VALIDATION,
            &rejection.to_string(),
        ),
        Some(rejection @ Rejection::Conflict { .. }) => conditions.set_false(
            nodeoverlay::VALIDATION_SUCCEEDED,
            nodeoverlay::REASON_CONFLICT,
            &rejection.to_string(),
        ),
    };
    status
}

async fn write(
    ctx: &Context,
    overlay: &NodeOverlay,
    desired: NodeOverlayStatus,
) -> Result<(), ControllerError> {
    if overlay.status.as_ref() == Some(&desired) {
        return Ok(());
    }
    let mut updated = overlay.clone();
    updated.status = Some(desired);
    let api: Api<NodeOverlay> = Api::all(ctx.client.clone());
    match api
        .replace_status(&overlay.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if crate::error::is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nodewright_api::conditions::{FALSE, READY, TRUE};
    use serde_json::json;

    use super::*;
    use crate::test_fixtures::arc;

    fn overlay() -> NodeOverlay {
        (*arc::<NodeOverlay>(json!({
            "apiVersion": "karpenter.sh/v1alpha1", "kind": "NodeOverlay",
            "metadata": { "name": "discount", "generation": 2 },
            "spec": { "requirements": [], "priceAdjustment": "-10%" }
        })))
        .clone()
    }

    fn condition<'a>(status: &'a NodeOverlayStatus, kind: &str) -> (&'a str, &'a str, &'a str) {
        let c = status.conditions.iter().find(|c| c.type_ == kind).unwrap();
        (c.status.as_str(), c.reason.as_str(), c.message.as_str())
    }

    #[test]
    fn applied_overlays_are_validated_and_ready() {
        let status = desired_status(&overlay(), &Evaluation::default(), Timestamp::UNIX_EPOCH);
        assert_eq!(condition(&status, nodeoverlay::VALIDATION_SUCCEEDED).0, TRUE);
        assert_eq!(condition(&status, READY).0, TRUE);
    }

    #[test]
    fn conflicts_name_the_other_overlay_and_the_field() {
        let evaluation = Evaluation {
            rejected: BTreeMap::from([(
                "discount".to_owned(),
                Rejection::Conflict {
                    with: "savings-plan".into(),
                    field: "price".into(),
                },
            )]),
            ..Evaluation::default()
        };
        let status = desired_status(&overlay(), &evaluation, Timestamp::UNIX_EPOCH);
        let (state, reason, message) = condition(&status, nodeoverlay::VALIDATION_SUCCEEDED);
        assert_eq!((state, reason), (FALSE, nodeoverlay::REASON_CONFLICT));
        assert!(
            message.contains("savings-plan") && message.contains("price"),
            "{message}"
        );
        assert_eq!(condition(&status, READY).0, FALSE);
    }

    #[test]
    fn invalid_overlays_fail_runtime_validation() {
        let evaluation = Evaluation {
            rejected: BTreeMap::from([(
                "discount".to_owned(),
                Rejection::Invalid("spec.price: bad".into()),
            )]),
            ..Evaluation::default()
        };
        let status = desired_status(&overlay(), &evaluation, Timestamp::UNIX_EPOCH);
        assert_eq!(
            condition(&status, nodeoverlay::VALIDATION_SUCCEEDED).1,
            nodeoverlay::REASON_RUNTIME_VALIDATION
        );
    }
}
