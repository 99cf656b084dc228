//! The boundary between Nodewright's controllers and a cloud: the [`CloudProvider`] trait, after
//! Karpenter's `pkg/cloudprovider/types.go`, and the [`CloudProviderError`] vocabulary the
//! controllers branch on.
//!
//! The crate is deliberately small (the API types, the catalogue model, `thiserror`, and what
//! providers and controllers share: resource-list conversion and the unavailable-offerings
//! cache), so a provider implementation and the controllers never pull in each other's
//! dependencies. Instance
//! types and offerings are `nodewright_catalog`'s: the solver, the providers and the controllers
//! share one model.
//!
//! The trait is object safe (methods return boxed futures), so controllers hold an
//! `Arc<dyn CloudProvider>` and tests swap in a fake.

mod error;
mod provider;
mod repair;
pub mod resources;
mod unavailable;

pub use error::{CloudProviderError, OfferingKey, Result, ignore_node_claim_not_found};
pub use provider::{BoxFuture, CloudProvider, DriftReason};
pub use repair::{ConditionStatus, RepairPolicy, aws_repair_policies};
pub use unavailable::UnavailableOfferings;
