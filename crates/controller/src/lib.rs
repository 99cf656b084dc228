//! Nodewright's controllers: they watch pods, nodes, NodeClaims, NodePools and node classes
//! through kube-runtime reflectors ([`state`]), and — only on the replica holding the leader
//! Lease ([`leader`]) — provision nodes for pending pods, carry NodeClaims through launch,
//! registration and initialization, terminate them cleanly, and collect garbage.
//!
//! Each reconciler is one module with the phases read → decide (pure) → write. Time comes from
//! an injectable [`Clock`], so the same controllers run against a real cluster and against the
//! simulation's clock in tests and `nodewright sim`.

pub mod buffers;
pub mod context;
pub mod disruption;
pub mod error;
pub mod events;
pub mod explain;
pub mod gc;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod nodepool_hash;
pub mod nodepool_status;
pub mod overlay;
pub mod provisioner;
pub mod repair;
pub mod reservations;
pub mod settings;
pub mod state;
pub mod static_pools;
pub mod termination;
#[cfg(test)]
mod test_fixtures;
pub mod unavailable;

use std::sync::Arc;

use kube::Client;
pub use nodewright_api::clock::Clock;
use nodewright_cloudprovider::CloudProvider;
use tokio::task::JoinSet;

pub use crate::{context::Context, error::ControllerError, settings::Settings};
use crate::{events::Events, leader::Leadership, state::ClusterState, unavailable::UnavailableOfferings};

/// Whether replicas elect a leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// Hold the Lease named in the settings before acting (production: several replicas).
    Lease,
    /// Act at once (a single replica: tests, `nodewright sim`).
    Disabled,
}

/// Runs the controllers until the returned future is dropped.
pub async fn run(
    client: Client,
    cloud: Arc<dyn CloudProvider>,
    clock: Clock,
    settings: Settings,
    election: Election,
) -> Result<(), ControllerError> {
    let mut background = JoinSet::new();
    let (state, watches) = ClusterState::start(&client);
    background.spawn(watches);
    let mut leadership = match election {
        Election::Disabled => Leadership::always(),
        Election::Lease => {
            let config = leader::LeaseConfig {
                namespace: settings.lease_namespace.clone(),
                name: settings.lease_name.clone(),
                identity: settings.identity.clone(),
                duration: settings.lease_duration,
                renew_interval: settings.wall(settings.lease_renew_interval),
            };
            let (leadership, elector) = leader::start(client.clone(), config, clock.clone());
            background.spawn(elector);
            leadership
        }
    };
    state.wait_synced().await;
    let ctx = Context {
        events: Events::new(client.clone(), &settings.identity).with_clock(clock.clone()),
        unavailable: UnavailableOfferings::new(settings.unavailable_offering_ttl),
        settings: Arc::new(settings),
        client,
        state,
        cloud,
        clock,
    };
    metrics::observe(&ctx, &leadership);
    loop {
        leadership.wait_for(true).await;
        tracing::info!(identity = ctx.settings.identity, "leading: starting controllers");
        let mut loops = JoinSet::new();
        spawn_loops(&ctx, &mut loops);
        tokio::select! {
            () = leadership.wait_for(false) => {
                tracing::warn!(identity = ctx.settings.identity, "lost the lease: stopping controllers");
                loops.abort_all();
                while loops.join_next().await.is_some() {}
            }
            Some(ended) = loops.join_next() => {
                // Loops run forever; one ending is a bug (a panic): stop rather than run half a
                // controller.
                loops.abort_all();
                let message = match ended {
                    Ok(()) => "a controller loop returned".to_owned(),
                    Err(join) => join.to_string(),
                };
                return Err(ControllerError::LoopStopped(message));
            }
        }
    }
}

/// The mutating loops, started when this replica leads.
fn spawn_loops(ctx: &Context, loops: &mut JoinSet<()>) {
    // Each loop's cloud calls are metered under its name (Karpenter's controller names).
    let metered = |name| metrics::for_controller(ctx, name);
    loops.spawn(provisioner::run(metered("provisioner")));
    loops.spawn(lifecycle::run(metered("nodeclaim.lifecycle")));
    loops.spawn(nodepool_status::run(metered("nodepool.status")));
    loops.spawn(termination::run(metered("node.termination")));
    loops.spawn(gc::run(metered("nodeclaim.garbagecollection")));
    loops.spawn(disruption::run(metered("disruption")));
    loops.spawn(nodepool_hash::run(metered("nodepool.hash")));
    loops.spawn(disruption::drift::detection::run(metered("nodeclaim.disruption")));
    loops.spawn(disruption::expiration::run(metered("nodeclaim.expiration")));
    loops.spawn(overlay::run(metered("nodeoverlay.controller")));
    loops.spawn(repair::run(metered("node.health")));
    loops.spawn(static_pools::run(metered("static.provisioning")));
    loops.spawn(buffers::run(metered("capacitybuffer")));
    if ctx.settings.reserved_capacity {
        loops.spawn(reservations::capacity_type::run(metered(
            "capacityreservation.capacitytype",
        )));
        loops.spawn(reservations::expiration::run(metered(
            "capacityreservation.expiration",
        )));
    }
}
