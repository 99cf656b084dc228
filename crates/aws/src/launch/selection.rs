//! Which instance types and offerings one launch offers EC2 Fleet, as Karpenter's AWS provider
//! chooses them: the offerings that satisfy every NodeClaim requirement (the reservation labels
//! of a `reserved` offering are its reservation's) and whose type's allocatable holds the
//! requests; one capacity type (the first of reserved, spot, on-demand the NodeClaim allows that
//! has an available offering); for `reserved`, Karpenter's reservation filters (only the kind of
//! reservation — default, capacity block, interruptible — with the cheapest offering; a single
//! capacity block; per zone the reservation with the most left); then, unless the NodeClaim has
//! `minValues`, Karpenter's two filters (exotic types — metal, GPU, accelerators — only when
//! nothing else is left; spot only where cheaper than the cheapest on-demand offering); then the
//! cheapest types, at most [`AwsSettings::max_instance_types_per_launch`](crate::AwsSettings) of
//! them, which must still meet every `minValues`.

use std::collections::{BTreeMap, HashMap};

use nodewright_api::{
    NodeClaim, NodeSelectorRequirementWithMinValues, ec2nodeclass::CapacityReservation, labels,
};
use nodewright_catalog::{CapacityType, InstanceType, Offering, Price, Resources};

use crate::reservations::{ReservationKind, reservation_labels};

/// One type and the offerings of the chosen capacity type a launch may use.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchCandidate<'a> {
    pub instance_type: &'a InstanceType,
    /// Available offerings of `capacity_type` that satisfy the requirements, by zone.
    pub offerings: Vec<&'a Offering>,
}

impl LaunchCandidate<'_> {
    /// The cheapest of the offerings.
    pub fn price(&self) -> Price {
        self.offerings
            .iter()
            .map(|o| o.price)
            .min()
            .unwrap_or(Price(u64::MAX))
    }
}

/// The choice for one launch.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection<'a> {
    pub capacity_type: CapacityType,
    /// For `reserved`: the one kind of reservation the offerings draw on.
    pub reservation_kind: Option<ReservationKind>,
    /// Cheapest first.
    pub candidates: Vec<LaunchCandidate<'a>>,
}

/// Why nothing can be launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoSelection {
    /// No type satisfies the requirements and requests at all (whatever their availability).
    Incompatible(String),
    /// Compatible types exist but every offering of them is unavailable (out of capacity or no
    /// subnet in its zone).
    AllUnavailable,
    /// The cheapest types allowed in one launch do not have enough distinct values of a key
    /// with `minValues`.
    MinValues(String),
}

/// Whether Karpenter's exotic filter sets the type aside: bare metal, GPUs or accelerators.
fn is_exotic(instance_type: &InstanceType) -> bool {
    let label = |key: &str| instance_type.labels.get(key).map(String::as_str);
    label(labels::AWS_INSTANCE_SIZE).is_some_and(|size| size.contains("metal"))
        || label(labels::AWS_INSTANCE_GPU_COUNT).is_some()
        || label(labels::AWS_INSTANCE_ACCELERATOR_COUNT).is_some()
}

/// Keys the instance decides (well-known and `karpenter.k8s.aws/*` labels): a type without the
/// label fails `In`. Any other key is a label the node takes from its NodeClaim.
fn provider_defined(key: &str) -> bool {
    key != labels::NODE_POOL
        && (labels::WELL_KNOWN_LABELS.contains(&key)
            || labels::AWS_WELL_KNOWN_LABELS.contains(&key)
            || key == labels::AWS_CAPACITY_RESERVATION_INTERRUPTIBLE)
}

fn satisfies(value: Option<&str>, requirement: &NodeSelectorRequirementWithMinValues) -> bool {
    requirement.matches(value)
}

/// The labels of each reservation a node class resolved, by ID.
type ReservationLabels = HashMap<String, BTreeMap<String, String>>;

fn offering_satisfies(
    type_labels: &BTreeMap<String, String>,
    offering: &Offering,
    requirements: &[NodeSelectorRequirementWithMinValues],
    reservations: &ReservationLabels,
) -> bool {
    // An offering's reservation labels are its reservation's; others have none.
    let reservation = offering
        .reservation
        .as_ref()
        .and_then(|r| reservations.get(&r.id));
    requirements.iter().all(|requirement| {
        let key = labels::normalize_label_key(&requirement.key);
        if !provider_defined(key) {
            return true;
        }
        let value = match key {
            labels::ZONE => Some(offering.zone.as_str()),
            labels::CAPACITY_TYPE => Some(offering.capacity_type.label()),
            labels::AWS_CAPACITY_RESERVATION_ID
            | labels::AWS_CAPACITY_RESERVATION_TYPE
            | labels::AWS_CAPACITY_RESERVATION_INTERRUPTIBLE => {
                reservation.and_then(|l| l.get(key)).map(String::as_str)
            }
            other => type_labels.get(other).map(String::as_str),
        };
        satisfies(value, requirement)
    })
}

const CAPACITY_TYPE_PRECEDENCE: [CapacityType; 3] =
    [CapacityType::Reserved, CapacityType::Spot, CapacityType::OnDemand];

/// Karpenter's reservation filters on the `reserved` candidates: only the kind of reservation
/// with the cheapest offering (ties: default, capacity block, interruptible); of capacity blocks
/// only the single cheapest offering; and per zone only the reservation with the most left.
/// Offerings of reservations the node class does not list are dropped.
fn reserved_filters(
    candidates: &mut Vec<LaunchCandidate<'_>>,
    kinds: &HashMap<&str, ReservationKind>,
) -> Option<ReservationKind> {
    let kind_of = |o: &Offering| {
        o.reservation
            .as_ref()
            .and_then(|r| kinds.get(r.id.as_str()).copied())
    };
    let Some((_, kind)) = candidates
        .iter()
        .flat_map(|c| c.offerings.iter())
        .filter_map(|o| kind_of(o).map(|k| (o.price, k)))
        .min()
    else {
        candidates.clear();
        return None;
    };
    for candidate in candidates.iter_mut() {
        candidate.offerings.retain(|o| kind_of(o) == Some(kind));
    }
    candidates.retain(|c| !c.offerings.is_empty());
    // Per zone the reservation with the most left; of capacity blocks the cheapest in all.
    let block = kind == ReservationKind::CapacityBlock;
    let scope = |o: &Offering| (!block).then(|| o.zone.clone());
    let rank = |o: &Offering| {
        let (left, id) = o
            .reservation
            .as_ref()
            .map_or((0, String::new()), |r| (r.capacity, r.id.clone()));
        (std::cmp::Reverse(if block { 0 } else { left }), o.price, id)
    };
    let mut best: BTreeMap<Option<String>, (std::cmp::Reverse<u32>, Price, String)> = BTreeMap::new();
    for offering in candidates.iter().flat_map(|c| c.offerings.iter()) {
        let this = rank(offering);
        let entry = best.entry(scope(offering)).or_insert_with(|| this.clone());
        if this < *entry {
            *entry = this;
        }
    }
    for candidate in candidates.iter_mut() {
        candidate
            .offerings
            .retain(|o| best.get(&scope(o)) == Some(&rank(o)));
    }
    candidates.retain(|c| !c.offerings.is_empty());
    Some(kind)
}

/// The launch choice for `node_claim` among `types` (each with all its offerings), with
/// `reservations` the node class's resolved capacity reservations.
pub fn select<'a>(
    types: &'a [InstanceType],
    node_claim: &NodeClaim,
    requests: &Resources,
    max_types: usize,
    reservations: &[CapacityReservation],
) -> Result<Selection<'a>, NoSelection> {
    let requirements = &node_claim.spec.requirements;
    let reservation_labels: ReservationLabels = reservations
        .iter()
        .map(|r| (r.id.clone(), reservation_labels(r)))
        .collect();
    let reservation_kinds: HashMap<&str, ReservationKind> = reservations
        .iter()
        .map(|r| (r.id.as_str(), ReservationKind::of(r)))
        .collect();
    let compatible: Vec<(&InstanceType, Vec<&Offering>)> = types
        .iter()
        .filter(|t| requests.fits_in(&t.allocatable()))
        .map(|t| {
            let offerings = t
                .offerings
                .iter()
                .filter(|o| offering_satisfies(&t.labels, o, requirements, &reservation_labels))
                .collect::<Vec<_>>();
            (t, offerings)
        })
        .filter(|(_, offerings)| !offerings.is_empty())
        .collect();
    if compatible.is_empty() {
        return Err(NoSelection::Incompatible(format!(
            "no instance type satisfies the requirements and has allocatable room for the requests \
             (cpu {}m, memory {} bytes, pods {})",
            requests.cpu_millis, requests.memory_bytes, requests.pods
        )));
    }
    let uses_min_values = requirements.iter().any(|r| r.min_values.is_some());
    let cheapest_on_demand = compatible
        .iter()
        .flat_map(|(_, offerings)| offerings.iter())
        .filter(|o| o.available && o.capacity_type == CapacityType::OnDemand)
        .map(|o| o.price)
        .min();
    // Spot dearer than on-demand is no bargain (Karpenter's spot-offering filter, off with
    // minValues); a capacity type left with nothing yields to the next.
    let worth_it = |o: &Offering| {
        uses_min_values
            || o.capacity_type != CapacityType::Spot
            || cheapest_on_demand.is_none_or(|on_demand| o.price <= on_demand)
    };
    let (capacity_type, reservation_kind, mut candidates) = CAPACITY_TYPE_PRECEDENCE
        .into_iter()
        .map(|capacity_type| {
            let mut candidates: Vec<LaunchCandidate<'a>> = compatible
                .iter()
                .map(|(instance_type, offerings)| LaunchCandidate {
                    instance_type,
                    offerings: offerings
                        .iter()
                        .copied()
                        .filter(|o| o.available && o.capacity_type == capacity_type && worth_it(o))
                        .collect(),
                })
                .filter(|c| !c.offerings.is_empty())
                .collect();
            let kind = (capacity_type == CapacityType::Reserved)
                .then(|| reserved_filters(&mut candidates, &reservation_kinds))
                .flatten();
            (capacity_type, kind, candidates)
        })
        .find(|(_, _, candidates)| !candidates.is_empty())
        .ok_or(NoSelection::AllUnavailable)?;
    if !uses_min_values && candidates.iter().any(|c| !is_exotic(c.instance_type)) {
        candidates.retain(|c| !is_exotic(c.instance_type));
    }
    candidates.sort_by(|a, b| (a.price(), &a.instance_type.name).cmp(&(b.price(), &b.instance_type.name)));
    candidates.truncate(max_types);
    for requirement in requirements {
        let Some(min_values) = requirement.min_values else {
            continue;
        };
        let key = labels::normalize_label_key(&requirement.key);
        let mut values: Vec<&str> = candidates
            .iter()
            .flat_map(|c| {
                let type_value = c.instance_type.labels.get(key).map(String::as_str);
                c.offerings.iter().filter_map(move |o| match key {
                    labels::ZONE => Some(o.zone.as_str()),
                    labels::CAPACITY_TYPE => Some(o.capacity_type.label()),
                    _ => type_value,
                })
            })
            .collect();
        values.sort_unstable();
        values.dedup();
        if i64::try_from(values.len()).unwrap_or(i64::MAX) < min_values {
            return Err(NoSelection::MinValues(format!(
                "requirement {key} needs {min_values} distinct values, the {} cheapest compatible \
                 instance types have {}",
                candidates.len(),
                values.len()
            )));
        }
    }
    Ok(Selection {
        capacity_type,
        reservation_kind,
        candidates,
    })
}

#[cfg(test)]
mod tests {
    use nodewright_catalog::{Catalog, NodeSettings};

    use super::*;

    fn node_claim(requirements: &serde_json::Value) -> NodeClaim {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": {"name": "default-abc"},
            "spec": {
                "requirements": requirements,
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
            },
        }))
        .unwrap()
    }

    fn catalog() -> Vec<InstanceType> {
        Catalog::us_east_1(&NodeSettings::default())
            .unwrap()
            .instance_types()
            .to_vec()
    }

    #[test]
    fn spot_first_cheapest_first_and_capped() {
        let types = catalog();
        let claim = node_claim(&serde_json::json!([
            {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["m5", "c5", "r5"]},
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]},
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a"]},
        ]));
        let requests = Resources {
            cpu_millis: 3000,
            ..Resources::default()
        };
        let selection = select(&types, &claim, &requests, 5, &[]).unwrap();
        assert_eq!(selection.capacity_type, CapacityType::Spot);
        assert_eq!(selection.candidates.len(), 5);
        assert!(
            selection
                .candidates
                .windows(2)
                .all(|w| w[0].price() <= w[1].price())
        );
        for candidate in &selection.candidates {
            assert!(candidate.instance_type.allocatable().cpu_millis >= 3000);
            assert!(
                candidate
                    .offerings
                    .iter()
                    .all(|o| o.zone == "us-east-1a" && o.capacity_type == CapacityType::Spot)
            );
        }
    }

    #[test]
    fn unavailable_spot_falls_back_to_on_demand_and_then_to_nothing() {
        let mut types: Vec<InstanceType> = catalog().into_iter().filter(|t| t.name == "m5.large").collect();
        let claim = node_claim(&serde_json::json!([
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]},
        ]));
        for offering in &mut types[0].offerings {
            offering.available = offering.capacity_type != CapacityType::Spot;
        }
        let selection = select(&types, &claim, &Resources::default(), 60, &[]).unwrap();
        assert_eq!(selection.capacity_type, CapacityType::OnDemand);
        for offering in &mut types[0].offerings {
            offering.available = false;
        }
        assert_eq!(
            select(&types, &claim, &Resources::default(), 60, &[]),
            Err(NoSelection::AllUnavailable)
        );
        let huge = Resources {
            cpu_millis: 1_000_000,
            ..Resources::default()
        };
        assert!(matches!(
            select(&types, &claim, &huge, 60, &[]),
            Err(NoSelection::Incompatible(_))
        ));
    }

    #[test]
    fn exotic_types_only_when_nothing_else_fits() {
        let types = catalog();
        let any = node_claim(&serde_json::json!([
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
        ]));
        let selection = select(&types, &any, &Resources::default(), 60, &[]).unwrap();
        assert!(selection.candidates.iter().all(|c| !is_exotic(c.instance_type)));
        let gpu = node_claim(&serde_json::json!([
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
            {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Exists"},
        ]));
        let selection = select(&types, &gpu, &Resources::default(), 60, &[]).unwrap();
        assert!(!selection.candidates.is_empty());
        assert!(selection.candidates.iter().all(|c| is_exotic(c.instance_type)));
    }

    #[test]
    fn min_values_must_survive_the_truncation() {
        let types = catalog();
        let claim = node_claim(&serde_json::json!([
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
            {"key": "karpenter.k8s.aws/instance-family", "operator": "Exists", "minValues": 3},
        ]));
        assert!(select(&types, &claim, &Resources::default(), 60, &[]).is_ok());
        let error = select(&types, &claim, &Resources::default(), 1, &[]).unwrap_err();
        assert!(
            matches!(&error, NoSelection::MinValues(why) if why.contains("needs 3 distinct values")),
            "{error:?}"
        );
    }

    #[test]
    fn spot_dearer_than_on_demand_yields_to_on_demand() {
        let mut types: Vec<InstanceType> = catalog().into_iter().filter(|t| t.name == "m5.large").collect();
        let claim = node_claim(&serde_json::json!([
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]},
        ]));
        assert_eq!(
            select(&types, &claim, &Resources::default(), 60, &[])
                .unwrap()
                .capacity_type,
            CapacityType::Spot
        );
        for offering in &mut types[0].offerings {
            if offering.capacity_type == CapacityType::Spot {
                offering.price = nodewright_catalog::Price(offering.price.0 * 10);
            }
        }
        assert_eq!(
            select(&types, &claim, &Resources::default(), 60, &[])
                .unwrap()
                .capacity_type,
            CapacityType::OnDemand
        );
    }

    fn reservation(id: &str, zone: &str, kind: ReservationKind) -> CapacityReservation {
        CapacityReservation {
            availability_zone: zone.into(),
            end_time: None,
            id: id.into(),
            instance_match_criteria: None,
            instance_type: "m5.large".into(),
            owner_id: "123456789012".into(),
            reservation_type: Some(
                if kind == ReservationKind::CapacityBlock {
                    "capacity-block"
                } else {
                    "default"
                }
                .into(),
            ),
            interruptible: Some(kind == ReservationKind::Interruptible),
            state: Some("active".into()),
        }
    }

    /// m5.large with a reserved offering per reservation (`left` instances each).
    fn with_reservations(reservations: &[(&CapacityReservation, u32)]) -> Vec<InstanceType> {
        let mut types: Vec<InstanceType> = catalog().into_iter().filter(|t| t.name == "m5.large").collect();
        for (r, left) in reservations {
            types[0].offerings.push(Offering {
                zone: r.availability_zone.clone(),
                capacity_type: CapacityType::Reserved,
                price: Price(10),
                available: true,
                reservation: Some(nodewright_catalog::Reservation {
                    id: r.id.clone(),
                    capacity: *left,
                }),
            });
        }
        types
    }

    fn reserved_ids(selection: &Selection<'_>) -> Vec<String> {
        selection
            .candidates
            .iter()
            .flat_map(|c| &c.offerings)
            .map(|o| o.reservation.as_ref().unwrap().id.clone())
            .collect()
    }

    #[test]
    fn reserved_comes_first_with_one_reservation_per_zone_the_one_with_most_left() {
        let a_small = reservation("cr-a-small", "us-east-1a", ReservationKind::Default);
        let a_big = reservation("cr-a-big", "us-east-1a", ReservationKind::Default);
        let b = reservation("cr-b", "us-east-1b", ReservationKind::Default);
        let types = with_reservations(&[(&a_small, 1), (&a_big, 5), (&b, 1)]);
        let statuses = [a_small.clone(), a_big.clone(), b.clone()];
        let claim = node_claim(&serde_json::json!([
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["reserved", "spot", "on-demand"]},
        ]));
        let selection = select(&types, &claim, &Resources::default(), 60, &statuses).unwrap();
        assert_eq!(selection.capacity_type, CapacityType::Reserved);
        assert_eq!(selection.reservation_kind, Some(ReservationKind::Default));
        assert_eq!(reserved_ids(&selection), ["cr-a-big", "cr-b"]);
        // Pinned to one reservation (as the solver pins), only that one.
        let pinned = node_claim(&serde_json::json!([
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["reserved"]},
            {"key": "karpenter.k8s.aws/capacity-reservation-id", "operator": "In", "values": ["cr-a-small"]},
        ]));
        let selection = select(&types, &pinned, &Resources::default(), 60, &statuses).unwrap();
        assert_eq!(reserved_ids(&selection), ["cr-a-small"]);
        // Reservations the node class no longer lists are not launched into.
        let selection = select(&types, &claim, &Resources::default(), 60, &[]).unwrap();
        assert_eq!(selection.capacity_type, CapacityType::Spot);
        // Without `reserved` allowed, reservations are left alone.
        let no_reserved = node_claim(&serde_json::json!([
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
        ]));
        let selection = select(&types, &no_reserved, &Resources::default(), 60, &statuses).unwrap();
        assert_eq!(selection.capacity_type, CapacityType::OnDemand);
        assert_eq!(selection.reservation_kind, None);
    }

    #[test]
    fn one_kind_of_reservation_per_launch_and_a_single_capacity_block() {
        let default = reservation("cr-default", "us-east-1a", ReservationKind::Default);
        let block_a = reservation("cr-block-a", "us-east-1a", ReservationKind::CapacityBlock);
        let block_b = reservation("cr-block-b", "us-east-1b", ReservationKind::CapacityBlock);
        let interruptible = reservation("cr-int", "us-east-1c", ReservationKind::Interruptible);
        let statuses = [
            default.clone(),
            block_a.clone(),
            block_b.clone(),
            interruptible.clone(),
        ];
        let claim = node_claim(&serde_json::json!([
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["reserved"]},
        ]));
        // Equal prices: default ODCRs win the tie.
        let types = with_reservations(&[(&default, 1), (&block_a, 1), (&block_b, 1), (&interruptible, 1)]);
        let selection = select(&types, &claim, &Resources::default(), 60, &statuses).unwrap();
        assert_eq!(reserved_ids(&selection), ["cr-default"]);
        // Without the default one, capacity blocks: one block in all.
        let types = with_reservations(&[(&block_a, 1), (&block_b, 3), (&interruptible, 1)]);
        let selection = select(&types, &claim, &Resources::default(), 60, &statuses).unwrap();
        assert_eq!(selection.reservation_kind, Some(ReservationKind::CapacityBlock));
        assert_eq!(reserved_ids(&selection), ["cr-block-a"]);
        // Labels of the kind select it.
        let interruptible_only = node_claim(&serde_json::json!([
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["reserved"]},
            {"key": "karpenter.k8s.aws/capacity-reservation-interruptible", "operator": "In", "values": ["true"]},
        ]));
        let selection = select(&types, &interruptible_only, &Resources::default(), 60, &statuses).unwrap();
        assert_eq!(selection.reservation_kind, Some(ReservationKind::Interruptible));
        assert_eq!(reserved_ids(&selection), ["cr-int"]);
    }
}
