//! Field-level validation errors and the name rules every object shares.
//!
//! Mirrors upstream's `k8s.io/apimachinery/pkg/util/validation` (the name rules) and
//! `.../validation/field` (the error list that becomes a 422 Status with causes).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// What is wrong with one field; names match upstream's `field.ErrorType` reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A required field is empty.
    Required,
    /// The value is malformed or out of range.
    Invalid,
    /// The value is not one of the allowed values.
    NotSupported,
    /// The value repeats one that must be unique.
    Duplicate,
    /// The field may not be set (or changed) here.
    Forbidden,
}

impl ErrorKind {
    /// The `reason` of a Status cause, e.g. `FieldValueRequired`.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::Forbidden => "FieldValueForbidden",
        }
    }
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// The field's path, e.g. `spec.containers[0].image`.
    pub field: String,
    /// The offending value, when there is one to show.
    pub value: Option<String>,
    /// Why it is wrong.
    pub detail: String,
}

impl FieldError {
    /// `field: Required value`.
    pub fn required(field: impl Into<String>) -> Self {
        Self::new(ErrorKind::Required, field, None, "")
    }

    /// `field: Invalid value: "value": detail`.
    pub fn invalid(field: impl Into<String>, value: impl fmt::Display, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, field, Some(value.to_string()), detail)
    }

    /// `field: Unsupported value: "value": supported values: "a", "b"`.
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(
            ErrorKind::NotSupported,
            field,
            Some(value.to_string()),
            format!("supported values: {list}"),
        )
    }

    /// `field: Duplicate value: "value"`.
    pub fn duplicate(field: impl Into<String>, value: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Duplicate, field, Some(value.to_string()), "")
    }

    /// `field: Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, field, None, detail)
    }

    /// `field: Invalid value: ...: field is immutable`.
    pub fn immutable(field: impl Into<String>, value: impl fmt::Display) -> Self {
        Self::invalid(field, value, "field is immutable")
    }

    fn new(kind: ErrorKind, field: impl Into<String>, value: Option<String>, detail: impl Into<String>) -> Self {
        Self {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    /// The message without the field path, as a Status cause carries it.
    pub fn message(&self) -> String {
        let head = match self.kind {
            ErrorKind::Required => "Required value".to_string(),
            ErrorKind::Invalid => format!("Invalid value: {:?}", self.value.as_deref().unwrap_or_default()),
            ErrorKind::NotSupported => format!("Unsupported value: {:?}", self.value.as_deref().unwrap_or_default()),
            ErrorKind::Duplicate => format!("Duplicate value: {:?}", self.value.as_deref().unwrap_or_default()),
            ErrorKind::Forbidden => "Forbidden".to_string(),
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// Dot-separated DNS-1123 labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A DNS-1123 label that starts with a letter (Service names).
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Which rule an object's name must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Most objects: a DNS-1123 subdomain.
    Subdomain,
    /// Namespaces: a DNS-1123 label.
    Label,
    /// Services: a DNS-1035 label.
    Dns1035,
    /// Any non-empty name without `/` or `%` (events, for example, are not restricted further).
    PathSegment,
}

impl NameRule {
    /// The failure detail for `name`, or `None` when it is valid.
    pub fn check(self, name: &str) -> Option<&'static str> {
        let ok = match self {
            NameRule::Subdomain => is_dns1123_subdomain(name),
            NameRule::Label => is_dns1123_label(name),
            NameRule::Dns1035 => is_dns1035_label(name),
            NameRule::PathSegment => !name.contains('/') && !name.contains('%') && name != "." && name != "..",
        };
        match (ok, self) {
            (true, _) => None,
            (false, NameRule::Subdomain) => Some(DNS1123_SUBDOMAIN_MSG),
            (false, NameRule::Label) => Some(DNS1123_LABEL_MSG),
            (false, NameRule::Dns1035) => Some(DNS1035_LABEL_MSG),
            (false, NameRule::PathSegment) => Some("may not contain '/' or '%' and may not be '.' or '..'"),
        }
    }
}

/// Validates the metadata every object has: name, namespace, labels and annotations.
pub fn validate_object_meta(meta: &ObjectMeta, namespaced: bool, rule: NameRule) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match meta.name.as_deref() {
        None | Some("") => {
            if meta.generate_name.as_deref().unwrap_or_default().is_empty() {
                errs.push(FieldError::required("metadata.name").with_detail("name or generateName is required"));
            }
        }
        Some(name) => {
            if let Some(detail) = rule.check(name) {
                errs.push(FieldError::invalid("metadata.name", name, detail));
            }
        }
    }
    match (namespaced, meta.namespace.as_deref()) {
        (true, None | Some("")) => errs.push(FieldError::required("metadata.namespace")),
        (false, Some(ns)) if !ns.is_empty() => {
            errs.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"))
        }
        _ => {}
    }
    errs.extend(validate_labels(meta.labels.as_ref(), "metadata.labels"));
    if let Some(annotations) = &meta.annotations {
        let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > 256 * 1024 {
            errs.push(FieldError::invalid(
                "metadata.annotations",
                "",
                "must have at most 262144 bytes",
            ));
        }
        for key in annotations.keys() {
            if !is_qualified_name(key) {
                errs.push(FieldError::invalid("metadata.annotations", key, QUALIFIED_NAME_MSG));
            }
        }
    }
    errs
}

impl FieldError {
    fn with_detail(mut self, detail: &str) -> Self {
        self.detail = detail.to_string();
        self
    }
}

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// `[prefix/]name` with a DNS-1123 subdomain prefix and a name of at most 63 characters.
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    prefix.is_none_or(is_dns1123_subdomain) && name.len() <= 63 && crate::api::selector::is_qualified_name_part(name)
}

/// Validates a label map: qualified-name keys, values of at most 63 name characters.
pub fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        if !is_qualified_name(k) {
            errs.push(FieldError::invalid(path, k, QUALIFIED_NAME_MSG));
        }
        let valid = v.is_empty() || (v.len() <= 63 && crate::api::selector::is_qualified_name_part(v));
        if !valid {
            errs.push(FieldError::invalid(
                path,
                v,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_follow_upstream_rules() {
        assert!(is_dns1123_subdomain("web.example-1"));
        assert!(!is_dns1123_subdomain("Bad_Name"));
        assert!(!is_dns1123_subdomain("-web"));
        assert!(is_dns1123_label("kube-system"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1035_label("web"));
        assert!(!is_dns1035_label("1web"));
    }

    #[test]
    fn object_meta_reports_each_bad_field() {
        let meta = ObjectMeta {
            name: Some("Bad_Name".into()),
            labels: Some([("bad key".to_string(), "v".to_string())].into()),
            ..Default::default()
        };
        let errs = validate_object_meta(&meta, true, NameRule::Subdomain);
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "metadata.namespace", "metadata.labels"]);
        assert!(
            errs[0]
                .to_string()
                .starts_with("metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123")
        );
    }

    #[test]
    fn generate_name_stands_in_for_name() {
        let meta = ObjectMeta {
            generate_name: Some("web-".into()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        assert!(validate_object_meta(&meta, true, NameRule::Subdomain).is_empty());
    }
}
