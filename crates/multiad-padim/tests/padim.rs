//! PaDiM at the smoke scale: separates synthetic defects; a saved model
//! reloads to the same maps; bad configs and model files are named.

use candle_core::Device;
use multiad_detector::testing::{assert_bad_configs_name_the_key, SmokeRun};
use multiad_detector::{Detector, RunDir};
use multiad_padim::{Padim, PadimConfig};

fn foreign_and_torn_model_files_are_refused(smoke: SmokeRun<PadimConfig, Padim>) {
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
fn an_unknown_backbone_is_named() {
    assert_bad_configs_name_the_key::<PadimConfig>("padim.yaml", "method: padim\n", &[("backbone: {kind: vgg}\n", "vgg")]);
}

multiad_detector::method_tests! {
    build: Padim::new, config: PadimConfig, backbone: "random_resnet18",
    smoke_checks: foreign_and_torn_model_files_are_refused,
    bad_keys: [("image_size: 100\n", "image_size"), ("layers: [2, 1]\n", "layers"), ("covariance_eps: -1\n", "covariance_eps"), ("chanels: 10\n", "chanels")],
    // ResNet-18's first three levels have 448 channels in all.
    refused_by_build: [("channels: 5000\n", "give only 448")],
}
