//! RD4AD (Deng & Li, "Anomaly Detection via Reverse Distillation from
//! One-Class Embedding", CVPR 2022), as a [`Detector`].
//!
//! * encoder E: ImageNet WideResNet-50-2, layers 1-3, frozen;
//! * one-class bottleneck embedding (OCBE) and decoder D, trained ([`model`]);
//! * loss: Σ_l mean over the batch of 1 − cos(vec(E_l), vec(D_l)), each
//!   sample's whole feature map flattened into one vector;
//! * Adam, lr 0.005, betas (0.5, 0.999), 200 epochs, batch 16;
//! * map: Σ_l of (1 − cos over channels) per position, upsampled (bilinear)
//!   to the input; Gaussian σ = 4; image score = the map's maximum.

pub mod model;

use std::io::Write;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use multiad_backbones::backbone::{Backbone, BackboneKind};
use multiad_backbones::CommonConfig;
use multiad_data::{Batch, Sample};
use multiad_detector::epochs::{train_epochs, EpochPlan, FeatureCache, LossTrainer};
use multiad_detector::maps::upsample_smooth_max;
use multiad_detector::{ConfigFile, Detector, DetectorSpec, FitOptions, FitOutcome, RunDir};
use multiad_nn::{Adam, AdamConfig, ParamStore};
use serde::{Deserialize, Serialize};

use crate::model::{Decoder, Ocbe, Shapes};

pub const METHOD: &str = "rd4ad";

/// RD4AD's config file (`method: rd4ad`); defaults are the paper's recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rd4adConfig {
    /// `method`, `preset`, `seed`, `image_size`, `backbone`, `layers`, `sigma`, `batch_size`.
    /// `seed` fixes the initialisation and the batch order; `layers` are
    /// three encoder levels with strides s, 2s, 4s (ResNet layer1-3 = 0, 1, 2).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Residual blocks of the one-class embedding (reference: 3).
    pub oce_blocks: usize,
    /// Decoder blocks per stage, deep to shallow (reference: 3, 4, 6).
    pub decoder_blocks: [usize; 3],
    /// Inner width of a block as a fraction of its output (wide ResNet: 0.5).
    pub width_ratio: f64,
    pub epochs: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Encoder features of training images kept between epochs, MiB.
    pub teacher_cache_mib: usize,
}

/// The paper's recipe: what a key left out of the config file gets.
impl Default for Rd4adConfig {
    fn default() -> Self {
        Self {
            common: CommonConfig { batch_size: 16, ..CommonConfig::new(METHOD, 256, BackboneKind::WideResnet50_2, &[0, 1, 2]) },
            oce_blocks: 3,
            decoder_blocks: [3, 4, 6],
            width_ratio: 0.5,
            epochs: 200,
            lr: 0.005,
            beta1: 0.5,
            beta2: 0.999,
            teacher_cache_mib: 4096,
        }
    }
}

impl ConfigFile for Rd4adConfig {
    const METHOD: &'static str = METHOD;

    fn validate(&self) -> std::result::Result<(), String> {
        self.common.check(METHOD)?;
        if self.common.layers.len() != 3 {
            return Err(format!("`layers` must be three increasing levels, got {:?}", self.common.layers));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("`lr` must be positive, got {}", self.lr));
        }
        for (k, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(format!("`{k}` must be in [0, 1), got {b}"));
            }
        }
        if !(self.width_ratio > 0.0) || self.oce_blocks == 0 || self.epochs == 0 || self.common.batch_size < 2 {
            return Err("`width_ratio` must be positive, `oce_blocks` and `epochs` >= 1, `batch_size` >= 2 (batch norm)".into());
        }
        Ok(())
    }
}

pub struct Rd4ad {
    pub cfg: Rd4adConfig,
    encoder: Backbone,
    ocbe: Ocbe,
    decoder: Decoder,
    params: ParamStore,
    device: Device,
}

/// Σ_l mean_b (1 − cos(vec(E_l[b]), vec(D_l[b]))).
pub fn loss(e: &[Tensor], d: &[Tensor]) -> candle_core::Result<Tensor> {
    let per_layer = e.iter().zip(d).map(|(a, b)| {
        let (a, b) = (a.flatten_from(1)?, b.flatten_from(1)?);
        let dot = (&a * &b)?.sum(1)?;
        let na = a.sqr()?.sum(1)?.sqrt()?;
        let nb = b.sqr()?.sum(1)?.sqrt()?;
        let cos = (dot / (na * nb)?.clamp(1e-8, f64::MAX)?)?;
        (1.0 - cos)?.mean_all()
    });
    multiad_nn::sum_terms(per_layer, "layers")
}

/// 1 − cos over channels at every position: (B, 1, h, w).
fn cosine_distance_map(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let dot = (a * b)?.sum_keepdim(1)?;
    let na = a.sqr()?.sum_keepdim(1)?.sqrt()?;
    let nb = b.sqr()?.sum_keepdim(1)?.sqrt()?;
    1.0 - (dot / (na * nb)?.clamp(1e-8, f64::MAX)?)?
}

impl Rd4ad {
    pub fn new(cfg: &Rd4adConfig, device: &Device) -> Result<Self> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let encoder = cfg.common.backbone.build(cfg.common.seed ^ 0x7eac_4e2d_0000_0003, device)?;
        let levels = encoder.levels();
        let mut ch = [0; 3];
        let mut strides = [0; 3];
        for (i, &l) in cfg.common.layers.iter().enumerate() {
            let Some(&(c, s)) = levels.get(l) else { bail!("`layers`: level {l} does not exist ({} has {})", cfg.common.backbone.kind.name(), levels.len()) };
            ch[i] = c;
            strides[i] = s;
        }
        if strides[1] != 2 * strides[0] || strides[2] != 2 * strides[1] || cfg.common.image_size as usize % (strides[2] * 2) != 0 {
            bail!("`layers`: the levels' strides {strides:?} must double from one to the next, and image_size be divisible by {}", strides[2] * 2);
        }
        let shapes = Shapes { levels: ch, oce_blocks: cfg.oce_blocks, decoder_blocks: cfg.decoder_blocks, width_ratio: cfg.width_ratio };
        let params = ParamStore::new(cfg.common.seed);
        let vb = params.var_builder(device);
        let ocbe = Ocbe::new(&shapes, vb.pp("bn"))?;
        let decoder = Decoder::new(&shapes, vb.pp("decoder"))?;
        Ok(Self { cfg: cfg.clone(), encoder, ocbe, decoder, params, device: device.clone() })
    }

    fn encode(&self, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let all = self.encoder.features_upto(x, self.cfg.common.layers[2] + 1)?;
        Ok(self.cfg.common.layers.iter().map(|&l| all[l].clone()).collect())
    }

    fn decode(&self, e: &[Tensor], train: bool) -> candle_core::Result<Vec<Tensor>> {
        self.decoder.forward(&self.ocbe.forward(e, train)?, train)
    }
}

impl Detector for Rd4ad {
    fn spec(&self) -> DetectorSpec {
        DetectorSpec::square(METHOD, self.cfg.common.image_size, self.cfg.common.batch_size, &self.device)
    }

    fn fit(&mut self, run: &RunDir, train: &[Sample], opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome> {
        let c = &self.cfg;
        let plan = EpochPlan::new("RD4AD", &self.spec(), c.common.batch_size, c.epochs, c.common.seed, "`lr`");
        writeln!(log, "RD4AD: {} images, bottleneck + decoder {} parameters", train.len(), self.params.num_parameters())?;
        let adam = AdamConfig { lr: c.lr, beta1: c.beta1, beta2: c.beta2, eps: 1e-8, weight_decay: 0.0 };
        let opt = Adam::new(self.params.trainable(), adam)?;
        let mut trainer = LossTrainer::new(&self.params, "model.", opt, c.teacher_cache_mib, |b: &Batch, cache: &mut FeatureCache| {
            let e = cache.get(&b.images, &b.indices, |x| self.encode(x))?;
            Ok(loss(&e, &self.decode(&e, true)?)?)
        });
        train_epochs(&mut trainer, &plan, run, train, opts, log)
    }

    fn trained_stores(&self) -> Vec<(&ParamStore, &'static str)> {
        vec![(&self.params, "")]
    }

    fn predict(&self, images: &Tensor) -> Result<(Tensor, Vec<f32>)> {
        let size = self.cfg.common.image_size as usize;
        let e = self.encode(images)?;
        let d = self.decode(&e, false)?;
        let per_layer = e.iter().zip(&d).map(|(a, b)| multiad_nn::resize_bilinear(&cosine_distance_map(a, &b.detach())?, size, size));
        let total = multiad_nn::sum_terms(per_layer, "layers")?;
        // Upsampling is done per layer above; this only smooths and takes the maximum.
        Ok(upsample_smooth_max(&total, size, self.cfg.common.sigma)?)
    }
}
