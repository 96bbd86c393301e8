//! The static-manifests source: every JSON or YAML file in `--pod-manifest-path` (or the one
//! file it names) is a pod. Watched with inotify (`notify`) and re-read every
//! `--file-check-frequency`, so a missed event is still caught. Mirrors upstream's
//! `pkg/kubelet/config/file.go` and `common.go`.
//!
//! Each file becomes a static pod as `super::static_pod` describes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use notify::Watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Snapshot, Source};
use crate::events::Recorder;

/// A manifest that could not be used, and why (for logs and events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub(crate) file: PathBuf,
    pub(crate) reason: String,
}

/// Reads the manifests under `path` (a directory or one file). A missing path is an empty set.
pub(crate) fn read_manifests(path: &Path, node_name: &str) -> (Vec<Pod>, Vec<Rejected>) {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        files.sort();
        files
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        Vec::new()
    };
    let candidates = files.into_iter().map(|file| {
        let pod = read_manifest(&file, node_name);
        (file, pod)
    });
    let (pods, rejected) = super::first_of_each_name(candidates);
    let rejected = rejected
        .into_iter()
        .map(|(file, reason)| Rejected { file, reason })
        .collect();
    (pods, rejected)
}

fn read_manifest(file: &Path, node_name: &str) -> Result<Pod, String> {
    let content = std::fs::read(file).map_err(|e| format!("reading failed: {e}"))?;
    // YAML is a superset of JSON, so one parser reads both.
    let doc: serde_json::Value =
        serde_yaml::from_slice(&content).map_err(|e| format!("not valid YAML or JSON: {e}"))?;
    super::static_pod(doc, &file.to_string_lossy(), node_name, Source::File)
}

/// Watches `path` and sends a snapshot at start, on every change, and every `period`. Rejected
/// manifests are logged once per change. Returns when `shutdown` is cancelled or the receiver is gone.
pub(crate) async fn run(
    path: PathBuf,
    node_name: String,
    period: Duration,
    out: mpsc::Sender<Snapshot>,
    events: Recorder,
    shutdown: CancellationToken,
) {
    let (changed_tx, mut changed) = mpsc::channel::<()>(1);
    // The watcher calls back on its own thread; a full channel already means "re-read".
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the manifests is an event too (opens, closes): reacting to those would re-read
        // them in a loop. Only changes count.
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = changed_tx.try_send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch manifests; relying on periodic re-reads"))
    .ok();
    let watch_dir = if path.is_dir() {
        path.clone()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    if let Some(w) = watcher.as_mut()
        && let Err(e) = w.watch(&watch_dir, notify::RecursiveMode::NonRecursive)
    {
        tracing::warn!(path = %watch_dir.display(), error = %e, "cannot watch manifests; relying on periodic re-reads");
    }
    let mut last: Option<(Vec<String>, Vec<Rejected>)> = None;
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            Some(()) = changed.recv() => {
                // Let an editor finish writing before reading.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let (pods, rejected) = read_manifests(&path, &node_name);
        let uids: Vec<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        if last.as_ref().is_some_and(|(u, r)| *u == uids && *r == rejected) {
            continue;
        }
        for r in &rejected {
            events.node(
                true,
                "InvalidManifest",
                &format!("skipping {}: {}", r.file.display(), r.reason),
            );
        }
        last = Some((uids, rejected));
        if out
            .send(Snapshot {
                source: Source::File,
                pods,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_become_static_pods_and_bad_ones_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: busybox}]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.json"),
            r#"{"metadata":{"name":"db","namespace":"kube-system"},"spec":{"containers":[{"name":"c","image":"x"}]}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("c.yaml"),
            "metadata: {name: broken}\nspec:\n  containers: [{name: c}]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("d.yaml"), "{not yaml: [").unwrap();
        std::fs::write(
            dir.path().join("e.yaml"),
            "metadata: {name: web}\nspec:\n  containers: [{name: c, image: other}]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "junk").unwrap();
        let (pods, rejected) = read_manifests(dir.path(), "node-1");
        let names: Vec<_> = pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["web-node-1", "db-node-1"]);
        assert_eq!(pods[1].metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(pods[0].spec.as_ref().unwrap().node_name.as_deref(), Some("node-1"));
        assert_eq!(
            pods[0].spec.as_ref().unwrap().restart_policy.as_deref(),
            Some("Always"),
            "defaults apply"
        );
        let reasons: Vec<_> = rejected
            .iter()
            .map(|r| {
                (
                    r.file.file_name().unwrap().to_string_lossy().into_owned(),
                    r.reason.clone(),
                )
            })
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons[0].1.contains("spec.containers[0].image: Required value"),
            "{reasons:?}"
        );
        assert!(reasons[1].1.contains("not valid YAML"), "{reasons:?}");
        assert!(reasons[2].1.contains("already defined"), "{reasons:?}");
    }

    #[test]
    fn a_changed_file_is_a_new_pod_and_an_unchanged_one_keeps_its_uid() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(
            &file,
            "metadata: {name: web}\nspec:\n  containers: [{name: c, image: one}]\n",
        )
        .unwrap();
        let first = read_manifests(dir.path(), "n").0[0].metadata.uid.clone();
        assert_eq!(read_manifests(dir.path(), "n").0[0].metadata.uid, first);
        std::fs::write(
            &file,
            "metadata: {name: web}\nspec:\n  containers: [{name: c, image: two}]\n",
        )
        .unwrap();
        assert_ne!(read_manifests(dir.path(), "n").0[0].metadata.uid, first);
        assert!(read_manifests(&dir.path().join("missing"), "n").0.is_empty());
    }
}
