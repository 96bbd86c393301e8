//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint (upstream's `plugins/nodeunschedulable`).

use k8s_openapi::api::core::v1::Taint;

use crate::api::scheduling::tolerates;
use crate::scheduler::framework::{CycleState, Events, FilterPlugin, Plugin, Status};
use crate::scheduler::types::{NodeInfo, PodInfo};

const REASON: &str = "node(s) were unschedulable";

pub(crate) struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let cordoned = node
            .node
            .as_ref()
            .and_then(|n| n.spec.as_ref())
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if !cordoned {
            return Status::SUCCESS;
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tolerations = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        if tolerations.iter().any(|t| tolerates(t, &taint)) {
            Status::SUCCESS
        } else {
            Status::unresolvable(REASON)
        }
    }

    fn events(&self) -> Events {
        Events::NODE_ADD.or(Events::NODE_SPEC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_take_only_tolerating_pods() {
        let cordoned = node("a", "1", "1Gi", json!({"spec": {"unschedulable": true}}));
        let state = CycleState::default();
        let plain = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}));
        assert_eq!(
            NodeUnschedulable.filter(&state, &plain, &cordoned),
            Status::unresolvable(REASON)
        );
        let tolerant = pod(
            json!({"metadata": {"name": "t"}, "spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert!(NodeUnschedulable.filter(&state, &tolerant, &cordoned).is_success());
        assert!(
            NodeUnschedulable
                .filter(&state, &plain, &node("b", "1", "1Gi", json!({})))
                .is_success()
        );
    }
}
