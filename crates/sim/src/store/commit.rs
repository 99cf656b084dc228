//! Commits: the only code that changes the maps. Each assigns the next resourceVersion, updates
//! the uid and owner indexes, records the change in the type's watch history (compacting past the
//! window), tells watchers, queues garbage-collection work and keeps CRD registrations in step.

use std::sync::Arc;

use serde_json::Value;

use super::{Change, EventType, GcWork, Inner, Location, Obj, object_key, write};
use crate::{
    crd,
    resources::{GroupResource, ResourceInfo},
};

impl Inner {
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
        let location = || Location {
            resource: resource.clone(),
            key: object_key(&obj.namespace, &obj.name),
        };
        if finalize {
            self.gc.push(GcWork::Finalize(location()));
        }
        let owners_changed = prev.as_ref().is_none_or(|p| p.owners != obj.owners);
        if owners_changed && !obj.owners.is_empty() && !obj.deleting {
            self.gc.push(GcWork::CheckOwners(location()));
        }
        self.record(
            &resource,
            Change {
                kind,
                obj: obj.clone(),
                prev,
            },
        );
        if crate::events::is_events_v1(&info.group, &info.plural)
            && let Some(core) = self.registry.get("", "events")
        {
            self.commit_put(&core, crate::events::to_core(&value));
        }
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
        // Mirrored events share a uid with their source: only the entry pointing here goes.
        let here = Location {
            resource: resource.clone(),
            key: key.clone(),
        };
        if self.uids.get(&prev.uid) == Some(&here) {
            self.uids.remove(&prev.uid);
        }
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
        if crate::events::is_events_v1(&info.group, &info.plural)
            && let Some(core) = self.registry.get("", "events")
        {
            self.commit_remove(&core, ns, name);
        }
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
