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
    /// `inference.psi_centre: position`: each layer's per-cell means over
    /// the training images (row-major, the layer map's h x w); `std` is then
    /// the spread about them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_mean: Option<Vec<Vec<f64>>>,
}

impl FusionStats {
    /// What Ψ subtracts from layer `n`'s (B, 1, h, w) map: one mean, or a
    /// (1, 1, h, w) map of them.
    fn centre(&self, n: usize, m: &Tensor) -> Result<Tensor> {
        match &self.position_mean {
            None => m - self.mean[n],
            Some(pm) => {
                let (_, _, h, w) = m.dims4()?;
                if pm[n].len() != h * w {
                    candle_core::bail!("Ψ's position means of layer {} have {} cells, its map {h}x{w}", n + 1, pm[n].len());
                }
                let mu = Tensor::from_vec(pm[n].clone(), (1, 1, h, w), m.device())?.to_dtype(m.dtype())?;
                m.broadcast_sub(&mu)
            }
        }
    }
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
            Some(st) => (st.centre(n, m)? / (st.std[n] * st.std[n] + 1e-5).sqrt())?.relu()?,
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
    /// Per layer, per cell: the sum over images.
    cell_sum: Vec<Vec<f64>>,
    images: usize,
}

impl StatsAccumulator {
    pub fn add(&mut self, maps: &[Tensor]) -> Result<()> {
        if self.sum.is_empty() {
            self.sum = vec![0.0; maps.len()];
            self.sum_sq = vec![0.0; maps.len()];
            self.count = vec![0.0; maps.len()];
            self.cell_sum = maps.iter().map(|m| m.dims4().map(|(_, _, h, w)| vec![0.0; h * w])).collect::<Result<_>>()?;
        }
        for (n, m) in maps.iter().enumerate() {
            // In f64 whatever the map's dtype (exact for f32 values).
            let v = m.flatten_all()?.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
            self.sum[n] += v.iter().sum::<f64>();
            self.sum_sq[n] += v.iter().map(|&x| x * x).sum::<f64>();
            self.count[n] += v.len() as f64;
            let cells = &mut self.cell_sum[n];
            if cells.is_empty() || v.len() % cells.len() != 0 {
                candle_core::bail!("layer {} map of {} values does not match {} cells", n + 1, v.len(), cells.len());
            }
            for image in v.chunks(cells.len()) {
                cells.iter_mut().zip(image).for_each(|(c, x)| *c += x);
            }
        }
        self.images += maps.first().map(|m| m.dim(0)).transpose()?.unwrap_or(0);
        Ok(())
    }

    /// Ψ's statistics. `per_position`: each cell's own mean, and σ the
    /// spread about those means (E[M²] − mean over cells of μ(p)²).
    pub fn finish(&self, train_max_score: f64, per_position: bool) -> FusionStats {
        let mean: Vec<f64> = self.sum.iter().zip(&self.count).map(|(s, c)| s / c.max(1.0)).collect();
        let images = self.images.max(1) as f64;
        let position_mean: Option<Vec<Vec<f64>>> = per_position.then(|| self.cell_sum.iter().map(|cells| cells.iter().map(|s| s / images).collect()).collect());
        let centre_sq: Vec<f64> = match &position_mean {
            Some(pm) => pm.iter().map(|mu| mu.iter().map(|m| m * m).sum::<f64>() / mu.len().max(1) as f64).collect(),
            None => mean.iter().map(|m| m * m).collect(),
        };
        let std = self.sum_sq.iter().zip(&self.count).zip(&centre_sq).map(|((q, c), m2)| (q / c.max(1.0) - m2).max(0.0).sqrt()).collect();
        FusionStats { mean, std, train_max_score, images: self.images, position_mean }
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

    /// Per-position centring: each cell's mean over the images, σ the spread
    /// about those means, and a map equal to the means is all zeros after Ψ.
    #[test]
    fn psi_centred_per_position_removes_each_cells_normal_level() -> Result<()> {
        let dev = Device::Cpu;
        // Two images of one 1x2 layer: cell 0 is 1 then 3, cell 1 is 10 then 10.
        let maps = Tensor::from_vec(vec![1f32, 10.0, 3.0, 10.0], (2, 1, 1, 2), &dev)?;
        let mut acc = StatsAccumulator::default();
        acc.add(std::slice::from_ref(&maps))?;
        let layer = acc.finish(0.0, false);
        assert!(layer.position_mean.is_none());
        assert!((layer.mean[0] - 6.0).abs() < 1e-12);
        let st = acc.finish(0.0, true);
        assert_eq!(st.position_mean.as_deref(), Some(&[vec![2.0, 10.0]][..]));
        // Residuals about (2, 10): -1, 0, 1, 0, so σ² = 1/2.
        assert!((st.std[0] - 0.5f64.sqrt()).abs() < 1e-12, "{}", st.std[0]);
        let at_means = Tensor::from_vec(vec![2f32, 10.0], (1, 1, 1, 2), &dev)?;
        let fused = fuse(&[at_means], Some(&st), CellGrid::HalfPixel, 1, 2, 0.0)?;
        assert_eq!(fused.flatten_all()?.to_vec1::<f32>()?, vec![0.0, 0.0]);
        // A map of another size than the fitted one is an error, not a broadcast.
        let wrong = Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &dev)?;
        assert!(fuse(&[wrong], Some(&st), CellGrid::HalfPixel, 2, 2, 0.0).is_err());
        Ok(())
    }
}
