//! What breaks local clusters, checked before `up` starts anything; each problem is one line.

use std::path::Path;

use super::{Common, Error, KUBELET_DIR};

/// The fixed ports the system pods listen on, besides the apiserver's `--port`.
const POD_PORTS: [(u16, &str); 4] = [
    (10250, "the kubelet"),
    (10249, "the proxy's metrics"),
    (10256, "the proxy's healthz"),
    (10054, "the DNS server's healthz"),
];

/// Fails when the cluster cannot start (a port it needs is taken); prints a warning for what
/// would hurt it later (inotify limits, a loopback-only host resolver). `dns_address` is where
/// the DNS pod serves port 53.
pub(super) fn check(common: &Common, dns_address: std::net::IpAddr) -> Result<(), Error> {
    if let Err(err) = std::net::TcpListener::bind(("127.0.0.1", common.port)) {
        return Err(Error::Preflight(format!(
            "port {} on 127.0.0.1 is in use ({err}); stop what listens there or pick another with --port",
            common.port
        )));
    }
    let mut taken: Vec<String> = POD_PORTS
        .iter()
        .filter(|(port, _)| std::net::TcpListener::bind(("127.0.0.1", *port)).is_err())
        .map(|(port, what)| format!("{port} ({what})"))
        .collect();
    if std::net::UdpSocket::bind((dns_address, 53)).is_err() || std::net::TcpListener::bind((dns_address, 53)).is_err()
    {
        taken.push(format!("{dns_address}:53 (the cluster DNS)"));
    }
    if !taken.is_empty() {
        return Err(Error::Preflight(format!(
            "ports the system pods need are in use: {}; stop what listens there (another local cluster? `hyperkube down --name=...`)",
            taken.join(", ")
        )));
    }
    for (file, least) in [("max_user_instances", 128), ("max_user_watches", 8192)] {
        let path = format!("/proc/sys/fs/inotify/{file}");
        let value: u64 = std::fs::read_to_string(&path)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(u64::MAX);
        if value < least {
            println!(
                "warning: fs.inotify.{file} is {value}: the kubelet and its pods may run out; raise it with `sysctl fs.inotify.{file}={}`",
                least * 4
            );
        }
    }
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(str::trim)
        .collect();
    if !servers.is_empty()
        && servers
            .iter()
            .all(|s| s.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()))
    {
        println!(
            "warning: the host's resolver is loopback-only ({}; systemd-resolved?): pods cannot reach it, so their names outside the cluster will not resolve",
            servers.join(", ")
        );
    }
    Ok(())
}

/// Makes the kubelet's directory a shared mount, so that what the containerized kubelet mounts
/// there (memory-backed volumes) reaches the pods' containers: a bind mount of the directory on
/// itself, made shared. Returns whether this call made it (so `down` knows to undo it).
pub(super) fn share_kubelet_dir() -> Result<bool, Error> {
    let dir = Path::new(KUBELET_DIR);
    if is_shared_mount(dir) {
        return Ok(false);
    }
    let cannot = |step: &str, err: rustix::io::Errno| {
        Error::Preflight(format!(
            "{KUBELET_DIR} cannot be made a shared mount ({step}: {err}); run `up` as root on a host that allows mounts"
        ))
    };
    std::fs::create_dir_all(dir).map_err(super::io(format!("creating {KUBELET_DIR}")))?;
    rustix::mount::mount_bind(dir, dir).map_err(|e| cannot("bind mount", e))?;
    rustix::mount::mount_change(
        dir,
        rustix::mount::MountPropagationFlags::SHARED | rustix::mount::MountPropagationFlags::REC,
    )
    .map_err(|e| cannot("make shared", e))?;
    Ok(true)
}

/// Whether `dir` is itself a mount point with shared propagation (mountinfo's `shared:N` tag).
fn is_shared_mount(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        fields.get(4).is_some_and(|m| Path::new(m) == dir)
            && fields
                .iter()
                .skip(6)
                .take_while(|f| **f != "-")
                .any(|f| f.starts_with("shared:"))
    })
}
