//! Disruption: a singleton loop that removes empty nodes, replaces drifted ones and consolidates
//! underutilized ones, within the NodePools' budgets.
//!
//! Each pass (every [`POLL`] of the clock's time, and when pods or nodes change):
//! - **Read**: NodeClaims, Nodes, pods, NodePools, PDBs from the caches. Nodes left tainted
//!   `karpenter.sh/disrupted` by a command that did not finish (a crash, a failed validation)
//!   whose NodeClaim is not being deleted are untainted first.
//! - **Decide** (pure): [`candidates`] (with a reason for every node that is not one),
//!   [`budgets`], then the methods in Karpenter's order, the first that finds something acting —
//!   **emptiness** (candidates with no pod to move, policy any, consolidateAfter elapsed),
//!   **drift** ([`drift`]: `Drifted` candidates replaced within the `Drifted` budget), then
//!   **consolidation** ([`consolidation::plan`] over every candidate of
//!   `WhenEmptyOrUnderutilized` and `Balanced` pools; Balanced moves only when the savings
//!   outweigh the disruption).
//! - **Write**: the `Consolidatable` condition of each NodeClaim (True, or False with the
//!   blocker's reason; events when the reason changes), then the command: taint the nodes
//!   `karpenter.sh/disrupted:NoSchedule`, launch replacements and wait until they are
//!   Initialized (or wait Karpenter's 15 s validation delay when nothing is launched),
//!   re-validate (still candidates, no new pods, budgets), and delete the NodeClaims —
//!   termination drains and terminates. A failed or timed-out command is rolled back: taints
//!   removed, replacements deleted. The candidates are never deleted before their replacements
//!   initialized. When replacements time out, the NodePools involved back off ([`backoff`]:
//!   1 minute doubling up to 30, reset by a command whose replacements initialize), so a bad
//!   image does not launch new replacements on every pass.
//!
//! Alongside, not as methods (as in Karpenter): [`drift::detection`] keeps NodeClaims'
//! `Drifted` condition, and [`expiration`] deletes expired NodeClaims without budgets.
//!
//! CapacityBuffers ([`crate::buffers::room`]): an empty node whose free room holds buffer chunks
//! is not removed as empty, and consolidation simulates the chunks as pods that need room, so
//! a node whose room they need stays unless a cheaper arrangement holds them too.
//!
//! Pods moved off candidates keep their volumes' topology in the simulations (a pod whose
//! zonal disk is in one zone is only moved within it). Spot-to-spot replacement follows
//! [`crate::Settings::spot_to_spot_consolidation`] (off by default, as Karpenter's feature gate).

pub mod backoff;
pub mod budgets;
pub mod candidates;
pub mod consolidation;
pub mod drift;
pub mod expiration;
mod pod_events;
mod write;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use nodewright_api::{NodeClaim, NodePool, conditions, labels, nodepool::DisruptionReason};
use nodewright_catalog::Price;
use nodewright_solver::NodeClaimPlan;

use self::{
    budgets::PoolNodes,
    candidates::{Blocker, Candidate, Evaluation, Inputs},
    pod_events::PodEvents,
};
use crate::{
    context::Context,
    error::{Backoff, ControllerError},
    events::reasons::{DISRUPTION_LAUNCHING, DISRUPTION_TERMINATING, UNCONSOLIDATABLE},
    metrics,
    provisioner::snapshot,
};

/// How often a pass runs when nothing wakes it (Karpenter polls every 10 s).
pub const POLL: Duration = Duration::from_secs(10);
/// How long a command without replacements waits before re-validating (Karpenter's
/// `commandValidationDelay`).
pub const VALIDATION_DELAY: SignedDuration = SignedDuration::from_secs(15);
/// How long replacements may take to initialize before the command is rolled back.
pub const REPLACEMENT_TIMEOUT: SignedDuration = SignedDuration::from_mins(10);
const PASS_KEY: &str = "disruption";

/// Runs disruption until the task is dropped.
pub async fn run(ctx: Context) {
    let mut disruption = Disruption::new(ctx.clone());
    let mut pod_events = PodEvents::default();
    let mut pods = ctx.state.pods.changes();
    let mut nodes = ctx.state.nodes.changes();
    let mut backoff = Backoff::default();
    let mut next_pass = tokio::time::Instant::now();
    loop {
        pod_events.record(&ctx).await;
        if tokio::time::Instant::now() >= next_pass {
            next_pass = match disruption.pass().await {
                Ok(acted) => {
                    backoff.succeeded(PASS_KEY);
                    // After a command the cluster changed: look again at once.
                    if acted {
                        tokio::time::Instant::now()
                    } else {
                        tokio::time::Instant::now() + ctx.settings.wall(POLL)
                    }
                }
                Err(error) => {
                    let delay = backoff.failed(PASS_KEY);
                    tracing::warn!(%error, ?delay, "disruption pass failed; retrying");
                    tokio::time::Instant::now() + ctx.settings.wall(delay)
                }
            };
            continue;
        }
        tokio::select! {
            () = pods.changed() => {}
            () = nodes.changed() => {}
            () = tokio::time::sleep_until(next_pass) => {}
        }
    }
}

/// What one command does.
#[derive(Debug, Clone)]
struct Command {
    reason: DisruptionReason,
    candidates: Vec<Candidate>,
    replacements: Vec<NodeClaimPlan>,
    savings: Price,
}

/// Disruption's memory between passes: the reason last told each NodeClaim (events once per
/// change).
#[derive(Debug)]
pub struct Disruption {
    ctx: Context,
    told: HashMap<String, &'static str>,
    drift_told: drift::Told,
    /// Whether a spot node may be replaced by a spot node (Karpenter's `SpotToSpotConsolidation`
    /// gate, off by default).
    pub allow_spot_to_spot: bool,
}

/// The cluster as one pass reads it.
struct World {
    claims: Vec<Arc<NodeClaim>>,
    nodes: Vec<Arc<Node>>,
    pools: Vec<Arc<NodePool>>,
    evaluations: Vec<Evaluation>,
    now: Timestamp,
}

impl World {
    fn read(ctx: &Context) -> Self {
        let claims = ctx.state.node_claims.all();
        let nodes = ctx.state.nodes.all();
        let pods = ctx.state.pods.all();
        let pools = ctx.state.node_pools.all();
        let pdbs = ctx.state.pdbs.all();
        let now = ctx.clock.now();
        let evaluations = candidates::evaluate(
            &Inputs {
                claims: &claims,
                nodes: &nodes,
                pods: &pods,
                pools: &pools,
                pdbs: &pdbs,
            },
            now,
        );
        Self {
            claims,
            nodes,
            pools,
            evaluations,
            now,
        }
    }

    fn candidates(&self) -> impl Iterator<Item = &Candidate> {
        self.evaluations.iter().filter_map(|e| e.outcome.as_ref().ok())
    }

    /// The candidates of drift: pod-level blockers left out for NodeClaims with a
    /// terminationGracePeriod ([`Evaluation::for_reason`]).
    fn drift_candidates(&self) -> impl Iterator<Item = &Candidate> {
        self.evaluations
            .iter()
            .filter_map(|e| e.for_reason(DisruptionReason::Drifted).ok())
    }

    /// Budget counts per NodePool. `exclude` are nodes of the command being validated (their
    /// own taint must not count against them).
    fn pool_nodes(&self, exclude: &HashSet<String>) -> HashMap<String, PoolNodes> {
        pool_nodes(&self.claims, &self.nodes, exclude)
    }
}

impl Disruption {
    pub fn new(ctx: Context) -> Self {
        Self {
            told: HashMap::new(),
            drift_told: drift::Told::default(),
            allow_spot_to_spot: ctx.settings.spot_to_spot_consolidation,
            ctx,
        }
    }

    /// One pass; returns whether a command ran.
    pub async fn pass(&mut self) -> Result<bool, ControllerError> {
        let world = World::read(&self.ctx);
        metrics::disruption_budgets(&world.pools, &world.pool_nodes(&HashSet::new()), world.now);
        self.untaint_stale(&world).await?;
        let mut refused: HashMap<String, Blocker> = HashMap::new();
        let buffer_room = self.buffer_room(&world).await;
        let mut command = Self::emptiness(&world, &buffer_room, &mut refused);
        if command.is_none() {
            command = self.drift(&world).await;
        }
        if command.is_none() {
            command = self.consolidation(&world, &mut refused).await;
        }
        metrics::savings_backlog(command.as_ref().map_or(Price::ZERO, |c| c.savings));
        self.report(&world, &refused, command.as_ref()).await;
        let Some(command) = command else {
            return Ok(false);
        };
        metrics::disruption_decided(command.reason, &command.candidates, command.replacements.len());
        self.execute(command).await?;
        Ok(true)
    }

    /// Removes the disrupted taint from nodes no command is working on (one that crashed or
    /// failed): only nodes whose NodeClaim is not being deleted, since termination taints those.
    async fn untaint_stale(&self, world: &World) -> Result<(), ControllerError> {
        let deleting: HashSet<&str> = world
            .claims
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_some())
            .filter_map(|c| c.status.as_ref()?.provider_id.as_deref())
            .collect();
        let ours: HashSet<&str> = world
            .claims
            .iter()
            .filter_map(|c| c.status.as_ref()?.provider_id.as_deref())
            .collect();
        for node in &world.nodes {
            let provider_id = node
                .spec
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .unwrap_or_default();
            if candidates::is_tainted_disrupted(node)
                && node.metadata.deletion_timestamp.is_none()
                && ours.contains(provider_id)
                && !deleting.contains(provider_id)
            {
                tracing::info!(node = %node.name_any(), "removing a disrupted taint no command holds");
                write::set_disrupted_taint(&self.ctx, node, false).await?;
            }
        }
        Ok(())
    }

    /// The empty candidates whose free room CapacityBuffer chunks are placed on (none without
    /// buffers or empty candidates).
    async fn buffer_room(&self, world: &World) -> BTreeSet<String> {
        let virtual_pods = self.ctx.state.buffer_pods.pods();
        if virtual_pods.is_empty()
            || !world
                .candidates()
                .any(|c| c.is_empty() && c.is_consolidatable(world.now))
        {
            return BTreeSet::new();
        }
        // Only the existing nodes' room is asked about: no NodePools, so no instance types.
        let snapshot = snapshot::assemble(
            &snapshot::World::read(&self.ctx.state, &[]),
            Vec::new(),
            Vec::new(),
        );
        let pods = virtual_pods.into_iter().map(|(_, pod)| pod).collect();
        tokio::task::spawn_blocking(move || crate::buffers::room::hosting_nodes(&snapshot.problem, pods))
            .await
            .unwrap_or_else(|error| {
                // Fail safe: without an answer, no empty node is removed this pass.
                tracing::error!(%error, "placing the buffers' chunks failed");
                world.candidates().map(Candidate::name).collect()
            })
    }

    /// Empty candidates whose consolidateAfter elapsed, within each pool's Empty budget, except
    /// those holding buffer room.
    fn emptiness(
        world: &World,
        buffer_room: &BTreeSet<String>,
        refused: &mut HashMap<String, Blocker>,
    ) -> Option<Command> {
        let _evaluation = metrics::disruption_evaluating(DisruptionReason::Empty);
        let counts = world.pool_nodes(&HashSet::new());
        let all: Vec<&Candidate> = world.candidates().collect();
        let (candidates, holding) = without_buffer_room(&all, buffer_room);
        refused.extend(holding);
        metrics::disruption_eligible(
            DisruptionReason::Empty,
            candidates
                .iter()
                .filter(|c| c.is_empty() && c.is_consolidatable(world.now))
                .count(),
        );
        let (chosen, held) = consolidation::emptiness(&candidates, &counts, world.now);
        refused.extend(held);
        (!chosen.is_empty()).then(|| Command {
            reason: DisruptionReason::Empty,
            candidates: chosen,
            replacements: Vec::new(),
            savings: Price::ZERO,
        })
    }

    /// The consolidation search over every non-empty candidate of pools that consolidate
    /// underutilized nodes.
    async fn consolidation(&self, world: &World, refused: &mut HashMap<String, Blocker>) -> Option<Command> {
        let _evaluation = metrics::disruption_evaluating(DisruptionReason::Underutilized);
        let eligible = world
            .candidates()
            .filter(|c| !c.is_empty() && c.is_consolidatable(world.now))
            .count();
        metrics::disruption_eligible(DisruptionReason::Underutilized, eligible);
        if eligible == 0 {
            return None;
        }
        let snapshot = snapshot::take_moving(&self.ctx, world.candidates().flat_map(|c| &c.pods)).await;
        // Buffer chunks need room like pending pods: removing a node they need costs a new one.
        let virtual_pods = self
            .ctx
            .state
            .buffer_pods
            .pods()
            .into_iter()
            .map(|(_, pod)| pod)
            .collect();
        let problem = crate::buffers::room::with_virtual_pods(snapshot.problem, virtual_pods);
        let counts = world.pool_nodes(&HashSet::new());
        let budgets = consolidation::underutilized_budgets(&world.pools, &counts, world.now);
        let candidates: Vec<Candidate> = world.candidates().cloned().collect();
        let (now, allow) = (world.now, self.allow_spot_to_spot);
        // The search is CPU-bound: off the async workers.
        let planned = tokio::task::spawn_blocking(move || {
            let all: Vec<&Candidate> = candidates.iter().collect();
            consolidation::plan(&consolidation::Request {
                candidates: &all,
                problem: &problem,
                budgets,
                now,
                allow_spot_to_spot: allow,
            })
        })
        .await;
        let planned = match planned {
            Ok(planned) => planned,
            Err(error) => {
                tracing::error!(%error, "the consolidation search failed");
                return None;
            }
        };
        refused.extend(planned.refused);
        let chosen = planned.chosen?;
        Some(Command {
            reason: DisruptionReason::Underutilized,
            candidates: chosen.candidates,
            replacements: chosen.replacements,
            savings: chosen.savings,
        })
    }

    /// Writes `Consolidatable` for every NodeClaim that is settled enough to have one, and an
    /// event when a NodeClaim's reason changes.
    async fn report(&mut self, world: &World, refused: &HashMap<String, Blocker>, command: Option<&Command>) {
        let acting: HashSet<String> = command
            .map(|c| c.candidates.iter().map(Candidate::name).collect())
            .unwrap_or_default();
        for evaluation in &world.evaluations {
            let blocker = match &evaluation.outcome {
                // Transient states: not worth a write on every claim that starts or stops.
                Err(Blocker::NotInitialized | Blocker::NodeNotFound | Blocker::Deleting) => continue,
                Err(blocker) => Some(blocker.clone()),
                Ok(candidate) if acting.contains(&candidate.name()) => None,
                Ok(candidate) => match (refused.get(&candidate.name()), candidate.consolidatable_at) {
                    (Some(blocker), _) => Some(blocker.clone()),
                    (None, None) => Some(Blocker::ConsolidationDisabled),
                    (None, Some(at)) if at > world.now => Some(Blocker::ConsolidateAfterNotElapsed(at)),
                    (None, Some(_)) => None,
                },
            };
            let claim = &evaluation.claim;
            let name = claim.name_any();
            let message = blocker.as_ref().map(Blocker::message);
            let pair = blocker
                .as_ref()
                .map(|b| (b.reason(), message.as_deref().unwrap_or_default()));
            if let Err(error) = write::set_consolidatable(&self.ctx, claim, pair).await {
                tracing::debug!(nodeclaim = %name, %error, "could not write Consolidatable; next pass");
            }
            let reason = blocker
                .as_ref()
                .map_or(conditions::nodeclaim::CONSOLIDATABLE, Blocker::reason);
            if self.told.get(&name) != Some(&reason)
                && let Some(blocker) = &blocker
                && !matches!(blocker, Blocker::ConsolidateAfterNotElapsed(_))
            {
                self.ctx
                    .events
                    .normal(&**claim, UNCONSOLIDATABLE, "Disrupting", blocker.message())
                    .await;
            }
            self.told.insert(name, reason);
        }
        let live: HashSet<String> = world.claims.iter().map(|c| c.name_any()).collect();
        self.told.retain(|name, _| live.contains(name));
    }

    /// Taints, launches and waits for replacements (or waits the validation delay),
    /// re-validates, and deletes; rolls back on failure.
    async fn execute(&self, command: Command) -> Result<(), ControllerError> {
        let names: Vec<String> = command.candidates.iter().map(Candidate::name).collect();
        tracing::info!(
            reason = ?command.reason,
            nodes = ?names,
            replacements = command.replacements.len(),
            savings = %command.savings,
            "disrupting"
        );
        for candidate in &command.candidates {
            if let Err(error) = write::set_disrupted_taint(&self.ctx, &candidate.node, true).await {
                self.roll_back(&command, &[]).await;
                return Err(error);
            }
        }
        let mut launched = Vec::new();
        for plan in &command.replacements {
            let pool = self
                .ctx
                .state
                .node_pools
                .store
                .find(|p| p.name_any() == plan.nodepool);
            let created = match pool {
                Some(pool) => write::create_replacement(&self.ctx, plan, &pool).await,
                None => Err(ControllerError::InvalidSpec {
                    kind: "NodePool",
                    name: plan.nodepool.clone(),
                    field: "metadata.name".to_owned(),
                    message: "the replacement's NodePool is gone".to_owned(),
                }),
            };
            match created {
                Ok(claim) => launched.push(metrics::replacement_created(&claim, command.reason)),
                Err(error) => {
                    self.roll_back(&command, &launched).await;
                    return Err(error);
                }
            }
        }
        let ready = if launched.is_empty() {
            self.wait(VALIDATION_DELAY, || false).await;
            // Nothing to wait for but the delay itself.
            true
        } else {
            self.announce_launches(&command, &launched).await;
            self.wait(REPLACEMENT_TIMEOUT, || self.all_initialized(&launched))
                .await
        };
        if !ready {
            tracing::warn!(replacements = ?launched, "replacements did not initialize in time; rolling back");
            metrics::disruption_queue_failed(command.reason, command.candidates.len(), launched.len());
            self.roll_back(&command, &launched).await;
            self.back_off(&command, &launched).await;
            return Ok(());
        }
        if let Err(blocker) = self.revalidate(&command) {
            tracing::info!(nodes = ?names, reason = blocker.reason(), "command no longer valid; rolling back");
            metrics::disruption_validation_failed(command.reason, command.candidates.len());
            // Replacements that initialized stay: they are nodes like any other, and empty ones
            // are consolidated in turn.
            self.roll_back(&command, &[]).await;
            return Ok(());
        }
        for candidate in &command.candidates {
            let claim = candidate.claim.name_any();
            write::delete_claim(&self.ctx, &claim).await?;
            metrics::nodeclaim_disrupted(candidate, command.reason);
            let note = format!(
                "disrupting node via {:?} (savings {})",
                command.reason, command.savings
            );
            self.ctx
                .events
                .normal(
                    &*candidate.node,
                    DISRUPTION_TERMINATING,
                    "Terminating",
                    note.clone(),
                )
                .await;
            self.ctx
                .events
                .normal(&*candidate.claim, DISRUPTION_TERMINATING, "Terminating", note)
                .await;
        }
        if !launched.is_empty() {
            self.reset_backoff(&command).await;
        }
        Ok(())
    }

    /// A `DisruptionLaunching` event on each candidate node per replacement.
    async fn announce_launches(&self, command: &Command, launched: &[String]) {
        let names: Vec<String> = command.candidates.iter().map(Candidate::name).collect();
        for claim in launched {
            for candidate in &command.candidates {
                self.ctx
                    .events
                    .normal(
                        &*candidate.node,
                        DISRUPTION_LAUNCHING,
                        "Launching",
                        format!(
                            "launching NodeClaim {claim} to replace {names:?} ({:?})",
                            command.reason
                        ),
                    )
                    .await;
            }
        }
    }

    /// Waits up to `limit` of the clock's time until `done`; returns whether it was done.
    async fn wait(&self, limit: SignedDuration, done: impl Fn() -> bool) -> bool {
        let start = self.ctx.clock.now();
        let deadline = start.checked_add(limit).unwrap_or(start);
        loop {
            if done() {
                return true;
            }
            if self.ctx.clock.now() >= deadline {
                return false;
            }
            tokio::time::sleep(self.ctx.settings.wall(Duration::from_secs(1))).await;
        }
    }

    fn all_initialized(&self, names: &[String]) -> bool {
        names.iter().all(|name| {
            self.ctx
                .state
                .node_claims
                .store
                .find(|c| c.name_any() == *name)
                .is_some_and(|c| candidates::initialized_at(&c).is_some())
        })
    }

    /// The command still holds: every node is still a candidate with no pod it did not have
    /// (its own taint aside), and the budgets still allow it.
    fn revalidate(&self, command: &Command) -> Result<(), Blocker> {
        let world = World::read(&self.ctx);
        let names: HashSet<String> = command.candidates.iter().map(Candidate::name).collect();
        for candidate in &command.candidates {
            let evaluation = world
                .evaluations
                .iter()
                .find(|e| e.claim.name_any() == candidate.claim.name_any())
                .ok_or(Blocker::Deleting)?;
            let now = match evaluation.for_reason(command.reason) {
                Ok(now) => now.clone(),
                // Our own taint makes it look disrupted: evaluate it without.
                Err(Blocker::Deleting) if candidate.claim.metadata.deletion_timestamp.is_none() => {
                    let mut node = (*candidate.node).clone();
                    if let Some(taints) = node.spec.as_mut().and_then(|s| s.taints.as_mut()) {
                        taints.retain(|t| !labels::DISRUPTED_TAINT.matches(t));
                    }
                    reevaluate(&self.ctx, &evaluation.claim, node, command.reason, world.now)?
                }
                Err(blocker) => return Err(blocker.clone()),
            };
            let before: HashSet<String> = candidate
                .pods
                .iter()
                .filter_map(|p| p.metadata.uid.clone())
                .collect();
            if now
                .pods
                .iter()
                .any(|p| !before.contains(p.metadata.uid.as_deref().unwrap_or_default()))
            {
                return Err(Blocker::NominatedRecently);
            }
        }
        let counts = world.pool_nodes(&names);
        let mut per_pool: BTreeMap<String, (Arc<NodePool>, u64)> = BTreeMap::new();
        for candidate in &command.candidates {
            per_pool
                .entry(candidate.pool.name_any())
                .or_insert_with(|| (Arc::clone(&candidate.pool), 0))
                .1 += 1;
        }
        for (name, (pool, wanted)) in per_pool {
            let nodes = counts.get(&name).copied().unwrap_or_default();
            if budgets::allowed(&pool, command.reason, nodes, world.now) < wanted {
                return Err(Blocker::BudgetExhausted(match command.reason {
                    DisruptionReason::Empty => "Empty",
                    DisruptionReason::Drifted => "Drifted",
                    DisruptionReason::Underutilized => "Underutilized",
                }));
            }
        }
        Ok(())
    }

    async fn roll_back(&self, command: &Command, launched: &[String]) {
        for candidate in &command.candidates {
            let node = self
                .ctx
                .state
                .nodes
                .store
                .find(|n| n.name_any() == candidate.name())
                .unwrap_or_else(|| Arc::clone(&candidate.node));
            if let Err(error) = write::set_disrupted_taint(&self.ctx, &node, false).await {
                // The next pass removes taints no command holds.
                tracing::warn!(node = %candidate.name(), %error, "could not remove the disrupted taint");
            }
        }
        for name in launched {
            if let Err(error) = write::delete_claim(&self.ctx, name).await {
                tracing::warn!(nodeclaim = %name, %error, "could not delete a replacement of a failed command");
            }
        }
    }
}

/// Emptiness's candidates: all but the empty ones whose free room holds CapacityBuffer chunks
/// (`buffer_room`, from [`crate::buffers::room::hosting_nodes`]), which are returned apart with
/// [`Blocker::HoldsBufferRoom`]. Pure; `nodewright explain` calls it too.
pub fn without_buffer_room<'a>(
    candidates: &[&'a Candidate],
    buffer_room: &BTreeSet<String>,
) -> (Vec<&'a Candidate>, Vec<(String, Blocker)>) {
    let (holding, rest): (Vec<&Candidate>, Vec<&Candidate>) = candidates
        .iter()
        .partition(|c| c.is_empty() && buffer_room.contains(&c.name()));
    let refused = holding
        .into_iter()
        .map(|c| (c.name(), Blocker::HoldsBufferRoom))
        .collect();
    (rest, refused)
}

/// Evaluates one claim for `reason` against the current caches with `node` in place of its
/// stored Node.
fn reevaluate(
    ctx: &Context,
    claim: &Arc<NodeClaim>,
    node: Node,
    reason: DisruptionReason,
    now: Timestamp,
) -> Result<Candidate, Blocker> {
    let claims = [Arc::clone(claim)];
    let nodes = [Arc::new(node)];
    let pods = ctx.state.pods.all();
    let pools = ctx.state.node_pools.all();
    let pdbs = ctx.state.pdbs.all();
    let inputs = Inputs {
        claims: &claims,
        nodes: &nodes,
        pods: &pods,
        pools: &pools,
        pdbs: &pdbs,
    };
    let evaluation = candidates::evaluate(&inputs, now)
        .pop()
        .ok_or(Blocker::NodeNotFound)?;
    evaluation.for_reason(reason).cloned().map_err(Clone::clone)
}

/// Budget counts per NodePool: managed, initialized nodes whose instance is not terminating;
/// of them, the ones deleting, tainted disrupted (unless in `exclude`), or NotReady.
pub fn pool_nodes<S: std::hash::BuildHasher>(
    claims: &[Arc<NodeClaim>],
    nodes: &[Arc<Node>],
    exclude: &HashSet<String, S>,
) -> HashMap<String, PoolNodes> {
    let node_by_provider: HashMap<&str, &Arc<Node>> = nodes
        .iter()
        .filter_map(|n| Some((n.spec.as_ref()?.provider_id.as_deref()?, n)))
        .collect();
    let mut counts: HashMap<String, PoolNodes> = HashMap::new();
    for claim in claims {
        let Some(pool) = claim.nodepool_name() else {
            continue;
        };
        if candidates::initialized_at(claim).is_none() {
            continue;
        }
        let status = claim.status.as_ref();
        let terminating = status.is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == conditions::nodeclaim::INSTANCE_TERMINATING && c.status == conditions::TRUE
            })
        });
        if terminating {
            continue;
        }
        let node = status
            .and_then(|s| s.provider_id.as_deref())
            .and_then(|id| node_by_provider.get(id).copied());
        let entry = counts.entry(pool.to_owned()).or_default();
        entry.total += 1;
        let disrupting = claim.metadata.deletion_timestamp.is_some()
            || node.is_none_or(|n| {
                n.metadata.deletion_timestamp.is_some()
                    || (candidates::is_tainted_disrupted(n) && !exclude.contains(&n.name_any()))
                    || !is_ready(n)
            });
        if disrupting {
            entry.disrupting += 1;
        }
    }
    counts
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
