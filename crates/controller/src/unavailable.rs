//! The unavailable-offerings cache is the cloud-provider crate's, shared with every provider.

pub use nodewright_cloudprovider::UnavailableOfferings;
