//! Property tests: on random problems every plan passes the independent verifier, places or
//! explains every pod, never costs less than its lower bound, and is deterministic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use common::*;
use nodewright_solver::{Problem, solve, verify::verify};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A pod shape: cpu millis, memory MiB, and which constraint it carries.
fn pod_spec() -> impl Strategy<Value = (u32, u32, u8, u8)> {
    (
        prop::sample::select(vec![100u32, 250, 500, 1000, 1500, 3000, 7000]),
        prop::sample::select(vec![128u32, 512, 1024, 4096, 12_288]),
        0u8..7,
        0u8..3,
    )
}

fn constraint(kind: u8, app: &str) -> Value {
    let selector = json!({ "matchLabels": { "app": app } });
    match kind {
        1 => {
            json!({ "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector }] })
        }
        2 => {
            json!({ "topologySpreadConstraints": [{ "maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector }] })
        }
        3 => {
            json!({ "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{ "topologyKey": "kubernetes.io/hostname", "labelSelector": selector }] } } })
        }
        4 => {
            json!({ "affinity": { "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{ "topologyKey": "topology.kubernetes.io/zone", "labelSelector": selector }] } } })
        }
        5 => json!({ "nodeSelector": { "topology.kubernetes.io/zone": "us-east-1b" } }),
        6 => json!({ "tolerations": [{ "key": "dedicated", "operator": "Exists" }] }),
        _ => json!({}),
    }
}

fn build(specs: &[(u32, u32, u8, u8)], limited: bool) -> Problem {
    let mut pods = Vec::new();
    for (i, (cpu, mem, kind, app)) in specs.iter().enumerate() {
        let app = format!("app{app}-{kind}");
        pods.push(pod(
            &format!("p{i}"),
            &format!("{cpu}m"),
            &format!("{mem}Mi"),
            json!({ "app": app }),
            constraint(*kind, &app),
        ));
    }
    let mut default_spec = json!({});
    if limited {
        default_spec = json!({ "limits": { "cpu": "24" } });
    }
    let tainted = pool(
        "dedicated",
        json!({ "weight": 20, "template": { "spec": { "taints": [{ "key": "dedicated", "effect": "NoSchedule" }] } } }),
        small_catalog(),
    );
    problem(
        pods,
        vec![pool("default", default_spec, small_catalog()), tainted],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn plans_are_sound(specs in prop::collection::vec(pod_spec(), 1..60), limited in any::<bool>()) {
        let problem = build(&specs, limited);
        let plan = solve(&problem);
        let violations = verify(&problem, &plan);
        prop_assert!(violations.is_empty(), "{:#?}", violations);
        prop_assert!(plan.lower_bound <= plan.total_price);
        let placed: usize = plan.new_nodes.iter().map(|n| n.pods.len()).sum::<usize>() + plan.existing_placements.len();
        prop_assert_eq!(placed + plan.unschedulable.len(), specs.len());
        prop_assert!(plan.unschedulable.iter().all(|u| !u.reasons.is_empty()));
        if !limited {
            // Without limits, only pods larger than every type (7 cpu pods fit 8-cpu types) or
            // with unsatisfiable affinity can fail.
            for u in &plan.unschedulable {
                let message = u.message();
                prop_assert!(message.contains("affinity") || message.contains("spread"), "{}", message);
            }
        }
        prop_assert_eq!(&solve(&problem), &plan, "same input, same plan");
    }
}

#[test]
fn solver_has_no_client_runtime_or_cloud_dependencies() {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "nodewright-solver",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    assert!(tree.contains("nodewright-solver"), "{tree}");
    for forbidden in ["kube-client", "kube-runtime", "tokio", "hyper", "aws-", "reqwest"] {
        let hits: Vec<&str> = tree.lines().filter(|l| l.starts_with(forbidden)).collect();
        assert!(hits.is_empty(), "the solver depends on {hits:?}");
    }
}
