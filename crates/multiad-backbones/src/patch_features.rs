//! PatchCore's locally aware patch features (also SimpleNet's, whose
//! reference code builds on PatchCore's): every level's map unfolded into
//! k x k neighbourhoods, deeper levels upsampled to the first level's grid,
//! each level's neighbourhood vector average-pooled to `pretrain_dim`, the
//! levels pooled together to `target_dim`.

use crate::backbone::Backbone;
use anyhow::{bail, Result};
use candle_core::Tensor;
use multiad_nn::resample::resize_bilinear;
use rayon::prelude::*;

/// PyTorch's `adaptive_avg_pool1d` of one vector: output i averages
/// input[floor(i n / m) .. ceil((i + 1) n / m)].
pub fn adaptive_avg_pool1d(input: &[f32], out: &mut [f32]) {
    let (n, m) = (input.len(), out.len());
    for (i, o) in out.iter_mut().enumerate() {
        let s = i * n / m;
        let e = ((i + 1) * n).div_ceil(m);
        *o = input[s..e].iter().sum::<f32>() / (e - s) as f32;
    }
}

/// k x k neighbourhoods of a (B, C, H, W) map with zero padding, as
/// (B, C·k·k, H, W) ordered like `torch.nn.Unfold` (channel, then row, then column).
pub fn unfold(x: &Tensor, k: usize) -> Result<Tensor> {
    if k == 1 {
        return Ok(x.clone());
    }
    let (b, c, h, w) = x.dims4()?;
    let r = k / 2;
    let p = x.pad_with_zeros(2, r, r)?.pad_with_zeros(3, r, r)?;
    let mut shifts = Vec::with_capacity(k * k);
    for dy in 0..k {
        for dx in 0..k {
            shifts.push(p.narrow(2, dy, h)?.narrow(3, dx, w)?);
        }
    }
    Ok(Tensor::stack(&shifts, 2)?.reshape((b, c * k * k, h, w))?)
}

/// Patch features of a batch: (B·h·w, target_dim) row-major, and (b, h, w).
pub struct Patches {
    pub features: Vec<f32>,
    pub batch: usize,
    pub grid: (usize, usize),
}

/// A frozen backbone and the recipe that turns its levels into patch features.
pub struct PatchFeatures {
    backbone: Backbone,
    layers: Vec<usize>,
    patch_size: usize,
    pretrain_dim: usize,
    target_dim: usize,
}

impl PatchFeatures {
    pub fn new(backbone: Backbone, layers: &[usize], patch_size: usize, pretrain_dim: usize, target_dim: usize) -> Result<Self> {
        let levels = backbone.levels();
        for &l in layers {
            if l >= levels.len() {
                bail!("`layers`: level {l} does not exist ({} has {})", backbone.kind().name(), levels.len());
            }
        }
        Ok(Self { backbone, layers: layers.to_vec(), patch_size, pretrain_dim, target_dim })
    }

    pub fn dim(&self) -> usize {
        self.target_dim
    }

    /// Patch features of ImageNet-normalised images.
    pub fn extract(&self, x: &Tensor) -> Result<Patches> {
        let deepest = *self.layers.last().unwrap() + 1;
        let feats = self.backbone.features_upto(x, deepest)?;
        let (b, _, h, w) = feats[self.layers[0]].dims4()?;
        let mut levels = Vec::new();
        for &l in &self.layers {
            let u = unfold(&feats[l], self.patch_size)?;
            let u = if u.dims4()?.2 != h { resize_bilinear(&u, h, w)? } else { u };
            let n = u.dim(1)?;
            let host: Vec<f32> = u.permute((0, 2, 3, 1))?.flatten_all()?.to_vec1()?;
            levels.push((host, n));
        }
        let (pd, td, nl) = (self.pretrain_dim, self.target_dim, levels.len());
        let mut out = vec![0f32; b * h * w * td];
        out.par_chunks_mut(td).enumerate().for_each(|(i, row)| {
            let mut stacked = vec![0f32; nl * pd];
            for (k, (host, n)) in levels.iter().enumerate() {
                adaptive_avg_pool1d(&host[i * n..(i + 1) * n], &mut stacked[k * pd..(k + 1) * pd]);
            }
            adaptive_avg_pool1d(&stacked, row);
        });
        Ok(Patches { features: out, batch: b, grid: (h, w) })
    }
}
