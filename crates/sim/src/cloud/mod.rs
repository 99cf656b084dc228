//! A fake cloud that implements [`nodewright_cloudprovider::CloudProvider`] over the real
//! us-east-1 catalogue and prices, for controller tests and the simulator (Karpenter's KWOK
//! provider, plus what a test needs to provoke and observe).
//!
//! - **Launch**: `create` picks the cheapest offering the NodeClaim accepts (the private
//!   `selection` module has the exact order) and returns the NodeClaim with providerID, labels,
//!   capacity and allocatable. An instance is `Pending` for [`FakeCloudConfig::launch_latency`]
//!   of the injected clock, then `Running`.
//! - **Insufficient capacity**: [`FakeCloud::inject_insufficient_capacity`] empties one offering.
//!   A launch that tries it moves on to the next offering the NodeClaim accepts, as EC2 Fleet
//!   does, and fails with `InsufficientCapacity` listing exactly the offerings it tried when none
//!   had room. Offerings seen failing are reported unavailable by `get_instance_types` until
//!   capacity is restored, like Karpenter's unavailable-offerings cache.
//! - **Spot interruption**: [`FakeCloud::interrupt_spot`] records the warning in
//!   [`FakeCloud::events`] and the instance terminates [`FakeCloudConfig::spot_reclaim_delay`]
//!   later.
//! - **Leak checks**: [`FakeCloud::instances`] lists live instances with their EC2 tags.
//! - **Accounting**: [`FakeCloud::ledger`] bills every instance per second at its offering's price
//!   (integers: nano-dollars).
//! - Node classes can be made not ready and instances drifted.
//! - **AMI drift**: each node class resolves to an AMI ([`DEFAULT_AMI`] until a test calls
//!   [`FakeCloud::set_node_class_ami`], as when a new AMI is released for an `al2023@latest`
//!   alias); instances keep the AMI they launched with (`status.imageID`), and `is_drifted`
//!   reports [`AMI_DRIFT`] for an instance whose AMI is no longer its node class's.
//!
//! Nothing is async inside: every call completes at once against the clock's current time, so a
//! test moving a [`crate::meta::ManualClock`] controls every delay.

mod instance;
mod ledger;
mod matching;
mod provider;
mod selection;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use jiff::{SignedDuration, Timestamp};
use nodewright_catalog::{CapacityType, Catalog, CatalogError, NodeSettings};
use nodewright_cloudprovider::{DriftReason, OfferingKey};

pub use instance::{CloudEvent, CloudEventKind, Instance, InstanceState};
pub use ledger::{Ledger, LedgerEntry, cost_nano_usd};
pub use provider::{INVALID_RESOURCE_REQUEST, NO_COMPATIBLE_INSTANCE_TYPE};

/// The AMI a node class resolves to until a test sets another.
pub const DEFAULT_AMI: &str = "ami-0fa1ce0000000001";
/// `is_drifted`'s reason for an instance whose AMI is no longer its node class's (the AWS
/// provider's reason).
pub const AMI_DRIFT: &str = "AMIDrift";

use crate::meta::Clock;

/// Tag keys the fake cloud puts on instances, as Karpenter's AWS provider does.
pub mod tags {
    /// The NodePool the instance was launched for.
    pub const NODE_POOL: &str = nodewright_api::labels::NODE_POOL;
    /// The NodeClaim the instance was launched for (AWS adds it after registration; the fake at
    /// launch, so leak checks can name the NodeClaim).
    pub const NODE_CLAIM: &str = "karpenter.sh/nodeclaim";
    /// The EC2NodeClass the instance was launched with.
    pub const NODE_CLASS: &str = nodewright_api::labels::AWS_EC2_NODE_CLASS;
    /// The cluster's name.
    pub const CLUSTER_NAME: &str = "eks:eks-cluster-name";
    /// `kubernetes.io/cluster/<name>` = `owned` marks the cluster's resources.
    pub const CLUSTER_PREFIX: &str = "kubernetes.io/cluster/";
}

/// Delays and names of a [`FakeCloud`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCloudConfig {
    /// From `create` until the instance runs (and billing starts).
    pub launch_latency: SignedDuration,
    /// From the spot interruption warning until the instance is reclaimed (EC2: two minutes).
    pub spot_reclaim_delay: SignedDuration,
    /// Written into the cluster tags.
    pub cluster_name: String,
}

impl Default for FakeCloudConfig {
    fn default() -> Self {
        Self {
            launch_latency: SignedDuration::ZERO,
            spot_reclaim_delay: SignedDuration::from_mins(2),
            cluster_name: "nodewright-sim".to_owned(),
        }
    }
}

/// Why an interruption could not be injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterruptError {
    #[error("no live instance {0}")]
    NotFound(String),
    #[error("instance {provider_id} is {capacity_type}, not spot")]
    NotSpot {
        provider_id: String,
        capacity_type: &'static str,
    },
}

/// The fake cloud. Clones share one cloud.
#[derive(Clone)]
pub struct FakeCloud {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Catalog,
    clock: Clock,
    config: FakeCloudConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    launched: u64,
    /// Every instance ever launched, in launch order; terminated ones stay for the ledger.
    instances: Vec<Instance>,
    /// Offerings a test emptied.
    injected_ice: BTreeSet<OfferingKey>,
    /// Injected offerings a launch has tried: the cloud now knows they are out of capacity.
    observed_ice: BTreeSet<OfferingKey>,
    events: Vec<CloudEvent>,
    drifted: BTreeMap<String, DriftReason>,
    /// Node class name → why it is not ready.
    not_ready_node_classes: BTreeMap<String, String>,
    /// Node class name → the AMI it resolves to now (absent: [`DEFAULT_AMI`]).
    node_class_amis: BTreeMap<String, String>,
    /// AMIs whose instances boot but never join the cluster (a bad image).
    broken_amis: BTreeSet<String>,
}

impl State {
    fn ami_of(&self, node_class: &str) -> &str {
        self.node_class_amis
            .get(node_class)
            .map_or(DEFAULT_AMI, String::as_str)
    }
}

impl fmt::Debug for FakeCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("FakeCloud")
            .field("region", &self.inner.catalog.region())
            .field("config", &self.inner.config)
            .field("instances", &state.instances.len())
            .finish_non_exhaustive()
    }
}

impl FakeCloud {
    /// A cloud selling `catalog`'s offerings, timed by `clock`.
    pub fn new(catalog: Catalog, clock: Clock, config: FakeCloudConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                catalog,
                clock,
                config,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The shipped us-east-1 catalogue under default node settings.
    pub fn us_east_1(clock: Clock, config: FakeCloudConfig) -> Result<Self, CatalogError> {
        Ok(Self::new(
            Catalog::us_east_1(&NodeSettings::default())?,
            clock,
            config,
        ))
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn config(&self) -> &FakeCloudConfig {
        &self.inner.config
    }

    /// The injected clock's current time.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave `State` half-updated in a way later calls misread: every
        // mutation is a single push or insert.
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Empties an offering: launches trying it fail over to the next one.
    pub fn inject_insufficient_capacity(&self, offering: OfferingKey) {
        self.state().injected_ice.insert(offering);
    }

    /// Gives an emptied offering its capacity back.
    pub fn restore_capacity(&self, offering: &OfferingKey) {
        let mut state = self.state();
        state.injected_ice.remove(offering);
        state.observed_ice.remove(offering);
    }

    /// Sends the spot interruption warning for a live spot instance; it is reclaimed
    /// [`FakeCloudConfig::spot_reclaim_delay`] from now, which this returns.
    pub fn interrupt_spot(&self, provider_id: &str) -> Result<Timestamp, InterruptError> {
        let now = self.now();
        let reclaim_at = now
            .checked_add(self.inner.config.spot_reclaim_delay)
            .unwrap_or(Timestamp::MAX);
        let mut state = self.state();
        let instance = state
            .instances
            .iter_mut()
            .find(|i| i.provider_id == provider_id && i.is_live(now))
            .ok_or_else(|| InterruptError::NotFound(provider_id.to_owned()))?;
        if instance.offering.capacity_type != CapacityType::Spot {
            return Err(InterruptError::NotSpot {
                provider_id: provider_id.to_owned(),
                capacity_type: instance.offering.capacity_type.label(),
            });
        }
        instance.interrupted_at = Some(now);
        instance.terminate_by(reclaim_at);
        state.events.push(CloudEvent {
            at: now,
            kind: CloudEventKind::SpotInterruptionWarning {
                provider_id: provider_id.to_owned(),
                reclaim_at,
            },
        });
        Ok(reclaim_at)
    }

    /// Makes `create` and `get_instance_types` answer `NodeClassNotReady` for this node class.
    pub fn mark_node_class_not_ready(&self, node_class: &str, message: &str) {
        self.state()
            .not_ready_node_classes
            .insert(node_class.to_owned(), message.to_owned());
    }

    pub fn mark_node_class_ready(&self, node_class: &str) {
        self.state().not_ready_node_classes.remove(node_class);
    }

    /// Makes the node class resolve to `ami`: instances launched from now on get it, and live
    /// instances with another AMI are drifted.
    pub fn set_node_class_ami(&self, node_class: &str, ami: &str) {
        self.state()
            .node_class_amis
            .insert(node_class.to_owned(), ami.to_owned());
    }

    /// The AMI the node class resolves to now.
    pub fn node_class_ami(&self, node_class: &str) -> String {
        self.state().ami_of(node_class).to_owned()
    }

    /// Makes instances running `ami` never join the cluster: they run (and bill) but their
    /// kubelet never registers a Node, as with a broken image.
    pub fn break_ami(&self, ami: &str) {
        self.state().broken_amis.insert(ami.to_owned());
    }

    /// Whether instances running `ami` never join ([`FakeCloud::break_ami`]).
    pub fn is_ami_broken(&self, ami: &str) -> bool {
        self.state().broken_amis.contains(ami)
    }

    /// Makes `is_drifted` report `reason` for the instance.
    pub fn mark_drifted(&self, provider_id: &str, reason: DriftReason) {
        self.state().drifted.insert(provider_id.to_owned(), reason);
    }

    /// Pending and running instances, with their tags, in launch order.
    pub fn instances(&self) -> Vec<Instance> {
        let now = self.now();
        self.state()
            .instances
            .iter()
            .filter(|i| i.is_live(now))
            .cloned()
            .collect()
    }

    /// Every instance ever launched, terminated ones included.
    pub fn all_instances(&self) -> Vec<Instance> {
        self.state().instances.clone()
    }

    /// One instance, live or not.
    pub fn instance(&self, provider_id: &str) -> Option<Instance> {
        self.state()
            .instances
            .iter()
            .find(|i| i.provider_id == provider_id)
            .cloned()
    }

    /// Everything recorded so far, oldest first.
    pub fn events(&self) -> Vec<CloudEvent> {
        self.state().events.clone()
    }

    /// Every instance's bill as of now.
    pub fn ledger(&self) -> Ledger {
        let now = self.now();
        Ledger::at(&self.state().instances, now)
    }
}
