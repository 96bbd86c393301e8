//! `hyperkube down`: removes what `up` and its kubelet made — the kubelet container, every
//! container the kubelet labelled with this node, the proxy's iptables rules, the kubelet's
//! mounts (before any directory goes) and pod directories, the kubeconfig context — and, with
//! `--purge`, the cluster's data. Safe when half started or already down.

use std::collections::HashMap;
use std::path::Path;

use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use tokio_util::sync::CancellationToken;

use super::{CLUSTER_LABEL, DownArgs, Error, KUBELET_DIR, io, kubeconfig, up::SHARED_MARKER};
use crate::kubelet::runtime::labels;

pub async fn down(args: DownArgs, _shutdown: CancellationToken) -> Result<(), Error> {
    let common = &args.common;
    let docker = common.docker().await?;
    // The kubelet first, so that nothing restarts the pods being removed.
    let kubelets = remove_labelled(&docker, &format!("{CLUSTER_LABEL}={}", common.name)).await?;
    let pods = remove_labelled(&docker, &format!("{}={}", labels::NODE, common.node_name())).await?;
    println!("removed {kubelets} kubelet container(s) and {pods} pod container(s)");

    match crate::proxy::cleanup() {
        Ok(()) => println!("removed the proxy's iptables rules and service-range device"),
        Err(err) => println!("warning: removing the proxy's rules failed: {err}"),
    }

    let kubelet_dir = Path::new(KUBELET_DIR);
    for dir in ["pods", "sandboxes"].map(|d| kubelet_dir.join(d)) {
        crate::kubelet::volumes::unmount_under(&dir).map_err(io(format!("unmounting under {}", dir.display())))?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => println!("removed {}", dir.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("removing {}", dir.display()))(e)),
        }
    }
    let marker = common.data_dir.join(SHARED_MARKER);
    if marker.exists() {
        rustix::mount::unmount(kubelet_dir, rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| io(format!("unmounting {KUBELET_DIR}"))(e.into()))?;
        std::fs::remove_file(&marker).map_err(io("removing the mount marker"))?;
        println!("{KUBELET_DIR} is no longer a mount of its own");
    }
    if kubeconfig::uninstall(common)? {
        println!("removed the {:?} context from the kubeconfig", common.name);
    }
    if args.purge {
        match std::fs::remove_dir_all(&common.data_dir) {
            Ok(()) => println!("purged {} (store, manifests, kubeconfig)", common.data_dir.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("removing {}", common.data_dir.display()))(e)),
        }
    } else {
        println!("kept the data in {} (--purge removes it)", common.data_dir.display());
    }
    Ok(())
}

/// Removes every container with the label `key=value`, running or not; how many.
async fn remove_labelled(docker: &bollard::Docker, label: &str) -> Result<usize, Error> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_owned(), vec![label.to_owned()])])),
        ..Default::default()
    };
    let found = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| Error::Docker(e.to_string()))?;
    for id in found.iter().filter_map(|c| c.id.as_deref()) {
        let remove = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match docker.remove_container(id, Some(remove)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(e) => return Err(Error::Docker(e.to_string())),
        }
    }
    Ok(found.len())
}
