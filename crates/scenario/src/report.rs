//! The summary a played scenario ends with.

use std::fmt::Write as _;

use jiff::SignedDuration;

use crate::{Outcome, Played, sample::Sample};

/// What followed one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    pub at: SignedDuration,
    pub description: String,
    /// From the step until every pod ran and every node was Ready (None: not by the next step or
    /// the end of the scenario).
    pub settled_after: Option<SignedDuration>,
    /// Ready nodes and running pods when it settled (or at the last sample before the next step).
    pub nodes: usize,
    pub running_pods: usize,
    pub cost_per_hour_nano_usd: u64,
}

/// Per-step results: samples from the step until the next one.
pub fn step_results(outcome: &Outcome) -> Vec<StepResult> {
    let mut results = Vec::new();
    for (i, (at, description)) in outcome.steps.iter().enumerate() {
        // Steps at the same moment share the window up to the next later step.
        let until = outcome
            .steps
            .iter()
            .skip(i + 1)
            .map(|(next, _)| *next)
            .find(|next| next > at)
            .unwrap_or(SignedDuration::MAX);
        let window: Vec<&Sample> = outcome
            .samples
            .iter()
            .filter(|s| s.at >= *at && s.at < until)
            .collect();
        let settled = window
            .iter()
            .find(|s| s.pending_pods == 0 && s.starting_pods == 0 && s.nodes_not_ready == 0);
        let shown = settled.or(window.last());
        results.push(StepResult {
            at: *at,
            description: description.clone(),
            settled_after: settled.map(|s| s.at - *at),
            nodes: shown.map_or(0, |s| s.nodes_ready()),
            running_pods: shown.map_or(0, |s| s.running_pods),
            cost_per_hour_nano_usd: shown.map_or(0, |s| s.cost_per_hour_nano_usd),
        });
    }
    results
}

fn minutes(d: SignedDuration) -> String {
    let secs = d.as_secs();
    format!("{}m{:02}s", secs / 60, secs % 60)
}

fn usd(nano: u64) -> String {
    format!(
        "${}.{:04}",
        nano / 1_000_000_000,
        (nano % 1_000_000_000) / 100_000
    )
}

/// The summary table.
pub fn summary(name: &str, outcome: &Outcome) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario {name}");
    let _ = writeln!(
        out,
        "{:>8}  {:<44} {:>10} {:>6} {:>8} {:>10}",
        "AT", "STEP", "SETTLED", "NODES", "RUNNING", "$/H"
    );
    for r in step_results(outcome) {
        let _ = writeln!(
            out,
            "{:>8}  {:<44} {:>10} {:>6} {:>8} {:>10}",
            minutes(r.at),
            r.description,
            r.settled_after
                .map_or_else(|| "pending".to_owned(), |d| format!("+{}", minutes(d))),
            r.nodes,
            r.running_pods,
            usd(r.cost_per_hour_nano_usd),
        );
    }
    let peak_nodes = outcome.samples.iter().map(Sample::nodes_ready).max().unwrap_or(0);
    let peak_cost = outcome
        .samples
        .iter()
        .map(|s| s.cost_per_hour_nano_usd)
        .max()
        .unwrap_or(0);
    let last = outcome.samples.last().cloned().unwrap_or_default();
    let instance_seconds: u64 = outcome.ledger.total_billed_seconds();
    let _ = writeln!(out);
    let _ = writeln!(out, "peak ready nodes        {peak_nodes}");
    let _ = writeln!(out, "peak cost               {}/h", usd(peak_cost));
    let _ = writeln!(
        out,
        "at the end              {} nodes, {} pods running, {} pending, {}/h",
        last.nodes_ready(),
        last.running_pods,
        last.pending_pods,
        usd(last.cost_per_hour_nano_usd)
    );
    let _ = writeln!(
        out,
        "billed                  {} for {:.1} instance-hours ({} instances launched, {} still running)",
        usd(outcome.ledger.total_cost_nano_usd()),
        f64::from(u32::try_from(instance_seconds).unwrap_or(u32::MAX)) / 3600.0,
        outcome.ledger.entries.len(),
        outcome.live_instances
    );
    out
}

/// The variants side by side: one column per variant, one row per measure. Steps every variant
/// played (the scenario's own) get a "settled after" row each; launches are also counted from
/// the last of them (the burst, in a scenario that ends with one).
pub fn comparison(name: &str, played: &[Played]) -> String {
    let columns: Vec<(String, &Outcome)> = played
        .iter()
        .map(|p| (p.variant.clone().unwrap_or_else(|| name.to_owned()), &p.outcome))
        .collect();
    let shared = shared_steps(&columns);
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for (at, description) in &shared {
        let cells = columns
            .iter()
            .map(|(_, outcome)| {
                step_results(outcome)
                    .iter()
                    .find(|r| r.at.as_secs() == at.as_secs() && r.description == *description)
                    .and_then(|r| r.settled_after)
                    .map_or_else(|| "pending".to_owned(), |d| format!("+{}", minutes(d)))
            })
            .collect();
        rows.push((format!("settled after {} {description}", minutes(*at)), cells));
    }
    let quantile = |q: f64| -> Vec<String> {
        columns
            .iter()
            .map(|(_, o)| o.pod_starts.quantile(q).map_or_else(|| "-".to_owned(), minutes))
            .collect()
    };
    rows.push(("pod start p50 (created to Ready)".to_owned(), quantile(0.5)));
    rows.push(("pod start p99".to_owned(), quantile(0.99)));
    rows.push((
        "pods never started".to_owned(),
        columns
            .iter()
            .map(|(_, o)| o.pod_starts.not_started.to_string())
            .collect(),
    ));
    rows.push((
        "instances launched".to_owned(),
        columns
            .iter()
            .map(|(_, o)| o.launches.len().to_string())
            .collect(),
    ));
    if let Some((last, _)) = shared.last() {
        rows.push((
            format!("launched from {} on", minutes(*last)),
            columns
                .iter()
                .map(|(_, o)| o.launches.iter().filter(|l| *l >= last).count().to_string())
                .collect(),
        ));
    }
    rows.push((
        "peak ready nodes".to_owned(),
        columns
            .iter()
            .map(|(_, o)| {
                o.samples
                    .iter()
                    .map(Sample::nodes_ready)
                    .max()
                    .unwrap_or(0)
                    .to_string()
            })
            .collect(),
    ));
    rows.push((
        "cost at the end ($/h)".to_owned(),
        columns
            .iter()
            .map(|(_, o)| usd(o.samples.last().map_or(0, |s| s.cost_per_hour_nano_usd)))
            .collect(),
    ));
    rows.push((
        "billed".to_owned(),
        columns
            .iter()
            .map(|(_, o)| usd(o.ledger.total_cost_nano_usd()))
            .collect(),
    ));

    let titles: Vec<&str> = columns.iter().map(|(title, _)| title.as_str()).collect();
    format!(
        "scenario {name}: variants side by side\n{}",
        table(&titles, &rows)
    )
}

/// Rows under column titles: labels left-aligned, cells right-aligned to their column's width.
fn table(titles: &[&str], rows: &[(String, Vec<String>)]) -> String {
    let label_width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let widths: Vec<usize> = titles
        .iter()
        .enumerate()
        .map(|(i, title)| {
            rows.iter()
                .map(|(_, cells)| cells[i].len())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = write!(out, "{:<label_width$}", "");
    for (title, width) in titles.iter().zip(&widths) {
        let _ = write!(out, "  {title:>width$}");
    }
    let _ = writeln!(out);
    for (label, cells) in rows {
        let _ = write!(out, "{label:<label_width$}");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(out, "  {cell:>width$}");
        }
        let _ = writeln!(out);
    }
    out
}

/// The steps (time and description) every column played, in the first column's order. Steps
/// are recorded when applied, a few milliseconds apart between runs: times match to the second.
fn shared_steps(columns: &[(String, &Outcome)]) -> Vec<(SignedDuration, String)> {
    let Some((_, first)) = columns.first() else {
        return Vec::new();
    };
    let same = |a: &(SignedDuration, String), b: &(SignedDuration, String)| {
        a.0.as_secs() == b.0.as_secs() && a.1 == b.1
    };
    let mut shared: Vec<(SignedDuration, String)> = Vec::new();
    for step in &first.steps {
        let everywhere = columns
            .iter()
            .all(|(_, o)| o.steps.iter().any(|other| same(step, other)));
        if everywhere && !shared.iter().any(|known| same(step, known)) {
            shared.push(step.clone());
        }
    }
    shared
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nodewright_sim::cloud::Ledger;

    use super::*;

    fn sample(secs: i64, pending: usize, nodes: usize) -> Sample {
        Sample {
            at: SignedDuration::from_secs(secs),
            pending_pods: pending,
            running_pods: 5 - pending,
            nodes_by_type: BTreeMap::from([("m5.large".to_owned(), nodes)]),
            cost_per_hour_nano_usd: 96_000_000 * u64::try_from(nodes).unwrap(),
            ..Sample::default()
        }
    }

    #[test]
    fn a_step_settles_when_nothing_is_pending() {
        let outcome = Outcome {
            samples: vec![
                sample(60, 5, 0),
                sample(75, 5, 0),
                sample(120, 0, 3),
                sample(135, 0, 3),
            ],
            steps: vec![(
                SignedDuration::from_secs(60),
                "scale Deployment inflate to 5".to_owned(),
            )],
            ledger: Ledger::default(),
            live_instances: 3,
            launches: Vec::new(),
            pod_starts: crate::sample::PodStarts::default(),
        };
        let results = step_results(&outcome);
        assert_eq!(results[0].settled_after, Some(SignedDuration::from_secs(60)));
        assert_eq!(results[0].nodes, 3);
        let table = summary("t", &outcome);
        assert!(table.contains("+1m00s"), "{table}");
        assert!(table.contains("$0.2880"), "{table}");
        assert!(table.contains("peak ready nodes        3"), "{table}");
    }

    #[test]
    fn steps_at_the_same_moment_share_their_window() {
        let outcome = Outcome {
            samples: vec![sample(60, 5, 0), sample(120, 0, 3)],
            steps: vec![
                (SignedDuration::from_secs(60), "delete Deployment a".to_owned()),
                (
                    SignedDuration::from_secs(60),
                    "scale Deployment b to 5".to_owned(),
                ),
            ],
            ledger: Ledger::default(),
            live_instances: 3,
            launches: Vec::new(),
            pod_starts: crate::sample::PodStarts::default(),
        };
        let results = step_results(&outcome);
        assert_eq!(results[0].settled_after, Some(SignedDuration::from_secs(60)));
        assert_eq!(results[1].settled_after, Some(SignedDuration::from_secs(60)));
    }

    #[test]
    fn variants_are_compared_side_by_side() {
        let burst = (
            SignedDuration::from_secs(60),
            "scale Deployment inflate to 5".to_owned(),
        );
        let cold = Outcome {
            samples: vec![sample(60, 5, 0), sample(120, 5, 0), sample(180, 0, 3)],
            steps: vec![burst.clone()],
            ledger: Ledger::default(),
            live_instances: 3,
            launches: vec![SignedDuration::from_secs(70); 3],
            pod_starts: crate::sample::PodStarts {
                latencies: vec![SignedDuration::from_secs(110); 5],
                not_started: 0,
            },
        };
        let warm = Outcome {
            samples: vec![sample(61, 0, 3), sample(120, 0, 3)],
            steps: vec![
                (SignedDuration::ZERO, "apply inline YAML".to_owned()),
                // Applied a few milliseconds later than in the other run.
                (SignedDuration::from_millis(60_004), burst.1.clone()),
            ],
            launches: vec![SignedDuration::from_secs(5); 3],
            pod_starts: crate::sample::PodStarts {
                latencies: vec![SignedDuration::from_secs(2); 5],
                not_started: 0,
            },
            ..cold.clone()
        };
        let played = [
            Played {
                variant: Some("without-buffer".into()),
                outcome: cold,
            },
            Played {
                variant: Some("with-buffer".into()),
                outcome: warm,
            },
        ];
        let table = comparison("warm-pool", &played);
        let line = |label: &str| {
            table
                .lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no {label} row in\n{table}"))
                .split_whitespace()
                .rev()
                .take(2)
                .collect::<Vec<_>>()
        };
        assert!(
            table
                .lines()
                .nth(1)
                .unwrap()
                .ends_with("without-buffer  with-buffer"),
            "{table}"
        );
        assert_eq!(line("settled after 1m00s scale"), ["+0m00s", "+2m00s"], "{table}");
        assert_eq!(line("pod start p50"), ["0m02s", "1m50s"], "{table}");
        assert_eq!(line("launched from 1m00s on"), ["0", "3"], "{table}");
        assert!(
            !table.contains("apply inline YAML"),
            "only shared steps get rows: {table}"
        );
    }
}
