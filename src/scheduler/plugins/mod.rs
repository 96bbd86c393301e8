//! The plugins of the default profile, one file each, and the profile that orders them as
//! upstream's default `KubeSchedulerConfiguration` does.

mod balanced_allocation;
mod inter_pod_affinity;
mod node_affinity;
mod node_name;
mod node_ports;
mod node_resources_fit;
mod node_unschedulable;
mod selector_spread;
mod taint_toleration;

use std::sync::Arc;

use super::framework::Profile;

/// Upstream's default plugins with their score weights. The filter order decides which reason a
/// node that fails several filters reports.
pub(crate) fn default_profile() -> Profile {
    let fit = Arc::new(node_resources_fit::NodeResourcesFit);
    let taints = Arc::new(taint_toleration::TaintToleration);
    let node_affinity = Arc::new(node_affinity::NodeAffinity);
    let ports = Arc::new(node_ports::NodePorts);
    let pod_affinity = Arc::new(inter_pod_affinity::InterPodAffinity);
    let spread = Arc::new(selector_spread::SelectorSpread);
    Profile {
        pre_filter: vec![node_affinity.clone(), ports.clone(), pod_affinity.clone()],
        filter: vec![
            Arc::new(node_unschedulable::NodeUnschedulable),
            Arc::new(node_name::NodeName),
            taints.clone(),
            node_affinity.clone(),
            ports,
            fit.clone(),
            pod_affinity,
        ],
        pre_score: vec![node_affinity.clone(), spread.clone()],
        score: vec![
            (taints, 3),
            (node_affinity, 2),
            (spread, 2),
            (fit, 1),
            (Arc::new(balanced_allocation::BalancedAllocation), 1),
        ],
    }
}
