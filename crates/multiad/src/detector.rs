//! Multi-AD as a [`Detector`]: Algorithm 1 through the shared epoch loop,
//! then Ψ's statistics; the model file and Ψ saved and loaded.

use std::io::Write;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use multiad_data::Sample;
use multiad_detector::epochs::{train_epochs, EpochPlan};
use multiad_detector::maps::{load_stores, save_stores};
use multiad_detector::{load_fitted, write_atomic, Detector, DetectorSpec, FitOptions, FitOutcome, RunDir};
use multiad_nn::ParamStore;

use crate::anomaly_map::FusionStats;
use crate::model::MultiAd;
use crate::train::{fit_fusion, recompute_student_statistics, Trainer};

/// The fitted Multi-AD of a finished run (the registry's
/// `multiad_methods::load_trained`, typed: examples and tests reach into it).
pub fn load_trained(run: &RunDir) -> Result<MultiAd> {
    let mut model = MultiAd::build(&run.read_config()?, &Device::Cpu)?;
    load_fitted(&mut model, run)?;
    Ok(model)
}

impl Detector for MultiAd {
    fn spec(&self) -> DetectorSpec {
        DetectorSpec::square(crate::METHOD, self.cfg.image_size, self.cfg.inference.batch_size, &self.device)
    }

    /// Algorithm 1 with its per-epoch checkpoints, then Ψ from the training images.
    fn fit(&mut self, run: &RunDir, train: &[Sample], opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome> {
        let (cfg, tc) = (&self.cfg, &self.cfg.train);
        let plan = EpochPlan::new("Multi-AD", &self.spec(), tc.batch_size, tc.epochs, cfg.seed, "`train.lr` / `train.disc_lr` or `discriminator.lambda`");
        let disc = if self.disc.is_some() { format!(", discriminator {}", self.disc_params.num_parameters()) } else { String::new() };
        writeln!(
            log,
            "Multi-AD {}: {} images, {}x{}, student {} parameters{disc}",
            cfg.preset,
            train.len(),
            cfg.image_size,
            cfg.image_size,
            self.student_params.num_parameters()
        )?;
        let mut trainer = Trainer::new(self)?;
        if train_epochs(&mut trainer, &plan, run, train, opts, log)? == FitOutcome::Stopped {
            return Ok(FitOutcome::Stopped);
        }
        if self.cfg.train.precise_bn {
            recompute_student_statistics(self, train, log)?;
        }
        fit_fusion(self, train, log)?;
        Ok(FitOutcome::Finished)
    }

    fn trained_stores(&self) -> Vec<(&ParamStore, &'static str)> {
        vec![(&self.student_params, "student."), (&self.disc_params, "disc.")]
    }

    /// The networks, and Ψ's statistics in fusion.json.
    fn save(&self, run: &RunDir) -> Result<()> {
        save_stores(run, &self.trained_stores())?;
        write_atomic(&run.path("fusion.json"), serde_json::to_string_pretty(&self.fusion)?.as_bytes())
    }

    fn load(&mut self, run: &RunDir) -> Result<()> {
        load_stores(run, &self.trained_stores())?;
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

    fn training_details(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("epochs".into(), self.cfg.train.epochs.into());
        m.insert("student_parameters".into(), self.student_params.num_parameters().into());
        m.insert("discriminator_parameters".into(), self.disc_params.num_parameters().into());
        m
    }
}
