//! Shared informers, after client-go's: one watch per resource type keeps a local cache of its
//! objects and hands every change, with the object it replaced, to the handlers registered on
//! it. Controllers, the scheduler and the proxy read the cache instead of the apiserver, and turn
//! changes into work-queue keys; two of them watching pods share one watch.
//!
//! After a relist (a watch that could not resume) the handlers see the difference between the
//! old cache and the new list, so no deletion is missed while disconnected.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// An object's place in the cache: namespace (empty for cluster-scoped objects) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjectKey {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl ObjectKey {
    pub(crate) fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    pub(crate) fn of<K: Resource>(obj: &K) -> Self {
        Self::new(
            obj.meta().namespace.as_deref().unwrap_or_default(),
            obj.meta().name.as_deref().unwrap_or_default(),
        )
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// One change to the cache.
pub(crate) enum Change<'a, K> {
    Added(&'a Arc<K>),
    Updated { old: &'a Arc<K>, new: &'a Arc<K> },
    Deleted(&'a Arc<K>),
}

impl<'a, K> Change<'a, K> {
    /// The object as it is now, or as it was last seen when deleted.
    pub(crate) fn object(&self) -> &'a Arc<K> {
        match self {
            Change::Added(obj) | Change::Deleted(obj) | Change::Updated { new: obj, .. } => obj,
        }
    }
}

type Handler<K> = Box<dyn Fn(&Change<'_, K>) + Send + Sync>;

pub(crate) struct Informer<K> {
    api: Api<K>,
    config: watcher::Config,
    cache: RwLock<HashMap<ObjectKey, Arc<K>>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    /// An informer on every object of `K` in every namespace that `config`'s selectors match.
    pub(crate) fn new(client: kube::Client, config: watcher::Config) -> Arc<Self> {
        Arc::new(Self {
            api: Api::all(client),
            config,
            cache: RwLock::default(),
            handlers: RwLock::default(),
            synced: watch::channel(false).0,
        })
    }

    /// Calls `handler` on every later change, and now with `Added` for every cached object.
    pub(crate) fn add_handler(&self, handler: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        let mut handlers = self.handlers.write().unwrap_or_else(PoisonError::into_inner);
        for obj in self.cache.read().unwrap_or_else(PoisonError::into_inner).values() {
            handler(&Change::Added(obj));
        }
        handlers.push(Box::new(handler));
    }

    /// The cached object `namespace/name` (`namespace` empty for cluster-scoped kinds).
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.read().get(&ObjectKey::new(namespace, name)).cloned()
    }

    /// Every cached object.
    pub(crate) fn list(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// The cached objects in `namespace`.
    pub(crate) fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.read()
            .iter()
            .filter(|(key, _)| key.namespace == namespace)
            .map(|(_, obj)| obj.clone())
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ObjectKey, Arc<K>>> {
        self.cache.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the first list has filled the cache (client-go's `WaitForCacheSync`).
    pub(crate) async fn wait_synced(&self) {
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|s| *s).await;
    }

    /// Watches until `shutdown`, resuming after errors with back-off.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut events = watcher(self.api.clone(), self.config.clone()).default_backoff().boxed();
        let mut relisted: Option<HashMap<ObjectKey, Arc<K>>> = None;
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                _ = shutdown.cancelled() => return,
            };
            let Some(event) = event else { return };
            match event {
                Err(err) => {
                    tracing::warn!(kind = %K::kind(&Default::default()), error = %crate::error_chain(&err), "watch failed; retrying");
                }
                Ok(watcher::Event::Init) => relisted = Some(HashMap::new()),
                Ok(watcher::Event::InitApply(obj)) => {
                    relisted
                        .get_or_insert_default()
                        .insert(ObjectKey::of(&obj), Arc::new(obj));
                }
                Ok(watcher::Event::InitDone) => {
                    let new = relisted.take().unwrap_or_default();
                    let old = std::mem::replace(
                        &mut *self.cache.write().unwrap_or_else(PoisonError::into_inner),
                        new.clone(),
                    );
                    self.notify_relist(&old, &new);
                    self.synced.send_replace(true);
                }
                Ok(watcher::Event::Apply(obj)) => {
                    let key = ObjectKey::of(&obj);
                    let new = Arc::new(obj);
                    let old = self
                        .cache
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key, new.clone());
                    match &old {
                        Some(old) => self.notify(&Change::Updated { old, new: &new }),
                        None => self.notify(&Change::Added(&new)),
                    }
                }
                Ok(watcher::Event::Delete(obj)) => {
                    let key = ObjectKey::of(&obj);
                    let cached = self.cache.write().unwrap_or_else(PoisonError::into_inner).remove(&key);
                    let gone = Arc::new(obj);
                    self.notify(&Change::Deleted(cached.as_ref().unwrap_or(&gone)));
                }
            }
        }
    }

    fn notify_relist(&self, old: &HashMap<ObjectKey, Arc<K>>, new: &HashMap<ObjectKey, Arc<K>>) {
        for (key, obj) in new {
            match old.get(key) {
                None => self.notify(&Change::Added(obj)),
                Some(before) if before.resource_version() != obj.resource_version() => {
                    self.notify(&Change::Updated { old: before, new: obj })
                }
                Some(_) => {}
            }
        }
        for (key, obj) in old {
            if !new.contains_key(key) {
                self.notify(&Change::Deleted(obj));
            }
        }
    }

    fn notify(&self, change: &Change<'_, K>) {
        for handler in self.handlers.read().unwrap_or_else(PoisonError::into_inner).iter() {
            handler(change);
        }
    }
}

/// One informer per kind, shared by everyone who asks (client-go's `SharedInformerFactory`).
/// An informer starts watching when first asked for, and stops on the factory's shutdown.
pub(crate) struct Factory {
    client: kube::Client,
    shutdown: CancellationToken,
    informers: std::sync::Mutex<HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>>,
    tasks: tokio_util::task::TaskTracker,
}

impl Factory {
    pub(crate) fn new(client: kube::Client, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            client,
            shutdown,
            informers: std::sync::Mutex::default(),
            tasks: tokio_util::task::TaskTracker::new(),
        })
    }

    /// The shared informer on every `K` in the cluster.
    pub(crate) fn get<K>(&self) -> Arc<Informer<K>>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default,
    {
        let mut informers = self.informers.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = informers.entry(std::any::TypeId::of::<K>()).or_insert_with(|| {
            let informer = Informer::<K>::new(self.client.clone(), watcher::Config::default());
            self.tasks.spawn(informer.clone().run(self.shutdown.clone()));
            informer
        });
        entry
            .clone()
            .downcast::<Informer<K>>()
            .unwrap_or_else(|_| unreachable!("informers are keyed by their kind's TypeId"))
    }

    /// Waits until every informer stopped after shutdown.
    pub(crate) async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}
