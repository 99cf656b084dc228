//! What every controller loop shares.

use std::sync::Arc;

use kube::Client;
use nodewright_api::clock::Clock;
use nodewright_cloudprovider::CloudProvider;

use crate::{events::Events, settings::Settings, state::ClusterState, unavailable::UnavailableOfferings};

/// The client, the watched state, the cloud, the clock, settings, the unavailable-offerings
/// cache and the event publisher. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub state: ClusterState,
    pub cloud: Arc<dyn CloudProvider>,
    pub clock: Clock,
    pub settings: Arc<Settings>,
    pub unavailable: UnavailableOfferings,
    pub events: Events,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("cloud", &self.cloud.name())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
