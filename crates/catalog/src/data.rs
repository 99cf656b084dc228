//! The shipped us-east-1 data, embedded in the binary and parsed at start-up (see `data/README.md`
//! for provenance). Embedding keeps the product free of any file or network access for its
//! catalogue; gzip keeps the 4 MB of JSON at 126 KB in the binary.
//!
//! Parsing deserializes only the fields [`InstanceTypeRecord`] names. A malformed file is reported
//! with its name and the JSON path of the bad value: the fast parse runs first, and only when it
//! fails is the input parsed again with path tracking, so the good path pays nothing for it.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::CatalogError;
use crate::model::Price;
use crate::record::InstanceTypeRecord;

/// Embedded file names, as errors name them.
pub const INSTANCE_TYPES_FILE: &str = "data/instance-types.json.gz";
pub const US_EAST_1_OFFERINGS_FILE: &str = "data/us-east-1/offerings.json.gz";
pub const US_EAST_1_PRICES_FILE: &str = "data/us-east-1/on-demand-prices.json.gz";

static INSTANCE_TYPES_GZ: &[u8] = include_bytes!("../data/instance-types.json.gz");
static US_EAST_1_OFFERINGS_GZ: &[u8] = include_bytes!("../data/us-east-1/offerings.json.gz");
static US_EAST_1_PRICES_GZ: &[u8] = include_bytes!("../data/us-east-1/on-demand-prices.json.gz");

/// Everything needed to build a region's catalogue: the records, where each type is offered and
/// what it costs on demand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegionData {
    pub region: String,
    /// Sorted by name, names unique.
    pub records: Vec<InstanceTypeRecord>,
    /// Zones per instance type (`DescribeInstanceTypeOfferings`); a type absent here is offered
    /// nowhere.
    pub zones_by_type: BTreeMap<String, Vec<String>>,
    /// On-demand price per type; a type absent here cannot be launched.
    pub on_demand_prices: BTreeMap<String, Price>,
    /// Where the records came from (a file name, `DescribeInstanceTypes`), named in errors.
    pub records_source: String,
}

impl RegionData {
    /// Decompresses and parses the embedded us-east-1 data.
    pub fn us_east_1() -> Result<Self, CatalogError> {
        let records = parse_instance_types(
            INSTANCE_TYPES_FILE,
            &gunzip(INSTANCE_TYPES_FILE, INSTANCE_TYPES_GZ)?,
        )?;
        let offerings: OfferingsFile = parse_json(
            US_EAST_1_OFFERINGS_FILE,
            &gunzip(US_EAST_1_OFFERINGS_FILE, US_EAST_1_OFFERINGS_GZ)?,
        )?;
        let prices = parse_prices(
            US_EAST_1_PRICES_FILE,
            "us-east-1",
            &gunzip(US_EAST_1_PRICES_FILE, US_EAST_1_PRICES_GZ)?,
        )?;
        Ok(Self {
            region: "us-east-1".to_owned(),
            records,
            zones_by_type: offerings.zones_by_instance_type,
            on_demand_prices: prices,
            records_source: INSTANCE_TYPES_FILE.to_owned(),
        })
    }
}

/// `offerings.json`: `{"zones_by_instance_type": {"m5.large": ["us-east-1a", ...]}}`.
#[derive(Debug, Deserialize)]
struct OfferingsFile {
    zones_by_instance_type: BTreeMap<String, Vec<String>>,
}

/// `on-demand-prices.json`: `{"regions": {"us-east-1": {"m5.large": 0.096}}}`, USD per hour.
#[derive(Debug, Deserialize)]
struct PricesFile {
    regions: BTreeMap<String, BTreeMap<String, f64>>,
}

pub(crate) fn gunzip(file: &str, compressed: &[u8]) -> Result<Vec<u8>, CatalogError> {
    let mut json = Vec::with_capacity(compressed.len() * 40);
    flate2::read::GzDecoder::new(compressed)
        .read_to_end(&mut json)
        .map_err(|source| CatalogError::Decompress {
            file: file.to_owned(),
            source,
        })?;
    Ok(json)
}

/// Parses JSON; on failure parses again tracking the path, to name the bad value.
pub(crate) fn parse_json<T: DeserializeOwned>(file: &str, json: &[u8]) -> Result<T, CatalogError> {
    serde_json::from_slice(json).map_err(|fast_error| {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
            Err(error) => CatalogError::Json {
                file: file.to_owned(),
                path: error.path().to_string(),
                source: error.into_inner(),
            },
            // Only trailing characters fail the fast parse but not this one.
            Ok(_) => CatalogError::Json {
                file: file.to_owned(),
                path: ".".to_owned(),
                source: fast_error,
            },
        }
    })
}

/// The instance-type file: a JSON object keyed by type name, each value a record whose
/// `InstanceType` must equal its key.
pub(crate) fn parse_instance_types(file: &str, json: &[u8]) -> Result<Vec<InstanceTypeRecord>, CatalogError> {
    let by_name: BTreeMap<String, InstanceTypeRecord> = parse_json(file, json)?;
    by_name
        .into_iter()
        .map(|(name, record)| {
            if record.instance_type == name {
                Ok(record)
            } else {
                Err(CatalogError::InvalidRecord {
                    file: file.to_owned(),
                    instance_type: name,
                    field: "InstanceType".to_owned(),
                    reason: format!("{:?} does not match its key", record.instance_type),
                })
            }
        })
        .collect()
}

pub(crate) fn parse_prices(
    file: &str,
    region: &str,
    json: &[u8],
) -> Result<BTreeMap<String, Price>, CatalogError> {
    let mut prices: PricesFile = parse_json(file, json)?;
    let regional = prices
        .regions
        .remove(region)
        .ok_or_else(|| CatalogError::InvalidValue {
            file: file.to_owned(),
            field: format!("regions.{region}"),
            reason: "missing".to_owned(),
        })?;
    regional
        .into_iter()
        .map(|(name, usd)| {
            if usd.is_finite() && usd >= 0.0 {
                Ok((name, Price::from_usd(usd)))
            } else {
                Err(CatalogError::InvalidValue {
                    file: file.to_owned(),
                    field: format!("regions.{region}.{name}"),
                    reason: format!("price {usd} is not a non-negative number"),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_field_names_file_and_path() {
        let json = br#"{"m5.large": {"InstanceType": "m5.large", "VCpuInfo": {"DefaultVCpus": 2},
            "MemoryInfo": {"SizeInMiB": 8192}, "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
            "NetworkInfo": {"Ipv4AddressesPerInterface": 10, "MaximumNetworkInterfaces": 3,
                            "NetworkCards": [{"NetworkCardIndex": 0}]}}}"#;
        let error = parse_instance_types("types.json", json).unwrap_err();
        let CatalogError::Json { file, path, source } = &error else {
            panic!("{error}")
        };
        assert_eq!(file, "types.json");
        assert_eq!(path, "m5.large.NetworkInfo.NetworkCards[0]");
        assert!(
            source.to_string().contains("MaximumNetworkInterfaces"),
            "{source}"
        );
    }

    #[test]
    fn a_wrong_type_names_the_value() {
        let json = br#"{"m5.large": {"InstanceType": "m5.large", "VCpuInfo": {"DefaultVCpus": -2}}}"#;
        let error = parse_instance_types("types.json", json).unwrap_err();
        let CatalogError::Json { path, .. } = &error else {
            panic!("{error}")
        };
        assert_eq!(path, "m5.large.VCpuInfo.DefaultVCpus");
        assert!(
            error
                .to_string()
                .starts_with("types.json: at m5.large.VCpuInfo.DefaultVCpus: "),
            "{error}"
        );
    }

    #[test]
    fn a_key_must_match_its_record() {
        let json = br#"{"m5.large": {"InstanceType": "m5.xlarge", "VCpuInfo": {"DefaultVCpus": 2},
            "MemoryInfo": {"SizeInMiB": 8192}, "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
            "NetworkInfo": {"Ipv4AddressesPerInterface": 10, "MaximumNetworkInterfaces": 3,
                            "NetworkCards": [{"MaximumNetworkInterfaces": 3}]}}}"#;
        let error = parse_instance_types("types.json", json).unwrap_err();
        assert!(
            matches!(&error, CatalogError::InvalidRecord { field, instance_type, .. }
            if field == "InstanceType" && instance_type == "m5.large"),
            "{error}"
        );
    }

    #[test]
    fn prices_must_exist_and_be_non_negative() {
        let error = parse_prices("p.json", "us-east-1", br#"{"regions": {"us-west-2": {}}}"#).unwrap_err();
        assert_eq!(error.to_string(), "p.json: regions.us-east-1: missing");
        let error = parse_prices(
            "p.json",
            "us-east-1",
            br#"{"regions": {"us-east-1": {"m5.large": -1}}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&error, CatalogError::InvalidValue { field, .. } if field == "regions.us-east-1.m5.large")
        );
        let prices = parse_prices(
            "p.json",
            "us-east-1",
            br#"{"regions": {"us-east-1": {"m5.large": 0.096}}}"#,
        )
        .unwrap();
        assert_eq!(prices["m5.large"], Price(96_000_000));
    }

    #[test]
    fn trailing_garbage_and_bad_gzip_are_errors() {
        assert!(matches!(
            parse_json::<BTreeMap<String, u32>>("f", b"{} x"),
            Err(CatalogError::Json { .. })
        ));
        let error = gunzip("f.gz", b"not gzip").unwrap_err();
        assert!(
            error.to_string().starts_with("f.gz: cannot decompress"),
            "{error}"
        );
    }

    #[test]
    fn embedded_data_parses() {
        let data = RegionData::us_east_1().unwrap();
        assert_eq!(data.records.len(), 1395);
        assert!(
            data.records
                .windows(2)
                .all(|w| w[0].instance_type < w[1].instance_type)
        );
        assert_eq!(data.zones_by_type.len(), 1375);
        assert_eq!(data.on_demand_prices.len(), 1367);
        assert_eq!(data.on_demand_prices["m5.large"], Price(96_000_000));
        // us-east-1e offers only 68 types, old ones; m5.large is in the other five zones.
        assert_eq!(
            data.zones_by_type["m5.large"],
            [
                "us-east-1a",
                "us-east-1b",
                "us-east-1c",
                "us-east-1d",
                "us-east-1f"
            ]
        );
    }
}
