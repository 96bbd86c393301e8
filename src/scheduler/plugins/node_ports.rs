//! NodePorts: a pod asking for a host port fits only nodes where no assigned pod holds the same
//! port and protocol on an overlapping address (upstream's `plugins/nodeports`).

use crate::scheduler::framework::{CycleState, Events, FilterPlugin, Plugin, PreFilterPlugin, Status};
use crate::scheduler::types::{NodeInfo, PodInfo};

const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub(crate) struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &[NodeInfo]) -> Status {
        if pod.host_ports.is_empty() {
            Status::SKIP
        } else {
            Status::SUCCESS
        }
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let taken = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if taken {
            Status::unschedulable(REASON)
        } else {
            Status::SUCCESS
        }
    }

    fn events(&self) -> Events {
        Events::NODE_ADD.or(Events::ASSIGNED_POD_DELETE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::testing::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    fn with_port(name: &str, ip: Option<&str>, protocol: &str, port: i32) -> PodInfo {
        let mut p = json!({"containerPort": 80, "hostPort": port, "protocol": protocol});
        if let Some(ip) = ip {
            p["hostIP"] = json!(ip);
        }
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "ports": [p]}]}}))
    }

    #[test]
    fn host_ports_conflict_on_the_same_protocol_and_address() {
        let mut n = node("a", "1", "1Gi", json!({}));
        n.add_pod(Arc::new(with_port("x", Some("10.0.0.1"), "TCP", 8080)));
        let state = CycleState::default();
        let check = |p: &PodInfo| NodePorts.filter(&state, p, &n).is_success();
        assert!(!check(&with_port("any-address", None, "TCP", 8080)));
        assert!(!check(&with_port("same-address", Some("10.0.0.1"), "TCP", 8080)));
        assert!(check(&with_port("other-address", Some("10.0.0.2"), "TCP", 8080)));
        assert!(check(&with_port("udp", None, "UDP", 8080)));
        assert!(check(&with_port("other-port", None, "TCP", 8081)));
        let plain = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(
            NodePorts.pre_filter(&mut CycleState::default(), &plain, &[]),
            Status::SKIP
        );
    }
}
