//! InterPodAffinity: required pod affinity and anti-affinity. A pod with an anti-affinity term
//! keeps off every node in the same topology domain (nodes sharing the value of the term's
//! `topologyKey` label, `kubernetes.io/hostname` for one node each) as a pod the term matches;
//! a pod with an affinity term needs such a pod in the domain; and no pod may land where an
//! assigned pod's anti-affinity term matches it (upstream's `plugins/interpodaffinity`).
//!
//! `PreFilter` walks the assigned pods once and writes the domains that matter; `Filter` then
//! only looks up the node's labels.

use std::collections::{HashMap, HashSet};

use crate::scheduler::framework::{CycleState, Events, FilterPlugin, Plugin, PreFilterPlugin, Status};
use crate::scheduler::types::{AffinityTerm, NodeInfo, PodInfo};

const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
const AFFINITY: &str = "node(s) didn't match pod affinity rules";

pub(crate) struct InterPodAffinity;

/// Topology domains: label key to the values that matter.
#[derive(Default)]
struct Domains(HashMap<String, HashSet<String>>);

impl Domains {
    fn insert(&mut self, key: &str, value: &str) {
        self.0.entry(key.to_owned()).or_default().insert(value.to_owned());
    }

    fn contains(&self, key: &str, value: &str) -> bool {
        self.0.get(key).is_some_and(|values| values.contains(value))
    }
}

/// What `PreFilter` found for the attempt.
#[derive(Default)]
struct State {
    /// Domains where an assigned pod's anti-affinity term matches the incoming pod.
    existing_anti_affinity: Domains,
    /// Per anti-affinity term of the incoming pod, domains holding a pod it matches.
    anti_affinity: Vec<Domains>,
    /// Per affinity term of the incoming pod, domains holding a pod it matches.
    affinity: Vec<Domains>,
    /// No pod anywhere matches the incoming pod's affinity terms, but the pod matches them all
    /// itself: the first of a group that wants to be together may go anywhere.
    affinity_bootstrap: bool,
}

fn domains_of(terms: &[AffinityTerm], nodes: &[NodeInfo]) -> Vec<Domains> {
    terms
        .iter()
        .map(|term| {
            let mut domains = Domains::default();
            for node in nodes {
                let Some(value) = node.label(&term.topology_key) else {
                    continue;
                };
                if node.pods.iter().any(|p| term.matches(p)) {
                    domains.insert(&term.topology_key, value);
                }
            }
            domains
        })
        .collect()
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[NodeInfo]) -> Status {
        let existing = nodes.iter().any(|n| n.pods_with_anti_affinity > 0);
        if !existing && pod.required_affinity.is_empty() && pod.required_anti_affinity.is_empty() {
            return Status::SKIP;
        }
        let mut found = State::default();
        for node in nodes.iter().filter(|n| n.pods_with_anti_affinity > 0) {
            for term in node.pods.iter().flat_map(|p| &p.required_anti_affinity) {
                if let Some(value) = node.label(&term.topology_key)
                    && term.matches(pod)
                {
                    found.existing_anti_affinity.insert(&term.topology_key, value);
                }
            }
        }
        found.anti_affinity = domains_of(&pod.required_anti_affinity, nodes);
        found.affinity = domains_of(&pod.required_affinity, nodes);
        found.affinity_bootstrap =
            found.affinity.iter().all(|d| d.0.is_empty()) && pod.required_affinity.iter().all(|t| t.matches(pod));
        state.write(found);
        Status::SUCCESS
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(found) = state.read::<State>() else {
            return Status::new(
                crate::scheduler::framework::Code::Error,
                "InterPodAffinity: no PreFilter state",
            );
        };
        // Upstream's order, which decides the reason a node reports: the pod's affinity, its
        // anti-affinity, then the anti-affinity of the pods already there.
        let in_domain = |term: &AffinityTerm, domains: &Domains| {
            node.label(&term.topology_key)
                .is_some_and(|v| domains.contains(&term.topology_key, v))
        };
        let affine = pod
            .required_affinity
            .iter()
            .zip(&found.affinity)
            .all(|(term, domains)| in_domain(term, domains));
        let bootstrap = found.affinity_bootstrap
            && pod
                .required_affinity
                .iter()
                .all(|t| node.label(&t.topology_key).is_some());
        if !affine && !bootstrap {
            return Status::unresolvable(AFFINITY);
        }
        if pod
            .required_anti_affinity
            .iter()
            .zip(&found.anti_affinity)
            .any(|(term, domains)| in_domain(term, domains))
        {
            return Status::unschedulable(ANTI_AFFINITY);
        }
        let labels = node.node.as_ref().and_then(|n| n.metadata.labels.as_ref());
        if labels
            .into_iter()
            .flatten()
            .any(|(k, v)| found.existing_anti_affinity.contains(k, v))
        {
            return Status::unschedulable(EXISTING_ANTI_AFFINITY);
        }
        Status::SUCCESS
    }

    fn events(&self) -> Events {
        Events::NODE_ADD
            .or(Events::NODE_LABEL)
            .or(Events::ASSIGNED_POD_ADD)
            .or(Events::ASSIGNED_POD_UPDATE)
            .or(Events::ASSIGNED_POD_DELETE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::testing::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    fn labelled(name: &str, app: &str, affinity: serde_json::Value) -> PodInfo {
        pod(json!({"metadata": {"name": name, "labels": {"app": app}},
                   "spec": {"containers": [{"name": "c"}], "affinity": affinity}}))
    }

    fn term(app: &str) -> serde_json::Value {
        json!([{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}])
    }

    fn run(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<Status> {
        let mut state = CycleState::default();
        if InterPodAffinity.pre_filter(&mut state, p, nodes) == Status::SKIP {
            return vec![Status::SUCCESS; nodes.len()];
        }
        nodes.iter().map(|n| InterPodAffinity.filter(&state, p, n)).collect()
    }

    #[test]
    fn anti_affinity_keeps_pods_apart_both_ways() {
        let mut a = node("a", "1", "1Gi", json!({}));
        a.add_pod(Arc::new(labelled("web-1", "web", json!({}))));
        let b = node("b", "1", "1Gi", json!({}));
        let nodes = [a, b];
        let avoiding = labelled(
            "web-2",
            "web",
            json!({"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": term("web")}}),
        );
        assert_eq!(
            run(&avoiding, &nodes),
            [Status::unschedulable(ANTI_AFFINITY), Status::SUCCESS]
        );

        let mut a = node("a", "1", "1Gi", json!({}));
        a.add_pod(Arc::new(avoiding));
        let nodes = [a, node("b", "1", "1Gi", json!({}))];
        let plain = labelled("web-3", "web", json!({}));
        assert_eq!(
            run(&plain, &nodes),
            [Status::unschedulable(EXISTING_ANTI_AFFINITY), Status::SUCCESS]
        );
        assert_eq!(
            run(&labelled("db", "db", json!({})), &nodes),
            [Status::SUCCESS, Status::SUCCESS]
        );
    }

    #[test]
    fn affinity_needs_a_matching_pod_unless_it_is_the_first() {
        let wants_db = labelled(
            "web",
            "web",
            json!({"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": term("db")}}),
        );
        let mut a = node("a", "1", "1Gi", json!({}));
        a.add_pod(Arc::new(labelled("db", "db", json!({}))));
        let nodes = [a, node("b", "1", "1Gi", json!({}))];
        assert_eq!(
            run(&wants_db, &nodes),
            [Status::SUCCESS, Status::unresolvable(AFFINITY)]
        );
        let empty = [node("a", "1", "1Gi", json!({}))];
        assert_eq!(run(&wants_db, &empty), [Status::unresolvable(AFFINITY)]);
        let wants_own_kind = labelled(
            "first",
            "db",
            json!({"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": term("db")}}),
        );
        assert_eq!(run(&wants_own_kind, &empty), [Status::SUCCESS]);
    }
}
