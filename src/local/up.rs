//! `hyperkube up`: checks the host, builds the images if they are missing or stale, starts the
//! kubelet container, waits until the control plane answers, the node is Ready and the system
//! pods run (saying what it waits for), and writes a kubeconfig. Running it twice is harmless.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    CLUSTER_LABEL, Common, Error, IMAGE, KUBELET_DIR, UpArgs, get, get_json, io, kubeconfig, manifests, preflight,
};

/// The image label naming the binary the image holds (set by images/hyperkube/build.sh).
const BINARY_LABEL: &str = "io.hyperkube.binary-sha256";
/// Marks that `up` made the kubelet directory a shared mount, for `down` to undo.
pub(super) const SHARED_MARKER: &str = "kubelet-dir-shared";
/// The `kube-dns` Service's fixed ClusterIP, as kube-dns had (10 in the service range).
const DNS_SERVICE_IP: &str = "10.0.0.10";

/// Brings the cluster up (or finds it up) and points kubectl at it.
pub async fn up(args: UpArgs, shutdown: CancellationToken) -> Result<(), Error> {
    let common = &args.common;
    let started = Instant::now();
    let docker = common.docker().await?;
    let container = common.kubelet_container();
    let running = match docker.inspect_container(&container, None).await {
        Ok(info) => info.state.and_then(|s| s.running).unwrap_or(false),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => false,
        Err(err) => return Err(Error::Docker(err.to_string())),
    };
    if running {
        println!("{container} is running already");
    } else {
        // A stopped container of an earlier, half-finished `up` is replaced.
        let _ = docker
            .remove_container(
                &container,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        let dns_address = bridge_gateway(&docker).await?;
        preflight::check(common, dns_address)?;
        if preflight::share_kubelet_dir()? {
            std::fs::create_dir_all(&common.data_dir).map_err(io(format!("creating {}", common.data_dir.display())))?;
            std::fs::write(common.data_dir.join(SHARED_MARKER), KUBELET_DIR).map_err(io("writing the mount marker"))?;
            println!("made {KUBELET_DIR} a shared mount (hyperkube down undoes it)");
        }
        ensure_images(&docker).await?;
        manifests::write(&manifests::Cluster {
            common,
            etcd_servers: args.etcd_servers.as_deref(),
            dns_address: &dns_address.to_string(),
        })?;
        start_kubelet(&docker, common).await?;
        println!("started the kubelet container {container}");
    }
    wait_ready(&docker, common, args.timeout, started, &shutdown).await?;
    let file = kubeconfig::install(common)?;
    println!(
        "{} is up ({:.1}s): kubectl is set to its context {:?} in {} (own file: {})",
        common.name,
        started.elapsed().as_secs_f64(),
        common.name,
        file.display(),
        common.kubeconfig_file().display()
    );
    Ok(())
}

/// Builds the images with images/hyperkube/build.sh unless `hyperkube:latest` holds this binary.
async fn ensure_images(docker: &bollard::Docker) -> Result<(), Error> {
    let exe = std::env::current_exe().map_err(io("finding this binary"))?;
    let binary = std::fs::read(&exe).map_err(io(format!("reading {}", exe.display())))?;
    let sha = format!("{:x}", Sha256::digest(&binary));
    let labels = match docker.inspect_image(IMAGE).await {
        Ok(image) => image.config.and_then(|c| c.labels).unwrap_or_default(),
        Err(_) => HashMap::new(),
    };
    if labels.get(BINARY_LABEL) == Some(&sha) {
        return Ok(());
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/images/hyperkube/build.sh");
    if !std::path::Path::new(script).exists() {
        return Err(Error::Image(format!(
            "{IMAGE} is missing or holds another binary, and {script} (the image build) is not on this machine"
        )));
    }
    println!(
        "building the images ({IMAGE} from {}, hyperkube-test/busybox:1)",
        exe.display()
    );
    let status = tokio::task::spawn_blocking(move || std::process::Command::new("bash").arg(script).arg(exe).status())
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(io(format!("running {script}")))?;
    if !status.success() {
        return Err(Error::Image(format!("{script} exited with {status}")));
    }
    Ok(())
}

async fn start_kubelet(docker: &bollard::Docker, common: &Common) -> Result<(), Error> {
    let socket = common
        .docker_endpoint
        .strip_prefix("unix://")
        .unwrap_or(&common.docker_endpoint);
    let manifests = common.manifests_dir().display().to_string();
    let cmd = vec![
        "kubelet".to_owned(),
        "--containerized".to_owned(),
        format!("--api-servers={}", common.server()),
        "--pod-manifest-path=/etc/kubernetes/manifests".to_owned(),
        format!("--pod-infra-container-image={IMAGE}"),
        format!("--root-dir={KUBELET_DIR}"),
        format!("--hostname-override={}", common.node_name()),
        format!("--cluster-dns={DNS_SERVICE_IP}"),
        format!("--v={}", common.v),
    ];
    let body = ContainerCreateBody {
        image: Some(IMAGE.to_owned()),
        cmd: Some(cmd),
        labels: Some(HashMap::from([(CLUSTER_LABEL.to_owned(), common.name.clone())])),
        host_config: Some(HostConfig {
            network_mode: Some("host".to_owned()),
            pid_mode: Some("host".to_owned()),
            binds: Some(vec![
                format!("{socket}:/var/run/docker.sock"),
                format!("{KUBELET_DIR}:{KUBELET_DIR}:rshared"),
                "/:/rootfs:ro".to_owned(),
                format!("{manifests}:/etc/kubernetes/manifests:ro"),
            ]),
            // The cluster comes back with Docker and with the host.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(common.kubelet_container()),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| Error::Docker(e.to_string()))?;
    docker
        .start_container(&created.id, None)
        .await
        .map_err(|e| Error::Docker(e.to_string()))
}

/// Waits for each stage in turn, printing what it waits for and when each is done.
async fn wait_ready(
    docker: &bollard::Docker,
    common: &Common,
    timeout: Duration,
    started: Instant,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let node = common.node_name();
    let stages: [(&str, String); 3] = [
        ("the apiserver to answer", format!("on {}", common.server())),
        ("the node to be Ready", node.clone()),
        ("the system pods to run", "k8s-master, kube-proxy, kube-dns".to_owned()),
    ];
    for (i, (what, detail)) in stages.iter().enumerate() {
        println!("waiting for {what} ({detail}) ...");
        loop {
            let done = match i {
                0 => get(common, "/readyz").await.is_some() && dns_service(common).await,
                1 => node_ready(common, &node).await,
                _ => system_pods_running(common, &node).await,
            };
            if done {
                println!("  done ({:.1}s)", started.elapsed().as_secs_f64());
                break;
            }
            let container = common.kubelet_container();
            let alive = docker
                .inspect_container(&container, None)
                .await
                .ok()
                .and_then(|i| i.state?.running)
                .unwrap_or(false);
            if !alive || started.elapsed() > timeout || shutdown.is_cancelled() {
                return Err(Error::Timeout {
                    timeout,
                    waiting: if alive {
                        format!("still waiting for {what}")
                    } else {
                        format!("{container} stopped")
                    },
                    container,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

async fn node_ready(common: &Common, node: &str) -> bool {
    let Some(node) = get_json(common, &format!("/api/v1/nodes/{node}")).await else {
        return false;
    };
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

async fn system_pods_running(common: &Common, node: &str) -> bool {
    let Some(pods) = get_json(common, "/api/v1/namespaces/kube-system/pods").await else {
        return false;
    };
    let running: Vec<&str> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"]["phase"] == "Running")
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    ["k8s-master", "kube-proxy", "kube-dns"]
        .iter()
        .all(|pod| running.contains(&format!("{pod}-{node}").as_str()))
}

/// The Docker bridge's gateway: an address of this host that pods on the bridge reach.
async fn bridge_gateway(docker: &bollard::Docker) -> Result<std::net::IpAddr, Error> {
    let bridge = docker
        .inspect_network("bridge", None::<bollard::query_parameters::InspectNetworkOptions>)
        .await
        .map_err(|e| Error::Docker(format!("inspecting the bridge network: {e}")))?;
    bridge
        .ipam
        .and_then(|ipam| ipam.config)
        .into_iter()
        .flatten()
        .find_map(|c| c.gateway?.parse::<std::net::Ipv4Addr>().ok().map(std::net::IpAddr::V4))
        .ok_or_else(|| Error::Docker("the bridge network has no IPv4 gateway".into()))
}

/// Makes sure the `kube-dns` Service exists with its fixed ClusterIP, pointing at the DNS pod on
/// the bridge's gateway. It has no selector (the DNS pod shares the host's network, so its pod
/// IP is not the address pods reach), so its EndpointSlice is written here, as a user would.
async fn dns_service(common: &Common) -> bool {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::Api;
    let Ok(Some(client)) = crate::client::connect(Some(&common.server()), None).await else {
        return false;
    };
    let Some(address) = std::fs::read_to_string(common.manifests_dir().join("dns.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|pod| {
            pod["spec"]["containers"][0]["args"]
                .as_array()?
                .iter()
                .find_map(|a| a.as_str()?.strip_prefix("--dns-bind-address=").map(str::to_owned))
        })
    else {
        return false;
    };
    let ports = serde_json::json!([{"name": "dns", "port": 53, "protocol": "UDP"},
                                   {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]);
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {"clusterIP": DNS_SERVICE_IP, "ports": ports}
    }))
    .unwrap_or_default();
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-dns-host", "namespace": "kube-system",
                     "labels": {"kubernetes.io/service-name": "kube-dns"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
        "ports": ports
    }))
    .unwrap_or_default();
    ensure(&Api::<Service>::namespaced(client.clone(), "kube-system"), &service).await
        && ensure(&Api::<EndpointSlice>::namespaced(client, "kube-system"), &slice).await
}

/// Creates `obj` unless an object of its name exists already.
async fn ensure<K>(api: &kube::Api<K>, obj: &K) -> bool
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.get_opt(&name).await {
        Ok(Some(_)) => true,
        Ok(None) => match api.create(&kube::api::PostParams::default(), obj).await {
            Ok(_) => true,
            Err(kube::Error::Api(status)) => status.code == 409,
            Err(_) => false,
        },
        Err(_) => false,
    }
}
