//! The kubelet's Node: registered at start, its status (capacity, addresses, versions, the Ready
//! condition) refreshed every `--node-status-update-frequency`, and a heartbeat Lease in
//! `kube-node-lease` renewed every 10 seconds. Mirrors upstream's `kubelet_node_status.go` and
//! `pkg/kubelet/nodelease`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

use super::runtime::Runtime;
use crate::backoff::Backoff;

/// How long a lease holds without renewal; the node controller marks the node unknown after it.
const LEASE_DURATION_SECONDS: i32 = 40;
const LEASE_RENEW: Duration = Duration::from_secs(10);
/// The first retry of a failed node update; retries double up to the status period.
const RETRY_FIRST: Duration = Duration::from_millis(100);

/// What the kubelet reports about its node.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub(crate) name: String,
    pub(crate) ip: String,
    pub(crate) kubelet_port: u16,
    /// Where the host's filesystem is seen: `/`, or `/rootfs` for a containerized kubelet.
    pub(crate) host_root: std::path::PathBuf,
}

/// Keeps the Node and its Lease up to date until `shutdown`. Errors are logged and retried: the
/// apiserver may not be up yet when the kubelet that runs it starts.
pub(crate) async fn run(
    client: kube::Client,
    runtime: std::sync::Arc<dyn Runtime>,
    info: NodeInfo,
    status_every: Duration,
    shutdown: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    // A failed update is retried soon, doubling up to the status period, as upstream's
    // registration does: the apiserver this kubelet runs answers a moment after it starts.
    let retry = Backoff {
        initial: RETRY_FIRST,
        max: status_every,
    };
    let mut failures = 0;
    let mut next_status = tokio::time::Instant::now();
    let mut lease_tick = tokio::time::interval(LEASE_RENEW);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next_status) => {
                let node = node_object(&info, runtime.as_ref()).await;
                match register_or_update(&nodes, &node).await {
                    Ok(()) => {
                        failures = 0;
                        next_status = tokio::time::Instant::now() + status_every;
                    }
                    Err(err) => {
                        tracing::warn!(error = %crate::error_chain(&err), "updating the node failed; retrying");
                        failures += 1;
                        next_status = tokio::time::Instant::now() + retry.after(failures);
                    }
                }
            }
            _ = lease_tick.tick() => {
                if let Err(err) = renew_lease(&leases, &info.name).await {
                    tracing::warn!(error = %crate::error_chain(&err), "renewing the node lease failed; retrying");
                }
            }
        }
    }
}

async fn register_or_update(nodes: &Api<Node>, node: &Node) -> Result<(), kube::Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    match nodes.create(&PostParams::default(), node).await {
        Ok(_) => {
            tracing::info!(node = %name, "node registered");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = serde_json::json!({"status": node.status});
            nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

async fn renew_lease(leases: &Api<Lease>, node: &str) -> Result<(), kube::Error> {
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some("kube-node-lease".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(jiff::Timestamp::now())),
            ..Default::default()
        }),
    };
    // An unconditional PUT: the apiserver creates a missing Lease, and only this kubelet writes it.
    leases.replace(node, &PostParams::default(), &lease).await.map(|_| ())
}

/// The Node as this kubelet sees it now.
pub(crate) async fn node_object(info: &NodeInfo, runtime: &dyn Runtime) -> Node {
    let (ready, reason, message, runtime_version) = match runtime.version().await {
        Ok(v) => (
            true,
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
            format!("{}://{}", v.name, v.version),
        ),
        Err(e) => (
            false,
            "KubeletNotReady",
            format!("container runtime is down: {e}"),
            String::new(),
        ),
    };
    let now = Some(Time(jiff::Timestamp::now()));
    let condition = |kind: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: now.clone(),
        last_transition_time: now.clone(),
    };
    let capacity: BTreeMap<String, Quantity> = [
        (
            "cpu".to_string(),
            Quantity(std::thread::available_parallelism().map_or(1, |n| n.get()).to_string()),
        ),
        ("memory".to_string(), Quantity(format!("{}Ki", memory_kib()))),
        ("pods".to_string(), Quantity("110".into())),
        ("ephemeral-storage".to_string(), Quantity("0".into())),
    ]
    .into();
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let host_file = |path: &str| read(&info.host_root.join(path).to_string_lossy());
    let os_image = host_file("etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname".to_string(), info.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch.to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch.to_string()),
    ]
    .into();
    Node {
        metadata: ObjectMeta {
            name: Some(info.name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            capacity: Some(capacity.clone()),
            allocatable: Some(capacity),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: info.ip.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: info.name.clone(),
                },
            ]),
            conditions: Some(vec![
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                condition("Ready", if ready { "True" } else { "False" }, reason, &message),
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                    port: info.kubelet_port.into(),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: arch.into(),
                boot_id: read("/proc/sys/kernel/random/boot_id"),
                container_runtime_version: runtime_version,
                kernel_version: read("/proc/sys/kernel/osrelease"),
                kube_proxy_version: String::new(),
                kubelet_version: format!("{}-hyperkube", crate::KUBERNETES_VERSION),
                machine_id: host_file("etc/machine-id"),
                operating_system: "linux".into(),
                os_image,
                system_uuid: String::new(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

pub(crate) fn memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .map(|v| v.trim().trim_end_matches("kB").trim().to_string())
            })
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::runtime::fake::Fake;

    #[tokio::test]
    async fn the_node_reports_capacity_versions_and_readiness() {
        let info = NodeInfo {
            name: "n1".into(),
            ip: "192.0.2.7".into(),
            kubelet_port: 10250,
            host_root: "/".into(),
        };
        let node = node_object(&info, &Fake::default()).await;
        let status = node.status.unwrap();
        assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "110");
        assert!(status.capacity.as_ref().unwrap()["memory"].0.ends_with("Ki"));
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(status.node_info.unwrap().container_runtime_version, "fake://0.0.0");
        assert_eq!(status.addresses.unwrap()[0].address, "192.0.2.7");

        let down = Fake::default();
        down.fail("version", "socket gone");
        let node = node_object(&info, &down).await;
        let ready = node
            .status
            .unwrap()
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("KubeletNotReady"))
        );
    }
}
