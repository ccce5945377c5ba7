//! SimpleNet at the smoke scale: separates synthetic defects and reloads;
//! bad configs are named.

use multiad_detector::history::read_history;
use multiad_detector::testing::{assert_bad_configs_name_the_key, assert_resume_matches, method_preset, smoke_fit_test_reload};
use multiad_simplenet::{SimpleNet, SimpleNetConfig};

#[test]
fn smoke_preset_separates_synthetic_defects_and_reloads() {
    let smoke = smoke_fit_test_reload(SimpleNet::new).unwrap();
    let run = smoke.run;
    let h = read_history(&run).unwrap();
    assert!(h.last().unwrap().loss_g < h[0].loss_g, "the truncated L1 loss did not fall: {h:?}");
}

#[test]
fn an_interrupted_fit_resumes_to_the_same_weights() {
    let cfg = SimpleNetConfig { epochs: 3, ..method_preset::<SimpleNetConfig>("smoke") };
    assert_resume_matches(&cfg, SimpleNet::new, 0.0).unwrap();
}

#[test]
fn bad_configs_name_the_key() {
    let base = "method: simplenet\nbackbone: {kind: random_resnet18}\n";
    let cases = [("noise_std: 0\n", "noise_std"), ("disc_lr: -1\n", "disc_lr"), ("layers: [2, 1]\n", "layers"), ("noise: 1\n", "noise")];
    assert_bad_configs_name_the_key::<SimpleNetConfig>("sn.yaml", base, &cases);
    assert_bad_configs_name_the_key::<SimpleNetConfig>("sn.yaml", "backbone: {kind: random_resnet18}\n", &[("method: padim\n", "method")]);
}
