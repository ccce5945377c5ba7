//! PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for
//! Anomaly Detection and Localization", ICPR 2020), as a [`Detector`].
//!
//! * embedding: pretrained features of several levels (WideResNet-50-2
//!   layers 1-3 in the paper), deeper levels upsampled (nearest) to the first
//!   level's grid and concatenated, then a random subset of `channels`
//!   channels (550 of 1792, fixed seed);
//! * fit: per grid position, the mean and covariance of the training
//!   embeddings, covariance + ε·I (ε = 0.01), inverted once;
//! * map: Mahalanobis distance per position, bilinear upsampling to the
//!   input, Gaussian σ = 4; image score = the map's maximum.
//!
//! Where this differs from the reference code is in `docs/methods.md`.

pub mod gaussian;

use std::collections::HashMap;
use std::io::Write;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use multiad_backbones::backbone::{Backbone, BackboneKind};
use multiad_backbones::CommonConfig;
use multiad_data::{BatchLoader, Sample};
use multiad_detector::maps::{load_model, save_model, upsample_smooth_max};
use multiad_detector::{ConfigFile, Detector, DetectorSpec, FitOptions, FitOutcome, RunDir};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub const METHOD: &str = "padim";

/// PaDiM's config file (`method: padim`); defaults are the paper's recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PadimConfig {
    /// `method`, `preset`, `seed`, `image_size`, `backbone`, `layers`, `sigma`, `batch_size`.
    /// `seed` fixes the random channel subset (and a random backbone);
    /// `layers` are concatenated (ResNet layer1-3 = 0, 1, 2).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Size of the random channel subset (paper: 550 for WideResNet-50-2,
    /// 100 for ResNet-18); 0 keeps every channel.
    pub channels: usize,
    /// ε of covariance + ε·I.
    pub covariance_eps: f64,
}

/// The paper's recipe: what a key left out of the config file gets.
impl Default for PadimConfig {
    fn default() -> Self {
        Self { common: CommonConfig::new(METHOD, 256, BackboneKind::WideResnet50_2, &[0, 1, 2]), channels: 550, covariance_eps: 0.01 }
    }
}

impl ConfigFile for PadimConfig {
    const METHOD: &'static str = METHOD;

    fn validate(&self) -> std::result::Result<(), String> {
        self.common.check(METHOD)?;
        if !(self.covariance_eps > 0.0 && self.covariance_eps.is_finite()) {
            return Err(format!("`covariance_eps` must be positive, got {}", self.covariance_eps));
        }
        Ok(())
    }
}

/// The fitted Gaussians.
struct Fitted {
    /// (P, d)
    mean: Tensor,
    /// (P, d, d)
    precision: Tensor,
}

pub struct Padim {
    pub cfg: PadimConfig,
    backbone: Backbone,
    /// Indices of the kept channels of the concatenated embedding, sorted.
    channels: Vec<u32>,
    total_channels: usize,
    fitted: Option<Fitted>,
    device: Device,
}

impl Padim {
    pub fn new(cfg: &PadimConfig, device: &Device) -> Result<Self> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let backbone = cfg.common.backbone.build(cfg.common.seed, device)?;
        let levels = backbone.levels();
        let mut total = 0;
        for &l in &cfg.common.layers {
            let Some(&(c, _)) = levels.get(l) else { bail!("`layers`: level {l} does not exist ({} has {})", cfg.common.backbone.kind.name(), levels.len()) };
            total += c;
        }
        let d = if cfg.channels == 0 { total } else { cfg.channels };
        if d > total {
            bail!("`channels`: {d} requested but layers {:?} give only {total}", cfg.common.layers);
        }
        // The subset is drawn once from the seed (the paper: random
        // dimensionality reduction); sorted, which does not change distances.
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.common.seed ^ 0x9ad1_0000_0000_0001);
        let mut channels: Vec<u32> = sample(&mut rng, total, d).into_iter().map(|i| i as u32).collect();
        channels.sort_unstable();
        Ok(Self { cfg: cfg.clone(), backbone, channels, total_channels: total, fitted: None, device: device.clone() })
    }

    /// Embeddings (B, d, h, w) of ImageNet-normalised images.
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        let deepest = *self.cfg.common.layers.last().unwrap() + 1;
        let feats = self.backbone.features_upto(x, deepest)?;
        let (_, _, h, w) = feats[self.cfg.common.layers[0]].dims4()?;
        let mut parts = Vec::new();
        for &l in &self.cfg.common.layers {
            let f = &feats[l];
            parts.push(if f.dims4()?.2 == h { f.clone() } else { f.upsample_nearest2d(h, w)? });
        }
        let all = Tensor::cat(&parts, 1)?;
        debug_assert_eq!(all.dim(1)?, self.total_channels);
        if self.channels.len() == self.total_channels {
            return Ok(all);
        }
        let idx = Tensor::new(self.channels.as_slice(), &self.device)?;
        Ok(all.index_select(&idx, 1)?)
    }

    /// Patch-level Mahalanobis distances (B, 1, h, w).
    pub fn patch_distances(&self, x: &Tensor) -> Result<Tensor> {
        let fitted = self.fitted.as_ref().context("PaDiM has not been fitted")?;
        let emb = self.embed(x)?;
        let (b, d, h, w) = emb.dims4()?;
        // (P, B, d) - mean (P, 1, d)
        let e = emb.reshape((b, d, h * w))?.permute((2, 0, 1))?.contiguous()?;
        let delta = e.broadcast_sub(&fitted.mean.unsqueeze(1)?)?;
        let t = delta.matmul(&fitted.precision)?;
        let d2 = (t * &delta)?.sum(2)?; // (P, B)
        let dist = d2.relu()?.sqrt()?;
        Ok(dist.t()?.reshape((b, 1, h, w))?)
    }
}

impl Detector for Padim {
    fn spec(&self) -> DetectorSpec {
        DetectorSpec::square(METHOD, self.cfg.common.image_size, self.cfg.common.batch_size, &self.device)
    }

    fn fit(&mut self, _run: &RunDir, train: &[Sample], _opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome> {
        let loader = BatchLoader::new(train.to_vec(), self.image_config(), self.cfg.common.batch_size).on_device(&self.device);
        let nb = loader.num_batches();
        let d = self.channels.len();
        let mut feats: Vec<f32> = Vec::new();
        let mut grid = (0, 0);
        for (k, b) in loader.iter().enumerate() {
            let b = b?;
            let e = self.embed(&b.images)?;
            let (_, _, h, w) = e.dims4()?;
            grid = (h, w);
            feats.extend(e.flatten_all()?.to_vec1::<f32>()?);
            write!(log, "\rPaDiM: embedding training images [{}/{nb}]", k + 1)?;
            log.flush()?;
        }
        writeln!(log)?;
        let (n, p) = (train.len(), grid.0 * grid.1);
        writeln!(log, "PaDiM: fitting {p} Gaussians of dimension {d} on {n} images")?;
        let (mean, inv) = gaussian::fit_positions(&feats, n, d, p, self.cfg.covariance_eps).map_err(anyhow::Error::msg)?;
        self.fitted = Some(Fitted { mean: Tensor::from_vec(mean, (p, d), &self.device)?, precision: Tensor::from_vec(inv, (p, d, d), &self.device)? });
        Ok(FitOutcome::Finished)
    }

    fn save(&self, run: &RunDir) -> Result<()> {
        let f = self.fitted.as_ref().context("PaDiM has not been fitted")?;
        let mut t = HashMap::new();
        t.insert("mean".to_string(), f.mean.clone());
        t.insert("precision".to_string(), f.precision.clone());
        t.insert("channels".to_string(), Tensor::new(self.channels.as_slice(), &self.device)?);
        save_model(run, &t)
    }

    fn load(&mut self, run: &RunDir) -> Result<()> {
        let (t, path) = load_model(run, &self.device)?;
        let get = |k: &str| t.get(k).cloned().with_context(|| format!("{}: no tensor `{k}`", path.display()));
        let channels: Vec<u32> = get("channels")?.to_dtype(DType::U32)?.to_vec1()?;
        if channels != self.channels {
            bail!("{}: its channel subset differs from the one config.yaml's seed draws", path.display());
        }
        let (mean, precision) = (get("mean")?, get("precision")?);
        let d = channels.len();
        let (p, md) = mean.dims2().with_context(|| format!("{}: `mean` must be (positions, {d})", path.display()))?;
        if md != d || precision.dims() != [p, d, d] {
            bail!("{}: `mean` {:?} / `precision` {:?} do not fit {d} channels", path.display(), mean.dims(), precision.dims());
        }
        self.fitted = Some(Fitted { mean, precision });
        Ok(())
    }

    fn predict(&self, images: &Tensor) -> Result<(Tensor, Vec<f32>)> {
        let patch = self.patch_distances(images)?;
        Ok(upsample_smooth_max(&patch, self.cfg.common.image_size as usize, self.cfg.common.sigma)?)
    }
}
