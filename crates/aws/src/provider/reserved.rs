//! The reservation side of [`AwsProvider`]: the node class's instance types with their
//! `reserved` offerings (Karpenter's `ReservedCapacity` gate), and the bookkeeping of a reserved
//! launch's outcome (an instance taken, or a reservation EC2 refused).

use jiff::Timestamp;
use nodewright_api::{EC2NodeClass, NodeClaim, ec2nodeclass::CapacityReservation};
use nodewright_catalog::{CapacityType, InstanceType, Resources};
use nodewright_cloudprovider::{OfferingKey, Result};

use super::AwsProvider;
use crate::{
    launch::selection::{self, Selection},
    reservations,
};

impl AwsProvider {
    /// The capacity reservations `node_class` resolved, when the gate is on.
    pub(super) fn reservations_of<'a>(&self, node_class: &'a EC2NodeClass) -> &'a [CapacityReservation] {
        match &node_class.status {
            Some(status) if self.settings.reserved_capacity => &status.capacity_reservations,
            _ => &[],
        }
    }

    /// The instance types `node_class` can launch, with one `reserved` offering per resolved
    /// reservation of the type (none with the gate off).
    pub(super) async fn node_class_types(
        &self,
        node_class: &EC2NodeClass,
        now: Timestamp,
    ) -> Result<Vec<InstanceType>> {
        let mut types = self
            .instance_types
            .for_node_class(
                node_class,
                &self.settings.node_settings(Some(node_class)),
                &self.unavailable,
                now,
            )
            .await?;
        let reservations = self.reservations_of(node_class);
        if reservations.is_empty() {
            return Ok(types);
        }
        let ids: Vec<String> = reservations.iter().map(|r| r.id.clone()).collect();
        let available = self.reservations.available(&ids, now).await;
        let subnet_zones: Vec<&str> = node_class
            .status
            .iter()
            .flat_map(|s| &s.subnets)
            .map(|s| s.zone.as_str())
            .collect();
        for instance_type in &mut types {
            if !reservations.iter().any(|r| r.instance_type == instance_type.name) {
                continue;
            }
            let reserved =
                reservations::reserved_offerings(instance_type, reservations, &available, &subnet_zones, now);
            instance_type.offerings.extend(reserved);
        }
        Ok(types)
    }

    /// Holds one instance of each reservation the launch of `node_claim` would draw on (see
    /// [`reservations::ReservationAvailability::hold`]). Reservations concurrent launches emptied
    /// since `types` was read are made unavailable in `types` and the choice is made again, until
    /// every reservation chosen is held or the choice is not `reserved`. Returns the held IDs;
    /// choosing again among `types` then gives the same choice.
    pub(super) fn hold_reservations(
        &self,
        types: &mut [InstanceType],
        node_claim: &NodeClaim,
        requests: &Resources,
        reservations: &[CapacityReservation],
    ) -> Vec<String> {
        let mut held: Vec<String> = Vec::new();
        // Without reservations nothing is offered as reserved: no selection to make here (the
        // launch makes its own).
        if reservations.is_empty() {
            return held;
        }
        loop {
            let wanted: Vec<String> = {
                let Ok(selection) = selection::select(
                    types,
                    node_claim,
                    requests,
                    self.settings.max_instance_types_per_launch,
                    reservations,
                ) else {
                    return held;
                };
                if selection.capacity_type != CapacityType::Reserved {
                    return held;
                }
                let mut ids: Vec<String> = selection
                    .candidates
                    .iter()
                    .flat_map(|c| &c.offerings)
                    .filter_map(|o| o.reservation.as_ref().map(|r| r.id.clone()))
                    .filter(|id| !held.contains(id))
                    .collect();
                ids.sort();
                ids.dedup();
                ids
            };
            if wanted.is_empty() {
                return held;
            }
            let taken = self.reservations.hold(&wanted);
            let emptied: Vec<&String> = wanted.iter().filter(|id| !taken.contains(id)).collect();
            held.extend(taken.iter().cloned());
            if emptied.is_empty() {
                return held;
            }
            for offering in types.iter_mut().flat_map(|t| t.offerings.iter_mut()) {
                if let Some(reservation) = &mut offering.reservation
                    && emptied.contains(&&reservation.id)
                {
                    reservation.capacity = 0;
                    offering.available = false;
                }
            }
        }
    }

    /// The reservation the offering of `selection` in (`instance_type`, `zone`) draws on.
    pub(super) fn reservation_of<'r>(
        selection: &Selection<'_>,
        reservations: &'r [CapacityReservation],
        instance_type: &str,
        zone: &str,
    ) -> Option<&'r CapacityReservation> {
        let id = selection
            .candidates
            .iter()
            .filter(|c| c.instance_type.name == instance_type)
            .flat_map(|c| &c.offerings)
            .find(|o| o.zone == zone)
            .and_then(|o| o.reservation.as_ref())?;
        reservations.iter().find(|r| r.id == id.id)
    }

    /// After a reserved launch: the pools EC2 refused have nothing left (Karpenter's
    /// `MarkUnavailable`; they are not out-of-capacity offerings, whose other capacity types may
    /// still serve).
    pub(super) fn mark_refused_reservations(
        &self,
        selection: &Selection<'_>,
        reservations: &[CapacityReservation],
        refused: &[OfferingKey],
    ) {
        for offering in refused {
            if let Some(reservation) =
                Self::reservation_of(selection, reservations, &offering.instance_type, &offering.zone)
            {
                tracing::info!(reservation = %reservation.id, "capacity reservation refused a launch: marked unavailable");
                self.reservations.mark_unavailable(&reservation.id);
            }
        }
    }
}
