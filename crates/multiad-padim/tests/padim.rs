//! PaDiM at the smoke scale: separates synthetic defects; a saved model
//! reloads to the same maps; bad configs and model files are named.

use std::path::Path;

use candle_core::Device;
use multiad_detector::testing::{assert_bad_configs_name_the_key, smoke_fit_test_reload};
use multiad_detector::ConfigFile;
use multiad_detector::{Detector, RunDir};
use multiad_padim::{Padim, PadimConfig};

#[test]
fn smoke_preset_separates_synthetic_defects_and_reloads() {
    let smoke = smoke_fit_test_reload(Padim::new).unwrap();
    let (cfg, run) = (smoke.cfg, smoke.run);

    // A model file from another seed's channel subset is refused.
    let mut other = cfg.clone();
    other.common.seed = 7;
    let e = Padim::new(&other, &Device::Cpu).unwrap().load(&run).err().unwrap().to_string();
    assert!(e.contains("model.safetensors") && e.contains("channel subset"), "{e}");
    // A truncated model file names the file.
    std::fs::write(run.path("model.safetensors"), b"garbage").unwrap();
    let e = format!("{:#}", Padim::new(&cfg, &Device::Cpu).unwrap().load(&RunDir::open(&run.dir).unwrap()).err().unwrap());
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn bad_configs_name_the_key() {
    let base = "method: padim\nbackbone: {kind: random_resnet18}\n";
    let cases = [("image_size: 100\n", "image_size"), ("layers: [2, 1]\n", "layers"), ("covariance_eps: -1\n", "covariance_eps"), ("chanels: 10\n", "chanels")];
    assert_bad_configs_name_the_key::<PadimConfig>("padim.yaml", base, &cases);
    assert_bad_configs_name_the_key::<PadimConfig>("padim.yaml", "method: padim\n", &[("backbone: {kind: vgg}\n", "vgg")]);
    let too_many = PadimConfig::from_yaml_str(&format!("{base}channels: 5000\n"), Path::new("padim.yaml")).unwrap();
    let e = Padim::new(&too_many, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("channels") && e.contains("448"), "{e}");
}
