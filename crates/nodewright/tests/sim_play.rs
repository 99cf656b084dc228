//! `nodewright sim` end to end: a scenario file played by the built binary prints its progress
//! and summary and writes the chart; a scenario with variants plays each, charts each and ends
//! with the comparison; a broken scenario is an error naming the file and field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::path::Path;
use std::process::Command;

fn nodewright(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args(args)
        .output()
        .unwrap()
}

/// Plays `scenario` with the built binary at `speed`, charting to `chart`; asserts it succeeded
/// and returns what it printed.
fn play(scenario: &Path, speed: &str, chart: &Path) -> String {
    let output = nodewright(&[
        "sim",
        "--scenario",
        scenario.to_str().unwrap(),
        "--speed",
        speed,
        "--chart",
        chart.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
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
    let stdout = play(&scenario, "60", &chart);
    assert!(stdout.contains(">> scale Deployment web to 2"), "{stdout}");
    assert!(stdout.contains("scenario scale"), "{stdout}");
    assert!(stdout.contains("billed"), "{stdout}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("pending"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn variants_are_played_charted_and_compared() {
    let dir = std::env::temp_dir().join(format!("nodewright-sim-variants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("variants.yaml");
    std::fs::write(
        &scenario,
        "name: v\nduration: 1m\nsteps:\n- at: 0s\n  apply: {inline: 'apiVersion: v1\n\n    kind: ConfigMap\n\n    metadata: {name: c}'}\nvariants:\n- name: plain\n- name: more\n  steps:\n  - at: 10s\n    delete: {kind: ConfigMap, name: c}\n",
    )
    .unwrap();
    let chart = dir.join("chart.svg");
    let stdout = play(&scenario, "120", &chart);
    // The variant's own step, printed at the simulated time it ran: its 10 s, or a little later
    // when a loaded machine lags the 120x clock.
    let deleted_at = stdout
        .lines()
        .find_map(|l| l.strip_prefix("[more]")?.strip_suffix(">> delete ConfigMap c"))
        .unwrap_or_else(|| panic!("no delete step of variant more in {stdout}"));
    let (minutes, seconds) = deleted_at.trim().trim_end_matches('s').split_once('m').unwrap();
    let seconds = minutes.parse::<u32>().unwrap() * 60 + seconds.parse::<u32>().unwrap();
    assert!((10..30).contains(&seconds), "{stdout}");
    assert!(
        stdout.contains("scenario v/plain") && stdout.contains("scenario v/more"),
        "{stdout}"
    );
    let comparison = stdout
        .split("scenario v: variants side by side\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no comparison in {stdout}"));
    let header: Vec<&str> = comparison.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["plain", "more"], "{stdout}");
    for variant in ["plain", "more"] {
        let svg = std::fs::read_to_string(dir.join(format!("chart-{variant}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{variant}");
    }
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
