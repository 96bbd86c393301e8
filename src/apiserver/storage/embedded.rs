//! The embedded store: every object in memory, every write durable in a redb file.
//!
//! Plays the part etcd plays upstream, in-process, in the way k3s's kine replaces etcd with a
//! database: one file under `--data-dir`, no extra process. Reads are served from memory; the
//! in-memory map and a bounded history of recent events are also the watch cache. A list page
//! at an older revision (a paginated list's later pages) is the map with that history undone;
//! older than the history, it is `Expired`, as a compacted revision is in etcd.
//!
//! Writes go to one writer thread that takes every request waiting in its queue, checks each
//! against the current state, writes the batch in one redb transaction and fsyncs once (group
//! commit). Only then does it publish the batch to readers and watchers and answer the callers,
//! so nothing that was acknowledged can be lost by a crash, and nothing unacknowledged is seen.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::cache::{self, History, Published};
use super::{Error, Event, EventType, KeyValue, Page, Revision, Store, WatchStream, stamp_revision};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";
/// Requests the writer folds into one transaction at most.
const MAX_BATCH: usize = 1024;
/// Each stored value starts with its create and mod revisions, little-endian.
const HEADER: usize = 16;

/// The default store: see the module documentation.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    writes: Option<mpsc::Sender<Write>>,
    writer: Option<JoinHandle<()>>,
}

struct Shared {
    state: RwLock<State>,
    /// Each committed batch of events, in order. Sent while `state` is write-locked, so a watcher
    /// that reads the history and subscribes under the read lock misses nothing and sees nothing twice.
    events: broadcast::Sender<Published>,
}

struct State {
    objects: BTreeMap<Arc<str>, KeyValue>,
    revision: Revision,
    history: History,
}

enum Op {
    Create(Bytes),
    Update(Bytes, Revision),
    Delete(Option<Revision>),
}

/// Where the writer sends one request's outcome.
type Reply = oneshot::Sender<Result<KeyValue, Error>>;

struct Write {
    key: Arc<str>,
    op: Op,
    done: Reply,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, loading every object into memory. Keeps the last
    /// `history_limit` events for watches that resume from an older revision.
    ///
    /// Starts the writer thread; it stops when the store is dropped.
    pub fn open(dir: &Path, history_limit: usize) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(backend)?;
        let mut builder = Database::builder();
        // Reads are served from memory, so redb's page cache only needs to hold the write path.
        builder.set_cache_size(8 << 20);
        let db = builder.create(dir.join("store.redb")).map_err(backend)?;

        let mut objects = BTreeMap::new();
        let mut revision = 0;
        {
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(OBJECTS).map_err(backend)?;
            txn.open_table(META).map_err(backend)?;
            txn.commit().map_err(backend)?;
        }
        {
            let txn = db.begin_read().map_err(backend)?;
            let meta = txn.open_table(META).map_err(backend)?;
            if let Some(rev) = meta.get(REVISION_KEY).map_err(backend)? {
                revision = rev.value();
            }
            let table = txn.open_table(OBJECTS).map_err(backend)?;
            for entry in table.iter().map_err(backend)? {
                let (key, value) = entry.map_err(backend)?;
                let key: Arc<str> = Arc::from(key.value());
                let kv = decode(key.clone(), value.value())?;
                objects.insert(key, kv);
            }
        }

        let shared = Arc::new(Shared {
            state: RwLock::new(State {
                objects,
                revision,
                history: History::new(history_limit, revision),
            }),
            events: cache::channel(),
        });
        // Callers wait for their own answer, so the queue holds one request per in-flight API
        // call; when it is full, callers wait, which is the back-pressure we want.
        let (tx, rx) = mpsc::channel(4096);
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(db, writer_shared, rx))
            .map_err(backend)?;
        Ok(Self {
            shared,
            writes: Some(tx),
            writer: Some(writer),
        })
    }

    async fn write(&self, key: &str, op: Op) -> Result<KeyValue, Error> {
        let (done, answer) = oneshot::channel();
        let write = Write {
            key: Arc::from(key),
            op,
            done,
        };
        let writes = self.writes.as_ref().ok_or(Error::Closed)?;
        writes.send(write).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A poisoned lock means a panic mid-publish; the data itself is still consistent
        // because publishing only inserts whole entries.
        self.shared
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it holds and exit.
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, Error> {
        Ok(self.read().objects.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), Error> {
        let state = self.read();
        let items = state
            .objects
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok((items, state.revision))
    }

    async fn list_page(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Page, Error> {
        let state = self.read();
        // Without MVCC, a page at an older revision is the current state with the changes since
        // undone: each key a held change touched, as it was before the oldest of those changes.
        let mut undone: BTreeMap<Arc<str>, Option<KeyValue>> = BTreeMap::new();
        if let Some(rev) = revision.filter(|rev| *rev < state.revision) {
            for event in state.history.backlog(prefix, rev)?.into_iter().rev() {
                let before = match event.event_type {
                    EventType::Created => None,
                    EventType::Updated | EventType::Deleted => event.prev,
                };
                undone.insert(event.kv.key, before);
            }
        }
        let from = (Bound::Included(start), Bound::Unbounded);
        let mut now = state
            .objects
            .range::<str, _>(from)
            .take_while(|(k, _)| k.starts_with(prefix))
            .peekable();
        let mut then = undone.range::<str, _>(from).peekable();
        let mut values = std::iter::from_fn(|| {
            loop {
                // Which comes first: the next current key or the next changed one.
                let order = match (now.peek(), then.peek()) {
                    (None, None) => return None,
                    (Some(_), None) => Ordering::Greater,
                    (None, Some(_)) => Ordering::Less,
                    (Some((current, _)), Some((changed, _))) => changed.cmp(current),
                };
                match order {
                    Ordering::Greater => return now.next().map(|(_, kv)| kv),
                    // The value at `revision` replaces the current one.
                    Ordering::Equal => {
                        now.next();
                    }
                    Ordering::Less => {}
                }
                // A key created since `revision` did not exist then.
                if let Some((_, Some(kv))) = then.next() {
                    return Some(kv);
                }
            }
        });
        let items: Vec<KeyValue> = values.by_ref().take(limit).cloned().collect();
        Ok(Page {
            items,
            remaining: values.count() as u64,
            revision: revision.map_or(state.revision, |rev| rev.min(state.revision)),
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, Error> {
        self.write(key, Op::Create(value)).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue, Error> {
        self.write(key, Op::Update(value, expected)).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, Error> {
        self.write(key, Op::Delete(expected)).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, Error> {
        let state = self.read();
        let backlog = state.history.backlog(prefix, after)?;
        Ok(cache::follow(backlog, self.shared.events.subscribe(), prefix, after))
    }

    fn revision(&self) -> Revision {
        self.read().revision
    }
}

fn backend<E: std::error::Error + Send + Sync + 'static>(err: E) -> Error {
    Error::Backend(Box::new(err))
}

fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode(key: Arc<str>, raw: &[u8]) -> Result<KeyValue, Error> {
    if raw.len() < HEADER {
        return Err(Error::Backend(
            format!("corrupt value under {key}: {} bytes", raw.len()).into(),
        ));
    }
    let rev = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[at..at + 8]);
        u64::from_le_bytes(b)
    };
    Ok(KeyValue {
        key,
        create_revision: rev(0),
        mod_revision: rev(8),
        value: Bytes::copy_from_slice(&raw[HEADER..]),
    })
}

/// The writer thread: batch, check, commit, publish, answer. See the module documentation.
fn writer_loop(db: Database, shared: Arc<Shared>, mut rx: mpsc::Receiver<Write>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        commit_batch(&db, &shared, batch);
    }
}

fn commit_batch(db: &Database, shared: &Shared, batch: Vec<Write>) {
    let (mut revision, current) = {
        let state = shared.state.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current: HashMap<Arc<str>, Option<KeyValue>> = batch
            .iter()
            .map(|w| (w.key.clone(), state.objects.get(&w.key).cloned()))
            .collect();
        (state.revision, current)
    };
    // What each key holds as the batch proceeds; later writes in a batch see earlier ones.
    let mut overlay = current;
    let mut outcomes: Vec<(Reply, Result<Event, Error>)> = Vec::with_capacity(batch.len());
    for write in batch {
        let now = overlay.get(&write.key).cloned().flatten();
        let outcome = apply(&write.key, write.op, now, revision + 1);
        if let Ok(event) = &outcome {
            revision = event.revision();
            let after = match event.event_type {
                EventType::Deleted => None,
                _ => Some(event.kv.clone()),
            };
            overlay.insert(write.key.clone(), after);
        }
        outcomes.push((write.done, outcome));
    }
    let events: Vec<Event> = outcomes.iter().filter_map(|(_, o)| o.as_ref().ok().cloned()).collect();
    if !events.is_empty()
        && let Err(err) = persist(db, &events, revision)
    {
        let message = err.to_string();
        for (done, _) in outcomes {
            let _ = done.send(Err(Error::Backend(message.clone().into())));
        }
        return;
    }

    if !events.is_empty() {
        let mut state = shared.state.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for event in &events {
            match event.event_type {
                EventType::Deleted => state.objects.remove(&event.kv.key),
                _ => state.objects.insert(event.kv.key.clone(), event.kv.clone()),
            };
        }
        state.history.push(&events);
        state.revision = revision;
        // No receivers is fine: nobody is watching.
        let _ = shared.events.send(Published::Events(Arc::from(events)));
    }
    for (done, outcome) in outcomes {
        let _ = done.send(outcome.map(|e| e.kv));
    }
}

/// Checks one write against the key's current value and computes its event.
fn apply(key: &Arc<str>, op: Op, now: Option<KeyValue>, revision: Revision) -> Result<Event, Error> {
    let not_found = || Error::NotFound { key: key.to_string() };
    let check = |now: &KeyValue, expected: Revision| {
        if now.mod_revision == expected {
            Ok(())
        } else {
            Err(Error::Conflict {
                key: key.to_string(),
                expected,
                found: now.mod_revision,
            })
        }
    };
    match op {
        Op::Create(value) => {
            if now.is_some() {
                return Err(Error::AlreadyExists { key: key.to_string() });
            }
            let kv = KeyValue {
                key: key.clone(),
                value: stamp_revision(&value, revision),
                create_revision: revision,
                mod_revision: revision,
            };
            Ok(Event {
                event_type: EventType::Created,
                kv,
                prev: None,
            })
        }
        Op::Update(value, expected) => {
            let now = now.ok_or_else(not_found)?;
            check(&now, expected)?;
            let kv = KeyValue {
                key: key.clone(),
                value: stamp_revision(&value, revision),
                create_revision: now.create_revision,
                mod_revision: revision,
            };
            Ok(Event {
                event_type: EventType::Updated,
                kv,
                prev: Some(now),
            })
        }
        Op::Delete(expected) => {
            let now = now.ok_or_else(not_found)?;
            if let Some(expected) = expected {
                check(&now, expected)?;
            }
            let kv = KeyValue {
                key: key.clone(),
                value: stamp_revision(&now.value, revision),
                create_revision: now.create_revision,
                mod_revision: revision,
            };
            Ok(Event {
                event_type: EventType::Deleted,
                kv,
                prev: Some(now),
            })
        }
    }
}

fn persist(db: &Database, events: &[Event], revision: Revision) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut objects = txn.open_table(OBJECTS)?;
        for event in events {
            match event.event_type {
                EventType::Deleted => {
                    objects.remove(&*event.kv.key)?;
                }
                _ => {
                    objects.insert(&*event.kv.key, encode(&event.kv).as_slice())?;
                }
            }
        }
        let mut meta = txn.open_table(META)?;
        meta.insert(REVISION_KEY, revision)?;
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn doc(name: &str) -> Bytes {
        Bytes::from(format!(r#"{{"metadata":{{"name":"{name}"}}}}"#))
    }

    fn rv(kv: &KeyValue) -> String {
        let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
        v["metadata"]["resourceVersion"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn writes_stamp_increasing_revisions_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(dir.path(), 100).unwrap();
            let a = store.create("/r/a", doc("a")).await.unwrap();
            let b = store.create("/r/b", doc("b")).await.unwrap();
            assert_eq!((a.mod_revision, b.mod_revision), (1, 2));
            assert_eq!(rv(&b), "2");
            let a2 = store.update("/r/a", doc("a"), 1).await.unwrap();
            assert_eq!((a2.create_revision, a2.mod_revision), (1, 3));
            store.delete("/r/b", None).await.unwrap();
        }
        let store = EmbeddedStore::open(dir.path(), 100).unwrap();
        assert_eq!(store.revision(), 4);
        let (items, rev) = store.list("/r/").await.unwrap();
        assert_eq!(rev, 4);
        assert_eq!(items.len(), 1);
        assert_eq!(rv(&items[0]), "3");
    }

    #[tokio::test]
    async fn conditional_writes_report_conflicts_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), 100).unwrap();
        store.create("/r/a", doc("a")).await.unwrap();
        assert!(matches!(
            store.create("/r/a", doc("a")).await,
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.update("/r/a", doc("a"), 7).await,
            Err(Error::Conflict { found: 1, .. })
        ));
        assert!(matches!(
            store.delete("/r/missing", None).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(store.revision(), 1);
    }

    #[tokio::test]
    async fn pages_at_an_older_revision_undo_the_changes_since() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), 6).unwrap();
        for name in ["a", "b", "c"] {
            store.create(&format!("/r/{name}"), doc(name)).await.unwrap();
        }
        store.create("/other/x", doc("x")).await.unwrap();
        store.update("/r/b", doc("b2"), 2).await.unwrap();
        store.delete("/r/c", None).await.unwrap();
        store.create("/r/ab", doc("ab")).await.unwrap();
        let keys_and_revisions = |page: &Page| -> Vec<(String, Revision)> {
            page.items
                .iter()
                .map(|kv| (kv.key.to_string(), kv.mod_revision))
                .collect()
        };

        let then = store.list_page("/r/", "/r/", 2, Some(3)).await.unwrap();
        assert_eq!(keys_and_revisions(&then), [("/r/a".into(), 1), ("/r/b".into(), 2)]);
        assert_eq!((then.revision, then.remaining), (3, 1));
        let rest = store.list_page("/r/", "/r/b\0", 2, Some(3)).await.unwrap();
        assert_eq!(keys_and_revisions(&rest), [("/r/c".into(), 3)]);
        assert_eq!(rest.remaining, 0);

        let now = store.list_page("/r/", "/r/", 10, None).await.unwrap();
        assert_eq!(
            keys_and_revisions(&now),
            [("/r/a".into(), 1), ("/r/ab".into(), 7), ("/r/b".into(), 5)]
        );
        assert_eq!(now.revision, 7);

        // Six changes are held: revision 1 is the oldest a page can still be read at.
        store.create("/r/d", doc("d")).await.unwrap();
        assert!(store.list_page("/r/", "/r/", 2, Some(2)).await.is_ok());
        assert!(matches!(
            store.list_page("/r/", "/r/", 2, Some(1)).await,
            Err(Error::Expired { .. })
        ));
    }

    #[tokio::test]
    async fn watch_replays_history_then_follows_and_expires_old_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), 3).unwrap();
        for name in ["a", "b", "c", "d"] {
            store.create(&format!("/r/{name}"), doc(name)).await.unwrap();
        }
        assert!(matches!(store.watch("/r/", 0).await, Err(Error::Expired { .. })));
        let mut watch = store.watch("/r/", 2).await.unwrap();
        store.delete("/r/a", None).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let e = watch.next().await.unwrap().unwrap();
            seen.push((e.event_type, e.revision()));
        }
        assert_eq!(
            seen,
            vec![
                (EventType::Created, 3),
                (EventType::Created, 4),
                (EventType::Deleted, 5)
            ]
        );
    }

    #[tokio::test]
    async fn concurrent_creates_are_all_acknowledged_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path(), 1000).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.create(&format!("/r/{i}"), doc("x")).await.unwrap().mod_revision
            }));
        }
        let mut revs = Vec::new();
        for t in tasks {
            revs.push(t.await.unwrap());
        }
        revs.sort();
        assert_eq!(revs, (1..=200).collect::<Vec<_>>());
    }
}
