//! A pod's status as the kubelet reports it: phase, conditions and container statuses, computed
//! from the spec and what the runtime holds. Mirrors upstream's `generateAPIPodStatus` and
//! `convertToAPIContainerStatuses` (`pkg/kubelet/kubelet_pods.go`) and `getPhase`.

use k8s_openapi::api::core::v1::{
    ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::kuberuntime::{Observed, PodMemory, to_time};
use super::runtime::{self, ContainerState};

/// Builds the status of `pod` from `observed`. `host_ip` is the node's address; `start_time` the
/// moment the kubelet first saw the pod; `ready` says whether a container passes its readiness
/// probe (true when it has none).
pub(crate) fn pod_status(
    pod: &Pod,
    observed: &Observed,
    memory: &PodMemory,
    host_ip: &str,
    start_time: &Time,
    ready: impl Fn(&str) -> bool,
) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let previous = pod.status.clone().unwrap_or_default();
    let sandbox = observed.ready_sandbox();
    let host_network = spec.host_network.unwrap_or(false);
    let pod_ip = if host_network {
        Some(host_ip.to_string())
    } else {
        sandbox.and_then(|s| s.ip.clone())
    };

    let convert = |c: &k8s_openapi::api::core::v1::Container| -> ContainerStatus {
        let (latest, before) = observed.latest(&c.name);
        let image = c.image.clone().unwrap_or_default();
        let mut status = ContainerStatus {
            name: c.name.clone(),
            image: image.clone(),
            image_id: String::new(),
            restart_count: latest.map_or(0, |l| l.restart_count as i32),
            ..Default::default()
        };
        if let Some(l) = latest {
            status.container_id = Some(format!("docker://{}", l.id));
            status.image_id = l.image_id.clone();
            status.state = Some(state_of(l));
            status.started = Some(l.state == ContainerState::Running);
            status.ready = l.state == ContainerState::Running && ready(&c.name);
            if let Some(b) = before.filter(|b| b.state == ContainerState::Exited) {
                status.last_state = Some(state_of(b));
            }
        } else {
            status.started = Some(false);
        }
        if let Some((reason, message)) = memory.waiting.get(&c.name) {
            if let Some(l) = latest.filter(|l| l.state == ContainerState::Exited) {
                status.last_state = Some(state_of(l));
            }
            status.state = Some(ApiState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: Some(message.clone()),
                }),
                ..Default::default()
            });
            status.ready = false;
        } else if status.state.is_none() {
            let reason = if sandbox.is_some() {
                "ContainerCreating"
            } else {
                "PodInitializing"
            };
            status.state = Some(waiting(reason));
        }
        status
    };

    let init_statuses: Vec<ContainerStatus> = spec.init_containers.iter().flatten().map(convert).collect();
    let statuses: Vec<ContainerStatus> = spec.containers.iter().map(convert).collect();
    let initialized = init_statuses.iter().all(terminated_ok);
    let containers_ready = initialized && statuses.iter().all(|s| s.ready);
    let phase = phase(&spec, &init_statuses, &statuses);

    let condition = |kind: &str, ok: bool, reason: Option<&str>| {
        let previous_condition = previous.conditions.iter().flatten().find(|c| c.type_ == kind);
        let status = if ok { "True" } else { "False" };
        // Keep the transition time while the status is unchanged.
        let last_transition = match previous_condition {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(Time(jiff::Timestamp::now())),
        };
        PodCondition {
            type_: kind.into(),
            status: status.into(),
            reason: if ok { None } else { reason.map(String::from) },
            last_transition_time: last_transition,
            ..Default::default()
        }
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    let conditions = vec![
        condition("PodReadyToStartContainers", sandbox.is_some(), None),
        condition("Initialized", initialized, Some("ContainersNotInitialized")),
        condition(
            "Ready",
            containers_ready && !terminal,
            Some(if terminal { "PodCompleted" } else { "ContainersNotReady" }),
        ),
        condition(
            "ContainersReady",
            containers_ready && !terminal,
            Some(if terminal { "PodCompleted" } else { "ContainersNotReady" }),
        ),
        condition("PodScheduled", true, None),
    ];

    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: Some(start_time.clone()),
        qos_class: previous.qos_class.clone(),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        ..Default::default()
    }
}

fn waiting(reason: &str) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: None,
        }),
        ..Default::default()
    }
}

fn state_of(c: &runtime::ContainerStatus) -> ApiState {
    match c.state {
        ContainerState::Running => ApiState {
            running: Some(ContainerStateRunning {
                started_at: c.started_at.map(to_time),
            }),
            ..Default::default()
        },
        ContainerState::Exited => ApiState {
            terminated: Some(ContainerStateTerminated {
                exit_code: c.exit_code.unwrap_or(0),
                reason: c.reason.clone(),
                message: c.message.clone(),
                started_at: c.started_at.map(to_time),
                finished_at: c.finished_at.map(to_time),
                container_id: Some(format!("docker://{}", c.id)),
                ..Default::default()
            }),
            ..Default::default()
        },
        ContainerState::Created | ContainerState::Unknown => waiting("ContainerCreating"),
    }
}

fn terminated_ok(s: &ContainerStatus) -> bool {
    s.state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0)
}

/// Upstream's `getPhase`, for containers without sidecars.
fn phase(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    init: &[ContainerStatus],
    app: &[ContainerStatus],
) -> &'static str {
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let terminated = |s: &ContainerStatus| s.state.as_ref().and_then(|st| st.terminated.clone());
    let init_failed = init.iter().any(|s| terminated(s).is_some_and(|t| t.exit_code != 0));
    if init_failed && policy == "Never" {
        return "Failed";
    }
    if !init.iter().all(terminated_ok) {
        return "Pending";
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in app {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s.last_state.as_ref().and_then(|l| l.terminated.as_ref()).is_some() {
            // Waiting to restart after having run: counts as stopped, as upstream does.
            stopped += 1;
            if s.last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
            {
                succeeded += 1;
            }
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        }
    } else {
        "Pending"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::kuberuntime::{SyncContext, sync_now};
    use crate::kubelet::runtime::Runtime;
    use crate::kubelet::runtime::fake::Fake;
    use serde_json::json;

    async fn status_after(policy: &str, exit: Option<i32>) -> PodStatus {
        let dir = tempfile::tempdir().unwrap();
        let ctx = SyncContext::for_test(dir.path());
        let rt = Fake::with_images(&["pause", "app"]);
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "a", "image": "app"}]}}))
        .unwrap();
        let mut memory = PodMemory::default();
        sync_now(&rt, &ctx, &pod, &mut memory).await.unwrap();
        if let Some(code) = exit {
            let id = rt.list_containers().await.unwrap()[0].id.clone();
            rt.exit_container(&id, code);
        }
        let observed = Observed::read(&rt, "u").await.unwrap();
        pod_status(
            &pod,
            &observed,
            &memory,
            "192.0.2.1",
            &Time(jiff::Timestamp::now()),
            |_| true,
        )
    }

    fn condition(s: &PodStatus, kind: &str) -> String {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .unwrap()
            .status
            .clone()
    }

    #[tokio::test]
    async fn running_pods_are_ready_with_ips_and_docker_ids() {
        let s = status_after("Always", None).await;
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&s, "Ready"), "True");
        assert!(s.pod_ip.is_some());
        assert_eq!(s.host_ip.as_deref(), Some("192.0.2.1"));
        let c = &s.container_statuses.unwrap()[0];
        assert!(c.ready);
        assert!(c.container_id.as_deref().unwrap().starts_with("docker://"));
        assert!(c.state.as_ref().unwrap().running.is_some());
    }

    #[tokio::test]
    async fn finished_pods_succeed_or_fail_by_exit_code_and_policy() {
        assert_eq!(status_after("Never", Some(0)).await.phase.as_deref(), Some("Succeeded"));
        assert_eq!(status_after("Never", Some(2)).await.phase.as_deref(), Some("Failed"));
        let s = status_after("Never", Some(2)).await;
        assert_eq!(condition(&s, "Ready"), "False");
        let t = s.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (2, Some("Error")));
        assert_eq!(status_after("Always", Some(0)).await.phase.as_deref(), Some("Running"));
    }
}
