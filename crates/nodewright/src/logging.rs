//! Structured logs for `nodewright controller` (tracing-subscriber): every `tracing` event at or
//! above `LOG_LEVEL` on stderr, as one JSON object per line (`timestamp`, `level`, `target`,
//! `message` and the event's own fields, such as the object it concerns) or, with
//! `LOG_FORMAT=text`, as text. Timestamps come from the injectable clock.

use std::fmt;

use anyhow::{Result, anyhow};
use clap::ValueEnum;
use nodewright_controller::Clock;
use tracing::{Level, Subscriber};
use tracing_subscriber::fmt::{MakeWriter, format::Writer, time::FormatTime};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// One JSON object per line (for log pipelines).
    Json,
    /// Human-readable text.
    Text,
}

/// RFC 3339 timestamps from the clock.
struct ClockTime(Clock);

impl FormatTime for ClockTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write!(w, "{}", self.0.now())
    }
}

/// The subscriber for `level` and `format`, writing to `out`.
fn subscriber<W>(level: Level, format: LogFormat, clock: Clock, out: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_timer(ClockTime(clock))
        .with_writer(out)
        .with_ansi(false);
    match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish(),
        ),
        LogFormat::Text => Box::new(builder.finish()),
    }
}

/// Installs the logs on stderr for the whole process.
pub(crate) fn install(level: Level, format: LogFormat, clock: Clock) -> Result<()> {
    tracing::subscriber::set_global_default(subscriber(level, format, clock, std::io::stderr))
        .map_err(|e| anyhow!("installing the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    use serde_json::Value;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat) -> String {
        let out = Buffer::default();
        let writer = out.clone();
        let clock = Clock::from_fn(|| "2026-11-01T00:00:00Z".parse().unwrap());
        let logs = subscriber(Level::INFO, format, clock, move || writer.clone());
        tracing::subscriber::with_default(logs, || {
            tracing::debug!("not shown");
            tracing::warn!(nodeclaim = "default-abcde", attempts = 3, "launch failed");
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn events_at_or_above_the_level_are_json_lines_with_their_fields() {
        let text = logged(LogFormat::Json);
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["timestamp"], "2026-11-01T00:00:00Z");
        assert_eq!(lines[0]["message"], "launch failed");
        assert_eq!(lines[0]["nodeclaim"], "default-abcde");
        assert_eq!(lines[0]["attempts"], 3);
    }

    #[test]
    fn text_logs_carry_the_same_event() {
        let text = logged(LogFormat::Text);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("2026-11-01T00:00:00Z"), "{text}");
        assert!(
            text.contains("WARN")
                && text.contains("launch failed")
                && text.contains("nodeclaim=\"default-abcde\""),
            "{text}"
        );
    }
}
