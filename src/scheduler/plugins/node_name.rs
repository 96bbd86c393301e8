//! NodeName: a pod that names its node (`spec.nodeName`) fits only there (upstream's
//! `plugins/nodename`).

use crate::scheduler::framework::{CycleState, Events, FilterPlugin, Plugin, Status};
use crate::scheduler::types::{NodeInfo, PodInfo};

const REASON: &str = "node(s) didn't match the requested node name";

pub(crate) struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(wanted) if !wanted.is_empty() && wanted != node.name => Status::unresolvable(REASON),
            _ => Status::SUCCESS,
        }
    }

    fn events(&self) -> Events {
        Events::NODE_ADD
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn only_the_named_node_fits() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"nodeName": "a", "containers": []}}));
        let state = CycleState::default();
        assert!(
            NodeName
                .filter(&state, &p, &node("a", "1", "1Gi", json!({})))
                .is_success()
        );
        let other = NodeName.filter(&state, &p, &node("b", "1", "1Gi", json!({})));
        assert_eq!(other, Status::unresolvable(REASON));
        let free = pod(json!({"metadata": {"name": "q"}, "spec": {"containers": []}}));
        assert!(
            NodeName
                .filter(&state, &free, &node("b", "1", "1Gi", json!({})))
                .is_success()
        );
    }
}
