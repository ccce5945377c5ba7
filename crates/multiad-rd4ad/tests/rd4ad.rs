//! RD4AD at the smoke scale: separates synthetic defects and reloads; the
//! bottleneck and decoder give back the encoder's shapes; bad configs are named.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use multiad_detector::testing::{assert_bad_configs_name_the_key, assert_resume_matches, method_preset, smoke_fit_test_reload};
use multiad_detector::ConfigFile;
use multiad_nn::ParamStore;
use multiad_rd4ad::model::{Decoder, Ocbe, Shapes};
use multiad_rd4ad::{Rd4ad, Rd4adConfig};

#[test]
fn smoke_preset_separates_synthetic_defects_and_reloads() {
    smoke_fit_test_reload(Rd4ad::new).unwrap();
}

#[test]
fn an_interrupted_fit_resumes_to_the_same_weights() {
    let cfg = Rd4adConfig { epochs: 3, ..method_preset::<Rd4adConfig>("smoke") };
    assert_resume_matches(&cfg, Rd4ad::new, 0.0).unwrap();
}

#[test]
fn decoder_gives_back_the_encoders_shapes_with_the_reference_block_counts() {
    let s = Shapes { levels: [32, 64, 128], oce_blocks: 3, decoder_blocks: [3, 4, 6], width_ratio: 0.5 };
    let store = ParamStore::new(1);
    let vb = store.var_builder(&Device::Cpu);
    let ocbe = Ocbe::new(&s, vb.pp("bn")).unwrap();
    let dec = Decoder::new(&s, vb.pp("decoder")).unwrap();
    let feats: Vec<Tensor> = [(32, 16), (64, 8), (128, 4)].iter().map(|&(c, h)| Tensor::zeros((2, c, h, h), DType::F32, &Device::Cpu).unwrap()).collect();
    let emb = ocbe.forward(&feats, false).unwrap();
    assert_eq!(emb.dims(), &[2, 256, 2, 2]);
    let out = dec.forward(&emb, false).unwrap();
    for (o, f) in out.iter().zip(&feats) {
        assert_eq!(o.dims(), f.dims());
    }
    // 3 embedding blocks and 3 + 4 + 6 decoder blocks, named as the reference names them.
    let names: Vec<String> = store.tensors().into_keys().collect();
    assert!(names.iter().any(|n| n.starts_with("bn.bn_layer.2.conv3")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("decoder.layer3.5.conv3")));
    assert!(names.iter().any(|n| n == "decoder.layer1.0.upsample.0.weight"));
}

#[test]
fn bad_configs_name_the_key() {
    let base = "method: rd4ad\nbackbone: {kind: random_resnet18}\n";
    let cases = [("layers: [0, 1]\n", "layers"), ("beta1: 1.0\n", "beta1"), ("lr: 0\n", "lr"), ("decoder_blocks: [1, 1]\n", "decoder_blocks")];
    assert_bad_configs_name_the_key::<Rd4adConfig>("rd.yaml", base, &cases);
    let gap = Rd4adConfig::from_yaml_str(&format!("{base}layers: [0, 1, 3]\n"), Path::new("rd.yaml")).unwrap();
    let e = Rd4ad::new(&gap, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("strides"), "{e}");
}
