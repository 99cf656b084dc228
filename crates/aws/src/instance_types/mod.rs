//! The instance types an EC2NodeClass can launch: described from EC2 (`DescribeInstanceTypes`,
//! `DescribeInstanceTypeOfferings`), turned into the catalogue model by the catalogue's own
//! formulas, and cached for [`AwsSettings::catalog_refresh`](crate::AwsSettings).
//!
//! Prices: on-demand from the Price List API ([`pricing`]) over the shipped price list (the AWS
//! price list of 2026-07-20; Karpenter's fallback too, for every region without a table of its
//! own), which stays for types the API does not price and whenever the API fails; spot from
//! `DescribeSpotPriceHistory` (the current price per type and zone), falling back to the
//! catalogue's model for pools EC2 did not price or when the call fails.
//! Offerings in zones where the node class has no subnet, or that EC2 recently reported out of
//! capacity, are kept with `available: false`.

pub mod pricing;
mod record;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, OnceLock},
};

use aws_sdk_ec2::types::{Filter, LocationType};
use jiff::{SignedDuration, Timestamp};
use nodewright_api::EC2NodeClass;
use nodewright_catalog::CapacityType;
use nodewright_catalog::{
    Catalog, InstanceType, NodeSettings, Price, RegionData, catalog::DESCRIBE_INSTANCE_TYPES,
};
pub use record::record_from_info;
use tokio::sync::Mutex;

use crate::{error::AwsError, unavailable::UnavailableOfferings};

/// Node classes whose catalogues are kept at once; more distinct settings than this start over.
const MAX_CACHED_SETTINGS: usize = 32;

/// Describes, caches and serves instance types.
#[derive(Debug)]
pub struct InstanceTypeProvider {
    ec2: aws_sdk_ec2::Client,
    pricing: aws_sdk_pricing::Client,
    region: String,
    refresh: SignedDuration,
    cached: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    fetched_at: Timestamp,
    /// Built with the default settings; node classes derive theirs from it.
    base: Arc<Catalog>,
    /// Current spot price per (type, zone).
    spot_prices: Arc<HashMap<(String, String), Price>>,
    by_settings: Vec<(NodeSettings, Arc<Catalog>)>,
}

impl InstanceTypeProvider {
    pub fn new(
        ec2: aws_sdk_ec2::Client,
        pricing: aws_sdk_pricing::Client,
        region: impl Into<String>,
        refresh: std::time::Duration,
    ) -> Self {
        Self {
            ec2,
            pricing,
            region: region.into(),
            refresh: SignedDuration::try_from(refresh).unwrap_or(SignedDuration::MAX),
            cached: Mutex::new(None),
        }
    }

    /// The catalogue for `settings`, describing EC2 again when the cache is older than the
    /// refresh interval. Concurrent callers wait for one describe rather than each starting one.
    pub async fn catalog(&self, settings: &NodeSettings, now: Timestamp) -> Result<Arc<Catalog>, AwsError> {
        Ok(self.catalog_and_spot_prices(settings, now).await?.0)
    }

    async fn catalog_and_spot_prices(
        &self,
        settings: &NodeSettings,
        now: Timestamp,
    ) -> Result<(Arc<Catalog>, Arc<HashMap<(String, String), Price>>), AwsError> {
        let mut cached = self.cached.lock().await;
        let stale = cached.as_ref().is_none_or(|c| {
            c.fetched_at
                .checked_add(self.refresh)
                .is_ok_and(|until| until <= now)
        });
        let cached = match cached.as_mut() {
            Some(fresh) if !stale => fresh,
            _ => cached.insert(Cached {
                fetched_at: now,
                base: Arc::new(self.describe().await?),
                spot_prices: Arc::new(describe_spot_prices(&self.ec2, now).await),
                by_settings: Vec::new(),
            }),
        };
        let spot_prices = Arc::clone(&cached.spot_prices);
        if let Some((_, catalog)) = cached.by_settings.iter().find(|(s, _)| s == settings) {
            return Ok((Arc::clone(catalog), spot_prices));
        }
        if cached.by_settings.len() >= MAX_CACHED_SETTINGS {
            cached.by_settings.clear();
        }
        let catalog = Arc::new(cached.base.with_settings(settings));
        cached.by_settings.push((settings.clone(), Arc::clone(&catalog)));
        Ok((catalog, spot_prices))
    }

    /// The instance types `node_class` can launch, their capacity and overhead computed with
    /// `settings` (the class's, see [`crate::AwsSettings::node_settings`]), each with all its
    /// offerings; offerings outside the node class's subnet zones or in `unavailable` are marked
    /// unavailable, spot offerings carry EC2's current spot price where it has one.
    pub async fn for_node_class(
        &self,
        node_class: &EC2NodeClass,
        settings: &NodeSettings,
        unavailable: &UnavailableOfferings,
        now: Timestamp,
    ) -> Result<Vec<InstanceType>, AwsError> {
        let (catalog, spot_prices) = self.catalog_and_spot_prices(settings, now).await?;
        let subnet_zones: Vec<&str> = node_class
            .status
            .iter()
            .flat_map(|s| &s.subnets)
            .map(|s| s.zone.as_str())
            .collect();
        let mut types = catalog.instance_types().to_vec();
        for instance_type in &mut types {
            for offering in &mut instance_type.offerings {
                if !subnet_zones.contains(&offering.zone.as_str()) {
                    offering.available = false;
                }
                if offering.capacity_type == CapacityType::Spot
                    && let Some(price) = spot_prices.get(&(instance_type.name.clone(), offering.zone.clone()))
                {
                    offering.price = *price;
                }
            }
        }
        unavailable.apply(&mut types, now);
        Ok(types)
    }

    async fn describe(&self) -> Result<Catalog, AwsError> {
        let records = describe_instance_types(&self.ec2).await?;
        let zones_by_type = describe_offerings(&self.ec2).await?;
        let data = RegionData {
            region: self.region.clone(),
            records,
            zones_by_type,
            on_demand_prices: self.on_demand_prices().await?,
            records_source: DESCRIBE_INSTANCE_TYPES.to_owned(),
        };
        Ok(Catalog::from_records(&data, &NodeSettings::default())?)
    }
}

impl InstanceTypeProvider {
    /// The shipped prices with the Price List API's over them.
    async fn on_demand_prices(&self) -> Result<BTreeMap<String, Price>, AwsError> {
        let mut prices = shipped_on_demand_prices()?.clone();
        match pricing::on_demand_prices(&self.pricing, &self.region).await {
            Ok(Some(current)) => prices.extend(current),
            Ok(None) => {
                tracing::warn!(region = %self.region, "the Price List API has no on-demand prices; using the shipped ones");
            }
            Err(error) => tracing::warn!(%error, "on-demand prices stay the shipped ones"),
        }
        Ok(prices)
    }
}

/// Every x86_64 and arm64 instance type of the region. A record the catalogue cannot read is
/// logged and left out rather than failing the whole catalogue.
async fn describe_instance_types(
    ec2: &aws_sdk_ec2::Client,
) -> Result<Vec<nodewright_catalog::InstanceTypeRecord>, AwsError> {
    let architectures = Filter::builder()
        .name("processor-info.supported-architecture")
        .values("x86_64")
        .values("arm64")
        .build();
    let mut pages = ec2
        .describe_instance_types()
        .filters(architectures)
        .into_paginator()
        .send();
    let mut records = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::api("DescribeInstanceTypes", &e))?;
        for info in page.instance_types() {
            match record_from_info(info) {
                Ok(record) => records.push(record),
                Err(error) => tracing::warn!(%error, "instance type left out of the catalogue"),
            }
        }
    }
    Ok(records)
}

/// The zones each instance type is offered in.
async fn describe_offerings(ec2: &aws_sdk_ec2::Client) -> Result<BTreeMap<String, Vec<String>>, AwsError> {
    let mut pages = ec2
        .describe_instance_type_offerings()
        .location_type(LocationType::AvailabilityZone)
        .into_paginator()
        .send();
    let mut zones: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::api("DescribeInstanceTypeOfferings", &e))?;
        for offering in page.instance_type_offerings() {
            if let (Some(instance_type), Some(zone)) = (offering.instance_type(), offering.location()) {
                zones
                    .entry(instance_type.as_str().to_owned())
                    .or_default()
                    .push(zone.to_owned());
            }
        }
    }
    Ok(zones)
}

/// The current spot price of every (type, zone) EC2 prices, newest entry winning. A failure is
/// logged and leaves the modelled prices in place: spot prices refine the choice, they do not
/// gate launches.
async fn describe_spot_prices(ec2: &aws_sdk_ec2::Client, now: Timestamp) -> HashMap<(String, String), Price> {
    let mut pages = ec2
        .describe_spot_price_history()
        .product_descriptions("Linux/UNIX")
        .product_descriptions("Linux/UNIX (Amazon VPC)")
        .start_time(aws_smithy_types::DateTime::from_secs(now.as_second()))
        .into_paginator()
        .send();
    let mut newest: HashMap<(String, String), (i64, Price)> = HashMap::new();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                let error = AwsError::api("DescribeSpotPriceHistory", &error);
                tracing::warn!(%error, "spot prices stay modelled");
                return HashMap::new();
            }
        };
        for entry in page.spot_price_history() {
            let (Some(instance_type), Some(zone), Some(price)) = (
                entry.instance_type(),
                entry.availability_zone(),
                entry.spot_price().and_then(|p| p.parse::<f64>().ok()),
            ) else {
                continue;
            };
            let at = entry.timestamp().map_or(0, aws_smithy_types::DateTime::secs);
            let key = (instance_type.as_str().to_owned(), zone.to_owned());
            let price = Price::from_usd(price);
            newest
                .entry(key)
                .and_modify(|current| {
                    if at > current.0 {
                        *current = (at, price);
                    }
                })
                .or_insert((at, price));
        }
    }
    newest.into_iter().map(|(key, (_, price))| (key, price)).collect()
}

/// The shipped on-demand prices, parsed once.
fn shipped_on_demand_prices() -> Result<&'static BTreeMap<String, Price>, AwsError> {
    static PRICES: OnceLock<BTreeMap<String, Price>> = OnceLock::new();
    if let Some(prices) = PRICES.get() {
        return Ok(prices);
    }
    let prices = RegionData::us_east_1()?.on_demand_prices;
    Ok(PRICES.get_or_init(|| prices))
}
