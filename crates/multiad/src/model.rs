//! The assembled networks of one run, and inference (Eqs 13-15).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use multiad_detector::epochs::prefixed;
use multiad_nn::ParamStore;

use crate::anomaly_map::{fuse, image_scores, layer_maps, FusionStats};
use crate::config::{ExperimentConfig, FramedNetworks, StudentConfig, StudentLayout};
use crate::discriminator::Discriminator;
use crate::student::Student;
use crate::teacher::Teacher;

pub struct MultiAd {
    pub cfg: ExperimentConfig,
    pub teacher: Teacher,
    pub student: Student,
    pub student_params: ParamStore,
    pub disc: Option<Discriminator>,
    pub disc_params: ParamStore,
    pub fusion: Option<FusionStats>,
    pub device: Device,
}

/// Seeds of the independent random streams of a run.
pub(crate) mod streams {
    pub const DISCRIMINATOR: u64 = 0xd15c_0000_0000_0001;
    pub const DROPOUT: u64 = 0xd409_0000_0000_0002;
    pub const FLIPS: u64 = 0xf119_0000_0000_0003;
    pub const ZOOM: u64 = 0x2004_0000_0000_0004;
}

impl MultiAd {
    /// Builds every network, the student and discriminator freshly
    /// initialised from the config's seed.
    pub fn build(cfg: &ExperimentConfig, device: &Device) -> Result<Self> {
        let teacher = Teacher::build(cfg, device)?;
        let student_params = ParamStore::new(cfg.seed);
        let scfg = StudentConfig { padding: cfg.student_padding(), ..cfg.student.clone() };
        let student_frame = match cfg.reflect_pad_networks {
            FramedNetworks::Both => cfg.reflect_pad as usize,
            FramedNetworks::Teacher => 0,
        };
        let student = match scfg.layout {
            StudentLayout::Bottleneck => Student::new(&scfg, teacher.channels(), student_params.var_builder(device))?,
            StudentLayout::Mbconv => Student::new_mbconv(&scfg, teacher.layers(), student_params.var_builder(device))?,
        }
        .framed(student_frame);
        let disc_params = ParamStore::new(cfg.seed ^ streams::DISCRIMINATOR);
        let disc = if cfg.discriminator.enabled {
            let deepest = cfg.image_size as usize / 32;
            Some(Discriminator::new(&cfg.discriminator, teacher.channels(), deepest, disc_params.var_builder(device))?)
        } else {
            None
        };
        Ok(Self { cfg: cfg.clone(), teacher, student, student_params, disc, disc_params, fusion: None, device: device.clone() })
    }

    /// Student and discriminator tensors, prefixed `student.` / `disc.`.
    pub fn weights(&self) -> HashMap<String, Tensor> {
        let mut out = prefixed(&self.student_params, "student.");
        out.extend(prefixed(&self.disc_params, "disc."));
        out
    }

    pub fn load_weights(&self, t: &HashMap<String, Tensor>, source: &Path) -> Result<()> {
        self.student_params.load_from(t, "student.", source)?;
        self.disc_params.load_from(t, "disc.", source)?;
        Ok(())
    }

    /// Per-layer maps (Eq 13) for a batch, student in inference mode. The
    /// maps are detached: kept with their graph they would hold every
    /// activation of the forward pass (fitting Ψ over 762 images that way
    /// once took 23 GiB).
    pub fn layer_maps(&self, images: &Tensor) -> Result<Vec<Tensor>> {
        let t = self.teacher.forward(images)?;
        let s = self.student.forward(images, false)?;
        Ok(layer_maps(&t, &s)?.into_iter().map(|m| m.detach()).collect())
    }

    /// Final anomaly maps (B, H, W) and image scores of a batch.
    pub fn predict(&self, images: &Tensor) -> Result<(Tensor, Vec<f32>)> {
        let (_, _, h, w) = images.dims4()?;
        let maps = self.layer_maps(images)?;
        let stats = if self.cfg.inference.mff { Some(self.fusion.as_ref().context("MFF is on but Ψ has not been fitted (no fusion.json)")?) } else { None };
        let fused = fuse(&maps, stats, self.cfg.cell_grid(), h, w, self.cfg.inference.sigma)?;
        let scores = image_scores(&fused)?;
        Ok((fused.squeeze(1)?, scores))
    }
}
