//! AMIs from selector terms: aliases through the public SSM parameters of the EKS-optimized,
//! Bottlerocket and Windows AMIs; ids, names, owners, tags and SSM parameters through
//! `DescribeImages`. For each distinct set of requirements (architecture, GPU or accelerator
//! variant) the newest non-deprecated image wins, as in Karpenter.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Image};
use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use nodewright_api::{
    ec2nodeclass::{Ami, AmiSelectorTerm},
    labels,
};

use super::selectors::tag_filters;
use crate::error::AwsError;

/// The hardware an AMI variant is built for, beyond its architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    /// No GPU and no accelerator.
    Standard,
    Nvidia,
    Neuron,
}

/// One public SSM parameter an alias reads, and the variant its AMI serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasParameter {
    pub name: String,
    pub variant: Variant,
}

/// Why an alias cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedAlias(pub String);

fn param(name: String, variant: Variant) -> AliasParameter {
    AliasParameter { name, variant }
}

/// The SSM parameters of `family@version` for Kubernetes `k8s` (`1.33`).
pub fn alias_parameters(
    family: &str,
    version: &str,
    k8s: &str,
) -> Result<Vec<AliasParameter>, UnsupportedAlias> {
    let minor: Option<u32> = k8s.split('.').nth(1).and_then(|m| m.parse().ok());
    match family {
        "al2023" => Ok(al2023_parameters(version, k8s)),
        "al2" => {
            if minor.is_some_and(|m| m >= 33) {
                return Err(UnsupportedAlias(format!(
                    "al2 has no AMIs for Kubernetes {k8s} (1.33 and later)"
                )));
            }
            Ok(al2_parameters(version, k8s))
        }
        "bottlerocket" => {
            let version = version.strip_prefix('v').unwrap_or(version);
            let path = |flavour: &str, arch: &str| {
                format!("/aws/service/bottlerocket/aws-k8s-{k8s}{flavour}/{arch}/{version}/image_id")
            };
            Ok(vec![
                param(path("", "x86_64"), Variant::Standard),
                param(path("", "arm64"), Variant::Standard),
                param(path("-nvidia", "x86_64"), Variant::Nvidia),
                param(path("-nvidia", "arm64"), Variant::Nvidia),
            ])
        }
        "windows2019" | "windows2022" | "windows2025" => {
            let year = &family["windows".len()..];
            if year == "2025" && minor.is_some_and(|m| m < 35) {
                return Err(UnsupportedAlias(format!(
                    "windows2025 needs Kubernetes 1.35 or later, the cluster runs {k8s}"
                )));
            }
            Ok(vec![param(
                format!(
                    "/aws/service/ami-windows-latest/Windows_Server-{year}-English-Core-EKS_Optimized-{k8s}/image_id"
                ),
                Variant::Standard,
            )])
        }
        other => Err(UnsupportedAlias(format!("unknown alias family {other:?}"))),
    }
}

fn al2023_parameters(version: &str, k8s: &str) -> Vec<AliasParameter> {
    let mut parameters = Vec::new();
    for (arch, variants) in [
        (
            "x86_64",
            &[Variant::Standard, Variant::Nvidia, Variant::Neuron][..],
        ),
        ("arm64", &[Variant::Standard, Variant::Nvidia][..]),
    ] {
        for &variant in variants {
            let kind = match variant {
                Variant::Standard => "standard",
                Variant::Nvidia => "nvidia",
                Variant::Neuron => "neuron",
            };
            let release = if version == "latest" {
                "recommended".to_owned()
            } else {
                format!("amazon-eks-node-al2023-{arch}-{kind}-{k8s}-{version}")
            };
            parameters.push(param(
                format!(
                    "/aws/service/eks/optimized-ami/{k8s}/amazon-linux-2023/{arch}/{kind}/{release}/image_id"
                ),
                variant,
            ));
        }
    }
    parameters
}

fn al2_parameters(version: &str, k8s: &str) -> Vec<AliasParameter> {
    let release = |prefix: &str| {
        if version == "latest" {
            "recommended".to_owned()
        } else {
            format!("{prefix}-{k8s}-{version}")
        }
    };
    let base = format!("/aws/service/eks/optimized-ami/{k8s}");
    vec![
        param(
            format!("{base}/amazon-linux-2/{}/image_id", release("amazon-eks-node")),
            Variant::Standard,
        ),
        param(
            format!(
                "{base}/amazon-linux-2-arm64/{}/image_id",
                release("amazon-eks-arm64-node")
            ),
            Variant::Standard,
        ),
        param(
            format!(
                "{base}/amazon-linux-2-gpu/{}/image_id",
                release("amazon-eks-gpu-node")
            ),
            Variant::Nvidia,
        ),
    ]
}

/// A `DescribeImages` query for one non-alias term (ids and SSM values are resolved to ids first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageQuery {
    pub image_ids: Vec<String>,
    pub owners: Vec<String>,
    pub filters: Vec<Filter>,
}

/// The queries for non-alias terms; `resolved_ssm` maps each term's `ssmParameter` to its AMI id.
pub fn image_queries(terms: &[AmiSelectorTerm], resolved_ssm: &BTreeMap<String, String>) -> Vec<ImageQuery> {
    let mut ids: Vec<String> = terms.iter().filter_map(|t| t.id.clone()).collect();
    ids.extend(
        terms
            .iter()
            .filter_map(|t| t.ssm_parameter.as_ref())
            .filter_map(|p| resolved_ssm.get(p).cloned()),
    );
    let mut queries = Vec::new();
    if !ids.is_empty() {
        queries.push(ImageQuery {
            image_ids: ids,
            ..ImageQuery::default()
        });
    }
    for term in terms
        .iter()
        .filter(|t| t.id.is_none() && t.alias.is_none() && t.ssm_parameter.is_none())
    {
        let mut query = ImageQuery {
            filters: tag_filters(&term.tags),
            ..ImageQuery::default()
        };
        if let Some(name) = &term.name {
            query
                .filters
                .push(Filter::builder().name("name").values(name).build());
            if term.owner.is_none() {
                query.owners = vec!["self".to_owned(), "amazon".to_owned()];
            }
        }
        if let Some(owner) = &term.owner {
            query.owners.push(owner.clone());
        }
        queries.push(query);
    }
    queries
}

/// An image as a status entry with its requirements, and its creation date; `None` for an image
/// whose architecture Kubernetes has no name for. `variant` is the alias variant the image was
/// published for (`None` for images selected by id, name, owner or tags: architecture only).
pub fn ami_from_image(
    image: &Image,
    variant: Option<Variant>,
    windows: bool,
    now: jiff::Timestamp,
) -> Option<(Ami, String)> {
    let id = image.image_id()?.to_owned();
    let arch = match image.architecture()?.as_str() {
        "x86_64" => "amd64",
        "arm64" => "arm64",
        _ => return None,
    };
    let requirement = |key: &str, operator: &str, values: Vec<String>| NodeSelectorRequirement {
        key: key.to_owned(),
        operator: operator.to_owned(),
        values: if values.is_empty() { None } else { Some(values) },
    };
    let mut requirements = vec![requirement(labels::ARCH, "In", vec![arch.to_owned()])];
    if windows {
        requirements.push(requirement(labels::OS, "In", vec!["windows".to_owned()]));
    }
    match variant {
        None => {}
        Some(Variant::Standard) => {
            requirements.push(requirement(
                labels::AWS_INSTANCE_GPU_COUNT,
                "DoesNotExist",
                vec![],
            ));
            requirements.push(requirement(
                labels::AWS_INSTANCE_ACCELERATOR_COUNT,
                "DoesNotExist",
                vec![],
            ));
        }
        Some(Variant::Nvidia) => {
            requirements.push(requirement(labels::AWS_INSTANCE_GPU_COUNT, "Exists", vec![]));
        }
        Some(Variant::Neuron) => {
            requirements.push(requirement(
                labels::AWS_INSTANCE_ACCELERATOR_COUNT,
                "Exists",
                vec![],
            ));
        }
    }
    let deprecated = image
        .deprecation_time()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| t <= now);
    let created = image.creation_date().unwrap_or_default().to_owned();
    Some((
        Ami {
            id,
            name: image.name().map(str::to_owned),
            deprecated,
            requirements,
        },
        created,
    ))
}

/// For each distinct requirement set, the newest non-deprecated image (deprecated ones only when
/// nothing else serves the set), ties broken by name; sorted newest first.
pub fn newest_per_requirements(mut candidates: Vec<(Ami, String)>) -> Vec<Ami> {
    candidates.sort_by(|(a, a_created), (b, b_created)| {
        (a.deprecated, std::cmp::Reverse(a_created), &a.name, &a.id).cmp(&(
            b.deprecated,
            std::cmp::Reverse(b_created),
            &b.name,
            &b.id,
        ))
    });
    let mut seen: Vec<Vec<NodeSelectorRequirement>> = Vec::new();
    let mut chosen = Vec::new();
    for (ami, _) in candidates {
        if !seen.contains(&ami.requirements) {
            seen.push(ami.requirements.clone());
            chosen.push(ami);
        }
    }
    chosen
}

/// Whether an instance type's labels satisfy an AMI's requirements.
pub fn serves(ami: &Ami, type_labels: &BTreeMap<String, String>) -> bool {
    ami.requirements.iter().all(|r| {
        let value = type_labels.get(&r.key);
        let values = r.values.as_deref().unwrap_or_default();
        match r.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

/// The AMI a type launches with: the first of `amis` (newest first) whose requirements it meets.
pub fn ami_for<'a>(amis: &'a [Ami], type_labels: &BTreeMap<String, String>) -> Option<&'a Ami> {
    amis.iter().find(|a| serves(a, type_labels))
}

/// A `DescribeImages` call: available images only, deprecated included (they still serve until a
/// newer one exists).
pub async fn describe_images(ec2: &aws_sdk_ec2::Client, query: &ImageQuery) -> Result<Vec<Image>, AwsError> {
    let mut request = ec2
        .describe_images()
        .include_deprecated(true)
        .filters(Filter::builder().name("state").values("available").build());
    for id in &query.image_ids {
        request = request.image_ids(id);
    }
    for owner in &query.owners {
        request = request.owners(owner);
    }
    for filter in &query.filters {
        request = request.filters(filter.clone());
    }
    let mut pages = request.into_paginator().send();
    let mut images = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::api("DescribeImages", &e))?;
        images.extend(page.images().iter().cloned());
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_paths_follow_the_published_parameters() {
        let latest = alias_parameters("al2023", "latest", "1.33").unwrap();
        assert_eq!(latest.len(), 5);
        assert_eq!(
            latest[0].name,
            "/aws/service/eks/optimized-ami/1.33/amazon-linux-2023/x86_64/standard/recommended/image_id"
        );
        let pinned = alias_parameters("al2023", "v20250101", "1.33").unwrap();
        assert_eq!(
            pinned[3].name,
            "/aws/service/eks/optimized-ami/1.33/amazon-linux-2023/arm64/standard/\
             amazon-eks-node-al2023-arm64-standard-1.33-v20250101/image_id"
        );
        let bottlerocket = alias_parameters("bottlerocket", "v1.30.0", "1.33").unwrap();
        assert_eq!(
            bottlerocket[0].name,
            "/aws/service/bottlerocket/aws-k8s-1.33/x86_64/1.30.0/image_id"
        );
        assert!(alias_parameters("al2", "latest", "1.33").is_err());
        assert_eq!(alias_parameters("al2", "latest", "1.32").unwrap().len(), 3);
        assert!(alias_parameters("windows2025", "latest", "1.34").is_err());
        assert_eq!(
            alias_parameters("windows2022", "latest", "1.33").unwrap()[0].name,
            "/aws/service/ami-windows-latest/Windows_Server-2022-English-Core-EKS_Optimized-1.33/image_id"
        );
    }

    fn ami(id: &str, arch: &str, gpu: bool, deprecated: bool) -> Ami {
        let mut requirements = vec![NodeSelectorRequirement {
            key: labels::ARCH.into(),
            operator: "In".into(),
            values: Some(vec![arch.into()]),
        }];
        if gpu {
            requirements.push(NodeSelectorRequirement {
                key: labels::AWS_INSTANCE_GPU_COUNT.into(),
                operator: "Exists".into(),
                values: None,
            });
        }
        Ami {
            id: id.into(),
            name: Some(id.into()),
            deprecated,
            requirements,
        }
    }

    #[test]
    fn the_newest_non_deprecated_image_wins_per_requirement_set() {
        let chosen = newest_per_requirements(vec![
            (
                ami("ami-old", "amd64", false, false),
                "2025-01-01T00:00:00Z".into(),
            ),
            (
                ami("ami-new-deprecated", "amd64", false, true),
                "2026-01-01T00:00:00Z".into(),
            ),
            (
                ami("ami-new", "amd64", false, false),
                "2025-06-01T00:00:00Z".into(),
            ),
            (
                ami("ami-arm", "arm64", false, false),
                "2024-01-01T00:00:00Z".into(),
            ),
        ]);
        let ids: Vec<&str> = chosen.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["ami-new", "ami-arm"]);
    }

    #[test]
    fn gpu_types_get_the_gpu_variant() {
        let mut standard = ami("ami-std", "amd64", false, false);
        standard.requirements.push(NodeSelectorRequirement {
            key: labels::AWS_INSTANCE_GPU_COUNT.into(),
            operator: "DoesNotExist".into(),
            values: None,
        });
        let amis = [standard, ami("ami-gpu", "amd64", true, false)];
        let mut labels_of_type = BTreeMap::from([(labels::ARCH.to_owned(), "amd64".to_owned())]);
        assert_eq!(ami_for(&amis, &labels_of_type).unwrap().id, "ami-std");
        labels_of_type.insert(labels::AWS_INSTANCE_GPU_COUNT.to_owned(), "1".to_owned());
        assert_eq!(ami_for(&amis, &labels_of_type).unwrap().id, "ami-gpu");
        labels_of_type.insert(labels::ARCH.to_owned(), "arm64".to_owned());
        assert!(ami_for(&amis, &labels_of_type).is_none());
    }
}
