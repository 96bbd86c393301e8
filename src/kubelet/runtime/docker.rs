//! [`Runtime`] over the Docker Engine API (bollard), after upstream's dockershim
//! (`pkg/kubelet/dockershim`): a pod sandbox is an infra container that holds the pod's network
//! and IPC namespaces, and each app container joins them.
//!
//! State enters and leaves in three places:
//! - **Docker itself.** Each container carries the pod's identity in labels
//!   ([`labels`](super::labels)) and a dockershim-style name (`k8s_POD_<pod>_<ns>_<uid>_<attempt>`,
//!   `k8s_<container>_<pod>_<ns>_<uid>_<restarts>`). Listing filters on
//!   [`labels::MANAGED_BY`] in the API call, so a restarted kubelet adopts what it created and
//!   ignores everything else.
//! - **The state directory** given to [`Docker::connect`]: one sub-directory per sandbox, named
//!   after its container, holding the pod's `resolv.conf`. It is bind-mounted at
//!   `/etc/resolv.conf` into the sandbox and every app container, and deleted by
//!   [`Runtime::remove_pod_sandbox`]. (Dockershim rewrote the file inside `/var/lib/docker`; a
//!   bind mount needs no access to Docker's own directories.)
//! - **An in-memory cache** of container inspections, keyed by container id and Docker state.
//!   It only saves requests: dropping it changes no result.
//!
//! Cost of the list calls: [`Runtime::list_pod_sandboxes`] is one `GET /containers/json`;
//! everything a [`Sandbox`] holds is in the list answer. [`Runtime::list_containers`] is one list
//! call plus one inspect per container whose Docker state changed since the last list (the list
//! answer has no start/finish times, exit code or OOM flag). In a steady state that is the list
//! call alone; inspections run at most [`INSPECT_CONCURRENCY`] at a time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, HostConfig, PortBinding, PortMap, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use super::{
    ContainerConfig, ContainerState, ContainerStatus, Error, ExecResult, LogOptions, PodRef, PortMapping, Runtime,
    Sandbox, SandboxConfig, SandboxState, Security, Version, labels,
};

/// The value of [`labels::MANAGED_BY`] on everything this runtime creates.
const MANAGED_BY: &str = "hyperkube";
/// [`labels::CONTAINER_TYPE`] of an infra container.
const TYPE_SANDBOX: &str = "podsandbox";
/// [`labels::CONTAINER_TYPE`] of an app container.
const TYPE_CONTAINER: &str = "container";
/// [`labels::CONTAINER_NAME`] of an infra container.
const SANDBOX_CONTAINER_NAME: &str = "POD";
/// Prefix of every container name, as dockershim's `kubePrefix`.
const NAME_PREFIX: &str = "k8s";
/// How long an infra container gets to exit on SIGTERM (dockershim's `defaultSandboxGracePeriod`).
const SANDBOX_STOP_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for the daemon to answer a request (response headers; streamed bodies such as
/// logs and pulls are not bounded by it). Stopping a container adds the grace period to it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Inspect calls in flight at once while listing containers.
const INSPECT_CONCURRENCY: usize = 8;
/// The file in a sandbox's state directory that becomes the pod's `/etc/resolv.conf`.
const RESOLV_CONF: &str = "resolv.conf";
const RESOLV_CONF_TARGET: &str = "/etc/resolv.conf";

/// Exec output kept beyond this is dropped; probes read far less (upstream keeps 10 KiB).
const MAX_EXEC_OUTPUT: usize = 1 << 20;

/// The Docker runtime. Cheap to share behind an `Arc`; every method may be called concurrently.
pub(crate) struct Docker {
    client: bollard::Docker,
    state_dir: PathBuf,
    /// Converted inspections of app containers by id, with the Docker state they were taken in.
    inspected: Mutex<HashMap<String, Inspected>>,
}

/// One cached inspection: valid while the container's Docker state (`running`, `exited`, ...)
/// is still `docker_state`. A container's times, exit code and image do not change otherwise.
struct Inspected {
    docker_state: String,
    status: ContainerStatus,
}

impl Docker {
    /// Connects to the daemon at `endpoint` and negotiates the API version (daemons from API
    /// 1.41 on work; the client speaks the lower of its own and the daemon's version).
    ///
    /// `endpoint` is the kubelet's `--docker-endpoint`: `unix:///var/run/docker.sock` or a bare
    /// socket path; no other scheme is supported. `state_dir` holds one directory per sandbox
    /// (its `resolv.conf`) and is created on first use. The daemon bind-mounts files from it, so
    /// it must be the same path on the daemon's host: a kubelet running in a container mounts it
    /// at the same path. A relative path is made absolute against the current directory.
    ///
    /// Makes one request (`GET /version`); fails with [`Error::Unavailable`] when the daemon
    /// cannot be reached. Cancelling the future abandons that request.
    pub(crate) async fn connect(endpoint: &str, state_dir: PathBuf) -> Result<Self, Error> {
        let socket = socket_path(endpoint)?;
        let state_dir = std::path::absolute(&state_dir).map_err(|err| Error::Refused {
            operation: "connect",
            message: format!("state directory {}: {err}", state_dir.display()),
        })?;
        let client =
            bollard::Docker::connect_with_unix(socket, REQUEST_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION)
                .map_err(|err| classify("connect", endpoint, err))?
                .negotiate_version()
                .await
                .map_err(|err| classify("connect", endpoint, err))?;
        Ok(Self {
            client,
            state_dir,
            inspected: Mutex::new(HashMap::new()),
        })
    }

    /// Every container of `kind` (`podsandbox` or `container`) this kubelet created, in any
    /// state, optionally narrowed by one more `key=value` label. One request.
    async fn list_managed(
        &self,
        kind: &str,
        extra_label: Option<(&str, &str)>,
    ) -> Result<Vec<ContainerSummary>, Error> {
        let mut label_filters = vec![
            format!("{}={MANAGED_BY}", labels::MANAGED_BY),
            format!("{}={kind}", labels::CONTAINER_TYPE),
        ];
        if let Some((key, value)) = extra_label {
            label_filters.push(format!("{key}={value}"));
        }
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), label_filters)])),
            ..Default::default()
        };
        self.client
            .list_containers(Some(options))
            .await
            .map_err(|err| classify("list containers", kind, err))
    }

    /// The status of app container `id`, from the cache when its Docker state is still
    /// `list_state`, else from an inspect call. `None` when it vanished or is not one of ours.
    async fn container_status(&self, id: String, list_state: String) -> Result<Option<ContainerStatus>, Error> {
        if let Some(hit) = self.cache().get(&id).filter(|hit| hit.docker_state == list_state) {
            return Ok(Some(hit.status.clone()));
        }
        let info = match self.client.inspect_container(&id, None).await {
            Ok(info) => info,
            // Removed between the list call and now.
            Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => return Ok(None),
            Err(err) => return Err(classify("inspect container", &format!("container {id}"), err)),
        };
        let Some((docker_state, status)) = container_from_inspect(info) else {
            tracing::warn!(container = %id, "skipping a managed container without the pod's identity labels");
            return Ok(None);
        };
        self.cache().insert(
            id,
            Inspected {
                docker_state,
                status: status.clone(),
            },
        );
        Ok(Some(status))
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, Inspected>> {
        // The map holds no invariant a panicking holder could break.
        self.inspected.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inspects container `id`, mapping 404 to `NotFound(what)`.
    async fn inspect(&self, id: &str, operation: &'static str, what: &str) -> Result<ContainerInspectResponse, Error> {
        self.client
            .inspect_container(id, None)
            .await
            .map_err(|err| classify(operation, what, err))
    }

    /// Stops container `id`, waiting up to `grace` for it to exit on SIGTERM (or its stop signal)
    /// before Docker kills it. Stopping a stopped container succeeds (the daemon answers 304).
    async fn stop(&self, id: &str, grace: Duration, what: &str) -> Result<(), Error> {
        // Docker takes whole seconds: round up so the container gets at least `grace`.
        let seconds = grace.as_secs().saturating_add(u64::from(grace.subsec_nanos() > 0));
        let seconds = i32::try_from(seconds).unwrap_or(i32::MAX);
        let options = StopContainerOptions {
            t: Some(seconds),
            ..Default::default()
        };
        // The daemon answers only once the container is gone, so the request may take the whole
        // grace period on top of the usual allowance.
        let allowance = REQUEST_TIMEOUT.saturating_add(Duration::from_secs(seconds.unsigned_abs().into()));
        let client = self.client.clone().with_timeout(allowance);
        client
            .stop_container(id, Some(options))
            .await
            .map_err(|err| classify("stop container", what, err))
    }

    /// Removes container `id` and its anonymous volumes; refuses a running one.
    async fn remove(&self, id: &str, what: &str) -> Result<(), Error> {
        let options = RemoveContainerOptions {
            v: true,
            force: false,
            link: false,
        };
        self.client
            .remove_container(id, Some(options))
            .await
            .map_err(|err| classify("remove container", what, err))?;
        self.cache().remove(id);
        Ok(())
    }

    fn sandbox_dir(&self, container_name: &str) -> PathBuf {
        self.state_dir.join(container_name.trim_start_matches('/'))
    }
}

#[async_trait::async_trait]
impl Runtime for Docker {
    async fn version(&self) -> Result<Version, Error> {
        let version = self
            .client
            .version()
            .await
            .map_err(|err| classify("version", "docker", err))?;
        Ok(Version {
            name: "docker".to_owned(),
            version: version.version.unwrap_or_default(),
        })
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, Error> {
        match self.client.inspect_image(image).await {
            Ok(info) => Ok(info.id),
            Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(err) => Err(classify("inspect image", image, err)),
        }
    }

    async fn pull_image(&self, image: &str) -> Result<String, Error> {
        let options = CreateImageOptions {
            from_image: Some(image.to_owned()),
            // An empty tag pulls every tag of the repository.
            tag: (!has_tag_or_digest(image)).then(|| "latest".to_owned()),
            ..Default::default()
        };
        let mut progress = self.client.create_image(Some(options), None, None);
        while let Some(item) = progress.next().await {
            match item {
                // bollard turns an `errorDetail` with a message into an error; one without is
                // still a failure.
                Ok(info) => {
                    if let Some(detail) = info.error_detail {
                        let message = detail.message.unwrap_or_else(|| "the pull failed".to_owned());
                        return Err(Error::ImagePull {
                            image: image.to_owned(),
                            message,
                        });
                    }
                }
                Err(err) => return Err(pull_error(image, err)),
            }
        }
        self.image_id(image).await?.ok_or_else(|| Error::ImagePull {
            image: image.to_owned(),
            message: "the daemon reported success but the image is not present".to_owned(),
        })
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<String, Error> {
        let pod = &config.pod;
        let name = sandbox_name(pod, config.attempt);

        let mut binds = Vec::new();
        // The directory to remove if the sandbox is not created: only one this call made, never
        // that of a sandbox of the same name (the create then fails with a conflict).
        let mut new_dir = None;
        if let Some(resolv_conf) = &config.resolv_conf {
            let dir = self.sandbox_dir(&name);
            let file = dir.join(RESOLV_CONF);
            let io_error = |err: std::io::Error| Error::Refused {
                operation: "run pod sandbox",
                message: format!("writing {}: {err}", file.display()),
            };
            let existed = tokio::fs::try_exists(&dir).await.map_err(io_error)?;
            tokio::fs::create_dir_all(&dir).await.map_err(io_error)?;
            tokio::fs::write(&file, resolv_conf).await.map_err(io_error)?;
            binds.push(format!("{}:{RESOLV_CONF_TARGET}", file.display()));
            new_dir = (!existed).then_some(dir);
        }

        let mut container_labels: HashMap<String, String> = config.labels.clone().into_iter().collect();
        container_labels.extend(identity_labels(pod, SANDBOX_CONTAINER_NAME, TYPE_SANDBOX));

        let (exposed_ports, port_bindings) = if config.host_network {
            (Vec::new(), PortMap::new())
        } else {
            port_bindings(&config.ports)
        };
        let body = ContainerCreateBody {
            image: Some(config.image.clone()),
            // With the host's network the host's UTS namespace comes along: no hostname of our own.
            hostname: (!config.host_network && !config.hostname.is_empty()).then(|| config.hostname.clone()),
            labels: Some(container_labels),
            exposed_ports: (!exposed_ports.is_empty()).then_some(exposed_ports),
            host_config: Some(HostConfig {
                network_mode: Some(if config.host_network { "host" } else { "bridge" }.to_owned()),
                ipc_mode: Some("shareable".to_owned()),
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                binds: (!binds.is_empty()).then_some(binds),
                restart_policy: Some(no_restart()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let created = match self.client.create_container(Some(options), body).await {
            Ok(created) => created,
            Err(err) => {
                if let Some(dir) = new_dir {
                    remove_dir(&dir).await;
                }
                return Err(classify("create pod sandbox", &format!("image {}", config.image), err));
            }
        };
        // A sandbox that fails to start stays behind, listed as NotReady, for the kubelet to remove
        // (as with dockershim).
        self.client
            .start_container(&created.id, None)
            .await
            .map_err(|err| classify("start pod sandbox", &format!("sandbox {}", created.id), err))?;
        tracing::debug!(sandbox = %created.id, pod = %pod.name, namespace = %pod.namespace, "started pod sandbox");
        Ok(created.id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), Error> {
        self.stop(id, SANDBOX_STOP_GRACE, &format!("sandbox {id}")).await
    }

    /// Also removes the sandbox's app containers (CRI's contract); any still running makes it fail
    /// with [`Error::Refused`], as does a running sandbox.
    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), Error> {
        let what = format!("sandbox {id}");
        let info = self.inspect(id, "remove pod sandbox", &what).await?;
        for container in self
            .list_managed(TYPE_CONTAINER, Some((labels::SANDBOX_ID, id)))
            .await?
        {
            let Some(container_id) = container.id else { continue };
            match self.remove(&container_id, &format!("container {container_id}")).await {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        self.remove(id, &what).await?;
        if let Some(name) = info.name {
            remove_dir(&self.sandbox_dir(&name)).await;
        }
        Ok(())
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<Sandbox>, Error> {
        let summaries = self.list_managed(TYPE_SANDBOX, None).await?;
        Ok(summaries.into_iter().filter_map(sandbox_from_summary).collect())
    }

    async fn sandbox_started_at(&self, id: &str) -> Result<Option<SystemTime>, Error> {
        let state = self
            .inspect(id, "inspect sandbox", &format!("sandbox {id}"))
            .await?
            .state;
        Ok(state
            .filter(|s| s.running == Some(true))
            .and_then(|s| parse_time(s.started_at.as_deref())))
    }

    async fn create_container(&self, sandbox: &Sandbox, config: &ContainerConfig) -> Result<String, Error> {
        let user = docker_user(&config.security)?;
        // The sandbox's resolv.conf mount, if it has one, is shared with every container.
        let sandbox_info = self
            .inspect(&sandbox.id, "create container", &format!("sandbox {}", sandbox.id))
            .await?;
        let resolv_conf = sandbox_info.mounts.unwrap_or_default().into_iter().find_map(|mount| {
            (mount.destination.as_deref() == Some(RESOLV_CONF_TARGET))
                .then_some(mount.source)
                .flatten()
        });

        let pod = &sandbox.pod;
        let mut container_labels: HashMap<String, String> = config.labels.clone().into_iter().collect();
        container_labels.extend(identity_labels(pod, &config.name, TYPE_CONTAINER));
        container_labels.insert(labels::SANDBOX_ID.to_owned(), sandbox.id.clone());
        container_labels.insert(labels::RESTART_COUNT.to_owned(), config.restart_count.to_string());

        let mut binds: Vec<String> = config
            .mounts
            .iter()
            .map(|m| {
                let mode = if m.read_only { ":ro" } else { "" };
                format!("{}:{}{mode}", m.host_path, m.container_path)
            })
            .collect();
        // A mount of the pod's own at /etc/resolv.conf wins (Docker refuses duplicate targets).
        if let Some(source) = resolv_conf
            && !config.mounts.iter().any(|m| m.container_path == RESOLV_CONF_TARGET)
        {
            binds.push(format!("{source}:{RESOLV_CONF_TARGET}"));
        }
        let security = &config.security;
        let resources = &config.resources;
        let joined = format!("container:{}", sandbox.id);
        let body = ContainerCreateBody {
            image: Some(config.image.clone()),
            // Docker's merge rule matches Kubernetes': an entrypoint of ours drops the image's cmd.
            entrypoint: (!config.command.is_empty()).then(|| config.command.clone()),
            cmd: (!config.args.is_empty()).then(|| config.args.clone()),
            working_dir: config.working_dir.clone().filter(|dir| !dir.is_empty()),
            env: Some(config.env.iter().map(|(key, value)| format!("{key}={value}")).collect()),
            user,
            labels: Some(container_labels),
            tty: Some(config.tty),
            open_stdin: Some(config.stdin),
            stdin_once: Some(false),
            host_config: Some(HostConfig {
                // Joining the network namespace also gives the sandbox's hostname, hosts and
                // resolv.conf files: Docker copies them from the container joined.
                network_mode: Some(joined.clone()),
                ipc_mode: Some(joined),
                binds: (!binds.is_empty()).then_some(binds),
                cpu_shares: resources.cpu_shares,
                cpu_quota: resources.cpu_quota,
                cpu_period: resources.cpu_period,
                memory: resources.memory_limit,
                cap_add: (!security.cap_add.is_empty()).then(|| security.cap_add.clone()),
                cap_drop: (!security.cap_drop.is_empty()).then(|| security.cap_drop.clone()),
                readonly_rootfs: Some(security.read_only_root_filesystem),
                privileged: Some(security.privileged),
                restart_policy: Some(no_restart()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(container_name(&config.name, pod, config.restart_count)),
            ..Default::default()
        };
        let created = self
            .client
            .create_container(Some(options), body)
            .await
            .map_err(|err| classify("create container", &format!("image {}", config.image), err))?;
        for warning in created.warnings {
            tracing::warn!(container = %created.id, %warning, "docker warned while creating a container");
        }
        Ok(created.id)
    }

    async fn start_container(&self, id: &str) -> Result<(), Error> {
        self.client
            .start_container(id, None)
            .await
            .map_err(|err| classify("start container", &format!("container {id}"), err))
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), Error> {
        self.stop(id, grace, &format!("container {id}")).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), Error> {
        self.remove(id, &format!("container {id}")).await
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, Error> {
        let summaries = self.list_managed(TYPE_CONTAINER, None).await?;
        let listed: Vec<(String, String)> = summaries
            .into_iter()
            .filter_map(|s| Some((s.id?, s.state.map(|state| state.to_string()).unwrap_or_default())))
            .collect();
        let ids: HashSet<String> = listed.iter().map(|(id, _)| id.clone()).collect();
        let statuses: Vec<Option<ContainerStatus>> = stream::iter(listed)
            .map(|(id, state)| self.container_status(id, state))
            .buffered(INSPECT_CONCURRENCY)
            .try_collect()
            .await?;
        self.cache().retain(|id, _| ids.contains(id));
        Ok(statuses.into_iter().flatten().collect())
    }

    /// Output is stdout and stderr interleaved as they arrive, cut at 1 MiB. On timeout the
    /// command keeps running in the container (Docker cannot kill an exec) and the call fails with
    /// [`Error::Refused`].
    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecResult, Error> {
        if command.is_empty() {
            return Err(Error::Refused {
                operation: "exec",
                message: "no command given".to_owned(),
            });
        }
        let what = format!("container {id}");
        let run = async {
            let options = CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(command.to_vec()),
                ..Default::default()
            };
            let exec = self
                .client
                .create_exec(id, options)
                .await
                .map_err(|err| classify("exec", &what, err))?;
            let started = self
                .client
                .start_exec(&exec.id, None)
                .await
                .map_err(|err| classify("exec", &what, err))?;
            let StartExecResults::Attached { mut output, input } = started else {
                return Err(Error::Refused {
                    operation: "exec",
                    message: "the daemon detached the exec".to_owned(),
                });
            };
            let mut collected = BytesMut::new();
            while let Some(chunk) = output.next().await {
                let chunk = chunk.map_err(|err| classify("exec", &what, err))?.into_bytes();
                let room = MAX_EXEC_OUTPUT.saturating_sub(collected.len());
                collected.extend_from_slice(chunk.get(..chunk.len().min(room)).unwrap_or_default());
            }
            drop(input);
            // The daemon may report the exec as running for a moment after its output ends
            // (dockershim retried too).
            for _ in 0..40 {
                let info = self
                    .client
                    .inspect_exec(&exec.id)
                    .await
                    .map_err(|err| classify("exec", &what, err))?;
                if let (Some(false), Some(code)) = (info.running, info.exit_code) {
                    return Ok(ExecResult {
                        exit_code: code,
                        output: collected.freeze(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(Error::Refused {
                operation: "exec",
                message: "the daemon reported no exit code".to_owned(),
            })
        };
        tokio::time::timeout(timeout, run).await.unwrap_or_else(|_| {
            Err(Error::Refused {
                operation: "exec",
                message: format!("command {command:?} timed out after {timeout:?}"),
            })
        })
    }

    /// Checks that the container exists first (one inspect), so a missing one fails here rather
    /// than in the stream. `since` has whole-second resolution. Dropping the stream ends a follow.
    async fn logs(&self, id: &str, options: &LogOptions) -> Result<BoxStream<'static, Result<Bytes, Error>>, Error> {
        let what = format!("container {id}");
        self.inspect(id, "logs", &what).await?;
        let since = options
            .since
            .and_then(|since| since.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| i32::try_from(since.as_secs()).unwrap_or(i32::MAX));
        let query = LogsOptions {
            follow: options.follow,
            stdout: true,
            stderr: true,
            since,
            until: 0,
            timestamps: options.timestamps,
            tail: options.tail_lines.map_or_else(|| "all".to_owned(), |n| n.to_string()),
        };
        let stream = self.client.logs(id, Some(query)).map(move |item| {
            item.map(bollard::container::LogOutput::into_bytes)
                .map_err(|err| classify("logs", &what, err))
        });
        Ok(stream.boxed())
    }
}

/// The socket path in a `unix://` endpoint or a bare path.
fn socket_path(endpoint: &str) -> Result<&str, Error> {
    match endpoint.strip_prefix("unix://") {
        Some(path) => Ok(path),
        None if endpoint.starts_with('/') => Ok(endpoint),
        None => Err(Error::Refused {
            operation: "connect",
            message: format!("unsupported docker endpoint {endpoint:?}: only unix:// sockets are supported"),
        }),
    }
}

/// Maps a bollard error: 404 → `NotFound(what)`, no answer → `Unavailable`, any other refusal by
/// the daemon → `Refused` with its message.
fn classify(operation: &'static str, what: &str, err: BollardError) -> Error {
    match err {
        BollardError::DockerResponseServerError { status_code: 404, .. } => Error::NotFound(what.to_owned()),
        BollardError::DockerResponseServerError { message, .. } => Error::Refused { operation, message },
        err @ (BollardError::HyperLegacyError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::IOError { .. }
        | BollardError::SocketNotFoundError(_)
        | BollardError::RequestTimeoutError) => Error::Unavailable(error_chain(&err)),
        err => Error::Refused {
            operation,
            message: error_chain(&err),
        },
    }
}

/// A pull failure: `ImagePull` with the daemon's message, unless the daemon was unreachable.
fn pull_error(image: &str, err: BollardError) -> Error {
    let message = match &err {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        BollardError::DockerStreamError { error } => error.clone(),
        other => error_chain(other),
    };
    match classify("pull image", image, err) {
        unavailable @ Error::Unavailable(_) => unavailable,
        _ => Error::ImagePull {
            image: image.to_owned(),
            message,
        },
    }
}

/// `err` and its sources, joined with `: `.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Whether an image reference names a tag or digest (`busybox:1`, `reg:5000/x@sha256:..`) rather
/// than a bare repository (`reg:5000/x`).
fn has_tag_or_digest(image: &str) -> bool {
    image.contains('@') || image.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

fn no_restart() -> RestartPolicy {
    RestartPolicy {
        name: Some(RestartPolicyNameEnum::NO),
        maximum_retry_count: None,
    }
}

/// The labels every container of the pod carries.
fn identity_labels(pod: &PodRef, container: &str, kind: &str) -> [(String, String); 6] {
    [
        (labels::POD_NAME.to_owned(), pod.name.clone()),
        (labels::POD_NAMESPACE.to_owned(), pod.namespace.clone()),
        (labels::POD_UID.to_owned(), pod.uid.clone()),
        (labels::CONTAINER_NAME.to_owned(), container.to_owned()),
        (labels::CONTAINER_TYPE.to_owned(), kind.to_owned()),
        (labels::MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
    ]
}

/// `k8s_POD_<pod>_<namespace>_<uid>_<attempt>`, dockershim's sandbox name.
fn sandbox_name(pod: &PodRef, attempt: u32) -> String {
    container_name(SANDBOX_CONTAINER_NAME, pod, attempt)
}

/// `k8s_<container>_<pod>_<namespace>_<uid>_<n>`, dockershim's container name.
fn container_name(container: &str, pod: &PodRef, n: u32) -> String {
    format!(
        "{NAME_PREFIX}_{container}_{}_{}_{}_{n}",
        pod.name, pod.namespace, pod.uid
    )
}

/// The trailing counter of a dockershim name (`/k8s_POD_web_default_uid_2` → 2).
fn name_counter(name: &str) -> Option<u32> {
    name.rsplit_once('_')?.1.parse().ok()
}

/// Docker's `User`: `uid` or `uid:gid`. Like dockershim, a group needs a user.
fn docker_user(security: &Security) -> Result<Option<String>, Error> {
    match (security.run_as_user, security.run_as_group) {
        (None, None) => Ok(None),
        (Some(uid), None) => Ok(Some(uid.to_string())),
        (Some(uid), Some(gid)) => Ok(Some(format!("{uid}:{gid}"))),
        (None, Some(_)) => Err(Error::Refused {
            operation: "create container",
            message: "runAsGroup is specified without a runAsUser".to_owned(),
        }),
    }
}

/// `ExposedPorts` and `PortBindings` for the sandbox's host ports.
fn port_bindings(ports: &[PortMapping]) -> (Vec<String>, PortMap) {
    let mut exposed = Vec::new();
    let mut bindings = PortMap::new();
    for port in ports {
        let protocol = if port.protocol.is_empty() {
            "tcp".to_owned()
        } else {
            port.protocol.to_ascii_lowercase()
        };
        let key = format!("{}/{protocol}", port.container_port);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        let binding = PortBinding {
            host_ip: (!port.host_ip.is_empty()).then(|| port.host_ip.clone()),
            host_port: Some(port.host_port.to_string()),
        };
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    (exposed, bindings)
}

/// A pod's identity from a container's labels.
fn pod_from_labels(labels: &BTreeMap<String, String>) -> Option<PodRef> {
    Some(PodRef {
        namespace: labels.get(labels::POD_NAMESPACE)?.clone(),
        name: labels.get(labels::POD_NAME)?.clone(),
        uid: labels.get(labels::POD_UID)?.clone(),
    })
}

/// Docker's RFC 3339 timestamps; empty and Go's zero time (`0001-01-01T00:00:00Z`) mean unset.
fn parse_time(text: Option<&str>) -> Option<SystemTime> {
    let text = text?;
    if text.is_empty() || text.starts_with("0001-01-01") {
        return None;
    }
    text.parse::<jiff::Timestamp>().ok().map(SystemTime::from)
}

fn unix_seconds(seconds: i64) -> SystemTime {
    u64::try_from(seconds).map_or(UNIX_EPOCH, |s| UNIX_EPOCH + Duration::from_secs(s))
}

/// A sandbox from its list entry: everything needed is there, so no inspect.
fn sandbox_from_summary(summary: ContainerSummary) -> Option<Sandbox> {
    let id = summary.id?;
    let labels: BTreeMap<String, String> = summary.labels.unwrap_or_default().into_iter().collect();
    let Some(pod) = pod_from_labels(&labels) else {
        tracing::warn!(sandbox = %id, "skipping a managed sandbox without the pod's identity labels");
        return None;
    };
    let running = summary.state.is_some_and(|state| state.to_string() == "running");
    let network_mode = summary
        .host_config
        .and_then(|config| config.network_mode)
        .unwrap_or_default();
    let ip = if network_mode == "host" {
        None
    } else {
        let mut networks = summary
            .network_settings
            .and_then(|settings| settings.networks)
            .unwrap_or_default();
        // The sandbox's own network first ("bridge" unless the daemon's default differs).
        let own = networks.remove(&network_mode).or_else(|| networks.remove("bridge"));
        own.into_iter()
            .chain(networks.into_values())
            .find_map(|endpoint| endpoint.ip_address.filter(|ip| !ip.is_empty()))
    };
    let attempt = summary
        .names
        .unwrap_or_default()
        .first()
        .and_then(|name| name_counter(name))
        .unwrap_or(0);
    Some(Sandbox {
        id,
        pod,
        state: if running {
            SandboxState::Ready
        } else {
            SandboxState::NotReady
        },
        ip,
        attempt,
        created_at: summary.created.map_or(UNIX_EPOCH, unix_seconds),
        labels,
    })
}

/// An app container's status from its inspection, with the Docker state it was taken in. The
/// state, reason and times follow dockershim's `ContainerStatus`.
fn container_from_inspect(info: ContainerInspectResponse) -> Option<(String, ContainerStatus)> {
    let id = info.id?;
    let config = info.config.unwrap_or_default();
    let labels: BTreeMap<String, String> = config.labels.unwrap_or_default().into_iter().collect();
    let pod = pod_from_labels(&labels)?;
    let name = labels.get(labels::CONTAINER_NAME)?.clone();
    let sandbox_id = labels.get(labels::SANDBOX_ID).cloned().unwrap_or_default();
    let restart_count = labels
        .get(labels::RESTART_COUNT)
        .and_then(|count| count.parse().ok())
        .or_else(|| info.name.as_deref().and_then(name_counter))
        .unwrap_or(0);
    let docker_state = info.state.clone().unwrap_or_default();
    let created_at = parse_time(info.created.as_deref()).unwrap_or(UNIX_EPOCH);
    let mut started_at = parse_time(docker_state.started_at.as_deref());
    let mut finished_at = parse_time(docker_state.finished_at.as_deref());
    let exit = docker_state.exit_code.unwrap_or(0);
    let exit_code = i32::try_from(exit).unwrap_or(if exit < 0 { i32::MIN } else { i32::MAX });
    let error_message = docker_state.error.clone().filter(|message| !message.is_empty());

    let (state, exit_code, reason, message) = if docker_state.running == Some(true) {
        (ContainerState::Running, None, None, None)
    } else if finished_at.is_some() {
        // Ran and exited.
        let reason = if docker_state.oom_killed == Some(true) {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        (
            ContainerState::Exited,
            Some(exit_code),
            Some(reason.to_owned()),
            error_message,
        )
    } else if exit_code != 0 {
        // Failed to start: no finish time but an exit code.
        started_at = Some(created_at);
        finished_at = Some(created_at);
        (
            ContainerState::Exited,
            Some(exit_code),
            Some("ContainerCannotRun".to_owned()),
            error_message,
        )
    } else if docker_state
        .status
        .is_some_and(|status| status.to_string() == "created")
    {
        (ContainerState::Created, None, None, error_message)
    } else {
        (ContainerState::Unknown, None, None, error_message)
    };

    let status = ContainerStatus {
        id,
        sandbox_id,
        pod,
        name,
        state,
        created_at,
        started_at,
        finished_at,
        exit_code,
        reason,
        message,
        image: config.image.unwrap_or_default(),
        image_id: info.image.unwrap_or_default(),
        restart_count,
        labels,
    };
    Some((
        docker_state.status.map(|status| status.to_string()).unwrap_or_default(),
        status,
    ))
}

/// Removes a sandbox's state directory; a failure is logged, not returned: the container is gone
/// and a stray directory harms nothing.
async fn remove_dir(dir: &Path) {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => tracing::warn!(dir = %dir.display(), error = %err, "could not remove a sandbox's state directory"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: "web".into(),
            uid: "1234-abcd".into(),
        }
    }

    fn identity(kind: &str, container: &str) -> serde_json::Value {
        json!({
            labels::POD_NAME: "web",
            labels::POD_NAMESPACE: "default",
            labels::POD_UID: "1234-abcd",
            labels::CONTAINER_NAME: container,
            labels::CONTAINER_TYPE: kind,
            labels::MANAGED_BY: MANAGED_BY,
            labels::SANDBOX_ID: "sandbox1",
            labels::RESTART_COUNT: "4",
        })
    }

    /// A `GET /containers/{id}/json` answer shaped as dockerd 20.10 sends it.
    fn inspect(state: serde_json::Value) -> ContainerInspectResponse {
        let value = json!({
            "Id": "c1",
            "Created": "2024-05-01T10:00:00.123456789Z",
            "Name": "/k8s_app_web_default_1234-abcd_4",
            "Image": "sha256:feed",
            "State": state,
            "Config": { "Image": "busybox:1", "Labels": identity("container", "app") },
            "HostConfig": { "NetworkMode": "container:sandbox1", "ConsoleSize": [0, 0] },
        });
        serde_json::from_value(value).expect("inspect json")
    }

    fn state(status: &str, running: bool, exit: i64, oom: bool, started: &str, finished: &str) -> serde_json::Value {
        json!({
            "Status": status, "Running": running, "Paused": false, "Restarting": false, "OOMKilled": oom,
            "Dead": false, "Pid": 0, "ExitCode": exit, "Error": "", "StartedAt": started, "FinishedAt": finished,
        })
    }

    const ZERO: &str = "0001-01-01T00:00:00Z";
    const STARTED: &str = "2024-05-01T10:00:01.5Z";
    const FINISHED: &str = "2024-05-01T10:00:02Z";

    #[test]
    fn endpoint_must_be_a_unix_socket() {
        assert_eq!(
            socket_path("unix:///var/run/docker.sock").ok(),
            Some("/var/run/docker.sock")
        );
        assert_eq!(socket_path("/run/docker.sock").ok(), Some("/run/docker.sock"));
        assert!(matches!(
            socket_path("tcp://127.0.0.1:2375"),
            Err(Error::Refused { .. })
        ));
    }

    #[test]
    fn names_follow_dockershim() {
        assert_eq!(sandbox_name(&pod(), 2), "k8s_POD_web_default_1234-abcd_2");
        assert_eq!(container_name("app", &pod(), 0), "k8s_app_web_default_1234-abcd_0");
        assert_eq!(name_counter("/k8s_POD_web_default_1234-abcd_2"), Some(2));
        assert_eq!(name_counter("/stranger"), None);
    }

    #[test]
    fn untagged_images_are_pulled_as_latest() {
        assert!(!has_tag_or_digest("busybox"));
        assert!(!has_tag_or_digest("registry.local:5000/team/app"));
        assert!(has_tag_or_digest("busybox:1.36"));
        assert!(has_tag_or_digest("registry.local:5000/team/app:v1"));
        assert!(has_tag_or_digest("app@sha256:0123"));
    }

    #[test]
    fn user_is_uid_and_gid_and_a_group_needs_a_user() {
        let user = |run_as_user, run_as_group| {
            docker_user(&Security {
                run_as_user,
                run_as_group,
                ..Default::default()
            })
        };
        assert_eq!(user(None, None).ok(), Some(None));
        assert_eq!(user(Some(1000), None).ok(), Some(Some("1000".to_owned())));
        assert_eq!(user(Some(0), Some(5)).ok(), Some(Some("0:5".to_owned())));
        assert!(matches!(user(None, Some(5)), Err(Error::Refused { .. })));
    }

    #[test]
    fn port_bindings_group_host_ports_by_container_port() {
        let mapping = |host_port, container_port, protocol: &str, host_ip: &str| PortMapping {
            host_port,
            container_port,
            protocol: protocol.into(),
            host_ip: host_ip.into(),
        };
        let (exposed, bindings) = port_bindings(&[
            mapping(8080, 80, "TCP", ""),
            mapping(8081, 80, "tcp", "127.0.0.1"),
            mapping(53, 53, "UDP", ""),
        ]);
        assert_eq!(exposed, ["80/tcp", "53/udp"]);
        let web = bindings.get("80/tcp").cloned().flatten().unwrap_or_default();
        assert_eq!(web.len(), 2);
        assert_eq!(
            web[0],
            PortBinding {
                host_ip: None,
                host_port: Some("8080".into())
            }
        );
        assert_eq!(
            web[1],
            PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("8081".into())
            }
        );
        assert!(bindings.contains_key("53/udp"));
    }

    #[test]
    fn go_zero_time_is_unset_and_nanoseconds_are_kept() {
        assert_eq!(parse_time(Some(ZERO)), None);
        assert_eq!(parse_time(Some("")), None);
        assert_eq!(parse_time(None), None);
        assert_eq!(parse_time(Some("not a time")), None);
        let parsed = parse_time(Some("1970-01-01T00:00:01.000000002Z"));
        assert_eq!(parsed, Some(UNIX_EPOCH + Duration::new(1, 2)));
        assert_eq!(
            parse_time(Some("1970-01-01T01:00:01+01:00")),
            Some(UNIX_EPOCH + Duration::from_secs(1))
        );
    }

    #[test]
    fn daemon_errors_map_to_runtime_errors() {
        let server = |status_code, message: &str| BollardError::DockerResponseServerError {
            status_code,
            message: message.into(),
        };
        assert!(
            matches!(classify("op", "container x", server(404, "No such container: x")), Error::NotFound(what) if what == "container x")
        );
        assert!(
            matches!(classify("op", "x", server(409, "is running")), Error::Refused { message, .. } if message == "is running")
        );
        assert!(matches!(
            classify("op", "x", BollardError::RequestTimeoutError),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            classify("op", "x", BollardError::SocketNotFoundError("/s".into())),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            pull_error("img", server(500, "no such host")),
            Error::ImagePull { image, message } if image == "img" && message == "no such host"
        ));
        assert!(matches!(
            pull_error("img", BollardError::DockerStreamError { error: "manifest unknown".into() }),
            Error::ImagePull { message, .. } if message == "manifest unknown"
        ));
        assert!(matches!(
            pull_error("img", BollardError::RequestTimeoutError),
            Error::Unavailable(_)
        ));
    }

    #[test]
    fn running_container_has_a_start_and_nothing_else() {
        let (docker_state, status) =
            container_from_inspect(inspect(state("running", true, 0, false, STARTED, ZERO))).expect("status");
        assert_eq!(docker_state, "running");
        assert_eq!(status.state, ContainerState::Running);
        assert_eq!(status.started_at, parse_time(Some(STARTED)));
        assert_eq!(
            (status.finished_at, status.exit_code, status.reason),
            (None, None, None)
        );
        assert_eq!(
            (status.id.as_str(), status.name.as_str(), status.sandbox_id.as_str()),
            ("c1", "app", "sandbox1")
        );
        assert_eq!(
            (status.image.as_str(), status.image_id.as_str()),
            ("busybox:1", "sha256:feed")
        );
        assert_eq!(status.restart_count, 4);
        assert_eq!(status.pod, pod());
        assert_eq!(
            status.created_at,
            UNIX_EPOCH + Duration::new(1_714_557_600, 123_456_789)
        );
    }

    #[test]
    fn exit_reasons_follow_dockershim() {
        let reason = |exit, oom| {
            let (_, status) =
                container_from_inspect(inspect(state("exited", false, exit, oom, STARTED, FINISHED))).expect("status");
            assert_eq!(status.state, ContainerState::Exited);
            assert_eq!(status.exit_code, Some(i32::try_from(exit).unwrap_or_default()));
            assert_eq!(status.finished_at, parse_time(Some(FINISHED)));
            status.reason
        };
        assert_eq!(reason(0, false).as_deref(), Some("Completed"));
        assert_eq!(reason(3, false).as_deref(), Some("Error"));
        assert_eq!(reason(137, true).as_deref(), Some("OOMKilled"));
        assert_eq!(reason(0, true).as_deref(), Some("OOMKilled"));
    }

    #[test]
    fn container_that_could_not_run_is_exited_at_its_creation() {
        let mut failed = state("created", false, 127, false, ZERO, ZERO);
        failed["Error"] = json!("exec: \"nope\": executable file not found in $PATH");
        let (_, status) = container_from_inspect(inspect(failed)).expect("status");
        assert_eq!(status.state, ContainerState::Exited);
        assert_eq!(status.reason.as_deref(), Some("ContainerCannotRun"));
        assert_eq!(status.exit_code, Some(127));
        assert_eq!(status.started_at, Some(status.created_at));
        assert_eq!(status.finished_at, Some(status.created_at));
        assert!(
            status
                .message
                .is_some_and(|message| message.contains("executable file not found"))
        );
    }

    #[test]
    fn created_container_is_created() {
        let (_, status) =
            container_from_inspect(inspect(state("created", false, 0, false, ZERO, ZERO))).expect("status");
        assert_eq!(status.state, ContainerState::Created);
        assert_eq!((status.started_at, status.exit_code), (None, None));
    }

    #[test]
    fn containers_without_identity_are_skipped() {
        let mut info = inspect(state("running", true, 0, false, STARTED, ZERO));
        if let Some(labels) = info.config.as_mut().and_then(|config| config.labels.as_mut()) {
            labels.remove(labels::POD_UID);
        }
        assert!(container_from_inspect(info).is_none());
    }

    /// A `GET /containers/json` entry shaped as dockerd 20.10 sends it.
    fn summary(state: &str, network_mode: &str, networks: serde_json::Value) -> ContainerSummary {
        let value = json!({
            "Id": "s1",
            "Names": ["/k8s_POD_web_default_1234-abcd_3"],
            "Image": "hyperkube-test/pause:latest",
            "ImageID": "sha256:beef",
            "Command": "sh",
            "Created": 1_714_557_600,
            "Ports": [{ "IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp" }],
            "Labels": identity("podsandbox", "POD"),
            "State": state,
            "Status": "Up 2 minutes",
            "HostConfig": { "NetworkMode": network_mode },
            "NetworkSettings": { "Networks": networks },
            "Mounts": [],
        });
        serde_json::from_value(value).expect("summary json")
    }

    #[test]
    fn sandbox_comes_from_the_list_entry() {
        let bridge = json!({ "bridge": { "NetworkID": "n1", "EndpointID": "e1", "Gateway": "172.17.0.1", "IPAddress": "172.17.0.5", "IPPrefixLen": 16 } });
        let sandbox = sandbox_from_summary(summary("running", "bridge", bridge)).expect("sandbox");
        assert_eq!(sandbox.id, "s1");
        assert_eq!(sandbox.pod, pod());
        assert_eq!(sandbox.state, SandboxState::Ready);
        assert_eq!(sandbox.ip.as_deref(), Some("172.17.0.5"));
        assert_eq!(sandbox.attempt, 3);
        assert_eq!(sandbox.created_at, UNIX_EPOCH + Duration::from_secs(1_714_557_600));
        assert_eq!(
            sandbox.labels.get(labels::CONTAINER_NAME).map(String::as_str),
            Some("POD")
        );

        let stopped = json!({ "bridge": { "NetworkID": "n1", "EndpointID": "", "IPAddress": "" } });
        let sandbox = sandbox_from_summary(summary("exited", "bridge", stopped)).expect("sandbox");
        assert_eq!((sandbox.state, sandbox.ip), (SandboxState::NotReady, None));

        let host = json!({ "host": { "NetworkID": "n2", "EndpointID": "e2", "IPAddress": "" } });
        let sandbox = sandbox_from_summary(summary("running", "host", host)).expect("sandbox");
        assert_eq!((sandbox.state, sandbox.ip), (SandboxState::Ready, None));
    }
}
