//! Capacity reservations as capacity: the `reserved` offerings an EC2NodeClass's resolved
//! reservations (`status.capacityReservations`, written by the status loop) give its instance
//! types ([`offerings`]), and how many instances each reservation still holds ([`availability`]),
//! counted down in memory as launches take them so concurrent launches do not oversubscribe.
//! All of it is behind Karpenter's `ReservedCapacity` feature gate
//! ([`crate::AwsSettings::reserved_capacity`], on by default).

pub mod availability;
pub mod offerings;

pub use availability::ReservationAvailability;
pub use offerings::{ReservationKind, reservation_labels, reserved_offerings};
