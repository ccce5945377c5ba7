//! SimpleNet at the smoke scale: separates synthetic defects and reloads;
//! bad configs are named.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use multiad_detector::history::read_history;
use multiad_detector::testing::fit_and_test_synthetic;
use multiad_detector::Detector;
use multiad_simplenet::{SimpleNet, SimpleNetConfig};

fn preset(name: &str) -> SimpleNetConfig {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../experiments/methods/simplenet/{name}.yaml"));
    SimpleNetConfig::from_yaml_str(&std::fs::read_to_string(&p).unwrap(), &p).unwrap()
}

#[test]
fn smoke_preset_separates_synthetic_defects_and_reloads() {
    let t = tempfile::tempdir().unwrap();
    let cfg = preset("smoke");
    let mut det = SimpleNet::new(&cfg, &Device::Cpu).unwrap();
    let (run, m) = fit_and_test_synthetic(&cfg, &mut det, t.path()).unwrap();
    eprintln!("SimpleNet smoke: {m:?}");
    multiad_detector::testing::assert_smoke_floor("simplenet", &m);
    let h = read_history(&run).unwrap();
    assert!(h.last().unwrap().loss_g < h[0].loss_g, "the truncated L1 loss did not fall: {h:?}");
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    let (a, sa) = det.predict(&x).unwrap();
    let mut back = SimpleNet::new(&cfg, &Device::Cpu).unwrap();
    back.load(&run).unwrap();
    let (b, sb) = back.predict(&x).unwrap();
    assert_eq!(sa, sb);
    assert_eq!(a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
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
