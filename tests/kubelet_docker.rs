//! The kubelet against a real Docker engine, as a user runs it: `hyperkube kubelet
//! --pod-manifest-path=DIR`. Needs a running engine and the images `images/hyperkube/build.sh`
//! makes (scripts/test does both). Each test uses its own namespace and node name, and removes
//! what it created, so tests can run side by side on one engine.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "hyperkube-test/busybox:1";
const INFRA: &str = "hyperkube:latest";

/// A kubelet process on a manifests directory, cleaned up on drop.
struct Kubelet {
    child: Option<Child>,
    namespace: String,
    node: String,
    manifests: PathBuf,
    root: PathBuf,
    address: String,
    _dir: tempfile::TempDir,
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn require_images() {
    for image in [BUSYBOX, INFRA] {
        assert!(
            !docker(&["images", "-q", image]).is_empty(),
            "image {image} is missing: run images/hyperkube/build.sh (scripts/test does)"
        );
    }
}

impl Kubelet {
    fn new(test: &str) -> Self {
        require_images();
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        let k = Kubelet {
            child: None,
            namespace: format!("kt-{test}"),
            node: format!("node-{test}"),
            manifests,
            root: dir.path().join("root"),
            address: String::new(),
            _dir: dir,
        };
        k.remove_containers();
        k
    }

    fn start(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hyperkube"))
            .args([
                "kubelet",
                "--port=0",
                "--file-check-frequency=1s",
                "--sync-frequency=1s",
                "--cluster-dns=10.0.0.10",
            ])
            .arg(format!("--pod-manifest-path={}", self.manifests.display()))
            .arg(format!("--root-dir={}", self.root.display()))
            .arg(format!("--hostname-override={}", self.node))
            .arg(format!("--pod-infra-container-image={INFRA}"))
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("hyperkube kubelet starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        self.address = loop {
            let line = lines
                .next()
                .expect("the kubelet logs its address before exiting")
                .unwrap();
            if let Some(at) = line.find("kubelet serving address=") {
                break line[at + "kubelet serving address=".len()..].trim().to_string();
            }
        };
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("kubelet: {line}");
            }
        });
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn manifest(&self, file: &str, pod: &str) {
        let path = self.manifests.join(file);
        std::fs::write(path.with_extension("tmp"), pod.replace("NAMESPACE", &self.namespace)).unwrap();
        // Rename, as editors and config tools do, so the kubelet never reads half a file.
        std::fs::rename(path.with_extension("tmp"), &path).unwrap();
    }

    /// Ids of the containers named `container` in pod `pod` (the manifest's name), newest first.
    fn containers(&self, pod: &str, container: &str, all: bool) -> Vec<String> {
        let mut args = vec!["ps", "-q", "--no-trunc"];
        if all {
            args.push("-a");
        }
        let ns = format!("label=io.kubernetes.pod.namespace={}", self.namespace);
        let name = format!("label=io.kubernetes.pod.name={pod}-{}", self.node);
        let c = format!("label=io.kubernetes.container.name={container}");
        args.extend(["--filter", &ns, "--filter", &name, "--filter", &c]);
        docker(&args).lines().map(String::from).collect()
    }

    /// The body of the kubelet's `path`.
    fn get(&self, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(&self.address).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: kubelet\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    /// The kubelet's `/pods`, as JSON.
    fn pods(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/pods")).unwrap_or_default()
    }

    fn remove_containers(&self) {
        let filter = format!("label=io.kubernetes.pod.namespace={}", self.namespace);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.lines());
            docker(&args);
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.kill();
        self.remove_containers();
    }
}

/// Polls `check` until it returns `Some`, failing with `what` after `timeout`.
fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const WAIT: Duration = Duration::from_secs(30);

fn sleeper(name: &str, arg: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: NAMESPACE}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: main, image: \"{BUSYBOX}\", command: [sleep, \"{arg}\"]}}\n"
    )
}

fn started_at(id: &str) -> String {
    docker(&["inspect", "-f", "{{.State.StartedAt}}", id])
}

#[test]
fn containers_of_a_static_pod_share_one_network_namespace() {
    let mut k = Kubelet::new("netns");
    k.manifest(
        "web.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: NAMESPACE}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: server
    image: "{BUSYBOX}"
    command: [sh, -c, "echo hello-from-server > /www/index.html && exec httpd -f -p 8080 -h /www"]
  - name: client
    image: "{BUSYBOX}"
    command: [sh, -c, "until wget -q -O- http://127.0.0.1:8080/; do sleep 0.2; done; exec sleep 3600"]
"#
        ),
    );
    k.start();
    let client = eventually("the client container", WAIT, || {
        k.containers("web", "client", false).pop()
    });
    eventually("the client to reach the server on localhost", WAIT, || {
        docker(&["logs", &client]).contains("hello-from-server").then_some(())
    });
    // dnsPolicy ClusterFirst: the cluster's DNS server and upstream's search path.
    let resolv = docker(&["exec", &client, "cat", "/etc/resolv.conf"]);
    assert!(resolv.starts_with("nameserver 10.0.0.10\n"), "{resolv}");
    let search = format!(
        "search {}.svc.cluster.local svc.cluster.local cluster.local",
        k.namespace
    );
    assert!(
        resolv.contains(&search) && resolv.contains("options ndots:5"),
        "{resolv}"
    );
    let pods = eventually("the pod's status", WAIT, || {
        let pods = k.pods();
        let phase = pods["items"][0]["status"]["phase"].as_str().map(String::from);
        (phase.as_deref() == Some("Running")).then_some(pods)
    });
    let pod = &pods["items"][0];
    assert_eq!(pod["metadata"]["name"], format!("web-{}", k.node));
    assert!(
        pod["status"]["podIP"].as_str().is_some_and(|ip| !ip.is_empty()),
        "{pod}"
    );
    let metrics = k.get("/metrics");
    assert!(metrics.contains("kubelet_running_pods 1"), "{metrics}");
    assert!(
        metrics.contains("kubelet_running_containers{container_state=\"running\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kubelet_pod_start_duration_seconds_count 1"),
        "{metrics}"
    );
    let ids: Vec<&str> = pod["status"]["containerStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["containerID"].as_str())
        .collect();
    assert!(ids.iter().all(|id| id.starts_with("docker://")), "{ids:?}");
}

#[test]
fn manifests_added_edited_and_removed_change_the_running_containers() {
    let mut k = Kubelet::new("edits");
    k.manifest("a.yaml", &sleeper("a", "3600"));
    k.start();
    let a1 = eventually("pod a", WAIT, || k.containers("a", "main", false).pop());

    k.manifest("b.yaml", &sleeper("b", "3600"));
    eventually("pod b, added later", WAIT, || k.containers("b", "main", false).pop());

    k.manifest("a.yaml", &sleeper("a", "3601"));
    let a2 = eventually("pod a replaced after its edit", WAIT, || {
        k.containers("a", "main", false).into_iter().find(|id| *id != a1)
    });
    assert!(docker(&["inspect", "-f", "{{.Config.Entrypoint}}", &a2]).contains("3601"));
    eventually("the old pod a gone", WAIT, || {
        k.containers("a", "main", true).iter().all(|id| *id != a1).then_some(())
    });

    std::fs::remove_file(k.manifests.join("b.yaml")).unwrap();
    eventually("pod b stopped and removed", WAIT, || {
        k.containers("b", "main", true).is_empty().then_some(())
    });
    assert_eq!(k.containers("a", "main", false), [a2], "pod a kept running");
    // The directories of the old pod a and of pod b go too: one pod, one directory.
    std::fs::create_dir_all(k.root.join("pods/stale-uid")).unwrap();
    eventually("unused pod directories removed", WAIT, || {
        (std::fs::read_dir(k.root.join("pods")).unwrap().count() == 1).then_some(())
    });
}

#[test]
fn a_restarted_kubelet_adopts_running_containers() {
    let mut k = Kubelet::new("adopt");
    k.manifest("a.yaml", &sleeper("a", "3600"));
    k.manifest("b.yaml", &sleeper("b", "3600"));
    k.start();
    let before: Vec<(String, String)> = ["a", "b"]
        .iter()
        .map(|p| {
            let id = eventually("the pod's container", WAIT, || k.containers(p, "main", false).pop());
            let started = started_at(&id);
            (id, started)
        })
        .collect();
    k.kill();
    k.start();
    // Several sync rounds (every second) and a housekeeping pass.
    std::thread::sleep(Duration::from_secs(5));
    for (p, (id, started)) in ["a", "b"].iter().zip(&before) {
        assert_eq!(
            k.containers(p, "main", true),
            std::slice::from_ref(id),
            "pod {p} has its one container still"
        );
        assert_eq!(&started_at(id), started, "pod {p}'s container was not restarted");
    }
}

#[test]
fn crashing_containers_back_off_and_a_bad_manifest_does_not_stop_the_others() {
    let mut k = Kubelet::new("crash");
    k.manifest(
        "crash.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: crash, namespace: NAMESPACE}}\nspec:\n  containers:\n  - {{name: main, image: \"{BUSYBOX}\", command: [sh, -c, \"echo crashed-once; exit 3\"]}}\n"
        ),
    );
    k.manifest(
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec:\n  containers: [{name: nope}]\n",
    );
    k.manifest("good.yaml", &sleeper("good", "3600"));
    k.start();
    eventually("the good pod despite the broken manifest", WAIT, || {
        k.containers("good", "main", false).pop()
    });
    let status = eventually("CrashLoopBackOff", WAIT, || {
        let pods = k.pods();
        let pod = pods["items"]
            .as_array()?
            .iter()
            .find(|p| p["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("crash-")))?
            .clone();
        let c = pod["status"]["containerStatuses"][0].clone();
        (c["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(c)
    });
    assert!(status["restartCount"].as_i64().unwrap() >= 1, "{status}");
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3, "{status}");
    let previous = k.get(&format!(
        "/containerLogs/{}/crash-{}/main?previous=true",
        k.namespace, k.node
    ));
    assert!(
        previous.contains("crashed-once"),
        "logs --previous reads the dead instance: {previous:?}"
    );
    assert!(
        k.containers("crash", "main", true).len() <= 2,
        "dead instances are removed but the newest dead one is kept"
    );
}

#[test]
fn probes_restart_unhealthy_containers_and_drive_readiness() {
    let mut k = Kubelet::new("probes");
    k.manifest(
        "probed.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: probed, namespace: NAMESPACE}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: "{BUSYBOX}"
    command: [sh, -c, "echo ok > /www/ready.html; httpd -p 8080 -h /www; sleep 6; rm /www/ready.html; exec sleep 3600"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe: {{httpGet: {{path: /ready.html, port: http}}, periodSeconds: 1, failureThreshold: 1}}
  - name: exec
    image: "{BUSYBOX}"
    command: [sh, -c, "touch /tmp/alive; sleep 2; rm /tmp/alive; exec sleep 3600"]
    livenessProbe: {{exec: {{command: [cat, /tmp/alive]}}, periodSeconds: 1, failureThreshold: 1}}
  - name: tcp
    image: "{BUSYBOX}"
    command: [sleep, "3600"]
    livenessProbe: {{tcpSocket: {{port: 9999}}, periodSeconds: 1, failureThreshold: 2}}
"#
        ),
    );
    k.start();
    let status = |name: &str| -> Option<serde_json::Value> {
        let pods = k.pods();
        let pod = pods["items"].as_array()?.first()?.clone();
        pod["status"]["containerStatuses"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
    };
    eventually("web ready through its HTTP probe", WAIT, || {
        status("web").filter(|c| c["ready"] == true)
    });
    eventually("web not ready once the page is gone", WAIT, || {
        status("web").filter(|c| c["ready"] == false && c["state"]["running"].is_object())
    });
    eventually("the exec liveness probe restarting its container", WAIT, || {
        status("exec").filter(|c| c["restartCount"].as_i64() >= Some(1))
    });
    eventually("the tcp liveness probe restarting its container", WAIT, || {
        status("tcp").filter(|c| c["restartCount"].as_i64() >= Some(1))
    });
}

#[test]
fn pre_stop_hooks_run_before_the_container_is_stopped() {
    let mut k = Kubelet::new("prestop");
    let out = k.root.parent().unwrap().join("hook-out");
    std::fs::create_dir_all(&out).unwrap();
    k.manifest(
        "hooked.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: hooked, namespace: NAMESPACE}}
spec:
  terminationGracePeriodSeconds: 5
  volumes: [{{name: out, hostPath: {{path: "{}"}}}}]
  containers:
  - name: main
    image: "{BUSYBOX}"
    command: [sleep, "3600"]
    volumeMounts: [{{name: out, mountPath: /out}}]
    lifecycle:
      preStop: {{exec: {{command: [sh, -c, "echo stopping-gracefully > /out/hook"]}}}}
"#,
            out.display()
        ),
    );
    k.start();
    eventually("the pod", WAIT, || k.containers("hooked", "main", false).pop());
    std::fs::remove_file(k.manifests.join("hooked.yaml")).unwrap();
    eventually("the pod removed", WAIT, || {
        k.containers("hooked", "main", true).is_empty().then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(out.join("hook")).unwrap().trim(),
        "stopping-gracefully"
    );
}

#[test]
fn a_containerized_kubelet_runs_static_pods_without_privileges() {
    let k = Kubelet::new("ctr");
    k.manifest("a.yaml", &sleeper("a", "3600"));
    let name = format!("hyperkube-test-kubelet-{}", k.node);
    docker(&["rm", "-f", &name]);
    let bind = |p: &std::path::Path| format!("{0}:{0}", p.display());
    std::fs::create_dir_all(&k.root).unwrap();
    let id = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--net=host",
        "--pid=host",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        &bind(&k.root),
        "-v",
        &bind(&k.manifests),
        "-v",
        "/:/rootfs:ro",
        INFRA,
        "kubelet",
        "--containerized",
        "--port=0",
        &format!("--root-dir={}", k.root.display()),
        &format!("--pod-manifest-path={}", k.manifests.display()),
        &format!("--hostname-override={}", k.node),
        &format!("--pod-infra-container-image={INFRA}"),
    ]);
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            docker(&["rm", "-f", &self.0]);
        }
    }
    let _kubelet = Remove(name.clone());
    assert!(!id.is_empty(), "the kubelet container starts");
    let pod = eventually("the static pod started by the containerized kubelet", WAIT, || {
        k.containers("a", "main", false).pop()
    });

    let privileged = docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Privileged}} {{len .HostConfig.Devices}}",
        &name,
    ]);
    assert_eq!(privileged, "false 0", "no --privileged, no devices");
    let mounts = docker(&["inspect", "-f", "{{range .Mounts}}{{.Source}} {{end}}", &name]);
    assert!(
        !mounts.split_whitespace().any(|m| m == "/dev" || m.starts_with("/dev/")),
        "{mounts}"
    );

    docker(&["restart", &name]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        k.containers("a", "main", true),
        [pod],
        "the pod kept running through the kubelet's restart"
    );
    let logs = Command::new("docker").args(["logs", &name]).output().unwrap();
    let logs = String::from_utf8_lossy(&logs.stderr);
    assert!(logs.contains("kubelet starting"), "{logs}");
}

#[test]
fn memory_empty_dirs_are_tmpfs_and_are_unmounted_with_their_pod() {
    let mut k = Kubelet::new("tmpfs");
    let out = k.root.parent().unwrap().join("tmpfs-out");
    std::fs::create_dir_all(&out).unwrap();
    k.manifest(
        "mem.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: mem, namespace: NAMESPACE}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: cache, emptyDir: {{medium: Memory}}}}
  - {{name: out, hostPath: {{path: "{}"}}}}
  containers:
  - name: main
    image: "{BUSYBOX}"
    command: [sh, -c, "grep ' /cache ' /proc/mounts > /out/mounts; exec sleep 3600"]
    volumeMounts: [{{name: cache, mountPath: /cache}}, {{name: out, mountPath: /out}}]
"#,
            out.display()
        ),
    );
    k.start();
    let mounts = eventually("the container's view of /cache", WAIT, || {
        std::fs::read_to_string(out.join("mounts"))
            .ok()
            .filter(|m| !m.is_empty())
    });
    assert!(mounts.contains("tmpfs"), "{mounts}");
    let root = std::fs::canonicalize(&k.root).unwrap();
    let ours = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&*root.to_string_lossy()))
            .count()
    };
    assert_eq!(ours(), 1, "one tmpfs under the kubelet's root dir");
    std::fs::remove_file(k.manifests.join("mem.yaml")).unwrap();
    eventually("the pod gone and its tmpfs unmounted", WAIT, || {
        (k.containers("mem", "main", true).is_empty() && ours() == 0).then_some(())
    });
}

#[test]
fn a_privileged_container_the_host_cannot_grant_is_refused_clearly() {
    let mut k = Kubelet::new("priv");
    k.manifest(
        "priv.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: priv, namespace: NAMESPACE}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: \"{BUSYBOX}\"\n    command: [sleep, \"3600\"]\n    securityContext: {{privileged: true}}\n"
        ),
    );
    k.manifest("other.yaml", &sleeper("other", "3600"));
    k.start();
    // Privileged containers fail on hosts like this one (a capability is missing from the
    // bounding set); where the host does grant them, the pod simply runs.
    let outcome = eventually("the privileged pod to run or be refused", WAIT, || {
        let pods = k.pods();
        let pod = pods["items"]
            .as_array()?
            .iter()
            .find(|p| p["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("priv-")))?
            .clone();
        let state = pod["status"]["containerStatuses"][0]["state"].clone();
        if state["running"].is_object() {
            return Some(None);
        }
        (state["waiting"]["reason"] == "CreateContainerError")
            .then(|| Some(state["waiting"]["message"].as_str().unwrap_or_default().to_string()))
    });
    if let Some(message) = outcome {
        assert!(message.contains("cannot run privileged containers"), "{message}");
    }
    eventually("the other pod running regardless", WAIT, || {
        k.containers("other", "main", false).pop()
    });
}
