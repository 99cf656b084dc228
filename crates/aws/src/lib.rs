//! Nodewright's AWS cloud provider, on the AWS SDK for Rust.
//!
//! - [`config`]: SDK configuration the standard way (default credential and region chains,
//!   `AWS_ENDPOINT_URL`, adaptive retries) and the clients.
//! - [`nodeclass`]: EC2NodeClass resolution (subnets, security groups, AMIs, instance profiles),
//!   status conditions and the spec hash.
//! - [`instance_types`]: EC2's instance types, offerings and prices as the catalogue model.
//! - [`launch`]: offering selection, launch templates, user data, CreateFleet and its batcher.
//! - [`instances`], [`instance_batcher`], [`claims`]: instances found, terminated and described
//!   as NodeClaims.
//! - [`interruption`]: the SQS interruption queue and its EventBridge messages.
//! - [`reservations`]: capacity reservations offered and launched as `reserved` capacity.
//! - [`AwsProvider`]: [`nodewright_cloudprovider::CloudProvider`] on all of the above.
//!
//! No SDK type crosses the `CloudProvider` trait: controllers see the provider-neutral model only
//! (`tests/boundary.rs` keeps `nodewright-cloudprovider` free of the SDK).

pub mod claims;
pub mod config;
pub mod controllers;
pub mod error;
pub mod instance_batcher;
pub mod instance_types;
pub mod instances;
pub mod interruption;
pub mod launch;
pub mod node_classes;
pub mod nodeclass;
pub mod provider;
pub mod reservations;
pub mod settings;
pub mod unavailable;

pub use config::{AwsClients, config_loader, load_sdk_config};
pub use error::AwsError;
pub use node_classes::{NodeClassSource, StaticNodeClasses};
pub use provider::AwsProvider;
pub use settings::AwsSettings;
pub use unavailable::UnavailableOfferings;
