//! Writes: create, update (whole object or the status subresource), delete; the metadata rules
//! an API server enforces on each (uid, creationTimestamp, generation bumps on spec changes,
//! immutable deletionTimestamp, no new finalizers on a terminating object), optimistic
//! concurrency, graceful deletion, and removal once the last finalizer is gone.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Inner, Obj, Store};
use crate::{
    admission,
    error::{ApiError, ApiResult, Cause, Subject},
    meta::{self, meta_str, metadata_mut},
    resources::ResourceInfo,
};

/// The finalizer foreground deletion puts on an owner until its blocking dependents are gone.
pub(crate) const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer orphan deletion puts on an owner until its dependents no longer name it.
pub(crate) const ORPHAN: &str = "orphan";

/// How many times a write recomputes on a fresh base before giving up with 409.
const MAX_ATTEMPTS: usize = 16;

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Subresource {
    /// The object; `status` is kept as it was when the type has a status subresource.
    #[default]
    Main,
    /// Only `status`.
    Status,
}

/// The `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop unknown fields (the server would warn).
    #[default]
    Warn,
    /// Reject unknown fields with 400.
    Strict,
}

/// The kind of write, for managedFields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Operation {
    /// Create, update or a non-apply patch: the manager takes the fields it changed.
    #[default]
    Update,
    /// Server-side apply: managedFields were already computed.
    Apply,
}

/// Options of a create or update.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `fieldValidation`.
    pub validation: FieldValidation,
    /// Update or apply.
    pub operation: Operation,
}

pub(super) fn subject(info: &ResourceInfo, name: &str) -> Subject {
    Subject {
        group: info.group.clone(),
        resource: info.plural.clone(),
        kind: info.kind.clone(),
        name: name.into(),
    }
}

fn invalid(info: &ResourceInfo, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        subject: Box::new(subject(info, name)),
        causes,
    }
}

/// Checks `apiVersion` and `kind` of a body against the type it was sent to, filling them in when
/// absent.
pub(crate) fn check_type(info: &ResourceInfo, value: &mut Value) -> ApiResult<()> {
    let Value::Object(map) = value else {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    };
    match map.get("kind").and_then(Value::as_str) {
        None => {
            map.insert("kind".into(), info.kind.clone().into());
        }
        Some(kind) if kind == info.kind => {}
        Some(kind) => {
            return Err(ApiError::BadRequest(format!(
                "the kind of the body ({kind}) does not match the resource ({})",
                info.kind
            )));
        }
    }
    let version_ok = map.get("apiVersion").and_then(Value::as_str).map(|av| {
        let (group, version) = av.rsplit_once('/').unwrap_or(("", av));
        group == info.group && info.serves(version)
    });
    match version_ok {
        None => {
            map.insert(
                "apiVersion".into(),
                info.api_version(info.storage_version()).into(),
            );
        }
        Some(true) => {
            // Objects are stored in the storage version; reads in another version relabel them.
            map.insert(
                "apiVersion".into(),
                info.api_version(info.storage_version()).into(),
            );
        }
        Some(false) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                map.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                info.api_version(info.storage_version())
            )));
        }
    }
    Ok(())
}

/// Everything but metadata (and status, when the type has a status subresource): a change here
/// bumps `metadata.generation`.
fn spec_part(info: &ResourceInfo, value: &Value) -> Map<String, Value> {
    let mut map = value.as_object().cloned().unwrap_or_default();
    for key in ["metadata", "apiVersion", "kind"] {
        map.remove(key);
    }
    if info.status {
        map.remove("status");
    }
    map
}

/// The value without `metadata.resourceVersion` and managedFields timestamps, to detect no-op
/// writes (a change of ownership alone is stored; a new timestamp alone is not).
fn comparable(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        for entry in meta
            .get_mut("managedFields")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(e) = entry.as_object_mut() {
                e.remove("time");
            }
        }
    }
    v
}

fn prepare_create(store: &Store, info: &ResourceInfo, ns: &str, value: &mut Value) -> ApiResult<()> {
    check_type(info, value)?;
    let now = store.config().clock.now_rfc3339();
    let meta = metadata_mut(value);
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        let prefix = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if prefix.is_empty() {
            return Err(invalid(
                info,
                "",
                vec![Cause::new(
                    "FieldValueRequired",
                    "Required value: name or generateName is required",
                    "metadata.name",
                )],
            ));
        }
        meta.insert(
            "name".into(),
            format!("{prefix}{}", meta::random_suffix(5)).into(),
        );
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if let Some(problem) = name_problem(name) {
        let name = name.to_owned();
        return Err(invalid(
            info,
            &name,
            vec![Cause::new(
                "FieldValueInvalid",
                format!("Invalid value: {name:?}: {problem}"),
                "metadata.name",
            )],
        ));
    }
    if info.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                        .into(),
                ));
            }
            _ => {
                meta.insert("namespace".into(), ns.into());
            }
        }
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), meta::new_uid().into());
    meta.insert("creationTimestamp".into(), now.into());
    meta.insert("generation".into(), 1.into());
    for key in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
        "selfLink",
    ] {
        meta.remove(key);
    }
    admission::reset_status_on_create(info, value);
    Ok(())
}

fn prepare_update(
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    old: &Value,
    new: &mut Value,
    sub: Subresource,
) -> ApiResult<()> {
    check_type(info, new)?;
    if let Some(body_name) = meta_str(new, "name")
        && !body_name.is_empty()
        && body_name != name
    {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if info.namespaced
        && let Some(body_ns) = meta_str(new, "namespace")
        && !body_ns.is_empty()
        && body_ns != ns
    {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        ));
    }
    if let Some(uid) = meta_str(new, "uid")
        && !uid.is_empty()
        && Some(uid) != meta_str(old, "uid")
    {
        return Err(ApiError::conflict(
            subject(info, name),
            "Precondition failed: UID in precondition does not match the object",
        ));
    }
    if sub == Subresource::Status {
        // Only status changes; everything else (metadata included) stays as stored, except the
        // managedFields the caller computed for this write.
        let status = new.get("status").cloned();
        let managed = new.get("metadata").and_then(|m| m.get("managedFields")).cloned();
        *new = old.clone();
        let map = meta::ensure_object(new);
        match status {
            Some(s) => map.insert("status".into(), s),
            None => map.remove("status"),
        };
        if let Some(m) = managed {
            metadata_mut(new).insert("managedFields".into(), m);
        }
        return Ok(());
    }
    if info.status {
        let map = meta::ensure_object(new);
        match old.get("status") {
            Some(s) => map.insert("status".into(), s.clone()),
            None => map.remove("status"),
        };
    }
    let old_meta = old.get("metadata").and_then(Value::as_object);
    let deleting = old_meta.is_some_and(|m| m.get("deletionTimestamp").is_some());
    if deleting {
        let old_finalizers = old_meta
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array);
        let added = new
            .get("metadata")
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|f| old_finalizers.is_none_or(|old| !old.contains(f)));
        if added {
            return Err(invalid(
                info,
                name,
                vec![Cause::new(
                    "FieldValueForbidden",
                    "Forbidden: no new finalizers can be added if the object is being deleted",
                    "metadata.finalizers",
                )],
            ));
        }
    }
    let generation = old_meta
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let bumped = spec_part(info, old) != spec_part(info, new);
    let meta = metadata_mut(new);
    meta.insert("name".into(), name.into());
    if info.namespaced {
        meta.insert("namespace".into(), ns.into());
    }
    for key in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old_meta.and_then(|m| m.get(key)) {
            Some(v) => meta.insert(key.into(), v.clone()),
            None => meta.remove(key),
        };
    }
    meta.insert(
        "generation".into(),
        (if bumped { generation + 1 } else { generation }).into(),
    );
    Ok(())
}

/// Why a name cannot be used in a URL path segment, if it cannot.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.len() > 253 {
        Some("must be no more than 253 characters")
    } else if name == "." || name == ".." {
        Some("may not be '.' or '..'")
    } else if name.contains(['/', '%', '\0']) {
        Some("may not contain '/', '%' or NUL")
    } else {
        None
    }
}

/// Whether a terminating object may now leave the store: no finalizers, no grace period left and
/// (for namespaces) no `spec.finalizers`.
pub(super) fn ready_to_remove(obj: &Obj, value: &Value) -> bool {
    obj.deleting
        && obj.finalizers.is_empty()
        && value
            .get("metadata")
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
        && value
            .get("spec")
            .and_then(|s| s.get("finalizers"))
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
}

impl Store {
    /// Creates an object.
    pub fn create(
        &self,
        info: &ResourceInfo,
        ns: &str,
        value: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Arc<Obj>> {
        let mut new = value;
        prepare_create(self, info, ns, &mut new)?;
        admission::admit(self, info, &mut new, None, opts, Subresource::Main)?;
        let obj = self.commit_create(info, ns, new, opts.dry_run)?;
        self.collect_garbage();
        Ok(obj)
    }

    fn commit_create(&self, info: &ResourceInfo, ns: &str, new: Value, dry_run: bool) -> ApiResult<Arc<Obj>> {
        let name = meta_str(&new, "name").unwrap_or_default().to_owned();
        let mut inner = self.lock();
        if info.namespaced {
            check_namespace(&inner, ns)?;
        }
        if inner.get(&info.key(), ns, &name).is_some() {
            return Err(ApiError::AlreadyExists(Box::new(subject(info, &name))));
        }
        if dry_run {
            return Ok(Arc::new(Obj::new(info, &new, inner.rv)));
        }
        Ok(inner.commit_put(info, new))
    }

    /// Updates an object: `mutate` gets the current object (None if there is none) and returns
    /// the desired one; it runs again on a fresh copy if the object changed meanwhile. Returns the
    /// stored object and whether it was created.
    pub fn update(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        sub: Subresource,
        opts: &WriteOptions,
        mutate: &mut dyn FnMut(Option<&Value>) -> ApiResult<Value>,
    ) -> ApiResult<(Arc<Obj>, bool)> {
        let result = self.update_no_gc(info, ns, name, sub, opts, mutate);
        self.collect_garbage();
        result
    }

    pub(crate) fn update_no_gc(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        sub: Subresource,
        opts: &WriteOptions,
        mutate: &mut dyn FnMut(Option<&Value>) -> ApiResult<Value>,
    ) -> ApiResult<(Arc<Obj>, bool)> {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.lock().get(&info.key(), ns, name);
            let Some(current) = current else {
                let mut new = mutate(None)?;
                if meta_str(&new, "name").is_none_or(str::is_empty) {
                    metadata_mut(&mut new).insert("name".into(), name.into());
                }
                prepare_create(self, info, ns, &mut new)?;
                admission::admit(self, info, &mut new, None, opts, Subresource::Main)?;
                match self.commit_create(info, ns, new, opts.dry_run) {
                    Err(ApiError::AlreadyExists(_)) => continue,
                    other => return other.map(|o| (o, true)),
                }
            };
            let old = current.value();
            let mut new = mutate(Some(&old))?;
            prepare_update(info, ns, name, &old, &mut new, sub)?;
            admission::admit(self, info, &mut new, Some(&old), opts, sub)?;
            if comparable(&new) == comparable(&old) {
                return Ok((current, false));
            }
            let mut inner = self.lock();
            let now = inner.get(&info.key(), ns, name);
            if now.as_ref().map(|o| o.rv) != Some(current.rv) {
                continue;
            }
            if opts.dry_run {
                return Ok((Arc::new(Obj::new(info, &new, current.rv)), false));
            }
            let obj = inner.commit_put(info, new.clone());
            if ready_to_remove(&obj, &new) {
                let gone = inner.commit_remove(info, ns, name).unwrap_or(obj);
                return Ok((gone, false));
            }
            return Ok((obj, false));
        }
        Err(ApiError::conflict(
            subject(info, name),
            "the object has been modified; please apply your changes to the latest version and try again",
        ))
    }
}

fn check_namespace(inner: &Inner, ns: &str) -> ApiResult<()> {
    let Some(namespace) = inner.get(&crate::resources::GroupResource::new("", "namespaces"), "", ns) else {
        return Err(ApiError::not_found("", "namespaces", ns));
    };
    if namespace.deleting {
        return Err(ApiError::Forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        )));
    }
    Ok(())
}
