//! Where the provider reads EC2NodeClasses from. The controller passes its informer cache; tests
//! and tools pass a [`StaticNodeClasses`]. Keeping this a trait keeps the Kubernetes client out of
//! this crate.

use std::{
    collections::BTreeMap,
    sync::{Arc, PoisonError, RwLock},
};

use kube::ResourceExt;
use nodewright_api::EC2NodeClass;

/// A read-only view of the cluster's EC2NodeClasses, status included.
pub trait NodeClassSource: Send + Sync {
    /// The EC2NodeClass named `name`, if it exists.
    fn get(&self, name: &str) -> Option<Arc<EC2NodeClass>>;
}

/// EC2NodeClasses held in memory; clones share them.
#[derive(Debug, Clone, Default)]
pub struct StaticNodeClasses {
    classes: Arc<RwLock<BTreeMap<String, Arc<EC2NodeClass>>>>,
}

impl StaticNodeClasses {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a node class (by name).
    pub fn insert(&self, node_class: EC2NodeClass) {
        let name = node_class.name_any();
        self.classes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, Arc::new(node_class));
    }
}

impl NodeClassSource for StaticNodeClasses {
    fn get(&self, name: &str) -> Option<Arc<EC2NodeClass>> {
        self.classes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }
}
