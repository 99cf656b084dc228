//! Instance-type data for Nodewright: the provider-neutral model (resources, offerings, prices), the
//! AWS capacity and allocatable formulas, and the shipped us-east-1 catalogue.

pub mod model;

pub use model::{CapacityType, InstanceType, Offering, Overhead, Price, Reservation, Resources};
