//! The fake cloud's instances and the events it records about them.

use std::collections::BTreeMap;

use jiff::Timestamp;
use nodewright_api::NodeClaim;
use nodewright_catalog::Price;
use nodewright_cloudprovider::OfferingKey;

/// An instance's lifecycle state at some moment, as EC2 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Launched, not yet running (the configured launch latency has not passed).
    Pending,
    Running,
    /// Deleted, or reclaimed after a spot interruption.
    Terminated,
}

/// One instance the fake cloud launched.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `i-` and 17 hex digits, counted from 1 so runs are reproducible.
    pub id: String,
    /// `aws:///<zone>/<id>`, as Karpenter's AWS provider writes it.
    pub provider_id: String,
    pub offering: OfferingKey,
    /// The offering's price when launched, per hour.
    pub price: Price,
    /// Tags as EC2 would hold them; see [`super::tags`].
    pub tags: BTreeMap<String, String>,
    pub launched_at: Timestamp,
    /// When the instance turns running and billing starts: launch plus the launch latency.
    pub running_at: Timestamp,
    /// When a spot interruption warning was sent, if one was.
    pub interrupted_at: Option<Timestamp>,
    /// When the instance stops existing: the delete call, or the spot reclaim after a warning.
    pub terminated_at: Option<Timestamp>,
    /// The NodeClaim `create` returned; `get` and `list` return it.
    pub node_claim: NodeClaim,
}

impl Instance {
    /// The state at `now`.
    pub fn state(&self, now: Timestamp) -> InstanceState {
        if self.terminated_at.is_some_and(|end| end <= now) {
            InstanceState::Terminated
        } else if now < self.running_at {
            InstanceState::Pending
        } else {
            InstanceState::Running
        }
    }

    /// Pending or running at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.state(now) != InstanceState::Terminated
    }

    /// Ends the instance at `at`, unless it already ends earlier.
    pub(crate) fn terminate_by(&mut self, at: Timestamp) {
        self.terminated_at = Some(self.terminated_at.map_or(at, |end| end.min(at)));
    }
}

/// Something the fake cloud did or was told, with when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    pub at: Timestamp,
    pub kind: CloudEventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudEventKind {
    /// `create` launched an instance.
    Launched {
        node_claim: String,
        provider_id: String,
        offering: OfferingKey,
    },
    /// `create` tried an offering that had no capacity.
    InsufficientCapacity {
        node_claim: String,
        offering: OfferingKey,
    },
    /// The EC2 spot interruption warning: the instance is reclaimed at `reclaim_at`.
    SpotInterruptionWarning {
        provider_id: String,
        reclaim_at: Timestamp,
    },
    /// `delete` started terminating an instance.
    TerminationRequested { provider_id: String },
}
