//! SimpleNet (Liu et al., "SimpleNet: A Simple Network for Image Anomaly
//! Detection and Localization", CVPR 2023), as a [`Detector`].
//!
//! * features: PatchCore's locally aware patch features of WideResNet-50-2
//!   layer2 + layer3 (3x3 neighbourhoods, pooled to 1536), as the reference
//!   code builds on PatchCore's;
//! * a feature adaptor (one linear layer), trained;
//! * anomalous features: adapted features + Gaussian noise, σ = 0.015;
//! * discriminator: linear (hidden 1024) + batch norm + LeakyReLU(0.2) + linear;
//! * loss: truncated L1, mean(max(0, th − D(real))) + mean(max(0, th + D(fake))), th = 0.5;
//! * Adam: adaptor lr 1e-4, discriminator lr 2e-4 with weight decay 1e-5; 160 epochs;
//! * score: −D(adapted feature) per patch; map upsampled (bilinear),
//!   Gaussian σ = 4; image score = the largest patch score.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Device, ModuleT, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use multiad_backbones::backbone::BackboneKind;
use multiad_backbones::patch_features::PatchFeatures;
use multiad_backbones::CommonConfig;
use multiad_data::{Batch, Sample};
use multiad_detector::epochs::{train_epochs, EpochModel, EpochPlan, FeatureCache, StepLosses};
use multiad_detector::maps::upsample_smooth_max;
use multiad_detector::{ConfigFile, Detector, DetectorSpec, FitOptions, FitOutcome, RunDir};
use multiad_nn::BatchNorm;
use multiad_nn::{Adam, AdamConfig, ParamStore};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

pub const METHOD: &str = "simplenet";

/// SimpleNet's config file (`method: simplenet`); defaults are the paper's recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleNetConfig {
    /// `method`, `preset`, `seed`, `image_size`, `backbone`, `layers`, `sigma`, `batch_size`.
    /// `seed` fixes initialisation, batch order and the noise.
    #[serde(flatten)]
    pub common: CommonConfig,
    pub patch_size: usize,
    pub pretrain_dim: usize,
    /// Feature dimension (the adaptor keeps it).
    pub target_dim: usize,
    /// Hidden width of the discriminator.
    pub hidden: usize,
    /// σ of the Gaussian noise that makes anomalous features.
    pub noise_std: f64,
    /// th of the truncated L1 loss.
    pub margin: f64,
    pub epochs: usize,
    pub adaptor_lr: f64,
    pub disc_lr: f64,
    pub disc_weight_decay: f64,
    /// Patch features of training images kept between epochs, MiB.
    pub feature_cache_mib: usize,
}

/// The paper's recipe: what a key left out of the config file gets.
impl Default for SimpleNetConfig {
    fn default() -> Self {
        Self {
            common: CommonConfig::new(METHOD, 256, BackboneKind::WideResnet50_2, &[1, 2]),
            patch_size: 3,
            pretrain_dim: 1536,
            target_dim: 1536,
            hidden: 1024,
            noise_std: 0.015,
            margin: 0.5,
            epochs: 160,
            adaptor_lr: 1e-4,
            disc_lr: 2e-4,
            disc_weight_decay: 1e-5,
            feature_cache_mib: 4096,
        }
    }
}

impl ConfigFile for SimpleNetConfig {
    const METHOD: &'static str = METHOD;

    fn validate(&self) -> std::result::Result<(), String> {
        self.common.check(METHOD)?;
        if self.patch_size % 2 == 0 || self.pretrain_dim == 0 || self.target_dim == 0 || self.hidden == 0 {
            return Err("`patch_size` must be odd; `pretrain_dim`, `target_dim`, `hidden` positive".into());
        }
        for (k, v) in [("noise_std", self.noise_std), ("adaptor_lr", self.adaptor_lr), ("disc_lr", self.disc_lr)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(format!("`{k}` must be positive, got {v}"));
            }
        }
        if self.margin < 0.0 || self.disc_weight_decay < 0.0 || self.epochs == 0 {
            return Err("`margin` and `disc_weight_decay` must be >= 0, `epochs` >= 1".into());
        }
        Ok(())
    }
}

/// Xavier-normal weights (the reference's `init_weight`), zero biases.
fn linear(cin: usize, cout: usize, bias: bool, vb: VarBuilder) -> candle_core::Result<Linear> {
    let std = (2.0 / (cin + cout) as f64).sqrt();
    let w = vb.get_with_hints((cout, cin), "weight", candle_nn::Init::Randn { mean: 0.0, stdev: std })?;
    let b = if bias { Some(vb.get_with_hints(cout, "bias", candle_nn::Init::Const(0.0))?) } else { None };
    Ok(Linear::new(w, b))
}

struct Discriminator {
    fc1: Linear,
    bn: BatchNorm,
    fc2: Linear,
}

impl Discriminator {
    fn new(d: usize, hidden: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            fc1: linear(d, hidden, true, vb.pp("body.block1.0"))?,
            bn: BatchNorm::torch_default(hidden, vb.pp("body.block1.1"))?,
            fc2: linear(hidden, 1, false, vb.pp("tail"))?,
        })
    }

    /// (N, d) -> (N)
    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let h = self.bn.forward_t(&self.fc1.forward(x)?, train)?;
        let h = candle_nn::ops::leaky_relu(&h, 0.2)?;
        self.fc2.forward(&h)?.squeeze(1)
    }
}

pub struct SimpleNet {
    pub cfg: SimpleNetConfig,
    features: PatchFeatures,
    adaptor: Linear,
    disc: Discriminator,
    adaptor_params: ParamStore,
    disc_params: ParamStore,
    device: Device,
}

impl SimpleNet {
    pub fn new(cfg: &SimpleNetConfig, device: &Device) -> Result<Self> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let backbone = cfg.common.backbone.build(cfg.common.seed ^ 0x7eac_4e2d_0000_0004, device)?;
        let features = PatchFeatures::new(backbone, &cfg.common.layers, cfg.patch_size, cfg.pretrain_dim, cfg.target_dim)?;
        let adaptor_params = ParamStore::new(cfg.common.seed);
        let disc_params = ParamStore::new(cfg.common.seed ^ 0xd15c_0000_0000_0005);
        let d = cfg.target_dim;
        let adaptor = linear(d, d, true, adaptor_params.var_builder(device).pp("pre_projection.layers.0.fc"))?;
        let disc = Discriminator::new(d, cfg.hidden, disc_params.var_builder(device).pp("discriminator"))?;
        Ok(Self { cfg: cfg.clone(), features, adaptor, disc, adaptor_params, disc_params, device: device.clone() })
    }

    /// Patch features of a batch as (B, h·w, d), and the grid.
    fn patch_tensor(&self, x: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let p = self.features.extract(x)?;
        let (h, w) = p.grid;
        Ok((Tensor::from_vec(p.features, (p.batch, h * w, self.cfg.target_dim), &self.device)?, p.grid))
    }

    fn weights(&self) -> HashMap<String, Tensor> {
        let mut t = self.adaptor_params.tensors();
        t.extend(self.disc_params.tensors());
        t
    }
}

struct Trainer<'a> {
    det: &'a SimpleNet,
    opt_a: Adam,
    opt_d: Adam,
    cache: FeatureCache,
}

impl EpochModel for Trainer<'_> {
    fn step(&mut self, b: &Batch) -> Result<StepLosses> {
        let c = &self.det.cfg;
        let f = self.cache.get(&b.images, &b.indices, |x| Ok(vec![self.det.patch_tensor(x).map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?.0]))?;
        let f = f[0].flatten_to(1)?; // (B·P, d)
        let real = self.det.adaptor.forward(&f)?;
        // The noise of step k depends on the seed and k only (candle's own
        // random numbers cannot be seeded), so a resumed run draws the same.
        let k = self.opt_d.steps_taken();
        let mut rng = ChaCha8Rng::seed_from_u64(c.common.seed ^ 0x5eed_0000_0000_0000 ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let normal = Normal::new(0.0f32, c.noise_std as f32)?;
        let noise: Vec<f32> = (0..real.elem_count()).map(|_| normal.sample(&mut rng)).collect();
        let fake = (&real + Tensor::from_vec(noise, real.dims(), &self.det.device)?)?;
        let n = real.dim(0)?;
        let scores = self.det.disc.forward(&Tensor::cat(&[&real, &fake], 0)?, true)?;
        let (sr, sf) = (scores.narrow(0, 0, n)?, scores.narrow(0, n, n)?);
        let loss = ((c.margin - sr)?.relu()?.mean_all()? + (sf + c.margin)?.relu()?.mean_all()?)?;
        let v = loss.to_scalar::<f32>()? as f64;
        if v.is_finite() {
            let g = loss.backward()?;
            self.opt_a.step(&g)?;
            self.opt_d.step(&g)?;
        }
        Ok(v.into())
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut t = self.det.weights();
        t.extend(self.opt_a.state("opt_a.")?);
        t.extend(self.opt_d.state("opt_d.")?);
        Ok(t)
    }

    fn restore(&mut self, t: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        self.det.adaptor_params.load_from(t, "", path)?;
        self.det.disc_params.load_from(t, "", path)?;
        self.opt_a.load_state(t, "opt_a.").with_context(|| format!("{}", path.display()))?;
        self.opt_d.load_state(t, "opt_d.").with_context(|| format!("{}", path.display()))?;
        Ok(())
    }
}

impl Detector for SimpleNet {
    fn spec(&self) -> DetectorSpec {
        DetectorSpec::square(METHOD, self.cfg.common.image_size, self.cfg.common.batch_size, &self.device)
    }

    fn fit(&mut self, run: &RunDir, train: &[Sample], opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome> {
        let c = &self.cfg;
        let plan = EpochPlan::new("SimpleNet", &self.spec(), c.common.batch_size, c.epochs, c.common.seed, "`disc_lr`");
        writeln!(
            log,
            "SimpleNet: {} images, adaptor {} + discriminator {} parameters",
            train.len(),
            self.adaptor_params.num_parameters(),
            self.disc_params.num_parameters()
        )?;
        // The reference: AdamW for the adaptor, Adam with L2 weight decay for
        // the discriminator; our Adam's decay is decoupled for both (see docs/methods.md).
        let opt_a = Adam::new(self.adaptor_params.trainable(), AdamConfig { lr: c.adaptor_lr, weight_decay: 0.01, ..Default::default() })?;
        let opt_d = Adam::new(self.disc_params.trainable(), AdamConfig { lr: c.disc_lr, weight_decay: c.disc_weight_decay, ..Default::default() })?;
        let mut trainer = Trainer { det: self, opt_a, opt_d, cache: FeatureCache::new(c.feature_cache_mib) };
        train_epochs(&mut trainer, &plan, run, train, opts, log)
    }

    fn trained_stores(&self) -> Vec<(&ParamStore, &'static str)> {
        vec![(&self.adaptor_params, ""), (&self.disc_params, "")]
    }

    fn predict(&self, images: &Tensor) -> Result<(Tensor, Vec<f32>)> {
        let (f, (h, w)) = self.patch_tensor(images)?;
        let b = f.dim(0)?;
        let s = self.disc.forward(&self.adaptor.forward(&f.flatten_to(1)?)?, false)?.neg()?; // −D
        let patch = s.reshape((b, 1, h, w))?;
        let scores = patch.flatten_from(1)?.max(1)?.to_vec1::<f32>()?;
        let (maps, _) = upsample_smooth_max(&patch, self.cfg.common.image_size as usize, self.cfg.common.sigma)?;
        Ok((maps, scores))
    }
}
