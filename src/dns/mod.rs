//! The cluster DNS server (`hyperkube dns`), after kube-dns and CoreDNS's kubernetes plugin: it
//! answers the names of the Kubernetes DNS specification under `--domain` (`zone.rs`) from
//! shared informers on Services and EndpointSlices, and forwards every other name to the
//! nameservers of `--resolv-conf` (`forward.rs`). It serves UDP and TCP on `--dns-port`
//! (`server.rs`), with the DNS wire format from hickory-proto (`handler.rs`), and `/healthz`
//! and `/metrics` on `--healthz-port`.
//!
//! Each change in the caches rebuilds the zone as a whole and swaps it in; queries read the
//! latest one. Until the caches first sync, names in the cluster domain answer SERVFAIL and
//! `/healthz` says 503. Records carry kube-dns's TTL of 30 seconds.

mod forward;
mod handler;
mod metrics;
mod server;
mod zone;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::ClientArgs;
use crate::informer::{Change, Factory};

/// `hyperkube dns` flags, named as upstream kube-dns's.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The cluster's domain: names under it are answered from Services and EndpointSlices.
    #[arg(long, default_value = "cluster.local.")]
    pub domain: String,
    /// The address DNS (UDP and TCP), /healthz and /metrics are served on.
    #[arg(long, default_value = "0.0.0.0")]
    pub dns_bind_address: IpAddr,
    /// The DNS port; 0 picks a free one (the same for UDP and TCP).
    #[arg(long, default_value_t = 53)]
    pub dns_port: u16,
    /// The port of /healthz and /metrics; 0 picks a free one.
    #[arg(long, default_value_t = 8081)]
    pub healthz_port: u16,
    /// The resolv.conf whose nameservers answer the names outside the cluster.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Upstream nameservers, `IP` or `IP:PORT`, separated by commas; when set, they replace
    /// --resolv-conf's.
    #[arg(long, value_delimiter = ',', value_parser = forward::parse_nameserver)]
    pub nameservers: Vec<SocketAddr>,
    /// Log verbosity, 0 to 10, as upstream's `--v`.
    #[arg(long, default_value_t = 0)]
    pub v: u8,
}

/// Why the DNS server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to the apiserver failed: {0}")]
    Client(String),
    #[error("--domain {domain:?} is not a domain name")]
    Domain {
        domain: String,
        #[source]
        source: hickory_proto::ProtoError,
    },
    #[error("reading {path}")]
    ResolvConf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listening on {address} failed")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("setting up metrics failed")]
    Metrics(#[source] prometheus::Error),
}

/// How a query reached the server; forwarding uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// A DNS server whose sockets are bound, not yet serving.
pub struct Server {
    client: kube::Client,
    origin: Name,
    upstreams: Vec<SocketAddr>,
    udp: UdpSocket,
    tcp: TcpListener,
    http: TcpListener,
    metrics: Arc<metrics::Metrics>,
}

impl Server {
    /// Checks the flags, reads the upstream nameservers and binds every socket; no task is
    /// started and nothing is answered until [`Server::run`].
    pub async fn new(args: Args) -> Result<Self, Error> {
        let client = args.client.connect().await.map_err(Error::Client)?;
        let origin = parse_domain(&args.domain).map_err(|source| Error::Domain {
            domain: args.domain.clone(),
            source,
        })?;
        let upstreams = if args.nameservers.is_empty() {
            let text = std::fs::read_to_string(&args.resolv_conf).map_err(|source| Error::ResolvConf {
                path: args.resolv_conf.clone(),
                source,
            })?;
            forward::parse_resolv_conf(&text)
        } else {
            args.nameservers.clone()
        };
        let (udp, tcp) = bind_dns(args.dns_bind_address, args.dns_port).await?;
        let address = SocketAddr::new(args.dns_bind_address, args.healthz_port);
        let http = TcpListener::bind(address)
            .await
            .map_err(|source| Error::Listen { address, source })?;
        Ok(Self {
            client,
            origin,
            upstreams,
            udp,
            tcp,
            http,
            metrics: Arc::new(metrics::Metrics::new().map_err(Error::Metrics)?),
        })
    }

    /// Where DNS is answered, over UDP and TCP alike.
    pub fn dns_addr(&self) -> SocketAddr {
        self.udp
            .local_addr()
            .unwrap_or_else(|_| unreachable!("a bound socket has an address"))
    }

    /// Where `/healthz` and `/metrics` are served.
    pub fn healthz_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .unwrap_or_else(|_| unreachable!("a bound socket has an address"))
    }

    /// Serves until `shutdown`, then waits for the queries in flight.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let forwarder = forward::Forwarder::new(self.upstreams.clone(), self.dns_addr());
        tracing::info!(
            address = %self.dns_addr(), domain = %self.origin, upstreams = ?forwarder.upstreams(),
            "serving DNS"
        );
        let (zone_tx, zone_rx) = watch::channel(None);
        let handler = Arc::new(handler::Handler::new(
            self.origin.clone(),
            zone_rx,
            forwarder,
            self.metrics.clone(),
        ));
        let tasks = TaskTracker::new();
        tasks.spawn(server::serve_udp(self.udp, handler.clone(), shutdown.clone()));
        tasks.spawn(server::serve_tcp(self.tcp, handler, shutdown.clone()));
        let metrics = self.metrics.clone();
        let http = move |req: http::Request<hyper::body::Incoming>| {
            let response = metrics.response(req.uri().path());
            async move { response }
        };
        tasks.spawn(crate::http_serve::serve(self.http, http, shutdown.clone()));

        let informers = Factory::new(self.client, shutdown.clone());
        let services = informers.get::<Service>();
        let slices = informers.get::<EndpointSlice>();
        let changed = Arc::new(Notify::new());
        services.add_handler(wake(&changed));
        slices.add_handler(wake(&changed));
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = async { services.wait_synced().await; slices.wait_synced().await } => {
                loop {
                    let zone = zone::Zone::build(&self.origin, serial(), &services.list(), &slices.list());
                    zone_tx.send_replace(Some(Arc::new(zone)));
                    self.metrics.set_ready();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = changed.notified() => {}
                    }
                }
            }
        }
        tasks.close();
        tasks.wait().await;
        informers.wait().await;
        Ok(())
    }
}

/// Runs the DNS server until `shutdown`.
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<(), Error> {
    Server::new(args).await?.run(shutdown).await
}

/// An informer handler that wakes the zone builder on every change.
fn wake<K>(changed: &Arc<Notify>) -> impl Fn(&Change<'_, K>) + Send + Sync + 'static {
    let changed = changed.clone();
    move |_| changed.notify_one()
}

/// `--domain` as a lowercased FQDN: `Cluster.Local` → `cluster.local.`.
fn parse_domain(domain: &str) -> Result<Name, hickory_proto::ProtoError> {
    let mut name = Name::from_ascii(domain)?.to_lowercase();
    name.set_fqdn(true);
    Ok(name)
}

/// A UDP socket and a TCP listener on one port. With port 0 the kernel picks the UDP port,
/// which TCP may already have in use: then another pair is tried.
async fn bind_dns(ip: IpAddr, port: u16) -> Result<(UdpSocket, TcpListener), Error> {
    let mut tries = if port == 0 { 16 } else { 1 };
    loop {
        let address = SocketAddr::new(ip, port);
        let udp = UdpSocket::bind(address)
            .await
            .map_err(|source| Error::Listen { address, source })?;
        let address = udp.local_addr().map_err(|source| Error::Listen { address, source })?;
        match TcpListener::bind(address).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) if tries > 1 && source.kind() == std::io::ErrorKind::AddrInUse => tries -= 1,
            Err(source) => return Err(Error::Listen { address, source }),
        }
    }
}

/// The SOA serial of a zone built now: the time in seconds, so that it grows with each rebuild.
fn serial() -> u32 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map(|d| d.as_secs() as u32).unwrap_or_default()
}
