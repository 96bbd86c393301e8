//! The cluster's records, as the Kubernetes DNS specification (kubernetes/dns,
//! docs/specification.md, schema 1.1.0) lays them out, built in one pass from the Services and
//! EndpointSlices in the informers' caches and then only read:
//!
//! - `SVC.NS.svc.DOMAIN`: A/AAAA of the cluster IPs, or of the ready endpoints when headless;
//!   a CNAME to `spec.externalName` for ExternalName services.
//! - `HOST.SVC.NS.svc.DOMAIN`: each ready endpoint of a headless service, named by its
//!   `hostname` or, without one, by its address with dashes (CoreDNS's naming).
//! - `_PORT._PROTO.SVC.NS.svc.DOMAIN`: SRV for each named port, pointing at the service (or at
//!   each endpoint's name when headless).
//! - PTR for every cluster IP and headless endpoint address, `dns-version.DOMAIN` TXT, and the
//!   SOA at the apex that negative answers carry.
//!
//! Names are matched case-insensitively; a name with records below it but none of its own (such
//! as `NS.svc.DOMAIN`) exists, and answers NODATA rather than NXDOMAIN (RFC 8020).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The TTL of every record served from the cluster's state: kube-dns's 30 seconds.
pub(super) const TTL: u32 = 30;
/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The schema version `dns-version.DOMAIN` reports.
const SCHEMA_VERSION: &str = "1.1.0";
/// How many CNAMEs inside the zone an answer follows.
const MAX_CHAIN: usize = 8;

/// A snapshot of the cluster's records.
pub(super) struct Zone {
    origin: Name,
    /// Lowercased owner name → its records (in the cluster domain and the reverse zones).
    records: HashMap<Name, Vec<RData>>,
    /// Every name in the cluster domain that exists: owners and their ancestors up to `origin`.
    names: HashSet<Name>,
    soa: SOA,
}

/// What the zone says about one question.
#[derive(Debug, Default)]
pub(super) struct Answer {
    pub(super) rcode: ResponseCode,
    pub(super) answers: Vec<Record>,
    /// The SOA that negative answers in the cluster domain carry.
    pub(super) authorities: Vec<Record>,
    /// The addresses of SRV targets.
    pub(super) additionals: Vec<Record>,
    /// Where a CNAME leads out of the cluster domain: its records come from upstream.
    pub(super) chase: Option<Name>,
}

impl Zone {
    /// The records for `origin` (a lowercased FQDN such as `cluster.local.`) from these objects.
    /// `serial` is the SOA's serial number, which should grow with every rebuild.
    pub(super) fn build(origin: &Name, serial: u32, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Self {
        let mut zone = Zone {
            origin: origin.clone(),
            records: HashMap::new(),
            names: HashSet::new(),
            soa: soa(origin, serial),
        };
        zone.add(origin.clone(), RData::SOA(zone.soa.clone()));
        if let Ok(version) = Name::from_ascii("dns-version").and_then(|n| n.append_domain(origin)) {
            zone.add(version, RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_owned()])));
        }
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let labels = slice.metadata.labels.as_ref();
            if let (Some(ns), Some(svc)) = (
                slice.metadata.namespace.as_deref(),
                labels.and_then(|l| l.get(SERVICE_NAME_LABEL)),
            ) {
                by_service.entry((ns, svc.as_str())).or_default().push(slice);
            }
        }
        for service in services {
            let (Some(ns), Some(name)) = (service.metadata.namespace.as_deref(), service.metadata.name.as_deref())
            else {
                continue;
            };
            let Ok(base) = Name::from_ascii(format!("{name}.{ns}.svc")).and_then(|n| n.append_domain(origin)) else {
                continue;
            };
            let slices = by_service.get(&(ns, name)).map(Vec::as_slice).unwrap_or_default();
            zone.add_service(service, base, slices);
        }
        zone
    }

    fn add_service(&mut self, service: &Service, base: Name, slices: &[&EndpointSlice]) {
        let Some(spec) = &service.spec else { return };
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = spec.external_name.as_deref().and_then(|t| Name::from_ascii(t).ok()) {
                let mut target = target.to_lowercase();
                target.set_fqdn(true);
                self.add(base, RData::CNAME(CNAME(target)));
            }
            return;
        }
        if spec.cluster_ip.as_deref() == Some("None") {
            let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
            self.add_headless(&base, slices, publish_not_ready);
            return;
        }
        let ips = spec
            .cluster_ips
            .clone()
            .unwrap_or_else(|| spec.cluster_ip.iter().cloned().collect());
        let ips: Vec<IpAddr> = ips.iter().filter_map(|ip| ip.parse().ok()).collect();
        if ips.is_empty() {
            return;
        }
        for ip in ips {
            self.add(base.clone(), address(ip));
            self.add(Name::from(ip), RData::PTR(PTR(base.clone())));
        }
        for port in spec.ports.iter().flatten() {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            if let Some(srv) = port.name.as_deref().and_then(|p| srv_name(p, protocol, &base)) {
                let port = u16::try_from(port.port).unwrap_or_default();
                self.add(srv, RData::SRV(SRV::new(0, 100, port, base.clone())));
            }
        }
    }

    fn add_headless(&mut self, base: &Name, slices: &[&EndpointSlice], publish_not_ready: bool) {
        // SRV name → (port, target) of every endpoint serving it; weights follow the count.
        let mut srv: BTreeMap<Name, Vec<(u16, Name)>> = BTreeMap::new();
        for slice in slices {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            for endpoint in slice.endpoints.iter().flatten() {
                let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                if !(ready || publish_not_ready) {
                    continue;
                }
                for ip in endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                    let host = endpoint.hostname.clone().unwrap_or_else(|| dashed(ip));
                    let Ok(target) = Name::from_ascii(&host).and_then(|h| h.append_domain(base)) else {
                        continue;
                    };
                    self.add(base.clone(), address(ip));
                    self.add(target.clone(), address(ip));
                    self.add(Name::from(ip), RData::PTR(PTR(target.clone())));
                    for port in slice.ports.iter().flatten() {
                        let protocol = port.protocol.as_deref().unwrap_or("TCP");
                        let number = port.port.and_then(|p| u16::try_from(p).ok());
                        if let (Some(name), Some(number)) =
                            (port.name.as_deref().and_then(|p| srv_name(p, protocol, base)), number)
                        {
                            srv.entry(name).or_default().push((number, target.clone()));
                        }
                    }
                }
            }
        }
        for (name, targets) in srv {
            let weight = u16::try_from(100 / targets.len()).unwrap_or(1).max(1);
            for (port, target) in targets {
                self.add(name.clone(), RData::SRV(SRV::new(0, weight, port, target)));
            }
        }
    }

    fn add(&mut self, name: Name, rdata: RData) {
        let name = name.to_lowercase();
        if self.origin.zone_of(&name) {
            let mut ancestor = name.clone();
            while self.names.insert(ancestor.clone()) && ancestor != self.origin {
                ancestor = ancestor.base_name();
            }
        }
        let records = self.records.entry(name).or_default();
        if !records.contains(&rdata) {
            records.push(rdata);
        }
    }

    /// The answer to `qtype` at `name`, or `None` when the name is not the zone's to answer (it
    /// lies outside the cluster domain and is no known address's reverse name).
    pub(super) fn lookup(&self, name: &Name, qtype: RecordType) -> Option<Answer> {
        let mut answer = Answer::default();
        let mut owner = name.clone();
        for _ in 0..MAX_CHAIN {
            let key = owner.to_lowercase();
            let Some(rdatas) = self.records.get(&key) else {
                if !self.origin.zone_of(&key) {
                    if answer.answers.is_empty() {
                        return None;
                    }
                    answer.chase = Some(owner);
                    return Some(answer);
                }
                if !self.names.contains(&key) {
                    answer.rcode = ResponseCode::NXDomain;
                }
                answer.authorities.push(self.soa_record());
                return Some(answer);
            };
            let matching: Vec<&RData> = rdatas
                .iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                .collect();
            let cname = rdatas.iter().find_map(|r| match r {
                RData::CNAME(CNAME(target)) if matching.is_empty() => Some(target.clone()),
                _ => None,
            });
            if let Some(target) = cname {
                answer
                    .answers
                    .push(Record::from_rdata(owner, TTL, RData::CNAME(CNAME(target.clone()))));
                owner = target;
                continue;
            }
            for rdata in matching {
                if let RData::SRV(srv) = rdata {
                    self.add_target_addresses(&srv.target, &mut answer.additionals);
                }
                answer
                    .answers
                    .push(Record::from_rdata(owner.clone(), TTL, rdata.clone()));
            }
            if answer.answers.is_empty() && self.origin.zone_of(&key) {
                answer.authorities.push(self.soa_record());
            }
            return Some(answer);
        }
        answer.rcode = ResponseCode::ServFail;
        Some(answer)
    }

    fn add_target_addresses(&self, target: &Name, additionals: &mut Vec<Record>) {
        let records = self.records.get(&target.to_lowercase()).into_iter().flatten();
        for rdata in records.filter(|r| matches!(r, RData::A(_) | RData::AAAA(_))) {
            let record = Record::from_rdata(target.clone(), TTL, rdata.clone());
            if !additionals.contains(&record) {
                additionals.push(record);
            }
        }
    }

    fn soa_record(&self) -> Record {
        Record::from_rdata(self.origin.clone(), TTL, RData::SOA(self.soa.clone()))
    }
}

/// Whether `name` lies in the cluster domain `origin`, where this server answers every name.
pub(super) fn in_domain(origin: &Name, name: &Name) -> bool {
    origin.zone_of(&name.to_lowercase())
}

fn soa(origin: &Name, serial: u32) -> SOA {
    let under = |label: &str| Name::from_ascii(label).and_then(|n| n.append_domain(origin));
    SOA::new(
        under("ns.dns").unwrap_or_else(|_| origin.clone()),
        under("hostmaster").unwrap_or_else(|_| origin.clone()),
        serial,
        7200,
        1800,
        86400,
        TTL,
    )
}

fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// `_PORT._PROTO.BASE`, or `None` when the port's name cannot be a label.
fn srv_name(port: &str, protocol: &str, base: &Name) -> Option<Name> {
    Name::from_ascii(format!("_{port}._{}", protocol.to_ascii_lowercase()))
        .and_then(|n| n.append_domain(base))
        .ok()
}

/// An address as one label: `10-244-0-5`, `fd00--5`.
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn origin() -> Name {
        Name::from_ascii("cluster.local.").unwrap()
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn zone(services: serde_json::Value, slices: serde_json::Value) -> Zone {
        let services: Vec<Service> = serde_json::from_value(services).unwrap();
        let slices: Vec<EndpointSlice> = serde_json::from_value(slices).unwrap();
        let services: Vec<Arc<Service>> = services.into_iter().map(Arc::new).collect();
        let slices: Vec<Arc<EndpointSlice>> = slices.into_iter().map(Arc::new).collect();
        Zone::build(&origin(), 1, &services, &slices)
    }

    fn data(answer: &Answer) -> Vec<String> {
        answer.answers.iter().map(|r| r.data.to_string()).collect()
    }

    fn headless() -> Zone {
        zone(
            json!([{"metadata": {"name": "db", "namespace": "prod"},
                    "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}]),
            json!([{"metadata": {"name": "db-1", "namespace": "prod",
                                 "labels": {"kubernetes.io/service-name": "db"}},
                    "addressType": "IPv4",
                    "ports": [{"name": "pg", "port": 5433, "protocol": "TCP"}],
                    "endpoints": [
                        {"addresses": ["10.244.0.2"], "hostname": "db-0", "conditions": {"ready": true}},
                        {"addresses": ["10.244.0.3"]},
                        {"addresses": ["10.244.0.4"], "conditions": {"ready": false}}]}]),
        )
    }

    #[test]
    fn headless_services_answer_their_ready_endpoints_only() {
        let zone = headless();
        let answer = zone.lookup(&name("db.prod.svc.cluster.local."), RecordType::A).unwrap();
        let mut ips = data(&answer);
        ips.sort();
        assert_eq!(ips, ["10.244.0.2", "10.244.0.3"]);
        let nx = zone.lookup(&name("10-244-0-4.db.prod.svc.cluster.local."), RecordType::A);
        assert_eq!(nx.unwrap().rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn headless_srv_points_at_each_endpoint_name_with_the_endpoint_port() {
        let zone = headless();
        let answer = zone
            .lookup(&name("_pg._tcp.db.prod.svc.cluster.local."), RecordType::SRV)
            .unwrap();
        let mut srv = data(&answer);
        srv.sort();
        assert_eq!(
            srv,
            [
                "0 50 5433 10-244-0-3.db.prod.svc.cluster.local.",
                "0 50 5433 db-0.db.prod.svc.cluster.local."
            ]
        );
        assert_eq!(answer.additionals.len(), 2, "{:?}", answer.additionals);
    }

    #[test]
    fn publish_not_ready_addresses_keeps_unready_endpoints() {
        let services = json!([{"metadata": {"name": "db", "namespace": "prod"},
                "spec": {"clusterIP": "None", "publishNotReadyAddresses": true}}]);
        let slices = json!([{"metadata": {"name": "db-1", "namespace": "prod",
                             "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.4"], "conditions": {"ready": false}}]}]);
        let answer = zone(services, slices)
            .lookup(&name("db.prod.svc.cluster.local."), RecordType::A)
            .unwrap();
        assert_eq!(data(&answer), ["10.244.0.4"]);
    }

    #[test]
    fn names_with_records_below_them_exist_without_records_of_their_own() {
        let zone = headless();
        for empty in [
            "prod.svc.cluster.local.",
            "svc.cluster.local.",
            "_tcp.db.prod.svc.cluster.local.",
        ] {
            let answer = zone.lookup(&name(empty), RecordType::A).unwrap();
            assert_eq!(answer.rcode, ResponseCode::NoError, "{empty}");
            assert!(answer.answers.is_empty());
            assert_eq!(answer.authorities[0].record_type(), RecordType::SOA);
        }
        let nx = zone.lookup(&name("staging.svc.cluster.local."), RecordType::A).unwrap();
        assert_eq!(nx.rcode, ResponseCode::NXDomain);
        assert!(zone.lookup(&name("example.com."), RecordType::A).is_none());
    }

    #[test]
    fn lookups_ignore_case_and_keep_the_question_s_spelling() {
        let answer = headless()
            .lookup(&name("DB.Prod.svc.Cluster.Local."), RecordType::A)
            .unwrap();
        assert_eq!(answer.answers.len(), 2);
        assert_eq!(answer.answers[0].name.to_string(), "DB.Prod.svc.Cluster.Local.");
    }

    #[test]
    fn external_names_are_cnames_chased_upstream() {
        let zone = zone(
            json!([{"metadata": {"name": "ext", "namespace": "default"},
                    "spec": {"type": "ExternalName", "externalName": "Example.COM"}}]),
            json!([]),
        );
        let answer = zone
            .lookup(&name("ext.default.svc.cluster.local."), RecordType::A)
            .unwrap();
        assert_eq!(data(&answer), ["example.com."]);
        assert_eq!(answer.chase, Some(name("example.com.")));
    }

    #[test]
    fn cluster_ips_have_reverse_records_and_named_ports_srv() {
        let zone = zone(
            json!([{"metadata": {"name": "web", "namespace": "default"},
                    "spec": {"clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7", "fd00::7"],
                             "ports": [{"name": "http", "port": 80}, {"port": 81}]}}]),
            json!([]),
        );
        let ptr = zone.lookup(&name("7.0.0.10.in-addr.arpa."), RecordType::PTR).unwrap();
        assert_eq!(data(&ptr), ["web.default.svc.cluster.local."]);
        let aaaa = zone
            .lookup(&name("web.default.svc.cluster.local."), RecordType::AAAA)
            .unwrap();
        assert_eq!(data(&aaaa), ["fd00::7"]);
        let srv = zone
            .lookup(&name("_http._tcp.web.default.svc.cluster.local."), RecordType::SRV)
            .unwrap();
        assert_eq!(data(&srv), ["0 100 80 web.default.svc.cluster.local."]);
        assert!(zone.lookup(&name("8.0.0.10.in-addr.arpa."), RecordType::PTR).is_none());
    }
}
