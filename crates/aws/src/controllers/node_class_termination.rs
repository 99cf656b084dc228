//! EC2NodeClass termination and instance-profile collection, as Karpenter's node class
//! termination controller does it:
//!
//! - Every EC2NodeClass gets the `karpenter.k8s.aws/termination` finalizer, so deleting one
//!   leaves time to clean up what Nodewright made for it.
//! - A deleted node class waits until no NodeClaim references it (their instances may still use
//!   its instance profile); then the managed instance profile Nodewright made for its `role` and
//!   its launch templates are deleted, and the finalizer comes off.
//! - On a timer, managed instance profiles of the cluster whose node class no longer exists are
//!   deleted (a node class deleted while this loop was not running, or before it had the
//!   finalizer).
//!
//! Each step is read (the watched node classes; NodeClaims only when a node class is
//! terminating) → decide ([`finalizer_step`], [`termination_step`], [`profiles_in_use`], pure) →
//! write.

use std::time::Duration;

use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use nodewright_api::{EC2NodeClass, NodeClaim, labels::AWS_TERMINATION_FINALIZER};
use serde_json::json;

use crate::{
    AwsClients, AwsSettings, controllers::watched::WatchedNodeClasses, launch::template,
    nodeclass::instance_profile,
};

/// How often the loop looks at node classes and collects instance profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminationConfig {
    /// How often terminating node classes are looked at again when nothing changed (their
    /// NodeClaims going away is not watched here).
    pub tick: Duration,
    /// How often orphaned instance profiles are collected.
    pub profile_collection: Duration,
}

impl Default for TerminationConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(10),
            profile_collection: Duration::from_mins(5),
        }
    }
}

fn has_finalizer(node_class: &EC2NodeClass) -> bool {
    node_class
        .finalizers()
        .iter()
        .any(|f| f == AWS_TERMINATION_FINALIZER)
}

/// What a live node class needs: the finalizer, if it lacks it.
pub fn finalizer_step(node_class: &EC2NodeClass) -> bool {
    node_class.metadata.deletion_timestamp.is_none() && !has_finalizer(node_class)
}

/// Whether `node_class` is being deleted and waits for this loop.
pub fn is_terminating(node_class: &EC2NodeClass) -> bool {
    node_class.metadata.deletion_timestamp.is_some() && has_finalizer(node_class)
}

/// What a terminating node class needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminationStep {
    /// These NodeClaims still reference it.
    Wait { node_claims: Vec<String> },
    /// Delete its instance profile and launch templates, then remove the finalizer.
    CleanUp,
}

/// Whether `node_claim` launches from the EC2NodeClass `name`.
fn references(node_claim: &NodeClaim, name: &str) -> bool {
    let reference = &node_claim.spec.node_class_ref;
    reference.name == name && reference.kind == "EC2NodeClass" && reference.group == EC2NodeClass::group(&())
}

/// The step for a terminating node class, given every NodeClaim.
pub fn termination_step(node_class: &EC2NodeClass, node_claims: &[NodeClaim]) -> TerminationStep {
    let name = node_class.name_any();
    let mut waiting: Vec<String> = node_claims
        .iter()
        .filter(|claim| references(claim, &name))
        .map(ResourceExt::name_any)
        .collect();
    if waiting.is_empty() {
        TerminationStep::CleanUp
    } else {
        waiting.sort();
        TerminationStep::Wait { node_claims: waiting }
    }
}

/// The managed instance profile names of the node classes that exist: every other profile under
/// the cluster's path belongs to a node class that is gone. A node class that moved from `role`
/// to `instanceProfile` keeps its old profile until it is deleted, since its running instances
/// may still use it.
pub fn profiles_in_use(region: &str, cluster: &str, node_classes: &[EC2NodeClass]) -> Vec<String> {
    node_classes
        .iter()
        .map(|class| instance_profile::profile_name(region, cluster, class))
        .collect()
}

/// Adds the finalizer; appending to an existing list keeps the other finalizers, and an absent
/// list is created only if the object did not change since it was read.
async fn add_finalizer(api: &Api<EC2NodeClass>, node_class: &EC2NodeClass) -> Result<(), String> {
    let patch = if node_class.metadata.finalizers.is_some() {
        json!([{ "op": "add", "path": "/metadata/finalizers/-", "value": AWS_TERMINATION_FINALIZER }])
    } else {
        json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": node_class.resource_version() },
            { "op": "add", "path": "/metadata/finalizers", "value": [AWS_TERMINATION_FINALIZER] },
        ])
    };
    patch_json(api, node_class, patch, "adding the finalizer").await
}

/// Removes the finalizer if it is still where it was read, so no other finalizer is dropped.
async fn remove_finalizer(api: &Api<EC2NodeClass>, node_class: &EC2NodeClass) -> Result<(), String> {
    let Some(index) = node_class
        .finalizers()
        .iter()
        .position(|f| f == AWS_TERMINATION_FINALIZER)
    else {
        return Ok(());
    };
    let at = format!("/metadata/finalizers/{index}");
    let patch = json!([
        { "op": "test", "path": at, "value": AWS_TERMINATION_FINALIZER },
        { "op": "remove", "path": at },
    ]);
    patch_json(api, node_class, patch, "removing the finalizer").await
}

async fn patch_json(
    api: &Api<EC2NodeClass>,
    node_class: &EC2NodeClass,
    patch: serde_json::Value,
    what: &str,
) -> Result<(), String> {
    // The JSON-patch type is kube's (`Patch::Json`'s field), inferred from its use.
    let patch = serde_json::from_value(patch).map_err(|e| format!("{what}: {e}"))?;
    match api
        .patch(
            &node_class.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing is left to finalize.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(format!("{what}: {error}")),
    }
}

/// Deletes what Nodewright made for the node class, then lets it go.
async fn clean_up(
    api: &Api<EC2NodeClass>,
    clients: &AwsClients,
    settings: &AwsSettings,
    node_class: &EC2NodeClass,
) -> Result<(), String> {
    let name = node_class.name_any();
    let cluster = &settings.cluster_name;
    // Deleted whatever the spec says now: a node class that moved from `role` to
    // `instanceProfile` still has the profile made for its role.
    let profile = instance_profile::profile_name(&clients.region, cluster, node_class);
    if instance_profile::delete(&clients.iam, &profile)
        .await
        .map_err(|e| e.to_string())?
    {
        tracing::info!(
            ec2nodeclass = name,
            instance_profile = profile,
            "deleted instance profile"
        );
    }
    let templates = template::list_of_node_class(&clients.ec2, cluster, &name)
        .await
        .map_err(|e| e.to_string())?;
    for template_name in &templates {
        template::delete(&clients.ec2, template_name)
            .await
            .map_err(|e| e.to_string())?;
    }
    if !templates.is_empty() {
        tracing::info!(ec2nodeclass = name, ?templates, "deleted launch templates");
    }
    remove_finalizer(api, node_class).await
}

/// One pass over the node classes: finalizers added, terminating ones waited for or cleaned up.
async fn reconcile_all(
    api: &Api<EC2NodeClass>,
    node_claims: &Api<NodeClaim>,
    clients: &AwsClients,
    settings: &AwsSettings,
    classes: &[EC2NodeClass],
) {
    let mut claims: Option<Vec<NodeClaim>> = None;
    for node_class in classes {
        let name = node_class.name_any();
        let result = if finalizer_step(node_class) {
            add_finalizer(api, node_class).await
        } else if is_terminating(node_class) {
            if claims.is_none() {
                match node_claims.list(&ListParams::default()).await {
                    Ok(list) => claims = Some(list.items),
                    Err(error) => {
                        tracing::warn!(%error, "listing NodeClaims for EC2NodeClass termination failed");
                        return;
                    }
                }
            }
            match termination_step(node_class, claims.as_deref().unwrap_or_default()) {
                TerminationStep::Wait { node_claims } => {
                    tracing::debug!(
                        ec2nodeclass = name,
                        ?node_claims,
                        "EC2NodeClass deletion waits for NodeClaims"
                    );
                    Ok(())
                }
                TerminationStep::CleanUp => clean_up(api, clients, settings, node_class).await,
            }
        } else {
            Ok(())
        };
        if let Err(error) = result {
            tracing::warn!(ec2nodeclass = name, %error, "EC2NodeClass termination step failed");
        }
    }
}

/// Deletes the cluster's managed instance profiles whose node class no longer exists.
pub async fn collect_instance_profiles(
    clients: &AwsClients,
    settings: &AwsSettings,
    node_classes: &WatchedNodeClasses,
) -> Result<Vec<String>, String> {
    let (region, cluster) = (&clients.region, &settings.cluster_name);
    instance_profile::garbage_collect(&clients.iam, region, cluster, || {
        let classes: Vec<EC2NodeClass> = node_classes.all().iter().map(|c| (**c).clone()).collect();
        profiles_in_use(region, cluster, &classes)
    })
    .await
    .map_err(|e| e.to_string())
}

/// Runs the loop until the returned future is dropped.
pub async fn run(
    client: Client,
    clients: AwsClients,
    settings: AwsSettings,
    node_classes: WatchedNodeClasses,
    config: TerminationConfig,
) {
    let api: Api<EC2NodeClass> = Api::all(client.clone());
    let node_claims: Api<NodeClaim> = Api::all(client);
    let mut changes = node_classes.changes();
    node_classes.wait_synced().await;
    let mut collection = tokio::time::interval_at(
        tokio::time::Instant::now() + config.profile_collection,
        config.profile_collection,
    );
    loop {
        let classes: Vec<EC2NodeClass> = node_classes.all().iter().map(|c| (**c).clone()).collect();
        reconcile_all(&api, &node_claims, &clients, &settings, &classes).await;
        tokio::select! {
            _ = collection.tick() => {
                match collect_instance_profiles(&clients, &settings, &node_classes).await {
                    Ok(deleted) if deleted.is_empty() => {}
                    Ok(deleted) => tracing::info!(?deleted, "deleted orphaned instance profiles"),
                    Err(error) => tracing::warn!(%error, "instance profile collection failed"),
                }
            }
            // A closed channel means the watch stopped; the tick still works from the last cache.
            _ = tokio::time::timeout(config.tick, changes.changed()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_class(name: &str, uid: &str, finalizers: Option<&[&str]>, deleting: bool) -> EC2NodeClass {
        let mut metadata = json!({"name": name, "uid": uid});
        if let Some(finalizers) = finalizers {
            metadata["finalizers"] = json!(finalizers);
        }
        if deleting {
            metadata["deletionTimestamp"] = json!("2026-11-01T00:00:00Z");
        }
        serde_json::from_value(json!({
            "apiVersion": "karpenter.k8s.aws/v1",
            "kind": "EC2NodeClass",
            "metadata": metadata,
            "spec": {
                "amiSelectorTerms": [{"alias": "al2023@latest"}],
                "subnetSelectorTerms": [{"tags": {"a": "b"}}],
                "securityGroupSelectorTerms": [{"tags": {"a": "b"}}],
                "role": "nodes",
            },
        }))
        .unwrap()
    }

    fn node_claim(name: &str, kind: &str, class: &str) -> NodeClaim {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": {"name": name},
            "spec": {
                "requirements": [],
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": kind, "name": class},
            },
        }))
        .unwrap()
    }

    #[test]
    fn live_node_classes_get_the_finalizer_once_and_deleted_ones_never() {
        assert!(finalizer_step(&node_class("a", "1", None, false)));
        assert!(finalizer_step(&node_class("a", "1", Some(&["other"]), false)));
        assert!(!finalizer_step(&node_class(
            "a",
            "1",
            Some(&[AWS_TERMINATION_FINALIZER]),
            false
        )));
        assert!(!finalizer_step(&node_class("a", "1", None, true)));
        assert!(is_terminating(&node_class(
            "a",
            "1",
            Some(&["x", AWS_TERMINATION_FINALIZER]),
            true
        )));
        assert!(!is_terminating(&node_class("a", "1", Some(&["x"]), true)));
        assert!(!is_terminating(&node_class(
            "a",
            "1",
            Some(&[AWS_TERMINATION_FINALIZER]),
            false
        )));
    }

    #[test]
    fn termination_waits_for_the_node_claims_of_this_node_class_only() {
        let class = node_class("gpu", "1", Some(&[AWS_TERMINATION_FINALIZER]), true);
        let claims = [
            node_claim("b", "EC2NodeClass", "gpu"),
            node_claim("other-class", "EC2NodeClass", "default"),
            node_claim("other-kind", "FakeNodeClass", "gpu"),
            node_claim("a", "EC2NodeClass", "gpu"),
        ];
        assert_eq!(
            termination_step(&class, &claims),
            TerminationStep::Wait {
                node_claims: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(termination_step(&class, &claims[1..3]), TerminationStep::CleanUp);
    }

    #[test]
    fn profiles_in_use_are_those_of_existing_node_classes() {
        let classes = [
            node_class("a", "uid-a", None, false),
            node_class("b", "uid-b", None, true),
        ];
        let in_use = profiles_in_use("us-west-2", "demo", &classes);
        assert_eq!(
            in_use,
            [
                instance_profile::profile_name("us-west-2", "demo", &classes[0]),
                instance_profile::profile_name("us-west-2", "demo", &classes[1]),
            ]
        );
        assert_ne!(in_use[0], in_use[1]);
    }
}
