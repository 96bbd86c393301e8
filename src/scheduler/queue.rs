//! The scheduling queue, after upstream's `pkg/scheduler/backend/queue`: pods waiting to be
//! scheduled. `activeQ` holds the pods to try next, highest priority first and then in arrival
//! order; `backoffQ` holds pods that failed, each until its back-off (1 s doubling to 10 s per
//! attempt) ends; the unschedulable pods wait for a cluster change that could help them (an
//! event one of the plugins that rejected them registered), or at most five minutes.
//!
//! A popped pod is *in flight* until its attempt ends: a pod deleted meanwhile is not queued
//! again, and one updated meanwhile is queued again as it is now. An event that arrives while a
//! pod is in flight sends it to `backoffQ` rather than to the unschedulable pods, so the event is
//! not missed.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::framework::Events;
use crate::backoff::Backoff;

/// How long failed pods wait: 1 s, doubling per attempt up to 10 s (upstream's
/// `podInitialBackoffSeconds` and `podMaxBackoffSeconds`).
pub(crate) const POD_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(10),
};

/// The longest a pod waits among the unschedulable pods before it is tried again anyway.
const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);
/// How often unschedulable pods are checked against [`MAX_UNSCHEDULABLE`].
const UNSCHEDULABLE_FLUSH_PERIOD: Duration = Duration::from_secs(30);

/// A pod handed to a scheduling attempt.
#[derive(Debug, Clone)]
pub(crate) struct QueuedPod {
    pub(crate) pod: Arc<Pod>,
    pub(crate) uid: String,
    /// Attempts so far, this one included.
    pub(crate) attempts: u32,
    /// The queue's attempt counter when this attempt began.
    cycle: u64,
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Failure {
    /// No node fits; the plugins that rejected nodes registered these events.
    Unschedulable(Events),
    /// Something else failed (an API error, a pod that cannot be read): retry after back-off.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
}

struct Entry {
    pod: Arc<Pod>,
    attempts: u32,
    place: Place,
    /// Orders `activeQ` (priority, then arrival).
    active_key: (Reverse<i32>, u64),
    backoff_until: Instant,
    rejected_by: Events,
    unschedulable_since: Instant,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    active: BTreeSet<((Reverse<i32>, u64), String)>,
    backoff: BTreeSet<(Instant, String)>,
    unschedulable: HashSet<String>,
    /// Pods being attempted, with their newest update seen meanwhile.
    in_flight: HashMap<String, Option<Arc<Pod>>>,
    seq: u64,
    cycle: u64,
    move_request_cycle: u64,
}

pub(crate) struct SchedulingQueue {
    inner: Mutex<Inner>,
    backoff: Backoff,
    active_ready: Notify,
    backoff_changed: Notify,
    shutdown: CancellationToken,
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Whether an update could change where the pod fits: its spec, labels or annotations changed,
/// not just its status (which the scheduler itself writes on failure).
fn scheduling_relevant(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

impl Inner {
    fn push_active(&mut self, uid: &str, entry: &mut Entry) {
        self.seq += 1;
        entry.place = Place::Active;
        entry.active_key = (Reverse(priority(&entry.pod)), self.seq);
        self.active.insert((entry.active_key, uid.to_owned()));
    }

    /// Takes `uid` out of whichever queue holds it.
    fn unlink(&mut self, uid: &str) -> Option<Entry> {
        let entry = self.entries.remove(uid)?;
        match entry.place {
            Place::Active => self.active.remove(&(entry.active_key, uid.to_owned())),
            Place::Backoff => self.backoff.remove(&(entry.backoff_until, uid.to_owned())),
            Place::Unschedulable => self.unschedulable.remove(uid),
        };
        Some(entry)
    }

    /// Queues `entry` in `activeQ`, or in `backoffQ` while its back-off lasts.
    fn requeue(&mut self, uid: String, mut entry: Entry, now: Instant) -> bool {
        let backing_off = entry.backoff_until > now;
        if backing_off {
            entry.place = Place::Backoff;
            self.backoff.insert((entry.backoff_until, uid.clone()));
        } else {
            self.push_active(&uid, &mut entry);
        }
        self.entries.insert(uid, entry);
        !backing_off
    }
}

impl SchedulingQueue {
    pub(crate) fn new(backoff: Backoff, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::default(),
            backoff,
            active_ready: Notify::new(),
            backoff_changed: Notify::new(),
            shutdown,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every method leaves the queues consistent before it can panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a new unscheduled pod, or takes an update of one already known.
    pub(crate) fn add(&self, pod: Arc<Pod>) {
        let uid = uid_of(&pod);
        let mut inner = self.lock();
        if let Some(newest) = inner.in_flight.get_mut(&uid) {
            *newest = Some(pod);
            return;
        }
        if let Some(entry) = inner.unlink(&uid) {
            let relevant = scheduling_relevant(&entry.pod, &pod);
            let mut entry = Entry { pod, ..entry };
            let became_active = match entry.place {
                Place::Active => {
                    inner.push_active(&uid, &mut entry);
                    inner.entries.insert(uid, entry);
                    false
                }
                Place::Unschedulable if relevant => inner.requeue(uid, entry, Instant::now()),
                Place::Backoff => inner.requeue(uid, entry, Instant::now()),
                Place::Unschedulable => {
                    inner.unschedulable.insert(uid.clone());
                    inner.entries.insert(uid, entry);
                    false
                }
            };
            drop(inner);
            if became_active {
                self.active_ready.notify_one();
            }
            return;
        }
        let now = Instant::now();
        let mut entry = Entry {
            pod,
            attempts: 0,
            place: Place::Active,
            active_key: (Reverse(0), 0),
            backoff_until: now,
            rejected_by: Events::NONE,
            unschedulable_since: now,
        };
        inner.push_active(&uid, &mut entry);
        inner.entries.insert(uid, entry);
        drop(inner);
        self.active_ready.notify_one();
    }

    /// Forgets a pod that was deleted or got a node.
    pub(crate) fn delete(&self, uid: &str) {
        let mut inner = self.lock();
        inner.unlink(uid);
        inner.in_flight.remove(uid);
    }

    /// The next pod to attempt, waiting for one; `None` once the queue shuts down.
    pub(crate) async fn pop(&self) -> Option<QueuedPod> {
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            let notified = self.active_ready.notified();
            {
                let mut inner = self.lock();
                if let Some((key, uid)) = inner.active.pop_first() {
                    let entry = inner.entries.remove(&uid);
                    debug_assert!(entry.as_ref().is_some_and(|e| e.active_key == key));
                    if let Some(entry) = entry {
                        inner.cycle += 1;
                        inner.in_flight.insert(uid.clone(), None);
                        return Some(QueuedPod {
                            pod: entry.pod,
                            uid,
                            attempts: entry.attempts + 1,
                            cycle: inner.cycle,
                        });
                    }
                    continue;
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }

    /// Ends an attempt that bound the pod.
    pub(crate) fn done(&self, uid: &str) {
        self.lock().in_flight.remove(uid);
    }

    /// Ends a failed attempt: the pod waits for its back-off, or for a cluster change. A pod
    /// deleted or assigned during the attempt is dropped.
    pub(crate) fn requeue_failed(&self, pod: QueuedPod, failure: Failure) {
        let mut inner = self.lock();
        let Some(newest) = inner.in_flight.remove(&pod.uid) else {
            return;
        };
        let now = Instant::now();
        let mut entry = Entry {
            pod: newest.unwrap_or(pod.pod),
            attempts: pod.attempts,
            place: Place::Backoff,
            active_key: (Reverse(0), 0),
            backoff_until: now + self.backoff.after(pod.attempts),
            rejected_by: Events::NONE,
            unschedulable_since: now,
        };
        match failure {
            Failure::Unschedulable(events) if inner.move_request_cycle < pod.cycle => {
                entry.place = Place::Unschedulable;
                entry.rejected_by = events;
                inner.unschedulable.insert(pod.uid.clone());
                inner.entries.insert(pod.uid, entry);
            }
            Failure::Unschedulable(_) | Failure::Error => {
                inner.backoff.insert((entry.backoff_until, pod.uid.clone()));
                inner.entries.insert(pod.uid, entry);
                drop(inner);
                self.backoff_changed.notify_one();
            }
        }
    }

    /// A cluster change happened: unschedulable pods that a plugin registered for it rejected
    /// are tried again (after their back-off).
    pub(crate) fn on_event(&self, event: Events) {
        let mut inner = self.lock();
        inner.move_request_cycle = inner.cycle;
        self.retry_unschedulable(inner, |e| e.rejected_by.is_empty() || e.rejected_by.intersects(event));
    }

    /// Moves the unschedulable pods `which` selects to `backoffQ` or `activeQ`.
    fn retry_unschedulable(&self, mut inner: MutexGuard<'_, Inner>, which: impl Fn(&Entry) -> bool) {
        let uids: Vec<String> = inner
            .unschedulable
            .iter()
            .filter(|uid| inner.entries.get(*uid).is_some_and(&which))
            .cloned()
            .collect();
        if uids.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut activated = false;
        for uid in uids {
            if let Some(entry) = inner.unlink(&uid) {
                activated |= inner.requeue(uid, entry, now);
            }
        }
        drop(inner);
        self.backoff_changed.notify_one();
        if activated {
            self.active_ready.notify_one();
        }
    }

    /// Moves pods whose back-off ended to `activeQ`, and pods unschedulable for too long back
    /// to retrying, until shutdown.
    pub(crate) async fn run_flushes(&self) {
        let mut next_unschedulable_flush = Instant::now() + UNSCHEDULABLE_FLUSH_PERIOD;
        loop {
            let changed = self.backoff_changed.notified();
            let now = Instant::now();
            let next_backoff = {
                let mut inner = self.lock();
                let mut activated = false;
                while let Some((until, uid)) = inner.backoff.first().cloned()
                    && until <= now
                {
                    inner.backoff.pop_first();
                    if let Some(mut entry) = inner.entries.remove(&uid) {
                        inner.push_active(&uid, &mut entry);
                        inner.entries.insert(uid, entry);
                        activated = true;
                    }
                }
                if activated {
                    self.active_ready.notify_one();
                }
                inner.backoff.first().map(|(until, _)| *until)
            };
            if now >= next_unschedulable_flush {
                next_unschedulable_flush = now + UNSCHEDULABLE_FLUSH_PERIOD;
                self.retry_unschedulable(self.lock(), |e| now - e.unschedulable_since >= MAX_UNSCHEDULABLE);
            }
            let wake = next_backoff.map_or(next_unschedulable_flush, |b| b.min(next_unschedulable_flush));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = changed => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Back-off short enough for tests on the real clock.
    const FAST: Backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };

    fn pod(name: &str, priority: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "uid": name},
                                           "spec": {"containers": [], "priority": priority}}))
            .unwrap(),
        )
    }

    fn queue() -> Arc<SchedulingQueue> {
        let queue = SchedulingQueue::new(FAST, CancellationToken::new());
        tokio::spawn({
            let queue = queue.clone();
            async move { queue.run_flushes().await }
        });
        queue
    }

    async fn pop(queue: &SchedulingQueue) -> QueuedPod {
        tokio::time::timeout(Duration::from_secs(10), queue.pop())
            .await
            .expect("a pod within 10s")
            .expect("not shut down")
    }

    fn place(queue: &SchedulingQueue, uid: &str) -> Option<Place> {
        queue.lock().entries.get(uid).map(|e| e.place)
    }

    #[test]
    fn backoff_doubles_from_one_to_ten_seconds() {
        assert_eq!(POD_BACKOFF.after(1), Duration::from_secs(1));
        assert_eq!(POD_BACKOFF.after(2), Duration::from_secs(2));
        assert_eq!(POD_BACKOFF.after(4), Duration::from_secs(8));
        assert_eq!(POD_BACKOFF.after(5), Duration::from_secs(10));
        assert_eq!(POD_BACKOFF.after(50), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn higher_priority_first_then_arrival_order() {
        let queue = queue();
        queue.add(pod("low", 0));
        queue.add(pod("high", 10));
        queue.add(pod("low-2", 0));
        let order = [pop(&queue).await.uid, pop(&queue).await.uid, pop(&queue).await.uid];
        assert_eq!(order, ["high", "low", "low-2"]);
    }

    #[tokio::test]
    async fn unschedulable_pods_wait_for_an_event_their_plugins_registered() {
        let queue = queue();
        queue.add(pod("p", 0));
        let attempt = pop(&queue).await;
        let failed = Instant::now();
        queue.requeue_failed(attempt, Failure::Unschedulable(Events::NODE_ADD));
        assert_eq!(place(&queue, "p"), Some(Place::Unschedulable));
        // An event no rejecting plugin registered leaves it waiting.
        queue.on_event(Events::NODE_TAINT);
        assert_eq!(place(&queue, "p"), Some(Place::Unschedulable));
        // A node appearing moves it to back-off, and then to activeQ.
        queue.on_event(Events::NODE_ADD);
        assert_ne!(place(&queue, "p"), Some(Place::Unschedulable));
        let again = pop(&queue).await;
        assert_eq!((again.uid.as_str(), again.attempts), ("p", 2));
        assert!(failed.elapsed() >= FAST.initial);
    }

    #[tokio::test]
    async fn errors_retry_after_backoff_and_events_during_an_attempt_are_not_lost() {
        let queue = queue();
        queue.add(pod("p", 0));
        let first = pop(&queue).await;
        let failed = Instant::now();
        queue.requeue_failed(first, Failure::Error);
        assert_eq!(place(&queue, "p"), Some(Place::Backoff));
        let second = pop(&queue).await;
        assert!(failed.elapsed() >= FAST.after(1));
        // A node is added while the second attempt runs: the pod goes to back-off, not to the
        // unschedulable pods, since that node may be the one it needs.
        queue.on_event(Events::NODE_ADD);
        let failed = Instant::now();
        queue.requeue_failed(second, Failure::Unschedulable(Events::NODE_ADD));
        assert_eq!(place(&queue, "p"), Some(Place::Backoff));
        let third = pop(&queue).await;
        assert_eq!(third.attempts, 3);
        assert!(failed.elapsed() >= FAST.after(2));
    }

    #[tokio::test]
    async fn pods_deleted_or_updated_during_an_attempt() {
        let queue = queue();
        queue.add(pod("gone", 0));
        let attempt = pop(&queue).await;
        queue.delete("gone");
        queue.requeue_failed(attempt, Failure::Error);
        assert!(queue.lock().entries.is_empty());

        queue.add(pod("changed", 0));
        let attempt = pop(&queue).await;
        queue.add(pod("changed", 5));
        queue.requeue_failed(attempt, Failure::Unschedulable(Events::NODE_ADD));
        assert_eq!(priority(&queue.lock().entries["changed"].pod), 5);
        // A status-only update does not wake an unschedulable pod; a spec change does.
        let mut status_only = (*pod("changed", 5)).clone();
        status_only.status = Some(Default::default());
        queue.add(Arc::new(status_only));
        assert_eq!(place(&queue, "changed"), Some(Place::Unschedulable));
        queue.add(pod("changed", 7));
        assert_ne!(place(&queue, "changed"), Some(Place::Unschedulable));
        assert_eq!(pop(&queue).await.uid, "changed");
    }
}
