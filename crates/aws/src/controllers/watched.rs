//! EC2NodeClasses from a kube-runtime reflector: the [`NodeClassSource`] the provider reads in a
//! real cluster, and a change counter the status loop waits on.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use nodewright_api::EC2NodeClass;
use tokio::sync::watch;

use crate::NodeClassSource;

/// How often a loop waiting for the first list polls the cache's readiness again.
const SYNC_POLL: Duration = Duration::from_millis(100);

/// The cluster's EC2NodeClasses as last seen by the watch; clones share the cache.
#[derive(Debug, Clone)]
pub struct WatchedNodeClasses {
    store: Store<EC2NodeClass>,
    changes: watch::Receiver<u64>,
}

impl WatchedNodeClasses {
    /// The cache and the future that keeps it up to date (spawn it; it runs until dropped,
    /// re-listing after watch errors with kube-runtime's default backoff).
    pub fn start(client: &Client) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (store, writer) = reflector::store();
        let (sender, changes) = watch::channel(0u64);
        let api: Api<EC2NodeClass> = Api::all(client.clone());
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        let watch = async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(%error, "EC2NodeClass watch failed; retrying");
                    continue;
                }
                sender.send_modify(|count| *count = count.wrapping_add(1));
            }
        };
        (Self { store, changes }, watch)
    }

    /// Waits until the first list has been read.
    pub async fn wait_synced(&self) {
        // kube's readiness future keeps the waker of its latest poller only (a oneshot channel
        // inside), so of two loops waiting at once one would never wake: each waiter polls again
        // on a short timer. Once ready, the future answers at once.
        loop {
            // Its error means the writer was dropped, i.e. the watch future was dropped, after
            // which there is nothing left to wait for.
            if let Ok(_ready_or_dropped) =
                tokio::time::timeout(SYNC_POLL, self.store.wait_until_ready()).await
            {
                return;
            }
        }
    }

    /// Every EC2NodeClass in the cache.
    pub fn all(&self) -> Vec<Arc<EC2NodeClass>> {
        self.store.state()
    }

    /// A receiver whose value moves on every watch event.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}

impl NodeClassSource for WatchedNodeClasses {
    fn get(&self, name: &str) -> Option<Arc<EC2NodeClass>> {
        self.store.get(&reflector::ObjectRef::new(name))
    }
}
