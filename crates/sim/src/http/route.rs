//! Request paths and query strings: which document or resource a request names.

use std::{collections::HashMap, sync::Arc};

use axum::http::{HeaderMap, Method};

use crate::{
    error::{ApiError, ApiResult},
    resources::{Registry, ResourceInfo},
    selector::{FieldSelector, LabelSelector},
    store::{FieldValidation, Filter},
};

/// What a path names.
#[derive(Debug)]
pub enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    GroupList,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`.
    ResourceList { group: String, version: String },
    /// `/openapi/v3`.
    OpenApiIndex,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`.
    OpenApiDoc { group: String, version: String },
    /// A resource, object or subresource.
    Resource(Target),
}

/// A resource request's target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The type.
    pub info: Arc<ResourceInfo>,
    /// The version in the path.
    pub version: String,
    /// The namespace ("" for cluster-scoped types and all-namespace requests).
    pub namespace: String,
    /// The object name, for object requests.
    pub name: Option<String>,
    /// The subresource (`status`, `scale`, `eviction`, ...).
    pub sub: Option<String>,
    /// A legacy `/watch/` path.
    pub watch_path: bool,
}

/// Parses a path.
pub fn parse(path: &str, registry: &Registry) -> ApiResult<Route> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => Ok(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => Ok(Route::Health),
        ["api"] => Ok(Route::CoreVersions),
        ["apis"] => Ok(Route::GroupList),
        ["apis", group] => Ok(Route::Group((*group).to_owned())),
        ["api", version] => Ok(Route::ResourceList {
            group: String::new(),
            version: (*version).to_owned(),
        }),
        ["apis", group, version] => Ok(Route::ResourceList {
            group: (*group).to_owned(),
            version: (*version).to_owned(),
        }),
        ["openapi", "v3"] => Ok(Route::OpenApiIndex),
        ["openapi", "v3", "api", version] => Ok(Route::OpenApiDoc {
            group: String::new(),
            version: (*version).to_owned(),
        }),
        ["openapi", "v3", "apis", group, version] => Ok(Route::OpenApiDoc {
            group: (*group).to_owned(),
            version: (*version).to_owned(),
        }),
        ["api", version, rest @ ..] => resource("", version, rest, registry),
        ["apis", group, version, rest @ ..] => resource(group, version, rest, registry),
        _ => Err(ApiError::NoResource),
    }
}

fn resource(group: &str, version: &str, rest: &[&str], registry: &Registry) -> ApiResult<Route> {
    let (watch_path, rest) = match rest.split_first() {
        Some((&"watch", tail)) => (true, tail),
        _ => (false, rest),
    };
    let lookup = |plural: &str| {
        registry
            .get_served(group, version, plural)
            .ok_or(ApiError::NoResource)
    };
    let target = |info: Arc<ResourceInfo>, namespace: &str, name: Option<&&str>, sub: Option<&&str>| {
        Route::Resource(Target {
            info,
            version: version.to_owned(),
            namespace: namespace.to_owned(),
            name: name.map(|n| (*n).to_owned()),
            sub: sub.map(|s| (*s).to_owned()),
            watch_path,
        })
    };
    if let ["namespaces", ns, plural, tail @ ..] = rest
        && let Some(info) = registry
            .get_served(group, version, plural)
            .filter(|i| i.namespaced)
        && tail.len() <= 2
    {
        return Ok(target(info, ns, tail.first(), tail.get(1)));
    }
    match rest {
        [plural, tail @ ..] if tail.len() <= 2 => {
            let info = lookup(plural)?;
            Ok(target(info, "", tail.first(), tail.get(1)))
        }
        _ => Err(ApiError::NoResource),
    }
}

/// The query string, decoded.
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter (`true`, `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// An integer parameter.
    pub fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid value for {key}: {v:?}")))
            })
            .transpose()
    }

    /// `dryRun=All`.
    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "unsupported dryRun value {other:?}: only \"All\" is supported"
            ))),
        }
    }

    /// `fieldValidation`.
    pub fn field_validation(&self) -> ApiResult<FieldValidation> {
        match self.get("fieldValidation") {
            None | Some("" | "Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation {other:?} is invalid: must be Ignore, Warn or Strict"
            ))),
        }
    }

    /// The filter of a list or watch.
    pub fn filter(&self, namespace: &str) -> ApiResult<Filter> {
        Ok(Filter {
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
            labels: LabelSelector::parse(self.get("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(self.get("fieldSelector").unwrap_or(""))?,
        })
    }
}

/// The field manager of a write: the `fieldManager` parameter, else the user agent's product name.
pub fn field_manager(query: &Query, headers: &HeaderMap) -> String {
    if let Some(m) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_owned();
    }
    headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

/// How a response should be shaped, from the `Accept` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The objects themselves.
    Plain,
    /// A `meta.k8s.io` Table.
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
}

/// The shape the client accepts first.
pub fn shape(headers: &HeaderMap) -> Shape {
    let accept = headers.get("accept").and_then(|v| v.to_str().ok()).unwrap_or("");
    for option in accept.split(',') {
        if option.contains("as=Table") {
            return Shape::Table;
        }
        if option.contains("as=PartialObjectMetadata") {
            return Shape::Metadata;
        }
        if option.trim().starts_with("application/json") || option.trim().starts_with("*/*") {
            return Shape::Plain;
        }
    }
    Shape::Plain
}

/// Whether the client asks for aggregated discovery.
pub fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=APIGroupDiscoveryList") && first.contains("v=v2"))
}

/// Whether a method writes.
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match parse(path, &Registry::with_builtins()).unwrap() {
            Route::Resource(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resource_paths() {
        let t = target("/api/v1/namespaces/default/pods/web/eviction");
        assert_eq!(
            (t.info.plural.as_str(), t.namespace.as_str()),
            ("pods", "default")
        );
        assert_eq!(
            (t.name.as_deref(), t.sub.as_deref()),
            (Some("web"), Some("eviction"))
        );
        let ns = target("/api/v1/namespaces/kube-system");
        assert_eq!(
            (ns.info.plural.as_str(), ns.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let status = target("/api/v1/namespaces/x/status");
        assert_eq!(status.sub.as_deref(), Some("status"));
        let all = target("/apis/apps/v1/deployments");
        assert_eq!((all.namespace.as_str(), all.name.as_deref()), ("", None));
        assert!(target("/api/v1/watch/namespaces/default/pods").watch_path);
        assert!(parse("/apis/apps/v9/deployments", &Registry::with_builtins()).is_err());
        assert!(parse("/nothing", &Registry::with_builtins()).is_err());
    }

    #[test]
    fn queries_and_accept_headers() {
        let q = Query::parse(Some("&watch=true&labelSelector=app%3Dweb&limit=5"));
        assert!(q.flag("watch"));
        assert_eq!(q.int("limit").unwrap(), Some(5));
        assert_eq!(q.filter("default").unwrap().labels.to_query(), "app=web");
        assert!(Query::parse(Some("limit=x")).int("limit").is_err());
        let mut headers = HeaderMap::new();
        headers.insert(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(shape(&headers), Shape::Table);
        headers.insert(
            "accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
                .parse()
                .unwrap(),
        );
        assert!(wants_aggregated(&headers));
    }
}
