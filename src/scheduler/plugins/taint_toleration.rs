//! TaintToleration: a node's `NoSchedule` and `NoExecute` taints keep off every pod that does not
//! tolerate them (this includes the `node.kubernetes.io/not-ready` and `unreachable` taints the
//! node lifecycle controller sets), and nodes with fewer untolerated `PreferNoSchedule` taints
//! score higher (upstream's `plugins/tainttoleration`).

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::api::scheduling::{tolerates, untolerated_taint};
use crate::scheduler::framework::{CycleState, Events, FilterPlugin, Plugin, ScorePlugin, Status, normalize_scores};
use crate::scheduler::types::{NodeInfo, PodInfo};

pub(crate) struct TaintToleration;

fn taints(node: &NodeInfo) -> &[Taint] {
    node.node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let hard = |t: &Taint| t.effect == "NoSchedule" || t.effect == "NoExecute";
        match untolerated_taint(taints(node), tolerations(pod), hard) {
            None => Status::SUCCESS,
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            )),
        }
    }

    fn events(&self) -> Events {
        Events::NODE_ADD.or(Events::NODE_TAINT)
    }
}

impl ScorePlugin for TaintToleration {
    /// How many `PreferNoSchedule` taints the pod does not tolerate: fewer is better.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let tolerations = tolerations(pod);
        let preferring = |t: &&Toleration| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        };
        let count = taints(node)
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| !tolerations.iter().filter(preferring).any(|tol| tolerates(tol, t)))
            .count();
        i64::try_from(count).unwrap_or(i64::MAX)
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

    #[test]
    fn not_ready_nodes_repel_pods_without_a_toleration() {
        let not_ready = node(
            "a",
            "1",
            "1Gi",
            json!({"spec": {"taints": [
            {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}}),
        );
        let plain = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}));
        let status = TaintToleration.filter(&CycleState::default(), &plain, &not_ready);
        assert_eq!(
            status,
            Status::unresolvable("node(s) had untolerated taint {node.kubernetes.io/not-ready: }")
        );
        let tolerant = pod(
            json!({"metadata": {"name": "t"}, "spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]}}),
        );
        assert!(
            TaintToleration
                .filter(&CycleState::default(), &tolerant, &not_ready)
                .is_success()
        );
    }

    #[test]
    fn prefer_no_schedule_taints_lower_the_score() {
        let soft = node(
            "a",
            "1",
            "1Gi",
            json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
        );
        let plain = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}));
        let state = CycleState::default();
        let mut scores = [
            TaintToleration.score(&state, &plain, &soft),
            TaintToleration.score(&state, &plain, &node("b", "1", "1Gi", json!({}))),
        ];
        TaintToleration.normalize(&mut scores);
        assert_eq!(scores, [0, 100]);
    }
}
