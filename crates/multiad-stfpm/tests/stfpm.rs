//! STFPM at the smoke scale: separates synthetic defects; an interrupted
//! fit resumes to the weights of an uninterrupted one; bad configs are named.

use std::path::{Path, PathBuf};

use candle_core::Device;
use multiad_detector::testing::{fit_and_test_synthetic, synthetic_category};
use multiad_detector::{history::read_history, train_run, FitOptions, FitOutcome, RunDir};
use multiad_stfpm::{Stfpm, StfpmConfig};

fn preset(name: &str) -> StfpmConfig {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../experiments/methods/stfpm/{name}.yaml"));
    StfpmConfig::from_yaml_str(&std::fs::read_to_string(&p).unwrap(), &p).unwrap()
}

#[test]
fn smoke_preset_separates_synthetic_defects() {
    let t = tempfile::tempdir().unwrap();
    let cfg = preset("smoke");
    let mut det = Stfpm::new(&cfg, &Device::Cpu).unwrap();
    let (run, m) = fit_and_test_synthetic(&cfg, &mut det, t.path()).unwrap();
    eprintln!("STFPM smoke: {m:?}");
    multiad_detector::testing::assert_smoke_floor("stfpm", &m);
    let h = read_history(&run).unwrap();
    assert_eq!(h.len(), cfg.epochs);
    assert!(h.last().unwrap().loss_g < h[0].loss_g, "the loss did not fall: {h:?}");
}

fn model_bytes(run: &RunDir) -> Vec<f32> {
    let t = candle_core::safetensors::load(run.path("model.safetensors"), &Device::Cpu).unwrap();
    let mut keys: Vec<&String> = t.keys().collect();
    keys.sort();
    keys.iter().flat_map(|k| t[*k].flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
}

#[test]
fn an_interrupted_fit_resumes_to_the_same_weights() {
    let t = tempfile::tempdir().unwrap();
    let data = synthetic_category(&t.path().join("data"), 3).unwrap();
    let cfg = StfpmConfig { epochs: 4, ..preset("smoke") };
    let quiet = &mut std::io::sink();
    let a = RunDir::create(&t.path().join("a"), &cfg, &data).unwrap();
    train_run(&mut Stfpm::new(&cfg, &Device::Cpu).unwrap(), &a, FitOptions::default(), quiet).unwrap();
    let b = RunDir::create(&t.path().join("b"), &cfg, &data).unwrap();
    let stop = FitOptions { resume: false, stop_after_epochs: Some(2) };
    assert_eq!(train_run(&mut Stfpm::new(&cfg, &Device::Cpu).unwrap(), &b, stop, quiet).unwrap(), FitOutcome::Stopped);
    assert!(!b.is_trained());
    let resume = FitOptions { resume: true, stop_after_epochs: None };
    train_run(&mut Stfpm::new(&cfg, &Device::Cpu).unwrap(), &b, resume, quiet).unwrap();
    let (wa, wb) = (model_bytes(&a), model_bytes(&b));
    let diff = wa.iter().zip(&wb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-5, "resumed weights differ by {diff}");
    let (ha, hb) = (read_history(&a).unwrap(), read_history(&b).unwrap());
    assert_eq!(ha.len(), 4);
    assert_eq!(hb.len(), 4);
    assert!((ha[3].loss_g - hb[3].loss_g).abs() < 1e-4);
}

#[test]
fn bad_configs_name_the_key() {
    let p = Path::new("stfpm.yaml");
    let base = "method: stfpm\nbackbone: {kind: random_resnet18}\n";
    for (extra, key) in [("lr: -0.4\n", "lr"), ("batch_size: 1\n", "batch_size"), ("momentum: 1.5\n", "momentum"), ("epoch: 3\n", "epoch")] {
        let e = StfpmConfig::from_yaml_str(&format!("{base}{extra}"), p).err().unwrap().to_string();
        assert!(e.contains("stfpm.yaml") && e.contains(key), "{extra:?}: {e}");
    }
    // Levels whose strides do not step 4, 8, 16 cannot be matched by the student.
    let skip = StfpmConfig::from_yaml_str(&format!("{base}layers: [0, 2]\n"), p).unwrap();
    let e = Stfpm::new(&skip, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("stride"), "{e}");
}
