//! PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly
//! Detection", CVPR 2022), as a [`Detector`].
//!
//! * locally aware patch features: every level's map unfolded into 3x3
//!   neighbourhoods (zero padding), deeper levels upsampled (bilinear) to the
//!   first level's grid, each level's neighbourhood vector average-pooled to
//!   `pretrain_dim` values, the levels' vectors pooled together to
//!   `target_dim` (the reference implementation's two adaptive poolings);
//! * memory bank: a greedy coreset (10% or 1%) of all training patches,
//!   chosen on a random projection to 128 dimensions;
//! * map: distance of each patch to its nearest bank entry, bilinear
//!   upsampling, Gaussian σ = 4; image score: the largest patch distance,
//!   optionally reweighted by the paper's Eq. 7 (`reweight: true`).
//!
//! Where this differs from the reference code is in `docs/methods.md`.

pub mod coreset;
pub mod knn;

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use multiad_backbones::backbone::BackboneKind;
use multiad_backbones::CommonConfig;
use multiad_data::{BatchLoader, Sample};
use multiad_detector::maps::{load_model, save_model, upsample_smooth_max};
use multiad_detector::{ConfigFile, Detector, DetectorSpec, FitOptions, FitOutcome, RunDir};
use serde::{Deserialize, Serialize};

use crate::coreset::{greedy_coreset, CoresetOptions};
use crate::knn::Bank;
use multiad_backbones::patch_features::{PatchFeatures, Patches};

pub const METHOD: &str = "patchcore";

/// PatchCore's config file (`method: patchcore`); defaults are the paper's recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchCoreConfig {
    /// `method`, `preset`, `seed`, `image_size`, `backbone`, `layers`, `sigma`, `batch_size`.
    /// `seed` fixes the coreset's projection and starting points (and a
    /// random backbone); `layers`: ResNet layer2 + layer3 = 1, 2.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Side of the neighbourhood each patch feature aggregates (odd).
    pub patch_size: usize,
    /// Each level's neighbourhood vector is pooled to this many values.
    pub pretrain_dim: usize,
    /// The levels together are pooled to this many values: the feature dimension.
    pub target_dim: usize,
    /// Fraction of all training patches kept in the memory bank (paper: 0.1 and 0.01).
    pub coreset_ratio: f64,
    /// Dimensions of the random projection the coreset is chosen on (0 = none).
    pub projection_dim: usize,
    /// Random starting points of the greedy search.
    pub start_points: usize,
    /// The image score with the paper's Eq. 7 reweighting (the reference
    /// code scores with the plain maximum, the default here).
    pub reweight: bool,
    /// Bank neighbours of Eq. 7's support set.
    pub neighbours: usize,
}

/// The paper's recipe: what a key left out of the config file gets.
impl Default for PatchCoreConfig {
    fn default() -> Self {
        Self {
            common: CommonConfig::new(METHOD, 256, BackboneKind::WideResnet50_2, &[1, 2]),
            patch_size: 3,
            pretrain_dim: 1024,
            target_dim: 1024,
            coreset_ratio: 0.1,
            projection_dim: 128,
            start_points: 10,
            reweight: false,
            neighbours: 9,
        }
    }
}

impl ConfigFile for PatchCoreConfig {
    const METHOD: &'static str = METHOD;

    fn validate(&self) -> std::result::Result<(), String> {
        self.common.check(METHOD)?;
        if self.patch_size == 0 || self.patch_size % 2 == 0 {
            return Err(format!("`patch_size` must be odd, got {}", self.patch_size));
        }
        if self.pretrain_dim == 0 || self.target_dim == 0 {
            return Err("`pretrain_dim` and `target_dim` must be positive".into());
        }
        if !(self.coreset_ratio > 0.0 && self.coreset_ratio <= 1.0) {
            return Err(format!("`coreset_ratio` must be in (0, 1], got {}", self.coreset_ratio));
        }
        if self.neighbours == 0 || self.start_points == 0 {
            return Err("`neighbours` and `start_points` must be >= 1".into());
        }
        Ok(())
    }
}

pub struct PatchCore {
    pub cfg: PatchCoreConfig,
    features: PatchFeatures,
    bank: Option<Bank>,
    device: Device,
}

impl PatchCore {
    pub fn new(cfg: &PatchCoreConfig, device: &Device) -> Result<Self> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let backbone = cfg.common.backbone.build(cfg.common.seed, device)?;
        let features = PatchFeatures::new(backbone, &cfg.common.layers, cfg.patch_size, cfg.pretrain_dim, cfg.target_dim)?;
        Ok(Self { cfg: cfg.clone(), features, bank: None, device: device.clone() })
    }

    pub fn bank_len(&self) -> usize {
        self.bank.as_ref().map_or(0, |b| b.len())
    }

    /// Locally aware patch features of ImageNet-normalised images.
    pub fn patches(&self, x: &Tensor) -> Result<Patches> {
        self.features.extract(x)
    }

    /// Image score of Eq. 7: the largest patch distance s*, weighted by
    /// 1 − softmax over the distances of that patch to the `neighbours`
    /// bank entries nearest its own nearest entry m* (m* first).
    fn reweighted(&self, bank: &Bank, feature: &[f32], score: f32, nn: u32) -> Result<f32> {
        let support = bank.neighbours_of(nn as usize, self.cfg.neighbours.min(bank.len()))?;
        let rows: Vec<Vec<f32>> = support.iter().map(|&j| bank.features.get(j)?.to_vec1::<f32>()).collect::<candle_core::Result<_>>()?;
        let d: Vec<f32> = rows.iter().map(|r| coreset::dist(feature, r)).collect();
        let mx = d.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = d.iter().map(|v| (v - mx).exp()).sum();
        let w = 1.0 - (d[0] - mx).exp() / z;
        Ok(w * score)
    }
}

impl Detector for PatchCore {
    fn spec(&self) -> DetectorSpec {
        DetectorSpec::square(METHOD, self.cfg.common.image_size, self.cfg.common.batch_size, &self.device)
    }

    fn fit(&mut self, _run: &RunDir, train: &[Sample], _opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome> {
        let loader = BatchLoader::new(train.to_vec(), self.image_config(), self.cfg.common.batch_size).on_device(&self.device);
        let nb = loader.num_batches();
        let td = self.cfg.target_dim;
        let mut all: Vec<f32> = Vec::new();
        let t0 = Instant::now();
        for (k, b) in loader.iter().enumerate() {
            let b = b?;
            all.extend(self.patches(&b.images)?.features);
            write!(log, "\rPatchCore: patch features [{}/{nb}]", k + 1)?;
            log.flush()?;
        }
        let n = all.len() / td;
        let size = ((n as f64 * self.cfg.coreset_ratio).round() as usize).max(1);
        writeln!(log, " {n} patches in {:.1} s; coreset of {size}", t0.elapsed().as_secs_f64())?;
        let t1 = Instant::now();
        let opts = CoresetOptions { size, projection_dim: self.cfg.projection_dim, start_points: self.cfg.start_points, seed: self.cfg.common.seed };
        let picked = greedy_coreset(&all, n, td, opts);
        let mut bank = Vec::with_capacity(picked.len() * td);
        for &i in &picked {
            bank.extend_from_slice(&all[i * td..(i + 1) * td]);
        }
        drop(all);
        writeln!(log, "PatchCore: coreset chosen in {:.1} s", t1.elapsed().as_secs_f64())?;
        self.bank = Some(Bank::new(Tensor::from_vec(bank, (picked.len(), td), &self.device)?)?);
        Ok(FitOutcome::Finished)
    }

    fn save(&self, run: &RunDir) -> Result<()> {
        let bank = self.bank.as_ref().context("PatchCore has not been fitted")?;
        let t = HashMap::from([("memory_bank".to_string(), bank.features.clone())]);
        save_model(run, &t)
    }

    fn load(&mut self, run: &RunDir) -> Result<()> {
        let (t, path) = load_model(run, &self.device)?;
        let bank = t.get("memory_bank").cloned().with_context(|| format!("{}: no tensor `memory_bank`", path.display()))?;
        match bank.dims() {
            [m, d] if *m > 0 && *d == self.cfg.target_dim => {}
            other => bail!("{}: `memory_bank` is {other:?}, expected (patches, {})", path.display(), self.cfg.target_dim),
        }
        self.bank = Some(Bank::new(bank)?);
        Ok(())
    }

    fn predict(&self, images: &Tensor) -> Result<(Tensor, Vec<f32>)> {
        let bank = self.bank.as_ref().context("PatchCore has not been fitted")?;
        let p = self.patches(images)?;
        let (h, w) = p.grid;
        let td = self.cfg.target_dim;
        let q = Tensor::from_vec(p.features, (p.batch * h * w, td), &self.device)?;
        let (dist, nn) = bank.nearest(&q)?;
        let mut scores = Vec::with_capacity(p.batch);
        for b in 0..p.batch {
            let range = b * h * w..(b + 1) * h * w;
            let (k, &s) = dist[range.clone()].iter().enumerate().fold((0, &f32::NEG_INFINITY), |a, x| if x.1 > a.1 { x } else { a });
            let i = range.start + k;
            // Only the reweighted score needs the worst patch's feature back on the host.
            scores.push(if self.cfg.reweight { self.reweighted(bank, &q.get(i)?.to_vec1::<f32>()?, s, nn[i])? } else { s });
        }
        let patch = Tensor::from_vec(dist, (p.batch, 1, h, w), &self.device)?;
        let (maps, _) = upsample_smooth_max(&patch, self.cfg.common.image_size as usize, self.cfg.common.sigma)?;
        Ok((maps, scores))
    }
}
