//! Events the components report about objects (`kubectl describe` shows them): a bad manifest,
//! a failed probe, a pod that fits no node, a replica set that cannot create pods. Written to the
//! apiserver when there is one, in the background, and always logged, as upstream's event
//! recorder does.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Where events go. Cheap to clone; recording never blocks (a full queue drops the event).
#[derive(Clone, Debug)]
pub(crate) struct Recorder {
    /// Who reports: `kubelet`, `default-scheduler`, `replicaset-controller`.
    component: &'static str,
    /// The node the reporter runs on, when it is a node's agent.
    node: Arc<str>,
    queue: Option<mpsc::Sender<Event>>,
}

impl Recorder {
    /// A recorder that only logs (no apiserver).
    pub(crate) fn log_only(component: &'static str, node: &str) -> Self {
        Self {
            component,
            node: Arc::from(node),
            queue: None,
        }
    }

    /// A recorder writing through `client`; the returned future sends them until `shutdown`.
    pub(crate) fn new(
        client: kube::Client,
        component: &'static str,
        node: &str,
        shutdown: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + use<>) {
        let (tx, mut rx) = mpsc::channel::<Event>(256);
        let sender = async move {
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    e = rx.recv() => match e { Some(e) => e, None => return },
                };
                let ns = event.metadata.namespace.clone().unwrap_or_else(|| "default".into());
                if let Err(err) = Api::<Event>::namespaced(client.clone(), &ns)
                    .create(&PostParams::default(), &event)
                    .await
                {
                    tracing::debug!(error = %crate::error_chain(&err), "writing an event failed");
                }
            }
        };
        (
            Self {
                component,
                node: Arc::from(node),
                queue: Some(tx),
            },
            sender,
        )
    }

    /// Records an event about `obj`.
    pub(crate) fn record<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, message: &str) {
        self.record_ref(obj.object_ref(&()), warning, reason, message);
    }

    /// Records an event about the node the reporter runs on.
    pub(crate) fn node(&self, warning: bool, reason: &str, message: &str) {
        let involved = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.node.to_string()),
            ..Default::default()
        };
        self.record_ref(involved, warning, reason, message);
    }

    /// Records an event about the object `involved` refers to, for callers that know an object
    /// only by its identity (the garbage collector, which handles every kind).
    pub(crate) fn record_ref(&self, involved: ObjectReference, warning: bool, reason: &str, message: &str) {
        let kind = if warning { "Warning" } else { "Normal" };
        let object = format!(
            "{}/{}",
            involved.kind.as_deref().unwrap_or_default(),
            involved.name.as_deref().unwrap_or_default()
        );
        if warning {
            tracing::warn!(%object, reason, message, "event");
        } else {
            tracing::info!(%object, reason, message, "event");
        }
        let Some(queue) = &self.queue else { return };
        let now = Some(Time(jiff::Timestamp::now()));
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", involved.name.as_deref().unwrap_or("event"))),
                namespace: Some(involved.namespace.clone().unwrap_or_else(|| "default".into())),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(kind.into()),
            source: Some(EventSource {
                component: Some(self.component.into()),
                host: Some(self.node.to_string()).filter(|n| !n.is_empty()),
            }),
            reporting_component: Some(self.component.into()),
            reporting_instance: Some(self.node.to_string()),
            first_timestamp: now.clone(),
            last_timestamp: now,
            count: Some(1),
            ..Default::default()
        };
        let _ = queue.try_send(event);
    }
}
