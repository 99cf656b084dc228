//! EC2NodeClass resolution: subnets, security groups, capacity reservations
//! ([`capacity_reservations`]) and AMIs from the selector terms, the
//! instance profile, and the status conditions that say what is missing. [`resolve`] reads AWS;
//! [`status`] decides the status from what was found (pure); the controller writes it.
//!
//! With `spec.role`, [`resolve`] also creates or repairs the node class's managed instance
//! profile ([`instance_profile`]), as Karpenter's reconciler does.
//!
//! Not resolved yet: placement groups. `ValidationSucceeded` is the
//! spec validation, without Karpenter's dry-run authorization checks.

pub mod amis;
pub mod capacity_reservations;
pub mod hash;
pub mod instance_profile;
pub mod selectors;

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use jiff::Timestamp;
use nodewright_api::{
    EC2NodeClass,
    conditions::{ConditionSet, ec2nodeclass as cond},
    ec2nodeclass::{Ami, CapacityReservation, EC2NodeClassStatus, SecurityGroup, Subnet},
};

use crate::{AwsClients, AwsSettings, error::AwsError};

/// What the selector terms matched in AWS.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Most available IPs first, then by ID.
    pub subnets: Vec<Subnet>,
    /// Sorted by ID.
    pub security_groups: Vec<SecurityGroup>,
    /// Active reservations the capacity reservation terms select, sorted by ID (none while the
    /// ReservedCapacity gate is off).
    pub capacity_reservations: Vec<CapacityReservation>,
    /// Whether the ReservedCapacity feature gate is on (reservations resolved and reported).
    pub reserved_capacity: bool,
    /// The AMIs, or why the terms cannot select any (an unsupported alias).
    pub amis: Result<Vec<Ami>, String>,
    /// The instance profile, or why there is none.
    pub instance_profile: Result<String, String>,
    /// The spec's validation problems, if any.
    pub validation: Result<(), String>,
}

/// Reads everything the node class's terms select.
pub async fn resolve(
    clients: &AwsClients,
    settings: &AwsSettings,
    node_class: &EC2NodeClass,
    now: Timestamp,
) -> Result<Resolved, AwsError> {
    let spec = &node_class.spec;
    let subnets = describe_subnets(
        &clients.ec2,
        &selectors::subnet_queries(&spec.subnet_selector_terms),
    )
    .await?;
    let security_groups = describe_security_groups(
        &clients.ec2,
        &selectors::security_group_queries(&spec.security_group_selector_terms),
    )
    .await?;
    let reservation_queries = capacity_reservations::queries(&spec.capacity_reservation_selector_terms);
    // No terms (or the gate off), no call: most node classes reserve nothing.
    let capacity_reservations = if reservation_queries.is_empty() || !settings.reserved_capacity {
        Vec::new()
    } else {
        capacity_reservations::describe(&clients.ec2, &reservation_queries, now).await?
    };
    let amis = resolve_amis(clients, settings, node_class, now).await?;
    let instance_profile = match (&spec.instance_profile, &spec.role) {
        (Some(profile), _) => Ok(profile.clone()),
        (None, Some(role)) => {
            match instance_profile::ensure(
                &clients.iam,
                &clients.region,
                &settings.cluster_name,
                node_class,
                role,
            )
            .await
            {
                Ok(name) => Ok(name),
                // A role that does not exist is the node class's problem, not a failed reconcile.
                Err(error) if error.code() == Some("NoSuchEntity") => Err(error.to_string()),
                Err(error) => return Err(error),
            }
        }
        (None, None) => Err("neither spec.role nor spec.instanceProfile is set".to_owned()),
    };
    let validation = node_class.validate().map_err(|invalid| invalid.to_string());
    Ok(Resolved {
        subnets,
        security_groups,
        capacity_reservations,
        reserved_capacity: settings.reserved_capacity,
        amis,
        instance_profile,
        validation,
    })
}

/// The status for what was resolved: the resolved lists and one condition per dependency, with
/// `Ready` derived from them. `previous` keeps transition times of unchanged conditions.
pub fn status(node_class: &EC2NodeClass, resolved: &Resolved, now: Timestamp) -> EC2NodeClassStatus {
    let mut status = node_class.status.clone().unwrap_or_default();
    status.subnets.clone_from(&resolved.subnets);
    status.security_groups.clone_from(&resolved.security_groups);
    status
        .capacity_reservations
        .clone_from(&resolved.capacity_reservations);
    status.amis = resolved.amis.clone().unwrap_or_default();
    status.instance_profile = resolved.instance_profile.as_ref().ok().cloned();
    let generation = node_class.metadata.generation;
    let mut conditions = ConditionSet::new(&mut status.conditions, &cond::DEPENDENTS, generation, now);
    if resolved.subnets.is_empty() {
        conditions.set_false(
            cond::SUBNETS_READY,
            cond::REASON_SUBNETS_NOT_FOUND,
            "SubnetSelector did not match any Subnets",
        );
    } else {
        conditions.set_true(cond::SUBNETS_READY);
    }
    if resolved.security_groups.is_empty() {
        conditions.set_false(
            cond::SECURITY_GROUPS_READY,
            cond::REASON_SECURITY_GROUPS_NOT_FOUND,
            "SecurityGroupSelector did not match any SecurityGroups",
        );
    } else {
        conditions.set_true(cond::SECURITY_GROUPS_READY);
    }
    match &resolved.amis {
        Err(why) => conditions.set_false(cond::AMIS_READY, cond::REASON_UNSUPPORTED_ALIAS, why),
        Ok(amis) if amis.is_empty() => conditions.set_false(
            cond::AMIS_READY,
            cond::REASON_AMI_NOT_FOUND,
            "AMISelector did not match any AMIs",
        ),
        Ok(_) => conditions.set_true(cond::AMIS_READY),
    };
    match &resolved.instance_profile {
        Ok(_) => conditions.set_true(cond::INSTANCE_PROFILE_READY),
        Err(why) => conditions.set_false(
            cond::INSTANCE_PROFILE_READY,
            cond::REASON_INSTANCE_PROFILE_NOT_FOUND,
            why,
        ),
    };
    // Informational, outside `Ready`, and only under the ReservedCapacity gate (as Karpenter):
    // finding no reservation is not an error, the node class launches without them.
    if node_class.spec.capacity_reservation_selector_terms.is_empty() || !resolved.reserved_capacity {
        conditions.clear(cond::CAPACITY_RESERVATIONS_READY);
    } else {
        conditions.set_true(cond::CAPACITY_RESERVATIONS_READY);
    }
    match &resolved.validation {
        Ok(()) => conditions.set_true(cond::VALIDATION_SUCCEEDED),
        Err(why) => conditions.set_false(cond::VALIDATION_SUCCEEDED, "ValidationFailed", why),
    };
    status
}

async fn describe_subnets(
    ec2: &aws_sdk_ec2::Client,
    queries: &[Vec<Filter>],
) -> Result<Vec<Subnet>, AwsError> {
    let mut found: BTreeMap<String, (i32, Subnet)> = BTreeMap::new();
    for filters in queries {
        let mut pages = ec2
            .describe_subnets()
            .set_filters(Some(filters.clone()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::api("DescribeSubnets", &e))?;
            for subnet in page.subnets() {
                let (Some(id), Some(zone)) = (subnet.subnet_id(), subnet.availability_zone()) else {
                    continue;
                };
                let entry = Subnet {
                    id: id.to_owned(),
                    zone: zone.to_owned(),
                    zone_id: subnet.availability_zone_id().map(str::to_owned),
                };
                found.insert(
                    id.to_owned(),
                    (subnet.available_ip_address_count().unwrap_or(0), entry),
                );
            }
        }
    }
    let mut subnets: Vec<(i32, Subnet)> = found.into_values().collect();
    subnets.sort_by(|(a_ips, a), (b_ips, b)| b_ips.cmp(a_ips).then_with(|| a.id.cmp(&b.id)));
    Ok(subnets.into_iter().map(|(_, s)| s).collect())
}

async fn describe_security_groups(
    ec2: &aws_sdk_ec2::Client,
    queries: &[Vec<Filter>],
) -> Result<Vec<SecurityGroup>, AwsError> {
    let mut found: BTreeMap<String, SecurityGroup> = BTreeMap::new();
    for filters in queries {
        let mut pages = ec2
            .describe_security_groups()
            .set_filters(Some(filters.clone()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::api("DescribeSecurityGroups", &e))?;
            for group in page.security_groups() {
                if let Some(id) = group.group_id() {
                    found.insert(
                        id.to_owned(),
                        SecurityGroup {
                            id: id.to_owned(),
                            name: group.group_name().map(str::to_owned),
                        },
                    );
                }
            }
        }
    }
    Ok(found.into_values().collect())
}

/// An SSM parameter's value; `None` when it does not exist.
async fn ssm_value(ssm: &aws_sdk_ssm::Client, name: &str) -> Result<Option<String>, AwsError> {
    match ssm.get_parameter().name(name).send().await {
        Ok(output) => Ok(output.parameter().and_then(|p| p.value()).map(str::to_owned)),
        Err(error)
            if error.as_service_error().is_some_and(
                aws_sdk_ssm::operation::get_parameter::GetParameterError::is_parameter_not_found,
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(AwsError::api("GetParameter", &error)),
    }
}

async fn resolve_amis(
    clients: &AwsClients,
    settings: &AwsSettings,
    node_class: &EC2NodeClass,
    now: Timestamp,
) -> Result<Result<Vec<Ami>, String>, AwsError> {
    let terms = &node_class.spec.ami_selector_terms;
    if let Some((family, version)) = terms.iter().find_map(|t| t.alias_parts()) {
        let parameters = match amis::alias_parameters(family, version, &settings.kubernetes_version) {
            Ok(parameters) => parameters,
            Err(amis::UnsupportedAlias(why)) => return Ok(Err(why)),
        };
        let mut variants = Vec::new();
        for parameter in &parameters {
            if let Some(id) = ssm_value(&clients.ssm, &parameter.name).await? {
                variants.push((id, parameter.variant));
            }
        }
        if variants.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        let query = amis::ImageQuery {
            image_ids: variants.iter().map(|(id, _)| id.clone()).collect(),
            ..amis::ImageQuery::default()
        };
        let images = amis::describe_images(&clients.ec2, &query).await?;
        let windows = family.starts_with("windows");
        let candidates = variants
            .iter()
            .filter_map(|(id, variant)| {
                let image = images.iter().find(|i| i.image_id() == Some(id))?;
                amis::ami_from_image(image, Some(*variant), windows, now)
            })
            .collect();
        return Ok(Ok(amis::newest_per_requirements(candidates)));
    }
    let mut resolved_ssm = BTreeMap::new();
    for parameter in terms.iter().filter_map(|t| t.ssm_parameter.as_ref()) {
        match ssm_value(&clients.ssm, parameter).await? {
            Some(id) if id.starts_with("ami-") => {
                resolved_ssm.insert(parameter.clone(), id);
            }
            other => tracing::warn!(parameter, value = ?other, "SSM parameter holds no AMI id; term skipped"),
        }
    }
    let windows = node_class
        .ami_family()
        .is_some_and(|f| f.as_str().starts_with("Windows"));
    let mut candidates = Vec::new();
    for query in amis::image_queries(terms, &resolved_ssm) {
        for image in amis::describe_images(&clients.ec2, &query).await? {
            candidates.extend(amis::ami_from_image(&image, None, windows, now));
        }
    }
    Ok(Ok(amis::newest_per_requirements(candidates)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_class() -> EC2NodeClass {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.k8s.aws/v1",
            "kind": "EC2NodeClass",
            "metadata": {"name": "default", "generation": 3},
            "spec": {
                "amiSelectorTerms": [{"alias": "al2023@latest"}],
                "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": "demo"}}],
                "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": "demo"}}],
                "role": "nodes",
            },
        }))
        .unwrap()
    }

    fn condition<'a>(status: &'a EC2NodeClassStatus, kind: &str) -> (&'a str, &'a str) {
        let c = status.conditions.iter().find(|c| c.type_ == kind).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn capacity_reservations_ready_is_reported_only_under_the_gate_and_with_terms() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut reserving = node_class();
        reserving.spec.capacity_reservation_selector_terms =
            vec![nodewright_api::ec2nodeclass::CapacityReservationSelectorTerm {
                id: Some("cr-0abc".to_owned()),
                ..Default::default()
            }];
        let resolved = |gate: bool| Resolved {
            subnets: vec![],
            security_groups: vec![],
            capacity_reservations: vec![],
            reserved_capacity: gate,
            amis: Ok(vec![]),
            instance_profile: Ok("nodes".into()),
            validation: Ok(()),
        };
        let reported = |class: &EC2NodeClass, gate: bool| {
            status(class, &resolved(gate), now)
                .conditions
                .iter()
                .any(|c| c.type_ == cond::CAPACITY_RESERVATIONS_READY)
        };
        assert!(reported(&reserving, true));
        assert!(!reported(&reserving, false), "gate off");
        assert!(!reported(&node_class(), true), "no terms");
    }

    #[test]
    fn each_missing_dependency_is_its_own_false_condition() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let resolved = Resolved {
            subnets: vec![Subnet {
                id: "subnet-1".into(),
                zone: "us-west-2a".into(),
                zone_id: None,
            }],
            security_groups: vec![],
            capacity_reservations: vec![],
            reserved_capacity: true,
            amis: Ok(vec![]),
            instance_profile: Ok("nodes".into()),
            validation: Ok(()),
        };
        let status = status(&node_class(), &resolved, now);
        assert_eq!(
            condition(&status, cond::SUBNETS_READY),
            ("True", cond::SUBNETS_READY)
        );
        assert_eq!(
            condition(&status, cond::SECURITY_GROUPS_READY),
            ("False", cond::REASON_SECURITY_GROUPS_NOT_FOUND)
        );
        assert_eq!(
            condition(&status, cond::AMIS_READY),
            ("False", cond::REASON_AMI_NOT_FOUND)
        );
        assert_eq!(condition(&status, "Ready").0, "False");
        assert_eq!(status.instance_profile.as_deref(), Some("nodes"));
        assert!(status.conditions.iter().all(|c| c.observed_generation == Some(3)));
    }
}
