//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Pod},
};
use kube::api::ObjectMeta;
use nodewright_sim::{ServerConfig, store::StoreConfig, testing::TestCluster};
use serde_json::json;

pub const WAIT: Duration = Duration::from_secs(10);

pub async fn cluster() -> TestCluster {
    TestCluster::start().await.expect("cluster starts")
}

pub async fn cluster_with(history: usize, bookmark: Duration) -> TestCluster {
    TestCluster::start_with(
        StoreConfig {
            watch_history: history,
            ..StoreConfig::default()
        },
        ServerConfig {
            bookmark_interval: bookmark,
            ..ServerConfig::default()
        },
    )
    .await
    .expect("cluster starts")
}

pub fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some([("k".to_owned(), "v".to_owned())].into()),
        ..ConfigMap::default()
    }
}

/// The HTTP status code of a kube-rs error, if it came from the API.
pub fn code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

pub fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "pause:3.2"}]}}
        }
    }))
    .unwrap()
}

pub fn pod(name: &str, labels: &serde_json::Value, node: Option<&str>) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "pause:3.2"}]});
    if let Some(node) = node {
        spec["nodeName"] = node.into();
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})).unwrap()
}
