//! What the collector watches: every resource the apiserver serves that can be listed, watched
//! and deleted (found by discovery, and looked for again periodically), each through its own
//! watch feeding the graph (upstream's `GraphBuilder` monitors and its REST mapper).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::discovery::{ApiCapabilities, Discovery, Scope, verbs};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::graph::{Graph, Identity, Node, Work};

/// Where a kind is served, from discovery.
#[derive(Debug, Default)]
pub(super) struct Mapper {
    /// (group, kind) → the resource and whether it is namespaced.
    kinds: HashMap<(String, String), (ApiResource, bool)>,
}

impl Mapper {
    fn new(discovery: &Discovery) -> Self {
        let kinds = discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .map(|(ar, caps)| {
                let key = (ar.group.clone(), ar.kind.clone());
                (key, (ar, caps.scope == Scope::Namespaced))
            })
            .collect();
        Self { kinds }
    }

    /// The resource serving `kind` of `api_version`'s group (at whichever version the server
    /// prefers), and whether it is namespaced.
    pub(super) fn resolve(&self, api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        self.kinds.get(&(group.to_string(), kind.to_string())).cloned()
    }
}

/// What the monitors hand work to.
pub(super) type Sink = Arc<dyn Fn(Vec<Work>) + Send + Sync>;

/// The monitors, and the resources they cover.
pub(super) struct Monitors {
    client: kube::Client,
    graph: Arc<Mutex<Graph>>,
    mapper: Arc<std::sync::RwLock<Mapper>>,
    sink: Sink,
    started: HashSet<String>,
    tasks: tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
}

impl Monitors {
    pub(super) fn new(
        client: kube::Client,
        graph: Arc<Mutex<Graph>>,
        mapper: Arc<std::sync::RwLock<Mapper>>,
        sink: Sink,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            client,
            graph,
            mapper,
            sink,
            started: HashSet::new(),
            tasks: tokio_util::task::TaskTracker::new(),
            shutdown,
        }
    }

    /// Runs discovery, refreshes the mapper and starts a monitor for every new resource.
    /// Returns, for each new monitor, a flag that turns true once its first list is in the graph.
    pub(super) async fn sync(&mut self) -> Result<Vec<watch::Receiver<bool>>, kube::Error> {
        let discovery = Discovery::new(self.client.clone()).run().await?;
        *self.mapper.write().unwrap_or_else(PoisonError::into_inner) = Mapper::new(&discovery);
        let mut synced = Vec::new();
        for (ar, _) in discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .filter(|(ar, caps)| monitored(ar, caps))
        {
            if !self.started.insert(format!("{}/{}", ar.api_version, ar.plural)) {
                continue;
            }
            tracing::debug!(resource = %ar.plural, group = %ar.group, "garbage collector monitoring");
            let (tx, rx) = watch::channel(false);
            synced.push(rx);
            let monitor = Monitor {
                api: Api::all_with(self.client.clone(), &ar),
                ar,
                graph: self.graph.clone(),
                sink: self.sink.clone(),
                synced: tx,
            };
            self.tasks.spawn(monitor.run(self.shutdown.clone()));
        }
        Ok(synced)
    }

    /// Waits until every monitor stopped after shutdown.
    pub(super) async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Resources the collector acts on: those it can list, watch and delete, except events, which
/// are many, short-lived and never owned (upstream ignores them too).
fn monitored(ar: &ApiResource, caps: &ApiCapabilities) -> bool {
    [verbs::LIST, verbs::WATCH, verbs::DELETE]
        .iter()
        .all(|v| caps.supports_operation(v))
        && !(ar.plural == "events" && (ar.group.is_empty() || ar.group == "events.k8s.io"))
}

/// One resource's watch, feeding the graph.
struct Monitor {
    ar: ApiResource,
    api: Api<DynamicObject>,
    graph: Arc<Mutex<Graph>>,
    sink: Sink,
    synced: watch::Sender<bool>,
}

impl Monitor {
    async fn run(self, shutdown: CancellationToken) {
        let mut events = watcher(self.api.clone(), watcher::Config::default())
            .default_backoff()
            .boxed();
        // The UIDs seen, to find what went while the watch was down when it lists again.
        let mut seen: HashSet<String> = HashSet::new();
        let mut relisted: Option<HashSet<String>> = None;
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                _ = shutdown.cancelled() => return,
            };
            match event {
                None => return,
                Some(Err(err)) => {
                    tracing::warn!(resource = %self.ar.plural, error = %crate::error_chain(&err), "garbage collector watch failed; retrying");
                }
                Some(Ok(watcher::Event::Init)) => relisted = Some(HashSet::new()),
                Some(Ok(watcher::Event::InitApply(obj))) => {
                    if let Some(uid) = self.upsert(&obj) {
                        relisted.get_or_insert_default().insert(uid);
                    }
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    let now = relisted.take().unwrap_or_default();
                    for gone in seen.difference(&now) {
                        self.remove(gone);
                    }
                    seen = now;
                    self.synced.send_replace(true);
                }
                Some(Ok(watcher::Event::Apply(obj))) => {
                    if let Some(uid) = self.upsert(&obj) {
                        seen.insert(uid);
                    }
                }
                Some(Ok(watcher::Event::Delete(obj))) => {
                    if let Some(uid) = obj.uid() {
                        self.remove(&uid);
                        seen.remove(&uid);
                    }
                }
            }
        }
    }

    fn upsert(&self, obj: &DynamicObject) -> Option<String> {
        let uid = obj.uid()?;
        let identity = Identity {
            api_version: self.ar.api_version.clone(),
            kind: self.ar.kind.clone(),
            namespace: obj.namespace(),
            name: obj.name_any(),
            uid: uid.clone(),
        };
        let work = self.lock().upsert(Node::new(identity, &obj.metadata));
        (self.sink)(work);
        Some(uid)
    }

    fn remove(&self, uid: &str) {
        let work = self.lock().remove(uid);
        (self.sink)(work);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
