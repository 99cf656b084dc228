//! Deletes: preconditions, propagation policies (the `foregroundDeletion` and `orphan`
//! finalizers), graceful termination of pods bound to a node, the protected namespaces, and the
//! terminating state an object keeps while finalizers remain.

use std::sync::Arc;

use serde_json::Value;

use super::{
    Obj, Store,
    write::{FOREGROUND, ORPHAN, ready_to_remove, subject},
};
use crate::{
    error::{ApiError, ApiResult},
    meta::{self, metadata_mut},
    resources::ResourceInfo,
};

/// `propagationPolicy` of a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Delete now; the garbage collector deletes dependents afterwards.
    Background,
    /// Keep the owner (with the `foregroundDeletion` finalizer) until blocking dependents are gone.
    Foreground,
    /// Remove the owner reference from dependents instead of deleting them.
    Orphan,
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `propagationPolicy` (Background when unset).
    pub propagation: Option<Propagation>,
    /// `gracePeriodSeconds` (pods only; others are deleted at once).
    pub grace_period: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// The outcome of a delete.
#[derive(Clone, Debug)]
pub enum Deleted {
    /// The object left the store (the value is its last state).
    Gone(Arc<Obj>),
    /// The object is terminating: finalizers or a grace period keep it for now.
    Pending(Arc<Obj>),
}

impl Store {
    /// Deletes an object.
    pub fn delete(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let result = self.delete_no_gc(info, ns, name, opts);
        self.collect_garbage();
        result
    }

    pub(crate) fn delete_no_gc(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        if info.group.is_empty()
            && info.plural == "namespaces"
            && matches!(name, "default" | "kube-system" | "kube-public")
        {
            return Err(ApiError::Forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        let now = self.config().clock.now();
        let mut inner = self.lock();
        let current = inner
            .get(&info.key(), ns, name)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
        if let Some(uid) = &opts.uid
            && *uid != *current.uid
        {
            return Err(ApiError::conflict(
                subject(info, name),
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    current.uid
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && *rv != current.rv.to_string()
        {
            return Err(ApiError::conflict(
                subject(info, name),
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    current.rv
                ),
            ));
        }
        let mut value = current.value();
        let grace = graceful_period(info, &value, opts.grace_period);
        let mut finalizers: Vec<Value> = current.finalizers.iter().map(|f| Value::from(&**f)).collect();
        match opts.propagation {
            Some(Propagation::Foreground) if !current.finalizers.iter().any(|f| &**f == FOREGROUND) => {
                finalizers.push(FOREGROUND.into());
            }
            Some(Propagation::Orphan) if !current.finalizers.iter().any(|f| &**f == ORPHAN) => {
                finalizers.push(ORPHAN.into());
            }
            _ => {}
        }
        let is_namespace = info.group.is_empty() && info.plural == "namespaces";
        let must_wait = !finalizers.is_empty() || grace > 0 || is_namespace;
        if !must_wait {
            if opts.dry_run {
                return Ok(Deleted::Gone(current));
            }
            let gone = inner.commit_remove(info, ns, name).unwrap_or(current);
            return Ok(Deleted::Gone(gone));
        }
        let meta = metadata_mut(&mut value);
        let already = meta.get("deletionTimestamp").is_some();
        let old_grace = meta
            .get("deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if !already || grace < old_grace {
            let at = now
                .checked_add(jiff::SignedDuration::from_secs(grace))
                .unwrap_or(now);
            meta.insert("deletionTimestamp".into(), meta::rfc3339(at).into());
            meta.insert("deletionGracePeriodSeconds".into(), grace.into());
        }
        meta.insert("finalizers".into(), Value::Array(finalizers));
        if is_namespace {
            meta::set_path(&mut value, "status.phase", "Terminating".into());
        }
        if opts.dry_run {
            return Ok(Deleted::Pending(Arc::new(Obj::new(info, &value, current.rv))));
        }
        let obj = inner.commit_put(info, value.clone());
        if ready_to_remove(&obj, &value) && !is_namespace {
            let gone = inner.commit_remove(info, ns, name).unwrap_or(obj);
            return Ok(Deleted::Gone(gone));
        }
        Ok(Deleted::Pending(obj))
    }
}

/// The grace period a delete gets: pods bound to a node that have not finished get one (from the
/// request or `spec.terminationGracePeriodSeconds`, default 30); everything else is deleted at once.
fn graceful_period(info: &ResourceInfo, value: &Value, requested: Option<i64>) -> i64 {
    if !(info.group.is_empty() && info.plural == "pods") {
        return 0;
    }
    let bound = value
        .get("spec")
        .and_then(|s| s.get("nodeName"))
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        value
            .get("status")
            .and_then(|s| s.get("phase"))
            .and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !bound || finished {
        return 0;
    }
    requested
        .or_else(|| {
            value
                .get("spec")
                .and_then(|s| s.get("terminationGracePeriodSeconds"))
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}
