//! On-demand prices from the AWS Price List API (`pricing:GetProducts`), as Karpenter queries it:
//! Linux, shared tenancy for virtualized types and dedicated for bare metal, no pre-installed
//! software, capacity "Used", from the Pricing endpoint serving the region (us-east-1, or
//! ap-south-1 / eu-central-1 / cn-northwest-1 for those partitions of the world).

use std::collections::BTreeMap;

use aws_sdk_pricing::types::{Filter, FilterType};
use nodewright_catalog::Price;
use serde_json::Value;

use crate::error::AwsError;

/// The region of the Pricing endpoint that serves `region`.
pub fn pricing_region(region: &str) -> &'static str {
    if region.starts_with("ap-") {
        "ap-south-1"
    } else if region.starts_with("cn-") {
        "cn-northwest-1"
    } else if region.starts_with("eu-") {
        "eu-central-1"
    } else {
        "us-east-1"
    }
}

/// The instance type and hourly on-demand price of one price-list product (a JSON document);
/// `None` for a product without both.
pub fn product_price(product: &str) -> Option<(String, Price)> {
    let product: Value = serde_json::from_str(product).ok()?;
    let instance_type = product["product"]["attributes"]["instanceType"]
        .as_str()?
        .to_owned();
    let currency = if product["product"]["attributes"]["regionCode"]
        .as_str()
        .is_some_and(|r| r.starts_with("cn-"))
    {
        "CNY"
    } else {
        "USD"
    };
    let terms = product["terms"]["OnDemand"].as_object()?;
    let price = terms.values().find_map(|term| {
        term["priceDimensions"]
            .as_object()?
            .values()
            .find_map(|dimension| dimension["pricePerUnit"][currency].as_str()?.parse::<f64>().ok())
    })?;
    (price > 0.0).then(|| (instance_type, Price::from_usd(price)))
}

fn term_match(field: &str, value: &str) -> Result<Filter, AwsError> {
    Filter::builder()
        .r#type(FilterType::TermMatch)
        .field(field)
        .value(value)
        .build()
        .map_err(|e| AwsError::InvalidValue {
            source_name: "GetProducts".to_owned(),
            field: field.to_owned(),
            reason: e.to_string(),
        })
}

async fn query(
    pricing: &aws_sdk_pricing::Client,
    region: &str,
    tenancy: &str,
    product_family: &str,
) -> Result<BTreeMap<String, Price>, AwsError> {
    let mut request = pricing.get_products().service_code("AmazonEC2").max_results(100);
    for (field, value) in [
        ("regionCode", region),
        ("serviceCode", "AmazonEC2"),
        ("preInstalledSw", "NA"),
        ("operatingSystem", "Linux"),
        ("capacitystatus", "Used"),
        ("marketoption", "OnDemand"),
        ("tenancy", tenancy),
        ("productFamily", product_family),
    ] {
        request = request.filters(term_match(field, value)?);
    }
    let mut pages = request.into_paginator().send();
    let mut prices = BTreeMap::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::api("GetProducts", &e))?;
        prices.extend(page.price_list().iter().filter_map(|p| product_price(p)));
    }
    Ok(prices)
}

/// The region's on-demand prices. Like Karpenter, both queries must return prices; otherwise the
/// answer is `Ok(None)` and the caller keeps its fallback.
pub async fn on_demand_prices(
    pricing: &aws_sdk_pricing::Client,
    region: &str,
) -> Result<Option<BTreeMap<String, Price>>, AwsError> {
    let (shared, metal) = tokio::join!(
        query(pricing, region, "Shared", "Compute Instance"),
        query(pricing, region, "Dedicated", "Compute Instance (bare metal)"),
    );
    let (mut shared, metal) = (shared?, metal?);
    if shared.is_empty() || metal.is_empty() {
        return Ok(None);
    }
    shared.extend(metal);
    Ok(Some(shared))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trimmed price-list product as GetProducts returns it (a JSON string per product).
    pub(crate) fn product(instance_type: &str, usd: &str) -> String {
        serde_json::json!({
            "product": {"productFamily": "Compute Instance", "attributes": {
                "instanceType": instance_type, "regionCode": "us-west-2", "operatingSystem": "Linux"}},
            "serviceCode": "AmazonEC2",
            "terms": {"OnDemand": {"ABC.JRTCKXETXF": {"priceDimensions": {"ABC.JRTCKXETXF.6YS6EN2CT7": {
                "unit": "Hrs", "pricePerUnit": {"USD": usd}}}}}},
        })
        .to_string()
    }

    #[test]
    fn products_give_type_and_hourly_price() {
        assert_eq!(
            product_price(&product("m5.large", "0.0960000000")),
            Some(("m5.large".to_owned(), Price(96_000_000)))
        );
        assert_eq!(
            product_price(&product("m5.large", "0.0000000000")),
            None,
            "free means unpriced"
        );
        assert_eq!(product_price("{}"), None);
        assert_eq!(pricing_region("us-west-2"), "us-east-1");
        assert_eq!(pricing_region("ap-southeast-4"), "ap-south-1");
        assert_eq!(pricing_region("eu-west-1"), "eu-central-1");
    }
}
