//! Before launching, whether every offering a NodeClaim may launch is already known to be out of
//! capacity. Claims planned in the same round list the same cheapest types; when the first one's
//! launch fails for capacity, the others would only ask the cloud again for offerings it has
//! just refused. Such a claim is treated as failed for capacity at once (event and deletion, the
//! cache left as it is), so its pods are re-planned without another cloud call.

use std::collections::HashSet;

use nodewright_api::{NodeClaim, labels};
use nodewright_catalog::InstanceType;
use nodewright_cloudprovider::OfferingKey;

/// The offerings `claim` may launch (its listed instance types, in the zones and capacity types
/// its requirements allow) when there is at least one and every one is unavailable — marked in
/// the provider's listing or `unavailable` says so. `None` when one may still launch, or when
/// the claim lists no instance type this listing knows (the cloud decides then).
pub(crate) fn all_offerings_unavailable(
    claim: &NodeClaim,
    types: &[InstanceType],
    unavailable: impl Fn(&OfferingKey) -> bool,
) -> Option<Vec<OfferingKey>> {
    let listed = listed_types(claim)?;
    let mut offerings = Vec::new();
    for instance_type in types.iter().filter(|t| listed.contains(t.name.as_str())) {
        for offering in &instance_type.offerings {
            let allowed = allows(claim, labels::ZONE, &offering.zone)
                && allows(claim, labels::CAPACITY_TYPE, offering.capacity_type.label());
            if !allowed {
                continue;
            }
            let key = OfferingKey::of(instance_type, offering);
            if offering.available && !unavailable(&key) {
                return None;
            }
            offerings.push(key);
        }
    }
    (!offerings.is_empty()).then_some(offerings)
}

/// The claim's `node.kubernetes.io/instance-type In` values (None when it has none).
fn listed_types(claim: &NodeClaim) -> Option<HashSet<&str>> {
    let listed: HashSet<&str> = claim.listed_instance_types().collect();
    (!listed.is_empty()).then_some(listed)
}

/// Whether every requirement of the claim on `key` allows `value`.
fn allows(claim: &NodeClaim, key: &str, value: &str) -> bool {
    claim
        .spec
        .requirements
        .iter()
        .filter(|r| labels::normalize_label_key(&r.key) == key)
        .all(|r| r.matches(Some(value)))
}

#[cfg(test)]
mod tests {
    use nodewright_catalog::{CapacityType, Offering, Price};
    use serde_json::json;

    use super::*;

    fn claim(requirements: &serde_json::Value) -> NodeClaim {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": {"name": "spot-a"},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": requirements,
            }
        }))
        .unwrap()
    }

    fn spot_claim() -> NodeClaim {
        claim(&json!([
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
        ]))
    }

    fn m5_large() -> Vec<InstanceType> {
        let offering = |zone: &str, capacity_type| Offering {
            zone: zone.to_owned(),
            capacity_type,
            price: Price::from_usd(0.1),
            available: true,
            reservation: None,
        };
        let mut instance_type =
            nodewright_catalog::Catalog::us_east_1(&nodewright_catalog::NodeSettings::default())
                .unwrap()
                .get("m5.large")
                .unwrap()
                .clone();
        instance_type.offerings = vec![
            offering("us-east-1a", CapacityType::Spot),
            offering("us-east-1b", CapacityType::Spot),
            offering("us-east-1a", CapacityType::OnDemand),
        ];
        vec![instance_type]
    }

    fn key(zone: &str, capacity_type: CapacityType) -> OfferingKey {
        OfferingKey::new("m5.large", zone, capacity_type)
    }

    #[test]
    fn every_allowed_offering_out_means_no_launch() {
        let out = [
            key("us-east-1a", CapacityType::Spot),
            key("us-east-1b", CapacityType::Spot),
        ];
        let got = all_offerings_unavailable(&spot_claim(), &m5_large(), |k| out.contains(k));
        assert_eq!(
            got,
            Some(out.to_vec()),
            "on-demand is not allowed, so it does not count"
        );
    }

    #[test]
    fn one_allowed_offering_left_means_launch() {
        let out = [key("us-east-1a", CapacityType::Spot)];
        assert_eq!(
            all_offerings_unavailable(&spot_claim(), &m5_large(), |k| out.contains(k)),
            None
        );
        let zonal = claim(&json!([
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a"]},
        ]));
        assert!(
            all_offerings_unavailable(&zonal, &m5_large(), |k| out.contains(k)).is_some(),
            "the zone requirement leaves only the offering that is out"
        );
    }

    #[test]
    fn offerings_the_provider_marks_count_and_unknown_types_leave_it_to_the_cloud() {
        let mut types = m5_large();
        for offering in &mut types[0].offerings {
            offering.available = false;
        }
        assert!(all_offerings_unavailable(&spot_claim(), &types, |_| false).is_some());
        let unknown = claim(&json!([
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["x9.huge"]},
        ]));
        assert_eq!(all_offerings_unavailable(&unknown, &types, |_| true), None);
        let unlisted = claim(&json!([]));
        assert_eq!(all_offerings_unavailable(&unlisted, &types, |_| true), None);
    }
}
