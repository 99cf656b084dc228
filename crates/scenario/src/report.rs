//! The summary a played scenario ends with.

use std::fmt::Write as _;

use jiff::SignedDuration;

use crate::{Outcome, sample::Sample};

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
        };
        let results = step_results(&outcome);
        assert_eq!(results[0].settled_after, Some(SignedDuration::from_secs(60)));
        assert_eq!(results[1].settled_after, Some(SignedDuration::from_secs(60)));
    }
}
