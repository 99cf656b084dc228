//! `reserved` offerings, as Karpenter's reserved-capacity resolver builds them: one per resolved
//! reservation of the instance type, in the reservation's zone, priced at the on-demand price /
//! 10,000,000 (so the solver and the launch always prefer it), available while the reservation
//! has instances left, its zone has a subnet and it is not a capacity block about to end.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use nodewright_api::{ec2nodeclass::CapacityReservation, labels};
use nodewright_catalog::{CapacityType, InstanceType, Offering, Price, Reservation};

/// Karpenter's divisor of the on-demand price for reserved offerings.
pub const RESERVED_PRICE_DIVISOR: u64 = 10_000_000;

/// What kind of capacity a reservation is; one launch uses one kind (each has its own market
/// options). The order is Karpenter's tie order between equally cheap kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum ReservationKind {
    /// An on-demand capacity reservation (ODCR).
    Default,
    /// A capacity block for ML, reclaimed at its end.
    CapacityBlock,
    /// An interruptible ODCR: the owner may take the capacity back.
    Interruptible,
}

impl ReservationKind {
    pub fn of(reservation: &CapacityReservation) -> Self {
        if reservation.interruptible == Some(true) {
            Self::Interruptible
        } else if reservation.reservation_type.as_deref() == Some(CAPACITY_BLOCK) {
            Self::CapacityBlock
        } else {
            Self::Default
        }
    }
}

/// `status.capacityReservations[].reservationType` of a capacity block.
pub const CAPACITY_BLOCK: &str = "capacity-block";
/// `status.capacityReservations[].state` of a capacity block within 40 minutes of its end.
pub const EXPIRING: &str = "expiring";

/// The labels a node launched into `reservation` carries.
pub fn reservation_labels(reservation: &CapacityReservation) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            labels::AWS_CAPACITY_RESERVATION_ID.to_owned(),
            reservation.id.clone(),
        ),
        (
            labels::AWS_CAPACITY_RESERVATION_TYPE.to_owned(),
            reservation
                .reservation_type
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
        ),
        (
            labels::AWS_CAPACITY_RESERVATION_INTERRUPTIBLE.to_owned(),
            reservation.interruptible.unwrap_or(false).to_string(),
        ),
    ])
}

/// The `reserved` offerings of `instance_type` from `reservations` (a node class's status).
/// `available` is each reservation's remaining count (missing: unknown, so none), `subnet_zones`
/// the zones the node class can launch in. Reservations that ended are left out; expiring ones
/// and ones with nothing left are kept unavailable, as Karpenter keeps them. A type with no
/// on-demand price gets none (its reserved price derives from it).
pub fn reserved_offerings<S: std::hash::BuildHasher>(
    instance_type: &InstanceType,
    reservations: &[CapacityReservation],
    available: &HashMap<String, u32, S>,
    subnet_zones: &[&str],
    now: Timestamp,
) -> Vec<Offering> {
    let Some(on_demand) = instance_type
        .offerings
        .iter()
        .filter(|o| o.capacity_type == CapacityType::OnDemand)
        .map(|o| o.price)
        .max()
    else {
        return Vec::new();
    };
    let price = Price((on_demand.0 / RESERVED_PRICE_DIVISOR).max(1));
    reservations
        .iter()
        .filter(|r| r.instance_type == instance_type.name)
        .filter(|r| r.end_time.as_ref().is_none_or(|end| end.0 > now))
        .map(|r| {
            let left = available.get(&r.id).copied().unwrap_or(0);
            Offering {
                zone: r.availability_zone.clone(),
                capacity_type: CapacityType::Reserved,
                price,
                available: left > 0
                    && r.state.as_deref() != Some(EXPIRING)
                    && subnet_zones.contains(&r.availability_zone.as_str()),
                reservation: Some(Reservation {
                    id: r.id.clone(),
                    capacity: left,
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use nodewright_catalog::{Catalog, NodeSettings};

    use super::*;

    fn m5_large() -> InstanceType {
        Catalog::us_east_1(&NodeSettings::default())
            .unwrap()
            .instance_types()
            .iter()
            .find(|t| t.name == "m5.large")
            .unwrap()
            .clone()
    }

    fn reservation(id: &str, instance_type: &str, zone: &str) -> CapacityReservation {
        CapacityReservation {
            availability_zone: zone.into(),
            end_time: None,
            id: id.into(),
            instance_match_criteria: None,
            instance_type: instance_type.into(),
            owner_id: "123456789012".into(),
            reservation_type: Some("default".into()),
            interruptible: None,
            state: Some("active".into()),
        }
    }

    #[test]
    fn one_offering_per_matching_reservation_priced_near_zero_with_its_count() {
        let now: Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
        let m5 = m5_large();
        let on_demand = m5
            .offerings
            .iter()
            .find(|o| o.capacity_type == CapacityType::OnDemand)
            .unwrap()
            .price;
        let reservations = [
            reservation("cr-a", "m5.large", "us-east-1a"),
            reservation("cr-other-type", "c5.large", "us-east-1a"),
            reservation("cr-b", "m5.large", "us-east-1b"),
            reservation("cr-c", "m5.large", "us-east-1c"),
        ];
        let counts = HashMap::from([("cr-a".to_owned(), 2), ("cr-b".to_owned(), 0)]);
        let offerings = reserved_offerings(&m5, &reservations, &counts, &["us-east-1a", "us-east-1b"], now);
        let summary: Vec<(&str, &str, u32, bool)> = offerings
            .iter()
            .map(|o| {
                let r = o.reservation.as_ref().unwrap();
                (o.zone.as_str(), r.id.as_str(), r.capacity, o.available)
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("us-east-1a", "cr-a", 2, true),
                ("us-east-1b", "cr-b", 0, false),
                // No count known yet: nothing to take.
                ("us-east-1c", "cr-c", 0, false),
            ]
        );
        assert!(
            offerings
                .iter()
                .all(|o| o.capacity_type == CapacityType::Reserved)
        );
        assert_eq!(offerings[0].price, Price(on_demand.0 / RESERVED_PRICE_DIVISOR));
        assert!(offerings[0].price < on_demand && offerings[0].price > Price::ZERO);
        // A zone without a subnet is not launchable.
        let no_subnet = reserved_offerings(&m5, &reservations[..1], &counts, &["us-east-1b"], now);
        assert!(!no_subnet[0].available);
    }

    #[test]
    fn capacity_blocks_expiring_are_unavailable_and_ended_ones_left_out() {
        let now: Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
        let m5 = m5_large();
        let counts = HashMap::from([("cr-block".to_owned(), 1)]);
        let mut block = reservation("cr-block", "m5.large", "us-east-1a");
        block.reservation_type = Some(CAPACITY_BLOCK.into());
        block.end_time = Some(Time(now + SignedDuration::from_hours(2)));
        let zones = ["us-east-1a"];
        assert!(reserved_offerings(&m5, std::slice::from_ref(&block), &counts, &zones, now)[0].available);
        block.state = Some(EXPIRING.into());
        assert!(!reserved_offerings(&m5, std::slice::from_ref(&block), &counts, &zones, now)[0].available);
        block.end_time = Some(Time(now - SignedDuration::from_mins(1)));
        assert!(reserved_offerings(&m5, &[block], &counts, &zones, now).is_empty());
    }

    #[test]
    fn kinds_and_labels_follow_the_status() {
        let mut r = reservation("cr-a", "m5.large", "us-east-1a");
        assert_eq!(ReservationKind::of(&r), ReservationKind::Default);
        assert_eq!(
            reservation_labels(&r),
            BTreeMap::from([
                (labels::AWS_CAPACITY_RESERVATION_ID.to_owned(), "cr-a".to_owned()),
                (
                    labels::AWS_CAPACITY_RESERVATION_TYPE.to_owned(),
                    "default".to_owned()
                ),
                (
                    labels::AWS_CAPACITY_RESERVATION_INTERRUPTIBLE.to_owned(),
                    "false".to_owned()
                ),
            ])
        );
        r.reservation_type = Some(CAPACITY_BLOCK.into());
        assert_eq!(ReservationKind::of(&r), ReservationKind::CapacityBlock);
        r.reservation_type = Some("default".into());
        r.interruptible = Some(true);
        assert_eq!(ReservationKind::of(&r), ReservationKind::Interruptible);
        assert_eq!(
            reservation_labels(&r)[labels::AWS_CAPACITY_RESERVATION_INTERRUPTIBLE],
            "true"
        );
        assert!(ReservationKind::Default < ReservationKind::CapacityBlock);
        assert!(ReservationKind::CapacityBlock < ReservationKind::Interruptible);
    }
}
