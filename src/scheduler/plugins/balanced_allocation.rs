//! NodeResourcesBalancedAllocation: prefers nodes where, with the pod, CPU and memory would be
//! used in similar proportions, so neither is left stranded (upstream's
//! `plugins/noderesources/balanced_allocation.go`).

use crate::scheduler::framework::{CycleState, MAX_NODE_SCORE, Plugin, ScorePlugin};
use crate::scheduler::types::{NodeInfo, PodInfo};

pub(crate) struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
}

fn fraction(requested: i64, allocatable: i64) -> f64 {
    if allocatable <= 0 {
        return 0.0;
    }
    (requested as f64 / allocatable as f64).min(1.0)
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = fraction(
            node.requested.milli_cpu + pod.requests.milli_cpu,
            node.allocatable.milli_cpu,
        );
        let memory = fraction(node.requested.memory + pod.requests.memory, node.allocatable.memory);
        // The standard deviation of two fractions is half their difference.
        let deviation = (cpu - memory).abs() / 2.0;
        ((1.0 - deviation) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::testing::{node, pod_requesting};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn nodes_left_balanced_score_higher() {
        let mut memory_heavy = node("a", "4", "8Gi", json!({}));
        memory_heavy.add_pod(Arc::new(pod_requesting("x", "0", "6Gi")));
        let mut cpu_heavy = node("b", "4", "8Gi", json!({}));
        cpu_heavy.add_pod(Arc::new(pod_requesting("y", "3", "0")));
        // A CPU-hungry pod balances the memory-heavy node.
        let p = pod_requesting("p", "3", "0");
        let state = CycleState::default();
        assert_eq!(BalancedAllocation.score(&state, &p, &memory_heavy), 100);
        assert_eq!(BalancedAllocation.score(&state, &p, &cpu_heavy), 50);
    }
}
