//! The AWS provider's errors: one enum, so callers (and the `CloudProvider` mapping in
//! [`crate::provider`]) can tell an AWS API failure from a bad EC2NodeClass or a bad response.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use nodewright_catalog::CatalogError;
use nodewright_cloudprovider::CloudProviderError;

/// Why an AWS provider operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// An AWS API call failed. `code` is AWS's error code (`InvalidInstanceID.NotFound`,
    /// `RequestLimitExceeded`), or `RequestFailed` when the request never got an AWS answer
    /// (connection refused, timeout).
    #[error("{operation} failed ({code}): {message}")]
    Api {
        operation: &'static str,
        code: String,
        message: String,
    },

    /// AWS answered without a field the provider needs.
    #[error("{operation}: the response has no {field}")]
    MissingField {
        operation: &'static str,
        field: &'static str,
    },

    /// A value in an AWS response that the provider cannot use.
    #[error("{source_name}: {field}: {reason}")]
    InvalidValue {
        /// The response or record the value came from (`DescribeInstanceTypes m5.large`).
        source_name: String,
        field: String,
        reason: String,
    },

    /// An EC2NodeClass the provider was asked to use does not exist.
    #[error("EC2NodeClass {0} not found")]
    NodeClassNotFound(String),

    /// A NodeClaim's providerID is not `aws:///<zone>/<instance-id>`.
    #[error("providerID {0:?} is not aws:///<zone>/<instance-id>")]
    InvalidProviderId(String),

    /// Building the instance-type catalogue from the described records failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// The code of a request that never got an AWS error answer.
pub const REQUEST_FAILED: &str = "RequestFailed";

impl AwsError {
    /// An SDK error as an [`AwsError::Api`], keeping AWS's code and message.
    pub fn api<E, R>(operation: &'static str, error: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match error.as_service_error() {
            Some(service) => Self::Api {
                operation,
                code: service.code().unwrap_or("Unknown").to_owned(),
                message: service
                    .message()
                    .map_or_else(|| DisplayErrorContext(error).to_string(), str::to_owned),
            },
            None => Self::Api {
                operation,
                code: REQUEST_FAILED.to_owned(),
                message: DisplayErrorContext(error).to_string(),
            },
        }
    }

    /// AWS's error code, for an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl From<AwsError> for CloudProviderError {
    fn from(error: AwsError) -> Self {
        match error {
            AwsError::NodeClassNotFound(name) => CloudProviderError::NodeClassNotReady {
                message: format!("EC2NodeClass {name} not found"),
                node_class: name,
            },
            other => CloudProviderError::other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_node_class_is_not_ready_and_the_rest_is_other() {
        let error = CloudProviderError::from(AwsError::NodeClassNotFound("default".into()));
        assert!(error.is_node_class_not_ready(), "{error}");
        let api = AwsError::Api {
            operation: "DescribeSubnets",
            code: "UnauthorizedOperation".into(),
            message: "denied".into(),
        };
        assert_eq!(api.code(), Some("UnauthorizedOperation"));
        let error = CloudProviderError::from(api);
        assert_eq!(
            error.to_string(),
            "DescribeSubnets failed (UnauthorizedOperation): denied"
        );
    }
}
