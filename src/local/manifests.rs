//! The static pods `up` hands the kubelet: `manifests/` as built into the binary, with the
//! cluster's port, data directory and store put into the flags.

use serde_json::Value;

use super::{Common, Error, io};

const MANIFESTS: &[(&str, &str)] = &[
    ("master.json", include_str!("../../manifests/master.json")),
    ("proxy.json", include_str!("../../manifests/proxy.json")),
];

/// Writes the manifests for this cluster into its manifests directory.
pub(super) fn write(common: &Common, etcd_servers: Option<&str>) -> Result<(), Error> {
    let dir = common.manifests_dir();
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    for (file, text) in MANIFESTS {
        let mut pod: Value = serde_json::from_str(text).map_err(|e| Error::Preflight(format!("{file}: {e}")))?;
        adapt(&mut pod, common, etcd_servers);
        let out = serde_json::to_string_pretty(&pod).unwrap_or_default();
        let path = dir.join(file);
        std::fs::write(&path, out).map_err(io(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// Points the pod's flags and data volume at this cluster.
fn adapt(pod: &mut Value, common: &Common, etcd_servers: Option<&str>) {
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
            } else {
                continue;
            };
            *arg = replaced.into();
        }
        if let Some(servers) = etcd_servers
            && is_apiserver
        {
            args.push(format!("--etcd-servers={servers}").into());
        }
        if let Some(port) = container["livenessProbe"]["httpGet"]["port"].as_u64()
            && port == 8080
        {
            container["livenessProbe"]["httpGet"]["port"] = common.port.into();
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
        let mut master: Value = serde_json::from_str(MANIFESTS[0].1).unwrap();
        adapt(&mut master, &common, Some("http://127.0.0.1:2379"));
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
