//! Syncing one pod: compare what the spec asks for with what the runtime has, and act — create
//! the sandbox, pull images, run init containers in order, start, restart (with back-off) or
//! replace app containers, and remove what is no longer wanted. Mirrors upstream's
//! `pkg/kubelet/kuberuntime/kuberuntime_manager.go` (`computePodActions`, `SyncPod`, `KillPod`).
//!
//! Everything the runtime holds is read fresh on each sync; what must survive between syncs
//! (back-off timers) lives in the caller's `PodMemory`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::downward;
use super::prober;
use super::runtime::{
    self, ContainerConfig, ContainerState, ContainerStatus, Mount, PodRef, PortMapping, Resources, Runtime, Sandbox,
    SandboxConfig, SandboxState, Security, labels,
};
use super::volumes::{self, Objects};
use crate::api::quantity;

/// First wait before restarting a crashed container; it doubles per crash up to `MAX_BACKOFF`.
pub(crate) const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's cap on the crash-loop back-off.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What the kubelet knows that a sync needs besides the pod.
#[derive(Debug, Clone)]
pub(crate) struct SyncContext {
    /// This kubelet's node; its sandboxes carry it in `labels::NODE`.
    pub(crate) node_name: String,
    pub(crate) infra_image: String,
    /// Where pod directories live (`--root-dir`/pods/UID/...).
    pub(crate) root_dir: std::path::PathBuf,
    /// What goes into each pod's `/etc/resolv.conf`.
    pub(crate) dns: super::dns::Configurer,
    /// Where ConfigMaps and Secrets that volumes and env vars name are read.
    pub(crate) objects: Objects,
}

#[cfg(test)]
impl SyncContext {
    /// A context for unit tests: pods under `root_dir`, the infra image `pause`, no apiserver.
    pub(crate) fn for_test(root_dir: &std::path::Path) -> Self {
        Self {
            node_name: "node-1".into(),
            infra_image: "pause".into(),
            root_dir: root_dir.to_path_buf(),
            dns: Default::default(),
            objects: Objects::default(),
        }
    }
}

/// What one pod's worker remembers between syncs.
#[derive(Debug, Default)]
pub(crate) struct PodMemory {
    backoff: HashMap<String, Backoff>,
    /// Why a container could not be started, by container name (waiting reason, message).
    pub(crate) waiting: BTreeMap<String, (String, String)>,
    /// The runtime's refusal of a container's last start, by container name: it stays the
    /// waiting reason while the container backs off, so the status keeps saying why.
    start_errors: BTreeMap<String, String>,
    /// Probe results of the running containers.
    pub(crate) probes: super::prober::Probes,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    delay: Duration,
    until: Instant,
}

impl PodMemory {
    /// How long `name` must still wait before its next restart, if it is backing off.
    fn backoff_left(&self, name: &str) -> Option<Duration> {
        let b = self.backoff.get(name)?;
        b.until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
    }

    /// Records a restart of `name`: the next one waits twice as long, up to `MAX_BACKOFF`.
    fn restarted(&mut self, name: &str) {
        let delay = match self.backoff.get(name) {
            Some(b) => (b.delay * 2).min(MAX_BACKOFF),
            None => INITIAL_BACKOFF,
        };
        self.backoff.insert(
            name.to_string(),
            Backoff {
                delay,
                until: Instant::now() + delay,
            },
        );
    }
}

/// Why a sync could not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("runtime call failed")]
    Runtime(#[from] runtime::Error),
    #[error("creating the pod's directories failed")]
    PodDir(#[source] std::io::Error),
}

/// The pod's identity as runtimes label it.
pub(crate) fn pod_ref(pod: &Pod) -> PodRef {
    PodRef {
        namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

/// A stable hash of a container's spec; a change means the container must be replaced.
pub(crate) fn container_hash(c: &Container) -> String {
    crate::stable_hash(&[&serde_json::to_vec(c).unwrap_or_default()])
}

/// The runtime's view of one pod.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) sandboxes: Vec<Sandbox>,
    pub(crate) containers: Vec<ContainerStatus>,
}

impl Observed {
    /// Reads everything the runtime holds for `uid`.
    pub(crate) async fn read(rt: &dyn Runtime, uid: &str) -> Result<Self, runtime::Error> {
        let sandboxes = rt
            .list_pod_sandboxes()
            .await?
            .into_iter()
            .filter(|s| s.pod.uid == uid)
            .collect();
        let containers = rt
            .list_containers()
            .await?
            .into_iter()
            .filter(|c| c.pod.uid == uid)
            .collect();
        Ok(Self { sandboxes, containers })
    }

    /// The newest ready sandbox.
    pub(crate) fn ready_sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes
            .iter()
            .filter(|s| s.state == SandboxState::Ready)
            .max_by_key(|s| (s.attempt, s.created_at))
    }

    /// The newest instance of the container `name` in `sandbox`, then the one before it.
    pub(crate) fn latest(&self, name: &str) -> (Option<&ContainerStatus>, Option<&ContainerStatus>) {
        let mut all: Vec<&ContainerStatus> = self.containers.iter().filter(|c| c.name == name).collect();
        all.sort_by_key(|c| (c.restart_count, c.created_at));
        let latest = all.pop();
        (latest, all.pop())
    }
}

/// What one sync did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Synced {
    /// When the pod should be synced again at the latest (a back-off ending); `None` means only
    /// on the next change or resync.
    pub(crate) wake: Option<Duration>,
    /// Whether the sync created, started or stopped anything: the runtime's state read before it
    /// is stale.
    pub(crate) changed: bool,
}

impl Synced {
    fn wake_in(&mut self, d: Duration) {
        self.wake = Some(self.wake.map_or(d, |w| w.min(d)));
    }
}

/// Whether `sandbox`, with a network namespace of its own, started after one of its running
/// containers did: restarted in place, it has a new namespace they are not in.
async fn restarted_in_place(rt: &dyn Runtime, sandbox: &Sandbox, observed: &Observed) -> Result<bool, Error> {
    let oldest = observed
        .containers
        .iter()
        .filter(|c| c.sandbox_id == sandbox.id && c.state == ContainerState::Running)
        .filter_map(|c| c.started_at)
        .min();
    let (Some(oldest), Some(_)) = (oldest, &sandbox.ip) else {
        return Ok(false);
    };
    Ok(rt
        .sandbox_started_at(&sandbox.id)
        .await?
        .is_some_and(|started| started > oldest))
}

/// Brings the runtime in line with `pod`, starting from `observed`, the runtime's view of it.
pub(crate) async fn sync_pod(
    rt: &dyn Runtime,
    ctx: &SyncContext,
    pod: &Pod,
    mut observed: Observed,
    memory: &mut PodMemory,
) -> Result<Synced, Error> {
    let spec = pod.spec.clone().unwrap_or_default();
    let pod_ref = pod_ref(pod);
    memory.waiting.clear();
    let mut synced = Synced::default();

    // A pod whose sandbox died is restarted from scratch, as upstream does; so is one whose
    // sandbox was restarted under its running containers, which are left in the network
    // namespace the sandbox had before.
    let ready = match observed.ready_sandbox().cloned() {
        Some(s) if restarted_in_place(rt, &s, &observed).await? => {
            tracing::info!(pod = %pod_ref.name, sandbox = %s.id, "the sandbox restarted under its containers; starting the pod again");
            None
        }
        ready => ready,
    };
    let sandbox = match ready {
        Some(s) => s,
        None => {
            synced.changed = true;
            if !observed.containers.is_empty() || !observed.sandboxes.is_empty() {
                stop_all(rt, Some(pod), &observed, Duration::from_secs(2)).await?;
            }
            let attempt = observed.sandboxes.iter().map(|s| s.attempt + 1).max().unwrap_or(0);
            ensure_image(rt, &ctx.infra_image, "IfNotPresent").await?;
            std::fs::create_dir_all(pod_dir(ctx, &pod_ref.uid)).map_err(Error::PodDir)?;
            let config = sandbox_config(ctx, pod, &pod_ref, attempt);
            let id = rt.run_pod_sandbox(&config).await?;
            observed = Observed::read(rt, &pod_ref.uid).await?;
            observed
                .sandboxes
                .iter()
                .find(|s| s.id == id)
                .cloned()
                .ok_or_else(|| runtime::Error::NotFound(format!("sandbox {id}")))?
        }
    };
    let volumes = match prepare_volumes(ctx, pod).await {
        Ok(v) => v,
        Err(message) => {
            // Upstream's FailedMount: the containers wait, and the pod is retried.
            for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
                memory
                    .waiting
                    .insert(c.name.clone(), ("ContainerCreating".into(), message.clone()));
            }
            synced.wake_in(INITIAL_BACKOFF);
            return Ok(synced);
        }
    };
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");

    // Init containers run one at a time, in order; app containers only once all succeeded.
    for init in spec.init_containers.iter().flatten() {
        let (latest, _) = observed.latest(&init.name);
        match latest.map(|c| (c.state, c.exit_code)) {
            Some((ContainerState::Exited, Some(0))) => continue,
            Some((ContainerState::Running | ContainerState::Created, _)) => return Ok(synced),
            Some((ContainerState::Exited | ContainerState::Unknown, _)) if restart_policy == "Never" => {
                return Ok(synced);
            }
            _ => {
                start_or_back_off(rt, ctx, &volumes, pod, &sandbox, init, latest, memory, &mut synced).await?;
                return Ok(synced);
            }
        }
    }

    for container in &spec.containers {
        let (latest, _) = observed.latest(&container.name);
        let start = match latest {
            // A container the runtime refused to start stays Created: it is tried again, as a
            // new instance, after the back-off, like a container that exited.
            Some(c) if c.state == ContainerState::Created && memory.start_errors.contains_key(&container.name) => true,
            Some(c) if c.state == ContainerState::Running || c.state == ContainerState::Created => {
                if c.labels.get(labels::HASH) != Some(&container_hash(container)) {
                    tracing::info!(pod = %pod_ref.name, container = %container.name, "container spec changed; replacing it");
                    synced.changed = true;
                    rt.stop_container(&c.id, grace_period(pod)).await?;
                    true
                } else {
                    if c.state == ContainerState::Created {
                        synced.changed = true;
                        rt.start_container(&c.id).await?;
                    }
                    false
                }
            }
            Some(c) => match restart_policy {
                "Never" => false,
                "OnFailure" => c.exit_code != Some(0),
                _ => true,
            },
            None => true,
        };
        if start {
            start_or_back_off(rt, ctx, &volumes, pod, &sandbox, container, latest, memory, &mut synced).await?;
        }
    }
    Ok(synced)
}

/// Starts a new instance of `container` unless its previous instance is still backing off,
/// recording in `synced` what it did and when to try again.
#[allow(clippy::too_many_arguments)]
async fn start_or_back_off(
    rt: &dyn Runtime,
    ctx: &SyncContext,
    volumes: &BTreeMap<String, String>,
    pod: &Pod,
    sandbox: &Sandbox,
    container: &Container,
    previous: Option<&ContainerStatus>,
    memory: &mut PodMemory,
    synced: &mut Synced,
) -> Result<(), Error> {
    let failed =
        |p: &ContainerStatus| p.state == ContainerState::Exited || memory.start_errors.contains_key(&container.name);
    if previous.is_some_and(failed)
        && let Some(left) = memory.backoff_left(&container.name)
    {
        let message = format!(
            "back-off {}s restarting failed container={} pod={}",
            left.as_secs().max(1),
            container.name,
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        let waiting = match memory.start_errors.get(&container.name) {
            Some(refused) => ("CreateContainerError".into(), refused.clone()),
            None => ("CrashLoopBackOff".into(), message),
        };
        memory.waiting.insert(container.name.clone(), waiting);
        synced.wake_in(left);
        return Ok(());
    }
    let image = container.image.clone().unwrap_or_default();
    let policy = container.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
    if let Err(err) = ensure_image(rt, &image, policy).await {
        let reason = match err {
            runtime::Error::ImageNeverPull(_) => "ErrImageNeverPull",
            _ => "ErrImagePull",
        };
        memory
            .waiting
            .insert(container.name.clone(), (reason.into(), err.to_string()));
        synced.wake_in(INITIAL_BACKOFF);
        return Ok(());
    }
    let restart_count = previous.map_or(0, |p| p.restart_count + 1);
    let config = match container_config(ctx, volumes, pod, container, restart_count).await {
        Ok(c) => c,
        Err(message) => {
            memory
                .waiting
                .insert(container.name.clone(), ("CreateContainerConfigError".into(), message));
            synced.wake_in(INITIAL_BACKOFF);
            return Ok(());
        }
    };
    if previous.is_some() {
        memory.restarted(&container.name);
    }
    synced.changed = true;
    let started = async {
        let id = rt.create_container(sandbox, &config).await?;
        rt.start_container(&id).await
    };
    if let Err(err) = started.await {
        let message = if config.security.privileged {
            // The runtime's own words ("unable to apply caps") do not say what to change.
            format!(
                "this host cannot run privileged containers; drop securityContext.privileged or grant the capabilities by name ({err})"
            )
        } else {
            err.to_string()
        };
        memory.start_errors.insert(container.name.clone(), message.clone());
        memory
            .waiting
            .insert(container.name.clone(), ("CreateContainerError".into(), message));
        synced.wake_in(INITIAL_BACKOFF);
        return Ok(());
    }
    memory.start_errors.remove(&container.name);
    Ok(())
}

/// Reads the pod's state from the runtime and syncs it: what a worker does, without the shared
/// relist, for unit tests. Returns when to sync again.
#[cfg(test)]
pub(crate) async fn sync_now(
    rt: &dyn Runtime,
    ctx: &SyncContext,
    pod: &Pod,
    memory: &mut PodMemory,
) -> Result<Option<Duration>, Error> {
    let observed = Observed::read(rt, pod.metadata.uid.as_deref().unwrap_or_default()).await?;
    Ok(sync_pod(rt, ctx, pod, observed, memory).await?.wake)
}

/// Makes sure `image` is present, pulling it as `policy` says. A pull that fails while a local
/// copy exists uses the local copy: clusters built offline keep working.
async fn ensure_image(rt: &dyn Runtime, image: &str, policy: &str) -> Result<String, runtime::Error> {
    let present = rt.image_id(image).await?;
    match (policy, present) {
        ("Never", Some(id)) | ("IfNotPresent", Some(id)) => Ok(id),
        ("Never", None) => Err(runtime::Error::ImageNeverPull(image.to_string())),
        (_, present) => match rt.pull_image(image).await {
            Ok(id) => Ok(id),
            Err(err) => match present {
                Some(id) => {
                    tracing::warn!(%image, error = %err, "pull failed; using the local image");
                    Ok(id)
                }
                None => Err(err),
            },
        },
    }
}

/// Stops every container of the pod within `grace` (running `pod`'s preStop hooks first, when
/// the spec is known), then its sandboxes, and removes them all.
pub(crate) async fn kill_pod(rt: &dyn Runtime, pod: Option<&Pod>, uid: &str, grace: Duration) -> Result<(), Error> {
    let observed = Observed::read(rt, uid).await?;
    stop_all(rt, pod, &observed, grace).await?;
    for c in &observed.containers {
        ignore_missing(rt.remove_container(&c.id).await)?;
    }
    for s in &observed.sandboxes {
        ignore_missing(rt.remove_pod_sandbox(&s.id).await)?;
    }
    Ok(())
}

/// Upstream's floor for what is left of the grace period after a preStop hook.
const MINIMUM_GRACE: Duration = Duration::from_secs(2);

async fn stop_all(rt: &dyn Runtime, pod: Option<&Pod>, observed: &Observed, grace: Duration) -> Result<(), Error> {
    let running: Vec<_> = observed
        .containers
        .iter()
        .filter(|c| c.state == ContainerState::Running)
        .collect();
    let pod_ip = observed
        .ready_sandbox()
        .and_then(|s| s.ip.clone())
        .unwrap_or_else(|| "127.0.0.1".into());
    // Stop containers in parallel: the pod's grace period is for all of them together.
    let stops = running.iter().map(|c| {
        let spec = pod
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.containers.iter().find(|x| x.name == c.name));
        let pod_ip = pod_ip.clone();
        async move {
            let mut left = grace;
            if let Some((spec, hook)) = spec.and_then(|s| Some((s, s.lifecycle.as_ref()?.pre_stop.as_ref()?))) {
                let started = Instant::now();
                if let Some(sleep) = &hook.sleep {
                    tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(grace)).await;
                } else if let Err(message) = prober::run_action(rt, hook.into(), spec, &c.id, &pod_ip, grace).await {
                    tracing::warn!(container = %c.name, %message, "the preStop hook failed");
                }
                left = grace.saturating_sub(started.elapsed()).max(MINIMUM_GRACE);
            }
            rt.stop_container(&c.id, left).await
        }
    });
    for result in futures::future::join_all(stops).await {
        ignore_missing(result)?;
    }
    for s in &observed.sandboxes {
        ignore_missing(rt.stop_pod_sandbox(&s.id).await)?;
    }
    Ok(())
}

fn ignore_missing(result: Result<(), runtime::Error>) -> Result<(), Error> {
    match result {
        Ok(()) | Err(runtime::Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes dead containers and sandboxes, keeping the newest dead instance of each container
/// (for `kubectl logs --previous`) and the sandbox in use. The pod's worker calls it after a
/// sync, with the state it reads for the status anyway.
pub(crate) async fn remove_dead(
    rt: &dyn Runtime,
    observed: &Observed,
    spec: &k8s_openapi::api::core::v1::PodSpec,
) -> Result<(), Error> {
    let mut by_name: BTreeMap<&str, Vec<&ContainerStatus>> = BTreeMap::new();
    for c in &observed.containers {
        by_name.entry(c.name.as_str()).or_default().push(c);
    }
    for (name, mut instances) in by_name {
        instances.sort_by_key(|c| (c.restart_count, c.created_at));
        let in_spec = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == name);
        // Keep the newest instance and the newest dead one of containers still in the spec.
        let keep = if in_spec { 2 } else { 0 };
        let excess = instances.len().saturating_sub(keep);
        for c in instances.into_iter().take(excess) {
            if c.state == ContainerState::Exited || !in_spec {
                if c.state == ContainerState::Running {
                    ignore_missing(rt.stop_container(&c.id, Duration::from_secs(2)).await)?;
                }
                ignore_missing(rt.remove_container(&c.id).await)?;
            }
        }
    }
    let current = observed.ready_sandbox().map(|s| s.id.clone());
    for s in &observed.sandboxes {
        if Some(&s.id) != current.as_ref() && s.state == SandboxState::NotReady {
            ignore_missing(rt.remove_pod_sandbox(&s.id).await)?;
        }
    }
    Ok(())
}

/// The pod's termination grace period.
pub(crate) fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64)
}

fn pod_dir(ctx: &SyncContext, uid: &str) -> std::path::PathBuf {
    ctx.root_dir.join("pods").join(uid)
}

fn sandbox_config(ctx: &SyncContext, pod: &Pod, pod_ref: &PodRef, attempt: u32) -> SandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            Some(PortMapping {
                host_port,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect();
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| pod_ref.name.chars().take(63).collect());
    SandboxConfig {
        pod: pod_ref.clone(),
        image: ctx.infra_image.clone(),
        hostname,
        host_network,
        ports,
        resolv_conf: ctx.dns.resolv_conf(pod),
        attempt,
        labels: [
            (
                labels::GRACE_PERIOD.to_string(),
                grace_period(pod).as_secs().to_string(),
            ),
            (labels::NODE.to_string(), ctx.node_name.clone()),
        ]
        .into(),
    }
}

/// Turns a container spec into what the runtime needs; the error is a message for the
/// container's `CreateContainerConfigError` state.
async fn container_config(
    ctx: &SyncContext,
    volumes: &BTreeMap<String, String>,
    pod: &Pod,
    c: &Container,
    restart_count: u32,
) -> Result<ContainerConfig, String> {
    let env = environment(&ctx.objects, pod, c).await?;
    let expand =
        |items: &Option<Vec<String>>| -> Vec<String> { items.iter().flatten().map(|s| expand_vars(s, &env)).collect() };
    Ok(ContainerConfig {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        command: expand(&c.command),
        args: expand(&c.args),
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        mounts: mounts(volumes, c)?,
        resources: resources(c)?,
        security: security(pod, c),
        restart_count,
        labels: [
            (labels::HASH.to_string(), container_hash(c)),
            (labels::NODE.to_string(), ctx.node_name.clone()),
        ]
        .into(),
        tty: c.tty.unwrap_or(false),
        stdin: c.stdin.unwrap_or(false),
        env,
    })
}

/// The container's environment: `envFrom` sources first, then `env` in order, whose values may be
/// literal, downward-API fields, or keys of ConfigMaps and Secrets.
async fn environment(objects: &Objects, pod: &Pod, c: &Container) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env: Vec<(String, String)> = Vec::new();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let pairs: Vec<(String, String)> = if let Some(r) = &from.config_map_ref {
            match objects.config_map(namespace, &r.name).await {
                Ok(cm) => cm.data.unwrap_or_default().into_iter().collect(),
                Err(_) if r.optional == Some(true) => Vec::new(),
                Err(e) => return Err(e),
            }
        } else if let Some(r) = &from.secret_ref {
            match objects.secret(namespace, &r.name).await {
                Ok(s) => s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect(),
                Err(_) if r.optional == Some(true) => Vec::new(),
                Err(e) => return Err(e),
            }
        } else {
            Vec::new()
        };
        env.extend(pairs.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
    }
    for var in c.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => expand_vars(v, &env),
            (None, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    downward::field(pod, &field.field_path)
                        .ok_or_else(|| format!("unsupported fieldRef {:?} in env var {}", field.field_path, var.name))?
                } else if let Some(selector) = &from.resource_field_ref {
                    let container = selector.container_name.as_deref().unwrap_or(&c.name);
                    downward::resource(pod, container, selector, downward::NodeCapacity::of_host())
                        .map_err(|e| format!("env var {}: {e}", var.name))?
                } else if let Some(key) = &from.config_map_key_ref {
                    match objects.config_map(namespace, &key.name).await {
                        Ok(cm) => match cm.data.unwrap_or_default().remove(&key.key) {
                            Some(v) => v,
                            None if key.optional == Some(true) => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in ConfigMap {namespace}/{}",
                                    key.key, key.name
                                ));
                            }
                        },
                        Err(_) if key.optional == Some(true) => continue,
                        Err(e) => return Err(e),
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    match objects.secret(namespace, &key.name).await {
                        Ok(s) => match s.data.unwrap_or_default().remove(&key.key) {
                            Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                            None if key.optional == Some(true) => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in Secret {namespace}/{}",
                                    key.key, key.name
                                ));
                            }
                        },
                        Err(_) if key.optional == Some(true) => continue,
                        Err(e) => return Err(e),
                    }
                } else {
                    return Err(format!("env var {}: valueFrom names no source", var.name));
                }
            }
            (None, None) => String::new(),
        };
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

/// Expands `$(NAME)` references to earlier variables; `$$` escapes a `$`. Unknown references stay.
pub(crate) fn expand_vars(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Makes every volume of the pod ready on the host: the host path of each, by volume name.
async fn prepare_volumes(ctx: &SyncContext, pod: &Pod) -> Result<BTreeMap<String, String>, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let dir = pod_dir(ctx, pod.metadata.uid.as_deref().unwrap_or_default());
    let mut out = BTreeMap::new();
    for volume in spec.volumes.iter().flatten() {
        let host_path = if let Some(hp) = &volume.host_path {
            PathBuf::from(&hp.path)
        } else if let Some(empty) = &volume.empty_dir {
            let path = volumes::volume_dir(&dir, "empty-dir", &volume.name);
            let made = if empty.medium.as_deref() == Some("Memory") {
                volumes::mount_memory(&path)
            } else {
                std::fs::create_dir_all(&path)
            };
            made.map_err(|e| format!("setting up emptyDir {}: {e}", volume.name))?;
            path
        } else if let Some(path) = volumes::materialize(&ctx.objects, pod, &dir, volume).await? {
            path
        } else {
            return Err(format!(
                "volume {:?}: this kubelet supports hostPath, emptyDir, configMap, secret and downwardAPI volumes",
                volume.name
            ));
        };
        out.insert(volume.name.clone(), host_path.to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Bind mounts for the container's volumeMounts, from the prepared volumes.
fn mounts(volumes: &BTreeMap<String, String>, c: &Container) -> Result<Vec<Mount>, String> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let host = volumes
                .get(&m.name)
                .ok_or_else(|| format!("volume {:?} not found", m.name))?;
            let host_path = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => format!("{host}/{sub}"),
                None => host.clone(),
            };
            Ok(Mount {
                host_path,
                container_path: m.mount_path.clone(),
                read_only: m.read_only.unwrap_or(false),
            })
        })
        .collect()
}

/// CPU shares from the request, quota from the limit, memory limit in bytes.
fn resources(c: &Container) -> Result<Resources, String> {
    let res = c.resources.clone().unwrap_or_default();
    let get = |map: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, key: &str| {
        map.as_ref().and_then(|m| m.get(key)).map(|q| q.0.clone())
    };
    let milli = |q: Option<String>| {
        q.map(|q| quantity::milli_value(&q).map_err(|e| e.to_string()))
            .transpose()
    };
    let cpu_request = milli(get(&res.requests, "cpu").or(get(&res.limits, "cpu")))?;
    let cpu_limit = milli(get(&res.limits, "cpu"))?;
    let memory = get(&res.limits, "memory")
        .map(|q| quantity::value(&q).map_err(|e| e.to_string()))
        .transpose()?;
    const PERIOD: i64 = 100_000;
    Ok(Resources {
        // Upstream's MilliCPUToShares: 1024 per core, at least 2.
        cpu_shares: cpu_request.map(|m| (m * 1024 / 1000).max(2)),
        cpu_quota: cpu_limit.map(|m| (m * PERIOD / 1000).max(1000)),
        cpu_period: cpu_limit.map(|_| PERIOD),
        memory_limit: memory,
    })
}

fn security(pod: &Pod, c: &Container) -> Security {
    let pod_sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let caps = sc.capabilities.clone().unwrap_or_default();
    Security {
        run_as_user: sc.run_as_user.or(pod_sc.run_as_user),
        run_as_group: sc.run_as_group.or(pod_sc.run_as_group),
        cap_add: caps.add.unwrap_or_default(),
        cap_drop: caps.drop.unwrap_or_default(),
        read_only_root_filesystem: sc.read_only_root_filesystem.unwrap_or(false),
        privileged: sc.privileged.unwrap_or(false),
    }
}

/// When a container's instance last changed state, for status timestamps.
pub(crate) fn to_time(t: SystemTime) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::runtime::fake::Fake;
    use serde_json::json;

    fn ctx(dir: &std::path::Path) -> SyncContext {
        SyncContext::for_test(dir)
    }

    fn pod(policy: &str, containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "uid-1"},
            "spec": {"restartPolicy": policy, "containers": containers}
        }))
        .unwrap()
    }

    fn running(rt: &Fake) -> Vec<String> {
        let list = futures::executor::block_on(rt.list_containers()).unwrap();
        let mut names: Vec<String> = list
            .into_iter()
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| c.name)
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn sync_starts_a_sandbox_and_every_container_once() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Fake::with_images(&["pause", "app"]);
        let p = pod(
            "Always",
            json!([{"name": "a", "image": "app"}, {"name": "b", "image": "app"}]),
        );
        let mut memory = PodMemory::default();
        sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();
        sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();
        assert_eq!(running(&rt), ["a", "b"]);
        let created = rt.calls().iter().filter(|c| c.starts_with("create_container")).count();
        let sandboxes = rt.calls().iter().filter(|c| c.starts_with("run_pod_sandbox")).count();
        assert_eq!((created, sandboxes), (2, 1), "a second sync changes nothing");
    }

    #[tokio::test]
    async fn a_sandbox_restarted_under_its_containers_starts_the_pod_again() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Fake::with_images(&["pause", "app"]);
        let p = pod("Always", json!([{"name": "a", "image": "app"}]));
        let mut memory = PodMemory::default();
        sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();
        let before = rt.list_pod_sandboxes().await.unwrap();
        rt.restart_sandbox(&before[0].id);
        sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();

        let sandboxes = rt.list_pod_sandboxes().await.unwrap();
        let ready: Vec<_> = sandboxes.iter().filter(|s| s.state == SandboxState::Ready).collect();
        assert_eq!(ready.len(), 1);
        assert_ne!(ready[0].id, before[0].id, "a new sandbox");
        let containers = rt.list_containers().await.unwrap();
        let running: Vec<_> = containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .collect();
        assert_eq!(running.len(), 1);
        assert_eq!(
            running[0].sandbox_id, ready[0].id,
            "the container runs in the new sandbox"
        );
        // Settled: the next sync changes nothing.
        let calls = rt.calls().len();
        sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();
        assert!(!rt.calls()[calls..].iter().any(|c| c.starts_with("run_pod_sandbox")));
    }

    #[tokio::test]
    async fn crashed_containers_restart_then_back_off() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Fake::with_images(&["pause", "app"]);
        let p = pod("Always", json!([{"name": "a", "image": "app"}]));
        let mut memory = PodMemory::default();
        sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();
        let first = rt.list_containers().await.unwrap()[0].id.clone();
        rt.exit_container(&first, 1);
        assert_eq!(
            sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap(),
            None,
            "first crash restarts at once"
        );
        let second = rt
            .list_containers()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.state == ContainerState::Running)
            .unwrap();
        assert_eq!(second.restart_count, 1);
        rt.exit_container(&second.id, 1);
        let wait = sync_now(&rt, &ctx(dir.path()), &p, &mut memory)
            .await
            .unwrap()
            .expect("backing off");
        assert!(wait <= INITIAL_BACKOFF && wait > Duration::from_secs(8), "{wait:?}");
        assert_eq!(memory.waiting["a"].0, "CrashLoopBackOff");
        assert!(running(&rt).is_empty());
    }

    #[tokio::test]
    async fn restart_policy_decides_who_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        for (policy, code, restarts) in [("Never", 1, false), ("OnFailure", 0, false), ("OnFailure", 1, true)] {
            let rt = Fake::with_images(&["pause", "app"]);
            let p = pod(policy, json!([{"name": "a", "image": "app"}]));
            let mut memory = PodMemory::default();
            sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();
            let id = rt.list_containers().await.unwrap()[0].id.clone();
            rt.exit_container(&id, code);
            sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();
            assert_eq!(!running(&rt).is_empty(), restarts, "{policy} after exit {code}");
        }
    }

    #[tokio::test]
    async fn init_containers_run_in_order_before_app_containers() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Fake::with_images(&["pause", "app"]);
        let mut p = pod("Always", json!([{"name": "main", "image": "app"}]));
        p.spec.as_mut().unwrap().init_containers = Some(vec![
            serde_json::from_value(json!({"name": "one", "image": "app"})).unwrap(),
            serde_json::from_value(json!({"name": "two", "image": "app"})).unwrap(),
        ]);
        let mut memory = PodMemory::default();
        sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();
        assert_eq!(running(&rt), ["one"]);
        let one = rt.list_containers().await.unwrap()[0].id.clone();
        rt.exit_container(&one, 0);
        sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();
        assert_eq!(running(&rt), ["two"]);
        let two = rt
            .list_containers()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.name == "two")
            .unwrap()
            .id;
        rt.exit_container(&two, 0);
        sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();
        assert_eq!(running(&rt), ["main"]);
    }

    #[tokio::test]
    async fn a_changed_spec_replaces_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Fake::with_images(&["pause", "app", "app2"]);
        let mut memory = PodMemory::default();
        sync_now(
            &rt,
            &ctx(dir.path()),
            &pod("Always", json!([{"name": "a", "image": "app"}])),
            &mut memory,
        )
        .await
        .unwrap();
        sync_now(
            &rt,
            &ctx(dir.path()),
            &pod("Always", json!([{"name": "a", "image": "app2"}])),
            &mut memory,
        )
        .await
        .unwrap();
        let list = rt.list_containers().await.unwrap();
        let live: Vec<_> = list.iter().filter(|c| c.state == ContainerState::Running).collect();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].image, "app2");
    }

    #[tokio::test]
    async fn missing_images_and_bad_env_are_waiting_reasons_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Fake::with_images(&["pause"]);
        rt.fail("pull_image", "no registry");
        let p = pod(
            "Always",
            json!([
                {"name": "a", "image": "nowhere", "imagePullPolicy": "Never"},
                {"name": "b", "image": "nowhere"},
            ]),
        );
        let mut memory = PodMemory::default();
        sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();
        assert_eq!(memory.waiting["a"].0, "ErrImageNeverPull");
        assert_eq!(memory.waiting["b"].0, "ErrImagePull");
    }

    #[tokio::test]
    async fn a_start_the_runtime_refuses_is_a_waiting_reason_retried_with_back_off() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Fake::with_images(&["pause", "app"]);
        rt.fail("start_container", "unable to apply caps");
        let p = pod("Always", json!([{"name": "a", "image": "app"}]));
        let mut memory = PodMemory::default();
        let creates = |rt: &Fake| rt.calls().iter().filter(|c| c.starts_with("create_container")).count();
        // The refused container stays Created; later syncs neither fail nor start it again at once.
        for _ in 0..3 {
            sync_now(&rt, &ctx(dir.path()), &p, &mut memory).await.unwrap();
            assert_eq!(memory.waiting["a"].0, "CreateContainerError");
            assert!(memory.waiting["a"].1.contains("unable to apply caps"));
        }
        assert_eq!(creates(&rt), 2, "one retry, then the back-off holds");
    }

    #[tokio::test]
    async fn kill_pod_stops_and_removes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Fake::with_images(&["pause", "app"]);
        let p = pod("Always", json!([{"name": "a", "image": "app"}]));
        sync_now(&rt, &ctx(dir.path()), &p, &mut PodMemory::default())
            .await
            .unwrap();
        kill_pod(&rt, Some(&p), "uid-1", Duration::from_secs(1)).await.unwrap();
        assert!(rt.list_containers().await.unwrap().is_empty());
        assert!(rt.list_pod_sandboxes().await.unwrap().is_empty());
    }

    #[test]
    fn env_references_expand_like_upstream() {
        let env = vec![("A".to_string(), "x".to_string())];
        assert_eq!(expand_vars("$(A)-$(B)-$$(A)-$", &env), "x-$(B)-$(A)-$");
    }

    #[test]
    fn resources_become_shares_quota_and_bytes() {
        let c: Container = serde_json::from_value(json!({"name": "c",
            "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}}))
        .unwrap();
        let r = resources(&c).unwrap();
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!((r.cpu_quota, r.cpu_period), (Some(50_000), Some(100_000)));
        assert_eq!(r.memory_limit, Some(64 * 1024 * 1024));
    }
}
