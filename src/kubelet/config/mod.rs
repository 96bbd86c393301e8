//! Where the kubelet's pods come from, merged into one stream of changes. Mirrors upstream's
//! `pkg/kubelet/config`: each source (`file.rs` for the static-manifests directory, and later the
//! URL and the apiserver) sends full snapshots tagged with its name; the `Mux` keeps the latest
//! snapshot of each and turns every new one into typed operations on the pods.

pub(crate) mod apiserver;
pub(crate) mod file;
pub(crate) mod http;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// Which source a snapshot comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Source {
    /// The static-manifests directory (`--pod-manifest-path`, `--config`).
    File,
    /// Pods the apiserver bound to this node.
    ApiServer,
    /// The manifest URL (`--manifest-url`).
    Http,
}

impl Source {
    /// The `kubernetes.io/config.source` annotation value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::ApiServer => "api",
            Source::Http => "http",
        }
    }
}

/// Turns one manifest into a static pod, as upstream treats them: the name suffixed with
/// `-NODENAME`, the `default` namespace unless set, `spec.nodeName` set, defaults applied and the
/// spec validated, and a uid hashed from the node, the origin (file or URL) and the content, so
/// a changed manifest is a new pod and an unchanged one keeps its containers.
pub(crate) fn static_pod(doc: serde_json::Value, origin: &str, node_name: &str, source: Source) -> Result<Pod, String> {
    match doc.get("kind").and_then(|k| k.as_str()) {
        None | Some("Pod") => {}
        Some(other) => return Err(format!("kind {other:?} is not a Pod")),
    }
    let content = serde_json::to_vec(&doc).unwrap_or_default();
    let mut pod: Pod = serde_json::from_value(doc).map_err(|e| format!("not a valid Pod: {e}"))?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name: Required value")?;
    pod.metadata.name = Some(format!("{name}-{node_name}"));
    let namespace = pod.metadata.namespace.clone().filter(|n| !n.is_empty());
    pod.metadata.namespace = Some(namespace.unwrap_or_else(|| "default".into()));
    let uid = crate::stable_hash(&[node_name.as_bytes(), origin.as_bytes(), &content]);
    pod.metadata.uid = Some(uid.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert("kubernetes.io/config.source".into(), source.name().into());
    annotations.insert("kubernetes.io/config.hash".into(), uid);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node_name.to_string());
    crate::api::pod::default_and_validate(&mut pod).map_err(|errors| errors.join("; "))?;
    Ok(pod)
}

/// Keeps the first pod of each namespace/name, in order; later ones are returned with the reason,
/// tagged with where they came from (a file, an item of a list).
pub(crate) fn first_of_each_name<T>(
    candidates: impl IntoIterator<Item = (T, Result<Pod, String>)>,
) -> (Vec<Pod>, Vec<(T, String)>) {
    let mut names = std::collections::HashSet::new();
    let (mut pods, mut rejected) = (Vec::new(), Vec::new());
    for (origin, candidate) in candidates {
        match candidate {
            Ok(pod) => {
                let key = format!(
                    "{}/{}",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name.as_deref().unwrap_or_default()
                );
                if names.insert(key.clone()) {
                    pods.push(pod);
                } else {
                    rejected.push((
                        origin,
                        format!("a pod named {key} is already defined earlier; this one is ignored"),
                    ));
                }
            }
            Err(reason) => rejected.push((origin, reason)),
        }
    }
    (pods, rejected)
}

/// A source's full list of pods at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) source: Source,
    pub(crate) pods: Vec<Pod>,
}

/// A change to the set of pods the kubelet must run.
#[derive(Debug, Clone)]
pub(crate) enum PodOp {
    /// New pods.
    Add(Vec<Pod>),
    /// Pods whose spec (or deletion mark) changed.
    Update(Vec<Pod>),
    /// Pods gone from their source: stop them.
    Remove(Vec<Pod>),
}

/// Merges snapshots from every source into operations, keyed by pod uid.
#[derive(Debug, Default)]
pub(crate) struct Mux {
    pods: BTreeMap<Source, BTreeMap<String, Pod>>,
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

impl Mux {
    /// Takes a snapshot and returns what changed since its source's previous one.
    pub(crate) fn apply(&mut self, snapshot: Snapshot) -> Vec<PodOp> {
        let old = self.pods.remove(&snapshot.source).unwrap_or_default();
        let new: BTreeMap<String, Pod> = snapshot.pods.into_iter().map(|p| (uid(&p), p)).collect();
        let added: Vec<Pod> = new
            .iter()
            .filter(|(k, _)| !old.contains_key(*k))
            .map(|(_, p)| p.clone())
            .collect();
        let removed: Vec<Pod> = old
            .iter()
            .filter(|(k, _)| !new.contains_key(*k))
            .map(|(_, p)| p.clone())
            .collect();
        let updated: Vec<Pod> = new
            .iter()
            .filter(|(k, p)| {
                old.get(*k)
                    .is_some_and(|o| o.spec != p.spec || o.metadata.deletion_timestamp != p.metadata.deletion_timestamp)
            })
            .map(|(_, p)| p.clone())
            .collect();
        self.pods.insert(snapshot.source, new);
        [PodOp::Add(added), PodOp::Update(updated), PodOp::Remove(removed)]
            .into_iter()
            .filter(|op| match op {
                PodOp::Add(p) | PodOp::Update(p) | PodOp::Remove(p) => !p.is_empty(),
            })
            .collect()
    }

    /// Every pod of every source.
    pub(crate) fn desired(&self) -> impl Iterator<Item = &Pod> {
        self.pods.values().flat_map(BTreeMap::values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, image: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": uid, "uid": uid},
            "spec": {"containers": [{"name": "c", "image": image}]}}))
        .unwrap()
    }

    fn names(ops: &[PodOp]) -> Vec<String> {
        ops.iter()
            .map(|op| {
                let (kind, pods) = match op {
                    PodOp::Add(p) => ("add", p),
                    PodOp::Update(p) => ("update", p),
                    PodOp::Remove(p) => ("remove", p),
                };
                let uids: Vec<String> = pods.iter().map(uid).collect();
                format!("{kind} {}", uids.join(","))
            })
            .collect()
    }

    #[test]
    fn mux_emits_add_update_and_remove_from_snapshots() {
        let mut mux = Mux::default();
        let ops = mux.apply(Snapshot {
            source: Source::File,
            pods: vec![pod("a", "x"), pod("b", "x")],
        });
        assert_eq!(names(&ops), ["add a,b"]);
        let ops = mux.apply(Snapshot {
            source: Source::File,
            pods: vec![pod("a", "y"), pod("c", "x")],
        });
        assert_eq!(names(&ops), ["add c", "update a", "remove b"]);
        let ops = mux.apply(Snapshot {
            source: Source::File,
            pods: vec![pod("a", "y"), pod("c", "x")],
        });
        assert!(ops.is_empty(), "an unchanged snapshot changes nothing");
        assert_eq!(mux.desired().count(), 2);
    }
}
