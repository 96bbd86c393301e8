//! The proxy's `/metrics` (upstream's `kubeproxy_sync_proxy_rules_*` names) and `/healthz`
//! (healthy while rules were written within twice the sync period).

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, Registry};
use tokio::time::Instant;

pub(super) struct Metrics {
    registry: Registry,
    sync_duration: Histogram,
    last_sync: Gauge,
    pub(super) restore_failures: IntCounter,
}

impl Metrics {
    pub(super) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let sync_duration = Histogram::with_opts(
            HistogramOpts::new(
                "kubeproxy_sync_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 15)?),
        )?;
        let last_sync = Gauge::new(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
        )?;
        let restore_failures = IntCounter::new(
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
            "Cumulative proxy iptables restore failures",
        )?;
        registry.register(Box::new(sync_duration.clone()))?;
        registry.register(Box::new(last_sync.clone()))?;
        registry.register(Box::new(restore_failures.clone()))?;
        Ok(Self {
            registry,
            sync_duration,
            last_sync,
            restore_failures,
        })
    }

    /// Records a successful write of the rules that took `took`.
    pub(super) fn synced(&self, took: Duration) {
        self.sync_duration.observe(took.as_secs_f64());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_sync.set(now.as_secs_f64());
    }

    pub(super) fn response(&self) -> Response<Full<Bytes>> {
        crate::http_serve::metrics(&self.registry)
    }
}

/// When the rules were last written.
pub(super) struct Health {
    last: Mutex<Option<Instant>>,
    sync_period: Duration,
}

impl Health {
    pub(super) fn new(sync_period: Duration) -> Self {
        Self {
            last: Mutex::new(None),
            sync_period,
        }
    }

    pub(super) fn synced(&self) {
        *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }

    pub(super) fn response(&self) -> Response<Full<Bytes>> {
        let last = *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match last {
            Some(at) if at.elapsed() <= self.sync_period * 2 => text(
                StatusCode::OK,
                format!("ok: rules written {:.1}s ago\n", at.elapsed().as_secs_f64()),
            ),
            Some(at) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("rules last written {:.0}s ago\n", at.elapsed().as_secs_f64()),
            ),
            None => text(StatusCode::SERVICE_UNAVAILABLE, "no rules written yet\n".into()),
        }
    }
}

pub(super) fn not_found() -> Response<Full<Bytes>> {
    text(StatusCode::NOT_FOUND, "not found\n".into())
}

use crate::http_serve::text;
