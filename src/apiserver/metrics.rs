//! The apiserver's Prometheus metrics, under upstream's names so dashboards carry over:
//! `apiserver_request_total` and `apiserver_request_duration_seconds`.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

/// The metrics of one apiserver, registered in its own registry (never the global one).
pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
}

/// The labels one request is counted under.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestLabels {
    /// Upstream's canonical verb: GET, LIST, WATCH, POST, PUT, PATCH, DELETE, DELETECOLLECTION.
    pub(crate) verb: &'static str,
    /// API group, empty for core and for non-resource paths.
    pub(crate) group: String,
    /// API version.
    pub(crate) version: String,
    /// Plural resource, empty for non-resource paths.
    pub(crate) resource: String,
    /// Subresource, if any.
    pub(crate) subresource: String,
    /// `resource`, `namespace` or `cluster`; empty for non-resource paths.
    pub(crate) scope: &'static str,
    /// Whether the request asked for a dry run.
    pub(crate) dry_run: bool,
}

impl Metrics {
    /// Creates the metrics in a fresh registry.
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let labels = [
            "verb",
            "dry_run",
            "group",
            "version",
            "resource",
            "subresource",
            "scope",
            "component",
        ];
        let requests = IntCounterVec::new(
            Opts::new(
                "apiserver_request_total",
                "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            ),
            &[&labels[..], &["code"]].concat(),
        )?;
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "apiserver_request_duration_seconds",
                "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
            )
            .buckets(vec![
                0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0,
                30.0, 45.0, 60.0,
            ]),
            &labels,
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(durations.clone()))?;
        Ok(Self {
            registry,
            requests,
            durations,
        })
    }

    /// Counts one finished request.
    pub(crate) fn observe(&self, labels: &RequestLabels, code: u16, seconds: f64) {
        let dry_run = if labels.dry_run { "All" } else { "" };
        let values = [
            labels.verb,
            dry_run,
            &labels.group,
            &labels.version,
            &labels.resource,
            &labels.subresource,
            labels.scope,
            "apiserver",
        ];
        let code = code.to_string();
        self.requests
            .with_label_values(&[&values[..], &[code.as_str()]].concat())
            .inc();
        // Watches last as long as the client keeps them; upstream leaves them out of latency too.
        if labels.verb != "WATCH" {
            self.durations.with_label_values(&values).observe(seconds);
        }
    }

    /// The text exposition format of every metric.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_verb_resource_and_code() {
        let m = Metrics::new().unwrap();
        let labels = RequestLabels {
            verb: "LIST",
            version: "v1".into(),
            resource: "pods".into(),
            scope: "namespace",
            ..Default::default()
        };
        m.observe(&labels, 200, 0.001);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\"} 1"), "{text}");
        assert!(text.contains("apiserver_request_duration_seconds_bucket"));
    }
}
