//! What the controllers that own pods (or other objects) share, after upstream's
//! `pkg/controller/controller_utils.go` and `controller_ref_manager.go`: controller expectations,
//! the active/ready/available predicates, pods made from a template with a controller reference,
//! adopting and releasing by selector, and slow-start batches.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::api::selector::LabelSelector;
use crate::informer::{Change, ObjectKey};

/// How long an expectation may stay unmet before a sync proceeds anyway: a watch event that was
/// lost for good must not stall its controller forever (upstream's `ExpectationsTimeout`).
const EXPECTATIONS_TTL: Duration = Duration::from_secs(5 * 60);

/// The first batch of a slow start (upstream's `SlowStartInitialBatchSize`).
pub(crate) const SLOW_START_INITIAL_BATCH: usize = 1;

/// Controller expectations (upstream's `UIDTrackingControllerExpectations`): how many creations
/// and which deletions a controller made that its informer has not shown it yet. A controller
/// syncs a key only once its expectations are met, so it never acts twice on a stale cache.
/// Deletions are tracked by pod key, so a pod seen first with a deletion timestamp and then
/// gone counts once.
#[derive(Default)]
pub(crate) struct Expectations {
    by_owner: Mutex<HashMap<ObjectKey, Expected>>,
}

struct Expected {
    adds: i64,
    deletes: HashSet<ObjectKey>,
    set_at: Instant,
}

impl Expectations {
    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectKey, Expected>> {
        // Counters only: a panicking holder leaves nothing half-written that matters.
        self.by_owner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `owner` may act: nothing expected, everything seen, or the wait expired.
    pub(crate) fn satisfied(&self, owner: &ObjectKey) -> bool {
        self.lock()
            .get(owner)
            .is_none_or(|e| (e.adds <= 0 && e.deletes.is_empty()) || e.set_at.elapsed() > EXPECTATIONS_TTL)
    }

    /// Records that `owner` is about to create `count` objects.
    pub(crate) fn expect_creations(&self, owner: &ObjectKey, count: usize) {
        self.expect(owner, count, []);
    }

    /// Records that `owner` is about to delete `pods`.
    pub(crate) fn expect_deletions(&self, owner: &ObjectKey, pods: impl IntoIterator<Item = ObjectKey>) {
        self.expect(owner, 0, pods);
    }

    /// Records that `owner` is about to create `creations` objects and delete `deletions`,
    /// replacing what it expected before.
    pub(crate) fn expect(&self, owner: &ObjectKey, creations: usize, deletions: impl IntoIterator<Item = ObjectKey>) {
        let expected = Expected {
            adds: i64::try_from(creations).unwrap_or(i64::MAX),
            deletes: deletions.into_iter().collect(),
            set_at: Instant::now(),
        };
        self.lock().insert(owner.clone(), expected);
    }

    /// Counts what `change` to one of `owner`'s pods shows, as upstream's pod handlers do: a
    /// creation, or a deletion (the pod gone, or seen with a deletion timestamp).
    pub(crate) fn observe(&self, owner: &ObjectKey, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) if pod.metadata.deletion_timestamp.is_none() => self.creation_observed(owner),
            Change::Added(pod) | Change::Deleted(pod) => self.deletion_observed(owner, &ObjectKey::of(&***pod)),
            Change::Updated { new, .. } if new.metadata.deletion_timestamp.is_some() => {
                self.deletion_observed(owner, &ObjectKey::of(&***new));
            }
            Change::Updated { .. } => {}
        }
    }

    /// One creation of `owner`'s was seen, or will never be (it failed or was skipped).
    pub(crate) fn creation_observed(&self, owner: &ObjectKey) {
        if let Some(e) = self.lock().get_mut(owner) {
            e.adds -= 1;
        }
    }

    /// `pod`, one of `owner`'s deletions, was seen going (or its deletion failed).
    pub(crate) fn deletion_observed(&self, owner: &ObjectKey, pod: &ObjectKey) {
        if let Some(e) = self.lock().get_mut(owner) {
            e.deletes.remove(pod);
        }
    }

    /// Drops `owner`'s record: it is gone.
    pub(crate) fn forget(&self, owner: &ObjectKey) {
        self.lock().remove(owner);
    }
}

/// The pod's `status.phase`; empty when it has none yet.
pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

/// Whether the pod has Succeeded or Failed: it runs nothing any more (upstream's `IsPodTerminal`).
pub(crate) fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether `pod` still counts toward its owner: not finished, not being deleted
/// (upstream's `IsPodActive`).
pub(crate) fn is_active(pod: &Pod) -> bool {
    !is_finished(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Whether the pod is being deleted and has not finished: it still holds resources.
pub(crate) fn is_terminating(pod: &Pod) -> bool {
    !is_finished(pod) && pod.metadata.deletion_timestamp.is_some()
}

/// Since when the pod has been Ready, if it is.
pub(crate) fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    // A Ready condition without a transition time is ready since an unknown time: long enough.
    Some(
        ready
            .last_transition_time
            .as_ref()
            .map_or(jiff::Timestamp::MIN, |t| t.0),
    )
}

/// Whether the pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod has been Ready for at least `min_ready_seconds` at `now`.
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    ready_since(pod).is_some_and(|since| {
        min_ready_seconds <= 0
            || since
                .checked_add(jiff::SignedDuration::from_secs(min_ready_seconds.into()))
                .is_ok_and(|t| t <= now)
    })
}

/// When a pod Ready since `since` becomes available, if that is still ahead of `now`.
pub(crate) fn available_in(since: jiff::Timestamp, min_ready_seconds: i32, now: jiff::Timestamp) -> Option<Duration> {
    let at = since
        .checked_add(jiff::SignedDuration::from_secs(min_ready_seconds.into()))
        .ok()?;
    Duration::try_from(now.duration_until(at)).ok().filter(|d| !d.is_zero())
}

/// The reference a controller puts on what it makes: `controller` and `blockOwnerDeletion`, as
/// upstream's `NewControllerRef`. `None` for an object the apiserver has not named yet.
pub(crate) fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    Some(OwnerReference {
        block_owner_deletion: Some(true),
        ..owner.controller_owner_ref(&())?
    })
}

/// The owner reference marked `controller: true`, if any.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The key of the `K` that controls `pod` by its controller owner reference, if one does.
pub(crate) fn controlled_by<K: Resource<DynamicType = ()>>(pod: &Pod) -> Option<ObjectKey> {
    let owner = controller_of(&pod.metadata)?;
    (owner.kind == K::kind(&()) && owner.api_version == K::api_version(&()))
        .then(|| ObjectKey::new(pod.metadata.namespace.as_deref().unwrap_or_default(), &owner.name))
}

/// A pod from `template`, controlled by `owner`, named `<prefix><random>` by the apiserver
/// (upstream's `GetPodFromTemplate`).
pub(crate) fn pod_from_template(template: &PodTemplateSpec, owner: OwnerReference, prefix: &str) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix.to_owned()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Who claims objects, for [`claim`]: the owner's controller reference, whether it is being
/// deleted, and its selector.
pub(crate) struct Claimant<'a> {
    pub(crate) owner: OwnerReference,
    pub(crate) deleting: bool,
    pub(crate) selector: &'a LabelSelector,
}

/// Why claiming failed; the sync is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClaimError {
    #[error("re-reading the owner before adopting: {0}")]
    Recheck(#[source] kube::Error),
    #[error("not adopting: {0}")]
    OwnerChanged(String),
    #[error("patching the owner references of {name}: {source}")]
    Patch {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The objects `claimant` controls among `candidates` (all of its namespace), after adopting
/// orphans its selector matches and releasing owned objects it no longer matches (upstream's
/// `ClaimPods`/`ClaimReplicaSets`). `can_adopt` is asked once, before the first adoption, to
/// re-check against the apiserver that the owner is still there and not being deleted.
pub(crate) async fn claim<K, F, Fut>(
    api: &Api<K>,
    claimant: &Claimant<'_>,
    candidates: Vec<Arc<K>>,
    can_adopt: F,
) -> Result<Vec<Arc<K>>, ClaimError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), ClaimError>>,
{
    let mut owned = Vec::new();
    let mut can_adopt = Some(can_adopt);
    for obj in candidates {
        let matches = claimant.selector.matches(obj.meta().labels.as_ref());
        let name = obj.name_any();
        let patch = |patch| async move {
            match api.patch(&name, &PatchParams::default(), &patch).await {
                Ok(patched) => Ok(Some(patched)),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
                Err(source) => Err(ClaimError::Patch {
                    name: name.clone(),
                    source,
                }),
            }
        };
        match controller_of(obj.meta()) {
            Some(r) if r.uid != claimant.owner.uid => {}
            Some(_) if matches => owned.push(obj),
            // Ours no longer: let go, unless we are going anyway (the garbage collector decides).
            Some(_) if claimant.deleting => {}
            Some(_) => {
                patch(release(&*obj, &claimant.owner.uid)).await?;
            }
            None if !matches || claimant.deleting || obj.meta().deletion_timestamp.is_some() => {}
            None => {
                if let Some(check) = can_adopt.take() {
                    check().await?;
                }
                if let Some(adopted) = patch(adopt(&*obj, claimant.owner.clone())).await? {
                    owned.push(Arc::new(adopted));
                }
            }
        }
    }
    Ok(owned)
}

/// Checks that `owner` as cached is still what the apiserver holds and is not being deleted,
/// for [`claim`]'s `can_adopt` (upstream's `RecheckDeletionTimestamp`).
pub(crate) async fn recheck_owner<K>(api: &Api<K>, owner: &K) -> Result<(), ClaimError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let fresh = api.get(&owner.name_any()).await.map_err(ClaimError::Recheck)?;
    if fresh.meta().uid != owner.meta().uid {
        return Err(ClaimError::OwnerChanged(format!("{} was replaced", owner.name_any())));
    }
    if fresh.meta().deletion_timestamp.is_some() {
        return Err(ClaimError::OwnerChanged(format!(
            "{} is being deleted",
            owner.name_any()
        )));
    }
    Ok(())
}

/// A JSON merge patch turning status `old` into `new` (fields `new` lacks become `null`), or
/// `None` when they are the same.
pub(crate) fn status_patch(old: &serde_json::Value, new: &serde_json::Value) -> Option<serde_json::Value> {
    if old == new {
        return None;
    }
    let mut patch = new.clone();
    if let (Some(old), Some(patch)) = (old.as_object(), patch.as_object_mut()) {
        for key in old.keys() {
            patch.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    Some(json!({ "status": patch }))
}

/// A JSON patch adding `owner` as controller, valid only on the version the cache showed: a
/// concurrent change makes it fail, to be retried from a fresh cache.
fn adopt<K: Resource>(obj: &K, owner: OwnerReference) -> Patch<serde_json::Value> {
    let mut refs = obj.meta().owner_references.clone().unwrap_or_default();
    refs.push(owner);
    unchanged_then(
        obj,
        json!({"op": "add", "path": "/metadata/ownerReferences", "value": refs}),
    )
}

/// A JSON patch dropping `owner_uid`'s reference, on the cached version only.
fn release<K: Resource>(obj: &K, owner_uid: &str) -> Patch<serde_json::Value> {
    let refs: Vec<_> = obj
        .meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect();
    unchanged_then(
        obj,
        json!({"op": "add", "path": "/metadata/ownerReferences", "value": refs}),
    )
}

fn unchanged_then<K: Resource>(obj: &K, op: serde_json::Value) -> Patch<serde_json::Value> {
    let meta = obj.meta();
    let patch = json!([
        {"op": "test", "path": "/metadata/uid", "value": meta.uid},
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version},
        op,
    ]);
    Patch::Json(serde_json::from_value(patch).unwrap_or_default())
}

/// Runs `count` calls of `call` in batches of 1, 2, 4, ... (starting at `initial`), stopping
/// after the first batch with a failure, so that a broken template costs one call, not
/// hundreds (upstream's `slowStartBatch`). Returns how many succeeded and the first error.
pub(crate) async fn slow_start_batch<F, Fut, E>(count: usize, initial: usize, call: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut done = 0;
    let mut batch = initial.max(1).min(count);
    while batch > 0 {
        let results = futures::future::join_all((0..batch).map(|_| call())).await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        done += batch - failed;
        if let Some(err) = results.into_iter().find_map(Result::err) {
            return (done, Some(err));
        }
        batch = (2 * batch).min(count - done);
    }
    (done, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn expectations_hold_a_sync_until_every_creation_and_deletion_is_seen() {
        let e = Expectations::default();
        let rs = ObjectKey::new("ns", "rs");
        assert!(e.satisfied(&rs), "a controller with no record may act");
        e.expect_creations(&rs, 2);
        e.creation_observed(&rs);
        assert!(!e.satisfied(&rs));
        e.creation_observed(&rs);
        assert!(e.satisfied(&rs));

        let a = ObjectKey::new("ns", "a");
        e.expect_deletions(&rs, [a.clone(), ObjectKey::new("ns", "b")]);
        e.deletion_observed(&rs, &a);
        // Seen twice (deletion timestamp, then gone): still one deletion.
        e.deletion_observed(&rs, &a);
        assert!(!e.satisfied(&rs));
        e.deletion_observed(&rs, &ObjectKey::new("ns", "b"));
        assert!(e.satisfied(&rs));
    }

    #[test]
    fn expectations_observe_a_pod_seen_terminating_then_gone_as_one_deletion() {
        let e = Expectations::default();
        let owner = ObjectKey::new("ns", "job");
        let created = Arc::new(pod(json!({"metadata": {"name": "a", "namespace": "ns"}})));
        let deleting = Arc::new(pod(json!({"metadata": {"name": "b", "namespace": "ns",
            "deletionTimestamp": "2030-01-01T00:00:00Z"}})));
        e.expect(&owner, 1, [ObjectKey::of(&*deleting), ObjectKey::new("ns", "c")]);
        e.observe(&owner, &Change::Added(&created));
        e.observe(
            &owner,
            &Change::Updated {
                old: &created,
                new: &deleting,
            },
        );
        e.observe(&owner, &Change::Deleted(&deleting));
        assert!(!e.satisfied(&owner), "c has not been seen going");
        let c = Arc::new(pod(json!({"metadata": {"name": "c", "namespace": "ns"}})));
        e.observe(&owner, &Change::Updated { old: &c, new: &c });
        assert!(
            !e.satisfied(&owner),
            "an update without a deletion timestamp is no deletion"
        );
        e.observe(&owner, &Change::Deleted(&c));
        assert!(e.satisfied(&owner));
    }

    #[test]
    fn availability_waits_min_ready_seconds_after_ready() {
        let now = jiff::Timestamp::now();
        let since = now - jiff::SignedDuration::from_secs(5);
        let p = pod(json!({"metadata": {"name": "p"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": since.to_string()}]}}));
        assert!(is_ready(&p) && is_active(&p));
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 5, now));
        assert!(!is_available(&p, 10, now));
        let left = available_in(ready_since(&p).unwrap(), 10, now).unwrap();
        assert!(
            left > Duration::from_secs(4) && left <= Duration::from_secs(5),
            "{left:?}"
        );
        let done = pod(json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}}));
        assert!(!is_active(&done) && !is_ready(&done));
    }

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_after_a_failing_one() {
        let calls = AtomicUsize::new(0);
        let (done, err) = slow_start_batch(10, 1, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<(), ()>(())
        })
        .await;
        assert_eq!((done, err, calls.load(Ordering::SeqCst)), (10, None, 10));

        let calls = AtomicUsize::new(0);
        let (done, err) = slow_start_batch(100, 1, || async {
            // The fourth call fails: batches of 1 and 2 pass, the batch of 4 has a failure.
            if calls.fetch_add(1, Ordering::SeqCst) == 3 {
                Err("quota")
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!((done, err, calls.load(Ordering::SeqCst)), (6, Some("quota"), 7));
    }

    #[test]
    fn pods_from_a_template_carry_its_metadata_and_the_controller_reference() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
        .unwrap();
        let owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web".into(),
            uid: "u1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let p = pod_from_template(&template, owner, "web-");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(controller_of(&p.metadata).unwrap().uid, "u1");
        assert_eq!(p.spec.unwrap().containers[0].image.as_deref(), Some("nginx"));
    }
}
