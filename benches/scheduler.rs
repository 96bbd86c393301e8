//! Scheduler throughput for BENCHMARKS.md, with the apiserver in the loop: the release binary
//! runs as an apiserver process and a scheduler process on loopback. The bench registers the
//! nodes and creates the pods through the API with the scheduler stopped, then starts the
//! scheduler and times, from a watch on bound pods, until every pod has a node.
//!
//!     cargo bench --bench scheduler
//!     SCHEDULER_BENCH_SIZES=20x200 cargo bench --bench scheduler     # NODESxPODS, comma-separated
//!     HYPERKUBE_BIN=target/debug/hyperkube ...                        # another binary
//!
//! Not a test: it asserts nothing and prints a table.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

/// The sizes measured unless `SCHEDULER_BENCH_SIZES` says otherwise: (nodes, pods).
const DEFAULT_SIZES: &str = "100x1000,1000x5000";
/// Requests in flight while filling the cluster.
const CONCURRENCY: usize = 32;
/// Workloads the pods belong to, so the spreading score has owners to count.
const WORKLOADS: usize = 10;

/// A child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn start(args: &[String]) -> Self {
        let binary = std::env::var_os("HYPERKUBE_BIN").map_or_else(common::binary, PathBuf::from);
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hyperkube");
        Self(child)
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }
}

fn sizes() -> Vec<(usize, usize)> {
    let spec = std::env::var("SCHEDULER_BENCH_SIZES").unwrap_or_else(|_| DEFAULT_SIZES.into());
    spec.split(',')
        .map(|size| {
            let (nodes, pods) = size.trim().split_once('x').expect("sizes look like NODESxPODS");
            (nodes.parse().expect("a node count"), pods.parse().expect("a pod count"))
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts an apiserver on a fresh data dir and waits until it is ready.
async fn apiserver(dir: &std::path::Path) -> (Process, kube::Client, String) {
    let port = free_port();
    let process = Process::start(&[
        "apiserver".into(),
        format!("--insecure-port={port}"),
        format!("--data-dir={}", dir.display()),
    ]);
    let url = format!("http://127.0.0.1:{port}");
    let client = kube::Client::try_from(kube::Config::new(url.parse().expect("a URL"))).expect("a client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .request_text(http::Request::get("/readyz").body(Vec::new()).expect("a request"))
            .await;
        if ready.is_ok() {
            return (process, client, url);
        }
        assert!(Instant::now() < deadline, "the apiserver did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `make(i)` for `0..count` with [`CONCURRENCY`] in flight.
async fn in_parallel<F, Fut>(count: usize, make: F)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, make) = (next.clone(), make.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    make(i).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker");
    }
}

async fn register_nodes(client: &kube::Client, count: usize) {
    let nodes: Api<Node> = Api::all(client.clone());
    in_parallel(count, move |i| {
        let nodes = nodes.clone();
        async move {
            let name = format!("node-{i}");
            let node = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}
            }))
            .expect("a node");
            nodes
                .create(&PostParams::default(), &node)
                .await
                .expect("create a node");
            let resources = json!({"cpu": "32", "memory": "64Gi", "pods": "110"});
            let status = json!({"status": {"capacity": resources, "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
            nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await
                .expect("set a node's status");
        }
    })
    .await;
}

async fn create_pods(client: &kube::Client, count: usize) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    in_parallel(count, move |i| {
        let pods = pods.clone();
        async move {
            let workload = i % WORKLOADS;
            let pod = serde_json::from_value(json!({
                "metadata": {"name": format!("pod-{i}"), "labels": {"app": format!("app-{workload}")},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{workload}"),
                                         "uid": format!("00000000-0000-0000-0000-{workload:012}"), "controller": true}]},
                "spec": {"containers": [{"name": "app", "image": "busybox",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
            }))
            .expect("a pod");
            pods.create(&PostParams::default(), &pod).await.expect("create a pod");
        }
    })
    .await;
}

struct Figures {
    total: Duration,
    first_to_last: Duration,
    scheduler_rss_mib: f64,
}

/// Starts the scheduler once a watch on bound pods is open, and waits until `pods` pods are bound.
async fn schedule(client: &kube::Client, url: &str, pods: usize) -> Figures {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut events = watcher(api, watcher::Config::default().fields("spec.nodeName!=")).boxed();
    let next = async |events: &mut futures::stream::BoxStream<'_, _>| {
        tokio::time::timeout(Duration::from_secs(120), events.try_next())
            .await
            .expect("a watch event within 120 s")
            .expect("the watch works")
            .expect("the watch goes on")
    };
    while !matches!(next(&mut events).await, watcher::Event::InitDone) {}
    let started = Instant::now();
    let scheduler = Process::start(&[
        "scheduler".into(),
        format!("--master={url}"),
        "--leader-elect=false".into(),
    ]);
    let mut bound = std::collections::HashSet::new();
    let mut first = None;
    while bound.len() < pods {
        if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = next(&mut events).await {
            first.get_or_insert_with(Instant::now);
            bound.insert(pod.metadata.name.unwrap_or_default());
        }
    }
    let done = Instant::now();
    Figures {
        total: done - started,
        first_to_last: done - first.unwrap_or(started),
        scheduler_rss_mib: scheduler.rss_mib(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` probes bench binaries; there is nothing to run as a test.
        return;
    }
    println!(
        "| nodes | pods | pods/s, scheduler start to last binding | pods/s, first to last binding | scheduler RSS |"
    );
    println!("|---|---|---|---|---|");
    for (nodes, pods) in sizes() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (_apiserver, client, url) = apiserver(dir.path()).await;
        register_nodes(&client, nodes).await;
        create_pods(&client, pods).await;
        let figures = schedule(&client, &url, pods).await;
        let rate = |d: Duration| pods as f64 / d.as_secs_f64();
        println!(
            "| {nodes} | {pods} | {:.0}/s ({:.2} s) | {:.0}/s | {:.1} MiB |",
            rate(figures.total),
            figures.total.as_secs_f64(),
            rate(figures.first_to_last),
            figures.scheduler_rss_mib
        );
    }
}
