//! `nodewright sim` end to end: a scenario file played by the built binary prints its progress
//! and summary and writes the chart; a broken scenario is an error naming the file and field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::process::Command;

fn nodewright(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_scenario_file_is_played_summarized_and_charted() {
    let dir = std::env::temp_dir().join(format!("nodewright-sim-play-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("scale.yaml");
    std::fs::write(
        &scenario,
        "name: scale\ndescription: two pods\nduration: 5m\nsteps:\n- at: 0s\n  apply: {file: web.yaml}\n- at: 20s\n  scale: {kind: Deployment, name: web, replicas: 2}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("web.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - {name: web, image: web:1, resources: {requests: {cpu: 500m}}}\n",
    )
    .unwrap();
    let chart = dir.join("chart.svg");
    let output = nodewright(&[
        "sim",
        "--scenario",
        scenario.to_str().unwrap(),
        "--speed",
        "60",
        "--chart",
        chart.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(">> scale Deployment web to 2"), "{stdout}");
    assert!(stdout.contains("scenario scale"), "{stdout}");
    assert!(stdout.contains("billed"), "{stdout}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("pending"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_scenario_names_the_file_and_field() {
    let dir = std::env::temp_dir().join(format!("nodewright-sim-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("bad.yaml");
    std::fs::write(
        &scenario,
        "name: bad\nduration: 5m\nsteps:\n- at: later\n  delete: {kind: Pod, name: a}\n",
    )
    .unwrap();
    let output = nodewright(&["sim", "--scenario", scenario.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.yaml") && stderr.contains("steps[0].at"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
