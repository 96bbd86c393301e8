//! The node lifecycle controller (upstream's `pkg/controller/nodelifecycle`): watches each node's
//! heartbeats (its Ready condition's `lastHeartbeatTime` and its Lease in `kube-node-lease`) and,
//! when both stop for `--node-monitor-grace-period`, sets the node's conditions to Unknown and
//! marks its pods not ready. It keeps the condition taints (`node.kubernetes.io/unreachable`,
//! `not-ready`, the pressure taints, `unschedulable`) in step with the node's status; the taint
//! eviction loop in [`taint_eviction`] then deletes the pods that do not tolerate them.
//!
//! Every node is a key on a work queue, synced when it changes and again every
//! `--node-monitor-period`. What the controller has seen of each node's heartbeats lives in memory,
//! as upstream's `nodeHealthMap`: after a restart every node gets a fresh grace period.

mod taint_eviction;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;

use super::Context;
use crate::events::Recorder;
use crate::informer::Informer;
use crate::workqueue::{WorkQueue, run_workers};

/// The namespace of the kubelets' heartbeat Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Taint keys of upstream's `k8s.io/api/core/v1` well-known taints.
pub(super) const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub(super) const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// Conditions that turn Unknown with Ready when the kubelet goes silent.
const MONITORED_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// Conditions that, when True, taint the node NoSchedule, with the taint they give.
const PRESSURE_TAINTS: &[(&str, &str)] = &[
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    ("NetworkUnavailable", "node.kubernetes.io/network-unavailable"),
];

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("updating the status of node {node} failed: {}", crate::error_chain(.source))]
    UpdateStatus { node: String, source: kube::Error },
    #[error("updating the taints of node {node} failed: {}", crate::error_chain(.source))]
    UpdateTaints { node: String, source: kube::Error },
    #[error("marking pod {pod} not ready failed: {}", crate::error_chain(.source))]
    MarkPodNotReady { pod: String, source: kube::Error },
}

/// What the controller last saw of one node.
struct Health {
    /// When a heartbeat last changed, by this process's clock.
    probed: Instant,
    heartbeat: Option<Timestamp>,
    renewed: Option<Timestamp>,
    /// The Ready status after the last sync, to report the transition to not ready once.
    ready: String,
    /// Whether the node's pods were marked not ready since it stopped being Ready.
    pods_marked: bool,
}

struct Monitor {
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    client: kube::Client,
    recorder: Recorder,
    grace: Duration,
    period: Duration,
    health: Mutex<HashMap<String, Health>>,
}

pub(super) async fn run(ctx: Arc<Context>) {
    let monitor = Arc::new(Monitor {
        nodes: ctx.informers.get::<Node>(),
        leases: ctx.informers.get::<Lease>(),
        pods: ctx.informers.get::<Pod>(),
        client: ctx.client.clone(),
        recorder: ctx.recorder("node-controller"),
        grace: ctx.args.node_monitor_grace_period,
        period: ctx.args.node_monitor_period,
        health: Mutex::default(),
    });
    let queue: Arc<WorkQueue<String>> = WorkQueue::new(ctx.shutdown.clone());
    monitor.nodes.add_handler({
        let queue = queue.clone();
        move |change| {
            if let Some(name) = &change.object().metadata.name {
                queue.add(name.clone());
            }
        }
    });
    monitor.nodes.wait_synced().await;
    monitor.leases.wait_synced().await;
    monitor.pods.wait_synced().await;
    let health = run_workers(queue, 2, "nodelifecycle", move |name: String| {
        let monitor = monitor.clone();
        async move { monitor.sync(&name).await }
    });
    tokio::join!(health, taint_eviction::run(ctx));
}

impl Monitor {
    /// Brings one node's conditions, taints and pods in line with its heartbeats; comes back after
    /// `--node-monitor-period` to look again.
    async fn sync(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(cached) = self.nodes.get("", name) else {
            self.lock().remove(name);
            return Ok(None);
        };
        let lease = self.leases.get(LEASE_NAMESPACE, name);
        let silent = self.observe(&cached, lease.as_deref());
        let api: Api<Node> = Api::all(self.client.clone());
        let now = Timestamp::now();
        let mut node = (*cached).clone();
        if silent && mark_unknown(&mut node, now) {
            node = api
                .replace_status(name, &PostParams::default(), &node)
                .await
                .map_err(|source| Error::UpdateStatus {
                    node: name.into(),
                    source,
                })?;
        }
        let taints = desired_taints(&node, now);
        if taints != node.spec.clone().unwrap_or_default().taints.unwrap_or_default() {
            node.spec.get_or_insert_with(Default::default).taints = Some(taints).filter(|t| !t.is_empty());
            node = api
                .replace(name, &PostParams::default(), &node)
                .await
                .map_err(|source| Error::UpdateTaints {
                    node: name.into(),
                    source,
                })?;
        }
        self.follow_readiness(&node).await?;
        Ok(Some(self.period))
    }

    /// Records the node's heartbeats; whether it has been silent for longer than the grace period.
    fn observe(&self, node: &Node, lease: Option<&Lease>) -> bool {
        let heartbeat = condition(node, "Ready").and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
        let renewed = lease
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0);
        let now = Instant::now();
        let mut health = self.lock();
        let entry = health
            .entry(node.metadata.name.clone().unwrap_or_default())
            .or_insert_with(|| Health {
                probed: now,
                heartbeat,
                renewed,
                ready: ready_status(node).into(),
                pods_marked: false,
            });
        if entry.heartbeat != heartbeat || renewed > entry.renewed {
            entry.probed = now;
            entry.heartbeat = heartbeat;
            entry.renewed = renewed;
        }
        now.duration_since(entry.probed) > self.grace
    }

    /// Reports a node that stopped being Ready, and marks its pods not ready once per outage.
    async fn follow_readiness(&self, node: &Node) -> Result<(), Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let ready = ready_status(node);
        let (was_ready, marked) = match self.lock().get_mut(&name) {
            Some(h) => (std::mem::replace(&mut h.ready, ready.into()) == "True", h.pods_marked),
            None => return Ok(()),
        };
        if ready == "True" {
            if let Some(h) = self.lock().get_mut(&name) {
                h.pods_marked = false;
            }
            return Ok(());
        }
        if was_ready {
            self.recorder.record(
                node,
                false,
                "NodeNotReady",
                &format!("Node {name} status is now: NodeNotReady"),
            );
        }
        if !marked {
            self.mark_pods_not_ready(&name).await?;
            if let Some(h) = self.lock().get_mut(&name) {
                h.pods_marked = true;
            }
        }
        Ok(())
    }

    /// Sets the Ready condition of every pod on `node` to False, as upstream's `MarkPodsNotReady`.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), Error> {
        let now = Time(Timestamp::now());
        // One pod's failure (a conflict with the taint manager's write) must not keep the
        // others ready; the first error is returned so the whole node is tried again.
        let mut first_error = None;
        for pod in self.pods.list() {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
                continue;
            }
            let mut pod = (*pod).clone();
            let Some(ready) = pod
                .status
                .as_mut()
                .and_then(|s| s.conditions.as_mut())
                .and_then(|c| c.iter_mut().find(|c| c.type_ == "Ready" && c.status == "True"))
            else {
                continue;
            };
            ready.status = "False".into();
            ready.last_transition_time = Some(now.clone());
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            match Api::<Pod>::namespaced(self.client.clone(), &namespace)
                .replace_status(&pod_name, &PostParams::default(), &pod)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    first_error.get_or_insert(Error::MarkPodNotReady {
                        pod: format!("{namespace}/{pod_name}"),
                        source,
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The status of the node's Ready condition; `Unknown` when it has none.
fn ready_status(node: &Node) -> &str {
    condition(node, "Ready").map_or("Unknown", |c| c.status.as_str())
}

/// Sets the monitored conditions of a silent node to Unknown, as upstream's `tryUpdateNodeHealth`;
/// whether anything changed.
fn mark_unknown(node: &mut Node, now: Timestamp) -> bool {
    let created = node.metadata.creation_timestamp.clone();
    let conditions = node
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    let mut changed = false;
    for type_ in MONITORED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == *type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: (*type_).into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: created.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed
}

/// The node's taints with the ones this controller manages set from its conditions and
/// `spec.unschedulable` (upstream's `doNoScheduleTaintingPass` and `processTaintBaseEviction`).
/// Others' taints and the managed taints that stay keep their place and `timeAdded`.
fn desired_taints(node: &Node, now: Timestamp) -> Vec<Taint> {
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    match ready_status(node) {
        "False" => wanted.extend([(TAINT_NOT_READY, "NoSchedule"), (TAINT_NOT_READY, "NoExecute")]),
        "Unknown" => wanted.extend([(TAINT_UNREACHABLE, "NoSchedule"), (TAINT_UNREACHABLE, "NoExecute")]),
        _ => {}
    }
    for (type_, key) in PRESSURE_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == "True") {
            wanted.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    let managed = |t: &Taint| {
        [TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE].contains(&t.key.as_str())
            || PRESSURE_TAINTS.iter().any(|(_, key)| *key == t.key)
    };
    let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !taints.iter().any(|t| t.key == key && t.effect == effect) {
            taints.push(Taint {
                key: key.into(),
                effect: effect.into(),
                // Eviction times count from when a NoExecute taint appeared.
                time_added: (effect == "NoExecute").then_some(Time(now)),
                value: None,
            });
        }
    }
    taints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn keys(taints: &[Taint]) -> Vec<(String, String)> {
        taints.iter().map(|t| (t.key.clone(), t.effect.clone())).collect()
    }

    #[test]
    fn a_silent_node_gets_every_monitored_condition_unknown() {
        let mut n = node(serde_json::json!({"metadata": {"name": "n"}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-01-01T00:00:00Z"}]}}));
        assert!(mark_unknown(&mut n, Timestamp::now()));
        let ready = condition(&n, "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
        assert!(ready.last_heartbeat_time.is_some(), "the last heartbeat is kept");
        let memory = condition(&n, "MemoryPressure").unwrap();
        assert_eq!(memory.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert!(!mark_unknown(&mut n, Timestamp::now()), "a second pass changes nothing");
    }

    #[test]
    fn taints_follow_conditions_and_leave_others_alone() {
        let mut n = node(serde_json::json!({
            "metadata": {"name": "n"},
            "spec": {"unschedulable": true, "taints": [
                {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                {"key": TAINT_NOT_READY, "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"},
                                      {"type": "DiskPressure", "status": "True"}]}}));
        let taints = desired_taints(&n, Timestamp::now());
        assert_eq!(
            keys(&taints),
            [
                ("dedicated", "NoSchedule"),
                (TAINT_UNREACHABLE, "NoSchedule"),
                (TAINT_UNREACHABLE, "NoExecute"),
                ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                (TAINT_UNSCHEDULABLE, "NoSchedule"),
            ]
            .map(|(k, e)| (k.to_string(), e.to_string()))
        );
        assert!(taints[2].time_added.is_some());
        n.spec.as_mut().unwrap().taints = Some(taints);
        n.spec.as_mut().unwrap().unschedulable = None;
        n.status = Some(
            serde_json::from_value(serde_json::json!({"conditions": [{"type": "Ready", "status": "True"}]})).unwrap(),
        );
        assert_eq!(
            keys(&desired_taints(&n, Timestamp::now())),
            [("dedicated".to_string(), "NoSchedule".to_string())]
        );
    }
}
