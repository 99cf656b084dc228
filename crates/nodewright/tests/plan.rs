//! `nodewright plan` end to end: the built binary on the examples (the default NodePool and
//! EC2NodeClass, and the inflate Deployment scaled to 5), its JSON checked against the schema
//! documented in docs/plan-output.md, its plan checked by the independent verifier, its table and
//! YAML, and a bad manifest.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use nodewright_api::parse_objects;
use nodewright_catalog::{Catalog, NodeSettings};
use nodewright_solver::{
    manifests::{Manifest, problem_from_manifests},
    report::{PlanReport, SCHEMA_VERSION},
    solve,
    verify::verify,
};
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn nodewright(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// A fresh directory under the system temp dir for one test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nodewright-plan-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// examples/inflate.yaml with 5 replicas, written into `dir`.
fn inflate_with_5_replicas(dir: &Path) -> PathBuf {
    let text = fs::read_to_string(format!("{ROOT}/examples/inflate.yaml")).unwrap();
    assert!(text.contains("replicas: 0"), "the example starts at 0 replicas");
    let path = dir.join("inflate.yaml");
    fs::write(&path, text.replace("replicas: 0", "replicas: 5")).unwrap();
    path
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The documented fields per object path: `""` is the top level, `nodes[]`, `totals`, ...; each
/// field with its documented type and whether it is optional.
fn documented_schema() -> BTreeMap<String, BTreeMap<String, (String, bool)>> {
    let doc = fs::read_to_string(format!("{ROOT}/docs/plan-output.md")).unwrap();
    let mut schema: BTreeMap<String, BTreeMap<String, (String, bool)>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for line in doc.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = match heading {
                "Top level" => Some(String::new()),
                h if h.starts_with('`') && h.ends_with('`') => Some(h.trim_matches('`').to_owned()),
                _ => None,
            };
            continue;
        }
        let Some(section) = &section else { continue };
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 4
            && let Some(field) = cells[1].strip_prefix('`').and_then(|f| f.strip_suffix('`'))
        {
            let optional = cells[3].starts_with("*Optional*");
            schema
                .entry(section.clone())
                .or_default()
                .insert(field.to_owned(), (cells[2].to_owned(), optional));
        }
    }
    schema
}

fn type_matches(documented: &str, value: &Value) -> bool {
    match documented {
        "string" => value.is_string(),
        "integer" => value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array of string" => value.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        "array of object" => value.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        other => panic!("undocumented type {other:?} in docs/plan-output.md"),
    }
}

/// Checks `value` (at `path`) and everything under it against the documented schema.
fn check_against_schema(
    schema: &BTreeMap<String, BTreeMap<String, (String, bool)>>,
    path: &str,
    value: &Value,
    checked: &mut BTreeSet<String>,
) {
    let fields = schema
        .get(path)
        .unwrap_or_else(|| panic!("docs/plan-output.md has no section for `{path}`"));
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{path} is not an object"));
    checked.insert(path.to_owned());
    for (key, child) in object {
        let (documented, _) = fields
            .get(key)
            .unwrap_or_else(|| panic!("{path}.{key} is printed but not documented"));
        assert!(
            type_matches(documented, child),
            "{path}.{key} is documented as {documented} but is {child}"
        );
        let child_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if documented == "object" {
            check_against_schema(schema, &child_path, child, checked);
        } else if documented == "array of object" {
            for item in child.as_array().into_iter().flatten() {
                check_against_schema(schema, &format!("{child_path}[]"), item, checked);
            }
        }
    }
    for (key, (_, optional)) in fields {
        assert!(
            *optional || object.contains_key(key),
            "{path}.{key} is documented as always present but is missing"
        );
    }
}

#[test]
fn json_plan_of_the_examples_follows_the_documented_schema_and_passes_the_verifier() {
    let dir = temp_dir("json");
    let inflate = inflate_with_5_replicas(&dir);
    let defaults = format!("{ROOT}/examples/default");
    let inflate_arg = inflate.to_str().unwrap();
    let output = nodewright(&["plan", "-f", &defaults, "-f", inflate_arg, "-o", "json"]);
    let text = stdout(&output);

    // The documented schema, field by field, and the Rust type.
    let value: Value = serde_json::from_str(&text).unwrap();
    let schema = documented_schema();
    let mut checked = BTreeSet::new();
    check_against_schema(&schema, "", &value, &mut checked);
    for path in [
        "",
        "nodes[]",
        "nodes[].workloads[]",
        "nodes[].requirements[]",
        "totals",
    ] {
        assert!(checked.contains(path), "`{path}` was not exercised");
    }
    let report: PlanReport = serde_json::from_str(&text).unwrap();
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    assert!(report.spot_prices_modelled);
    assert!(report.warnings.is_empty(), "{:#?}", report.warnings);

    // Every pod placed, on nodes of NodePool default.
    assert!(report.unschedulable.is_empty(), "{:#?}", report.unschedulable);
    assert_eq!(report.totals.pending_pods, 5);
    assert_eq!(report.totals.pods, 5);
    assert_eq!(report.totals.nodes, report.nodes.len());
    let mut placed: Vec<&str> = report
        .nodes
        .iter()
        .flat_map(|n| &n.pods)
        .map(String::as_str)
        .collect();
    placed.sort_unstable();
    assert_eq!(
        placed,
        [
            "default/inflate-0",
            "default/inflate-1",
            "default/inflate-2",
            "default/inflate-3",
            "default/inflate-4"
        ]
    );
    for node in &report.nodes {
        assert_eq!(node.nodepool, "default");
        assert_eq!(node.pod_count, node.pods.len());
        assert_eq!(node.instance_types.first(), Some(&node.instance_type));
        assert!(node.price_per_hour > 0.0);
    }
    let sum: f64 = report.nodes.iter().map(|n| n.price_per_hour).sum();
    assert!((sum - report.totals.price_per_hour).abs() < 1e-9);
    assert!(report.totals.lower_bound_per_hour <= report.totals.price_per_hour);

    // The equivalent problem, built in-process from the same files: its plan passes the
    // independent verifier, and the binary printed exactly that plan.
    let mut manifests = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir(&defaults)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.push(inflate.clone());
    for file in files {
        let source_name = file.display().to_string();
        let objects = parse_objects(&fs::read_to_string(&file).unwrap(), &source_name).unwrap();
        manifests.push(Manifest { source_name, objects });
    }
    let catalog = Catalog::us_east_1(&NodeSettings::default()).unwrap();
    let input = problem_from_manifests(&manifests, &catalog).unwrap();
    let plan = solve(&input.problem);
    let violations = verify(&input.problem, &plan);
    assert!(violations.is_empty(), "{violations:#?}");
    let expected = serde_json::to_string_pretty(&PlanReport::new(&input, &plan)).unwrap() + "\n";
    assert_eq!(text, expected, "the binary printed the verified plan");

    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn table_and_yaml_name_the_instance_type_and_price() {
    let dir = temp_dir("table");
    let inflate = inflate_with_5_replicas(&dir);
    let defaults = format!("{ROOT}/examples/default");
    let inflate_arg = inflate.to_str().unwrap();
    let json = stdout(&nodewright(&[
        "plan",
        "-f",
        &defaults,
        "-f",
        inflate_arg,
        "-o",
        "json",
    ]));
    let report: PlanReport = serde_json::from_str(&json).unwrap();

    let table = stdout(&nodewright(&["plan", "-f", &defaults, "-f", inflate_arg]));
    let header = table.lines().next().unwrap();
    for column in ["NODEPOOL", "INSTANCE TYPE", "CAPACITY", "ZONE", "PODS", "$/H"] {
        assert!(header.contains(column), "{column} missing from {header:?}");
    }
    for node in &report.nodes {
        let row = table
            .lines()
            .find(|l| l.contains(&node.instance_type))
            .unwrap_or_else(|| panic!("no row for {} in\n{table}", node.instance_type));
        for cell in [
            node.nodepool.as_str(),
            node.capacity_type.as_str(),
            node.zone.as_str(),
            &node.pod_count.to_string(),
            &format!("{:.4}", node.price_per_hour),
        ] {
            assert!(row.contains(cell), "{cell:?} missing from row {row:?}");
        }
    }
    assert!(
        table.contains(&format!("${:.4}/h", report.totals.price_per_hour)),
        "{table}"
    );
    assert!(table.contains("Lower bound: $"), "{table}");
    assert!(table.contains("gap "), "{table}");
    assert!(table.contains("Spot prices are modelled"), "{table}");

    let yaml = stdout(&nodewright(&[
        "plan",
        "-f",
        &defaults,
        "-f",
        inflate_arg,
        "-o",
        "yaml",
    ]));
    let from_yaml: PlanReport = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(from_yaml.schema_version, SCHEMA_VERSION);
    assert_eq!(from_yaml.nodes.len(), report.nodes.len());
    for (a, b) in from_yaml.nodes.iter().zip(&report.nodes) {
        assert_eq!(
            (&a.instance_type, &a.pods, &a.requirements),
            (&b.instance_type, &b.pods, &b.requirements)
        );
        assert!((a.price_per_hour - b.price_per_hour).abs() < 1e-12);
    }

    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn unschedulable_pods_still_make_a_plan_and_exit_zero() {
    let dir = temp_dir("unschedulable");
    let huge = fs::read_to_string(format!("{ROOT}/examples/inflate.yaml"))
        .unwrap()
        .replace("replicas: 0", "replicas: 2")
        .replace("cpu: 1", "cpu: 1000");
    let path = dir.join("huge.yaml");
    fs::write(&path, huge).unwrap();
    let defaults = format!("{ROOT}/examples/default");
    let output = nodewright(&[
        "plan",
        "-f",
        &defaults,
        "-f",
        path.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let report: PlanReport = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report.unschedulable.len(), 2);
    assert!(report.nodes.is_empty());
    assert_eq!(report.unschedulable[0].pod, "default/inflate-0");
    assert_eq!(report.unschedulable[0].workload, "Deployment/default/inflate");
    assert!(
        report.unschedulable[0]
            .reasons
            .iter()
            .any(|r| r.contains("nodepool default")),
        "{:#?}",
        report.unschedulable[0].reasons
    );
    let table = stdout(&nodewright(&[
        "plan",
        "-f",
        &defaults,
        "-f",
        path.to_str().unwrap(),
    ]));
    assert!(table.contains("Unschedulable pods (2):"), "{table}");
    assert!(
        table.contains("default/inflate-1 (Deployment/default/inflate)"),
        "{table}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_manifest_fails_naming_file_object_and_field() {
    let dir = temp_dir("bad");
    let pool = fs::read_to_string(format!("{ROOT}/examples/default/nodepool.yaml"))
        .unwrap()
        .replace("\nspec:\n", "\nspec:\n  weight: 0\n");
    let path = dir.join("nodepool.yaml");
    fs::write(&path, pool).unwrap();
    let class = format!("{ROOT}/examples/default/ec2nodeclass.yaml");
    let output = nodewright(&["plan", "-f", path.to_str().unwrap(), "-f", &class]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no plan is printed");
    let stderr = String::from_utf8(output.stderr).unwrap();
    for needle in [
        path.to_str().unwrap(),
        "NodePool \"default\"",
        "spec.weight",
        "must be between 1 and 100",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing from {stderr:?}");
    }

    // A type error in a workload is named by its path too.
    let deployment = fs::read_to_string(format!("{ROOT}/examples/inflate.yaml"))
        .unwrap()
        .replace("replicas: 0", "replicas: five");
    let path = dir.join("inflate.yaml");
    fs::write(&path, deployment).unwrap();
    let output = nodewright(&["plan", "-f", path.to_str().unwrap(), "-f", &class]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    for needle in [path.to_str().unwrap(), "Deployment \"inflate\"", "spec.replicas"] {
        assert!(stderr.contains(needle), "{needle:?} missing from {stderr:?}");
    }

    // Nothing to read is an error, not an empty plan.
    let empty = dir.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let output = nodewright(&["plan", "-f", empty.to_str().unwrap()]);
    assert!(!output.status.success());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn without_manifests_the_built_in_demo_is_planned_and_matches_the_example_files() {
    let builtin = nodewright(&["plan", "-o", "json"]);
    assert!(
        String::from_utf8_lossy(&builtin.stderr).contains("built-in demo"),
        "the user is told what was planned"
    );
    let builtin: PlanReport = serde_json::from_str(&stdout(&builtin)).unwrap();
    let defaults = format!("{ROOT}/examples/default");
    let demo = format!("{ROOT}/examples/demo");
    let from_files: PlanReport = serde_json::from_str(&stdout(&nodewright(&[
        "plan", "-f", &defaults, "-f", &demo, "-o", "json",
    ])))
    .unwrap();

    // 12 web + 6 api + 3 cache + 4 report pods; the DaemonSet is overhead, not a pending pod.
    assert_eq!(builtin.totals.pending_pods, 25);
    assert!(builtin.unschedulable.is_empty(), "{:#?}", builtin.unschedulable);
    let caches_per_node = builtin
        .nodes
        .iter()
        .map(|n| n.pods.iter().filter(|p| p.starts_with("shop/cache-")).count());
    assert!(
        caches_per_node.clone().all(|c| c <= 1),
        "cache anti-affinity holds"
    );
    assert_eq!(caches_per_node.sum::<usize>(), 3);
    assert_eq!(builtin.nodes.len(), from_files.nodes.len());
    for (a, b) in builtin.nodes.iter().zip(&from_files.nodes) {
        assert_eq!(
            (&a.instance_type, &a.zone, &a.pods),
            (&b.instance_type, &b.zone, &b.pods)
        );
    }
    assert!((builtin.totals.price_per_hour - from_files.totals.price_per_hour).abs() < 1e-9);
}

#[test]
fn validating_the_examples_directory_as_the_readme_does_passes_and_skips_scenarios() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let output = nodewright(&["validate", "-f", examples.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("warm-pool"),
        "a scenario file was read as manifests"
    );
}
