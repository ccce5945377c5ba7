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
use multiad_nn::{gaussian_blur, resize_bilinear, resize_bilinear_centred};
use serde::{Deserialize, Serialize};

use crate::loss::cosine_distance_map;

/// Where a layer map's cells sit on the image, for Eq 14's upsampling.
/// A stride-s cell of the torchvision ResNets (symmetric padding) is
/// centred on pixel s·i, one of EfficientNet-Lite0 (TF "SAME": stride-2
/// layers padded after) on s·i + s − 1; PyTorch's half-pixel resize, the
/// field's habit, assumes s·i + (s − 1)/2, which puts Lite0's stride-32
/// map 15.5 px up and left of the pixels it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellGrid {
    /// `F.interpolate(..., align_corners=False)`: cell centres at s·i + (s − 1)/2.
    HalfPixel,
    /// Receptive-field centres at s·i.
    Symmetric,
    /// Receptive-field centres at s·i + s − 1.
    Same,
}

impl CellGrid {
    /// The output pixel on which cell 0 of a stride-`s` map is centred.
    fn first_centre(self, s: f64) -> f64 {
        match self {
            CellGrid::HalfPixel => (s - 1.0) / 2.0,
            CellGrid::Symmetric => 0.0,
            CellGrid::Same => s - 1.0,
        }
    }

    /// A (B, C, h, w) map resized to (out_h, out_w) with each cell on its centre.
    pub fn upsample(self, m: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
        if self == CellGrid::HalfPixel {
            return resize_bilinear(m, out_h, out_w);
        }
        let (_, _, h, w) = m.dims4()?;
        let (sh, sw) = (out_h as f64 / h as f64, out_w as f64 / w as f64);
        resize_bilinear_centred(m, out_h, out_w, self.first_centre(sh), self.first_centre(sw))
    }
}

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
/// map. `stats` = Ψ's statistics (MFF on), `None` = plain sum (MFF off);
/// `grid`: where the maps' cells sit on the image.
pub fn fuse(maps: &[Tensor], stats: Option<&FusionStats>, grid: CellGrid, h: usize, w: usize, sigma: f64) -> Result<Tensor> {
    let upsampled = maps.iter().enumerate().map(|(n, m)| {
        let m = match stats {
            Some(st) => ((m - st.mean[n])? / (st.std[n] * st.std[n] + 1e-5).sqrt())?.relu()?,
            None => m.clone(),
        };
        grid.upsample(&m, h, w)
    });
    gaussian_blur(&multiad_nn::sum_terms(upsampled, "layer maps")?, sigma)
}

/// Eq 15: φ = max of the smoothed map, per image.
pub fn image_scores(map: &Tensor) -> Result<Vec<f32>> {
    map.flatten_from(1)?.max(1)?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()
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
            // In f64 whatever the map's dtype (exact for f32 values).
            let v = m.flatten_all()?.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
            self.sum[n] += v.iter().sum::<f64>();
            self.sum_sq[n] += v.iter().map(|&x| x * x).sum::<f64>();
            self.count[n] += v.len() as f64;
        }
        self.images += maps.first().map(|m| m.dim(0)).transpose()?.unwrap_or(0);
        Ok(())
    }

    pub fn finish(&self, train_max_score: f64) -> FusionStats {
        let mean: Vec<f64> = self.sum.iter().zip(&self.count).map(|(s, c)| s / c.max(1.0)).collect();
        let std = self.sum_sq.iter().zip(&self.count).zip(&mean).map(|((q, c), m)| (q / c.max(1.0) - m * m).max(0.0).sqrt()).collect();
        FusionStats { mean, std, train_max_score, images: self.images }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The row and column where a map upsampled from one hot cell peaks.
    fn peak(grid: CellGrid, cells: usize, hot: (usize, usize), out: usize) -> (usize, usize) {
        let mut v = vec![0f32; cells * cells];
        v[hot.0 * cells + hot.1] = 1.0;
        let m = Tensor::from_vec(v, (1, 1, cells, cells), &Device::Cpu).unwrap();
        let up = grid.upsample(&m, out, out).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let k = up.iter().enumerate().fold(0, |b, (k, &x)| if x > up[b] { k } else { b });
        (k / out, k % out)
    }

    /// A cell's value lands on its receptive-field centre
    /// (`tests/grid_alignment.rs` measures those centres on the networks).
    #[test]
    fn upsampled_cells_peak_on_their_centres() {
        for (cells, s) in [(8, 32), (16, 16), (64, 4)] {
            let out = cells * s;
            for hot in [(1, 1), (3, 5), (cells - 2, cells - 3)] {
                assert_eq!(peak(CellGrid::Same, cells, hot, out), (s * hot.0 + s - 1, s * hot.1 + s - 1));
                assert_eq!(peak(CellGrid::Symmetric, cells, hot, out), (s * hot.0, s * hot.1));
            }
        }
        // Half-pixel: between s·i + (s − 1)/2 ± 1/2 (the first of the tie).
        assert_eq!(peak(CellGrid::HalfPixel, 8, (3, 5), 256), (3 * 32 + 15, 5 * 32 + 15));
    }
}
