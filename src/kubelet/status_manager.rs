//! Sends pod statuses to the apiserver: through the status subresource for the pods it bound
//! here, through a mirror pod for static pods (created when missing, so `kubectl get pods` shows
//! them), and only when a status changed. When a pod is stopped, it finishes the deletion the
//! apiserver started (DELETE with a zero grace period) or removes the mirror pod. Mirrors
//! upstream's `pkg/kubelet/status` and `pkg/kubelet/pod/mirror_client.go`.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pod_workers::StatusUpdate;
use crate::backoff::Backoff;

const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
const CONFIG_HASH: &str = "kubernetes.io/config.hash";
const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// Whether the pod came from a static manifest rather than from the apiserver.
fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_SOURCE))
        .is_some_and(|s| s != "api")
}

/// The waits before failed writes are tried again. Short at first, because at bootstrap the
/// apiserver this kubelet runs comes up a moment after its pod starts.
const RETRY: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(5),
};

/// Applies status updates until `shutdown`. Mirror pods are owned by `node`'s Node object. A
/// write that fails is retried with back-off until it lands or a newer update replaces it.
pub(crate) async fn run(
    client: kube::Client,
    node: String,
    mut updates: mpsc::Receiver<StatusUpdate>,
    shutdown: CancellationToken,
) {
    let mut sent: HashMap<String, PodStatus> = HashMap::new();
    let mut failed: HashMap<String, StatusUpdate> = HashMap::new();
    let mut retries = 0;
    let mut retry_at = Instant::now();
    loop {
        let (batch, retrying) = tokio::select! {
            _ = shutdown.cancelled() => return,
            update = updates.recv() => match update {
                Some(u) => (vec![u], false),
                None => return,
            },
            _ = tokio::time::sleep_until(retry_at), if !failed.is_empty() => {
                (failed.drain().map(|(_, u)| u).collect(), true)
            }
        };
        for update in batch {
            let uid = update.pod.metadata.uid.clone().unwrap_or_default();
            failed.remove(&uid);
            if let Err(err) = apply(&client, &node, &mut sent, &update).await {
                tracing::warn!(pod = %update.pod.metadata.name.as_deref().unwrap_or_default(), error = %crate::error_chain(&err), "updating the apiserver failed; retrying");
                failed.insert(uid, update);
            }
        }
        if failed.is_empty() {
            retries = 0;
        } else if retrying || retry_at <= Instant::now() {
            retries += 1;
            retry_at = Instant::now() + RETRY.after(retries);
        }
    }
}

/// Writes one update: the mirror pod and status of a running pod, or the end of a stopped one.
async fn apply(
    client: &kube::Client,
    node: &str,
    sent: &mut HashMap<String, PodStatus>,
    update: &StatusUpdate,
) -> Result<(), kube::Error> {
    let uid = update.pod.metadata.uid.clone().unwrap_or_default();
    let Some(status) = &update.status else {
        sent.remove(&uid);
        return finish_deletion(client, &update.pod).await;
    };
    // A static pod's mirror is checked on every report: someone may have deleted it.
    let recreated =
        is_static(&update.pod) && ensure_mirror(client, node, &pods_api(client, &update.pod), &update.pod).await?;
    if !recreated && sent.get(&uid) == Some(status) {
        return Ok(());
    }
    send_status(client, &update.pod, status).await?;
    sent.insert(uid, status.clone());
    Ok(())
}

fn pods_api(client: &kube::Client, pod: &Pod) -> Api<Pod> {
    Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"))
}

async fn send_status(client: &kube::Client, pod: &Pod, status: &PodStatus) -> Result<(), kube::Error> {
    let api = pods_api(client, pod);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let patch = serde_json::json!({"status": status});
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // The pod is gone from the apiserver already: nothing to report to.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the static pod's mirror pod, replacing one made from an older version of the manifest
/// or one someone deleted. Returns whether it created one.
async fn ensure_mirror(client: &kube::Client, node: &str, api: &Api<Pod>, pod: &Pod) -> Result<bool, kube::Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let hash = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_HASH))
        .cloned()
        .unwrap_or_default();
    if let Some(existing) = api.get_opt(&name).await? {
        let mirror_of = existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIG_MIRROR))
            .cloned();
        if mirror_of.as_deref() == Some(hash.as_str()) && existing.metadata.deletion_timestamp.is_none() {
            return Ok(false);
        }
        // Deleting a mirror pod does not stop a static pod: it is replaced, as upstream does.
        match api.delete(&name, &DeleteParams::default().grace_period(0)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(CONFIG_MIRROR.into(), hash);
    let node_uid = kube::Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get_opt(node)
        .await?
        .and_then(|n| n.metadata.uid);
    let mirror = Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: pod.metadata.namespace.clone(),
            labels: pod.metadata.labels.clone(),
            annotations: Some(annotations),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: node.to_string(),
                    uid,
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: pod.spec.clone(),
        status: None,
    };
    match api.create(&PostParams::default(), &mirror).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// After a pod's containers are gone: finish the apiserver's graceful deletion, or remove the
/// static pod's mirror.
async fn finish_deletion(client: &kube::Client, pod: &Pod) -> Result<(), kube::Error> {
    let api = pods_api(client, pod);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let params = if is_static(pod) {
        DeleteParams::default().grace_period(0)
    } else {
        DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        }
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
