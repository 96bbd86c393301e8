//! An in-memory runtime for unit tests and demos (`--container-runtime=fake`): it records every
//! call, keeps sandboxes and containers in maps, and fails calls on request. Containers "run"
//! until a test makes them exit with `exit_container`. Mirrors upstream's `FakeRuntime`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::stream::BoxStream;

use super::{
    ContainerConfig, ContainerState, ContainerStatus, Error, ExecResult, LogOptions, Runtime, Sandbox, SandboxConfig,
    SandboxState, Version,
};

/// The fake runtime. Cheap to create; share it behind an `Arc`.
#[derive(Default)]
pub(crate) struct Fake {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    sandboxes: BTreeMap<String, Sandbox>,
    containers: BTreeMap<String, ContainerStatus>,
    configs: BTreeMap<String, ContainerConfig>,
    images: HashSet<String>,
    calls: Vec<String>,
    fail: BTreeMap<&'static str, String>,
    exec_exit_codes: BTreeMap<String, i64>,
    sandbox_started: BTreeMap<String, SystemTime>,
}

impl Fake {
    /// A runtime that already holds `images`.
    pub(crate) fn with_images(images: &[&str]) -> Self {
        let fake = Self::default();
        fake.lock().images = images.iter().map(|i| i.to_string()).collect();
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every call so far, as `operation target`.
    #[cfg(test)]
    pub(crate) fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Makes every later call of `operation` fail with `message`.
    #[cfg(test)]
    pub(crate) fn fail(&self, operation: &'static str, message: &str) {
        self.lock().fail.insert(operation, message.to_string());
    }

    /// Makes exec commands in containers named `name` exit with `code` (0 by default).
    #[cfg(test)]
    pub(crate) fn set_exec_exit_code(&self, name: &str, code: i64) {
        self.lock().exec_exit_codes.insert(name.to_string(), code);
    }

    /// Makes a running container exit with `code`, as if its process ended.
    #[cfg(test)]
    pub(crate) fn exit_container(&self, id: &str, code: i32) {
        if let Some(c) = self.lock().containers.get_mut(id) {
            c.state = ContainerState::Exited;
            c.exit_code = Some(code);
            c.finished_at = Some(SystemTime::now());
            c.reason = Some(if code == 0 { "Completed" } else { "Error" }.into());
        }
    }

    /// Restarts a running sandbox in place, as `docker restart` does: its containers keep
    /// running, started before it.
    #[cfg(test)]
    pub(crate) fn restart_sandbox(&self, id: &str) {
        self.lock().sandbox_started.insert(id.to_string(), SystemTime::now());
    }

    fn record(&self, operation: &'static str, target: &str) -> Result<(), Error> {
        let mut state = self.lock();
        state.calls.push(format!("{operation} {target}"));
        match state.fail.get(operation) {
            Some(message) => Err(Error::Refused {
                operation,
                message: message.clone(),
            }),
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl Runtime for Fake {
    async fn version(&self) -> Result<Version, Error> {
        self.record("version", "")?;
        Ok(Version {
            name: "fake".into(),
            version: "0.0.0".into(),
        })
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, Error> {
        self.record("image_id", image)?;
        Ok(self.lock().images.contains(image).then(|| format!("sha256:{image}")))
    }

    async fn pull_image(&self, image: &str) -> Result<String, Error> {
        self.record("pull_image", image).map_err(|e| Error::ImagePull {
            image: image.to_string(),
            message: e.to_string(),
        })?;
        self.lock().images.insert(image.to_string());
        Ok(format!("sha256:{image}"))
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<String, Error> {
        self.record("run_pod_sandbox", &config.pod.name)?;
        let mut state = self.lock();
        state.next_id += 1;
        let id = format!("sandbox-{}", state.next_id);
        let ip = (!config.host_network).then(|| format!("10.88.0.{}", state.next_id % 250 + 2));
        state.sandbox_started.insert(id.clone(), SystemTime::now());
        state.sandboxes.insert(
            id.clone(),
            Sandbox {
                id: id.clone(),
                pod: config.pod.clone(),
                state: SandboxState::Ready,
                ip,
                attempt: config.attempt,
                created_at: SystemTime::now(),
                labels: config.labels.clone(),
            },
        );
        Ok(id)
    }

    async fn sandbox_started_at(&self, id: &str) -> Result<Option<SystemTime>, Error> {
        self.record("sandbox_started_at", id)?;
        let state = self.lock();
        let sandbox = state.sandboxes.get(id).ok_or_else(|| Error::NotFound(id.to_string()))?;
        Ok((sandbox.state == SandboxState::Ready)
            .then(|| state.sandbox_started.get(id).copied())
            .flatten())
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), Error> {
        self.record("stop_pod_sandbox", id)?;
        let mut state = self.lock();
        let sandbox = state
            .sandboxes
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        sandbox.state = SandboxState::NotReady;
        sandbox.ip = None;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), Error> {
        self.record("remove_pod_sandbox", id)?;
        self.lock()
            .sandboxes
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<Sandbox>, Error> {
        self.record("list_pod_sandboxes", "")?;
        Ok(self.lock().sandboxes.values().cloned().collect())
    }

    async fn create_container(&self, sandbox: &Sandbox, config: &ContainerConfig) -> Result<String, Error> {
        self.record("create_container", &config.name)?;
        let mut state = self.lock();
        if !state.images.contains(&config.image) {
            return Err(Error::NotFound(format!("image {}", config.image)));
        }
        state.next_id += 1;
        let id = format!("container-{}", state.next_id);
        let status = ContainerStatus {
            id: id.clone(),
            sandbox_id: sandbox.id.clone(),
            pod: sandbox.pod.clone(),
            name: config.name.clone(),
            state: ContainerState::Created,
            created_at: SystemTime::now(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            message: None,
            image: config.image.clone(),
            image_id: format!("sha256:{}", config.image),
            restart_count: config.restart_count,
            labels: config.labels.clone(),
        };
        state.containers.insert(id.clone(), status);
        state.configs.insert(id.clone(), config.clone());
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), Error> {
        self.record("start_container", id)?;
        let mut state = self.lock();
        let c = state
            .containers
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        c.state = ContainerState::Running;
        c.started_at = Some(SystemTime::now());
        Ok(())
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<(), Error> {
        self.record("stop_container", id)?;
        let mut state = self.lock();
        let c = state
            .containers
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        if c.state == ContainerState::Running {
            c.state = ContainerState::Exited;
            c.exit_code = Some(137);
            c.finished_at = Some(SystemTime::now());
            c.reason = Some("Error".into());
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), Error> {
        self.record("remove_container", id)?;
        let mut state = self.lock();
        state.configs.remove(id);
        state
            .containers
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, Error> {
        self.record("list_containers", "")?;
        Ok(self.lock().containers.values().cloned().collect())
    }

    async fn exec(&self, id: &str, _command: &[String], _timeout: Duration) -> Result<ExecResult, Error> {
        self.record("exec", id)?;
        let state = self.lock();
        let c = state
            .containers
            .get(id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        Ok(ExecResult {
            exit_code: state.exec_exit_codes.get(&c.name).copied().unwrap_or(0),
            output: Bytes::new(),
        })
    }

    async fn logs(&self, id: &str, _options: &LogOptions) -> Result<BoxStream<'static, Result<Bytes, Error>>, Error> {
        self.record("logs", id)?;
        let line = Bytes::from(format!("log of {id}\n"));
        Ok(Box::pin(futures::stream::iter([Ok(line)])))
    }
}
