//! NodePool limits on what a NodeClaim may become. The plan lists every instance type that holds
//! a new node's pods, and the cloud provider may launch any of them, so each listed type must fit
//! in what the NodePool has left — not only the cheapest one the plan priced. As Karpenter's
//! scheduler does (`filterByRemainingResources`, then subtracting the largest type left), types
//! that would overrun a limit are struck from the list, the largest remaining one is counted
//! against the limits for the NodeClaims after it, and a NodeClaim with no type left (or fewer
//! than a requirement's `minValues`) is not created.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nodewright_api::{Operator, labels};
use nodewright_catalog::{InstanceType, Resources};
use nodewright_solver::{NodeClaimPlan, PoolInput};

use super::resources;

/// A planned NodeClaim that is not created, and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refused {
    pub(crate) node: NodeClaimPlan,
    pub(crate) reason: String,
}

/// Trims the instance types of `new_nodes` to each NodePool's remaining limits (`pools` carry
/// the limits and what is in use), removing the NodeClaims that cannot be created within them.
pub(crate) fn enforce(new_nodes: &mut Vec<NodeClaimPlan>, pools: &[PoolInput]) -> Vec<Refused> {
    let mut remaining: HashMap<&str, Remaining<'_>> = pools
        .iter()
        .filter(|p| !p.nodepool.spec.limits.is_empty())
        .filter_map(|p| Some((p.nodepool.metadata.name.as_deref()?, Remaining::new(p))))
        .collect();
    let mut refused = Vec::new();
    let mut kept = Vec::with_capacity(new_nodes.len());
    for mut node in std::mem::take(new_nodes) {
        let Some(left) = remaining.get_mut(node.nodepool.as_str()) else {
            kept.push(node);
            continue;
        };
        match left.take(&mut node) {
            Ok(()) => kept.push(node),
            Err(reason) => refused.push(Refused { node, reason }),
        }
    }
    *new_nodes = kept;
    refused
}

/// What one NodePool has left under its limits.
struct Remaining<'a> {
    /// Limited resources and the amount left (may be negative when already over).
    left: BTreeMap<String, i64>,
    limits: &'a BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    types: HashMap<&'a str, &'a InstanceType>,
}

impl<'a> Remaining<'a> {
    fn new(pool: &'a PoolInput) -> Self {
        let limits = &pool.nodepool.spec.limits;
        // Limits were validated with the NodePool; one that does not parse limits nothing.
        let (limit, _) = resources::parse(limits);
        let left = limits
            .keys()
            .map(|name| {
                (
                    name.clone(),
                    limit.get(name).saturating_sub(pool.in_use.get(name)),
                )
            })
            .collect();
        Self {
            left,
            limits,
            types: pool.instance_types.iter().map(|t| (t.name.as_str(), t)).collect(),
        }
    }

    /// Narrows `node` to the types that fit and counts it, or says why it cannot be created.
    fn take(&mut self, node: &mut NodeClaimPlan) -> Result<(), String> {
        if self.left.get("nodes").is_some_and(|n| *n < 1) {
            return Err(self.exceeded("nodes"));
        }
        let fitting: Vec<&InstanceType> = node
            .instance_types
            .iter()
            .filter_map(|name| self.types.get(name.as_ref()).copied())
            .filter(|t| self.fits(&t.capacity))
            .collect();
        if fitting.is_empty() {
            let over: Vec<String> = self
                .left
                .keys()
                .filter(|k| *k != "nodes")
                .map(|k| self.exceeded(k))
                .collect();
            return Err(format!(
                "every instance type that holds the pods would exceed the limits ({})",
                over.join(", ")
            ));
        }
        check_min_values(node, &fitting)?;
        let names: Vec<String> = fitting.iter().map(|t| t.name.clone()).collect();
        for requirement in &mut node.requirements {
            if labels::normalize_label_key(&requirement.key) == labels::INSTANCE_TYPE
                && requirement.operator == Operator::In
            {
                requirement.values.clone_from(&names);
            }
        }
        node.instance_types = names.iter().map(|n| n.as_str().into()).collect();
        if !names.contains(&node.instance_type) {
            node.instance_type.clone_from(&names[0]);
        }
        let largest = resources::maximum(fitting.iter().map(|t| &t.capacity)).unwrap_or_default();
        for (name, left) in &mut self.left {
            let used = if name == "nodes" { 1 } else { largest.get(name) };
            *left = left.saturating_sub(used);
        }
        Ok(())
    }

    fn fits(&self, capacity: &Resources) -> bool {
        self.left
            .iter()
            .filter(|(name, _)| *name != "nodes")
            .all(|(name, left)| capacity.get(name) <= *left)
    }

    fn exceeded(&self, name: &str) -> String {
        let limit = self.limits.get(name).map_or("?", |q| q.0.as_str());
        format!("{name} limit {limit}")
    }
}

/// A requirement's `minValues` must still be met by the types left.
fn check_min_values(node: &NodeClaimPlan, fitting: &[&InstanceType]) -> Result<(), String> {
    for requirement in &node.requirements {
        let Some(min) = requirement.min_values.and_then(|m| usize::try_from(m).ok()) else {
            continue;
        };
        let key = labels::normalize_label_key(&requirement.key);
        let distinct: BTreeSet<&str> = if key == labels::INSTANCE_TYPE {
            fitting.iter().map(|t| t.name.as_str()).collect()
        } else {
            fitting
                .iter()
                .filter_map(|t| t.labels.get(key).map(String::as_str))
                .collect()
        };
        if distinct.len() < min {
            return Err(format!(
                "within the limits only {} value(s) of {key} remain, minValues is {min}",
                distinct.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use nodewright_api::{NodePool, NodeSelectorRequirementWithMinValues};
    use nodewright_catalog::{CapacityType, Overhead, Price};
    use serde_json::json;

    use super::*;

    fn instance_type(name: &str, cpu: i64, family: &str) -> InstanceType {
        InstanceType {
            name: name.to_owned(),
            labels: BTreeMap::from([(labels::AWS_INSTANCE_FAMILY.to_owned(), family.to_owned())]),
            capacity: Resources {
                cpu_millis: cpu * 1000,
                memory_bytes: cpu * (4 << 30),
                pods: 29,
                ..Resources::default()
            },
            overhead: Overhead::default(),
            offerings: Vec::new(),
        }
    }

    fn pool(limits: &serde_json::Value, in_use_cpu: i64) -> PoolInput {
        let nodepool: NodePool = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": { "name": "default" },
            "spec": { "limits": limits, "template": { "spec": {
                "requirements": [],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" }
            } } }
        }))
        .unwrap();
        let mut in_use = Resources {
            cpu_millis: in_use_cpu * 1000,
            ..Resources::default()
        };
        in_use.set("nodes", i64::from(in_use_cpu > 0));
        PoolInput {
            nodepool,
            instance_types: vec![
                instance_type("m.large", 2, "m"),
                instance_type("c.large", 2, "c"),
                instance_type("m.xlarge", 4, "m"),
                instance_type("m.2xlarge", 8, "m"),
            ],
            in_use,
        }
    }

    fn plan(types: &[&str], min_values: Option<(&str, i64)>) -> NodeClaimPlan {
        let mut requirements = vec![
            NodeSelectorRequirementWithMinValues::new(labels::NODE_POOL, Operator::In, ["default"]),
            NodeSelectorRequirementWithMinValues::new(
                labels::INSTANCE_TYPE,
                Operator::In,
                types.iter().copied(),
            ),
        ];
        if let Some((key, min)) = min_values {
            if key == labels::INSTANCE_TYPE {
                requirements[1].min_values = Some(min);
            } else {
                let mut r =
                    NodeSelectorRequirementWithMinValues::new(key, Operator::Exists, Vec::<String>::new());
                r.min_values = Some(min);
                requirements.push(r);
            }
        }
        NodeClaimPlan {
            nodepool: "default".into(),
            requirements,
            instance_types: types.iter().map(|t| (*t).into()).collect(),
            instance_type: types[0].to_owned(),
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::OnDemand,
            price: Price::ZERO,
            pods: vec![0],
            requests: Resources::default(),
            min_values_relaxed: false,
        }
    }

    fn listed(node: &NodeClaimPlan) -> Vec<String> {
        node.requirements
            .iter()
            .find(|r| r.key == labels::INSTANCE_TYPE)
            .unwrap()
            .values
            .clone()
    }

    #[test]
    fn types_beyond_the_limit_are_struck_from_the_list() {
        let pools = [pool(&json!({ "cpu": "2" }), 0)];
        let mut nodes = vec![plan(&["m.large", "c.large", "m.xlarge", "m.2xlarge"], None)];
        let refused = enforce(&mut nodes, &pools);
        assert!(refused.is_empty());
        assert_eq!(listed(&nodes[0]), ["m.large", "c.large"]);
        assert_eq!(nodes[0].instance_types.len(), 2);
    }

    #[test]
    fn each_kept_node_counts_its_largest_type_against_the_next() {
        let pools = [pool(&json!({ "cpu": "6" }), 0)];
        let mut nodes = vec![
            plan(&["m.large", "m.xlarge"], None),
            plan(&["m.large", "m.xlarge"], None),
            plan(&["m.large"], None),
        ];
        let refused = enforce(&mut nodes, &pools);
        // First: up to 4 CPU (2 left). Second: only m.large fits (0 left). Third: nothing.
        assert_eq!(nodes.len(), 2);
        assert_eq!(listed(&nodes[0]), ["m.large", "m.xlarge"]);
        assert_eq!(listed(&nodes[1]), ["m.large"]);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].reason.contains("cpu limit 6"), "{}", refused[0].reason);
    }

    #[test]
    fn in_use_capacity_and_node_counts_are_respected() {
        let pools = [pool(&json!({ "cpu": "10", "nodes": "2" }), 8)];
        let mut nodes = vec![plan(&["m.large", "m.xlarge"], None), plan(&["m.large"], None)];
        let refused = enforce(&mut nodes, &pools);
        assert_eq!(nodes.len(), 1);
        assert_eq!(listed(&nodes[0]), ["m.large"]);
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].reason.contains("nodes limit 2"),
            "{}",
            refused[0].reason
        );
    }

    #[test]
    fn min_values_must_survive_the_trim() {
        let pools = [pool(&json!({ "cpu": "2" }), 0)];
        let mut nodes = vec![plan(
            &["m.large", "c.large", "m.xlarge"],
            Some((labels::INSTANCE_TYPE, 3)),
        )];
        let refused = enforce(&mut nodes, &pools);
        assert!(nodes.is_empty());
        assert!(
            refused[0].reason.contains("minValues is 3"),
            "{}",
            refused[0].reason
        );

        let mut families = vec![plan(
            &["m.large", "c.large", "m.xlarge"],
            Some((labels::AWS_INSTANCE_FAMILY, 2)),
        )];
        assert!(enforce(&mut families, &pools).is_empty(), "m and c remain");
    }

    #[test]
    fn unlimited_pools_are_left_alone() {
        let pools = [pool(&json!({}), 0)];
        let mut nodes = vec![plan(&["m.large", "m.2xlarge"], None)];
        assert!(enforce(&mut nodes, &pools).is_empty());
        assert_eq!(listed(&nodes[0]).len(), 2);
    }
}
