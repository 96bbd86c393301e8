//! Every failed API call ends here: one error enum, turned into a metav1 `Status` with the code
//! and reason upstream would send (`k8s.io/apimachinery/pkg/api/errors`).

use bytes::Bytes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status, StatusCause, StatusDetails};

use crate::api::resources::ResourceInfo;
use crate::api::validation::FieldError;
use crate::apiserver::storage;

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// 400: the request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 403: refused by policy (e.g. creating in a terminating namespace).
    #[error("{message}")]
    Forbidden {
        /// The full message.
        message: String,
        /// `group/resource` and name of the object, for the Status details.
        details: Option<(ObjectRef, String)>,
    },
    /// 404: the object (or the route) does not exist.
    #[error("{} \"{name}\" not found", .resource.qualified)]
    NotFound {
        /// What kind of object was looked for.
        resource: ObjectRef,
        /// Its name.
        name: String,
    },
    /// 404 for a path that is no resource at all.
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// 405: the resource does not support the verb.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 409: the name is taken.
    #[error("{} \"{name}\" already exists", .resource.qualified)]
    AlreadyExists {
        /// The kind of object.
        resource: ObjectRef,
        /// Its name.
        name: String,
    },
    /// 409: the write was based on a stale resourceVersion, or a precondition failed.
    #[error("Operation cannot be fulfilled on {} \"{name}\": {message}", .resource.qualified)]
    Conflict {
        /// The kind of object.
        resource: ObjectRef,
        /// Its name.
        name: String,
        /// Why.
        message: String,
    },
    /// 410: the requested resourceVersion is no longer available.
    #[error("{0}")]
    Expired(String),
    /// 410: a continue token's revision is compacted. Carries a token that goes on at the newest
    /// revision instead, which upstream's Status holds in `metadata.continue`.
    #[error(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."
    )]
    ContinueExpired(String),
    /// 413: the request body is too large.
    #[error("the request body is too large: limit is {0} bytes")]
    TooLarge(usize),
    /// 415: the body's content type is not one this endpoint reads.
    #[error("the body of the request was in an unknown format - accepted media types include: {0}")]
    UnsupportedMediaType(String),
    /// 422: the object failed validation.
    #[error("{kind} \"{name}\" is invalid: {}", join_causes(.causes))]
    Invalid {
        /// The object's kind.
        kind: String,
        /// The object's group, for the Status details.
        group: String,
        /// Its name.
        name: String,
        /// One entry per invalid field.
        causes: Vec<FieldError>,
    },
    /// 422: a patch that parses but does not apply to the object.
    #[error("{0}")]
    UnprocessablePatch(String),
    /// 500: a failure of ours, never of the input.
    #[error("{0}")]
    Internal(String),
    /// 503: the store cannot serve now.
    #[error("{0}")]
    Unavailable(String),
    /// 504: the store did not answer in time.
    #[error("Timeout: request did not complete within requested timeout - {0}")]
    Timeout(String),
}

/// How errors name an object's resource: `deployments.apps`, plus the group and plural apart.
#[derive(Debug, Clone)]
pub(crate) struct ObjectRef {
    /// `plural` or `plural.group`.
    pub(crate) qualified: String,
    /// The API group.
    pub(crate) group: String,
    /// The plural resource name (upstream puts it in `details.kind`).
    pub(crate) plural: String,
}

impl From<&ResourceInfo> for ObjectRef {
    fn from(info: &ResourceInfo) -> Self {
        Self {
            qualified: info.qualified_name(),
            group: info.group.to_string(),
            plural: info.plural.to_string(),
        }
    }
}

fn join_causes(causes: &[FieldError]) -> String {
    match causes {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
    }
}

impl Error {
    /// The HTTP status code.
    pub(crate) fn code(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Forbidden { .. } => 403,
            Error::NotFound { .. } | Error::NoRoute => 404,
            Error::MethodNotAllowed => 405,
            Error::AlreadyExists { .. } | Error::Conflict { .. } => 409,
            Error::Expired(_) | Error::ContinueExpired(_) => 410,
            Error::TooLarge(_) => 413,
            Error::UnsupportedMediaType(_) => 415,
            Error::Invalid { .. } | Error::UnprocessablePatch(_) => 422,
            Error::Internal(_) => 500,
            Error::Unavailable(_) => 503,
            Error::Timeout(_) => 504,
        }
    }

    /// The Status `reason`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "BadRequest",
            Error::Forbidden { .. } => "Forbidden",
            Error::NotFound { .. } | Error::NoRoute => "NotFound",
            Error::MethodNotAllowed => "MethodNotAllowed",
            Error::AlreadyExists { .. } => "AlreadyExists",
            Error::Conflict { .. } => "Conflict",
            Error::Expired(_) | Error::ContinueExpired(_) => "Expired",
            Error::TooLarge(_) => "RequestEntityTooLarge",
            Error::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Error::Invalid { .. } | Error::UnprocessablePatch(_) => "Invalid",
            Error::Internal(_) => "InternalError",
            Error::Unavailable(_) => "ServiceUnavailable",
            Error::Timeout(_) => "Timeout",
        }
    }

    /// The metav1 `Status` for this error.
    pub(crate) fn to_status(&self) -> Status {
        let details = match self {
            Error::NotFound { resource, name }
            | Error::AlreadyExists { resource, name }
            | Error::Conflict { resource, name, .. }
            | Error::Forbidden {
                details: Some((resource, name)),
                ..
            } => Some(StatusDetails {
                name: Some(name.clone()),
                group: Some(resource.group.clone()).filter(|g| !g.is_empty()),
                kind: Some(resource.plural.clone()),
                ..Default::default()
            }),
            Error::Invalid {
                kind,
                group,
                name,
                causes,
            } => Some(StatusDetails {
                name: Some(name.clone()),
                group: Some(group.clone()).filter(|g| !g.is_empty()),
                kind: Some(kind.clone()),
                causes: Some(
                    causes
                        .iter()
                        .map(|c| StatusCause {
                            reason: Some(c.kind.reason().to_string()),
                            message: Some(c.message()),
                            field: Some(c.field.clone()),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            _ => None,
        };
        Status {
            status: Some("Failure".into()),
            message: Some(self.to_string()),
            reason: Some(self.reason().into()),
            details,
            code: Some(self.code().into()),
            metadata: ListMeta {
                continue_: match self {
                    Error::ContinueExpired(token) => Some(token.clone()),
                    _ => None,
                },
                ..Default::default()
            },
        }
    }

    /// The Status as a JSON body.
    pub(crate) fn to_body(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.to_status()).unwrap_or_default())
    }

    /// Maps a storage failure on an object of `resource` named `name`.
    pub(crate) fn from_storage(err: storage::Error, resource: &ResourceInfo, name: &str) -> Self {
        let resource = ObjectRef::from(resource);
        let name = name.to_string();
        match err {
            storage::Error::NotFound { .. } => Error::NotFound { resource, name },
            storage::Error::AlreadyExists { .. } => Error::AlreadyExists { resource, name },
            storage::Error::Conflict { .. } => Error::Conflict {
                resource,
                name,
                message: OBJECT_MODIFIED.into(),
            },
            storage::Error::Expired { .. } => Error::Expired(err.to_string()),
            storage::Error::Closed | storage::Error::Unavailable(_) => Error::Unavailable(crate::error_chain(&err)),
            storage::Error::Timeout(_) => Error::Timeout(err.to_string()),
            storage::Error::Backend(_) => Error::Internal(format!("storage failed: {}", crate::error_chain(&err))),
        }
    }
}

/// The message of a Conflict caused by a stale resourceVersion, word for word upstream's.
pub(crate) const OBJECT_MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources;

    #[test]
    fn not_found_status_matches_upstream_shape() {
        let info = resources::find("apps", "v1", "deployments").unwrap();
        let err = Error::NotFound {
            resource: info.into(),
            name: "web".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&err.to_body()).unwrap();
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["code"], 404);
        assert_eq!(v["reason"], "NotFound");
        assert_eq!(v["message"], "deployments.apps \"web\" not found");
        assert_eq!(v["details"]["group"], "apps");
        assert_eq!(v["details"]["kind"], "deployments");
    }

    #[test]
    fn invalid_lists_every_cause() {
        let err = Error::Invalid {
            kind: "Pod".into(),
            group: String::new(),
            name: "p".into(),
            causes: vec![
                FieldError::required("spec.containers[0].image"),
                FieldError::required("spec.containers[0].name"),
            ],
        };
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.to_string(),
            "Pod \"p\" is invalid: [spec.containers[0].image: Required value, spec.containers[0].name: Required value]"
        );
        let status = err.to_status();
        assert_eq!(status.details.unwrap().causes.unwrap().len(), 2);
    }
}
