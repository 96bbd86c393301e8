//! The accept loop of the components' small HTTP servers (the kubelet's, the proxy's health and
//! metrics): HTTP/1.1 and h2c on one port, each connection served until it ends or `shutdown`.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `handler` on `listener` until `shutdown`, then waits for open connections to close.
pub(crate) async fn serve<F, Fut, B>(listener: TcpListener, handler: F, shutdown: CancellationToken)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// A plain-text response with `status`.
pub(crate) fn text(status: http::StatusCode, body: String) -> Response<http_body_util::Full<bytes::Bytes>> {
    let mut response = Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// `registry` in Prometheus' text format, as `/metrics` serves it.
pub(crate) fn metrics(registry: &prometheus::Registry) -> Response<http_body_util::Full<bytes::Bytes>> {
    use prometheus::Encoder;
    let mut body = Vec::new();
    if let Err(err) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut body) {
        return text(http::StatusCode::INTERNAL_SERVER_ERROR, err.to_string());
    }
    let mut response = Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
