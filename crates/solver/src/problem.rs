//! The solver's input: a snapshot of pending pods, NodePools with the instance types they allow,
//! existing and in-flight nodes, and DaemonSets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Taint};
use nodewright_api::NodePool;
use nodewright_catalog::{InstanceType, Resources};

/// Everything one solve looks at.
#[derive(Debug, Clone, Default)]
pub struct Problem {
    /// Pods to place.
    pub pods: Vec<Pod>,
    /// NodePools that may launch nodes, with the instance types their node class allows.
    pub nodepools: Vec<PoolInput>,
    /// Nodes (and launched in-flight NodeClaims) that already exist; used before new capacity.
    pub existing_nodes: Vec<ExistingNode>,
    /// One pod per DaemonSet (its template): their requests are reserved on every node they fit.
    pub daemonset_pods: Vec<Pod>,
    /// Claims, volumes and storage classes the pods' persistent volumes are looked up in.
    pub volumes: crate::volumes::Volumes,
    pub options: Options,
}

/// A NodePool and its instance types.
#[derive(Debug, Clone)]
pub struct PoolInput {
    pub nodepool: NodePool,
    pub instance_types: Vec<InstanceType>,
    /// Capacity of the nodes this NodePool already has (with `nodes` as an extended resource
    /// named `nodes`), counted against its limits.
    pub in_use: Resources,
}

/// A node that exists, or a NodeClaim already launched.
#[derive(Debug, Clone, Default)]
pub struct ExistingNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    /// Pods bound (or nominated) to it; their requests are taken and they count for topology.
    pub pods: Vec<Pod>,
    /// False while the node is still starting (initialized nodes are tried first).
    pub initialized: bool,
}

/// How preferences are treated (Karpenter's `--preference-policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PreferencePolicy {
    /// Preferred affinity and `ScheduleAnyway` spread are honoured until they block a pod.
    #[default]
    Respect,
    /// Only required constraints are considered.
    Ignore,
}

/// How `minValues` is enforced (Karpenter's `--min-values-policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MinValuesPolicy {
    /// A NodeClaim that cannot keep `minValues` distinct values is not created.
    #[default]
    Strict,
    /// `minValues` is lowered to what the remaining instance types achieve.
    BestEffort,
}

/// Solver settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub preference_policy: PreferencePolicy,
    pub min_values_policy: MinValuesPolicy,
    /// Instance types listed per NodeClaim, cheapest first, raised where `minValues` on the
    /// instance-type key needs more. 60 by default: EC2 CreateFleet takes at most 60 overrides,
    /// so a longer list is never used at launch (Karpenter lists up to 600).
    pub max_instance_types: usize,
    /// Rounds of the local search that merges and empties new nodes. A count, not a time, so the
    /// same input always gives the same plan.
    pub improvement_rounds: u32,
    /// Whether a large solve may use a second thread (the plan is the same either way).
    pub parallel: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            preference_policy: PreferencePolicy::Respect,
            min_values_policy: MinValuesPolicy::Strict,
            max_instance_types: 60,
            improvement_rounds: 4,
            parallel: true,
        }
    }
}
