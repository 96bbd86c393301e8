//! Discovery: what `/api`, `/apis` and each group-version say is served, in the legacy form and
//! in the aggregated form (apidiscovery.k8s.io/v2) that kubectl asks for first. Mirrors
//! `k8s.io/apiserver/pkg/endpoints/discovery`. Everything is built from the resource table once.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::KUBERNETES_VERSION;
use crate::api::resources::{self, ResourceInfo, group_version};

/// The media type of an aggregated discovery answer.
pub(crate) const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Every discovery document, rendered at startup.
pub(crate) struct Discovery {
    legacy_api: Bytes,
    legacy_apis: Bytes,
    aggregated_api: Bytes,
    aggregated_apis: Bytes,
    /// (`api/v1` or `apis/GROUP/VERSION`, APIResourceList)
    resource_lists: Vec<(String, Bytes)>,
    /// (`GROUP`, APIGroup)
    groups: Vec<(String, Bytes)>,
    version: Bytes,
}

fn bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

impl Discovery {
    /// Renders every document; `address` is what `serverAddressByClientCIDRs` reports.
    pub(crate) fn new(address: &str) -> Self {
        let groups: Vec<&str> = resources::groups();
        let named: Vec<&str> = groups.iter().copied().filter(|g| !g.is_empty()).collect();
        let group_doc = |g: &str| {
            let gv = json!({"groupVersion": group_version(g, "v1"), "version": "v1"});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        };
        let legacy_api = json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]});
        let legacy_apis = json!({"kind": "APIGroupList", "apiVersion": "v1",
            "groups": named.iter().map(|g| group_doc(g)).collect::<Vec<_>>()});
        let aggregated = |gs: &[&str]| {
            json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
                "items": gs.iter().map(|g| aggregated_group(g)).collect::<Vec<_>>()})
        };
        let resource_lists = groups
            .iter()
            .map(|g| {
                let path = if g.is_empty() {
                    "api/v1".to_string()
                } else {
                    format!("apis/{g}/v1")
                };
                (path, bytes(&resource_list(g, "v1")))
            })
            .collect();
        let version = json!({
            "major": "1", "minor": "37", "gitVersion": format!("{KUBERNETES_VERSION}+hyperkube.{}", env!("CARGO_PKG_VERSION")),
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
            "goVersion": "", "compiler": "rustc", "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
        });
        Self {
            legacy_api: bytes(&legacy_api),
            legacy_apis: bytes(&legacy_apis),
            aggregated_api: bytes(&aggregated(&[""])),
            aggregated_apis: bytes(&aggregated(&named)),
            resource_lists,
            groups: named
                .iter()
                .map(|g| {
                    (
                        g.to_string(),
                        bytes(&json!({"kind": "APIGroup", "apiVersion": "v1", "name": g,
                "versions": group_doc(g)["versions"], "preferredVersion": group_doc(g)["preferredVersion"]})),
                    )
                })
                .collect(),
            version: bytes(&version),
        }
    }

    /// `/api`, aggregated when the client asks for it.
    pub(crate) fn api(&self, aggregated: bool) -> Bytes {
        if aggregated {
            self.aggregated_api.clone()
        } else {
            self.legacy_api.clone()
        }
    }

    /// `/apis`, aggregated when the client asks for it.
    pub(crate) fn apis(&self, aggregated: bool) -> Bytes {
        if aggregated {
            self.aggregated_apis.clone()
        } else {
            self.legacy_apis.clone()
        }
    }

    /// `/api/v1` or `/apis/GROUP/VERSION`, given without the leading slash.
    pub(crate) fn resource_list(&self, path: &str) -> Option<Bytes> {
        self.resource_lists
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
    }

    /// `/apis/GROUP`.
    pub(crate) fn group(&self, group: &str) -> Option<Bytes> {
        self.groups.iter().find(|(g, _)| g == group).map(|(_, b)| b.clone())
    }

    /// `/version`.
    pub(crate) fn version(&self) -> Bytes {
        self.version.clone()
    }
}

/// Go's name for the architecture, as `/version` reports the platform.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Whether an Accept header asks for aggregated discovery (v2 or v2beta1).
pub(crate) fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"as=APIGroupDiscoveryList")
            && params.contains(&"v=v2")
    })
}

fn scope(r: &ResourceInfo) -> &'static str {
    if r.namespaced { "Namespaced" } else { "Cluster" }
}

fn aggregated_group(group: &str) -> Value {
    let resources: Vec<Value> = resources::in_group_version(group, "v1")
        .map(|r| {
            let mut doc = json!({
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": scope(r),
                "singularResource": r.singular,
                "verbs": r.verbs,
            });
            if !r.short_names.is_empty() {
                doc["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                doc["categories"] = json!(r.categories);
            }
            if !r.subresources.is_empty() {
                doc["subresources"] = r
                    .subresources
                    .iter()
                    .map(|s| {
                        json!({"subresource": s.name, "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                            "verbs": s.verbs})
                    })
                    .collect();
            }
            doc
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = group.into();
    }
    json!({"metadata": metadata, "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}]})
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut entries = Vec::new();
    for r in resources::in_group_version(group, version) {
        let mut doc = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": r.verbs});
        if !r.short_names.is_empty() {
            doc["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            doc["categories"] = json!(r.categories);
        }
        entries.push(doc);
        for s in r.subresources {
            let mut sub = json!({"name": format!("{}/{}", r.plural, s.name), "singularName": "",
                "namespaced": r.namespaced, "kind": s.kind, "verbs": s.verbs});
            if s.group != group || s.version != version {
                sub["group"] = s.group.into();
                sub["version"] = s.version.into();
            }
            entries.push(sub);
        }
    }
    let mut list =
        json!({"kind": "APIResourceList", "groupVersion": group_version(group, version), "resources": entries});
    if !group.is_empty() {
        list["apiVersion"] = "v1".into();
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: Bytes) -> Value {
        serde_json::from_slice(&b).unwrap()
    }

    #[test]
    fn aggregated_discovery_lists_core_resources_with_subresources() {
        let d = Discovery::new("127.0.0.1:8080");
        let api = parse(d.api(true));
        let resources = api["items"][0]["versions"][0]["resources"].as_array().unwrap();
        let pods = resources.iter().find(|r| r["resource"] == "pods").unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert!(
            pods["subresources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["subresource"] == "binding")
        );
        let apis = parse(d.apis(true));
        assert!(
            apis["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["metadata"]["name"] == "apps")
        );
    }

    #[test]
    fn legacy_lists_name_subresources_and_foreign_kinds() {
        let d = Discovery::new("127.0.0.1:8080");
        let apps = parse(d.resource_list("apis/apps/v1").unwrap());
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        let core = parse(d.resource_list("api/v1").unwrap());
        assert!(core.get("apiVersion").is_none());
        assert!(
            parse(d.apis(false))["groups"]
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["name"] != "")
        );
    }

    #[test]
    fn accept_negotiation_spots_the_aggregated_form() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json, */*"));
    }
}
