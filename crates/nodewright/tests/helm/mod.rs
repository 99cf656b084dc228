//! The Helm chart rendered by the real Helm v4 library: PyPI's `helm-python-sdk` through
//! charts/render.py, for the chart tests and the RBAC test.

#![allow(dead_code)] // each test file uses part of this

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{Value, json};

/// The pinned SDK `.ci/run` installs.
pub(crate) const HELM_SDK_VERSION: &str = "0.2.2";
pub(crate) const RELEASE: &str = "nodewright";
pub(crate) const NAMESPACE: &str = "kube-system";

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn python() -> PathBuf {
    let venv = std::env::var_os("NODEWRIGHT_HELM_VENV").map_or_else(
        || {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
            home.join(format!(".cache/nodewright/venv-helm-{HELM_SDK_VERSION}"))
        },
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "the Helm SDK is not installed at {0}: run .ci/run once (it creates the venv), or\n  \
         python3 -m venv {0} && {0}/bin/pip install 'helm-python-sdk=={HELM_SDK_VERSION}'\n\
         (or point NODEWRIGHT_HELM_VENV at a venv that has it)",
        venv.display()
    );
    python
}

/// What charts/render.py reports for one value set.
pub(crate) struct Rendered {
    pub(crate) lint: Value,
    pub(crate) schema_error: Option<String>,
    pub(crate) render_error: Option<String>,
    /// Template path → rendered text.
    pub(crate) manifests: BTreeMap<String, String>,
}

pub(crate) fn run_render(values: Option<&Path>, extra: &[&str]) -> std::process::Output {
    let mut command = Command::new(python());
    command
        .arg(repo().join("charts/render.py"))
        .arg(repo().join("charts/nodewright"));
    if let Some(values) = values {
        command.arg(values);
    }
    command
        .args(["--release", RELEASE, "--namespace", NAMESPACE])
        .args(extra);
    let output = command.output().expect("run charts/render.py");
    assert!(
        output.status.success() || !extra.is_empty(),
        "charts/render.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub(crate) fn render(values: Option<&Path>) -> Rendered {
    let output = run_render(values, &[]);
    let report: Value = serde_json::from_slice(&output.stdout).expect("render.py prints JSON");
    let text = |key: &str| report[key].as_str().map(str::to_owned);
    Rendered {
        lint: report["lint"].clone(),
        schema_error: text("schema_error"),
        render_error: text("render_error"),
        manifests: serde_json::from_value(report["manifests"].clone()).unwrap(),
    }
}

pub(crate) fn value_set(name: &str) -> PathBuf {
    repo().join("charts/nodewright/ci").join(name)
}

/// Renders a value set that must be clean: no lint finding above "info", accepted by the schema.
pub(crate) fn objects(values: &str) -> Vec<Value> {
    let rendered = render(Some(&value_set(values)));
    assert_eq!(rendered.schema_error, None, "{values}");
    assert_eq!(rendered.render_error, None, "{values}");
    assert_eq!(rendered.lint["errors"], json!([]), "{values}: {}", rendered.lint);
    let findings: Vec<&Value> = rendered.lint["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["severity"].as_i64() != Some(1))
        .collect();
    assert!(findings.is_empty(), "{values}: lint findings {findings:?}");
    rendered
        .manifests
        .values()
        .flat_map(|text| serde_saphyr::from_multiple::<Value>(text).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}
