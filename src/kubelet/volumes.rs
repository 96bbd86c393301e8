//! Volumes backed by files the kubelet writes: configMap, secret and downwardAPI, under
//! `--root-dir/pods/UID/volumes/kubernetes.io~TYPE/NAME`, plus the ConfigMaps and Secrets that
//! environment variables name. Rewritten on every sync, so a changed object reaches the running
//! container within a sync period. Mirrors upstream's `pkg/volume/{configmap,secret,downwardapi}`
//! and their atomic writer: files are links into a `..data` directory that is swapped at once,
//! so a reader never sees half an update.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::downward;
use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret, Volume};
use kube::api::Api;

/// Reads the ConfigMaps and Secrets pods refer to; without an apiserver there are none.
#[derive(Clone, Default)]
pub(crate) struct Objects {
    client: Option<kube::Client>,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("apiserver", &self.client.is_some())
            .finish()
    }
}

impl Objects {
    /// Objects read through `client`.
    pub(crate) fn new(client: Option<kube::Client>) -> Self {
        Self { client }
    }

    async fn get<K>(&self, namespace: &str, name: &str) -> Result<K, String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let kind = K::kind(&());
        let client = self
            .client
            .clone()
            .ok_or_else(|| format!("{kind} {namespace}/{name}: no apiserver to read it from"))?;
        match Api::<K>::namespaced(client, namespace).get_opt(name).await {
            Ok(Some(obj)) => Ok(obj),
            Ok(None) => Err(format!("{kind} {name:?} not found")),
            Err(e) => Err(format!("reading {kind} {namespace}/{name}: {}", crate::error_chain(&e))),
        }
    }

    /// The ConfigMap `namespace/name`.
    pub(crate) async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, String> {
        self.get(namespace, name).await
    }

    /// The Secret `namespace/name`.
    pub(crate) async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, String> {
        self.get(namespace, name).await
    }
}

/// Mounts a tmpfs at `dir` (an emptyDir with `medium: Memory`) unless one is there already.
pub(crate) fn mount_memory(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if mount_points_under(dir).iter().any(|m| m == dir) {
        return Ok(());
    }
    rustix::mount::mount(
        "tmpfs",
        dir,
        "tmpfs",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        None,
    )
    .map_err(std::io::Error::from)
}

/// Unmounts everything mounted at or below `dir`, deepest first, so the directory can go.
pub(crate) fn unmount_under(dir: &Path) -> std::io::Result<()> {
    let mut mounts = mount_points_under(dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in mounts {
        rustix::mount::unmount(&m, rustix::mount::UnmountFlags::empty()).map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// The mount points at or below `dir`, from /proc/self/mountinfo (octal escapes decoded).
fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|escaped| {
            PathBuf::from(
                escaped
                    .replace("\\040", " ")
                    .replace("\\011", "\t")
                    .replace("\\134", "\\"),
            )
        })
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Where a volume of the pod lives on the host.
pub(crate) fn volume_dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir
        .join("volumes")
        .join(format!("kubernetes.io~{plugin}"))
        .join(name)
}

/// Writes a file-backed volume (configMap, secret, downwardAPI) and returns its host directory;
/// `None` when the volume is not one of those.
pub(crate) async fn materialize(
    objects: &Objects,
    pod: &Pod,
    pod_dir: &Path,
    volume: &Volume,
) -> Result<Option<PathBuf>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (plugin, files) = if let Some(source) = &volume.config_map {
        let name = source.name.clone();
        let files = match objects.config_map(namespace, &name).await {
            Ok(cm) => {
                let mut data: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                project(data, source.items.as_deref(), source.default_mode)?
            }
            Err(_) if source.optional == Some(true) => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        ("configmap", files)
    } else if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let files = match objects.secret(namespace, &name).await {
            Ok(secret) => {
                let data = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                project(data, source.items.as_deref(), source.default_mode)?
            }
            Err(_) if source.optional == Some(true) => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        ("secret", files)
    } else if let Some(source) = &volume.downward_api {
        let mut files = BTreeMap::new();
        for item in source.items.iter().flatten() {
            let value = if let Some(field) = &item.field_ref {
                downward::field(pod, &field.field_path).ok_or_else(|| {
                    format!(
                        "downwardAPI item {:?}: unsupported field {:?}",
                        item.path, field.field_path
                    )
                })?
            } else if let Some(selector) = &item.resource_field_ref {
                let container = selector.container_name.as_deref().unwrap_or_default();
                downward::resource(pod, container, selector, downward::NodeCapacity::of_host())
                    .map_err(|e| format!("downwardAPI item {:?}: {e}", item.path))?
            } else {
                return Err(format!(
                    "downwardAPI item {:?}: neither fieldRef nor resourceFieldRef",
                    item.path
                ));
            };
            files.insert(
                safe_path(&item.path)?,
                (value.into_bytes(), item.mode.or(source.default_mode).unwrap_or(0o644)),
            );
        }
        ("downward-api", files)
    } else {
        return Ok(None);
    };
    let dir = volume_dir(pod_dir, plugin, &volume.name);
    write_atomically(&dir, &files).map_err(|e| format!("writing volume {:?}: {e}", volume.name))?;
    Ok(Some(dir))
}

/// Picks the keys a volume shows (all, or `items` under their paths) with their file modes.
fn project(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> Result<BTreeMap<PathBuf, (Vec<u8>, i32)>, String> {
    let mode = default_mode.unwrap_or(0o644);
    match items {
        None => data.into_iter().map(|(k, v)| Ok((safe_path(&k)?, (v, mode)))).collect(),
        Some(items) => items
            .iter()
            .map(|item| {
                let value = data
                    .get(&item.key)
                    .ok_or_else(|| format!("key {:?} not found", item.key))?;
                Ok((safe_path(&item.path)?, (value.clone(), item.mode.unwrap_or(mode))))
            })
            .collect(),
    }
}

/// A relative path inside the volume; `..` and absolute paths are refused, as upstream does.
fn safe_path(p: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(p);
    let ok = !p.is_empty()
        && path.components().all(|c| matches!(c, std::path::Component::Normal(_)))
        && !p.starts_with("..");
    if ok {
        Ok(path)
    } else {
        Err(format!("invalid path {p:?} in a volume"))
    }
}

/// Makes `dir` hold exactly `files`, switching from the old content to the new in one rename:
/// the content lives in a fresh `..TIMESTAMP` directory, `..data` links to it, and each
/// top-level name links into `..data`.
pub(crate) fn write_atomically(dir: &Path, files: &BTreeMap<PathBuf, (Vec<u8>, i32)>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    // Nothing to do when the current content is already what is asked.
    if let Ok(current) = std::fs::read_link(&data_link) {
        let current = dir.join(current);
        let same = files.iter().all(|(p, (bytes, mode))| {
            std::fs::read(current.join(p)).is_ok_and(|b| b == *bytes)
                && std::fs::metadata(current.join(p))
                    .is_ok_and(|m| m.permissions().mode() & 0o7777 == (*mode as u32) & 0o7777)
        }) && count_files(&current) == files.len();
        if same {
            return Ok(());
        }
    }
    let stamp = format!("..{}", jiff::Timestamp::now().as_nanosecond());
    let fresh = dir.join(&stamp);
    std::fs::create_dir_all(&fresh)?;
    for (path, (bytes, mode)) in files {
        let target = fresh.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode as u32 & 0o7777))?;
    }
    let old = std::fs::read_link(&data_link).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, &data_link)?;
    // Top-level names point through ..data, so they follow the swap.
    let tops: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        std::fs::remove_dir_all(dir.join(old))?;
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<PathBuf, (Vec<u8>, i32)> {
        pairs
            .iter()
            .map(|(k, v)| (PathBuf::from(k), (v.as_bytes().to_vec(), 0o644)))
            .collect()
    }

    #[test]
    fn volumes_are_swapped_whole_and_stale_keys_disappear() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        write_atomically(&vol, &files(&[("a", "1"), ("b", "2")])).unwrap();
        assert_eq!(std::fs::read_to_string(vol.join("a")).unwrap(), "1");
        let first = std::fs::read_link(vol.join("..data")).unwrap();
        write_atomically(&vol, &files(&[("a", "1"), ("b", "2")])).unwrap();
        assert_eq!(
            std::fs::read_link(vol.join("..data")).unwrap(),
            first,
            "unchanged content is not rewritten"
        );
        write_atomically(&vol, &files(&[("a", "3"), ("dir/c", "4")])).unwrap();
        assert_eq!(std::fs::read_to_string(vol.join("a")).unwrap(), "3");
        assert_eq!(std::fs::read_to_string(vol.join("dir/c")).unwrap(), "4");
        assert!(!vol.join("b").exists(), "a removed key's file goes");
        assert!(!vol.join(&first).exists(), "the old content is removed");
    }

    #[test]
    fn items_pick_keys_and_paths_are_kept_inside() {
        let data: BTreeMap<String, Vec<u8>> =
            [("k".to_string(), b"v".to_vec()), ("x".to_string(), b"y".to_vec())].into();
        let items: Vec<KeyToPath> = vec![KeyToPath {
            key: "k".into(),
            path: "sub/file".into(),
            mode: Some(0o400),
            ..Default::default()
        }];
        let picked = project(data.clone(), Some(&items), None).unwrap();
        assert_eq!(picked[&PathBuf::from("sub/file")], (b"v".to_vec(), 0o400));
        assert_eq!(picked.len(), 1);
        assert!(safe_path("../etc/passwd").is_err());
        assert!(safe_path("/etc/passwd").is_err());
        let missing: Vec<KeyToPath> = vec![KeyToPath {
            key: "nope".into(),
            path: "p".into(),
            ..Default::default()
        }];
        assert!(project(data, Some(&missing), None).is_err());
    }
}
