//! The kubelet's Prometheus metrics, under upstream's names: how many pods and containers it runs,
//! how long pods take to start, and how long pod syncs take. Served on `/metrics`; registered in
//! the kubelet's own registry, never the global one.

use prometheus::{Encoder, Histogram, HistogramOpts, HistogramVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// The kubelet's metrics. Cheap to share behind an `Arc`.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) running_pods: IntGauge,
    pub(crate) running_containers: IntGaugeVec,
    pub(crate) pod_start_duration: Histogram,
    pub(crate) pod_worker_duration: HistogramVec,
}

impl Metrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let running_pods = IntGauge::new("kubelet_running_pods", "Number of pods that have a running pod sandbox")?;
        let running_containers = IntGaugeVec::new(
            Opts::new("kubelet_running_containers", "Number of containers currently running"),
            &["container_state"],
        )?;
        let pod_start_duration = Histogram::with_opts(
            HistogramOpts::new(
                "kubelet_pod_start_duration_seconds",
                "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            )
            .buckets(vec![
                0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0,
            ]),
        )?;
        let pod_worker_duration = HistogramVec::new(
            HistogramOpts::new(
                "kubelet_pod_worker_duration_seconds",
                "Duration in seconds to sync a single pod, by operation type",
            )
            .buckets(prometheus::exponential_buckets(0.005, 2.0, 12)?),
            &["operation_type"],
        )?;
        registry.register(Box::new(running_pods.clone()))?;
        registry.register(Box::new(running_containers.clone()))?;
        registry.register(Box::new(pod_start_duration.clone()))?;
        registry.register(Box::new(pod_worker_duration.clone()))?;
        Ok(Self {
            registry,
            running_pods,
            running_containers,
            pod_start_duration,
            pod_worker_duration,
        })
    }

    /// The text exposition format of every metric.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
