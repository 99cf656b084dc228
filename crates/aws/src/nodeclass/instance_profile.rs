//! Instance profiles Nodewright manages for EC2NodeClasses that name a `role`: one per node class,
//! named `<cluster>_<hash>` under the path `/karpenter/<region>/<cluster>/<node class uid>/` (the
//! path Karpenter uses, so a cluster moving from Karpenter keeps its profiles), tagged with the
//! cluster and node class, holding exactly that role. A node class with `instanceProfile` uses its
//! own profile unchanged.

use std::collections::BTreeMap;

use aws_sdk_iam::types::Tag;
use kube::ResourceExt;
use nodewright_api::EC2NodeClass;
use nodewright_catalog::spot::fnv1a_64;

use crate::{error::AwsError, instances::tags};

/// `/karpenter/<region>/<cluster>/`: every profile Nodewright manages for the cluster.
pub fn cluster_path(region: &str, cluster: &str) -> String {
    format!("/karpenter/{region}/{cluster}/")
}

/// The node class's identity in names: its UID, or its name before the API server gave it one.
fn node_class_key(node_class: &EC2NodeClass) -> String {
    node_class
        .metadata
        .uid
        .clone()
        .unwrap_or_else(|| node_class.name_any())
}

/// The path of the node class's profile.
pub fn profile_path(region: &str, cluster: &str, node_class: &EC2NodeClass) -> String {
    format!("{}{}/", cluster_path(region, cluster), node_class_key(node_class))
}

/// The name of the node class's profile: stable for the node class, distinct across regions.
pub fn profile_name(region: &str, cluster: &str, node_class: &EC2NodeClass) -> String {
    let key = format!("{region}/{}", node_class_key(node_class));
    format!("{cluster}_{}", fnv1a_64(key.as_bytes()))
}

/// `spec.role` without its IAM path (`nodes/KarpenterNodeRole` → `KarpenterNodeRole`).
fn role_name(role: &str) -> &str {
    role.rsplit('/').next().unwrap_or(role)
}

/// Creates or repairs the node class's managed profile so it holds exactly `role`; returns its
/// name.
pub async fn ensure(
    iam: &aws_sdk_iam::Client,
    region: &str,
    cluster: &str,
    node_class: &EC2NodeClass,
    role: &str,
) -> Result<String, AwsError> {
    let name = profile_name(region, cluster, node_class);
    let role = role_name(role);
    let existing = match iam.get_instance_profile().instance_profile_name(&name).send().await {
        Ok(found) => found.instance_profile().cloned(),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(aws_sdk_iam::operation::get_instance_profile::GetInstanceProfileError::is_no_such_entity_exception) =>
        {
            None
        }
        Err(error) => return Err(AwsError::api("GetInstanceProfile", &error)),
    };
    let current_roles: Vec<String> = if let Some(profile) = existing {
        profile.roles().iter().map(|r| r.role_name().to_owned()).collect()
    } else {
        let mut create = iam
            .create_instance_profile()
            .instance_profile_name(&name)
            .path(profile_path(region, cluster, node_class));
        for (key, value) in profile_tags(region, cluster, node_class) {
            let tag = Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| AwsError::InvalidValue {
                    source_name: format!("EC2NodeClass {}", node_class.name_any()),
                    field: "spec.tags".to_owned(),
                    reason: e.to_string(),
                })?;
            create = create.tags(tag);
        }
        create
            .send()
            .await
            .map_err(|e| AwsError::api("CreateInstanceProfile", &e))?;
        Vec::new()
    };
    for other in current_roles.iter().filter(|r| r.as_str() != role) {
        iam.remove_role_from_instance_profile()
            .instance_profile_name(&name)
            .role_name(other)
            .send()
            .await
            .map_err(|e| AwsError::api("RemoveRoleFromInstanceProfile", &e))?;
    }
    if !current_roles.iter().any(|r| r == role) {
        iam.add_role_to_instance_profile()
            .instance_profile_name(&name)
            .role_name(role)
            .send()
            .await
            .map_err(|e| AwsError::api("AddRoleToInstanceProfile", &e))?;
    }
    Ok(name)
}

fn profile_tags(region: &str, cluster: &str, node_class: &EC2NodeClass) -> BTreeMap<String, String> {
    let mut profile_tags = node_class.spec.tags.clone();
    profile_tags.insert(format!("{}{cluster}", tags::CLUSTER_PREFIX), "owned".to_owned());
    profile_tags.insert(tags::CLUSTER_NAME.to_owned(), cluster.to_owned());
    profile_tags.insert(tags::NODE_CLASS.to_owned(), node_class.name_any());
    profile_tags.insert(nodewright_api::labels::REGION.to_owned(), region.to_owned());
    profile_tags
}

fn is_no_such_entity(error: &AwsError) -> bool {
    error.code() == Some("NoSuchEntity")
}

/// Deletes the profile `name` after removing its roles (IAM refuses to delete a profile that
/// holds one); a profile already gone is not an error. Returns whether it existed.
pub async fn delete(iam: &aws_sdk_iam::Client, name: &str) -> Result<bool, AwsError> {
    let profile = match iam
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
    {
        Ok(found) => found.instance_profile().cloned(),
        Err(error) => {
            let error = AwsError::api("GetInstanceProfile", &error);
            if is_no_such_entity(&error) {
                return Ok(false);
            }
            return Err(error);
        }
    };
    for role in profile
        .iter()
        .flat_map(aws_sdk_iam::types::InstanceProfile::roles)
    {
        remove_role(iam, name, role.role_name()).await?;
    }
    match iam
        .delete_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(error) => {
            let error = AwsError::api("DeleteInstanceProfile", &error);
            if is_no_such_entity(&error) {
                Ok(false)
            } else {
                Err(error)
            }
        }
    }
}

async fn remove_role(iam: &aws_sdk_iam::Client, profile: &str, role: &str) -> Result<(), AwsError> {
    match iam
        .remove_role_from_instance_profile()
        .instance_profile_name(profile)
        .role_name(role)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(error) => {
            let error = AwsError::api("RemoveRoleFromInstanceProfile", &error);
            // Removed by someone else in the meantime: the profile is as we want it.
            if is_no_such_entity(&error) {
                Ok(())
            } else {
                Err(error)
            }
        }
    }
}

/// Deletes the managed profiles of the cluster that `in_use` does not name; returns the names
/// deleted. `in_use` is asked only after the profiles were listed: a profile is made for a node
/// class already known, so a node class made meanwhile is in its answer along with its profile.
pub async fn garbage_collect(
    iam: &aws_sdk_iam::Client,
    region: &str,
    cluster: &str,
    in_use: impl FnOnce() -> Vec<String>,
) -> Result<Vec<String>, AwsError> {
    let mut pages = iam
        .list_instance_profiles()
        .path_prefix(cluster_path(region, cluster))
        .into_paginator()
        .send();
    let mut listed = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::api("ListInstanceProfiles", &e))?;
        listed.extend(
            page.instance_profiles()
                .iter()
                .map(|p| p.instance_profile_name().to_owned()),
        );
    }
    let in_use = in_use();
    let mut deleted = Vec::new();
    for name in listed.into_iter().filter(|name| !in_use.contains(name)) {
        if delete(iam, &name).await? {
            deleted.push(name);
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_per_node_class_and_region() {
        let mut class: EC2NodeClass = serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
            "metadata": {"name": "default", "uid": "1234"},
            "spec": {"amiSelectorTerms": [{"alias": "al2023@latest"}], "subnetSelectorTerms": [],
                     "securityGroupSelectorTerms": [], "role": "nodes"},
        }))
        .unwrap();
        let name = profile_name("us-west-2", "demo", &class);
        assert!(name.starts_with("demo_"));
        assert_eq!(name, profile_name("us-west-2", "demo", &class));
        assert_ne!(name, profile_name("eu-west-1", "demo", &class));
        assert_eq!(
            profile_path("us-west-2", "demo", &class),
            "/karpenter/us-west-2/demo/1234/"
        );
        class.metadata.uid = Some("5678".into());
        assert_ne!(name, profile_name("us-west-2", "demo", &class));
        assert_eq!(role_name("team/KarpenterNodeRole"), "KarpenterNodeRole");
    }
}
