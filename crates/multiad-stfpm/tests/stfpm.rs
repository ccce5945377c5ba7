//! STFPM at the smoke scale: separates synthetic defects; an interrupted
//! fit resumes to the weights of an uninterrupted one; bad configs are named.

use std::path::Path;

use candle_core::Device;
use multiad_detector::history::read_history;
use multiad_detector::testing::{assert_bad_configs_name_the_key, assert_resume_matches, method_preset, smoke_fit_test_reload};
use multiad_detector::ConfigFile;
use multiad_stfpm::{Stfpm, StfpmConfig};

#[test]
fn smoke_preset_separates_synthetic_defects_and_reloads() {
    let smoke = smoke_fit_test_reload(Stfpm::new).unwrap();
    let (cfg, run) = (smoke.cfg, smoke.run);
    let h = read_history(&run).unwrap();
    assert_eq!(h.len(), cfg.epochs);
    assert!(h.last().unwrap().loss_g < h[0].loss_g, "the loss did not fall: {h:?}");
}

#[test]
fn an_interrupted_fit_resumes_to_the_same_weights() {
    let cfg = StfpmConfig { epochs: 4, ..method_preset::<StfpmConfig>("smoke") };
    assert_resume_matches(&cfg, Stfpm::new, 0.0).unwrap();
}

#[test]
fn bad_configs_name_the_key() {
    let base = "method: stfpm\nbackbone: {kind: random_resnet18}\n";
    let cases = [("lr: -0.4\n", "lr"), ("batch_size: 1\n", "batch_size"), ("momentum: 1.5\n", "momentum"), ("epoch: 3\n", "epoch")];
    assert_bad_configs_name_the_key::<StfpmConfig>("stfpm.yaml", base, &cases);
    // Levels whose strides do not step 4, 8, 16 cannot be matched by the student.
    let skip = StfpmConfig::from_yaml_str(&format!("{base}layers: [0, 2]\n"), Path::new("stfpm.yaml")).unwrap();
    let e = Stfpm::new(&skip, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("stride"), "{e}");
}
