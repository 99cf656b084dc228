//! Bottlerocket user data: the user's TOML settings merged with the ones Nodewright owns, which
//! win. Following Karpenter's Bottlerocket bootstrap:
//!
//! - `settings.kubernetes.cluster-name`, `api-server`, `cluster-certificate` and `max-pods` are
//!   overwritten;
//! - `node-labels` are merged, our labels overwriting the user's of the same key;
//! - `node-taints` are replaced by the NodeClaim's taints (`key = ["value:Effect", ...]`), which
//!   always include `karpenter.sh/unregistered:NoExecute`;
//! - `cluster-dns-ip` and the kubelet settings the EC2NodeClass's `kubelet` block sets
//!   ([`super::kubelet::bottlerocket_settings`]) overwrite the user's; those it does not set are
//!   kept.
//!
//! Every other key of the user's document is kept as it is.

use super::{
    kubelet,
    toml_tree::{self, TomlTree, TomlValue},
    userdata::{Bootstrap, UserDataError, kubelet_labels, taints},
};

/// The Bottlerocket TOML for `bootstrap`, not yet base64 encoded.
pub fn user_data(bootstrap: &Bootstrap<'_>) -> Result<String, UserDataError> {
    let mut document = match bootstrap.custom.map(str::trim) {
        None | Some("") => TomlTree::new(),
        Some(text) => toml_tree::parse(text).map_err(|reason| UserDataError::Invalid {
            field: "userData".to_owned(),
            reason: format!("Bottlerocket user data must be TOML: {reason}"),
        })?,
    };
    let kubelet_settings = kubelet::bottlerocket_settings(bootstrap.kubelet)?;
    let cluster_dns = kubelet::cluster_dns(bootstrap.family, bootstrap.kubelet)?;
    let kubernetes = toml_tree::table_at(&mut document, &["settings", "kubernetes"]);
    let string = |value: &str| TomlValue::String(value.to_owned());
    kubernetes.insert("cluster-name".to_owned(), string(&bootstrap.cluster.name));
    kubernetes.insert("api-server".to_owned(), string(&bootstrap.cluster.endpoint));
    kubernetes.insert(
        "cluster-certificate".to_owned(),
        string(&bootstrap.cluster.ca_bundle),
    );
    kubernetes.insert("max-pods".to_owned(), TomlValue::Integer(bootstrap.max_pods));
    if let Some(address) = cluster_dns {
        kubernetes.insert("cluster-dns-ip".to_owned(), TomlValue::String(address));
    }
    kubernetes.extend(kubelet_settings);
    let labels = toml_tree::table_at(kubernetes, &["node-labels"]);
    for (key, value) in kubelet_labels(bootstrap) {
        labels.insert(key.to_owned(), string(value));
    }
    let mut node_taints = TomlTree::new();
    for taint in taints(bootstrap) {
        let entry = format!("{}:{}", taint.value.as_deref().unwrap_or_default(), taint.effect);
        let values = node_taints
            .entry(taint.key.clone())
            .or_insert_with(|| TomlValue::Array(Vec::new()));
        if let TomlValue::Array(values) = values {
            values.push(TomlValue::String(entry));
        }
    }
    kubernetes.insert("node-taints".to_owned(), TomlValue::Table(node_taints));
    Ok(toml_tree::render(&document))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Taint;
    use nodewright_api::ec2nodeclass::AmiFamily;
    use serde_json::json;

    use super::*;
    use crate::launch::userdata::Cluster;

    fn cluster() -> Cluster {
        Cluster {
            name: "demo".into(),
            endpoint: "https://api.demo".into(),
            ca_bundle: "Q0E=".into(),
            service_cidr: "10.100.0.0/16".into(),
        }
    }

    /// The value at a dotted path (keys may contain dots, so the path is a slice).
    fn at<'a>(tree: &'a TomlTree, path: &[&str]) -> &'a TomlValue {
        let (last, tables) = path.split_last().unwrap();
        let mut table = tree;
        for key in tables {
            let Some(TomlValue::Table(inner)) = table.get(*key) else {
                panic!("{key} of {path:?} is not a table in {tree:?}");
            };
            table = inner;
        }
        table
            .get(*last)
            .unwrap_or_else(|| panic!("{path:?} missing in {tree:?}"))
    }

    fn text(value: &str) -> TomlValue {
        TomlValue::String(value.to_owned())
    }

    #[test]
    fn ours_win_for_the_settings_we_own_and_the_users_other_keys_stay() {
        let cluster = cluster();
        let user = r#"
            [settings.kubernetes]
            cluster-name = "someone-else"
            api-server = "https://elsewhere"
            max-pods = 500
            cluster-dns-ip = "10.0.0.99"
            image-gc-low-threshold-percent = 40
            allowed-unsafe-sysctls = ["net.core.somaxconn"]
            [settings.kubernetes.node-labels]
            "team" = "users"
            "karpenter.sh/nodepool" = "spoofed"
            [settings.kubernetes.node-taints]
            "dedicated" = ["gpu:NoSchedule"]
            [settings.host-containers.admin]
            enabled = true
        "#;
        let node_labels = BTreeMap::from([
            ("karpenter.sh/nodepool".to_owned(), "default".to_owned()),
            ("kubernetes.io/hostname".to_owned(), "restricted".to_owned()),
        ]);
        let kubelet: BTreeMap<String, serde_json::Value> = serde_json::from_value(json!({
            "clusterDNS": ["10.100.0.10"],
            "kubeReserved": {"cpu": "70m", "memory": "574Mi"},
            "evictionHard": {"memory.available": "5%"},
        }))
        .unwrap();
        let node_taints = [Taint {
            key: "team".into(),
            value: Some("a".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }];
        let bootstrap = Bootstrap {
            family: AmiFamily::Bottlerocket,
            cluster: &cluster,
            custom: Some(user),
            kubelet: Some(&kubelet),
            max_pods: 29,
            labels: &node_labels,
            taints: &node_taints,
        };
        let rendered = user_data(&bootstrap).unwrap();
        let tree = toml_tree::parse(&rendered).unwrap();
        let k8s = ["settings", "kubernetes"];
        let key = |name: &'static str| [k8s[0], k8s[1], name];
        assert_eq!(at(&tree, &key("cluster-name")), &text("demo"));
        assert_eq!(at(&tree, &key("api-server")), &text("https://api.demo"));
        assert_eq!(at(&tree, &key("cluster-certificate")), &text("Q0E="));
        assert_eq!(at(&tree, &key("max-pods")), &TomlValue::Integer(29));
        assert_eq!(at(&tree, &key("cluster-dns-ip")), &text("10.100.0.10"));
        assert_eq!(
            at(&tree, &["settings", "kubernetes", "kube-reserved", "memory"]),
            &text("574Mi")
        );
        assert_eq!(
            at(
                &tree,
                &["settings", "kubernetes", "eviction-hard", "memory.available"]
            ),
            &text("5%")
        );
        // The user's settings that the kubelet block does not set are kept.
        assert_eq!(
            at(&tree, &key("image-gc-low-threshold-percent")),
            &TomlValue::Integer(40)
        );
        assert_eq!(
            at(&tree, &key("allowed-unsafe-sysctls")),
            &TomlValue::Array(vec![text("net.core.somaxconn")])
        );
        assert_eq!(
            at(&tree, &["settings", "host-containers", "admin", "enabled"]),
            &TomlValue::Boolean(true)
        );
        // Labels merge, ours winning; restricted labels stay out.
        let TomlValue::Table(labels) = at(&tree, &key("node-labels")) else {
            panic!("node-labels is not a table: {rendered}");
        };
        assert_eq!(
            labels.keys().map(String::as_str).collect::<Vec<_>>(),
            ["karpenter.sh/do-not-sync-taints", "karpenter.sh/nodepool", "team"]
        );
        assert_eq!(labels["karpenter.sh/nodepool"], text("default"));
        assert_eq!(labels["team"], text("users"));
        // Taints are ours alone, the unregistered taint included.
        let TomlValue::Table(taints) = at(&tree, &key("node-taints")) else {
            panic!("node-taints is not a table: {rendered}");
        };
        assert_eq!(
            taints,
            &TomlTree::from([
                (
                    "karpenter.sh/unregistered".to_owned(),
                    TomlValue::Array(vec![text(":NoExecute")])
                ),
                ("team".to_owned(), TomlValue::Array(vec![text("a:NoSchedule")])),
            ])
        );
    }

    #[test]
    fn without_user_data_the_document_is_ours_and_bad_toml_names_the_field() {
        let cluster = cluster();
        let empty = BTreeMap::new();
        let mut bootstrap = Bootstrap {
            family: AmiFamily::Bottlerocket,
            cluster: &cluster,
            custom: None,
            kubelet: None,
            max_pods: 110,
            labels: &empty,
            taints: &[],
        };
        let tree = toml_tree::parse(&user_data(&bootstrap).unwrap()).unwrap();
        let TomlValue::Table(settings) = &tree["settings"] else {
            panic!("no settings table: {tree:?}");
        };
        assert_eq!(settings.keys().collect::<Vec<_>>(), ["kubernetes"]);
        let TomlValue::Table(kubernetes) = &settings["kubernetes"] else {
            panic!("settings.kubernetes is not a table: {tree:?}");
        };
        // No kubelet clusterDNS: the AMI's own default DNS address stays in force.
        assert!(!kubernetes.contains_key("cluster-dns-ip"), "{kubernetes:?}");
        assert_eq!(kubernetes["max-pods"], TomlValue::Integer(110));
        bootstrap.custom = Some("[settings.kubernetes");
        let error = user_data(&bootstrap).unwrap_err().to_string();
        assert!(
            error.starts_with("spec.userData: Bottlerocket user data must be TOML"),
            "{error}"
        );
    }
}
