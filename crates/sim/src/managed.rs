//! `metadata.managedFields`: which manager owns which fields, in the FieldsV1 form the API server
//! writes (`{"f:spec": {"f:replicas": {}}, "f:containers": {"k:{\"name\":\"c\"}": {".": {}}}}`).
//!
//! The model: a field set is a tree of path elements (`f:name` object field, `k:{...}` list-map
//! item, `v:...` set member); a node is owned itself (`.`) or only through its children. A
//! non-apply write gives its manager the fields it changed and takes them from everyone else;
//! server-side apply (`crate::apply`) gives its manager exactly the fields of its configuration.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::{
    listtype::{Context, ListKind, item_matches, key_of},
    resources::ResourceInfo,
    store::Subresource,
};

/// A set of field paths in FieldsV1 form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// The node itself is owned (a leaf, or a list item's existence).
    pub own: bool,
    /// Children by path element.
    pub children: BTreeMap<String, FieldSet>,
}

/// One path: its elements from the root.
pub type Path = Vec<String>;

impl FieldSet {
    /// Parses FieldsV1 JSON.
    pub fn from_json(value: &Value) -> Self {
        let mut set = Self::default();
        let Some(map) = value.as_object() else {
            return set;
        };
        if map.is_empty() {
            set.own = true;
        }
        for (key, child) in map {
            if key == "." {
                set.own = true;
            } else {
                set.children.insert(key.clone(), Self::from_json(child));
            }
        }
        set
    }

    /// Renders FieldsV1 JSON.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        if self.own && !self.children.is_empty() {
            map.insert(".".into(), json!({}));
        }
        for (key, child) in &self.children {
            map.insert(key.clone(), child.to_json());
        }
        Value::Object(map)
    }

    /// Whether no path is owned.
    pub fn is_empty(&self) -> bool {
        !self.own && self.children.values().all(Self::is_empty)
    }

    /// Every owned path.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        if self.own && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (key, child) in &self.children {
            prefix.push(key.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    fn node(&self, path: &[String]) -> Option<&Self> {
        path.iter().try_fold(self, |n, p| n.children.get(p))
    }

    /// Whether a path is owned.
    pub fn contains(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| n.own)
    }

    /// Whether the node at a path has owned children (it is not a leaf).
    pub fn has_children(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| !n.children.is_empty())
    }

    /// Whether a path or anything below it is owned.
    pub fn touches(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| !n.is_empty())
    }

    /// Adds a path.
    pub fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for p in path {
            node = node.children.entry(p.clone()).or_default();
        }
        node.own = true;
    }

    /// Removes a path (its children stay).
    pub fn remove(&mut self, path: &[String]) {
        fn go(node: &mut FieldSet, path: &[String]) {
            match path.split_first() {
                None => node.own = false,
                Some((first, rest)) => {
                    if let Some(child) = node.children.get_mut(first) {
                        go(child, rest);
                        if child.is_empty() {
                            node.children.remove(first);
                        }
                    }
                }
            }
        }
        go(self, path);
    }

    /// Adds every path of another set.
    pub fn union(&mut self, other: &Self) {
        for path in other.paths() {
            self.insert(&path);
        }
    }

    /// Removes every path of another set.
    pub fn subtract(&mut self, other: &Self) {
        for path in other.paths() {
            self.remove(&path);
        }
    }
}

/// The path element of a list item.
fn item_element(kind: &ListKind, item: &Value, index: usize) -> String {
    match kind {
        ListKind::Set => format!("v:{item}"),
        ListKind::Map(keys) => format!("k:{}", key_of(item, keys)),
        ListKind::Atomic => format!("i:{index}"),
    }
}

/// The fields a value sets, below the position `ctx` describes.
pub fn fields_of(ctx: &Context<'_>, value: &Value) -> FieldSet {
    let mut set = FieldSet::default();
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let mut child_set = fields_of(&ctx.field(key), child);
                if child_set.children.is_empty() {
                    child_set.own = true;
                }
                set.children.insert(format!("f:{key}"), child_set);
            }
        }
        Value::Array(items) => match ctx.list_kind() {
            ListKind::Atomic => set.own = true,
            kind => {
                let item_ctx = ctx.item();
                for (i, item) in items.iter().enumerate() {
                    let mut item_set = if matches!(kind, ListKind::Map(_)) {
                        fields_of(&item_ctx, item)
                    } else {
                        FieldSet::default()
                    };
                    item_set.own = true;
                    set.children.insert(item_element(&kind, item, i), item_set);
                }
                if items.is_empty() {
                    set.own = true;
                }
            }
        },
        _ => set.own = true,
    }
    set
}

/// Metadata fields nobody owns.
const UNOWNED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// The parts of an object a write to a subresource may own.
pub fn ownable(info: &ResourceInfo, value: &Value, sub: Subresource) -> Value {
    let mut v = value.as_object().cloned().unwrap_or_default();
    v.remove("apiVersion");
    v.remove("kind");
    if let Some(Value::Object(meta)) = v.get_mut("metadata") {
        for key in UNOWNED_METADATA {
            meta.remove(*key);
        }
    }
    if v.get("metadata")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        v.remove("metadata");
    }
    match sub {
        Subresource::Status => {
            v.retain(|k, _| k == "status");
        }
        Subresource::Main if info.status => {
            v.remove("status");
        }
        Subresource::Main => {}
    }
    Value::Object(v)
}

/// The CRD schema of a custom resource, for list kinds.
pub fn schema_of(info: &ResourceInfo) -> Option<&Value> {
    info.crd.as_ref().and_then(|c| c.schema(info.storage_version()))
}

/// The value at a path.
pub fn value_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = value;
    for element in path {
        cur = step(cur, element)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, element: &str) -> Option<&'a Value> {
    if let Some(field) = element.strip_prefix("f:") {
        return cur.get(field);
    }
    let items = cur.as_array()?;
    items.get(position(items, element)?)
}

fn step_mut<'a>(cur: &'a mut Value, element: &str) -> Option<&'a mut Value> {
    if let Some(field) = element.strip_prefix("f:") {
        return cur.get_mut(field);
    }
    let index = position(cur.as_array()?, element)?;
    cur.as_array_mut()?.get_mut(index)
}

/// The index of the list item a `k:`, `v:` or `i:` element names.
fn position(items: &[Value], element: &str) -> Option<usize> {
    if let Some(key) = element.strip_prefix("k:") {
        let key: Value = serde_json::from_str(key).ok()?;
        let keys: Vec<String> = key.as_object()?.keys().cloned().collect();
        return items.iter().position(|i| item_matches(i, &keys, &key));
    }
    if let Some(member) = element.strip_prefix("v:") {
        let member: Value = serde_json::from_str(member).ok()?;
        return items.iter().position(|i| *i == member);
    }
    let index: usize = element.strip_prefix("i:")?.parse().ok()?;
    (index < items.len()).then_some(index)
}

/// Removes the value at a path (a field from its object, an item from its list).
pub fn remove_at(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for element in parents {
        let Some(next) = step_mut(cur, element) else {
            return;
        };
        cur = next;
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(map) = cur.as_object_mut() {
            map.remove(field);
        }
    } else if let Some(items) = cur.as_array_mut()
        && let Some(index) = position(items, last)
    {
        items.remove(index);
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The manager.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `status` or "" for the main resource.
    pub subresource: String,
    /// apiVersion the fields were written in.
    pub api_version: String,
    /// When.
    pub time: String,
    /// The owned fields.
    pub fields: FieldSet,
}

/// The `managedFields` entries of an object.
pub fn entries(value: &Value) -> Vec<Entry> {
    value
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            Entry {
                manager: s("manager"),
                operation: s("operation"),
                subresource: s("subresource"),
                api_version: s("apiVersion"),
                time: s("time"),
                fields: e.get("fieldsV1").map(FieldSet::from_json).unwrap_or_default(),
            }
        })
        .collect()
}

/// Writes `managedFields`, dropping entries that own nothing.
pub fn set_entries(value: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": e.fields.to_json(),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = e.subresource.clone().into();
            }
            v
        })
        .collect();
    let meta = crate::meta::metadata_mut(value);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// The subresource name an entry records.
pub fn subresource_name(sub: Subresource) -> &'static str {
    match sub {
        Subresource::Main => "",
        Subresource::Status => "status",
    }
}

/// Records a non-apply write: `manager` owns what it changed; others lose it.
pub fn record_update(
    info: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    sub: Subresource,
    now: &str,
) {
    let ctx = Context::root(schema_of(info));
    let new_view = ownable(info, new, sub);
    let new_fields = fields_of(&ctx, &new_view);
    let mut changed = FieldSet::default();
    let mut removed = FieldSet::default();
    let mut list = old.map(entries).unwrap_or_default();
    match old {
        None => changed = new_fields,
        Some(old) => {
            let old_view = ownable(info, old, sub);
            for path in new_fields.paths() {
                let leaf = !new_fields.has_children(&path);
                let before = value_at(&old_view, &path);
                if before.is_none() || (leaf && before != value_at(&new_view, &path)) {
                    changed.insert(&path);
                }
            }
            removed = fields_of(&ctx, &old_view);
            removed.subtract(&new_fields);
        }
    }
    if changed.is_empty() && removed.is_empty() {
        if old.is_some() {
            set_entries(new, &list);
        }
        return;
    }
    let sub_name = subresource_name(sub);
    for entry in &mut list {
        entry.fields.subtract(&removed);
        if !(entry.manager == manager && entry.operation == "Update" && entry.subresource == sub_name) {
            entry.fields.subtract(&changed);
        }
    }
    let api_version = new
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match list
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == sub_name)
    {
        Some(mine) => {
            mine.fields.union(&changed);
            now.clone_into(&mut mine.time);
        }
        None => list.push(Entry {
            manager: manager.to_owned(),
            operation: "Update".into(),
            subresource: sub_name.into(),
            api_version,
            time: now.to_owned(),
            fields: changed,
        }),
    }
    set_entries(new, &list);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    #[test]
    fn fields_v1_round_trips() {
        let text = json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}}}}});
        let set = FieldSet::from_json(&text);
        assert_eq!(set.to_json(), text);
        let paths = set.paths();
        assert_eq!(paths.len(), 3);
        assert!(set.contains(&[
            "f:spec".into(),
            "f:containers".into(),
            "k:{\"name\":\"c\"}".into()
        ]));
    }

    #[test]
    fn fields_of_a_deployment_use_list_keys() {
        let registry = Registry::with_builtins();
        let info = registry.get("apps", "deployments").unwrap();
        let d = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        let set = fields_of(&Context::root(schema_of(&info)), &d);
        let json = set.to_json();
        assert_eq!(
            json["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"],
            json!({".": {}, "f:image": {}, "f:name": {}})
        );
        let path: Path = vec![
            "f:spec".into(),
            "f:template".into(),
            "f:spec".into(),
            "f:containers".into(),
            "k:{\"name\":\"c\"}".into(),
            "f:image".into(),
        ];
        assert_eq!(value_at(&d, &path), Some(&json!("x")));
        let mut d2 = d.clone();
        remove_at(&mut d2, &path[..5]);
        assert_eq!(d2["spec"]["template"]["spec"]["containers"], json!([]));
    }

    #[test]
    fn an_update_moves_ownership_of_changed_fields() {
        let registry = Registry::with_builtins();
        let info = registry.get("", "configmaps").unwrap();
        let mut created = json!({"data": {"a": "1", "b": "2"}});
        record_update(&info, None, &mut created, "alice", Subresource::Main, "t0");
        let mut updated = created.clone();
        updated["data"]["b"] = "3".into();
        record_update(
            &info,
            Some(&created),
            &mut updated,
            "bob",
            Subresource::Main,
            "t1",
        );
        let list = entries(&updated);
        let owner_of = |key: &str| -> Vec<String> {
            list.iter()
                .filter(|e| e.fields.contains(&["f:data".into(), format!("f:{key}")]))
                .map(|e| e.manager.clone())
                .collect()
        };
        assert_eq!(owner_of("a"), ["alice"]);
        assert_eq!(owner_of("b"), ["bob"]);
    }
}
