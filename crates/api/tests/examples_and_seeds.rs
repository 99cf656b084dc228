//! The manifests users start from: every object in `examples/` decodes strictly, validates clean,
//! is admitted by the CRD layer and round-trips through JSON and YAML; every Karpenter v1 object of
//! the source documents (kept verbatim in `tests/fixtures/seeds/`) is either accepted the same way
//! or, where Karpenter itself rejects it, rejected with exactly the problems pinned below.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod support;

use std::{
    fs,
    path::{Path, PathBuf},
};

use nodewright_api::{
    Object,
    decode::{decode_object, parse_yaml_documents},
};
use serde_json::Value;
use support::crd_verdict;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seeds")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // examples/scenarios holds `nodewright sim` scenarios (tested by the scenario crate).
            if path.file_name().is_some_and(|n| n == "scenarios") {
                continue;
            }
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Decodes, validates and round-trips one document; panics with the file named on any failure.
fn assert_accepted(file: &Path, index: usize, document: &Value) -> Object {
    let name = file.display().to_string();
    let object = decode_object(document.clone(), &name, index).unwrap_or_else(|e| panic!("{e}"));
    if let Err(invalid) = object.validate() {
        panic!("{name}: {invalid}");
    }
    if matches!(object, Object::Other { .. }) {
        return object;
    }
    let kind = document["kind"].as_str().unwrap();
    let verdict = crd_verdict(kind, document, None);
    assert!(
        verdict.accepted(),
        "{name}: the CRD layer rejects it: {verdict:?}"
    );

    let json = object.to_value();
    let again = decode_object(json.clone(), &name, index).unwrap();
    assert_eq!(again, object, "{name}: JSON round trip changed the object");
    assert_eq!(again.to_value(), json, "{name}: JSON round trip is not stable");
    let yaml = serde_saphyr::to_string(&json).unwrap();
    let reparsed = parse_yaml_documents(&yaml, &name).unwrap();
    let from_yaml = decode_object(reparsed[0].clone(), &name, index).unwrap();
    assert_eq!(from_yaml, object, "{name}: YAML round trip changed the object");
    assert!(
        crd_verdict(kind, &json, None).accepted(),
        "{name}: the defaulted object is rejected by the CRD layer"
    );
    object
}

#[test]
fn every_example_is_accepted_and_round_trips() {
    let files = yaml_files(&workspace().join("examples"));
    let mut kinds = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let documents = parse_yaml_documents(&text, &file.display().to_string()).unwrap();
        assert!(!documents.is_empty(), "{} holds no object", file.display());
        for (index, document) in documents.iter().enumerate() {
            let object = assert_accepted(file, index, document);
            kinds.push(object.describe());
        }
    }
    for expected in [
        "NodePool/default",
        "EC2NodeClass/default",
        "Deployment/inflate",
        "NodePool/burst-ready",
        "EC2NodeClass/az-resilient-class",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "examples/ lacks {expected}: {kinds:?}"
        );
    }
}

/// Problems of each verbatim seed object that Karpenter v1.14 rejects; every other fixture must be
/// accepted. Fields are as `nodewright validate` names them (decoding problems first).
const REJECTED: &[(&str, &[&str])] = &[
    ("07-nodepool-system.yaml", &["spec.template.spec.nodeClassRef"]),
    (
        "08-nodepool-general-purpose.yaml",
        &["spec.template.spec.nodeClassRef"],
    ),
    (
        "09-nodepool-high-performance.yaml",
        &["spec.disruption.budgets[0].duration"],
    ),
    ("10-ec2nodeclass-high-perf-class.yaml", &["spec.role"]),
    (
        "11-nodepool-optimized-pool.yaml",
        &["spec.template", "spec.disruption.expireAfter"],
    ),
    (
        "12-nodepool-burst-ready.yaml",
        &[
            "spec.template",
            "spec.disruption.budgets[0].reasons[1]",
            "spec.disruption.budgets[0].reasons[2]",
            "spec.disruption.budgets[1].reasons[1]",
        ],
    ),
    (
        "14-ec2nodeclass-drift-class.yaml",
        &["spec.securityGroupSelectorTerms", "spec.subnetSelectorTerms"],
    ),
    (
        "15-nodepool-spot-primary.yaml",
        &["spec.template.spec.nodeClassRef"],
    ),
    (
        "16-nodepool-on-demand-fallback.yaml",
        &["spec.template.spec.nodeClassRef"],
    ),
    (
        "17-ec2nodeclass-prepull-class.yaml",
        &[
            "spec.amiSelectorTerms",
            "spec.securityGroupSelectorTerms",
            "spec.subnetSelectorTerms",
        ],
    ),
    (
        "18-ec2nodeclass-bottlerocket-class.yaml",
        &["spec.securityGroupSelectorTerms", "spec.subnetSelectorTerms"],
    ),
    (
        "20-ec2nodeclass-az-resilient-class.yaml",
        &["spec.amiSelectorTerms", "spec.securityGroupSelectorTerms"],
    ),
];

fn problem_fields(file: &Path) -> Vec<String> {
    let text = fs::read_to_string(file).unwrap();
    let name = file.display().to_string();
    let documents = parse_yaml_documents(&text, &name).unwrap();
    assert_eq!(documents.len(), 1, "{name}: one object per fixture");
    match decode_object(documents[0].clone(), &name, 0) {
        Ok(object) => object
            .validate()
            .err()
            .map(|e| e.errors)
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect(),
        Err(error) => error
            .invalid()
            .unwrap_or_else(|| panic!("{error}"))
            .errors
            .iter()
            .map(|e| e.field.clone())
            .collect(),
    }
}

#[test]
fn verbatim_seed_objects_are_accepted_or_rejected_as_karpenter_would() {
    let files = yaml_files(&fixtures());
    assert_eq!(
        files.len(),
        20,
        "every karpenter.sh/v1 and karpenter.k8s.aws/v1 object of the seeds"
    );
    for file in &files {
        let file_name = file.file_name().unwrap().to_str().unwrap();
        let text = fs::read_to_string(file).unwrap();
        let document = parse_yaml_documents(&text, file_name).unwrap().remove(0);
        let kind = document["kind"].as_str().unwrap().to_owned();
        match REJECTED.iter().find(|(name, _)| *name == file_name) {
            None => {
                assert_accepted(file, 0, &document);
            }
            Some((_, expected)) => {
                assert_eq!(problem_fields(file), *expected, "{file_name}");
                let verdict = crd_verdict(&kind, &document, None);
                assert!(
                    !verdict.accepted(),
                    "{file_name}: Karpenter's CRD layer rejects this object, ours must too"
                );
                let corrected = workspace().join("examples/seeds").join(file_name);
                assert!(
                    corrected.exists(),
                    "{file_name}: examples/seeds must hold a corrected version"
                );
            }
        }
    }
}

/// The fixtures are the seed documents' text: every line appears in the source document, in order.
#[test]
fn fixtures_are_verbatim_copies_of_the_seed_documents() {
    let seeds = workspace().join("../shared/seeds");
    let documents: Vec<String> = fs::read_dir(&seeds)
        .unwrap_or_else(|e| {
            panic!(
                "{} must be readable ({e}); CI provides ../shared",
                seeds.display()
            )
        })
        .map(|entry| fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    for file in yaml_files(&fixtures()) {
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let found = documents.iter().any(|document| {
            let mut rest = document.as_str();
            lines.iter().all(|line| match rest.find(line) {
                Some(at) => {
                    rest = &rest[at + line.len()..];
                    true
                }
                None => false,
            })
        });
        assert!(
            found,
            "{} is not a verbatim excerpt of a seed document",
            file.display()
        );
    }
}
