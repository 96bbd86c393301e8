//! The container runtime as the kubelet sees it: pod sandboxes and containers, shaped after the
//! CRI (`k8s.io/cri-api`) rather than after Docker, so a second runtime can be added without
//! touching the kubelet. `docker.rs` implements it over the Docker Engine API; `fake.rs` in
//! memory for unit tests and demos (`--container-runtime=fake`).
//!
//! Every container a runtime creates carries the pod's identity in labels (upstream's keys), so
//! a restarted kubelet finds and adopts what is already running instead of starting it twice.

pub(crate) mod docker;
#[cfg(test)]
mod docker_tests;
pub(crate) mod fake;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::stream::BoxStream;

/// Label keys shared with upstream's dockershim, so tools that know them keep working.
pub(crate) mod labels {
    /// The pod's name.
    pub(crate) const POD_NAME: &str = "io.kubernetes.pod.name";
    /// The pod's namespace.
    pub(crate) const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// The pod's uid.
    pub(crate) const POD_UID: &str = "io.kubernetes.pod.uid";
    /// The container's name in the pod spec; `POD` for the sandbox.
    pub(crate) const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// `podsandbox` or `container`.
    pub(crate) const CONTAINER_TYPE: &str = "io.kubernetes.docker.type";
    /// The sandbox an app container belongs to.
    pub(crate) const SANDBOX_ID: &str = "io.kubernetes.sandbox.id";
    /// How many times this container was restarted before this instance.
    pub(crate) const RESTART_COUNT: &str = "annotation.io.kubernetes.container.restartCount";
    /// A hash of the container's spec; a changed spec means a new container.
    pub(crate) const HASH: &str = "annotation.io.kubernetes.container.hash";
    /// The pod's termination grace period, for stopping it after a kubelet restart.
    pub(crate) const GRACE_PERIOD: &str = "annotation.io.kubernetes.pod.terminationGracePeriod";
    /// Marks everything hyperkube's kubelet created, for `hyperkube down` and garbage collection.
    pub(crate) const MANAGED_BY: &str = "io.hyperkube.managed-by";
    /// The node whose kubelet made a sandbox or container: kubelets sharing one engine leave
    /// others' pods alone, and teardown finds everything of one node.
    pub(crate) const NODE: &str = "io.hyperkube.node";
}

/// Which pod a sandbox or container belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PodRef {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
}

/// A port published on the host (a container's `hostPort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortMapping {
    pub(crate) host_port: u16,
    pub(crate) container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub(crate) protocol: String,
    /// Empty for all addresses.
    pub(crate) host_ip: String,
}

/// How to create a pod sandbox: the infra container holding the pod's namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SandboxConfig {
    pub(crate) pod: PodRef,
    /// The infra image (`--pod-infra-container-image`); its own entrypoint runs.
    pub(crate) image: String,
    pub(crate) hostname: String,
    /// Share the host's network (and UTS) namespace instead of getting one.
    pub(crate) host_network: bool,
    pub(crate) ports: Vec<PortMapping>,
    /// Written to /etc/resolv.conf in the pod; `None` keeps the runtime's default.
    pub(crate) resolv_conf: Option<String>,
    /// The attempt number, so a re-created sandbox gets a new name.
    pub(crate) attempt: u32,
    /// Extra labels (the termination grace period, for one).
    pub(crate) labels: BTreeMap<String, String>,
}

/// Whether a sandbox can host containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SandboxState {
    Ready,
    NotReady,
}

/// A sandbox as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sandbox {
    pub(crate) id: String,
    pub(crate) pod: PodRef,
    pub(crate) state: SandboxState,
    /// The pod's IP, when it has its own network namespace and it is running.
    pub(crate) ip: Option<String>,
    pub(crate) attempt: u32,
    pub(crate) created_at: SystemTime,
    pub(crate) labels: BTreeMap<String, String>,
}

/// A bind mount into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub(crate) host_path: String,
    pub(crate) container_path: String,
    pub(crate) read_only: bool,
}

/// Resource limits, already converted from the pod spec's quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    /// Relative CPU weight (cgroup cpu.shares), from the CPU request.
    pub(crate) cpu_shares: Option<i64>,
    /// CPU quota in microseconds per `cpu_period`, from the CPU limit.
    pub(crate) cpu_quota: Option<i64>,
    pub(crate) cpu_period: Option<i64>,
    /// Memory limit in bytes.
    pub(crate) memory_limit: Option<i64>,
}

/// The securityContext settings a runtime applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Security {
    pub(crate) run_as_user: Option<i64>,
    pub(crate) run_as_group: Option<i64>,
    pub(crate) cap_add: Vec<String>,
    pub(crate) cap_drop: Vec<String>,
    pub(crate) read_only_root_filesystem: bool,
    pub(crate) privileged: bool,
}

/// How to create one app container in a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ContainerConfig {
    /// The container's name in the pod spec.
    pub(crate) name: String,
    pub(crate) image: String,
    /// Overrides the image's entrypoint when not empty.
    pub(crate) command: Vec<String>,
    /// Overrides the image's cmd when not empty.
    pub(crate) args: Vec<String>,
    pub(crate) working_dir: Option<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) mounts: Vec<Mount>,
    pub(crate) resources: Resources,
    pub(crate) security: Security,
    /// Restarts before this instance; also part of the container's name.
    pub(crate) restart_count: u32,
    /// Extra labels: the spec hash, for one.
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) tty: bool,
    pub(crate) stdin: bool,
}

/// What a container is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// A container as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerStatus {
    pub(crate) id: String,
    pub(crate) sandbox_id: String,
    pub(crate) pod: PodRef,
    /// The container's name in the pod spec.
    pub(crate) name: String,
    pub(crate) state: ContainerState,
    pub(crate) created_at: SystemTime,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) finished_at: Option<SystemTime>,
    pub(crate) exit_code: Option<i32>,
    /// `OOMKilled`, `Error`, `Completed`: upstream's reasons for a terminated container.
    pub(crate) reason: Option<String>,
    pub(crate) message: Option<String>,
    /// The image as the spec named it.
    pub(crate) image: String,
    /// The image's content id (`sha256:...`).
    pub(crate) image_id: String,
    pub(crate) restart_count: u32,
    pub(crate) labels: BTreeMap<String, String>,
}

/// The outcome of running a command in a container (exec probes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecResult {
    pub(crate) exit_code: i64,
    pub(crate) output: Bytes,
}

/// Which part of a container's log to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogOptions {
    pub(crate) follow: bool,
    pub(crate) tail_lines: Option<u64>,
    pub(crate) timestamps: bool,
    pub(crate) since: Option<SystemTime>,
}

/// The runtime's name and version, for the Node's `containerRuntimeVersion` (`docker://20.10`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) name: String,
    pub(crate) version: String,
}

/// Why a runtime call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Error {
    /// The container, sandbox or image does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The image could not be pulled (upstream's ErrImagePull).
    #[error("pulling image {image} failed: {message}")]
    ImagePull { image: String, message: String },
    /// The image is not present and the pull policy forbids pulling (ErrImageNeverPull).
    #[error("image {0} is not present with pull policy of Never")]
    ImageNeverPull(String),
    /// The runtime refused the request (a bad configuration, a missing capability, ...).
    #[error("{operation} failed: {message}")]
    Refused { operation: &'static str, message: String },
    /// The runtime cannot be reached.
    #[error("the container runtime is unavailable: {0}")]
    Unavailable(String),
}

/// A container runtime. Calls may block on the runtime for as long as it takes (pulls); callers
/// bound them with timeouts. Only objects this kubelet created are listed.
#[async_trait::async_trait]
pub(crate) trait Runtime: Send + Sync + 'static {
    /// Name and version, also a health check.
    async fn version(&self) -> Result<Version, Error>;
    /// The image's id when it is present locally.
    async fn image_id(&self, image: &str) -> Result<Option<String>, Error>;
    /// Pulls an image; returns its id.
    async fn pull_image(&self, image: &str) -> Result<String, Error>;
    /// Creates and starts a pod sandbox; returns its id.
    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<String, Error>;
    /// Stops a sandbox (its containers must be stopped first). Stopping a stopped one succeeds.
    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), Error>;
    /// Removes a stopped sandbox.
    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), Error>;
    /// Every sandbox this kubelet created, running or not.
    async fn list_pod_sandboxes(&self) -> Result<Vec<Sandbox>, Error>;
    /// When a running sandbox last started: later than its containers when someone restarted it
    /// in place (`docker restart`). Read afresh on every call; `None` when it is not running.
    async fn sandbox_started_at(&self, id: &str) -> Result<Option<SystemTime>, Error>;
    /// Creates an app container in a sandbox; returns its id.
    async fn create_container(&self, sandbox: &Sandbox, config: &ContainerConfig) -> Result<String, Error>;
    /// Starts a created container.
    async fn start_container(&self, id: &str) -> Result<(), Error>;
    /// Sends SIGTERM (or the image's stop signal), then kills after `grace`.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), Error>;
    /// Removes a stopped container.
    async fn remove_container(&self, id: &str) -> Result<(), Error>;
    /// Every app container this kubelet created, running or not.
    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, Error>;
    /// Runs `command` in a running container and waits up to `timeout` for it.
    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecResult, Error>;
    /// A container's log, as raw bytes.
    async fn logs(&self, id: &str, options: &LogOptions) -> Result<BoxStream<'static, Result<Bytes, Error>>, Error>;
}
