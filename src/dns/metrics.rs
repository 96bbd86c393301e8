//! The DNS server's `/metrics`, under CoreDNS's names (`coredns_dns_requests_total`,
//! `coredns_dns_responses_total`, `coredns_dns_request_duration_seconds`), and its `/healthz`,
//! healthy once the Service and EndpointSlice caches have synced.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use http::{Response, StatusCode};
use http_body_util::Full;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::Transport;

pub(super) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    responses: IntCounterVec,
    duration: HistogramVec,
    /// Whether the caches have synced and the zone is built.
    ready: AtomicBool,
}

impl Metrics {
    pub(super) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "coredns_dns_requests_total",
                "Counter of DNS requests made per protocol and type.",
            ),
            &["proto", "type"],
        )?;
        let responses = IntCounterVec::new(
            Opts::new("coredns_dns_responses_total", "Counter of response status codes."),
            &["rcode"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "coredns_dns_request_duration_seconds",
                "Histogram of the time (in seconds) each request took.",
            )
            .buckets(prometheus::exponential_buckets(0.00025, 2.0, 16)?),
            &["type"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(responses.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            registry,
            requests,
            responses,
            duration,
            ready: AtomicBool::new(false),
        })
    }

    /// Counts one answered query: its type (`None` when it did not parse), how it was
    /// answered and how long that took.
    pub(super) fn observe(&self, transport: Transport, qtype: Option<RecordType>, rcode: ResponseCode, took: Duration) {
        let qtype = type_label(qtype);
        let proto = match transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        self.requests.with_label_values(&[proto, qtype]).inc();
        self.responses.with_label_values(&[&rcode_label(rcode)]).inc();
        self.duration.with_label_values(&[qtype]).observe(took.as_secs_f64());
    }

    pub(super) fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// `/healthz` and `/metrics`; anything else is 404.
    pub(super) fn response(&self, path: &str) -> Response<Full<Bytes>> {
        match path {
            "/healthz" if self.ready.load(Ordering::Relaxed) => text(StatusCode::OK, "ok\n".into()),
            "/healthz" => text(StatusCode::SERVICE_UNAVAILABLE, "waiting for the first sync\n".into()),
            "/metrics" => self.encode(),
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }

    fn encode(&self) -> Response<Full<Bytes>> {
        crate::http_serve::metrics(&self.registry)
    }
}

/// The query type as CoreDNS labels it: the common types by name, the rest as `other`, so
/// that odd queries cannot grow the label set without bound.
fn type_label(qtype: Option<RecordType>) -> &'static str {
    use RecordType::*;
    match qtype {
        Some(A) => "A",
        Some(AAAA) => "AAAA",
        Some(ANY) => "ANY",
        Some(CNAME) => "CNAME",
        Some(MX) => "MX",
        Some(NS) => "NS",
        Some(PTR) => "PTR",
        Some(SOA) => "SOA",
        Some(SRV) => "SRV",
        Some(TXT) => "TXT",
        _ => "other",
    }
}

/// The rcode's mnemonic (`NOERROR`, `NXDOMAIN`, ...), as in the wire-format RFCs.
pub(super) fn rcode_label(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

use crate::http_serve::text;
