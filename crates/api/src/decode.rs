//! Reading manifests the way a strict API server does: multi-document YAML or JSON, each document
//! decoded into its kind's type, with every unknown field reported by path and type errors named by
//! field, so nothing a user wrote is silently dropped.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    CapacityBuffer, EC2NodeClass, NodeClaim, NodePool,
    nodeoverlay::NodeOverlay,
    structural,
    validation::{ErrorType, FieldError, FieldPath, Invalid, Problems},
};

/// A document that could not be read as its kind, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", location(source_name, *document), problem)]
pub struct DecodeError {
    /// The file (or other source) the text came from.
    pub source_name: String,
    /// The document's position in a multi-document stream, when the text parsed.
    pub document: Option<usize>,
    pub problem: Box<Problem>,
}

fn location(source_name: &str, document: Option<usize>) -> String {
    match document {
        Some(index) => format!("{source_name}: document {index}: "),
        None => format!("{source_name}: "),
    }
}

/// What is wrong with a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The text is not YAML or JSON.
    #[error("not valid YAML: {0}")]
    Syntax(String),
    /// A document lacks `apiVersion` or `kind`, or is not an object.
    #[error("{0}")]
    NotAnObject(String),
    /// A Nodewright kind at an API version it does not serve.
    #[error("{kind} {name:?}: apiVersion {api_version:?} is not served; use {expected}")]
    UnsupportedVersion {
        kind: String,
        name: String,
        api_version: String,
        expected: String,
    },
    /// Fields that do not decode: unknown, missing, or of the wrong type.
    #[error("{0}")]
    Fields(Invalid),
}

impl DecodeError {
    fn new(source_name: &str, document: Option<usize>, problem: Problem) -> Self {
        Self {
            source_name: source_name.to_owned(),
            document,
            problem: Box::new(problem),
        }
    }

    /// The field errors, when the problem is with fields.
    pub fn invalid(&self) -> Option<&Invalid> {
        match self.problem.as_ref() {
            Problem::Fields(invalid) => Some(invalid),
            _ => None,
        }
    }
}

/// One object read from a manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    NodePool(Box<NodePool>),
    NodeClaim(Box<NodeClaim>),
    EC2NodeClass(Box<EC2NodeClass>),
    NodeOverlay(Box<NodeOverlay>),
    CapacityBuffer(Box<CapacityBuffer>),
    /// Any other kind (Deployments, Pods, ...), kept as JSON for the caller.
    Other {
        api_version: String,
        kind: String,
        value: Value,
    },
}

impl Object {
    /// Kind and name, e.g. `NodePool/default`.
    pub fn describe(&self) -> String {
        match self {
            Self::NodePool(o) => format!("NodePool/{}", o.metadata.name.as_deref().unwrap_or("")),
            Self::NodeClaim(o) => format!("NodeClaim/{}", o.metadata.name.as_deref().unwrap_or("")),
            Self::EC2NodeClass(o) => format!("EC2NodeClass/{}", o.metadata.name.as_deref().unwrap_or("")),
            Self::NodeOverlay(o) => format!("NodeOverlay/{}", o.metadata.name.as_deref().unwrap_or("")),
            Self::CapacityBuffer(o) => format!("CapacityBuffer/{}", o.metadata.name.as_deref().unwrap_or("")),
            Self::Other { kind, value, .. } => {
                format!(
                    "{kind}/{}",
                    value
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                )
            }
        }
    }

    /// Runs the kind's `validate()`; other kinds are not checked here.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            Self::NodePool(o) => o.validate(),
            Self::NodeClaim(o) => o.validate(),
            Self::EC2NodeClass(o) => o.validate(),
            Self::NodeOverlay(o) => o.validate(),
            Self::CapacityBuffer(o) => o.validate(),
            Self::Other { .. } => Ok(()),
        }
    }

    /// The object as JSON, as it would be stored (defaults applied).
    pub fn to_value(&self) -> Value {
        let value = match self {
            Self::NodePool(o) => serde_json::to_value(o),
            Self::NodeClaim(o) => serde_json::to_value(o),
            Self::EC2NodeClass(o) => serde_json::to_value(o),
            Self::NodeOverlay(o) => serde_json::to_value(o),
            Self::CapacityBuffer(o) => serde_json::to_value(o),
            Self::Other { value, .. } => Ok(value.clone()),
        };
        // Our types serialize to JSON without fallible parts (string map keys, no floats NaN).
        value.unwrap_or(Value::Null)
    }
}

/// Parses YAML (or JSON, which is YAML) with one or more `---`-separated documents into values.
/// Empty documents are skipped.
pub fn parse_yaml_documents(text: &str, source_name: &str) -> Result<Vec<Value>, DecodeError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| DecodeError::new(source_name, None, Problem::Syntax(e.to_string())))?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// Reads every document of a manifest into typed objects.
pub fn parse_objects(text: &str, source_name: &str) -> Result<Vec<Object>, DecodeError> {
    parse_yaml_documents(text, source_name)?
        .into_iter()
        .enumerate()
        .map(|(index, value)| decode_object(value, source_name, index))
        .collect()
}

/// Decodes one document by its `apiVersion` and `kind`.
pub fn decode_object(value: Value, source_name: &str, index: usize) -> Result<Object, DecodeError> {
    let not_object =
        |message: &str| DecodeError::new(source_name, Some(index), Problem::NotAnObject(message.to_owned()));
    if !value.is_object() {
        return Err(not_object(
            "expected a Kubernetes object (a mapping with apiVersion and kind)",
        ));
    }
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| not_object("apiVersion is required"))?
        .to_owned();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| not_object("kind is required"))?
        .to_owned();
    let served = match kind.as_str() {
        "NodePool" | "NodeClaim" => Some("karpenter.sh/v1"),
        "EC2NodeClass" => Some("karpenter.k8s.aws/v1"),
        "NodeOverlay" => Some("karpenter.sh/v1alpha1"),
        "CapacityBuffer" => Some("autoscaling.x-k8s.io/v1beta1"),
        _ => None,
    };
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    let ours = served.is_some_and(|expected| expected.split_once('/').is_some_and(|(g, _)| g == group));
    match served {
        Some(expected) if ours && api_version != expected => {
            let name = value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let problem = Problem::UnsupportedVersion {
                kind,
                name,
                api_version,
                expected: expected.to_owned(),
            };
            return Err(DecodeError::new(source_name, Some(index), problem));
        }
        Some(_) if ours => {}
        _ => {
            return Ok(Object::Other {
                api_version,
                kind,
                value,
            });
        }
    }
    let fields = |invalid| DecodeError::new(source_name, Some(index), Problem::Fields(invalid));
    Ok(match kind.as_str() {
        "NodePool" => Object::NodePool(Box::new(decode_strict(value, "NodePool").map_err(fields)?)),
        "NodeClaim" => Object::NodeClaim(Box::new(decode_strict(value, "NodeClaim").map_err(fields)?)),
        "EC2NodeClass" => {
            Object::EC2NodeClass(Box::new(decode_strict(value, "EC2NodeClass").map_err(fields)?))
        }
        "NodeOverlay" => Object::NodeOverlay(Box::new(decode_strict(value, "NodeOverlay").map_err(fields)?)),
        _ => Object::CapacityBuffer(Box::new(decode_strict(value, "CapacityBuffer").map_err(fields)?)),
    })
}

/// Decodes `value` into `T`, failing on unknown fields, missing required fields, wrong JSON types
/// and values outside an enum, all reported at once with their paths (like
/// `kubectl apply --validate=strict`). `kind` names the object in errors and selects the CRD schema
/// for the structural check.
pub fn decode_strict<T: DeserializeOwned>(mut value: Value, kind: &str) -> Result<T, Invalid> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    drop_nulls(&mut value);
    let mut problems = Problems::new();
    if let Some(schema) = structural::schema_of(kind) {
        structural::check(schema, &value, &FieldPath::default(), &mut problems);
    }
    let mut errors: Vec<FieldError> = problems.into_iter().collect();
    let mut unknown = Vec::new();
    let result: Result<T, _> = {
        // The derived root types read apiVersion and kind through their own TypeMeta handling, so
        // they surface as ignored; decode_object has already checked them.
        let mut record = |path: serde_ignored::Path<'_>| {
            let field = render_path(&path);
            if field != "apiVersion" && field != "kind" {
                unknown.push(field);
            }
        };
        let ignored = serde_ignored::Deserializer::new(value, &mut record);
        serde_path_to_error::deserialize(ignored)
    };
    errors.extend(unknown.into_iter().map(|field| FieldError {
        field,
        error_type: ErrorType::Invalid,
        value: None,
        detail: "unknown field".into(),
    }));
    match result {
        Ok(object) if errors.is_empty() => return Ok(object),
        Ok(_) => {}
        // The structural check already explains most type errors; add the decoder's only if new.
        Err(e) => {
            let error = type_error(&e);
            if !errors.iter().any(|known| known.field == error.field) {
                errors.push(error);
            }
        }
    }
    Err(Invalid {
        kind: kind.to_owned(),
        name,
        errors,
    })
}

/// Removes `null` values from objects: the API server treats a null field as unset.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn type_error(error: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = error.path().to_string();
    let message = error.inner().to_string();
    // "missing field `x`" is reported on the parent; name the field itself.
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        let field = if path == "." || path.is_empty() {
            missing.to_owned()
        } else {
            format!("{path}.{missing}")
        };
        return FieldError {
            field,
            error_type: ErrorType::Required,
            value: None,
            detail: String::new(),
        };
    }
    let field = if path == "." { String::new() } else { path };
    FieldError {
        field,
        error_type: ErrorType::Invalid,
        value: None,
        detail: message,
    }
}

fn render_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", render_path(parent)),
        Path::Map { parent, key } => {
            let parent = render_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            render_path(parent)
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}
