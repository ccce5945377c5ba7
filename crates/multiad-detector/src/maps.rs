//! What the methods share besides the trait: the usual last steps of a map
//! (bilinear upsampling to the input, Gaussian, maximum), reading a config
//! file, the checks every config makes, and the model file of a run.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use candle_core::{Device, Result, Tensor};
use multiad_nn::resample::{gaussian_blur, resize_bilinear};

use crate::run_dir::RunDir;

/// (B, 1, h, w) patch scores -> (B, H, W) smoothed maps and per-image maxima.
pub fn upsample_smooth_max(patch: &Tensor, size: usize, sigma: f64) -> Result<(Tensor, Vec<f32>)> {
    let up = resize_bilinear(patch, size, size)?;
    let smooth = gaussian_blur(&up, sigma)?;
    let scores = smooth.flatten_from(1)?.max(1)?.to_vec1::<f32>()?;
    Ok((smooth.squeeze(1)?, scores))
}

/// Reads a method's YAML config into `T` and validates it, naming the file
/// and the key in errors.
pub fn parse_config<T: serde::de::DeserializeOwned>(text: &str, path: &Path, validate: impl Fn(&T) -> std::result::Result<(), String>) -> anyhow::Result<T> {
    let c: T = serde_yaml_ng::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    validate(&c).map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
    Ok(c)
}

/// The checks every feature-based config makes: its `method:` key, a square
/// input divisible by the deepest stride, increasing backbone levels.
pub fn check_common(expected: &str, method: &str, image_size: u32, layers: &[usize]) -> std::result::Result<(), String> {
    if method != expected {
        return Err(format!("`method` must be {expected:?} in this config, got {method:?}"));
    }
    if image_size == 0 || image_size % 32 != 0 {
        return Err(format!("`image_size` must be a positive multiple of 32, got {image_size}"));
    }
    if layers.is_empty() || layers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("`layers` must be a non-empty increasing list of levels, got {layers:?}"));
    }
    Ok(())
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
