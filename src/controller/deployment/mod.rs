//! The Deployment controller (upstream's `pkg/controller/deployment`): a deployment owns one
//! replica set per pod template it has had, named `<deployment>-<pod-template-hash>`. A rollout
//! sizes the new set up and the old ones down, within `maxSurge` and `maxUnavailable`
//! (RollingUpdate) or all old pods first (Recreate); scaling spreads proportionally over the
//! sets; old sets beyond `revisionHistoryLimit` are deleted; status and the Progressing and
//! Available conditions report how it goes.
//!
//! Changes to deployments, their replica sets and (for Recreate) pods queue the deployment's
//! key. The controller writes only replica sets and the deployment's status and revision
//! annotation; `kubectl rollout undo` and `restart` are changes to the template, made by kubectl.

mod progress;
mod recreate;
mod rolling;
mod sync;
mod util;

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;

use super::Context;
use super::pods::{self, ClaimError, Claimant, controller_of};
use crate::api::selector::LabelSelector;
use crate::events::Recorder;
use crate::informer::{Change, Informer, ObjectKey};
use crate::workqueue::{WorkQueue, run_workers};
use sync::Rollout;

/// Deployments synced at once (upstream's `--concurrent-deployment-syncs` default).
const WORKERS: usize = 5;
const COMPONENT: &str = "deployment-controller";

/// Why a sync failed; the key is retried with back-off.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("claiming replica sets: {0}")]
    Claim(#[from] ClaimError),
    #[error("creating replica set {name}: {}", crate::error_chain(.source))]
    CreateReplicaSet {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("replica set {0} exists with another template; retrying with a new collision count")]
    HashCollision(String),
    #[error("updating replica set {name}: {}", crate::error_chain(.source))]
    UpdateReplicaSet {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the deployment: {}", crate::error_chain(.0))]
    UpdateDeployment(#[source] kube::Error),
}

/// Runs the Deployment controller until shutdown.
pub(super) async fn run(ctx: Arc<Context>) {
    let queue = WorkQueue::new(ctx.shutdown.clone());
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        deployments: ctx.informers.get::<Deployment>(),
        sets: ctx.informers.get::<ReplicaSet>(),
        pods: ctx.informers.get::<Pod>(),
        queue: queue.clone(),
        recorder: ctx.recorder(COMPONENT),
    });
    // The informers outlive this controller's handlers; weak references avoid a cycle.
    let weak = Arc::downgrade(&controller);
    controller
        .deployments
        .add_handler(handler(&weak, Controller::on_deployment));
    controller.sets.add_handler(handler(&weak, Controller::on_replica_set));
    controller.pods.add_handler(handler(&weak, Controller::on_pod));
    controller.deployments.wait_synced().await;
    controller.sets.wait_synced().await;
    controller.pods.wait_synced().await;
    run_workers(queue, WORKERS, COMPONENT, move |key: ObjectKey| {
        let controller = controller.clone();
        async move { controller.sync(key).await }
    })
    .await;
}

fn handler<T: 'static>(
    weak: &Weak<Controller>,
    on: fn(&Controller, &Change<'_, T>),
) -> impl Fn(&Change<'_, T>) + Send + Sync + 'static {
    let weak = weak.clone();
    move |change| {
        if let Some(controller) = weak.upgrade() {
            on(&controller, change);
        }
    }
}

pub(super) struct Controller {
    client: kube::Client,
    deployments: Arc<Informer<Deployment>>,
    sets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<WorkQueue<ObjectKey>>,
    recorder: Recorder,
}

impl Controller {
    fn on_deployment(&self, change: &Change<'_, Deployment>) {
        self.queue.add(ObjectKey::of(&**change.object()));
    }

    fn on_replica_set(&self, change: &Change<'_, ReplicaSet>) {
        match change {
            Change::Added(rs) | Change::Deleted(rs) => match self.owner_of(rs) {
                Some(key) => self.queue.add(key),
                None if controller_of(&rs.metadata).is_none() => self.queue_selecting(rs),
                None => {}
            },
            Change::Updated { old, new } => {
                if old.resource_version() == new.resource_version() {
                    return;
                }
                let owner_changed = controller_of(&old.metadata) != controller_of(&new.metadata);
                if owner_changed && let Some(key) = self.owner_of(old) {
                    self.queue.add(key);
                }
                match self.owner_of(new) {
                    Some(key) => self.queue.add(key),
                    None if controller_of(&new.metadata).is_none()
                        && (owner_changed || old.labels() != new.labels()) =>
                    {
                        self.queue_selecting(new)
                    }
                    None => {}
                }
            }
        }
    }

    /// A Recreate rollout waits for every old pod to go: their deletions queue the deployment.
    fn on_pod(&self, change: &Change<'_, Pod>) {
        let Change::Deleted(pod) = change else { return };
        let namespace = pod.namespace().unwrap_or_default();
        let Some(rs) = controller_of(&pod.metadata).and_then(|r| self.sets.get(&namespace, &r.name)) else {
            return;
        };
        if let Some(key) = self.owner_of(&rs)
            && let Some(d) = self.deployments.get(&key.namespace, &key.name)
            && d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
        {
            self.queue.add(key);
        }
    }

    /// The cached deployment controlling `rs`.
    fn owner_of(&self, rs: &ReplicaSet) -> Option<ObjectKey> {
        let owner = controller_of(&rs.metadata)?;
        let namespace = rs.namespace().unwrap_or_default();
        let d = self.deployments.get(&namespace, &owner.name)?;
        (owner.kind == "Deployment" && d.metadata.uid.as_deref() == Some(owner.uid.as_str()))
            .then(|| ObjectKey::new(&namespace, &owner.name))
    }

    fn queue_selecting(&self, rs: &ReplicaSet) {
        for d in self.deployments.list_namespace(&rs.namespace().unwrap_or_default()) {
            if LabelSelector::try_from(&d.spec.selector).is_ok_and(|s| s.matches(rs.metadata.labels.as_ref())) {
                self.queue.add(ObjectKey::of(&*d));
            }
        }
    }

    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(cached) = self.deployments.get(&key.namespace, &key.name) else {
            return Ok(None);
        };
        let d = (*cached).clone();
        let selector = match LabelSelector::try_from(&d.spec.selector) {
            Ok(selector) if selector.is_empty() => {
                let message = "This deployment is selecting all pods. A non-empty selector is required.";
                return self.refuse(d, "SelectingAll", message.into()).await;
            }
            Ok(selector) => selector,
            Err(why) => return self.refuse(d, "InvalidSelector", why.to_string()).await,
        };
        if let Err(why) = util::fenceposts(&d) {
            return self.refuse(d, "InvalidStrategy", why).await;
        }
        let Some(owner) = pods::controller_ref(&d) else {
            return Ok(None);
        };
        let claimant = Claimant {
            owner,
            deleting: d.metadata.deletion_timestamp.is_some(),
            selector: &selector,
        };
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), &key.namespace);
        let set_api = Api::<ReplicaSet>::namespaced(self.client.clone(), &key.namespace);
        let candidates = self.sets.list_namespace(&key.namespace);
        let sets = pods::claim(&set_api, &claimant, candidates, || {
            pods::recheck_owner(&deployments, &d)
        })
        .await?;
        let sets: Vec<ReplicaSet> = sets.iter().map(|rs| (**rs).clone()).collect();

        let mut rollout = Rollout::new(self, d, sets);
        if claimant.deleting {
            return rollout.sync_status_only().await;
        }
        rollout.check_paused_conditions().await?;
        if rollout.d.spec.paused == Some(true) || rollout.is_scaling_event() {
            return rollout.sync().await;
        }
        match rollout.d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) {
            Some("Recreate") => {
                let pods = self.pods_by_set(&rollout.sets, &selector, &key.namespace);
                rollout.recreate(&pods).await
            }
            _ => rollout.rolling().await,
        }
    }

    /// The deployment's active pods grouped by the uid of the set controlling them.
    fn pods_by_set(&self, sets: &[ReplicaSet], selector: &LabelSelector, namespace: &str) -> Vec<(String, Arc<Pod>)> {
        let uids: HashSet<&str> = sets.iter().filter_map(|rs| rs.metadata.uid.as_deref()).collect();
        self.pods
            .list_namespace(namespace)
            .into_iter()
            .filter(|p| selector.matches(p.metadata.labels.as_ref()))
            .filter_map(|p| {
                let owner = controller_of(&p.metadata)?.uid.clone();
                uids.contains(owner.as_str()).then_some((owner, p))
            })
            .collect()
    }

    /// A deployment that cannot be acted on: an event the first time, and a ReplicaFailure
    /// condition, until it is changed (which queues it again). Not retried: nothing would change.
    async fn refuse(&self, d: Deployment, reason: &'static str, message: String) -> Result<Option<Duration>, Error> {
        let mut status = d.status.clone().unwrap_or_default();
        let known =
            util::condition(&status, util::REPLICA_FAILURE).is_some_and(|c| c.reason.as_deref() == Some(reason));
        if !known {
            self.recorder.record(&d, true, reason, &message);
            util::set_condition(
                &mut status,
                util::new_condition(util::REPLICA_FAILURE, "True", reason, message),
            );
        }
        status.observed_generation = d.metadata.generation;
        let mut rollout = Rollout::new(self, d, Vec::new());
        rollout.write_status(status).await?;
        Ok(None)
    }
}
