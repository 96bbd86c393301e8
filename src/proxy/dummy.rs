//! The service range routed to a local dummy device, as upstream's IPVS mode keeps its
//! `kube-ipvs0`: a cluster IP without rules (not written yet, or removed by someone) is dropped
//! on this host instead of following the default route off it. Packets the host sends to a
//! cluster IP still need a route for their first lookup; DNAT then reroutes them to the endpoint.
//! Where the kernel has no `dummy` module (containers often cannot load it), an empty bridge
//! does the same: it has no port for the packets to leave by.

use std::process::Command;

/// The device's name.
pub(crate) const DEVICE: &str = "hyperkube0";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Creates the device if missing, brings it up and routes `range` to it.
pub(crate) fn ensure(range: &str) -> Result<(), String> {
    if ip(&["link", "show", DEVICE]).is_err()
        && let Err(no_dummy) = ip(&["link", "add", DEVICE, "type", "dummy"])
    {
        tracing::info!(reason = %no_dummy, "no dummy device; routing the service range to an empty bridge");
        ip(&["link", "add", DEVICE, "type", "bridge"])?;
    }
    ip(&["link", "set", DEVICE, "up"])?;
    ip(&["route", "replace", range, "dev", DEVICE])
}

/// Removes the device and, with it, its route; fine when it is not there.
pub(crate) fn remove() -> Result<(), String> {
    if ip(&["link", "show", DEVICE]).is_err() {
        return Ok(());
    }
    ip(&["link", "del", DEVICE])
}
