//! Instance-type data for Nodewright: the provider-neutral model (resources, offerings, prices), the
//! AWS capacity and allocatable formulas, and the shipped us-east-1 catalogue.
//!
//! ```
//! use nodewright_catalog::{Catalog, NodeSettings};
//!
//! let catalog = Catalog::us_east_1(&NodeSettings::default())?;
//! let m5 = catalog.get("m5.large").expect("shipped");
//! assert_eq!(m5.allocatable().cpu_millis, 1930);
//! # Ok::<(), nodewright_catalog::CatalogError>(())
//! ```
//!
//! # Where things come from
//!
//! - **Types**: 1,395 `DescribeInstanceTypes` records embedded from `data/` (no I/O at run time);
//!   1,386 remain after Karpenter's discovery filter (hvm, x86_64/arm64), which drops the 9 Mac
//!   types. [`Catalog::hardware`] keeps each type's raw facts.
//! - **Capacity and overhead**: [`capacity`], exactly Karpenter's AWS provider formulas, for the
//!   AMI family, kubelet settings and volumes in [`NodeSettings`].
//! - **Labels**: [`labels`], the single-valued labels Karpenter sets, keys from
//!   `nodewright_api::labels`.
//! - **Offerings**: [`offerings`], zone × capacity type from `DescribeInstanceTypeOfferings` and
//!   `SupportedUsageClasses`; on-demand prices from the AWS price list (2026-07-20).
//!
//! # Spot prices are modelled
//!
//! The data has no spot prices. A spot offering's price is `on-demand × (1 − d)` with `d` a stable
//! per-(type, zone) discount in [0.55, 0.90] from FNV-1a of `"type/zone"`; see [`spot`] for the exact
//! definition. [`Catalog::spot_prices_modelled`] reports this so outputs can say so.

pub mod capacity;
pub mod catalog;
pub mod data;
pub mod error;
pub mod hardware;
pub mod labels;
pub mod model;
pub mod offerings;
pub mod record;
pub mod settings;
pub mod spot;

pub use catalog::Catalog;
pub use data::RegionData;
pub use error::CatalogError;
pub use hardware::{Accelerator, Architecture, Gpu, Hardware, InstanceStorage, NeuronDevice};
pub use model::{CapacityType, InstanceType, Offering, Overhead, Price, Reservation, Resources};
pub use record::InstanceTypeRecord;
pub use settings::{AmiFamily, EvictionThreshold, NodeSettings, ReservedResources};
