//! The object store: every object of every served type, keyed by (group, resource, namespace,
//! name), with one global, monotonically increasing resourceVersion, a bounded per-type watch
//! history, and the indexes garbage collection needs (uid → object, owner uid → dependents).
//!
//! One mutex guards it all and is held only for map operations: parsing, patching, validation
//! and CEL run outside it, and a write commits only if the object's version is still the one the
//! write started from (writes that computed on a stale base are retried, or answered 409 when the
//! client named a resourceVersion).

mod object;
pub(crate) mod write;

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    fmt::Write as _,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use serde_json::Value;
use tokio::sync::broadcast;

pub use self::{
    object::{Obj, OwnerRef},
    write::{DeleteOptions, Deleted, FieldValidation, Operation, Propagation, Subresource, WriteOptions},
};
use crate::{
    crd,
    error::{ApiError, ApiResult},
    meta::Clock,
    resources::{GroupResource, Registry, ResourceInfo},
    selector::{FieldSelector, LabelSelector},
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
    fn new(buffer: usize, compacted: u64) -> Self {
        Self {
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted,
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
}

#[derive(Debug)]
pub(crate) struct Inner {
    rv: u64,
    pub(crate) registry: Registry,
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

/// Which objects a list or watch wants.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this namespace (None: all namespaces).
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether an object passes.
    pub fn matches(&self, info: &ResourceInfo, obj: &Obj) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| ns.is_empty() || *obj.namespace == *ns)
            && self.labels.matches(|k| obj.label(k))
            && self.fields.matches(|f| obj.field(info, f))
    }

    /// Rejects field selectors naming fields the type does not index.
    pub fn check(&self, info: &ResourceInfo) -> ApiResult<()> {
        for term in &self.fields.0 {
            if !info.field_is_selectable(&term.field) {
                return Err(ApiError::BadRequest(format!(
                    "field label not supported: {}",
                    term.field
                )));
            }
        }
        Ok(())
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    /// The objects, in namespace/name order.
    pub items: Vec<Arc<Obj>>,
    /// The store's version at the time of the list.
    pub rv: u64,
    /// The token for the next page.
    pub continue_token: Option<String>,
    /// Objects after this page (when no selector filters them).
    pub remaining: Option<u64>,
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
                registry: Registry::with_builtins(),
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
    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// One object.
    pub fn get(&self, info: &ResourceInfo, namespace: &str, name: &str) -> ApiResult<Arc<Obj>> {
        self.lock()
            .get(&info.key(), namespace, name)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))
    }

    /// The object with a uid, wherever it is.
    pub fn get_by_uid(&self, uid: &str) -> Option<(GroupResource, Arc<Obj>)> {
        let inner = self.lock();
        let loc = inner.uids.get(uid)?;
        let obj = inner.tables.get(&loc.resource)?.objects.get(&loc.key)?;
        Some((loc.resource.clone(), obj.clone()))
    }

    /// A page of objects.
    pub fn list(
        &self,
        info: &ResourceInfo,
        filter: &Filter,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> ApiResult<ListPage> {
        filter.check(info)?;
        let inner = self.lock();
        let start = continue_token.map(decode_continue).transpose()?;
        let table = inner.tables.get(&info.key());
        if let (Some((rv, _)), Some(t)) = (&start, table)
            && *rv < t.compacted
        {
            return Err(ApiError::ContinueExpired);
        }
        let mut page = ListPage {
            items: Vec::new(),
            rv: start.as_ref().map_or(inner.rv, |(rv, _)| *rv),
            continue_token: None,
            remaining: None,
        };
        let Some(table) = table else {
            return Ok(page);
        };
        let prefix: Option<String> = filter
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty() && info.namespaced)
            .map(|ns| format!("{ns}\0"));
        let lower: std::ops::Bound<&str> = match (&start, &prefix) {
            (Some((_, key)), _) => std::ops::Bound::Excluded(key.as_str()),
            (None, Some(p)) => std::ops::Bound::Included(p.as_str()),
            (None, None) => std::ops::Bound::Unbounded,
        };
        let mut iter = table
            .objects
            .range::<str, _>((lower, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| prefix.as_deref().is_none_or(|p| k.starts_with(p)))
            .filter(|(_, obj)| filter.matches(info, obj));
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        for (_, obj) in iter.by_ref().take(limit) {
            page.items.push(obj.clone());
        }
        if page.items.len() == limit {
            let rest = iter.count();
            if rest > 0 {
                if let Some(last) = page.items.last() {
                    page.continue_token =
                        Some(encode_continue(page.rv, &object_key(&last.namespace, &last.name)));
                }
                if filter.labels.is_empty() && filter.fields.0.is_empty() {
                    page.remaining = Some(rest as u64);
                }
            }
        }
        Ok(page)
    }

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
            .or_insert_with(|| Table::new(buffer, rv));
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

    /// Counts of objects per type and the bytes their JSON holds, for memory reports.
    pub fn stats(&self) -> BTreeMap<String, (usize, usize)> {
        let inner = self.lock();
        inner
            .tables
            .iter()
            .map(|(k, t)| {
                let bytes = t.objects.values().map(|o| o.heap_size()).sum();
                (format!("{}.{}", k.resource, k.group), (t.objects.len(), bytes))
            })
            .collect()
    }
}

fn encode_continue(rv: u64, key: &str) -> String {
    let raw = format!("{rv}:{key}");
    raw.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn decode_continue(token: &str) -> ApiResult<(u64, String)> {
    let bad = || ApiError::BadRequest(format!("invalid continue token \"{token}\""));
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (rv, key) = text.split_once(':').ok_or_else(bad)?;
    Ok((rv.parse().map_err(|_| bad())?, key.to_owned()))
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
        let prefix = format!("{ns}\0");
        let mut out = Vec::new();
        for (resource, table) in &self.tables {
            let namespaced = self
                .registry
                .get(&resource.group, &resource.resource)
                .is_some_and(|i| i.namespaced);
            if !namespaced {
                continue;
            }
            for key in table
                .objects
                .range::<str, _>((
                    std::ops::Bound::Included(prefix.as_str()),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(k, _)| k)
                .take_while(|k| k.starts_with(&prefix))
            {
                out.push(Location {
                    resource: resource.clone(),
                    key: key.clone(),
                });
            }
        }
        out
    }

    pub(crate) fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub(crate) fn take_gc(&mut self) -> Vec<GcWork> {
        std::mem::take(&mut self.gc)
    }

    fn table(&mut self, resource: &GroupResource) -> &mut Table {
        let (buffer, rv) = (self.config.watch_buffer, self.rv);
        self.tables
            .entry(resource.clone())
            .or_insert_with(|| Table::new(buffer, rv))
    }

    fn record(&mut self, resource: &GroupResource, change: Change) {
        let window = self.config.watch_history;
        let change = Arc::new(change);
        let table = self.table(resource);
        table.history.push_back(change.clone());
        while table.history.len() > window {
            if let Some(old) = table.history.pop_front() {
                table.compacted = old.obj.rv;
            }
        }
        // No receivers is fine: nobody watches this type.
        let _ = table.sender.send(change);
    }

    fn index_owners(&mut self, uid: &str, old: Option<&Obj>, new: Option<&Obj>) {
        let old_owners: Vec<&str> = old
            .map(|o| o.owners.iter().map(|r| &*r.uid).collect())
            .unwrap_or_default();
        let new_owners: Vec<&str> = new
            .map(|o| o.owners.iter().map(|r| &*r.uid).collect())
            .unwrap_or_default();
        for owner in &old_owners {
            if !new_owners.contains(owner)
                && let Some(set) = self.dependents.get_mut(*owner)
            {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(*owner);
                }
            }
        }
        for owner in new_owners {
            self.dependents
                .entry(owner.into())
                .or_default()
                .insert(uid.into());
        }
    }

    /// Stores a new version of an object (the value's resourceVersion is set here).
    pub(crate) fn commit_put(&mut self, info: &ResourceInfo, mut value: Value) -> Arc<Obj> {
        let rv = self.next_rv();
        crate::meta::metadata_mut(&mut value).insert("resourceVersion".into(), rv.to_string().into());
        let obj = Arc::new(Obj::new(info, &value, rv));
        let resource = info.key();
        let key = object_key(&obj.namespace, &obj.name);
        let prev = self.table(&resource).objects.insert(key.clone(), obj.clone());
        self.index_owners(&obj.uid, prev.as_deref(), Some(&obj));
        self.uids.insert(
            obj.uid.clone(),
            Location {
                resource: resource.clone(),
                key,
            },
        );
        let kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        if info.group == crd::GROUP && info.plural == "customresourcedefinitions" {
            crd::on_write(self, &value);
        }
        let finalize = obj.deleting
            && (obj
                .finalizers
                .iter()
                .any(|f| &**f == write::FOREGROUND || &**f == write::ORPHAN)
                || (info.group.is_empty() && info.plural == "namespaces"));
        if finalize {
            self.gc.push(GcWork::Finalize(Location {
                resource: resource.clone(),
                key: object_key(&obj.namespace, &obj.name),
            }));
        }
        self.record(
            &resource,
            Change {
                kind,
                obj: obj.clone(),
                prev,
            },
        );
        obj
    }

    /// Removes an object; the DELETED event carries its last state at a new version.
    pub(crate) fn commit_remove(&mut self, info: &ResourceInfo, ns: &str, name: &str) -> Option<Arc<Obj>> {
        let resource = info.key();
        let key = object_key(ns, name);
        let prev = self.tables.get_mut(&resource)?.objects.remove(&key)?;
        let rv = self.next_rv();
        let mut value = prev.value();
        crate::meta::metadata_mut(&mut value).insert("resourceVersion".into(), rv.to_string().into());
        let obj = Arc::new(Obj::new(info, &value, rv));
        self.uids.remove(&prev.uid);
        self.index_owners(&prev.uid, Some(&prev), None);
        self.gc.push(GcWork::Removed {
            uid: prev.uid.clone(),
            owners: prev.owners.iter().map(|o| o.uid.clone()).collect(),
            namespace: prev.namespace.clone(),
        });
        if info.group == crd::GROUP && info.plural == "customresourcedefinitions" {
            crd::on_remove(self, &value);
        }
        self.record(
            &resource,
            Change {
                kind: EventType::Deleted,
                obj: obj.clone(),
                prev: Some(prev),
            },
        );
        Some(obj)
    }

    /// Drops a whole type's objects (its CRD went away), telling watchers each one is deleted.
    pub(crate) fn drop_table(&mut self, info: &ResourceInfo) {
        let keys: Vec<(Box<str>, Box<str>)> = self
            .tables
            .get(&info.key())
            .map(|t| {
                t.objects
                    .values()
                    .map(|o| (o.namespace.clone(), o.name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (ns, name) in keys {
            self.commit_remove(info, &ns, &name);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
    fn continue_tokens_round_trip() {
        let token = encode_continue(42, "default\0web");
        assert_eq!(decode_continue(&token).unwrap(), (42, "default\0web".into()));
        assert!(decode_continue("zz").is_err());
        assert!(decode_continue("abc").is_err());
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
