//! STFPM (Wang et al., "Student-Teacher Feature Pyramid Matching for Anomaly
//! Detection", BMVC 2021), as a [`Detector`].
//!
//! * teacher: ImageNet ResNet-18, layers 1-3, frozen;
//! * student: the same layout from scratch ([`student`]);
//! * loss: Σ_l (1/2 h_l w_l) Σ ‖F̂_t − F̂_s‖² with F̂ = F / ‖F‖ over channels,
//!   summed over the batch (the reference's MSE with reduction `sum`);
//! * SGD, lr 0.4, momentum 0.9, weight decay 1e-4, 100 epochs, batch 32;
//! * map: per layer ½‖F̂_t − F̂_s‖², upsampled (bilinear) to the input,
//!   multiplied over layers; no smoothing (σ = 0) as in the reference;
//!   image score = the map's maximum.

pub mod student;

use std::io::Write;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use multiad_backbones::backbone::{Backbone, BackboneKind};
use multiad_backbones::CommonConfig;
use multiad_data::{Batch, Sample};
use multiad_detector::config::positive;
use multiad_detector::epochs::{train_epochs, EpochPlan, FeatureCache, LossTrainer};
use multiad_detector::{ConfigFile, Detector, DetectorSpec, FitOptions, FitOutcome, RunDir};
use multiad_nn::resample::{gaussian_blur, resize_bilinear};
use multiad_nn::{ParamStore, Sgd, SgdConfig};
use serde::{Deserialize, Serialize};

use crate::student::Student;

pub const METHOD: &str = "stfpm";

/// STFPM's config file (`method: stfpm`); defaults are the paper's recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StfpmConfig {
    /// `method`, `preset`, `seed`, `image_size`, `backbone`, `layers`, `sigma`, `batch_size`.
    /// `seed` fixes the student's initialisation and the batch order;
    /// `layers` are the teacher levels matched (ResNet layer1-3 = 0, 1, 2),
    /// whose strides must be 4, 8, 16, ... in order; `sigma` 0 (no smoothing)
    /// is the reference's choice.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Channels of the student's stem (ResNet-18: 64).
    pub student_stem: usize,
    /// Basic blocks per student stage (ResNet-18: 2).
    pub student_blocks: usize,
    pub epochs: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Teacher features of training images kept between epochs, MiB.
    pub teacher_cache_mib: usize,
}

/// The paper's recipe: what a key left out of the config file gets.
impl Default for StfpmConfig {
    fn default() -> Self {
        Self {
            common: CommonConfig { sigma: 0.0, batch_size: 32, ..CommonConfig::new(METHOD, 256, BackboneKind::Resnet18, &[0, 1, 2]) },
            student_stem: 64,
            student_blocks: 2,
            epochs: 100,
            lr: 0.4,
            momentum: 0.9,
            weight_decay: 1e-4,
            teacher_cache_mib: 2048,
        }
    }
}

impl ConfigFile for StfpmConfig {
    const METHOD: &'static str = METHOD;

    fn validate(&self) -> std::result::Result<(), String> {
        self.common.check(METHOD)?;
        positive("lr", self.lr)?;
        if !(0.0..1.0).contains(&self.momentum) || self.weight_decay < 0.0 {
            return Err("`momentum` must be in [0, 1) and `weight_decay` >= 0".into());
        }
        if self.epochs == 0 || self.common.batch_size < 2 || self.student_stem == 0 || self.student_blocks == 0 {
            return Err("`epochs`, `student_stem`, `student_blocks` must be >= 1, `batch_size` >= 2 (batch norm)".into());
        }
        Ok(())
    }
}

pub struct Stfpm {
    pub cfg: StfpmConfig,
    teacher: Backbone,
    student: Student,
    params: ParamStore,
    device: Device,
}

/// F / ‖F‖ over channels (F.normalize(p=2, dim=1), eps 1e-12).
fn normalize(f: &Tensor) -> candle_core::Result<Tensor> {
    let n = f.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    f.broadcast_div(&n)
}

/// Σ_l (1/2 h w) Σ_{b,c,i,j} (F̂_t − F̂_s)².
pub fn loss(t: &[Tensor], s: &[Tensor]) -> candle_core::Result<Tensor> {
    let per_layer = t.iter().zip(s).map(|(a, b)| {
        let (_, _, h, w) = a.dims4()?;
        (normalize(a)? - normalize(b)?)?.sqr()?.sum_all()? * (0.5 / (h * w) as f64)
    });
    multiad_nn::sum_terms(per_layer, "layers")
}

impl Stfpm {
    pub fn new(cfg: &StfpmConfig, device: &Device) -> Result<Self> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let teacher = cfg.common.backbone.build(cfg.common.seed ^ 0x7eac_4e2d_0000_0002, device)?;
        let levels = teacher.levels();
        let mut widths = Vec::new();
        for (i, &l) in cfg.common.layers.iter().enumerate() {
            let Some(&(c, stride)) = levels.get(l) else {
                bail!("`layers`: level {l} does not exist ({} has {})", cfg.common.backbone.kind.name(), levels.len())
            };
            if stride != 4 << i {
                bail!("`layers`: the student's stage {} has stride {}, teacher level {l} has {stride}", i + 1, 4 << i);
            }
            widths.push(c);
        }
        let params = ParamStore::new(cfg.common.seed);
        let student = Student::new(&widths, cfg.student_blocks, cfg.student_stem, params.var_builder(device))?;
        Ok(Self { cfg: cfg.clone(), teacher, student, params, device: device.clone() })
    }

    fn teacher_features(&self, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let all = self.teacher.features_upto(x, self.cfg.common.layers.last().unwrap() + 1)?;
        Ok(self.cfg.common.layers.iter().map(|&l| all[l].clone()).collect())
    }
}

impl Detector for Stfpm {
    fn spec(&self) -> DetectorSpec {
        DetectorSpec::square(METHOD, self.cfg.common.image_size, self.cfg.common.batch_size.min(16), &self.device)
    }

    fn fit(&mut self, run: &RunDir, train: &[Sample], opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome> {
        let c = &self.cfg;
        let plan = EpochPlan::new("STFPM", &self.spec(), c.common.batch_size, c.epochs, c.common.seed, "`lr`");
        writeln!(log, "STFPM: {} images, student {} parameters", train.len(), self.params.num_parameters())?;
        let opt = Sgd::new(self.params.trainable(), SgdConfig { lr: c.lr, momentum: c.momentum, weight_decay: c.weight_decay });
        let mut trainer = LossTrainer::new(&self.params, "student.", opt, c.teacher_cache_mib, |b: &Batch, cache: &mut FeatureCache| {
            let t = cache.get(&b.images, &b.indices, |x| self.teacher_features(x))?;
            Ok(loss(&t, &self.student.forward(&b.images, true)?)?)
        });
        train_epochs(&mut trainer, &plan, run, train, opts, log)
    }

    fn trained_stores(&self) -> Vec<(&ParamStore, &'static str)> {
        vec![(&self.params, "student.")]
    }

    fn predict(&self, images: &Tensor) -> Result<(Tensor, Vec<f32>)> {
        let size = self.cfg.common.image_size as usize;
        let t = self.teacher_features(images)?;
        let s = self.student.forward(images, false)?;
        let mut map: Option<Tensor> = None;
        for (a, b) in t.iter().zip(&s) {
            let m = ((normalize(a)? - normalize(b)?)?.sqr()?.sum_keepdim(1)? * 0.5)?;
            let m = resize_bilinear(&m.detach(), size, size)?;
            map = Some(match map {
                Some(x) => (x * m)?,
                None => m,
            });
        }
        let map = gaussian_blur(&map.context("no layers")?, self.cfg.common.sigma)?;
        let scores = map.flatten_from(1)?.max(1)?.to_vec1::<f32>()?;
        Ok((map.squeeze(1)?, scores))
    }
}
