//! The kubelet's HTTP server: `/healthz`, `/metrics`, `/pods` (the pods it runs, with their status) and
//! `/containerLogs/NAMESPACE/POD/CONTAINER` (`follow`, `tailLines`, `timestamps`, `previous`,
//! `sinceSeconds`), which the apiserver's `pods/log` reaches. Mirrors the read-only part of
//! upstream's `pkg/kubelet/server`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::PodStatuses;
use super::metrics::Metrics;
use super::runtime::{ContainerState, LogOptions, Runtime};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Serves until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    statuses: PodStatuses,
    runtime: Arc<dyn Runtime>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let handler = move |req| {
        let (statuses, runtime, metrics) = (statuses.clone(), runtime.clone(), metrics.clone());
        async move { handle(req, &statuses, runtime.as_ref(), &metrics).await }
    };
    crate::http_serve::serve(listener, handler, shutdown).await;
}

async fn handle(
    req: Request<Incoming>,
    statuses: &PodStatuses,
    runtime: &dyn Runtime,
    metrics: &Metrics,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["healthz"] => text(StatusCode::OK, "ok"),
        ["metrics"] => full(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(metrics.render()),
        ),
        ["pods"] => {
            let pods: Vec<_> = statuses
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods});
            full(
                StatusCode::OK,
                "application/json",
                Bytes::from(serde_json::to_vec(&list).unwrap_or_default()),
            )
        }
        ["containerLogs", namespace, pod, container] => {
            match container_logs(statuses, runtime, namespace, pod, container, &query).await {
                Ok(resp) => resp,
                Err((code, message)) => text(code, &message),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

async fn container_logs(
    statuses: &PodStatuses,
    runtime: &dyn Runtime,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, (StatusCode, String)> {
    let uid = statuses
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .find(|p| p.metadata.namespace.as_deref() == Some(namespace) && p.metadata.name.as_deref() == Some(pod))
        .and_then(|p| p.metadata.uid.clone())
        .ok_or((
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} is not running on this node"),
        ))?;
    let flag = |name: &str| query.get(name).is_some_and(|v| v == "true" || v == "1");
    let number = |name: &str| -> Result<Option<u64>, (StatusCode, String)> {
        query
            .get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| (StatusCode::BAD_REQUEST, format!("{name} must be a whole number")))
            })
            .transpose()
    };
    let runtime_error = |e: super::runtime::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut instances: Vec<_> = runtime
        .list_containers()
        .await
        .map_err(runtime_error)?
        .into_iter()
        .filter(|c| c.pod.uid == uid && c.name == container)
        .collect();
    instances.sort_by_key(|c| (c.restart_count, c.created_at));
    let chosen = if flag("previous") {
        instances
            .iter()
            .rev()
            .skip(1)
            .find(|c| c.state == ContainerState::Exited)
    } else {
        instances.last()
    }
    .ok_or((
        StatusCode::BAD_REQUEST,
        format!(
            "{}container \"{container}\" in pod \"{pod}\" not found",
            if flag("previous") { "previous terminated " } else { "" }
        ),
    ))?;
    let options = LogOptions {
        follow: flag("follow"),
        tail_lines: number("tailLines")?,
        timestamps: flag("timestamps"),
        since: number("sinceSeconds")?.map(|s| SystemTime::now() - Duration::from_secs(s)),
    };
    let logs = runtime.logs(&chosen.id, &options).await.map_err(runtime_error)?;
    let body = StreamBody::new(logs.filter_map(|chunk| async move {
        // A runtime error mid-stream ends the log; the client sees it end.
        chunk.ok().map(|b| Ok::<_, Infallible>(Frame::data(b)))
    }));
    let mut resp = Response::new(BodyExt::boxed_unsync(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    Ok(resp)
}

fn full(code: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(BodyExt::boxed_unsync(Full::new(body)));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    resp
}

fn text(code: StatusCode, message: &str) -> Response<Body> {
    full(code, "text/plain", Bytes::from(message.to_string()))
}
