//! The service proxy (`hyperkube proxy`): makes ClusterIP, NodePort and external IPs of
//! Services carry traffic to their ready endpoints, by programming the host's iptables the way
//! upstream's iptables mode does (`rules.rs`). It watches Services and EndpointSlices through
//! shared informers, and rewrites its chains in one `iptables-restore` transaction when they
//! change (at most once per `--iptables-min-sync-period`) and every `--iptables-sync-period`
//! (healing rules someone else removed). A failed restore keeps the last good rules, logs the
//! line iptables refused, and is retried.

mod dummy;
mod iptables;
mod metrics;
mod model;
mod rules;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::ClientArgs;
use crate::informer::Factory;

/// `hyperkube proxy` flags, named as upstream's kube-proxy's.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The pod network; traffic to a cluster IP from outside it is masqueraded.
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// The Services' virtual IP range, routed to a local dummy device so that its traffic
    /// never leaves the host (the apiserver's flag of the same name).
    #[arg(long, default_value = "10.0.0.0/24")]
    pub service_cluster_ip_range: String,
    /// The longest time between two full rewrites of the rules.
    #[arg(long, default_value = "30s", value_parser = crate::flags::parse_duration)]
    pub iptables_sync_period: Duration,
    /// The shortest time between two rewrites, however often Services change.
    #[arg(long, default_value = "1s", value_parser = crate::flags::parse_duration)]
    pub iptables_min_sync_period: Duration,
    /// Where `/healthz` is served.
    #[arg(long, default_value = "0.0.0.0:10256")]
    pub healthz_bind_address: SocketAddr,
    /// Where `/metrics` is served.
    #[arg(long, default_value = "127.0.0.1:10249")]
    pub metrics_bind_address: SocketAddr,
    /// Remove every rule and chain the proxy wrote, and the dummy device, then exit.
    #[arg(long)]
    pub cleanup: bool,
    /// Log verbosity, 0 to 10, as upstream's `--v`.
    #[arg(long, default_value_t = 0)]
    pub v: u8,
}

/// Why the proxy stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to the apiserver failed: {0}")]
    Client(String),
    #[error("removing the proxy's rules failed: {0}")]
    Cleanup(String),
    #[error("setting up the service range's dummy device failed: {0}")]
    Dummy(String),
    #[error("listening on {address} failed")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("setting up metrics failed")]
    Metrics(#[source] prometheus::Error),
}

/// Runs the proxy until `shutdown` (or cleans up and returns, with `--cleanup`).
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<(), Error> {
    if args.cleanup {
        tokio::task::spawn_blocking(cleanup)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            .map_err(Error::Cleanup)?;
        tracing::info!("removed the proxy's rules, chains and dummy device");
        return Ok(());
    }
    let client = args.client.connect().await.map_err(Error::Client)?;
    dummy::ensure(&args.service_cluster_ip_range).map_err(Error::Dummy)?;
    let metrics = Arc::new(metrics::Metrics::new().map_err(Error::Metrics)?);
    let health = Arc::new(metrics::Health::new(args.iptables_sync_period));
    for (address, serve_health) in [(args.healthz_bind_address, true), (args.metrics_bind_address, false)] {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| Error::Listen { address, source })?;
        let (metrics, health) = (metrics.clone(), health.clone());
        let handler = move |req: http::Request<hyper::body::Incoming>| {
            let response = match (serve_health, req.uri().path()) {
                (true, "/healthz") => health.response(),
                (false, "/metrics") => metrics.response(),
                _ => metrics::not_found(),
            };
            async move { response }
        };
        tokio::spawn(crate::http_serve::serve(listener, handler, shutdown.clone()));
    }

    let informers = Factory::new(client, shutdown.clone());
    let services = informers.get::<Service>();
    let slices = informers.get::<EndpointSlice>();
    let changed = Arc::new(Notify::new());
    services.add_handler({
        let changed = changed.clone();
        move |_| changed.notify_one()
    });
    slices.add_handler({
        let changed = changed.clone();
        move |_| changed.notify_one()
    });
    services.wait_synced().await;
    slices.wait_synced().await;
    tracing::info!("proxy syncing rules");

    let mut syncer = Syncer {
        cluster_cidr: args.cluster_cidr.clone(),
        written: None,
        skipped: Vec::new(),
        metrics: metrics.clone(),
    };
    let mut full = true;
    loop {
        let started = Instant::now();
        let ports = {
            let (services, slices) = (services.list(), slices.list());
            let services: Vec<&Service> = services.iter().map(Arc::as_ref).collect();
            let slices: Vec<&EndpointSlice> = slices.iter().map(Arc::as_ref).collect();
            syncer.ports(&services, &slices)
        };
        let retry = match syncer.sync(ports, full).await {
            Ok(()) => {
                health.synced();
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "writing the rules failed; keeping the last good ones and retrying");
                true
            }
        };
        full = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = changed.notified(), if !retry => false,
            _ = tokio::time::sleep(args.iptables_sync_period) => true,
            _ = tokio::time::sleep(args.iptables_min_sync_period), if retry => true,
        };
        // Changes that come in a burst wait for the rest of the minimum period, then go together.
        tokio::time::sleep_until(started + args.iptables_min_sync_period).await;
    }
    informers.wait().await;
    Ok(())
}

/// What one sync needs to remember of the last.
struct Syncer {
    cluster_cidr: Option<String>,
    /// The last input iptables accepted.
    written: Option<String>,
    /// The Services the last sync skipped, to log each reason once.
    skipped: Vec<model::Skipped>,
    metrics: Arc<metrics::Metrics>,
}

impl Syncer {
    fn ports(&mut self, services: &[&Service], slices: &[&EndpointSlice]) -> Vec<model::ServicePort> {
        let (ports, skipped) = model::service_ports(services, slices);
        for s in skipped.iter().filter(|s| !self.skipped.contains(s)) {
            tracing::warn!(service = %s.service, reason = %s.reason, "skipping a service");
        }
        self.skipped = skipped;
        ports
    }

    /// Writes the rules for `ports` if they changed since the last write, or always when `full`.
    async fn sync(&mut self, ports: Vec<model::ServicePort>, full: bool) -> Result<(), iptables::Error> {
        let started = std::time::Instant::now();
        let cidr = self.cluster_cidr.clone();
        let written = self.written.clone();
        let result = tokio::task::spawn_blocking(move || {
            let existing = iptables::chains("nat")?;
            let input = rules::render(&ports, cidr.as_deref(), &existing);
            if !full && written.as_deref() == Some(&input) {
                return Ok(None);
            }
            iptables::restore(&input)?;
            iptables::ensure_jumps()?;
            Ok(Some(input))
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        match result {
            Ok(Some(input)) => {
                self.metrics.synced(started.elapsed());
                self.written = Some(input);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(err) => {
                self.metrics.restore_failures.inc();
                Err(err)
            }
        }
    }
}

/// Removes every rule and chain the proxy ever wrote, and the service-range device (`--cleanup`,
/// and `hyperkube down`).
pub(crate) fn cleanup() -> Result<(), String> {
    iptables::cleanup().map_err(|e| e.to_string())?;
    dummy::remove()
}

/// The proxy's name for a chain: a stable hash of what it serves, 16 characters.
fn chain_id(parts: &[&[u8]]) -> String {
    crate::stable_hash(parts).to_uppercase()
}
