//! Nodewright's AWS cloud provider, on the AWS SDK for Rust.
//!
//! - [`config`]: SDK configuration the standard way (default credential and region chains,
//!   `AWS_ENDPOINT_URL`, adaptive retries).
//! - [`instance_types`]: EC2's instance types and offerings as the catalogue model.
//! - [`AwsProvider`]: [`nodewright_cloudprovider::CloudProvider`] on EC2.

pub mod config;
pub mod error;
pub mod instance_types;
pub mod node_classes;
pub mod settings;
pub mod unavailable;

pub use config::{AwsClients, config_loader, load_sdk_config};
pub use error::AwsError;
pub use node_classes::{NodeClassSource, StaticNodeClasses};
pub use settings::AwsSettings;
pub use unavailable::UnavailableOfferings;
pub mod claims;
pub mod instance_batcher;
pub mod instances;
pub mod launch;
pub mod nodeclass;
pub mod provider;

pub use provider::AwsProvider;
pub mod interruption;
