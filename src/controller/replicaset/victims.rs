//! Which pods a set deletes first when it has too many (upstream's `ActivePodsWithRanks`):
//! the least valuable ones, so that scaling down hurts least.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::controller::pods::{is_ready, ready_since};

/// Upstream's annotation by which users say how costly deleting a pod is (lower goes first).
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The `count` pods of `pods` to delete first. `related` are the active pods of every set of
/// the same owner: a node that runs more of them loses one first.
pub(super) fn choose(pods: &[Arc<Pod>], related: &[Arc<Pod>], count: usize, now: jiff::Timestamp) -> Vec<Arc<Pod>> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in related {
        if let Some(node) = node_of(pod) {
            *on_node.entry(node).or_default() += 1;
        }
    }
    let mut ranked: Vec<(usize, &Arc<Pod>)> = pods
        .iter()
        .map(|p| (node_of(p).and_then(|n| on_node.get(n)).copied().unwrap_or(0), p))
        .collect();
    ranked.sort_by(|(rank_a, a), (rank_b, b)| delete_first(a, *rank_a, b, *rank_b, now));
    ranked.into_iter().take(count).map(|(_, p)| p.clone()).collect()
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

/// `Less` when `a` should go before `b`, in upstream's order: unscheduled, then pending before
/// unknown before running, not ready, lower deletion cost, more doubled-up on its node, ready
/// for less time, restarted more, and newer.
fn delete_first(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: jiff::Timestamp) -> Ordering {
    node_of(a)
        .is_some()
        .cmp(&node_of(b).is_some())
        .then_with(|| phase_order(a).cmp(&phase_order(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| rank_b.cmp(&rank_a))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            (Some(ta), Some(tb)) => newer_first(ta, tb, now).then_with(|| a.metadata.uid.cmp(&b.metadata.uid)),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            match (created(a), created(b)) {
                (Some(ta), Some(tb)) => newer_first(ta, tb, now).then_with(|| a.metadata.uid.cmp(&b.metadata.uid)),
                // Not created yet as far as we know: newest of all.
                (ca, cb) => ca.is_some().cmp(&cb.is_some()),
            }
        })
}

fn phase_order(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn restarts(pod: &Pod) -> i32 {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses
        .iter()
        .flat_map(|s| s.iter())
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// Newer first, comparing ages on a log2 scale: pods of about the same age are equals, and
/// the tie is broken at random by uid, so that scale-downs do not always hit one node (upstream's
/// `LogarithmicScaleDown`).
fn newer_first(a: jiff::Timestamp, b: jiff::Timestamp, now: jiff::Timestamp) -> Ordering {
    let bucket = |t: jiff::Timestamp| {
        let age = now.duration_since(t).as_nanos().max(1);
        age.ilog2()
    };
    bucket(a).cmp(&bucket(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, age_secs: i64) -> Arc<Pod> {
        let now = jiff::Timestamp::now();
        let created = (now - jiff::SignedDuration::from_secs(age_secs)).to_string();
        let mut v = json!({"metadata": {"name": name, "uid": name, "creationTimestamp": created},
            "spec": {"containers": []}, "status": {"phase": phase}});
        if let Some(node) = node {
            v["spec"]["nodeName"] = json!(node);
        }
        if ready {
            v["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "lastTransitionTime": created}]);
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
    }

    #[test]
    fn unscheduled_pending_and_unready_pods_go_first() {
        let pods = [
            pod("running-ready", Some("n1"), "Running", true, 1000),
            pod("unscheduled", None, "Pending", false, 1000),
            pod("running-unready", Some("n1"), "Running", false, 1000),
            pod("pending", Some("n1"), "Pending", false, 1000),
        ];
        let order = names(&choose(&pods, &pods, 3, jiff::Timestamp::now()));
        assert_eq!(order, ["unscheduled", "pending", "running-unready"]);
    }

    #[test]
    fn doubled_up_nodes_and_younger_pods_lose_ties() {
        let pods = [
            pod("alone-old", Some("n1"), "Running", true, 100_000),
            pod("crowded-a", Some("n2"), "Running", true, 100_000),
            pod("crowded-b", Some("n2"), "Running", true, 100_000),
        ];
        assert_eq!(
            names(&choose(&pods, &pods, 1, jiff::Timestamp::now()))[0][..7],
            *"crowded"
        );
        let pods = [
            pod("old", Some("n1"), "Running", true, 100_000),
            pod("young", Some("n2"), "Running", true, 10),
        ];
        assert_eq!(names(&choose(&pods, &pods, 1, jiff::Timestamp::now())), ["young"]);
    }

    #[test]
    fn deletion_cost_annotation_is_honoured() {
        let mut cheap = (*pod("cheap", Some("n1"), "Running", true, 10)).clone();
        cheap.metadata.annotations = Some([(DELETION_COST.to_string(), "-5".to_string())].into());
        let pods = [pod("young", Some("n2"), "Running", true, 10), Arc::new(cheap)];
        assert_eq!(names(&choose(&pods, &pods, 1, jiff::Timestamp::now())), ["cheap"]);
    }
}
