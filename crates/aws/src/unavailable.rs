//! The unavailable-offerings cache is the cloud-provider crate's, shared with the controllers.

pub use nodewright_cloudprovider::UnavailableOfferings;
