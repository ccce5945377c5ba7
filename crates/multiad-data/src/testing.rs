//! Helpers for tests across the workspace (not used by the product).

use std::path::{Path, PathBuf};

/// `../shared` beside the checkout (or `$MULTIAD_SHARED`), if it is there.
/// `manifest_dir` is the calling crate's `CARGO_MANIFEST_DIR` (two levels
/// below the checkout). Tests that need real data call this and skip,
/// saying so, when it is absent.
pub fn shared_dir(manifest_dir: &str) -> Option<PathBuf> {
    let p = std::env::var_os("MULTIAD_SHARED").map(PathBuf::from).unwrap_or_else(|| Path::new(manifest_dir).join("../../../shared"));
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("SKIPPED: needs the shared data directory ({} not found; set MULTIAD_SHARED)", p.display());
        None
    }
}
