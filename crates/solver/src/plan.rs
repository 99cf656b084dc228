//! The solver's output: new NodeClaims with their pods and price, placements on existing nodes,
//! and a reason per NodePool for every pod that cannot be placed.

use nodewright_api::NodeSelectorRequirementWithMinValues;
use nodewright_catalog::{CapacityType, Price, Resources};

/// A node to launch.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeClaimPlan {
    pub nodepool: String,
    /// Requirements for the NodeClaim: the NodePool's, the pods', the decided zone and capacity
    /// type, and the allowed instance types cheapest first.
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// Instance types that hold the pods, cheapest first (at most `max_instance_types`).
    pub instance_types: Vec<std::sync::Arc<str>>,
    /// The cheapest choice, which the price is for.
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    pub price: Price,
    /// Indices into `Problem::pods`.
    pub pods: Vec<usize>,
    /// The pods' requests plus DaemonSet overhead.
    pub requests: Resources,
    /// `minValues` was lowered to what the instance types achieve (`BestEffort`); the NodeClaim
    /// carries `karpenter.sh/nodeclaim-min-values-relaxed: "true"`.
    pub min_values_relaxed: bool,
}

/// Why a pod cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    /// Index into `Problem::pods`.
    pub pod: usize,
    /// One line per NodePool (`nodepool gpu: taint nvidia.com/gpu=true:NoSchedule not tolerated`),
    /// plus pod-level problems.
    pub reasons: Vec<String>,
}

impl Unschedulable {
    /// All reasons on one line.
    pub fn message(&self) -> String {
        self.reasons.join("; ")
    }
}

/// The result of a solve.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub new_nodes: Vec<NodeClaimPlan>,
    /// `(pod index, node name)` for pods placed on existing nodes.
    pub existing_placements: Vec<(usize, String)>,
    pub unschedulable: Vec<Unschedulable>,
    /// Price of the new nodes.
    pub total_price: Price,
    /// A lower bound on the price of any set of new nodes that holds the same pods (LP relaxation
    /// over resources per NodePool).
    pub lower_bound: Price,
}

impl Plan {
    /// `(total − lower bound) / lower bound`, 0 when the bound is 0.
    #[allow(clippy::cast_precision_loss)] // reporting only
    pub fn optimality_gap(&self) -> f64 {
        if self.lower_bound.0 == 0 {
            0.0
        } else {
            (self.total_price.0 as f64 - self.lower_bound.0 as f64) / self.lower_bound.0 as f64
        }
    }
}
