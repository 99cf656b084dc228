//! Summaries (quantiles, sum and count), for the two Karpenter metrics of that type
//! (`karpenter_nodes_termination_duration_seconds`, `karpenter_pods_startup_duration_seconds`).
//!
//! prometheus-client has no summary type, so these are kept here and appended to the registry's
//! OpenMetrics text as `# TYPE name summary` families, which both OpenMetrics and the Prometheus
//! text format define. Quantiles are exact over each series' most recent [`WINDOW`] observations
//! (Karpenter's client_golang summaries estimate them over a ten-minute window instead; a bounded
//! count needs no clock and no background decay, and with termination and start-up rates in the
//! tens per minute it covers a comparable span). Sum and count cover the process's whole life, as
//! Prometheus expects of them.

use std::{
    collections::{BTreeMap, VecDeque},
    fmt::Write as _,
    sync::{Mutex, PoisonError},
};

/// Observations per series the quantiles are computed over.
pub const WINDOW: usize = 500;

/// Karpenter's summary objectives: the minimum, median, 90th and 99th percentiles, maximum.
const QUANTILES: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];

/// One label set's observations.
#[derive(Debug, Default)]
struct Series {
    recent: VecDeque<f64>,
    sum: f64,
    count: u64,
}

/// A summary family: name, help and label names fixed, series created on first observation.
#[derive(Debug)]
pub struct Summary {
    name: &'static str,
    help: &'static str,
    label_names: &'static [&'static str],
    series: Mutex<BTreeMap<Vec<String>, Series>>,
}

impl Summary {
    pub const fn new(name: &'static str, help: &'static str, label_names: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            label_names,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// The family's name as it appears in a scrape.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Records `value` for the series with these label values (in the order of the label names).
    pub fn observe(&self, label_values: &[&str], value: f64) {
        debug_assert_eq!(label_values.len(), self.label_names.len());
        let key = label_values.iter().map(|v| (*v).to_owned()).collect();
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let entry: &mut Series = series.entry(key).or_default();
        if entry.recent.len() == WINDOW {
            entry.recent.pop_front();
        }
        entry.recent.push_back(value);
        entry.sum += value;
        entry.count += 1;
    }

    /// The family in OpenMetrics text (nothing when no series was observed yet).
    pub fn encode(&self, out: &mut String) {
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        if series.is_empty() {
            return;
        }
        let name = self.name;
        // Writing into a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {}.", self.help);
        let _ = writeln!(out, "# TYPE {name} summary");
        for (values, observed) in series.iter() {
            let labels: Vec<String> = self
                .label_names
                .iter()
                .zip(values)
                .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
                .collect();
            let mut sorted: Vec<f64> = observed.recent.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            for q in QUANTILES {
                let mut with_quantile = labels.clone();
                with_quantile.push(format!("quantile=\"{q}\""));
                let value = quantile(&sorted, q);
                let _ = writeln!(out, "{name}{{{}}} {value}", with_quantile.join(","));
            }
            let plain = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            let _ = writeln!(out, "{name}_sum{plain} {}", observed.sum);
            let _ = writeln!(out, "{name}_count{plain} {}", observed.count);
        }
    }
}

/// The `q` quantile of `sorted` (nearest rank); `sorted` is never empty for an existing series.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )] // q in [0, 1] and len at most WINDOW: the rank is a small non-negative index
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A label value escaped as both text formats require.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_sum_and_count_per_label_set() {
        let summary = Summary::new("d_seconds", "Time", &["nodepool"]);
        for v in 1..=100 {
            summary.observe(&["a"], f64::from(v));
        }
        summary.observe(&["b\"x"], 7.0);
        let mut out = String::new();
        summary.encode(&mut out);
        assert!(
            out.starts_with("# HELP d_seconds Time.\n# TYPE d_seconds summary\n"),
            "{out}"
        );
        assert!(
            out.contains("d_seconds{nodepool=\"a\",quantile=\"0.5\"} 50\n"),
            "{out}"
        );
        assert!(
            out.contains("d_seconds{nodepool=\"a\",quantile=\"0.99\"} 99\n"),
            "{out}"
        );
        assert!(
            out.contains("d_seconds{nodepool=\"a\",quantile=\"1\"} 100\n"),
            "{out}"
        );
        assert!(out.contains("d_seconds_sum{nodepool=\"a\"} 5050\n"), "{out}");
        assert!(out.contains("d_seconds_count{nodepool=\"a\"} 100\n"), "{out}");
        assert!(
            out.contains("d_seconds{nodepool=\"b\\\"x\",quantile=\"0\"} 7\n"),
            "{out}"
        );
    }

    #[test]
    fn quantiles_cover_the_recent_window_and_totals_everything() {
        let summary = Summary::new("s", "S", &[]);
        for _ in 0..WINDOW {
            summary.observe(&[], 1000.0);
        }
        for _ in 0..WINDOW {
            summary.observe(&[], 1.0);
        }
        let mut out = String::new();
        summary.encode(&mut out);
        assert!(
            out.contains("s{quantile=\"1\"} 1\n"),
            "old observations left the window: {out}"
        );
        assert!(out.contains(&format!("s_count {}\n", 2 * WINDOW)), "{out}");
        assert!(out.contains("s_sum 500500\n"), "{out}");
    }

    #[test]
    fn an_unobserved_family_is_left_out() {
        let mut out = String::new();
        Summary::new("s", "S", &[]).encode(&mut out);
        assert!(out.is_empty());
    }
}
