//! The scheduler (`hyperkube scheduler`): assigns each unscheduled pod to a node, after upstream's
//! `pkg/scheduler`. Informers on pods and nodes feed the scheduling queue (pods to place) and
//! the cache (nodes and what is assigned to them). One loop takes the next pod, runs the
//! plugins of the default profile over the cache, assumes the pod on the best node and hands
//! the binding (`POST pods/NAME/binding`) to a task, so many bindings are in flight while the
//! loop goes on. A pod that fits nowhere gets `PodScheduled=False` with reason `Unschedulable`
//! and a `FailedScheduling` event, and waits in the queue for a change that may help it.
//! Only the holder of the `kube-scheduler` Lease schedules.

mod cache;
mod eventhandlers;
mod framework;
mod plugins;
mod queue;
mod schedule_one;
mod types;

use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::ClientArgs;
use crate::events::Recorder;
use crate::informer::Factory;
use crate::leaderelection::LeaderElectionArgs;
use cache::Cache;
use framework::Events;
use queue::{Failure, POD_BACKOFF, QueuedPod, SchedulingQueue};
use schedule_one::{Algorithm, ScheduleError};
use types::PodInfo;

/// The `spec.schedulerName` of the pods this scheduler places, and its name in events.
const SCHEDULER_NAME: &str = "default-scheduler";
/// Bindings written at once; the loop waits for a slot beyond this.
const MAX_BINDINGS_IN_FLIGHT: usize = 64;

/// `hyperkube scheduler` flags, named as upstream's kube-scheduler's.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
    /// Percentage of nodes to find feasible before scoring, for speed in large clusters; 0 is
    /// adaptive (50% minus one point per 125 nodes, at least 5%). At least 100 nodes are
    /// always searched.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub percentage_of_nodes_to_score: u32,
    /// Log verbosity, 0 to 10, as upstream's `--v`.
    #[arg(long, default_value_t = 0)]
    pub v: u8,
}

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to the apiserver failed: {0}")]
    Client(String),
    #[error("leader election: {0}")]
    LeaderElection(String),
}

/// Runs the scheduler until `shutdown`: the entry point of `hyperkube scheduler`. With leader
/// election (the default) it schedules only while it holds the Lease, and returns an error if
/// it loses it.
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<(), Error> {
    let client = args.client.connect().await.map_err(Error::Client)?;
    let election = args.leader_election.clone();
    crate::leaderelection::run(client.clone(), &election, "kube-scheduler", shutdown, move |token| {
        lead(client, args, token)
    })
    .await
    .map_err(Error::LeaderElection)
}

/// Schedules until `token` is cancelled, then waits for the bindings in flight.
async fn lead(client: kube::Client, args: Args, token: CancellationToken) {
    let tasks = TaskTracker::new();
    let informers = Factory::new(client.clone(), token.clone());
    let (recorder, sender) = Recorder::new(client.clone(), SCHEDULER_NAME, "", token.clone());
    tasks.spawn(sender);
    let scheduler = Arc::new(Scheduler {
        client,
        cache: Mutex::default(),
        queue: SchedulingQueue::new(POD_BACKOFF, token.clone()),
        recorder,
        bindings: Arc::new(Semaphore::new(MAX_BINDINGS_IN_FLIGHT)),
        tasks: tasks.clone(),
    });
    let (pods, nodes) = eventhandlers::register(&scheduler, &informers);
    let synced = async {
        pods.wait_synced().await;
        nodes.wait_synced().await;
    };
    tokio::select! {
        _ = synced => {
            tracing::info!("caches synced; scheduling");
            tasks.spawn({
                let queue = scheduler.queue.clone();
                async move { queue.run_flushes().await }
            });
            let mut algorithm = Algorithm::new(plugins::default_profile(), args.percentage_of_nodes_to_score);
            scheduler.run(&mut algorithm).await;
        }
        _ = token.cancelled() => {}
    }
    tasks.close();
    tasks.wait().await;
    informers.wait().await;
}

struct Scheduler {
    client: kube::Client,
    cache: Mutex<Cache>,
    queue: Arc<SchedulingQueue>,
    recorder: Recorder,
    bindings: Arc<Semaphore>,
    tasks: TaskTracker,
}

impl Scheduler {
    /// The scheduling loop: one attempt at a time until the queue shuts down.
    async fn run(self: &Arc<Self>, algorithm: &mut Algorithm) {
        loop {
            let Ok(permit) = self.bindings.clone().acquire_owned().await else {
                return;
            };
            let Some(queued) = self.queue.pop().await else {
                return;
            };
            self.schedule_one(algorithm, queued, permit).await;
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache's updates finish before anything in them could panic.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn schedule_one(
        self: &Arc<Self>,
        algorithm: &mut Algorithm,
        queued: QueuedPod,
        permit: OwnedSemaphorePermit,
    ) {
        if queued.pod.metadata.deletion_timestamp.is_some() {
            self.queue.done(&queued.uid);
            return;
        }
        let info = match PodInfo::new(queued.pod.clone()) {
            Ok(info) => Arc::new(info),
            Err(message) => return self.fail(queued, Failure::Error, "SchedulerError", message).await,
        };
        let placed = {
            let mut cache = self.cache();
            if cache.is_assumed(&info.uid) {
                drop(cache);
                self.queue.done(&queued.uid);
                return;
            }
            algorithm.schedule(cache.nodes(), cache.node_count(), &info).map(|at| {
                let node = cache.nodes()[at].name.clone();
                cache.assume(info.clone(), &node);
                node
            })
        };
        match placed {
            Ok(node) => {
                let this = self.clone();
                self.tasks.spawn(async move { this.bind(queued, node, permit).await });
            }
            Err(err @ ScheduleError::Fit(_)) | Err(err @ ScheduleError::NoNodes) => {
                let events = match &err {
                    ScheduleError::Fit(fit) => fit.events,
                    _ => Events::NODE_ADD,
                };
                self.fail(queued, Failure::Unschedulable(events), "Unschedulable", err.to_string())
                    .await;
            }
            Err(err) => {
                self.fail(queued, Failure::Error, "SchedulerError", err.to_string())
                    .await
            }
        }
    }

    /// Writes the binding of an assumed pod; on failure forgets it and retries after back-off.
    async fn bind(self: Arc<Self>, queued: QueuedPod, node: String, _permit: OwnedSemaphorePermit) {
        let pod = &queued.pod;
        let (namespace, name) = (
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
        );
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.clone()),
                ..Default::default()
            },
        };
        let result = Api::<Pod>::namespaced(self.client.clone(), namespace)
            .create_subresource::<_, serde::de::IgnoredAny>("binding", name, &PostParams::default(), &binding)
            .await;
        match result {
            Ok(_) => {
                tracing::debug!(pod = %format!("{namespace}/{name}"), %node, "bound");
                self.queue.done(&queued.uid);
                self.recorder.record(
                    &**pod,
                    false,
                    "Scheduled",
                    &format!("Successfully assigned {namespace}/{name} to {node}"),
                );
            }
            Err(err) => {
                self.cache().forget(&queued.uid);
                if let kube::Error::Api(status) = &err
                    && status.code == 404
                {
                    self.queue.done(&queued.uid);
                    return;
                }
                let message = format!("running Bind plugin \"DefaultBinder\": {}", crate::error_chain(&err));
                self.fail(queued, Failure::Error, "SchedulerError", message).await;
            }
        }
    }

    /// Reports a failed attempt (an event, and the PodScheduled condition) and queues the pod to
    /// be tried again.
    async fn fail(&self, queued: QueuedPod, failure: Failure, reason: &str, message: String) {
        let pod = &queued.pod;
        self.recorder.record(&**pod, true, "FailedScheduling", &message);
        if let Err(err) = self.set_unscheduled(pod, reason, &message).await {
            tracing::debug!(pod = %pod.metadata.name.as_deref().unwrap_or_default(), error = %crate::error_chain(&err), "updating the PodScheduled condition failed");
        }
        self.queue.requeue_failed(queued, failure);
    }

    /// Sets `PodScheduled=False` with `reason` and `message`, unless the pod already says so.
    async fn set_unscheduled(&self, pod: &Pod, reason: &str, message: &str) -> Result<(), kube::Error> {
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        if current.is_some_and(|c| {
            c.status == "False" && c.reason.as_deref() == Some(reason) && c.message.as_deref() == Some(message)
        }) {
            return Ok(());
        }
        let transitioned = current
            .filter(|c| c.status == "False")
            .and_then(|c| c.last_transition_time.clone());
        let now = jiff::Timestamp::now().to_string();
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": transitioned.map_or(now, |t| t.0.to_string()),
        }]}});
        Api::<Pod>::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        )
        .patch_status(
            pod.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn flags_default_as_upstream() {
        let args = Cli::parse_from(["scheduler", "--master=127.0.0.1:8080"]).args;
        assert!(args.leader_election.leader_elect);
        assert_eq!(args.leader_election.leader_elect_resource_namespace, "kube-system");
        assert_eq!(args.percentage_of_nodes_to_score, 0);
        assert!(Cli::try_parse_from(["scheduler", "--percentage-of-nodes-to-score=101"]).is_err());
    }
}
