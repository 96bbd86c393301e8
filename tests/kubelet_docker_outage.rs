//! Docker going away: the kubelet reaches the engine through a socket proxy this test controls,
//! so "Docker stops" can be played for one kubelet without stopping the engine other tests use.
//! The node must turn NotReady with a clear reason, and come back Ready by itself, with its pod
//! still running, once the engine answers again.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// Forwards connections from `path` to the real Docker socket until dropped.
struct Proxy(JoinHandle<()>);

impl Proxy {
    fn start(path: &Path) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the proxy socket");
        Proxy(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut engine) = UnixStream::connect("/var/run/docker.sock").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        }))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops the listener and every forwarded connection with it.
        self.0.abort();
    }
}

/// Removes every container of `node` when dropped, also when the test fails.
struct Containers(&'static str);

impl Drop for Containers {
    fn drop(&mut self) {
        let filter = format!("label=io.hyperkube.node={}", self.0);
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let ids = String::from_utf8_lossy(&ids).to_string();
        if !ids.trim().is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.split_whitespace());
            let _ = Command::new("docker").args(&args).output();
        }
    }
}

/// A child process killed (by its PID) when dropped, also when the test fails.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[String], marker: &str) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyperkube"))
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("hyperkube starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().expect("logs its address").unwrap();
        if let Some(at) = line.find(marker) {
            break line[at + marker.len()..].trim().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (Process(child), address)
}

async fn ready(nodes: &Api<Node>, name: &str) -> Option<(String, String)> {
    let node = nodes.get_opt(name).await.ok()??;
    let c = node.status?.conditions?.into_iter().find(|c| c.type_ == "Ready")?;
    Some((c.status, c.message.unwrap_or_default()))
}

async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_goes_not_ready_without_docker_and_recovers_by_itself() {
    for image in ["hyperkube:latest", "hyperkube-test/busybox:1"] {
        let out = Command::new("docker").args(["images", "-q", image]).output().unwrap();
        assert!(
            !out.stdout.is_empty(),
            "image {image} is missing: run images/hyperkube/build.sh (scripts/test does)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("docker.sock");
    let mut proxy = Some(Proxy::start(&socket));
    let node = "outage-node";
    // Declared first, so it is dropped last: after the kubelet is gone.
    let _containers = Containers(node);

    let data = dir.path().join("data").display().to_string();
    let (apiserver, api) = spawn(
        &[
            "apiserver".into(),
            "--insecure-port=0".into(),
            format!("--data-dir={data}"),
        ],
        "address=",
    );
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("p.yaml"),
        "metadata: {name: steady}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: \"hyperkube-test/busybox:1\", command: [sleep, \"3600\"]}]\n",
    )
    .unwrap();
    let (kubelet, _) = spawn(
        &[
            "kubelet".into(),
            format!("--api-servers=http://{api}"),
            format!("--docker-endpoint=unix://{}", socket.display()),
            format!("--hostname-override={node}"),
            format!("--root-dir={}", dir.path().join("root").display()),
            format!("--pod-manifest-path={}", manifests.display()),
            "--pod-infra-container-image=hyperkube:latest".into(),
            "--port=0".into(),
            "--node-status-update-frequency=1s".into(),
            "--sync-frequency=1s".into(),
        ],
        "kubelet serving address=",
    );
    let client = kube::Client::try_from(kube::Config::new(format!("http://{api}").parse().unwrap())).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mirror = format!("steady-{node}");
    eventually("the node Ready", || async {
        ready(&nodes, node).await.filter(|(s, _)| s == "True")
    })
    .await;
    eventually("the pod running", || async {
        pods.get_opt(&mirror)
            .await
            .ok()?
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;

    proxy.take();
    let (_, message) = eventually("the node NotReady while Docker is away", || async {
        ready(&nodes, node).await.filter(|(s, _)| s == "False")
    })
    .await;
    assert!(message.contains("container runtime is down"), "{message}");

    proxy = Some(Proxy::start(&socket));
    eventually("the node Ready again", || async {
        ready(&nodes, node).await.filter(|(s, _)| s == "True")
    })
    .await;
    let running = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=io.hyperkube.node={node}"),
            "--filter",
            "label=io.kubernetes.container.name=c",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&running.stdout).lines().count(),
        1,
        "the pod kept its one container"
    );

    drop(kubelet);
    drop(apiserver);
    drop(proxy);
}
