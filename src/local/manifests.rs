//! The static pods `up` hands the kubelet: `manifests/` as built into the binary, with the
//! cluster's port, data directory and store put into the flags.

use serde_json::Value;

use super::{Common, Error, io};

const MANIFESTS: &[(&str, &str)] = &[
    ("master.json", include_str!("../../manifests/master.json")),
    ("proxy.json", include_str!("../../manifests/proxy.json")),
    ("dns.json", include_str!("../../manifests/dns.json")),
];

/// What varies between clusters and hosts.
pub(super) struct Cluster<'a> {
    pub(super) common: &'a Common,
    pub(super) etcd_servers: Option<&'a str>,
    /// Where the DNS server listens: an address of this host that pods can reach (the Docker
    /// bridge's gateway), behind the `kube-dns` Service.
    pub(super) dns_address: &'a str,
}

/// Writes the manifests for this cluster into its manifests directory.
pub(super) fn write(cluster: &Cluster<'_>) -> Result<(), Error> {
    let common = cluster.common;
    let dir = common.manifests_dir();
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    for (file, text) in MANIFESTS {
        let mut pod: Value = serde_json::from_str(text).map_err(|e| Error::Preflight(format!("{file}: {e}")))?;
        adapt(&mut pod, cluster);
        let out = serde_json::to_string_pretty(&pod).unwrap_or_default();
        let path = dir.join(file);
        std::fs::write(&path, out).map_err(io(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// Points the pod's flags, probes and data volume at this cluster.
fn adapt(pod: &mut Value, cluster: &Cluster<'_>) {
    let common = cluster.common;
    let data = common.data_dir.join("data").display().to_string();
    for volume in pod["spec"]["volumes"].as_array_mut().into_iter().flatten() {
        if volume["name"] == "data" {
            volume["hostPath"]["path"] = data.clone().into();
        }
    }
    for container in pod["spec"]["containers"].as_array_mut().into_iter().flatten() {
        let is_apiserver = container["name"] == "apiserver";
        let Some(args) = container["args"].as_array_mut() else {
            continue;
        };
        for arg in args.iter_mut() {
            let Some(text) = arg.as_str() else { continue };
            let replaced = if text.starts_with("--insecure-port=") {
                format!("--insecure-port={}", common.port)
            } else if text.starts_with("--master=") {
                format!("--master=127.0.0.1:{}", common.port)
            } else if text.starts_with("--dns-bind-address=") {
                format!("--dns-bind-address={}", cluster.dns_address)
            } else {
                continue;
            };
            *arg = replaced.into();
        }
        if let Some(servers) = cluster.etcd_servers
            && is_apiserver
        {
            args.push(format!("--etcd-servers={servers}").into());
        }
        let is_dns = container["name"] == "dns";
        if let Some(probe) = container.pointer_mut("/livenessProbe/httpGet") {
            if probe["port"].as_u64() == Some(8080) {
                probe["port"] = common.port.into();
            }
            if is_dns {
                probe["host"] = cluster.dns_address.into();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: Common,
    }

    #[test]
    fn the_cluster_port_data_and_store_reach_every_flag() {
        let common = Cli::parse_from(["up", "--port=18080", "--data-dir=/tmp/hk"]).common;
        let cluster = Cluster {
            common: &common,
            etcd_servers: Some("http://127.0.0.1:2379"),
            dns_address: "172.18.0.1",
        };
        let mut master: Value = serde_json::from_str(MANIFESTS[0].1).unwrap();
        adapt(&mut master, &cluster);
        let mut dns: Value = serde_json::from_str(MANIFESTS[2].1).unwrap();
        adapt(&mut dns, &cluster);
        assert!(
            dns["spec"]["containers"][0]["args"]
                .as_array()
                .unwrap()
                .contains(&"--dns-bind-address=172.18.0.1".into())
        );
        assert_eq!(
            dns["spec"]["containers"][0]["livenessProbe"]["httpGet"]["host"],
            "172.18.0.1"
        );
        let args = |i: usize| master["spec"]["containers"][i]["args"].clone();
        assert!(
            args(0).as_array().unwrap().contains(&"--insecure-port=18080".into()),
            "{}",
            args(0)
        );
        assert!(
            args(0)
                .as_array()
                .unwrap()
                .contains(&"--etcd-servers=http://127.0.0.1:2379".into())
        );
        assert_eq!(args(1), serde_json::json!(["--master=127.0.0.1:18080"]));
        assert_eq!(master["spec"]["volumes"][0]["hostPath"]["path"], "/tmp/hk/data");
        assert_eq!(
            master["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"],
            18080
        );
    }
}
