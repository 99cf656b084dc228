//! The cloud-provider seam stays free of AWS SDK types: controllers depend on
//! `nodewright-cloudprovider` only, so an SDK type in its API would drag the SDK into every
//! controller build and tie the core to one cloud.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::path::{Path, PathBuf};

fn cloudprovider_crate() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cloudprovider")
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn no_sdk_type_appears_in_the_cloudprovider_crate() {
    let manifest = std::fs::read_to_string(cloudprovider_crate().join("Cargo.toml")).unwrap();
    let sdk_dependencies: Vec<&str> = manifest
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("aws-") || line.starts_with("aws_"))
        .collect();
    assert!(
        sdk_dependencies.is_empty(),
        "crates/cloudprovider depends on the AWS SDK: {sdk_dependencies:?}"
    );
    let mut files = Vec::new();
    rust_files(&cloudprovider_crate().join("src"), &mut files);
    assert!(
        !files.is_empty(),
        "no sources found under crates/cloudprovider/src"
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for sdk in [
            "aws_sdk_",
            "aws_smithy_",
            "aws_config",
            "aws_types",
            "aws_credential_types",
        ] {
            assert!(
                !text.contains(sdk),
                "{} mentions {sdk}: SDK types belong in crates/aws, behind the CloudProvider trait",
                file.display()
            );
        }
    }
}
