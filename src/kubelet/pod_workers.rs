//! One worker task per pod: it alone syncs its pod, restarts what crashed when back-off allows,
//! and, when told, stops it. Mirrors upstream's `pkg/kubelet/pod_workers.go`, where one
//! goroutine per pod owns its lifecycle (setup → terminating → terminated), so no other loop has
//! to guess what state a pod is in.
//!
//! Each worker receives only the latest desired spec (a `watch` channel), so a burst of updates
//! costs one sync. Statuses leave through one channel to the kubelet's status handling.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::kuberuntime::{self, Observed, PodMemory, SyncContext};
use super::metrics::Metrics;
use super::pleg::Pleg;
use super::pod_status;
use super::prober;
use super::runtime::Runtime;
use crate::events::Recorder;

/// What a worker should do with its pod.
#[derive(Debug, Clone)]
enum Work {
    Sync(Box<Pod>),
    Terminate(Box<Pod>),
}

/// A worker's report about its pod.
#[derive(Debug, Clone)]
pub(crate) struct StatusUpdate {
    pub(crate) pod: Pod,
    /// The current status; `None` once the pod is stopped and its containers removed.
    pub(crate) status: Option<PodStatus>,
}

/// What every worker shares: the runtime, the sync settings, and where reports go.
pub(crate) struct Deps {
    pub(crate) runtime: Arc<dyn Runtime>,
    /// The runtime's state, relisted for all workers.
    pub(crate) pleg: Arc<Pleg>,
    pub(crate) ctx: SyncContext,
    /// The node's address, reported as the pods' hostIP.
    pub(crate) host_ip: String,
    /// Every pod is synced at least this often.
    pub(crate) resync: Duration,
    pub(crate) statuses: mpsc::Sender<StatusUpdate>,
    pub(crate) events: Recorder,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: CancellationToken,
}

/// The set of pod workers. Owned by the kubelet's sync loop; not shared.
pub(crate) struct PodWorkers {
    deps: Arc<Deps>,
    workers: HashMap<String, watch::Sender<Work>>,
    tasks: TaskTracker,
}

impl PodWorkers {
    /// Workers with these dependencies; none runs until a pod is given.
    pub(crate) fn new(deps: Deps) -> Self {
        Self {
            deps: Arc::new(deps),
            workers: HashMap::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Whether a worker owns the pod with `uid`.
    pub(crate) fn has(&self, uid: &str) -> bool {
        self.workers.contains_key(uid)
    }

    /// Makes the pod run as `pod` says, starting its worker if needed.
    pub(crate) fn sync(&mut self, pod: Pod) {
        self.send(pod.clone(), Work::Sync(Box::new(pod)));
    }

    /// Stops the pod: its worker kills the containers within the grace period and exits.
    pub(crate) fn terminate(&mut self, pod: Pod) {
        self.send(pod.clone(), Work::Terminate(Box::new(pod)));
    }

    /// Has the worker of pod `uid`, if any, sync now: the runtime saw its pod change.
    pub(crate) fn wake(&self, uid: &str) {
        if let Some(tx) = self.workers.get(uid) {
            tx.send_modify(|_| {});
        }
    }

    /// Forgets a worker that reported its pod gone.
    pub(crate) fn forget(&mut self, uid: &str) {
        self.workers.remove(uid);
    }

    fn send(&mut self, pod: Pod, work: Work) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(tx) = self.workers.get(&uid)
            && tx.send(work.clone()).is_ok()
        {
            return;
        }
        let (tx, rx) = watch::channel(work);
        self.workers.insert(uid, tx);
        let worker = Worker {
            deps: self.deps.clone(),
        };
        self.tasks.spawn(worker.run(rx));
    }

    /// Waits for every worker to return after shutdown; containers keep running, so a restarted
    /// kubelet adopts them.
    pub(crate) async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

struct Worker {
    deps: Arc<Deps>,
}

impl Worker {
    #[tracing::instrument(skip_all, fields(pod = tracing::field::Empty, uid = tracing::field::Empty))]
    async fn run(self, mut rx: watch::Receiver<Work>) {
        let mut memory = PodMemory::default();
        let mut reported: BTreeMap<String, (String, String)> = BTreeMap::new();
        let seen = std::time::Instant::now();
        let mut started = false;
        let mut named = false;
        let start_time = Time(jiff::Timestamp::now());
        // The runtime state this worker may act on must be newer than its own last change.
        let mut changed_at = tokio::time::Instant::now();
        loop {
            let work = rx.borrow_and_update().clone();
            match work {
                Work::Sync(pod) => {
                    // Once: the log formatter appends every value recorded, it does not replace.
                    if !named {
                        let span = tracing::Span::current();
                        span.record("pod", pod.metadata.name.as_deref().unwrap_or_default());
                        span.record("uid", pod.metadata.uid.as_deref().unwrap_or_default());
                        named = true;
                    }
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    let sync_started = std::time::Instant::now();
                    let synced = match self.deps.pleg.observed(&uid, changed_at).await {
                        Ok(observed) => {
                            kuberuntime::sync_pod(
                                self.deps.runtime.as_ref(),
                                &self.deps.ctx,
                                &pod,
                                observed,
                                &mut memory,
                            )
                            .await
                        }
                        Err(err) => Err(err.into()),
                    };
                    let wake = match synced {
                        Ok(synced) => {
                            if synced.changed {
                                changed_at = tokio::time::Instant::now();
                            }
                            synced.wake
                        }
                        Err(err) => {
                            tracing::warn!(error = %crate::error_chain(&err), "syncing the pod failed; retrying");
                            changed_at = tokio::time::Instant::now();
                            Some(kuberuntime::INITIAL_BACKOFF)
                        }
                    };
                    self.deps
                        .metrics
                        .pod_worker_duration
                        .with_label_values(&["sync"])
                        .observe(sync_started.elapsed().as_secs_f64());
                    self.report_waiting(&pod, &memory, &mut reported);
                    let observed = match self.deps.pleg.observed(&uid, changed_at).await {
                        Ok(observed) => observed,
                        Err(err) => {
                            tracing::warn!(error = %err, "reading the pod's containers failed");
                            Observed::default()
                        }
                    };
                    if let Err(err) = kuberuntime::remove_dead(
                        self.deps.runtime.as_ref(),
                        &observed,
                        pod.spec.as_ref().unwrap_or(&Default::default()),
                    )
                    .await
                    {
                        tracing::warn!(error = %crate::error_chain(&err), "removing dead containers failed");
                    }
                    let probed = prober::run_due(self.deps.runtime.as_ref(), &pod, &observed, &mut memory.probes).await;
                    if !probed.failed.is_empty() {
                        for failed in &probed.failed {
                            self.deps.events.record(&*pod, true, "Unhealthy", &failed.message);
                            let message = format!("Container {} failed its probe, will be restarted", failed.name);
                            self.deps.events.record(&*pod, false, "Killing", &message);
                            if let Err(err) = self
                                .deps
                                .runtime
                                .stop_container(&failed.container_id, kuberuntime::grace_period(&pod))
                                .await
                            {
                                tracing::warn!(error = %err, "stopping the container failed");
                            }
                        }
                        // Sync again at once: the stopped containers restart per restartPolicy.
                        changed_at = tokio::time::Instant::now();
                        continue;
                    }
                    if !started
                        && observed
                            .containers
                            .iter()
                            .any(|c| c.state == super::runtime::ContainerState::Running)
                    {
                        started = true;
                        self.deps
                            .metrics
                            .pod_start_duration
                            .observe(seen.elapsed().as_secs_f64());
                    }
                    self.report(&pod, &observed, &memory, &start_time).await;
                    let wake = match (wake, probed.next) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    let next = wake.map_or(self.deps.resync, |w| w.min(self.deps.resync));
                    tokio::select! {
                        changed = rx.changed() => if changed.is_err() { return },
                        _ = tokio::time::sleep(next) => {}
                        _ = self.deps.shutdown.cancelled() => return,
                    }
                }
                Work::Terminate(pod) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    let grace = kuberuntime::grace_period(&pod);
                    tracing::info!(pod = %pod.metadata.name.as_deref().unwrap_or_default(), ?grace, "stopping pod");
                    if let Err(err) = kuberuntime::kill_pod(self.deps.runtime.as_ref(), Some(&pod), &uid, grace).await {
                        tracing::warn!(error = %crate::error_chain(&err), "stopping the pod failed; housekeeping will retry");
                    }
                    let pod_dir = self.deps.ctx.root_dir.join("pods").join(&uid);
                    // Memory-backed volumes are mounts: unmount before removing anything.
                    if let Err(err) = crate::kubelet::volumes::unmount_under(&pod_dir) {
                        tracing::warn!(dir = %pod_dir.display(), error = %err, "unmounting the pod's volumes failed");
                    }
                    if let Err(err) = std::fs::remove_dir_all(&pod_dir)
                        && err.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(dir = %pod_dir.display(), error = %err, "removing the pod directory failed");
                    }
                    let _ = self
                        .deps
                        .statuses
                        .send(StatusUpdate {
                            pod: *pod,
                            status: None,
                        })
                        .await;
                    return;
                }
            }
        }
    }

    /// Records an event when a container starts waiting for a new reason (a failed mount, an
    /// image that cannot be pulled, a crash loop), once per change rather than once per sync.
    fn report_waiting(&self, pod: &Pod, memory: &PodMemory, reported: &mut BTreeMap<String, (String, String)>) {
        for (container, (reason, message)) in &memory.waiting {
            if reported.get(container).is_some_and(|(r, _)| r == reason) {
                continue;
            }
            let event_reason = match reason.as_str() {
                "ContainerCreating" => "FailedMount",
                "CrashLoopBackOff" => "BackOff",
                _ => "Failed",
            };
            self.deps.events.record(pod, true, event_reason, message);
        }
        *reported = memory.waiting.clone();
    }

    async fn report(&self, pod: &Pod, observed: &Observed, memory: &PodMemory, start_time: &Time) {
        let ready = |name: &str| memory.probes.ready(pod, name);
        let status = pod_status::pod_status(pod, observed, memory, &self.deps.host_ip, start_time, ready);
        let _ = self
            .deps
            .statuses
            .send(StatusUpdate {
                pod: pod.clone(),
                status: Some(status),
            })
            .await;
    }
}
