//! One resource's watch cache, fed by one etcd watch (upstream's `cacher` over its `reflector`).
//!
//! `reflect` watches the resource's key range from a start revision with previous values, turns
//! each response into store events and publishes them to the cache in revision order. When the
//! watch breaks (etcd restarted, unreachable, lost its leader) it opens a new one at the revision
//! after the last event it published, so the cache's watchers see every change exactly once,
//! without the apiserver restarting. Only when etcd has compacted the revisions it needs does the
//! cache lose history: its watchers that are behind get `Expired` (410) and re-list.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use etcd_client::{EventType as EtcdEventType, WatchClient, WatchOptions};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{Keys, call, classify, prefix_end, revision};
use crate::apiserver::storage::cache::{self, History, Published};
use crate::apiserver::storage::{Error, Event, EventType, KeyValue, Revision, WatchStream, stamp_revision};

/// The longest pause between attempts to re-open a broken watch.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The history of one resource and the watchers following it.
pub(super) struct Cache {
    history: RwLock<History>,
    events: broadcast::Sender<Published>,
}

impl Cache {
    /// A cache from which watches may start after `start` or later.
    pub(super) fn new(limit: usize, start: Revision) -> Self {
        Self {
            history: RwLock::new(History::new(limit, start)),
            events: cache::channel(),
        }
    }

    /// A watch of the changes under `prefix` after `after`.
    pub(super) fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, Error> {
        let history = self.history.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let backlog = history.backlog(prefix, after)?;
        Ok(cache::follow(backlog, self.events.subscribe(), prefix, after))
    }

    fn publish(&self, published: Published) {
        let mut history = self.history.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &published {
            Published::Events(events) => history.push(events),
            Published::Reset(revision) => history.reset(*revision),
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(published);
    }
}

/// Feeds `cache` from etcd's watch of `range` (an etcd key prefix), starting after revision
/// `after`, until `shutdown`. See the module documentation.
pub(super) async fn reflect(
    client: WatchClient,
    keys: Keys,
    range: String,
    cache: Arc<Cache>,
    after: Revision,
    shutdown: CancellationToken,
) {
    let mut next = after + 1;
    let mut backoff = Duration::from_millis(50);
    while !shutdown.is_cancelled() {
        let before = next;
        match follow(&client, &keys, &range, &cache, &mut next, &shutdown).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(resource = %range, next, error = %crate::error_chain(&err), "etcd watch broke; re-opening");
            }
        }
        if next != before {
            // The watch served for a while: this is a new outage, retry quickly.
            backoff = Duration::from_millis(50);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One etcd watch from `next`, until it breaks (`Err`) or `shutdown` (`Ok`). Advances `next`
/// past every revision published.
async fn follow(
    client: &WatchClient,
    keys: &Keys,
    range: &str,
    cache: &Cache,
    next: &mut Revision,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let options = WatchOptions::new()
        .with_range(prefix_end(range.as_bytes()))
        .with_start_revision(i64::try_from(*next).unwrap_or(i64::MAX))
        .with_prev_key();
    let mut client = client.clone();
    let opened = tokio::select! {
        opened = call(client.watch(range, Some(options))) => opened?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    // Keep the request side open: dropping it would end the watch.
    let (_requests, mut responses) = opened.split();
    loop {
        let message = tokio::select! {
            message = responses.message() => message.map_err(classify)?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let Some(resp) = message else {
            return Err(Error::Unavailable("etcd ended the watch".into()));
        };
        if resp.canceled() {
            let compacted = revision(resp.compact_revision());
            if compacted > *next {
                // The revisions from `next` on are gone: watchers behind them must re-list.
                tracing::warn!(resource = %range, lost_from = *next, resumes_at = compacted, "etcd compacted revisions the watch cache needed");
                cache.publish(Published::Reset(compacted - 1));
                *next = compacted;
            }
            return Err(Error::Unavailable(
                format!("etcd cancelled the watch: {}", resp.cancel_reason()).into(),
            ));
        }
        let events: Vec<Event> = resp.events().iter().filter_map(|e| event(keys, e)).collect();
        if let Some(last) = events.last() {
            *next = last.revision() + 1;
            cache.publish(Published::Events(Arc::from(events)));
        }
    }
}

/// An etcd watch event as a store event: values stamped with their revision, a deletion carrying
/// the last value stamped with the deletion's revision.
fn event(keys: &Keys, e: &etcd_client::Event) -> Option<Event> {
    let kv = e.kv()?;
    let prev = e.prev_kv().map(|p| keys.key_value(p));
    match e.event_type() {
        EtcdEventType::Put => {
            let event_type = if kv.create_revision() == kv.mod_revision() {
                EventType::Created
            } else {
                EventType::Updated
            };
            Some(Event {
                event_type,
                kv: keys.key_value(kv),
                prev,
            })
        }
        EtcdEventType::Delete => {
            let mod_revision = revision(kv.mod_revision());
            let (value, create_revision) = match &prev {
                Some(p) => (stamp_revision(&p.value, mod_revision), p.create_revision),
                // Without the previous value (already compacted) the event still says what went.
                None => (bytes::Bytes::from_static(b"{}"), 0),
            };
            Some(Event {
                event_type: EventType::Deleted,
                kv: KeyValue {
                    key: keys.registry_key(kv.key()),
                    value,
                    create_revision,
                    mod_revision,
                },
                prev,
            })
        }
    }
}
