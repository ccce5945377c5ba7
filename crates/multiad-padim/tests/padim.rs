//! PaDiM at the smoke scale: separates synthetic defects; a saved model
//! reloads to the same maps; bad configs and model files are named.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use multiad_detector::testing::fit_and_test_synthetic;
use multiad_detector::{Detector, RunDir};
use multiad_padim::{Padim, PadimConfig};

fn preset(name: &str) -> PadimConfig {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../experiments/methods/padim/{name}.yaml"));
    PadimConfig::from_yaml_str(&std::fs::read_to_string(&p).unwrap(), &p).unwrap()
}

#[test]
fn smoke_preset_separates_synthetic_defects_and_reloads() {
    let t = tempfile::tempdir().unwrap();
    let cfg = preset("smoke");
    let mut det = Padim::new(&cfg, &Device::Cpu).unwrap();
    let (run, m) = fit_and_test_synthetic(&cfg, &mut det, t.path()).unwrap();
    eprintln!("PaDiM smoke: {m:?}");
    multiad_detector::testing::assert_smoke_floor("padim", &m);

    // A fresh detector loaded from the run gives identical maps.
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    let (a, sa) = det.predict(&x).unwrap();
    let mut back = Padim::new(&cfg, &Device::Cpu).unwrap();
    back.load(&run).unwrap();
    let (b, sb) = back.predict(&x).unwrap();
    assert_eq!(sa, sb);
    assert_eq!(a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    assert_eq!(a.dims(), &[2, 64, 64]);

    // A model file from another seed's channel subset is refused.
    let other = PadimConfig { seed: 7, ..cfg.clone() };
    let e = Padim::new(&other, &Device::Cpu).unwrap().load(&run).err().unwrap().to_string();
    assert!(e.contains("model.safetensors") && e.contains("channel subset"), "{e}");
    // A truncated model file names the file.
    std::fs::write(run.path("model.safetensors"), b"garbage").unwrap();
    let e = format!("{:#}", Padim::new(&cfg, &Device::Cpu).unwrap().load(&RunDir::open(&run.dir).unwrap()).err().unwrap());
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn bad_configs_name_the_key() {
    let p = Path::new("padim.yaml");
    let base = "method: padim\nbackbone: {kind: random_resnet18}\n";
    let cases = [
        (format!("{base}image_size: 100\n"), "image_size"),
        (format!("{base}layers: [2, 1]\n"), "layers"),
        (format!("{base}covariance_eps: -1\n"), "covariance_eps"),
        (format!("{base}chanels: 10\n"), "chanels"),
        ("method: padim\nbackbone: {kind: vgg}\n".to_string(), "vgg"),
    ];
    for (text, key) in cases {
        let e = PadimConfig::from_yaml_str(&text, p).err().unwrap().to_string();
        assert!(e.contains("padim.yaml") && e.contains(key), "{text:?}: {e}");
    }
    let too_many = PadimConfig::from_yaml_str(&format!("{base}channels: 5000\n"), p).unwrap();
    let e = Padim::new(&too_many, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("channels") && e.contains("448"), "{e}");
}
