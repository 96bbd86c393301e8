//! What the bench binaries share: finding the release `hyperkube` they drive, and percentiles.
#![allow(dead_code)] // each bench binary uses its own part of this module

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The release binary the bench profile builds next to the bench executable.
pub(crate) fn binary() -> PathBuf {
    // The bench profile builds the release binary next to this bench executable.
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("hyperkube");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release` first",
        bin.display()
    );
    bin
}

/// The `p` quantile (0 to 1) of sorted samples; zero when there are none.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
