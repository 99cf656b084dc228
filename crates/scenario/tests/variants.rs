//! Variants: one scenario played several ways, each on its own simulated cluster, and reported
//! side by side. A Deployment scaled up before the burst (the warm variant) absorbs it with no
//! launch; the cold one has to launch nodes. And the shipped warm-pool scenario plays both of
//! its variants (the buffer's effect is asserted where the CapacityBuffer controller is built).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use std::path::Path;

use jiff::SignedDuration;
use nodewright_api::CapacityBuffer;
use nodewright_scenario::{
    Outcome, PlayOptions, Played, Progress, Scenario,
    format::Action,
    play_variants,
    report::{self, StepResult},
};

const BURST: &str = "scale Deployment web to 3";

/// The scenario: its header, [`common::APPLY_WEB_AT_START`], then its own steps.
fn scenario_text() -> String {
    let head = "name: pre-scaled\nduration: 4m30s\nsampleEvery: 5s\nsteps:\n";
    let tail = r"  - at: 3m
    scale: {kind: Deployment, name: web, replicas: 3}
variants:
  - name: cold
  - name: warm
    description: the Deployment is scaled up from the start
    steps:
      - at: 0s
        scale: {kind: Deployment, name: web, replicas: 3}
";
    format!("{head}{}{tail}", common::APPLY_WEB_AT_START)
}

fn burst_result(outcome: &Outcome, description: &str) -> StepResult {
    report::step_results(outcome)
        .into_iter()
        .find(|r| r.description == description && r.at >= SignedDuration::from_mins(1))
        .unwrap_or_else(|| panic!("no {description} step in {:?}", outcome.steps))
}

fn launched_from(outcome: &Outcome, at: SignedDuration) -> usize {
    outcome.launches.iter().filter(|l| **l >= at).count()
}

async fn play_all(scenario: &Scenario, speed: f64) -> (Vec<Played>, Vec<String>) {
    let options = PlayOptions {
        speed,
        ..PlayOptions::default()
    };
    let mut started = Vec::new();
    let played = play_variants(scenario, &options, |variant, progress| {
        if let Progress::Started(_) = progress {
            started.push(variant.unwrap().to_owned());
        }
    })
    .await
    .unwrap();
    (played, started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_play_on_their_own_clusters_and_are_compared() {
    let _alone = common::ONE_PLAY_AT_A_TIME.lock().await;
    let scenario = Scenario::parse(&scenario_text(), "pre-scaled.yaml", Path::new(".")).unwrap();
    let (played, started) = play_all(&scenario, 60.0).await;
    assert_eq!(started, ["cold", "warm"], "each variant starts its own cluster");
    let [cold, warm] = played.as_slice() else {
        panic!("two variants played: {played:?}");
    };
    assert_eq!(cold.variant.as_deref(), Some("cold"));

    let warm_burst = burst_result(&warm.outcome, BURST);
    assert_eq!(
        launched_from(&warm.outcome, warm_burst.at),
        0,
        "the warm variant's pods already run: {:?}",
        warm.outcome.launches
    );
    let warm_settled = warm_burst
        .settled_after
        .expect("the warm variant settles at once");
    // A few 5 s samples: at 60x a loaded machine can lag the clock by a sample or two.
    assert!(warm_settled <= SignedDuration::from_secs(20), "{warm_settled:?}");

    let cold_burst = burst_result(&cold.outcome, BURST);
    assert!(
        launched_from(&cold.outcome, cold_burst.at) >= 1,
        "the cold variant launches for the burst: {:?}",
        cold.outcome.launches
    );
    // Launching alone takes 30 s of simulated time.
    assert!(
        cold_burst
            .settled_after
            .is_none_or(|d| d > warm_settled + SignedDuration::from_secs(30)),
        "cold settled after {:?}, warm after {warm_settled:?}",
        cold_burst.settled_after
    );

    let table = report::comparison(&scenario.name, &played);
    let header: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(header, ["cold", "warm"], "{table}");
    let launched_row = table
        .lines()
        .find(|l| l.starts_with("launched from 3m00s on"))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(
        launched_row.split_whitespace().last(),
        Some("0"),
        "warm launched nothing: {table}"
    );
    assert!(table.contains(&format!("settled after 3m00s {BURST}")), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warm_pool_scenario_plays_with_and_without_a_buffer() {
    let _alone = common::ONE_PLAY_AT_A_TIME.lock().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = root.join("examples/scenarios/warm-pool.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let scenario = Scenario::parse(&text, "warm-pool.yaml", &root).unwrap();
    let names: Vec<&str> = scenario.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["without-buffer", "with-buffer"]);
    assert!(scenario.variants[0].steps.is_empty());

    // The with-buffer variant applies a valid CapacityBuffer and the PodTemplate it names.
    let applied: Vec<serde_json::Value> = scenario.variants[1]
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Apply { yaml, .. } => {
                Some(serde_saphyr::from_multiple::<serde_json::Value>(yaml).unwrap())
            }
            _ => None,
        })
        .flatten()
        .collect();
    let buffer: CapacityBuffer = applied
        .iter()
        .find(|o| o["kind"] == "CapacityBuffer")
        .map(|o| serde_json::from_value(o.clone()).unwrap())
        .expect("a CapacityBuffer");
    buffer.validate().unwrap();
    let template = buffer.spec.pod_template_ref.as_ref().unwrap();
    assert!(
        applied
            .iter()
            .any(|o| o["kind"] == "PodTemplate" && o["metadata"]["name"] == template.name.as_str()),
        "the buffer's PodTemplate is applied too"
    );

    // 60x, not faster: under a loaded machine a faster clock outruns the controllers and no pod starts.
    let (played, started) = play_all(&scenario, 60.0).await;
    assert_eq!(started, names);
    for run in &played {
        let burst = burst_result(&run.outcome, "scale Deployment web to 20");
        assert!(burst.at >= SignedDuration::from_mins(3), "{burst:?}");
        assert!(!run.outcome.samples.is_empty());
    }
    let table = report::comparison(&scenario.name, &played);
    let header: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(header, names, "{table}");
    assert!(table.contains("pod start p99"), "{table}");

    // The buffer absorbs the burst: its pods start on the spare nodes instead of waiting for new
    // ones (the buffer is then rebuilt, so launches after the burst still happen).
    let median = |run: &Played| {
        let mut latencies = run.outcome.pod_starts.latencies.clone();
        latencies.sort();
        assert!(!latencies.is_empty(), "{table}");
        latencies[latencies.len() / 2]
    };
    let (cold, warm) = (median(&played[0]), median(&played[1]));
    assert!(
        warm * 2 < cold,
        "median pod start with the buffer {warm:#} is not under half of {cold:#} without:\n{table}"
    );
}
