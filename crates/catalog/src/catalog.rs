//! The catalogue: every instance type Karpenter would discover in a region, with its capacity,
//! overhead, labels and offerings under one set of [`NodeSettings`], plus the hardware facts behind
//! them. Types that cannot be launched (no price, no zone) stay, with unavailable or no offerings.
//!
//! **Spot prices are modelled**, not observed: see [`crate::spot`]. [`Catalog::spot_prices_modelled`]
//! says so at run time, so plans and reports can say so too.

use std::collections::BTreeSet;

use crate::data::RegionData;
use crate::error::CatalogError;
use crate::hardware::{Architecture, Hardware, is_discoverable};
use crate::model::{InstanceType, Price};
use crate::settings::NodeSettings;
use crate::{capacity, labels, offerings};

/// Record source named in errors for records handed to [`Catalog::from_records`] directly.
pub const DESCRIBE_INSTANCE_TYPES: &str = "DescribeInstanceTypes";

/// Instance types sorted by name, each with its [`Hardware`].
#[derive(Debug, Clone)]
pub struct Catalog {
    region: String,
    settings: NodeSettings,
    instance_types: Vec<InstanceType>,
    /// Parallel to `instance_types`: the type's index in `hardware`.
    hardware_index: Vec<usize>,
    /// Every discovered type, sorted by name, including those these settings cannot launch (arm64
    /// under Windows), so [`Catalog::with_settings`] loses nothing.
    hardware: Vec<Hardware>,
    /// Parallel to `hardware`: what the offerings are built from.
    sources: Vec<OfferingSource>,
    zones: Vec<String>,
    spot_prices_modelled: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct OfferingSource {
    zones: Vec<String>,
    on_demand: Option<Price>,
}

impl Catalog {
    /// The shipped us-east-1 catalogue (1,386 types in 6 zones; on-demand prices from the AWS price
    /// list of 2026-07-20, spot prices modelled).
    pub fn us_east_1(settings: &NodeSettings) -> Result<Self, CatalogError> {
        Self::from_records(&RegionData::us_east_1()?, settings)
    }

    /// Builds a catalogue from `DescribeInstanceTypes`-shaped records, their zones and on-demand
    /// prices. Types Karpenter would not discover (Mac, paravirtual-only) are left out, and so are
    /// arm64 types under a Windows AMI family (Karpenter gives them no OS, so nothing can select
    /// them). A record no formula can use is an error naming it and its field.
    pub fn from_records(data: &RegionData, settings: &NodeSettings) -> Result<Self, CatalogError> {
        let mut hardware = Vec::with_capacity(data.records.len());
        for record in data.records.iter().filter(|r| is_discoverable(r)) {
            let facts = Hardware::from_record(record).map_err(|error| CatalogError::InvalidRecord {
                file: data.records_source.clone(),
                instance_type: record.instance_type.clone(),
                field: error.field.to_owned(),
                reason: error.reason,
            })?;
            hardware.push(facts);
        }
        hardware.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(pair) = hardware.windows(2).find(|pair| pair[0].name == pair[1].name) {
            return Err(CatalogError::InvalidRecord {
                file: data.records_source.clone(),
                instance_type: pair[0].name.clone(),
                field: "InstanceType".to_owned(),
                reason: "listed twice".to_owned(),
            });
        }
        let sources = hardware
            .iter()
            .map(|h| OfferingSource {
                zones: data.zones_by_type.get(&h.name).cloned().unwrap_or_default(),
                on_demand: data.on_demand_prices.get(&h.name).copied(),
            })
            .collect();
        Ok(Self::build(data.region.clone(), hardware, sources, settings))
    }

    /// The same types under other settings (another EC2NodeClass), without parsing anything again.
    #[must_use]
    pub fn with_settings(&self, settings: &NodeSettings) -> Self {
        Self::build(
            self.region.clone(),
            self.hardware.clone(),
            self.sources.clone(),
            settings,
        )
    }

    fn build(
        region: String,
        hardware: Vec<Hardware>,
        sources: Vec<OfferingSource>,
        settings: &NodeSettings,
    ) -> Self {
        let windows = settings.family().is_windows();
        let mut instance_types = Vec::with_capacity(hardware.len());
        let mut hardware_index = Vec::with_capacity(hardware.len());
        for (index, (h, source)) in hardware.iter().zip(&sources).enumerate() {
            if windows && h.architecture == Architecture::Arm64 {
                continue;
            }
            instance_types.push(InstanceType {
                name: h.name.clone(),
                labels: labels::labels(h, &region, settings),
                capacity: capacity::capacity(h, settings),
                overhead: capacity::overhead(h, settings),
                offerings: offerings::offerings(h, &source.zones, source.on_demand, settings),
            });
            hardware_index.push(index);
        }
        let zones: BTreeSet<&String> = sources.iter().flat_map(|s| &s.zones).collect();
        let zones = zones.into_iter().cloned().collect();
        Self {
            region,
            settings: settings.clone(),
            instance_types,
            hardware_index,
            hardware,
            sources,
            zones,
            spot_prices_modelled: true,
        }
    }

    /// Every type, sorted by name.
    pub fn instance_types(&self) -> &[InstanceType] {
        &self.instance_types
    }

    /// A type by name.
    pub fn get(&self, name: &str) -> Option<&InstanceType> {
        self.index(name).map(|i| &self.instance_types[i])
    }

    /// The hardware facts of a type by name.
    pub fn hardware(&self, name: &str) -> Option<&Hardware> {
        self.index(name).map(|i| &self.hardware[self.hardware_index[i]])
    }

    /// Every type with its hardware facts, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = (&InstanceType, &Hardware)> {
        self.instance_types
            .iter()
            .zip(self.hardware_index.iter().map(|&i| &self.hardware[i]))
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.instance_types
            .binary_search_by(|t| t.name.as_str().cmp(name))
            .ok()
    }

    /// Every zone some type is offered in, sorted.
    pub fn zones(&self) -> &[String] {
        &self.zones
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The settings capacity, overhead, labels and offerings were computed for.
    pub fn settings(&self) -> &NodeSettings {
        &self.settings
    }

    /// True while spot prices come from the deterministic model in [`crate::spot`] rather than the
    /// market; always true for the shipped data.
    pub fn spot_prices_modelled(&self) -> bool {
        self.spot_prices_modelled
    }
}
