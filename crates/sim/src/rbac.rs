//! Opt-in authentication and RBAC authorization, so a test can run a client with only the
//! permissions a Role grants and see every request the API server would have refused.
//!
//! Authentication is by bearer token: [`Rbac::mint_token`] registers an identity (a
//! ServiceAccount's, as the token controller would) and returns the token. A request without an
//! `Authorization` header is the cluster admin, so every client that existed before RBAC keeps
//! working unchanged; a request with an unknown token is a 401.
//!
//! Authorization follows Kubernetes' RBAC authorizer over the RBAC objects stored in the server:
//! a request is allowed when a rule of a ClusterRole bound by a ClusterRoleBinding, or of a Role
//! or ClusterRole bound by a RoleBinding in the request's namespace, names its verb, API group,
//! resource (`pods`, or `pods/eviction` for a subresource; `*` and `*/eviction` match too) and,
//! when the rule lists `resourceNames`, its object name. Discovery and health paths are allowed
//! to every authenticated identity (Kubernetes' `system:discovery` and
//! `system:public-info-viewer` bindings). A refusal is a 403 in Kubernetes' `Status` shape and is
//! recorded in [`Rbac::denied`]. ClusterRole aggregation and non-resource URL rules are not
//! implemented.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

use axum::http::{HeaderMap, Method, header};
use serde_json::Value;

use crate::{
    error::{ApiError, ApiResult, Subject},
    http::route::{Query, Target},
    store::{Filter, Store},
};

/// The RBAC API group.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user name (`system:serviceaccount:<namespace>:<name>` for a ServiceAccount).
    pub user: String,
    /// The groups the user is in.
    pub groups: Vec<String>,
}

impl Identity {
    /// A ServiceAccount's identity, with the groups Kubernetes gives it.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            user: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_owned(),
            ],
        }
    }

    /// Whether a binding subject (`kind`, `name`, `namespace`) names this identity.
    fn is_subject(&self, subject: &Value) -> bool {
        let field = |key: &str| subject.get(key).and_then(Value::as_str).unwrap_or("");
        match field("kind") {
            "ServiceAccount" => {
                self.user == format!("system:serviceaccount:{}:{}", field("namespace"), field("name"))
            }
            "User" => self.user == field("name"),
            "Group" => self.groups.iter().any(|g| g == field("name")),
            _ => false,
        }
    }
}

/// What RBAC decides on: one request's verb and object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// The API group ("" for core).
    pub api_group: String,
    /// The plural resource.
    pub resource: String,
    /// The subresource (`status`, `eviction`, `scale`, ...), empty for none.
    pub subresource: String,
    /// The namespace, empty for cluster-scoped and all-namespace requests.
    pub namespace: String,
    /// The object name, empty for collection requests (creates included).
    pub name: String,
}

impl Attributes {
    /// The attributes of a resource request.
    pub fn of(method: &Method, target: &Target, query: &Query) -> Self {
        let named = target.name.is_some();
        let verb = match (method.as_str(), named) {
            ("GET" | "HEAD", _) if target.sub.is_none() && (target.watch_path || query.flag("watch")) => {
                "watch"
            }
            ("GET" | "HEAD", true) => "get",
            ("GET" | "HEAD", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            (other, _) => other,
        };
        Self {
            verb: verb.to_lowercase(),
            api_group: target.info.group.clone(),
            resource: target.info.plural.clone(),
            subresource: target.sub.clone().unwrap_or_default(),
            namespace: target.namespace.clone(),
            name: target.name.clone().unwrap_or_default(),
        }
    }

    /// `pods` or `pods/eviction`, as rules name resources.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// A request RBAC refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeniedRequest {
    /// Who asked.
    pub user: String,
    /// What was asked.
    pub attributes: Attributes,
}

impl std::fmt::Display for DeniedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.attributes;
        write!(
            f,
            "{} {} {} in API group {:?} name={:?} namespace={:?}",
            self.user,
            a.verb,
            a.combined_resource(),
            a.api_group,
            a.name,
            a.namespace
        )
    }
}

/// The tokens the server knows and the requests it refused.
#[derive(Debug, Default)]
pub struct Rbac {
    tokens: Mutex<HashMap<String, Identity>>,
    denied: Mutex<Vec<DeniedRequest>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent whatever panicked while holding them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Rbac {
    /// Registers `identity` and returns a bearer token that authenticates as it.
    pub fn mint_token(&self, identity: Identity) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        lock(&self.tokens).insert(token.clone(), identity);
        token
    }

    /// Every request refused so far, oldest first.
    pub fn denied(&self) -> Vec<DeniedRequest> {
        lock(&self.denied).clone()
    }

    /// The identity of a request: None for the admin (no credentials), 401 for a token the
    /// server did not mint.
    pub fn authenticate(&self, headers: &HeaderMap) -> ApiResult<Option<Identity>> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        lock(&self.tokens)
            .get(token.trim())
            .cloned()
            .map(Some)
            .ok_or(ApiError::Unauthorized)
    }

    /// Allows the request or refuses it with a 403, recording the refusal.
    pub fn authorize(&self, store: &Store, identity: &Identity, attributes: Attributes) -> ApiResult<()> {
        if allows(store, identity, &attributes) {
            return Ok(());
        }
        let error = forbidden(identity, &attributes);
        lock(&self.denied).push(DeniedRequest {
            user: identity.user.clone(),
            attributes,
        });
        Err(error)
    }
}

/// Kubernetes' message for an RBAC refusal.
fn forbidden(identity: &Identity, a: &Attributes) -> ApiError {
    let subject = Subject {
        group: a.api_group.clone(),
        resource: a.resource.clone(),
        kind: String::new(),
        name: a.name.clone(),
    };
    // Kubernetes names the group-qualified resource first, the subresource only after "cannot".
    let what = if a.name.is_empty() {
        subject.qualified()
    } else {
        format!("{} \"{}\"", subject.qualified(), a.name)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    let message = format!(
        "{what} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        identity.user,
        a.verb,
        a.combined_resource(),
        a.api_group
    );
    ApiError::ForbiddenFor {
        subject: Box::new(subject),
        message,
    }
}

/// The stored objects of an RBAC type (`roles`, `clusterrolebindings`, ...), in `namespace` if
/// given.
fn stored(store: &Store, plural: &str, namespace: Option<&str>) -> Vec<Value> {
    let Some(info) = store.registry().get(RBAC_GROUP, plural) else {
        return Vec::new();
    };
    let filter = Filter {
        namespace: namespace.map(str::to_owned),
        ..Filter::default()
    };
    store
        .list(&info, &filter, None, None)
        .map(|page| page.items.iter().map(|o| o.value()).collect())
        .unwrap_or_default()
}

/// The rules of the role a binding's `roleRef` names (a Role in the binding's namespace, or a
/// ClusterRole); none if it does not exist.
fn referenced_rules(store: &Store, binding: &Value) -> Vec<Value> {
    let role_ref = &binding["roleRef"];
    let name = role_ref["name"].as_str().unwrap_or("");
    let (plural, namespace) = match role_ref["kind"].as_str() {
        Some("ClusterRole") => ("clusterroles", ""),
        Some("Role") => ("roles", binding["metadata"]["namespace"].as_str().unwrap_or("")),
        _ => return Vec::new(),
    };
    let Some(info) = store.registry().get(RBAC_GROUP, plural) else {
        return Vec::new();
    };
    store
        .get(&info, namespace, name)
        .ok()
        .and_then(|role| role.value()["rules"].as_array().cloned())
        .unwrap_or_default()
}

fn binds(identity: &Identity, binding: &Value) -> bool {
    binding["subjects"]
        .as_array()
        .is_some_and(|subjects| subjects.iter().any(|s| identity.is_subject(s)))
}

/// Whether a role bound to `identity` allows the request.
pub fn allows(store: &Store, identity: &Identity, attributes: &Attributes) -> bool {
    let mut bindings = stored(store, "clusterrolebindings", None);
    if !attributes.namespace.is_empty() {
        bindings.extend(stored(store, "rolebindings", Some(&attributes.namespace)));
    }
    bindings
        .iter()
        .filter(|b| binds(identity, b))
        .flat_map(|b| referenced_rules(store, b))
        .any(|rule| rule_allows(&rule, attributes))
}

fn strings(rule: &Value, key: &str) -> Vec<String> {
    rule[key]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether one PolicyRule allows the request (Kubernetes' `RuleAllows`).
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strings(rule, "verbs");
    let groups = strings(rule, "apiGroups");
    let resources = strings(rule, "resources");
    let names = strings(rule, "resourceNames");
    let verb_ok = verbs.iter().any(|v| v == "*" || *v == a.verb);
    let group_ok = groups.iter().any(|g| g == "*" || *g == a.api_group);
    let combined = a.combined_resource();
    let resource_ok = resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
    });
    let name_ok = names.is_empty() || (!a.name.is_empty() && names.contains(&a.name));
    verb_ok && group_ok && resource_ok && name_ok
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: String::new(),
            name: name.into(),
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_and_names() {
        let pods = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]});
        assert!(rule_allows(&pods, &request("get", "", "pods", "", "web")));
        assert!(!rule_allows(&pods, &request("delete", "", "pods", "", "web")));
        assert!(!rule_allows(&pods, &request("get", "apps", "pods", "", "web")));
        // A subresource needs its own rule.
        assert!(!rule_allows(&pods, &request("get", "", "pods", "status", "web")));
        let eviction = json!({"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]});
        assert!(rule_allows(
            &eviction,
            &request("create", "", "pods", "eviction", "web")
        ));
        assert!(!rule_allows(&eviction, &request("create", "", "pods", "", "")));
        let any_status = json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]});
        assert!(rule_allows(
            &any_status,
            &request("patch", "karpenter.sh", "nodeclaims", "status", "a")
        ));
        assert!(!rule_allows(
            &any_status,
            &request("patch", "karpenter.sh", "nodeclaims", "", "a")
        ));
        let one_lease = json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "resourceNames": ["mine"], "verbs": ["update"]});
        assert!(rule_allows(
            &one_lease,
            &request("update", "coordination.k8s.io", "leases", "", "mine")
        ));
        assert!(!rule_allows(
            &one_lease,
            &request("update", "coordination.k8s.io", "leases", "", "other")
        ));
        // A named rule never matches a request without a name (a create, a list).
        assert!(!rule_allows(
            &one_lease,
            &request("update", "coordination.k8s.io", "leases", "", "")
        ));
    }

    #[test]
    fn service_account_subjects_match_by_namespace_and_name() {
        let me = Identity::service_account("kube-system", "nodewright");
        assert!(me.is_subject(
            &json!({"kind": "ServiceAccount", "name": "nodewright", "namespace": "kube-system"})
        ));
        assert!(
            !me.is_subject(&json!({"kind": "ServiceAccount", "name": "nodewright", "namespace": "default"}))
        );
        assert!(me.is_subject(&json!({"kind": "Group", "name": "system:serviceaccounts"})));
        assert!(
            me.is_subject(&json!({"kind": "User", "name": "system:serviceaccount:kube-system:nodewright"}))
        );
        assert!(!me.is_subject(&json!({"kind": "User", "name": "admin"})));
    }

    #[test]
    fn refusals_read_like_kubernetes() {
        let me = Identity::service_account("kube-system", "nodewright");
        let mut a = request("delete", "", "secrets", "", "token");
        a.namespace = "default".into();
        let status = forbidden(&me, &a).to_status();
        assert_eq!(status["code"], 403);
        assert_eq!(status["reason"], "Forbidden");
        assert_eq!(status["details"]["kind"], "secrets");
        assert_eq!(
            status["message"],
            "secrets \"token\" is forbidden: User \"system:serviceaccount:kube-system:nodewright\" \
             cannot delete resource \"secrets\" in API group \"\" in the namespace \"default\""
        );
    }
}
