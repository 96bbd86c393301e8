//! The watch cache: a bounded history of recent changes and a broadcast of new ones, from which
//! every watch of a store is served. One source of changes (the embedded store's writer, or one
//! etcd watch per resource) fans out to any number of clients. Mirrors upstream's
//! `k8s.io/apiserver/pkg/storage/cacher` (its `watchCache` ring and `cacheWatcher`s).
//!
//! The publisher pushes each batch into the `History` and broadcasts it while it holds the lock
//! guarding that history; a watcher reads its backlog and subscribes under the same lock, so it
//! misses nothing and sees nothing twice.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::broadcast;

use super::{Error, Event, Revision, WatchStream};

/// How many batches a watcher may fall behind before it is ended with `Expired`.
const BROADCAST_CAPACITY: usize = 1024;

/// What the publisher sends to every watcher.
#[derive(Clone, Debug)]
pub(crate) enum Published {
    /// The changes of one commit (or one etcd watch response), in revision order.
    Events(Arc<[Event]>),
    /// The changes up to this revision are lost (etcd compacted them while the cache was cut
    /// off): a watcher that started before it may have missed some.
    Reset(Revision),
}

/// The sending side the publisher keeps; watchers `subscribe()` to it.
pub(crate) fn channel() -> broadcast::Sender<Published> {
    broadcast::channel(BROADCAST_CAPACITY).0
}

/// The recent changes a watch can resume from.
#[derive(Debug)]
pub(crate) struct History {
    events: VecDeque<Event>,
    limit: usize,
    /// A watch may start after any revision >= this one.
    oldest: Revision,
}

impl History {
    /// An empty history holding at most `limit` changes, from which watches may start after
    /// any revision from `oldest` on.
    pub(crate) fn new(limit: usize, oldest: Revision) -> Self {
        Self {
            events: VecDeque::new(),
            limit: limit.max(1),
            oldest,
        }
    }

    /// Appends a batch, forgetting the oldest changes beyond the limit.
    pub(crate) fn push(&mut self, events: &[Event]) {
        self.events.extend(events.iter().cloned());
        while self.events.len() > self.limit {
            if let Some(dropped) = self.events.pop_front() {
                self.oldest = dropped.revision();
            }
        }
    }

    /// Forgets every change: watches may start after `revision` or later only.
    pub(crate) fn reset(&mut self, revision: Revision) {
        self.events.clear();
        self.oldest = revision;
    }

    /// The held changes under `prefix` after `after`; `Expired` if some are no longer held.
    pub(crate) fn backlog(&self, prefix: &str, after: Revision) -> Result<Vec<Event>, Error> {
        if after < self.oldest {
            return Err(Error::Expired {
                requested: after,
                oldest: self.oldest,
            });
        }
        Ok(self
            .events
            .iter()
            .filter(|e| e.revision() > after && e.kv.key.starts_with(prefix))
            .cloned()
            .collect())
    }
}

/// A watch: `backlog`, then the changes under `prefix` after `after` that `live` brings. Ends
/// with `Expired` when the watcher falls too far behind (as upstream's cacher drops a slow
/// watcher, so its client re-lists) or when the history it needs was lost, and ends quietly
/// when the publisher goes away.
pub(crate) fn follow(
    backlog: Vec<Event>,
    live: broadcast::Receiver<Published>,
    prefix: &str,
    after: Revision,
) -> WatchStream {
    let prefix: Arc<str> = Arc::from(prefix);
    let live = futures::stream::unfold(Some(live), move |rx| {
        let prefix = prefix.clone();
        async move {
            let mut rx = rx?;
            let expired = |oldest| {
                let end = vec![Err(Error::Expired {
                    requested: after,
                    oldest,
                })];
                Some((futures::stream::iter(end), None))
            };
            loop {
                match rx.recv().await {
                    Ok(Published::Events(batch)) => {
                        let events: Vec<Result<Event, Error>> = batch
                            .iter()
                            .filter(|e| e.revision() > after && e.kv.key.starts_with(&*prefix))
                            .cloned()
                            .map(Ok)
                            .collect();
                        if !events.is_empty() {
                            return Some((futures::stream::iter(events), Some(rx)));
                        }
                    }
                    Ok(Published::Reset(oldest)) if after < oldest => return expired(oldest),
                    Ok(Published::Reset(_)) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return expired(after),
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    Box::pin(futures::stream::iter(backlog.into_iter().map(Ok)).chain(live.flatten()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::storage::{EventType, KeyValue};

    fn created(key: &str, revision: Revision) -> Event {
        Event {
            event_type: EventType::Created,
            kv: KeyValue {
                key: Arc::from(key),
                value: bytes::Bytes::from_static(b"{}"),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        }
    }

    fn revisions(events: &[Event]) -> Vec<Revision> {
        events.iter().map(Event::revision).collect()
    }

    #[test]
    fn history_forgets_beyond_its_limit_and_expires_older_starts() {
        let mut history = History::new(2, 0);
        history.push(&[created("/registry/a/x", 1), created("/registry/b/y", 2)]);
        history.push(&[created("/registry/a/z", 3)]);
        assert_eq!(revisions(&history.backlog("/registry/a/", 1).unwrap()), vec![3]);
        assert!(matches!(
            history.backlog("/registry/a/", 0),
            Err(Error::Expired { oldest: 1, .. })
        ));
    }

    #[tokio::test]
    async fn a_reset_ends_only_the_watchers_that_started_before_it() {
        let sender = channel();
        let mut early = follow(Vec::new(), sender.subscribe(), "/registry/a/", 3);
        let mut late = follow(Vec::new(), sender.subscribe(), "/registry/a/", 9);
        sender.send(Published::Reset(8)).unwrap();
        sender
            .send(Published::Events(Arc::from(vec![created("/registry/a/x", 10)])))
            .unwrap();
        assert!(matches!(
            early.next().await,
            Some(Err(Error::Expired { oldest: 8, .. }))
        ));
        assert!(early.next().await.is_none());
        assert_eq!(late.next().await.unwrap().unwrap().revision(), 10);
    }
}
