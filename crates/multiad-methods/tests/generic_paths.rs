//! Every registered method trains and tests through the ops' generic paths,
//! the ones a GPU runs (`multiad_nn::device::with_generic_ops`, on the CPU
//! here): same seed, same data, and the metrics agree with the CPU kernels'
//! run. Training amplifies last-bit differences (docs/reproducibility.md),
//! so "agree" is the margin another CPU model gets: each run clears the
//! method's smoke floors, and the two are within 0.1 of each other (on
//! 2026-12-07's machine the largest gap was 0.033; a broken path lands
//! near 0.5).

use std::path::PathBuf;

use candle_core::Device;
use multiad_detector::testing::{assert_smoke_floor, fit_and_test_synthetic};
use multiad_detector::TestMetrics;
use multiad_methods::{parse_file, preset_file, MethodConfig, Overrides, METHODS};
use multiad_nn::device::with_generic_ops;

fn fit_and_test(cfg: &MethodConfig) -> TestMetrics {
    let dir = tempfile::tempdir().unwrap();
    let mut det = cfg.build(&Device::Cpu).unwrap();
    let (_, m) = fit_and_test_synthetic(cfg.as_run_config(), det.as_mut(), dir.path()).unwrap_or_else(|e| panic!("{}: {e:#}", cfg.method()));
    m
}

#[test]
fn every_method_trains_and_tests_through_the_gpu_paths() {
    let experiments = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    for m in METHODS {
        let cfg = parse_file(&preset_file(&experiments, m.name, "smoke"), Overrides::default()).unwrap();
        let kernels = fit_and_test(&cfg);
        let generic = with_generic_ops(|| fit_and_test(&cfg));
        println!(
            "{}: image AUROC {:.4} (CPU kernels) / {:.4} (generic), pixel AUROC {:.4} / {:.4}",
            m.name,
            kernels.image_auroc,
            generic.image_auroc,
            kernels.pixel_auroc.unwrap_or(f64::NAN),
            generic.pixel_auroc.unwrap_or(f64::NAN)
        );
        assert_smoke_floor(m.name, &generic);
        assert!((kernels.image_auroc - generic.image_auroc).abs() <= 0.1, "{}: image AUROC {kernels:?} vs {generic:?}", m.name);
        let (a, b) = (kernels.pixel_auroc.unwrap(), generic.pixel_auroc.unwrap());
        assert!((a - b).abs() <= 0.1, "{}: pixel AUROC {a} vs {b}", m.name);
    }
}
