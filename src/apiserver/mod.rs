//! `hyperkube apiserver`: the Kubernetes API on an embedded, durable store, or on etcd with
//! `--etcd-servers`.
//!
//! Mirrors upstream's `cmd/kube-apiserver` and `k8s.io/apiserver`. State enters through HTTP
//! requests and leaves through the `Store`; every other component talks to this one.

pub(crate) mod discovery;
pub(crate) mod handlers;
pub(crate) mod metrics;
pub(crate) mod openapi;
pub(crate) mod patch;
pub(crate) mod pod_log;
pub(crate) mod printers;
pub(crate) mod protobuf;
pub(crate) mod registry;
pub(crate) mod server;
pub(crate) mod status;
pub mod storage;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::registry::{Rest, Settings, registry_for};
use self::storage::{EmbeddedStore, EtcdConfig, EtcdStore, EtcdTls, Store};

/// Command-line flags, named as upstream's kube-apiserver (and the original hyperkube) named them.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The address the insecure port listens on. Loopback unless you mean it: it has no authentication.
    #[arg(long, default_value = "127.0.0.1")]
    pub insecure_bind_address: IpAddr,
    /// The insecure port; 0 picks a free one.
    #[arg(long, default_value_t = 8080)]
    pub insecure_port: u16,
    /// Where the embedded store keeps its data (unused with `--etcd-servers`).
    #[arg(long, default_value = "/var/lib/hyperkube/data")]
    pub data_dir: PathBuf,
    /// Where etcd is, when objects are kept there.
    #[command(flatten)]
    pub etcd: Box<EtcdArgs>,
    /// The range Services' ClusterIPs come from.
    #[arg(long, default_value = "10.0.0.0/24")]
    pub service_cluster_ip_range: String,
    /// The range of node ports, as FIRST-LAST.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// How many recent changes the store keeps so that watches can resume from an older
    /// resourceVersion; older ones get 410 Gone.
    #[arg(long, default_value_t = 10_000)]
    pub watch_cache_size: usize,
    /// Seconds pods tolerate a not-ready node unless they say otherwise (DefaultTolerationSeconds).
    #[arg(long, default_value_t = 300)]
    pub default_not_ready_toleration_seconds: i64,
    /// Seconds pods tolerate an unreachable node unless they say otherwise.
    #[arg(long, default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
    /// Log verbosity, 0 to 10, as upstream's `--v`.
    #[arg(long, default_value_t = 0)]
    pub v: u8,
}

/// The etcd flags, upstream's names. Boxed in `Args`: most apiservers leave them unset.
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdArgs {
    /// Keep objects in etcd instead of the embedded store: the members' client URLs,
    /// comma-separated (`http://127.0.0.1:2379`, or `https://` with the TLS flags below).
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// The root of every key in etcd, as upstream's `--etcd-prefix`.
    #[arg(long, default_value = "/registry")]
    pub etcd_prefix: String,
    /// The CA that signed etcd's serving certificates.
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    /// The client certificate for etcd.
    #[arg(long)]
    pub etcd_certfile: Option<PathBuf>,
    /// The key of `--etcd-certfile`.
    #[arg(long)]
    pub etcd_keyfile: Option<PathBuf>,
    /// How often to compact etcd's old revisions; 0 leaves compaction to etcd.
    #[arg(long, default_value = "5m", value_parser = parse_interval)]
    pub etcd_compaction_interval: Duration,
}

/// The apiserver's settings, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub(crate) address: SocketAddr,
    /// Which store to open.
    pub(crate) store: StoreConfig,
    /// ClusterIP and node port ranges.
    pub(crate) cluster_ips: registry::ipalloc::Cidr,
    /// Node ports.
    pub(crate) node_ports: std::ops::RangeInclusive<u16>,
    /// Watch history length.
    pub(crate) watch_cache_size: usize,
    /// Pods' default tolerations of unhealthy nodes.
    pub(crate) pod_tolerations: registry::core::DefaultTolerations,
}

/// Where the apiserver keeps its objects.
#[derive(Debug, Clone)]
pub(crate) enum StoreConfig {
    /// The embedded store in this directory.
    Embedded(PathBuf),
    /// An etcd cluster.
    Etcd(EtcdConfig),
}

/// `--etcd-compaction-interval`: a Go duration, where a bare `0` turns compaction off.
fn parse_interval(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "0" => Ok(Duration::ZERO),
        other => crate::flags::parse_duration(other),
    }
}

/// Why the apiserver could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag's value is malformed.
    #[error("invalid flag --{flag}: {reason}")]
    InvalidFlag {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The store could not be opened.
    #[error("opening the store failed")]
    OpenStore(#[source] storage::Error),
    /// The listener could not be bound.
    #[error("listening on {address} failed")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving failed")]
    Serve(#[source] std::io::Error),
    /// Registering metrics failed.
    #[error("setting up metrics failed")]
    Metrics(#[source] prometheus::Error),
    /// Creating the built-in namespaces failed.
    #[error("creating the system namespaces failed: {0}")]
    Bootstrap(String),
}

impl TryFrom<Args> for Config {
    type Error = Error;

    fn try_from(args: Args) -> Result<Self, Error> {
        let cluster_ips = args
            .service_cluster_ip_range
            .parse()
            .map_err(|reason| Error::InvalidFlag {
                flag: "service-cluster-ip-range",
                reason,
            })?;
        let bad_ports = |reason: &str| Error::InvalidFlag {
            flag: "service-node-port-range",
            reason: format!("{:?}: {reason}", args.service_node_port_range),
        };
        let (first, last) = args
            .service_node_port_range
            .split_once('-')
            .ok_or_else(|| bad_ports("expected FIRST-LAST"))?;
        let first: u16 = first.trim().parse().map_err(|_| bad_ports("not a port number"))?;
        let last: u16 = last.trim().parse().map_err(|_| bad_ports("not a port number"))?;
        if first == 0 || first > last {
            return Err(bad_ports("the range is empty"));
        }
        let etcd = *args.etcd;
        let servers: Vec<String> = etcd
            .etcd_servers
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let tls = EtcdTls {
            ca_file: etcd.etcd_cafile,
            cert_file: etcd.etcd_certfile,
            key_file: etcd.etcd_keyfile,
        };
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(Error::InvalidFlag {
                flag: "etcd-certfile",
                reason: "--etcd-certfile and --etcd-keyfile must be given together".into(),
            });
        }
        let store = if servers.is_empty() {
            StoreConfig::Embedded(args.data_dir)
        } else {
            StoreConfig::Etcd(EtcdConfig {
                servers,
                prefix: etcd.etcd_prefix,
                tls,
                compaction_interval: etcd.etcd_compaction_interval,
                watch_cache_size: args.watch_cache_size,
            })
        };
        Ok(Self {
            address: SocketAddr::new(args.insecure_bind_address, args.insecure_port),
            store,
            cluster_ips,
            node_ports: first..=last,
            watch_cache_size: args.watch_cache_size,
            pod_tolerations: registry::core::DefaultTolerations {
                not_ready_seconds: args.default_not_ready_toleration_seconds,
                unreachable_seconds: args.default_unreachable_toleration_seconds,
            },
        })
    }
}

/// A started apiserver: bound, with its store open, not yet serving.
pub struct ApiServer {
    listener: tokio::net::TcpListener,
    api: Arc<handlers::ApiServer>,
    service_ranges: Arc<registry::core::ServiceRanges>,
}

impl ApiServer {
    /// Opens the store, builds every registry and document, creates the system namespaces and
    /// binds the port. Serving starts with `run`.
    pub async fn new(config: Config, shutdown: CancellationToken) -> Result<Self, Error> {
        let store: Arc<dyn Store> = match config.store {
            StoreConfig::Embedded(dir) => {
                Arc::new(EmbeddedStore::open(&dir, config.watch_cache_size).map_err(Error::OpenStore)?)
            }
            StoreConfig::Etcd(etcd) => Arc::new(EtcdStore::connect(etcd).await.map_err(Error::OpenStore)?),
        };
        let listener = server::bind(config.address).await.map_err(|source| Error::Bind {
            address: config.address,
            source,
        })?;
        let address = listener.local_addr().map_err(Error::Serve)?;
        let settings = Settings {
            cluster_ips: config.cluster_ips,
            node_ports: config.node_ports.clone(),
            pod_tolerations: config.pod_tolerations,
        };
        let (registries, service_ranges) = registry::install(store.clone(), settings)
            .await
            .map_err(Error::OpenStore)?;
        bootstrap_namespaces(&registries).await?;
        let api = handlers::ApiServer::new(
            registries,
            discovery::Discovery::new(&address.to_string()),
            metrics::Metrics::new().map_err(Error::Metrics)?,
            store,
            shutdown,
        );
        Ok(Self {
            listener,
            api: Arc::new(api),
            service_ranges,
        })
    }

    /// The address the apiserver listens on (useful with `--insecure-port=0`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then drains open requests. Repairs the Service
    /// IP and node port allocations every few minutes meanwhile.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        tracing::info!(address = %self.local_addr().map_err(Error::Serve)?, "apiserver serving");
        let (served, ()) = tokio::join!(
            server::serve(self.listener, self.api, shutdown.clone()),
            self.service_ranges.run_repair(shutdown),
        );
        served.map_err(Error::Serve)
    }
}

/// The namespaces every cluster has, created at start as upstream's bootstrap controller does.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn bootstrap_namespaces(registries: &[Arc<dyn Rest>]) -> Result<(), Error> {
    let namespaces =
        registry_for(registries, "", "namespaces").ok_or_else(|| Error::Bootstrap("no namespace registry".into()))?;
    for name in SYSTEM_NAMESPACES {
        let body = serde_json::json!({"metadata": {"name": name}});
        match namespaces.create(None, body, false).await {
            Ok(_) | Err(status::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(Error::Bootstrap(e.to_string())),
        }
    }
    Ok(())
}

/// Runs the apiserver until `shutdown`: the entry point of `hyperkube apiserver`.
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<(), Error> {
    let config = Config::try_from(args)?;
    let server = ApiServer::new(config, shutdown.clone()).await?;
    server.run(shutdown).await
}
