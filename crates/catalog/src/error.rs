//! Why instance-type data was rejected. Every variant names the file (or, for records handed to
//! [`crate::Catalog::from_records`], the record source such as `DescribeInstanceTypes`) and the field,
//! so bad data is fixed at its origin instead of being guessed at.

/// Bad or unreadable instance-type, offering or price data.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// An embedded file is not valid gzip.
    #[error("{file}: cannot decompress: {source}")]
    Decompress {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A file is not the JSON shape expected; `path` is the JSON path of the offending value
    /// (`m5.large.NetworkInfo.NetworkCards[0].MaximumNetworkInterfaces`).
    #[error("{file}: at {path}: {source}")]
    Json {
        file: String,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A record parsed but its values cannot describe a usable instance type (no vCPUs, the default
    /// network card missing, a key that disagrees with the record's name, ...).
    #[error("{file}: instance type {instance_type}: {field}: {reason}")]
    InvalidRecord {
        file: String,
        instance_type: String,
        field: String,
        reason: String,
    },
    /// A value outside a record is wrong: a negative price, a missing region.
    #[error("{file}: {field}: {reason}")]
    InvalidValue {
        file: String,
        field: String,
        reason: String,
    },
}
