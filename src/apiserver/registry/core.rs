//! Strategies of the core/v1 resources, and the pod-spec defaulting and validation that the
//! workload resources reuse for their templates. Mirrors upstream's `pkg/registry/core/*` and
//! `pkg/apis/core/v1/defaults.go` / `pkg/apis/core/validation`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, NamespaceSpec, NamespaceStatus, Node, Pod, PodCondition, PodSpec,
    PodStatus, ReplicationController, Secret, Service, ServiceAccount, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::ipalloc::{AllocError, Cidr, Range};
use super::strategy::Strategy;
use crate::api::pod::{default_pod, default_pod_spec, validate_pod_spec};
use crate::api::resources::ResourceInfo;
use crate::api::validation::{FieldError, NameRule, validate_labels};
use crate::apiserver::printers::{self, Column};
use crate::apiserver::status::Error;
use crate::apiserver::storage::{self, Store};

/// Namespaces: DNS-1123 label names, `Active` on create, `Terminating` until `spec.finalizers` empty.
pub(crate) struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    type Object = Namespace;
    const NAME_RULE: NameRule = NameRule::Label;
    const SELECTABLE_FIELDS: &'static [&'static str] = &["status.phase"];

    fn prepare_for_create(&self, ns: &mut Namespace) {
        ns.status = Some(NamespaceStatus {
            phase: Some("Active".into()),
            ..Default::default()
        });
        let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
        let finalizers = spec.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == "kubernetes") {
            finalizers.push("kubernetes".into());
        }
    }

    fn prepare_for_update(&self, new: &mut Namespace, old: &Namespace) {
        // spec.finalizers change only through the finalize subresource.
        new.spec = old.spec.clone();
    }

    fn prepare_for_delete(&self, ns: &mut Namespace) -> bool {
        ns.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
        self.blocks_deletion(ns)
    }

    fn blocks_deletion(&self, ns: &Namespace) -> bool {
        ns.spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| !f.is_empty())
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::NAMESPACE_COLUMNS)
    }

    fn cells(&self, ns: &Namespace) -> Vec<Value> {
        printers::namespace_cells(ns)
    }
}

/// Pods: defaults, the DefaultTolerationSeconds tolerations, graceful deletion, binding.
pub(crate) struct PodStrategy(pub(crate) DefaultTolerations);

/// How long a pod tolerates a not-ready and an unreachable node when it does not say: upstream's
/// DefaultTolerationSeconds admission plugin, set by `--default-not-ready-toleration-seconds`
/// and `--default-unreachable-toleration-seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DefaultTolerations {
    pub(crate) not_ready_seconds: i64,
    pub(crate) unreachable_seconds: i64,
}

impl Strategy for PodStrategy {
    type Object = Pod;
    const GENERATION: bool = true;
    const RETURN_DELETED_OBJECT: bool = true;
    const SELECTABLE_FIELDS: &'static [&'static str] = &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ];

    fn default(&self, pod: &mut Pod) {
        default_pod(pod);
    }

    fn prepare_for_create(&self, pod: &mut Pod) {
        let spec = pod.spec.get_or_insert_with(Default::default);
        let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
        let defaults = [
            ("node.kubernetes.io/not-ready", self.0.not_ready_seconds),
            ("node.kubernetes.io/unreachable", self.0.unreachable_seconds),
        ];
        for (key, seconds) in defaults {
            // As upstream's DefaultTolerationSeconds plugin: any toleration of the key (or of every
            // key) for NoExecute (or every effect) stands, whatever its operator and seconds.
            let present = tolerations.iter().any(|t| {
                t.key.as_deref().is_none_or(|k| k.is_empty() || k == key)
                    && t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "NoExecute")
            });
            if !present {
                tolerations.push(Toleration {
                    key: Some(key.into()),
                    operator: Some("Exists".into()),
                    effect: Some("NoExecute".into()),
                    toleration_seconds: Some(seconds),
                    ..Default::default()
                });
            }
        }
        pod.status = Some(PodStatus {
            phase: Some("Pending".into()),
            qos_class: Some(qos_class(spec).into()),
            ..Default::default()
        });
    }

    fn prepare_for_update(&self, new: &mut Pod, old: &Pod) {
        if let (Some(new_spec), Some(old_spec)) = (new.spec.as_mut(), old.spec.as_ref())
            && new_spec.node_name.is_none()
        {
            // Binding sets nodeName; an update that leaves it out keeps it.
            new_spec.node_name = old_spec.node_name.clone();
        }
    }

    fn validate(&self, pod: &Pod) -> Vec<FieldError> {
        match &pod.spec {
            Some(spec) => validate_pod_spec(spec, "spec"),
            None => vec![FieldError::required("spec")],
        }
    }

    fn validate_update(&self, new: &Pod, old: &Pod) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let (Some(new_spec), Some(old_spec)) = (&new.spec, &old.spec) else {
            return errs;
        };
        // Only images, activeDeadlineSeconds and tolerations may change on a running pod.
        let mut allowed = new_spec.clone();
        for (n, o) in allowed.containers.iter_mut().zip(&old_spec.containers) {
            n.image = o.image.clone();
        }
        for (n, o) in allowed
            .init_containers
            .iter_mut()
            .flatten()
            .zip(old_spec.init_containers.iter().flatten())
        {
            n.image = o.image.clone();
        }
        allowed.active_deadline_seconds = old_spec.active_deadline_seconds;
        allowed.tolerations = old_spec.tolerations.clone();
        if &allowed != old_spec {
            errs.push(FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
        errs
    }

    fn grace_period(&self, pod: &Pod, requested: Option<i64>) -> Option<i64> {
        let spec = pod.spec.as_ref()?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
        // Unscheduled and finished pods have no kubelet to wait for.
        if spec.node_name.as_deref().unwrap_or_default().is_empty() || phase == "Succeeded" || phase == "Failed" {
            return None;
        }
        let grace = requested.or(spec.termination_grace_period_seconds).unwrap_or(30);
        (grace > 0).then_some(grace)
    }

    fn bind(&self, pod: &mut Pod, binding: &Value) -> Result<(), Error> {
        let node = binding["target"]["name"].as_str().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let conflict = |message: String| Error::Conflict {
            resource: crate::apiserver::status::ObjectRef {
                qualified: "pods".into(),
                group: String::new(),
                plural: "pods".into(),
            },
            name: name.clone(),
            message,
        };
        if node.is_empty() {
            return Err(Error::BadRequest("a Binding must name a target node".into()));
        }
        if pod.metadata.deletion_timestamp.is_some() {
            return Err(conflict(format!(
                "pod {name} is being deleted, cannot be assigned to a host"
            )));
        }
        let spec = pod.spec.get_or_insert_with(Default::default);
        if let Some(current) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
            return Err(conflict(format!(
                "pod {name} is already assigned to node \"{current}\""
            )));
        }
        spec.node_name = Some(node.to_string());
        let status = pod.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "PodScheduled");
        conditions.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(Time(jiff::Timestamp::now())),
            ..Default::default()
        });
        Ok(())
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::POD_COLUMNS)
    }

    fn cells(&self, pod: &Pod) -> Vec<Value> {
        printers::pod_cells(pod)
    }
}

/// Upstream's QoS class: Guaranteed when every container's requests equal its limits for CPU and
/// memory, BestEffort when none sets any, Burstable otherwise.
fn qos_class(spec: &PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in &spec.containers {
        let res = c.resources.clone().unwrap_or_default();
        let requests = res.requests.unwrap_or_default();
        let limits = res.limits.unwrap_or_default();
        if !requests.is_empty() || !limits.is_empty() {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let limit = limits.get(r);
            let request = requests.get(r).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Nodes: the kubelet registers them with their status.
pub(crate) struct NodeStrategy;

impl Strategy for NodeStrategy {
    type Object = Node;
    const KEEP_STATUS_ON_CREATE: bool = true;
    const SELECTABLE_FIELDS: &'static [&'static str] = &["spec.unschedulable"];

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::NODE_COLUMNS)
    }

    fn cells(&self, node: &Node) -> Vec<Value> {
        printers::node_cells(node)
    }
}

/// The ranges Services take their ClusterIPs and node ports from, kept in the store (see
/// `ipalloc`). Shared by the Service strategy and the repair the apiserver runs.
pub(crate) struct ServiceRanges {
    store: Arc<dyn Store>,
    cidr: Cidr,
    ips: Range,
    node_ports: Range,
}

/// How often the ranges are repaired, as upstream's repair controllers do.
const REPAIR_INTERVAL: Duration = Duration::from_secs(180);

impl ServiceRanges {
    /// The ranges of `cidr` and `node_ports` in `store`. Nothing is read until the first
    /// `repair`, which must come before the first allocation.
    pub(crate) fn new(cidr: Cidr, node_ports: std::ops::RangeInclusive<u16>, store: Arc<dyn Store>) -> Self {
        Self {
            ips: Range::ips(cidr, store.clone()),
            node_ports: Range::ports(node_ports, store.clone()),
            cidr,
            store,
        }
    }

    /// One repair pass over both ranges (see `Range::repair`): what the stored Services hold
    /// is allocated, what none has held for several passes is freed. The apiserver runs one
    /// before it serves, so that a new store gets its ranges and an old one is reconciled.
    pub(crate) async fn repair(&self) -> Result<(), storage::Error> {
        self.ips.repair(|| self.held(cluster_ips)).await?;
        self.node_ports.repair(|| self.held(node_ports_of)).await
    }

    /// What the stored Services hold, by `values`.
    async fn held(&self, values: impl Fn(&Service) -> Vec<u32>) -> Result<BTreeSet<u32>, storage::Error> {
        let (stored, _) = self.store.list("/registry/services/").await?;
        Ok(stored
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Service>(&kv.value).ok())
            .flat_map(|svc| values(&svc))
            .collect())
    }

    /// Repairs every few minutes until `shutdown`; `ApiServer::run` runs it beside serving. A
    /// failed pass is logged and tried again at the next.
    pub(crate) async fn run_repair(&self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REPAIR_INTERVAL) => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(err) = self.repair().await {
                tracing::warn!(error = %crate::error_chain(&err), "repairing the Service IP and node port allocations failed");
            }
        }
    }
}

/// Services: ClusterIP and node port allocation, port defaults and validation.
pub(crate) struct ServiceStrategy {
    info: &'static ResourceInfo,
    ranges: Arc<ServiceRanges>,
}

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

impl ServiceStrategy {
    /// A strategy for `info` (services) allocating from `ranges`.
    pub(crate) fn new(info: &'static ResourceInfo, ranges: Arc<ServiceRanges>) -> Self {
        Self { info, ranges }
    }

    /// The error for a refused allocation; `field` names the field and value of the refused
    /// one of the values asked for.
    fn refused(&self, name: &str, err: AllocError, field: impl Fn(usize) -> (String, String)) -> Error {
        match (err.index(), err) {
            (_, AllocError::Storage(e)) => Error::from_storage(e, self.info, name),
            (Some(index), err) => {
                let (field, value) = field(index);
                Error::Invalid {
                    kind: "Service".into(),
                    group: String::new(),
                    name: name.to_string(),
                    causes: vec![FieldError::invalid(field, value, format!("failed to allocate: {err}"))],
                }
            }
            (None, err) => Error::Internal(err.to_string()),
        }
    }

    /// Releases `ips` and `ports`. A failure only leaks them until the repair frees them.
    async fn give_back(&self, ips: &[u32], ports: &[u32]) {
        for (range, values) in [(&self.ranges.ips, ips), (&self.ranges.node_ports, ports)] {
            if let Err(err) = range.release(values).await {
                tracing::warn!(error = %crate::error_chain(&err), "releasing a Service's allocations failed; the repair frees them");
            }
        }
    }
}

fn cluster_ips(svc: &Service) -> Vec<u32> {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .into_iter()
        .collect()
}

fn node_ports_of(svc: &Service) -> Vec<u32> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| p.node_port)
        .filter(|p| *p > 0)
        .map(|p| p as u32)
        .collect()
}

fn wants_node_ports(kind: &str) -> bool {
    kind == "NodePort" || kind == "LoadBalancer"
}

impl Strategy for ServiceStrategy {
    type Object = Service;
    const NAME_RULE: NameRule = NameRule::Dns1035;
    const RETURN_DELETED_OBJECT: bool = true;

    fn default(&self, svc: &mut Service) {
        let spec = svc.spec.get_or_insert_with(Default::default);
        let kind = spec.type_.get_or_insert_with(|| "ClusterIP".into()).clone();
        spec.session_affinity.get_or_insert_with(|| "None".into());
        if kind != "ExternalName" {
            spec.internal_traffic_policy.get_or_insert_with(|| "Cluster".into());
            spec.ip_families.get_or_insert_with(|| vec!["IPv4".into()]);
            spec.ip_family_policy.get_or_insert_with(|| "SingleStack".into());
        }
        if wants_node_ports(&kind) {
            spec.external_traffic_policy.get_or_insert_with(|| "Cluster".into());
        }
        for p in spec.ports.iter_mut().flatten() {
            p.protocol.get_or_insert_with(|| "TCP".into());
            p.target_port.get_or_insert(IntOrString::Int(p.port));
        }
    }

    fn prepare_for_create(&self, svc: &mut Service) {
        svc.status = Some(Default::default());
    }

    fn prepare_for_update(&self, new: &mut Service, old: &Service) {
        let (Some(spec), Some(old_spec)) = (new.spec.as_mut(), old.spec.as_ref()) else {
            return;
        };
        // Clients that never saw the allocated values (kubectl apply) keep them.
        if spec.cluster_ip.as_deref().unwrap_or_default().is_empty() && spec.type_ != Some("ExternalName".into()) {
            spec.cluster_ip = old_spec.cluster_ip.clone();
            spec.cluster_ips = old_spec.cluster_ips.clone();
        }
        for p in spec.ports.iter_mut().flatten() {
            if p.node_port.unwrap_or(0) == 0
                && let Some(old_port) = old_spec
                    .ports
                    .iter()
                    .flatten()
                    .find(|o| o.port == p.port && o.protocol == p.protocol)
            {
                p.node_port = old_port.node_port;
            }
        }
    }

    fn validate(&self, svc: &Service) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(spec) = &svc.spec else {
            return vec![FieldError::required("spec")];
        };
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if !SERVICE_TYPES.contains(&kind) {
            errs.push(FieldError::not_supported("spec.type", kind, SERVICE_TYPES));
        }
        let ports = spec.ports.as_deref().unwrap_or_default();
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if ports.is_empty() && kind != "ExternalName" && !headless {
            errs.push(FieldError::required("spec.ports"));
        }
        if kind == "ExternalName" && spec.external_name.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required("spec.externalName"));
        }
        let mut names = HashSet::new();
        for (i, p) in ports.iter().enumerate() {
            let name = p.name.as_deref().unwrap_or_default();
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(format!("spec.ports[{i}].name")));
            } else if !name.is_empty() && !names.insert(name) {
                errs.push(FieldError::duplicate(format!("spec.ports[{i}].name"), name));
            }
            if !(1..=65535).contains(&p.port) {
                errs.push(FieldError::invalid(
                    format!("spec.ports[{i}].port"),
                    p.port,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(proto) = p.protocol.as_deref().filter(|p| !["TCP", "UDP", "SCTP"].contains(p)) {
                errs.push(FieldError::not_supported(
                    format!("spec.ports[{i}].protocol"),
                    proto,
                    &["SCTP", "TCP", "UDP"],
                ));
            }
            if let Some(IntOrString::Int(t)) = &p.target_port
                && !(1..=65535).contains(t)
            {
                errs.push(FieldError::invalid(
                    format!("spec.ports[{i}].targetPort"),
                    t,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if p.node_port.unwrap_or(0) != 0 && !wants_node_ports(kind) {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
        if let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None") {
            match ip.parse::<Ipv4Addr>() {
                Ok(addr) if self.ranges.cidr.contains(addr) => {}
                _ => errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    ip,
                    "failed to allocate IP: the provided IP is not in the valid range",
                )),
            }
        }
        errs.extend(validate_labels(spec.selector.as_ref(), "spec.selector"));
        errs
    }

    fn validate_update(&self, new: &Service, old: &Service) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let old_ip = old.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default();
        let new_ip = new.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default();
        let external_name = new.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
        if !old_ip.is_empty() && old_ip != new_ip && !external_name {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                &new_ip,
                "may not change once set",
            ));
        }
        errs
    }

    async fn allocate(&self, svc: &mut Service, old: Option<&Service>) -> Result<(), Error> {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let held_ips = old.map(cluster_ips).unwrap_or_default();
        let held_ports = old.map(node_ports_of).unwrap_or_default();
        let Some(spec) = svc.spec.as_mut() else {
            return Ok(());
        };
        let kind = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
        // What to take: `None` for any free value, `Some` for the one the client named. Values
        // the stored Service already holds are kept, not taken again.
        let wanted_ip: Vec<Option<u32>> = match spec.cluster_ip.as_deref() {
            _ if kind == "ExternalName" => vec![],
            Some("None") => vec![],
            None | Some("") => vec![None],
            Some(ip) => ip
                .parse::<Ipv4Addr>()
                .map(u32::from)
                .ok()
                .filter(|ip| !held_ips.contains(ip))
                .map(Some)
                .into_iter()
                .collect(),
        };
        let wanted_ports: Vec<(usize, Option<u32>)> = match &spec.ports {
            Some(ports) if wants_node_ports(&kind) => ports
                .iter()
                .enumerate()
                .filter_map(|(i, p)| match p.node_port.filter(|n| *n > 0) {
                    None => Some((i, None)),
                    Some(port) if held_ports.contains(&(port as u32)) => None,
                    Some(port) => Some((i, Some(port as u32))),
                })
                .collect(),
            _ => vec![],
        };
        let ips = self.ranges.ips.allocate(&wanted_ip).await.map_err(|err| {
            self.refused(&name, err, |_| match spec.cluster_ip.as_deref() {
                Some(ip) if !ip.is_empty() => ("spec.clusterIPs[0]".into(), ip.into()),
                _ => ("spec.clusterIPs".into(), String::new()),
            })
        })?;
        let ports_asked: Vec<Option<u32>> = wanted_ports.iter().map(|(_, port)| *port).collect();
        let ports = match self.ranges.node_ports.allocate(&ports_asked).await {
            Ok(ports) => ports,
            Err(err) => {
                self.give_back(&ips, &[]).await;
                return Err(self.refused(&name, err, |index| {
                    let (i, port) = wanted_ports[index];
                    (
                        format!("spec.ports[{i}].nodePort"),
                        port.map(|p| p.to_string()).unwrap_or_default(),
                    )
                }));
            }
        };
        if let Some(ip) = ips.first() {
            spec.cluster_ip = Some(Ipv4Addr::from(*ip).to_string());
        }
        if kind != "ExternalName" {
            spec.cluster_ips = spec.cluster_ip.clone().map(|ip| vec![ip]);
        }
        if let Some(service_ports) = spec.ports.as_mut() {
            for ((i, _), port) in wanted_ports.iter().zip(ports) {
                service_ports[*i].node_port = Some(port as i32);
            }
        }
        Ok(())
    }

    async fn release(&self, svc: &Service) {
        self.give_back(&cluster_ips(svc), &node_ports_of(svc)).await;
    }

    async fn release_unused(&self, kept: &Service, dropped: &Service) {
        let unused =
            |held: Vec<u32>, kept: Vec<u32>| -> Vec<u32> { held.into_iter().filter(|v| !kept.contains(v)).collect() };
        self.give_back(
            &unused(cluster_ips(dropped), cluster_ips(kept)),
            &unused(node_ports_of(dropped), node_ports_of(kept)),
        )
        .await;
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::SERVICE_COLUMNS)
    }

    fn cells(&self, svc: &Service) -> Vec<Value> {
        printers::service_cells(svc)
    }
}

/// Endpoints: written by the endpoints controller, created by PUT as upstream allows.
pub(crate) struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    type Object = Endpoints;
    const CREATE_ON_UPDATE: bool = true;

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::ENDPOINTS_COLUMNS)
    }

    fn cells(&self, ep: &Endpoints) -> Vec<Value> {
        printers::endpoints_cells(ep)
    }
}

/// `[-._a-zA-Z0-9]+`, the keys of ConfigMap and Secret data.
fn validate_data_keys<'a>(keys: impl Iterator<Item = &'a String>, path: &str) -> Vec<FieldError> {
    keys.filter(|k| k.is_empty() || k.len() > 253 || !k.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
        .map(|k| FieldError::invalid(format!("{path}[{k}]"), k, "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"))
        .collect()
}

/// ConfigMaps: data keys, and `immutable`.
pub(crate) struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    type Object = ConfigMap;

    fn validate(&self, cm: &ConfigMap) -> Vec<FieldError> {
        let mut errs = validate_data_keys(cm.data.iter().flat_map(BTreeMap::keys), "data");
        errs.extend(validate_data_keys(
            cm.binary_data.iter().flat_map(BTreeMap::keys),
            "binaryData",
        ));
        errs
    }

    fn validate_update(&self, new: &ConfigMap, old: &ConfigMap) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if old.immutable == Some(true) {
            if new.immutable != Some(true) {
                errs.push(FieldError::forbidden(
                    "immutable",
                    "field is immutable when `immutable` is set",
                ));
            }
            if new.data != old.data || new.binary_data != old.binary_data {
                errs.push(FieldError::forbidden(
                    "data",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        errs
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::CONFIGMAP_COLUMNS)
    }

    fn cells(&self, cm: &ConfigMap) -> Vec<Value> {
        printers::configmap_cells(cm)
    }
}

/// Secrets: `Opaque` by default, data keys, `immutable`, and an immutable `type`.
pub(crate) struct SecretStrategy;

impl Strategy for SecretStrategy {
    type Object = Secret;
    const SELECTABLE_FIELDS: &'static [&'static str] = &["type"];

    fn default(&self, s: &mut Secret) {
        s.type_.get_or_insert_with(|| "Opaque".into());
        // stringData is write-only: it is merged into data and never stored.
        if let Some(strings) = s.string_data.take() {
            let data = s.data.get_or_insert_with(BTreeMap::new);
            for (k, v) in strings {
                data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
            }
        }
    }

    fn validate(&self, s: &Secret) -> Vec<FieldError> {
        validate_data_keys(s.data.iter().flat_map(BTreeMap::keys), "data")
    }

    fn validate_update(&self, new: &Secret, old: &Secret) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if new.type_ != old.type_ {
            errs.push(FieldError::immutable("type", new.type_.clone().unwrap_or_default()));
        }
        if old.immutable == Some(true) && new.data != old.data {
            errs.push(FieldError::forbidden(
                "data",
                "field is immutable when `immutable` is set",
            ));
        }
        errs
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::SECRET_COLUMNS)
    }

    fn cells(&self, s: &Secret) -> Vec<Value> {
        printers::secret_cells(s)
    }
}

/// ServiceAccounts: nothing beyond the common rules.
pub(crate) struct ServiceAccountStrategy;

impl Strategy for ServiceAccountStrategy {
    type Object = ServiceAccount;

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::SERVICEACCOUNT_COLUMNS)
    }

    fn cells(&self, sa: &ServiceAccount) -> Vec<Value> {
        printers::serviceaccount_cells(sa)
    }
}

/// Events: created by PUT too, selectable by the fields `kubectl describe` uses.
pub(crate) struct EventStrategy;

impl Strategy for EventStrategy {
    type Object = Event;
    const CREATE_ON_UPDATE: bool = true;
    const SELECTABLE_FIELDS: &'static [&'static str] = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::EVENT_COLUMNS)
    }

    fn cells(&self, e: &Event) -> Vec<Value> {
        printers::event_cells(e)
    }
}

/// ReplicationControllers: the selector defaults to the template's labels.
pub(crate) struct ReplicationControllerStrategy;

impl Strategy for ReplicationControllerStrategy {
    type Object = ReplicationController;
    const GENERATION: bool = true;

    fn default(&self, rc: &mut ReplicationController) {
        let spec = rc.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        spec.min_ready_seconds.get_or_insert(0);
        if let Some(template) = spec.template.as_mut() {
            if spec.selector.as_ref().is_none_or(BTreeMap::is_empty) {
                spec.selector = template.metadata.as_ref().and_then(|m| m.labels.clone());
            }
            if let Some(pod) = template.spec.as_mut() {
                default_pod_spec(pod);
            }
        }
        if rc.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            rc.metadata.labels = spec
                .template
                .as_ref()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.clone());
        }
    }

    fn validate(&self, rc: &ReplicationController) -> Vec<FieldError> {
        let Some(spec) = &rc.spec else {
            return vec![FieldError::required("spec")];
        };
        let mut errs = Vec::new();
        let selector = spec.selector.clone().unwrap_or_default();
        if selector.is_empty() {
            errs.push(FieldError::required("spec.selector"));
        }
        match &spec.template {
            None => errs.push(FieldError::required("spec.template")),
            Some(t) => {
                let labels = t.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
                if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        format!("{labels:?}"),
                        "`selector` does not match template `labels`",
                    ));
                }
                match &t.spec {
                    Some(pod) => errs.extend(validate_pod_spec(pod, "spec.template.spec")),
                    None => errs.push(FieldError::required("spec.template.spec")),
                }
            }
        }
        if let Some(r) = spec.replicas.filter(|r| *r < 0) {
            errs.push(FieldError::invalid(
                "spec.replicas",
                r,
                "must be greater than or equal to 0",
            ));
        }
        errs
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::REPLICAS_COLUMNS)
    }

    fn cells(&self, rc: &ReplicationController) -> Vec<Value> {
        printers::replicationcontroller_cells(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD_STRATEGY: PodStrategy = PodStrategy(DefaultTolerations {
        not_ready_seconds: 300,
        unreachable_seconds: 300,
    });
    use serde_json::json;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_defaults_follow_upstream() {
        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox:1.36", "ports": [{"containerPort": 80}]}]}}));
        POD_STRATEGY.default(&mut p);
        POD_STRATEGY.prepare_for_create(&mut p);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(spec.containers[1].image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            spec.containers[1].ports.as_ref().unwrap()[0].protocol.as_deref(),
            Some("TCP")
        );
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 2);
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));
        assert_eq!(p.status.as_ref().unwrap().qos_class.as_deref(), Some("BestEffort"));
    }

    #[test]
    fn default_toleration_seconds_respect_tolerations_the_pod_has() {
        let defaulted = |tolerations: Value| {
            let mut p = pod(json!({"metadata": {"name": "p"}, "spec": {"tolerations": tolerations,
                "containers": [{"name": "a", "image": "busybox"}]}}));
            POD_STRATEGY.prepare_for_create(&mut p);
            let tolerations = p.spec.unwrap().tolerations.unwrap();
            tolerations
                .into_iter()
                .map(|t| (t.key, t.toleration_seconds))
                .collect::<Vec<_>>()
        };
        let key = |k: &str| Some(k.to_string());
        assert_eq!(
            defaulted(json!([])),
            [
                (key("node.kubernetes.io/not-ready"), Some(300)),
                (key("node.kubernetes.io/unreachable"), Some(300))
            ]
        );
        // Tolerating everything, or one key for every effect, leaves nothing to add.
        assert_eq!(defaulted(json!([{"operator": "Exists"}])), [(None, None)]);
        assert_eq!(
            defaulted(json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 5}])),
            [
                (key("node.kubernetes.io/unreachable"), Some(5)),
                (key("node.kubernetes.io/not-ready"), Some(300))
            ]
        );
        // The flags set the seconds.
        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}}));
        PodStrategy(DefaultTolerations {
            not_ready_seconds: 10,
            unreachable_seconds: 20,
        })
        .prepare_for_create(&mut p);
        let seconds: Vec<_> = p
            .spec
            .unwrap()
            .tolerations
            .unwrap()
            .iter()
            .map(|t| t.toleration_seconds)
            .collect();
        assert_eq!(seconds, [Some(10), Some(20)]);
    }

    #[test]
    fn pod_validation_names_missing_fields() {
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "a", "image": "x"}]}}),
        );
        let fields: Vec<String> = POD_STRATEGY.validate(&p).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["spec.containers[0].image", "spec.containers[1].name"]);
    }

    #[test]
    fn pod_updates_may_only_change_images() {
        let old = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}}));
        let image = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "y"}]}}));
        let command = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x", "command": ["sh"]}]}}),
        );
        assert!(POD_STRATEGY.validate_update(&image, &old).is_empty());
        assert_eq!(POD_STRATEGY.validate_update(&command, &old)[0].field, "spec");
    }

    #[test]
    fn binding_assigns_once() {
        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}}));
        POD_STRATEGY
            .bind(&mut p, &json!({"target": {"name": "node-1"}}))
            .unwrap();
        assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("node-1"));
        assert!(matches!(
            POD_STRATEGY.bind(&mut p, &json!({"target": {"name": "node-2"}})),
            Err(Error::Conflict { .. })
        ));
    }

    /// A Service strategy on ranges in a fresh embedded store, repaired once as at start.
    async fn service_strategy(
        cidr: &str,
        ports: std::ops::RangeInclusive<u16>,
    ) -> (tempfile::TempDir, ServiceStrategy) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::apiserver::storage::EmbeddedStore::open(dir.path(), 100).unwrap());
        let ranges = Arc::new(ServiceRanges::new(cidr.parse().unwrap(), ports, store));
        ranges.repair().await.unwrap();
        let info = crate::api::resources::find("", "v1", "services").unwrap();
        (dir, ServiceStrategy::new(info, ranges))
    }

    fn service(strategy: &ServiceStrategy, spec: Value) -> Service {
        let mut svc: Service = serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": spec})).unwrap();
        strategy.default(&mut svc);
        svc
    }

    #[tokio::test]
    async fn services_get_a_cluster_ip_and_node_ports_that_are_released() {
        let (_dir, strategy) = service_strategy("10.0.0.0/29", 30000..=30001).await;
        let mut svc = service(&strategy, json!({"type": "NodePort", "ports": [{"port": 80}]}));
        assert!(strategy.validate(&svc).is_empty());
        strategy.allocate(&mut svc, None).await.unwrap();
        let spec = svc.spec.clone().unwrap();
        let ip: Ipv4Addr = spec.cluster_ip.unwrap().parse().unwrap();
        assert!(strategy.ranges.cidr.contains(ip));
        let port = spec.ports.unwrap()[0].node_port.unwrap();
        assert!((30000..=30001).contains(&port));

        // Naming a taken port is refused, and gives back the address it took meanwhile.
        let mut clash = service(
            &strategy,
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}),
        );
        let err = strategy.allocate(&mut clash, None).await.unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { causes, .. } if causes[0].field == "spec.ports[0].nodePort"),
            "{err:?}"
        );
        let ranges = &strategy.ranges;
        let other_ips = ranges
            .ips
            .allocate(&[None; 5])
            .await
            .expect("the /29's five other addresses are free");
        ranges.ips.release(&other_ips).await.unwrap();

        strategy.release(&svc).await;
        assert!(ranges.ips.allocate(&[Some(u32::from(ip))]).await.is_ok());
        assert!(ranges.node_ports.allocate(&[Some(port as u32)]).await.is_ok());
    }

    #[tokio::test]
    async fn service_validation_rejects_bad_ports() {
        let (_dir, strategy) = service_strategy("10.0.0.0/24", 30000..=32767).await;
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "s"},
            "spec": {"ports": [{"port": 0}, {"port": 80}]}}))
        .unwrap();
        let fields: Vec<String> = strategy.validate(&svc).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["spec.ports[0].name", "spec.ports[0].port", "spec.ports[1].name"]
        );
    }
}
