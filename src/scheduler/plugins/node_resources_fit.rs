//! NodeResourcesFit: a node fits a pod when its allocatable covers what its pods already request
//! plus the pod's requests, and it has room for one more pod; among those, the least allocated
//! nodes score highest (upstream's `plugins/noderesources/fit.go` with the `LeastAllocated`
//! strategy, CPU and memory weighted equally).

use crate::scheduler::framework::{CycleState, Events, FilterPlugin, MAX_NODE_SCORE, Plugin, ScorePlugin, Status};
use crate::scheduler::types::{NodeInfo, PodInfo};

pub(crate) struct NodeResourcesFit;

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let mut status = Status::SUCCESS;
        let mut insufficient = |reason: String| {
            status.code = crate::scheduler::framework::Code::Unschedulable;
            status.reasons.push(reason.into());
        };
        if i64::try_from(node.pods.len()).unwrap_or(i64::MAX) + 1 > node.allowed_pods {
            insufficient("Too many pods".into());
        }
        let (want, have, used) = (&pod.requests, &node.allocatable, &node.requested);
        if want.is_zero() {
            return status;
        }
        if want.milli_cpu > 0 && want.milli_cpu > have.milli_cpu - used.milli_cpu {
            insufficient("Insufficient cpu".into());
        }
        if want.memory > 0 && want.memory > have.memory - used.memory {
            insufficient("Insufficient memory".into());
        }
        if want.ephemeral_storage > 0 && want.ephemeral_storage > have.ephemeral_storage - used.ephemeral_storage {
            insufficient("Insufficient ephemeral-storage".into());
        }
        for (name, amount) in &want.scalar {
            if *amount > 0 && *amount > have.scalar(name) - used.scalar(name) {
                insufficient(format!("Insufficient {name}"));
            }
        }
        status
    }

    fn events(&self) -> Events {
        Events::NODE_ADD
            .or(Events::NODE_ALLOCATABLE)
            .or(Events::ASSIGNED_POD_DELETE)
            .or(Events::ASSIGNED_POD_UPDATE)
    }
}

/// The share of `allocatable` left free after `requested`, out of [`MAX_NODE_SCORE`].
fn least_allocated(requested: i64, allocatable: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    (allocatable - requested) * MAX_NODE_SCORE / allocatable
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = least_allocated(
            node.non_zero_requested.milli_cpu + pod.non_zero.milli_cpu,
            node.allocatable.milli_cpu,
        );
        let memory = least_allocated(
            node.non_zero_requested.memory + pod.non_zero.memory,
            node.allocatable.memory,
        );
        (cpu + memory) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::types::testing::{node, pod, pod_requesting};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn nodes_without_room_report_every_missing_resource() {
        let mut n = node("a", "2", "4Gi", json!({}));
        n.add_pod(Arc::new(pod_requesting("x", "1500m", "1Gi")));
        let state = CycleState::default();
        assert!(
            NodeResourcesFit
                .filter(&state, &pod_requesting("fits", "500m", "3Gi"), &n)
                .is_success()
        );
        let status = NodeResourcesFit.filter(&state, &pod_requesting("big", "1", "4Gi"), &n);
        assert_eq!(status.code, Code::Unschedulable);
        assert_eq!(status.reasons, ["Insufficient cpu", "Insufficient memory"]);
        let gpu = pod(json!({"metadata": {"name": "g"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"example.com/gpu": "1"}}}]}}));
        assert_eq!(
            NodeResourcesFit.filter(&state, &gpu, &n).reasons,
            ["Insufficient example.com/gpu"]
        );
    }

    #[test]
    fn a_full_node_has_too_many_pods() {
        let mut n = node("a", "2", "4Gi", json!({"status": {"allocatable": {"pods": "1"}}}));
        let empty = pod(json!({"metadata": {"name": "e"}, "spec": {"containers": [{"name": "c"}]}}));
        assert!(NodeResourcesFit.filter(&CycleState::default(), &empty, &n).is_success());
        n.add_pod(Arc::new(pod_requesting("x", "1", "1Gi")));
        assert_eq!(
            NodeResourcesFit.filter(&CycleState::default(), &empty, &n).reasons,
            ["Too many pods"]
        );
    }

    #[test]
    fn emptier_nodes_score_higher() {
        let mut busy = node("a", "4", "8Gi", json!({}));
        busy.add_pod(Arc::new(pod_requesting("x", "2", "4Gi")));
        let idle = node("b", "4", "8Gi", json!({}));
        let p = pod_requesting("p", "1", "2Gi");
        let state = CycleState::default();
        assert_eq!(NodeResourcesFit.score(&state, &p, &idle), 75);
        assert_eq!(NodeResourcesFit.score(&state, &p, &busy), 25);
    }
}
