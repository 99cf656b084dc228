//! Small helpers over JSON objects: metadata access, timestamps, the injectable clock, random
//! name suffixes.

use jiff::Timestamp;
use serde_json::{Map, Value};

pub use nodewright_api::clock::{Clock, ManualClock, rfc3339};

/// Parses an RFC 3339 timestamp.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// `metadata` of an object, created if absent (and replaced if not an object).
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    object_field_mut(obj, "metadata")
}

/// A child object of an object, created if absent or not an object. A non-object parent becomes
/// an empty object first.
pub fn object_field_mut<'a>(obj: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    ensure_object(ensure_object(obj).entry(key.to_owned()).or_insert(Value::Null))
}

/// The value as a map, replacing it by an empty object first if it is not one.
pub fn ensure_object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(map) => map,
        _ => unreachable!("replaced by an object above"),
    }
}

/// A string in `metadata`.
pub fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(key)?.as_str()
}

/// Sets the value at a dotted path, creating intermediate objects.
pub fn set_path(obj: &mut Value, dotted: &str, value: Value) {
    let parts: Vec<&str> = dotted.split('.').filter(|p| !p.is_empty()).collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = ensure_object(obj);
    for part in parents {
        cur = ensure_object(cur.entry((*part).to_owned()).or_insert(Value::Null));
    }
    cur.insert((*last).to_owned(), value);
}

/// A random lowercase suffix of `n` characters from Kubernetes' alphabet (no vowels, no
/// ambiguous digits), as `generateName` uses.
pub fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .cycle()
        .take(n)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// A fresh uid.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn set_path_creates_parents() {
        let mut v = json!({"spec": 3});
        set_path(&mut v, "spec.replicas", json!(2));
        set_path(&mut v, "status.a.b", json!("x"));
        assert_eq!(v, json!({"spec": {"replicas": 2}, "status": {"a": {"b": "x"}}}));
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let manual = ManualClock::new("2024-01-01T00:00:00Z".parse().unwrap());
        let clock = manual.clock();
        assert_eq!(clock.now_rfc3339(), "2024-01-01T00:00:00Z");
        manual.advance(jiff::SignedDuration::from_hours(3));
        assert_eq!(clock.now_rfc3339(), "2024-01-01T03:00:00Z");
    }

    #[test]
    fn timestamps_are_whole_seconds() {
        let t: Timestamp = "2024-05-01T10:00:00.123Z".parse().unwrap();
        assert_eq!(rfc3339(t), "2024-05-01T10:00:00Z");
        assert_eq!(random_suffix(5).len(), 5);
    }
}
