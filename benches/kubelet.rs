//! Kubelet figures for BENCHMARKS.md: pod start latency (manifest written → phase Running in the
//! kubelet's `/pods`, images present) for 1 and for 50 pods at once, beside the same work done
//! with raw bollard calls (a pause container, then an app container joining its network and IPC
//! namespaces, per pod) in the same run; then the kubelet's RSS and idle CPU holding 50 pods.
//!
//!     cargo bench --bench kubelet
//!
//! Needs a running Docker engine and the images `images/hyperkube/build.sh` makes
//! (`hyperkube:latest`, `hyperkube-test/busybox:1`); it never pulls. Runs the release binary as
//! its own process (`hyperkube kubelet --pod-manifest-path=...`) and reads `/pods` over loopback.
//! Every container it creates carries its namespace (`bench-PID`) or its raw label, and all of
//! them are removed at the end, also when a step fails or on Ctrl-C.
//!
//! Not a test: it asserts nothing and prints a table.

mod common;
use common::{binary, percentile};

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions, RemoveContainerOptions};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const INFRA: &str = "hyperkube:latest";
const BUSYBOX: &str = "hyperkube-test/busybox:1";
const NODE: &str = "bench-node";
/// Label on the raw path's containers, with `RUN_LABEL` = this run's namespace.
const RAW_LABEL: &str = "bench";
const RAW_VALUE: &str = "raw";
const RUN_LABEL: &str = "io.hyperkube.bench.run";
const NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
const NODE_LABEL: &str = "io.hyperkube.node";
const TYPE_LABEL: &str = "io.kubernetes.docker.type";
/// The pod label that tells one measured batch from the next (it also makes every batch's pods new).
const BATCH_LABEL: &str = "bench-batch";
const POLL: Duration = Duration::from_millis(20);
const WAIT_LIMIT: Duration = Duration::from_secs(180);

type Sender = SendRequest<Full<Bytes>>;

fn fail(message: &str) -> ! {
    eprintln!("kubelet bench: {message}");
    std::process::exit(1);
}

fn connect_docker() -> bollard::Docker {
    bollard::Docker::connect_with_unix("/var/run/docker.sock", 120, bollard::API_DEFAULT_VERSION)
        .unwrap_or_else(|e| fail(&format!("cannot reach Docker at /var/run/docker.sock: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Cleanup: everything this run made goes, whatever happens.

/// What a run leaves behind: the kubelet process and the containers of its namespace and of its
/// raw path. Dropping it (also while a failed step unwinds) kills the kubelet and removes them.
struct Guard {
    namespace: String,
    kubelet: Arc<Mutex<Option<Child>>>,
    dir: Option<tempfile::TempDir>,
}

impl Guard {
    fn cleanup(namespace: &str, kubelet: &Mutex<Option<Child>>) -> usize {
        // The kubelet first, or it would recreate what is removed.
        if let Some(mut child) = kubelet.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A thread with its own runtime and client: this may run while the bench's runtime unwinds.
        let namespace = namespace.to_string();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let docker =
                    bollard::Docker::connect_with_unix("/var/run/docker.sock", 120, bollard::API_DEFAULT_VERSION)
                        .ok()?;
                let mut removed = remove_labeled(&docker, &[format!("{NAMESPACE_LABEL}={namespace}")]).await;
                removed += remove_labeled(
                    &docker,
                    &[format!("{RAW_LABEL}={RAW_VALUE}"), format!("{RUN_LABEL}={namespace}")],
                )
                .await;
                Some(removed)
            })
        })
        .join()
        .ok()
        .flatten()
        .unwrap_or(0)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let removed = Self::cleanup(&self.namespace, &self.kubelet);
        eprintln!("kubelet bench: stopped the kubelet, removed {removed} containers");
        drop(self.dir.take());
    }
}

/// Removes (forcibly) every container, in any state, carrying all of `labels`; returns how many.
async fn remove_labeled(docker: &bollard::Docker, labels: &[String]) -> usize {
    let ids = list_labeled(docker, labels).await;
    let removals = futures::stream::iter(ids)
        .map(|id| async move {
            let options = RemoveContainerOptions {
                force: true,
                v: true,
                link: false,
            };
            docker.remove_container(&id, Some(options)).await.is_ok()
        })
        .buffer_unordered(16)
        .collect::<Vec<bool>>()
        .await;
    removals.into_iter().filter(|ok| *ok).count()
}

async fn list_labeled(docker: &bollard::Docker, labels: &[String]) -> Vec<String> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_string(), labels.to_vec())])),
        ..Default::default()
    };
    docker
        .list_containers(Some(options))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The kubelet process.

struct Kubelet {
    address: String,
    pid: u32,
    manifests: PathBuf,
    /// WARN and ERROR lines the kubelet logged, for the notes under the table.
    complaints: Arc<Mutex<Vec<String>>>,
}

fn start_kubelet(dir: &Path, guard: &Guard) -> Kubelet {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let mut child = Command::new(binary())
        .arg("kubelet")
        .arg(format!("--pod-manifest-path={}", manifests.display()))
        .arg(format!("--root-dir={}", dir.join("root").display()))
        .arg("--port=0")
        .arg(format!("--hostname-override={NODE}"))
        .arg(format!("--pod-infra-container-image={INFRA}"))
        .arg("--file-check-frequency=1s")
        .arg("--sync-frequency=10s")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hyperkube kubelet");
    let pid = child.id();
    let stderr = child.stderr.take().expect("piped stderr");
    *guard.kubelet.lock().unwrap() = Some(child);

    let complaints = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel::<Result<String, Vec<String>>>();
    let sink = complaints.clone();
    std::thread::spawn(move || {
        let mut early = Vec::new();
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("kubelet serving address=") {
                let rest = &line[at + "kubelet serving address=".len()..];
                let address = rest.split_whitespace().next().unwrap_or_default().to_string();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Ok(address));
                }
            } else if tx.is_some() {
                early.push(line.clone());
            }
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                sink.lock().unwrap().push(line);
            }
        }
        if let Some(tx) = tx {
            let _ = tx.send(Err(early));
        }
    });
    let address = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(address)) => address,
        Ok(Err(lines)) => panic!("the kubelet exited before serving:\n{}", lines.join("\n")),
        Err(_) => panic!("the kubelet did not log its address within 30 s"),
    };
    Kubelet {
        address,
        pid,
        manifests,
        complaints,
    }
}

async fn connect(address: &str) -> std::io::Result<Sender> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn get(c: &mut Sender, path: &str) -> Result<(u16, Bytes), hyper::Error> {
    c.ready().await?;
    let req = Request::get(path)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    let resp = c.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// One keep-alive connection to the kubelet that reconnects after an error.
struct KubeletClient {
    address: String,
    conn: Option<Sender>,
}

impl KubeletClient {
    /// The kubelet's `/pods` items, or `None` when the request failed.
    async fn pods(&mut self) -> Option<Vec<serde_json::Value>> {
        if self.conn.is_none() {
            self.conn = connect(&self.address).await.ok();
        }
        let c = self.conn.as_mut()?;
        match get(c, "/pods").await {
            Ok((200, body)) => {
                let list: serde_json::Value = serde_json::from_slice(&body).ok()?;
                Some(list.get("items")?.as_array()?.clone())
            }
            _ => {
                self.conn = None;
                None
            }
        }
    }
}

fn pod_field<'a>(pod: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(pod, |v, key| v.get(key))?.as_str()
}

fn manifest(namespace: &str, batch: &str, index: usize) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: p{index:02}
  namespace: {namespace}
  labels:
    {BATCH_LABEL}: {batch}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: [sleep, \"3600\"]
"
    )
}

/// What one batch of kubelet pods took.
struct KubeletBatch {
    /// Manifests written → every pod Running in `/pods`.
    total: Duration,
    /// Per pod: manifests written → first seen Running.
    per_pod: Vec<Duration>,
    /// From Docker's own timestamps, relative to the manifests being written.
    timeline: Timeline,
    /// CPU seconds dockerd and containerd used from the manifests being written to all Running.
    engine_cpu: f64,
    /// CPU seconds the kubelet used in that time.
    kubelet_cpu: f64,
}

/// Where the time went, from Docker's timestamps of the containers the kubelet made.
#[derive(Default, Clone, Copy)]
struct Timeline {
    first_sandbox_created: Duration,
    last_sandbox_started: Duration,
    first_app_created: Duration,
    last_app_started: Duration,
}

/// Writes `n` manifests at once and waits until all are Running.
async fn kubelet_batch(
    kubelet: &Kubelet,
    client: &mut KubeletClient,
    docker: &bollard::Docker,
    namespace: &str,
    batch: &str,
    n: usize,
) -> KubeletBatch {
    let engine = engine_pids();
    let (engine_before, kubelet_before) = (cpu_seconds(&engine), cpu_seconds(&[kubelet.pid]));
    let wall0 = jiff::Timestamp::now();
    let t0 = Instant::now();
    for i in 0..n {
        // Write beside, then rename, so the kubelet never reads half a file (dot files are skipped).
        let tmp = kubelet.manifests.join(format!(".p{i:02}.yaml.tmp"));
        std::fs::write(&tmp, manifest(namespace, batch, i)).unwrap();
        std::fs::rename(&tmp, kubelet.manifests.join(format!("p{i:02}.yaml"))).unwrap();
    }
    let mut seen: HashMap<String, Duration> = HashMap::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while seen.len() < n {
        tick.tick().await;
        let Some(items) = client.pods().await else { continue };
        let at = t0.elapsed();
        for pod in &items {
            if pod_field(pod, &["metadata", "namespace"]) == Some(namespace)
                && pod_field(pod, &["metadata", "labels", BATCH_LABEL]) == Some(batch)
                && pod_field(pod, &["status", "phase"]) == Some("Running")
                && let Some(name) = pod_field(pod, &["metadata", "name"])
            {
                seen.entry(name.to_string()).or_insert(at);
            }
        }
        assert!(
            t0.elapsed() < WAIT_LIMIT,
            "only {} of {n} pods Running after {WAIT_LIMIT:?}",
            seen.len()
        );
    }
    let engine_cpu = cpu_seconds(&engine) - engine_before;
    let kubelet_cpu = cpu_seconds(&[kubelet.pid]) - kubelet_before;
    let mut per_pod: Vec<Duration> = seen.into_values().collect();
    per_pod.sort();
    KubeletBatch {
        total: *per_pod.last().unwrap(),
        per_pod,
        timeline: timeline(docker, namespace, wall0).await,
        engine_cpu,
        kubelet_cpu,
    }
}

async fn timeline(docker: &bollard::Docker, namespace: &str, wall0: jiff::Timestamp) -> Timeline {
    let since = |s: Option<&str>| -> Option<Duration> {
        let t: jiff::Timestamp = s?.parse().ok()?;
        Some(Duration::try_from(t.duration_since(wall0)).unwrap_or(Duration::ZERO))
    };
    let (mut sandboxes, mut apps) = (Vec::new(), Vec::new());
    for id in list_labeled(docker, &[format!("{NAMESPACE_LABEL}={namespace}")]).await {
        let Ok(info) = docker.inspect_container(&id, None).await else {
            continue;
        };
        let kind = info
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(TYPE_LABEL))
            .cloned()
            .unwrap_or_default();
        let created = since(info.created.as_deref());
        let started = since(info.state.as_ref().and_then(|s| s.started_at.as_deref()));
        if let (Some(created), Some(started)) = (created, started) {
            if kind == "podsandbox" {
                sandboxes.push((created, started));
            } else {
                apps.push((created, started));
            }
        }
    }
    let first = |v: &[(Duration, Duration)]| v.iter().map(|p| p.0).min().unwrap_or_default();
    let last = |v: &[(Duration, Duration)]| v.iter().map(|p| p.1).max().unwrap_or_default();
    Timeline {
        first_sandbox_created: first(&sandboxes),
        last_sandbox_started: last(&sandboxes),
        first_app_created: first(&apps),
        last_app_started: last(&apps),
    }
}

/// Deletes the manifests and waits until the kubelet dropped the pods and Docker holds none of
/// their containers.
async fn remove_kubelet_pods(kubelet: &Kubelet, client: &mut KubeletClient, docker: &bollard::Docker, namespace: &str) {
    for entry in std::fs::read_dir(&kubelet.manifests).unwrap().flatten() {
        std::fs::remove_file(entry.path()).unwrap();
    }
    let t0 = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let containers = list_labeled(docker, &[format!("{NAMESPACE_LABEL}={namespace}")]).await;
        let pods = client.pods().await.map(|items| {
            items
                .iter()
                .filter(|p| pod_field(p, &["metadata", "namespace"]) == Some(namespace))
                .count()
        });
        if containers.is_empty() && pods == Some(0) {
            break;
        }
        assert!(
            t0.elapsed() < WAIT_LIMIT,
            "{} containers and {pods:?} pods left {WAIT_LIMIT:?} after deleting the manifests",
            containers.len()
        );
    }
    settle().await;
}

/// Lets Docker finish tearing down networks before the next measurement.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------------------------------------
// The raw path: what the kubelet asks of Docker per pod, with nothing around it.

/// One pod by hand: pause container (as the kubelet's sandbox: bridge network, shareable IPC),
/// then the app container joining its network and IPC. Returns the time from `t0` to the app's
/// start returning.
async fn raw_pod(docker: bollard::Docker, namespace: String, batch: String, index: usize, t0: Instant) -> Duration {
    let labels = HashMap::from([
        (RAW_LABEL.to_string(), RAW_VALUE.to_string()),
        (RUN_LABEL.to_string(), namespace.clone()),
    ]);
    let no_restart = || RestartPolicy {
        name: Some(RestartPolicyNameEnum::NO),
        maximum_retry_count: None,
    };
    let name = format!("bench-raw-{namespace}-{batch}-{index:02}");
    let pause = ContainerCreateBody {
        image: Some(INFRA.to_string()),
        hostname: Some(format!("raw-{index:02}")),
        labels: Some(labels.clone()),
        host_config: Some(HostConfig {
            network_mode: Some("bridge".to_string()),
            ipc_mode: Some("shareable".to_string()),
            restart_policy: Some(no_restart()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = |suffix: &str| CreateContainerOptions {
        name: Some(format!("{name}-{suffix}")),
        ..Default::default()
    };
    let pause_id = docker
        .create_container(Some(options("pause")), pause)
        .await
        .expect("create pause container")
        .id;
    docker
        .start_container(&pause_id, None)
        .await
        .expect("start pause container");
    let joined = format!("container:{pause_id}");
    let app = ContainerCreateBody {
        image: Some(BUSYBOX.to_string()),
        entrypoint: Some(vec!["sleep".to_string(), "3600".to_string()]),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(joined.clone()),
            ipc_mode: Some(joined),
            restart_policy: Some(no_restart()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let app_id = docker
        .create_container(Some(options("app")), app)
        .await
        .expect("create app container")
        .id;
    docker
        .start_container(&app_id, None)
        .await
        .expect("start app container");
    t0.elapsed()
}

/// What one batch of raw pods took.
struct RawBatch {
    /// First create sent → last start returned.
    total: Duration,
    /// Per pod: first create sent → its app container's start returned, sorted.
    per_pod: Vec<Duration>,
    /// CPU seconds dockerd and containerd used meanwhile.
    engine_cpu: f64,
}

/// `n` raw pods at once, each on its own task (as the kubelet's pod workers are).
async fn raw_batch(docker: &bollard::Docker, namespace: &str, batch: &str, n: usize) -> RawBatch {
    let engine = engine_pids();
    let engine_before = cpu_seconds(&engine);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(raw_pod(docker.clone(), namespace.to_string(), batch.to_string(), i, t0)))
        .collect();
    let mut per_pod = Vec::new();
    for t in tasks {
        per_pod.push(t.await.expect("raw pod"));
    }
    let total = t0.elapsed();
    let engine_cpu = cpu_seconds(&engine) - engine_before;
    per_pod.sort();
    RawBatch {
        total,
        per_pod,
        engine_cpu,
    }
}

async fn remove_raw(docker: &bollard::Docker, namespace: &str) {
    remove_labeled(
        docker,
        &[format!("{RAW_LABEL}={RAW_VALUE}"), format!("{RUN_LABEL}={namespace}")],
    )
    .await;
    settle().await;
}

// ---------------------------------------------------------------------------------------------
// /proc figures.

fn rss_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// utime + stime of the process (all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces: state is
    // field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(14) + field(15)
}

/// utime + stime of all of `pids`, in seconds.
fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter().map(|pid| cpu_ticks(*pid)).sum::<u64>() as f64 / clock_ticks_per_second()
}

/// The Docker engine's daemons (dockerd, containerd); not the per-container shims.
fn engine_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            matches!(comm.trim(), "dockerd" | "containerd")
        })
        .collect()
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

// ---------------------------------------------------------------------------------------------

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(ours: Duration, raw: Duration) -> String {
    format!("{:.2}×", ours.as_secs_f64() / raw.as_secs_f64())
}

fn list_ms(runs: &[Duration]) -> String {
    runs.iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn require_images(docker: &bollard::Docker) {
    if let Err(e) = docker.version().await {
        fail(&format!(
            "Docker does not answer on /var/run/docker.sock ({e}); scripts/ensure-docker.sh starts it"
        ));
    }
    for image in [INFRA, BUSYBOX] {
        if docker.inspect_image(image).await.is_err() {
            fail(&format!(
                "image {image} is missing; build it with images/hyperkube/build.sh (this bench never pulls)"
            ));
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` probes bench binaries; there is nothing to run as a test.
        return;
    }
    let docker = connect_docker()
        .negotiate_version()
        .await
        .unwrap_or_else(|e| fail(&format!("Docker does not answer on /var/run/docker.sock: {e}")));
    require_images(&docker).await;

    let namespace = format!("bench-{}", std::process::id());
    let mut notes = Vec::new();
    // Leftovers of an earlier run that did not get to clean up: our kubelet would adopt and stop
    // them while we measure.
    let stale = remove_labeled(&docker, &[format!("{NODE_LABEL}={NODE}")]).await
        + remove_labeled(&docker, &[format!("{RAW_LABEL}={RAW_VALUE}")]).await;
    if stale > 0 {
        notes.push(format!(
            "removed {stale} containers left by an earlier run before starting"
        ));
    }
    let foreign = list_labeled(&docker, &["io.hyperkube.managed-by=hyperkube".to_string()])
        .await
        .len();
    if foreign > 0 {
        notes.push(format!(
            "{foreign} containers of other hyperkube kubelets were on the engine; the kubelet lists them on every sync"
        ));
    }

    let guard = Guard {
        namespace: namespace.clone(),
        kubelet: Arc::default(),
        dir: Some(tempfile::tempdir().unwrap()),
    };
    {
        let (namespace, kubelet) = (namespace.clone(), guard.kubelet.clone());
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let removed = Guard::cleanup(&namespace, &kubelet);
                eprintln!("kubelet bench: interrupted; stopped the kubelet, removed {removed} containers");
                std::process::exit(130);
            }
        });
    }
    let kubelet = start_kubelet(guard.dir.as_ref().unwrap().path(), &guard);
    let mut client = KubeletClient {
        address: kubelet.address.clone(),
        conn: None,
    };
    // Ready when /pods answers; then give the file source its first (empty) read.
    let t0 = Instant::now();
    while client.pods().await.is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the kubelet's /pods does not answer"
        );
        tokio::time::sleep(POLL).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_empty = rss_mib(kubelet.pid, "VmRSS:");

    // N = 1, five times each, alternating so both paths see the same engine state.
    let (mut ours_1, mut raw_1, mut timelines_1) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..5 {
        let raw = raw_batch(&docker, &namespace, &format!("one{run}"), 1).await;
        raw_1.push(raw.total);
        remove_raw(&docker, &namespace).await;
        let batch = kubelet_batch(&kubelet, &mut client, &docker, &namespace, &format!("one{run}"), 1).await;
        ours_1.push(batch.total);
        timelines_1.push(batch.timeline);
        remove_kubelet_pods(&kubelet, &mut client, &docker, &namespace).await;
    }

    // N = 50, twice each; the kubelet's second batch stays for the idle figures.
    const N: usize = 50;
    let (mut ours_50, mut raw_50) = (Vec::new(), Vec::new());
    for run in 0..2 {
        let raw = raw_batch(&docker, &namespace, &format!("fifty{run}"), N).await;
        remove_raw(&docker, &namespace).await;
        raw_50.push(raw);
        let batch = kubelet_batch(&kubelet, &mut client, &docker, &namespace, &format!("fifty{run}"), N).await;
        if run == 0 {
            remove_kubelet_pods(&kubelet, &mut client, &docker, &namespace).await;
        }
        ours_50.push(batch);
    }

    // Idle with 50 pods: let the start-up work finish, then watch 20 s (two resyncs of every pod).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let window = Duration::from_secs(20);
    let engine = engine_pids();
    let (kubelet_before, engine_before) = (cpu_seconds(&[kubelet.pid]), cpu_seconds(&engine));
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_percent = (cpu_seconds(&[kubelet.pid]) - kubelet_before) / elapsed * 100.0;
    let engine_percent = (cpu_seconds(&engine) - engine_before) / elapsed * 100.0;
    let rss_50 = rss_mib(kubelet.pid, "VmRSS:");
    let rss_peak = rss_mib(kubelet.pid, "VmHWM:");

    // The table.
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        percentile(&v, 0.5)
    };
    let mut rows: Vec<[String; 4]> = Vec::new();
    let (ours_1_median, raw_1_median) = (median(&ours_1), median(&raw_1));
    rows.push([
        "1 pod: create → Running, median of 5".into(),
        format!("{} (runs: {})", ms(ours_1_median), list_ms(&ours_1)),
        format!("{} (runs: {})", ms(raw_1_median), list_ms(&raw_1)),
        ratio(ours_1_median, raw_1_median),
    ]);
    for (run, (ours, raw)) in ours_50.iter().zip(&raw_50).enumerate() {
        rows.push([
            format!("50 pods at once: create → all Running, run {}", run + 1),
            ms(ours.total),
            ms(raw.total),
            ratio(ours.total, raw.total),
        ]);
    }
    for (run, (ours, raw)) in ours_50.iter().zip(&raw_50).enumerate() {
        rows.push([
            format!("50 pods at once: per pod p50 / p99, run {}", run + 1),
            format!(
                "{} / {}",
                ms(percentile(&ours.per_pod, 0.5)),
                ms(percentile(&ours.per_pod, 0.99))
            ),
            format!(
                "{} / {}",
                ms(percentile(&raw.per_pod, 0.5)),
                ms(percentile(&raw.per_pod, 0.99))
            ),
            String::new(),
        ]);
    }
    for (run, (ours, raw)) in ours_50.iter().zip(&raw_50).enumerate() {
        rows.push([
            format!("50 pods at once: CPU seconds used during the batch, run {}", run + 1),
            format!(
                "dockerd + containerd {:.1} s, kubelet {:.1} s",
                ours.engine_cpu, ours.kubelet_cpu
            ),
            format!("dockerd + containerd {:.1} s", raw.engine_cpu),
            format!("{:.2}× (engine)", ours.engine_cpu / raw.engine_cpu),
        ]);
    }
    let describe = |t: &Timeline| {
        format!(
            "first sandbox created {}, last sandbox started {}, first app created {}, last app started {}",
            ms(t.first_sandbox_created),
            ms(t.last_sandbox_started),
            ms(t.first_app_created),
            ms(t.last_app_started)
        )
    };
    let mut by_total: Vec<usize> = (0..ours_1.len()).collect();
    by_total.sort_by_key(|i| ours_1[*i]);
    let median_run = by_total[by_total.len() / 2];
    rows.push([
        "1 pod, median run: Docker's timestamps after the manifest was written".into(),
        describe(&timelines_1[median_run]),
        String::new(),
        String::new(),
    ]);
    for (run, ours) in ours_50.iter().enumerate() {
        rows.push([
            format!(
                "50 pods, run {}: Docker's timestamps after the manifests were written",
                run + 1
            ),
            describe(&ours.timeline),
            String::new(),
            String::new(),
        ]);
    }
    rows.push([
        "kubelet RSS, no pods".into(),
        format!("{rss_empty:.1} MiB"),
        String::new(),
        String::new(),
    ]);
    rows.push([
        "kubelet RSS, 50 pods idle (peak during the run)".into(),
        format!("{rss_50:.1} MiB ({rss_peak:.1} MiB)"),
        String::new(),
        String::new(),
    ]);
    rows.push([
        format!("kubelet CPU, 50 pods idle, over {} s", window.as_secs()),
        format!("{cpu_percent:.2}% of a core (dockerd + containerd meanwhile: {engine_percent:.2}%)"),
        String::new(),
        String::new(),
    ]);

    println!("| figure | hyperkube kubelet | raw bollard calls | hyperkube / raw |\n|---|---|---|---|");
    for [a, b, c, d] in rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
    let complaints = kubelet.complaints.lock().unwrap().clone();
    if !complaints.is_empty() {
        notes.push(format!(
            "the kubelet logged {} warnings or errors; the first {}:\n    {}",
            complaints.len(),
            complaints.len().min(3),
            complaints[..complaints.len().min(3)].join("\n    ")
        ));
    }
    for note in notes {
        println!("\nNote: {note}");
    }
    drop(guard);
}
