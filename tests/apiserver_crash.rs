//! Durability: concurrent writers, a SIGKILL in the middle, a restart on the same data, and
//! every acknowledged write must be there, intact, with resourceVersions still increasing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// Starts `hyperkube apiserver` on a free port and returns it with its address once it serves.
fn spawn_apiserver(data_dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyperkube"))
        .args(["apiserver", "--insecure-port=0", "--data-dir"])
        .arg(data_dir)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("hyperkube starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("apiserver logs its address before exiting")
            .expect("stderr is readable");
        if let Some(at) = line.find("address=") {
            break line[at + "address=".len()..].trim().to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

fn connect(address: &str) -> Client {
    Client::try_from(kube::Config::new(format!("http://{address}").parse().unwrap())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address) = spawn_apiserver(dir.path());
    let client = connect(&address);
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "crash"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    // 32 writers create ConfigMaps as fast as they can; each remembers what was acknowledged.
    let acked: Arc<Mutex<Vec<(String, String, u64)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..32 {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "crash");
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i}");
                let value = format!("payload of {name} {}", "x".repeat(i % 200));
                let cm: ConfigMap =
                    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": value}})).unwrap();
                match cms.create(&PostParams::default(), &cm).await {
                    Ok(stored) => {
                        let rv = stored.resource_version().unwrap().parse().unwrap();
                        acked.lock().unwrap().push((name, value, rv));
                    }
                    // The server died under us: this write was never acknowledged.
                    Err(_) => break,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 2000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL the apiserver");
    child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let (mut child, address) = spawn_apiserver(dir.path());
    let client = connect(&address);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "crash");
    let stored = cms.list(&ListParams::default()).await.unwrap();
    let by_name: std::collections::HashMap<String, ConfigMap> =
        stored.items.into_iter().map(|c| (c.name_any(), c)).collect();
    for (name, value, rv) in &acked {
        let cm = by_name
            .get(name)
            .unwrap_or_else(|| panic!("acknowledged {name} is missing after the crash"));
        assert_eq!(cm.data.as_ref().unwrap()["v"], *value, "{name} is intact");
        assert_eq!(
            cm.resource_version().unwrap().parse::<u64>().unwrap(),
            *rv,
            "{name} keeps its resourceVersion"
        );
    }
    let newest = acked.iter().map(|(_, _, rv)| *rv).max().unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "after-restart"}})).unwrap();
    let after = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(
        after.resource_version().unwrap().parse::<u64>().unwrap() > newest,
        "resourceVersions keep increasing"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
