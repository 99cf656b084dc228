//! What the cloud is asked to launch for a NodeClaim when overlays repriced its instance types.
//!
//! A NodeClaim lists every instance type that holds its pods, and the cloud tries them cheapest
//! first by its own prices — which would launch the type the overlay made dearer. Karpenter's
//! AWS provider then launches with a `prioritized` allocation strategy in the overlay's order;
//! the cloud seam here has no such strategy, so the request is narrowed to the type that is
//! cheapest under the overlays (a type whose offerings then run out is marked unavailable and
//! the next round plans the next one). The stored NodeClaim keeps its full list. NodeClaims with
//! `minValues` on instance types are left as they are: narrowing would break them.

use std::{borrow::Cow, collections::BTreeSet};

use kube::ResourceExt;
use nodewright_api::{NodeClaim, Operator, labels, requirements::NodeSelectorRequirementWithMinValues};
use nodewright_catalog::{InstanceType, Price};
use nodewright_cloudprovider::OfferingKey;

use crate::context::Context;

/// What the cloud is asked to launch for a claim, and which of its pool's types the overlays
/// changed (for the annotations on the launched NodeClaim, see [`applied_annotations`]).
pub(crate) struct Prioritized<'a> {
    pub(crate) claim: Cow<'a, NodeClaim>,
    repriced: BTreeSet<String>,
    capacity_set: BTreeSet<String>,
}

impl Prioritized<'_> {
    /// Karpenter's `price-overlay-applied` / `capacity-overlay-applied` annotations for a
    /// NodeClaim launched as `instance_type`.
    pub(crate) fn applied_annotations(&self, instance_type: &str) -> Vec<(&'static str, String)> {
        applied_annotations(&self.repriced, &self.capacity_set, instance_type)
    }
}

/// `claim`, or a copy listing only the instance type cheapest under the overlays when an
/// overlay repriced one of its types; with what the overlays changed in its pool.
pub(crate) async fn prioritized<'a>(ctx: &Context, claim: &'a NodeClaim) -> Prioritized<'a> {
    let untouched = |claim| Prioritized {
        claim: Cow::Borrowed(claim),
        repriced: BTreeSet::new(),
        capacity_set: BTreeSet::new(),
    };
    if ctx.state.node_overlays.store.is_empty() {
        return untouched(claim);
    }
    let Some(pool) = claim.labels().get(labels::NODE_POOL) else {
        return untouched(claim);
    };
    // The evaluation the provisioner's round made (a burst of launches lists nothing); the
    // offerings out of capacity are the cache's as of now.
    let evaluated = ctx.state.instance_types.current(ctx).await;
    let Some(types) = evaluated.types_of(pool) else {
        return untouched(claim);
    };
    let evaluation = &evaluated.evaluation;
    let now = ctx.clock.now();
    let out_of_capacity = |key: &OfferingKey| ctx.unavailable.is_unavailable(key, now);
    let of_pool = |pairs: &BTreeSet<(String, String)>| -> BTreeSet<String> {
        pairs
            .iter()
            .filter(|(p, _)| p == pool)
            .map(|(_, t)| t.clone())
            .collect()
    };
    Prioritized {
        claim: narrowed(claim, pool, types, &evaluation.repriced, out_of_capacity)
            .map_or(Cow::Borrowed(claim), Cow::Owned),
        repriced: of_pool(&evaluation.repriced),
        capacity_set: of_pool(&evaluation.capacity_set),
    }
}

/// The overlay annotations for a NodeClaim launched as `instance_type`. Pure.
pub(crate) fn applied_annotations(
    repriced: &BTreeSet<String>,
    capacity_set: &BTreeSet<String>,
    instance_type: &str,
) -> Vec<(&'static str, String)> {
    let mut annotations = Vec::new();
    if repriced.contains(instance_type) {
        annotations.push((labels::PRICE_OVERLAY_APPLIED, "true".to_owned()));
    }
    if capacity_set.contains(instance_type) {
        annotations.push((labels::CAPACITY_OVERLAY_APPLIED, "true".to_owned()));
    }
    annotations
}

/// The claim narrowed to its type cheapest under the overlays (ties: the claim's order), when
/// one of its listed types was repriced and another is listed. Offerings the listing marks
/// unavailable or `out_of_capacity` names are not considered. Pure.
pub(crate) fn narrowed(
    claim: &NodeClaim,
    pool: &str,
    types: &[InstanceType],
    repriced: &BTreeSet<(String, String)>,
    out_of_capacity: impl Fn(&OfferingKey) -> bool,
) -> Option<NodeClaim> {
    let index = claim
        .spec
        .requirements
        .iter()
        .position(|r| r.key == labels::INSTANCE_TYPE && r.operator == Operator::In)?;
    let listed = &claim.spec.requirements[index];
    if listed.min_values.is_some_and(|m| m > 1) || listed.values.len() < 2 {
        return None;
    }
    if !listed
        .values
        .iter()
        .any(|name| repriced.contains(&(pool.to_owned(), name.clone())))
    {
        return None;
    }
    let offering_rules: Vec<&NodeSelectorRequirementWithMinValues> = claim
        .spec
        .requirements
        .iter()
        .filter(|r| r.key == labels::ZONE || r.key == labels::CAPACITY_TYPE)
        .collect();
    let cheapest = listed
        .values
        .iter()
        .enumerate()
        .filter_map(|(position, name)| {
            let instance_type = types.iter().find(|t| t.name == *name)?;
            cheapest_offering(instance_type, &offering_rules, &out_of_capacity)
                .map(|price| (price, position, name))
        })
        .min()?;
    let mut narrowed = claim.clone();
    narrowed.spec.requirements[index].values = vec![cheapest.2.clone()];
    Some(narrowed)
}

fn cheapest_offering(
    instance_type: &InstanceType,
    rules: &[&NodeSelectorRequirementWithMinValues],
    out_of_capacity: impl Fn(&OfferingKey) -> bool,
) -> Option<Price> {
    instance_type
        .offerings
        .iter()
        .filter(|o| {
            o.available && !out_of_capacity(&OfferingKey::new(&instance_type.name, &o.zone, o.capacity_type))
        })
        .filter(|o| {
            rules.iter().all(|r| {
                let value = if r.key == labels::ZONE {
                    o.zone.as_str()
                } else {
                    o.capacity_type.label()
                };
                r.matches(Some(value))
            })
        })
        .map(|o| o.price)
        .min()
}

#[cfg(test)]
mod tests {
    use nodewright_catalog::CapacityType;
    use serde_json::json;

    use super::*;
    use crate::test_fixtures::{arc, instance_type};

    fn claim(types: &[&str]) -> NodeClaim {
        (*arc::<NodeClaim>(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": { "name": "default-x", "labels": { labels::NODE_POOL: "default" } },
            "spec": {
                "requirements": [
                    { "key": labels::CAPACITY_TYPE, "operator": "In", "values": ["on-demand"] },
                    { "key": labels::INSTANCE_TYPE, "operator": "In", "values": types },
                ],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
            }
        })))
        .clone()
    }

    fn listed(claim: &NodeClaim) -> Vec<String> {
        claim.spec.requirements[1].values.clone()
    }

    fn repriced(name: &str) -> BTreeSet<(String, String)> {
        BTreeSet::from([("default".to_owned(), name.to_owned())])
    }

    #[test]
    fn a_repriced_type_cheapest_under_the_overlays_is_the_only_one_asked_for() {
        // m5.large's real price is higher; an overlay made it the cheapest.
        let types = [
            instance_type("c5.large", 2000, 0.085),
            instance_type("m5.large", 2000, 0.001),
        ];
        let narrowed = narrowed(
            &claim(&["m5.large", "c5.large"]),
            "default",
            &types,
            &repriced("m5.large"),
            |_| false,
        );
        assert_eq!(listed(&narrowed.unwrap()), ["m5.large"]);
    }

    #[test]
    fn offerings_out_of_capacity_now_are_not_chosen() {
        let types = [
            instance_type("c5.large", 2000, 0.085),
            instance_type("m5.large", 2000, 0.001),
        ];
        let out = |key: &OfferingKey| key.instance_type == "m5.large";
        let narrowed = narrowed(
            &claim(&["m5.large", "c5.large"]),
            "default",
            &types,
            &repriced("m5.large"),
            out,
        );
        assert_eq!(
            listed(&narrowed.unwrap()),
            ["c5.large"],
            "the overlay's type is out of capacity since the evaluation"
        );
    }

    #[test]
    fn claims_without_repriced_types_or_with_one_type_are_left_alone() {
        let types = [
            instance_type("c5.large", 2000, 0.085),
            instance_type("m5.large", 2000, 0.096),
        ];
        let claim_of_two = claim(&["c5.large", "m5.large"]);
        let none = |_: &OfferingKey| false;
        assert!(narrowed(&claim_of_two, "default", &types, &BTreeSet::new(), none).is_none());
        assert!(narrowed(&claim_of_two, "other-pool", &types, &repriced("m5.large"), none).is_none());
        assert!(
            narrowed(
                &claim(&["m5.large"]),
                "default",
                &types,
                &repriced("m5.large"),
                none
            )
            .is_none()
        );
    }

    #[test]
    fn only_offerings_the_claim_allows_count() {
        let mut spot_cheap = instance_type("m5.large", 2000, 0.2);
        spot_cheap.offerings.push(nodewright_catalog::Offering {
            capacity_type: CapacityType::Spot,
            price: Price::from_usd(0.0001),
            ..spot_cheap.offerings[0].clone()
        });
        let types = [instance_type("c5.large", 2000, 0.085), spot_cheap];
        let narrowed = narrowed(
            &claim(&["c5.large", "m5.large"]),
            "default",
            &types,
            &repriced("m5.large"),
            |_| false,
        );
        assert_eq!(
            listed(&narrowed.unwrap()),
            ["c5.large"],
            "the claim is on-demand only"
        );
    }

    #[test]
    fn launched_types_an_overlay_changed_are_annotated() {
        let repriced: BTreeSet<String> = ["m5.large".to_owned()].into();
        let capacity: BTreeSet<String> = ["m5.large".to_owned(), "c5.large".to_owned()].into();
        assert_eq!(
            applied_annotations(&repriced, &capacity, "m5.large"),
            [
                (labels::PRICE_OVERLAY_APPLIED, "true".to_owned()),
                (labels::CAPACITY_OVERLAY_APPLIED, "true".to_owned())
            ]
        );
        assert_eq!(
            applied_annotations(&repriced, &capacity, "c5.large"),
            [(labels::CAPACITY_OVERLAY_APPLIED, "true".to_owned())]
        );
        assert!(applied_annotations(&repriced, &capacity, "r5.large").is_empty());
    }
}
