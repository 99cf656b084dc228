//! Watches: what a change looks like, where a new watch starts (synthetic ADDED events, or the
//! history since a version, or 410 Gone when that version was compacted), and the fault hooks
//! that compact the history or drop every watch.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::{Filter, Obj, Store, Table};
use crate::{
    error::{ApiError, ApiResult},
    resources::ResourceInfo,
};

/// What happened to an object, as a watch reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed from the store.
    Deleted,
}

impl EventType {
    /// `ADDED`, `MODIFIED`, `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, shared by the history and every watcher.
#[derive(Debug)]
pub struct Change {
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for a deletion: its last state, at the deletion's version).
    pub obj: Arc<Obj>,
    /// The object before the change, so a selector watch can tell "entered" from "left".
    pub prev: Option<Arc<Obj>>,
}

/// What a new watch starts with.
#[derive(Debug)]
pub struct WatchStart {
    /// Changes to send first (synthetic ADDED events, or the history since the requested version).
    pub backlog: Vec<Arc<Change>>,
    /// Live changes from here on.
    pub receiver: broadcast::Receiver<Arc<Change>>,
    /// The store's version when the watch started.
    pub rv: u64,
}

impl Store {
    /// Starts a watch from a version (None: from now, after synthetic ADDED events for every
    /// current object, as a watch without a version or with version "0" starts).
    pub fn watch(&self, info: &ResourceInfo, filter: &Filter, from: Option<u64>) -> ApiResult<WatchStart> {
        filter.check(info)?;
        let mut inner = self.lock();
        let rv = inner.rv;
        let buffer = self.config.watch_buffer;
        let table = inner
            .tables
            .entry(info.key())
            .or_insert_with(|| Table::new(buffer));
        let receiver = table.sender.subscribe();
        let backlog = match from {
            None => table
                .objects
                .values()
                .filter(|obj| filter.matches(info, obj))
                .map(|obj| {
                    Arc::new(Change {
                        kind: EventType::Added,
                        obj: obj.clone(),
                        prev: None,
                    })
                })
                .collect(),
            Some(from) if from < table.compacted => {
                return Err(ApiError::Gone {
                    requested: from,
                    oldest: table.compacted + 1,
                });
            }
            Some(from) => table
                .history
                .iter()
                .filter(|c| c.obj.rv > from)
                .cloned()
                .collect(),
        };
        Ok(WatchStart {
            backlog,
            receiver,
            rv,
        })
    }

    /// Drops every change from the watch histories, as an etcd compaction does: watches resuming
    /// from any earlier version get 410 Gone.
    pub fn compact(&self) {
        let mut inner = self.lock();
        let rv = inner.rv;
        for table in inner.tables.values_mut() {
            table.history.clear();
            table.compacted = rv;
        }
    }

    /// Disconnects every watch (their streams end; clients re-watch).
    pub fn drop_watches(&self) {
        let mut inner = self.lock();
        let buffer = self.config.watch_buffer;
        for table in inner.tables.values_mut() {
            table.sender = broadcast::channel(buffer.max(1)).0;
        }
    }
}
