//! User data that joins an instance to the cluster, per AMI family, after Karpenter's formats:
//!
//! - **AL2023**: a MIME multi-part archive; the user's parts first (a MIME archive's parts as they
//!   are, a NodeConfig YAML as an `application/node.eks.aws` part, anything else as a shell
//!   script), then Nodewright's NodeConfig (cluster, kubelet config with `maxPods` and
//!   `registerWithTaints`, `--node-labels`). The NodeConfig is written as JSON, which is YAML.
//! - **AL2**: the same archive with a `bootstrap.sh` script instead of the NodeConfig.
//! - **Bottlerocket**: TOML settings merged with the user's, ours winning ([`super::bottlerocket`]).
//! - **Windows**: a PowerShell script running `Start-EKSBootstrap.ps1` ([`super::windows`]).
//! - **Custom**: the user's data verbatim.
//!
//! The kubelet block reaches AL2, Bottlerocket and Windows through [`super::kubelet`]; a field
//! those families cannot take is a [`UserDataError`] naming it.
//!
//! Every node registers with the `karpenter.sh/unregistered:NoExecute` taint, which the core
//! removes once the Node is registered.

use std::{collections::BTreeMap, fmt::Write as _};

use k8s_openapi::api::core::v1::Taint;
use nodewright_api::{ec2nodeclass::AmiFamily, labels};
use serde_json::{Value, json};

use super::kubelet;

/// The MIME boundary of the archives built here.
const BOUNDARY: &str = "//";

/// The cluster facts nodes need to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub endpoint: String,
    /// Base64 PEM, as EKS reports it.
    pub ca_bundle: String,
    /// The service CIDR (AL2023's nodeadm requires it).
    pub service_cidr: String,
}

/// What one node joins with.
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap<'a> {
    pub family: AmiFamily,
    pub cluster: &'a Cluster,
    /// The EC2NodeClass's `userData`.
    pub custom: Option<&'a str>,
    /// The EC2NodeClass's `kubelet` block, passed to the kubelet configuration.
    pub kubelet: Option<&'a BTreeMap<String, Value>>,
    pub max_pods: i64,
    pub labels: &'a BTreeMap<String, String>,
    pub taints: &'a [Taint],
}

/// Why no user data can be generated: a problem in the EC2NodeClass's spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    /// A kubelet field the family's bootstrap cannot pass.
    #[error("spec.kubelet.{field} is not supported by AMI family {family}")]
    UnsupportedKubelet { family: &'static str, field: String },
    /// A spec field whose value cannot be used.
    #[error("spec.{field}: {reason}")]
    Invalid { field: String, reason: String },
}

/// Label domains a kubelet may not set on its own Node (`NodeRestriction`).
const RESTRICTED_LABEL_DOMAINS: [&str; 3] = ["kubernetes.io", "k8s.io", "node-restriction.kubernetes.io"];

fn allowed_label(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return true;
    };
    let restricted = RESTRICTED_LABEL_DOMAINS
        .iter()
        .any(|domain| prefix == *domain || prefix.ends_with(&format!(".{domain}")));
    !restricted || labels::ALLOWED_KUBERNETES_IO_LABELS.contains(&key)
}

/// The labels the kubelet may set, with `karpenter.sh/do-not-sync-taints=true`.
pub(super) fn kubelet_labels<'a>(bootstrap: &Bootstrap<'a>) -> BTreeMap<&'a str, &'a str> {
    let mut pairs: BTreeMap<&str, &str> = bootstrap
        .labels
        .iter()
        .filter(|(k, _)| allowed_label(k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.insert(labels::DO_NOT_SYNC_TAINTS, "true");
    pairs
}

/// `k=v,k=v` of [`kubelet_labels`].
fn node_labels(bootstrap: &Bootstrap<'_>) -> String {
    kubelet_labels(bootstrap)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The taints with the unregistered taint added once.
/// The node's taints as kubelet's `--register-with-taints` takes them (`key=value:Effect`).
pub(super) fn taint_flags(bootstrap: &Bootstrap<'_>) -> Vec<String> {
    taints(bootstrap)
        .iter()
        .map(|t| {
            format!(
                "{}={}:{}",
                t.key,
                t.value.as_deref().unwrap_or_default(),
                t.effect
            )
        })
        .collect()
}

pub(super) fn taints(bootstrap: &Bootstrap<'_>) -> Vec<Taint> {
    let mut taints = bootstrap.taints.to_vec();
    if !taints.iter().any(|t| labels::UNREGISTERED_TAINT.matches(t)) {
        taints.push(labels::UNREGISTERED_TAINT.to_taint());
    }
    taints
}

/// The user data, not yet base64 encoded.
pub fn user_data(bootstrap: &Bootstrap<'_>) -> Result<String, UserDataError> {
    match bootstrap.family {
        AmiFamily::Custom => Ok(bootstrap.custom.unwrap_or_default().to_owned()),
        AmiFamily::AL2023 => Ok(archive(
            bootstrap.custom,
            "application/node.eks.aws",
            &node_config(bootstrap),
        )),
        AmiFamily::AL2 => Ok(archive(
            bootstrap.custom,
            "text/x-shellscript; charset=\"us-ascii\"",
            &bootstrap_script(bootstrap)?,
        )),
        AmiFamily::Bottlerocket => super::bottlerocket::user_data(bootstrap),
        AmiFamily::Windows2019 | AmiFamily::Windows2022 | AmiFamily::Windows2025 => {
            super::windows::user_data(bootstrap)
        }
    }
}

fn node_config(bootstrap: &Bootstrap<'_>) -> String {
    let mut kubelet: serde_json::Map<String, Value> = bootstrap
        .kubelet
        .map(|k| {
            k.iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default();
    kubelet.insert("maxPods".to_owned(), json!(bootstrap.max_pods));
    kubelet.insert(
        "registerWithTaints".to_owned(),
        serde_json::to_value(taints(bootstrap)).unwrap_or(Value::Null),
    );
    let config = json!({
        "apiVersion": "node.eks.aws/v1alpha1",
        "kind": "NodeConfig",
        "spec": {
            "cluster": {
                "name": bootstrap.cluster.name,
                "apiServerEndpoint": bootstrap.cluster.endpoint,
                "certificateAuthority": bootstrap.cluster.ca_bundle,
                "cidr": bootstrap.cluster.service_cidr,
            },
            "kubelet": {
                "config": kubelet,
                "flags": [format!("--node-labels={}", node_labels(bootstrap))],
            },
        },
    });
    format!("# Nodewright generated NodeConfig\n{config:#}\n")
}

/// Single-quotes `value` for a shell.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn bootstrap_script(bootstrap: &Bootstrap<'_>) -> Result<String, UserDataError> {
    let taints = taint_flags(bootstrap);
    let mut extra_args = vec![
        format!("--node-labels={}", node_labels(bootstrap)),
        format!("--register-with-taints={}", taints.join(",")),
        format!("--max-pods={}", bootstrap.max_pods),
    ];
    extra_args.extend(kubelet::flags(bootstrap.family, bootstrap.kubelet)?);
    let dns = kubelet::cluster_dns(bootstrap.family, bootstrap.kubelet)?
        .map(|address| {
            // bootstrap.sh needs the IP family spelled out for an IPv6 cluster.
            let ipv6 = if address.contains(':') {
                " --ip-family ipv6"
            } else {
                ""
            };
            format!("{ipv6} --dns-cluster-ip {}", quote(&address))
        })
        .unwrap_or_default();
    Ok(format!(
        "#!/bin/bash -xe\nexec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1\n\
         /etc/eks/bootstrap.sh {} --apiserver-endpoint {} --b64-cluster-ca {}{dns} --use-max-pods false \
         --kubelet-extra-args {}\n",
        quote(&bootstrap.cluster.name),
        quote(&bootstrap.cluster.endpoint),
        quote(&bootstrap.cluster.ca_bundle),
        quote(&extra_args.join(" "))
    ))
}

/// The user's data as MIME parts: the parts of a MIME archive, or one part whose type follows
/// its content.
fn user_parts(custom: &str) -> Vec<String> {
    let trimmed = custom.trim();
    if trimmed.is_empty() {
        return Vec::new();
    }
    if let Some(parts) = mime_parts(trimmed) {
        return parts;
    }
    let content_type = if trimmed.contains("node.eks.aws/") && trimmed.contains("NodeConfig") {
        "application/node.eks.aws"
    } else {
        "text/x-shellscript; charset=\"us-ascii\""
    };
    vec![format!("Content-Type: {content_type}\n\n{trimmed}\n")]
}

/// The parts of a MIME multi-part document, headers included; `None` when it is not one.
fn mime_parts(document: &str) -> Option<Vec<String>> {
    let (headers, body) = document.split_once("\n\n")?;
    if !headers.to_ascii_lowercase().contains("mime-version:") {
        return None;
    }
    let boundary = headers.split(';').find_map(|field| {
        let value = field.trim().strip_prefix("boundary=")?;
        Some(value.trim().trim_matches('"').to_owned())
    })?;
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    for chunk in body.split(&delimiter).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let part = chunk.trim_start_matches(['\r', '\n']);
        if !part.trim().is_empty() {
            parts.push(part.to_owned());
        }
    }
    Some(parts)
}

fn archive(custom: Option<&str>, content_type: &str, ours: &str) -> String {
    let mut document =
        format!("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\n");
    let mut parts = custom.map(user_parts).unwrap_or_default();
    parts.push(format!("Content-Type: {content_type}\n\n{ours}"));
    for part in parts {
        let _ = write!(document, "--{BOUNDARY}\n{}", part.trim_end());
        document.push('\n');
    }
    let _ = writeln!(document, "--{BOUNDARY}--");
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster {
            name: "demo".into(),
            endpoint: "https://api.demo".into(),
            ca_bundle: "Q0E=".into(),
            service_cidr: "10.100.0.0/16".into(),
        }
    }

    #[test]
    fn al2023_puts_the_users_script_first_and_the_node_config_last() {
        let cluster = cluster();
        let node_labels = BTreeMap::from([
            ("karpenter.sh/nodepool".to_owned(), "default".to_owned()),
            ("kubernetes.io/hostname".to_owned(), "not-allowed".to_owned()),
            (
                "node.kubernetes.io/instance-type".to_owned(),
                "m5.large".to_owned(),
            ),
        ]);
        let bootstrap = Bootstrap {
            family: AmiFamily::AL2023,
            cluster: &cluster,
            custom: Some("#!/bin/bash\necho hello"),
            kubelet: None,
            max_pods: 29,
            labels: &node_labels,
            taints: &[],
        };
        let data = user_data(&bootstrap).unwrap();
        let parts = mime_parts(&data).unwrap();
        assert_eq!(parts.len(), 2, "{data}");
        assert!(
            parts[0].starts_with("Content-Type: text/x-shellscript"),
            "{}",
            parts[0]
        );
        assert!(parts[0].contains("echo hello"));
        assert!(parts[1].starts_with("Content-Type: application/node.eks.aws"));
        let json_start = parts[1].find('{').unwrap();
        let config: Value = serde_json::from_str(&parts[1][json_start..]).unwrap();
        assert_eq!(config["spec"]["cluster"]["cidr"], "10.100.0.0/16");
        assert_eq!(config["spec"]["kubelet"]["config"]["maxPods"], 29);
        assert_eq!(
            config["spec"]["kubelet"]["config"]["registerWithTaints"][0]["key"],
            "karpenter.sh/unregistered"
        );
        let flags = config["spec"]["kubelet"]["flags"][0].as_str().unwrap();
        assert_eq!(
            flags,
            "--node-labels=karpenter.sh/do-not-sync-taints=true,karpenter.sh/nodepool=default,\
             node.kubernetes.io/instance-type=m5.large"
        );
    }

    #[test]
    fn a_users_mime_archive_keeps_its_parts_and_custom_is_verbatim() {
        let cluster = cluster();
        let user = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\n\n\
                    --BOUNDARY\nContent-Type: text/x-shellscript\n\necho one\n\
                    --BOUNDARY\nContent-Type: text/x-shellscript\n\necho two\n--BOUNDARY--\n";
        let empty = BTreeMap::new();
        let mut bootstrap = Bootstrap {
            family: AmiFamily::AL2,
            cluster: &cluster,
            custom: Some(user),
            kubelet: None,
            max_pods: 10,
            labels: &empty,
            taints: &[],
        };
        let parts = mime_parts(&user_data(&bootstrap).unwrap()).unwrap();
        assert_eq!(parts.len(), 3);
        assert!(parts[1].contains("echo two"));
        assert!(parts[2].contains("/etc/eks/bootstrap.sh 'demo'"), "{}", parts[2]);
        assert!(parts[2].contains("--register-with-taints=karpenter.sh/unregistered=:NoExecute"));
        bootstrap.family = AmiFamily::Custom;
        assert_eq!(user_data(&bootstrap).unwrap(), user);
        // A MIME archive is not TOML: Bottlerocket refuses it, naming the field.
        bootstrap.family = AmiFamily::Bottlerocket;
        let error = user_data(&bootstrap).unwrap_err().to_string();
        assert!(
            error.starts_with("spec.userData: Bottlerocket user data must be TOML"),
            "{error}"
        );
    }

    #[test]
    fn al2_passes_the_kubelet_block_as_flags_and_the_dns_address() {
        let cluster = cluster();
        let empty = BTreeMap::new();
        let kubelet: BTreeMap<String, Value> = serde_json::from_value(json!({
            "clusterDNS": ["fd00::a"],
            "kubeReserved": {"cpu": "70m"},
        }))
        .unwrap();
        let mut bootstrap = Bootstrap {
            family: AmiFamily::AL2,
            cluster: &cluster,
            custom: None,
            kubelet: Some(&kubelet),
            max_pods: 10,
            labels: &empty,
            taints: &[],
        };
        let parts = mime_parts(&user_data(&bootstrap).unwrap()).unwrap();
        assert_eq!(parts.len(), 1);
        assert!(
            parts[0].contains(
                "--b64-cluster-ca 'Q0E=' --ip-family ipv6 --dns-cluster-ip 'fd00::a' --use-max-pods false"
            ),
            "{}",
            parts[0]
        );
        assert!(
            parts[0].contains("--max-pods=10 --kube-reserved=cpu=70m'"),
            "{}",
            parts[0]
        );
        let unsupported: BTreeMap<String, Value> =
            serde_json::from_value(json!({"registryPullQPS": 5})).unwrap();
        bootstrap.kubelet = Some(&unsupported);
        assert_eq!(
            user_data(&bootstrap).unwrap_err(),
            UserDataError::UnsupportedKubelet {
                family: "AL2",
                field: "registryPullQPS".into()
            }
        );
    }
}
