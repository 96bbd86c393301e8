//! Forwarding of the names the cluster does not own to the upstream nameservers: those of a
//! resolv.conf (or kube-dns's `--nameservers`), minus this server itself, so that a host whose
//! resolv.conf points at the cluster DNS does not make it ask itself forever. The query goes out
//! as the client sent it, over the transport it came on (a truncated UDP answer makes the client
//! retry over TCP, which is then forwarded over TCP); each upstream is tried in turn, each with
//! a timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::Transport;

/// How long one upstream has to answer before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    #[error("no upstream nameserver is configured")]
    NoUpstream,
    #[error("asking {upstream} failed")]
    Io {
        upstream: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{upstream} did not answer within {UPSTREAM_TIMEOUT:?}")]
    Timeout { upstream: SocketAddr },
}

/// The upstream nameservers, in the order they are tried.
#[derive(Debug, Clone)]
pub(super) struct Forwarder {
    upstreams: Vec<SocketAddr>,
}

impl Forwarder {
    /// Forwards to `upstreams` except those that are `own` (the address this server answers on).
    pub(super) fn new(upstreams: Vec<SocketAddr>, own: SocketAddr) -> Self {
        let (upstreams, loops): (Vec<_>, Vec<_>) = upstreams.into_iter().partition(|u| !is_self(*u, own));
        for upstream in loops {
            tracing::warn!(%upstream, "not forwarding to an upstream that is this server");
        }
        if upstreams.is_empty() {
            tracing::warn!("no upstream nameservers: names outside the cluster will fail");
        }
        Self { upstreams }
    }

    /// The upstreams this forwarder uses.
    pub(super) fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The first upstream's answer to `query` (a whole DNS message) over `transport`.
    pub(super) async fn forward(&self, query: &[u8], transport: Transport) -> Result<Vec<u8>, Error> {
        let mut last = Error::NoUpstream;
        for &upstream in &self.upstreams {
            let asked = async {
                match transport {
                    Transport::Udp => ask_udp(upstream, query).await,
                    Transport::Tcp => ask_tcp(upstream, query).await,
                }
            };
            match tokio::time::timeout(UPSTREAM_TIMEOUT, asked).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(source)) => last = Error::Io { upstream, source },
                Err(_) => last = Error::Timeout { upstream },
            }
            tracing::debug!(error = %crate::error_chain(&last), "upstream failed; trying the next");
        }
        Err(last)
    }
}

async fn ask_udp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // A fresh socket per query: a random source port, and only the upstream can reply.
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A reply to some other query (or garbage) is not the answer; keep waiting.
        if n >= 12 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn ask_tcp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut answer = vec![0; usize::from(len)];
    stream.read_exact(&mut answer).await?;
    if answer.len() < 12 || answer[..2] != query[..2] {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an answer to the query",
        ));
    }
    Ok(answer)
}

/// Whether a query sent to `upstream` would come back to the server answering on `own`.
fn is_self(upstream: SocketAddr, own: SocketAddr) -> bool {
    upstream.port() == own.port()
        && (upstream.ip() == own.ip() || (own.ip().is_unspecified() && upstream.ip().is_loopback()))
}

/// The `nameserver` lines of a resolv.conf, on port 53. Scoped IPv6 addresses (`fe80::1%eth0`)
/// are skipped, as the interface cannot be honoured here.
pub(super) fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(ip)) => ip.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// One of kube-dns's `--nameservers`: `IP` (port 53) or `IP:PORT` (`[IPv6]:PORT`).
pub(super) fn parse_nameserver(value: &str) -> Result<SocketAddr, String> {
    value
        .parse::<SocketAddr>()
        .or_else(|_| value.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{value:?} is not an IP or IP:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_are_read_on_port_53() {
        let text = "# generated\nsearch example.com\nnameserver 192.0.2.1\n; old\nnameserver 2001:db8::1\n\
                    nameserver fe80::1%eth0\noptions ndots:5\nnameserver\n";
        let want: Vec<SocketAddr> = vec!["192.0.2.1:53".parse().unwrap(), "[2001:db8::1]:53".parse().unwrap()];
        assert_eq!(parse_resolv_conf(text), want);
    }

    #[test]
    fn nameservers_flag_takes_addresses_with_and_without_ports() {
        assert_eq!(parse_nameserver("192.0.2.1"), Ok("192.0.2.1:53".parse().unwrap()));
        assert_eq!(
            parse_nameserver("127.0.0.2:5353"),
            Ok("127.0.0.2:5353".parse().unwrap())
        );
        assert_eq!(parse_nameserver("[::1]:5353"), Ok("[::1]:5353".parse().unwrap()));
        assert!(parse_nameserver("dns.example").is_err());
    }

    #[test]
    fn the_server_itself_is_never_an_upstream() {
        let own: SocketAddr = "0.0.0.0:53".parse().unwrap();
        let upstreams = vec![
            "127.0.0.1:53".parse().unwrap(),
            "127.0.0.53:53".parse().unwrap(),
            "192.0.2.1:53".parse().unwrap(),
            "127.0.0.1:5353".parse().unwrap(),
        ];
        let forwarder = Forwarder::new(upstreams, own);
        let want: Vec<SocketAddr> = vec!["192.0.2.1:53".parse().unwrap(), "127.0.0.1:5353".parse().unwrap()];
        assert_eq!(forwarder.upstreams(), want);
        let bound: SocketAddr = "10.0.0.10:53".parse().unwrap();
        let forwarder = Forwarder::new(vec![bound, "127.0.0.1:53".parse().unwrap()], bound);
        assert_eq!(forwarder.upstreams(), ["127.0.0.1:53".parse::<SocketAddr>().unwrap()]);
    }
}
