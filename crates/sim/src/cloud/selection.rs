//! Which offerings can serve a NodeClaim, and in what order the fake cloud tries them.
//!
//! Like Karpenter's AWS provider, the capacity type is chosen first — the first of reserved, spot,
//! on-demand that the NodeClaim allows and that has a compatible offering not known to be out of
//! capacity — and the fleet then tries that capacity type's offerings cheapest first (EC2 Fleet's
//! `lowest-price`; `price-capacity-optimized` for spot also weighs pool depth, which a fake with
//! unlimited pools cannot, so it reduces to the same order). Ties break by type name then zone,
//! so launches are deterministic.

use std::collections::BTreeSet;

use nodewright_api::NodeClaim;
use nodewright_catalog::{CapacityType, Catalog, InstanceType, Offering, Resources};
use nodewright_cloudprovider::OfferingKey;

use super::matching::{OfferingLabels, describe, satisfies};

/// One offering of one type that a NodeClaim accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    pub(crate) instance_type: &'a InstanceType,
    pub(crate) offering: &'a Offering,
}

impl Candidate<'_> {
    pub(crate) fn key(&self) -> OfferingKey {
        OfferingKey::of(self.instance_type, self.offering)
    }
}

/// Every purchasable offering that satisfies all of `node_claim`'s requirements and whose type's
/// allocatable resources hold `requests`. When there is none, the error says which requirement
/// (applied in the NodeClaim's order) or the requests left nothing.
pub(crate) fn compatible_offerings<'a>(
    catalog: &'a Catalog,
    node_claim: &NodeClaim,
    requests: &Resources,
) -> Result<Vec<Candidate<'a>>, String> {
    let mut candidates: Vec<Candidate<'a>> = catalog
        .instance_types()
        .iter()
        .flat_map(|instance_type| {
            instance_type
                .offerings
                .iter()
                .filter(|offering| offering.available)
                .map(move |offering| Candidate {
                    instance_type,
                    offering,
                })
        })
        .collect();
    for (index, requirement) in node_claim.spec.requirements.iter().enumerate() {
        candidates.retain(|c| {
            let labels = OfferingLabels {
                type_labels: &c.instance_type.labels,
                zone: &c.offering.zone,
                capacity_type: c.offering.capacity_type.label(),
            };
            satisfies(labels, requirement)
        });
        if candidates.is_empty() {
            let context = if index == 0 {
                ""
            } else {
                " together with the requirements before it"
            };
            return Err(format!(
                "no instance type offering satisfies requirement `{}`{context}",
                describe(requirement)
            ));
        }
    }
    candidates.retain(|c| requests.fits_in(&c.instance_type.allocatable()));
    if candidates.is_empty() {
        return Err(format!(
            "no instance type that meets the requirements has allocatable room for the requests \
             (cpu {}m, memory {} bytes, pods {})",
            requests.cpu_millis, requests.memory_bytes, requests.pods
        ));
    }
    Ok(candidates)
}

/// Precedence of capacity types when a NodeClaim allows several.
const CAPACITY_TYPE_PRECEDENCE: [CapacityType; 3] =
    [CapacityType::Reserved, CapacityType::Spot, CapacityType::OnDemand];

/// The offerings one launch tries, in order: the chosen capacity type's candidates, cheapest
/// first, leaving out those `known_unavailable` unless nothing else is left (then the launch
/// tries them again and fails with the list).
pub(crate) fn launch_order<'a>(
    candidates: &[Candidate<'a>],
    known_unavailable: &BTreeSet<OfferingKey>,
) -> Vec<Candidate<'a>> {
    let usable: Vec<Candidate<'a>> = candidates
        .iter()
        .filter(|c| !known_unavailable.contains(&c.key()))
        .copied()
        .collect();
    let pool = if usable.is_empty() {
        candidates.to_vec()
    } else {
        usable
    };
    let Some(capacity_type) = CAPACITY_TYPE_PRECEDENCE
        .into_iter()
        .find(|ct| pool.iter().any(|c| c.offering.capacity_type == *ct))
    else {
        return Vec::new();
    };
    let mut order: Vec<Candidate<'a>> = pool
        .into_iter()
        .filter(|c| c.offering.capacity_type == capacity_type)
        .collect();
    order.sort_by(|a, b| {
        (a.offering.price, &a.instance_type.name, &a.offering.zone).cmp(&(
            b.offering.price,
            &b.instance_type.name,
            &b.offering.zone,
        ))
    });
    order
}
