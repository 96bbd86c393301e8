//! What the in-process integration tests share: a real apiserver on an ephemeral loopback port,
//! its embedded store in a temporary directory (or a real etcd of its own), and component flags
//! parsed as the binary would.
#![allow(dead_code, unreachable_pub)] // each test crate uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
    /// The etcd this server alone uses, stopped after it.
    etcd: Option<Etcd>,
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
    start_with(&[]).await
}

/// Starts an apiserver on a fresh single-member etcd of its own (see `Etcd`), which stops with it.
pub async fn start_on_etcd() -> TestServer {
    let etcd = Etcd::start().await;
    let mut server = start_with(&[&format!("--etcd-servers={}", etcd.urls())]).await;
    server.etcd = Some(etcd);
    server
}

/// Starts an apiserver on a free loopback port with these extra flags; its data dir is temporary.
pub async fn start_with(extra: &[&str]) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = format!("--data-dir={}", dir.path().display());
    let mut argv = vec!["--insecure-port=0", &data_dir, "--watch-cache-size=1000"];
    argv.extend_from_slice(extra);
    let args: Args = flags(&argv);
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
        etcd: None,
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

/// The events in `namespace` whose reason is `reason`.
pub async fn events_by_reason(
    client: &Client,
    namespace: &str,
    reason: &str,
) -> Vec<k8s_openapi::api::core::v1::Event> {
    use kube::api::{Api, ListParams};
    let list = Api::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter(|e: &k8s_openapi::api::core::v1::Event| e.reason.as_deref() == Some(reason))
        .collect()
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Server certificates for an etcd that serves TLS and asks clients for certificates signed by
/// `ca`: paths to PEM files.
pub struct EtcdTlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A real etcd (Debian's etcd-server; `scripts/ensure-etcd.sh` installs it) of one or more
/// members on free loopback ports, with temporary data dirs. Every member is killed by its PID
/// when this is dropped.
pub struct Etcd {
    members: Vec<Member>,
    tls: Option<EtcdTlsFiles>,
    _dir: tempfile::TempDir,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// How many times the log has said this member serves.
    starts_seen: usize,
}

impl Etcd {
    /// Starts a single-member etcd over plain HTTP and waits until it serves.
    pub async fn start() -> Etcd {
        Self::start_cluster(1, None).await
    }

    /// Starts `size` members forming one cluster (serving TLS with `tls`), and waits until every
    /// member serves.
    pub async fn start_cluster(size: usize, tls: Option<EtcdTlsFiles>) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let members = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("m{i}")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
                starts_seen: 0,
            })
            .collect();
        let mut etcd = Etcd {
            members,
            tls,
            _dir: dir,
        };
        for i in 0..size {
            etcd.spawn(i);
        }
        for i in 0..size {
            etcd.wait_serving(i).await;
        }
        etcd
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The members' client URLs, comma-separated, as `--etcd-servers` takes them.
    pub fn urls(&self) -> String {
        (0..self.members.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Member `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.members[i].client_port)
    }

    fn spawn(&mut self, i: usize) {
        let binary = which("etcd").unwrap_or_else(|| {
            panic!(
                "etcd is not installed: run scripts/ensure-etcd.sh (scripts/test does) to install Debian's etcd-server"
            )
        });
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let client_url = self.url(i);
        let m = &self.members[i];
        let mut command = Command::new(binary);
        command
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", m.peer_port))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                m.peer_port
            ))
            .arg(format!("--initial-cluster={}", cluster.join(",")))
            .arg("--initial-cluster-token=hyperkube-test")
            .args(["--logger=zap", "--log-outputs=stderr"]);
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.members[i].child = Some(child);
    }

    /// Polls member `i`'s log until it serves clients (or fails, showing the log).
    async fn wait_serving(&mut self, i: usize) {
        let log = self.members[i].log.clone();
        // Each start of a member appends to its log: count the lines saying it serves.
        let serving = |text: &str| text.matches("serving client traffic").count();
        let before = self.members[i].starts_seen;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if serving(&text) > before {
                self.members[i].starts_seen = serving(&text);
                return;
            }
            if let Some(Ok(Some(status))) = self.members[i].child.as_mut().map(|c| c.try_wait()) {
                panic!("etcd member {i} exited with {status} before serving:\n{}", tail(&text));
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "etcd member {i} did not serve within 30 s:\n{}",
                tail(&text)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills member `i` (SIGKILL, by PID) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data dir and ports, and waits until it serves.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_serving(i).await;
    }

    /// Member `i`'s log so far, for failure messages.
    pub fn log(&self, i: usize) -> String {
        tail(&std::fs::read_to_string(&self.members[i].log).unwrap_or_default())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| Path::new(path).is_file())
    })
}
