//! The ReplicaSet controller (upstream's `pkg/controller/replicaset`), which also runs
//! ReplicationControllers, as upstream's `pkg/controller/replication` wraps it: each set keeps
//! `spec.replicas` active pods that its selector matches, made from its template; it adopts
//! orphans it matches, releases pods it no longer matches, deletes the least valuable pods first
//! and reports counts in `status`.
//!
//! Changes to sets and pods arrive from the shared informers and queue the owning set's key.
//! Expectations hold a set back until the informer has shown it every pod it created or deleted,
//! so a sync never acts on a cache that misses its own last writes.

mod status;
mod victims;

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, Weak};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as ApiSelector, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Context;
use super::pods::{self, ClaimError, Claimant, Expectations, controller_of, is_active};
use crate::api::selector::LabelSelector;
use crate::events::Recorder;
use crate::informer::{Change, Informer, ObjectKey};
use crate::workqueue::{WorkQueue, run_workers};

/// At most this many pods are created or deleted by one sync (upstream's `BurstReplicas`).
const BURST_REPLICAS: usize = 500;
/// Sets synced at once (upstream's `--concurrent-replicaset-syncs` default).
const WORKERS: usize = 5;

/// Runs the ReplicaSet controller until shutdown.
pub(super) async fn run_replicasets(ctx: Arc<Context>) {
    run::<ReplicaSet>(ctx).await
}

/// Runs the ReplicationController controller until shutdown.
pub(super) async fn run_replication_controllers(ctx: Arc<Context>) {
    run::<ReplicationController>(ctx).await
}

/// A kind that keeps replicas of a pod template, seen in ReplicaSet terms: ReplicaSet itself,
/// or ReplicationController (upstream converts it the same way).
pub(crate) trait Replicated:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The name its events are reported under, as upstream's.
    const COMPONENT: &'static str;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The selector as written, which may be invalid.
    fn api_selector(&self) -> ApiSelector;
    fn status(&self) -> ReplicaSetStatus;
    /// `status` in this kind's wire shape.
    fn encode(status: &ReplicaSetStatus) -> serde_json::Value;
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";

    fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.min_ready_seconds.unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.template.as_ref()
    }

    fn api_selector(&self) -> ApiSelector {
        self.spec.selector.clone()
    }

    fn status(&self) -> ReplicaSetStatus {
        self.status.clone().unwrap_or_default()
    }

    fn encode(status: &ReplicaSetStatus) -> serde_json::Value {
        serde_json::to_value(status).unwrap_or_default()
    }
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn api_selector(&self) -> ApiSelector {
        ApiSelector {
            match_labels: self.spec.as_ref().and_then(|s| s.selector.clone()),
            match_expressions: None,
        }
    }

    fn status(&self) -> ReplicaSetStatus {
        // The two statuses share their wire shape.
        serde_json::to_value(&self.status)
            .and_then(serde_json::from_value::<Option<ReplicaSetStatus>>)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn encode(status: &ReplicaSetStatus) -> serde_json::Value {
        let mut value = serde_json::to_value(status).unwrap_or_default();
        if let Some(fields) = value.as_object_mut() {
            // ReplicationControllers do not report terminating pods.
            fields.remove("terminatingReplicas");
        }
        value
    }
}

/// Why a sync failed; the key is retried with back-off.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("claiming pods: {0}")]
    Claim(#[from] ClaimError),
    #[error("creating pods: {}", crate::error_chain(.0))]
    CreatePods(#[source] kube::Error),
    #[error("deleting pods: {}", crate::error_chain(.0))]
    DeletePods(#[source] kube::Error),
    #[error("updating status: {}", crate::error_chain(.0))]
    UpdateStatus(#[source] kube::Error),
}

struct Controller<K> {
    client: kube::Client,
    sets: Arc<Informer<K>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<WorkQueue<ObjectKey>>,
    expectations: Expectations,
    recorder: Recorder,
}

async fn run<K: Replicated>(ctx: Arc<Context>) {
    let queue = WorkQueue::new(ctx.shutdown.clone());
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        sets: ctx.informers.get::<K>(),
        pods: ctx.informers.get::<Pod>(),
        queue: queue.clone(),
        expectations: Expectations::default(),
        recorder: ctx.recorder(K::COMPONENT),
    });
    // The informers outlive this controller's handlers; weak references avoid a cycle.
    let weak = Arc::downgrade(&controller);
    controller.sets.add_handler(handler(&weak, Controller::on_set));
    controller.pods.add_handler(handler(&weak, Controller::on_pod));
    controller.sets.wait_synced().await;
    controller.pods.wait_synced().await;
    run_workers(queue, WORKERS, K::COMPONENT, move |key: ObjectKey| {
        let controller = controller.clone();
        async move { controller.sync(key).await }
    })
    .await;
}

fn handler<K, T>(
    weak: &Weak<Controller<K>>,
    on: fn(&Controller<K>, &Change<'_, T>),
) -> impl Fn(&Change<'_, T>) + Send + Sync + 'static
where
    K: Replicated,
    T: 'static,
{
    let weak = weak.clone();
    move |change| {
        if let Some(controller) = weak.upgrade() {
            on(&controller, change);
        }
    }
}

/// What one sync did to the pods: the ones it deleted, and the first failure.
#[derive(Default)]
struct Managed {
    deleted: HashSet<String>,
    failure: Option<Error>,
}

impl<K: Replicated> Controller<K> {
    fn on_set(&self, change: &Change<'_, K>) {
        let key = ObjectKey::of(&**change.object());
        if let Change::Deleted(_) = change {
            self.expectations.forget(&key);
        }
        self.queue.add(key);
    }

    fn on_pod(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) if pod.metadata.deletion_timestamp.is_some() => self.pod_gone(pod),
            Change::Added(pod) => match self.owner_of(pod) {
                Some(key) => {
                    self.expectations.creation_observed(&key);
                    self.queue.add(key);
                }
                None if controller_of(&pod.metadata).is_none() => self.queue_selecting(pod),
                None => {}
            },
            Change::Updated { old, new } => {
                if old.resource_version() == new.resource_version() {
                    return;
                }
                let labels_changed = old.labels() != new.labels();
                if new.metadata.deletion_timestamp.is_some() {
                    // Being deleted counts as gone: the pod no longer holds a replica's place.
                    self.pod_gone(new);
                    if labels_changed {
                        self.pod_gone(old);
                    }
                    return;
                }
                let owner_changed = controller_of(&old.metadata) != controller_of(&new.metadata);
                if owner_changed && let Some(key) = self.owner_of(old) {
                    self.queue.add(key);
                }
                match self.owner_of(new) {
                    Some(key) => self.queue.add(key),
                    None if controller_of(&new.metadata).is_none() && (labels_changed || owner_changed) => {
                        self.queue_selecting(new)
                    }
                    None => {}
                }
            }
            Change::Deleted(pod) => self.pod_gone(pod),
        }
    }

    fn pod_gone(&self, pod: &Pod) {
        if let Some(key) = self.owner_of(pod) {
            self.expectations.deletion_observed(&key, &ObjectKey::of(pod));
            self.queue.add(key);
        }
    }

    /// The set of this kind controlling `pod`, if it is cached with that uid.
    fn owner_of(&self, pod: &Pod) -> Option<ObjectKey> {
        let owner = controller_of(&pod.metadata)?;
        let namespace = pod.namespace().unwrap_or_default();
        let set = self.sets.get(&namespace, &owner.name)?;
        (owner.kind == K::kind(&()) && set.meta().uid.as_deref() == Some(owner.uid.as_str()))
            .then(|| ObjectKey::new(&namespace, &owner.name))
    }

    /// Queues every set whose selector matches the orphan `pod`: one of them may adopt it.
    fn queue_selecting(&self, pod: &Pod) {
        for set in self.sets.list_namespace(&pod.namespace().unwrap_or_default()) {
            if selector_of(&*set).is_ok_and(|s| s.matches(pod.metadata.labels.as_ref())) {
                self.queue.add(ObjectKey::of(&*set));
            }
        }
    }

    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(set) = self.sets.get(&key.namespace, &key.name) else {
            self.expectations.forget(&key);
            return Ok(None);
        };
        let (selector, template, owner) = match (selector_of(&*set), set.template(), pods::controller_ref(&*set)) {
            (Ok(selector), Some(template), Some(owner)) => (selector, template, owner),
            (Err(why), _, _) => return self.refuse(&set, "InvalidSelector", why).await,
            (_, None, _) => {
                return self
                    .refuse(&set, "FailedCreate", "spec.template is required".into())
                    .await;
            }
            (_, _, None) => return Ok(None),
        };
        // Read before the pods: a creation seen in between only makes this sync wait for nothing.
        let expectations_met = self.expectations.satisfied(&key);
        let namespace_pods = self.pods.list_namespace(&key.namespace);
        let terminating = namespace_pods
            .iter()
            .filter(|p| pods::is_terminating(p) && controller_of(&p.metadata).is_some_and(|r| r.uid == owner.uid))
            .count();
        let candidates = namespace_pods.into_iter().filter(|p| is_active(p)).collect();
        let claimant = Claimant {
            owner: owner.clone(),
            deleting: set.meta().deletion_timestamp.is_some(),
            selector: &selector,
        };
        let sets = Api::<K>::namespaced(self.client.clone(), &key.namespace);
        let pod_api = Api::<Pod>::namespaced(self.client.clone(), &key.namespace);
        let owned = pods::claim(&pod_api, &claimant, candidates, || pods::recheck_owner(&sets, &set)).await?;

        let managed = if expectations_met && !claimant.deleting {
            self.manage(&key, &set, template, owner, &owned).await
        } else {
            Managed::default()
        };
        // Pods deleted just now no longer count, even before the informer shows it: a deployment
        // must not read availability this set is about to lose.
        let counted: Vec<_> = owned
            .into_iter()
            .filter(|p| !managed.deleted.contains(&p.name_any()))
            .collect();
        let now = jiff::Timestamp::now();
        let failure = managed.failure.as_ref().map(|err| match err {
            Error::DeletePods(_) => ("FailedDelete", err.to_string()),
            _ => ("FailedCreate", err.to_string()),
        });
        let status = status::calculate(&*set, &counted, terminating, failure, now);
        self.write_status(&set, &status).await?;
        match managed.failure {
            Some(err) => Err(err),
            None => Ok(status::recheck_after(&counted, set.min_ready_seconds(), now)),
        }
    }

    /// Creates or deletes pods toward `spec.replicas`, at most [`BURST_REPLICAS`] at once.
    async fn manage(
        &self,
        key: &ObjectKey,
        set: &K,
        template: &PodTemplateSpec,
        owner: OwnerReference,
        owned: &[Arc<Pod>],
    ) -> Managed {
        let api = Api::<Pod>::namespaced(self.client.clone(), &key.namespace);
        let wanted = set.replicas().max(0) as usize;
        let mut managed = Managed::default();
        if owned.len() < wanted {
            let count = (wanted - owned.len()).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, count);
            let prefix = format!("{}-", key.name);
            let (created, failure) = pods::slow_start_batch(count, pods::SLOW_START_INITIAL_BATCH, || {
                let pod = pods::pod_from_template(template, owner.clone(), &prefix);
                let api = &api;
                async move {
                    match api.create(&PostParams::default(), &pod).await {
                        Ok(pod) => {
                            let message = format!("Created pod: {}", pod.name_any());
                            self.recorder.record(set, false, "SuccessfulCreate", &message);
                            Ok(())
                        }
                        Err(err) => {
                            let message = format!("Error creating: {}", api_message(&err));
                            self.recorder.record(set, true, "FailedCreate", &message);
                            Err(err)
                        }
                    }
                }
            })
            .await;
            // Creations that failed or never started will not show up in the informer.
            for _ in created..count {
                self.expectations.creation_observed(key);
            }
            managed.failure = failure.map(Error::CreatePods);
        } else if owned.len() > wanted {
            let count = (owned.len() - wanted).min(BURST_REPLICAS);
            let related = self.related_pods(set, owned);
            let victims = victims::choose(owned, &related, count, jiff::Timestamp::now());
            self.expectations
                .expect_deletions(key, victims.iter().map(|p| ObjectKey::of(&**p)));
            let deletions = victims.iter().map(|pod| {
                let api = &api;
                async move { (pod, api.delete(&pod.name_any(), &DeleteParams::default()).await) }
            });
            for (pod, result) in futures::future::join_all(deletions).await {
                let name = pod.name_any();
                match result {
                    Ok(_) => {
                        self.recorder
                            .record(set, false, "SuccessfulDelete", &format!("Deleted pod: {name}"));
                        managed.deleted.insert(name);
                    }
                    Err(err) => {
                        // The informer will not show this deletion, or already has.
                        self.expectations.deletion_observed(key, &ObjectKey::of(&**pod));
                        if matches!(&err, kube::Error::Api(s) if s.code == 404) {
                            managed.deleted.insert(name);
                            continue;
                        }
                        let message = format!("Error deleting: {}", api_message(&err));
                        self.recorder.record(set, true, "FailedDelete", &message);
                        managed.failure.get_or_insert(Error::DeletePods(err));
                    }
                }
            }
        }
        managed
    }

    /// Pods of every set controlled by the same owner as `set` (a Deployment's other sets),
    /// for spreading deletions over nodes; just `owned` when `set` has no controller.
    fn related_pods(&self, set: &K, owned: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
        let Some(parent) = controller_of(set.meta()) else {
            return owned.to_vec();
        };
        let namespace = set.namespace().unwrap_or_default();
        let siblings: HashSet<String> = self
            .sets
            .list_namespace(&namespace)
            .iter()
            .filter(|s| controller_of(s.meta()).is_some_and(|r| r.uid == parent.uid))
            .filter_map(|s| s.meta().uid.clone())
            .collect();
        self.pods
            .list_namespace(&namespace)
            .into_iter()
            .filter(|p| is_active(p) && controller_of(&p.metadata).is_some_and(|r| siblings.contains(&r.uid)))
            .collect()
    }

    /// A set that cannot be acted on: an event the first time, and a ReplicaFailure condition,
    /// until it is changed (which queues it again). Not retried: nothing would change.
    async fn refuse(&self, set: &K, reason: &'static str, message: String) -> Result<Option<Duration>, Error> {
        let mut status = set.status();
        if status::set_failure(&mut status, Some((reason, message.clone())), jiff::Timestamp::now()) {
            self.recorder.record(set, true, reason, &message);
        }
        status.observed_generation = set.meta().generation;
        self.write_status(set, &status).await?;
        Ok(None)
    }

    async fn write_status(&self, set: &K, status: &ReplicaSetStatus) -> Result<(), Error> {
        let Some(patch) = pods::status_patch(&K::encode(&set.status()), &K::encode(status)) else {
            return Ok(());
        };
        let api = Api::<K>::namespaced(self.client.clone(), &set.namespace().unwrap_or_default());
        match api
            .patch_status(&set.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            result => result.map(drop).map_err(Error::UpdateStatus),
        }
    }
}

/// The set's selector as a matcher; one that is invalid or selects every pod is refused.
fn selector_of<K: Replicated>(set: &K) -> Result<LabelSelector, String> {
    let selector = LabelSelector::try_from(&set.api_selector()).map_err(|why| format!("invalid selector: {why}"))?;
    if selector.is_empty() {
        return Err("an empty selector would select every pod in the namespace".into());
    }
    Ok(selector)
}

/// The apiserver's own words for a refused request, or the whole error chain.
fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message.clone(),
        other => crate::error_chain(other),
    }
}
