//! `crds/*.yaml` must be exactly what the code generates, so the checked-in CRDs never drift.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use std::{collections::BTreeSet, fs, path::PathBuf};

use nodewright_api::crds;

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

#[test]
fn checked_in_crds_match_the_code() {
    let regenerate = "regenerate with `cargo run -p nodewright -- crds --output-dir crds`";
    let mut expected = BTreeSet::new();
    for crd in crds::all() {
        let name = crds::file_name(&crd);
        let path = crds_dir().join(&name);
        let on_disk = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}); {regenerate}", path.display()));
        assert_eq!(
            on_disk,
            crds::to_yaml(&crd).unwrap(),
            "{name} is out of date; {regenerate}"
        );
        expected.insert(name);
    }
    let present: BTreeSet<String> = fs::read_dir(crds_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        present, expected,
        "crds/ holds files the code does not generate; {regenerate}"
    );
}

#[test]
fn crds_have_the_karpenter_shape() {
    let all = crds::all();
    let names: Vec<_> = all.iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    assert_eq!(
        names,
        [
            "nodepools.karpenter.sh",
            "nodeclaims.karpenter.sh",
            "nodeoverlays.karpenter.sh",
            "ec2nodeclasses.karpenter.k8s.aws",
            "capacitybuffers.autoscaling.x-k8s.io"
        ]
    );
    let by_kind = |kind: &str| all.iter().find(|c| c.spec.names.kind == kind).unwrap();
    let nodepool = &by_kind("NodePool").spec;
    assert_eq!(nodepool.scope, "Cluster");
    assert_eq!(
        nodepool.names.categories.as_deref(),
        Some(&["karpenter".to_owned()][..])
    );
    let subresources = nodepool.versions[0].subresources.as_ref().unwrap();
    assert!(subresources.status.is_some());
    let scale = subresources.scale.as_ref().unwrap();
    assert_eq!(
        (
            scale.spec_replicas_path.as_str(),
            scale.status_replicas_path.as_str()
        ),
        (".spec.replicas", ".status.nodes")
    );
    let columns: Vec<_> = nodepool.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        ["NodeClass", "Nodes", "Ready", "Age", "Weight", "CPU", "Memory"]
    );
    let claim_columns: Vec<_> = by_kind("NodeClaim").spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        claim_columns,
        [
            "Type",
            "Capacity",
            "Zone",
            "Node",
            "Ready",
            "Age",
            "ImageID",
            "ID",
            "NodePool",
            "NodeClass",
            "Drifted"
        ]
    );
    let class = &by_kind("EC2NodeClass").spec;
    assert_eq!(
        class.names.short_names.as_deref(),
        Some(&["ec2nc".to_owned(), "ec2ncs".to_owned()][..])
    );
    let buffer = &by_kind("CapacityBuffer").spec;
    assert_eq!(buffer.scope, "Namespaced");
    assert_eq!(buffer.names.short_names.as_deref(), Some(&["cb".to_owned()][..]));
    assert_eq!(by_kind("NodeOverlay").spec.versions[0].name, "v1alpha1");
}

#[test]
fn defaults_are_karpenters() {
    let schema = serde_json::to_value(crds::all()[0].spec.versions[0].schema.as_ref().unwrap()).unwrap();
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(
        spec["disruption"]["default"],
        serde_json::json!({ "consolidateAfter": "0s" })
    );
    assert_eq!(
        spec["disruption"]["properties"]["consolidationPolicy"]["default"],
        "WhenEmptyOrUnderutilized"
    );
    assert_eq!(
        spec["disruption"]["properties"]["budgets"]["default"],
        serde_json::json!([{ "nodes": "10%" }])
    );
    assert_eq!(
        spec["template"]["properties"]["spec"]["properties"]["expireAfter"]["default"],
        "720h"
    );
    let class = serde_json::to_value(crds::all()[3].spec.versions[0].schema.as_ref().unwrap()).unwrap();
    assert_eq!(
        class["openAPIV3Schema"]["properties"]["spec"]["properties"]["metadataOptions"]["default"],
        serde_json::json!({ "httpEndpoint": "enabled", "httpProtocolIPv6": "disabled", "httpPutResponseHopLimit": 1, "httpTokens": "required" })
    );
}
