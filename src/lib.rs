//! hyperkube: Kubernetes' server side as one binary.
//!
//! Each component is a module with `Args` (its flags), and `run(args, shutdown)`. The binary in
//! `src/bin/hyperkube.rs` only picks the component and calls it.

/// The Kubernetes release whose API hyperkube speaks.
pub const KUBERNETES_VERSION: &str = "v1.37.0";

pub mod api;
pub mod apiserver;
