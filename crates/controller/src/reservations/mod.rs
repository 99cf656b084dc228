//! Karpenter's capacity-reservation controllers (`ReservedCapacity` gate):
//!
//! - [`capacity_type`] (`capacityreservation.capacitytype`): NodeClaims and Nodes launched into a
//!   reservation that no longer exists are demoted to `on-demand` (what EC2 then bills them as)
//!   and lose the reservation labels.
//! - [`expiration`] (`capacityreservation.expiration`): NodeClaims in a capacity block are deleted
//!   40 minutes before the block ends, so their pods move before EC2 reclaims the instances.
//!
//! Both learn the reservations from the EC2NodeClasses' `status.capacityReservations`, which the
//! AWS provider's status loop keeps current from EC2 (it drops reservations that are no longer
//! active). No CloudProvider call is needed: a NodeClaim's reservation is looked up in its own
//! node class's status. A node class that is missing or not resolved yet tells nothing, and its
//! NodeClaims are left alone.

pub mod capacity_type;
pub mod expiration;

use std::{collections::HashMap, sync::Arc};

use kube::ResourceExt;
use nodewright_api::{EC2NodeClass, NodeClaim, ec2nodeclass::CapacityReservation, labels};

/// The reservations each resolved node class lists, by node class name and reservation ID.
#[derive(Debug, Default)]
pub struct Reservations {
    by_class: HashMap<String, HashMap<String, CapacityReservation>>,
}

impl Reservations {
    /// The resolved node classes' reservations (classes without a status are unknown).
    pub fn of(node_classes: &[Arc<EC2NodeClass>]) -> Self {
        let by_class = node_classes
            .iter()
            .filter_map(|class| {
                let status = class.status.as_ref()?;
                let reservations = status
                    .capacity_reservations
                    .iter()
                    .map(|r| (r.id.clone(), r.clone()))
                    .collect();
                Some((class.name_any(), reservations))
            })
            .collect();
        Self { by_class }
    }

    /// What `node_class` says of reservation `id`: `None` when the node class is unknown,
    /// `Some(None)` when it does not list the reservation.
    pub fn lookup(&self, node_class: &str, id: &str) -> Option<Option<&CapacityReservation>> {
        self.by_class
            .get(node_class)
            .map(|reservations| reservations.get(id))
    }
}

/// The reservation ID of a NodeClaim or Node labelled `reserved`.
pub fn reserved_in(object_labels: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    (object_labels.get(labels::CAPACITY_TYPE).map(String::as_str) == Some(labels::CAPACITY_TYPE_RESERVED))
        .then(|| object_labels.get(labels::AWS_CAPACITY_RESERVATION_ID))
        .flatten()
        .map(String::as_str)
}

/// The node class a NodeClaim launched with.
pub fn node_class_of(claim: &NodeClaim) -> &str {
    &claim.spec.node_class_ref.name
}
