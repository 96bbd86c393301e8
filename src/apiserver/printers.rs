//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` shows, with upstream's
//! columns for each resource. Mirrors `pkg/printers/internalversion/printers.go`; the server
//! always sends the wide columns (priority 1) and kubectl hides them without `-o wide`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, PodTemplateSpec, ReplicationController, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use serde_json::{Value, json};

/// One column of a Table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Column {
    /// Header; kubectl upper-cases it.
    pub(crate) name: &'static str,
    /// `string`, `integer` or `date`.
    pub(crate) kind: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub(crate) priority: i32,
    /// What the column shows.
    pub(crate) description: &'static str,
}

const fn col(name: &'static str, kind: &'static str, priority: i32, description: &'static str) -> Column {
    Column {
        name,
        kind,
        priority,
        description,
    }
}

const NAME: Column = col(
    "Name",
    "string",
    0,
    "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
);
const AGE: Column = col(
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.",
);
const CONTAINERS: Column = col("Containers", "string", 1, "Names of each container in the template.");
const IMAGES: Column = col(
    "Images",
    "string",
    1,
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = col("Selector", "string", 1, "Label selector for the objects.");

/// Upstream's default table for resources without a printer.
pub(crate) static DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Created At",
        "date",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    ),
];

/// A converted list: the columns (absent in watch events after the first) and one row per object.
pub(crate) struct Table {
    /// The columns, or `None` when the client already has them.
    pub(crate) columns: Option<&'static [Column]>,
    /// The rows, in list order.
    pub(crate) rows: Vec<Row>,
}

/// One row: its cells and the metadata kubectl reads for `-A`, `--show-labels` and `-L`.
pub(crate) struct Row {
    /// The cells, matching the columns.
    pub(crate) cells: Vec<Value>,
    /// The object's metadata, sent back as a PartialObjectMetadata.
    pub(crate) meta: ObjectMeta,
}

impl Table {
    /// The Table as JSON, with each row's object given as `PartialObjectMetadata` (kubectl's
    /// default `includeObject=Metadata`), `None`, or the full object from `objects`.
    pub(crate) fn to_json(
        &self,
        resource_version: &str,
        continue_token: Option<&str>,
        include: Include,
        objects: &[bytes::Bytes],
    ) -> Value {
        let columns = self.columns.map(|cols| {
            cols.iter()
                .map(|c| {
                    json!({"name": c.name, "type": c.kind, "format": if c.name == "Name" { "name" } else { "" },
                        "description": c.description, "priority": c.priority})
                })
                .collect::<Vec<_>>()
        });
        let rows: Vec<Value> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let object = match include {
                    Include::None => Value::Null,
                    Include::Object => objects
                        .get(i)
                        .and_then(|o| serde_json::from_slice(o).ok())
                        .unwrap_or(Value::Null),
                    Include::Metadata => {
                        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": row.meta})
                    }
                };
                json!({"cells": row.cells, "object": object})
            })
            .collect();
        let mut metadata = json!({"resourceVersion": resource_version});
        if let Some(token) = continue_token {
            metadata["continue"] = token.into();
        }
        json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": columns, "rows": rows})
    }
}

/// What a Table row carries in `object`, from `?includeObject=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Include {
    /// Nothing.
    None,
    /// PartialObjectMetadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

/// Cells of the default table: name and RFC 3339 creation time.
pub(crate) fn default_cells(meta: &ObjectMeta) -> Vec<Value> {
    let created = meta
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
    vec![name(meta), created.into()]
}

fn name(meta: &ObjectMeta) -> Value {
    meta.name.clone().unwrap_or_default().into()
}

fn age(meta: &ObjectMeta) -> Value {
    since(meta.creation_timestamp.as_ref()).into()
}

/// `translateTimestampSince`: the human age of a timestamp, `<unknown>` when unset.
fn since(t: Option<&Time>) -> String {
    match t {
        Some(t) => human_duration((jiff::Timestamp::now() - t.0).get_seconds()),
        None => "<unknown>".into(),
    }
}

/// Upstream's `duration.HumanDuration`, on whole seconds.
pub(crate) fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    let minutes = seconds / 60;
    let hours = seconds / 3600;
    let days = hours / 24;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 192 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if hours < 24 * 365 * 2 {
        format!("{days}d")
    } else if hours < 24 * 365 * 8 {
        match days % 365 {
            0 => format!("{}y", days / 365),
            d => format!("{}y{d}d", days / 365),
        }
    } else {
        format!("{}y", days / 365)
    }
}

/// `labels.FormatLabels`: sorted `k=v` pairs, or `<none>`.
pub(crate) fn format_labels(labels: Option<&BTreeMap<String, String>>) -> String {
    match labels {
        Some(l) if !l.is_empty() => l.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        _ => "<none>".into(),
    }
}

/// `metav1.FormatLabelSelector` over a LabelSelector in JSON form; `empty` for an empty selector.
pub(crate) fn format_label_selector(selector: &Value, empty: &str) -> String {
    let mut parts: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for expr in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = expr["key"].as_str().unwrap_or_default().to_string();
        let mut values: Vec<&str> = expr["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort();
        let text = match expr["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".into(),
        };
        parts.push((key, text));
    }
    if parts.is_empty() {
        return empty.into();
    }
    parts.sort();
    parts.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(",")
}

fn selector_cell(selector: Option<&LabelSelector>, empty: &str) -> Value {
    let v = selector
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
    format_label_selector(&v, empty).into()
}

fn template_cells(template: Option<&PodTemplateSpec>) -> [Value; 2] {
    let containers = template
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    [
        containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
            .into(),
        containers
            .iter()
            .map(|c| c.image.clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(",")
            .into(),
    ]
}

fn or_none(s: Option<&str>) -> Value {
    s.filter(|s| !s.is_empty()).unwrap_or("<none>").into()
}

fn list_of_three(items: Vec<String>, empty: &str) -> Value {
    if items.is_empty() {
        return empty.into();
    }
    let shown = items.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if items.len() > 3 {
        format!("{shown} + {} more...", items.len() - 3).into()
    } else {
        shown.into()
    }
}

/// Columns of `kubectl get pods`.
pub(crate) static POD_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        0,
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        0,
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        0,
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    col("IP", "string", 1, "The IP address assigned to this pod."),
    col("Node", "string", 1, "The node the pod is assigned to."),
    col("Nominated Node", "string", 1, "The node the pod is nominated to."),
    col("Readiness Gates", "string", 1, "The readiness gates of the pod."),
];

/// A pod's row, with upstream's status reason rules.
pub(crate) fn pod_cells(pod: &Pod) -> Vec<Value> {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let total = spec.containers.len();
    let mut reason = status.phase.clone().unwrap_or_default();
    if let Some(r) = status.reason.as_ref().filter(|r| !r.is_empty()) {
        reason = r.clone();
    }
    let mut ready = 0;
    let mut restarts = 0;
    let mut initializing = false;
    let init_count = spec.init_containers.as_ref().map_or(0, Vec::len);
    for (i, c) in status.init_container_statuses.iter().flatten().enumerate() {
        restarts += c.restart_count;
        let state = c.state.clone().unwrap_or_default();
        if let Some(t) = &state.terminated
            && t.exit_code == 0
        {
            continue;
        }
        initializing = true;
        reason = if let Some(t) = &state.terminated {
            match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None if t.signal.unwrap_or(0) != 0 => format!("Init:Signal:{}", t.signal.unwrap_or(0)),
                None => format!("Init:ExitCode:{}", t.exit_code),
            }
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.clone())
            .filter(|r| !r.is_empty() && r != "PodInitializing")
        {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{init_count}")
        };
        break;
    }
    if !initializing {
        restarts = 0;
        let mut has_running = false;
        for c in status.container_statuses.iter().flatten().rev() {
            restarts += c.restart_count;
            let state = c.state.clone().unwrap_or_default();
            if let Some(r) = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty())
            {
                reason = r;
            } else if let Some(t) = &state.terminated {
                reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                    Some(r) => r.to_string(),
                    None if t.signal.unwrap_or(0) != 0 => format!("Signal:{}", t.signal.unwrap_or(0)),
                    None => format!("ExitCode:{}", t.exit_code),
                };
            } else if c.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }
    let phase = status.phase.as_deref().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() && status.reason.as_deref() == Some("NodeLost") {
        reason = "Unknown".into();
    } else if pod.metadata.deletion_timestamp.is_some() && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    let ip = status
        .pod_ips
        .as_ref()
        .and_then(|ips| ips.first())
        .map(|ip| ip.ip.as_str())
        .or(status.pod_ip.as_deref());
    let gates = match spec.readiness_gates.as_ref().filter(|g| !g.is_empty()) {
        None => "<none>".to_string(),
        Some(gates) => {
            let ok = gates
                .iter()
                .filter(|g| {
                    status
                        .conditions
                        .iter()
                        .flatten()
                        .find(|c| c.type_ == g.condition_type)
                        .is_some_and(|c| c.status == "True")
                })
                .count();
            format!("{ok}/{}", gates.len())
        }
    };
    vec![
        name(&pod.metadata),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts.to_string().into(),
        age(&pod.metadata),
        or_none(ip),
        or_none(spec.node_name.as_deref()),
        or_none(status.nominated_node_name.as_deref()),
        gates.into(),
    ]
}

/// Columns of `kubectl get nodes`.
pub(crate) static NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", 0, "The status of the node"),
    col("Roles", "string", 0, "The roles of the node"),
    AGE,
    col("Version", "string", 0, "Kubelet Version reported by the node."),
    col("Internal-IP", "string", 1, "List of addresses reachable to the node."),
    col("External-IP", "string", 1, "List of addresses reachable to the node."),
    col(
        "OS-Image",
        "string",
        1,
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    col(
        "Kernel-Version",
        "string",
        1,
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    col(
        "Container-Runtime",
        "string",
        1,
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

/// A node's row.
pub(crate) fn node_cells(node: &Node) -> Vec<Value> {
    let status = node.status.clone().unwrap_or_default();
    let mut state = match status.conditions.iter().flatten().find(|c| c.type_ == "Ready") {
        Some(c) if c.status == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        state.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in node.metadata.labels.iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/").filter(|r| !r.is_empty()) {
            roles.push(role.to_string());
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.push(v.clone());
        }
    }
    roles.sort();
    roles.dedup();
    let address = |kind: &str| {
        or_none(
            status
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == kind)
                .map(|a| a.address.as_str()),
        )
    };
    let info = status.node_info.clone().unwrap_or_default();
    let unknown = |s: String| Value::from(if s.is_empty() { "<unknown>".to_string() } else { s });
    vec![
        name(&node.metadata),
        state.into(),
        if roles.is_empty() {
            "<none>".into()
        } else {
            roles.join(",").into()
        },
        age(&node.metadata),
        info.kubelet_version.clone().into(),
        address("InternalIP"),
        address("ExternalIP"),
        unknown(info.os_image),
        unknown(info.kernel_version),
        unknown(info.container_runtime_version),
    ]
}

/// Columns of `kubectl get namespaces`.
pub(crate) static NAMESPACE_COLUMNS: &[Column] =
    &[NAME, col("Status", "string", 0, "The status of the namespace"), AGE];

/// A namespace's row.
pub(crate) fn namespace_cells(ns: &Namespace) -> Vec<Value> {
    let phase = ns.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    vec![name(&ns.metadata), phase.into(), age(&ns.metadata)]
}

/// Columns of `kubectl get services`.
pub(crate) static SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", 0, "The type of the service."),
    col("Cluster-IP", "string", 0, "The cluster IP of the service."),
    col("External-IP", "string", 0, "The external IPs of the service."),
    col("Port(s)", "string", 0, "The ports of the service."),
    AGE,
    col("Selector", "string", 1, "The label selector of the service."),
];

/// A service's row.
pub(crate) fn service_cells(svc: &Service) -> Vec<Value> {
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    let cluster_ip = spec
        .cluster_ips
        .as_ref()
        .and_then(|ips| ips.first().cloned())
        .or(spec.cluster_ip.clone());
    let external_ips = spec.external_ips.clone().unwrap_or_default();
    let external = match kind.as_str() {
        "ClusterIP" | "NodePort" => or_none(Some(&external_ips.join(","))),
        "LoadBalancer" => {
            let mut lb: Vec<String> = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.clone())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| i.ip.or(i.hostname))
                .collect();
            lb.sort();
            lb.dedup();
            lb.extend(external_ips);
            if lb.is_empty() {
                "<pending>".into()
            } else {
                lb.join(",").into()
            }
        }
        "ExternalName" => spec.external_name.clone().unwrap_or_default().into(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            match p.node_port.filter(|n| *n > 0) {
                Some(n) => format!("{}:{n}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    vec![
        name(&svc.metadata),
        kind.into(),
        or_none(cluster_ip.as_deref()),
        external,
        or_none(Some(&ports.join(","))),
        age(&svc.metadata),
        format_labels(spec.selector.as_ref()).into(),
    ]
}

/// Columns of `kubectl get endpoints`.
pub(crate) static ENDPOINTS_COLUMNS: &[Column] =
    &[NAME, col("Endpoints", "string", 0, "Endpoints of the service."), AGE];

/// An Endpoints row: up to three ready `ip:port` pairs.
pub(crate) fn endpoints_cells(ep: &Endpoints) -> Vec<Value> {
    let subsets = ep.subsets.clone().unwrap_or_default();
    let cell = if subsets.is_empty() {
        "<none>".into()
    } else {
        let mut items = Vec::new();
        for s in &subsets {
            let addresses = s.addresses.clone().unwrap_or_default();
            match s.ports.as_ref().filter(|p| !p.is_empty()) {
                None => items.extend(addresses.iter().map(|a| a.ip.clone())),
                Some(ports) => {
                    for p in ports {
                        for a in &addresses {
                            items.push(if a.ip.contains(':') {
                                format!("[{}]:{}", a.ip, p.port)
                            } else {
                                format!("{}:{}", a.ip, p.port)
                            });
                        }
                    }
                }
            }
        }
        list_of_three(items, "")
    };
    vec![name(&ep.metadata), cell, age(&ep.metadata)]
}

/// Columns of `kubectl get configmaps`.
pub(crate) static CONFIGMAP_COLUMNS: &[Column] = &[NAME, col("Data", "string", 0, "Number of data items."), AGE];

/// A ConfigMap's row.
pub(crate) fn configmap_cells(cm: &ConfigMap) -> Vec<Value> {
    let count = cm.data.as_ref().map_or(0, BTreeMap::len) + cm.binary_data.as_ref().map_or(0, BTreeMap::len);
    vec![name(&cm.metadata), count.into(), age(&cm.metadata)]
}

/// Columns of `kubectl get secrets`.
pub(crate) static SECRET_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", 0, "The type of the secret."),
    col("Data", "string", 0, "Number of data items."),
    AGE,
];

/// A Secret's row.
pub(crate) fn secret_cells(s: &Secret) -> Vec<Value> {
    let count = s.data.as_ref().map_or(0, BTreeMap::len);
    vec![
        name(&s.metadata),
        s.type_.clone().unwrap_or_default().into(),
        count.into(),
        age(&s.metadata),
    ]
}

/// Columns of `kubectl get serviceaccounts`.
pub(crate) static SERVICEACCOUNT_COLUMNS: &[Column] = &[NAME, col("Secrets", "string", 0, "Number of secrets."), AGE];

/// A ServiceAccount's row.
pub(crate) fn serviceaccount_cells(sa: &ServiceAccount) -> Vec<Value> {
    vec![
        name(&sa.metadata),
        sa.secrets.as_ref().map_or(0, Vec::len).into(),
        age(&sa.metadata),
    ]
}

/// Columns of `kubectl get events`.
pub(crate) static EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", 0, "Time of the last occurrence."),
    col("Type", "string", 0, "Type of this event."),
    col("Reason", "string", 0, "Why the event happened."),
    col("Object", "string", 0, "The object this event is about."),
    col("Subobject", "string", 1, "The part of the object this event is about."),
    col("Source", "string", 1, "The component reporting this event."),
    col("Message", "string", 0, "A description of the event."),
    col("First Seen", "string", 1, "Time of the first occurrence."),
    col("Count", "string", 1, "Number of occurrences."),
    col("Name", "string", 1, NAME.description),
];

/// An Event's row.
pub(crate) fn event_cells(e: &Event) -> Vec<Value> {
    let first = match &e.first_timestamp {
        Some(t) => since(Some(t)),
        None => e
            .event_time
            .as_ref()
            .map(|t| since(Some(&Time(t.0))))
            .unwrap_or_else(|| "<unknown>".into()),
    };
    let mut last = match &e.last_timestamp {
        Some(t) => since(Some(t)),
        None => first.clone(),
    };
    let mut count = e.count.unwrap_or(0);
    if let Some(series) = &e.series {
        last = series
            .last_observed_time
            .as_ref()
            .map(|t| since(Some(&Time(t.0))))
            .unwrap_or(last);
        count = series.count.unwrap_or(count);
    } else if count == 0 {
        count = 1;
    }
    let involved = &e.involved_object;
    let kind = involved.kind.clone().unwrap_or_default().to_lowercase();
    let object = match involved.name.as_deref() {
        Some(n) if !n.is_empty() => format!("{kind}/{n}"),
        _ => kind,
    };
    let source = e.source.clone().unwrap_or_default();
    let component = source
        .component
        .filter(|c| !c.is_empty())
        .or(e.reporting_component.clone())
        .unwrap_or_default();
    let host = source
        .host
        .filter(|h| !h.is_empty())
        .or(e.reporting_instance.clone())
        .unwrap_or_default();
    let source = if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    };
    vec![
        last.into(),
        e.type_.clone().unwrap_or_default().into(),
        e.reason.clone().unwrap_or_default().into(),
        object.into(),
        involved.field_path.clone().unwrap_or_default().into(),
        source.into(),
        e.message.clone().unwrap_or_default().trim().into(),
        first.into(),
        count.into(),
        name(&e.metadata),
    ]
}

/// Columns of `kubectl get replicationcontrollers` and `replicasets`.
pub(crate) static REPLICAS_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", 0, "Number of desired pods."),
    col("Current", "integer", 0, "Number of actually running pods."),
    col("Ready", "integer", 0, "Number of pods ready."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

/// A ReplicationController's row.
pub(crate) fn replicationcontroller_cells(rc: &ReplicationController) -> Vec<Value> {
    let spec = rc.spec.clone().unwrap_or_default();
    let status = rc.status.clone().unwrap_or_default();
    let [containers, images] = template_cells(spec.template.as_ref());
    vec![
        name(&rc.metadata),
        spec.replicas.unwrap_or(1).into(),
        status.replicas.into(),
        status.ready_replicas.unwrap_or(0).into(),
        age(&rc.metadata),
        containers,
        images,
        format_labels(spec.selector.as_ref()).into(),
    ]
}

/// A ReplicaSet's row.
pub(crate) fn replicaset_cells(rs: &ReplicaSet) -> Vec<Value> {
    let spec = rs.spec.clone();
    let status = rs.status.clone().unwrap_or_default();
    let [containers, images] = template_cells(spec.template.as_ref());
    vec![
        name(&rs.metadata),
        spec.replicas.unwrap_or(1).into(),
        status.replicas.into(),
        status.ready_replicas.unwrap_or(0).into(),
        age(&rs.metadata),
        containers,
        images,
        selector_cell(Some(&spec.selector), "<none>"),
    ]
}

/// Columns of `kubectl get deployments`.
pub(crate) static DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", 0, "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        0,
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        0,
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

/// A Deployment's row.
pub(crate) fn deployment_cells(d: &Deployment) -> Vec<Value> {
    let spec = d.spec.clone();
    let status = d.status.clone().unwrap_or_default();
    let [containers, images] = template_cells(Some(&spec.template));
    vec![
        name(&d.metadata),
        format!("{}/{}", status.ready_replicas.unwrap_or(0), spec.replicas.unwrap_or(1)).into(),
        status.updated_replicas.unwrap_or(0).into(),
        status.available_replicas.unwrap_or(0).into(),
        age(&d.metadata),
        containers,
        images,
        selector_cell(Some(&spec.selector), ""),
    ]
}

/// Columns of `kubectl get daemonsets`.
pub(crate) static DAEMONSET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        0,
        "The total number of nodes that should be running the daemon pod.",
    ),
    col(
        "Current",
        "integer",
        0,
        "The number of nodes that are running at least 1 daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        0,
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
    ),
    col(
        "Up-to-date",
        "integer",
        0,
        "The total number of nodes that are running updated daemon pod.",
    ),
    col(
        "Available",
        "integer",
        0,
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
    ),
    col(
        "Node Selector",
        "string",
        0,
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

/// A DaemonSet's row.
pub(crate) fn daemonset_cells(ds: &DaemonSet) -> Vec<Value> {
    let spec = ds.spec.clone();
    let status = ds.status.clone().unwrap_or_default();
    let [containers, images] = template_cells(Some(&spec.template));
    let node_selector = spec.template.spec.as_ref().and_then(|s| s.node_selector.clone());
    vec![
        name(&ds.metadata),
        status.desired_number_scheduled.into(),
        status.current_number_scheduled.into(),
        status.number_ready.into(),
        status.updated_number_scheduled.unwrap_or(0).into(),
        status.number_available.unwrap_or(0).into(),
        format_labels(node_selector.as_ref()).into(),
        age(&ds.metadata),
        containers,
        images,
        selector_cell(Some(&spec.selector), "<none>"),
    ]
}

/// Columns of `kubectl get statefulsets`.
pub(crate) static STATEFULSET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", 0, "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

/// A StatefulSet's row.
pub(crate) fn statefulset_cells(s: &StatefulSet) -> Vec<Value> {
    let spec = s.spec.clone();
    let status = s.status.clone().unwrap_or_default();
    let [containers, images] = template_cells(Some(&spec.template));
    vec![
        name(&s.metadata),
        format!("{}/{}", status.ready_replicas.unwrap_or(0), spec.replicas.unwrap_or(1)).into(),
        age(&s.metadata),
        containers,
        images,
    ]
}

/// Columns of `kubectl get jobs`.
pub(crate) static JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", 0, "Status of the job."),
    col("Completions", "string", 0, "The completion status of the job."),
    col("Duration", "string", 0, "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

/// A Job's row.
pub(crate) fn job_cells(job: &Job) -> Vec<Value> {
    let spec = job.spec.clone().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let has = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .is_some_and(|c| c.status == "True")
    };
    let state = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if job.metadata.deletion_timestamp.is_some() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let succeeded = status.succeeded.unwrap_or(0);
    let completions = match (spec.completions, spec.parallelism.unwrap_or(1)) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, p) if p > 1 => format!("{succeeded}/1 of {p}"),
        (None, _) => format!("{succeeded}/1"),
    };
    let duration = match (&status.start_time, &status.completion_time) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration((jiff::Timestamp::now() - start.0).get_seconds()),
        (Some(start), Some(end)) => human_duration((end.0 - start.0).get_seconds()),
    };
    let [containers, images] = template_cells(Some(&spec.template));
    vec![
        name(&job.metadata),
        state.into(),
        completions.into(),
        duration.into(),
        age(&job.metadata),
        containers,
        images,
        selector_cell(spec.selector.as_ref(), "<none>"),
    ]
}

/// Columns of `kubectl get leases`.
pub(crate) static LEASE_COLUMNS: &[Column] = &[NAME, col("Holder", "string", 0, "The holder of the lease."), AGE];

/// A Lease's row.
pub(crate) fn lease_cells(l: &Lease) -> Vec<Value> {
    let holder = l
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    vec![name(&l.metadata), holder.into(), age(&l.metadata)]
}

/// Columns of `kubectl get endpointslices`.
pub(crate) static ENDPOINTSLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        0,
        "The type of address carried by this EndpointSlice.",
    ),
    col("Ports", "string", 0, "Port numbers available on the related service."),
    col(
        "Endpoints",
        "string",
        0,
        "Unique set of addresses in this EndpointSlice.",
    ),
    AGE,
];

/// An EndpointSlice's row.
pub(crate) fn endpointslice_cells(s: &EndpointSlice) -> Vec<Value> {
    let ports: Vec<String> = s
        .ports
        .iter()
        .flatten()
        .map(|p| match (p.port, &p.name) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) if !name.is_empty() => name.clone(),
            _ => "*".into(),
        })
        .collect();
    let addresses: Vec<String> = s.endpoints.iter().flatten().flat_map(|e| e.addresses.clone()).collect();
    vec![
        name(&s.metadata),
        s.address_type.clone().into(),
        list_of_three(ports, "<unset>"),
        list_of_three(addresses, "<unset>"),
        age(&s.metadata),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_matches_upstream_examples() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (123, "2m3s"),
            (120, "2m"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (7 * 3600 + 59 * 60, "7h59m"),
            (47 * 3600, "47h"),
            (76 * 3600, "3d4h"),
            (8 * 86400, "8d"),
            (730 * 86400, "2y"),
            (760 * 86400, "2y30d"),
            (9 * 365 * 86400, "9y"),
            (-5, "<invalid>"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn label_selectors_format_as_kubectl_prints_them() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["b", "a"]}, {"key": "x", "operator": "DoesNotExist"}]});
        assert_eq!(format_label_selector(&sel, "<none>"), "app=web,tier in (a,b),!x");
        assert_eq!(format_label_selector(&json!({}), "<none>"), "<none>");
    }

    #[test]
    fn pod_status_prefers_waiting_reason_and_counts_ready() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 3, "image": "i", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        })).unwrap();
        let cells = pod_cells(&pod);
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "3");
        assert_eq!(cells[5], "<none>");
    }

    #[test]
    fn service_ports_show_node_ports() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "s"},
            "spec": {"type": "NodePort", "clusterIP": "10.0.0.5", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}
        })).unwrap();
        let cells = service_cells(&svc);
        assert_eq!(cells[1], "NodePort");
        assert_eq!(cells[2], "10.0.0.5");
        assert_eq!(cells[3], "<none>");
        assert_eq!(cells[4], "80:30080/TCP,53/UDP");
    }
}
