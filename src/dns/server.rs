//! The DNS listeners: one UDP socket, each datagram answered by a task of its own (bounded, so a
//! flood drops queries instead of memory), and one TCP listener whose connections carry
//! length-prefixed messages, several in a row, until they go idle (RFC 7766).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Transport;
use super::handler::Handler;

/// UDP queries answered at once; more are dropped until some finish.
const MAX_UDP_IN_FLIGHT: usize = 1024;
/// Open TCP connections; more are closed at once.
const MAX_TCP_CONNECTIONS: usize = 256;
/// How long a TCP connection may sit without a complete query.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers datagrams on `socket` until `shutdown`, then waits for the queries in flight.
pub(super) async fn serve_udp(socket: UdpSocket, handler: Arc<Handler>, shutdown: CancellationToken) {
    let socket = Arc::new(socket);
    let permits = Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT));
    let tasks = TaskTracker::new();
    let mut buf = vec![0; 65535];
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(err) => {
                    tracing::debug!(error = %err, "receiving a datagram failed");
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many queries in flight; dropping one");
            continue;
        };
        let packet = buf[..n].to_vec();
        let (socket, handler) = (socket.clone(), handler.clone());
        tasks.spawn(async move {
            let _permit = permit;
            if let Some(answer) = handler.handle(&packet, Transport::Udp).await
                && let Err(err) = socket.send_to(&answer, peer).await
            {
                tracing::debug!(%peer, error = %err, "sending an answer failed");
            }
        });
    }
    tasks.close();
    tasks.wait().await;
}

/// Serves TCP connections on `listener` until `shutdown`, then waits for them to close.
pub(super) async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let connection = |stream| {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("too many TCP connections; closing a new one");
            return None;
        };
        let handler = handler.clone();
        Some(async move {
            let _permit = permit;
            serve_connection(stream, &handler).await;
        })
    };
    crate::http_serve::accept(listener, connection, shutdown).await;
}

/// Answers queries on one connection, in order, until the client closes it, it goes idle, or
/// it breaks the framing.
async fn serve_connection(mut stream: TcpStream, handler: &Handler) {
    loop {
        let mut packet = match tokio::time::timeout(TCP_IDLE_TIMEOUT, read_message(&mut stream)).await {
            Ok(Ok(packet)) => packet,
            Ok(Err(_)) | Err(_) => return,
        };
        let Some(answer) = handler.handle(&packet, Transport::Tcp).await else {
            continue;
        };
        let Ok(len) = u16::try_from(answer.len()) else { return };
        packet.clear();
        packet.extend_from_slice(&len.to_be_bytes());
        packet.extend_from_slice(&answer);
        if stream.write_all(&packet).await.is_err() {
            return;
        }
    }
}

async fn read_message(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut packet = vec![0; usize::from(len)];
    stream.read_exact(&mut packet).await?;
    Ok(packet)
}
