//! The disruption controller's PodDisruptionBudget status, with the arithmetic the Eviction API
//! uses ([`crate::eviction::budget`]), so `kubectl get pdb` and an eviction agree on what is
//! allowed: expected pods are the matching pods that are neither terminating nor finished,
//! healthy ones are those that are Ready, desiredHealthy comes from `minAvailable` or
//! `expected - maxUnavailable` (percentages rounded up), and
//! `disruptionsAllowed = max(0, healthy - desiredHealthy)`.
//!
//! Simplification: expected pods are always counted from the pods, where kube takes them from
//! the owning controllers' scale for percentages and `maxUnavailable`; `disruptedPods` is not
//! tracked.

use k8s_openapi::{
    api::{
        core::v1::Pod,
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus},
    },
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use serde_json::Value;

use super::{pods::PodIndex, wrote};
use crate::{
    dataplane::{Ctx, DataPlaneError},
    eviction::{self, Budget},
    selector::LabelSelector,
    store::Subresource,
};

pub(super) fn reconcile(ctx: &Ctx<'_>, pods: &PodIndex) -> Result<usize, DataPlaneError> {
    let budgets: Vec<PodDisruptionBudget> = ctx.list("policy", "poddisruptionbudgets")?;
    let mut writes = 0;
    for pdb in &budgets {
        let ns = pdb.metadata.namespace.as_deref().unwrap_or_default();
        let Some(budget) = budget(pdb, pods.in_namespace(ns))? else {
            continue;
        };
        let status = status(pdb, &budget, &ctx.now_time());
        if pdb.status.as_ref() == Some(&status) {
            continue;
        }
        let name = pdb.metadata.name.as_deref().unwrap_or_default();
        writes += wrote(ctx.update::<PodDisruptionBudget>(
            "policy",
            "poddisruptionbudgets",
            ns,
            name,
            Subresource::Status,
            &mut |p| p.status = Some(status.clone()),
        )?);
    }
    Ok(writes)
}

/// The budget over the pods its selector matches; `None` when the selector is invalid (kube
/// leaves such a budget's status alone too). A missing selector matches no pod and an empty one
/// every pod of the namespace (policy/v1).
fn budget<'a>(
    pdb: &PodDisruptionBudget,
    pods: impl Iterator<Item = &'a Pod>,
) -> Result<Option<Budget>, DataPlaneError> {
    let encode = |e: serde_json::Error| DataPlaneError::Encode(e.to_string());
    let selector = match pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        None => None,
        Some(selector) => {
            match LabelSelector::from_object(&serde_json::to_value(selector).map_err(encode)?) {
                Ok(selector) => Some(selector),
                Err(_) => return Ok(None),
            }
        }
    };
    let matching: Vec<Value> = match &selector {
        None => Vec::new(),
        Some(selector) => pods
            .filter(|p| {
                let labels = p.metadata.labels.as_ref();
                selector.matches(|k| labels.and_then(|l| l.get(k)).map(String::as_str))
            })
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .map_err(encode)?,
    };
    Ok(Some(eviction::budget(
        &serde_json::to_value(pdb).map_err(encode)?,
        &matching,
    )))
}

fn status(pdb: &PodDisruptionBudget, budget: &Budget, now: &Time) -> PodDisruptionBudgetStatus {
    let int = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
    let allowed = budget.disruptions_allowed();
    let previous = pdb.status.clone().unwrap_or_default();
    let (status, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let mut conditions = previous.conditions.clone().unwrap_or_default();
    let wanted = Condition {
        type_: "DisruptionAllowed".to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: String::new(),
        observed_generation: pdb.metadata.generation,
        last_transition_time: now.clone(),
    };
    match conditions.iter_mut().find(|c| c.type_ == wanted.type_) {
        Some(c) if c.status == wanted.status => {
            c.reason = wanted.reason;
            c.observed_generation = wanted.observed_generation;
        }
        Some(c) => *c = wanted,
        None => conditions.push(wanted),
    }
    PodDisruptionBudgetStatus {
        observed_generation: pdb.metadata.generation,
        expected_pods: int(budget.expected),
        current_healthy: int(budget.healthy),
        desired_healthy: int(budget.desired_healthy),
        disruptions_allowed: int(allowed),
        conditions: Some(conditions),
        disrupted_pods: previous.disrupted_pods,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::{
            core::v1::{PodCondition, PodStatus},
            policy::v1::PodDisruptionBudgetSpec,
        },
        apimachinery::pkg::{
            apis::meta::v1::{LabelSelector as Selector, ObjectMeta},
            util::intstr::IntOrString,
        },
    };

    use super::*;

    fn pod(app: &str, ready: bool, terminating: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                labels: Some([("app".to_owned(), app.to_owned())].into()),
                deletion_timestamp: terminating.then(|| Time("2024-01-01T00:00:00Z".parse().unwrap())),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    fn pdb(
        min: Option<IntOrString>,
        max: Option<IntOrString>,
        selector: Option<Selector>,
    ) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                selector,
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        }
    }

    fn app(name: &str) -> Selector {
        Selector {
            match_labels: Some([("app".to_owned(), name.to_owned())].into()),
            match_expressions: None,
        }
    }

    fn numbers(p: &PodDisruptionBudget, pods: &[Pod]) -> (i64, i64, i64, i64) {
        let b = budget(p, pods.iter()).unwrap().unwrap();
        (b.expected, b.healthy, b.desired_healthy, b.disruptions_allowed())
    }

    #[test]
    fn percentages_round_up_for_both_fields() {
        let pods: Vec<Pod> = (0..5).map(|i| pod("web", i < 4, false)).collect();
        let pct = |s: &str| Some(IntOrString::String(s.into()));
        // minAvailable 50% of 5 = 2.5 → 3 must stay healthy.
        assert_eq!(
            numbers(&pdb(pct("50%"), None, Some(app("web"))), &pods),
            (5, 4, 3, 1)
        );
        // maxUnavailable 30% of 5 = 1.5 → 2 may go, so 3 must stay.
        assert_eq!(
            numbers(&pdb(None, pct("30%"), Some(app("web"))), &pods),
            (5, 4, 3, 1)
        );
        assert_eq!(
            numbers(&pdb(None, pct("10%"), Some(app("web"))), &pods),
            (5, 4, 4, 0)
        );
        assert_eq!(
            numbers(&pdb(Some(IntOrString::Int(2)), None, Some(app("web"))), &pods),
            (5, 4, 2, 2)
        );
    }

    #[test]
    fn selection_skips_other_apps_terminating_pods_and_null_selectors() {
        let pods = [
            pod("web", true, false),
            pod("web", true, true),
            pod("db", true, false),
        ];
        assert_eq!(
            numbers(&pdb(Some(IntOrString::Int(1)), None, Some(app("web"))), &pods),
            (1, 1, 1, 0)
        );
        let everything = Some(Selector::default());
        assert_eq!(
            numbers(&pdb(Some(IntOrString::Int(1)), None, everything), &pods),
            (2, 2, 1, 1)
        );
        assert_eq!(
            numbers(&pdb(Some(IntOrString::Int(0)), None, None), &pods),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn the_condition_follows_disruptions_allowed() {
        let t0 = Time("2024-01-01T00:00:00Z".parse().unwrap());
        let t1 = Time("2024-01-01T00:10:00Z".parse().unwrap());
        let mut p = pdb(Some(IntOrString::Int(1)), None, Some(app("web")));
        let allowing = Budget {
            expected: 2,
            healthy: 2,
            desired_healthy: 1,
        };
        let s = status(&p, &allowing, &t0);
        assert_eq!(s.disruptions_allowed, 1);
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "SufficientPods"));
        p.status = Some(s);
        let same = status(&p, &allowing, &t1);
        assert_eq!(
            same.conditions.as_ref().unwrap()[0].last_transition_time,
            t0,
            "unchanged"
        );
        let blocked = status(
            &p,
            &Budget {
                expected: 2,
                healthy: 1,
                desired_healthy: 1,
            },
            &t1,
        );
        let c = &blocked.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), &c.last_transition_time),
            ("False", "InsufficientPods", &t1)
        );
        assert_eq!(blocked.disruptions_allowed, 0);
    }
}
