//! The components' TCP accept loop, and the small HTTP servers built on it (the kubelet's, the
//! proxy's and dns' health and metrics): HTTP/1.1 and h2c on one port, each connection served
//! until it ends or `shutdown`. The DNS server's TCP listener uses the accept loop too.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts connections on `listener` until `shutdown`, and runs what `connection` makes of each
/// as a task of its own until it ends or `shutdown`; then waits for those tasks. `connection`
/// may refuse one (`None`), which closes it. A failed accept (often a transient lack of file
/// descriptors) is logged and retried, never fatal.
pub(crate) async fn accept<F, Fut>(listener: TcpListener, mut connection: F, shutdown: CancellationToken)
where
    F: FnMut(TcpStream) -> Option<Fut>,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(serve) = connection(stream) else {
            continue;
        };
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = serve => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
    tasks.close();
    tasks.wait().await;
}

/// Serves `handler` on `listener` until `shutdown`, then waits for open connections to close.
pub(crate) async fn serve<F, Fut, B>(listener: TcpListener, handler: F, shutdown: CancellationToken)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = |stream| {
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        Some(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            // A connection that breaks concerns only its client.
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        })
    };
    accept(listener, connection, shutdown).await;
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
