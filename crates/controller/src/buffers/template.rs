//! The PodTemplate kept for a buffer with a `scalableRef` (Cluster Autoscaler's and Karpenter's
//! buffer controller): a copy of the workload's pod template (labels, annotations, spec) named
//! `capacitybuffer-<buffer>-pod-template` in the buffer's namespace, owned by the buffer (so the
//! garbage collector deletes it with the buffer), kept in sync with the workload, and named by
//! the buffer's `status.podTemplateRef`. The chunks themselves are read from the workload; the
//! copy tells people and tools (`nodewright explain`) what the buffer holds room for.

use k8s_openapi::{
    api::core::v1::{PodTemplate, PodTemplateSpec},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{Api, Resource, ResourceExt, api::PostParams};
use nodewright_api::CapacityBuffer;

use crate::{context::Context, error::ControllerError};

const PREFIX: &str = "capacitybuffer-";
const SUFFIX: &str = "-pod-template";
/// The longest object name Kubernetes accepts.
const MAX_NAME: usize = 253;

/// The managed PodTemplate's name: the buffer's name, cut so the whole stays a valid name.
pub fn name_for(buffer: &str) -> String {
    let room = MAX_NAME - PREFIX.len() - SUFFIX.len();
    let cut = buffer
        .char_indices()
        .nth(room)
        .map_or(buffer, |(at, _)| &buffer[..at]);
    format!("{PREFIX}{cut}{SUFFIX}")
}

/// The PodTemplate the buffer should own, holding `template`'s labels, annotations and spec.
/// Pure.
pub fn desired(buffer: &CapacityBuffer, template: &PodTemplateSpec) -> PodTemplate {
    let source = template.metadata.clone().unwrap_or_default();
    let owner = buffer.metadata.uid.as_ref().map(|uid| OwnerReference {
        api_version: CapacityBuffer::api_version(&()).into_owned(),
        kind: CapacityBuffer::kind(&()).into_owned(),
        name: buffer.name_any(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: None,
    });
    PodTemplate {
        metadata: ObjectMeta {
            name: Some(name_for(&buffer.name_any())),
            namespace: buffer.namespace(),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        template: Some(PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: source.labels,
                annotations: source.annotations,
                ..ObjectMeta::default()
            }),
            spec: template.spec.clone(),
        }),
    }
}

/// Whether `current` already holds what `desired` asks (template and owner).
fn in_sync(current: &PodTemplate, desired: &PodTemplate) -> bool {
    current.template == desired.template
        && current.metadata.owner_references == desired.metadata.owner_references
}

/// Creates the PodTemplate, or replaces it when the workload's template (or the owner)
/// changed; returns its generation as stored.
pub async fn apply(ctx: &Context, desired: PodTemplate) -> Result<Option<i64>, ControllerError> {
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let api: Api<PodTemplate> = Api::namespaced(ctx.client.clone(), &namespace);
    let stored = match api.get_opt(&name).await? {
        None => {
            tracing::info!(podtemplate = %format!("{namespace}/{name}"), "creating a CapacityBuffer's PodTemplate");
            api.create(&PostParams::default(), &desired).await?
        }
        Some(current) if in_sync(&current, &desired) => current,
        Some(current) => {
            let mut replacement = desired;
            replacement.metadata.resource_version = current.metadata.resource_version.clone();
            // Labels and annotations others put on the object are theirs to keep.
            replacement.metadata.labels = current.metadata.labels.clone();
            replacement.metadata.annotations = current.metadata.annotations.clone();
            api.replace(&name, &PostParams::default(), &replacement).await?
        }
    };
    Ok(stored.metadata.generation)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn buffer(name: &str) -> CapacityBuffer {
        serde_json::from_value(json!({
            "apiVersion": "autoscaling.x-k8s.io/v1beta1", "kind": "CapacityBuffer",
            "metadata": { "name": name, "namespace": "shop", "uid": "u-1" },
            "spec": { "scalableRef": { "apiGroup": "apps", "kind": "Deployment", "name": "web" }, "replicas": 2 }
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_copy_is_named_after_the_buffer_and_owned_by_it() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": { "labels": { "app": "web" }, "annotations": { "a": "b" }, "name": "ignored" },
            "spec": { "containers": [{ "name": "c", "image": "web" }] }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let copy = desired(&buffer("warm"), &template);
        assert_eq!(
            copy.metadata.name.as_deref(),
            Some("capacitybuffer-warm-pod-template")
        );
        assert_eq!(copy.metadata.namespace.as_deref(), Some("shop"));
        let owner = &copy
            .metadata
            .owner_references
            .as_ref()
            .unwrap_or_else(|| panic!("no owner"))[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.api_version.as_str(),
                owner.name.as_str(),
                owner.uid.as_str()
            ),
            ("CapacityBuffer", "autoscaling.x-k8s.io/v1beta1", "warm", "u-1")
        );
        assert_eq!(owner.controller, Some(true));
        let held = copy.template.as_ref().unwrap_or_else(|| panic!("no template"));
        assert_eq!(held.spec, template.spec);
        let meta = held.metadata.as_ref().unwrap_or_else(|| panic!("no metadata"));
        assert_eq!(
            meta.labels,
            template.metadata.as_ref().and_then(|m| m.labels.clone())
        );
        assert_eq!(meta.name, None, "only labels and annotations are copied");
        assert!(in_sync(&copy, &copy.clone()));
        let mut changed = template;
        changed
            .spec
            .as_mut()
            .unwrap_or_else(|| panic!("no spec"))
            .containers[0]
            .image = Some("web:2".into());
        assert!(!in_sync(&desired(&buffer("warm"), &changed), &copy));
    }

    #[test]
    fn long_buffer_names_are_cut_to_a_valid_name() {
        let name = name_for(&"b".repeat(300));
        assert_eq!(name.len(), MAX_NAME);
        assert!(name.starts_with(PREFIX) && name.ends_with(SUFFIX));
    }
}
