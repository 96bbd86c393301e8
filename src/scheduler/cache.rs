//! The scheduler's cache of nodes and of the pods assigned to them, after upstream's
//! `pkg/scheduler/backend/cache`. Fed by the pod and node informers; read by every scheduling
//! attempt. A pod the scheduler has just placed is *assumed* onto its node at once, before its
//! binding is written, so the next attempt already counts it; the informer later *confirms* it
//! (the pod comes back with `spec.nodeName`), or a failed binding *forgets* it.
//!
//! Nodes live in one vector so attempts can walk them round-robin without allocating.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use super::types::{NodeInfo, PodInfo};

struct PodState {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
}

#[derive(Default)]
pub(crate) struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Nodes in `nodes` whose Node object is known.
    node_count: usize,
    /// Assigned and assumed pods by UID.
    pods: HashMap<String, PodState>,
}

impl Cache {
    /// Every node entry, including (with `node: None`) nodes only pods still name.
    pub(crate) fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// How many nodes pods can be scheduled to.
    pub(crate) fn node_count(&self) -> usize {
        self.node_count
    }

    fn entry(&mut self, name: &str) -> &mut NodeInfo {
        let at = match self.index.get(name) {
            Some(at) => *at,
            None => {
                self.nodes.push(NodeInfo::new(name));
                self.index.insert(name.to_owned(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[at]
    }

    /// Drops the entry of `name` if it has neither a Node nor pods.
    fn prune(&mut self, name: &str) {
        let Some(&at) = self.index.get(name) else { return };
        if self.nodes[at].node.is_some() || !self.nodes[at].pods.is_empty() {
            return;
        }
        self.index.remove(name);
        self.nodes.swap_remove(at);
        if let Some(moved) = self.nodes.get(at) {
            self.index.insert(moved.name.clone(), at);
        }
    }

    /// Adds or replaces a node.
    pub(crate) fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let entry = self.entry(&name);
        if entry.node.is_none() {
            self.node_count += 1;
        }
        self.entry(&name).set_node(node);
    }

    pub(crate) fn remove_node(&mut self, name: &str) {
        let Some(&at) = self.index.get(name) else { return };
        if self.nodes[at].node.take().is_some() {
            self.node_count -= 1;
        }
        self.prune(name);
    }

    /// Places `pod` on `node` before its binding is written.
    pub(crate) fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.place(pod, node, true);
    }

    /// Whether `uid` is assumed and not yet confirmed by the informer.
    pub(crate) fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// Undoes [`Cache::assume`] after the binding failed; a pod the informer confirmed meanwhile
    /// stays.
    pub(crate) fn forget(&mut self, uid: &str) {
        if self.is_assumed(uid) {
            self.remove_pod(uid);
        }
    }

    /// Records an assigned pod as the informer reports it: adds it, confirms it if assumed, or
    /// updates it (wherever it was, it is now on `node`).
    pub(crate) fn set_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.place(pod, node, false);
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: &str, assumed: bool) {
        self.remove_pod(&pod.uid);
        self.entry(node).add_pod(pod.clone());
        self.pods.insert(
            pod.uid.clone(),
            PodState {
                info: pod,
                node: node.to_owned(),
                assumed,
            },
        );
    }

    /// Removes an assigned or assumed pod.
    pub(crate) fn remove_pod(&mut self, uid: &str) {
        let Some(state) = self.pods.remove(uid) else { return };
        if let Some(&at) = self.index.get(&state.node) {
            self.nodes[at].remove_pod(&state.info.uid);
            self.prune(&state.node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::testing::{node, pod_requesting};
    use serde_json::json;

    fn cache_with(names: &[&str]) -> Cache {
        let mut cache = Cache::default();
        for name in names {
            cache.set_node(node(name, "4", "8Gi", json!({})).node.unwrap());
        }
        cache
    }

    fn requested(cache: &Cache, name: &str) -> i64 {
        cache
            .nodes()
            .iter()
            .find(|n| n.name == name)
            .unwrap()
            .requested
            .milli_cpu
    }

    #[test]
    fn assumed_pods_count_until_confirmed_or_forgotten() {
        let mut cache = cache_with(&["a", "b"]);
        let p = Arc::new(pod_requesting("p", "1", "1Gi"));
        cache.assume(p.clone(), "a");
        assert!(cache.is_assumed(&p.uid));
        assert_eq!(requested(&cache, "a"), 1000);
        // Confirmed by the informer: counted once, no longer assumed, and forget keeps it.
        cache.set_pod(p.clone(), "a");
        assert!(!cache.is_assumed(&p.uid));
        cache.forget(&p.uid);
        assert_eq!(requested(&cache, "a"), 1000);

        let q = Arc::new(pod_requesting("q", "2", "1Gi"));
        cache.assume(q.clone(), "b");
        cache.forget(&q.uid);
        assert_eq!(requested(&cache, "b"), 0);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_their_node() {
        let mut cache = Cache::default();
        let p = Arc::new(pod_requesting("p", "1", "1Gi"));
        cache.set_pod(p.clone(), "later");
        assert_eq!(cache.node_count(), 0);
        assert_eq!(cache.nodes().len(), 1);
        cache.set_node(node("later", "4", "8Gi", json!({})).node.unwrap());
        assert_eq!(cache.node_count(), 1);
        assert_eq!(requested(&cache, "later"), 1000);
        cache.remove_node("later");
        assert_eq!(cache.node_count(), 0);
        assert_eq!(cache.nodes().len(), 1, "the pod still holds the entry");
        cache.remove_pod(&p.uid);
        assert!(cache.nodes().is_empty());
    }

    #[test]
    fn removing_a_node_keeps_the_index_of_the_others() {
        let mut cache = cache_with(&["a", "b", "c"]);
        cache.remove_node("a");
        cache.set_pod(Arc::new(pod_requesting("p", "1", "1Gi")), "c");
        assert_eq!(requested(&cache, "c"), 1000);
        assert_eq!(cache.node_count(), 2);
        assert_eq!(cache.nodes().len(), 2);
    }
}
