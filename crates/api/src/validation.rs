//! Field-path validation errors in the shape kube-apiserver reports them
//! (`spec.template.spec.requirements[2].values: Invalid value: ...: message`).

use std::fmt;

/// A path to a field, rendered as Kubernetes does: `spec.limits[cpu]`, `spec.budgets[0].nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at a top-level field.
    pub fn root(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// The path of a named child field.
    #[must_use]
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_owned())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// The path of a list element.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// The path of a map entry.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of rule a field broke, as Kubernetes classifies field errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// A required field is missing or empty.
    Required,
    /// The value is malformed or out of range.
    Invalid,
    /// The field may not be set (here, or together with another field).
    Forbidden,
    /// The value is not one of the supported values.
    NotSupported,
    /// A string is longer than allowed.
    TooLong,
    /// A list or map has more entries than allowed.
    TooMany,
    /// The value repeats one already given.
    Duplicate,
}

impl ErrorType {
    fn describe(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid => "Invalid value",
            Self::Forbidden => "Forbidden",
            Self::NotSupported => "Unsupported value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Duplicate => "Duplicate value",
        }
    }
}

/// One broken rule on one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where, e.g. `spec.template.spec.requirements[2].values`.
    pub field: String,
    pub error_type: ErrorType,
    /// The offending value as the user wrote it, when there is one.
    pub value: Option<String>,
    /// The rule broken, in words.
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.error_type.describe())?;
        if let Some(value) = &self.value {
            write!(f, ": {value:?}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// Collects every problem of an object, so a user sees them all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(
        &mut self,
        field: &FieldPath,
        error_type: ErrorType,
        value: Option<&str>,
        detail: impl Into<String>,
    ) {
        self.0.push(FieldError {
            field: field.to_string(),
            error_type,
            value: value.map(str::to_owned),
            detail: detail.into(),
        });
    }

    pub fn required(&mut self, field: &FieldPath, detail: impl Into<String>) {
        self.push(field, ErrorType::Required, None, detail);
    }

    pub fn invalid(&mut self, field: &FieldPath, value: &str, detail: impl Into<String>) {
        self.push(field, ErrorType::Invalid, Some(value), detail);
    }

    pub fn forbidden(&mut self, field: &FieldPath, detail: impl Into<String>) {
        self.push(field, ErrorType::Forbidden, None, detail);
    }

    pub fn not_supported(&mut self, field: &FieldPath, value: &str, supported: &[&str]) {
        let detail = format!(
            "supported values: {}",
            supported
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.push(field, ErrorType::NotSupported, Some(value), detail);
    }

    pub fn too_many(&mut self, field: &FieldPath, actual: usize, max: usize) {
        self.push(
            field,
            ErrorType::TooMany,
            Some(&actual.to_string()),
            format!("must have at most {max} items"),
        );
    }

    pub fn too_long(&mut self, field: &FieldPath, value: &str, max: usize) {
        self.push(
            field,
            ErrorType::TooLong,
            Some(value),
            format!("may not be more than {max} bytes"),
        );
    }

    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }

    /// `Ok` when nothing was found, else the problems attributed to the named object.
    pub fn into_result(self, kind: &str, name: &str) -> Result<(), Invalid> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Invalid {
                kind: kind.to_owned(),
                name: name.to_owned(),
                errors: self.0,
            })
        }
    }
}

impl<'a> IntoIterator for &'a Problems {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Problems {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// An object that failed validation, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    pub kind: String,
    pub name: String,
    pub errors: Vec<FieldError>,
}

impl Invalid {
    /// Whether some error is on exactly this field path.
    pub fn has_field(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} is invalid: ", self.kind, self.name)?;
        if let [only] = self.errors.as_slice() {
            return write!(f, "{only}");
        }
        write!(f, "[")?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{e}")?;
        }
        write!(f, "]")
    }
}

/// Whether `text` matches one of the crate's CRD `pattern` constants, so `validate()` and the CRD
/// check the same regular expression. Each pattern is compiled once.
pub(crate) fn matches_pattern(pattern: &'static str, text: &str) -> bool {
    use std::{
        collections::HashMap,
        sync::{LazyLock, Mutex, PoisonError},
    };
    static COMPILED: LazyLock<Mutex<HashMap<&'static str, regex::Regex>>> = LazyLock::new(Mutex::default);
    let mut compiled = COMPILED.lock().unwrap_or_else(PoisonError::into_inner);
    let regex = compiled
        .entry(pattern)
        .or_insert_with(|| syntax::compile(pattern));
    regex.is_match(text)
}

/// Checks shared by every kind: Kubernetes name, label and taint syntax.
pub mod syntax {
    use std::sync::LazyLock;

    use regex::Regex;

    // The patterns below are literals that compile; the tests exercise each one.
    #[allow(clippy::expect_used)]
    pub(super) fn compile(pattern: &str) -> Regex {
        Regex::new(pattern).expect("static pattern compiles")
    }

    static QUALIFIED_NAME_PART: LazyLock<Regex> =
        LazyLock::new(|| compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"));
    static DNS1123_SUBDOMAIN: LazyLock<Regex> =
        LazyLock::new(|| compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"));
    static LABEL_VALUE: LazyLock<Regex> =
        LazyLock::new(|| compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"));

    /// Problems with a qualified name (`prefix/name`) such as a label or taint key, or `None`.
    pub fn qualified_name(value: &str) -> Option<String> {
        let (prefix, name) = match value.split_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, value),
        };
        if name.is_empty() {
            return Some("name part must be non-empty".into());
        }
        if name.len() > 63 {
            return Some("name part must be no more than 63 characters".into());
        }
        if !QUALIFIED_NAME_PART.is_match(name) {
            return Some(
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into(),
            );
        }
        if let Some(prefix) = prefix {
            if prefix.is_empty() {
                return Some("prefix part must be non-empty".into());
            }
            if prefix.len() > 253 || !DNS1123_SUBDOMAIN.is_match(prefix) {
                return Some("prefix part must be a lowercase RFC 1123 subdomain".into());
            }
        }
        None
    }

    /// Problems with a label value, or `None`.
    pub fn label_value(value: &str) -> Option<String> {
        if value.len() > 63 {
            return Some("must be no more than 63 characters".into());
        }
        if !LABEL_VALUE.is_match(value) {
            return Some(
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into(),
            );
        }
        None
    }

    /// Whether a value is an RFC 1123 subdomain (object names, API groups).
    pub fn is_dns1123_subdomain(value: &str) -> bool {
        !value.is_empty() && value.len() <= 253 && DNS1123_SUBDOMAIN.is_match(value)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn qualified_names() {
            assert_eq!(qualified_name("team"), None);
            assert_eq!(qualified_name("example.com/team"), None);
            assert_eq!(qualified_name("node.kubernetes.io/instance-type"), None);
            assert!(qualified_name("").is_some());
            assert!(qualified_name("/x").is_some());
            assert!(qualified_name("Example.com/x").is_some());
            assert!(qualified_name("a/b/c").is_some());
            assert!(qualified_name("-bad").is_some());
            assert!(qualified_name(&"x".repeat(64)).is_some());
        }

        #[test]
        fn label_values() {
            assert_eq!(label_value(""), None);
            assert_eq!(label_value("m5.large"), None);
            assert!(label_value("has space").is_some());
            assert!(label_value(&"v".repeat(64)).is_some());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_kubernetes() {
        let path = FieldPath::root("spec")
            .child("template")
            .child("spec")
            .child("requirements")
            .index(2)
            .child("values");
        assert_eq!(path.as_str(), "spec.template.spec.requirements[2].values");
        assert_eq!(
            FieldPath::root("spec").child("limits").key("cpu").as_str(),
            "spec.limits[cpu]"
        );
    }

    #[test]
    fn invalid_names_the_object_and_every_field() {
        let mut problems = Problems::new();
        problems.invalid(
            &FieldPath::root("spec").child("weight"),
            "0",
            "must be between 1 and 100",
        );
        problems.required(&FieldPath::root("spec").child("template"), "");
        let err = problems.into_result("NodePool", "default").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("NodePool \"default\" is invalid: ["), "{text}");
        assert!(
            text.contains("spec.weight: Invalid value: \"0\": must be between 1 and 100"),
            "{text}"
        );
        assert!(text.contains("spec.template: Required value"), "{text}");
        assert!(err.has_field("spec.weight"));
    }
}
