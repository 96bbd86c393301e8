//! Storage: the key-value interface the apiserver keeps its objects in.
//!
//! Mirrors upstream's `k8s.io/apiserver/pkg/storage` in spirit, shaped after etcd v3: keys are
//! strings (`/registry/pods/default/web`), values are JSON documents, and every write gets the
//! next value of one store-wide, monotonic revision. That revision is the `resourceVersion`
//! clients see. Values handed out by a `Store` always carry their own revision in
//! `metadata.resourceVersion`, so the layers above can serve them without re-encoding.
//!
//! Keys handed to a store always start with `/registry/`, the root upstream uses; the etcd store
//! swaps that root for `--etcd-prefix`.
//!
//! The embedded store (`embedded.rs`) is the default; the etcd store (`etcd/`) serves the same
//! trait from an etcd v3 cluster. Both serve watches from a watch cache (`cache.rs`), and both
//! serve a list a page at a time at the revision of its first page (`Store::list_page`).

pub(crate) mod cache;
pub(crate) mod embedded;
pub(crate) mod etcd;

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

pub use embedded::EmbeddedStore;
pub use etcd::{EtcdConfig, EtcdStore, EtcdTls};

/// A store-wide revision: the `resourceVersion` of the write that produced a value.
pub type Revision = u64;

/// One stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/configmaps/default/settings`.
    pub key: Arc<str>,
    /// The JSON document, with `metadata.resourceVersion` equal to `mod_revision`.
    pub value: Bytes,
    /// The revision of the write that created this key.
    pub create_revision: Revision,
    /// The revision of the last write to this key.
    pub mod_revision: Revision,
}

/// One page of a paginated list (`Store::list_page`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The values, sorted by key.
    pub items: Vec<KeyValue>,
    /// The revision the page was read at.
    pub revision: Revision,
    /// How many keys under the prefix follow the last item, at that revision.
    pub remaining: u64,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The key was created.
    Created,
    /// The key existed and was overwritten.
    Updated,
    /// The key was removed.
    Deleted,
}

/// One change, as a watch reports it.
#[derive(Clone, Debug)]
pub struct Event {
    /// What happened.
    pub event_type: EventType,
    /// The value after the change. For `Deleted`, the last value, re-stamped with the revision of
    /// the deletion (as upstream's watch cache reports deletions).
    pub kv: KeyValue,
    /// The value before the change, for `Updated` and `Deleted`.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of changes under a prefix, in revision order. It ends with `Err(Expired)` when the
/// watcher fell too far behind to be served, and ends quietly when the store shuts down.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, Error>> + Send>>;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key does not exist.
    #[error("key {key} not found")]
    NotFound {
        /// The key looked up.
        key: String,
    },
    /// A create found the key present.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key written.
        key: String,
    },
    /// A conditional write found another revision than the one it expected.
    #[error("key {key} was modified: expected revision {expected}, found {found}")]
    Conflict {
        /// The key written.
        key: String,
        /// The revision the caller based its write on.
        expected: Revision,
        /// The revision in the store.
        found: Revision,
    },
    /// A watch asked to start at a revision whose history is no longer held.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision a watch can start from now.
        oldest: Revision,
    },
    /// The store's disk or database failed.
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend cannot be reached or cannot serve now (etcd down, or without a leader); the
    /// request may be retried.
    #[error("the storage backend is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend did not answer in time. A write may or may not have happened.
    #[error("the storage backend did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
}

/// The interface every storage backend offers to the apiserver's registry.
///
/// All writes are durable when they return `Ok`. Conditional writes compare the key's
/// `mod_revision`, as etcd transactions do.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, Error>;

    /// Every value whose key starts with `prefix`, sorted by key, and the revision they were read at.
    ///
    /// By default, pages of `list_page` read at the first page's revision.
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), Error> {
        let (mut items, mut start, mut at) = (Vec::new(), prefix.to_string(), None);
        loop {
            let page = self.list_page(prefix, &start, usize::MAX, at).await?;
            at = Some(page.revision);
            items.extend(page.items);
            match items.last() {
                Some(last) if page.remaining > 0 => start = format!("{}\0", last.key),
                _ => return Ok((items, page.revision)),
            }
        }
    }

    /// At most `limit` (at least 1) values whose keys start with `prefix`, from the key `start`
    /// (itself under `prefix`) on, as they were at `revision` (`None`: now). A store may return
    /// fewer than `limit` while keys remain. `Expired` when the history back to `revision` is gone.
    async fn list_page(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Page, Error>;

    /// Stores `value` under a new `key`; `AlreadyExists` if it is taken.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, Error>;

    /// Replaces the value under `key` if its `mod_revision` is still `expected`.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue, Error>;

    /// Removes `key` if its `mod_revision` is `expected` (or unconditionally with `None`), and
    /// returns the removed value re-stamped with the deletion's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, Error>;

    /// The changes under `prefix` after revision `after`. `Expired` if that history is gone.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, Error>;

    /// The newest revision the store has acknowledged.
    fn revision(&self) -> Revision;
}

/// Returns `value` with `metadata.resourceVersion` set to `revision`. Values are JSON objects
/// written by the registry; anything else is returned unchanged.
pub(crate) fn stamp_revision(value: &[u8], revision: Revision) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(value) {
        Ok(mut doc) => {
            if let Some(meta) = doc.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                meta.insert("resourceVersion".into(), revision.to_string().into());
            }
            Bytes::from(serde_json::to_vec(&doc).unwrap_or_else(|_| value.to_vec()))
        }
        Err(_) => Bytes::copy_from_slice(value),
    }
}
