//! The Job controller (upstream's `pkg/controller/job`): runs a Job's pods until enough of them
//! succeed (`completions`, at most `parallelism` at a time), or fails the Job when too many fail
//! (`backoffLimit`) or it runs too long (`activeDeadlineSeconds`).
//!
//! Pods carry the `batch.kubernetes.io/job-tracking` finalizer, so none can vanish before it is
//! counted: a finished pod's uid goes into `status.uncountedTerminatedPods` first, then its
//! finalizer is removed, then it moves into `succeeded` or `failed`. As in 1.31 and later, a Job
//! first gets the interim `SuccessCriteriaMet` or `FailureTarget` condition, and `Complete` or
//! `Failed` once none of its pods is left running.
//!
//! Jobs are keys on a work queue, synced when they or their pods change. What this process
//! expects to see next (pods it created or deleted, finalizers it removed) and each Job's failure
//! back-off live in memory, as upstream's expectations and back-off records do.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use tokio::time::Instant;

use super::Context;
use super::pods::{self, Expectations, controlled_by, is_active, is_finished, is_ready};
use crate::events::Recorder;
use crate::informer::{Change, Informer, ObjectKey};
use crate::workqueue::{WorkQueue, run_workers};

/// The finalizer that keeps a Job's finished pods until they are counted.
const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The wait before replacing a failed pod: 10 s, doubling with each further failure up to 10 min.
const POD_FAILURE_BACKOFF: crate::backoff::Backoff = crate::backoff::Backoff {
    initial: Duration::from_secs(10),
    max: Duration::from_secs(600),
};
/// Upstream's cap on pods created or deleted in one sync.
const MAX_POD_CHANGES_PER_SYNC: usize = 500;

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("creating a pod for job {job} failed: {}", crate::error_chain(.source))]
    CreatePod { job: ObjectKey, source: kube::Error },
    #[error("deleting pod {pod} failed: {}", crate::error_chain(.source))]
    DeletePod { pod: ObjectKey, source: kube::Error },
    #[error("removing the tracking finalizer of pod {pod} failed: {}", crate::error_chain(.source))]
    RemoveFinalizer { pod: ObjectKey, source: kube::Error },
    #[error("updating the status of job {job} failed: {}", crate::error_chain(.source))]
    UpdateStatus { job: ObjectKey, source: kube::Error },
}

/// Failures since the last success, for the back-off before a failed pod is replaced.
#[derive(Clone, Copy)]
struct Backoff {
    failures: u32,
    last_failure: Instant,
}

impl Backoff {
    /// How much longer to wait before creating pods: 10 s doubling per failure, up to 10 min.
    fn remaining(&self) -> Duration {
        let delay = POD_FAILURE_BACKOFF.after(self.failures);
        delay.saturating_sub(self.last_failure.elapsed())
    }
}

struct JobController {
    jobs: Arc<Informer<Job>>,
    pods: Arc<Informer<Pod>>,
    client: kube::Client,
    recorder: Recorder,
    expectations: Expectations,
    /// Uids of pods whose finalizer was removed but whose change the cache does not show yet.
    finalizers_removed: Mutex<HashSet<String>>,
    backoff: Mutex<HashMap<ObjectKey, Backoff>>,
}

pub(super) async fn run(ctx: Arc<Context>) {
    let controller = Arc::new(JobController {
        jobs: ctx.informers.get::<Job>(),
        pods: ctx.informers.get::<Pod>(),
        client: ctx.client.clone(),
        recorder: ctx.recorder("job-controller"),
        expectations: Expectations::default(),
        finalizers_removed: Mutex::default(),
        backoff: Mutex::default(),
    });
    let queue: Arc<WorkQueue<ObjectKey>> = WorkQueue::new(ctx.shutdown.clone());
    controller.jobs.add_handler({
        let queue = queue.clone();
        move |change| queue.add(ObjectKey::of(&**change.object()))
    });
    controller.pods.add_handler({
        let (queue, controller) = (queue.clone(), controller.clone());
        move |change| controller.pod_changed(change, &queue)
    });
    controller.jobs.wait_synced().await;
    controller.pods.wait_synced().await;
    run_workers(queue, 5, "job", move |key: ObjectKey| {
        let controller = controller.clone();
        async move { controller.sync(&key).await }
    })
    .await;
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    let conditions = status.conditions.as_deref().unwrap_or_default();
    conditions.iter().find(|c| c.type_ == type_ && c.status == "True")
}

fn new_condition(type_: &str, reason: &str, message: &str) -> JobCondition {
    let now = Some(Time(Timestamp::now()));
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: now.clone(),
        last_transition_time: now,
    }
}

/// How a Job ends, once decided.
struct Finish {
    /// The interim condition (`SuccessCriteriaMet`, `FailureTarget`) and the terminal one.
    interim: &'static str,
    terminal: &'static str,
    reason: String,
    message: String,
}

/// How the Job ends, if it does: as already decided, or by its back-off limit, its completions
/// or its deadline.
fn finish(spec: &JobSpec, status: &JobStatus, active: &[&Arc<Pod>], succeeded: i32, failed: i32) -> Option<Finish> {
    let from = |c: &JobCondition, interim, terminal| Finish {
        interim,
        terminal,
        reason: c.reason.clone().unwrap_or_default(),
        message: c.message.clone().unwrap_or_default(),
    };
    if let Some(c) = condition(status, "FailureTarget") {
        return Some(from(c, "FailureTarget", "Failed"));
    }
    if let Some(c) = condition(status, "SuccessCriteriaMet") {
        return Some(from(c, "SuccessCriteriaMet", "Complete"));
    }
    let failure = |reason: &str, message: &str| Finish {
        interim: "FailureTarget",
        terminal: "Failed",
        reason: reason.into(),
        message: message.into(),
    };
    // With restartPolicy OnFailure, failures are container restarts within active pods.
    let restarts: i32 = if spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure") {
        active
            .iter()
            .flat_map(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.clone())
                    .unwrap_or_default()
            })
            .map(|c| c.restart_count)
            .sum()
    } else {
        0
    };
    if failed + restarts > spec.backoff_limit.unwrap_or(6) {
        return Some(failure(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ));
    }
    let done = match spec.completions {
        Some(completions) => succeeded >= completions,
        None => succeeded > 0 && active.is_empty(),
    };
    if done {
        return Some(Finish {
            interim: "SuccessCriteriaMet",
            terminal: "Complete",
            reason: "CompletionsReached".into(),
            message: "Reached expected number of succeeded pods".into(),
        });
    }
    time_left(spec, status)
        .is_some_and(|left| !left.is_positive())
        .then(|| failure("DeadlineExceeded", "Job was active longer than specified deadline"))
}

/// How long the Job may still run under `activeDeadlineSeconds`, if it has one.
fn time_left(spec: &JobSpec, status: &JobStatus) -> Option<jiff::SignedDuration> {
    let start = status.start_time.as_ref()?;
    let deadline = jiff::SignedDuration::from_secs(spec.active_deadline_seconds?);
    Some(deadline - Timestamp::now().duration_since(start.0))
}

impl JobController {
    fn pod_changed(&self, change: &Change<'_, Pod>, queue: &WorkQueue<ObjectKey>) {
        let pod = change.object();
        let Some(job) = controlled_by::<Job>(pod) else { return };
        self.expectations.observe(&job, change);
        if matches!(change, Change::Deleted(_)) || !has_finalizer(pod) {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            self.finalizers_removed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&uid);
        }
        queue.add(job);
    }

    async fn sync(&self, key: &ObjectKey) -> Result<Option<Duration>, Error> {
        let job = self.jobs.get(&key.namespace, &key.name);
        let uid = job.as_ref().and_then(|j| j.metadata.uid.clone());
        self.release_orphans(key, uid.as_deref()).await?;
        let Some(job) = job else {
            self.expectations.forget(key);
            self.lock_backoff().remove(key);
            return Ok(None);
        };
        let status = job.status.clone().unwrap_or_default();
        if condition(&status, "Complete").is_some() || condition(&status, "Failed").is_some() {
            return Ok(None);
        }
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(&key.namespace)
            .into_iter()
            .filter(|p| p.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref()))
            .collect();
        let job = self.track_finished_pods(key, &job, &pods).await?;
        let mut status = job.status.clone().unwrap_or_default();
        let spec = job.spec.clone().unwrap_or_default();
        let active: Vec<&Arc<Pod>> = pods.iter().filter(|p| is_active(p)).collect();
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let succeeded = status.succeeded.unwrap_or(0) + len(&uncounted.succeeded);
        let failed = status.failed.unwrap_or(0) + len(&uncounted.failed);
        if status.start_time.is_none() {
            status.start_time = Some(Time(Timestamp::now()));
        }
        let finish = finish(&spec, &status, &active, succeeded, failed);
        // An unfinished Job with a deadline comes back when it passes.
        let mut requeue = time_left(&spec, &status)
            .filter(|_| finish.is_none())
            .and_then(|left| Duration::try_from(left).ok());
        match &finish {
            Some(finish) => {
                if condition(&status, finish.interim).is_none() {
                    let interim = new_condition(finish.interim, &finish.reason, &finish.message);
                    status.conditions.get_or_insert_with(Vec::new).push(interim);
                }
                self.delete_pods(key, &active).await?;
            }
            None if self.expectations.satisfied(key) => {
                requeue = requeue
                    .into_iter()
                    .chain(self.manage(key, &job, &active, succeeded).await?)
                    .min();
            }
            None => {}
        }
        let terminating = pods.iter().filter(|p| pods::is_terminating(p)).count();
        status.active = Some(count(active.len()));
        status.ready = Some(count(active.iter().filter(|p| is_ready(p)).count()));
        status.terminating = Some(count(terminating));
        let all_counted = len(&uncounted.succeeded) == 0 && len(&uncounted.failed) == 0;
        if let Some(finish) = &finish
            && active.is_empty()
            && terminating == 0
            && all_counted
        {
            let terminal = new_condition(finish.terminal, &finish.reason, &finish.message);
            status.conditions.get_or_insert_with(Vec::new).push(terminal);
            if finish.terminal == "Complete" {
                status.completion_time = Some(Time(Timestamp::now()));
                self.recorder.record(&*job, false, "Completed", "Job completed");
            } else {
                self.recorder.record(&*job, true, &finish.reason, &finish.message);
            }
        }
        self.write_status(key, &job, status).await?;
        Ok(requeue)
    }

    /// Counts finished pods through `uncountedTerminatedPods
    /// Counts finished pods through `uncountedTerminatedPods` and removes their finalizers;
    /// returns the Job as last written.
    async fn track_finished_pods(&self, key: &ObjectKey, job: &Arc<Job>, pods: &[Arc<Pod>]) -> Result<Arc<Job>, Error> {
        let mut status = job.status.clone().unwrap_or_default();
        let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let removed = self
            .finalizers_removed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (mut new_succeeded, mut new_failed) = (0, 0);
        for pod in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let finished = is_finished(pod) || pod.metadata.deletion_timestamp.is_some();
            let listed = |list: &Option<Vec<String>>| list.iter().flatten().any(|u| *u == uid);
            if !finished || !has_finalizer(pod) || removed.contains(&uid) {
                continue;
            }
            if listed(&uncounted.succeeded) || listed(&uncounted.failed) {
                continue;
            }
            // A pod deleted before it succeeded counts as failed (podReplacementPolicy TerminatingOrFailed).
            if pods::phase(pod) == "Succeeded" {
                uncounted.succeeded.get_or_insert_with(Vec::new).push(uid);
                new_succeeded += 1;
            } else {
                uncounted.failed.get_or_insert_with(Vec::new).push(uid);
                new_failed += 1;
            }
        }
        self.record_backoff(key, new_succeeded, new_failed);
        let mut job = job.clone();
        if new_succeeded + new_failed > 0 {
            status.uncounted_terminated_pods = Some(uncounted.clone());
            job = self.write_status(key, &job, status.clone()).await?;
        }
        // The uids are recorded: the pods may go.
        for uid in uncounted
            .succeeded
            .iter()
            .flatten()
            .chain(uncounted.failed.iter().flatten())
        {
            if let Some(pod) = pods.iter().find(|p| p.metadata.uid.as_ref() == Some(uid))
                && has_finalizer(pod)
                && !removed.contains(uid)
            {
                self.remove_finalizer(pod).await?;
            }
        }
        if len(&uncounted.succeeded) + len(&uncounted.failed) == 0 {
            return Ok(job);
        }
        // Every recorded pod is now either gone or free of its finalizer: count them.
        let mut status = job.status.clone().unwrap_or_default();
        status.succeeded = Some(status.succeeded.unwrap_or(0) + len(&uncounted.succeeded));
        status.failed = Some(status.failed.unwrap_or(0) + len(&uncounted.failed));
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
        self.write_status(key, &job, status).await
    }

    fn record_backoff(&self, key: &ObjectKey, new_succeeded: u32, new_failed: u32) {
        let mut backoff = self.lock_backoff();
        if new_succeeded > 0 {
            backoff.remove(key);
        }
        if new_failed > 0 {
            let record = backoff.entry(key.clone()).or_insert(Backoff {
                failures: 0,
                last_failure: Instant::now(),
            });
            record.failures += new_failed;
            record.last_failure = Instant::now();
        }
    }

    /// Creates or deletes pods so that as many run as `parallelism` and the remaining completions
    /// allow; returns when to look again if the failure back-off holds creation back.
    async fn manage(
        &self,
        key: &ObjectKey,
        job: &Job,
        active: &[&Arc<Pod>],
        succeeded: i32,
    ) -> Result<Option<Duration>, Error> {
        let spec = job.spec.clone().unwrap_or_default();
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let active_count = count(active.len());
        let want = match spec.completions {
            // Without completions, the first success means no new pods.
            None if succeeded > 0 => active_count,
            None => parallelism,
            Some(completions) => (completions - succeeded).clamp(0, parallelism),
        };
        if active_count > want {
            // Those least far along go first: unscheduled, then not ready, then the newest.
            let mut victims: Vec<&Arc<Pod>> = active.to_vec();
            victims.sort_by_key(|p| {
                let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                (
                    scheduled,
                    is_ready(p),
                    std::cmp::Reverse(p.metadata.creation_timestamp.clone()),
                )
            });
            let excess = usize::try_from(active_count - want).unwrap_or_default();
            victims.truncate(excess.min(MAX_POD_CHANGES_PER_SYNC));
            return self.delete_pods(key, &victims).await.map(|()| None);
        }
        if active_count == want {
            return Ok(None);
        }
        if let Some(backoff) = self.lock_backoff().get(key).copied() {
            let remaining = backoff.remaining();
            if !remaining.is_zero() {
                return Ok(Some(remaining));
            }
        }
        let Some(owner) = pods::controller_ref(job) else {
            return Ok(None);
        };
        let missing = usize::try_from(want - active_count)
            .unwrap_or_default()
            .min(MAX_POD_CHANGES_PER_SYNC);
        self.expectations.expect_creations(key, missing);
        let pod = job_pod(job, owner);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        for _ in 0..missing {
            match api.create(&PostParams::default(), &pod).await {
                Ok(created) => self.recorder.record(
                    job,
                    false,
                    "SuccessfulCreate",
                    &format!("Created pod: {}", created.name_any()),
                ),
                Err(source) => {
                    self.expectations.creation_observed(key);
                    let message = format!("Error creating: {}", crate::error_chain(&source));
                    self.recorder.record(job, true, "FailedCreate", &message);
                    return Err(Error::CreatePod {
                        job: key.clone(),
                        source,
                    });
                }
            }
        }
        Ok(None)
    }

    async fn delete_pods(&self, key: &ObjectKey, pods: &[&Arc<Pod>]) -> Result<(), Error> {
        if pods.is_empty() {
            return Ok(());
        }
        self.expectations
            .expect_deletions(key, pods.iter().map(|p| ObjectKey::of(&***p)));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        for pod in pods {
            let name = pod.name_any();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    if let Some(job) = self.jobs.get(&key.namespace, &key.name) {
                        let message = format!("Deleted pod: {name}");
                        self.recorder.record(&*job, false, "SuccessfulDelete", &message);
                    }
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.expectations.deletion_observed(key, &ObjectKey::of(&***pod));
                }
                Err(source) => {
                    self.expectations.deletion_observed(key, &ObjectKey::of(&***pod));
                    return Err(Error::DeletePod {
                        pod: ObjectKey::of(&***pod),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    async fn remove_finalizer(&self, pod: &Pod) -> Result<(), Error> {
        let key = ObjectKey::of(pod);
        let patch = serde_json::json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}});
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let patched = api
            .patch(&key.name, &PatchParams::default(), &Patch::Strategic(patch))
            .await;
        // A pod already gone holds nothing any more.
        if let Err(source) = patched
            && !matches!(&source, kube::Error::Api(s) if s.code == 404)
        {
            return Err(Error::RemoveFinalizer { pod: key, source });
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.finalizers_removed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(uid);
        Ok(())
    }

    /// Lets go of pods that name `key` as their Job but not its current uid (the Job is gone or
    /// was made again): nothing will count them, so their finalizer must not hold them.
    async fn release_orphans(&self, key: &ObjectKey, uid: Option<&str>) -> Result<(), Error> {
        for pod in self.pods.list_namespace(&key.namespace) {
            let orphan = controlled_by::<Job>(&pod).as_ref() == Some(key)
                && !pod.owner_references().iter().any(|o| Some(o.uid.as_str()) == uid);
            if orphan && has_finalizer(&pod) {
                self.remove_finalizer(&pod).await?;
            }
        }
        Ok(())
    }

    /// Writes `status` unless it is what the Job has; the Job as written.
    async fn write_status(&self, key: &ObjectKey, job: &Arc<Job>, status: JobStatus) -> Result<Arc<Job>, Error> {
        if job.status.as_ref() == Some(&status) {
            return Ok(job.clone());
        }
        let mut updated = (**job).clone();
        updated.status = Some(status);
        let api: Api<Job> = Api::namespaced(self.client.clone(), &key.namespace);
        match api.replace_status(&key.name, &PostParams::default(), &updated).await {
            Ok(written) => Ok(Arc::new(written)),
            Err(source) => Err(Error::UpdateStatus {
                job: key.clone(),
                source,
            }),
        }
    }

    fn lock_backoff(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Backoff>> {
        self.backoff.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn len(list: &Option<Vec<String>>) -> i32 {
    count(list.as_ref().map_or(0, Vec::len))
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A new pod for `job`: its template, named after it, controlled by it (`owner`), held by the
/// tracking finalizer.
fn job_pod(job: &Job, owner: OwnerReference) -> Pod {
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut pod = pods::pod_from_template(&template, owner, &format!("{}-", job.name_any()));
    let finalizers = pod.metadata.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn failure_backoff_doubles_from_ten_seconds() {
        let at = |failures| {
            Backoff {
                failures,
                last_failure: Instant::now(),
            }
            .remaining()
        };
        assert!(at(1) <= POD_FAILURE_BACKOFF.initial && at(1) > Duration::from_secs(9));
        assert!(at(3) > Duration::from_secs(39));
        assert!(at(30) <= POD_FAILURE_BACKOFF.max);
    }

    #[test]
    fn job_pods_are_owned_held_and_named_after_the_job() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"job-name": "pi"}, "finalizers": ["example.com/keep"]},
                                  "spec": {"containers": [{"name": "c", "image": "perl"}]}}}
        }))
        .unwrap();
        let pod = job_pod(&job, pods::controller_ref(&job).unwrap());
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-"));
        assert_eq!(
            pod.metadata.finalizers,
            Some(vec!["example.com/keep".to_string(), TRACKING_FINALIZER.to_string()])
        );
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Job", "u1", Some(true))
        );
        assert_eq!(
            controlled_by::<Job>(&Pod {
                metadata: ObjectMeta {
                    namespace: Some("default".into()),
                    ..pod.metadata.clone()
                },
                ..Default::default()
            }),
            Some(ObjectKey::new("default", "pi"))
        );
    }
}
