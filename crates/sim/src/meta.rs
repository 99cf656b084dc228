//! Small helpers over JSON objects: metadata access, timestamps, the injectable clock, random
//! name suffixes.

use std::{fmt, sync::Arc};

use jiff::Timestamp;
use serde_json::{Map, Value};

/// The time source of the server: the wall clock by default, or a test's simulated clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self(Arc::new(Timestamp::now))
    }

    /// A clock that calls `now` for the time.
    pub fn from_fn(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }

    /// The current time as Kubernetes writes it (RFC 3339, whole seconds, UTC).
    pub fn now_rfc3339(&self) -> String {
        rfc3339(self.now())
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

/// A clock a test moves by hand, for scenarios of hours that run in milliseconds.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<std::sync::Mutex<Timestamp>>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(std::sync::Mutex::new(start)))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves the clock forward (saturating at the end of representable time).
    pub fn advance(&self, by: jiff::SignedDuration) {
        let mut now = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *now = now.checked_add(by).unwrap_or(Timestamp::MAX);
    }

    /// The server clock reading this one.
    pub fn clock(&self) -> Clock {
        let this = self.clone();
        Clock::from_fn(move || this.now())
    }
}

/// RFC 3339 in whole seconds, `2024-05-01T10:00:00Z`.
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

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
