//! Controller-manager throughput for BENCHMARKS.md: a Deployment of 1,000 replicas, timed from
//! its creation until 1,000 pods exist (as a pod watch sees them), and until the Deployment's
//! status counts them. Runs the release binary twice as processes on loopback, `hyperkube
//! apiserver` on a fresh data dir and `hyperkube controller-manager --leader-elect=false`.
//! No kubelet or scheduler runs: the pods stay Pending, which is all the controllers need.
//!
//!     cargo bench --bench controller
//!
//! `BENCH_REPLICAS` changes the size; `HYPERKUBE_BIN` runs another binary (a debug build, to
//! check the bench itself quickly). Not a test: it asserts nothing and prints a table.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

/// A child process, killed and reaped when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(binary: &Path, args: &[&str]) -> Process {
    Process(
        Command::new(binary)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hyperkube"),
    )
}

/// Polls until the apiserver at `client` lists namespaces.
async fn wait_ready(client: &Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while namespaces.list(&Default::default()).await.is_err() {
        assert!(Instant::now() < deadline, "the apiserver did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` probes bench binaries; there is nothing to run as a test.
        return;
    }
    let replicas: usize = std::env::var("BENCH_REPLICAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let binary = std::env::var_os("HYPERKUBE_BIN").map_or_else(common::binary, PathBuf::from);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let data_dir = dir.path().join("data");
    let _apiserver = spawn(
        &binary,
        &[
            "apiserver",
            &format!("--insecure-port={port}"),
            &format!("--data-dir={}", data_dir.display()),
        ],
    );
    let client = Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    wait_ready(&client).await;
    let _manager = spawn(
        &binary,
        &["controller-manager", "--master", &url, "--leader-elect=false"],
    );

    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "bench"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let mut events = watcher(pods, watcher::Config::default()).boxed();
    // The watch is listening once its first (empty) list is done.
    while !matches!(events.next().await, Some(Ok(watcher::Event::InitDone))) {}

    let deployment: Deployment = serde_json::from_value(json!({"metadata": {"name": "bench"}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
        "template": {"metadata": {"labels": {"app": "bench"}},
                     "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}}))
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "bench");
    let started = Instant::now();
    deployments.create(&PostParams::default(), &deployment).await.unwrap();

    let mut seen = std::collections::HashSet::new();
    let mut first = None;
    while seen.len() < replicas {
        match events.next().await {
            Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                first.get_or_insert_with(|| started.elapsed());
                seen.insert(pod.name_any());
            }
            Some(_) => {}
            None => panic!("the pod watch ended"),
        }
    }
    let all_pods = started.elapsed();
    let counted = loop {
        let d = deployments.get("bench").await.unwrap();
        if d.status.and_then(|s| s.replicas) == Some(replicas as i32) {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let rows = [
        ("first pod exists".to_string(), secs(first.unwrap_or_default())),
        (format!("{replicas} pods exist"), secs(all_pods)),
        (
            "pods created per second".into(),
            format!("{:.0}/s", replicas as f64 / all_pods.as_secs_f64()),
        ),
        (format!("Deployment status counts {replicas}"), secs(counted)),
    ];
    println!("\nDeployment of {replicas} replicas, from its creation to:\n");
    println!("| measure | value |\n|---|---|");
    for (what, value) in rows {
        println!("| {what} | {value} |");
    }
}
