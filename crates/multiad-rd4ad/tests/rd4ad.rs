//! RD4AD at the smoke scale: separates synthetic defects and reloads; the
//! bottleneck and decoder give back the encoder's shapes; bad configs are named.

use candle_core::{DType, Device, Tensor};
use multiad_nn::ParamStore;
use multiad_rd4ad::model::{Decoder, Ocbe, Shapes};
use multiad_rd4ad::{Rd4ad, Rd4adConfig};

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

multiad_detector::method_tests! {
    build: Rd4ad::new, config: Rd4adConfig, backbone: "random_resnet18",
    bad_keys: [("layers: [0, 1]\n", "layers"), ("beta1: 1.0\n", "beta1"), ("lr: 0\n", "lr"), ("decoder_blocks: [1, 1]\n", "decoder_blocks")],
    refused_by_build: [("layers: [0, 1, 3]\n", "strides")],
    resume_epochs: 3,
}
