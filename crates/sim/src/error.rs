//! API errors and their rendering as Kubernetes `Status` objects.
//!
//! Every failure a request can meet is an [`ApiError`]; the HTTP layer turns it into the JSON
//! `Status` an API server sends (`kind: Status`, `status: Failure`, `reason`, `code`, `details`), so
//! kube-rs reports `Error::Api` with the right code and kubectl prints the familiar message.

use serde_json::{Value, json};

/// One invalid field of an `Invalid` (422) error, as `details.causes[]` carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...
    pub reason: String,
    /// What is wrong.
    pub message: String,
    /// The field path, `spec.template.spec.nodeClassRef.group`.
    pub field: String,
}

impl Cause {
    /// A cause with the given reason, message and field.
    pub fn new(reason: &str, message: impl Into<String>, field: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
            field: field.into(),
        }
    }
}

/// Which object an error is about: the resource (`pods`, `nodepools.karpenter.sh`), its group and
/// the object's name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// API group, empty for the core group.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// Kind, for `Invalid` messages.
    pub kind: String,
    /// Object name (may be empty for collection requests).
    pub name: String,
}

impl Subject {
    /// `pods` or `nodepools.karpenter.sh`, as messages name a resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// A failed request, with the HTTP code and `Status.reason` each variant maps to.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// 404 NotFound: the object (or namespace, or resource type) does not exist.
    #[error("{} \"{}\" not found", .0.qualified(), .0.name)]
    NotFound(Box<Subject>),
    /// 404 NotFound for a path that names no resource at all.
    #[error("the server could not find the requested resource")]
    NoResource,
    /// 409 AlreadyExists.
    #[error("{} \"{}\" already exists", .0.qualified(), .0.name)]
    AlreadyExists(Box<Subject>),
    /// 409 Conflict: a stale resourceVersion, a failed precondition or an apply conflict.
    #[error("{message}")]
    Conflict {
        /// Whom the conflict is about.
        subject: Box<Subject>,
        /// The full message.
        message: String,
        /// Apply conflicts list each contested field.
        causes: Vec<Cause>,
    },
    /// 422 Invalid, with one cause per invalid field.
    #[error("{} \"{}\" is invalid: {}", .subject.kind, .subject.name, join_causes(.causes))]
    Invalid {
        /// The object.
        subject: Box<Subject>,
        /// Every invalid field.
        causes: Vec<Cause>,
    },
    /// 400 BadRequest: malformed body, unknown query value, mismatched kind.
    #[error("{0}")]
    BadRequest(String),
    /// 405 MethodNotAllowed.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 410 Gone: the requested resourceVersion has been compacted out of the watch window.
    #[error("too old resource version: {requested} ({oldest})")]
    Gone {
        /// The version the client asked for.
        requested: u64,
        /// The oldest version still available.
        oldest: u64,
    },
    /// 410 Gone for an expired continue token.
    #[error("the provided continue parameter is too old to display a consistent list result")]
    ContinueExpired,
    /// 415 UnsupportedMediaType.
    #[error("the body of the request was in an unknown format - accepted media types include: {0}")]
    UnsupportedMediaType(String),
    /// 429 TooManyRequests (eviction refused by a PodDisruptionBudget, or an injected fault).
    #[error("{message}")]
    TooManyRequests {
        /// The message.
        message: String,
        /// `details.causes` (eviction names the budget).
        causes: Vec<Cause>,
    },
    /// 403 Forbidden (for example creating in a terminating namespace).
    #[error("{0}")]
    Forbidden(String),
    /// 403 Forbidden by RBAC, naming the object refused.
    #[error("{message}")]
    ForbiddenFor {
        /// The object (or collection) refused.
        subject: Box<Subject>,
        /// Kubernetes' message: who cannot do what where.
        message: String,
    },
    /// 401 Unauthorized: a bearer token the server does not know.
    #[error("Unauthorized")]
    Unauthorized,
    /// 500 InternalError (only injected faults and broken invariants).
    #[error("Internal error occurred: {0}")]
    Internal(String),
}

fn join_causes(causes: &[Cause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| {
            if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            }
        })
        .collect();
    if parts.len() == 1 {
        parts.concat()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    /// A 404 for an object.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::NotFound(Box::new(Subject {
            group: group.into(),
            resource: resource.into(),
            kind: String::new(),
            name: name.into(),
        }))
    }

    /// A 409 for an optimistic-concurrency failure.
    pub fn conflict(subject: Subject, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{}\": {why}",
            subject.qualified(),
            subject.name
        );
        Self::Conflict {
            subject: Box::new(subject),
            message,
            causes: Vec::new(),
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            Self::NotFound(_) | Self::NoResource => 404,
            Self::AlreadyExists(_) | Self::Conflict { .. } => 409,
            Self::Invalid { .. } => 422,
            Self::BadRequest(_) => 400,
            Self::MethodNotAllowed => 405,
            Self::Gone { .. } | Self::ContinueExpired => 410,
            Self::UnsupportedMediaType(_) => 415,
            Self::TooManyRequests { .. } => 429,
            Self::Forbidden(_) | Self::ForbiddenFor { .. } => 403,
            Self::Unauthorized => 401,
            Self::Internal(_) => 500,
        }
    }

    /// The `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound(_) | Self::NoResource => "NotFound",
            Self::AlreadyExists(_) => "AlreadyExists",
            Self::Conflict { .. } => "Conflict",
            Self::Invalid { .. } => "Invalid",
            Self::BadRequest(_) => "BadRequest",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::Gone { .. } => "Gone",
            Self::ContinueExpired => "Expired",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Self::TooManyRequests { .. } => "TooManyRequests",
            Self::Forbidden(_) | Self::ForbiddenFor { .. } => "Forbidden",
            Self::Unauthorized => "Unauthorized",
            Self::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object sent as the response body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let (subject, causes) = match self {
            Self::NotFound(s) | Self::AlreadyExists(s) | Self::ForbiddenFor { subject: s, .. } => {
                (Some(s), &[][..])
            }
            Self::Conflict { subject, causes, .. } | Self::Invalid { subject, causes } => {
                (Some(subject), causes.as_slice())
            }
            Self::TooManyRequests { causes, .. } => (None, causes.as_slice()),
            _ => (None, &[][..]),
        };
        let mut details = serde_json::Map::new();
        if let Some(s) = subject {
            if !s.name.is_empty() {
                details.insert("name".into(), s.name.clone().into());
            }
            details.insert("group".into(), s.group.clone().into());
            if matches!(self, Self::Invalid { .. }) {
                details.insert("kind".into(), s.kind.clone().into());
            } else {
                details.insert("kind".into(), s.resource.clone().into());
            }
        }
        if !causes.is_empty() {
            let causes: Vec<Value> = causes
                .iter()
                .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
                .collect();
            details.insert("causes".into(), causes.into());
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// Results of API operations.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_status_names_each_field() {
        let err = ApiError::Invalid {
            subject: Box::new(Subject {
                group: "karpenter.sh".into(),
                resource: "nodepools".into(),
                kind: "NodePool".into(),
                name: "default".into(),
            }),
            causes: vec![Cause::new(
                "FieldValueInvalid",
                "Invalid value: 0: should be greater than or equal to 1",
                "spec.weight",
            )],
        };
        let status = err.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(status["details"]["kind"], "NodePool");
        assert_eq!(status["details"]["causes"][0]["field"], "spec.weight");
        assert_eq!(
            status["message"],
            "NodePool \"default\" is invalid: spec.weight: Invalid value: 0: should be greater than or equal to 1"
        );
    }

    #[test]
    fn not_found_names_the_qualified_resource() {
        let err = ApiError::not_found("apps", "deployments", "web");
        assert_eq!(err.code(), 404);
        assert_eq!(err.to_string(), "deployments.apps \"web\" not found");
    }
}
