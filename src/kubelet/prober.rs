//! Liveness, readiness and startup probes: exec, httpGet and tcpSocket, with upstream's timing
//! fields (initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold,
//! failureThreshold). A failed startup or liveness probe gets the container restarted; readiness
//! decides the container's `ready` and so the pod's Ready condition. Mirrors upstream's
//! `pkg/kubelet/prober`, run from the pod's own worker instead of one goroutine per probe.
//!
//! Results belong to one container instance: a restarted container starts over, not ready.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, LifecycleHandler, Pod, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::kuberuntime::Observed;
use super::runtime::{ContainerState, Runtime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Startup,
    Liveness,
    Readiness,
}

/// What the probes know about one container instance.
#[derive(Debug, Default)]
struct ContainerProbes {
    container_id: String,
    started: bool,
    ready: bool,
    successes: HashMap<Kind, u32>,
    failures: HashMap<Kind, u32>,
    next: HashMap<Kind, Instant>,
}

/// Probe state of one pod, kept by its worker.
#[derive(Debug, Default)]
pub(crate) struct Probes {
    containers: HashMap<String, ContainerProbes>,
}

/// A container whose startup or liveness probe failed too often: it must be restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failed {
    pub(crate) container_id: String,
    pub(crate) name: String,
    pub(crate) message: String,
}

/// What one round of probing found.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Containers to restart.
    pub(crate) failed: Vec<Failed>,
    /// When the next probe is due.
    pub(crate) next: Option<Duration>,
}

impl Probes {
    /// Whether the container `name` passes its readiness probe (true when it has none).
    pub(crate) fn ready(&self, pod: &Pod, name: &str) -> bool {
        let has_probe = containers(pod)
            .find(|c| c.name == name)
            .is_some_and(|c| c.readiness_probe.is_some());
        !has_probe || self.containers.get(name).is_some_and(|p| p.started && p.ready)
    }
}

fn containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| s.containers.iter())
}

fn seconds(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.filter(|s| *s > 0).unwrap_or(default) as u64)
}

/// Runs every probe that is due on the pod's running containers.
pub(crate) async fn run_due(rt: &dyn Runtime, pod: &Pod, observed: &Observed, probes: &mut Probes) -> Outcome {
    let mut outcome = Outcome::default();
    let pod_ip = observed
        .ready_sandbox()
        .and_then(|s| s.ip.clone())
        .unwrap_or_else(|| "127.0.0.1".into());
    let now = Instant::now();
    for container in containers(pod) {
        let (latest, _) = observed.latest(&container.name);
        let Some(instance) = latest.filter(|c| c.state == ContainerState::Running) else {
            probes.containers.remove(&container.name);
            continue;
        };
        let state = probes.containers.entry(container.name.clone()).or_default();
        if state.container_id != instance.id {
            *state = ContainerProbes {
                container_id: instance.id.clone(),
                started: container.startup_probe.is_none(),
                ..Default::default()
            };
        }
        let running_for = instance
            .started_at
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        let mut kinds = Vec::new();
        if !state.started {
            kinds.push((Kind::Startup, container.startup_probe.as_ref()));
        } else {
            kinds.push((Kind::Liveness, container.liveness_probe.as_ref()));
            kinds.push((Kind::Readiness, container.readiness_probe.as_ref()));
        }
        for (kind, probe) in kinds {
            let Some(probe) = probe else { continue };
            let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
            let period = seconds(probe.period_seconds, 10);
            if running_for < delay {
                note_next(&mut outcome, delay - running_for);
                continue;
            }
            if state.next.get(&kind).is_some_and(|at| *at > now) {
                note_next(&mut outcome, state.next[&kind] - now);
                continue;
            }
            state.next.insert(kind, now + period);
            note_next(&mut outcome, period);
            let result = run_probe(rt, probe, container, &instance.id, &pod_ip).await;
            let (success_threshold, failure_threshold) = (
                probe.success_threshold.unwrap_or(1).max(1) as u32,
                probe.failure_threshold.unwrap_or(3).max(1) as u32,
            );
            match result {
                Ok(()) => {
                    state.failures.insert(kind, 0);
                    let n = state.successes.entry(kind).or_default();
                    *n += 1;
                    if *n >= success_threshold {
                        match kind {
                            Kind::Startup => state.started = true,
                            Kind::Readiness => state.ready = true,
                            Kind::Liveness => {}
                        }
                    }
                }
                Err(message) => {
                    state.successes.insert(kind, 0);
                    let n = state.failures.entry(kind).or_default();
                    *n += 1;
                    tracing::debug!(container = %container.name, ?kind, %message, "probe failed");
                    if *n >= failure_threshold {
                        match kind {
                            Kind::Readiness => state.ready = false,
                            Kind::Startup | Kind::Liveness => {
                                let what = if kind == Kind::Startup { "Startup" } else { "Liveness" };
                                outcome.failed.push(Failed {
                                    container_id: instance.id.clone(),
                                    name: container.name.clone(),
                                    message: format!("{what} probe failed: {message}"),
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    outcome
}

fn note_next(outcome: &mut Outcome, after: Duration) {
    outcome.next = Some(outcome.next.map_or(after, |n| n.min(after)));
}

/// What a probe or a lifecycle hook does: one of its handlers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Action<'a> {
    pub(crate) exec: Option<&'a ExecAction>,
    pub(crate) http_get: Option<&'a HTTPGetAction>,
    pub(crate) tcp_socket: Option<&'a TCPSocketAction>,
}

impl<'a> From<&'a Probe> for Action<'a> {
    fn from(p: &'a Probe) -> Self {
        Self {
            exec: p.exec.as_ref(),
            http_get: p.http_get.as_ref(),
            tcp_socket: p.tcp_socket.as_ref(),
        }
    }
}

impl<'a> From<&'a LifecycleHandler> for Action<'a> {
    fn from(h: &'a LifecycleHandler) -> Self {
        Self {
            exec: h.exec.as_ref(),
            http_get: h.http_get.as_ref(),
            tcp_socket: h.tcp_socket.as_ref(),
        }
    }
}

/// Runs one probe; `Err` carries why it failed.
async fn run_probe(
    rt: &dyn Runtime,
    probe: &Probe,
    container: &Container,
    id: &str,
    pod_ip: &str,
) -> Result<(), String> {
    run_action(
        rt,
        Action::from(probe),
        container,
        id,
        pod_ip,
        seconds(probe.timeout_seconds, 1),
    )
    .await
}

/// Runs a probe's or hook's handler within `timeout`; `Err` carries why it failed.
pub(crate) async fn run_action(
    rt: &dyn Runtime,
    action: Action<'_>,
    container: &Container,
    id: &str,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    let probe = action;
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let result = rt.exec(id, &command, timeout).await.map_err(|e| e.to_string())?;
        return if result.exit_code == 0 {
            Ok(())
        } else {
            Err(format!(
                "command {command:?} exited with {}: {}",
                result.exit_code,
                String::from_utf8_lossy(&result.output).trim()
            ))
        };
    }
    if let Some(tcp) = probe.tcp_socket {
        let port = port_number(&tcp.port, container)?;
        let host = tcp
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: timed out after {timeout:?}")),
        };
    }
    if let Some(http) = probe.http_get {
        if http.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")) {
            return Err("HTTPS probes are not supported by this kubelet yet".into());
        }
        let port = port_number(&http.port, container)?;
        let host = http
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        let path = http
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return match tokio::time::timeout(timeout, http_get(&host, port, &path, &headers)).await {
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
            Ok(Err(e)) => Err(format!("Get \"http://{host}:{port}{path}\": {e}")),
            Err(_) => Err(format!(
                "Get \"http://{host}:{port}{path}\": timed out after {timeout:?}"
            )),
        };
    }
    Err("the probe has no handler this kubelet supports (exec, httpGet, tcpSocket)".into())
}

/// The port a probe names: a number, or the name of one of the container's ports.
fn port_number(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("the container has no port named {name:?}")),
    }
}

async fn http_get(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> Result<u16, String> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let agent = format!("kube-probe/{}", crate::KUBERNETES_VERSION.trim_start_matches('v'));
    let mut all: Vec<(&str, &str)> = vec![("user-agent", agent.as_str())];
    all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let response = crate::http_get::get(&authority, path, &all)
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::kuberuntime::{PodMemory, SyncContext, sync_now};
    use crate::kubelet::runtime::fake::Fake;
    use serde_json::json;

    async fn setup(container: serde_json::Value) -> (Fake, Pod, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = SyncContext::for_test(dir.path());
        let rt = Fake::with_images(&["pause", "app"]);
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [container]}}))
                .unwrap();
        sync_now(&rt, &ctx, &pod, &mut PodMemory::default()).await.unwrap();
        (rt, pod, dir)
    }

    async fn round(rt: &Fake, pod: &Pod, probes: &mut Probes) -> Outcome {
        // Make every probe due again, as if a period had passed.
        for c in probes.containers.values_mut() {
            c.next.clear();
        }
        let observed = Observed::read(rt, "u").await.unwrap();
        run_due(rt, pod, &observed, probes).await
    }

    #[tokio::test]
    async fn liveness_failures_past_the_threshold_ask_for_a_restart() {
        let (rt, pod, _dir) = setup(json!({"name": "c", "image": "app",
            "livenessProbe": {"exec": {"command": ["check"]}, "failureThreshold": 2, "periodSeconds": 1}}))
        .await;
        let mut probes = Probes::default();
        assert!(round(&rt, &pod, &mut probes).await.failed.is_empty(), "passing probe");
        rt.set_exec_exit_code("c", 1);
        assert!(
            round(&rt, &pod, &mut probes).await.failed.is_empty(),
            "one failure is tolerated"
        );
        let failed = round(&rt, &pod, &mut probes).await.failed;
        assert_eq!(failed.len(), 1);
        assert!(failed[0].message.starts_with("Liveness probe failed"), "{failed:?}");
    }

    #[tokio::test]
    async fn readiness_follows_the_probe_and_starts_false() {
        let (rt, pod, _dir) = setup(json!({"name": "c", "image": "app",
            "readinessProbe": {"exec": {"command": ["check"]}, "failureThreshold": 1}}))
        .await;
        let mut probes = Probes::default();
        assert!(!probes.ready(&pod, "c"), "not ready before the first probe");
        round(&rt, &pod, &mut probes).await;
        assert!(probes.ready(&pod, "c"));
        rt.set_exec_exit_code("c", 1);
        round(&rt, &pod, &mut probes).await;
        assert!(!probes.ready(&pod, "c"));
    }

    #[tokio::test]
    async fn the_startup_probe_holds_back_liveness_until_it_passes() {
        let (rt, pod, _dir) = setup(json!({"name": "c", "image": "app",
            "startupProbe": {"exec": {"command": ["started"]}, "failureThreshold": 1},
            "livenessProbe": {"exec": {"command": ["alive"]}, "failureThreshold": 1}}))
        .await;
        rt.set_exec_exit_code("c", 1);
        let mut probes = Probes::default();
        let failed = round(&rt, &pod, &mut probes).await.failed;
        assert!(failed[0].message.starts_with("Startup probe failed"), "{failed:?}");
    }

    #[tokio::test]
    async fn tcp_and_http_probes_reach_a_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let code = if String::from_utf8_lossy(&buf[..n]).starts_with("GET /healthz") {
                    "200 OK"
                } else {
                    "500 Oops"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let c: Container =
            serde_json::from_value(json!({"name": "c", "ports": [{"name": "web", "containerPort": port}]})).unwrap();
        let rt = Fake::default();
        let probe = |v: serde_json::Value| -> Probe { serde_json::from_value(v).unwrap() };
        let ok = probe(json!({"httpGet": {"path": "/healthz", "port": "web"}}));
        assert_eq!(run_probe(&rt, &ok, &c, "id", "127.0.0.1").await, Ok(()));
        let bad = probe(json!({"httpGet": {"path": "/other", "port": port}}));
        assert!(
            run_probe(&rt, &bad, &c, "id", "127.0.0.1")
                .await
                .unwrap_err()
                .contains("statuscode: 500")
        );
        let tcp = probe(json!({"tcpSocket": {"port": port}}));
        assert_eq!(run_probe(&rt, &tcp, &c, "id", "127.0.0.1").await, Ok(()));
        let closed = probe(json!({"tcpSocket": {"port": 1}}));
        assert!(run_probe(&rt, &closed, &c, "id", "127.0.0.1").await.is_err());
        server.abort();
    }
}
