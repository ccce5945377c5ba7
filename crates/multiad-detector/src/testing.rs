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
/// and tests it (maps, panels and curves saved).
pub fn fit_and_test_synthetic(cfg: &dyn RunConfig, det: &mut dyn Detector, dir: &Path) -> Result<(RunDir, TestMetrics)> {
    let data = synthetic_category(&dir.join("data"), 0)?;
    let run = RunDir::create(&dir.join("run"), cfg, &data)?;
    train_run(det, &run, FitOptions::default(), &mut std::io::sink())?;
    let opts = crate::TestOptions { save_maps: true, save_images: true, threshold: None };
    let m = test(det, &run, &opts, &mut std::io::sink())?;
    Ok((run, m))
}

/// The floors (image AUROC, pixel AUROC) of `method`'s smoke test, from
/// `smoke_floors.txt`: below the minimum over ten model seeds, so that they
/// hold on any x86-64 machine (docs/reproducibility.md).
pub fn smoke_floor(method: &str) -> (f64, f64) {
    let table = include_str!("../smoke_floors.txt");
    for line in table.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f[0] == method {
            return (f[1].parse().expect("image floor"), f[2].parse().expect("pixel floor"));
        }
    }
    panic!("smoke_floors.txt has no line for {method}");
}

/// Asserts `m` clears `method`'s smoke floors.
pub fn assert_smoke_floor(method: &str, m: &TestMetrics) {
    let (image, pixel) = smoke_floor(method);
    assert!(m.image_auroc > image, "{method}: image AUROC {} <= floor {image}", m.image_auroc);
    let p = m.pixel_auroc.expect("the synthetic set has masks");
    assert!(p > pixel, "{method}: pixel AUROC {p} <= floor {pixel}");
}
