//! The dependency graph: every object the monitors see, its owners, and who depends on whom
//! (upstream's `GraphBuilder` and `node`). Changes come in from the monitors one at a time; each
//! returns the work it makes for the collector's queues. It holds no lock and does no I/O.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The finalizer that keeps an owner until its blocking dependents are gone.
pub(super) const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer that keeps an owner until its dependents no longer point at it.
pub(super) const ORPHAN: &str = "orphan";

/// Enough of an object to find it again through the API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Identity {
    pub(super) api_version: String,
    pub(super) kind: String,
    /// `None` for cluster-scoped objects.
    pub(super) namespace: Option<String>,
    pub(super) name: String,
    pub(super) uid: String,
}

impl Identity {
    /// A reference to the object, as the subject of an event.
    pub(super) fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.kind.clone()),
            name: Some(self.name.clone()),
            namespace: self.namespace.clone(),
            uid: Some(self.uid.clone()),
            ..Default::default()
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// What the graph keeps of one observed object.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    pub(super) identity: Identity,
    pub(super) owners: Vec<OwnerReference>,
    /// Being deleted in the foreground: it waits for its blocking dependents.
    pub(super) deleting_dependents: bool,
    /// Being deleted with its dependents orphaned first.
    pub(super) orphaning: bool,
}

impl Node {
    /// The node of an object with this identity and metadata.
    pub(super) fn new(identity: Identity, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        let deleting = meta.deletion_timestamp.is_some();
        let has = |f: &str| meta.finalizers.iter().flatten().any(|x| x == f);
        Self {
            identity,
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting_dependents: deleting && has(FOREGROUND),
            orphaning: deleting && has(ORPHAN),
        }
    }

    /// Whether this node's reference to `owner` holds the owner's foreground deletion back.
    fn blocks(&self, owner: &str) -> bool {
        self.owners
            .iter()
            .any(|r| r.uid == owner && r.block_owner_deletion == Some(true))
    }
}

/// Work for the collector's queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Work {
    /// Look at the object: collect it if its owners are gone, or finish its foreground deletion.
    AttemptToDelete(Identity),
    /// Take the object's dependents' references to it away, then its `orphan` finalizer.
    AttemptToOrphan(Identity),
}

#[derive(Debug, Default)]
pub(super) struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner UID → the UIDs of the observed objects that name it, whether the owner was
    /// observed or not.
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    pub(super) fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// Whether any observed object names `owner`.
    pub(super) fn has_dependents(&self, owner: &str) -> bool {
        self.dependents.get(owner).is_some_and(|d| !d.is_empty())
    }

    /// The observed objects that name `owner`.
    pub(super) fn dependents(&self, owner: &str) -> Vec<Node> {
        self.dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.nodes.get(uid).cloned())
            .collect()
    }

    /// The dependents whose reference to `owner` has `blockOwnerDeletion`.
    pub(super) fn blocking_dependents(&self, owner: &str) -> Vec<Node> {
        let mut out = self.dependents(owner);
        out.retain(|d| d.blocks(owner));
        out
    }

    /// Records an added or changed object.
    pub(super) fn upsert(&mut self, node: Node) -> Vec<Work> {
        let uid = node.identity.uid.clone();
        let old = self.nodes.insert(uid.clone(), node.clone());
        let old_owners = old.as_ref().map(|o| o.owners.clone()).unwrap_or_default();
        let mut work = Vec::new();
        for r in &old_owners {
            if !node.owners.iter().any(|n| n.uid == r.uid) {
                self.unlink(&r.uid, &uid);
            }
            // An owner waiting for its blocking dependents looks again when one stops blocking.
            if r.block_owner_deletion == Some(true) && !node.blocks(&r.uid) {
                work.extend(self.waiting_owner(&r.uid));
            }
        }
        for r in &node.owners {
            self.dependents.entry(r.uid.clone()).or_default().insert(uid.clone());
        }
        // An owner never seen may be gone: the collector checks with the apiserver.
        let owners_changed = old.as_ref().is_none_or(|o| o.owners != node.owners);
        if owners_changed && node.owners.iter().any(|r| !self.nodes.contains_key(&r.uid)) {
            work.push(Work::AttemptToDelete(node.identity.clone()));
        }
        if node.orphaning {
            work.push(Work::AttemptToOrphan(node.identity.clone()));
        }
        if node.deleting_dependents {
            work.push(Work::AttemptToDelete(node.identity.clone()));
        }
        work
    }

    /// Records a deleted object: its dependents may now be garbage, and an owner waiting for it
    /// may be done.
    pub(super) fn remove(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut work = Vec::new();
        for r in &node.owners {
            self.unlink(&r.uid, uid);
            work.extend(self.waiting_owner(&r.uid));
        }
        for dependent in self.dependents(uid) {
            work.push(Work::AttemptToDelete(dependent.identity));
        }
        work
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }

    /// Work for `owner` if it is waiting for its dependents.
    fn waiting_owner(&self, owner: &str) -> Option<Work> {
        let node = self.nodes.get(owner).filter(|n| n.deleting_dependents)?;
        Some(Work::AttemptToDelete(node.identity.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    fn identity(uid: &str) -> Identity {
        Identity {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("ns".into()),
            name: uid.into(),
            uid: uid.into(),
        }
    }

    fn node(uid: &str, meta: serde_json::Value) -> Node {
        let meta: ObjectMeta = serde_json::from_value(meta).unwrap();
        Node::new(identity(uid), &meta)
    }

    fn owned_by(owner: &str, block: bool) -> serde_json::Value {
        json!({"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": owner,
                                    "blockOwnerDeletion": block}]})
    }

    #[test]
    fn a_dependent_of_an_unseen_owner_is_checked_and_an_owners_deletion_queues_its_dependents() {
        let mut graph = Graph::default();
        assert_eq!(
            graph.upsert(node("dep", owned_by("owner", false))),
            [Work::AttemptToDelete(identity("dep"))]
        );
        assert!(graph.upsert(node("owner", json!({}))).is_empty());
        // Seen again unchanged: nothing to check.
        assert!(graph.upsert(node("dep", owned_by("owner", false))).is_empty());
        assert_eq!(graph.remove("owner"), [Work::AttemptToDelete(identity("dep"))]);
        assert!(graph.has_dependents("owner"));
        assert!(graph.remove("dep").is_empty());
        assert!(!graph.has_dependents("owner"));
    }

    #[test]
    fn an_owner_deleted_in_the_foreground_waits_for_blocking_dependents_only() {
        let mut graph = Graph::default();
        graph.upsert(node("owner", json!({})));
        graph.upsert(node("blocking", owned_by("owner", true)));
        graph.upsert(node("loose", owned_by("owner", false)));
        let deleting = json!({"deletionTimestamp": "2030-01-01T00:00:00Z", "finalizers": [FOREGROUND]});
        assert_eq!(
            graph.upsert(node("owner", deleting)),
            [Work::AttemptToDelete(identity("owner"))]
        );
        let blocking: Vec<String> = graph
            .blocking_dependents("owner")
            .into_iter()
            .map(|n| n.identity.uid)
            .collect();
        assert_eq!(blocking, ["blocking"]);
        // The blocking dependent going (or no longer blocking) brings the owner back.
        assert_eq!(graph.remove("blocking"), [Work::AttemptToDelete(identity("owner"))]);
        assert_eq!(
            graph.upsert(node("loose", json!({}))),
            Vec::<Work>::new(),
            "a non-blocking reference going does not concern the owner"
        );
    }

    #[test]
    fn an_owner_deleted_with_orphan_is_queued_for_orphaning() {
        let mut graph = Graph::default();
        let deleting = json!({"deletionTimestamp": "2030-01-01T00:00:00Z", "finalizers": [ORPHAN]});
        assert_eq!(
            graph.upsert(node("owner", deleting)),
            [Work::AttemptToOrphan(identity("owner"))]
        );
        // Finalizers without a deletion ask for nothing.
        assert!(
            graph
                .upsert(node("other", json!({"finalizers": [ORPHAN, FOREGROUND]})))
                .is_empty()
        );
    }
}
