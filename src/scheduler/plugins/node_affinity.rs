//! NodeAffinity: a pod fits nodes whose labels match its `nodeSelector` and one of its required
//! node affinity terms; nodes matching more of its preferred terms (by weight) score higher
//! (upstream's `plugins/nodeaffinity`).

use crate::scheduler::framework::{
    CycleState, Events, FilterPlugin, Plugin, PreFilterPlugin, PreScorePlugin, ScorePlugin, Status, normalize_scores,
};
use crate::scheduler::types::{NodeInfo, PodInfo};

const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub(crate) struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &[NodeInfo]) -> Status {
        if pod.required_node_affinity.is_empty() {
            Status::SKIP
        } else {
            Status::SUCCESS
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = &node.node else {
            return Status::unresolvable(REASON);
        };
        if pod.required_node_affinity.matches(n) {
            Status::SUCCESS
        } else {
            Status::unresolvable(REASON)
        }
    }

    fn events(&self) -> Events {
        Events::NODE_ADD.or(Events::NODE_LABEL)
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(&self, _: &mut CycleState, pod: &PodInfo) -> Status {
        if pod.preferred_node_affinity.is_empty() {
            Status::SKIP
        } else {
            Status::SUCCESS
        }
    }
}

impl ScorePlugin for NodeAffinity {
    /// The summed weights of the preferred terms the node matches.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(n) = &node.node else { return 0 };
        pod.preferred_node_affinity
            .iter()
            .filter(|(_, term)| term.matches(n))
            .map(|(weight, _)| weight)
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_scores(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::testing::{node, pod};
    use serde_json::json;

    fn ssd(name: &str) -> NodeInfo {
        node(name, "1", "1Gi", json!({"metadata": {"labels": {"disk": "ssd"}}}))
    }

    #[test]
    fn node_selector_and_required_terms_both_apply() {
        let state = CycleState::default();
        let selecting = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [],
            "nodeSelector": {"disk": "ssd"}}}));
        assert!(NodeAffinity.filter(&state, &selecting, &ssd("a")).is_success());
        assert_eq!(
            NodeAffinity.filter(&state, &selecting, &node("b", "1", "1Gi", json!({}))),
            Status::unresolvable(REASON)
        );
        let affine = pod(json!({"metadata": {"name": "q"}, "spec": {"containers": [],
            "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["b"]}]}]}}}}}));
        assert!(NodeAffinity.filter(&state, &affine, &ssd("b")).is_success());
        assert!(!NodeAffinity.filter(&state, &affine, &ssd("a")).is_success());
        let free = pod(json!({"metadata": {"name": "f"}, "spec": {"containers": []}}));
        assert_eq!(
            NodeAffinity.pre_filter(&mut CycleState::default(), &free, &[]),
            Status::SKIP
        );
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 30, "preference": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["b"]}]}}]}}}}));
        let state = CycleState::default();
        let mut scores = [
            NodeAffinity.score(&state, &p, &ssd("a")),
            NodeAffinity.score(&state, &p, &ssd("b")),
            NodeAffinity.score(&state, &p, &node("c", "1", "1Gi", json!({}))),
        ];
        assert_eq!(scores, [10, 40, 0]);
        NodeAffinity.normalize(&mut scores);
        assert_eq!(scores, [25, 100, 0]);
    }
}
