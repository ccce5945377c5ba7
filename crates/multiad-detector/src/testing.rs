//! Helpers for the methods' own tests: the same synthetic category and the
//! same fit -> test path for every detector.

use std::path::Path;

use anyhow::Result;
use multiad_data::synth::{generate, SynthConfig};

use crate::{test, train_run, DataRef, Detector, FitOptions, RunConfig, RunDir, TestMetrics};

/// A 64x64 synthetic category (48 normal training images, 16 normal and
/// 24 defective test images) written under `dir`.
pub fn synthetic_category(dir: &Path, seed: u64) -> Result<DataRef> {
    let cfg = SynthConfig { category: "tiles".into(), seed, size: 64, train: 48, test_good: 16, test_per_defect: 8 };
    generate(dir, &cfg)?;
    DataRef::from_arg(&dir.join("tiles"), Path::new("."))
}

/// Creates a run for `cfg` in `dir/run` on a synthetic category, fits `det`
/// and tests it (maps saved).
pub fn fit_and_test_synthetic(cfg: &dyn RunConfig, det: &mut dyn Detector, dir: &Path) -> Result<(RunDir, TestMetrics)> {
    let data = synthetic_category(&dir.join("data"), 0)?;
    let run = RunDir::create(&dir.join("run"), cfg, &data)?;
    train_run(det, &run, FitOptions::default(), &mut std::io::sink())?;
    let m = test(det, &run, true, &mut std::io::sink())?;
    Ok((run, m))
}
