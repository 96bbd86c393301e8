//! A work queue keyed by object, after client-go's `util/workqueue`: a key waiting in the queue
//! is there once however often it is added; a key being processed is never handed to a second
//! worker, and is queued again when its worker is done if it changed meanwhile. Failed keys come
//! back with per-key exponential back-off (upstream's 5 ms doubling to 1000 s).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// How long a failed key waits: 5 ms, doubling with each further failure up to 1000 s.
const BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(5),
    max: Duration::from_secs(1000),
};

pub(crate) struct WorkQueue<T> {
    inner: Mutex<Inner<T>>,
    ready: Notify,
    shutdown: CancellationToken,
}

struct Inner<T> {
    queue: VecDeque<T>,
    /// Keys that need processing: those in `queue`, and those processing that were added again.
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    /// An empty queue; [`WorkQueue::get`] returns `None` once `shutdown` is cancelled.
    pub(crate) fn new(shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            }),
            ready: Notify::new(),
            shutdown,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // The sets hold no invariant a panicking holder could break half-way.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` unless it is queued already.
    pub(crate) fn add(&self, item: T) {
        let mut inner = self.lock();
        if !inner.dirty.insert(item.clone()) || inner.processing.contains(&item) {
            return;
        }
        inner.queue.push_back(item);
        drop(inner);
        self.ready.notify_one();
    }

    /// Queues `item` after `delay`.
    pub(crate) fn add_after(self: &Arc<Self>, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => queue.add(item),
                _ = queue.shutdown.cancelled() => {}
            }
        });
    }

    /// Queues `item` again after its back-off, which doubles with each failure until
    /// [`WorkQueue::forget`].
    pub(crate) fn add_rate_limited(self: &Arc<Self>, item: T) {
        let failures = {
            let mut inner = self.lock();
            let failures = inner.failures.entry(item.clone()).or_insert(0);
            *failures += 1;
            *failures
        };
        self.add_after(item, BACKOFF.after(failures));
    }

    /// Clears `item`'s failure count: it was processed successfully.
    pub(crate) fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// The next key to process, waiting for one; `None` once the queue shuts down. The caller
    /// owns the key until [`WorkQueue::done`].
    pub(crate) async fn get(&self) -> Option<T> {
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            {
                let mut inner = self.lock();
                if let Some(item) = inner.queue.pop_front() {
                    inner.dirty.remove(&item);
                    inner.processing.insert(item.clone());
                    return Some(item);
                }
            }
            tokio::select! {
                _ = self.ready.notified() => {}
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }

    /// Ends the processing of `item`; if it was added meanwhile it is queued again.
    pub(crate) fn done(&self, item: &T) {
        let mut inner = self.lock();
        inner.processing.remove(item);
        if inner.dirty.contains(item) {
            inner.queue.push_back(item.clone());
            drop(inner);
            self.ready.notify_one();
        }
    }

    /// How many keys wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

/// Runs `workers` tasks taking keys from `queue` until it shuts down. `sync` returns when to
/// process the key again (`Some(delay)`) if it must come back without a change; an error queues
/// it again with back-off.
pub(crate) async fn run_workers<T, E, F, Fut>(queue: Arc<WorkQueue<T>>, workers: usize, what: &'static str, sync: F)
where
    T: Clone + Eq + Hash + Send + Sync + Display + 'static,
    E: Display,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Option<Duration>, E>> + Send,
{
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let queue = queue.clone();
            let sync = sync.clone();
            tokio::spawn(async move {
                while let Some(key) = queue.get().await {
                    match sync(key.clone()).await {
                        Ok(again) => {
                            queue.forget(&key);
                            if let Some(delay) = again {
                                queue.add_after(key.clone(), delay);
                            }
                        }
                        Err(err) => {
                            tracing::warn!(controller = what, %key, error = %err, "sync failed; retrying");
                            queue.add_rate_limited(key.clone());
                        }
                    }
                    queue.done(&key);
                }
            })
        })
        .collect();
    futures::future::join_all(tasks).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_queued_once_and_never_processed_twice_at_once() {
        let queue = WorkQueue::new(CancellationToken::new());
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.len(), 2);
        let a = queue.get().await.unwrap();
        assert_eq!(a, "a");
        // Added while processing: it waits for `done` instead of reaching a second worker.
        queue.add("a");
        assert_eq!(queue.get().await.unwrap(), "b");
        assert_eq!(queue.len(), 0);
        queue.done(&a);
        assert_eq!(queue.get().await.unwrap(), "a");
    }

    #[tokio::test]
    async fn failures_back_off_exponentially_until_forgotten() {
        assert_eq!(BACKOFF.after(1), Duration::from_millis(5));
        assert_eq!(BACKOFF.after(4), Duration::from_millis(40));
        assert_eq!(BACKOFF.after(40), Duration::from_secs(1000));
        let queue = WorkQueue::new(CancellationToken::new());
        queue.add_rate_limited("k");
        queue.add_rate_limited("k");
        assert_eq!(queue.lock().failures["k"], 2);
        let started = tokio::time::Instant::now();
        assert_eq!(queue.get().await.unwrap(), "k");
        assert!(started.elapsed() >= Duration::from_millis(5));
        queue.forget(&"k");
        assert!(queue.lock().failures.is_empty());
    }

    #[tokio::test]
    async fn shutdown_releases_waiting_workers() {
        let token = CancellationToken::new();
        let queue: Arc<WorkQueue<&str>> = WorkQueue::new(token.clone());
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.get().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        token.cancel();
        assert_eq!(waiting.await.unwrap(), None);
    }
}
