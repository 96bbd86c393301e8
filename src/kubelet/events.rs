//! Events the kubelet reports about pods and its node (`kubectl describe` shows them): a bad
//! manifest, a failed probe, a failed mount. Written to the apiserver when there is one, in the
//! background, and always logged. Mirrors upstream's event recorder for the kubelet's reasons.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Where events go. Cheap to clone; recording never blocks (a full queue drops the event).
#[derive(Clone, Debug)]
pub(crate) struct Recorder {
    node: Arc<str>,
    queue: Option<mpsc::Sender<Event>>,
}

impl Recorder {
    /// A recorder that only logs (no apiserver).
    pub(crate) fn log_only(node: &str) -> Self {
        Self {
            node: Arc::from(node),
            queue: None,
        }
    }

    /// A recorder writing through `client`; the returned future sends them until `shutdown`.
    pub(crate) fn new(
        client: kube::Client,
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
                node: Arc::from(node),
                queue: Some(tx),
            },
            sender,
        )
    }

    /// Records an event about `pod`.
    pub(crate) fn pod(&self, pod: &Pod, warning: bool, reason: &str, message: &str) {
        let involved = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        };
        self.record(involved, warning, reason, message);
    }

    /// Records an event about this kubelet's node.
    pub(crate) fn node(&self, warning: bool, reason: &str, message: &str) {
        let involved = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.node.to_string()),
            ..Default::default()
        };
        self.record(involved, warning, reason, message);
    }

    fn record(&self, involved: ObjectReference, warning: bool, reason: &str, message: &str) {
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
                component: Some("kubelet".into()),
                host: Some(self.node.to_string()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node.to_string()),
            first_timestamp: now.clone(),
            last_timestamp: now,
            count: Some(1),
            ..Default::default()
        };
        let _ = queue.try_send(event);
    }
}
