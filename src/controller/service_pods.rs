//! What the Endpoints and EndpointSlice controllers share: which pods back a Service, which of
//! them count, on which ports, and which Services a pod change concerns. Mirrors upstream's
//! `k8s.io/endpointslice/util` and `pkg/api/v1/pod` helpers (`ShouldPodBeInEndpoints`,
//! `FindPort`, `IsPodReady`).

use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Context;
use super::pods::{is_finished, is_ready};
use crate::api::selector::LabelSelector;
use crate::informer::{Change, Informer, ObjectKey};
use crate::workqueue::WorkQueue;

/// A Service port resolved against one pod's container ports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ResolvedPort {
    pub(super) name: Option<String>,
    pub(super) port: i32,
    pub(super) protocol: String,
    pub(super) app_protocol: Option<String>,
}

/// One pod backing a Service, as both controllers describe it.
#[derive(Debug, Clone)]
pub(super) struct Backend {
    /// Its IPv4 address.
    pub(super) ip: String,
    /// The Service's ports this pod serves, in the Service's order; ports it cannot serve are left out.
    pub(super) ports: Vec<ResolvedPort>,
    /// The pod's Ready condition is True.
    pub(super) ready: bool,
    /// The pod is being deleted.
    pub(super) terminating: bool,
    pub(super) hostname: Option<String>,
    pub(super) node_name: Option<String>,
    pub(super) target_ref: ObjectReference,
}

/// The Service's selector, when this controller manages its endpoints: Services without one
/// (their endpoints are the user's) and ExternalName Services get none.
pub(super) fn selector(service: &Service) -> Option<LabelSelector> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector
        .as_ref()
        .filter(|s| !s.is_empty())
        .map(LabelSelector::from)
}

/// The label on the Endpoints and EndpointSlices of Services without a cluster IP.
pub(super) const HEADLESS: &str = "service.kubernetes.io/headless";

/// Whether the Service is headless: it has no cluster IP (upstream's `!IsServiceIPSet`).
pub(super) fn is_headless(service: &Service) -> bool {
    let ip = service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or_default();
    ip.is_empty() || ip == "None"
}

/// Whether the Service asks for its pods' addresses whether they are ready or not.
pub(super) fn publish_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The pods backing `service`, sorted by name: selected, not finished, with an IPv4 address, and
/// not terminating unless `include_terminating`.
pub(super) fn backends(service: &Service, pods: &Informer<Pod>, include_terminating: bool) -> Vec<Backend> {
    let Some(selector) = selector(service) else {
        return Vec::new();
    };
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let mut selected: Vec<_> = pods
        .list_namespace(namespace)
        .into_iter()
        .filter(|pod| selector.matches(pod.metadata.labels.as_ref()))
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    selected
        .iter()
        .filter_map(|pod| backend(service, pod, include_terminating))
        .collect()
}

fn backend(service: &Service, pod: &Pod, include_terminating: bool) -> Option<Backend> {
    let terminating = pod.metadata.deletion_timestamp.is_some();
    if is_finished(pod) || (terminating && !include_terminating) {
        return None;
    }
    let ip = ipv4(pod)?;
    let spec = pod.spec.as_ref();
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .filter(|_| {
            spec.and_then(|s| s.subdomain.as_deref()) == service.metadata.name.as_deref()
                && pod.metadata.namespace == service.metadata.namespace
        });
    Some(Backend {
        ip,
        ports: service_ports.iter().filter_map(|sp| resolve(pod, sp)).collect(),
        ready: is_ready(pod),
        terminating,
        hostname,
        node_name: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        target_ref: ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
    })
}

/// The pod's IPv4 address: `status.podIP`, or the first IPv4 one of `status.podIPs`.
fn ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let podips = status.pod_ips.iter().flatten().map(|p| &p.ip);
    status
        .pod_ip
        .iter()
        .chain(podips)
        .find(|ip| ip.parse::<Ipv4Addr>().is_ok())
        .cloned()
}

/// The port a Service port reaches on `pod`: its `targetPort` number, or the container port its
/// `targetPort` names (with the same protocol); `None` when the pod has no such named port.
fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    let port = match sp.target_port.as_ref() {
        None => sp.port,
        Some(IntOrString::Int(port)) => *port,
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol)?
                .container_port
        }
    };
    Some(port)
}

fn resolve(pod: &Pod, sp: &ServicePort) -> Option<ResolvedPort> {
    Some(ResolvedPort {
        name: sp.name.clone().filter(|n| !n.is_empty()),
        port: find_port(pod, sp)?,
        protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
        app_protocol: sp.app_protocol.clone(),
    })
}

/// Registers handlers that queue the key of every Service a change concerns: the Service itself,
/// and for a pod every Service in its namespace that selects it before or after the change.
/// Returns the two informers for the controller's sync.
pub(super) fn watch(ctx: &Context, queue: &Arc<WorkQueue<ObjectKey>>) -> (Arc<Informer<Service>>, Arc<Informer<Pod>>) {
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    services.add_handler({
        let queue = queue.clone();
        move |change| queue.add(ObjectKey::of(&**change.object()))
    });
    pods.add_handler({
        let queue = queue.clone();
        let services = services.clone();
        move |change| {
            let (old, new) = match change {
                Change::Added(pod) | Change::Deleted(pod) => (None, pod),
                Change::Updated { old, new } => (Some(old), new),
            };
            let namespace = new.metadata.namespace.as_deref().unwrap_or_default();
            for service in services.list_namespace(namespace) {
                let Some(selector) = selector(&service) else { continue };
                let selects = |pod: &Pod| selector.matches(pod.metadata.labels.as_ref());
                if selects(new) || old.is_some_and(|old| selects(old)) {
                    queue.add(ObjectKey::of(&*service));
                }
            }
        }
    });
    (services, pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn target_ports_resolve_by_number_or_by_container_port_name_and_protocol() {
        let pod = pod(json!({"spec": {"containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]}}));
        let port = |v: serde_json::Value| serde_json::from_value::<ServicePort>(v).unwrap();
        assert_eq!(
            find_port(&pod, &port(json!({"port": 80, "targetPort": 9090}))),
            Some(9090)
        );
        assert_eq!(
            find_port(&pod, &port(json!({"port": 80, "targetPort": "http"}))),
            Some(8080)
        );
        assert_eq!(find_port(&pod, &port(json!({"port": 53, "targetPort": "dns"}))), None);
        let udp = port(json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}));
        assert_eq!(resolve(&pod, &udp).map(|p| p.port), Some(5353));
        assert_eq!(find_port(&pod, &port(json!({"port": 80, "targetPort": "nope"}))), None);
    }

    #[test]
    fn finished_unaddressed_and_terminating_pods_are_left_out() {
        let svc = service(json!({"metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}));
        let running = |extra: serde_json::Value| {
            let mut v = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
                "spec": {"containers": []},
                "status": {"phase": "Running", "podIP": "10.0.0.1",
                           "conditions": [{"type": "Ready", "status": "True"}]}});
            json_patch::merge(&mut v, &extra);
            pod(v)
        };
        let b = backend(&svc, &running(json!({})), false).unwrap();
        assert!(b.ready && !b.terminating);
        assert_eq!((b.ip.as_str(), b.ports[0].port), ("10.0.0.1", 80));
        assert!(backend(&svc, &running(json!({"status": {"phase": "Succeeded"}})), true).is_none());
        assert!(backend(&svc, &running(json!({"status": {"podIP": null}})), true).is_none());
        assert!(backend(&svc, &running(json!({"status": {"podIP": "fd00::1"}})), true).is_none());
        let deleting = running(json!({"metadata": {"deletionTimestamp": "2030-01-01T00:00:00Z"}}));
        assert!(backend(&svc, &deleting, false).is_none());
        assert!(backend(&svc, &deleting, true).unwrap().terminating);
    }

    #[test]
    fn services_without_a_selector_or_of_type_external_name_are_not_managed() {
        assert!(selector(&service(json!({"spec": {"ports": [{"port": 80}]}}))).is_none());
        assert!(selector(&service(json!({"spec": {"selector": {}}}))).is_none());
        assert!(
            selector(&service(
                json!({"spec": {"type": "ExternalName", "selector": {"a": "b"}}})
            ))
            .is_none()
        );
        assert!(selector(&service(json!({"spec": {"selector": {"a": "b"}}}))).is_some());
    }
}
