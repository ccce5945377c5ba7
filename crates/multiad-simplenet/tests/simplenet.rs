//! SimpleNet at the smoke scale: separates synthetic defects and reloads;
//! bad configs are named.

use std::path::Path;

use candle_core::Device;
use multiad_detector::history::read_history;
use multiad_detector::testing::{assert_resume_matches, method_preset, smoke_fit_test_reload};
use multiad_simplenet::{SimpleNet, SimpleNetConfig};

fn preset(name: &str) -> SimpleNetConfig {
    method_preset("simplenet", name, SimpleNetConfig::from_yaml_str)
}

#[test]
fn smoke_preset_separates_synthetic_defects_and_reloads() {
    let t = tempfile::tempdir().unwrap();
    let cfg = preset("smoke");
    let (_, run, _) = smoke_fit_test_reload("simplenet", &cfg, || SimpleNet::new(&cfg, &Device::Cpu), t.path()).unwrap();
    let h = read_history(&run).unwrap();
    assert!(h.last().unwrap().loss_g < h[0].loss_g, "the truncated L1 loss did not fall: {h:?}");
}

#[test]
fn an_interrupted_fit_resumes_to_the_same_weights() {
    let t = tempfile::tempdir().unwrap();
    let cfg = SimpleNetConfig { epochs: 3, ..preset("smoke") };
    assert_resume_matches(&cfg, || SimpleNet::new(&cfg, &Device::Cpu), t.path(), 1e-5).unwrap();
}

#[test]
fn bad_configs_name_the_key() {
    let p = Path::new("sn.yaml");
    let base = "method: simplenet\nbackbone: {kind: random_resnet18}\n";
    for (extra, key) in [("noise_std: 0\n", "noise_std"), ("disc_lr: -1\n", "disc_lr"), ("layers: [2, 1]\n", "layers"), ("noise: 1\n", "noise")] {
        let e = SimpleNetConfig::from_yaml_str(&format!("{base}{extra}"), p).err().unwrap().to_string();
        assert!(e.contains("sn.yaml") && e.contains(key), "{extra:?}: {e}");
    }
    let e = SimpleNetConfig::from_yaml_str("method: padim\nbackbone: {kind: random_resnet18}\n", p).err().unwrap().to_string();
    assert!(e.contains("method"), "{e}");
}
