//! Leader election on a coordination.k8s.io/v1 Lease, as client-go's leader election does it:
//! a replica holds the Lease while it renews it; another takes it over once `renewTime +
//! leaseDurationSeconds` has passed. Every write is guarded by the Lease's resourceVersion, so
//! two replicas never both believe they won. Only the holder runs the mutating controllers.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use nodewright_api::clock::Clock;
use tokio::sync::watch;

use crate::error::{is_conflict, is_not_found};

/// Whether this replica leads, as it changes.
#[derive(Debug, Clone)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    /// Leading now.
    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until leadership is `leading`.
    pub async fn wait_for(&mut self, leading: bool) {
        if self.0.wait_for(|l| *l == leading).await.is_err() {
            // The elector stopped: leadership never changes again.
            std::future::pending::<()>().await;
        }
    }

    /// A leadership that is always held (single-replica tests, `nodewright sim`).
    pub fn always() -> Self {
        let (sender, receiver) = watch::channel(true);
        // Leak-free: the receiver keeps the last value after the sender is dropped.
        drop(sender);
        Self(receiver)
    }
}

/// The Lease's coordinates and timing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    pub renew_interval: Duration,
}

/// Runs the election until dropped; returns the leadership it maintains.
pub fn start(
    client: Client,
    config: LeaseConfig,
    clock: Clock,
) -> (Leadership, impl Future<Output = ()> + Send) {
    let (sender, receiver) = watch::channel(false);
    let run = async move {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        loop {
            let leading = match try_acquire_or_renew(&api, &config, clock.now()).await {
                Ok(leading) => leading,
                Err(error) => {
                    tracing::warn!(lease = config.name, %error, "leader election request failed");
                    // Without a successful renewal the lease may already belong to someone else:
                    // stop acting until it is confirmed again.
                    false
                }
            };
            sender.send_if_modified(|current| {
                let changed = *current != leading;
                *current = leading;
                changed
            });
            tokio::time::sleep(config.renew_interval).await;
        }
    };
    (Leadership(receiver), run)
}

/// One round: take the Lease if it is free or expired, renew it if held. Returns whether this
/// replica holds it afterwards.
pub async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    now: Timestamp,
) -> Result<bool, kube::Error> {
    let current = match api.get(&config.name).await {
        Ok(lease) => Some(lease),
        Err(error) if is_not_found(&error) => None,
        Err(error) => return Err(error),
    };
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(held_spec(None, config, now)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            // Another replica created it first.
            Err(error) if is_conflict(&error) => Ok(false),
            Err(error) => Err(error),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder != config.identity && !holder.is_empty() && !expired(&spec, config, now) {
        return Ok(false);
    }
    lease.spec = Some(held_spec(Some(&spec), config, now));
    // `replace` carries the resourceVersion read above: if another replica wrote meanwhile, 409.
    match api.replace(&config.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(error) if is_conflict(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

fn expired(spec: &LeaseSpec, config: &LeaseConfig, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = spec.lease_duration_seconds.map_or_else(
        || SignedDuration::try_from(config.duration).unwrap_or(SignedDuration::MAX),
        |s| SignedDuration::from_secs(i64::from(s)),
    );
    renewed.0.checked_add(duration).is_ok_and(|end| end <= now)
}

fn held_spec(previous: Option<&LeaseSpec>, config: &LeaseConfig, now: Timestamp) -> LeaseSpec {
    let previous_holder = previous.and_then(|p| p.holder_identity.as_deref());
    let taking_over = previous_holder != Some(config.identity.as_str());
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(config.duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: if taking_over {
            Some(MicroTime(now))
        } else {
            previous.and_then(|p| p.acquire_time.clone())
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if taking_over && previous_holder.is_some() {
            transitions + 1
        } else {
            transitions
        }),
        ..LeaseSpec::default()
    }
}
