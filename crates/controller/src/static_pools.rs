//! Static NodePools (`spec.replicas`; Karpenter's `static.provisioning` and
//! `static.deprovisioning`): a NodePool with a replica count keeps exactly that many NodeClaims,
//! whatever the pods need. `kubectl scale nodepool <name> --replicas=N` changes the count through
//! the scale subresource (`.spec.replicas`); `status.nodes`, its status path, is kept by
//! [`crate::nodepool_status`] like every NodePool's.
//!
//! Each reconcile of one static NodePool:
//! - **Read**: its NodeClaims that are not being deleted, each with whether it launched and
//!   initialized and what its node runs (pods that would have to move, their CPU requests).
//! - **Decide** ([`decide`], pure): fewer NodeClaims than replicas → create the difference, at
//!   most up to `limits.nodes` (the only limit a static NodePool may carry); more → delete the
//!   surplus, the cheapest to lose first: not launched, then not initialized, then the fewest
//!   pods to move, the least CPU requested, then by name. A `limits.nodes` below the NodeClaims
//!   that exist deletes nothing (limits stop launches, as everywhere in Karpenter).
//! - **Write**: new NodeClaims built like the provisioner's ([`crate::provisioner::claims`]) from
//!   one plan of the solver for an empty node of the pool (the cheapest instance types that hold
//!   the DaemonSets, cheapest first); deletions (termination drains the nodes); an event on the
//!   NodePool for each change and on each deleted NodeClaim; then a short wait until the cache
//!   shows the writes, so the next reconcile does not count them twice.
//!
//! Elsewhere, static NodePools are left out of provisioning for pending pods
//! ([`crate::provisioner::pools`]; their nodes remain existing capacity pods may use) and out of
//! every disruption method ([`crate::disruption::candidates::Blocker::StaticNodePool`], which
//! `nodewright explain node` shows). Simplification: Karpenter's `StaticDrift` (one-for-one
//! replacement of drifted nodes within the Drifted budget) is not done — drifted nodes of a
//! static NodePool stay until expiration or a manual deletion, after which this controller
//! replaces them; the count is never changed by disruption.

use std::{collections::HashMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Toleration};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ObjectMeta, PostParams},
};
use nodewright_api::{NodeClaim, NodePool, labels, quantity};
use nodewright_catalog::InstanceType;
use nodewright_solver::{NodeClaimPlan, Problem, pod::pod_requests, volumes::Volumes};
use tokio::time::Instant;

use crate::{
    context::Context,
    disruption::candidates::{initialized_at, must_move},
    error::{Backoff, ControllerError, is_not_found},
    events::reasons::DISRUPTION_TERMINATING,
    provisioner::{claims, pools, snapshot},
};

/// How often every static NodePool is reconciled when nothing wakes the loop (Karpenter requeues
/// static provisioning every minute, deprovisioning every 30 s).
pub const POLL: Duration = Duration::from_secs(30);
/// How long (wall time) a reconcile waits for the cache to show its own writes.
const CACHE_WAIT: Duration = Duration::from_secs(5);

/// Event reasons of this controller (Karpenter has none for static NodePools).
pub mod reasons {
    /// NodeClaims were created to reach the replica count.
    pub const SCALED_UP: &str = "StaticNodePoolScaledUp";
    /// Surplus NodeClaims were deleted down to the replica count.
    pub const SCALED_DOWN: &str = "StaticNodePoolScaledDown";
    /// The replica count cannot be reached now (limits, node class, instance types).
    pub const SCALE_BLOCKED: &str = "StaticNodePoolScaleBlocked";
}

/// Keeps every static NodePool at its replica count, forever.
pub async fn run(ctx: Context) {
    let mut pools = ctx.state.node_pools.changes();
    let mut claims = ctx.state.node_claims.changes();
    let mut nodes = ctx.state.nodes.changes();
    let mut backoff = Backoff::default();
    let mut not_before: HashMap<String, Instant> = HashMap::new();
    loop {
        pools.mark_seen();
        claims.mark_seen();
        nodes.mark_seen();
        let started = Instant::now();
        for pool in ctx.state.node_pools.all() {
            let name = pool.name_any();
            if !pool.is_static() || not_before.get(&name).is_some_and(|at| *at > started) {
                continue;
            }
            match reconcile(&ctx, &pool).await {
                Ok(()) => {
                    backoff.succeeded(&name);
                    not_before.remove(&name);
                }
                Err(error) => {
                    let delay = ctx.settings.wall(backoff.failed(&name));
                    tracing::warn!(nodepool = name, %error, ?delay, "static NodePool; retrying");
                    not_before.insert(name, Instant::now() + delay);
                }
            }
        }
        let poll = Instant::now() + ctx.settings.wall(POLL);
        let wake = not_before.values().copied().min().map_or(poll, |at| at.min(poll));
        tokio::select! {
            () = pools.changed() => {}
            () = claims.changed() => {}
            () = nodes.changed() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// One NodeClaim of a static NodePool, as far as choosing which to delete goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// The cloud launched an instance for it (it has a providerID).
    pub launched: bool,
    pub initialized: bool,
    /// Pods on its node that would need a place elsewhere.
    pub pods: usize,
    /// Their CPU requests.
    pub requested_cpu_millis: i64,
}

/// What to change in one static NodePool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// NodeClaims to create.
    pub create: usize,
    /// NodeClaims to delete, by name.
    pub delete: Vec<String>,
    /// `limits.nodes` keeps the NodePool below its replicas: the limit.
    pub limited_to: Option<i64>,
}

/// How many NodeClaims to create and which to delete so that `members` (the NodePool's
/// NodeClaims not being deleted) become `replicas`, launching no more than `node_limit` in all.
/// Pure.
pub fn decide(replicas: i64, node_limit: Option<i64>, members: &[Member]) -> Decision {
    let live = i64::try_from(members.len()).unwrap_or(i64::MAX);
    if live > replicas {
        let mut by_cost: Vec<&Member> = members.iter().collect();
        // Cheapest to lose first: nothing launched, nothing ready, nothing to move.
        by_cost.sort_by(|a, b| {
            (a.launched, a.initialized, a.pods, a.requested_cpu_millis, &a.name).cmp(&(
                b.launched,
                b.initialized,
                b.pods,
                b.requested_cpu_millis,
                &b.name,
            ))
        });
        let surplus = usize::try_from(live - replicas).unwrap_or(usize::MAX);
        return Decision {
            delete: by_cost
                .into_iter()
                .take(surplus)
                .map(|m| m.name.clone())
                .collect(),
            ..Decision::default()
        };
    }
    let reachable = node_limit.map_or(replicas, |limit| limit.clamp(0, replicas));
    Decision {
        create: usize::try_from(reachable.saturating_sub(live)).unwrap_or(0),
        delete: Vec::new(),
        limited_to: node_limit.filter(|_| reachable < replicas),
    }
}

/// Reads, decides and writes one static NodePool.
async fn reconcile(ctx: &Context, pool: &Arc<NodePool>) -> Result<(), ControllerError> {
    if pool.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let name = pool.name_any();
    let invalid = |field: &str, message: String| ControllerError::InvalidSpec {
        kind: "NodePool",
        name: name.clone(),
        field: field.to_owned(),
        message,
    };
    let replicas = pool.spec.replicas.unwrap_or_default();
    if replicas < 0 {
        return Err(invalid("spec.replicas", format!("{replicas} is negative")));
    }
    let node_limit = match pool.spec.limits.get("nodes") {
        None => None,
        Some(limit) => Some(
            quantity::parse_value(&limit.0)
                .ok()
                .and_then(|n| i64::try_from(n).ok())
                .ok_or_else(|| invalid("spec.limits.nodes", format!("{:?} is not a node count", limit.0)))?,
        ),
    };
    let members = members_of(ctx, &name);
    let decision = decide(replicas, node_limit, &members);
    if let Some(limit) = decision.limited_to
        && decision.create == 0
        && i64::try_from(members.len()).is_ok_and(|live| live < replicas)
    {
        let note = format!("{replicas} replicas, but limits.nodes allows {limit} nodes");
        ctx.events
            .warning(&**pool, reasons::SCALE_BLOCKED, "Provisioning", note)
            .await;
    }
    let created = if decision.create > 0 {
        create(ctx, pool, decision.create, replicas).await?
    } else {
        Vec::new()
    };
    let deleted = delete(ctx, pool, &decision.delete, replicas).await?;
    await_cache(ctx, &created, &deleted).await;
    Ok(())
}

/// The NodePool's NodeClaims that are not being deleted.
fn members_of(ctx: &Context, pool: &str) -> Vec<Member> {
    ctx.state
        .node_claims
        .all()
        .into_iter()
        .filter(|c| c.nodepool_name() == Some(pool) && c.metadata.deletion_timestamp.is_none())
        .map(|claim| {
            let provider_id = claim.status.as_ref().and_then(|s| s.provider_id.clone());
            let node = provider_id
                .as_deref()
                .and_then(|id| ctx.state.node_by_provider_id(id));
            let moving: Vec<Arc<Pod>> = node
                .map(|n| ctx.state.pods_on(&n.name_any()))
                .unwrap_or_default()
                .into_iter()
                .filter(|p| must_move(p))
                .collect();
            let requested_cpu_millis = moving
                .iter()
                .filter_map(|p| p.spec.as_ref())
                .map(|spec| pod_requests(spec, &mut Vec::new()).cpu_millis)
                .sum();
            Member {
                name: claim.name_any(),
                launched: provider_id.is_some_and(|id| !id.is_empty()),
                initialized: initialized_at(&claim).is_some(),
                pods: moving.len(),
                requested_cpu_millis,
            }
        })
        .collect()
}

/// Creates `count` NodeClaims for `pool`; returns their names. When the pool cannot launch now,
/// says so on the NodePool and creates nothing (a NodePool or node class change wakes the loop).
async fn create(
    ctx: &Context,
    pool: &Arc<NodePool>,
    count: usize,
    replicas: i64,
) -> Result<Vec<String>, ControllerError> {
    let blocked = |note: String| async move {
        tracing::info!(
            nodepool = pool.name_any(),
            note,
            "static NodePool cannot scale up"
        );
        ctx.events
            .warning(&**pool, reasons::SCALE_BLOCKED, "Provisioning", note)
            .await;
    };
    if let Some(reason) = pools::why_cannot_launch(pool, &ctx.state.node_classes.all()) {
        blocked(format!("NodePool {reason}")).await;
        return Ok(Vec::new());
    }
    let mut types = match ctx.cloud.get_instance_types(pool).await {
        Ok(types) => types,
        Err(error) if error.is_node_class_not_ready() => {
            blocked(format!("its instance types cannot be listed: {error}")).await;
            return Ok(Vec::new());
        }
        Err(error) => return Err(error.into()),
    };
    ctx.unavailable.apply(&mut types, ctx.clock.now());
    let world = snapshot::World::read(&ctx.state, &[]);
    let plan = match empty_node_plan(&world, pool, types) {
        Ok(plan) => plan,
        Err(why) => {
            blocked(format!("no node of the NodePool can be launched: {why}")).await;
            return Ok(Vec::new());
        }
    };
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let mut created = Vec::with_capacity(count);
    for _ in 0..count {
        let claim = claims::node_claim(&plan, pool)?;
        let claim = api.create(&PostParams::default(), &claim).await?;
        created.push(claim.name_any());
    }
    let note = format!(
        "created {count} NodeClaim(s) towards {replicas} replicas: {} (cheapest {} in {})",
        created.join(", "),
        plan.instance_type,
        plan.zone
    );
    ctx.events
        .normal(&**pool, reasons::SCALED_UP, "Provisioning", note)
        .await;
    Ok(created)
}

/// The solver's plan for one node of `pool` with no pod of its own: the NodePool's requirements
/// narrowed to the instance types that hold its DaemonSets, cheapest first — what the
/// provisioner would ask for a pod that fits anywhere. Errors say why nothing fits.
fn empty_node_plan(
    world: &snapshot::World,
    pool: &Arc<NodePool>,
    types: Vec<InstanceType>,
) -> Result<NodeClaimPlan, String> {
    let name = pool.name_any();
    let assembled = snapshot::assemble(world, vec![(Arc::clone(pool), types)], Vec::new());
    let problem = Problem {
        pods: vec![placeholder_pod(&name)],
        existing_nodes: Vec::new(),
        volumes: Volumes::default(),
        ..assembled.problem
    };
    let plan = nodewright_solver::solve(&problem);
    let Some(mut node) = plan.new_nodes.into_iter().next() else {
        return Err(plan.unschedulable.first().map_or_else(
            || "the solver planned no node".to_owned(),
            nodewright_solver::Unschedulable::message,
        ));
    };
    // The placeholder is not a pod the node will run: its slot is not requested.
    node.requests.pods = (node.requests.pods - 1).max(0);
    node.pods.clear();
    Ok(node)
}

/// A pod that requests nothing, tolerates every taint and may only run on `pool`'s nodes.
fn placeholder_pod(pool: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("static-nodepool-{pool}")),
            namespace: Some("default".to_owned()),
            uid: Some(format!("static-nodepool-{pool}")),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "placeholder".to_owned(),
                ..Container::default()
            }],
            node_selector: Some([(labels::NODE_POOL.to_owned(), pool.to_owned())].into()),
            tolerations: Some(vec![Toleration {
                operator: Some("Exists".to_owned()),
                ..Toleration::default()
            }]),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// Deletes the NodeClaims `names` of `pool` (termination drains their nodes); returns them.
async fn delete(
    ctx: &Context,
    pool: &Arc<NodePool>,
    names: &[String],
    replicas: i64,
) -> Result<Vec<String>, ControllerError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    for name in names {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(either) => {
                if let Some(claim) = either.left() {
                    let note = format!(
                        "Disrupting NodeClaim: Overprovisioned (static NodePool {} scaled to {replicas})",
                        pool.name_any()
                    );
                    ctx.events
                        .normal(&claim, DISRUPTION_TERMINATING, "Disrupting", note)
                        .await;
                }
            }
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let note = format!(
        "deleted {} NodeClaim(s) down to {replicas} replicas: {}",
        names.len(),
        names.join(", ")
    );
    ctx.events
        .normal(&**pool, reasons::SCALED_DOWN, "Disrupting", note)
        .await;
    Ok(names.to_vec())
}

/// Waits (at most [`CACHE_WAIT`]) until the NodeClaim cache shows `created` and shows `deleted`
/// as being deleted or gone. A NodeClaim deleted again at once (no capacity) may never show:
/// the wait then ends at its limit.
async fn await_cache(ctx: &Context, created: &[String], deleted: &[String]) {
    if created.is_empty() && deleted.is_empty() {
        return;
    }
    let deadline = Instant::now() + CACHE_WAIT;
    let mut changes = ctx.state.node_claims.changes();
    loop {
        let claims: HashMap<String, Arc<NodeClaim>> = ctx
            .state
            .node_claims
            .all()
            .into_iter()
            .map(|c| (c.name_any(), c))
            .collect();
        let shown = created.iter().all(|name| claims.contains_key(name))
            && deleted.iter().all(|name| {
                claims
                    .get(name)
                    .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
            });
        if shown {
            return;
        }
        tokio::select! {
            () = changes.changed() => {}
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, launched: bool, initialized: bool, pods: usize, cpu: i64) -> Member {
        Member {
            name: name.to_owned(),
            launched,
            initialized,
            pods,
            requested_cpu_millis: cpu,
        }
    }

    fn ready(name: &str, pods: usize, cpu: i64) -> Member {
        member(name, true, true, pods, cpu)
    }

    #[test]
    fn too_few_node_claims_are_made_up() {
        let members = [ready("a", 0, 0)];
        assert_eq!(
            decide(3, None, &members),
            Decision {
                create: 2,
                ..Decision::default()
            }
        );
        assert_eq!(decide(0, None, &[]), Decision::default());
        assert_eq!(decide(1, None, &members), Decision::default());
    }

    #[test]
    fn limits_nodes_caps_the_creation_but_deletes_nothing() {
        let members = [ready("a", 0, 0)];
        assert_eq!(
            decide(5, Some(3), &members),
            Decision {
                create: 2,
                delete: Vec::new(),
                limited_to: Some(3)
            }
        );
        let three = [ready("a", 0, 0), ready("b", 0, 0), ready("c", 0, 0)];
        assert_eq!(
            decide(3, Some(1), &three),
            Decision {
                limited_to: Some(1),
                ..Decision::default()
            },
            "over the limit but at replicas: nothing is deleted"
        );
        assert_eq!(
            decide(2, Some(5), &[]),
            Decision {
                create: 2,
                ..Decision::default()
            },
            "a limit above replicas is no limit"
        );
    }

    #[test]
    fn the_surplus_goes_unlaunched_then_unready_then_emptiest_first() {
        let members = [
            ready("busy", 5, 4000),
            ready("light", 1, 100),
            ready("heavy", 1, 3000),
            ready("empty", 0, 0),
            member("starting", true, false, 0, 0),
            member("unlaunched", false, false, 0, 0),
        ];
        let order = |replicas| decide(replicas, None, &members).delete;
        assert_eq!(order(5), ["unlaunched"]);
        assert_eq!(order(4), ["unlaunched", "starting"]);
        assert_eq!(order(3), ["unlaunched", "starting", "empty"]);
        assert_eq!(order(1), ["unlaunched", "starting", "empty", "light", "heavy"]);
        assert_eq!(order(0).len(), 6);
        assert_eq!(decide(3, None, &members).create, 0);
    }

    #[test]
    fn equal_candidates_are_chosen_by_name() {
        let members = [ready("c", 0, 0), ready("a", 0, 0), ready("b", 0, 0)];
        assert_eq!(decide(1, None, &members).delete, ["a", "b"]);
    }

    #[test]
    fn the_empty_node_plan_lists_the_pools_types_cheapest_first() {
        use crate::test_fixtures::{instance_type, pool};
        let types = vec![instance_type("big", 8000, 0.4), instance_type("small", 2000, 0.1)];
        let plan = empty_node_plan(&snapshot::World::default(), &pool(), types).unwrap();
        assert_eq!(plan.nodepool, "default");
        assert_eq!(plan.instance_type, "small");
        let listed: Vec<&str> = plan.instance_types.iter().map(|t| &**t).collect();
        assert_eq!(listed, ["small", "big"]);
        assert_eq!(plan.requests.pods, 0, "the placeholder's slot is not requested");
        assert!(plan.pods.is_empty());
    }
}
