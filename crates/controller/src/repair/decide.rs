//! The repair decision, pure: which unhealthy nodes are replaced now, which their NodePool's
//! health holds back (and why), and when the next toleration runs out.
//!
//! A node is *unhealthy* while one of its conditions matches a repair policy (type and status),
//! and *due* once that condition has held for the policy's toleration (from its
//! `lastTransitionTime`; with several matching conditions, the one due first counts, as in
//! Karpenter). Nodes are judged within their group: the Nodes labelled with their NodeClaim's
//! NodePool, or every Node of the cluster for a NodeClaim without one (Karpenter's standalone
//! NodeClaims). [`allowance`] is the safety rule.

use std::{
    collections::{BTreeMap, HashSet},
    fmt,
    hash::BuildHasher,
    sync::Arc,
    time::Duration,
};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use nodewright_api::{NodeClaim, labels};
use nodewright_cloudprovider::RepairPolicy;

use crate::error::ControllerError;

/// Pools of at most this many nodes may repair one node at a time whatever share of them is
/// unhealthy: in a pool of 3, one broken node is already 33%, and users reported that the 20%
/// rule alone left small pools broken for good.
pub const SMALL_POOL_MAX_NODES: usize = 4;
/// Larger pools repair nothing while more than this share of their nodes is unhealthy (a
/// broken AMI or network is not fixed by replacing every node).
pub const MAX_UNHEALTHY_PERCENT: usize = 20;

/// The nodes whose health is judged together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// The Nodes labelled `karpenter.sh/nodepool` with this NodePool.
    Pool(String),
    /// Every Node of the cluster (NodeClaims without a NodePool).
    Cluster,
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pool(name) => write!(f, "NodePool {name}"),
            Self::Cluster => f.write_str("the cluster"),
        }
    }
}

/// A group's health, as the safety rule reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupHealth {
    /// Its Nodes, being deleted or not.
    pub nodes: usize,
    /// Those with a condition a repair policy matches (due or not yet).
    pub unhealthy: usize,
    /// Its NodeClaims being deleted, for whatever reason: replacements in flight.
    pub replacing: usize,
}

/// How many of a group's due nodes may be repaired now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Every due node.
    All,
    /// One (a small pool with no replacement in flight).
    One,
    /// None, for this reason.
    Blocked(BlockReason),
}

/// Why a due node is not repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// More than [`MAX_UNHEALTHY_PERCENT`] of the group is unhealthy; at most `tolerated` nodes
    /// may be.
    TooManyUnhealthy { tolerated: usize },
    /// A small pool already has a node being replaced.
    OneAtATime,
}

/// The safety rule. Pools of up to [`SMALL_POOL_MAX_NODES`] nodes repair one node while none of
/// theirs is being replaced. Larger groups repair only while at most 20% of their nodes are
/// unhealthy, taken literally (rounded down: 2 unhealthy of 6 is 33% and blocks). Karpenter
/// rounds the 20% up instead, which lets a third of a 6-node pool be replaced at once; the
/// point of the rule is to stop repairs when a fault is wide, so the strict reading holds. A node
/// being replaced still counts as long as its Node exists.
pub fn allowance(health: GroupHealth) -> Allowance {
    if health.nodes <= SMALL_POOL_MAX_NODES {
        return if health.replacing == 0 {
            Allowance::One
        } else {
            Allowance::Blocked(BlockReason::OneAtATime)
        };
    }
    let tolerated = health.nodes * MAX_UNHEALTHY_PERCENT / 100;
    if health.unhealthy <= tolerated {
        Allowance::All
    } else {
        Allowance::Blocked(BlockReason::TooManyUnhealthy { tolerated })
    }
}

/// The condition that makes a node unhealthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    pub condition_type: String,
    pub condition_status: String,
    /// The condition's `lastTransitionTime`.
    pub since: Timestamp,
    /// The policy's toleration.
    pub toleration: Duration,
    /// `since` + `toleration`.
    pub due: Timestamp,
}

/// A node to replace now.
#[derive(Debug, Clone)]
pub struct Repair {
    pub node: Arc<Node>,
    pub claim: Arc<NodeClaim>,
    pub condition: Unhealthy,
}

/// A due node its group's health holds back.
#[derive(Debug, Clone)]
pub struct Blocked {
    pub node: Arc<Node>,
    pub condition: Unhealthy,
    pub group: Group,
    pub health: GroupHealth,
    pub reason: BlockReason,
}

impl Blocked {
    /// Why, in words (the `NodeRepairBlocked` event's note).
    pub fn message(&self) -> String {
        let GroupHealth {
            nodes,
            unhealthy,
            replacing,
        } = self.health;
        let condition = format!(
            "{}={} since {}",
            self.condition.condition_type, self.condition.condition_status, self.condition.since
        );
        match self.reason {
            BlockReason::TooManyUnhealthy { tolerated } => format!(
                "not repairing ({condition}): {unhealthy} of the {nodes} nodes of {} are unhealthy, \
                 more than {MAX_UNHEALTHY_PERCENT}% ({tolerated}) may be",
                self.group
            ),
            BlockReason::OneAtATime => format!(
                "not repairing yet ({condition}): {} has {nodes} nodes and {replacing} being replaced; \
                 pools of up to {SMALL_POOL_MAX_NODES} nodes repair one node at a time",
                self.group
            ),
        }
    }
}

/// What one pass does.
#[derive(Debug, Default)]
pub struct Decision {
    pub repairs: Vec<Repair>,
    pub blocked: Vec<Blocked>,
    /// When the next unhealthy node becomes due.
    pub next: Option<Timestamp>,
    /// Unhealthy nodes whose condition has no `lastTransitionTime`, so they never become due.
    pub invalid: Vec<ControllerError>,
}

/// Decides the pass at `now`. `deleted` holds the uids of NodeClaims this controller deleted
/// that the cache may not show as deleting yet; they count as being replaced.
pub fn decide<S: BuildHasher>(
    policies: &[RepairPolicy],
    nodes: &[Arc<Node>],
    claims: &[Arc<NodeClaim>],
    deleted: &HashSet<String, S>,
    now: Timestamp,
) -> Decision {
    let mut decision = Decision::default();
    let claims_by_provider_id: BTreeMap<&str, &Arc<NodeClaim>> = claims
        .iter()
        .filter_map(|c| Some((c.provider_id()?, c)))
        .collect();
    let deleting = |claim: &NodeClaim| {
        claim.metadata.deletion_timestamp.is_some() || claim.uid().is_some_and(|uid| deleted.contains(&uid))
    };

    let mut due: BTreeMap<Group, Vec<Repair>> = BTreeMap::new();
    let mut unhealthy_nodes: Vec<&Arc<Node>> = Vec::new();
    for node in nodes {
        let condition = match unhealthy_condition(policies, node) {
            Ok(Some(condition)) => condition,
            Ok(None) => continue,
            Err(error) => {
                unhealthy_nodes.push(node);
                decision.invalid.push(error);
                continue;
            }
        };
        unhealthy_nodes.push(node);
        let Some(claim) = node
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .and_then(|id| claims_by_provider_id.get(id))
        else {
            continue; // not Nodewright's node
        };
        if deleting(claim) {
            continue;
        }
        if condition.due > now {
            decision.next = Some(decision.next.map_or(condition.due, |n| n.min(condition.due)));
            continue;
        }
        let group = claim
            .labels()
            .get(labels::NODE_POOL)
            .map_or(Group::Cluster, |pool| Group::Pool(pool.clone()));
        due.entry(group).or_default().push(Repair {
            node: Arc::clone(node),
            claim: Arc::clone(claim),
            condition,
        });
    }

    for (group, mut candidates) in due {
        let in_group = |labels: &BTreeMap<String, String>| match &group {
            Group::Pool(pool) => labels.get(labels::NODE_POOL) == Some(pool),
            Group::Cluster => true,
        };
        let health = GroupHealth {
            nodes: nodes.iter().filter(|n| in_group(n.labels())).count(),
            unhealthy: unhealthy_nodes.iter().filter(|n| in_group(n.labels())).count(),
            replacing: claims
                .iter()
                .filter(|c| deleting(c) && in_group(c.labels()))
                .count(),
        };
        // Longest overdue first, so a small pool repairs the node broken longest.
        candidates.sort_by_key(|r| (r.condition.due, r.node.name_any()));
        // Past the one a small pool repairs now, the others wait for it.
        let (allowed, reason) = match allowance(health) {
            Allowance::All => (candidates.len(), BlockReason::OneAtATime),
            Allowance::One => (1, BlockReason::OneAtATime),
            Allowance::Blocked(reason) => (0, reason),
        };
        let held = candidates.split_off(allowed.min(candidates.len()));
        decision.repairs.extend(candidates);
        decision.blocked.extend(held.into_iter().map(|held| Blocked {
            node: held.node,
            condition: held.condition,
            group: group.clone(),
            health,
            reason,
        }));
    }
    decision
}

/// Where one node stands with repair, for `explain node`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRepairStatus {
    pub state: RepairState,
    /// `Type=Status` of the condition that makes the node unhealthy.
    pub condition: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RepairState {
    /// Unhealthy, within the policy's toleration.
    Tolerated,
    /// Due: the next pass replaces it.
    Due,
    /// Due, held back by its NodePool's health.
    Blocked,
    /// Due, and its NodeClaim is already being deleted.
    Replacing,
    /// Unhealthy, but never repaired (no NodeClaim, or no transition time).
    NotRepairable,
}

/// Where node `name` stands with repair at `now`, or `None` while it is healthy. Pure; the same
/// decision as a pass of the controller.
pub fn status_of(
    policies: &[RepairPolicy],
    nodes: &[Arc<Node>],
    claims: &[Arc<NodeClaim>],
    name: &str,
    now: Timestamp,
) -> Option<NodeRepairStatus> {
    let node = nodes.iter().find(|n| n.name_any() == name)?;
    let condition = match unhealthy_condition(policies, node) {
        Ok(condition) => condition?,
        Err(error) => {
            return Some(NodeRepairStatus {
                state: RepairState::NotRepairable,
                condition: None,
                message: error.to_string(),
            });
        }
    };
    let label = Some(format!(
        "{}={}",
        condition.condition_type, condition.condition_status
    ));
    let status = |state, message| {
        Some(NodeRepairStatus {
            state,
            condition: label.clone(),
            message,
        })
    };
    if condition.due > now {
        return status(
            RepairState::Tolerated,
            format!(
                "unhealthy since {}; replaced at {} unless it recovers",
                condition.since, condition.due
            ),
        );
    }
    let decision = decide(policies, nodes, claims, &HashSet::<String>::new(), now);
    if decision.repairs.iter().any(|r| r.node.name_any() == name) {
        return status(
            RepairState::Due,
            format!(
                "unhealthy since {}, past the {}s tolerated: the next repair pass replaces it",
                condition.since,
                condition.toleration.as_secs()
            ),
        );
    }
    if let Some(blocked) = decision.blocked.iter().find(|b| b.node.name_any() == name) {
        return status(RepairState::Blocked, blocked.message());
    }
    let claim = node
        .spec
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .and_then(|id| claims.iter().find(|c| c.provider_id() == Some(id)));
    match claim {
        Some(_) => status(
            RepairState::Replacing,
            "its NodeClaim is being deleted".to_owned(),
        ),
        None => status(
            RepairState::NotRepairable,
            "no NodeClaim has this node's providerID: Nodewright does not repair it".to_owned(),
        ),
    }
}

/// The node's condition a policy matches that is due first, if any.
fn unhealthy_condition(policies: &[RepairPolicy], node: &Node) -> Result<Option<Unhealthy>, ControllerError> {
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let mut first: Option<Unhealthy> = None;
    for condition in conditions {
        for policy in policies
            .iter()
            .filter(|p| p.matches(&condition.type_, &condition.status))
        {
            let Some(since) = condition.last_transition_time.as_ref().map(|t| t.0) else {
                return Err(ControllerError::InvalidSpec {
                    kind: "Node",
                    name: node.name_any(),
                    field: format!("status.conditions[{}].lastTransitionTime", condition.type_),
                    message: "missing, so how long the node has been unhealthy is unknown; \
                              it is not repaired"
                        .to_owned(),
                });
            };
            // A toleration past the end of time never runs out.
            let due = SignedDuration::try_from(policy.toleration_duration)
                .ok()
                .and_then(|d| since.checked_add(d).ok())
                .unwrap_or(Timestamp::MAX);
            if first.as_ref().is_none_or(|f| due < f.due) {
                first = Some(Unhealthy {
                    condition_type: condition.type_.clone(),
                    condition_status: condition.status.clone(),
                    since,
                    toleration: policy.toleration_duration,
                    due,
                });
            }
        }
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use nodewright_cloudprovider::{ConditionStatus, aws_repair_policies};
    use serde_json::json;

    use super::*;
    use crate::test_fixtures::arc;

    fn health(nodes: usize, unhealthy: usize, replacing: usize) -> GroupHealth {
        GroupHealth {
            nodes,
            unhealthy,
            replacing,
        }
    }

    fn too_many(tolerated: usize) -> Allowance {
        Allowance::Blocked(BlockReason::TooManyUnhealthy { tolerated })
    }

    #[test]
    fn small_pools_repair_one_node_at_a_time_however_many_are_unhealthy() {
        for nodes in 1..=SMALL_POOL_MAX_NODES {
            assert_eq!(
                allowance(health(nodes, nodes, 0)),
                Allowance::One,
                "{nodes} nodes"
            );
            assert_eq!(
                allowance(health(nodes, 1, 1)),
                Allowance::Blocked(BlockReason::OneAtATime),
                "{nodes} nodes, one being replaced"
            );
        }
    }

    #[test]
    fn larger_pools_repair_up_to_a_fifth() {
        // 20% exactly is allowed.
        assert_eq!(allowance(health(5, 1, 0)), Allowance::All);
        assert_eq!(allowance(health(5, 2, 0)), too_many(1));
        assert_eq!(allowance(health(10, 2, 0)), Allowance::All);
        assert_eq!(allowance(health(10, 3, 0)), too_many(2));
        // 20% of 6 is 1.2: one unhealthy node (17%) is repaired, two (33%) are too many.
        assert_eq!(allowance(health(6, 1, 0)), Allowance::All);
        assert_eq!(allowance(health(6, 2, 0)), too_many(1));
        // Replacements in flight do not hold a large pool back; their unhealthy Nodes count.
        assert_eq!(allowance(health(10, 2, 1)), Allowance::All);
    }

    const START: &str = "2026-01-01T00:00:00Z";

    fn at(minutes: i64) -> Timestamp {
        START
            .parse::<Timestamp>()
            .unwrap()
            .checked_add(SignedDuration::from_mins(minutes))
            .unwrap()
    }

    /// A Node of `pool` (`i` names it and its instance) with the given extra condition
    /// (type, status, minutes after START it transitioned).
    fn node(i: usize, pool: &str, condition: Option<(&str, &str, i64)>) -> Arc<Node> {
        let mut conditions = vec![json!({
            "type": "Ready", "status": "True", "lastTransitionTime": START
        })];
        if let Some((type_, status, minute)) = condition {
            let mut c = json!({ "type": type_, "status": status });
            if minute >= 0 {
                c["lastTransitionTime"] = json!(nodewright_api::clock::rfc3339(at(minute)));
            }
            conditions.push(c);
        }
        arc(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": format!("node-{i}"), "labels": { "karpenter.sh/nodepool": pool } },
            "spec": { "providerID": format!("aws:///us-east-1a/i-{i}") },
            "status": { "conditions": conditions }
        }))
    }

    fn claim(i: usize, pool: Option<&str>, deleting: bool) -> Arc<NodeClaim> {
        let mut metadata = json!({ "name": format!("claim-{i}"), "uid": format!("uid-{i}") });
        if let Some(pool) = pool {
            metadata["labels"] = json!({ "karpenter.sh/nodepool": pool });
        }
        if deleting {
            metadata["deletionTimestamp"] = json!(START);
        }
        arc(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": metadata,
            "spec": { "requirements": [],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } },
            "status": { "providerID": format!("aws:///us-east-1a/i-{i}") }
        }))
    }

    /// `n` nodes in pool `default`, the first `unhealthy` with NetworkingReady=False since
    /// minute 0 (due at minute 30).
    fn pool_of(n: usize, unhealthy: usize) -> (Vec<Arc<Node>>, Vec<Arc<NodeClaim>>) {
        let nodes = (0..n)
            .map(|i| {
                node(
                    i,
                    "default",
                    (i < unhealthy).then_some(("NetworkingReady", "False", 0)),
                )
            })
            .collect();
        let claims = (0..n).map(|i| claim(i, Some("default"), false)).collect();
        (nodes, claims)
    }

    fn repaired(decision: &Decision) -> Vec<String> {
        decision.repairs.iter().map(|r| r.node.name_any()).collect()
    }

    fn run(nodes: &[Arc<Node>], claims: &[Arc<NodeClaim>], minute: i64) -> Decision {
        decide(&aws_repair_policies(), nodes, claims, &HashSet::new(), at(minute))
    }

    #[test]
    fn a_node_is_repaired_once_its_condition_outlasts_the_toleration() {
        let (nodes, claims) = pool_of(1, 1);
        let early = run(&nodes, &claims, 29);
        assert!(early.repairs.is_empty() && early.blocked.is_empty());
        assert_eq!(early.next, Some(at(30)));
        let due = run(&nodes, &claims, 30);
        assert_eq!(repaired(&due), ["node-0"]);
        let condition = &due.repairs[0].condition;
        assert_eq!(
            (condition.condition_type.as_str(), condition.toleration),
            ("NetworkingReady", Duration::from_mins(30))
        );
    }

    #[test]
    fn only_conditions_a_policy_matches_count() {
        let nodes = [
            node(0, "default", Some(("NetworkingReady", "True", 0))),
            node(1, "default", Some(("MemoryPressure", "True", 0))),
            // Unknown Ready is a policy of its own.
            node(2, "default", Some(("Ready", "Unknown", 0))),
        ];
        let claims: Vec<_> = (0..3).map(|i| claim(i, Some("default"), false)).collect();
        assert_eq!(repaired(&run(&nodes, &claims, 60)), ["node-2"]);
    }

    #[test]
    fn the_condition_due_first_decides() {
        let policies = [
            RepairPolicy::new("A", ConditionStatus::False, Duration::from_mins(30)),
            RepairPolicy::new("B", ConditionStatus::False, Duration::from_mins(10)),
        ];
        let mut node = (*node(0, "default", Some(("A", "False", 0)))).clone();
        let b: k8s_openapi::api::core::v1::NodeCondition = serde_json::from_value(json!({
            "type": "B", "status": "False", "lastTransitionTime": nodewright_api::clock::rfc3339(at(5))
        }))
        .unwrap();
        node.status.as_mut().unwrap().conditions.as_mut().unwrap().push(b);
        let condition = unhealthy_condition(&policies, &node).unwrap().unwrap();
        assert_eq!((condition.condition_type.as_str(), condition.due), ("B", at(15)));
    }

    #[test]
    fn pools_at_the_edges_of_the_threshold() {
        // (nodes, unhealthy, repaired)
        for (n, unhealthy, expected) in [
            (1, 1, 1),
            (2, 2, 1),
            (4, 4, 1),
            (5, 1, 1),
            (5, 2, 0),
            (10, 2, 2),
            (10, 3, 0),
        ] {
            let (nodes, claims) = pool_of(n, unhealthy);
            let decision = run(&nodes, &claims, 30);
            assert_eq!(decision.repairs.len(), expected, "{unhealthy} of {n} unhealthy");
            assert_eq!(decision.blocked.len(), unhealthy - expected, "{unhealthy} of {n}");
        }
    }

    #[test]
    fn a_small_pool_waits_while_one_of_its_nodes_is_being_replaced() {
        let (nodes, mut claims) = pool_of(2, 2);
        claims[0] = claim(0, Some("default"), true);
        let decision = run(&nodes, &claims, 30);
        assert!(decision.repairs.is_empty());
        assert_eq!(decision.blocked.len(), 1);
        assert_eq!(decision.blocked[0].reason, BlockReason::OneAtATime);
        assert!(
            decision.blocked[0].message().contains("one node at a time"),
            "{}",
            decision.blocked[0].message()
        );

        // The same when the cache has not shown our own delete yet.
        let (nodes, claims) = pool_of(2, 2);
        let deleted = HashSet::from(["uid-0".to_owned()]);
        let decision = decide(&aws_repair_policies(), &nodes, &claims, &deleted, at(30));
        assert!(decision.repairs.is_empty());
    }

    #[test]
    fn a_small_pool_repairs_the_node_broken_longest() {
        let nodes = [
            node(0, "default", Some(("NetworkingReady", "False", 10))),
            node(1, "default", Some(("NetworkingReady", "False", 0))),
        ];
        let claims: Vec<_> = (0..2).map(|i| claim(i, Some("default"), false)).collect();
        let decision = run(&nodes, &claims, 60);
        assert_eq!(repaired(&decision), ["node-1"]);
        assert_eq!(decision.blocked[0].node.name_any(), "node-0");
    }

    #[test]
    fn pools_are_judged_apart_and_standalone_claims_by_the_whole_cluster() {
        // Pool a: 5 nodes, 2 unhealthy (blocked). Pool b: 1 node, unhealthy (repaired).
        let mut nodes: Vec<_> = (0..5)
            .map(|i| node(i, "a", (i < 2).then_some(("NetworkingReady", "False", 0))))
            .collect();
        nodes.push(node(5, "b", Some(("NetworkingReady", "False", 0))));
        let mut claims: Vec<_> = (0..5).map(|i| claim(i, Some("a"), false)).collect();
        claims.push(claim(5, Some("b"), false));
        let decision = run(&nodes, &claims, 30);
        assert_eq!(repaired(&decision), ["node-5"]);
        assert_eq!(decision.blocked.len(), 2);
        assert!(
            decision.blocked[0]
                .message()
                .contains("2 of the 5 nodes of NodePool a")
        );

        // Without a NodePool, the cluster's 6 nodes with 3 unhealthy are judged: 3 > 2.
        let claims: Vec<_> = (0..6).map(|i| claim(i, None, false)).collect();
        let decision = run(&nodes, &claims, 30);
        assert!(decision.repairs.is_empty());
        assert!(decision.blocked.iter().all(|b| b.group == Group::Cluster));
    }

    #[test]
    fn nodes_without_a_claim_or_being_deleted_are_not_repaired() {
        let (nodes, mut claims) = pool_of(2, 1);
        claims.remove(0);
        assert!(run(&nodes, &claims, 30).repairs.is_empty(), "no NodeClaim");
        let (nodes, mut claims) = pool_of(6, 1);
        claims[0] = claim(0, Some("default"), true);
        assert!(run(&nodes, &claims, 30).repairs.is_empty(), "already deleting");
    }

    #[test]
    fn explain_says_where_a_node_stands() {
        let (nodes, claims) = pool_of(5, 2);
        let policies = aws_repair_policies();
        let state = |name: &str, minute| status_of(&policies, &nodes, &claims, name, at(minute));
        assert_eq!(state("node-4", 30), None, "healthy");
        let tolerated = state("node-0", 10).unwrap();
        assert_eq!(tolerated.state, RepairState::Tolerated);
        assert_eq!(tolerated.condition.as_deref(), Some("NetworkingReady=False"));
        let blocked = state("node-0", 30).unwrap();
        assert_eq!(blocked.state, RepairState::Blocked);
        assert!(
            blocked.message.contains("2 of the 5 nodes"),
            "{}",
            blocked.message
        );

        let (nodes, claims) = pool_of(5, 1);
        let due = status_of(&policies, &nodes, &claims, "node-0", at(30)).unwrap();
        assert_eq!(due.state, RepairState::Due);
    }

    #[test]
    fn a_condition_without_a_transition_time_names_the_node_and_field() {
        let nodes = [node(0, "default", Some(("NetworkingReady", "False", -1)))];
        let claims = [claim(0, Some("default"), false)];
        let decision = run(&nodes, &claims, 600);
        assert!(decision.repairs.is_empty());
        let message = decision.invalid[0].to_string();
        assert!(
            message.contains("node-0")
                && message.contains("status.conditions[NetworkingReady].lastTransitionTime"),
            "{message}"
        );
    }
}
