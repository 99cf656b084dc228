//! Garbage collection, run right after every write that removed an object or started a
//! foreground, orphan or namespace deletion (so the cascade has finished when the write's
//! response is sent, where a real cluster would finish it a moment later):
//! - background: an object all of whose owners are gone is deleted (also when it is created
//!   naming only owners that do not exist);
//! - foreground: the owner keeps the `foregroundDeletion` finalizer while dependents are deleted
//!   (in the foreground themselves when they block it), and leaves once no dependent with
//!   `blockOwnerDeletion` remains;
//! - orphan: dependents lose their owner reference, then the `orphan` finalizer is removed;
//! - namespaces: everything in a terminating namespace is deleted, then the namespace goes.

use serde_json::Value;

use crate::store::{
    DeleteOptions, GcWork, Location, Propagation, Store, Subresource, WriteOptions,
    write::{FOREGROUND, ORPHAN},
};

impl Store {
    /// Runs garbage collection until no work is left.
    pub(crate) fn collect_garbage(&self) {
        // Bounded so that a bug cannot spin forever; each round makes progress on real objects.
        for _ in 0..1_000_000 {
            let work = self.lock().take_gc();
            if work.is_empty() {
                return;
            }
            for item in work {
                match item {
                    GcWork::Removed {
                        uid,
                        owners,
                        namespace,
                    } => self.removed(&uid, &owners, &namespace),
                    GcWork::Finalize(location) => self.finalize(&location),
                    GcWork::CheckOwners(location) => self.check_owners(&location),
                }
            }
        }
    }

    fn info_of(&self, location: &Location) -> Option<std::sync::Arc<crate::resources::ResourceInfo>> {
        self.lock()
            .registry
            .get(&location.resource.group, &location.resource.resource)
    }

    fn delete_at(&self, location: &Location, propagation: Propagation) {
        let Some(info) = self.info_of(location) else {
            return;
        };
        let (ns, name) = location.key.split_once('\0').unwrap_or(("", &location.key));
        let opts = DeleteOptions {
            propagation: Some(propagation),
            ..DeleteOptions::default()
        };
        // NotFound means someone else deleted it first: nothing to do.
        let _ = self.delete_no_gc(&info, ns, name, &opts);
    }

    fn edit_at(&self, location: &Location, edit: &dyn Fn(&mut Value)) {
        let Some(info) = self.info_of(location) else {
            return;
        };
        let (ns, name) = location.key.split_once('\0').unwrap_or(("", &location.key));
        let opts = WriteOptions {
            field_manager: Some("garbage-collector".into()),
            ..WriteOptions::default()
        };
        let _ = self.update_no_gc(&info, ns, name, Subresource::Main, &opts, &mut |current| {
            let mut value = current.cloned().ok_or(crate::error::ApiError::NoResource)?;
            edit(&mut value);
            Ok(value)
        });
    }

    fn removed(&self, uid: &str, owners: &[Box<str>], namespace: &str) {
        let orphans: Vec<Location> = {
            let inner = self.lock();
            inner
                .dependents_of(uid)
                .into_iter()
                .filter(|loc| {
                    inner
                        .get_at(loc)
                        .is_some_and(|dep| !dep.deleting && dep.owners.iter().all(|o| !inner.exists(&o.uid)))
                })
                .collect()
        };
        for loc in orphans {
            self.delete_at(&loc, Propagation::Background);
        }
        let waiting: Vec<Location> = {
            let inner = self.lock();
            owners
                .iter()
                .filter_map(|o| inner.location_of(o))
                .filter(|loc| {
                    inner
                        .get_at(loc)
                        .is_some_and(|o| o.deleting && o.finalizers.iter().any(|f| &**f == FOREGROUND))
                })
                .collect()
        };
        for loc in waiting {
            self.finalize(&loc);
        }
        if !namespace.is_empty() {
            // A terminating namespace finishes once its last object is gone; its contents were
            // all asked to delete when it started terminating, so nothing is rescanned here.
            let ns = Location {
                resource: crate::resources::GroupResource::new("", "namespaces"),
                key: crate::store::object_key("", namespace),
            };
            let emptied = {
                let inner = self.lock();
                inner.get_at(&ns).is_some_and(|o| o.deleting) && inner.namespace_is_empty(namespace)
            };
            if emptied {
                self.release_namespace(&ns);
            }
        }
    }

    /// Deletes an object none of whose owners exists (created with dangling owner references).
    fn check_owners(&self, location: &Location) {
        let dangling = {
            let inner = self.lock();
            inner.get_at(location).is_some_and(|o| {
                !o.deleting && !o.owners.is_empty() && o.owners.iter().all(|r| !inner.exists(&r.uid))
            })
        };
        if dangling {
            self.delete_at(location, Propagation::Background);
        }
    }

    fn finalize(&self, location: &Location) {
        let Some(obj) = self.lock().get_at(location) else {
            return;
        };
        if !obj.deleting {
            return;
        }
        if location.resource.group.is_empty() && location.resource.resource == "namespaces" {
            self.finalize_namespace(location, &obj.name);
            return;
        }
        let has = |f: &str| obj.finalizers.iter().any(|x| &**x == f);
        if has(ORPHAN) {
            let uid = obj.uid.to_string();
            let dependents = self.lock().dependents_of(&uid);
            for dep in dependents {
                self.edit_at(&dep, &|v| remove_owner(v, &uid));
            }
            self.edit_at(location, &|v| remove_finalizer(v, ORPHAN));
        }
        if has(FOREGROUND) {
            let deps: Vec<(Location, bool, bool)> = {
                let inner = self.lock();
                inner
                    .dependents_of(&obj.uid)
                    .into_iter()
                    .filter_map(|loc| {
                        let dep = inner.get_at(&loc)?;
                        let blocks = dep.owners.iter().any(|o| o.uid == obj.uid && o.block);
                        Some((loc, dep.deleting, blocks))
                    })
                    .collect()
            };
            for (loc, deleting, blocks) in &deps {
                if !deleting {
                    let policy = if *blocks {
                        Propagation::Foreground
                    } else {
                        Propagation::Background
                    };
                    self.delete_at(loc, policy);
                }
            }
            let blocked = {
                let inner = self.lock();
                inner.dependents_of(&obj.uid).into_iter().any(|loc| {
                    inner
                        .get_at(&loc)
                        .is_some_and(|d| d.owners.iter().any(|o| o.uid == obj.uid && o.block))
                })
            };
            if !blocked {
                self.edit_at(location, &|v| remove_finalizer(v, FOREGROUND));
            }
        }
    }

    fn finalize_namespace(&self, location: &Location, name: &str) {
        let contents = self.lock().in_namespace(name);
        for loc in &contents {
            if self.lock().get_at(loc).is_some_and(|o| !o.deleting) {
                self.delete_at(loc, Propagation::Background);
            }
        }
        if self.lock().namespace_is_empty(name) {
            self.release_namespace(location);
        }
    }

    /// Drops a namespace's `spec.finalizers`, letting its deletion complete.
    fn release_namespace(&self, location: &Location) {
        self.edit_at(location, &|v| {
            if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("finalizers");
            }
        });
    }
}

fn remove_finalizer(value: &mut Value, finalizer: &str) {
    if let Some(list) = value
        .get_mut("metadata")
        .and_then(|m| m.get_mut("finalizers"))
        .and_then(Value::as_array_mut)
    {
        list.retain(|f| f.as_str() != Some(finalizer));
    }
}

fn remove_owner(value: &mut Value, uid: &str) {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(list) = meta.get_mut("ownerReferences").and_then(Value::as_array_mut) {
            list.retain(|o| o.get("uid").and_then(Value::as_str) != Some(uid));
        }
        if meta
            .get("ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            meta.remove("ownerReferences");
        }
    }
}
