//! SelectorSpread: spreads the pods of one workload (the controller that owns them: a
//! ReplicaSet, StatefulSet, Job) over nodes, preferring nodes that run fewer of them (upstream's
//! `plugins/selectorspread`, by owner instead of by the owner's selector, and per node only).

use crate::scheduler::framework::{CycleState, Plugin, PreScorePlugin, ScorePlugin, Status, normalize_scores};
use crate::scheduler::types::{NodeInfo, PodInfo};

pub(crate) struct SelectorSpread;

impl Plugin for SelectorSpread {
    fn name(&self) -> &'static str {
        "SelectorSpread"
    }
}

impl PreScorePlugin for SelectorSpread {
    fn pre_score(&self, _: &mut CycleState, pod: &PodInfo) -> Status {
        if pod.owner.is_some() {
            Status::SUCCESS
        } else {
            Status::SKIP
        }
    }
}

impl ScorePlugin for SelectorSpread {
    /// How many pods of the same owner the node runs: fewer is better.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.owner
            .as_deref()
            .map_or(0, |owner| i64::from(node.pods_of_owner(owner)))
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_scores(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::testing::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    fn replica(name: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name, "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]},
            "spec": {"containers": [{"name": "c"}]}}))
    }

    #[test]
    fn nodes_with_fewer_siblings_score_higher() {
        let mut two = node("a", "1", "1Gi", json!({}));
        two.add_pod(Arc::new(replica("r1")));
        two.add_pod(Arc::new(replica("r2")));
        let mut one = node("b", "1", "1Gi", json!({}));
        one.add_pod(Arc::new(replica("r3")));
        let none = node("c", "1", "1Gi", json!({}));
        let p = replica("new");
        let state = CycleState::default();
        let mut scores = [&two, &one, &none].map(|n| SelectorSpread.score(&state, &p, n));
        SelectorSpread.normalize(&mut scores);
        assert_eq!(scores, [0, 50, 100]);
        let orphan = pod(json!({"metadata": {"name": "o"}, "spec": {"containers": []}}));
        assert_eq!(
            SelectorSpread.pre_score(&mut CycleState::default(), &orphan),
            Status::SKIP
        );
    }
}
