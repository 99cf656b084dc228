//! Zonal volume topology: a pod's persistent volumes restrict where it can run. A bound claim's
//! PersistentVolume carries node affinity (e.g. the EBS volume's zone); an unbound claim with
//! `WaitForFirstConsumer` may only be provisioned where its StorageClass allows. Both become node
//! requirements of the pod (never part of its topology spread), as Karpenter treats them.

use std::collections::HashMap;

use k8s_openapi::api::{
    core::v1::{NodeSelectorTerm, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::StorageClass,
};
use nodewright_api::{Operator, labels};

use crate::pod::Term;

/// The volume objects a solve may look up.
#[derive(Debug, Clone, Default)]
pub struct Volumes {
    pub claims: Vec<PersistentVolumeClaim>,
    pub volumes: Vec<PersistentVolume>,
    pub storage_classes: Vec<StorageClass>,
}

/// Lookups by name.
pub(crate) struct VolumeIndex<'a> {
    claims: HashMap<(&'a str, &'a str), &'a PersistentVolumeClaim>,
    volumes: HashMap<&'a str, &'a PersistentVolume>,
    classes: HashMap<&'a str, &'a StorageClass>,
}

impl<'a> VolumeIndex<'a> {
    pub(crate) fn new(volumes: &'a Volumes) -> Self {
        let name = |m: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            m.name.as_deref().unwrap_or("")
        };
        Self {
            claims: volumes
                .claims
                .iter()
                .map(|c| {
                    (
                        (
                            c.metadata.namespace.as_deref().unwrap_or("default"),
                            name(&c.metadata),
                        ),
                        c,
                    )
                })
                .collect(),
            volumes: volumes.volumes.iter().map(|v| (name(&v.metadata), v)).collect(),
            classes: volumes
                .storage_classes
                .iter()
                .map(|c| (name(&c.metadata), c))
                .collect(),
        }
    }

    /// OR'ed alternatives of node terms the pod's volumes require (one empty alternative when
    /// they require nothing), or why the pod cannot be scheduled.
    pub(crate) fn terms(&self, pod: &Pod) -> Result<Vec<Vec<Term>>, String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut alternatives: Vec<Vec<Term>> = vec![Vec::new()];
        let claims = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.persistent_volume_claim.as_ref());
        for source in claims {
            let claim_name = source.claim_name.as_str();
            let claim = self
                .claims
                .get(&(namespace, claim_name))
                .ok_or_else(|| format!("persistent volume claim {namespace}/{claim_name} not found"))?;
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(format!(
                    "persistent volume claim {namespace}/{claim_name} is being deleted"
                ));
            }
            let options = self.claim_terms(claim, namespace, claim_name)?;
            if options.is_empty() {
                continue;
            }
            // Every volume must be satisfied: combine each alternative so far with each of this
            // volume's alternatives.
            alternatives = alternatives
                .iter()
                .flat_map(|prefix| {
                    options.iter().map(move |option| {
                        let mut combined = prefix.clone();
                        combined.extend(option.iter().cloned());
                        combined
                    })
                })
                .collect();
        }
        Ok(alternatives)
    }

    fn claim_terms(
        &self,
        claim: &PersistentVolumeClaim,
        namespace: &str,
        claim_name: &str,
    ) -> Result<Vec<Vec<Term>>, String> {
        let spec = claim.spec.as_ref();
        if let Some(volume_name) = spec
            .and_then(|s| s.volume_name.as_deref())
            .filter(|n| !n.is_empty())
        {
            let volume = self.volumes.get(volume_name).ok_or_else(|| {
                format!("persistent volume claim {namespace}/{claim_name} is bound to volume {volume_name}, which does not exist")
            })?;
            // Local and hostPath volumes pin a hostname Karpenter cannot create; they are ignored.
            let node_local = volume
                .spec
                .as_ref()
                .is_some_and(|s| s.local.is_some() || s.host_path.is_some());
            let terms = volume
                .spec
                .as_ref()
                .and_then(|s| s.node_affinity.as_ref())
                .and_then(|a| a.required.as_ref())
                .map(|r| r.node_selector_terms.iter().map(node_selector_term).collect())
                .unwrap_or_default();
            return Ok(if node_local { Vec::new() } else { terms });
        }
        let class_name = spec.and_then(|s| s.storage_class_name.as_deref()).unwrap_or("");
        if class_name.is_empty() {
            return Err(format!(
                "persistent volume claim {namespace}/{claim_name} is unbound and names no storage class"
            ));
        }
        let class = self.classes.get(class_name).ok_or_else(|| {
            format!("storage class {class_name} of claim {namespace}/{claim_name} not found")
        })?;
        if class.volume_binding_mode.as_deref() != Some("WaitForFirstConsumer") {
            return Err(format!(
                "persistent volume claim {namespace}/{claim_name} is unbound and storage class {class_name} binds immediately"
            ));
        }
        Ok(class
            .allowed_topologies
            .iter()
            .flatten()
            .map(|t| {
                t.match_label_expressions
                    .iter()
                    .flatten()
                    .map(|e| Term {
                        key: labels::normalize_label_key(&e.key).to_owned(),
                        operator: Operator::In,
                        values: e.values.clone(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect())
    }
}

fn node_selector_term(term: &NodeSelectorTerm) -> Vec<Term> {
    term.match_expressions
        .iter()
        .flatten()
        .filter(|e| e.key != labels::HOSTNAME)
        .filter_map(|e| {
            Some(Term {
                key: labels::normalize_label_key(&e.key).to_owned(),
                operator: e.operator.parse().ok()?,
                values: e.values.clone().unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn volumes() -> Volumes {
        Volumes {
            claims: vec![
                serde_json::from_value(json!({ "metadata": { "name": "bound", "namespace": "default" }, "spec": { "volumeName": "pv-a", "storageClassName": "gp3" } })).unwrap(),
                serde_json::from_value(json!({ "metadata": { "name": "waiting", "namespace": "default" }, "spec": { "storageClassName": "gp3" } })).unwrap(),
                serde_json::from_value(json!({ "metadata": { "name": "immediate", "namespace": "default" }, "spec": { "storageClassName": "eager" } })).unwrap(),
            ],
            volumes: vec![serde_json::from_value(json!({ "metadata": { "name": "pv-a" }, "spec": { "nodeAffinity": { "required": { "nodeSelectorTerms": [
                { "matchExpressions": [{ "key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": ["us-east-1a"] }] },
                { "matchExpressions": [{ "key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a"] }] }
            ] } } } })).unwrap()],
            storage_classes: vec![
                serde_json::from_value(json!({ "metadata": { "name": "gp3" }, "provisioner": "ebs.csi.aws.com", "volumeBindingMode": "WaitForFirstConsumer",
                    "allowedTopologies": [{ "matchLabelExpressions": [{ "key": "topology.kubernetes.io/zone", "values": ["us-east-1b", "us-east-1c"] }] }] })).unwrap(),
                serde_json::from_value(json!({ "metadata": { "name": "eager" }, "provisioner": "ebs.csi.aws.com", "volumeBindingMode": "Immediate" })).unwrap(),
            ],
        }
    }

    fn pod(claims: &[&str]) -> Pod {
        let volumes: Vec<_> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| json!({ "name": format!("v{i}"), "persistentVolumeClaim": { "claimName": c } }))
            .collect();
        serde_json::from_value(json!({ "metadata": { "name": "p", "namespace": "default" }, "spec": { "containers": [], "volumes": volumes } })).unwrap()
    }

    #[test]
    fn bound_and_waiting_claims_become_requirements() {
        let volumes = volumes();
        let index = VolumeIndex::new(&volumes);
        let bound = index.terms(&pod(&["bound"])).unwrap();
        assert_eq!(bound.len(), 2, "the PV's OR'ed terms stay alternatives");
        assert_eq!(bound[1][0].values, ["us-east-1a"]);
        let both = index.terms(&pod(&["bound", "waiting"])).unwrap();
        assert_eq!(both.len(), 2);
        assert!(
            both.iter().all(|alt| alt.len() == 2),
            "each alternative carries both volumes' terms"
        );
        assert_eq!(index.terms(&pod(&[])).unwrap(), vec![Vec::<Term>::new()]);
    }

    #[test]
    fn unusable_claims_are_explained() {
        let volumes = volumes();
        let index = VolumeIndex::new(&volumes);
        assert!(index.terms(&pod(&["missing"])).unwrap_err().contains("not found"));
        assert!(
            index
                .terms(&pod(&["immediate"]))
                .unwrap_err()
                .contains("binds immediately")
        );
    }
}
