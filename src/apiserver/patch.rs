//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes' strategic
//! merge patch, which merges lists of named things (containers, env, ports, ...) by key instead
//! of replacing them. Mirrors `k8s.io/apimachinery/pkg/util/strategicpatch` for the directives
//! kubectl sends (`$patch`, `$setElementOrder/`, `$deleteFromPrimitiveList/`, `$retainKeys`).

use serde_json::{Map, Value};

/// The three patch types, by their Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
}

impl PatchType {
    /// The patch type of a request's Content-Type (parameters ignored).
    pub(crate) fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            _ => None,
        }
    }
}

/// Why a patch failed: it did not parse (upstream answers 400), or it parsed but does not apply
/// to the object (422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PatchError {
    /// The patch is malformed.
    #[error("{0}")]
    Malformed(String),
    /// The patch does not apply.
    #[error("{0}")]
    NotApplicable(String),
}

/// Applies `patch` to `doc`.
pub(crate) fn apply(doc: &mut Value, patch_type: PatchType, patch: &[u8]) -> Result<(), PatchError> {
    let malformed = |kind: &str, e: serde_json::Error| PatchError::Malformed(format!("invalid {kind}: {e}"));
    match patch_type {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(patch).map_err(|e| malformed("JSON patch", e))?;
            json_patch::patch(doc, &ops)
                .map_err(|e| PatchError::NotApplicable(format!("the JSON patch could not be applied: {e}")))
        }
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(patch).map_err(|e| malformed("JSON merge patch", e))?;
            json_patch::merge(doc, &p);
            Ok(())
        }
        PatchType::Strategic => {
            let p: Value = serde_json::from_slice(patch).map_err(|e| malformed("strategic merge patch", e))?;
            let Value::Object(p) = p else {
                return Err(PatchError::Malformed(
                    "a strategic merge patch must be a JSON object".into(),
                ));
            };
            let Value::Object(target) = doc else {
                return Err(PatchError::NotApplicable(
                    "the object to patch is not a JSON object".into(),
                ));
            };
            merge_map(target, p, &mut Vec::new()).map_err(PatchError::Malformed)
        }
    }
}

/// How a list field merges, as upstream's `patchStrategy`/`patchMergeKey` struct tags say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ListStrategy {
    /// Replace the whole list (the default).
    Replace,
    /// Merge object elements by this key.
    MergeByKey(&'static str),
    /// Merge primitive elements as a set.
    MergePrimitives,
}

/// The merge strategy of the list under `field`, whose ancestors are `path` (list indices
/// dropped). Also used to put the same facts into the OpenAPI documents.
pub(crate) fn list_strategy(path: &[String], field: &str) -> ListStrategy {
    let parent = path.last().map(String::as_str).unwrap_or_default();
    let in_container = matches!(parent, "containers" | "initContainers" | "ephemeralContainers");
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => ListStrategy::MergeByKey("name"),
        "ports" if in_container => ListStrategy::MergeByKey("containerPort"),
        "ports" if path.len() == 1 && parent == "spec" => ListStrategy::MergeByKey("port"),
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "hostAliases" | "podIPs" | "hostIPs" => ListStrategy::MergeByKey("ip"),
        "ownerReferences" => ListStrategy::MergeByKey("uid"),
        "conditions" => ListStrategy::MergeByKey("type"),
        // Only a node's status addresses merge by type; Endpoints' and EndpointSlices' are atomic.
        "addresses" if parent == "status" => ListStrategy::MergeByKey("type"),
        "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
        "finalizers" => ListStrategy::MergePrimitives,
        _ => ListStrategy::Replace,
    }
}

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";

fn merge_map(
    target: &mut Map<String, Value>,
    mut patch: Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), String> {
    match patch.remove("$patch").as_ref().and_then(Value::as_str) {
        Some("replace") => {
            *target = patch;
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some(other) => return Err(format!("unknown patch type: {other}")),
        None => {}
    }
    let retain_keys = patch.remove("$retainKeys");
    let mut orders = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(SET_ORDER) {
            orders.push((field.to_string(), value));
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_PRIMITIVES) {
            if let (Some(Value::Array(list)), Value::Array(gone)) = (target.get_mut(field), value) {
                list.retain(|v| !gone.contains(v));
            }
            continue;
        }
        match value {
            Value::Null => {
                target.remove(&key);
            }
            Value::Object(sub) => {
                let entry = target.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(existing) = entry {
                    path.push(key.clone());
                    merge_map(existing, sub, path)?;
                    path.pop();
                }
            }
            Value::Array(items) => {
                let strategy = list_strategy(path, &key);
                let existing = target.remove(&key);
                path.push(key.clone());
                let merged = merge_list(existing, items, &strategy, path)?;
                path.pop();
                target.insert(key, merged);
            }
            other => {
                target.insert(key, other);
            }
        }
    }
    for (field, order) in orders {
        if let (Some(Value::Array(list)), Value::Array(order)) = (target.get_mut(&field), order) {
            let key = match list_strategy(path, &field) {
                ListStrategy::MergeByKey(k) => Some(k),
                _ => None,
            };
            reorder(list, &order, key);
        }
    }
    if let Some(Value::Array(keep)) = retain_keys {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn merge_list(
    existing: Option<Value>,
    patch: Vec<Value>,
    strategy: &ListStrategy,
    path: &mut Vec<String>,
) -> Result<Value, String> {
    let existing = match existing {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    match strategy {
        ListStrategy::Replace => Ok(Value::Array(
            patch.into_iter().filter(|v| v.get("$patch").is_none()).collect(),
        )),
        ListStrategy::MergePrimitives => {
            let mut out = existing;
            for v in patch {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Ok(Value::Array(out))
        }
        ListStrategy::MergeByKey(key) => {
            if patch
                .iter()
                .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                return Ok(Value::Array(
                    patch.into_iter().filter(|p| p.get("$patch").is_none()).collect(),
                ));
            }
            let mut out = existing;
            for item in patch {
                let Value::Object(mut item) = item else {
                    return Err(format!("list items of {} must be objects", path.join(".")));
                };
                let Some(id) = item.get(*key).cloned() else {
                    return Err(format!("map: {item:?} does not contain declared merge key: {key}"));
                };
                let position = out.iter().position(|e| e.get(*key) == Some(&id));
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(i) = position {
                        out.remove(i);
                    }
                    continue;
                }
                match position {
                    Some(i) => {
                        if let Value::Object(target) = &mut out[i] {
                            merge_map(target, item, path)?;
                        }
                    }
                    None => {
                        item.remove("$patch");
                        let mut fresh = Map::new();
                        merge_map(&mut fresh, item, path)?;
                        out.push(Value::Object(fresh));
                    }
                }
            }
            Ok(Value::Array(out))
        }
    }
}

/// Orders `list` as `order` lists it (by merge key, or by value for primitives); elements not
/// named keep their relative order after the named ones.
fn reorder(list: &mut [Value], order: &[Value], key: Option<&str>) {
    let id = |v: &Value| match key {
        Some(k) => v.get(k).cloned(),
        None => Some(v.clone()),
    };
    let rank = |v: &Value| {
        let wanted = order.iter().position(|o| id(o) == id(v) && id(v).is_some());
        wanted.unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(mut doc: Value, patch: Value) -> Value {
        apply(&mut doc, PatchType::Strategic, patch.to_string().as_bytes()).unwrap();
        doc
    }

    #[test]
    fn strategic_merge_keeps_other_containers_and_merges_env_by_name() {
        let doc = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "side", "image": "s:1"}
        ]}}}});
        let out = smp(
            doc,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "a:2", "env": [{"name": "B", "value": "3"}]}
            ]}}}}),
        );
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 2);
        assert_eq!(containers[0]["image"], "a:2");
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}])
        );
        assert_eq!(containers[1]["name"], "side");
    }

    #[test]
    fn strategic_merge_honours_delete_replace_and_null() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "x"}, {"name": "y"}], "tolerations": [{"key": "k"}]}});
        let out = smp(
            doc,
            json!({"metadata": {"labels": {"a": null}},
            "spec": {"containers": [{"name": "x", "$patch": "delete"}], "tolerations": [{"key": "n"}]}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["spec"]["containers"], json!([{"name": "y"}]));
        assert_eq!(
            out["spec"]["tolerations"],
            json!([{"key": "n"}]),
            "lists without a merge key are replaced"
        );
    }

    #[test]
    fn strategic_merge_orders_and_deletes_primitives_as_kubectl_asks() {
        let doc =
            json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"containers": [{"name": "x"}, {"name": "y"}]}});
        let out = smp(
            doc,
            json!({
                "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]},
                "spec": {"$setElementOrder/containers": [{"name": "y"}, {"name": "x"}], "containers": [{"name": "x", "image": "i"}]}
            }),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "y"}, {"name": "x", "image": "i"}])
        );
    }

    #[test]
    fn service_ports_merge_by_port_and_container_ports_by_container_port() {
        let svc = smp(
            json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
        );
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 80, "name": "http", "targetPort": 8080}, {"port": 443}])
        );
        let pod = smp(
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}}),
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 81}]}]}}),
        );
        assert_eq!(
            pod["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80}, {"containerPort": 81}])
        );
    }

    #[test]
    fn json_and_merge_patches_apply() {
        let mut doc = json!({"data": {"a": "1"}});
        apply(
            &mut doc,
            PatchType::Json,
            br#"[{"op":"add","path":"/data/b","value":"2"}]"#,
        )
        .unwrap();
        apply(&mut doc, PatchType::Merge, br#"{"data":{"a":null}}"#).unwrap();
        assert_eq!(doc, json!({"data": {"b": "2"}}));
        assert!(apply(&mut doc, PatchType::Json, br#"[{"op":"remove","path":"/nope"}]"#).is_err());
        assert!(apply(&mut doc, PatchType::Strategic, b"[1]").is_err());
    }
}
