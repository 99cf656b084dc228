//! `karpenter.sh/v1alpha1` NodeOverlay: price and capacity adjustments applied to the instance types
//! that match its requirements (negotiated discounts, Savings Plans, hugepages).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    quantity,
    requirements::{NodeSelectorRequirementWithMinValues, Operator, validate_requirements},
    validation::{FieldPath, Invalid, Problems},
};

/// NodeOverlay adjusts the simulated price or capacity of matching instance types.
// kube-derive repeats `type_`/`priority` keys across printcolumn(...) entries by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    derive = "PartialEq",
    group = "karpenter.sh",
    version = "v1alpha1",
    kind = "NodeOverlay",
    plural = "nodeoverlays",
    singular = "nodeoverlay",
    status = "NodeOverlayStatus",
    shortname = "overlays",
    printcolumn(name = "Weight", type_ = "integer", json_path = ".spec.weight"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    doc = "NodeOverlay is the Schema for the NodeOverlays API"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{ "message": "cannot set both 'price' and 'priceAdjustment'", "rule": "!has(self.price) || !has(self.priceAdjustment)" }]))]
pub struct NodeOverlaySpec {
    /// Instance types (and NodePools, through their labels) the overlay applies to.
    #[schemars(length(max = 100), transform = restrict_overlay_requirements)]
    pub requirements: Vec<OverlayRequirement>,
    /// A change to the price: `+0.1`, `-0.05`, `+10%`, `-20%` (not below -100%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = PRICE_ADJUSTMENT_PATTERN))]
    pub price_adjustment: Option<String>,
    /// A replacement price in USD per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\d+(\.\d+)?$"))]
    pub price: Option<String>,
    /// Extended resources added to the instance types (not cpu, memory, ephemeral-storage or pods).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "overlay_capacity")]
    pub capacity: BTreeMap<String, Quantity>,
    /// Precedence among overlapping overlays; higher wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub weight: Option<i32>,
}

pub const PRICE_ADJUSTMENT_PATTERN: &str =
    r"^(([+-]{1}(\d*\.?\d+))|(\+{1}\d*\.?\d+%)|(^(-\d{1,2}(\.\d+)?%)$)|(-100%))$";

fn restrict_overlay_requirements(schema: &mut schemars::Schema) {
    crate::requirements::restrict_nodeclaim_keys(schema);
    if let Some(items) = schema
        .pointer_mut("/items")
        .and_then(serde_json::Value::as_object_mut)
    {
        items.insert(
            "x-kubernetes-validations".into(),
            json!([
                { "message": "requirements with operator 'In' or 'NotIn' must have a value defined", "rule": "(self.operator == 'In' || self.operator == 'NotIn') ? self.values.size() != 0 : true" },
                { "message": "requirements operator 'Gt', 'Lt', 'Gte', or 'Lte' must have a single positive integer value", "rule": "(self.operator == 'Gt' || self.operator == 'Lt' || self.operator == 'Gte' || self.operator == 'Lte') ? (self.values.size() == 1 && int(self.values[0]) >= 0) : true" }
            ]),
        );
    }
}

fn overlay_capacity(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = crate::schema::resource_list(generator);
    schema.insert(
        "x-kubernetes-validations".into(),
        json!([{ "message": "invalid resource restricted", "rule": "self.all(x, !(x in ['cpu', 'memory', 'ephemeral-storage', 'pods']))" }]),
    );
    schema
}

/// A requirement of a NodeOverlay (no `minValues`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverlayRequirement {
    #[schemars(length(max = 316), regex(pattern = crate::requirements::QUALIFIED_NAME_PATTERN))]
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"), inner(length(max = 63), regex(pattern = crate::requirements::LABEL_VALUE_PATTERN)))]
    pub values: Vec<String>,
}

/// Observed state of a NodeOverlay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeOverlayStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A parsed `priceAdjustment`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PriceAdjustment {
    /// Add this many USD per hour (may be negative).
    Absolute(f64),
    /// Add this percentage of the price (may be negative, not below -100).
    Percent(f64),
}

/// Parses a `priceAdjustment`, or `None` if malformed.
pub fn parse_price_adjustment(text: &str) -> Option<PriceAdjustment> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1.0,
        b'-' => -1.0,
        _ => return None,
    };
    let body = &text[1..];
    let number = |s: &str| {
        (!s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && s.matches('.').count() <= 1
            && !s.ends_with('.'))
        .then(|| s.parse::<f64>().ok())
        .flatten()
    };
    if let Some(percent) = body.strip_suffix('%') {
        let value = number(percent)?;
        (sign > 0.0 || value <= 100.0).then_some(PriceAdjustment::Percent(sign * value))
    } else {
        number(body).map(|v| PriceAdjustment::Absolute(sign * v))
    }
}

/// A non-negative decimal such as `0.25` or `3`.
fn is_decimal(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.parse::<f64>().is_ok()
        && !text.starts_with('.')
        && !text.ends_with('.')
}

impl NodeOverlay {
    /// Every problem with this NodeOverlay.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut problems = Problems::new();
        crate::nodepool::validate_object_name(self.metadata.name.as_deref(), &mut problems);
        let spec = FieldPath::root("spec");
        let requirements: Vec<_> = self
            .spec
            .requirements
            .iter()
            .map(|r| NodeSelectorRequirementWithMinValues::new(r.key.clone(), r.operator, r.values.clone()))
            .collect();
        validate_requirements(&requirements, &spec.child("requirements"), true, &mut problems);
        for (i, r) in self.spec.requirements.iter().enumerate() {
            if r.operator == Operator::NotIn && r.values.is_empty() {
                problems.required(
                    &spec.child("requirements").index(i).child("values"),
                    "requirements with operator 'NotIn' must have a value defined",
                );
            }
        }
        if self.spec.price.is_some() && self.spec.price_adjustment.is_some() {
            problems.forbidden(
                &spec.child("priceAdjustment"),
                "cannot set both 'price' and 'priceAdjustment'",
            );
        }
        if let Some(price) = &self.spec.price
            && !is_decimal(price)
        {
            problems.invalid(
                &spec.child("price"),
                price,
                "must be a non-negative decimal number of USD per hour",
            );
        }
        if let Some(adjustment) = &self.spec.price_adjustment
            && parse_price_adjustment(adjustment).is_none()
        {
            problems.invalid(
                &spec.child("priceAdjustment"),
                adjustment,
                "must be a signed amount (+0.1, -0.05) or a signed percentage (+10%, -20%) not below -100%",
            );
        }
        for (resource, value) in &self.spec.capacity {
            let entry = spec.child("capacity").key(resource);
            if ["cpu", "memory", "ephemeral-storage", "pods"].contains(&resource.as_str()) {
                problems.forbidden(
                    &entry,
                    "invalid resource restricted: overlays add extended resources only",
                );
            }
            if quantity::parse_milli(&value.0).is_err() {
                problems.invalid(&entry, &value.0, "must be a quantity");
            }
        }
        if let Some(weight) = self.spec.weight
            && !(1..=10000).contains(&weight)
        {
            problems.invalid(
                &spec.child("weight"),
                &weight.to_string(),
                "must be between 1 and 10000",
            );
        }
        problems.into_result("NodeOverlay", &self.name_any())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_adjustments() {
        assert_eq!(
            parse_price_adjustment("+0.1"),
            Some(PriceAdjustment::Absolute(0.1))
        );
        assert_eq!(
            parse_price_adjustment("-20%"),
            Some(PriceAdjustment::Percent(-20.0))
        );
        assert_eq!(
            parse_price_adjustment("+150%"),
            Some(PriceAdjustment::Percent(150.0))
        );
        assert_eq!(
            parse_price_adjustment("-100%"),
            Some(PriceAdjustment::Percent(-100.0))
        );
        assert_eq!(parse_price_adjustment("-101%"), None);
        assert_eq!(parse_price_adjustment("10%"), None);
        assert_eq!(parse_price_adjustment("+"), None);
        assert_eq!(parse_price_adjustment("+1.2.3"), None);
    }
}
