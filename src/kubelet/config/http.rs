//! The manifest-URL source (`--manifest-url`): the URL is fetched every `--http-check-frequency`
//! and its body — one Pod, or a `PodList`/`List` of them, as JSON or YAML — becomes static pods.
//! A fetch that fails keeps the last good set, so a flaky server does not stop pods. Mirrors
//! upstream's `pkg/kubelet/config/http.go`. Plain HTTP only.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Snapshot, Source, static_pod};
use crate::events::Recorder;

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches `url`; the body as bytes, or why not.
async fn fetch(url: &str) -> Result<Bytes, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// manifest URLs are supported".into());
    }
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri.authority().map_or(format!("{host}:{port}"), |a| a.to_string());
    let authority = if uri.port_u16().is_some() {
        authority
    } else {
        format!("{authority}:{port}")
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let response = crate::http_get::get(&authority, path, &[])
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("the server answered {}", response.status()));
    }
    Ok(response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes())
}

/// The pods a manifest body holds; rejected ones are reported by name or position.
pub(crate) fn parse(body: &[u8], url: &str, node_name: &str) -> Result<(Vec<Pod>, Vec<String>), String> {
    let doc: serde_json::Value = serde_yaml::from_slice(body).map_err(|e| format!("not valid YAML or JSON: {e}"))?;
    let items = match doc.get("kind").and_then(|k| k.as_str()) {
        Some("PodList" | "List") => doc.get("items").and_then(|i| i.as_array()).cloned().unwrap_or_default(),
        _ => vec![doc],
    };
    let candidates = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| (i, static_pod(item, url, node_name, Source::Http)));
    let (pods, rejected) = super::first_of_each_name(candidates);
    let rejected = rejected
        .into_iter()
        .map(|(i, reason)| format!("item {i}: {reason}"))
        .collect();
    Ok((pods, rejected))
}

/// Polls `url` every `period` and sends a snapshot when the pods change, until `shutdown`.
pub(crate) async fn run(
    url: String,
    node_name: String,
    period: Duration,
    out: mpsc::Sender<Snapshot>,
    events: Recorder,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    let mut last: Option<Vec<String>> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let body = match tokio::time::timeout(FETCH_TIMEOUT, fetch(&url)).await {
            Ok(Ok(body)) => body,
            Ok(Err(err)) => {
                tracing::warn!(%url, error = %err, "fetching the manifest URL failed; keeping the last pods");
                continue;
            }
            Err(_) => {
                tracing::warn!(%url, "fetching the manifest URL timed out; keeping the last pods");
                continue;
            }
        };
        let (pods, rejected) = match parse(&body, &url, &node_name) {
            Ok(parsed) => parsed,
            Err(err) => {
                tracing::error!(%url, error = %err, "the manifest URL's content is unusable; keeping the last pods");
                continue;
            }
        };
        let uids: Vec<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        if last.as_ref() == Some(&uids) {
            continue;
        }
        for reason in &rejected {
            events.node(true, "InvalidManifest", &format!("skipping a pod from {url}: {reason}"));
        }
        last = Some(uids);
        if out
            .send(Snapshot {
                source: Source::Http,
                pods,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pod_lists_from_a_url_become_static_pods() {
        let list = br#"{"kind":"PodList","items":[
            {"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"x"}]}},
            {"metadata":{"name":"b"},"spec":{"containers":[{"name":"c"}]}}]}"#;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/pods.json", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", list.len());
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(list).await.unwrap();
        });
        let body = fetch(&url).await.unwrap();
        let (pods, rejected) = parse(&body, &url, "n1").unwrap();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].metadata.name.as_deref(), Some("a-n1"));
        assert_eq!(
            pods[0].metadata.annotations.as_ref().unwrap()["kubernetes.io/config.source"],
            "http"
        );
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].contains("image: Required value"), "{rejected:?}");
        server.await.unwrap();
        assert!(
            fetch("https://example.invalid/x")
                .await
                .unwrap_err()
                .contains("only http://")
        );
    }
}
