//! The table of served resources: one row per resource, read by routing, discovery and the
//! OpenAPI documents, so the three can never disagree.
//!
//! Mirrors what upstream spreads over each group's `install.go`, REST storage and discovery data.

/// Every verb a collection-and-object resource supports.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// The verbs of a `status` subresource.
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// A subresource served under `.../NAME/SUBRESOURCE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    /// Its path segment, e.g. `status`.
    pub name: &'static str,
    /// The group of the kind it returns (`autoscaling` for `scale`).
    pub group: &'static str,
    /// The version of the kind it returns.
    pub version: &'static str,
    /// The kind it returns.
    pub kind: &'static str,
    /// The verbs it supports.
    pub verbs: &'static [&'static str],
}

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// The kind of its objects.
    pub kind: &'static str,
    /// The lower-case plural used in URLs.
    pub plural: &'static str,
    /// The lower-case singular name.
    pub singular: &'static str,
    /// Short names kubectl accepts (`po`, `svc`).
    pub short_names: &'static [&'static str],
    /// Categories such as `all`.
    pub categories: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Verbs on the resource itself.
    pub verbs: &'static [&'static str],
    /// Its subresources.
    pub subresources: &'static [Subresource],
}

impl ResourceInfo {
    /// `v1` for the core group, `GROUP/VERSION` otherwise, as in `apiVersion`.
    pub fn api_version(&self) -> String {
        group_version(self.group, self.version)
    }

    /// The subresource named `name`, if served.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether the resource supports `verb` (`list`, `watch`, ...).
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// The `group/resource` form used in errors (`deployments.apps`, or `pods` in core).
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// `v1` for the core group, `GROUP/VERSION` otherwise.
pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

const fn status(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: STATUS_VERBS,
    }
}

const SCALE: Subresource = Subresource {
    name: "scale",
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    verbs: STATUS_VERBS,
};

const fn core(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    subresources: &'static [Subresource],
) -> ResourceInfo {
    ResourceInfo {
        group: "",
        version: "v1",
        kind,
        plural,
        singular,
        short_names,
        categories: &[],
        namespaced,
        verbs: ALL_VERBS,
        subresources,
    }
}

const fn grouped(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    subresources: &'static [Subresource],
) -> ResourceInfo {
    ResourceInfo {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        short_names,
        categories: &["all"],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources,
    }
}

/// Every resource the apiserver serves, in discovery order.
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        verbs: &["create", "delete", "get", "list", "patch", "update", "watch"],
        ..core(
            "Namespace",
            "namespaces",
            "namespace",
            &["ns"],
            false,
            &[
                status("", "v1", "Namespace"),
                // The namespace controller's way to take `kubernetes` out of `spec.finalizers`.
                Subresource {
                    name: "finalize",
                    group: "",
                    version: "v1",
                    kind: "Namespace",
                    verbs: &["update"],
                },
            ],
        )
    },
    ResourceInfo {
        categories: &["all"],
        ..core(
            "Pod",
            "pods",
            "pod",
            &["po"],
            true,
            &[
                status("", "v1", "Pod"),
                Subresource {
                    name: "binding",
                    group: "",
                    version: "v1",
                    kind: "Binding",
                    verbs: &["create"],
                },
                Subresource {
                    name: "log",
                    group: "",
                    version: "v1",
                    kind: "Pod",
                    verbs: &["get"],
                },
            ],
        )
    },
    core("Node", "nodes", "node", &["no"], false, &[status("", "v1", "Node")]),
    ResourceInfo {
        categories: &["all"],
        ..core(
            "Service",
            "services",
            "service",
            &["svc"],
            true,
            &[status("", "v1", "Service")],
        )
    },
    core("Endpoints", "endpoints", "endpoints", &["ep"], true, &[]),
    core("ConfigMap", "configmaps", "configmap", &["cm"], true, &[]),
    core("Secret", "secrets", "secret", &[], true, &[]),
    core(
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        &["sa"],
        true,
        &[],
    ),
    core("Event", "events", "event", &["ev"], true, &[]),
    ResourceInfo {
        categories: &["all"],
        ..core(
            "ReplicationController",
            "replicationcontrollers",
            "replicationcontroller",
            &["rc"],
            true,
            &[status("", "v1", "ReplicationController"), SCALE],
        )
    },
    grouped(
        "apps",
        "Deployment",
        "deployments",
        "deployment",
        &["deploy"],
        &[status("apps", "v1", "Deployment"), SCALE],
    ),
    grouped(
        "apps",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        &["rs"],
        &[status("apps", "v1", "ReplicaSet"), SCALE],
    ),
    grouped(
        "apps",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        &["ds"],
        &[status("apps", "v1", "DaemonSet")],
    ),
    grouped(
        "apps",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        &["sts"],
        &[status("apps", "v1", "StatefulSet"), SCALE],
    ),
    grouped("batch", "Job", "jobs", "job", &[], &[status("batch", "v1", "Job")]),
    ResourceInfo {
        categories: &[],
        ..grouped("coordination.k8s.io", "Lease", "leases", "lease", &[], &[])
    },
    ResourceInfo {
        categories: &[],
        ..grouped(
            "discovery.k8s.io",
            "EndpointSlice",
            "endpointslices",
            "endpointslice",
            &[],
            &[],
        )
    },
];

/// The API groups served, in discovery order, with their one version. The core group is `""`.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// The resource served at `/apis/GROUP/VERSION/PLURAL` (or `/api/v1/PLURAL` for `group == ""`).
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resources of one group and version.
pub fn in_group_version<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_found_by_its_url_parts() {
        for r in RESOURCES {
            assert_eq!(find(r.group, r.version, r.plural), Some(r));
        }
        assert_eq!(find("apps", "v1", "pods"), None);
    }

    #[test]
    fn groups_start_with_core() {
        assert_eq!(groups()[0], "");
        assert!(groups().contains(&"apps"));
    }
}
