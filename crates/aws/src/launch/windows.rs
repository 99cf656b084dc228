//! Windows user data: one `<powershell>` block with the user's script first (its own
//! `<powershell>` tags removed), then the EKS-optimized AMI's `Start-EKSBootstrap.ps1` with the
//! cluster, the kubelet's labels, taints, max pods and mapped kubelet flags, and the cluster DNS
//! address when the EC2NodeClass's kubelet block sets one, as Karpenter's Windows bootstrap does.

use std::fmt::Write as _;

use super::{
    kubelet,
    userdata::{Bootstrap, UserDataError, kubelet_labels, taint_flags},
};

/// Single-quotes `value` for PowerShell, where a quote inside is written twice.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The kubelet arguments: labels, taints, max pods, then the mapped kubelet fields.
fn kubelet_extra_args(bootstrap: &Bootstrap<'_>) -> Result<String, UserDataError> {
    let labels: Vec<String> = kubelet_labels(bootstrap)
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let taints = taint_flags(bootstrap);
    let mut args = vec![
        format!("--node-labels=\"{}\"", labels.join(",")),
        format!("--register-with-taints=\"{}\"", taints.join(",")),
        format!("--max-pods={}", bootstrap.max_pods),
    ];
    args.extend(kubelet::flags(bootstrap.family, bootstrap.kubelet)?);
    Ok(args.join(" "))
}

/// The PowerShell user data for `bootstrap`, not yet base64 encoded.
pub fn user_data(bootstrap: &Bootstrap<'_>) -> Result<String, UserDataError> {
    let custom = bootstrap.custom.unwrap_or_default().trim();
    let custom = custom.strip_prefix("<powershell>").unwrap_or(custom);
    let custom = custom.strip_suffix("</powershell>").unwrap_or(custom).trim();
    let mut script = String::from("<powershell>\n");
    if !custom.is_empty() {
        script.push_str(custom);
        script.push('\n');
    }
    script.push_str(
        "[string]$EKSBootstrapScriptFile = \"$env:ProgramFiles\\Amazon\\EKS\\Start-EKSBootstrap.ps1\"\n",
    );
    let _ = write!(
        script,
        "& $EKSBootstrapScriptFile -EKSClusterName {} -APIServerEndpoint {} -Base64ClusterCA {} \
         -KubeletExtraArgs {}",
        quote(&bootstrap.cluster.name),
        quote(&bootstrap.cluster.endpoint),
        quote(&bootstrap.cluster.ca_bundle),
        quote(&kubelet_extra_args(bootstrap)?),
    );
    if let Some(address) = kubelet::cluster_dns(bootstrap.family, bootstrap.kubelet)? {
        let _ = write!(script, " -DNSClusterIP {}", quote(&address));
    }
    script.push_str("\n</powershell>\n");
    Ok(script)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nodewright_api::ec2nodeclass::AmiFamily;
    use serde_json::json;

    use super::*;
    use crate::launch::userdata::Cluster;

    #[test]
    fn the_users_script_runs_before_the_eks_bootstrap_in_one_powershell_block() {
        let cluster = Cluster {
            name: "demo's".into(),
            endpoint: "https://api.demo".into(),
            ca_bundle: "Q0E=".into(),
            service_cidr: "10.100.0.0/16".into(),
        };
        let node_labels = BTreeMap::from([
            ("karpenter.sh/nodepool".to_owned(), "win".to_owned()),
            ("kubernetes.io/hostname".to_owned(), "restricted".to_owned()),
        ]);
        let kubelet: BTreeMap<String, serde_json::Value> = serde_json::from_value(json!({
            "clusterDNS": ["10.100.0.10"],
            "systemReserved": {"memory": "1Gi"},
        }))
        .unwrap();
        let bootstrap = Bootstrap {
            family: AmiFamily::Windows2022,
            cluster: &cluster,
            custom: Some("<powershell>\nWrite-Host 'hello'\n</powershell>"),
            kubelet: Some(&kubelet),
            max_pods: 110,
            labels: &node_labels,
            taints: &[],
        };
        let script = user_data(&bootstrap).unwrap();
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[0], "<powershell>");
        assert_eq!(lines[1], "Write-Host 'hello'");
        assert!(lines[2].ends_with("Start-EKSBootstrap.ps1\""), "{script}");
        assert_eq!(
            lines[3],
            "& $EKSBootstrapScriptFile -EKSClusterName 'demo''s' -APIServerEndpoint 'https://api.demo' \
             -Base64ClusterCA 'Q0E=' -KubeletExtraArgs '--node-labels=\"karpenter.sh/do-not-sync-taints=true,\
             karpenter.sh/nodepool=win\" --register-with-taints=\"karpenter.sh/unregistered=:NoExecute\" \
             --max-pods=110 --system-reserved=memory=1Gi' -DNSClusterIP '10.100.0.10'"
        );
        assert_eq!(lines[4], "</powershell>");
        assert_eq!(lines.len(), 5, "{script}");
        assert_eq!(script.matches("<powershell>").count(), 1);
    }
}
