//! The etcd store: objects live in an etcd v3 cluster (`--etcd-servers`), as upstream keeps them.
//!
//! Mirrors upstream's `k8s.io/apiserver/pkg/storage/etcd3`. Keys are laid out as upstream lays
//! them, `PREFIX/RESOURCE/NAMESPACE/NAME` under `--etcd-prefix` (default `/registry`), and values
//! are the objects' JSON, so `etcdctl get --prefix /registry` shows a familiar tree. The etcd
//! revision is the `resourceVersion`: it is stamped into every value read, never trusted from
//! what was written. A create is a transaction on `create_revision == 0`; updates and deletes
//! compare `mod_revision`. Reads are linearizable, so a write through one apiserver is visible
//! through every other one on the same etcd.
//!
//! Watches are served by a watch cache per resource (`watch.rs`), each fed by one etcd watch;
//! `compact.rs` compacts old revisions. A paginated list reads one page per range request, the
//! pages after the first at the first page's revision. Every call to etcd has a deadline: an
//! unreachable etcd gives `Unavailable` or `Timeout`, never a hang.
//!
//! This is the only module that talks to etcd.

mod compact;
mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse, TxnResponse};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Error, KeyValue, Page, Revision, Store, WatchStream, stamp_revision};

/// The root every key handed to a `Store` starts with; `--etcd-prefix` replaces it in etcd.
const ROOT: &str = "/registry";
/// How long one call to etcd may take before the request fails with 504.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to one etcd endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys per range request when listing, so that no response nears gRPC's 4 MiB message limit.
const LIST_PAGE: usize = 500;

/// Client certificates for etcd (`--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`).
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    /// The CA that signed etcd's serving certificate; the system roots are not used.
    pub ca_file: Option<PathBuf>,
    /// This client's certificate, for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// The key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// How to reach etcd and what to keep there.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client URLs of the cluster's members (`http://` or `https://`); any of them may serve.
    pub servers: Vec<String>,
    /// What replaces `/registry` at the start of every key.
    pub prefix: String,
    /// TLS settings for `https://` servers.
    pub tls: EtcdTls,
    /// How often to compact revisions older than the previous interval; zero never compacts.
    pub compaction_interval: Duration,
    /// How many recent changes each resource's watch cache holds for resuming watches.
    pub watch_cache_size: usize,
}

/// The etcd store: see the module documentation.
pub struct EtcdStore {
    client: etcd_client::Client,
    keys: Keys,
    /// The newest revision seen in any response.
    revision: Arc<AtomicU64>,
    /// The revision at connect: every watch cache starts from it, so a watch may resume from
    /// any resourceVersion this apiserver handed out (until compaction takes it).
    start: Revision,
    watch_cache_size: usize,
    caches: Mutex<HashMap<String, Arc<watch::Cache>>>,
    /// The compactor and one watch task per cached resource; cancelled when the store drops.
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// Maps keys between the registry's `/registry/...` and etcd's `PREFIX/...`.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let trimmed = prefix.trim_end_matches('/');
        let prefix = if trimmed.starts_with('/') {
            trimmed.to_string()
        } else {
            format!("/{trimmed}")
        };
        Self { prefix }
    }

    fn etcd_key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key.strip_prefix(ROOT).unwrap_or(key))
    }

    fn registry_key(&self, key: &[u8]) -> Arc<str> {
        let key = String::from_utf8_lossy(key);
        let rest = key.strip_prefix(self.prefix.as_str()).unwrap_or(&key);
        Arc::from(format!("{ROOT}{rest}"))
    }

    /// A stored pair as the registry sees it: the registry's key, the revision in the value.
    fn key_value(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        let mod_revision = revision(kv.mod_revision());
        KeyValue {
            key: self.registry_key(kv.key()),
            value: stamp_revision(kv.value(), mod_revision),
            create_revision: revision(kv.create_revision()),
            mod_revision,
        }
    }
}

fn revision(rev: i64) -> Revision {
    u64::try_from(rev).unwrap_or(0)
}

/// The end of the key range holding every key that starts with `prefix` (etcd's convention).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte is 0xff: the range runs to the end of the keyspace.
    vec![0]
}

/// Maps an etcd client failure: transport trouble and a cluster without a leader are
/// `Unavailable` (503), a missed deadline is `Timeout` (504), a compacted revision `Expired`.
fn classify(err: etcd_client::Error) -> Error {
    use tonic::Code;
    let unavailable = |reason: String| Error::Unavailable(format!("etcd: {reason}").into());
    match &err {
        etcd_client::Error::TransportError(e) => unavailable(e.to_string()),
        etcd_client::Error::IoError(e) => unavailable(e.to_string()),
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            Code::Unavailable | Code::Cancelled | Code::Aborted | Code::ResourceExhausted => {
                unavailable(status.message().to_string())
            }
            // A connection that broke mid-call ("transport error") carries its cause; statuses
            // etcd itself sends do not.
            Code::Unknown if std::error::Error::source(status).is_some() => unavailable(status.message().to_string()),
            Code::DeadlineExceeded => Error::Timeout(REQUEST_TIMEOUT),
            Code::OutOfRange => Error::Expired {
                requested: 0,
                oldest: 0,
            },
            _ => Error::Backend(Box::new(err)),
        },
        _ => Error::Backend(Box::new(err)),
    }
}

/// Runs one call to etcd with the request deadline.
async fn call<T>(request: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T, Error> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(result) => result.map_err(classify),
        Err(_) => Err(Error::Timeout(REQUEST_TIMEOUT)),
    }
}

impl EtcdStore {
    /// Connects to etcd and reads its current revision; fails when no endpoint answers within
    /// the request timeout. Starts the compactor; watch caches start on the first watch of
    /// their resource. Everything started stops when the store is dropped.
    pub async fn connect(config: EtcdConfig) -> Result<Self, Error> {
        let client = etcd_client::Client::connect(&config.servers, Some(connect_options(&config.tls)?))
            .await
            .map_err(classify)?;
        let keys = Keys::new(&config.prefix);
        let mut kv = client.kv_client();
        let root = keys.etcd_key(ROOT);
        let current = call(kv.get(root, Some(GetOptions::new().with_count_only()))).await?;
        let start = current.header().map_or(0, |h| revision(h.revision()));
        let store = Self {
            client,
            keys,
            revision: Arc::new(AtomicU64::new(start)),
            start,
            watch_cache_size: config.watch_cache_size,
            caches: Mutex::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        };
        if !config.compaction_interval.is_zero() {
            store.tasks.spawn(compact::run(
                store.client.kv_client(),
                config.compaction_interval,
                store.shutdown.clone(),
            ));
        }
        Ok(store)
    }

    fn kv(&self) -> KvClient {
        self.client.kv_client()
    }

    /// Notes the revision a response was served at.
    fn saw(&self, header: Option<&etcd_client::ResponseHeader>) -> Revision {
        let rev = header.map_or(0, |h| revision(h.revision()));
        self.revision.fetch_max(rev, Ordering::Relaxed);
        rev
    }

    /// The watch cache of the resource `prefix` belongs to, started on first use.
    fn cache(&self, prefix: &str) -> Arc<watch::Cache> {
        let resource = resource_prefix(prefix);
        let mut caches = self.caches.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        caches
            .entry(resource.clone())
            .or_insert_with(|| {
                let cache = Arc::new(watch::Cache::new(self.watch_cache_size, self.start));
                self.tasks.spawn(watch::reflect(
                    self.client.watch_client(),
                    self.keys.clone(),
                    self.keys.etcd_key(&resource),
                    cache.clone(),
                    self.start,
                    self.shutdown.clone(),
                ));
                cache
            })
            .clone()
    }

    /// A conditional write: `then` when every compare holds, else a read of `key` to say why not.
    async fn txn(&self, key: &str, when: Vec<Compare>, then: TxnOp) -> Result<TxnResponse, Error> {
        let txn = Txn::new()
            .when(when)
            .and_then(vec![then])
            .or_else(vec![TxnOp::get(key, None)]);
        let resp = call(self.kv().txn(txn)).await?;
        self.saw(resp.header());
        Ok(resp)
    }

    /// Why a conditional write on `key` expecting `expected` failed, from its `or_else` read.
    fn refusal(&self, key: &str, resp: &TxnResponse, expected: Revision) -> Error {
        let found = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| revision(kv.mod_revision())),
            _ => None,
        });
        match found {
            None => Error::NotFound { key: key.to_string() },
            Some(found) => Error::Conflict {
                key: key.to_string(),
                expected,
                found,
            },
        }
    }
}

/// `/registry/RESOURCE/` for any key or prefix under it: the unit one watch cache serves.
fn resource_prefix(prefix: &str) -> String {
    let rest = prefix.strip_prefix(ROOT).unwrap_or(prefix).trim_start_matches('/');
    let resource = rest.split('/').next().unwrap_or_default();
    format!("{ROOT}/{resource}/")
}

fn connect_options(tls: &EtcdTls) -> Result<ConnectOptions, Error> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
        .with_require_leader(true);
    if tls.ca_file.is_some() || tls.cert_file.is_some() {
        let read = |path: &PathBuf| std::fs::read(path).map_err(|e| Error::Backend(Box::new(e)));
        let mut config = etcd_client::TlsOptions::new();
        if let Some(ca) = &tls.ca_file {
            config = config.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => {
                return Err(Error::Backend("--etcd-certfile and --etcd-keyfile go together".into()));
            }
        }
        options = options.with_tls(config);
    }
    Ok(options)
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // The tasks select on this token and end at their next await.
        self.shutdown.cancel();
        self.tasks.close();
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, Error> {
        let resp = call(self.kv().get(self.keys.etcd_key(key), None)).await?;
        self.saw(resp.header());
        Ok(resp.kvs().first().map(|kv| self.keys.key_value(kv)))
    }

    async fn list_page(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Page, Error> {
        let end = prefix_end(self.keys.etcd_key(prefix).as_bytes());
        let limit = i64::try_from(limit.clamp(1, LIST_PAGE)).unwrap_or(1);
        let mut options = GetOptions::new().with_range(end).with_limit(limit);
        if let Some(rev) = revision {
            options = options.with_revision(i64::try_from(rev).unwrap_or(i64::MAX));
        }
        let resp = call(self.kv().get(self.keys.etcd_key(start), Some(options))).await?;
        // The header carries the newest revision, also when the range was read at an older one.
        let newest = self.saw(resp.header());
        let items: Vec<KeyValue> = resp.kvs().iter().map(|kv| self.keys.key_value(kv)).collect();
        // `count` is every key of the range from `start`, not just the ones returned.
        let remaining = u64::try_from(resp.count())
            .unwrap_or(0)
            .saturating_sub(items.len() as u64);
        Ok(Page {
            items,
            revision: revision.unwrap_or(newest),
            remaining,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, Error> {
        let etcd_key = self.keys.etcd_key(key);
        let when = vec![Compare::create_revision(etcd_key.clone(), CompareOp::Equal, 0)];
        let resp = self
            .txn(&etcd_key, when, TxnOp::put(etcd_key.clone(), value.to_vec(), None))
            .await?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists { key: key.to_string() });
        }
        let rev = self.saw(resp.header());
        Ok(KeyValue {
            key: Arc::from(key),
            value: stamp_revision(&value, rev),
            create_revision: rev,
            mod_revision: rev,
        })
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue, Error> {
        let etcd_key = self.keys.etcd_key(key);
        let put = TxnOp::put(
            etcd_key.clone(),
            value.to_vec(),
            Some(etcd_client::PutOptions::new().with_prev_key()),
        );
        let resp = self.txn(&etcd_key, exists_at(&etcd_key, Some(expected)), put).await?;
        if !resp.succeeded() {
            return Err(self.refusal(key, &resp, expected));
        }
        let rev = self.saw(resp.header());
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| revision(kv.create_revision())),
                _ => None,
            })
            .unwrap_or(rev);
        Ok(KeyValue {
            key: Arc::from(key),
            value: stamp_revision(&value, rev),
            create_revision,
            mod_revision: rev,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, Error> {
        let etcd_key = self.keys.etcd_key(key);
        let delete = TxnOp::delete(
            etcd_key.clone(),
            Some(etcd_client::DeleteOptions::new().with_prev_key()),
        );
        let resp = self.txn(&etcd_key, exists_at(&etcd_key, expected), delete).await?;
        if !resp.succeeded() {
            return Err(self.refusal(key, &resp, expected.unwrap_or(0)));
        }
        let rev = self.saw(resp.header());
        let prev = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(|| Error::Backend(format!("etcd returned no previous value for {key}").into()))?;
        Ok(KeyValue {
            key: Arc::from(key),
            value: stamp_revision(prev.value(), rev),
            create_revision: revision(prev.create_revision()),
            mod_revision: rev,
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, Error> {
        self.cache(prefix).watch(prefix, after)
    }

    fn revision(&self) -> Revision {
        self.revision.load(Ordering::Relaxed)
    }
}

/// The compares of a conditional write: `key` exists, at revision `expected` if given.
fn exists_at(key: &str, expected: Option<Revision>) -> Vec<Compare> {
    let mut when = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
    if let Some(expected) = expected {
        let expected = i64::try_from(expected).unwrap_or(i64::MAX);
        when.push(Compare::mod_revision(key, CompareOp::Equal, expected));
    }
    when
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_swap_the_registry_root_for_the_prefix_and_back() {
        let keys = Keys::new("/custom/");
        assert_eq!(keys.etcd_key("/registry/pods/default/web"), "/custom/pods/default/web");
        assert_eq!(
            &*keys.registry_key(b"/custom/pods/default/web"),
            "/registry/pods/default/web"
        );
        let upstream = Keys::new("/registry");
        assert_eq!(
            upstream.etcd_key("/registry/namespaces/kube-system"),
            "/registry/namespaces/kube-system"
        );
    }

    #[test]
    fn prefix_ranges_end_after_the_last_key_with_the_prefix() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }

    #[test]
    fn every_key_under_a_resource_shares_its_watch_cache() {
        assert_eq!(resource_prefix("/registry/pods/default/"), "/registry/pods/");
        assert_eq!(resource_prefix("/registry/pods/"), "/registry/pods/");
        assert_eq!(resource_prefix("/registry/namespaces/"), "/registry/namespaces/");
    }
}
