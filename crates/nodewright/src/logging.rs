//! Structured logs for `nodewright controller` (tracing-subscriber): every `tracing` event at or
//! above the log level on stderr, as one JSON object per line (`timestamp`, `level`, `target`,
//! `message` and the event's own fields, such as the object it concerns) or, with
//! `LOG_FORMAT=text`, as text. Timestamps come from the injectable clock. The level starts at
//! `LOG_LEVEL` and can be changed while the process runs through [`LogLevel`] (see
//! `log_config.rs`).

use std::fmt;

use anyhow::{Result, anyhow};
use clap::ValueEnum;
use nodewright_controller::Clock;
use tracing::{Level, Subscriber};
use tracing_subscriber::{
    Registry,
    filter::LevelFilter,
    fmt::{MakeWriter, format::Writer, time::FormatTime},
    layer::SubscriberExt,
    reload,
};

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

/// The level of the installed logs, changeable while they run.
#[derive(Clone, Debug)]
pub(crate) struct LogLevel {
    handle: reload::Handle<LevelFilter, Registry>,
    /// `LOG_LEVEL`: the level when nothing else is asked for.
    configured: Level,
}

impl LogLevel {
    /// The level set at start (`LOG_LEVEL`).
    pub(crate) fn configured(&self) -> Level {
        self.configured
    }

    /// The level in force now (None if logging is off altogether, which nothing here sets).
    pub(crate) fn current(&self) -> Option<Level> {
        self.handle.clone_current().and_then(LevelFilter::into_level)
    }

    /// Writes events at `level` and above from now on.
    pub(crate) fn set(&self, level: Level) -> Result<()> {
        self.handle
            .reload(LevelFilter::from_level(level))
            .map_err(|e| anyhow!("changing the log level to {level}: {e}"))
    }
}

/// The subscriber for `level` and `format`, writing to `out`, and the handle to its level.
pub(crate) fn subscriber<W>(
    level: Level,
    format: LogFormat,
    clock: Clock,
    out: W,
) -> (Box<dyn Subscriber + Send + Sync>, LogLevel)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (filter, handle) = reload::Layer::new(LevelFilter::from_level(level));
    let lines = tracing_subscriber::fmt::layer()
        .with_timer(ClockTime(clock))
        .with_writer(out)
        .with_ansi(false);
    let registry = tracing_subscriber::registry().with(filter);
    let subscriber: Box<dyn Subscriber + Send + Sync> = match format {
        LogFormat::Json => Box::new(registry.with(lines.json().flatten_event(true).with_current_span(false))),
        LogFormat::Text => Box::new(registry.with(lines)),
    };
    (
        subscriber,
        LogLevel {
            handle,
            configured: level,
        },
    )
}

/// Installs the logs on stderr for the whole process.
pub(crate) fn install(level: Level, format: LogFormat, clock: Clock) -> Result<LogLevel> {
    let (subscriber, handle) = subscriber(level, format, clock, std::io::stderr);
    tracing::subscriber::set_global_default(subscriber).map_err(|e| anyhow!("installing the logger: {e}"))?;
    Ok(handle)
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
        let (logs, _) = subscriber(Level::INFO, format, clock, move || writer.clone());
        tracing::subscriber::with_default(logs, || {
            tracing::debug!("not shown");
            tracing::warn!(nodeclaim = "default-abcde", attempts = 3, "launch failed");
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn the_level_changes_while_the_logs_run() {
        let out = Buffer::default();
        let writer = out.clone();
        let clock = Clock::from_fn(|| "2026-11-01T00:00:00Z".parse().unwrap());
        let (logs, level) = subscriber(Level::INFO, LogFormat::Json, clock, move || writer.clone());
        tracing::subscriber::with_default(logs, || {
            tracing::debug!("hidden at info");
            level.set(Level::DEBUG).unwrap();
            tracing::debug!("shown at debug");
            level.set(Level::ERROR).unwrap();
            tracing::warn!("hidden at error");
            assert_eq!(level.current(), Some(Level::ERROR));
        });
        assert_eq!(level.configured(), Level::INFO);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let messages: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["message"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(messages, ["shown at debug"]);
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
