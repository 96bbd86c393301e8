//! The apiserver source: the pods bound to this node (`spec.nodeName`), watched through a
//! kube-runtime reflector that re-lists and resumes by itself after disconnects. Every change
//! sends the whole set as a snapshot, like the other sources. Mirrors upstream's
//! `pkg/kubelet/config/apiserver.go`.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Snapshot, Source};

/// Whether `pod` is the apiserver's mirror of a static pod.
pub(crate) fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
}

/// Sends a snapshot of this node's pods after every change, until `shutdown`.
pub(crate) async fn run(client: kube::Client, node: String, out: mpsc::Sender<Snapshot>, shutdown: CancellationToken) {
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let (store, writer) = reflector::store();
    let mut events = reflector(writer, watcher(pods, config)).default_backoff().boxed();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.next() => match event {
                Some(Ok(watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_))) => {
                    // Mirror pods stand for static pods this kubelet already runs from their files.
                    let pods: Vec<Pod> = store.state().iter().filter(|p| !is_mirror(p)).map(|p| (**p).clone()).collect();
                    if out.send(Snapshot { source: Source::ApiServer, pods }).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => tracing::warn!(error = %crate::error_chain(&err), "watching this node's pods failed; retrying"),
                None => return,
            },
        }
    }
}
