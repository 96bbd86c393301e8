//! The pod lifecycle event generator, after upstream's `pkg/kubelet/pleg/generic.go`: one task
//! lists the runtime's sandboxes and containers every second and keeps the result, by pod, as
//! the cache the pod workers read. Without it every worker listed the whole runtime on every
//! sync; with it an idle node costs one pair of list calls a second, however many pods it runs.
//!
//! A pod whose sandboxes or containers differ between two relists is announced, so its worker
//! syncs at once: a container that exits is restarted within a second, not at the next resync.
//! A worker that has just changed its pod asks for state newer than the change; relists are
//! shared, so fifty such requests at once cost one list.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::kuberuntime::Observed;
use super::runtime::{self, Runtime};

/// Upstream's relist period.
pub(crate) const RELIST_PERIOD: Duration = Duration::from_secs(1);

/// The outcome of one relist.
pub(crate) struct Relist {
    /// When its list calls began: every runtime change made before this instant is in `pods`.
    at: Instant,
    /// Every pod's sandboxes and containers, by pod uid.
    pub(crate) pods: Result<HashMap<String, Observed>, runtime::Error>,
}

pub(crate) struct Pleg {
    runtime: Arc<dyn Runtime>,
    latest: watch::Sender<Arc<Relist>>,
    /// Wakes the relist loop before its period ends.
    wanted: Notify,
}

impl Pleg {
    /// A PLEG over `runtime`; nothing is listed until [`Pleg::run`] runs.
    pub(crate) fn new(runtime: Arc<dyn Runtime>) -> Arc<Self> {
        let none_yet = Relist {
            at: Instant::now(),
            pods: Err(runtime::Error::Unavailable("the runtime was not listed yet".into())),
        };
        Arc::new(Self {
            runtime,
            latest: watch::channel(Arc::new(none_yet)).0,
            wanted: Notify::new(),
        })
    }

    /// The newest relist, however old (at most a period, while the runtime answers).
    pub(crate) fn latest(&self) -> Arc<Relist> {
        self.latest.borrow().clone()
    }

    /// Pod `uid` as a relist that began at or after `newer_than` saw it, asking for one at once
    /// when the newest is older.
    pub(crate) async fn observed(&self, uid: &str, newer_than: Instant) -> Result<Observed, runtime::Error> {
        let mut updates = self.latest.subscribe();
        loop {
            let relist = updates.borrow_and_update().clone();
            if relist.at >= newer_than {
                return match &relist.pods {
                    Ok(pods) => Ok(pods.get(uid).cloned().unwrap_or_default()),
                    Err(err) => Err(err.clone()),
                };
            }
            self.wanted.notify_one();
            if updates.changed().await.is_err() {
                return Err(runtime::Error::Unavailable("the kubelet is stopping".into()));
            }
        }
    }

    /// Relists every [`RELIST_PERIOD`], or sooner when a worker asks, until `shutdown`; sends the
    /// uid of every pod that changed to `changed`.
    pub(crate) async fn run(self: Arc<Self>, changed: mpsc::Sender<String>, shutdown: CancellationToken) {
        let mut previous: HashMap<String, Observed> = HashMap::new();
        loop {
            let at = Instant::now();
            let pods = self.list().await;
            let mut announce = Vec::new();
            if let Ok(pods) = &pods {
                announce.extend(
                    pods.iter()
                        .filter(|(uid, o)| previous.get(*uid) != Some(o))
                        .map(|(uid, _)| uid),
                );
                announce.extend(previous.keys().filter(|uid| !pods.contains_key(*uid)));
            }
            let announce: Vec<String> = announce.into_iter().cloned().collect();
            if let Ok(pods) = &pods {
                previous = pods.clone();
            }
            // Publish before announcing: a woken worker must find the state it was woken for.
            self.latest.send_replace(Arc::new(Relist { at, pods }));
            for uid in announce {
                // A full queue only delays that pod to its next resync.
                let _ = changed.try_send(uid);
            }
            tokio::select! {
                _ = tokio::time::sleep(RELIST_PERIOD) => {}
                _ = self.wanted.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn list(&self) -> Result<HashMap<String, Observed>, runtime::Error> {
        let (sandboxes, containers) =
            futures::future::try_join(self.runtime.list_pod_sandboxes(), self.runtime.list_containers()).await?;
        let mut pods: HashMap<String, Observed> = HashMap::new();
        for s in sandboxes {
            pods.entry(s.pod.uid.clone()).or_default().sandboxes.push(s);
        }
        for c in containers {
            pods.entry(c.pod.uid.clone()).or_default().containers.push(c);
        }
        Ok(pods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::kuberuntime::{PodMemory, SyncContext, sync_pod};
    use crate::kubelet::runtime::fake::Fake;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(uid: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": uid},
            "spec": {"containers": [{"name": "app", "image": "app"}]}
        }))
        .unwrap()
    }

    /// The next uid the PLEG announces; fails when none comes within a few relist periods.
    async fn announced(changed: &mut mpsc::Receiver<String>) -> String {
        let next = tokio::time::timeout(RELIST_PERIOD * 3, changed.recv()).await;
        next.expect("an announcement").expect("the PLEG is running")
    }

    // The paused clock moves only when every task waits on a timer (or the test advances it), so
    // whether a reader waited for the periodic relist does not depend on the machine's load.
    #[tokio::test(start_paused = true)]
    async fn readers_get_state_newer_than_they_ask_for_and_changes_are_announced() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::with_images(&["pause", "app"]));
        let pleg = Pleg::new(fake.clone());
        let (tx, mut changed) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(pleg.clone().run(tx, shutdown.clone()));

        // A stopped clock would let the placeholder of `new`, and below the relist before the
        // change, count as newer: step it, as real time passes between them.
        let step = || tokio::time::advance(Duration::from_millis(1));
        step().await;
        let before = pleg.observed("u1", Instant::now()).await.unwrap();
        assert_eq!(before, Observed::default(), "nothing runs yet");
        let ctx = SyncContext::for_test(dir.path());
        let synced = sync_pod(fake.as_ref(), &ctx, &pod("u1"), before, &mut PodMemory::default())
            .await
            .unwrap();
        assert!(synced.changed);
        step().await;

        // Asking for state newer than the change relists at once: no timer, the periodic
        // relist's included, had to fire, so the clock did not move.
        let asked = Instant::now();
        let after = tokio::time::timeout(RELIST_PERIOD * 3, pleg.observed("u1", asked))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(asked.elapsed(), Duration::ZERO, "waited for the periodic relist");
        assert_eq!((after.sandboxes.len(), after.containers.len()), (1, 1));
        assert_eq!(announced(&mut changed).await, "u1");

        // A reader content with the latest state costs no list call.
        let lists = || fake.calls().iter().filter(|c| c.starts_with("list_containers")).count();
        let lists_before = lists();
        assert_eq!(pleg.observed("u1", asked).await.unwrap(), after);
        assert_eq!(lists(), lists_before);

        // A container that exits is announced by the periodic relist alone.
        fake.exit_container(&after.containers[0].id, 1);
        assert_eq!(announced(&mut changed).await, "u1");
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_runtime_fails_the_readers_instead_of_blocking_them() {
        let fake = Arc::new(Fake::with_images(&[]));
        fake.fail("list_containers", "the daemon went away");
        let pleg = Pleg::new(fake.clone());
        let (tx, _changed) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(pleg.clone().run(tx, shutdown.clone()));
        let err = pleg.observed("u1", Instant::now()).await.unwrap_err();
        assert!(err.to_string().contains("the daemon went away"), "{err}");
        shutdown.cancel();
        task.await.unwrap();
    }
}
