//! Local-cluster figures for BENCHMARKS.md: `hyperkube up` from a cold start with the images
//! present (to the node Ready, and to `up` returning with every system pod running), `hyperkube
//! down`, the size of the binary and the image, and the memory (RSS and PSS) of every process of
//! the cluster at idle, first with only the system pods and then with 30 more pods running.
//!
//!     cargo bench --bench up
//!
//! Needs root and a running Docker engine; builds the images once (untimed) if they are missing or
//! hold another binary. Runs the release binary's `up` and `down` as a user would, with its own
//! cluster name, port, data directory and HOME (so `~/.kube/config` is not touched), and `down
//! --purge` at the end, also when a step fails. A cluster of another name on this machine would
//! share the node name, so none may run while this does.
//!
//! Not a test: it asserts nothing and prints a table.

mod common;
use common::{binary, percentile};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::PostParams;

const RUNS: usize = 3;
const WORKLOAD_PODS: i32 = 30;
const POLL: Duration = Duration::from_millis(20);
const WAIT_LIMIT: Duration = Duration::from_secs(240);
const IDLE: Duration = Duration::from_secs(20);

fn fail(message: &str) -> ! {
    eprintln!("up bench: {message}");
    std::process::exit(1);
}

/// One local cluster of this bench, brought down with `--purge` when dropped.
struct Cluster {
    bin: PathBuf,
    name: String,
    port: u16,
    dir: PathBuf,
}

impl Cluster {
    fn command(&self, verb: &str) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(verb)
            .arg(format!("--name={}", self.name))
            .arg(format!("--port={}", self.port))
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .env("HOME", self.dir.join("home"))
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, verb: &str, flags: &[&str]) -> Duration {
        let started = Instant::now();
        let out = self
            .command(verb)
            .args(flags)
            .output()
            .unwrap_or_else(|e| fail(&format!("running {verb}: {e}")));
        if !out.status.success() {
            fail(&format!(
                "{verb} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        started.elapsed()
    }

    async fn client(&self) -> kube::Client {
        let url = format!("http://127.0.0.1:{}", self.port).parse().expect("url");
        kube::Client::try_from(kube::Config::new(url)).unwrap_or_else(|e| fail(&format!("client: {e}")))
    }

    /// Times `up` to the node Ready (seen over the API) and to `up` returning.
    async fn timed_up(&self) -> (Duration, Duration) {
        let started = Instant::now();
        let mut child = self
            .command("up")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("starting up: {e}")));
        let nodes: Api<Node> = Api::all(self.client().await);
        let ready = loop {
            if nodes.list(&Default::default()).await.is_ok_and(|list| {
                list.items.iter().any(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
            }) {
                break started.elapsed();
            }
            if started.elapsed() > WAIT_LIMIT || child.try_wait().ok().flatten().is_some() {
                fail("the node did not become Ready while up ran");
            }
            tokio::time::sleep(POLL).await;
        };
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("join")
            .unwrap_or_else(|e| fail(&format!("waiting for up: {e}")));
        if !out.status.success() {
            fail(&format!("up failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        (ready, started.elapsed())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.command("down").arg("--purge").output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| fail(&format!("no free port: {e}")))
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| fail(&format!("docker {args:?}: {e}")));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The host PID of a container's main process.
fn pid_of(container: &str) -> Option<u32> {
    docker(&["inspect", "--format", "{{.State.Pid}}", container])
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
}

/// A process's memory in KiB: its resident set, and its proportional share (PSS), which counts a
/// page shared by N processes — the binary's code, mapped by every process of the cluster — as
/// 1/N in each, so that PSS adds up across processes and RSS does not.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss: u64,
    pss: u64,
}

impl std::ops::Add for Memory {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            rss: self.rss + other.rss,
            pss: self.pss + other.pss,
        }
    }
}

fn memory(pid: u32) -> Memory {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss: field("Rss:"),
        pss: field("Pss:"),
    }
}

/// The memory of the cluster's own processes, by part: the kubelet, each system container, and
/// the pause processes of all this node's pods together, with how many pause processes there are.
fn cluster_memory(cluster: &Cluster) -> (BTreeMap<String, Memory>, Memory, usize) {
    let mut parts = BTreeMap::new();
    let kubelet = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=io.hyperkube.cluster={}", cluster.name),
    ]);
    if let Some(pid) = pid_of(&kubelet) {
        parts.insert("kubelet".to_owned(), memory(pid));
    }
    let system = docker(&[
        "ps",
        "--filter",
        "label=io.kubernetes.pod.namespace=kube-system",
        "--filter",
        "label=io.kubernetes.docker.type=container",
        "--format",
        "{{.ID}} {{.Label \"io.kubernetes.container.name\"}}",
    ]);
    for line in system.lines() {
        if let Some((id, name)) = line.split_once(' ')
            && let Some(pid) = pid_of(id)
        {
            parts.insert(name.to_owned(), memory(pid));
        }
    }
    let sandboxes = docker(&[
        "ps",
        "-q",
        "--filter",
        "label=io.kubernetes.docker.type=podsandbox",
        "--filter",
        &format!("label=io.hyperkube.node={}", node_name()),
    ]);
    let pause: Vec<Memory> = sandboxes.lines().filter_map(pid_of).map(memory).collect();
    let count = pause.len();
    (parts, pause.into_iter().fold(Memory::default(), |a, b| a + b), count)
}

/// The node name `up` registers: the host name, lower-cased.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_lowercase()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_memory(title: &str, (parts, pause, sandboxes): &(BTreeMap<String, Memory>, Memory, usize)) {
    println!("\nmemory, {title}:            RSS       PSS");
    let row = |name: &str, m: Memory| println!("  {name:<26} {:>6.1} MiB {:>6.1} MiB", mib(m.rss), mib(m.pss));
    for (name, m) in parts {
        row(name, *m);
    }
    let ours = parts.values().fold(Memory::default(), |a, b| a + *b);
    row("hyperkube processes", ours);
    row(&format!("pause processes ({sandboxes} pods)"), *pause);
    println!(
        "  {:<26} {:>17.1} MiB (sum of PSS)",
        "whole cluster",
        mib(ours.pss + pause.pss)
    );
}

async fn run_workload(cluster: &Cluster) {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client().await, "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "idle"},
        "spec": {
            "replicas": WORKLOAD_PODS,
            "selector": {"matchLabels": {"app": "idle"}},
            "template": {
                "metadata": {"labels": {"app": "idle"}},
                "spec": {"containers": [{"name": "sleep", "image": "hyperkube-test/busybox:1",
                                         "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}
            }
        }
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap_or_else(|e| fail(&format!("creating the deployment: {e}")));
    let started = Instant::now();
    loop {
        let available = deployments
            .get("idle")
            .await
            .ok()
            .and_then(|d| d.status?.available_replicas)
            .unwrap_or(0);
        if available == WORKLOAD_PODS {
            println!(
                "\n{WORKLOAD_PODS} pods available {:.1}s after the Deployment was created",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        if started.elapsed() > WAIT_LIMIT {
            fail(&format!("only {available} of {WORKLOAD_PODS} pods became available"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn seconds(samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let all: Vec<String> = samples.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect();
    format!(
        "median {:.2} s ({} s)",
        percentile(&sorted, 0.5).as_secs_f64(),
        all.join(", ")
    )
}

fn size_mib(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

#[tokio::main]
async fn main() {
    if !rustix::process::geteuid().is_root() {
        fail("needs root (up shares /var/lib/kubelet and programs iptables)");
    }
    let bin = binary();
    let dir = std::env::temp_dir().join(format!("hk-bench-up-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("home")).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    let cluster = Cluster {
        bin: bin.clone(),
        name: format!("hk-bench-{}", std::process::id()),
        port: free_port(),
        dir,
    };

    // Once untimed: builds the images if they are stale, and warms the page cache.
    cluster.run("up", &[]);
    cluster.run("down", &["--purge"]);

    let (mut ready, mut up, mut down) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (node_ready, returned) = cluster.timed_up().await;
        ready.push(node_ready);
        up.push(returned);
        down.push(cluster.run("down", &["--purge"]));
    }
    cluster.timed_up().await;
    tokio::time::sleep(IDLE).await;
    let system_only = cluster_memory(&cluster);
    run_workload(&cluster).await;
    tokio::time::sleep(IDLE).await;
    let with_workload = cluster_memory(&cluster);

    println!("\nhyperkube binary: {:.1} MiB ({})", size_mib(&bin), bin.display());
    println!(
        "hyperkube:latest image: {}",
        docker(&["image", "inspect", "--format", "{{.Size}}", "hyperkube:latest"])
            .parse::<f64>()
            .map_or("unknown".to_owned(), |b| format!("{:.1} MiB", b / (1024.0 * 1024.0)))
    );
    println!("up, cold start with images present ({RUNS} runs):");
    println!("  to node Ready:            {}", seconds(&ready));
    println!("  to every system pod Running (up returns): {}", seconds(&up));
    println!("down --purge:               {}", seconds(&down));
    print_memory(
        &format!("idle {}s after up, system pods only", IDLE.as_secs()),
        &system_only,
    );
    print_memory(
        &format!("idle {}s with {WORKLOAD_PODS} more pods", IDLE.as_secs()),
        &with_workload,
    );
}
