//! `hyperkube status`: what runs, where, healthy or not.

use tokio_util::sync::CancellationToken;

use super::{Common, Error, get, get_json};

pub async fn status(common: Common, _shutdown: CancellationToken) -> Result<(), Error> {
    let docker = common.docker().await?;
    let container = common.kubelet_container();
    match docker.inspect_container(&container, None).await {
        Ok(info) => {
            let state = info
                .state
                .and_then(|s| s.status)
                .map_or("unknown".into(), |s| s.to_string());
            println!("kubelet container {container}: {state}");
        }
        Err(_) => {
            println!("kubelet container {container}: not there (the cluster is down)");
            return Ok(());
        }
    }
    let ready = get(&common, "/readyz").await.is_some();
    println!(
        "apiserver {}: {}",
        common.server(),
        if ready { "ready" } else { "not answering" }
    );
    if !ready {
        return Ok(());
    }
    for node in items(get_json(&common, "/api/v1/nodes").await) {
        let ready = node["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .map_or("Unknown", |c| if c["status"] == "True" { "Ready" } else { "NotReady" });
        println!(
            "node {}: {ready}",
            node["metadata"]["name"].as_str().unwrap_or_default()
        );
    }
    for pod in items(get_json(&common, "/api/v1/namespaces/kube-system/pods").await) {
        println!(
            "pod kube-system/{}: {}",
            pod["metadata"]["name"].as_str().unwrap_or_default(),
            pod["status"]["phase"].as_str().unwrap_or("Unknown")
        );
    }
    Ok(())
}

fn items(list: Option<serde_json::Value>) -> Vec<serde_json::Value> {
    list.and_then(|l| l["items"].as_array().cloned()).unwrap_or_default()
}
