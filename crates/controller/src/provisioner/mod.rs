//! The provisioner: a singleton loop that creates NodeClaims for pods no node can take.
//!
//! - **Trigger** ([`pods`], [`batch`]): pods kube-scheduler marked `PodScheduled=False, reason
//!   Unschedulable` (not DaemonSet, mirror, terminating or scheduling-gated pods), and pods on
//!   nodes going away. The first new one opens a batch; the batch closes `batch_idle` after the
//!   last new arrival, at most `batch_max` after it opened. Pods still waiting after a round are
//!   tried again `batch_max` later, and a NodePool or EC2NodeClass change (spec, deletion,
//!   readiness) wakes the loop too, as does a launch that failed for lack of capacity (new
//!   offerings in the unavailable-offerings cache), so its pods are planned again at once.
//! - **Read** ([`snapshot`], [`pools`], [`inflight`]): the waiting pods, the usable NodePools
//!   in weight order with their instance types (offerings recently out of capacity marked
//!   unavailable) and what their NodeClaims already use, the nodes with their pods, and every
//!   NodeClaim without a Node as a node in flight — so pods it will take do not cause another.
//! - **Decide**: `nodewright_solver::solve`, pure. A NodePool whose NodeClaim just failed to
//!   launch for lack of capacity ranks last for the unavailable-offerings TTL ([`fallback`]), so
//!   lower-weight NodePools take its pods at once (the spot → on-demand fallback).
//! - **Recheck** ([`recheck`]): the pods placed on new NodeClaims are read again from the API
//!   server; a NodeClaim that lost one (deleted, terminating or bound while the cache lagged) is
//!   not created, and the next round, run at once, re-plans without the pods that are gone.
//! - **Write** ([`claims`], [`announce`]): one NodeClaim per new node of the plan (with the
//!   termination finalizer from the start), `Nominated` events on pods placed on existing or
//!   coming capacity, `FailedScheduling` with the solver's reasons on pods nothing can take.
//!
//! - **Buffers** ([`crate::buffers::room`]): after the real pods, the CapacityBuffers' virtual
//!   pods are placed on the room left, and NodeClaims are created for those that find none
//!   (nothing is nominated for them). While buffers exist a round also runs when they change and
//!   every `batch_max`, so room used up by real pods is made again.
//!
//! Launching the NodeClaims is the lifecycle controller's business, not this one's.

mod announce;
mod batch;
pub(crate) mod claims;
mod fallback;
mod inflight;
pub(crate) mod limits;
pub(crate) mod pods;
pub(crate) mod pools;
mod recheck;
mod resources;
pub(crate) mod snapshot;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use futures_util::{StreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt, api::PostParams};
use nodewright_api::{NodeClaim, NodePool};
use nodewright_cloudprovider::OfferingKey;
use nodewright_solver::{NodeClaimPlan, Plan, Problem};
use tokio::time::Instant;

use self::{
    announce::Announced,
    batch::{BatchWindow, Trigger},
    fallback::CapacityFallback,
    snapshot::Snapshot,
};
use crate::{
    context::Context,
    error::{Backoff, ControllerError, ErrorClass},
    events::reasons,
};

/// The backoff key of failed rounds.
const ROUND_KEY: &str = "provisioner";
/// API writes (NodeClaims, events) in flight at once.
const PARALLEL_WRITES: usize = 16;
/// Rounds run back to back when the recheck deferred pods, before waiting as usual. Each such
/// round leaves out at least one more pod, so this only bounds a cache lagging badly.
const REPLANS_AT_MOST: usize = 3;

/// Runs the provisioner until the task is dropped.
pub async fn run(ctx: Context) {
    let mut provisioner = Provisioner::new(ctx.clone());
    let mut wake = Wake::new(&ctx);
    let mut backoff = Backoff::default();
    loop {
        wake.wait_for_batch().await;
        wake.wait_for_batch_end().await;
        let mut replans = 0;
        loop {
            match provisioner.provision_once().await {
                Ok(report) if report.needs_retry() => {
                    let delay = backoff.failed(ROUND_KEY);
                    tracing::warn!(
                        failures = report.failures.len(),
                        first = report
                            .failures
                            .first()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        ?delay,
                        "provisioning round could not write everything; retrying"
                    );
                    tokio::time::sleep(ctx.settings.wall(delay)).await;
                }
                Ok(report) if report.deferred > 0 && replans < REPLANS_AT_MOST => {
                    replans += 1;
                    tracing::info!(
                        gone = report.gone,
                        deferred = report.deferred,
                        "planned pods were gone: planning again without them"
                    );
                }
                Ok(report) => {
                    backoff.succeeded(ROUND_KEY);
                    crate::metrics::provisioning_round(report.unschedulable);
                    tracing::debug!(
                        considered = report.considered,
                        created = report.created.len(),
                        nominated = report.nominated,
                        unschedulable = report.unschedulable,
                        "provisioning round done"
                    );
                    break;
                }
                Err(error) => {
                    let delay = backoff.failed(ROUND_KEY);
                    tracing::warn!(%error, ?delay, "provisioning round failed; retrying");
                    tokio::time::sleep(ctx.settings.wall(delay)).await;
                }
            }
        }
        wake.round_finished();
    }
}

/// What wakes the loop: new waiting pods, pods still waiting after the retry interval, and
/// NodePool or EC2NodeClass changes that matter.
struct Wake {
    ctx: Context,
    pods: crate::state::Changes,
    nodepools: crate::state::Changes,
    node_classes: crate::state::Changes,
    /// NodeClaim changes: a claim deleted after a capacity failure shows up here.
    node_claims: crate::state::Changes,
    batch: BatchWindow,
    trigger: Trigger,
    pools_seen: Vec<String>,
    buffers: tokio::sync::watch::Receiver<u64>,
    /// While buffers exist: when their room is checked again without another reason.
    buffers_due: Option<Instant>,
    /// The unavailable offerings as last seen.
    unavailable_seen: HashSet<OfferingKey>,
}

impl Wake {
    fn new(ctx: &Context) -> Self {
        Self {
            ctx: ctx.clone(),
            pods: ctx.state.pods.changes(),
            nodepools: ctx.state.node_pools.changes(),
            node_classes: ctx.state.node_classes.changes(),
            node_claims: ctx.state.node_claims.changes(),
            // The batch windows are wall-clock timers: scaled when the clock runs fast.
            batch: BatchWindow::new(
                ctx.settings.wall(ctx.settings.batch_idle),
                ctx.settings.wall(ctx.settings.batch_max),
            ),
            // Karpenter re-triggers waiting pods every 10 s, its default maximum batch time.
            trigger: Trigger::new(ctx.settings.wall(ctx.settings.batch_max)),
            pools_seen: Vec::new(),
            buffers: ctx.state.buffer_pods.buffer_changes(),
            buffers_due: None,
            unavailable_seen: HashSet::new(),
        }
    }

    /// Whether offerings were marked unavailable since the last call: a launch failed for lack
    /// of capacity, and its pods need planning again.
    fn capacity_lost(&mut self) -> bool {
        let now = self.ctx.clock.now();
        let current: HashSet<OfferingKey> = self.ctx.unavailable.current(now).into_iter().collect();
        let lost = current.iter().any(|o| !self.unavailable_seen.contains(o));
        self.unavailable_seen = current;
        lost
    }

    fn pools_fingerprint(&self) -> Vec<String> {
        pools::fingerprint(
            &self.ctx.state.node_pools.all(),
            &self.ctx.state.node_classes.all(),
        )
    }

    /// Waits until a batch opens.
    async fn wait_for_batch(&mut self) {
        loop {
            let waiting = snapshot::waiting_uids(&self.ctx.state);
            let now = Instant::now();
            let arrived = self.trigger.observe(&waiting);
            let fingerprint = self.pools_fingerprint();
            let pools_changed = fingerprint != self.pools_seen;
            self.pools_seen = fingerprint;
            let buffered = !self.ctx.state.buffer_pods.is_empty();
            let buffers_changed = self.buffers.has_changed().unwrap_or(false);
            self.buffers.mark_unchanged();
            let buffers_due = buffered && self.buffers_due.is_none_or(|due| due <= now);
            let capacity_lost = self.capacity_lost();
            if arrived
                || self.trigger.retry_due(now)
                || ((pools_changed || capacity_lost) && (buffered || !waiting.is_empty()))
                || buffers_changed
                || buffers_due
            {
                self.batch.arrive(now);
                return;
            }
            let retry_at = self.trigger.retry_at();
            let buffers_at = self.buffers_due.filter(|_| buffered);
            tokio::select! {
                () = self.pods.changed() => {}
                () = self.nodepools.changed() => {}
                () = self.node_classes.changed() => {}
                _ = self.buffers.changed() => {}
                () = self.node_claims.changed() => {}
                () = sleep_until(retry_at) => {}
                () = sleep_until(buffers_at) => {}
            }
        }
    }

    /// Waits until the open batch closes, extending it for each new waiting pod.
    async fn wait_for_batch_end(&mut self) {
        while let Some(end) = self.batch.closes_at() {
            if self.batch.is_due(Instant::now()) {
                break;
            }
            tokio::select! {
                () = self.pods.changed() => {
                    let waiting = snapshot::waiting_uids(&self.ctx.state);
                    if self.trigger.observe(&waiting) {
                        self.batch.arrive(Instant::now());
                    }
                }
                () = tokio::time::sleep_until(end) => {}
            }
        }
        self.batch.close();
    }

    fn round_finished(&mut self) {
        let now = Instant::now();
        self.trigger.round_finished(now);
        self.buffers_due = Some(now + self.ctx.settings.wall(self.ctx.settings.batch_max));
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What one round did.
#[derive(Debug, Default)]
pub struct RoundReport {
    /// Pods the round looked at: pending, or on nodes going away.
    pub considered: usize,
    /// The NodeClaims created, by name.
    pub created: Vec<String>,
    /// Pods placed on existing nodes or NodeClaims in flight.
    pub nominated: usize,
    /// Pods nothing can take.
    pub unschedulable: usize,
    /// Pods placed on new NodeClaims that the API server says need none any more (deleted,
    /// terminating, bound, or their leaving node gone) although the cache still showed them
    /// waiting.
    pub gone: usize,
    /// Pods still waiting whose planned NodeClaim was not created because it lost a pod that is
    /// gone: the next round re-plans them.
    pub deferred: usize,
    /// NodePools left out, as `(name, why)`.
    pub skipped_nodepools: Vec<(String, String)>,
    /// Writes that failed. Transient ones make the loop retry the round with backoff.
    pub failures: Vec<ControllerError>,
}

impl RoundReport {
    /// Whether a write failed in a way a retry can fix.
    pub fn needs_retry(&self) -> bool {
        self.failures
            .iter()
            .any(|e| matches!(e.class(), ErrorClass::Transient | ErrorClass::Capacity))
    }
}

/// The provisioner's memory between rounds: NodeClaims it created that the watch may not have
/// delivered yet, pods found gone that the watch still shows waiting, and the events it already
/// told pods.
#[derive(Debug)]
pub struct Provisioner {
    ctx: Context,
    /// Created NodeClaims not yet seen in the store: counted as in flight until they are (the
    /// watch lags the create), so the next round does not create them again.
    recent: Vec<NodeClaim>,
    /// UIDs of pods the recheck found gone while the store still shows them waiting: left out
    /// until the store catches up.
    gone: HashSet<String>,
    announced: Announced,
    announced_pools: Announced,
    fallback: CapacityFallback,
}

/// An event for a pod.
struct PodEvent {
    pod: Arc<Pod>,
    warning: bool,
    reason: &'static str,
    action: &'static str,
    note: String,
}

impl Provisioner {
    pub fn new(ctx: Context) -> Self {
        Self {
            ctx,
            recent: Vec::new(),
            gone: HashSet::new(),
            announced: Announced::default(),
            announced_pools: Announced::default(),
            fallback: CapacityFallback::default(),
        }
    }

    /// One round: read, solve, create NodeClaims, tell the pods. Errors are for rounds that
    /// could not run at all; failed writes are in the report.
    pub async fn provision_once(&mut self) -> Result<RoundReport, ControllerError> {
        self.forget_delivered_claims().await;
        let snapshot = snapshot::take_leaving_out(&self.ctx, &self.recent, &self.gone).await;
        let mut report = RoundReport {
            considered: snapshot.pods.len(),
            skipped_nodepools: snapshot
                .skipped
                .iter()
                .map(|s| (s.nodepool.clone(), s.reason.clone()))
                .collect(),
            ..RoundReport::default()
        };
        self.report_skipped_pools(&snapshot).await;
        let Snapshot {
            mut problem,
            pods,
            targets,
            pools,
            skipped,
            still_gone,
        } = snapshot;
        self.gone = still_gone;
        let waiting: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        self.announced.retain(&waiting);
        // Before the early return, so claims that launched are forgotten in idle rounds too.
        self.observe_launches();
        let virtual_pods = self.ctx.state.buffer_pods.pods();
        if pods.is_empty() && virtual_pods.is_empty() {
            return Ok(report);
        }
        self.fallback.demote(&mut problem.nodepools, self.ctx.clock.now());
        let (problem, mut plan) = solve(problem).await?;
        // Before limits: a NodeClaim dropped here must not take limit room from others.
        (report.gone, report.deferred) = self.drop_gone(&pods, &mut plan.new_nodes).await?;
        let problem = self.add_buffer_room(problem, &mut plan, virtual_pods).await?;
        let refused = limits::enforce(&mut plan.new_nodes, &problem.nodepools);
        drop(problem);

        let created = self.create_node_claims(&plan.new_nodes, &pools).await;
        let mut events = Vec::new();
        for (index, target) in &plan.existing_placements {
            let Some(target) = targets.get(target) else {
                continue;
            };
            report.nominated += 1;
            events.push(nominated(&pods[*index], &target.to_string()));
        }
        for (node, result) in plan.new_nodes.iter().zip(created) {
            match result {
                Ok(claim) => {
                    crate::metrics::nodeclaim_created(&claim, "provisioned");
                    let name = claim.name_any();
                    tracing::info!(
                        nodeclaim = %name,
                        nodepool = %node.nodepool,
                        pods = node.pods.len(),
                        cheapest = %node.instance_type,
                        instance_types = node.instance_types.len(),
                        price = %node.price,
                        "created NodeClaim"
                    );
                    report.nominated += node.pods.len();
                    for index in &node.pods {
                        events.push(nominated(&pods[*index], &format!("nodeclaim/{name}")));
                    }
                    report.created.push(name);
                    self.fallback.watch(&claim, self.ctx.clock.now());
                    self.recent.push(claim);
                }
                Err(error) => {
                    tracing::warn!(nodepool = %node.nodepool, %error, "creating a NodeClaim failed");
                    if error.class() == ErrorClass::InvalidSpec {
                        let message = format!(
                            "could not create a NodeClaim of nodepool {}: {error}",
                            node.nodepool
                        );
                        for index in &node.pods {
                            events.push(failed_scheduling(&pods[*index], &message));
                        }
                    }
                    report.failures.push(error);
                }
            }
        }
        for refused in refused {
            report.unschedulable += refused.node.pods.len();
            let message = format!("nodepool {}: {}", refused.node.nodepool, refused.reason);
            for index in &refused.node.pods {
                events.push(failed_scheduling(&pods[*index], &message));
            }
        }
        let not_considered = describe_skipped(&skipped);
        for unschedulable in &plan.unschedulable {
            report.unschedulable += 1;
            let mut message = unschedulable.message();
            if !not_considered.is_empty() {
                message = format!("{message}; {not_considered}");
            }
            events.push(failed_scheduling(&pods[unschedulable.pod], &message));
        }
        self.publish(events).await;
        Ok(report)
    }

    /// Learns which NodePools' claims failed for lack of capacity (they rank last for a while)
    /// and which launched.
    fn observe_launches(&mut self) {
        let now = self.ctx.clock.now();
        let ttl = jiff::SignedDuration::try_from(self.ctx.settings.unavailable_offering_ttl)
            .unwrap_or(jiff::SignedDuration::MAX);
        let forget_after =
            jiff::SignedDuration::try_from(crate::lifecycle::LAUNCH_TTL).unwrap_or(jiff::SignedDuration::MAX);
        let undelivered: HashSet<String> = self.recent.iter().map(ResourceExt::name_any).collect();
        self.fallback.observe(
            &self.ctx.state.node_claims.all(),
            &undelivered,
            &self.ctx.unavailable.current(now),
            now,
            ttl,
            forget_after,
        );
    }

    /// Rechecks the pods planned on new NodeClaims, drops the NodeClaims that lost one and
    /// remembers the gone pods; returns how many pods were gone and how many were deferred.
    async fn drop_gone(
        &mut self,
        pods: &[Arc<Pod>],
        new_nodes: &mut Vec<NodeClaimPlan>,
    ) -> Result<(usize, usize), ControllerError> {
        let gone = recheck::gone_pods(&self.ctx.client, pods, new_nodes).await?;
        if gone.is_empty() {
            return Ok((0, 0));
        }
        let mut indices = HashSet::new();
        for (index, why) in &gone {
            let pod = &pods[*index];
            tracing::info!(
                pod = %pod.name_any(),
                namespace = %pod.namespace().unwrap_or_default(),
                %why,
                "a pod planned on a new NodeClaim needs none any more"
            );
            if let Some(uid) = &pod.metadata.uid {
                self.gone.insert(uid.clone());
            }
            indices.insert(*index);
        }
        let deferred = recheck::drop_affected(new_nodes, &indices);
        Ok((indices.len(), deferred))
    }

    /// Drops created NodeClaims the store now has, and ones deleted before it ever saw them.
    async fn forget_delivered_claims(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        let stored: HashSet<String> = self
            .ctx
            .state
            .node_claims
            .all()
            .iter()
            .map(|c| c.name_any())
            .collect();
        let api: Api<NodeClaim> = Api::all(self.ctx.client.clone());
        let mut still_recent = Vec::new();
        for claim in std::mem::take(&mut self.recent) {
            let name = claim.name_any();
            if stored.contains(&name) {
                continue;
            }
            match api.get_opt(&name).await {
                Ok(Some(current)) => still_recent.push(current),
                Ok(None) => {}
                Err(error) => {
                    // Keep counting it: one NodeClaim too few beats a duplicate.
                    tracing::warn!(nodeclaim = %name, %error, "could not read a NodeClaim just created");
                    still_recent.push(claim);
                }
            }
        }
        self.recent = still_recent;
    }

    /// Creates the plan's NodeClaims, a few at a time; results parallel to `new_nodes`.
    async fn create_node_claims(
        &self,
        new_nodes: &[NodeClaimPlan],
        pools: &HashMap<String, Arc<NodePool>>,
    ) -> Vec<Result<NodeClaim, ControllerError>> {
        let api: Api<NodeClaim> = Api::all(self.ctx.client.clone());
        // The futures own what they use (no borrows across the stream), so the loop's future
        // stays `Send`.
        let creates: Vec<_> = new_nodes
            .iter()
            .map(|node| {
                let prepared = match pools.get(&node.nodepool) {
                    Some(pool) => claims::node_claim(node, pool),
                    None => Err(ControllerError::InvalidSpec {
                        kind: "NodePool",
                        name: node.nodepool.clone(),
                        field: "metadata.name".to_owned(),
                        message: "the plan names a NodePool that was not in the round".to_owned(),
                    }),
                };
                let api = api.clone();
                async move { Ok(api.create(&PostParams::default(), &prepared?).await?) }
            })
            .collect();
        stream::iter(creates).buffered(PARALLEL_WRITES).collect().await
    }

    /// A `NodeClassNotReady` event on each NodePool the cloud refused to list types for.
    async fn report_skipped_pools(&mut self, snapshot: &Snapshot) {
        let now = self.ctx.clock.now();
        for skipped in &snapshot.skipped {
            tracing::debug!(nodepool = %skipped.nodepool, reason = %skipped.reason, "NodePool not used this round");
            if !skipped.node_class_not_ready {
                continue;
            }
            let Some(pool) = self
                .ctx
                .state
                .node_pools
                .store
                .find(|p| p.name_any() == skipped.nodepool)
            else {
                continue;
            };
            let key = format!("NodePool/{}", skipped.nodepool);
            if self
                .announced_pools
                .should_publish(&key, reasons::NODE_CLASS_NOT_READY, &skipped.reason, now)
            {
                tracing::warn!(nodepool = %skipped.nodepool, reason = %skipped.reason, "NodePool skipped");
                self.ctx
                    .events
                    .warning(
                        pool.as_ref(),
                        reasons::NODE_CLASS_NOT_READY,
                        "Provisioning",
                        format!("NodePool {} {}", skipped.nodepool, skipped.reason),
                    )
                    .await;
            }
        }
    }

    /// Publishes the events not already told, a few at a time.
    async fn publish(&mut self, events: Vec<PodEvent>) {
        let now = self.ctx.clock.now();
        let fresh: Vec<PodEvent> = events
            .into_iter()
            .filter(|e| {
                let uid = e.pod.metadata.uid.as_deref().unwrap_or_default();
                self.announced.should_publish(uid, e.reason, &e.note, now)
            })
            .collect();
        let publishes: Vec<_> = fresh
            .into_iter()
            .map(|event| {
                let publisher = self.ctx.events.clone();
                async move {
                    if event.warning {
                        publisher
                            .warning(event.pod.as_ref(), event.reason, event.action, event.note)
                            .await;
                    } else {
                        publisher
                            .normal(event.pod.as_ref(), event.reason, event.action, event.note)
                            .await;
                    }
                }
            })
            .collect();
        stream::iter(publishes)
            .buffer_unordered(PARALLEL_WRITES)
            .collect::<Vec<()>>()
            .await;
    }
}

fn nominated(pod: &Arc<Pod>, target: &str) -> PodEvent {
    PodEvent {
        pod: Arc::clone(pod),
        warning: false,
        reason: reasons::NOMINATED,
        action: "Nominating",
        note: format!("Pod should schedule on: {target}"),
    }
}

fn failed_scheduling(pod: &Arc<Pod>, message: &str) -> PodEvent {
    PodEvent {
        pod: Arc::clone(pod),
        warning: true,
        reason: reasons::FAILED_SCHEDULING,
        action: "Scheduling",
        note: format!("Failed to schedule pod, {message}"),
    }
}

/// `nodepools not considered: a (why), b (why)`, or nothing.
fn describe_skipped(skipped: &[pools::Skipped]) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = skipped
        .iter()
        .map(|s| format!("{} ({})", s.nodepool, s.reason))
        .collect();
    format!("nodepools not considered: {}", parts.join(", "))
}

/// [`crate::buffers::room::keep_room`] off the async runtime, like [`solve`].
async fn keep_buffer_room(
    problem: Problem,
    plan: &Plan,
    virtual_pods: Vec<(crate::buffers::BufferKey, Pod)>,
) -> Result<(Problem, crate::buffers::room::Room), ControllerError> {
    if virtual_pods.is_empty() {
        return Ok((problem, crate::buffers::room::Room::default()));
    }
    let plan = plan.clone();
    tokio::task::spawn_blocking(move || {
        let room = crate::buffers::room::keep_room(&problem, &plan, virtual_pods);
        (problem, room)
    })
    .await
    .map_err(|error| ControllerError::LoopStopped(format!("the buffers' solve did not finish: {error}")))
}

impl Provisioner {
    /// Places the buffers' virtual pods on the room `plan` leaves, records their fits, and adds
    /// the NodeClaims they need after the real pods' (so limits refuse the buffers' first).
    /// Those plans have no pods: nothing nominates or reports for them.
    async fn add_buffer_room(
        &self,
        problem: Problem,
        plan: &mut Plan,
        virtual_pods: Vec<(crate::buffers::BufferKey, Pod)>,
    ) -> Result<Problem, ControllerError> {
        let (problem, room) = keep_buffer_room(problem, plan, virtual_pods).await?;
        self.ctx.state.buffer_pods.record_fits(room.fits);
        plan.new_nodes.extend(room.new_nodes);
        Ok(problem)
    }
}

/// Solves off the async runtime: a large batch keeps a core busy for a while.
async fn solve(problem: Problem) -> Result<(Problem, Plan), ControllerError> {
    let _scheduling = crate::metrics::scheduling_started(problem.pods.len());
    tokio::task::spawn_blocking(move || {
        let plan = nodewright_solver::solve(&problem);
        crate::metrics::solved(&plan);
        (problem, plan)
    })
    .await
    .map_err(|error| ControllerError::LoopStopped(format!("the solver did not finish: {error}")))
}
