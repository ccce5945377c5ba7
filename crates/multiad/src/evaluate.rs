//! Multi-AD as a [`Detector`]: loading a trained run, and `multiad test` /
//! `multiad predict` through the protocol every method shares.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use multiad_data::{ImageConfig, Sample};
use multiad_detector::{write_atomic, Detector, FitOptions, FitOutcome, RunDir};

pub use multiad_detector::evaluate::{output_names, peak_rss_mib, write_npy, TestMetrics};

use crate::anomaly_map::FusionStats;
use crate::config::RunDirConfig;
use crate::model::MultiAd;
use crate::train::{image_config, TrainOptions};

/// Loads a trained run's networks and Ψ.
pub fn load_trained(run: &RunDir) -> Result<MultiAd> {
    if !run.is_trained() {
        bail!("{}: training has not finished (no training.json); run `multiad train --resume --out {}`", run.dir.display(), run.dir.display());
    }
    let cfg = run.config()?;
    let mut model = MultiAd::build(&cfg, &Device::Cpu)?;
    model.load(run)?;
    Ok(model)
}

/// Tests a trained Multi-AD run (see [`multiad_detector::test`]).
pub fn test(run: &RunDir, save_maps: bool, log: &mut dyn Write) -> Result<TestMetrics> {
    let model = load_trained(run)?;
    let opts = multiad_detector::TestOptions { save_maps, ..Default::default() };
    multiad_detector::test(&model, run, &opts, log)
}

/// Heat maps and scores for new images (see [`multiad_detector::predict`]).
pub fn predict(run: &RunDir, images: &[PathBuf], out: &Path, log: &mut dyn Write) -> Result<Vec<(PathBuf, f32)>> {
    let model = load_trained(run)?;
    multiad_detector::predict(&model, run, images, out, None, log)
}

impl Detector for MultiAd {
    fn method(&self) -> &'static str {
        crate::METHOD
    }

    fn image_config(&self) -> ImageConfig {
        image_config(self.cfg.image_size)
    }

    fn batch_size(&self) -> usize {
        self.cfg.inference.batch_size
    }

    /// Algorithm 1 with its per-epoch checkpoints, then Ψ; the run directory
    /// is the source of truth (config.yaml), so the trained model replaces `self`.
    fn fit(&mut self, run: &RunDir, _train: &[Sample], opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome> {
        let topts = TrainOptions { resume: opts.resume, stop_after_epochs: opts.stop_after_epochs };
        match crate::train::train(run, topts, log)? {
            Some(model) => {
                *self = model;
                Ok(FitOutcome::Finished)
            }
            None => Ok(FitOutcome::Stopped),
        }
    }

    fn save(&self, run: &RunDir) -> Result<()> {
        multiad_detector::save_tensors_atomic(&self.weights(), &run.path("model.safetensors"))?;
        write_atomic(&run.path("fusion.json"), serde_json::to_string_pretty(&self.fusion)?.as_bytes())
    }

    fn load(&mut self, run: &RunDir) -> Result<()> {
        self.load_weights_file(&run.path("model.safetensors"))?;
        let p = run.path("fusion.json");
        let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        self.fusion = serde_json::from_str::<Option<FusionStats>>(&text).with_context(|| format!("{}", p.display()))?;
        Ok(())
    }

    fn predict(&self, images: &Tensor) -> Result<(Tensor, Vec<f32>)> {
        MultiAd::predict(self, images)
    }

    /// Twice the largest training-image score (Ψ's statistics), 1 without Ψ.
    fn heat_scale(&self) -> Option<f32> {
        Some(self.fusion.as_ref().map(|f| f.train_max_score * 2.0).filter(|s| *s > 0.0).unwrap_or(1.0) as f32)
    }
}
