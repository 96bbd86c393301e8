//! The iptables rules of upstream's iptables proxier, rendered as one `iptables-restore` input:
//! per service port a `KUBE-SVC-*` chain that picks an endpoint at random (equal odds) or by
//! client affinity, per endpoint a `KUBE-SEP-*` chain that DNATs to it, `KUBE-EXT-*` chains
//! that mark external traffic (NodePorts, externalIPs) for masquerading, and REJECT rules in the
//! filter table for ports without endpoints, so clients fail at once instead of timing out.
//!
//! Every chain the proxy owns is declared in the input, which flushes it: a sync rewrites them
//! whole, and the chains of services that went are deleted in the same transaction.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::model::ServicePort;

/// The chains every sync writes, in the nat table.
const NAT_CHAINS: &[&str] = &["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"];
/// The chains every sync writes, in the filter table.
const FILTER_CHAINS: &[&str] = &["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"];
/// Prefixes of the per-service and per-endpoint chains.
const PER_SERVICE: &[&str] = &["KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-"];
/// The packet mark that asks KUBE-POSTROUTING to masquerade (upstream's default bit 14).
const MASQ_MARK: &str = "0x4000";

/// A rule in a built-in chain that sends traffic into ours: (table, chain, rule arguments).
pub(crate) type Jump = (&'static str, &'static str, &'static [&'static str]);

/// The rules that lead into the proxy's chains; kept in place by `iptables -C`/`-I`, since
/// restoring a built-in chain would flush everyone else's rules in it.
pub(crate) const JUMPS: &[Jump] = &[
    (
        "nat",
        "PREROUTING",
        &[
            "-m",
            "comment",
            "--comment",
            "kubernetes service portals",
            "-j",
            "KUBE-SERVICES",
        ],
    ),
    (
        "nat",
        "OUTPUT",
        &[
            "-m",
            "comment",
            "--comment",
            "kubernetes service portals",
            "-j",
            "KUBE-SERVICES",
        ],
    ),
    (
        "nat",
        "POSTROUTING",
        &[
            "-m",
            "comment",
            "--comment",
            "kubernetes postrouting rules",
            "-j",
            "KUBE-POSTROUTING",
        ],
    ),
    (
        "filter",
        "OUTPUT",
        &[
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-m",
            "comment",
            "--comment",
            "kubernetes service portals",
            "-j",
            "KUBE-SERVICES",
        ],
    ),
    (
        "filter",
        "FORWARD",
        &[
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-m",
            "comment",
            "--comment",
            "kubernetes service portals",
            "-j",
            "KUBE-SERVICES",
        ],
    ),
    (
        "filter",
        "INPUT",
        &[
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-m",
            "comment",
            "--comment",
            "kubernetes externally-visible service portals",
            "-j",
            "KUBE-EXTERNAL-SERVICES",
        ],
    ),
];

/// Whether the proxy owns `chain` (what `--cleanup` removes).
pub(crate) fn owned(chain: &str) -> bool {
    NAT_CHAINS.contains(&chain) || FILTER_CHAINS.contains(&chain) || PER_SERVICE.iter().any(|p| chain.starts_with(p))
}

/// The restore input for `ports`. `cluster_cidr` is the pod network: traffic to a cluster IP
/// from outside it is masqueraded. `stale_nat` holds the nat chains that exist now; the
/// per-service ones no port needs any more are deleted.
pub(crate) fn render(ports: &[ServicePort], cluster_cidr: Option<&str>, stale_nat: &BTreeSet<String>) -> String {
    let mut filter = Table::new("filter", FILTER_CHAINS);
    let mut nat = Table::new("nat", NAT_CHAINS);
    nat.rule(
        "KUBE-POSTROUTING",
        &format!("-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
    );
    nat.rule("KUBE-POSTROUTING", &format!("-j MARK --xor-mark {MASQ_MARK}"));
    nat.rule(
        "KUBE-POSTROUTING",
        "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE",
    );
    nat.rule("KUBE-MARK-MASQ", &format!("-j MARK --or-mark {MASQ_MARK}"));
    for port in ports {
        let proto = port.protocol.as_str();
        let to_port = |dst: &str, number: u16| format!("{dst}-p {proto} -m {proto} --dport {number}");
        let cluster = to_port(&format!("-d {}/32 ", port.cluster_ip), port.port);
        if port.endpoints.is_empty() {
            let comment = comment(&format!("{} has no endpoints", port.name));
            filter.rule("KUBE-SERVICES", &format!("{comment} {cluster} -j REJECT"));
            for ip in &port.external_ips {
                let external = to_port(&format!("-d {ip}/32 "), port.port);
                filter.rule("KUBE-EXTERNAL-SERVICES", &format!("{comment} {external} -j REJECT"));
            }
            if let Some(node_port) = port.node_port {
                let local = to_port("-m addrtype --dst-type LOCAL ", node_port);
                filter.rule("KUBE-EXTERNAL-SERVICES", &format!("{comment} {local} -j REJECT"));
            }
            continue;
        }
        let id = super::chain_id(&[port.name.as_bytes(), proto.as_bytes()]);
        let svc = nat.chain(format!("KUBE-SVC-{id}"));
        let name = comment(&format!("{} cluster IP", port.name));
        nat.rule("KUBE-SERVICES", &format!("{name} {cluster} -j {svc}"));
        if let Some(cidr) = cluster_cidr {
            nat.rule(&svc, &format!("{name} ! -s {cidr} {cluster} -j KUBE-MARK-MASQ"));
        }
        if port.node_port.is_some() || !port.external_ips.is_empty() {
            let ext = nat.chain(format!("KUBE-EXT-{id}"));
            let masq = comment(&format!("masquerade traffic for {} external destinations", port.name));
            nat.rule(&ext, &format!("{masq} -j KUBE-MARK-MASQ"));
            nat.rule(&ext, &format!("-j {svc}"));
            for ip in &port.external_ips {
                let external = to_port(&format!("-d {ip}/32 "), port.port);
                let what = comment(&format!("{} external IP", port.name));
                nat.rule("KUBE-SERVICES", &format!("{what} {external} -j {ext}"));
            }
            if let Some(node_port) = port.node_port {
                let what = comment(&port.name);
                nat.rule("KUBE-NODEPORTS", &format!("{what} {} -j {ext}", to_port("", node_port)));
            }
        }
        let seps: Vec<(String, String)> = port
            .endpoints
            .iter()
            .map(|(ip, p)| {
                let address = format!("{ip}:{p}");
                let chain = format!(
                    "KUBE-SEP-{}",
                    super::chain_id(&[port.name.as_bytes(), proto.as_bytes(), address.as_bytes()])
                );
                (nat.chain(chain), address)
            })
            .collect();
        if let Some(seconds) = port.affinity_seconds {
            for (sep, address) in &seps {
                let what = comment(&format!("{} -> {address}", port.name));
                nat.rule(&svc, &format!("{what} -m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck --seconds {seconds} --reap -j {sep}"));
            }
        }
        let n = seps.len();
        for (i, (sep, address)) in seps.iter().enumerate() {
            let what = comment(&format!("{} -> {address}", port.name));
            // Each rule takes 1/(remaining) of what reaches it: equal odds overall.
            let odds = if i + 1 < n {
                format!(" -m statistic --mode random --probability {:.10}", 1.0 / (n - i) as f64)
            } else {
                String::new()
            };
            nat.rule(&svc, &format!("{what}{odds} -j {sep}"));
            let (ip, _) = address.split_once(':').unwrap_or((address, ""));
            let owner = comment(&port.name);
            nat.rule(sep, &format!("{owner} -s {ip}/32 -j KUBE-MARK-MASQ"));
            let sticky = if port.affinity_seconds.is_some() {
                format!(" -m recent --name {sep} --mask 255.255.255.255 --rsource --set")
            } else {
                String::new()
            };
            nat.rule(
                sep,
                &format!("{owner} -p {proto} -m {proto}{sticky} -j DNAT --to-destination {address}"),
            );
        }
    }
    nat.rule(
        "KUBE-SERVICES",
        "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
    );
    let gone: Vec<String> = stale_nat
        .iter()
        .filter(|c| PER_SERVICE.iter().any(|p| c.starts_with(p)) && !nat.chains.contains(*c))
        .cloned()
        .collect();
    let mut out = filter.finish(&[]);
    out.push_str(&nat.finish(&gone));
    out
}

fn comment(text: &str) -> String {
    format!("-m comment --comment \"{}\"", text.replace('"', "'"))
}

/// One table's part of the restore input.
struct Table {
    name: &'static str,
    chains: BTreeSet<String>,
    order: Vec<String>,
    rules: String,
}

impl Table {
    fn new(name: &'static str, fixed: &[&str]) -> Self {
        let mut table = Self {
            name,
            chains: BTreeSet::new(),
            order: Vec::new(),
            rules: String::new(),
        };
        for chain in fixed {
            table.chain((*chain).to_owned());
        }
        table
    }

    /// Declares `chain` (once) and returns its name.
    fn chain(&mut self, chain: String) -> String {
        if self.chains.insert(chain.clone()) {
            self.order.push(chain.clone());
        }
        chain
    }

    fn rule(&mut self, chain: &str, args: &str) {
        let _ = writeln!(self.rules, "-A {chain} {args}");
    }

    /// The table's input; `delete` names chains to flush and remove.
    fn finish(self, delete: &[String]) -> String {
        let mut out = format!("*{}\n", self.name);
        for chain in self.order.iter().chain(delete) {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        out.push_str(&self.rules);
        for chain in delete {
            let _ = writeln!(out, "-X {chain}");
        }
        out.push_str("COMMIT\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Protocol;
    use super::*;

    fn port(endpoints: &[(&str, u16)]) -> ServicePort {
        ServicePort {
            name: "ns/web:http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: "10.0.0.10".parse().unwrap(),
            port: 80,
            node_port: Some(30080),
            external_ips: vec![],
            affinity_seconds: None,
            endpoints: endpoints.iter().map(|(ip, p)| (ip.parse().unwrap(), *p)).collect(),
        }
    }

    fn lines<'a>(out: &'a str, needle: &str) -> Vec<&'a str> {
        out.lines().filter(|l| l.contains(needle)).collect()
    }

    #[test]
    fn endpoints_share_the_traffic_through_one_chain_each() {
        let out = render(
            &[port(&[
                ("10.244.0.2", 8080),
                ("10.244.0.3", 8080),
                ("10.244.0.4", 8080),
            ])],
            Some("10.244.0.0/16"),
            &BTreeSet::new(),
        );
        let svc = lines(
            &out,
            "-A KUBE-SERVICES -m comment --comment \"ns/web:http cluster IP\" -d 10.0.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-",
        );
        assert_eq!(svc.len(), 1, "{out}");
        let chain = svc[0].rsplit(' ').next().unwrap();
        let picks = lines(&out, &format!("-A {chain} -m comment --comment \"ns/web:http -> "));
        assert_eq!(picks.len(), 3, "{out}");
        assert!(picks[0].contains("--probability 0.3333333333"), "{}", picks[0]);
        assert!(picks[1].contains("--probability 0.5000000000"), "{}", picks[1]);
        assert!(!picks[2].contains("statistic"), "the last endpoint takes what is left");
        assert_eq!(lines(&out, "-j DNAT --to-destination 10.244.0.").len(), 3);
        assert_eq!(
            lines(
                &out,
                &format!("-A {chain} -m comment --comment \"ns/web:http cluster IP\" ! -s 10.244.0.0/16")
            )
            .len(),
            1
        );
        assert_eq!(lines(&out, "-A KUBE-NODEPORTS").len(), 1);
        assert!(lines(&out, "-j REJECT").is_empty());
        assert!(
            out.ends_with("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\nCOMMIT\n"),
            "{out}"
        );
    }

    #[test]
    fn a_port_without_endpoints_is_rejected_and_stale_chains_go() {
        let stale: BTreeSet<String> = [
            "KUBE-SVC-OLD".to_owned(),
            "KUBE-SERVICES".to_owned(),
            "OTHER".to_owned(),
        ]
        .into();
        let out = render(&[port(&[])], None, &stale);
        assert_eq!(lines(&out, "-j REJECT").len(), 2, "cluster IP and node port: {out}");
        assert!(
            lines(&out, "KUBE-SVC-").iter().all(|l| l.contains("OLD")),
            "no service chain: {out}"
        );
        assert_eq!(lines(&out, "-X ").len(), 1);
        assert!(
            out.contains(":KUBE-SVC-OLD - [0:0]\n") && out.contains("-X KUBE-SVC-OLD\n"),
            "{out}"
        );
    }

    #[test]
    fn client_affinity_remembers_the_endpoint() {
        let mut sticky = port(&[("10.244.0.2", 8080), ("10.244.0.3", 8080)]);
        sticky.affinity_seconds = Some(600);
        let out = render(&[sticky], None, &BTreeSet::new());
        assert_eq!(lines(&out, "--rcheck --seconds 600 --reap").len(), 2, "{out}");
        assert_eq!(lines(&out, "--rsource --set -j DNAT").len(), 2, "{out}");
    }

    #[test]
    fn chains_are_named_by_hash_and_owned() {
        let out = render(&[port(&[("10.244.0.2", 8080)])], None, &BTreeSet::new());
        for chain in out
            .lines()
            .filter_map(|l| l.strip_prefix(':'))
            .map(|l| l.split(' ').next().unwrap())
        {
            assert!(owned(chain), "{chain}");
            assert!(chain.len() <= 28, "iptables limits names to 28 characters: {chain}");
        }
        assert!(!owned("DOCKER") && !owned("KUBE-FIREWALL"));
    }
}
