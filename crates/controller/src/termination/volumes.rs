//! Which VolumeAttachments still hold a drained node: the instance is terminated only once the
//! CSI drivers have detached its volumes, or the data could be lost. Pure.
//!
//! Attachments of volumes used by pods that will not leave the node (they tolerate the disrupted
//! taint, are mirror pods, or are stuck terminating) are not waited for: they would hold the node
//! forever, as in Karpenter's `filterVolumeAttachments`.

use std::collections::BTreeSet;

use jiff::Timestamp;
use k8s_openapi::api::{
    core::v1::{PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::VolumeAttachment,
};

use super::drain;

/// The names of the attachments on `node` to wait for. `pods` are the pods bound to the node;
/// `claims` and `volumes` resolve a pod's PersistentVolumeClaims to the volumes attached.
pub fn blocking_attachments(
    node: &str,
    attachments: &[VolumeAttachment],
    pods: &[Pod],
    claims: &[&PersistentVolumeClaim],
    volumes: &[&PersistentVolume],
    now: Timestamp,
) -> Vec<String> {
    let staying = volumes_of_staying_pods(pods, claims, volumes, now);
    let mut blocking: Vec<String> = attachments
        .iter()
        .filter(|a| a.spec.node_name == node)
        .filter(|a| {
            a.spec
                .source
                .persistent_volume_name
                .as_deref()
                .is_none_or(|pv| !staying.contains(pv))
        })
        .filter_map(|a| a.metadata.name.clone())
        .collect();
    blocking.sort();
    blocking
}

/// The PersistentVolume names used by pods that draining will not move.
fn volumes_of_staying_pods(
    pods: &[Pod],
    claims: &[&PersistentVolumeClaim],
    volumes: &[&PersistentVolume],
    now: Timestamp,
) -> BTreeSet<String> {
    let mut claim_keys: BTreeSet<(String, String)> = BTreeSet::new();
    for pod in pods
        .iter()
        .filter(|p| !drain::is_terminal(p) && !drain::is_drainable(p, now))
    {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            if let Some(claim) = &volume.persistent_volume_claim {
                claim_keys.insert((namespace.clone(), claim.claim_name.clone()));
            } else if volume.ephemeral.is_some() {
                // A generic ephemeral volume's claim is named after the pod and the volume.
                claim_keys.insert((namespace.clone(), format!("{pod_name}-{}", volume.name)));
            }
        }
    }
    let mut names = BTreeSet::new();
    for claim in claims {
        let key = (
            claim.metadata.namespace.clone().unwrap_or_default(),
            claim.metadata.name.clone().unwrap_or_default(),
        );
        if claim_keys.contains(&key)
            && let Some(volume) = claim.spec.as_ref().and_then(|s| s.volume_name.clone())
        {
            names.insert(volume);
        }
    }
    // A claim not (yet) in the cache: its volume names the claim it is bound to.
    for volume in volumes {
        let bound_to = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).map(|r| {
            (
                r.namespace.clone().unwrap_or_default(),
                r.name.clone().unwrap_or_default(),
            )
        });
        if bound_to.is_some_and(|key| claim_keys.contains(&key))
            && let Some(name) = volume.metadata.name.clone()
        {
            names.insert(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

    use serde_json::json;

    use super::*;

    fn attachment(name: &str, node: &str, volume: &str) -> VolumeAttachment {
        serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "attacher": "ebs.csi.aws.com", "nodeName": node, "source": { "persistentVolumeName": volume } }
        }))
        .unwrap()
    }

    fn pod_with_claim(name: &str, claim: &str, tolerates: bool) -> Pod {
        let tolerations = if tolerates {
            json!([{ "key": "karpenter.sh/disrupted", "operator": "Exists" }])
        } else {
            json!([])
        };
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "default" },
            "spec": {
                "containers": [{ "name": "c" }],
                "tolerations": tolerations,
                "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": claim } }]
            },
            "status": { "phase": "Running" }
        }))
        .unwrap()
    }

    fn claim(name: &str, volume: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "default" },
            "spec": { "volumeName": volume }
        }))
        .unwrap()
    }

    fn volume(name: &str, claim: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "claimRef": { "namespace": "default", "name": claim } }
        }))
        .unwrap()
    }

    #[test]
    fn attachments_of_pods_that_stay_do_not_block() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let attachments = [
            attachment("va-leaving", "n1", "pv-leaving"),
            attachment("va-staying", "n1", "pv-staying"),
            attachment("va-staying-uncached-claim", "n1", "pv-other"),
            attachment("va-elsewhere", "n2", "pv-elsewhere"),
        ];
        let pods = [
            pod_with_claim("leaving", "data-leaving", false),
            pod_with_claim("staying", "data-staying", true),
            pod_with_claim("staying-2", "data-other", true),
        ];
        let claims = [
            claim("data-leaving", "pv-leaving"),
            claim("data-staying", "pv-staying"),
        ];
        let volumes = [volume("pv-other", "data-other")];
        let blocking = blocking_attachments(
            "n1",
            &attachments,
            &pods,
            &claims.iter().collect::<Vec<_>>(),
            &volumes.iter().collect::<Vec<_>>(),
            now,
        );
        assert_eq!(blocking, ["va-leaving"]);
    }
}
