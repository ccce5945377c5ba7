//! Per-epoch checkpoints for methods that train: every tensor a resumed run
//! needs (weights, optimiser state) plus the number of finished epochs, in
//! one safetensors file written atomically.

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};

use crate::run_dir::{tmp_path, RunDir};

pub const FILE: &str = "checkpoint.safetensors";
const EPOCHS: &str = "meta.epochs_done";

/// Writes `tensors` and `epochs_done` to the run's checkpoint (atomically).
pub fn save(run: &RunDir, mut tensors: HashMap<String, Tensor>, epochs_done: usize) -> Result<()> {
    tensors.insert(EPOCHS.into(), Tensor::new(&[epochs_done as i64], &Device::Cpu)?);
    let path = run.path(FILE);
    let tmp = tmp_path(&path);
    candle_core::safetensors::save(&tensors, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("moving {} into place", path.display()))?;
    Ok(())
}

/// The checkpoint's tensors and finished epochs, `None` when there is none.
pub fn load(run: &RunDir, device: &Device) -> Result<Option<(HashMap<String, Tensor>, usize)>> {
    let path = run.path(FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let t = candle_core::safetensors::load(&path, device).with_context(|| format!("reading {}", path.display()))?;
    let epochs = t.get(EPOCHS).with_context(|| format!("{}: `{EPOCHS}` is missing", path.display()))?.to_vec1::<i64>()?[0] as usize;
    Ok(Some((t, epochs)))
}
