#![allow(dead_code)]
use std::path::PathBuf;

pub fn shared_dir() -> Option<PathBuf> {
    multiad_data::testing::shared_dir(env!("CARGO_MANIFEST_DIR"))
}
