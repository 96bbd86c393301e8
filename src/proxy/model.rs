//! What the proxy programs, read from Services and EndpointSlices: one entry per service port
//! that has a virtual IP, with its ready endpoints (upstream's `ServicePort` and `Endpoint`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label tying an EndpointSlice to its Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One port of one Service, with where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServicePort {
    /// `namespace/name:port-name` (`namespace/name` for an unnamed port), as upstream logs it.
    pub(crate) name: String,
    pub(crate) protocol: Protocol,
    pub(crate) cluster_ip: Ipv4Addr,
    pub(crate) port: u16,
    pub(crate) node_port: Option<u16>,
    pub(crate) external_ips: Vec<Ipv4Addr>,
    /// `sessionAffinity: ClientIP`: how long a client sticks to its endpoint, in seconds.
    pub(crate) affinity_seconds: Option<u32>,
    /// Ready, not terminating endpoints, sorted.
    pub(crate) endpoints: Vec<(Ipv4Addr, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The name iptables takes (`-p tcp`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

/// Why a Service gets no rules; logged once per change, and the other Services keep theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skipped {
    pub(crate) service: String,
    pub(crate) reason: String,
}

/// The service ports of `services` with endpoints from `slices`. Headless and ExternalName
/// Services get none; an invalid one is reported in the second list.
pub(crate) fn service_ports(services: &[&Service], slices: &[&EndpointSlice]) -> (Vec<ServicePort>, Vec<Skipped>) {
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        let service = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
        if let (Some(ns), Some(service)) = (slice.metadata.namespace.as_deref(), service)
            && slice.address_type == "IPv4"
        {
            by_service.entry((ns, service.as_str())).or_default().push(slice);
        }
    }
    let (mut ports, mut skipped) = (Vec::new(), Vec::new());
    for service in services {
        let ns = service.metadata.namespace.as_deref().unwrap_or_default();
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let slices = by_service.get(&(ns, name)).map(Vec::as_slice).unwrap_or_default();
        match one_service(service, slices) {
            Ok(mut these) => ports.append(&mut these),
            Err(reason) => skipped.push(Skipped {
                service: format!("{ns}/{name}"),
                reason,
            }),
        }
    }
    ports.sort_by(|a, b| a.name.cmp(&b.name).then(a.protocol.cmp(&b.protocol)));
    (ports, skipped)
}

fn one_service(service: &Service, slices: &[&EndpointSlice]) -> Result<Vec<ServicePort>, String> {
    let Some(spec) = &service.spec else {
        return Ok(Vec::new());
    };
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") || cluster_ip.is_empty() || cluster_ip == "None" {
        return Ok(Vec::new());
    }
    let cluster_ip: Ipv4Addr = cluster_ip
        .parse()
        .map_err(|_| format!("clusterIP {cluster_ip:?} is not an IPv4 address"))?;
    let external_ips = spec
        .external_ips
        .iter()
        .flatten()
        .map(|ip| {
            ip.parse()
                .map_err(|_| format!("externalIP {ip:?} is not an IPv4 address"))
        })
        .collect::<Result<Vec<Ipv4Addr>, String>>()?;
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref()?.timeout_seconds)
            .map_or(10800, |s| s.clamp(1, 86400) as u32)
    });
    let ns = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let mut ports = Vec::new();
    for port in spec.ports.iter().flatten() {
        let port_name = port.name.clone().unwrap_or_default();
        let protocol = Protocol::parse(port.protocol.as_deref())
            .ok_or_else(|| format!("port {port_name:?}: unknown protocol {:?}", port.protocol))?;
        let number = u16::try_from(port.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {port_name:?}: {} is not a port number", port.port))?;
        let node_port = match port.node_port {
            Some(n) => Some(
                u16::try_from(n)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("port {port_name:?}: nodePort {n} is not a port number"))?,
            ),
            None => None,
        };
        ports.push(ServicePort {
            name: if port_name.is_empty() {
                format!("{ns}/{name}")
            } else {
                format!("{ns}/{name}:{port_name}")
            },
            protocol,
            cluster_ip,
            port: number,
            node_port,
            external_ips: external_ips.clone(),
            affinity_seconds,
            endpoints: ready_endpoints(slices, &port_name, protocol),
        });
    }
    Ok(ports)
}

/// The ready, not terminating endpoints of the slice port named `port_name` (upstream matches
/// slice ports to service ports by name).
fn ready_endpoints(slices: &[&EndpointSlice], port_name: &str, protocol: Protocol) -> Vec<(Ipv4Addr, u16)> {
    let mut out = Vec::new();
    for slice in slices {
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == port_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            // Upstream reads an unset `ready` as ready.
            if conditions.ready == Some(false) || conditions.terminating == Some(true) {
                continue;
            }
            out.extend(
                endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .map(|ip| (ip, number)),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": spec})).unwrap()
    }

    fn slice(endpoints: serde_json::Value, ports: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "ns", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports
        }))
        .unwrap()
    }

    #[test]
    fn ports_get_their_ready_endpoints_matched_by_port_name() {
        let svc = service(json!({"clusterIP": "10.0.0.10", "ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "dns", "port": 53, "protocol": "UDP"}
        ], "sessionAffinity": "ClientIP"}));
        let s = slice(
            json!([
                {"addresses": ["10.244.0.3"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.2"]},
                {"addresses": ["10.244.0.4"], "conditions": {"ready": false}},
                {"addresses": ["10.244.0.5"], "conditions": {"ready": true, "terminating": true}}
            ]),
            json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
        );
        let (ports, skipped) = service_ports(&[&svc], &[&s]);
        assert!(skipped.is_empty());
        assert_eq!(ports.len(), 2);
        let http = ports.iter().find(|p| p.name == "ns/web:http").unwrap();
        assert_eq!(
            http.endpoints,
            [
                ("10.244.0.2".parse().unwrap(), 8080),
                ("10.244.0.3".parse().unwrap(), 8080)
            ]
        );
        assert_eq!(http.affinity_seconds, Some(10800));
        let dns = ports.iter().find(|p| p.name == "ns/web:dns").unwrap();
        assert_eq!((dns.protocol, dns.endpoints.len()), (Protocol::Udp, 2));
    }

    #[test]
    fn headless_and_external_name_services_get_nothing_and_bad_ones_are_reported() {
        let headless = service(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        let external = service(json!({"type": "ExternalName", "externalName": "example.com"}));
        let bad = service(json!({"clusterIP": "10.0.0.11", "ports": [{"port": 80, "protocol": "ICMP"}]}));
        let (ports, skipped) = service_ports(&[&headless, &external, &bad], &[]);
        assert!(ports.is_empty());
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].reason.contains("unknown protocol"), "{:?}", skipped[0]);
    }
}
