//! The local cluster: `hyperkube up`, `down` and `status`. As the original hyperkube guides did
//! with `docker run`, one kubelet container on the host's network and pid namespaces runs the
//! static pods of `manifests/` — the apiserver, controller manager and scheduler in one pod, the
//! proxy in another — and the control plane bootstraps itself. Everything it makes carries
//! labels, so `down` removes exactly that and nothing else on the machine.

mod down;
mod kubeconfig;
mod manifests;
mod preflight;
mod status;
mod up;

use std::path::PathBuf;
use std::time::Duration;

pub use down::down;
pub use status::status;
pub use up::up;

/// The image the kubelet and every system pod run from, and the pods' infra image.
const IMAGE: &str = "hyperkube:latest";
/// The kubelet's directory on the host, shared with the kubelet container (`rshared`), so that
/// the volumes it mounts there reach the pods' containers.
const KUBELET_DIR: &str = "/var/lib/kubelet";
/// The label on the kubelet container naming its cluster.
const CLUSTER_LABEL: &str = "io.hyperkube.cluster";

/// Flags every local-cluster command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The cluster's name: of the kubelet container (`NAME-kubelet`) and the kubeconfig context.
    #[arg(long, default_value = "hyperkube")]
    pub name: String,
    /// The apiserver's port on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Where the cluster keeps its store, manifests and kubeconfig on the host.
    #[arg(long, default_value = "/var/lib/hyperkube")]
    pub data_dir: PathBuf,
    /// The Docker engine's socket.
    #[arg(long, default_value = "unix:///var/run/docker.sock")]
    pub docker_endpoint: String,
    /// Log verbosity, 0 to 10, as upstream's `--v`.
    #[arg(long, default_value_t = 0)]
    pub v: u8,
}

/// `hyperkube up` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub common: Common,
    /// Keep the cluster's objects in etcd (`URL[,URL...]`) instead of the embedded store.
    #[arg(long)]
    pub etcd_servers: Option<String>,
    /// How long to wait for the cluster to be ready.
    #[arg(long, default_value = "180s", value_parser = crate::flags::parse_duration)]
    pub timeout: Duration,
}

/// `hyperkube down` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub common: Common,
    /// Also remove the cluster's data (its store, manifests and kubeconfig).
    #[arg(long)]
    pub purge: bool,
}

/// Why a local-cluster command failed; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Docker engine at {endpoint} does not answer ({reason}); start it (e.g. scripts/ensure-docker.sh)")]
    NoDocker { endpoint: String, reason: String },
    #[error("Docker: {0}")]
    Docker(String),
    #[error("{0}")]
    Preflight(String),
    #[error("building the images failed: {0}")]
    Image(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster did not come up within {timeout:?}: {waiting}; see `docker logs {container}`")]
    Timeout {
        timeout: Duration,
        waiting: String,
        container: String,
    },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
}

impl Common {
    fn kubelet_container(&self) -> String {
        format!("{}-kubelet", self.name)
    }

    fn manifests_dir(&self) -> PathBuf {
        self.data_dir.join("manifests")
    }

    fn kubeconfig_file(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    fn server(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The node's name: the host's, as the kubelet would pick it.
    fn node_name(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_lowercase())
            .unwrap_or_else(|_| "localhost".into())
    }

    async fn docker(&self) -> Result<bollard::Docker, Error> {
        let no_docker = |reason: String| Error::NoDocker {
            endpoint: self.docker_endpoint.clone(),
            reason,
        };
        let socket = self
            .docker_endpoint
            .strip_prefix("unix://")
            .unwrap_or(&self.docker_endpoint);
        let docker = bollard::Docker::connect_with_unix(socket, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| no_docker(e.to_string()))?;
        docker.ping().await.map_err(|e| no_docker(e.to_string()))?;
        Ok(docker)
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// `GET path` on the cluster's apiserver; `None` unless it answers 200 within 5 s.
async fn get(common: &Common, path: &str) -> Option<bytes::Bytes> {
    use http_body_util::BodyExt;
    let authority = format!("127.0.0.1:{}", common.port);
    let call = async {
        let response = crate::http_get::get(&authority, path, &[("Accept", "application/json")])
            .await
            .ok()?;
        if response.status() != http::StatusCode::OK {
            return None;
        }
        Some(response.into_body().collect().await.ok()?.to_bytes())
    };
    tokio::time::timeout(Duration::from_secs(5), call).await.ok().flatten()
}

/// `GET path` on the cluster's apiserver, as JSON.
async fn get_json(common: &Common, path: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&get(common, path).await?).ok()
}
