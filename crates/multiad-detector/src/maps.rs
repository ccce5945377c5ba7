//! What the methods share besides the trait: the usual last steps of a map
//! (bilinear upsampling to the input, Gaussian, maximum) and the model file
//! of a run.

use std::collections::HashMap;

use anyhow::Context;
use candle_core::{Device, Result, Tensor};
use multiad_nn::resample::{gaussian_blur, resize_bilinear};
use multiad_nn::ParamStore;

use crate::run_dir::RunDir;

/// (B, 1, h, w) patch scores -> (B, H, W) smoothed maps and per-image maxima.
pub fn upsample_smooth_max(patch: &Tensor, size: usize, sigma: f64) -> Result<(Tensor, Vec<f32>)> {
    let up = resize_bilinear(patch, size, size)?;
    let smooth = gaussian_blur(&up, sigma)?;
    let scores = smooth.flatten_from(1)?.max(1)?.to_vec1::<f32>()?;
    Ok((smooth.squeeze(1)?, scores))
}

/// Writes a fitted model's tensors to the run's model.safetensors (atomically).
pub fn save_model(run: &RunDir, tensors: &HashMap<String, Tensor>) -> anyhow::Result<()> {
    crate::run_dir::save_tensors_atomic(tensors, &run.path("model.safetensors"))
}

/// The tensors of the run's model.safetensors and its path (for errors).
pub fn load_model(run: &RunDir, device: &Device) -> anyhow::Result<(HashMap<String, Tensor>, std::path::PathBuf)> {
    let path = run.path("model.safetensors");
    let t = candle_core::safetensors::load(&path, device).with_context(|| format!("reading {}", path.display()))?;
    Ok((t, path))
}

/// The stores' tensors, each name behind its store's prefix, written to the
/// run's model.safetensors.
pub fn save_stores(run: &RunDir, stores: &[(&ParamStore, &str)]) -> anyhow::Result<()> {
    let mut t = HashMap::new();
    for (store, prefix) in stores {
        t.extend(crate::epochs::prefixed(store, prefix));
    }
    save_model(run, &t)
}

/// Loads what [`save_stores`] wrote; a missing or mis-shaped tensor is an
/// error naming it and the file.
pub fn load_stores(run: &RunDir, stores: &[(&ParamStore, &str)]) -> anyhow::Result<()> {
    let (t, path) = load_model(run, &Device::Cpu)?;
    for (store, prefix) in stores {
        store.load_from(&t, prefix, &path)?;
    }
    Ok(())
}
