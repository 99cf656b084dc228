//! The plan as `nodewright plan` prints it: a stable, documented JSON (and YAML) schema,
//! `nodewright.io/plan/v1`, and a table for people. `docs/plan-output.md` describes every field;
//! within `v1` fields are only ever added, never renamed, retyped or removed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use nodewright_api::NodeSelectorRequirementWithMinValues;
use serde::{Deserialize, Serialize};

use crate::{Plan, manifests::PlanInput};

/// The `schemaVersion` of this report format.
pub const SCHEMA_VERSION: &str = "nodewright.io/plan/v1";

/// Everything one plan says: new nodes, placements on existing nodes, pods that cannot run, totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: String,
    /// The region whose instance types and prices were used (`us-east-1`).
    pub region: String,
    /// Nodes to launch, in the solver's order.
    pub nodes: Vec<PlannedNode>,
    /// Pending pods that fit on nodes given with `--existing`.
    pub existing_placements: Vec<ExistingPlacement>,
    /// Pending pods no node can take, with a reason per NodePool.
    pub unschedulable: Vec<UnschedulablePod>,
    pub totals: Totals,
    /// True while spot prices are the catalogue's deterministic model, not market prices.
    pub spot_prices_modelled: bool,
    /// Objects ignored and assumptions made, one sentence each.
    pub warnings: Vec<String>,
}

/// One node to launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedNode {
    /// The NodePool that launches it.
    pub nodepool: String,
    /// The cheapest instance type that holds its pods; `pricePerHour` is for this one.
    pub instance_type: String,
    /// `spot`, `on-demand` or `reserved`.
    pub capacity_type: String,
    /// The zone of the offering priced.
    pub zone: String,
    /// Its pods, `namespace/name`.
    pub pods: Vec<String>,
    pub pod_count: usize,
    /// Its pods grouped by the workload that made them, in order of first appearance.
    pub workloads: Vec<WorkloadPods>,
    /// USD per hour of `instanceType` as `capacityType` in `zone`.
    pub price_per_hour: f64,
    /// Every instance type that holds the pods, cheapest first (the NodeClaim may launch any).
    pub instance_types: Vec<String>,
    /// The NodeClaim's requirements: the NodePool's, the pods', and the instance types.
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
}

/// How many of a node's pods one workload made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPods {
    /// `Kind/namespace/name`, e.g. `Deployment/default/inflate`; `Pod/namespace/name` for a bare pod.
    pub workload: String,
    pub pod_count: usize,
}

/// A pending pod placed on an existing node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExistingPlacement {
    /// `namespace/name`.
    pub pod: String,
    /// `Kind/namespace/name`.
    pub workload: String,
    /// The existing node's name.
    pub node: String,
}

/// A pending pod that cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnschedulablePod {
    /// `namespace/name`.
    pub pod: String,
    /// `Kind/namespace/name`.
    pub workload: String,
    /// One line per NodePool (`nodepool gpu: taint nvidia.com/gpu not tolerated`), plus pod-level
    /// problems.
    pub reasons: Vec<String>,
}

/// Sums over the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Nodes to launch.
    pub nodes: usize,
    /// Pods placed on the nodes to launch.
    pub pods: usize,
    /// USD per hour of the nodes to launch.
    pub price_per_hour: f64,
    /// A lower bound on the USD per hour of any set of new nodes holding the same pods (LP
    /// relaxation over resources per NodePool).
    pub lower_bound_per_hour: f64,
    /// `(pricePerHour − lowerBoundPerHour) / lowerBoundPerHour`, a fraction (0.05 is 5%); 0 when the
    /// bound is 0.
    pub optimality_gap: f64,
    /// Pending pods in the input (`pods + podsOnExistingNodes + unschedulablePods`).
    pub pending_pods: usize,
    pub pods_on_existing_nodes: usize,
    pub unschedulable_pods: usize,
}

impl PlanReport {
    /// The report of `plan`, solved from `input.problem`.
    pub fn new(input: &PlanInput, plan: &Plan) -> Self {
        let pod = |i: usize| {
            input
                .pods
                .get(i)
                .map_or_else(|| format!("#{i}"), crate::manifests::PodOrigin::pod_ref)
        };
        let workload = |i: usize| {
            input
                .pods
                .get(i)
                .map_or_else(|| format!("#{i}"), crate::manifests::PodOrigin::workload)
        };
        let nodes: Vec<PlannedNode> = plan
            .new_nodes
            .iter()
            .map(|node| {
                let mut workloads: Vec<WorkloadPods> = Vec::new();
                for &p in &node.pods {
                    let name = workload(p);
                    match workloads.iter_mut().find(|w| w.workload == name) {
                        Some(w) => w.pod_count += 1,
                        None => workloads.push(WorkloadPods {
                            workload: name,
                            pod_count: 1,
                        }),
                    }
                }
                PlannedNode {
                    nodepool: node.nodepool.clone(),
                    instance_type: node.instance_type.clone(),
                    capacity_type: node.capacity_type.label().to_owned(),
                    zone: node.zone.clone(),
                    pods: node.pods.iter().map(|&p| pod(p)).collect(),
                    pod_count: node.pods.len(),
                    workloads,
                    price_per_hour: node.price.as_usd(),
                    instance_types: node.instance_types.iter().map(ToString::to_string).collect(),
                    requirements: node.requirements.clone(),
                }
            })
            .collect();
        let existing_placements: Vec<ExistingPlacement> = plan
            .existing_placements
            .iter()
            .map(|(p, node)| ExistingPlacement {
                pod: pod(*p),
                workload: workload(*p),
                node: node.clone(),
            })
            .collect();
        let unschedulable: Vec<UnschedulablePod> = plan
            .unschedulable
            .iter()
            .map(|u| UnschedulablePod {
                pod: pod(u.pod),
                workload: workload(u.pod),
                reasons: u.reasons.clone(),
            })
            .collect();
        let pods_on_new: usize = nodes.iter().map(|n| n.pod_count).sum();
        let totals = Totals {
            nodes: nodes.len(),
            pods: pods_on_new,
            price_per_hour: plan.total_price.as_usd(),
            lower_bound_per_hour: plan.lower_bound.as_usd(),
            optimality_gap: plan.optimality_gap(),
            pending_pods: input.problem.pods.len(),
            pods_on_existing_nodes: existing_placements.len(),
            unschedulable_pods: unschedulable.len(),
        };
        Self {
            schema_version: SCHEMA_VERSION.to_owned(),
            region: input.region.clone(),
            nodes,
            existing_placements,
            unschedulable,
            totals,
            spot_prices_modelled: input.spot_prices_modelled,
            warnings: input.warnings.clone(),
        }
    }

    /// The report for people: one row per node to launch, the totals, the lower bound and gap,
    /// placements on existing nodes, every unschedulable pod with its reasons, and the warnings.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let header = ["NODEPOOL", "INSTANCE TYPE", "CAPACITY", "ZONE", "PODS", "$/H"].map(str::to_owned);
        let rows: Vec<[String; 6]> = self
            .nodes
            .iter()
            .map(|n| {
                [
                    n.nodepool.clone(),
                    n.instance_type.clone(),
                    n.capacity_type.clone(),
                    n.zone.clone(),
                    n.pod_count.to_string(),
                    format!("{:.4}", n.price_per_hour),
                ]
            })
            .collect();
        if rows.is_empty() {
            out.push_str("No new nodes planned.\n");
        } else {
            let mut widths = header.clone().map(|h| h.len());
            for row in &rows {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.len());
                }
            }
            for row in std::iter::once(&header).chain(&rows) {
                let mut line = String::new();
                for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                    // Counts and prices line up on the right.
                    if i >= 4 {
                        let _ = write!(line, "{cell:>width$}  ");
                    } else {
                        let _ = write!(line, "{cell:<width$}  ");
                    }
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        let t = &self.totals;
        out.push('\n');
        let _ = writeln!(
            out,
            "Total: {} {}, {} {}, ${:.4}/h",
            t.nodes,
            plural(t.nodes, "node", "nodes"),
            t.pods,
            plural(t.pods, "pod", "pods"),
            t.price_per_hour
        );
        let _ = writeln!(
            out,
            "Lower bound: ${:.4}/h (gap {:.1}%)",
            t.lower_bound_per_hour,
            t.optimality_gap * 100.0
        );
        if !self.existing_placements.is_empty() {
            let mut by_node: BTreeMap<&str, usize> = BTreeMap::new();
            for p in &self.existing_placements {
                *by_node.entry(p.node.as_str()).or_insert(0) += 1;
            }
            let _ = writeln!(out, "\nOn existing nodes: {} pods", t.pods_on_existing_nodes);
            for (node, count) in by_node {
                let _ = writeln!(out, "  {node}: {count} {}", plural(count, "pod", "pods"));
            }
        }
        if !self.unschedulable.is_empty() {
            let _ = writeln!(out, "\nUnschedulable pods ({}):", self.unschedulable.len());
            for u in &self.unschedulable {
                let _ = writeln!(out, "  {} ({})", u.pod, u.workload);
                for reason in &u.reasons {
                    let _ = writeln!(out, "    - {reason}");
                }
            }
        }
        if self.spot_prices_modelled {
            out.push_str(
                "\nSpot prices are modelled (a fixed discount from on-demand per type and zone), not market prices.\n",
            );
        }
        if !self.warnings.is_empty() {
            out.push_str("\nWarnings:\n");
            for warning in &self.warnings {
                let _ = writeln!(out, "  - {warning}");
            }
        }
        out
    }
}

fn plural<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}
