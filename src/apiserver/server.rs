//! Serving: the listener, one connection task per client (HTTP/1.1 and h2c), and graceful
//! shutdown. Mirrors upstream's `k8s.io/apiserver/pkg/server` secure/insecure serving; every
//! request is handed to `handlers::ApiServer::handle`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handlers::ApiServer;

/// How long in-flight requests get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` until `shutdown`, then drains open connections.
pub(crate) async fn serve(
    listener: TcpListener,
    api: Arc<ApiServer>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        let service = service_fn(move |req| {
            let api = api.clone();
            async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
    // Dropping the tracker's tasks here would leave them running detached; wait for the rest.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, connections.wait()).await;
    Ok(())
}

/// Binds `addr`, refusing nothing but saying so when the insecure port leaves loopback.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the insecure port is listening beyond loopback: anyone who can reach it has full access");
    }
    TcpListener::bind(addr).await
}
