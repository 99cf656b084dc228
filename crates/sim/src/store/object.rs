//! One stored object: its serialized JSON plus the few fields the store indexes (labels, selectable
//! fields, owners, finalizers), so lists, selectors, watches and garbage collection never parse
//! the JSON. Objects are immutable and shared (`Arc`) between the store, its watch history and
//! every watcher, so a watch event costs no copy.

use bytes::Bytes;
use serde_json::Value;

use crate::{
    resources::ResourceInfo,
    selector::{field_string, lookup},
};

/// An owner reference as garbage collection needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    /// The owner's uid.
    pub uid: Box<str>,
    /// `blockOwnerDeletion`: a foreground deletion of the owner waits for this dependent.
    pub block: bool,
}

/// A stored object version.
#[derive(Debug)]
pub struct Obj {
    /// The resourceVersion of this version.
    pub rv: u64,
    /// Namespace ("" for cluster-scoped objects).
    pub namespace: Box<str>,
    /// Name.
    pub name: Box<str>,
    /// uid.
    pub uid: Box<str>,
    labels: Box<[(Box<str>, Box<str>)]>,
    fields: Box<[Box<str>]>,
    /// Owner references.
    pub owners: Box<[OwnerRef]>,
    /// `metadata.finalizers`.
    pub finalizers: Box<[Box<str>]>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The object as JSON, with `metadata.resourceVersion` already set to `rv`.
    pub json: Bytes,
}

fn strs(value: Option<&Value>) -> impl Iterator<Item = &str> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

impl Obj {
    /// Indexes and serializes an object whose `metadata.resourceVersion` is already `rv`.
    pub fn new(info: &ResourceInfo, value: &Value, rv: u64) -> Self {
        let meta = value.get("metadata");
        let text = |key: &str| -> Box<str> {
            meta.and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into()
        };
        let labels = meta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|l| {
                l.iter()
                    .map(|(k, v)| (k.as_str().into(), v.as_str().unwrap_or_default().into()))
                    .collect()
            })
            .unwrap_or_default();
        let fields = info
            .selectable_fields
            .iter()
            .map(|f| field_string(lookup(value, f)).into_boxed_str())
            .collect();
        let owners = meta
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|o| {
                Some(OwnerRef {
                    uid: o.get("uid")?.as_str()?.into(),
                    block: o.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true),
                })
            })
            .collect();
        let finalizers = strs(meta.and_then(|m| m.get("finalizers")))
            .map(Into::into)
            .collect();
        let deleting = meta
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some_and(|d| !d.is_null());
        // Serializing a Value cannot fail: its map keys are strings.
        let json = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        Self {
            rv,
            namespace: text("namespace"),
            name: text("name"),
            uid: text("uid"),
            labels,
            fields,
            owners,
            finalizers,
            deleting,
            json,
        }
    }

    /// The object as a JSON value.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// A label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }

    /// A selectable field's value (`metadata.name`, `spec.nodeName`, ...).
    pub fn field<'a>(&'a self, info: &ResourceInfo, field: &str) -> Option<&'a str> {
        match field {
            "metadata.name" => Some(&self.name),
            "metadata.namespace" => Some(&self.namespace),
            _ => info
                .selectable_fields
                .iter()
                .position(|f| f == field)
                .and_then(|i| self.fields.get(i))
                .map(|v| &**v),
        }
    }

    /// Whether the object names an owner by uid.
    pub fn owned_by(&self, uid: &str) -> bool {
        self.owners.iter().any(|o| &*o.uid == uid)
    }

    /// An approximation of the heap bytes this version holds, for memory reports.
    pub fn heap_size(&self) -> usize {
        self.json.len()
            + self.namespace.len()
            + self.name.len()
            + self.uid.len()
            + self
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len() + 32)
                .sum::<usize>()
            + self.fields.iter().map(|f| f.len() + 16).sum::<usize>()
            + self.owners.len() * 56
            + self.finalizers.iter().map(|f| f.len() + 16).sum::<usize>()
    }
}
