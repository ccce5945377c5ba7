//! From teacher and student features to anomaly maps and image scores
//! (Eqs 13-15).
//!
//! Ψ, the convolution-enhanced fusion of Eq 14, is "1x1 conv, BN, ReLU, then
//! bilinear upsampling" applied to each one-channel layer map. On one channel
//! a 1x1 convolution is an affine map a·M + b, and batch norm removes any
//! affine map up to its sign, so Ψ reduces to ReLU(γ (M - μ_n) / σ_n + β).
//! The paper does not say how Ψ is fitted without anomalies; we take μ_n, σ_n
//! as the batch-norm statistics of layer n's maps over the normal training
//! images (γ = 1, β = 0): each scale then counts by how unusual it is
//! relative to its own normal range, which is the calibration the paper
//! describes. With MFF off, the maps are upsampled and summed as they are.

use candle_core::{Result, Tensor};
use multiad_nn::{gaussian_blur, resize_bilinear};
use serde::{Deserialize, Serialize};

use crate::loss::cosine_distance_map;

/// Ψ's per-layer statistics, fitted on normal training images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionStats {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Largest image score on the training images (scales heat maps).
    pub train_max_score: f64,
    pub images: usize,
}

/// Eq 13 for every critical layer: (B, 1, h_n, w_n) each.
pub fn layer_maps(t: &[Tensor], s: &[Tensor]) -> Result<Vec<Tensor>> {
    t.iter().zip(s).map(|(a, b)| cosine_distance_map(a, b)).collect()
}

/// Eqs 14-15: fused, upsampled to (h, w), smoothed; returns the (B, 1, h, w)
/// map. `stats` = Ψ's statistics (MFF on), `None` = plain sum (MFF off).
pub fn fuse(maps: &[Tensor], stats: Option<&FusionStats>, h: usize, w: usize, sigma: f64) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (n, m) in maps.iter().enumerate() {
        let m = match stats {
            Some(st) => ((m - st.mean[n])? / (st.std[n] * st.std[n] + 1e-5).sqrt())?.relu()?,
            None => m.clone(),
        };
        let up = resize_bilinear(&m, h, w)?;
        total = Some(match total {
            None => up,
            Some(acc) => (acc + up)?,
        });
    }
    gaussian_blur(&total.expect("at least one layer"), sigma)
}

/// Eq 15: φ = max of the smoothed map, per image.
pub fn image_scores(map: &Tensor) -> Result<Vec<f32>> {
    map.flatten_from(1)?.max(1)?.to_vec1::<f32>()
}

/// Running sums for Ψ's statistics.
#[derive(Debug, Default, Clone)]
pub struct StatsAccumulator {
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    count: Vec<f64>,
    images: usize,
}

impl StatsAccumulator {
    pub fn add(&mut self, maps: &[Tensor]) -> Result<()> {
        if self.sum.is_empty() {
            self.sum = vec![0.0; maps.len()];
            self.sum_sq = vec![0.0; maps.len()];
            self.count = vec![0.0; maps.len()];
        }
        for (n, m) in maps.iter().enumerate() {
            let v = m.flatten_all()?.to_vec1::<f32>()?;
            self.sum[n] += v.iter().map(|&x| x as f64).sum::<f64>();
            self.sum_sq[n] += v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
            self.count[n] += v.len() as f64;
        }
        self.images += maps.first().map(|m| m.dim(0)).transpose()?.unwrap_or(0);
        Ok(())
    }

    pub fn finish(&self, train_max_score: f64) -> FusionStats {
        let mean: Vec<f64> = self.sum.iter().zip(&self.count).map(|(s, c)| s / c.max(1.0)).collect();
        let std = self
            .sum_sq
            .iter()
            .zip(&self.count)
            .zip(&mean)
            .map(|((q, c), m)| (q / c.max(1.0) - m * m).max(0.0).sqrt())
            .collect();
        FusionStats { mean, std, train_max_score, images: self.images }
    }
}
