//! A plain HTTP/1.1 GET over a new connection: all the kubelet's HTTP probes, its manifest-URL
//! source and the apiserver's log proxy need. No pool, no TLS; callers bound it with timeouts.

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

/// Sends `GET path` to `authority` (`host:port`, IPv6 hosts in brackets) with `headers`. The
/// connection ends when the response body has been read or dropped.
pub(crate) async fn get(
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<http::Response<Incoming>> {
    let stream = tokio::net::TcpStream::connect(authority).await?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    // Drives the connection; it finishes when the response does, so it needs no owner.
    tokio::spawn(connection);
    let mut request = http::Request::get(path).header(http::header::HOST, authority);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(std::io::Error::other)?;
    sender.send_request(request).await.map_err(std::io::Error::other)
}
