//! A short scenario played end to end with the real controllers: the sampled timeline shows the
//! pods pending, then nodes launched and the pods running, and the cloud billed them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use std::path::Path;

use nodewright_scenario::{PlayOptions, Progress, Scenario, play, report};

/// The scenario: its header, [`common::APPLY_WEB_AT_START`], then its own steps.
fn scenario_text() -> String {
    let head = "name: small\nduration: 8m\nsampleEvery: 10s\nsteps:\n";
    let tail = r"  - at: 30s
    scale: {kind: Deployment, name: web, replicas: 3}
";
    format!("{head}{}{tail}", common::APPLY_WEB_AT_START)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_scales_up_on_new_nodes_and_is_reported() {
    let _alone = common::ONE_PLAY_AT_A_TIME.lock().await;
    let scenario = Scenario::parse(&scenario_text(), "small.yaml", Path::new(".")).unwrap();
    let options = PlayOptions {
        speed: 60.0,
        ..PlayOptions::default()
    };
    let mut steps = Vec::new();
    let outcome = play(&scenario, &options, |progress| {
        if let Progress::Step { description, .. } = progress {
            steps.push(description.to_owned());
        }
    })
    .await
    .unwrap();
    assert_eq!(steps, ["apply inline YAML", "scale Deployment web to 3"]);
    let first_pending = outcome.samples.iter().position(|s| s.pending_pods == 3).unwrap();
    let all_running = outcome
        .samples
        .iter()
        .position(|s| s.running_pods == 3 && s.nodes_ready() >= 1)
        .unwrap();
    assert!(first_pending < all_running, "pods were pending before they ran");
    assert!(outcome.ledger.total_cost_nano_usd() > 0);
    assert!(outcome.live_instances >= 1);
    let summary = report::summary("small", &outcome);
    assert!(summary.contains("scale Deployment web to 3"), "{summary}");
    assert!(!summary.contains("pending\n"), "the scale-up settled: {summary}");
}

/// Every scenario shipped in `scenarios/` parses, and the objects it applies are valid.
#[test]
fn shipped_scenarios_parse_and_apply_valid_objects() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let scenario = Scenario::parse(&text, &path.display().to_string(), &dir).unwrap();
        for step in &scenario.steps {
            if let nodewright_scenario::format::Action::Apply { yaml, source } = &step.action {
                let objects: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml).unwrap();
                assert!(
                    !objects.is_empty(),
                    "{}: {source} applies nothing",
                    path.display()
                );
                for object in objects {
                    let _: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(object).unwrap();
                }
            }
        }
        seen += 1;
    }
    assert!(seen >= 1);
}
