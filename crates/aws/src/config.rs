//! SDK configuration the standard way, and the clients built from it.
//!
//! [`config_loader`] is `aws_config::defaults` with two choices made: the HTTPS client (rustls with
//! ring, shared by every client) and the SDK's *adaptive* retry mode, which adds client-side rate
//! limiting on throttling errors to the standard retries. Everything else is the default chain:
//! credentials from the environment, an EKS Pod Identity or ECS container endpoint, IRSA's web
//! identity token, the shared profile, then IMDS; the region from `AWS_REGION`, the profile, then
//! IMDS; endpoint overrides from `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`. Tests add an
//! endpoint, a region and static credentials to the same loader.

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig, retry::RetryConfig};
use aws_smithy_http_client::tls;

/// Attempts per call (first try included) before an error is returned. Throttling is retried with
/// backoff and, in adaptive mode, slows every later request on the client too.
pub const MAX_ATTEMPTS: u32 = 5;

/// The standard loader with Nodewright's HTTPS client and adaptive retries.
pub fn config_loader() -> ConfigLoader {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .retry_config(RetryConfig::adaptive().with_max_attempts(MAX_ATTEMPTS))
}

/// Loads the configuration from the environment (see the module documentation).
pub async fn load_sdk_config() -> SdkConfig {
    config_loader().load().await
}

/// The AWS clients the provider calls, all sharing one configuration.
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub ec2: aws_sdk_ec2::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub iam: aws_sdk_iam::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// The Price List API, at the endpoint region that serves `region`.
    pub pricing: aws_sdk_pricing::Client,
    /// The region the clients sign for (offerings, zones and prices are per region).
    pub region: String,
}

impl AwsClients {
    /// Clients for `config`. `None` when the configuration has no region: nothing in EC2 works
    /// without one, so the caller must say which (`AWS_REGION`).
    pub fn new(config: &SdkConfig) -> Option<Self> {
        let region = config.region()?.to_string();
        Some(Self {
            ec2: aws_sdk_ec2::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            pricing: aws_sdk_pricing::Client::from_conf(
                aws_sdk_pricing::config::Builder::from(config)
                    .region(aws_config::Region::new(
                        crate::instance_types::pricing::pricing_region(&region),
                    ))
                    .build(),
            ),
            region,
        })
    }
}
