//! The object store: every object of every served type, keyed by (group, resource, namespace,
//! name), with one global, monotonically increasing resourceVersion, a bounded per-type watch
//! history, and the indexes garbage collection needs (uid → object, owner uid → dependents).
//!
//! One mutex guards it all and is held only for map operations: parsing, patching, validation
//! and CEL run outside it, and a write commits only if the object's version is still the one the
//! write started from (writes that computed on a stale base are retried, or answered 409 when the
//! client named a resourceVersion).

mod commit;
mod delete;
mod object;
mod read;
mod watch;
pub(crate) mod write;

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::broadcast;

pub use self::{
    delete::{DeleteOptions, Deleted, Propagation},
    object::{Obj, OwnerRef},
    read::{Filter, ListPage},
    watch::{Change, EventType, WatchStart},
    write::{FieldValidation, Operation, Subresource, WriteOptions},
};
use crate::{
    meta::Clock,
    resources::{GroupResource, Registry},
};

/// Tunables of the store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Changes kept per resource type for watches resuming from an older version; older ones are
    /// compacted and a watch from before them gets 410 Gone.
    pub watch_history: usize,
    /// Changes buffered per watcher before a slow watcher is disconnected.
    pub watch_buffer: usize,
    /// The clock for creation and deletion timestamps.
    pub clock: Clock,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            watch_history: 10_000,
            watch_buffer: 16_384,
            clock: Clock::system(),
        }
    }
}

/// The objects of one resource type.
#[derive(Debug)]
struct Table {
    /// Keyed by `namespace \0 name`, so a namespace is a contiguous, ordered range.
    objects: BTreeMap<Box<str>, Arc<Obj>>,
    history: VecDeque<Arc<Change>>,
    /// Every change at or below this version has left the history.
    compacted: u64,
    sender: broadcast::Sender<Arc<Change>>,
}

impl Table {
    /// A new table has lost no change yet: a watch from any version sees all of its changes.
    fn new(buffer: usize) -> Self {
        Self {
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            sender: broadcast::channel(buffer.max(1)).0,
        }
    }
}

/// The key of an object within its table.
pub(crate) fn object_key(namespace: &str, name: &str) -> Box<str> {
    format!("{namespace}\0{name}").into_boxed_str()
}

/// Where an object lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Location {
    pub(crate) resource: GroupResource,
    pub(crate) key: Box<str>,
}

/// Work for the garbage collector, produced by commits.
#[derive(Clone, Debug)]
pub(crate) enum GcWork {
    /// An object left the store: its dependents may be orphaned, its owners may be waiting.
    Removed {
        uid: Box<str>,
        owners: Vec<Box<str>>,
        namespace: Box<str>,
    },
    /// An object is being deleted with a `foregroundDeletion` or `orphan` finalizer, or is a
    /// terminating namespace.
    Finalize(Location),
    /// An object was written naming owners: if none of them exists, it is garbage.
    CheckOwners(Location),
}

#[derive(Debug)]
pub(crate) struct Inner {
    rv: u64,
    /// Copy-on-write: requests take a cheap snapshot; CRD changes replace it.
    pub(crate) registry: Arc<Registry>,
    tables: HashMap<GroupResource, Table>,
    uids: HashMap<Box<str>, Location>,
    /// Owner uid → uids of the objects naming it.
    dependents: HashMap<Box<str>, HashSet<Box<str>>>,
    gc: Vec<GcWork>,
    config: StoreConfig,
}

/// The store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    config: StoreConfig,
}

fn lock(mutex: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock cannot leave the maps half-updated in a way later readers
    // could not cope with, so a poisoned lock is used as it is.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// An empty store with the built-in types and the three namespaces every cluster has.
    pub fn new(config: StoreConfig) -> Self {
        let store = Self {
            inner: Mutex::new(Inner {
                rv: 0,
                registry: Arc::new(Registry::with_builtins()),
                tables: HashMap::new(),
                uids: HashMap::new(),
                dependents: HashMap::new(),
                gc: Vec::new(),
                config: config.clone(),
            }),
            config,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Some(info) = store.registry().get("", "namespaces") {
                // Creating a fresh namespace in an empty store cannot fail.
                let _ = store.create(&info, "", obj, &WriteOptions::default());
            }
        }
        store
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// A snapshot of the served types.
    pub fn registry(&self) -> Arc<Registry> {
        self.lock().registry.clone()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }
}

impl Inner {
    pub(crate) fn get(&self, resource: &GroupResource, ns: &str, name: &str) -> Option<Arc<Obj>> {
        self.tables
            .get(resource)?
            .objects
            .get(&object_key(ns, name))
            .cloned()
    }

    pub(crate) fn get_at(&self, loc: &Location) -> Option<Arc<Obj>> {
        self.tables.get(&loc.resource)?.objects.get(&loc.key).cloned()
    }

    pub(crate) fn location_of(&self, uid: &str) -> Option<Location> {
        self.uids.get(uid).cloned()
    }

    pub(crate) fn dependents_of(&self, uid: &str) -> Vec<Location> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.uids.get(d).cloned())
            .collect()
    }

    pub(crate) fn exists(&self, uid: &str) -> bool {
        self.uids.contains_key(uid)
    }

    /// Every object of a namespaced type in a namespace.
    pub(crate) fn in_namespace(&self, ns: &str) -> Vec<Location> {
        self.namespace_contents(ns)
            .map(|(resource, key)| Location {
                resource: resource.clone(),
                key: key.clone(),
            })
            .collect()
    }

    /// Whether a namespace still holds any object; stops at the first.
    pub(crate) fn namespace_is_empty(&self, ns: &str) -> bool {
        self.namespace_contents(ns).next().is_none()
    }

    fn namespace_contents<'a>(
        &'a self,
        ns: &str,
    ) -> impl Iterator<Item = (&'a GroupResource, &'a Box<str>)> + 'a {
        let prefix = format!("{ns}\0");
        self.tables
            .iter()
            .filter(|(resource, _)| {
                self.registry
                    .get(&resource.group, &resource.resource)
                    .is_some_and(|i| i.namespaced)
            })
            .flat_map(move |(resource, table)| {
                let keys = table
                    .objects
                    .range::<str, _>((
                        std::ops::Bound::Included(prefix.as_str()),
                        std::ops::Bound::Unbounded,
                    ))
                    .map(|(k, _)| k);
                let prefix = prefix.clone();
                keys.take_while(move |k| k.starts_with(&prefix))
                    .map(move |k| (resource, k))
            })
    }

    pub(crate) fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub(crate) fn take_gc(&mut self) -> Vec<GcWork> {
        std::mem::take(&mut self.gc)
    }

    fn table(&mut self, resource: &GroupResource) -> &mut Table {
        let buffer = self.config.watch_buffer;
        self.tables
            .entry(resource.clone())
            .or_insert_with(|| Table::new(buffer))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        resources::ResourceInfo,
        selector::{FieldSelector, LabelSelector},
    };

    fn store() -> (Store, Arc<ResourceInfo>) {
        let store = Store::new(StoreConfig {
            watch_history: 3,
            ..StoreConfig::default()
        });
        let info = store.registry().get("", "configmaps").unwrap();
        (store, info)
    }

    fn cm(name: &str, labels: &Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}})
    }

    #[test]
    fn list_pages_through_a_namespace_in_name_order() {
        let (store, info) = store();
        for name in ["c", "a", "b", "d"] {
            store
                .create(&info, "default", cm(name, &json!({})), &WriteOptions::default())
                .unwrap();
        }
        let filter = Filter {
            namespace: Some("default".into()),
            ..Filter::default()
        };
        let first = store.list(&info, &filter, Some(3), None).unwrap();
        let names: Vec<&str> = first.items.iter().map(|o| &*o.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(first.remaining, Some(1));
        let second = store
            .list(&info, &filter, Some(3), first.continue_token.as_deref())
            .unwrap();
        let names: Vec<&str> = second.items.iter().map(|o| &*o.name).collect();
        assert_eq!(names, ["d"]);
        assert!(second.continue_token.is_none());
    }

    #[test]
    fn watch_from_a_compacted_version_is_gone() {
        let (store, info) = store();
        let start = store.resource_version();
        for name in ["a", "b", "c", "d", "e"] {
            store
                .create(&info, "default", cm(name, &json!({})), &WriteOptions::default())
                .unwrap();
        }
        let err = store.watch(&info, &Filter::default(), Some(start)).unwrap_err();
        assert_eq!(err.code(), 410);
        let recent = store.resource_version() - 2;
        let ok = store.watch(&info, &Filter::default(), Some(recent)).unwrap();
        assert_eq!(ok.backlog.len(), 2);
    }

    #[test]
    fn label_filter_and_unsupported_field() {
        let (store, info) = store();
        store
            .create(
                &info,
                "default",
                cm("a", &json!({"app": "x"})),
                &WriteOptions::default(),
            )
            .unwrap();
        store
            .create(
                &info,
                "default",
                cm("b", &json!({"app": "y"})),
                &WriteOptions::default(),
            )
            .unwrap();
        let filter = Filter {
            labels: LabelSelector::parse("app=y").unwrap(),
            ..Filter::default()
        };
        let page = store.list(&info, &filter, None, None).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(&*page.items[0].name, "b");
        let bad = Filter {
            fields: FieldSelector::parse("spec.nodeName=x").unwrap(),
            ..Filter::default()
        };
        assert_eq!(store.list(&info, &bad, None, None).unwrap_err().code(), 400);
    }
}
