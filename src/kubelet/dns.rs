//! Each pod's `/etc/resolv.conf`, as upstream's `pkg/kubelet/network/dns` writes it from
//! `dnsPolicy` and `dnsConfig`: the cluster's DNS server and search path (`ClusterFirst`), the
//! host's resolvers (`Default`, and `ClusterFirst` for host-network pods), or only what the pod
//! says (`None`).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};

/// Upstream's limits on what a resolver reads.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// A resolv.conf's parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResolvConf {
    pub(crate) nameservers: Vec<String>,
    pub(crate) searches: Vec<String>,
    pub(crate) options: Vec<String>,
}

impl ResolvConf {
    /// Reads `nameserver`, `search`/`domain` and `options` lines; the rest is ignored.
    pub(crate) fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        for line in text.lines() {
            let mut words = line.split(|c: char| c.is_whitespace()).filter(|w| !w.is_empty());
            match words.next() {
                Some("nameserver") => conf.nameservers.extend(words.next().map(str::to_owned)),
                // The last search or domain line wins, as in glibc.
                Some("search" | "domain") => conf.searches = words.map(str::to_owned).collect(),
                Some("options") => conf.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        conf
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for server in self.nameservers.iter().take(MAX_NAMESERVERS) {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.searches.is_empty() {
            let searches: Vec<&str> = self.searches.iter().take(MAX_SEARCHES).map(String::as_str).collect();
            out.push_str(&format!("search {}\n", searches.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }

    /// Adds the pod's `dnsConfig`: nameservers and searches appended without repeats, options
    /// set by name (a later value replaces an earlier one).
    fn append(&mut self, config: &PodDNSConfig) {
        for server in config.nameservers.iter().flatten() {
            if !self.nameservers.contains(server) {
                self.nameservers.push(server.clone());
            }
        }
        for search in config.searches.iter().flatten() {
            if !self.searches.contains(search) {
                self.searches.push(search.clone());
            }
        }
        for option in config.options.iter().flatten() {
            let rendered = match &option.value {
                Some(v) => format!("{}:{v}", option.name.as_deref().unwrap_or_default()),
                None => option.name.clone().unwrap_or_default(),
            };
            let name = rendered.split(':').next().unwrap_or_default().to_owned();
            self.options.retain(|o| o.split(':').next() != Some(name.as_str()));
            self.options.push(rendered);
        }
    }
}

/// The kubelet's DNS settings: `--cluster-dns`, `--cluster-domain`, and the host's resolvers
/// from `--resolv-conf`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Configurer {
    pub(crate) cluster_dns: Vec<IpAddr>,
    pub(crate) cluster_domain: String,
    pub(crate) host: ResolvConf,
}

impl Configurer {
    /// The resolv.conf for `pod`; `None` leaves the runtime's default (no host resolv.conf and
    /// nothing to write).
    pub(crate) fn resolv_conf(&self, pod: &Pod) -> Option<String> {
        let spec = pod.spec.as_ref()?;
        let host_network = spec.host_network.unwrap_or(false);
        let cluster = match spec.dns_policy.as_deref().unwrap_or("ClusterFirst") {
            "ClusterFirstWithHostNet" => Some(true),
            "ClusterFirst" => Some(!host_network),
            "None" => None,
            _ => Some(false),
        };
        let mut conf = match cluster {
            // Upstream falls back to the host's resolvers when no cluster DNS is configured.
            Some(true) if !self.cluster_dns.is_empty() => {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
                let domain = &self.cluster_domain;
                let mut searches = vec![
                    format!("{namespace}.svc.{domain}"),
                    format!("svc.{domain}"),
                    domain.clone(),
                ];
                searches.extend(
                    self.host
                        .searches
                        .iter()
                        .filter(|s| !searches.contains(s))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                ResolvConf {
                    nameservers: self.cluster_dns.iter().map(IpAddr::to_string).collect(),
                    searches,
                    options: vec!["ndots:5".into()],
                }
            }
            Some(_) => self.host.clone(),
            None => ResolvConf::default(),
        };
        if let Some(config) = &spec.dns_config {
            conf.append(config);
        }
        let text = conf.render();
        (!text.is_empty() || cluster.is_none()).then_some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn configurer() -> Configurer {
        Configurer {
            cluster_dns: vec!["10.0.0.10".parse().unwrap()],
            cluster_domain: "cluster.local".into(),
            host: ResolvConf::parse(
                "# host\nnameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch corp.example\noptions edns0\n",
            ),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "web"}, "spec": spec})).unwrap()
    }

    #[test]
    fn cluster_first_uses_the_cluster_dns_with_upstreams_search_path() {
        let out = configurer().resolv_conf(&pod(json!({"containers": []}))).unwrap();
        assert_eq!(
            out,
            "nameserver 10.0.0.10\nsearch web.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_default_and_no_cluster_dns_use_the_hosts_resolvers() {
        let host = "nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch corp.example\noptions edns0\n";
        let c = configurer();
        assert_eq!(
            c.resolv_conf(&pod(json!({"hostNetwork": true, "containers": []})))
                .unwrap(),
            host
        );
        assert_eq!(
            c.resolv_conf(&pod(json!({"dnsPolicy": "Default", "containers": []})))
                .unwrap(),
            host
        );
        let with_host_net = c
            .resolv_conf(&pod(
                json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet", "containers": []}),
            ))
            .unwrap();
        assert!(with_host_net.starts_with("nameserver 10.0.0.10\n"), "{with_host_net}");
        let none = Configurer {
            cluster_dns: vec![],
            ..configurer()
        };
        assert_eq!(none.resolv_conf(&pod(json!({"containers": []}))).unwrap(), host);
        assert_eq!(Configurer::default().resolv_conf(&pod(json!({"containers": []}))), None);
    }

    #[test]
    fn dns_config_appends_and_none_takes_only_it() {
        let config = json!({"nameservers": ["192.0.2.9", "10.0.0.10"], "searches": ["extra.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]});
        let out = configurer()
            .resolv_conf(&pod(json!({"dnsConfig": config, "containers": []})))
            .unwrap();
        assert_eq!(
            out,
            "nameserver 10.0.0.10\nnameserver 192.0.2.9\nsearch web.svc.cluster.local svc.cluster.local cluster.local corp.example extra.example\noptions ndots:2 rotate\n"
        );
        let only = configurer()
            .resolv_conf(&pod(
                json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["192.0.2.7"]}, "containers": []}),
            ))
            .unwrap();
        assert_eq!(only, "nameserver 192.0.2.7\n");
    }
}
