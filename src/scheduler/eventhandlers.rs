//! How informer changes reach the scheduler, after upstream's `eventhandlers.go`: assigned pods
//! go to the cache (confirming assumed ones), unscheduled pods this scheduler is responsible for
//! go to the queue, nodes go to the cache; and changes that may let an unschedulable pod fit are
//! told to the queue as [`Events`].

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::framework::Events;
use super::types::PodInfo;
use super::{SCHEDULER_NAME, Scheduler};
use crate::informer::{Change, Factory, Informer};

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

/// Succeeded and Failed pods hold no resources on their node any more.
fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn responsible(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|name| name == SCHEDULER_NAME)
}

/// Registers the scheduler's handlers on the shared pod and node informers, and returns them.
pub(super) fn register(scheduler: &Arc<Scheduler>, informers: &Factory) -> (Arc<Informer<Pod>>, Arc<Informer<Node>>) {
    let pods = informers.get::<Pod>();
    let nodes = informers.get::<Node>();
    pods.add_handler({
        let scheduler = scheduler.clone();
        move |change| match change {
            Change::Added(pod) => on_pod(&scheduler, None, pod),
            Change::Updated { old, new } => on_pod(&scheduler, Some(old), new),
            Change::Deleted(pod) => on_pod_deleted(&scheduler, pod),
        }
    });
    nodes.add_handler({
        let scheduler = scheduler.clone();
        move |change| on_node(&scheduler, change)
    });
    (pods, nodes)
}

fn on_pod(scheduler: &Scheduler, old: Option<&Arc<Pod>>, pod: &Arc<Pod>) {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let Some(node) = node_name(pod) else {
        if pod.metadata.deletion_timestamp.is_some() || !responsible(pod) {
            scheduler.queue.delete(uid);
        } else if !scheduler.cache().is_assumed(uid) {
            // An assumed pod's binding is in flight; its update is not news.
            scheduler.queue.add(pod.clone());
        }
        return;
    };
    scheduler.queue.delete(uid);
    if terminal(pod) {
        return on_pod_deleted(scheduler, pod);
    }
    let info = match PodInfo::new(pod.clone()) {
        Ok(info) => Arc::new(info),
        Err(err) => {
            tracing::warn!(
                namespace = pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod = pod.metadata.name.as_deref().unwrap_or_default(),
                error = %err,
                "an assigned pod cannot be read; not counting it"
            );
            return;
        }
    };
    scheduler.cache().set_pod(info, node);
    match old.filter(|old| node_name(old).is_some()) {
        None => scheduler.queue.on_event(Events::ASSIGNED_POD_ADD),
        Some(old) if old.spec != pod.spec || old.metadata.labels != pod.metadata.labels => {
            scheduler.queue.on_event(Events::ASSIGNED_POD_UPDATE)
        }
        Some(_) => {}
    }
}

fn on_pod_deleted(scheduler: &Scheduler, pod: &Pod) {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    scheduler.queue.delete(uid);
    if node_name(pod).is_some() {
        scheduler.cache().remove_pod(uid);
        scheduler.queue.on_event(Events::ASSIGNED_POD_DELETE);
    }
}

fn on_node(scheduler: &Scheduler, change: &Change<'_, Node>) {
    match change {
        Change::Added(node) => {
            scheduler.cache().set_node((*node).clone());
            scheduler.queue.on_event(Events::NODE_ADD);
        }
        Change::Updated { old, new } => {
            scheduler.cache().set_node((*new).clone());
            let events = node_changes(old, new);
            if !events.is_empty() {
                scheduler.queue.on_event(events);
            }
        }
        Change::Deleted(node) => scheduler
            .cache()
            .remove_node(node.metadata.name.as_deref().unwrap_or_default()),
    }
}

/// What about a node changed that filters look at (heartbeats change nothing of it).
fn node_changes(old: &Node, new: &Node) -> Events {
    let allocatable = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    let taints = |n: &Node| n.spec.as_ref().and_then(|s| s.taints.clone());
    let cordoned = |n: &Node| n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    let mut events = Events::NONE;
    if allocatable(old) != allocatable(new) {
        events = events.or(Events::NODE_ALLOCATABLE);
    }
    if old.metadata.labels != new.metadata.labels {
        events = events.or(Events::NODE_LABEL);
    }
    if taints(old) != taints(new) {
        events = events.or(Events::NODE_TAINT);
    }
    if cordoned(old) != cordoned(new) {
        events = events.or(Events::NODE_SPEC);
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn heartbeats_are_not_scheduling_events() {
        let node = |v: serde_json::Value| -> Node { serde_json::from_value(v).unwrap() };
        let base = node(
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "1"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-01-01T00:00:00Z"}]}}),
        );
        let beat = node(
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "1"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-01-01T00:00:10Z"}]}}),
        );
        assert!(node_changes(&base, &beat).is_empty());
        let tainted = node(json!({"metadata": {"name": "n", "labels": {"a": "b"}},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}, "status": {"allocatable": {"cpu": "2"}}}));
        let changes = node_changes(&base, &tainted);
        for event in [Events::NODE_ALLOCATABLE, Events::NODE_LABEL, Events::NODE_TAINT] {
            assert!(changes.intersects(event));
        }
        assert!(!changes.intersects(Events::NODE_SPEC));
    }
}
