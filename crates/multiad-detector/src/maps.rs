//! The last steps every feature-based method shares: a patch-level map
//! upsampled to the input (bilinear, `align_corners=False`), smoothed with a
//! Gaussian, and the image score as the map's maximum.

use candle_core::{Result, Tensor};
use multiad_nn::resample::{gaussian_blur, resize_bilinear};

/// (B, 1, h, w) patch scores -> (B, H, W) smoothed maps and per-image maxima.
pub fn upsample_smooth_max(patch: &Tensor, size: usize, sigma: f64) -> Result<(Tensor, Vec<f32>)> {
    let up = resize_bilinear(patch, size, size)?;
    let smooth = gaussian_blur(&up, sigma)?;
    let scores = smooth.flatten_from(1)?.max(1)?.to_vec1::<f32>()?;
    Ok((smooth.squeeze(1)?, scores))
}

/// Reads a method's YAML config into `T`, naming the file and the key in errors.
pub fn read_yaml<T: serde::de::DeserializeOwned>(text: &str, path: &std::path::Path) -> anyhow::Result<T> {
    serde_yaml_ng::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
