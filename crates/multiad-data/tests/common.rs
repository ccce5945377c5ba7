#![allow(dead_code)]
use std::path::PathBuf;

/// `../shared` beside the checkout (or `$MULTIAD_SHARED`), if it is there.
/// Tests that need real data call this and skip, saying so, when it is absent.
pub fn shared_dir() -> Option<PathBuf> {
    let p = std::env::var_os("MULTIAD_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("SKIPPED: needs the shared data directory ({} not found; set MULTIAD_SHARED)", p.display());
        None
    }
}
