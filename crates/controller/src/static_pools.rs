//! Static NodePools (`spec.replicas`; Karpenter's `static.provisioning` and
//! `static.deprovisioning`): a NodePool with a replica count keeps exactly that many NodeClaims,
//! whatever the pods need. `kubectl scale nodepool <name> --replicas=N` changes the count through
//! the scale subresource (`.spec.replicas`); `status.nodes`, its status path, is kept by
//! [`crate::nodepool_status`] like every NodePool's.
//!
//! Each reconcile of one static NodePool:
//! - **Read**: its NodeClaims that are not being deleted, each with whether it launched and
//!   initialized and what its node runs (pods that would have to move, their CPU requests).
//! - **Decide** ([`decide`], pure): fewer current (not `Drifted`) NodeClaims than replicas →
//!   create the difference, at most up to `limits.nodes` (the only limit a static NodePool may
//!   carry); more → delete the surplus, the cheapest to lose first: not launched, then not
//!   initialized, then the fewest pods to move, the least CPU requested, then by name. A
//!   `limits.nodes` below the NodeClaims that exist deletes nothing (limits stop launches, as
//!   everywhere in Karpenter).
//! - **Static drift** (Karpenter's `StaticDrift`), in the same decision: a `Drifted` NodeClaim
//!   is replaced one for one — its replacement is created first (surging above the replicas by
//!   at most the NodePool's `Drifted` disruption budget, never past `limits.nodes`), and a drifted
//!   NodeClaim is deleted only once enough current NodeClaims are initialized to keep the
//!   replica count of initialized nodes. So drift never lowers the count.
//! - **Write**: new NodeClaims built like the provisioner's ([`crate::provisioner::claims`]) from
//!   one plan of the solver for an empty node of the pool (the cheapest instance types that hold
//!   the DaemonSets, cheapest first, at the prices NodeOverlays set); deletions (termination drains the nodes); an event on the
//!   NodePool for each change and on each deleted NodeClaim; then a short wait until the cache
//!   shows the writes, so the next reconcile does not count them twice.
//!
//! Elsewhere, static NodePools are left out of provisioning for pending pods
//! ([`crate::provisioner::pools`]; their nodes remain existing capacity pods may use) and out of
//! every disruption method ([`crate::disruption::candidates::Blocker::StaticNodePool`], which
//! `nodewright explain node` shows): their drift is handled here. Expiration deletes a static
//! NodePool's NodeClaims like any other's (forceful, as in Karpenter); this controller then
//! replaces them.

use std::{collections::HashMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Toleration};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ObjectMeta, PostParams},
};
use nodewright_api::{NodeClaim, NodePool, conditions, labels, nodepool::DisruptionReason, quantity};
use nodewright_catalog::InstanceType;
use nodewright_solver::{NodeClaimPlan, Problem, pod::pod_requests, volumes::Volumes};
use tokio::time::Instant;

use crate::{
    context::Context,
    disruption::{
        budgets,
        candidates::{initialized_at, must_move},
    },
    error::{Backoff, ControllerError, is_not_found},
    events::reasons::DISRUPTION_TERMINATING,
    metrics, overlay,
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
    /// Its `Drifted` condition is True.
    pub drifted: bool,
}

/// What the NodePool asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// `spec.replicas`.
    pub replicas: i64,
    /// `spec.limits.nodes`.
    pub node_limit: Option<i64>,
    /// How many drift replacements may be under way at once (the `Drifted` disruption budget).
    pub drift_budget: u64,
}

/// What to change in one static NodePool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// NodeClaims to create.
    pub create: usize,
    /// Surplus NodeClaims to delete (above the replicas), by name.
    pub delete: Vec<String>,
    /// Drifted NodeClaims to delete, their replacements being initialized, by name.
    pub replace_drifted: Vec<String>,
    /// `limits.nodes` keeps the NodePool below its replicas: the limit.
    pub limited_to: Option<i64>,
}

/// How many NodeClaims to create and which to delete so that `members` (the NodePool's
/// NodeClaims not being deleted) become `target.replicas` current ones, replacing drifted ones
/// one for one. Pure.
pub fn decide(target: Target, members: &[Member]) -> Decision {
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let Target {
        replicas,
        node_limit,
        drift_budget,
    } = target;
    let (mut drifted, mut current): (Vec<&Member>, Vec<&Member>) = members.iter().partition(|m| m.drifted);
    // Cheapest to lose first: nothing launched, nothing ready, nothing to move.
    let by_cost = |a: &&Member, b: &&Member| {
        (a.launched, a.initialized, a.pods, a.requested_cpu_millis, &a.name).cmp(&(
            b.launched,
            b.initialized,
            b.pods,
            b.requested_cpu_millis,
            &b.name,
        ))
    };
    drifted.sort_by(by_cost);
    current.sort_by(by_cost);
    let live = count(members.len());

    let reachable = node_limit.map_or(replicas, |limit| limit.clamp(0, replicas));
    let missing = reachable.saturating_sub(count(current.len()));
    // Past the replicas only to replace drifted NodeClaims, within the budget.
    let surge_room = replicas
        .saturating_add(i64::try_from(drift_budget).unwrap_or(i64::MAX))
        .saturating_sub(live);
    let limit_room = node_limit.map_or(i64::MAX, |limit| limit.saturating_sub(live));
    let create = missing.min(surge_room).min(limit_room).max(0);

    let surplus = usize::try_from(count(current.len()).saturating_sub(replicas)).unwrap_or(0);
    let delete: Vec<String> = current.iter().take(surplus).map(|m| m.name.clone()).collect();
    let initialized_kept = count(current.iter().skip(surplus).filter(|m| m.initialized).count());
    // A drifted NodeClaim goes once the initialized current ones and the drifted ones left
    // still make the replicas.
    let replaceable = initialized_kept
        .saturating_add(count(drifted.len()))
        .saturating_sub(replicas)
        .max(0);
    let replace_drifted = drifted
        .iter()
        .take(usize::try_from(replaceable).unwrap_or(0))
        .map(|m| m.name.clone())
        .collect();
    Decision {
        create: usize::try_from(create).unwrap_or(0),
        delete,
        replace_drifted,
        limited_to: node_limit.filter(|_| reachable < replicas),
    }
}

/// Of `create` new NodeClaims, how many replace drifted ones: those beyond what the NodePool's
/// `live` NodeClaims (drifted ones included) lack to make `replicas`. Karpenter counts those
/// under the disruption reason `drifted`, the others as `provisioned`. Pure.
pub fn drift_replacements(create: usize, replicas: i64, live: usize) -> usize {
    let lacking = replicas
        .saturating_sub(i64::try_from(live).unwrap_or(i64::MAX))
        .max(0);
    create.saturating_sub(usize::try_from(lacking).unwrap_or(usize::MAX))
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
    let members = members_of(ctx, &name, replicas);
    let nodes = budgets::PoolNodes {
        total: u64::try_from(members.iter().filter(|m| m.initialized).count()).unwrap_or(u64::MAX),
        // Replacements under way are counted by the decision itself (claims above the replicas).
        disrupting: 0,
    };
    let target = Target {
        replicas,
        node_limit,
        drift_budget: budgets::allowed(pool, DisruptionReason::Drifted, nodes, ctx.clock.now()),
    };
    let decision = decide(target, &members);
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
        let replacing = drift_replacements(decision.create, replicas, members.len());
        create(ctx, pool, decision.create, replacing, replicas).await?
    } else {
        Vec::new()
    };
    let mut deleted = delete(
        ctx,
        pool,
        &members,
        &decision.delete,
        Why::Overprovisioned(replicas),
    )
    .await?;
    deleted.extend(delete(ctx, pool, &members, &decision.replace_drifted, Why::Drifted).await?);
    await_cache(ctx, &created, &deleted).await;
    Ok(())
}

/// The NodePool's NodeClaims that are not being deleted. What their nodes run only matters
/// when some may be deleted (more than `replicas`, or drifted ones): only then are the nodes and
/// pods read, once for all of them.
fn members_of(ctx: &Context, pool: &str, replicas: i64) -> Vec<Member> {
    let claims: Vec<Arc<NodeClaim>> = ctx
        .state
        .node_claims
        .all()
        .into_iter()
        .filter(|c| c.nodepool_name() == Some(pool) && c.metadata.deletion_timestamp.is_none())
        .collect();
    let mut members: Vec<Member> = claims
        .iter()
        .map(|claim| Member {
            name: claim.name_any(),
            launched: claim.provider_id().is_some(),
            initialized: initialized_at(claim).is_some(),
            drifted: is_drifted(claim),
            pods: 0,
            requested_cpu_millis: 0,
        })
        .collect();
    let may_delete =
        i64::try_from(members.len()).is_ok_and(|n| n > replicas) || members.iter().any(|m| m.drifted);
    if !may_delete {
        return members;
    }
    let node_names: HashMap<String, String> = ctx
        .state
        .nodes
        .all()
        .iter()
        .filter_map(|n| Some((n.spec.as_ref()?.provider_id.clone()?, n.name_any())))
        .collect();
    let mut moving_by_node: HashMap<String, (usize, i64)> = HashMap::new();
    for pod in ctx.state.pods.all() {
        if let Some(spec) = pod.spec.as_ref()
            && let Some(node) = spec.node_name.as_ref()
            && must_move(&pod)
        {
            let entry = moving_by_node.entry(node.clone()).or_default();
            entry.0 += 1;
            entry.1 += pod_requests(spec, &mut Vec::new()).cpu_millis;
        }
    }
    for (member, claim) in members.iter_mut().zip(&claims) {
        if let Some((pods, cpu)) = claim
            .provider_id()
            .and_then(|id| node_names.get(id))
            .and_then(|node| moving_by_node.get(node))
        {
            member.pods = *pods;
            member.requested_cpu_millis = *cpu;
        }
    }
    members
}

fn is_drifted(claim: &NodeClaim) -> bool {
    claim.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == conditions::nodeclaim::DRIFTED && c.status == conditions::TRUE)
    })
}

/// Creates `count` NodeClaims for `pool`, the last `replacing` of them replacing drifted ones
/// (counted as created for `drifted`, the others as `provisioned`); returns their names. When
/// the pool cannot launch now, says so on the NodePool and creates nothing (a NodePool or node
/// class change wakes the loop).
async fn create(
    ctx: &Context,
    pool: &Arc<NodePool>,
    count: usize,
    replacing: usize,
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
    // The prices the provisioner decides on: NodeOverlays applied.
    let mut with_types = vec![(Arc::clone(pool), types)];
    overlay::apply(&ctx.state.node_overlays.all(), &mut with_types);
    let types = with_types.pop().map(|(_, types)| types).unwrap_or_default();
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
    for index in 0..count {
        let claim = claims::node_claim(&plan, pool)?;
        let claim = api.create(&PostParams::default(), &claim).await?;
        let reason = if index + replacing >= count {
            metrics::reason_label(DisruptionReason::Drifted)
        } else {
            "provisioned"
        };
        metrics::nodeclaim_created(&claim, reason);
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

/// Why NodeClaims of a static NodePool are deleted.
#[derive(Debug, Clone, Copy)]
enum Why {
    /// Above the replicas (the count).
    Overprovisioned(i64),
    /// Drifted, their replacements initialized.
    Drifted,
}

/// Deletes the NodeClaims `names` of `pool` (termination drains their nodes), counting each in
/// `karpenter_nodeclaims_disrupted_total` with the pods `members` says it runs; returns them.
async fn delete(
    ctx: &Context,
    pool: &Arc<NodePool>,
    members: &[Member],
    names: &[String],
    why: Why,
) -> Result<Vec<String>, ControllerError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    for name in names {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(either) => {
                if let Some(claim) = either.left() {
                    let pods = members.iter().find(|m| m.name == *name).map_or(0, |m| m.pods);
                    let reason = match why {
                        Why::Overprovisioned(_) => metrics::StaticDisruption::Overprovisioned,
                        Why::Drifted => metrics::StaticDisruption::Drifted,
                    };
                    metrics::static_nodeclaim_disrupted(&claim, reason, pods);
                    let note = match why {
                        Why::Overprovisioned(replicas) => format!(
                            "Disrupting NodeClaim: Overprovisioned (static NodePool {} scaled to {replicas})",
                            pool.name_any()
                        ),
                        Why::Drifted => format!(
                            "Disrupting NodeClaim: Drifted (static NodePool {}; its replacement is initialized)",
                            pool.name_any()
                        ),
                    };
                    ctx.events
                        .normal(&claim, DISRUPTION_TERMINATING, "Disrupting", note)
                        .await;
                }
            }
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let note = match why {
        Why::Overprovisioned(replicas) => format!(
            "deleted {} NodeClaim(s) down to {replicas} replicas: {}",
            names.len(),
            names.join(", ")
        ),
        Why::Drifted => format!(
            "deleted {} drifted NodeClaim(s) replaced one for one: {}",
            names.len(),
            names.join(", ")
        ),
    };
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
            drifted: false,
        }
    }

    fn ready(name: &str, pods: usize, cpu: i64) -> Member {
        member(name, true, true, pods, cpu)
    }

    fn drifted(name: &str) -> Member {
        Member {
            drifted: true,
            ..ready(name, 1, 100)
        }
    }

    fn starting(name: &str) -> Member {
        member(name, true, false, 0, 0)
    }

    fn to(replicas: i64) -> Target {
        Target {
            replicas,
            node_limit: None,
            drift_budget: 1,
        }
    }

    fn creating(create: usize) -> Decision {
        Decision {
            create,
            ..Decision::default()
        }
    }

    #[test]
    fn too_few_node_claims_are_made_up() {
        let members = [ready("a", 0, 0)];
        assert_eq!(decide(to(3), &members), creating(2));
        assert_eq!(decide(to(0), &[]), Decision::default());
        assert_eq!(decide(to(1), &members), Decision::default());
    }

    #[test]
    fn limits_nodes_caps_the_creation_but_deletes_nothing() {
        let limited = |replicas, limit| Target {
            node_limit: Some(limit),
            ..to(replicas)
        };
        assert_eq!(
            decide(limited(5, 3), &[ready("a", 0, 0)]),
            Decision {
                limited_to: Some(3),
                ..creating(2)
            }
        );
        let three = [ready("a", 0, 0), ready("b", 0, 0), ready("c", 0, 0)];
        assert_eq!(
            decide(limited(3, 1), &three),
            Decision {
                limited_to: Some(1),
                ..Decision::default()
            },
            "over the limit but at replicas: nothing is deleted"
        );
        assert_eq!(
            decide(limited(2, 5), &[]),
            creating(2),
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
            starting("starting"),
            member("unlaunched", false, false, 0, 0),
        ];
        let order = |replicas| decide(to(replicas), &members).delete;
        assert_eq!(order(5), ["unlaunched"]);
        assert_eq!(order(4), ["unlaunched", "starting"]);
        assert_eq!(order(3), ["unlaunched", "starting", "empty"]);
        assert_eq!(order(1), ["unlaunched", "starting", "empty", "light", "heavy"]);
        assert_eq!(order(0).len(), 6);
        assert_eq!(decide(to(3), &members).create, 0);
    }

    #[test]
    fn equal_candidates_are_chosen_by_name() {
        let members = [ready("c", 0, 0), ready("a", 0, 0), ready("b", 0, 0)];
        assert_eq!(decide(to(1), &members).delete, ["a", "b"]);
    }

    #[test]
    fn drifted_node_claims_are_replaced_one_for_one_within_the_budget() {
        // All three drifted, budget 1: one replacement at a time.
        let all_drifted = [drifted("d1"), drifted("d2"), drifted("d3")];
        assert_eq!(decide(to(3), &all_drifted), creating(1));
        // The replacement is starting: nothing more is created, nothing is deleted yet.
        let mut members = all_drifted.to_vec();
        members.push(starting("new1"));
        assert_eq!(decide(to(3), &members), Decision::default());
        // Initialized: one drifted NodeClaim goes (nothing created in the same breath: the
        // surge is used until it is gone).
        members[3] = ready("new1", 0, 0);
        assert_eq!(
            decide(to(3), &members),
            Decision {
                replace_drifted: vec!["d1".into()],
                ..Decision::default()
            }
        );
        // Gone: the next replacement.
        members.remove(0);
        assert_eq!(decide(to(3), &members), creating(1));
        // A larger budget replaces more at once.
        let wide = Target {
            drift_budget: 10,
            ..to(3)
        };
        assert_eq!(decide(wide, &all_drifted), creating(3));
    }

    #[test]
    fn drift_replacement_stops_at_a_zero_budget_and_at_limits_nodes() {
        let all_drifted = [drifted("d1"), drifted("d2")];
        let no_budget = Target {
            drift_budget: 0,
            ..to(2)
        };
        assert_eq!(decide(no_budget, &all_drifted), Decision::default());
        let at_limit = Target {
            node_limit: Some(2),
            ..to(2)
        };
        assert_eq!(decide(at_limit, &all_drifted), Decision::default());
    }

    #[test]
    fn scaling_down_during_drift_lets_drifted_node_claims_go_first() {
        let members = [drifted("d1"), drifted("d2"), drifted("d3"), starting("new1")];
        assert_eq!(
            decide(to(1), &members),
            Decision {
                replace_drifted: vec!["d1".into(), "d2".into()],
                ..Decision::default()
            },
            "one drifted NodeClaim stays until its replacement is initialized"
        );
        assert_eq!(
            decide(to(0), &members),
            Decision {
                delete: vec!["new1".into()],
                replace_drifted: vec!["d1".into(), "d2".into(), "d3".into()],
                ..Decision::default()
            }
        );
    }

    #[test]
    fn creations_beyond_what_the_replicas_lack_replace_drifted_node_claims() {
        // Scaling up with nothing drifted: all provisioned.
        assert_eq!(drift_replacements(2, 3, 1), 0);
        // Three drifted at replicas 3: the one created is a replacement.
        let all_drifted = [drifted("d1"), drifted("d2"), drifted("d3")];
        let create = decide(to(3), &all_drifted).create;
        assert_eq!(drift_replacements(create, 3, all_drifted.len()), 1);
        // One short and one drifted, budget 1: one to make up the count, one replacement.
        let members = [ready("a", 0, 0), drifted("d1")];
        let create = decide(to(3), &members).create;
        assert_eq!(create, 2);
        assert_eq!(drift_replacements(create, 3, members.len()), 1);
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
