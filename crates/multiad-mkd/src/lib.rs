//! MKD (Salehi et al., "Multiresolution Knowledge Distillation for Anomaly
//! Detection", CVPR 2021), as a [`Detector`].
//!
//! * source: ImageNet VGG-16, frozen; compared at the max-pool outputs of
//!   blocks 2-5;
//! * cloner: a thinner VGG from scratch ([`cloner`]);
//! * loss: Σ_l mean_b (1 − cos(vec(S_l), vec(C_l))) + λ Σ_l MSE(S_l, C_l),
//!   λ = 0.5 (MVTec) or 0.01 (medical sets, the reference's other configs);
//!   Adam 1e-3;
//! * image score: that loss per image, over blocks 3-5 (as the reference's
//!   detection test);
//! * map: the gradient of the score with respect to the input (vanilla,
//!   SmoothGrad, or guided backpropagation through the cloner), summed over
//!   colour channels, normalised, Gaussian σ = 4.

pub mod cloner;

use std::io::Write;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use multiad_backbones::backbone::{Backbone, BackboneKind};
use multiad_backbones::CommonConfig;
use multiad_data::{Batch, Sample};
use multiad_detector::epochs::{train_epochs, EpochPlan, FeatureCache, LossTrainer};
use multiad_detector::{ConfigFile, Detector, DetectorSpec, FitOptions, FitOutcome, RunDir};
use multiad_nn::{gaussian_blur, Adam, AdamConfig, ParamStore};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::cloner::Cloner;

pub const METHOD: &str = "mkd";

/// How the anomaly map is drawn from gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Localization {
    /// Vanilla gradients.
    Gradients,
    /// SmoothGrad: gradients averaged over noisy copies of the input.
    SmoothGrad,
    /// Guided backpropagation through the cloner's ReLUs.
    Gbp,
}

/// MKD's config file (`method: mkd`); defaults are the reference's MVTec recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MkdConfig {
    /// `method`, `preset`, `seed`, `image_size`, `backbone`, `layers`, `sigma`, `batch_size`.
    /// The reference trains and tests MVTec at 128x128 (`image_size`);
    /// `layers` are the source levels compared in the loss (VGG-16: pools
    /// of blocks 2-5 = 1, 2, 3, 4), whose strides must be powers of two.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Which of `layers` (indices into it) make the score and the map.
    pub score_layers: Vec<usize>,
    /// Width of the cloner's inner convolutions (reference: 16).
    pub cloner_width: usize,
    /// Convolutions per cloner block (VGG-16: 2, 2, 3, 3, 3).
    pub cloner_convs: Vec<usize>,
    /// λ of the MSE term (0.5 MVTec, 0.01 medical/other sets in the reference).
    pub lambda: f64,
    pub epochs: usize,
    pub lr: f64,
    pub localization: Localization,
    /// SmoothGrad: noisy copies per image, and the noise multiplier.
    pub smooth_samples: usize,
    pub smooth_noise: f64,
    pub teacher_cache_mib: usize,
}

/// The paper's recipe: what a key left out of the config file gets.
impl Default for MkdConfig {
    fn default() -> Self {
        Self {
            common: CommonConfig { batch_size: 64, ..CommonConfig::new(METHOD, 128, BackboneKind::Vgg16, &[1, 2, 3, 4]) },
            score_layers: vec![1, 2, 3],
            cloner_width: 16,
            cloner_convs: vec![2, 2, 3, 3, 3],
            lambda: 0.5,
            epochs: 601,
            lr: 1e-3,
            localization: Localization::Gbp,
            smooth_samples: 50,
            smooth_noise: 0.05,
            teacher_cache_mib: 2048,
        }
    }
}

impl ConfigFile for MkdConfig {
    const METHOD: &'static str = METHOD;

    fn validate(&self) -> std::result::Result<(), String> {
        self.common.check(METHOD)?;
        if self.score_layers.is_empty() || self.score_layers.iter().any(|&i| i >= self.common.layers.len()) {
            return Err(format!("`score_layers` must index into `layers` ({} entries), got {:?}", self.common.layers.len(), self.score_layers));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) || self.lambda < 0.0 {
            return Err(format!("`lr` must be positive and `lambda` >= 0, got {} and {}", self.lr, self.lambda));
        }
        if self.cloner_width == 0 || self.cloner_convs.contains(&0) || self.epochs == 0 || self.common.batch_size < 2 {
            return Err("`cloner_width`, `cloner_convs` entries and `epochs` must be >= 1, `batch_size` >= 2".into());
        }
        if self.localization == Localization::SmoothGrad && self.smooth_samples == 0 {
            return Err("`smooth_samples` must be >= 1 for smooth_grad".into());
        }
        Ok(())
    }
}

pub struct Mkd {
    pub cfg: MkdConfig,
    source: Backbone,
    cloner: Cloner,
    /// Cloner block whose output is compared with each of `layers`.
    blocks: Vec<usize>,
    params: ParamStore,
    device: Device,
}

/// Per-sample Σ_l (1 − cos(vec)) + λ Σ_l mean((S − C)²): (B).
fn per_sample_loss(s: &[&Tensor], c: &[&Tensor], lambda: f64) -> candle_core::Result<Tensor> {
    let per_layer = s.iter().zip(c).map(|(a, b)| {
        let (a, b) = (a.flatten_from(1)?, b.flatten_from(1)?);
        let dot = (&a * &b)?.sum(1)?;
        let norms = (a.sqr()?.sum(1)?.sqrt()? * b.sqr()?.sum(1)?.sqrt()?)?;
        let cos = (dot / norms.clamp(1e-8, f64::MAX)?)?;
        let mse = (&a - &b)?.sqr()?.mean(1)?;
        (1.0 - cos)? + (mse * lambda)?
    });
    multiad_nn::sum_terms(per_layer, "layers")
}

impl Mkd {
    pub fn new(cfg: &MkdConfig, device: &Device) -> Result<Self> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let source = cfg.common.backbone.build(cfg.common.seed ^ 0x7eac_4e2d_0000_0006, device)?;
        let levels = source.levels();
        let nblocks = cfg.cloner_convs.len();
        let mut outputs = vec![cfg.cloner_width; nblocks];
        let mut blocks = Vec::new();
        for &l in &cfg.common.layers {
            let Some(&(c, stride)) = levels.get(l) else {
                bail!("`layers`: level {l} does not exist ({} has {})", cfg.common.backbone.kind.name(), levels.len())
            };
            if !stride.is_power_of_two() || stride < 2 || stride.trailing_zeros() as usize > nblocks {
                bail!("`layers`: level {l} has stride {stride}; the cloner's {nblocks} blocks reach strides 2 to {}", 1 << nblocks);
            }
            let b = stride.trailing_zeros() as usize - 1;
            outputs[b] = c;
            blocks.push(b);
        }
        if cfg.common.image_size as usize % (1 << nblocks) != 0 {
            bail!("`image_size` must be divisible by {} (the cloner's {nblocks} poolings)", 1 << nblocks);
        }
        let params = ParamStore::new(cfg.common.seed);
        let cloner = Cloner::new(&outputs, &cfg.cloner_convs, cfg.cloner_width, params.var_builder(device))?;
        Ok(Self { cfg: cfg.clone(), source, cloner, blocks, params, device: device.clone() })
    }

    fn source_features(&self, x: &Tensor, graph: bool) -> candle_core::Result<Vec<Tensor>> {
        let deepest = self.cfg.common.layers.iter().max().unwrap() + 1;
        let all = if graph { self.source.features_with_graph(x, deepest)? } else { self.source.features_upto(x, deepest)? };
        Ok(self.cfg.common.layers.iter().map(|&l| all[l].clone()).collect())
    }

    fn cloner_features(&self, x: &Tensor, train: bool, guided: bool) -> candle_core::Result<Vec<Tensor>> {
        let out = self.cloner.forward(x, train, guided)?;
        Ok(self.blocks.iter().map(|&b| out[b].clone()).collect())
    }

    /// Scores (B) of images, and the gradient of their sum with respect to the images.
    pub fn scores_and_gradient(&self, x: &Tensor, guided: bool) -> Result<(Vec<f32>, Tensor)> {
        let v = Var::from_tensor(x)?;
        let s = self.source_features(v.as_tensor(), true)?;
        let c = self.cloner_features(v.as_tensor(), false, guided)?;
        let pick = |f: &[Tensor]| self.cfg.score_layers.iter().map(|&i| f[i].clone()).collect::<Vec<_>>();
        let (s, c) = (pick(&s), pick(&c));
        let score = per_sample_loss(&s.iter().collect::<Vec<_>>(), &c.iter().collect::<Vec<_>>(), self.cfg.lambda)?;
        let grads = score.sum_all()?.backward()?;
        let g = grads.get(v.as_tensor()).context("no gradient reached the input")?.clone();
        Ok((score.to_vec1()?, g))
    }
}

/// The reference's grey-scale saliency: Σ_c |g|, scaled so that its minimum
/// is 0 and its 99th percentile 1, clipped to [0, 1]. `g` is (3, H, W).
fn grayscale(g: &[f32], hw: usize) -> Vec<f32> {
    let mut m: Vec<f32> = (0..hw).map(|i| (0..3).map(|c| g[c * hw + i].abs()).sum()).collect();
    let mut sorted = m.clone();
    sorted.sort_by(f32::total_cmp);
    let lo = sorted[0];
    let hi = sorted[((hw as f64 * 0.99) as usize).min(hw - 1)];
    let span = (hi - lo).max(f32::EPSILON);
    for v in &mut m {
        *v = ((*v - lo) / span).clamp(0.0, 1.0);
    }
    m
}

fn min_max(m: &mut [f32]) {
    let lo = m.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let span = (hi - lo).max(f32::EPSILON);
    for v in m {
        *v = (*v - lo) / span;
    }
}

impl Detector for Mkd {
    fn spec(&self) -> DetectorSpec {
        DetectorSpec::square(METHOD, self.cfg.common.image_size, self.cfg.common.batch_size.min(16), &self.device)
    }

    fn fit(&mut self, run: &RunDir, train: &[Sample], opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome> {
        let c = &self.cfg;
        let plan = EpochPlan::new("MKD", &self.spec(), c.common.batch_size, c.epochs, c.common.seed, "`lr`");
        writeln!(log, "MKD: {} images, cloner {} parameters", train.len(), self.params.num_parameters())?;
        let opt = Adam::new(self.params.trainable(), AdamConfig { lr: c.lr, ..Default::default() })?;
        let mut trainer = LossTrainer::new(&self.params, "cloner.", opt, c.teacher_cache_mib, |b: &Batch, cache: &mut FeatureCache| {
            let s = cache.get(&b.images, &b.indices, |x| self.source_features(x, false))?;
            let cl = self.cloner_features(&b.images, true, false)?;
            // Training: mean over the batch of the cosine term, MSE over all elements.
            Ok(per_sample_loss(&s.iter().collect::<Vec<_>>(), &cl.iter().collect::<Vec<_>>(), c.lambda)?.mean_all()?)
        });
        train_epochs(&mut trainer, &plan, run, train, opts, log)
    }

    fn trained_stores(&self) -> Vec<(&ParamStore, &'static str)> {
        vec![(&self.params, "cloner.")]
    }

    fn predict(&self, images: &Tensor) -> Result<(Tensor, Vec<f32>)> {
        let (b, _, h, w) = images.dims4()?;
        let hw = h * w;
        let (scores, maps) = match self.cfg.localization {
            Localization::Gradients | Localization::Gbp => {
                let guided = self.cfg.localization == Localization::Gbp;
                let (scores, g) = self.scores_and_gradient(images, guided)?;
                let g: Vec<f32> = g.flatten_all()?.to_vec1()?;
                let maps: Vec<Vec<f32>> = (0..b)
                    .map(|i| {
                        let mut m = grayscale(&g[i * 3 * hw..(i + 1) * 3 * hw], hw);
                        if guided {
                            min_max(&mut m);
                        }
                        m
                    })
                    .collect();
                (scores, maps)
            }
            Localization::SmoothGrad => {
                let (scores, _) = self.scores_and_gradient(images, false)?;
                let mut acc = vec![vec![0f32; hw]; b];
                let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.common.seed ^ 0x5300_7400_0000_0001);
                for _ in 0..self.cfg.smooth_samples {
                    // The reference draws N(0, σ²) with σ = multiplier / (max − min) of the batch.
                    let range = (images.max_all()?.to_scalar::<f32>()? - images.min_all()?.to_scalar::<f32>()?).max(f32::EPSILON);
                    let std = (self.cfg.smooth_noise as f32 / range).powi(2);
                    let normal = Normal::new(0.0f32, std)?;
                    let noise: Vec<f32> = (0..images.elem_count()).map(|_| normal.sample(&mut rng)).collect();
                    let noisy = (images + Tensor::from_vec(noise, images.dims(), &self.device)?)?;
                    let (_, g) = self.scores_and_gradient(&noisy, false)?;
                    let g: Vec<f32> = g.flatten_all()?.to_vec1()?;
                    for (i, a) in acc.iter_mut().enumerate() {
                        for (x, y) in a.iter_mut().zip(grayscale(&g[i * 3 * hw..(i + 1) * 3 * hw], hw)) {
                            *x += y / self.cfg.smooth_samples as f32;
                        }
                    }
                }
                for m in &mut acc {
                    min_max(m);
                }
                (scores, acc)
            }
        };
        let flat: Vec<f32> = maps.into_iter().flatten().collect();
        let m = gaussian_blur(&Tensor::from_vec(flat, (b, 1, h, w), &self.device)?, self.cfg.common.sigma)?;
        Ok((m.squeeze(1)?, scores))
    }
}
