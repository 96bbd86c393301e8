//! The Docker runtime against a real daemon (`/var/run/docker.sock`, API 1.41 or later) and the
//! images `images/hyperkube/build.sh` makes: `hyperkube-test/busybox:1` for app containers and
//! `hyperkube:latest` (its `hyperkube pause` exits on SIGTERM) for sandboxes. A missing daemon or
//! image fails the tests with a message; nothing is skipped. No registry is used: the only pull
//! is one that must fail.
//!
//! Each test runs in its own pod (a unique uid) and removes every container labelled with that
//! uid when it ends, also when it fails.
//!
//! The runtime types are `pub(crate)`, so these tests are a module of the crate rather than an
//! integration test crate.
//! Besides the runtime, the tests use bollard directly to look inside containers (exec, inspect)
//! and to clean up: the trait has no exec.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail, ensure};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions, RemoveContainerOptions};
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kubelet::runtime::docker::Docker;
use crate::kubelet::runtime::{
    ContainerConfig, ContainerState, ContainerStatus, Error, LogOptions, Mount, PodRef, PortMapping, Resources,
    Runtime, Sandbox, SandboxConfig, SandboxState, Security, labels,
};

const ENDPOINT: &str = "unix:///var/run/docker.sock";
const BUSYBOX: &str = "hyperkube-test/busybox:1";
const PAUSE: &str = "hyperkube:latest";
const NAMESPACE: &str = "hk-test";
/// How long a test waits for something the daemon does asynchronously.
const PATIENCE: Duration = Duration::from_secs(20);

/// One test's pod: the runtime under test, the pod's identity, its state directory.
struct Ctx {
    runtime: Docker,
    docker: bollard::Docker,
    pod: PodRef,
    state_dir: PathBuf,
}

/// Runs `body` in a fresh pod, then removes every container of that pod, whatever happened.
async fn with_pod<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let docker = bollard::Docker::connect_with_unix(ENDPOINT, 120, bollard::API_DEFAULT_VERSION)
        .expect("tests need a Docker daemon at /var/run/docker.sock")
        .negotiate_version()
        .await
        .expect("tests need a running Docker daemon at /var/run/docker.sock (start dockerd)");
    for image in [BUSYBOX, PAUSE] {
        docker.inspect_image(image).await.unwrap_or_else(|err| {
            panic!("tests need the image {image}: run images/hyperkube/build.sh (scripts/test does): {err}")
        });
    }

    let state = tempfile::tempdir().expect("temporary state directory");
    let runtime = Docker::connect(ENDPOINT, state.path().to_path_buf())
        .await
        .expect("connecting the runtime");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let pod = PodRef {
        namespace: NAMESPACE.to_owned(),
        name: test.to_owned(),
        uid: format!("{:x}-{nanos:x}", std::process::id()),
    };
    let ctx = Arc::new(Ctx {
        runtime,
        docker: docker.clone(),
        pod: pod.clone(),
        state_dir: state.path().to_path_buf(),
    });

    let outcome = AssertUnwindSafe(body(ctx)).catch_unwind().await;
    remove_pod_containers(&docker, &pod.uid).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(err)) => panic!("{test}: {err:?}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Removes, by force, every container labelled with the pod's uid.
async fn remove_pod_containers(docker: &bollard::Docker, uid: &str) {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_owned(),
            vec![format!("{}={uid}", labels::POD_UID)],
        )])),
        ..Default::default()
    };
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return;
    };
    for id in containers.into_iter().filter_map(|c| c.id) {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        let _ = docker.remove_container(&id, Some(options)).await;
    }
}

fn sandbox_config(pod: &PodRef) -> SandboxConfig {
    SandboxConfig {
        pod: pod.clone(),
        image: PAUSE.to_owned(),
        hostname: pod.name.clone(),
        host_network: false,
        ports: Vec::new(),
        resolv_conf: None,
        attempt: 0,
        labels: BTreeMap::new(),
    }
}

fn container_config(name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        name: name.to_owned(),
        image: BUSYBOX.to_owned(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

impl Ctx {
    /// Runs a sandbox and returns it as listed.
    async fn sandbox(&self, config: &SandboxConfig) -> anyhow::Result<Sandbox> {
        let id = self.runtime.run_pod_sandbox(config).await?;
        self.listed_sandbox(&id)
            .await?
            .ok_or_else(|| anyhow!("sandbox {id} is not listed"))
    }

    async fn listed_sandbox(&self, id: &str) -> anyhow::Result<Option<Sandbox>> {
        Ok(self
            .runtime
            .list_pod_sandboxes()
            .await?
            .into_iter()
            .find(|s| s.id == id))
    }

    async fn listed_container(&self, id: &str) -> anyhow::Result<Option<ContainerStatus>> {
        Ok(self.runtime.list_containers().await?.into_iter().find(|c| c.id == id))
    }

    /// Creates and starts a container in `sandbox`.
    async fn start(&self, sandbox: &Sandbox, config: &ContainerConfig) -> anyhow::Result<String> {
        let id = self.runtime.create_container(sandbox, config).await?;
        self.runtime.start_container(&id).await?;
        Ok(id)
    }

    /// Polls the list until container `id` satisfies `done`.
    async fn wait_for(&self, id: &str, done: impl Fn(&ContainerStatus) -> bool) -> anyhow::Result<ContainerStatus> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self.listed_container(id).await?;
            match status {
                Some(status) if done(&status) => return Ok(status),
                _ if Instant::now() > deadline => bail!("container {id} never got there: {status:?}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Runs `command` in `id` until it exits 0, returning its output.
    async fn exec_until_ok(&self, id: &str, command: &[String]) -> anyhow::Result<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (code, output) = self.exec_output(id, command).await?;
            if code == 0 {
                return Ok(output);
            }
            ensure!(Instant::now() < deadline, "{command:?} kept failing: {code} {output:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `command` in `id` through the Docker API (the runtime has no exec) and returns its
    /// exit code and output.
    async fn exec_output(&self, id: &str, command: &[String]) -> anyhow::Result<(i64, String)> {
        let options = CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.to_vec()),
            ..Default::default()
        };
        let exec = self.docker.create_exec(id, options).await?;
        let StartExecResults::Attached { mut output, .. } = self.docker.start_exec(&exec.id, None).await? else {
            bail!("the exec was detached");
        };
        let mut text = Vec::new();
        while let Some(chunk) = tokio::time::timeout(PATIENCE, output.next()).await? {
            text.extend_from_slice(&chunk?.into_bytes());
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let info = self.docker.inspect_exec(&exec.id).await?;
            if let (Some(false), Some(code)) = (info.running, info.exit_code) {
                return Ok((code, String::from_utf8(text)?));
            }
            ensure!(Instant::now() < deadline, "exec {command:?} never finished");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The whole log of `id` (no follow) as text.
    async fn log_text(&self, id: &str, options: LogOptions) -> anyhow::Result<String> {
        let mut stream = self.runtime.logs(id, &options).await?;
        let mut text = Vec::new();
        while let Some(chunk) = tokio::time::timeout(PATIENCE, stream.next()).await? {
            text.extend_from_slice(&chunk?);
        }
        Ok(String::from_utf8(text)?)
    }
}

#[tokio::test]
async fn sandbox_with_two_containers_shares_network_and_carries_identity() {
    with_pod("two-containers", |ctx| async move {
        let mut config = sandbox_config(&ctx.pod);
        config.hostname = "web-host".to_owned();
        config.resolv_conf = Some("nameserver 192.0.2.53\nsearch hk-test.svc.cluster.local\n".to_owned());
        config.labels.insert(labels::GRACE_PERIOD.to_owned(), "30".to_owned());
        let sandbox = ctx.sandbox(&config).await?;

        ensure!(sandbox.state == SandboxState::Ready, "{sandbox:?}");
        ensure!(sandbox.pod == ctx.pod, "{sandbox:?}");
        ensure!(sandbox.attempt == 0);
        let ip = sandbox.ip.clone().context("a bridge sandbox has an ip")?;
        ip.parse::<std::net::Ipv4Addr>().with_context(|| format!("ip {ip}"))?;
        ensure!(sandbox.labels.get(labels::GRACE_PERIOD).map(String::as_str) == Some("30"));
        ensure!(sandbox.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some("POD"));
        ensure!(sandbox.labels.get(labels::CONTAINER_TYPE).map(String::as_str) == Some("podsandbox"));
        ensure!(sandbox.labels.get(labels::MANAGED_BY).map(String::as_str) == Some("hyperkube"));
        let age = SystemTime::now().duration_since(sandbox.created_at)?;
        ensure!(age < Duration::from_secs(120), "created {age:?} ago");

        let mut server = container_config("server", &[]);
        server.command = sh("echo hello-from-server > /index.html && exec httpd -f -p 8080 -h /");
        server.labels.insert(labels::HASH.to_owned(), "abc123".to_owned());
        let server_id = ctx.start(&sandbox, &server).await?;
        let mut client = container_config("client", &["sleep", "3600"]);
        client.restart_count = 2;
        let client_id = ctx.start(&sandbox, &client).await?;

        // The client reaches the server on localhost: one network namespace.
        let fetch = sh("wget -q -O - http://127.0.0.1:8080/index.html");
        let body = ctx.exec_until_ok(&client_id, &fetch).await?;
        ensure!(body == "hello-from-server\n", "{body:?}");
        // The sandbox's hostname and resolv.conf reach the app containers.
        let (code, hostname) = ctx.exec_output(&client_id, &["hostname".to_owned()]).await?;
        ensure!(code == 0 && hostname.trim() == "web-host", "{code} {hostname:?}");
        let (_, resolv) = ctx.exec_output(&client_id, &sh("cat /etc/resolv.conf")).await?;
        ensure!(resolv.contains("nameserver 192.0.2.53"), "{resolv:?}");

        // A container of the same pod that hyperkube did not create is not listed.
        let stray = bollard::models::ContainerCreateBody {
            image: Some(BUSYBOX.to_owned()),
            labels: Some(HashMap::from([(labels::POD_UID.to_owned(), ctx.pod.uid.clone())])),
            ..Default::default()
        };
        let stray = ctx
            .docker
            .create_container(None::<CreateContainerOptions>, stray)
            .await?
            .id;

        let listed = ctx.runtime.list_containers().await?;
        ensure!(
            !listed.iter().any(|c| c.id == stray),
            "an unmanaged container was listed"
        );
        ensure!(
            !listed.iter().any(|c| c.id == sandbox.id),
            "the sandbox was listed as a container"
        );
        let busybox_id = ctx.runtime.image_id(BUSYBOX).await?.context("busybox is present")?;
        for (id, name, restarts) in [(&server_id, "server", 0), (&client_id, "client", 2)] {
            let status = listed
                .iter()
                .find(|c| &c.id == id)
                .with_context(|| format!("{name} not listed"))?;
            ensure!(status.state == ContainerState::Running, "{status:?}");
            ensure!(
                status.name == name && status.pod == ctx.pod && status.sandbox_id == sandbox.id,
                "{status:?}"
            );
            ensure!(status.restart_count == restarts, "{status:?}");
            ensure!(status.image == BUSYBOX && status.image_id == busybox_id, "{status:?}");
            ensure!(status.image_id.starts_with("sha256:"), "{status:?}");
            ensure!(
                status.started_at.is_some() && status.finished_at.is_none(),
                "{status:?}"
            );
            ensure!(status.exit_code.is_none() && status.reason.is_none(), "{status:?}");
            ensure!(status.labels.get(labels::CONTAINER_TYPE).map(String::as_str) == Some("container"));
            ensure!(status.labels.get(labels::RESTART_COUNT) == Some(&restarts.to_string()));
        }
        let server_status = listed.iter().find(|c| c.id == server_id).context("server")?;
        ensure!(server_status.labels.get(labels::HASH).map(String::as_str) == Some("abc123"));

        // dockershim's names and namespace wiring.
        let pod = &ctx.pod;
        let infra = ctx.docker.inspect_container(&sandbox.id, None).await?;
        ensure!(
            infra.name.as_deref() == Some(format!("/k8s_POD_{}_{}_{}_0", pod.name, pod.namespace, pod.uid).as_str())
        );
        let infra_host = infra.host_config.context("host config")?;
        ensure!(
            infra_host.ipc_mode.as_deref() == Some("shareable"),
            "{:?}",
            infra_host.ipc_mode
        );
        let app = ctx.docker.inspect_container(&client_id, None).await?;
        ensure!(
            app.name.as_deref() == Some(format!("/k8s_client_{}_{}_{}_2", pod.name, pod.namespace, pod.uid).as_str())
        );
        let app_host = app.host_config.context("host config")?;
        let joined = format!("container:{}", sandbox.id);
        ensure!(
            app_host.network_mode.as_deref() == Some(joined.as_str()),
            "{:?}",
            app_host.network_mode
        );
        ensure!(
            app_host.ipc_mode.as_deref() == Some(joined.as_str()),
            "{:?}",
            app_host.ipc_mode
        );
        ensure!(
            app_host.pid_mode.as_deref().unwrap_or_default().is_empty(),
            "{:?}",
            app_host.pid_mode
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn host_ports_reach_the_pod_from_the_host() {
    with_pod("host-ports", |ctx| async move {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?.port()
        };
        let mut config = sandbox_config(&ctx.pod);
        config.ports.push(PortMapping {
            host_port: port,
            container_port: 8080,
            protocol: "TCP".to_owned(),
            host_ip: "127.0.0.1".to_owned(),
        });
        let sandbox = ctx.sandbox(&config).await?;
        let mut server = container_config("server", &[]);
        server.command = sh("echo via-host-port > /index.html && exec httpd -f -p 8080 -h /");
        ctx.start(&sandbox, &server).await?;

        let deadline = Instant::now() + PATIENCE;
        loop {
            let attempt = async {
                let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await?;
                let mut response = String::new();
                stream.read_to_string(&mut response).await?;
                anyhow::Ok(response)
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(response)) if response.contains("via-host-port") => return Ok(()),
                outcome if Instant::now() > deadline => bail!("no answer on 127.0.0.1:{port}: {outcome:?}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await;
}

#[tokio::test]
async fn host_network_sandbox_has_no_ip_and_the_hosts_hostname() {
    with_pod("host-network", |ctx| async move {
        let mut config = sandbox_config(&ctx.pod);
        config.host_network = true;
        let sandbox = ctx.sandbox(&config).await?;
        ensure!(
            sandbox.state == SandboxState::Ready && sandbox.ip.is_none(),
            "{sandbox:?}"
        );
        let id = ctx
            .start(&sandbox, &container_config("app", &["sleep", "3600"]))
            .await?;
        let (_, hostname) = ctx.exec_output(&id, &["hostname".to_owned()]).await?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
        ensure!(hostname.trim() == host.trim(), "{hostname:?} vs {host:?}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn exited_containers_report_exit_code_and_reason() {
    with_pod("exits", |ctx| async move {
        let sandbox = ctx.sandbox(&sandbox_config(&ctx.pod)).await?;
        let failing = ctx
            .start(&sandbox, &container_config("failing", &["sh", "-c", "exit 3"]))
            .await?;
        let succeeding = ctx.start(&sandbox, &container_config("succeeding", &["true"])).await?;
        let created = ctx
            .runtime
            .create_container(&sandbox, &container_config("created", &["true"]))
            .await?;

        let status = ctx.wait_for(&failing, |c| c.state == ContainerState::Exited).await?;
        ensure!(
            status.exit_code == Some(3) && status.reason.as_deref() == Some("Error"),
            "{status:?}"
        );
        // NB: Docker may record a short-lived container's start after its finish: no ordering check.
        ensure!(
            status.started_at.is_some() && status.finished_at.is_some(),
            "{status:?}"
        );
        // A second list answers from the cache with the same status.
        ensure!(ctx.listed_container(&failing).await?.as_ref() == Some(&status));

        let status = ctx.wait_for(&succeeding, |c| c.state == ContainerState::Exited).await?;
        ensure!(
            status.exit_code == Some(0) && status.reason.as_deref() == Some("Completed"),
            "{status:?}"
        );

        let status = ctx
            .listed_container(&created)
            .await?
            .context("created container listed")?;
        ensure!(status.state == ContainerState::Created, "{status:?}");
        ensure!(status.started_at.is_none() && status.exit_code.is_none(), "{status:?}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn stop_honours_the_grace_period() {
    with_pod("stop-grace", |ctx| async move {
        let sandbox = ctx.sandbox(&sandbox_config(&ctx.pod)).await?;
        let mut trapping = container_config("trapping", &[]);
        trapping.command = sh("trap 'exit 0' TERM; while true; do sleep 1; done");
        let trapping = ctx.start(&sandbox, &trapping).await?;
        // As PID 1 without a handler, sh ignores SIGTERM: only SIGKILL ends it.
        let mut ignoring = container_config("ignoring", &[]);
        ignoring.command = sh("while true; do sleep 1; done");
        let ignoring = ctx.start(&sandbox, &ignoring).await?;
        // Let the shells install their handlers.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let started = Instant::now();
        ctx.runtime.stop_container(&trapping, Duration::from_secs(30)).await?;
        let took = started.elapsed();
        ensure!(
            took < Duration::from_secs(10),
            "a container exiting on SIGTERM took {took:?}"
        );
        let status = ctx.wait_for(&trapping, |c| c.state == ContainerState::Exited).await?;
        ensure!(status.exit_code == Some(0), "{status:?}");

        let started = Instant::now();
        ctx.runtime.stop_container(&ignoring, Duration::from_secs(2)).await?;
        let took = started.elapsed();
        ensure!(
            took >= Duration::from_secs(2),
            "killed before the grace period ended: {took:?}"
        );
        ensure!(
            took < Duration::from_secs(15),
            "the grace period was not honoured: {took:?}"
        );
        let status = ctx.wait_for(&ignoring, |c| c.state == ContainerState::Exited).await?;
        ensure!(
            status.exit_code == Some(137) && status.reason.as_deref() == Some("Error"),
            "{status:?}"
        );

        // Stopping a stopped container succeeds; a missing one is NotFound.
        ctx.runtime.stop_container(&ignoring, Duration::from_secs(1)).await?;
        let missing = ctx
            .runtime
            .stop_container("hk-test-no-such-container", Duration::from_secs(1))
            .await;
        ensure!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn logs_honour_tail_timestamps_since_and_follow() {
    with_pod("logs", |ctx| async move {
        let sandbox = ctx.sandbox(&sandbox_config(&ctx.pod)).await?;
        let mut quiet = container_config("quiet", &[]);
        // Docker copies stdout and stderr separately: a pause keeps their order in the log.
        quiet.command = sh("echo err1 >&2; sleep 1; echo line1; echo line2; echo line3; exec sleep 3600");
        let quiet = ctx.start(&sandbox, &quiet).await?;
        let mut ticking = container_config("ticking", &[]);
        ticking.command = sh("while true; do echo tick; sleep 1; done");
        let ticking = ctx.start(&sandbox, &ticking).await?;

        // All of it, stdout and stderr, without Docker's 8-byte frame headers.
        let deadline = Instant::now() + PATIENCE;
        let all = loop {
            let all = ctx.log_text(&quiet, LogOptions::default()).await?;
            if all.contains("line3") || Instant::now() > deadline {
                break all;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ensure!(all == "err1\nline1\nline2\nline3\n", "{all:?}");

        let tail = ctx
            .log_text(
                &quiet,
                LogOptions {
                    tail_lines: Some(2),
                    ..Default::default()
                },
            )
            .await?;
        ensure!(tail == "line2\nline3\n", "{tail:?}");

        let stamped = ctx
            .log_text(
                &quiet,
                LogOptions {
                    timestamps: true,
                    ..Default::default()
                },
            )
            .await?;
        let lines: Vec<&str> = stamped.lines().collect();
        ensure!(lines.len() == 4, "{stamped:?}");
        for line in lines {
            let (stamp, _) = line.split_once(' ').context("timestamp and text")?;
            stamp
                .parse::<jiff::Timestamp>()
                .with_context(|| format!("timestamp {stamp:?}"))?;
        }

        let future = SystemTime::now() + Duration::from_secs(3600);
        let none = ctx
            .log_text(
                &quiet,
                LogOptions {
                    since: Some(future),
                    ..Default::default()
                },
            )
            .await?;
        ensure!(none.is_empty(), "{none:?}");
        let past = UNIX_EPOCH + Duration::from_secs(1);
        let since = ctx
            .log_text(
                &quiet,
                LogOptions {
                    since: Some(past),
                    ..Default::default()
                },
            )
            .await?;
        ensure!(since == all, "{since:?}");

        // Following delivers lines written after the call.
        let options = LogOptions {
            follow: true,
            tail_lines: Some(0),
            ..Default::default()
        };
        let mut stream = ctx.runtime.logs(&ticking, &options).await?;
        let mut ticks = 0;
        while ticks < 2 {
            let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .context("no new line while following")?
                .context("the followed stream ended")??;
            ticks += String::from_utf8_lossy(&chunk).matches("tick").count();
        }
        drop(stream);

        let missing = ctx
            .runtime
            .logs("hk-test-no-such-container", &LogOptions::default())
            .await;
        ensure!(matches!(missing, Err(Error::NotFound(_))), "{:?}", missing.err());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn remove_cleans_up_containers_sandbox_and_state() {
    with_pod("remove", |ctx| async move {
        let mut config = sandbox_config(&ctx.pod);
        config.resolv_conf = Some("nameserver 192.0.2.53\n".to_owned());
        config.attempt = 1;
        let sandbox = ctx.sandbox(&config).await?;
        ensure!(sandbox.attempt == 1, "{sandbox:?}");
        let pod = &ctx.pod;
        let state = ctx
            .state_dir
            .join(format!("k8s_POD_{}_{}_{}_1", pod.name, pod.namespace, pod.uid));
        ensure!(
            state.join("resolv.conf").is_file(),
            "no resolv.conf in {}",
            state.display()
        );
        // The same attempt again conflicts, and leaves the first sandbox's files alone.
        let twice = ctx.runtime.run_pod_sandbox(&config).await;
        ensure!(matches!(twice, Err(Error::Refused { .. })), "{twice:?}");
        ensure!(
            state.join("resolv.conf").is_file(),
            "the conflict removed {}",
            state.display()
        );

        let running = ctx
            .start(&sandbox, &container_config("running", &["sleep", "3600"]))
            .await?;
        let refused = ctx.runtime.remove_container(&running).await;
        ensure!(
            matches!(refused, Err(Error::Refused { .. })),
            "removed a running container: {refused:?}"
        );
        ctx.runtime.stop_container(&running, Duration::from_secs(0)).await?;
        ctx.runtime.remove_container(&running).await?;
        ensure!(
            ctx.listed_container(&running).await?.is_none(),
            "a removed container is listed"
        );
        let again = ctx.runtime.remove_container(&running).await;
        ensure!(matches!(again, Err(Error::NotFound(_))), "{again:?}");

        // Removing the sandbox takes its remaining (stopped) containers along.
        let leftover = ctx.start(&sandbox, &container_config("leftover", &["true"])).await?;
        ctx.wait_for(&leftover, |c| c.state == ContainerState::Exited).await?;
        ctx.runtime.stop_pod_sandbox(&sandbox.id).await?;
        ctx.runtime.stop_pod_sandbox(&sandbox.id).await?;
        let stopped = ctx
            .listed_sandbox(&sandbox.id)
            .await?
            .context("a stopped sandbox is listed")?;
        ensure!(
            stopped.state == SandboxState::NotReady && stopped.ip.is_none(),
            "{stopped:?}"
        );
        ctx.runtime.remove_pod_sandbox(&sandbox.id).await?;

        ensure!(
            ctx.listed_sandbox(&sandbox.id).await?.is_none(),
            "a removed sandbox is listed"
        );
        ensure!(
            ctx.listed_container(&leftover).await?.is_none(),
            "the sandbox's container is listed"
        );
        ensure!(!state.exists(), "{} is left behind", state.display());
        let again = ctx.runtime.remove_pod_sandbox(&sandbox.id).await;
        ensure!(matches!(again, Err(Error::NotFound(_))), "{again:?}");
        let again = ctx.runtime.stop_pod_sandbox(&sandbox.id).await;
        ensure!(matches!(again, Err(Error::NotFound(_))), "{again:?}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn create_applies_resources_security_env_and_mounts() {
    with_pod("settings", |ctx| async move {
        let sandbox = ctx.sandbox(&sandbox_config(&ctx.pod)).await?;
        let volume = tempfile::tempdir()?;
        std::fs::write(volume.path().join("greeting"), "hi from the host\n")?;
        let mut config = container_config("app", &["sleep", "3600"]);
        config.env = vec![("GREETING".to_owned(), "hello world".to_owned())];
        config.working_dir = Some("/etc".to_owned());
        config.mounts = vec![Mount {
            host_path: volume.path().display().to_string(),
            container_path: "/data".to_owned(),
            read_only: true,
        }];
        config.resources = Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(64 << 20),
        };
        config.security = Security {
            run_as_user: Some(1000),
            run_as_group: Some(1001),
            cap_add: vec!["SYS_TIME".to_owned()],
            cap_drop: vec!["NET_RAW".to_owned()],
            read_only_root_filesystem: true,
            privileged: false,
        };
        let id = ctx.start(&sandbox, &config).await?;

        let (_, ids) = ctx.exec_output(&id, &sh("busybox id -u; busybox id -g")).await?;
        ensure!(ids == "1000\n1001\n", "{ids:?}");
        let (_, env) = ctx.exec_output(&id, &["env".to_owned()]).await?;
        ensure!(env.lines().any(|l| l == "GREETING=hello world"), "{env:?}");
        let (_, pwd) = ctx.exec_output(&id, &sh("pwd")).await?;
        ensure!(pwd == "/etc\n", "{pwd:?}");
        let (_, greeting) = ctx.exec_output(&id, &sh("cat /data/greeting")).await?;
        ensure!(greeting == "hi from the host\n", "{greeting:?}");
        let (code, _) = ctx.exec_output(&id, &sh("echo x > /data/new")).await?;
        ensure!(code != 0, "wrote to a read-only mount");
        let (code, _) = ctx.exec_output(&id, &sh("echo x > /written")).await?;
        ensure!(code != 0, "wrote to a read-only root filesystem");

        let host = ctx
            .docker
            .inspect_container(&id, None)
            .await?
            .host_config
            .context("host config")?;
        ensure!(
            host.cpu_shares == Some(512) && host.cpu_quota == Some(50_000),
            "{host:?}"
        );
        ensure!(
            host.cpu_period == Some(100_000) && host.memory == Some(64 << 20),
            "{host:?}"
        );
        ensure!(host.cap_add == Some(vec!["SYS_TIME".to_owned()]), "{:?}", host.cap_add);
        ensure!(host.cap_drop == Some(vec!["NET_RAW".to_owned()]), "{:?}", host.cap_drop);
        ensure!(
            host.readonly_rootfs == Some(true) && host.privileged == Some(false),
            "{host:?}"
        );

        // Args alone keep the image's entrypoint (none here) and replace its cmd.
        let mut args_only = container_config("args", &[]);
        args_only.args = sh("echo from-args");
        let args_id = ctx.start(&sandbox, &args_only).await?;
        ctx.wait_for(&args_id, |c| c.state == ContainerState::Exited).await?;
        let logged = ctx.log_text(&args_id, LogOptions::default()).await?;
        ensure!(logged == "from-args\n", "{logged:?}");

        let mut group_only = container_config("group", &["true"]);
        group_only.security.run_as_group = Some(1001);
        let refused = ctx.runtime.create_container(&sandbox, &group_only).await;
        ensure!(matches!(refused, Err(Error::Refused { .. })), "{refused:?}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn images_are_found_and_a_failed_pull_is_image_pull() {
    with_pod("images", |ctx| async move {
        let id = ctx.runtime.image_id(BUSYBOX).await?.context("busybox is present")?;
        ensure!(id.starts_with("sha256:"), "{id}");
        ensure!(
            ctx.runtime
                .image_id("hyperkube-test/no-such-image:never")
                .await?
                .is_none()
        );

        // A registry on a loopback port nobody listens on: the pull fails at once, and no traffic
        // leaves the machine (a registry by name would make the daemon look it up in DNS).
        let image = "127.0.0.1:1/hyperkube-test/no-such-image:never";
        let pulled = tokio::time::timeout(Duration::from_secs(90), ctx.runtime.pull_image(image)).await?;
        match pulled {
            Err(Error::ImagePull { image: failed, message }) => {
                ensure!(failed == image && !message.is_empty(), "{failed} {message}");
            }
            other => bail!("expected ImagePull, got {other:?}"),
        }

        // The kubelet pulls the infra image first: a sandbox whose image is missing is NotFound,
        // and leaves nothing behind.
        let mut config = sandbox_config(&ctx.pod);
        config.image = image.to_owned();
        config.resolv_conf = Some("nameserver 192.0.2.53\n".to_owned());
        let run = ctx.runtime.run_pod_sandbox(&config).await;
        ensure!(
            matches!(&run, Err(Error::NotFound(what)) if what.contains(image)),
            "{run:?}"
        );
        ensure!(std::fs::read_dir(&ctx.state_dir)?.next().is_none(), "state left behind");
        ensure!(!ctx.runtime.list_pod_sandboxes().await?.iter().any(|s| s.pod == ctx.pod));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn version_names_docker() {
    let state = tempfile::tempdir().expect("state dir");
    let runtime = Docker::connect(ENDPOINT, state.path().to_path_buf())
        .await
        .expect("tests need a running Docker daemon");
    let version = runtime.version().await.expect("version");
    assert_eq!(version.name, "docker");
    assert!(!version.version.is_empty(), "{version:?}");
}

#[tokio::test]
async fn connect_fails_cleanly_without_a_daemon() {
    let state = tempfile::tempdir().expect("state dir");
    let missing = Docker::connect("unix:///nonexistent/docker.sock", state.path().to_path_buf()).await;
    assert!(matches!(missing, Err(Error::Unavailable(_))), "{:?}", missing.err());
    let tcp = Docker::connect("tcp://127.0.0.1:2375", state.path().to_path_buf()).await;
    assert!(matches!(tcp, Err(Error::Refused { .. })), "{:?}", tcp.err());
}
