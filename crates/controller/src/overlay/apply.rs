//! Applying NodeOverlays to the NodePools' instance types. Pure.
//!
//! An overlay's requirements are matched against each offering's labels: the instance type's
//! labels, the offering's zone and capacity type, `karpenter.sh/nodepool`, and the NodePool's
//! template labels and single-valued `In` requirements (custom labels the pool's nodes carry).
//! A price change (`price` or `priceAdjustment`, one field) applies per offering; `capacity`
//! applies to an instance type when the overlay matches at least one of its offerings (the type's
//! zones and capacity types as sets, as Karpenter checks compatibility).
//!
//! Overlays are taken by weight (highest first), then by name; the first that sets a field on a
//! target wins it. Two overlays of equal weight that set the same field to different values on a
//! common target conflict: the one later by name is left out entirely (Karpenter's fail-open
//! choice) and reported with the overlay and field it collided with.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::Arc,
};

use kube::ResourceExt;
use nodewright_api::{
    NodeOverlay, NodePool, Operator, labels,
    nodeoverlay::{PriceAdjustment, parse_price_adjustment},
    quantity,
    requirements::NodeSelectorRequirementWithMinValues,
};
use nodewright_catalog::{InstanceType, Offering, Price};

/// Why an overlay is not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The overlay fails validation (the message names the fields).
    Invalid(String),
    /// An overlay of the same weight sets `field` differently on an instance type both match.
    Conflict { with: String, field: String },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(message) => f.write_str(message),
            Self::Conflict { with, field } => write!(
                f,
                "conflicts with NodeOverlay {with} on {field}: same weight, different values on a common instance type"
            ),
        }
    }
}

/// What applying the overlays did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Overlays left out, by name.
    pub rejected: BTreeMap<String, Rejection>,
    /// (NodePool, instance type) pairs with at least one offering repriced.
    pub repriced: BTreeSet<(String, String)>,
    /// (NodePool, instance type) pairs given capacity by an overlay.
    pub capacity_set: BTreeSet<(String, String)>,
}

/// A price change as the spec says it: a replacement or an adjustment.
#[derive(Debug, Clone, PartialEq)]
enum PriceChange {
    Set(Price),
    Adjust(PriceAdjustment),
}

impl PriceChange {
    fn apply(&self, price: Price) -> Price {
        match self {
            Self::Set(replacement) => *replacement,
            Self::Adjust(PriceAdjustment::Absolute(delta)) => Price::from_usd(price.as_usd() + delta),
            Self::Adjust(PriceAdjustment::Percent(percent)) => {
                Price::from_usd(price.as_usd() * (1.0 + percent / 100.0))
            }
        }
    }
}

/// A valid overlay, parsed.
#[derive(Debug)]
struct Parsed {
    name: String,
    weight: i32,
    requirements: Vec<NodeSelectorRequirementWithMinValues>,
    price: Option<PriceChange>,
    capacity: BTreeMap<String, i64>,
}

impl Parsed {
    fn from(overlay: &NodeOverlay) -> Result<Self, Rejection> {
        overlay
            .validate()
            .map_err(|invalid| Rejection::Invalid(invalid.to_string()))?;
        let spec = &overlay.spec;
        let invalid = |field: &str, value: &str| {
            Rejection::Invalid(format!(
                "NodeOverlay {}: spec.{field} {value:?} cannot be applied",
                overlay.name_any()
            ))
        };
        let price = match (&spec.price, &spec.price_adjustment) {
            (Some(price), _) => {
                let usd: f64 = price.parse().map_err(|_| invalid("price", price))?;
                Some(PriceChange::Set(Price::from_usd(usd)))
            }
            (None, Some(adjustment)) => Some(PriceChange::Adjust(
                parse_price_adjustment(adjustment).ok_or_else(|| invalid("priceAdjustment", adjustment))?,
            )),
            (None, None) => None,
        };
        let mut capacity = BTreeMap::new();
        for (resource, amount) in &spec.capacity {
            let field = format!("capacity[{resource}]");
            let parsed = quantity::parse_resource(resource, &amount.0)
                .ok()
                .and_then(|n| i64::try_from(n).ok())
                .ok_or_else(|| invalid(&field, &amount.0))?;
            capacity.insert(resource.clone(), parsed);
        }
        Ok(Self {
            name: overlay.name_any(),
            weight: spec.weight.unwrap_or(0),
            requirements: spec
                .requirements
                .iter()
                .map(|r| {
                    NodeSelectorRequirementWithMinValues::new(r.key.clone(), r.operator, r.values.clone())
                })
                .collect(),
            price,
            capacity,
        })
    }

    /// Fields both set to different values: `price`, then `capacity[<resource>]` by name.
    fn differing_fields(&self, other: &Parsed) -> Vec<String> {
        let price = matches!((&self.price, &other.price), (Some(a), Some(b)) if a != b);
        let capacity = self.capacity.iter().filter(|(resource, amount)| {
            other
                .capacity
                .get(*resource)
                .is_some_and(|theirs| theirs != *amount)
        });
        price
            .then(|| "price".to_owned())
            .into_iter()
            .chain(capacity.map(|(resource, _)| format!("capacity[{resource}]")))
            .collect()
    }
}

/// Labels a NodePool gives its nodes beyond the instance type's: `karpenter.sh/nodepool`, the
/// template's labels and its single-valued `In` requirements.
fn pool_labels(pool: &NodePool) -> BTreeMap<String, String> {
    let template = &pool.spec.template;
    let mut labels = template.metadata.labels.clone();
    for requirement in &template.spec.requirements {
        if requirement.operator == Operator::In
            && let [value] = requirement.values.as_slice()
        {
            labels
                .entry(requirement.key.clone())
                .or_insert_with(|| value.clone());
        }
    }
    labels.insert(labels::NODE_POOL.to_owned(), pool.name_any());
    labels
}

fn matches_offering(
    requirements: &[NodeSelectorRequirementWithMinValues],
    pool_labels: &BTreeMap<String, String>,
    instance_type: &InstanceType,
    offering: &Offering,
) -> bool {
    requirements.iter().all(|requirement| {
        let value = match requirement.key.as_str() {
            labels::ZONE => Some(offering.zone.as_str()),
            labels::CAPACITY_TYPE => Some(offering.capacity_type.label()),
            key => instance_type
                .labels
                .get(key)
                .or_else(|| pool_labels.get(key))
                .map(String::as_str),
        };
        requirement.matches(value)
    })
}

/// Which offerings an overlay matches: per pool, per type, the offering indices.
type Matches = BTreeSet<(usize, usize, usize)>;

fn matched(
    overlay: &Parsed,
    pools: &[(Arc<NodePool>, Vec<InstanceType>)],
    labels_of: &[BTreeMap<String, String>],
) -> Matches {
    let mut found = Matches::new();
    for (p, (_, types)) in pools.iter().enumerate() {
        for (t, instance_type) in types.iter().enumerate() {
            for (o, offering) in instance_type.offerings.iter().enumerate() {
                if matches_offering(&overlay.requirements, &labels_of[p], instance_type, offering) {
                    found.insert((p, t, o));
                }
            }
        }
    }
    found
}

fn types_of(matches: &Matches) -> BTreeSet<(usize, usize)> {
    matches.iter().map(|&(p, t, _)| (p, t)).collect()
}

/// Applies `overlays` to every pool's instance types in place; returns the overlays left out and
/// what was repriced. Conflicts are decided over all the pools together, so an overlay is either
/// applied everywhere it matches or nowhere.
pub fn apply(overlays: &[Arc<NodeOverlay>], pools: &mut [(Arc<NodePool>, Vec<InstanceType>)]) -> Evaluation {
    let mut evaluation = Evaluation::default();
    if overlays.is_empty() {
        return evaluation;
    }
    let mut parsed: Vec<Parsed> = Vec::new();
    for overlay in overlays {
        match Parsed::from(overlay) {
            Ok(p) => parsed.push(p),
            Err(rejection) => {
                evaluation.rejected.insert(overlay.name_any(), rejection);
            }
        }
    }
    parsed.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.name.cmp(&b.name)));
    let labels_of: Vec<_> = pools.iter().map(|(pool, _)| pool_labels(pool)).collect();

    let mut accepted: Vec<(Parsed, Matches)> = Vec::new();
    for overlay in parsed {
        let matches = matched(&overlay, pools, &labels_of);
        let conflict = accepted
            .iter()
            .filter(|(other, _)| other.weight == overlay.weight)
            .find_map(|(other, theirs)| {
                // Prices collide on a common offering, capacities on a common type.
                overlay
                    .differing_fields(other)
                    .into_iter()
                    .find(|field| {
                        if field == "price" {
                            !matches.is_disjoint(theirs)
                        } else {
                            !types_of(&matches).is_disjoint(&types_of(theirs))
                        }
                    })
                    .map(|field| Rejection::Conflict {
                        with: other.name.clone(),
                        field,
                    })
            });
        match conflict {
            Some(rejection) => {
                evaluation.rejected.insert(overlay.name, rejection);
            }
            None => accepted.push((overlay, matches)),
        }
    }

    for (p, (pool, types)) in pools.iter_mut().enumerate() {
        for (t, instance_type) in types.iter_mut().enumerate() {
            let mut repriced = false;
            for (o, offering) in instance_type.offerings.iter_mut().enumerate() {
                let winner = accepted
                    .iter()
                    .find(|(overlay, matches)| overlay.price.is_some() && matches.contains(&(p, t, o)));
                if let Some(change) = winner.and_then(|(overlay, _)| overlay.price.as_ref()) {
                    offering.price = change.apply(offering.price);
                    repriced = true;
                }
            }
            let mut set: BTreeSet<&str> = BTreeSet::new();
            for (overlay, matches) in &accepted {
                // Capacity belongs to the type: one matched offering is enough.
                if matches.range((p, t, 0)..=(p, t, usize::MAX)).next().is_none() {
                    continue;
                }
                for (resource, amount) in &overlay.capacity {
                    // Higher weight came first: the first overlay to set a resource wins it.
                    if set.insert(resource) {
                        instance_type.capacity.set(resource, *amount);
                    }
                }
            }
            if repriced {
                evaluation
                    .repriced
                    .insert((pool.name_any(), instance_type.name.clone()));
            }
            if !set.is_empty() {
                evaluation
                    .capacity_set
                    .insert((pool.name_any(), instance_type.name.clone()));
            }
        }
    }
    evaluation
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::test_fixtures::{arc, instance_type, pool};

    fn overlay(name: &str, spec: &Value) -> Arc<NodeOverlay> {
        arc(json!({
            "apiVersion": "karpenter.sh/v1alpha1", "kind": "NodeOverlay",
            "metadata": { "name": name },
            "spec": spec
        }))
    }

    fn for_type(name: &str) -> Value {
        json!([{ "key": labels::INSTANCE_TYPE, "operator": "In", "values": [name] }])
    }

    fn pools() -> Vec<(Arc<NodePool>, Vec<InstanceType>)> {
        vec![(
            pool(),
            vec![
                instance_type("m5.large", 2000, 0.096),
                instance_type("c5.large", 2000, 0.085),
            ],
        )]
    }

    fn price_of(pools: &[(Arc<NodePool>, Vec<InstanceType>)], name: &str) -> Price {
        pools[0]
            .1
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.offerings[0].price)
            .unwrap()
    }

    #[test]
    fn price_replaces_and_adjustments_scale_only_matching_types() {
        let mut types = pools();
        let evaluation = apply(
            &[
                overlay(
                    "cheap-m5",
                    &json!({ "requirements": for_type("m5.large"), "price": "0.001" }),
                ),
                overlay(
                    "dear-c5",
                    &json!({ "requirements": for_type("c5.large"), "priceAdjustment": "+10%" }),
                ),
            ],
            &mut types,
        );
        assert!(evaluation.rejected.is_empty(), "{evaluation:?}");
        assert_eq!(price_of(&types, "m5.large"), Price::from_usd(0.001));
        assert_eq!(price_of(&types, "c5.large"), Price::from_usd(0.0935));
        assert_eq!(evaluation.repriced.len(), 2);
    }

    #[test]
    fn absolute_adjustments_never_go_below_zero() {
        let mut types = pools();
        apply(
            &[overlay(
                "minus",
                &json!({ "requirements": [], "priceAdjustment": "-5" }),
            )],
            &mut types,
        );
        assert_eq!(price_of(&types, "m5.large"), Price::ZERO);
    }

    #[test]
    fn capacity_type_and_nodepool_labels_select_offerings() {
        let mut types = pools();
        apply(
            &[
                overlay(
                    "spot-only",
                    &json!({ "requirements": [{ "key": labels::CAPACITY_TYPE, "operator": "In", "values": ["spot"] }], "price": "0.001" }),
                ),
                overlay(
                    "other-pool",
                    &json!({ "requirements": [{ "key": labels::NODE_POOL, "operator": "In", "values": ["gpu"] }], "price": "0.002" }),
                ),
            ],
            &mut types,
        );
        assert_eq!(
            price_of(&types, "m5.large"),
            Price::from_usd(0.096),
            "on-demand offerings untouched"
        );
        let mut types = pools();
        apply(
            &[overlay(
                "this-pool",
                &json!({ "requirements": [{ "key": labels::NODE_POOL, "operator": "In", "values": ["default"] }], "price": "0.003" }),
            )],
            &mut types,
        );
        assert_eq!(price_of(&types, "c5.large"), Price::from_usd(0.003));
    }

    #[test]
    fn capacity_adds_extended_resources_to_allocatable() {
        let mut types = pools();
        apply(
            &[overlay(
                "hugepages",
                &json!({ "requirements": for_type("m5.large"), "capacity": { "hugepages-2Mi": "100Mi", "smarter-devices/fuse": "1" } }),
            )],
            &mut types,
        );
        let m5 = &types[0].1[0];
        assert_eq!(m5.allocatable().get("hugepages-2Mi"), 100 << 20);
        assert_eq!(m5.allocatable().get("smarter-devices/fuse"), 1);
        assert_eq!(types[0].1[1].allocatable().get("smarter-devices/fuse"), 0);
    }

    #[test]
    fn higher_weight_wins_each_field() {
        let mut types = pools();
        let evaluation = apply(
            &[
                overlay(
                    "base",
                    &json!({ "requirements": [], "priceAdjustment": "-10%", "capacity": { "example.com/a": "1" } }),
                ),
                overlay(
                    "specific",
                    &json!({ "weight": 10, "requirements": for_type("m5.large"), "price": "0.05" }),
                ),
            ],
            &mut types,
        );
        assert!(evaluation.rejected.is_empty());
        assert_eq!(price_of(&types, "m5.large"), Price::from_usd(0.05));
        assert_eq!(price_of(&types, "c5.large"), Price::from_usd(0.0765));
        assert_eq!(
            types[0].1[0].capacity.get("example.com/a"),
            1,
            "the lower weight still sets what the higher does not"
        );
    }

    #[test]
    fn equal_weights_setting_one_field_differently_conflict_and_the_later_name_is_left_out() {
        let mut types = pools();
        let evaluation = apply(
            &[
                overlay(
                    "b-discount",
                    &json!({ "weight": 5, "requirements": [], "priceAdjustment": "-50%" }),
                ),
                overlay(
                    "a-discount",
                    &json!({ "weight": 5, "requirements": for_type("m5.large"), "price": "0.01" }),
                ),
            ],
            &mut types,
        );
        assert_eq!(
            evaluation.rejected.get("b-discount"),
            Some(&Rejection::Conflict {
                with: "a-discount".into(),
                field: "price".into()
            })
        );
        assert_eq!(price_of(&types, "m5.large"), Price::from_usd(0.01));
        assert_eq!(
            price_of(&types, "c5.large"),
            Price::from_usd(0.085),
            "the left-out overlay applies nowhere"
        );
    }

    #[test]
    fn equal_weights_on_disjoint_types_or_fields_do_not_conflict() {
        let mut types = pools();
        let evaluation = apply(
            &[
                overlay(
                    "m5",
                    &json!({ "requirements": for_type("m5.large"), "price": "0.01" }),
                ),
                overlay(
                    "c5",
                    &json!({ "requirements": for_type("c5.large"), "price": "0.02" }),
                ),
                overlay(
                    "fuse",
                    &json!({ "requirements": [], "capacity": { "example.com/fuse": "1" } }),
                ),
                overlay(
                    "same",
                    &json!({ "requirements": [], "capacity": { "example.com/fuse": "1" } }),
                ),
            ],
            &mut types,
        );
        assert!(evaluation.rejected.is_empty(), "{evaluation:?}");
    }

    #[test]
    fn a_capacity_collision_counts_even_when_the_prices_target_other_offerings() {
        let mut types = pools();
        let on_demand = types[0].1[0].offerings[0].clone();
        types[0].1[0].offerings.push(Offering {
            capacity_type: nodewright_catalog::CapacityType::Spot,
            ..on_demand
        });
        let by_capacity_type =
            |ct: &str| json!([{ "key": labels::CAPACITY_TYPE, "operator": "In", "values": [ct] }]);
        let evaluation = apply(
            &[
                overlay(
                    "a",
                    &json!({ "requirements": by_capacity_type("on-demand"), "price": "0.01", "capacity": { "example.com/fuse": "1" } }),
                ),
                overlay(
                    "b",
                    &json!({ "requirements": by_capacity_type("spot"), "price": "0.02", "capacity": { "example.com/fuse": "2" } }),
                ),
            ],
            &mut types,
        );
        assert_eq!(
            evaluation.rejected.get("b"),
            Some(&Rejection::Conflict {
                with: "a".into(),
                field: "capacity[example.com/fuse]".into()
            })
        );
    }

    #[test]
    fn invalid_overlays_are_rejected_with_the_field() {
        let mut types = pools();
        let evaluation = apply(
            &[overlay(
                "both",
                &json!({ "requirements": [], "price": "1", "priceAdjustment": "+1" }),
            )],
            &mut types,
        );
        let Some(Rejection::Invalid(message)) = evaluation.rejected.get("both") else {
            panic!("{evaluation:?}");
        };
        assert!(message.contains("priceAdjustment"), "{message}");
        assert_eq!(types, pools());
    }

    proptest! {
        /// Whatever the overlays, each one is applied or rejected (never both), applied
        /// overlays of equal weight never set a field differently on a common type, and the
        /// outcome does not depend on the order the overlays are listed in.
        #[test]
        fn outcome_is_independent_of_listing_order(
            specs in prop::collection::vec((1..3_i32, 0..3_usize, 0..4_u32), 1..6),
        ) {
            let targets = [json!([]), for_type("m5.large"), for_type("c5.large")];
            let overlays: Vec<_> = specs
                .iter()
                .enumerate()
                .map(|(i, (weight, target, cents))| {
                    overlay(&format!("o{i}"), &json!({
                        "weight": weight,
                        "requirements": targets[*target],
                        "price": format!("0.0{cents}"),
                    }))
                })
                .collect();
            let mut forward = pools();
            let first = apply(&overlays, &mut forward);
            let reversed: Vec<_> = overlays.iter().rev().cloned().collect();
            let mut backward = pools();
            let second = apply(&reversed, &mut backward);
            prop_assert_eq!(&first, &second);
            prop_assert_eq!(forward, backward);
            for rejection in first.rejected.values() {
                let is_conflict = matches!(rejection, Rejection::Conflict { .. });
                prop_assert!(is_conflict);
            }
        }
    }
}
