//! Taint-based eviction (upstream's `pkg/controller/tainteviction`): a pod on a node with
//! `NoExecute` taints is deleted at once when one of them is not tolerated, and otherwise when the
//! shortest `tolerationSeconds` among the tolerations in use runs out. Tolerations without
//! `tolerationSeconds` keep the pod for good.
//!
//! As upstream, the clock of a pod's eviction starts when this controller first sees it under
//! the taints; it is forgotten when the taints go or the pod does. Pods are keys on a work queue:
//! a pod is synced when it changes, when its node's `NoExecute` taints change, and when its time
//! is up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use tokio::time::Instant;

use super::super::Context;
use crate::api::scheduling::tolerates;
use crate::events::Recorder;
use crate::informer::{Change, Informer, ObjectKey};
use crate::workqueue::{WorkQueue, run_workers};

#[derive(Debug, thiserror::Error)]
#[error("evicting pod {pod} failed: {}", crate::error_chain(.source))]
struct Error {
    pod: ObjectKey,
    source: kube::Error,
}

/// What to do with a pod under `NoExecute` taints.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Every taint is tolerated for good (or there is none).
    Stay,
    /// A taint is not tolerated, or tolerated for zero seconds.
    EvictNow,
    /// Evict once this long has passed since the pod came under the taints.
    EvictAfter(Duration),
}

struct Evictor {
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
    client: kube::Client,
    recorder: Recorder,
    /// When each pod waiting for its eviction came under its node's taints.
    since: Mutex<HashMap<ObjectKey, Instant>>,
}

pub(super) async fn run(ctx: Arc<Context>) {
    let evictor = Arc::new(Evictor {
        nodes: ctx.informers.get::<Node>(),
        pods: ctx.informers.get::<Pod>(),
        client: ctx.client.clone(),
        recorder: ctx.recorder("taint-eviction-controller"),
        since: Mutex::default(),
    });
    let queue: Arc<WorkQueue<ObjectKey>> = WorkQueue::new(ctx.shutdown.clone());
    evictor.pods.add_handler({
        let queue = queue.clone();
        move |change| {
            let pod = change.object();
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some() {
                queue.add(ObjectKey::of(&**pod));
            }
        }
    });
    evictor.nodes.add_handler({
        let (queue, pods) = (queue.clone(), evictor.pods.clone());
        move |change| {
            let changed = match change {
                Change::Added(node) => !no_execute(node).is_empty(),
                Change::Updated { old, new } => no_execute(old) != no_execute(new),
                Change::Deleted(_) => false,
            };
            let name = change.object().metadata.name.as_deref();
            if changed {
                for pod in pods.list() {
                    if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == name {
                        queue.add(ObjectKey::of(&*pod));
                    }
                }
            }
        }
    });
    evictor.nodes.wait_synced().await;
    evictor.pods.wait_synced().await;
    run_workers(queue, 2, "taint-eviction", move |key: ObjectKey| {
        let evictor = evictor.clone();
        async move { evictor.sync(key).await }
    })
    .await;
}

impl Evictor {
    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let verdict = match self.pods.get(&key.namespace, &key.name) {
            Some(pod) if pod.metadata.deletion_timestamp.is_none() => {
                let node = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .and_then(|n| self.nodes.get("", n));
                let tolerations = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.tolerations.as_deref())
                    .unwrap_or_default();
                node.map_or(Verdict::Stay, |n| verdict(&no_execute(&n), tolerations))
            }
            _ => Verdict::Stay,
        };
        let wait = match verdict {
            Verdict::Stay => {
                self.lock().remove(&key);
                return Ok(None);
            }
            Verdict::EvictNow => Duration::ZERO,
            Verdict::EvictAfter(wait) => wait,
        };
        let since = *self.lock().entry(key.clone()).or_insert_with(Instant::now);
        let left = wait.saturating_sub(since.elapsed());
        if !left.is_zero() {
            return Ok(Some(left));
        }
        self.evict(&key).await?;
        self.lock().remove(&key);
        Ok(None)
    }

    /// Marks the pod with upstream's `DisruptionTarget` condition and deletes it gracefully.
    async fn evict(&self, key: &ObjectKey) -> Result<(), Error> {
        let Some(pod) = self.pods.get(&key.namespace, &key.name) else {
            return Ok(());
        };
        let fail = |source| Error {
            pod: key.clone(),
            source,
        };
        self.recorder.record(
            &*pod,
            false,
            "TaintManagerEviction",
            &format!("Marking for deletion Pod {key}"),
        );
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut marked = (*pod).clone();
        let conditions = marked
            .status
            .get_or_insert_with(Default::default)
            .conditions
            .get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(Time(jiff::Timestamp::now())),
            ..Default::default()
        });
        let gone = |err: &kube::Error| matches!(err, kube::Error::Api(s) if s.code == 404);
        match api.replace_status(&key.name, &PostParams::default(), &marked).await {
            Ok(_) => {}
            Err(err) if gone(&err) => return Ok(()),
            Err(err) => return Err(fail(err)),
        }
        match api.delete(&key.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(err) if gone(&err) => Ok(()),
            Err(err) => Err(fail(err)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Instant>> {
        self.since.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn no_execute(node: &Node) -> Vec<Taint> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    taints.iter().filter(|t| t.effect == "NoExecute").cloned().collect()
}

/// Upstream's `getMatchingTolerations` and `getMinTolerationTime`: each taint is held by the first
/// toleration that tolerates it; the pod may stay as long as the shortest finite one allows.
fn verdict(taints: &[Taint], tolerations: &[Toleration]) -> Verdict {
    let mut shortest: Option<i64> = None;
    for taint in taints {
        let Some(used) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Verdict::EvictNow;
        };
        if let Some(seconds) = used.toleration_seconds {
            shortest = Some(shortest.map_or(seconds, |s| s.min(seconds)));
        }
    }
    match shortest {
        None => Verdict::Stay,
        Some(s) if s <= 0 => Verdict::EvictNow,
        Some(s) => Verdict::EvictAfter(Duration::from_secs(s.unsigned_abs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            ..Default::default()
        }
    }

    #[test]
    fn the_shortest_toleration_in_use_decides() {
        let taints = [taint("a"), taint("b")];
        assert_eq!(verdict(&[], &[]), Verdict::Stay);
        assert_eq!(verdict(&taints, &[toleration("a", None)]), Verdict::EvictNow);
        assert_eq!(
            verdict(&taints, &[toleration("a", None), toleration("b", None)]),
            Verdict::Stay
        );
        assert_eq!(
            verdict(&taints, &[toleration("a", Some(30)), toleration("b", Some(10))]),
            Verdict::EvictAfter(Duration::from_secs(10))
        );
        assert_eq!(
            verdict(&taints, &[toleration("a", None), toleration("b", Some(0))]),
            Verdict::EvictNow
        );
    }
}
