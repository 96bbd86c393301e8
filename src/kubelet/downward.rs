//! The downward API: a pod's own fields and its containers' resources, handed to the pod as
//! environment variables and volume files (upstream's `pkg/fieldpath` and
//! `ExtractResourceValueByContainerName`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ResourceFieldSelector};

use crate::api::quantity;

/// A pod field as `fieldRef.fieldPath` names it; `None` for paths the downward API lacks.
/// `metadata.labels` and `metadata.annotations` as a whole are `key="value"` lines (volumes only).
pub(crate) fn field(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let one = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let lines = |map: &Option<BTreeMap<String, String>>| {
        map.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(lines(&meta.labels)),
        "metadata.annotations" => Some(lines(&meta.annotations)),
        "spec.nodeName" => Some(spec.and_then(|s| s.node_name.clone()).unwrap_or_default()),
        "spec.serviceAccountName" => Some(spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default()),
        "status.podIP" => Some(status.and_then(|s| s.pod_ip.clone()).unwrap_or_default()),
        "status.hostIP" => Some(status.and_then(|s| s.host_ip.clone()).unwrap_or_default()),
        p if p.starts_with("metadata.labels['") => one(&meta.labels, "metadata.labels['"),
        p if p.starts_with("metadata.annotations['") => one(&meta.annotations, "metadata.annotations['"),
        _ => None,
    }
}

/// What a container gets for a resource it sets no limit on: the node's capacity, as upstream
/// uses the node's allocatable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeCapacity {
    pub(crate) cpu_millis: i64,
    pub(crate) memory_bytes: i64,
}

impl NodeCapacity {
    /// This host's CPUs and memory.
    pub(crate) fn of_host() -> Self {
        Self {
            cpu_millis: std::thread::available_parallelism().map_or(1, |n| n.get()) as i64 * 1000,
            memory_bytes: super::node::memory_kib() as i64 * 1024,
        }
    }
}

/// The value of `selector.resource` (`limits.cpu`, `requests.memory`, ...) of container `name`,
/// divided by `selector.divisor` and rounded up, as text.
pub(crate) fn resource(
    pod: &Pod,
    name: &str,
    selector: &ResourceFieldSelector,
    node: NodeCapacity,
) -> Result<String, String> {
    let container = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .find(|c| c.name == name)
        .ok_or_else(|| format!("resourceFieldRef: no container {name:?} in the pod"))?;
    let resources = container.resources.clone().unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let requests = resources.requests.unwrap_or_default();
    let unsupported = || format!("unsupported resource {:?} in resourceFieldRef", selector.resource);
    let (kind, resource) = selector.resource.split_once('.').ok_or_else(unsupported)?;
    let set = match kind {
        "limits" => limits.get(resource),
        // An unset request is the limit, as the apiserver defaults it.
        "requests" => requests.get(resource).or_else(|| limits.get(resource)),
        _ => return Err(unsupported()),
    };
    let divisor = selector.divisor.as_ref().map_or("1", |d| d.0.as_str());
    let bad = |e: quantity::ParseError| format!("resourceFieldRef {:?}: {e}", selector.resource);
    let (amount, per) = match resource {
        "cpu" => (
            match set {
                Some(q) => quantity::milli_value(&q.0).map_err(bad)?,
                None if kind == "limits" => node.cpu_millis,
                None => 0,
            },
            quantity::milli_value(divisor).map_err(bad)?,
        ),
        "memory" | "ephemeral-storage" => (
            match set {
                Some(q) => quantity::value(&q.0).map_err(bad)?,
                None if kind == "limits" && resource == "memory" => node.memory_bytes,
                None => 0,
            },
            quantity::value(divisor).map_err(bad)?,
        ),
        _ => return Err(unsupported()),
    };
    if per <= 0 {
        return Err(format!(
            "resourceFieldRef {:?}: the divisor must be positive",
            selector.resource
        ));
    }
    Ok(((amount + per - 1) / per).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NODE: NodeCapacity = NodeCapacity {
        cpu_millis: 2000,
        memory_bytes: 8 << 30,
    };

    fn value(pod: &Pod, resource: &str, divisor: Option<&str>) -> Result<String, String> {
        let selector: ResourceFieldSelector =
            serde_json::from_value(json!({"resource": resource, "divisor": divisor})).unwrap();
        super::resource(pod, "app", &selector, NODE)
    }

    #[test]
    fn resources_round_up_by_the_divisor_and_fall_back_to_the_node() {
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [{"name": "app",
            "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}, "requests": {"memory": "32Mi"}}}]}}))
        .unwrap();
        assert_eq!(
            value(&pod, "limits.cpu", None).unwrap(),
            "1",
            "250m rounds up to a core"
        );
        assert_eq!(value(&pod, "limits.cpu", Some("1m")).unwrap(), "250");
        assert_eq!(value(&pod, "limits.memory", Some("1Mi")).unwrap(), "64");
        assert_eq!(value(&pod, "requests.memory", Some("1Mi")).unwrap(), "32");
        assert_eq!(
            value(&pod, "requests.cpu", Some("1m")).unwrap(),
            "250",
            "the request defaults to the limit"
        );
        let bare: Pod = serde_json::from_value(json!({"spec": {"containers": [{"name": "app"}]}})).unwrap();
        assert_eq!(
            value(&bare, "limits.cpu", Some("1m")).unwrap(),
            "2000",
            "no limit: the node's CPUs"
        );
        assert_eq!(value(&bare, "limits.memory", Some("1Gi")).unwrap(), "8");
        assert_eq!(value(&bare, "requests.cpu", None).unwrap(), "0");
        assert!(value(&bare, "limits.gpu", None).is_err());
        assert!(value(&bare, "limits.cpu", Some("0")).is_err());
    }

    #[test]
    fn fields_come_from_metadata_spec_and_status() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "labels": {"app": "x", "tier": "db"}},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"podIP": "10.0.0.5"}
        }))
        .unwrap();
        assert_eq!(field(&pod, "metadata.name").unwrap(), "web");
        assert_eq!(field(&pod, "metadata.labels['tier']").unwrap(), "db");
        assert_eq!(field(&pod, "metadata.labels").unwrap(), "app=\"x\"\ntier=\"db\"");
        assert_eq!(field(&pod, "spec.nodeName").unwrap(), "n1");
        assert_eq!(field(&pod, "status.podIP").unwrap(), "10.0.0.5");
        assert_eq!(field(&pod, "status.hostIP").unwrap(), "");
        assert!(field(&pod, "spec.containers").is_none());
    }
}
