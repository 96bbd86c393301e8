//! Apiserver figures for BENCHMARKS.md: cold start, creates/s, GETs/s, LIST latency, watch
//! delivery latency and RSS, on the embedded store and on etcd (Debian's etcd-server, started
//! here on free loopback ports with a temporary data dir). Runs the release binary as its own
//! process on loopback and drives it over plain HTTP/1.1 keep-alive connections, one per
//! simulated client.
//!
//!     cargo bench --bench apiserver
//!
//! Not a test: it asserts nothing and prints a table.

mod common;
use common::{binary, percentile};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Sender = SendRequest<Full<Bytes>>;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn rss_mib(&self) -> f64 {
        rss_mib(self.child.id())
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// A single-member etcd on free loopback ports with a temporary data dir; killed when dropped.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    async fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = dir.path().join("etcd.log");
        let child = Command::new("etcd")
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=bench={peer_url}"))
            .args(["--logger=zap", "--log-outputs=stderr"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("etcd starts (scripts/ensure-etcd.sh installs Debian's etcd-server)");
        let etcd = Etcd { child, url, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("serving client traffic")
        {
            assert!(Instant::now() < deadline, "etcd did not serve within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        etcd
    }
}

/// Starts the apiserver on a fresh data dir (or on `etcd`, under its own prefix); returns it and
/// the time until /readyz answered 200.
async fn start(dir: &Path, etcd: Option<&Etcd>) -> (Server, Duration) {
    let port = free_port();
    let store: Vec<String> = match etcd {
        Some(etcd) => vec![
            format!("--etcd-servers={}", etcd.url),
            format!("--etcd-prefix=/bench-{port}"),
        ],
        None => Vec::new(),
    };
    let started = Instant::now();
    let child = Command::new(binary())
        .args(["apiserver", &format!("--insecure-port={port}"), "--data-dir"])
        .arg(dir)
        .args(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hyperkube");
    let server = Server { child, port };
    loop {
        if let Ok(mut c) = connect(port).await
            && let Ok((200, _)) = request(&mut c, Method::GET, "/readyz", None).await
        {
            return (server, started.elapsed());
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

async fn connect(port: u16) -> std::io::Result<Sender> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn request(
    c: &mut Sender,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<(u16, Bytes), hyper::Error> {
    c.ready().await?;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("valid request");
    let resp = c.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn configmap(name: &str) -> String {
    format!(
        r#"{{"metadata":{{"name":"{name}","labels":{{"app":"bench"}}}},"data":{{"config":"{}"}}}}"#,
        "x".repeat(200)
    )
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn create_namespace(port: u16, name: &str) {
    let mut c = connect(port).await.unwrap();
    let (code, _) = request(
        &mut c,
        Method::POST,
        "/api/v1/namespaces",
        Some(format!(r#"{{"metadata":{{"name":"{name}"}}}}"#)),
    )
    .await
    .unwrap();
    assert_eq!(code, 201);
}

/// `total` creates spread over `concurrency` connections; returns (creates/s, p50, p99).
async fn creates(port: u16, ns: &str, prefix: &str, total: usize, concurrency: usize) -> (f64, Duration, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let path = format!("/api/v1/namespaces/{ns}/configmaps");
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = connect(port).await.unwrap();
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                let (code, _) = request(&mut c, Method::POST, &path, Some(configmap(&format!("{prefix}-{i}"))))
                    .await
                    .unwrap();
                assert_eq!(code, 201);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    (
        total as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
    )
}

/// `total` GETs of existing objects over `concurrency` connections; returns GETs/s and p99.
async fn gets(port: u16, ns: &str, prefix: &str, objects: usize, total: usize, concurrency: usize) -> (f64, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let ns = ns.to_string();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = connect(port).await.unwrap();
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let path = format!("/api/v1/namespaces/{ns}/configmaps/{prefix}-{}", (i * 7919) % objects);
                let t = Instant::now();
                let (code, _) = request(&mut c, Method::GET, &path, None).await.unwrap();
                assert_eq!(code, 200);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    (total as f64 / elapsed.as_secs_f64(), percentile(&all, 0.99))
}

/// LIST latency of a namespace, over `runs` sequential requests: (p50, p99, bytes).
async fn list(port: u16, ns: &str, runs: usize) -> (Duration, Duration, usize) {
    let mut c = connect(port).await.unwrap();
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let mut latencies = Vec::new();
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let (code, body) = request(&mut c, Method::GET, &path, None).await.unwrap();
        latencies.push(t.elapsed());
        assert_eq!(code, 200);
        size = body.len();
    }
    latencies.sort();
    (percentile(&latencies, 0.5), percentile(&latencies, 0.99), size)
}

/// Watch delivery: one watcher on a namespace, a writer creating objects one at a time. Returns
/// the p50/p99 from sending a create to the watcher holding the event, and from the create's
/// acknowledgement to the event (0 when the event came first).
async fn watch_latency(port: u16, ns: &str, events: usize) -> [Duration; 4] {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!(
        "/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion="
    ))
    .header("host", "127.0.0.1")
    .body(Full::new(Bytes::new()))
    .unwrap();
    let mut body = sender.send_request(req).await.unwrap().into_body();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    tokio::spawn(async move {
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Some(data) = frame.data_ref() {
                pending.extend_from_slice(data);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    pending.drain(..=end);
                    let _ = tx.send(Instant::now());
                }
            }
        }
    });
    let mut c = connect(port).await.unwrap();
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let (mut end_to_end, mut after_ack) = (Vec::new(), Vec::new());
    for i in 0..events {
        let sent = Instant::now();
        let (code, _) = request(&mut c, Method::POST, &path, Some(configmap(&format!("w-{i}"))))
            .await
            .unwrap();
        let acked = Instant::now();
        assert_eq!(code, 201);
        let seen = rx.recv().await.expect("watch event");
        end_to_end.push(seen - sent);
        after_ack.push(seen.saturating_duration_since(acked));
    }
    end_to_end.sort();
    after_ack.sort();
    [
        percentile(&end_to_end, 0.5),
        percentile(&end_to_end, 0.99),
        percentile(&after_ack, 0.5),
        percentile(&after_ack, 0.99),
    ]
}

/// Every figure, in order, for one store: on `etcd` when given, else the embedded store.
async fn figures(etcd: Option<&Etcd>) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = Vec::new();

    let mut starts = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let (server, took) = start(dir.path(), etcd).await;
        starts.push(took);
        drop(server);
    }
    starts.sort();
    rows.push((
        "cold start to /readyz (median of 5, empty store)".into(),
        ms(percentile(&starts, 0.5)),
    ));

    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start(dir.path(), etcd).await;
    let port = server.port;
    rows.push(("RSS at idle, empty store".into(), rss(&server, etcd)));

    create_namespace(port, "big").await;
    let (rate, p50, p99) = creates(port, "big", "cm", 10_000, 32).await;
    rows.push((
        "creates/s, concurrency 32 (10,000 ConfigMaps)".into(),
        format!("{rate:.0}/s (p50 {}, p99 {})", ms(p50), ms(p99)),
    ));

    rows.push(("RSS holding 10,000 ConfigMaps".into(), rss(&server, etcd)));

    create_namespace(port, "c1").await;
    let (rate, p50, p99) = creates(port, "c1", "cm", 2_000, 1).await;
    rows.push((
        "creates/s, concurrency 1 (2,000 ConfigMaps)".into(),
        format!("{rate:.0}/s (p50 {}, p99 {})", ms(p50), ms(p99)),
    ));

    for concurrency in [8, 32] {
        let (rate, p99) = gets(port, "big", "cm", 10_000, 100_000, concurrency).await;
        rows.push((
            format!("GETs/s, concurrency {concurrency}"),
            format!("{rate:.0}/s (p99 {})", ms(p99)),
        ));
    }

    create_namespace(port, "thousand").await;
    creates(port, "thousand", "cm", 1_000, 32).await;
    let (p50, p99, size) = list(port, "thousand", 100).await;
    rows.push((
        "LIST of 1,000 ConfigMaps".into(),
        format!("p50 {}, p99 {} ({} KiB)", ms(p50), ms(p99), size / 1024),
    ));
    let (p50, p99, size) = list(port, "big", 20).await;
    rows.push((
        "LIST of 10,000 ConfigMaps".into(),
        format!("p50 {}, p99 {} ({} KiB)", ms(p50), ms(p99), size / 1024),
    ));

    create_namespace(port, "watched").await;
    let [e2e50, e2e99, ack50, ack99] = watch_latency(port, "watched", 2_000).await;
    rows.push((
        "watch delivery, create sent → event received".into(),
        format!("p50 {}, p99 {}", ms(e2e50), ms(e2e99)),
    ));
    rows.push((
        "watch delivery, create acknowledged → event received".into(),
        format!("p50 {}, p99 {}", ms(ack50), ms(ack99)),
    ));

    rows.push((
        "RSS holding 15,000 ConfigMaps, after every row above".into(),
        rss(&server, etcd),
    ));

    rows
}

/// The apiserver's RSS, and etcd's beside it.
fn rss(server: &Server, etcd: Option<&Etcd>) -> String {
    match etcd {
        Some(etcd) => format!(
            "{:.1} MiB (+ etcd {:.1} MiB)",
            server.rss_mib(),
            rss_mib(etcd.child.id())
        ),
        None => format!("{:.1} MiB", server.rss_mib()),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` probes bench binaries; there is nothing to run as a test.
        return;
    }
    let embedded = figures(None).await;
    let on_etcd = {
        let etcd = Etcd::start().await;
        figures(Some(&etcd)).await
    };
    println!("| figure | embedded store | etcd |\n|---|---|---|");
    for ((name, value), (_, etcd)) in embedded.into_iter().zip(on_etcd) {
        println!("| {name} | {value} | {etcd} |");
    }
}
