//! What the bench binaries share: finding the release `hyperkube` they drive.

use std::path::{Path, PathBuf};

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
