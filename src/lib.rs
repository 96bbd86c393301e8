//! hyperkube: Kubernetes' server side as one binary.
//!
//! Each component is a module with `Args` (its flags), and `run(args, shutdown)`. The binary in
//! `src/bin/hyperkube.rs` only picks the component and calls it.

/// The Kubernetes release whose API hyperkube speaks.
pub const KUBERNETES_VERSION: &str = "v1.37.0";

pub mod api;
pub mod apiserver;
pub(crate) mod backoff;
pub mod client;
pub mod controller;
pub mod dns;
pub(crate) mod events;
pub mod flags;
pub(crate) mod http_get;
pub(crate) mod http_serve;
pub(crate) mod informer;
pub mod kubelet;
pub mod leaderelection;
pub mod local;
pub mod proxy;
pub mod scheduler;
pub(crate) mod workqueue;

/// FNV-1a over the parts, each followed by a separator: stable across builds and platforms,
/// unlike std's hasher. Names static pods' uids, container spec versions and the proxy's chains.
pub(crate) fn stable_hash(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// An error and its causes on one line (`a: b: c`), for logs and exit messages.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
