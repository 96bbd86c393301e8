//! What the in-process integration tests share: a real apiserver on an ephemeral loopback port,
//! its embedded store in a temporary directory, and component flags parsed as the binary would.
#![allow(dead_code, unreachable_pub)] // each test crate uses its own part of this module

use hyperkube::apiserver::{ApiServer, Args, Config};
use kube::Client;
use tokio_util::sync::CancellationToken;

/// A running apiserver; stops when dropped.
pub struct TestServer {
    pub client: Client,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts an apiserver on a free loopback port.
pub async fn start() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let args = Args {
        insecure_bind_address: "127.0.0.1".parse().unwrap(),
        insecure_port: 0,
        data_dir: dir.path().to_path_buf(),
        service_cluster_ip_range: "10.0.0.0/24".into(),
        service_node_port_range: "30000-32767".into(),
        watch_cache_size: 1000,
        default_not_ready_toleration_seconds: 300,
        default_unreachable_toleration_seconds: 300,
        v: 0,
    };
    let shutdown = CancellationToken::new();
    let server = ApiServer::new(Config::try_from(args).unwrap(), shutdown.clone())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        server.run(token).await.unwrap();
    });
    let url = format!("http://{addr}");
    let config = kube::Config::new(url.parse().unwrap());
    TestServer {
        client: Client::try_from(config).unwrap(),
        url,
        shutdown,
        _dir: dir,
        task: Some(task),
    }
}

/// A component's flags from `argv` (without the program name), as `hyperkube COMPONENT` parses them.
pub fn flags<A: clap::Args>(argv: &[&str]) -> A {
    #[derive(clap::Parser)]
    struct Cli<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }
    <Cli<A> as clap::Parser>::parse_from(std::iter::once("test").chain(argv.iter().copied())).args
}

/// Polls `check` every 50 ms until it returns `Some`, and returns that; panics naming `what`
/// after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Registers a Ready node with this allocatable (`cpu` like "4", `memory` like "8Gi"), as a
/// kubelet would.
pub async fn register_node(client: &Client, name: &str, cpu: &str, memory: &str, pods: u32) {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let now = jiff::Timestamp::now().to_string();
    let resources = serde_json::json!({"cpu": cpu, "memory": memory, "pods": pods.to_string()});
    let status = serde_json::json!({"status": {
        "capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}]
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

/// Sets a pod's phase and Ready condition through the status subresource, as its kubelet would.
pub async fn mark_pod(client: &Client, namespace: &str, name: &str, phase: &str, ready: bool) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, Patch, PatchParams};
    let now = jiff::Timestamp::now().to_string();
    let flag = if ready { "True" } else { "False" };
    let status = serde_json::json!({"status": {
        "phase": phase, "startTime": now, "podIP": "10.244.0.10",
        "conditions": [{"type": "Ready", "status": flag, "lastTransitionTime": now},
                       {"type": "ContainersReady", "status": flag, "lastTransitionTime": now}]
    }});
    Api::<Pod>::namespaced(client.clone(), namespace)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}
