//! PaDiM at the smoke scale: separates synthetic defects; a saved model
//! reloads to the same maps; bad configs and model files are named.

use std::path::Path;

use candle_core::Device;
use multiad_detector::testing::{method_preset, smoke_fit_test_reload};
use multiad_detector::{Detector, RunDir};
use multiad_padim::{Padim, PadimConfig};

fn preset(name: &str) -> PadimConfig {
    method_preset("padim", name, PadimConfig::from_yaml_str)
}

#[test]
fn smoke_preset_separates_synthetic_defects_and_reloads() {
    let t = tempfile::tempdir().unwrap();
    let cfg = preset("smoke");
    let (_, run, _) = smoke_fit_test_reload("padim", &cfg, || Padim::new(&cfg, &Device::Cpu), t.path()).unwrap();

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
