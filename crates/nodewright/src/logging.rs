//! Structured logs for `nodewright controller`: every `tracing` event at or above `LOG_LEVEL` as
//! one JSON object per line on stderr (`level`, `time`, `logger`, `message` and the event's own
//! fields, such as the object it concerns). Spans are not recorded: the controllers put the object
//! in each event instead.

use std::{
    io::Write,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use nodewright_controller::Clock;
use serde_json::{Map, Value};
use tracing::{
    Event, Level, Metadata, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};

/// Writes JSON lines to a shared writer.
pub(crate) struct JsonLogs {
    level: Level,
    clock: Clock,
    out: Arc<Mutex<dyn Write + Send>>,
    next_span: AtomicU64,
}

impl JsonLogs {
    pub(crate) fn new(level: Level, clock: Clock, out: Arc<Mutex<dyn Write + Send>>) -> Self {
        Self {
            level,
            clock,
            out,
            next_span: AtomicU64::new(1),
        }
    }

    /// Installs logs to stderr for the whole process.
    pub(crate) fn install(level: Level, clock: Clock) -> anyhow::Result<()> {
        let logs = Self::new(level, clock, Arc::new(Mutex::new(std::io::stderr())));
        tracing::subscriber::set_global_default(logs)
            .map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
    }

    fn line(&self, event: &Event<'_>) -> Value {
        let metadata = event.metadata();
        let mut fields = Map::new();
        fields.insert("level".to_owned(), Value::from(metadata.level().as_str()));
        fields.insert("time".to_owned(), Value::from(self.clock.now().to_string()));
        fields.insert("logger".to_owned(), Value::from(metadata.target()));
        event.record(&mut FieldVisitor(&mut fields));
        Value::Object(fields)
    }
}

struct FieldVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
}

impl Subscriber for JsonLogs {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Levels order from TRACE (most verbose) down to ERROR: `<=` keeps the chosen one and
        // everything more severe.
        metadata.level() <= &self.level
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = self.line(event).to_string();
        line.push('\n');
        // A log line that cannot be written has nowhere else to go.
        let _ = self
            .out
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_all(line.as_bytes());
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_at_or_above_the_level_are_json_lines_with_their_fields() {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let clock = Clock::from_fn(|| "2026-11-01T00:00:00Z".parse().unwrap());
        let logs = JsonLogs::new(Level::INFO, clock, out.clone());
        tracing::subscriber::with_default(logs, || {
            tracing::debug!("not shown");
            tracing::warn!(nodeclaim = "default-abcde", attempts = 3, "launch failed");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["time"], "2026-11-01T00:00:00Z");
        assert_eq!(lines[0]["message"], "launch failed");
        assert_eq!(lines[0]["nodeclaim"], "default-abcde");
        assert_eq!(lines[0]["attempts"], 3);
    }
}
