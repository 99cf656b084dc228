//! What a simulated controller sees: typed reads of the store, writes under its own field
//! manager, and the clock. Races that a real controller shrugs off (the object changed or went
//! away meanwhile) are reported as `Ok(false)` so the next pass retries from fresh state.

use jiff::Timestamp;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::DataPlaneError;
use crate::{
    error::ApiError,
    meta::Clock,
    resources::ResourceInfo,
    store::{DeleteOptions, Filter, Store, Subresource, WriteOptions},
};

/// One controller's view of the cluster during one pass.
pub(crate) struct Ctx<'a> {
    pub(crate) store: &'a Store,
    pub(crate) clock: &'a Clock,
    /// The `fieldManager` of this controller's writes (`kube-scheduler`, `kubelet`, ...).
    pub(crate) manager: &'static str,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    /// The current time.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The served type `group`/`resource` (built-in types always exist; custom ones once their
    /// CRD is applied).
    pub(crate) fn info(&self, group: &str, resource: &str) -> Option<ResourceInfo> {
        self.store
            .registry()
            .get(group, resource)
            .map(|info| (*info).clone())
    }

    /// Every object of a type, decoded; objects that do not decode are an error naming them.
    pub(crate) fn list<T: DeserializeOwned>(
        &self,
        group: &str,
        resource: &str,
    ) -> Result<Vec<T>, DataPlaneError> {
        let Some(info) = self.info(group, resource) else {
            return Ok(Vec::new());
        };
        let page = self.store.list(&info, &Filter::default(), None, None)?;
        page.items
            .iter()
            .map(|obj| {
                serde_json::from_value(obj.value()).map_err(|source| DataPlaneError::Decode {
                    resource: format!("{}.{}", info.plural, info.group),
                    name: format!("{}/{}", obj.namespace, obj.name),
                    message: source.to_string(),
                })
            })
            .collect()
    }

    /// Creates an object. `Ok(false)` when it already exists or its namespace is gone.
    pub(crate) fn create<T: Serialize>(
        &self,
        group: &str,
        resource: &str,
        ns: &str,
        object: &T,
    ) -> Result<bool, DataPlaneError> {
        let info = self.required_info(group, resource)?;
        let value = to_value(object)?;
        match self.store.create(&info, ns, value, &self.write_options()) {
            Ok(_) => Ok(true),
            Err(ApiError::AlreadyExists(_) | ApiError::NotFound(_) | ApiError::Forbidden(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Rewrites an object (or its status) with `change` applied to the current version;
    /// `Ok(false)` when it is gone or `change` changed nothing.
    pub(crate) fn update<T: Serialize + DeserializeOwned>(
        &self,
        group: &str,
        resource: &str,
        ns: &str,
        name: &str,
        sub: Subresource,
        change: &mut dyn FnMut(&mut T),
    ) -> Result<bool, DataPlaneError> {
        let info = self.required_info(group, resource)?;
        let Ok(before) = self.store.get(&info, ns, name) else {
            return Ok(false);
        };
        let mut decode_error = None;
        let result = self
            .store
            .update(&info, ns, name, sub, &self.write_options(), &mut |current| {
                let Some(current) = current else {
                    // Gone between the check and the write: report NotFound, which is not an error here.
                    return Err(ApiError::not_found(&info.group, &info.plural, name));
                };
                let mut typed: T = serde_json::from_value(current.clone()).map_err(|e| {
                    decode_error = Some(e.to_string());
                    ApiError::BadRequest(e.to_string())
                })?;
                change(&mut typed);
                serde_json::to_value(&typed).map_err(|e| ApiError::BadRequest(e.to_string()))
            });
        if let Some(message) = decode_error {
            return Err(DataPlaneError::Decode {
                resource: format!("{}.{}", info.plural, info.group),
                name: format!("{ns}/{name}"),
                message,
            });
        }
        match result {
            // An update that changes nothing stores nothing and keeps the version.
            Ok((obj, _)) => Ok(obj.rv != before.rv),
            Err(ApiError::NotFound(_) | ApiError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an object with a grace period (pods) or at once; `Ok(false)` when it was gone.
    pub(crate) fn delete(
        &self,
        group: &str,
        resource: &str,
        ns: &str,
        name: &str,
        grace_period: Option<i64>,
    ) -> Result<bool, DataPlaneError> {
        let info = self.required_info(group, resource)?;
        let opts = DeleteOptions {
            grace_period,
            ..DeleteOptions::default()
        };
        match self.store.delete(&info, ns, name, &opts) {
            Ok(_) => Ok(true),
            Err(ApiError::NotFound(_) | ApiError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn required_info(&self, group: &str, resource: &str) -> Result<ResourceInfo, DataPlaneError> {
        self.info(group, resource)
            .ok_or_else(|| DataPlaneError::NotServed(format!("{resource}.{group}")))
    }

    fn write_options(&self) -> WriteOptions {
        WriteOptions {
            field_manager: Some(self.manager.to_owned()),
            ..WriteOptions::default()
        }
    }
}

fn to_value<T: Serialize>(object: &T) -> Result<Value, DataPlaneError> {
    serde_json::to_value(object).map_err(|e| DataPlaneError::Encode(e.to_string()))
}
