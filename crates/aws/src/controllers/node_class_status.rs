//! The EC2NodeClass status loop: for each node class that is due, resolve its selector terms in
//! AWS ([`nodeclass::resolve`]), decide its status ([`nodeclass::status`], pure), and write it with
//! one status patch when it changed. The provider launches only for node classes whose status
//! says `Ready=True`, with the subnets, security groups and AMIs written here.
//!
//! A node class is due when its generation is new to this loop, when its last resolution is older
//! than [`StatusLoopConfig::refresh`] (AMIs, subnets' free IPs and security groups change in AWS
//! without the spec changing), or when its last attempt failed and [`StatusLoopConfig::retry`] has
//! passed. The loop's own status patches therefore trigger no second resolution.

use std::{collections::HashMap, time::Duration};

use jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use nodewright_api::{EC2NodeClass, clock::Clock, ec2nodeclass::EC2NodeClassStatus};

use crate::{AwsClients, AwsSettings, controllers::watched::WatchedNodeClasses, nodeclass};

/// The field manager of the loop's status patches.
pub const FIELD_MANAGER: &str = "nodewright-ec2nodeclass-status";

/// How often the loop resolves node classes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusLoopConfig {
    /// A resolved node class is resolved again after this long (Karpenter: 5 minutes).
    pub refresh: Duration,
    /// A node class whose resolution failed is tried again after this long.
    pub retry: Duration,
    /// How often the loop wakes to look for due node classes when nothing changed.
    pub tick: Duration,
}

impl Default for StatusLoopConfig {
    fn default() -> Self {
        Self {
            refresh: Duration::from_mins(5),
            retry: Duration::from_secs(30),
            tick: Duration::from_secs(10),
        }
    }
}

/// The loop's last attempt at one node class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The generation the attempt saw.
    pub generation: Option<i64>,
    pub at: Timestamp,
    pub succeeded: bool,
}

/// Whether `node_class` should be resolved now, given the last attempt at it.
pub fn is_due(
    node_class: &EC2NodeClass,
    last: Option<&Attempt>,
    now: Timestamp,
    config: &StatusLoopConfig,
) -> bool {
    let Some(last) = last else { return true };
    if last.generation != node_class.metadata.generation {
        return true;
    }
    let wait = if last.succeeded {
        config.refresh
    } else {
        config.retry
    };
    now.duration_since(last.at).unsigned_abs() >= wait || now < last.at
}

/// The status to write, or `None` when `new` is what the node class already says.
pub fn status_change(node_class: &EC2NodeClass, new: EC2NodeClassStatus) -> Option<EC2NodeClassStatus> {
    (node_class.status.as_ref() != Some(&new)).then_some(new)
}

/// The merge patch that makes the status `new`. Empty lists are left out when serialized, and a
/// merge patch keeps what it does not mention, so fields the old status had and the new one lacks
/// are sent as `null` to remove them (subnets that no longer match, say).
pub fn status_merge_patch(old: Option<&EC2NodeClassStatus>, new: &EC2NodeClassStatus) -> serde_json::Value {
    let mut status = serde_json::to_value(new).unwrap_or_default();
    let old = old.map(serde_json::to_value).and_then(Result::ok);
    if let (Some(serde_json::Value::Object(old)), serde_json::Value::Object(fields)) = (old, &mut status) {
        for key in old.keys() {
            fields.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    serde_json::json!({ "status": status })
}

/// Runs the loop until the returned future is dropped.
pub async fn run(
    client: Client,
    clients: AwsClients,
    settings: AwsSettings,
    clock: Clock,
    node_classes: WatchedNodeClasses,
    config: StatusLoopConfig,
) {
    let api: Api<EC2NodeClass> = Api::all(client);
    let mut changes = node_classes.changes();
    let mut attempts: HashMap<String, Attempt> = HashMap::new();
    node_classes.wait_synced().await;
    loop {
        let now = clock.now();
        let classes = node_classes.all();
        attempts.retain(|name, _| classes.iter().any(|c| &c.name_any() == name));
        for node_class in classes {
            let name = node_class.name_any();
            if node_class.metadata.deletion_timestamp.is_some()
                || !is_due(&node_class, attempts.get(&name), now, &config)
            {
                continue;
            }
            let result = reconcile(&api, &clients, &settings, &node_class, now).await;
            if let Err(error) = &result {
                tracing::warn!(ec2nodeclass = name, error = %error, "EC2NodeClass status not updated");
            }
            attempts.insert(
                name,
                Attempt {
                    generation: node_class.metadata.generation,
                    at: now,
                    succeeded: result.is_ok(),
                },
            );
        }
        // A closed channel means the watch stopped; the tick still refreshes from the last cache.
        let _ = tokio::time::timeout(config.tick, changes.changed()).await;
    }
}

/// Resolves one node class and patches its status if it changed.
async fn reconcile(
    api: &Api<EC2NodeClass>,
    clients: &AwsClients,
    settings: &AwsSettings,
    node_class: &EC2NodeClass,
    now: Timestamp,
) -> Result<(), String> {
    let resolved = nodeclass::resolve(clients, settings, node_class, now)
        .await
        .map_err(|error| error.to_string())?;
    let Some(status) = status_change(node_class, nodeclass::status(node_class, &resolved, now)) else {
        return Ok(());
    };
    let patch = status_merge_patch(node_class.status.as_ref(), &status);
    api.patch_status(
        &node_class.name_any(),
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|error| format!("patching status: {error}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use nodewright_api::ec2nodeclass::Subnet;

    use super::*;

    fn node_class(generation: i64) -> EC2NodeClass {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.k8s.aws/v1",
            "kind": "EC2NodeClass",
            "metadata": {"name": "default", "generation": generation},
            "spec": {
                "amiSelectorTerms": [{"alias": "al2023@latest"}],
                "subnetSelectorTerms": [{"tags": {"a": "b"}}],
                "securityGroupSelectorTerms": [{"tags": {"a": "b"}}],
                "role": "nodes",
            },
        }))
        .unwrap()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_new_generation_is_due_at_once_and_a_resolved_one_after_the_refresh() {
        let config = StatusLoopConfig::default();
        let class = node_class(2);
        assert!(is_due(&class, None, at(0), &config));
        let resolved = Attempt {
            generation: Some(2),
            at: at(0),
            succeeded: true,
        };
        assert!(!is_due(&class, Some(&resolved), at(299), &config));
        assert!(is_due(&class, Some(&resolved), at(300), &config));
        let older = Attempt {
            generation: Some(1),
            ..resolved
        };
        assert!(is_due(&class, Some(&older), at(1), &config));
    }

    #[test]
    fn a_failed_attempt_is_retried_sooner_than_a_refresh() {
        let config = StatusLoopConfig::default();
        let failed = Attempt {
            generation: Some(2),
            at: at(0),
            succeeded: false,
        };
        assert!(!is_due(&node_class(2), Some(&failed), at(29), &config));
        assert!(is_due(&node_class(2), Some(&failed), at(30), &config));
    }

    #[test]
    fn fields_the_new_status_lacks_are_removed_by_the_patch() {
        let old = EC2NodeClassStatus {
            subnets: vec![Subnet {
                id: "subnet-1".into(),
                zone: "us-west-2a".into(),
                zone_id: None,
            }],
            instance_profile: Some("nodes".into()),
            ..EC2NodeClassStatus::default()
        };
        let new = EC2NodeClassStatus {
            instance_profile: Some("nodes".into()),
            ..EC2NodeClassStatus::default()
        };
        let patch = status_merge_patch(Some(&old), &new);
        assert_eq!(patch["status"]["subnets"], serde_json::Value::Null);
        assert!(patch["status"].as_object().unwrap().contains_key("subnets"));
        assert_eq!(patch["status"]["instanceProfile"], "nodes");
    }

    #[test]
    fn an_unchanged_status_is_not_written() {
        let mut class = node_class(1);
        let status = EC2NodeClassStatus {
            subnets: vec![Subnet {
                id: "subnet-1".into(),
                zone: "us-west-2a".into(),
                zone_id: None,
            }],
            ..EC2NodeClassStatus::default()
        };
        assert_eq!(status_change(&class, status.clone()), Some(status.clone()));
        class.status = Some(status.clone());
        assert_eq!(status_change(&class, status), None);
    }
}
