//! The garbage collector: objects whose owners are all gone are deleted; an owner deleted in the
//! foreground goes only after its blocking dependents, and one deleted with `orphan` first takes
//! its dependents' references to it away. Mirrors upstream's `pkg/controller/garbagecollector`.
//!
//! Monitors (`monitors`) watch every deletable resource the apiserver serves and keep the
//! dependency graph (`graph`); what the graph finds goes to two work queues, attempt-to-delete
//! and attempt-to-orphan. Workers read the object and its owners afresh from the apiserver
//! before acting, since the graph may lag, and act by delete and patch calls.

mod graph;
mod monitors;

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::{Api, ResourceExt};
use serde_json::json;

use self::graph::{FOREGROUND, Graph, Identity, ORPHAN, Work};
use self::monitors::{Mapper, Monitors};
use super::Context;
use crate::events::Recorder;
use crate::workqueue::{WorkQueue, run_workers};

/// Upstream's `--concurrent-gc-syncs` default, for each of the two queues.
const WORKERS: usize = 20;
/// How often discovery looks for resources that appeared (upstream resyncs its monitors too).
const RESYNC: Duration = Duration::from_secs(30);
/// How long to wait before trying a failed first discovery again.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    #[error("{object}: no served resource has kind {kind} in {api_version}")]
    UnknownKind {
        object: String,
        kind: String,
        api_version: String,
    },
    #[error("{what} {object}: {source}")]
    Api {
        what: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
}

/// The state of one owner an object names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    /// It exists and is not being deleted in the foreground.
    Solid,
    /// It is being deleted in the foreground, waiting for its dependents.
    Waiting,
    /// It does not exist (or another object has its name now).
    Dangling,
}

struct Collector {
    client: kube::Client,
    graph: Arc<Mutex<Graph>>,
    mapper: Arc<RwLock<Mapper>>,
    to_delete: Arc<WorkQueue<Identity>>,
    to_orphan: Arc<WorkQueue<Identity>>,
    recorder: Recorder,
}

pub(super) async fn run(ctx: Arc<Context>) {
    let to_delete: Arc<WorkQueue<Identity>> = WorkQueue::new(ctx.shutdown.clone());
    let to_orphan: Arc<WorkQueue<Identity>> = WorkQueue::new(ctx.shutdown.clone());
    let collector = Arc::new(Collector {
        client: ctx.client.clone(),
        graph: Arc::default(),
        mapper: Arc::default(),
        to_delete: to_delete.clone(),
        to_orphan: to_orphan.clone(),
        recorder: ctx.recorder("garbage-collector-controller"),
    });
    let sink = {
        let collector = collector.clone();
        Arc::new(move |work: Vec<Work>| collector.queue(work))
    };
    let mut monitors = Monitors::new(
        ctx.client.clone(),
        collector.graph.clone(),
        collector.mapper.clone(),
        sink,
        ctx.shutdown.clone(),
    );
    // Nothing is collected before the graph holds every monitored resource: an owner not yet
    // seen must not make its dependents look orphaned.
    let synced = loop {
        match monitors.sync().await {
            Ok(synced) => break synced,
            Err(err) => {
                tracing::warn!(error = %crate::error_chain(&err), "garbage collector discovery failed; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(DISCOVERY_RETRY) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
    };
    for mut flag in synced {
        tokio::select! {
            _ = flag.wait_for(|s| *s) => {}
            _ = ctx.shutdown.cancelled() => break,
        }
    }
    let deleting = run_workers(to_delete, WORKERS, "garbagecollector", {
        let collector = collector.clone();
        move |item| {
            let collector = collector.clone();
            async move { collector.attempt_to_delete(&item).await.map(|()| None) }
        }
    });
    let orphaning = run_workers(to_orphan, WORKERS, "garbagecollector-orphan", {
        let collector = collector.clone();
        move |item| {
            let collector = collector.clone();
            async move { collector.attempt_to_orphan(&item).await.map(|()| None) }
        }
    });
    let rediscovery = async {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RESYNC) => {}
                _ = ctx.shutdown.cancelled() => return,
            }
            if let Err(err) = monitors.sync().await {
                tracing::warn!(error = %crate::error_chain(&err), "garbage collector discovery failed");
            }
        }
    };
    tokio::join!(deleting, orphaning, rediscovery);
    monitors.wait().await;
}

impl Collector {
    fn queue(&self, work: Vec<Work>) {
        for item in work {
            match item {
                Work::AttemptToDelete(id) => self.to_delete.add(id),
                Work::AttemptToOrphan(id) => self.to_orphan.add(id),
            }
        }
    }

    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The API of `kind` in `api_version`, in `namespace` when it is namespaced.
    fn api(&self, object: &Identity, api_version: &str, kind: &str) -> Result<(Api<DynamicObject>, bool), Error> {
        let resolved = self
            .mapper
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .resolve(api_version, kind);
        let Some((ar, namespaced)) = resolved else {
            return Err(Error::UnknownKind {
                object: object.to_string(),
                kind: kind.into(),
                api_version: api_version.into(),
            });
        };
        let api = match (&object.namespace, namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        };
        Ok((api, namespaced))
    }

    /// The object as the apiserver has it now; `None` when it is gone or was replaced by
    /// another of the same name.
    async fn latest(&self, item: &Identity) -> Result<Option<DynamicObject>, Error> {
        let (api, _) = self.api(item, &item.api_version, &item.kind)?;
        let obj = api.get_opt(&item.name).await.map_err(|source| Error::Api {
            what: "reading",
            object: item.to_string(),
            source,
        })?;
        Ok(obj.filter(|o| o.uid().as_deref() == Some(item.uid.as_str())))
    }

    /// Collects `item` if its owners are gone, or finishes its own foreground deletion
    /// (upstream's `attemptToDeleteItem`).
    async fn attempt_to_delete(&self, item: &Identity) -> Result<(), Error> {
        if self.graph().node(&item.uid).is_none() {
            return Ok(());
        }
        let Some(latest) = self.latest(item).await? else {
            return Ok(()); // its deletion reaches the graph through the monitors
        };
        if latest.metadata.deletion_timestamp.is_some() {
            if has_finalizer(&latest.metadata, FOREGROUND) {
                return self.finish_foreground(item, &latest).await;
            }
            return Ok(());
        }
        let owners = latest.owner_references().to_vec();
        if owners.is_empty() {
            return Ok(());
        }
        let mut solid = Vec::new();
        let mut stale = Vec::new(); // dangling, or waiting for this object to go
        let mut waiting = false;
        for owner in &owners {
            match self.owner_state(item, owner).await? {
                OwnerState::Solid => solid.push(owner),
                OwnerState::Waiting => {
                    waiting = true;
                    stale.push(owner);
                }
                OwnerState::Dangling => stale.push(owner),
            }
        }
        if !solid.is_empty() {
            if stale.is_empty() {
                return Ok(());
            }
            // It stays for its other owners; an owner waiting on it must not wait forever.
            let keep: Vec<&OwnerReference> = owners.iter().filter(|o| !stale.contains(o)).collect();
            return self.patch_owners(item, &latest, &keep).await;
        }
        let policy = if waiting && self.graph().has_dependents(&item.uid) {
            // Its own dependents go first, so that the owner waiting on it waits for them too.
            PropagationPolicy::Foreground
        } else if has_finalizer(&latest.metadata, ORPHAN) {
            PropagationPolicy::Orphan
        } else if has_finalizer(&latest.metadata, FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::info!(object = %item, uid = %item.uid, ?policy, "garbage collector deleting");
        self.delete(item, policy).await
    }

    /// An owner deleted in the foreground: its `foregroundDeletion` finalizer goes once no
    /// dependent blocks it; until then its blocking dependents are deleted.
    async fn finish_foreground(&self, item: &Identity, latest: &DynamicObject) -> Result<(), Error> {
        let blocking = self.graph().blocking_dependents(&item.uid);
        if blocking.is_empty() {
            return self.remove_finalizer(item, latest, FOREGROUND).await;
        }
        for dependent in blocking.into_iter().filter(|d| !d.deleting_dependents) {
            self.to_delete.add(dependent.identity);
        }
        Ok(())
    }

    /// An owner deleted with `orphan`: its dependents stop naming it, then the finalizer goes
    /// (upstream's `attemptToOrphanWorker`).
    async fn attempt_to_orphan(&self, item: &Identity) -> Result<(), Error> {
        let Some(latest) = self.latest(item).await? else {
            return Ok(());
        };
        if latest.metadata.deletion_timestamp.is_none() || !has_finalizer(&latest.metadata, ORPHAN) {
            return Ok(());
        }
        let dependents = self.graph().dependents(&item.uid);
        for dependent in dependents {
            let Some(current) = self.latest(&dependent.identity).await? else {
                continue;
            };
            let keep: Vec<&OwnerReference> = current
                .owner_references()
                .iter()
                .filter(|o| o.uid != item.uid)
                .collect();
            if keep.len() != current.owner_references().len() {
                self.patch_owners(&dependent.identity, &current, &keep).await?;
            }
        }
        self.remove_finalizer(item, &latest, ORPHAN).await
    }

    /// Finds out, from the apiserver, what became of `owner`.
    async fn owner_state(&self, item: &Identity, owner: &OwnerReference) -> Result<OwnerState, Error> {
        let (api, namespaced) = self.api(item, &owner.api_version, &owner.kind)?;
        if namespaced && item.namespace.is_none() {
            // A cluster-scoped object cannot be owned by a namespaced one: the owner is
            // treated as absent, as upstream does.
            let message = format!(
                "ownerRef [{}/{}, namespace: , name: {}, uid: {}] does not exist in namespace \"\"",
                owner.api_version, owner.kind, owner.name, owner.uid
            );
            self.recorder
                .record_ref(item.object_ref(), true, "OwnerRefInvalidNamespace", &message);
            return Ok(OwnerState::Dangling);
        }
        let found = api.get_opt(&owner.name).await.map_err(|source| Error::Api {
            what: "reading the owner of",
            object: item.to_string(),
            source,
        })?;
        Ok(match found {
            Some(obj) if obj.uid().as_deref() == Some(owner.uid.as_str()) => {
                let waiting = obj.metadata.deletion_timestamp.is_some() && has_finalizer(&obj.metadata, FOREGROUND);
                if waiting {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                }
            }
            _ => OwnerState::Dangling,
        })
    }

    async fn delete(&self, item: &Identity, policy: PropagationPolicy) -> Result<(), Error> {
        let (api, _) = self.api(item, &item.api_version, &item.kind)?;
        let params = DeleteParams {
            propagation_policy: Some(policy),
            ..DeleteParams::default()
        }
        .preconditions(Preconditions {
            uid: Some(item.uid.clone()),
            resource_version: None,
        });
        match api.delete(&item.name, &params).await {
            Ok(_) => Ok(()),
            // Gone already, or replaced by another object of the same name.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(source) => Err(Error::Api {
                what: "deleting",
                object: item.to_string(),
                source,
            }),
        }
    }

    /// Sets `latest`'s owner references to `keep`, failing if it changed since it was read.
    async fn patch_owners(
        &self,
        item: &Identity,
        latest: &DynamicObject,
        keep: &[&OwnerReference],
    ) -> Result<(), Error> {
        let patch = json!({"metadata": {
            "resourceVersion": latest.resource_version(),
            "ownerReferences": keep,
        }});
        self.patch(item, patch, "removing owner references from").await
    }

    async fn remove_finalizer(&self, item: &Identity, latest: &DynamicObject, finalizer: &str) -> Result<(), Error> {
        let keep: Vec<&String> = latest.finalizers().iter().filter(|f| *f != finalizer).collect();
        let patch = json!({"metadata": {
            "resourceVersion": latest.resource_version(),
            "finalizers": keep,
        }});
        self.patch(item, patch, "removing a finalizer from").await
    }

    async fn patch(&self, item: &Identity, patch: serde_json::Value, what: &'static str) -> Result<(), Error> {
        let (api, _) = self.api(item, &item.api_version, &item.kind)?;
        match api
            .patch(&item.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(Error::Api {
                what,
                object: item.to_string(),
                source,
            }),
        }
    }
}

fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}
