//! NodePool status (Karpenter's `nodepool.counter`, `nodepool.validation` and
//! `nodepool.readiness`): `status.resources` (the capacity of the pool's launched NodeClaims —
//! the Node's once registered, the cloud's estimate before — plus `nodes`), `status.nodes`, and the
//! conditions `ValidationSucceeded`, `NodeClassReady` and the derived `Ready`.
//!
//! `NodeClassReady` mirrors the EC2NodeClass's `Ready` condition when it has one. Nodewright runs
//! no EC2NodeClass controller (the simulation's node classes never get a status), so a node class
//! that exists, is not being deleted and has no `Ready` condition counts as ready; a real
//! cluster's node class with `Ready=Unknown` still reads as unknown.
//!
//! Claims being deleted still count until they are gone: their capacity is still owned (and the
//! provisioner's limits must see it). `NodeRegistrationHealthy` and
//! `status.nodeClassObservedGeneration` follow the launch and registration outcomes the
//! lifecycle records ([`health`]); they are written with the rest, one write per change.

pub mod health;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures_util::{StreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::{api::core::v1::Node, apimachinery::pkg::api::resource::Quantity};
use kube::{Api, ResourceExt, api::PostParams};
use nodewright_api::{
    EC2NodeClass, NodeClaim, NodePool, NodePoolStatus,
    conditions::{ConditionSet, Status, nodepool},
    labels, quantity,
};

use crate::{context::Context, error::ControllerError, lifecycle::Failure};

/// How often the status is recomputed when nothing changes (Karpenter's counter: 5 s).
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Pools written at once.
const CONCURRENCY: usize = 8;

/// Keeps every NodePool's status current, forever.
pub async fn run(ctx: Context) {
    let mut pools = ctx.state.node_pools.changes();
    let mut classes = ctx.state.node_classes.changes();
    let mut claims = ctx.state.node_claims.changes();
    let mut nodes = ctx.state.nodes.changes();
    let mut outcomes = ctx.state.registration_health.changes();
    loop {
        pools.mark_seen();
        classes.mark_seen();
        claims.mark_seen();
        nodes.mark_seen();
        outcomes.mark_unchanged();
        for failure in reconcile_all(&ctx).await {
            tracing::warn!(nodepool = failure.node_claim, error = %failure.error, "nodepool status");
        }
        tokio::select! {
            () = pools.changed() => {}
            () = classes.changed() => {}
            () = claims.changed() => {}
            () = nodes.changed() => {}
            // The sender lives as long as the state: an error cannot happen while this runs.
            _ = outcomes.changed() => {}
            () = tokio::time::sleep(ctx.settings.wall(POLL_INTERVAL)) => {}
        }
    }
}

/// One round over every NodePool; returns the pools whose write failed (`Failure::node_claim`
/// names the pool). Conflicts are left to the next round.
pub async fn reconcile_all(ctx: &Context) -> Vec<Failure> {
    let now = ctx.clock.now();
    let usage = usage_by_pool(&ctx.state.node_claims.all(), &ctx.state.nodes.all());
    let classes = ctx.state.node_classes.all();
    let pools = ctx.state.node_pools.all();
    let trackers = &ctx.state.registration_health;
    trackers.retain(&pools.iter().map(|p| pool_key(p)).collect::<HashSet<_>>());
    let empty = Usage::default();
    let results: Vec<(String, Result<(), ControllerError>)> = stream::iter(pools)
        .map(|pool| {
            let name = pool.name_any();
            let class = node_class_of(&pool, &classes);
            let key = pool_key(&pool);
            let tracker = trackers.read(&key, health::written_condition(&pool));
            let health = health::decide(&pool, class, &tracker);
            if health.reset {
                trackers.reset(&key);
            }
            let desired = desired_status(&pool, class, usage.get(&name).unwrap_or(&empty), &health, now);
            async move {
                let result = write(ctx, &pool, desired).await;
                (name, result)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results
        .into_iter()
        .filter_map(|(name, result)| match result {
            Ok(()) => None,
            Err(ControllerError::Kube(error)) if crate::error::is_conflict(&error) => None,
            Err(error) => Some(Failure {
                node_claim: name,
                error,
            }),
        })
        .collect()
}

/// The key of a NodePool's registration-health tracker: its UID, so a NodePool deleted and
/// created again under its name starts afresh (the name when the object has no UID).
pub(crate) fn pool_key(pool: &NodePool) -> String {
    pool.uid().unwrap_or_else(|| pool.name_any())
}

async fn write(ctx: &Context, pool: &NodePool, desired: NodePoolStatus) -> Result<(), ControllerError> {
    if pool.status.as_ref() == Some(&desired) {
        return Ok(());
    }
    let mut updated = pool.clone();
    updated.status = Some(desired);
    let api: Api<NodePool> = Api::all(ctx.client.clone());
    match api
        .replace_status(&pool.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if crate::error::is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The EC2NodeClass a pool references, if its reference names one and it exists.
fn node_class_of<'a>(pool: &NodePool, classes: &'a [Arc<EC2NodeClass>]) -> Option<&'a EC2NodeClass> {
    let reference = &pool.spec.template.spec.node_class_ref;
    if reference.group != labels::KARPENTER_AWS_GROUP || reference.kind != "EC2NodeClass" {
        return None;
    }
    classes
        .iter()
        .find(|c| c.name_any() == reference.name)
        .map(AsRef::as_ref)
}

/// The status the pool should have.
fn desired_status(
    pool: &NodePool,
    class: Option<&EC2NodeClass>,
    usage: &Usage,
    registration: &health::Decision,
    now: Timestamp,
) -> NodePoolStatus {
    let mut status = pool.status.clone().unwrap_or_default();
    status.resources = usage.resources();
    status.nodes = Some(usage.nodes);
    status.node_class_observed_generation = registration.node_class_generation;
    let mut conditions = ConditionSet::new(
        &mut status.conditions,
        &nodepool::DEPENDENTS,
        pool.metadata.generation,
        now,
    );
    match pool.validate() {
        Ok(()) => conditions.set_true(nodepool::VALIDATION_SUCCEEDED),
        Err(invalid) => conditions.set_false(
            nodepool::VALIDATION_SUCCEEDED,
            nodepool::REASON_VALIDATION_FAILED,
            &invalid.to_string(),
        ),
    };
    match node_class_readiness(class) {
        (Status::True, _, _) => conditions.set_true(nodepool::NODE_CLASS_READY),
        (status, reason, message) => conditions.set(nodepool::NODE_CLASS_READY, status, &reason, &message),
    };
    health::set(&mut conditions, &registration.health);
    status
}

/// `NodeClassReady` as (status, reason, message).
fn node_class_readiness(class: Option<&EC2NodeClass>) -> (Status, String, String) {
    let Some(class) = class else {
        return (
            Status::False,
            nodepool::REASON_NODE_CLASS_NOT_FOUND.to_owned(),
            "NodeClass not found on cluster".to_owned(),
        );
    };
    if class.metadata.deletion_timestamp.is_some() {
        return (
            Status::False,
            nodepool::REASON_NODE_CLASS_TERMINATING.to_owned(),
            "NodeClass is Terminating".to_owned(),
        );
    }
    let ready = class.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == nodewright_api::conditions::READY)
    });
    match ready.map(|c| (c.status.as_str(), c)) {
        // No controller writes EC2NodeClass status here: a present node class is ready.
        None | Some((nodewright_api::conditions::TRUE, _)) => (Status::True, String::new(), String::new()),
        Some((nodewright_api::conditions::FALSE, c)) => (Status::False, c.reason.clone(), c.message.clone()),
        Some(_) => (
            Status::Unknown,
            nodepool::REASON_NODE_CLASS_READINESS_UNKNOWN.to_owned(),
            "Node Class Readiness Unknown".to_owned(),
        ),
    }
}

/// What one pool's launched NodeClaims add up to: resource totals in thousandths, and a count.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Usage {
    nodes: i64,
    milli: BTreeMap<String, i128>,
}

impl Usage {
    fn add(&mut self, capacity: &BTreeMap<String, Quantity>) {
        self.nodes += 1;
        for (name, amount) in capacity {
            // Capacities come from the kubelet or the cloud; one that does not parse is left out
            // of the sum rather than failing every pool's status.
            if let Ok(milli) = quantity::parse_milli(&amount.0) {
                *self.milli.entry(name.clone()).or_default() += milli;
            }
        }
    }

    fn resources(&self) -> BTreeMap<String, Quantity> {
        let mut resources: BTreeMap<String, Quantity> = self
            .milli
            .iter()
            .map(|(name, milli)| (name.clone(), Quantity(format_quantity(name, *milli))))
            .collect();
        resources.insert("nodes".to_owned(), Quantity(self.nodes.to_string()));
        resources
    }
}

/// Usage per NodePool name: every launched claim (one with a providerID) labelled with the pool,
/// counted with its Node's capacity once the Node reports one, the claim's before.
fn usage_by_pool(claims: &[Arc<NodeClaim>], nodes: &[Arc<Node>]) -> HashMap<String, Usage> {
    let node_capacity: HashMap<&str, &BTreeMap<String, Quantity>> = nodes
        .iter()
        .filter_map(|node| {
            let provider_id = node.spec.as_ref()?.provider_id.as_deref()?;
            let capacity = node.status.as_ref()?.capacity.as_ref()?;
            (!capacity.is_empty()).then_some((provider_id, capacity))
        })
        .collect();
    let mut usage: HashMap<String, Usage> = HashMap::new();
    for claim in claims {
        let (Some(pool), Some(status)) = (claim.nodepool_name(), claim.status.as_ref()) else {
            continue;
        };
        let Some(provider_id) = status.provider_id.as_deref() else {
            continue;
        };
        let capacity = node_capacity
            .get(provider_id)
            .copied()
            .unwrap_or(&status.capacity);
        usage.entry(pool.to_owned()).or_default().add(capacity);
    }
    usage
}

/// A quantity as Kubernetes would print it: CPU in cores or millicores, byte amounts in the
/// largest binary unit that divides them, counts as integers.
fn format_quantity(name: &str, milli: i128) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let value = milli / 1000;
    let bytes = name == "memory" || name == "ephemeral-storage" || name.starts_with("hugepages-");
    if bytes && value != 0 {
        for (suffix, shift) in [
            ("Ei", 60),
            ("Pi", 50),
            ("Ti", 40),
            ("Gi", 30),
            ("Mi", 20),
            ("Ki", 10),
        ] {
            if value % (1_i128 << shift) == 0 {
                return format!("{}{suffix}", value >> shift);
            }
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claim(name: &str, pool: &str, provider_id: Option<&str>, cpu: &str) -> Arc<NodeClaim> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "karpenter.sh/v1",
                "kind": "NodeClaim",
                "metadata": {"name": name, "labels": {"karpenter.sh/nodepool": pool}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                    "requirements": [],
                },
                "status": {
                    "providerID": provider_id,
                    "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "29"},
                },
            }))
            .unwrap(),
        )
    }

    fn pool(class: &str) -> NodePool {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodePool",
            "metadata": {"name": "default", "generation": 3},
            "spec": {"template": {"spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": class},
                "requirements": [],
            }}},
        }))
        .unwrap()
    }

    fn class(ready: Option<&str>, deleting: bool) -> EC2NodeClass {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.k8s.aws/v1",
            "kind": "EC2NodeClass",
            "metadata": {
                "name": "default",
                "deletionTimestamp": deleting.then_some("2026-01-01T00:00:00Z"),
            },
            "spec": {
                "role": "r",
                "amiSelectorTerms": [{"alias": "al2023@latest"}],
                "subnetSelectorTerms": [{"tags": {"a": "b"}}],
                "securityGroupSelectorTerms": [{"tags": {"a": "b"}}],
            },
            "status": {"conditions": ready.map(|status| vec![json!({
                "type": "Ready", "status": status, "reason": "SubnetsNotFound", "message": "no subnets",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            })]).unwrap_or_default()},
        }))
        .unwrap()
    }

    #[test]
    fn usage_counts_launched_claims_with_node_capacity_once_registered() {
        let node: Arc<Node> = Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "n1"},
                "spec": {"providerID": "aws:///a/i-1"},
                "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "58"}},
            }))
            .unwrap(),
        );
        let claims = [
            claim("a", "default", Some("aws:///a/i-1"), "2"),
            claim("b", "default", Some("aws:///a/i-2"), "500m"),
            claim("c", "default", None, "2"),
            claim("d", "other", Some("aws:///a/i-3"), "2"),
        ];
        let usage = usage_by_pool(&claims, &[node]);
        let resources = usage["default"].resources();
        assert_eq!(usage["default"].nodes, 2);
        assert_eq!(resources["cpu"].0, "4500m");
        assert_eq!(resources["memory"].0, "24Gi");
        assert_eq!(resources["pods"].0, "87");
        assert_eq!(resources["nodes"].0, "2");
        assert_eq!(usage["other"].nodes, 1);
    }

    #[test]
    fn quantities_print_like_kubernetes() {
        assert_eq!(format_quantity("cpu", 4000), "4");
        assert_eq!(format_quantity("cpu", 1500), "1500m");
        assert_eq!(format_quantity("memory", 8 * (1 << 30) * 1000), "8Gi");
        assert_eq!(format_quantity("memory", 1536 * 1000), "1536");
        assert_eq!(format_quantity("memory", 3 * 1024 * 1000), "3Ki");
        assert_eq!(
            format_quantity("pods", 1024 * 1000),
            "1024",
            "counts get no binary suffix"
        );
        assert_eq!(format_quantity("memory", 0), "0");
    }

    #[test]
    fn node_class_readiness_follows_the_node_class() {
        assert_eq!(
            node_class_readiness(None).1,
            nodepool::REASON_NODE_CLASS_NOT_FOUND
        );
        assert_eq!(node_class_readiness(Some(&class(None, false))).0, Status::True);
        assert_eq!(
            node_class_readiness(Some(&class(Some("True"), false))).0,
            Status::True
        );
        let not_ready = node_class_readiness(Some(&class(Some("False"), false)));
        assert_eq!(
            not_ready,
            (Status::False, "SubnetsNotFound".into(), "no subnets".into())
        );
        assert_eq!(
            node_class_readiness(Some(&class(Some("Unknown"), false))).1,
            nodepool::REASON_NODE_CLASS_READINESS_UNKNOWN
        );
        assert_eq!(
            node_class_readiness(Some(&class(None, true))).1,
            nodepool::REASON_NODE_CLASS_TERMINATING
        );
    }

    fn unknown_health() -> health::Decision {
        health::Decision {
            reset: false,
            health: health::Health::Unknown,
            node_class_generation: None,
        }
    }

    #[test]
    fn registration_health_is_written_but_not_part_of_ready() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let classes = [Arc::new(class(None, false))];
        let good = pool("default");
        let unhealthy = health::Decision {
            reset: false,
            health: health::Health::Unhealthy {
                reason: nodepool::REASON_REGISTRATION_FAILED.to_owned(),
                message: "Failed to register node".to_owned(),
            },
            node_class_generation: Some(7),
        };
        let status = desired_status(
            &good,
            node_class_of(&good, &classes),
            &Usage::default(),
            &unhealthy,
            now,
        );
        let get = |t: &str| status.conditions.iter().find(|c| c.type_ == t).unwrap();
        let health = get(nodepool::NODE_REGISTRATION_HEALTHY);
        assert_eq!(
            (health.status.as_str(), health.reason.as_str()),
            ("False", nodepool::REASON_REGISTRATION_FAILED)
        );
        assert_eq!(health.observed_generation, Some(3));
        assert_eq!(get("Ready").status, "True");
        assert_eq!(status.node_class_observed_generation, Some(7));
    }

    #[test]
    fn status_conditions_derive_ready() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let classes = [Arc::new(class(None, false))];
        let good = pool("default");
        let status = desired_status(
            &good,
            node_class_of(&good, &classes),
            &Usage::default(),
            &unknown_health(),
            now,
        );
        let get = |status: &NodePoolStatus, t: &str| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| (c.status.clone(), c.reason.clone()))
                .unwrap()
        };
        assert_eq!(get(&status, "Ready").0, "True");
        assert_eq!(status.nodes, Some(0));
        assert_eq!(status.resources["nodes"].0, "0");
        assert_eq!(status.conditions[0].observed_generation, Some(3));

        let missing = pool("missing");
        let status = desired_status(
            &missing,
            node_class_of(&missing, &classes),
            &Usage::default(),
            &unknown_health(),
            now,
        );
        assert_eq!(
            get(&status, nodepool::NODE_CLASS_READY),
            ("False".into(), nodepool::REASON_NODE_CLASS_NOT_FOUND.into())
        );
        assert_eq!(get(&status, "Ready").0, "False");

        let mut invalid = pool("default");
        invalid.spec.template.spec.node_class_ref.kind = String::new();
        let status = desired_status(&invalid, None, &Usage::default(), &unknown_health(), now);
        assert_eq!(
            get(&status, nodepool::VALIDATION_SUCCEEDED),
            ("False".into(), nodepool::REASON_VALIDATION_FAILED.into())
        );
    }
}
