//! Helpers for the methods' own tests: the shipped presets, the same
//! synthetic category, the same fit -> test -> reload check and the same
//! resumption check for every detector.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use multiad_data::synth::{generate, SynthConfig};

use crate::history::read_history;
use crate::{preset_file, test, train_run, ConfigFile, DataRef, Detector, FitOptions, FitOutcome, RunConfig, RunDir, TestMetrics};

/// The shipped preset `name` (`smoke`, `cpu`, `paper`) of `C`'s method.
pub fn method_preset<C: ConfigFile>(name: &str) -> C {
    let experiments = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    C::from_yaml_file(&preset_file(&experiments, C::METHOD, name)).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Each `(extra, key)`: `base` plus the line `extra`, parsed as the file
/// `file`, is refused with a message that names the file and `key`.
pub fn assert_bad_configs_name_the_key<C: ConfigFile>(file: &str, base: &str, cases: &[(&str, &str)]) {
    for (extra, key) in cases {
        let e = match C::from_yaml_str(&format!("{base}{extra}"), Path::new(file)) {
            Ok(_) => panic!("{extra:?} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(file) && e.contains(key), "{extra:?}: {e}");
    }
}

/// The config `C`'s file `yaml` parses, but `build` refuses it with a message
/// that contains `needle` (a choice that only the model can judge, such as
/// layers whose strides a student cannot follow).
pub fn assert_build_refuses<C: ConfigFile, D>(yaml: &str, build: impl Fn(&C, &Device) -> Result<D>, needle: &str) {
    let file = Path::new("refused.yaml");
    let cfg = C::from_yaml_str(yaml, file).unwrap_or_else(|e| panic!("{yaml:?} should parse: {e:#}"));
    match build(&cfg, &Device::Cpu) {
        Ok(_) => panic!("{yaml:?} was built"),
        Err(e) => assert!(e.to_string().contains(needle), "{yaml:?}: {e}"),
    }
}

/// The tests every method's crate runs, written by one call in its `tests/`
/// (docs/methods.md, step 6):
/// - `smoke_preset_separates_synthetic_defects_and_reloads`:
///   [`smoke_fit_test_reload`]; for methods trained in epochs, a history line
///   for each epoch; then the method's own `smoke_checks` on what it left, if
///   given;
/// - `bad_configs_name_the_key`: each `(line, key)` of `bad_keys`, added to
///   the method's name and the `backbone` (for methods that have one), is
///   refused, naming the file and the key; so is another method's name;
/// - `configs_the_model_cannot_build_are_refused`: each `(line, needle)` of
///   `refused_by_build` parses, but the detector's constructor refuses it;
/// - `an_interrupted_fit_resumes_to_the_same_weights` (methods trained in
///   epochs, with `resume_epochs`): the smoke preset stopped after epoch 2
///   and resumed ends bit-identical to an uninterrupted fit.
#[macro_export]
macro_rules! method_tests {
    (
        build: $build:path, config: $config:ident, $(backbone: $backbone:literal,)?
        $(smoke_checks: $smoke_checks:path,)?
        bad_keys: [$(($line:expr, $key:expr)),* $(,)?],
        $(refused_by_build: [$(($r_line:expr, $needle:expr)),* $(,)?],)?
        $(resume_epochs: $epochs:expr,)?
    ) => {
        #[test]
        fn smoke_preset_separates_synthetic_defects_and_reloads() {
            let _smoke = $crate::testing::smoke_fit_test_reload($build).unwrap();
            $(
            let _ = $epochs; // trained in epochs
            assert_eq!($crate::history::read_history(&_smoke.run).unwrap().len(), _smoke.cfg.epochs);
            )?
            $($smoke_checks(_smoke);)?
        }

        /// The config file's name, and its lines without the method's name
        /// and with it.
        fn method_file_and_base() -> (String, String, String) {
            let method = <$config as $crate::ConfigFile>::METHOD;
            let backbone = String::new() $(+ &format!("backbone: {{kind: {}}}\n", $backbone))?;
            (format!("{method}.yaml"), backbone.clone(), format!("method: {method}\n{backbone}"))
        }

        #[test]
        fn bad_configs_name_the_key() {
            let (file, unnamed, base) = method_file_and_base();
            $crate::testing::assert_bad_configs_name_the_key::<$config>(&file, &base, &[$(($line, $key)),*]);
            let other = if <$config as $crate::ConfigFile>::METHOD == "padim" { "patchcore" } else { "padim" };
            $crate::testing::assert_bad_configs_name_the_key::<$config>(&file, &unnamed, &[(&format!("method: {other}\n"), "method")]);
        }

        $(
        #[test]
        fn configs_the_model_cannot_build_are_refused() {
            let (_, _, base) = method_file_and_base();
            $($crate::testing::assert_build_refuses::<$config, _>(&format!("{base}{}", $r_line), $build, $needle);)*
        }
        )?

        $(
        #[test]
        fn an_interrupted_fit_resumes_to_the_same_weights() {
            let cfg = $config { epochs: $epochs, ..$crate::testing::method_preset::<$config>("smoke") };
            $crate::testing::assert_resume_matches(&cfg, $build, 0.0).unwrap();
        }
        )?
    };
}

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

/// What [`smoke_fit_test_reload`] leaves for method-specific checks.
pub struct SmokeRun<C, D> {
    /// Holds the data and the run; removed when dropped.
    pub dir: tempfile::TempDir,
    pub cfg: C,
    pub det: D,
    pub run: RunDir,
    pub metrics: TestMetrics,
}

/// Every method's smoke test: `C`'s smoke preset, built by `build`, fitted
/// and tested on the synthetic category (in a temporary directory), clears the method's
/// floors, and a detector built afresh and loaded from the run gives
/// bit-identical maps and scores.
pub fn smoke_fit_test_reload<C: ConfigFile, D: Detector>(build: impl Fn(&C, &Device) -> Result<D>) -> Result<SmokeRun<C, D>> {
    let dir = tempfile::tempdir()?;
    let cfg: C = method_preset("smoke");
    let mut det = build(&cfg, &Device::Cpu)?;
    let (run, metrics) = fit_and_test_synthetic(&cfg, &mut det, dir.path())?;
    eprintln!("{} smoke: {metrics:?}", C::METHOD);
    assert_smoke_floor(C::METHOD, &metrics);
    let image = det.image_config();
    let (h, w) = (image.height as usize, image.width as usize);
    let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &Device::Cpu)?;
    let (a, sa) = det.predict(&x)?;
    let mut back = build(&cfg, &Device::Cpu)?;
    back.load(&run)?;
    let (b, sb) = back.predict(&x)?;
    assert_eq!(sa, sb, "{}: scores differ after reloading", C::METHOD);
    assert_eq!(a.dims(), &[2, h, w]);
    assert_eq!(a.flatten_all()?.to_vec1::<f32>()?, b.flatten_all()?.to_vec1::<f32>()?, "{}: maps differ after reloading", C::METHOD);
    Ok(SmokeRun { dir, cfg, det, run, metrics })
}

/// A `smoke_checks` for [`method_tests!`]: over the smoke fit, the last
/// epoch's `loss_g` is below the first's.
pub fn assert_loss_fell<C, D>(smoke: SmokeRun<C, D>) {
    let h = read_history(&smoke.run).unwrap();
    assert!(h.len() >= 2 && h.last().unwrap().loss_g < h[0].loss_g, "the loss did not fall: {h:?}");
}

/// Resumption: `cfg` (3 epochs or more) fitted without a stop, and fitted
/// again stopped after epoch 2 and resumed, end with the same model file
/// (every value within `tolerance`; 0 = bit-identical) and history.
pub fn assert_resume_matches<C: ConfigFile, D: Detector>(cfg: &C, build: impl Fn(&C, &Device) -> Result<D>, tolerance: f32) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let data = synthetic_category(&dir.join("data"), 3)?;
    let quiet = &mut std::io::sink();
    let a = RunDir::create(&dir.join("a"), cfg, &data)?;
    train_run(&mut build(cfg, &Device::Cpu)?, &a, FitOptions::default(), quiet)?;
    let b = RunDir::create(&dir.join("b"), cfg, &data)?;
    let stop = FitOptions { resume: false, stop_after_epochs: Some(2) };
    assert_eq!(train_run(&mut build(cfg, &Device::Cpu)?, &b, stop, quiet)?, FitOutcome::Stopped);
    assert!(!b.is_trained(), "a stopped fit must not look finished");
    train_run(&mut build(cfg, &Device::Cpu)?, &b, FitOptions { resume: true, stop_after_epochs: None }, quiet)?;
    let (wa, wb) = (model_values(&a)?, model_values(&b)?);
    assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>(), "the resumed model has other tensors");
    for (k, va) in &wa {
        let diff = va.iter().zip(&wb[k]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff <= tolerance, "tensor {k} differs by {diff} after resuming");
    }
    let (ha, hb) = (read_history(&a)?, read_history(&b)?);
    assert!(ha.len() >= 3 && ha.len() == hb.len(), "history lengths {} and {}", ha.len(), hb.len());
    for (x, y) in ha.iter().zip(&hb) {
        let close = |p: f64, q: f64| (p - q).abs() <= tolerance as f64 * 10.0;
        assert!(close(x.loss_g, y.loss_g) && close(x.loss_s, y.loss_s), "epoch {}: {x:?} vs {y:?}", x.epoch);
    }
    Ok(())
}

/// A run's model.safetensors, each tensor's values by name.
fn model_values(run: &RunDir) -> Result<BTreeMap<String, Vec<f32>>> {
    let path = run.path("model.safetensors");
    let t = candle_core::safetensors::load(&path, &Device::Cpu).with_context(|| format!("{}", path.display()))?;
    t.into_iter().map(|(k, v)| Ok((k, v.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?))).collect()
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
