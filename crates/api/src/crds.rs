//! The CustomResourceDefinitions of every kind Nodewright serves, as the YAML checked in under
//! `crds/` (a test fails when the files drift from the code).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{CapacityBuffer, EC2NodeClass, NodeClaim, NodePool, nodeoverlay::NodeOverlay};

/// Every CRD, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        NodePool::crd(),
        NodeClaim::crd(),
        NodeOverlay::crd(),
        EC2NodeClass::crd(),
        CapacityBuffer::crd(),
    ]
}

/// The file name a CRD is stored under: `<group>_<plural>.yaml`, as Karpenter names them.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// A CRD as YAML.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(crd)
}

/// All CRDs as one multi-document YAML stream, for `kubectl apply -f -`.
pub fn all_to_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}
