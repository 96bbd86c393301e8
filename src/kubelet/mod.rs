//! `hyperkube kubelet`: the node agent. It runs the pods it is given — static pods from a
//! manifests directory today; pods bound to its node by the apiserver next — through a
//! container runtime, keeps them running, and reports their status.
//!
//! Mirrors upstream's `pkg/kubelet`: sources (`config/`) are merged into pod operations, one
//! worker per pod (`pod_workers.rs`) syncs it through `kuberuntime.rs` against the `Runtime`
//! (`runtime/`), and statuses come back to one loop here, which also serves them (`server.rs`).

pub(crate) mod config;
pub(crate) mod dns;
pub(crate) mod downward;
pub(crate) mod kuberuntime;
pub(crate) mod metrics;
pub(crate) mod node;
pub mod pause;
pub(crate) mod pleg;
pub(crate) mod pod_status;
pub(crate) mod pod_workers;
pub(crate) mod prober;
pub(crate) mod runtime;
pub(crate) mod server;
pub(crate) mod status_manager;
pub(crate) mod volumes;

use crate::events;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::config::{Mux, PodOp};
use self::kuberuntime::SyncContext;
use self::pod_workers::{PodWorkers, StatusUpdate};
use self::runtime::Runtime;

/// Command-line flags, named as upstream's kubelet (and the original hyperkube) named them.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// A directory of static pod manifests (or one manifest file). `--config` is the original
    /// hyperkube's name for it.
    #[arg(long, visible_alias = "config")]
    pub pod_manifest_path: Option<PathBuf>,
    /// How often the manifests are re-read, besides reacting to changes.
    #[arg(long, default_value = "20s", value_parser = crate::flags::parse_duration)]
    pub file_check_frequency: Duration,
    /// A URL serving a Pod or a PodList (JSON or YAML) to run as static pods.
    #[arg(long)]
    pub manifest_url: Option<String>,
    /// How often the manifest URL is fetched.
    #[arg(long, default_value = "20s", value_parser = crate::flags::parse_duration)]
    pub http_check_frequency: Duration,
    /// The node's name; the host name by default.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The node's address, reported as the pods' hostIP.
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// `docker` or `fake` (an in-memory runtime, for demos).
    #[arg(long, default_value = "docker")]
    pub container_runtime: String,
    /// The Docker Engine API endpoint.
    #[arg(long, default_value = "unix:///var/run/docker.sock")]
    pub docker_endpoint: String,
    /// The image of every pod's infra ("pause") container; it runs its own entrypoint.
    #[arg(long, default_value = "hyperkube:latest")]
    pub pod_infra_container_image: String,
    /// Where pod directories and the kubelet's state live.
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub root_dir: PathBuf,
    /// The address of the kubelet's HTTP server (it has no authentication: loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// The port of the kubelet's HTTP server; 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// The apiserver(s) to register with and take pods from, comma-separated (the original
    /// hyperkube's flag).
    #[arg(long, value_delimiter = ',')]
    pub api_servers: Vec<String>,
    /// A kubeconfig file for reaching the apiserver, instead of `--api-servers`.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// How often the Node's status is written.
    #[arg(long, default_value = "10s", value_parser = crate::flags::parse_duration)]
    pub node_status_update_frequency: Duration,
    /// Run inside a container (`docker run --net=host --pid=host -v /:/rootfs:ro ...`): read the
    /// host's identity (os-release, machine-id) under /rootfs. Pod directories under
    /// `--root-dir` must be bind-mounted at the same path, since Docker mounts them from the host.
    #[arg(long)]
    pub containerized: bool,
    /// The cluster DNS servers' IPs, written into `dnsPolicy: ClusterFirst` pods' resolv.conf.
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster's DNS domain; pods search `NAMESPACE.svc.DOMAIN`, `svc.DOMAIN` and `DOMAIN`.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The resolver configuration `dnsPolicy: Default` pods get, and whose search domains
    /// cluster pods add; empty for none.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// How often every pod is synced even without a change.
    #[arg(long, default_value = "10s", value_parser = crate::flags::parse_duration)]
    pub sync_frequency: Duration,
    /// Log verbosity, 0 to 10, as upstream's `--v`.
    #[arg(long, default_value_t = 0)]
    pub v: u8,
}

/// Why the kubelet could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container runtime could not be reached at start.
    #[error("connecting to the container runtime failed")]
    Runtime(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An unknown `--container-runtime`.
    #[error("unknown --container-runtime {0:?}: use docker or fake")]
    UnknownRuntime(String),
    /// The metrics could not be registered.
    #[error("setting up metrics failed")]
    Metrics(#[source] prometheus::Error),
    /// The HTTP server could not listen.
    #[error("listening on {address} failed")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The apiserver settings are unusable.
    #[error("configuring the apiserver client failed: {0}")]
    Client(String),
    /// The root directory could not be created.
    #[error("creating {dir} failed")]
    RootDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Pods and their last reported status, by uid: what `/pods` serves.
pub(crate) type PodStatuses = Arc<RwLock<BTreeMap<String, Pod>>>;

fn node_name(args: &Args) -> String {
    args.hostname_override
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_lowercase())
                .unwrap_or_else(|_| "localhost".into())
        })
}

/// Runs the kubelet until `shutdown`: the entry point of `hyperkube kubelet`.
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<(), Error> {
    let node = node_name(&args);
    std::fs::create_dir_all(args.root_dir.join("pods")).map_err(|source| Error::RootDir {
        dir: args.root_dir.clone(),
        source,
    })?;
    let runtime: Arc<dyn Runtime> = match args.container_runtime.as_str() {
        "docker" => Arc::new(
            runtime::docker::Docker::connect(&args.docker_endpoint, args.root_dir.join("sandboxes"))
                .await
                .map_err(|e| Error::Runtime(Box::new(e)))?,
        ),
        "fake" => Arc::new(runtime::fake::Fake::with_images(&[args
            .pod_infra_container_image
            .as_str()])),
        other => return Err(Error::UnknownRuntime(other.to_string())),
    };
    let version = runtime.version().await.map_err(|e| Error::Runtime(Box::new(e)))?;
    tracing::info!(node = %node, runtime = %version.name, version = %version.version, "kubelet starting");

    let statuses: PodStatuses = Arc::default();
    let metrics = Arc::new(metrics::Metrics::new().map_err(Error::Metrics)?);
    let address = SocketAddr::new(args.address, args.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| Error::Listen { address, source })?;
    let listener_port = listener.local_addr().map_or(args.port, |a| a.port());
    tracing::info!(address = %listener.local_addr().unwrap_or(address), "kubelet serving");
    let host_ip = args
        .node_ip
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "127.0.0.1".into());

    let tasks = tokio_util::task::TaskTracker::new();
    let client = api_client(&args).await?;
    let events = match &client {
        Some(client) => {
            let (recorder, sender) = events::Recorder::new(client.clone(), "kubelet", &node, shutdown.clone());
            tasks.spawn(sender);
            recorder
        }
        None => events::Recorder::log_only("kubelet", &node),
    };
    let (snapshots_tx, mut snapshots) = mpsc::channel(16);
    let (status_tx, mut status_rx) = mpsc::channel::<StatusUpdate>(256);
    tasks.spawn(server::serve(
        listener,
        statuses.clone(),
        runtime.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    match &args.pod_manifest_path {
        Some(path) => {
            tasks.spawn(config::file::run(
                path.clone(),
                node.clone(),
                args.file_check_frequency,
                snapshots_tx.clone(),
                events.clone(),
                shutdown.clone(),
            ));
        }
        None => tracing::info!("no --pod-manifest-path: no static pods from files"),
    }
    if let Some(url) = &args.manifest_url {
        tasks.spawn(config::http::run(
            url.clone(),
            node.clone(),
            args.http_check_frequency,
            snapshots_tx.clone(),
            events.clone(),
            shutdown.clone(),
        ));
    }
    let mut to_apiserver = None;
    if let Some(client) = &client {
        let (tx, rx) = mpsc::channel(256);
        to_apiserver = Some(tx);
        tasks.spawn(config::apiserver::run(
            client.clone(),
            node.clone(),
            snapshots_tx.clone(),
            shutdown.clone(),
        ));
        let info = node::NodeInfo {
            name: node.clone(),
            ip: host_ip.clone(),
            kubelet_port: listener_port,
            host_root: if args.containerized {
                "/rootfs".into()
            } else {
                "/".into()
            },
        };
        tasks.spawn(node::run(
            client.clone(),
            runtime.clone(),
            info,
            args.node_status_update_frequency,
            shutdown.clone(),
        ));
        tasks.spawn(status_manager::run(client.clone(), node.clone(), rx, shutdown.clone()));
    }
    drop(snapshots_tx);

    let ctx = SyncContext {
        node_name: node.clone(),
        infra_image: args.pod_infra_container_image.clone(),
        root_dir: args.root_dir.clone(),
        dns: dns::Configurer {
            cluster_dns: args.cluster_dns.clone(),
            cluster_domain: args.cluster_domain.trim_end_matches('.').to_owned(),
            host: host_resolv_conf(&args.resolv_conf),
        },
        objects: volumes::Objects::new(client.clone()),
    };
    let pleg = pleg::Pleg::new(runtime.clone());
    let (pleg_tx, mut pod_changes) = mpsc::channel::<String>(1024);
    tasks.spawn(pleg.clone().run(pleg_tx, shutdown.clone()));
    let mut workers = PodWorkers::new(pod_workers::Deps {
        runtime: runtime.clone(),
        pleg: pleg.clone(),
        ctx,
        host_ip: host_ip.clone(),
        resync: args.sync_frequency,
        statuses: status_tx,
        events: events.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    });
    let mut mux = Mux::default();
    let mut housekeeping = tokio::time::interval(Duration::from_secs(2));
    // Housekeeping removes pods no source wants, so it waits until every source has spoken:
    // otherwise a restarted kubelet would stop pods whose source had not answered yet.
    let mut unheard: HashSet<config::Source> = [
        args.pod_manifest_path.as_ref().map(|_| config::Source::File),
        args.manifest_url.as_ref().map(|_| config::Source::Http),
        client.as_ref().map(|_| config::Source::ApiServer),
    ]
    .into_iter()
    .flatten()
    .collect();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(snapshot) = snapshots.recv() => {
                unheard.remove(&snapshot.source);
                for op in mux.apply(snapshot) {
                    match op {
                        PodOp::Add(pods) | PodOp::Update(pods) => {
                            for pod in pods {
                                // The apiserver marks a pod for deletion; the kubelet stops it.
                                if pod.metadata.deletion_timestamp.is_some() {
                                    workers.terminate(pod);
                                } else {
                                    workers.sync(pod);
                                }
                            }
                        }
                        // A pod without a worker was stopped already (a deleted pod leaving the
                        // apiserver); one that never ran here is housekeeping's.
                        PodOp::Remove(pods) => {
                            for pod in pods {
                                if workers.has(pod.metadata.uid.as_deref().unwrap_or_default()) {
                                    workers.terminate(pod);
                                }
                            }
                        }
                    }
                }
            }
            Some(update) = status_rx.recv() => {
                if let Some(tx) = &to_apiserver {
                    // A full queue drops this update; the next sync reports again.
                    let _ = tx.try_send(update.clone());
                }
                record_status(&statuses, &mut workers, update);
                count_running(&statuses, &metrics);
            }
            Some(uid) = pod_changes.recv() => workers.wake(&uid),
            _ = housekeeping.tick(), if unheard.is_empty() => {
                let desired: HashSet<String> = mux.desired().filter_map(|p| p.metadata.uid.clone()).collect();
                remove_orphans(runtime.as_ref(), &pleg.latest(), &node, &desired, &workers).await;
                remove_unused_pod_dirs(&args.root_dir.join("pods"), &desired, &workers);
            }
        }
    }
    tracing::info!("kubelet stopping; pods keep running");
    workers.wait().await;
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// A client for `--kubeconfig` and/or the first of `--api-servers`; `None` runs static pods only.
async fn api_client(args: &Args) -> Result<Option<kube::Client>, Error> {
    crate::client::connect(args.api_servers.first().map(String::as_str), args.kubeconfig.as_deref())
        .await
        .map_err(Error::Client)
}

/// The host's resolvers from `--resolv-conf`; none when it is empty or unreadable (logged).
fn host_resolv_conf(path: &std::path::Path) -> dns::ResolvConf {
    if path.as_os_str().is_empty() {
        return dns::ResolvConf::default();
    }
    match std::fs::read_to_string(path) {
        Ok(text) => dns::ResolvConf::parse(&text),
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "reading --resolv-conf failed; pods get no host resolvers");
            dns::ResolvConf::default()
        }
    }
}

/// Updates the running pod and container gauges from the reported statuses.
fn count_running(statuses: &PodStatuses, metrics: &metrics::Metrics) {
    let map = statuses.read().unwrap_or_else(|p| p.into_inner());
    let (mut pods, mut running, mut waiting, mut exited) = (0, 0, 0, 0);
    for status in map.values().filter_map(|pod| pod.status.as_ref()) {
        if status.pod_ip.is_some() {
            pods += 1;
        }
        for state in status.container_statuses.iter().flatten().map(|c| c.state.as_ref()) {
            if state.is_some_and(|s| s.running.is_some()) {
                running += 1;
            } else if state.is_some_and(|s| s.terminated.is_some()) {
                exited += 1;
            } else {
                waiting += 1;
            }
        }
    }
    metrics.running_pods.set(pods);
    metrics.running_containers.with_label_values(&["running"]).set(running);
    metrics.running_containers.with_label_values(&["created"]).set(waiting);
    metrics.running_containers.with_label_values(&["exited"]).set(exited);
}

fn record_status(statuses: &PodStatuses, workers: &mut PodWorkers, update: StatusUpdate) {
    let uid = update.pod.metadata.uid.clone().unwrap_or_default();
    let mut map = statuses.write().unwrap_or_else(|p| p.into_inner());
    match update.status {
        Some(status) => {
            let mut pod = update.pod;
            pod.status = Some(status);
            map.insert(uid, pod);
        }
        None => {
            map.remove(&uid);
            workers.forget(&uid);
        }
    }
}

/// Removes the directories of pods that no source wants and no worker runs (left behind by a
/// crash, or by pods stopped while the kubelet was down).
fn remove_unused_pod_dirs(pods_dir: &std::path::Path, desired: &HashSet<String>, workers: &PodWorkers) {
    for entry in std::fs::read_dir(pods_dir).into_iter().flatten().flatten() {
        let uid = entry.file_name().to_string_lossy().into_owned();
        if desired.contains(&uid) || workers.has(&uid) {
            continue;
        }
        if let Err(err) = volumes::unmount_under(&entry.path()) {
            tracing::warn!(%uid, error = %err, "unmounting an unused pod directory's volumes failed");
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => tracing::info!(%uid, "removed an unused pod directory"),
            Err(err) => tracing::warn!(%uid, error = %err, "removing an unused pod directory failed"),
        }
    }
}

/// Stops pods the runtime runs that no source wants any more (left over from before a restart).
async fn remove_orphans(
    runtime: &dyn Runtime,
    relist: &pleg::Relist,
    node: &str,
    desired: &HashSet<String>,
    workers: &PodWorkers,
) {
    let Ok(pods) = &relist.pods else {
        // The pod workers report why the runtime cannot be listed.
        return;
    };
    let orphans: HashSet<(String, u64)> = pods
        .values()
        .flat_map(|observed| &observed.sandboxes)
        .filter(|s| s.labels.get(runtime::labels::NODE).map(String::as_str) == Some(node))
        .filter(|s| !desired.contains(&s.pod.uid) && !workers.has(&s.pod.uid))
        .map(|s| {
            let grace = s
                .labels
                .get(runtime::labels::GRACE_PERIOD)
                .and_then(|g| g.parse().ok())
                .unwrap_or(30);
            (s.pod.uid.clone(), grace)
        })
        .collect();
    for (uid, grace) in orphans {
        tracing::info!(%uid, "stopping a pod no source wants");
        if let Err(err) = kuberuntime::kill_pod(runtime, None, &uid, Duration::from_secs(grace)).await {
            tracing::warn!(%uid, error = %crate::error_chain(&err), "stopping an orphaned pod failed");
        }
    }
}
