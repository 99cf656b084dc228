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
//! Every other key of the user's document is kept as it is, and so are its comments and layout:
//! the document is edited in place with `toml_edit`.

use std::collections::BTreeMap;

use toml_edit::{Array, DocumentMut, Item, Table, value};

use super::{
    kubelet,
    userdata::{Bootstrap, UserDataError, kubelet_labels, taints},
};

/// The Bottlerocket TOML for `bootstrap`, not yet base64 encoded.
pub fn user_data(bootstrap: &Bootstrap<'_>) -> Result<String, UserDataError> {
    let mut document = match bootstrap.custom.map(str::trim) {
        None | Some("") => DocumentMut::new(),
        Some(text) => text
            .parse::<DocumentMut>()
            .map_err(|error| UserDataError::Invalid {
                field: "userData".to_owned(),
                reason: format!("Bottlerocket user data must be TOML: {error}"),
            })?,
    };
    let kubelet_settings = kubelet::bottlerocket_settings(bootstrap.kubelet)?;
    let cluster_dns = kubelet::cluster_dns(bootstrap.family, bootstrap.kubelet)?;
    let kubernetes = table_at(document.as_table_mut(), &["settings", "kubernetes"]);
    kubernetes.insert("cluster-name", value(&bootstrap.cluster.name));
    kubernetes.insert("api-server", value(&bootstrap.cluster.endpoint));
    kubernetes.insert("cluster-certificate", value(&bootstrap.cluster.ca_bundle));
    kubernetes.insert("max-pods", value(bootstrap.max_pods));
    if let Some(address) = cluster_dns {
        kubernetes.insert("cluster-dns-ip", value(address));
    }
    for (setting, setting_value) in kubelet_settings {
        kubernetes.insert(setting, Item::Value(setting_value));
    }
    let labels = table_at(kubernetes, &["node-labels"]);
    for (key, label) in kubelet_labels(bootstrap) {
        labels.insert(key, value(label));
    }
    let mut node_taints: BTreeMap<String, Array> = BTreeMap::new();
    for taint in taints(bootstrap) {
        let entry = format!("{}:{}", taint.value.as_deref().unwrap_or_default(), taint.effect);
        node_taints.entry(taint.key).or_default().push(entry);
    }
    let node_taints: Table = node_taints.into_iter().collect();
    kubernetes.insert("node-taints", Item::Table(node_taints));
    Ok(document.to_string())
}

/// The standard table at `path` under `table`: made where missing, converted where it is an
/// inline table, and replacing any other value in the way.
fn table_at<'a>(mut table: &'a mut Table, path: &[&str]) -> &'a mut Table {
    for key in path {
        if !table.get(key).is_some_and(Item::is_table) {
            // Removed and inserted again, so that the key loses the layout it had before an
            // inline table (`settings = {`), which would otherwise show in the table's header.
            let made = table
                .remove(key)
                .and_then(|item| item.into_table().ok())
                .unwrap_or_else(|| {
                    // Only a header for its own values, not one to hold the tables under it.
                    let mut made = Table::new();
                    made.set_implicit(true);
                    made
                });
            table.insert(key, Item::Table(made));
        }
        let Some(Item::Table(inner)) = table.get_mut(key) else {
            unreachable!("the item was made a table just above");
        };
        table = inner;
    }
    table
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Taint;
    use nodewright_api::ec2nodeclass::AmiFamily;
    use serde_json::{Value as Json, json};

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

    fn bootstrap<'a>(cluster: &'a Cluster, custom: Option<&'a str>) -> Bootstrap<'a> {
        Bootstrap {
            family: AmiFamily::Bottlerocket,
            cluster,
            custom,
            kubelet: None,
            max_pods: 110,
            labels: const { &BTreeMap::new() },
            taints: &[],
        }
    }

    /// A TOML item as plain JSON, to compare documents by meaning rather than by layout. Floats
    /// and date-times become tagged strings so that they do not compare equal to other kinds.
    fn plain(item: &Item) -> Json {
        match item {
            Item::None => Json::Null,
            Item::Value(value) => plain_value(value),
            Item::Table(table) => plain_table(table),
            Item::ArrayOfTables(tables) => tables.iter().map(plain_table).collect(),
        }
    }

    fn plain_table(table: &Table) -> Json {
        table
            .iter()
            .map(|(key, item)| (key.to_owned(), plain(item)))
            .collect()
    }

    fn plain_value(value: &toml_edit::Value) -> Json {
        match value {
            toml_edit::Value::String(s) => json!(s.value()),
            toml_edit::Value::Integer(i) => json!(i.value()),
            toml_edit::Value::Float(f) => json!(format!("float {:?}", f.value())),
            toml_edit::Value::Boolean(b) => json!(b.value()),
            toml_edit::Value::Datetime(d) => json!(format!("datetime {}", d.value())),
            toml_edit::Value::Array(items) => items.iter().map(plain_value).collect(),
            toml_edit::Value::InlineTable(table) => table
                .iter()
                .map(|(k, v)| (k.to_owned(), plain_value(v)))
                .collect(),
        }
    }

    /// The rendered user data, read back as plain JSON.
    fn rendered(bootstrap: &Bootstrap<'_>) -> (String, Json) {
        let text = user_data(bootstrap).unwrap();
        let document: DocumentMut = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let tree = plain(document.as_item());
        (text, tree)
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
        let kubelet: BTreeMap<String, Json> = serde_json::from_value(json!({
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
            kubelet: Some(&kubelet),
            max_pods: 29,
            labels: &node_labels,
            taints: &node_taints,
            ..bootstrap(&cluster, Some(user))
        };
        let (text, tree) = rendered(&bootstrap);
        assert_eq!(
            tree,
            json!({"settings": {
                "kubernetes": {
                    // Ours.
                    "cluster-name": "demo",
                    "api-server": "https://api.demo",
                    "cluster-certificate": "Q0E=",
                    "max-pods": 29,
                    "cluster-dns-ip": "10.100.0.10",
                    "kube-reserved": {"cpu": "70m", "memory": "574Mi"},
                    "eviction-hard": {"memory.available": "5%"},
                    // The user's settings that the kubelet block does not set are kept.
                    "image-gc-low-threshold-percent": 40,
                    "allowed-unsafe-sysctls": ["net.core.somaxconn"],
                    // Labels merge, ours winning; restricted labels stay out.
                    "node-labels": {
                        "karpenter.sh/do-not-sync-taints": "true",
                        "karpenter.sh/nodepool": "default",
                        "team": "users",
                    },
                    // Taints are ours alone, the unregistered taint included.
                    "node-taints": {
                        "karpenter.sh/unregistered": [":NoExecute"],
                        "team": ["a:NoSchedule"],
                    },
                },
                "host-containers": {"admin": {"enabled": true}},
            }}),
            "{text}"
        );
    }

    #[test]
    fn the_users_document_survives_with_its_comments_and_values() {
        let cluster = cluster();
        let user = r#"
            # Keep the admin container off.
            title = "quote \" backslash \\ tab	"
            ratio = 1.0
            big = 9007199254740993
            when = 1979-05-27T07:32:00Z
            [settings.empty]
            [[settings.bootstrap.list]]
            mode = "always" # why: the disk must be ready first
            [[settings.bootstrap.list]]
            essential = true
            flags = [1, 2.5, "x", [true]]
            inline = { a = 1, b = { c = "d" } }
        "#;
        let original: DocumentMut = user.parse().unwrap();
        let (text, mut tree) = rendered(&bootstrap(&cluster, Some(user)));
        assert!(text.contains("# Keep the admin container off."), "{text}");
        assert!(text.contains("# why: the disk must be ready first"), "{text}");
        assert!(text.contains("[settings.empty]"), "{text}");
        let ours = tree["settings"]
            .as_object_mut()
            .unwrap()
            .remove("kubernetes")
            .unwrap();
        assert_eq!(ours["max-pods"], json!(110));
        assert_eq!(tree, plain(original.as_item()), "{text}");
        assert_eq!(tree["ratio"], json!("float 1.0"));
        assert_eq!(tree["big"], json!(9_007_199_254_740_993_i64));
    }

    #[test]
    fn settings_written_as_dotted_keys_inline_tables_or_values_become_tables() {
        let cluster = cluster();
        for user in [
            "settings.kubernetes.image-gc-low-threshold-percent = 40",
            "[settings]\nkubernetes.image-gc-low-threshold-percent = 40",
            "settings = { kubernetes = { image-gc-low-threshold-percent = 40 } }",
            "[settings]\nkubernetes = { image-gc-low-threshold-percent = 40, node-labels = { a = \"b\" } }",
        ] {
            let (text, tree) = rendered(&bootstrap(&cluster, Some(user)));
            assert!(!text.contains(" ]"), "{text}");
            let kubernetes = &tree["settings"]["kubernetes"];
            assert_eq!(kubernetes["image-gc-low-threshold-percent"], json!(40), "{text}");
            assert_eq!(kubernetes["cluster-name"], json!("demo"), "{text}");
            assert_eq!(
                kubernetes["node-labels"]["karpenter.sh/do-not-sync-taints"],
                json!("true"),
                "{text}"
            );
        }
        let (text, tree) = rendered(&bootstrap(&cluster, Some("settings = 3")));
        assert_eq!(tree["settings"]["kubernetes"]["max-pods"], json!(110), "{text}");
    }

    #[test]
    fn without_user_data_the_document_is_ours_and_bad_toml_names_the_field() {
        let cluster = cluster();
        let mut bootstrap = bootstrap(&cluster, None);
        let (text, tree) = rendered(&bootstrap);
        let settings = tree["settings"].as_object().unwrap();
        assert_eq!(settings.keys().collect::<Vec<_>>(), ["kubernetes"], "{text}");
        let kubernetes = settings["kubernetes"].as_object().unwrap();
        // No kubelet clusterDNS: the AMI's own default DNS address stays in force.
        assert!(!kubernetes.contains_key("cluster-dns-ip"), "{text}");
        assert_eq!(kubernetes["max-pods"], json!(110));
        // Tables that only hold tables get no header of their own.
        assert!(!text.contains("[settings]"), "{text}");
        bootstrap.custom = Some("[settings.kubernetes");
        let error = user_data(&bootstrap).unwrap_err().to_string();
        assert!(
            error.starts_with("spec.userData: Bottlerocket user data must be TOML"),
            "{error}"
        );
    }
}
